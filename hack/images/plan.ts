// The pure parts of building and running the project's images (hack/images.ts does the I/O):
// which files an image is made of (its cache key), the image names, and the command line that
// runs an image's filesystem with chroot.
import { createHash } from "node:crypto";
import * as path from "node:path";

/** The images this project ships, and the Dockerfile each is built from (repository-relative). */
export const projectImages = {
  picker: { dockerfile: "picker/Dockerfile", env: "MODELROLLOUT_PICKER_IMAGE" },
  operator: { dockerfile: "Dockerfile", env: "MODELROLLOUT_OPERATOR_IMAGE" },
} as const;
export type ProjectImage = keyof typeof projectImages;

/** Where the project's images are published unless overridden (docs/install.md). */
export const defaultRegistry = "ghcr.io/modelrollout";

/**
 * The image reference: `$MODELROLLOUT_<NAME>_IMAGE` when set, else
 * `ghcr.io/modelrollout/<name>:<version>` (the package version).
 */
export function imageRef(
  image: ProjectImage,
  version: string,
  env: Record<string, string | undefined>,
): string {
  const override = env[projectImages[image].env]?.trim();
  if (override) {
    if (!/^[a-z0-9][a-z0-9._\-/:@]*$/.test(override) || override.endsWith(":")) {
      throw new Error(
        `${projectImages[image].env}=${override} is not an image reference: use e.g. registry.example.com/team/${image}:1.0`,
      );
    }
    return override;
  }
  return `${defaultRegistry}/${image}:${version}`;
}

/** `FROM` images a Dockerfile needs from outside (earlier stages named with AS are not). */
export function externalBases(dockerfile: string): string[] {
  const stages = new Set<string>();
  const bases: string[] = [];
  for (const { op, args } of instructions(dockerfile)) {
    if (op !== "FROM") continue;
    const words = args.split(/\s+/).filter(w => !w.startsWith("--"));
    const [image, as, name] = words;
    if (!stages.has(image.toLowerCase()) && !bases.includes(image)) bases.push(image);
    if (as?.toUpperCase() === "AS" && name) stages.add(name.toLowerCase());
  }
  return bases;
}

/**
 * Build-context paths a Dockerfile copies (COPY/ADD without --from), repository-relative; with the
 * Dockerfile itself and its base images they decide what is built, so they make the cache key.
 */
export function contextSources(dockerfile: string): string[] {
  const sources = new Set<string>();
  for (const { op, args, line } of instructions(dockerfile)) {
    if (op !== "COPY" && op !== "ADD") continue;
    const words = args.split(/\s+/);
    if (words.some(w => w.startsWith("--from="))) continue;
    const paths = words.filter(w => !w.startsWith("--"));
    if (paths.length < 2)
      throw new Error(`Dockerfile line ${line}: ${op} needs a source and a destination`);
    for (const src of paths.slice(0, -1)) {
      if (/[*?[]/.test(src) || src.startsWith("/") || src.split("/").includes("..")) {
        throw new Error(
          `Dockerfile line ${line}: ${op} ${src}: name files inside the build context without wildcards (the image cache hashes exactly these)`,
        );
      }
      sources.add(path.posix.normalize(src).replace(/\/$/, ""));
    }
  }
  return [...sources].sort();
}

/** Instructions with continuation lines joined and comments dropped. */
function instructions(text: string): { op: string; args: string; line: number }[] {
  const out: { op: string; args: string; line: number }[] = [];
  let pending = "";
  let start = 0;
  text.split("\n").forEach((raw, i) => {
    const line = raw.trimEnd();
    if (line.trim() === "" || line.trim().startsWith("#")) return;
    if (!pending) start = i + 1;
    if (line.endsWith("\\")) {
      pending += `${line.slice(0, -1)} `;
      return;
    }
    pending += line;
    const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(pending);
    if (!m) throw new Error(`Dockerfile line ${start}: cannot read '${pending.trim()}'`);
    out.push({ op: m[1].toUpperCase(), args: m[2].trim(), line: start });
    pending = "";
  });
  if (pending) throw new Error(`Dockerfile line ${start}: the file ends inside a continued line`);
  return out;
}

/**
 * The cache key of an image: a digest over named inputs (file path → content digest, base
 * image → its ID, settings), independent of the order they are given in.
 */
export function inputsDigest(inputs: Record<string, string>): string {
  const h = createHash("sha256");
  for (const key of Object.keys(inputs).sort()) h.update(`${key}\0${inputs[key]}\0`);
  return h.digest("hex").slice(0, 32);
}

/** uid and gid of an image's USER (`name`, `uid`, `name:group` or `uid:gid`), from its files. */
export function resolveUser(
  user: string,
  passwd: string,
  group: string,
): { uid: number; gid: number; home: string } {
  const spec = user.trim() || "root";
  const [u, g] = spec.split(":");
  const users = passwd
    .split("\n")
    .filter(Boolean)
    .map(l => l.split(":"))
    .map(f => ({ name: f[0], uid: Number(f[2]), gid: Number(f[3]), home: f[5] || "/" }));
  const byUser = users.find(x => x.name === u || (/^\d+$/.test(u) && x.uid === Number(u)));
  if (!byUser && !/^\d+$/.test(u)) {
    throw new Error(`image user '${u}' is not in the image's /etc/passwd`);
  }
  const uid = byUser?.uid ?? Number(u);
  let gid = byUser?.gid ?? uid;
  if (g !== undefined) {
    if (/^\d+$/.test(g)) gid = Number(g);
    else {
      const entry = group
        .split("\n")
        .map(l => l.split(":"))
        .find(f => f[0] === g);
      if (!entry) throw new Error(`image group '${g}' is not in the image's /etc/group`);
      gid = Number(entry[2]);
    }
  }
  return { uid, gid, home: byUser?.home ?? "/" };
}

export interface ChrootRun {
  /** The image's filesystem on this machine (a mounted buildah container). */
  root: string;
  uid: number;
  gid: number;
  /** Working directory inside the image. */
  workdir: string;
  /** The whole environment of the process (nothing of this machine's leaks in). */
  env: Record<string, string>;
  /** The command inside the image: ENTRYPOINT + CMD or arguments. */
  argv: readonly string[];
}

/**
 * The command line that runs `argv` in an image's filesystem as a container runtime would, where
 * none can run (podman fails here on cgroups): a private mount namespace (so nothing stays
 * mounted when the process ends) with the image's /proc and /dev, then chroot as the image's
 * user, with exactly the image's environment, from its WORKDIR. Network and PID namespace are
 * this machine's: the process listens on loopback and its PID is the one `spawn` returns
 * (each step execs the next).
 */
export function chrootCommand(run: ChrootRun): { command: string; args: string[] } {
  if (!path.isAbsolute(run.root)) throw new Error(`image root ${run.root} must be absolute`);
  if (run.argv.length === 0) throw new Error("nothing to run: the image has no ENTRYPOINT or CMD");
  const script = [
    'root="$1"; shift',
    'mount -t proc proc "$root/proc"',
    'mount --rbind /dev "$root/dev"',
    'exec "$@"',
  ].join(" && ");
  return {
    command: "unshare",
    args: [
      "--mount",
      "--propagation",
      "private",
      "--",
      "/bin/sh",
      "-c",
      script,
      "sh",
      run.root,
      "chroot",
      `--userspec=${run.uid}:${run.gid}`,
      "--groups=",
      run.root,
      "/usr/bin/env",
      "-i",
      "-C",
      run.workdir || "/",
      ...Object.entries(run.env).map(([k, v]) => `${k}=${v}`),
      ...run.argv,
    ],
  };
}

/** `KEY=value` lines of an image config's Env as an object. */
export function envFromConfig(env: readonly string[] | null | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of env ?? []) {
    const eq = kv.indexOf("=");
    if (eq > 0) out[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return out;
}
