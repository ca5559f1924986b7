// Loopback addresses (127.0.0.N) of emulated model-server pods, claimed machine-wide.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { isAlive, readProc } from "./procs";

/** Name of a model server's process record in an environment's state folder. */
export function modelServerProcName(namespace: string, name: string): string {
  return `model-server.${namespace}.${name}`;
}

/**
 * Loopback addresses are shared by every environment on the machine (two checkouts, a test run
 * beside a demo), so claims live in one machine-wide folder. A claim names its environment and
 * owner; one whose model-server process is gone (a crashed run) is taken over.
 */
const ipClaims = path.join(os.tmpdir(), "modelrollout-ip-claims");
const CLAIM_GRACE_MS = 60_000; // a fresh claim whose process is still starting is not stale

interface IpClaim {
  stateDir: string;
  owner: string;
  claimedAt: number;
}

function claimIsStale(file: string): boolean {
  try {
    const claim = JSON.parse(fs.readFileSync(file, "utf8")) as IpClaim;
    if (Date.now() - claim.claimedAt < CLAIM_GRACE_MS) return false;
    const [namespace, name] = claim.owner.split("/");
    const proc = readProc(claim.stateDir, modelServerProcName(namespace, name));
    return !proc || !isAlive(proc.pid);
  } catch {
    return true; // unreadable: left half-written by a crash
  }
}

/** Claims a free 127.0.0.N address; exclusive file creation makes this safe across processes. */
export function claimIp(info: { stateDir: string }, owner: string): string {
  fs.mkdirSync(ipClaims, { recursive: true });
  const claim: IpClaim = { stateDir: info.stateDir, owner, claimedAt: Date.now() };
  for (let n = 10; n < 255; n++) {
    const ip = `127.0.0.${n}`;
    const file = path.join(ipClaims, ip);
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        fs.writeFileSync(file, JSON.stringify(claim), { flag: "wx" });
        return ip;
      } catch {
        if (attempt > 0 || !claimIsStale(file)) break;
        fs.rmSync(file, { force: true });
      }
    }
  }
  throw new Error("no free loopback address left in 127.0.0.10-254; remove some model servers");
}

export function releaseIp(info: { stateDir: string }, owner: string): void {
  if (!fs.existsSync(ipClaims)) return;
  for (const ip of fs.readdirSync(ipClaims)) {
    const file = path.join(ipClaims, ip);
    try {
      const claim = JSON.parse(fs.readFileSync(file, "utf8")) as IpClaim;
      if (claim.stateDir === info.stateDir && claim.owner === owner)
        fs.rmSync(file, { force: true });
    } catch {
      /* claimed by someone else meanwhile, or already gone */
    }
  }
}

/** Releases every claim of one environment (its processes are gone). */
export function releaseAllIps(stateDir: string): void {
  if (!fs.existsSync(ipClaims)) return;
  for (const ip of fs.readdirSync(ipClaims)) {
    const file = path.join(ipClaims, ip);
    try {
      if ((JSON.parse(fs.readFileSync(file, "utf8")) as IpClaim).stateDir === stateDir)
        fs.rmSync(file, { force: true });
    } catch {
      /* already gone */
    }
  }
}
