// What the local environment (`npm run demo`, the integration tests of `npm test`, `npm run
// cluster:up`) needs from the machine, checked all at once before anything long starts, so that a
// missing piece fails in a second with its fix instead of after a 15-minute build.
// `planPrerequisites` decides from probes (pure, unit-tested) what is there, what the project
// obtains itself and what only the user can fix. `ensurePrerequisites` probes this machine, stops
// with every problem at once (nothing built or installed), else obtains what it can — Debian
// packages with apt-get when running as root, else Prometheus built from the Go module proxy — and
// returns the Prometheus binary to run. The Go builds of kube-apiserver, kubectl, etcd, ...
// (hack/build-binaries.sh) come after it, announced here with their time.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { EnvConfig, envConfig, repoRoot } from "./config";
import { isAlive, readProc } from "./procs";
import { systemPrometheusPaths } from "./prometheus";

/** The oldest Go that builds everything (the wrapper modules say `go 1.26.0`; GOTOOLCHAIN may be local). */
export const GO_MIN = "1.26.0";

export interface Probes {
  /** This Node.js and package.json's engines.node. */
  node: { version: string; range: string };
  root: boolean;
  aptGet: boolean;
  /** The go command (PATH, else /usr/local/go/bin/go) and its version ("" when unreadable). */
  go?: { path: string; version: string };
  openssl: boolean;
  /** A CA bundle for Go's HTTPS to the module proxy (or SSL_CERT_FILE / SSL_CERT_DIR set). */
  caCertificates: boolean;
  prometheus: {
    /** PROMETHEUS_BINARY when set, and whether it names an executable file. */
    env?: { path: string; executable: boolean };
    /** An installed prometheus (Debian's package, /usr/local/bin, PATH). */
    installed?: string;
    /** The one `hack/build-binaries.sh prometheus` built earlier (in the binary cache). */
    built?: string;
  };
  /** hack/build-binaries.sh --check: each binary it provides → its path, undefined when to be built. */
  binaries: Record<string, string | undefined>;
  /** What a build would lack (build-binaries.sh --check's problem= lines, from preflight_X). */
  buildProblems: Problem[];
  /** Prebuilt binaries named by a variable that does not point at one (the build would ignore it). */
  badAssets: { variable: string; value: string }[];
  /** The least free space of the filesystems holding the Go caches and the binary cache. */
  disk?: { freeBytes: number; where: string };
  /** Loopback ports the environment is about to listen on that another process holds. */
  busyPorts: { what: string; port: number; variable: string }[];
}

export interface Problem {
  what: string;
  fix: string;
}

export type Step =
  /** apt-get update + install; `prometheusFallback`: build Prometheus with Go if that fails. */
  | { kind: "apt"; packages: string[]; prometheusFallback: boolean }
  /** `hack/build-binaries.sh prometheus`: Prometheus from the Go module proxy. */
  | { kind: "build-prometheus" };

export interface Plan {
  /** What only the user can fix; when any, nothing is installed or built. */
  problems: Problem[];
  /** What the project obtains itself first, in order. */
  steps: Step[];
  /** What hack/build-binaries.sh builds afterwards (the long part). */
  builds: string[];
  /** What is there, for the progress line. */
  found: string[];
  /** The Prometheus binary, when one is there already. */
  prometheus?: string;
}

/**
 * Rough first-build needs of Go's module and build caches, in GB: everything of build-binaries.sh
 * left 1.9 + 3.9 GB; Prometheus alone, from empty caches, 1.0 + 0.8 GB.
 */
const BUILD_GB: Record<string, number> = {
  "kube-apiserver": 4,
  kubectl: 0.5,
  etcd: 0.5,
  "envoy-side": 0.5,
  loadgen: 0.1, // the same modules as envoy-side
  prometheus: 2,
};
const DEFAULT_BUILD_GB = 1;
const GB = 1024 ** 3;

/** Numeric dotted versions: -1, 0 or 1 (missing parts are 0; "1.26rc1" reads as 1.26). */
export function compareVersions(a: string, b: string): number {
  const parts = (v: string) => v.split(".").map(p => parseInt(p, 10) || 0);
  const [x, y] = [parts(a), parts(b)];
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d) return Math.sign(d);
  }
  return 0;
}

/** Whether `version` satisfies an npm range of space-separated comparators (">=20.20.0 <21"). */
export function satisfies(version: string, range: string): boolean {
  return range
    .trim()
    .split(/\s+/)
    .filter(Boolean)
    .every(comparator => {
      const m = /^(>=|<=|>|<|=)?v?(\d[\d.]*)$/.exec(comparator);
      if (!m) return true; // a form this check does not read: npm's own engine check applies
      const c = compareVersions(version, m[2]);
      switch (m[1]) {
        case ">=":
          return c >= 0;
        case "<=":
          return c <= 0;
        case ">":
          return c > 0;
        case "<":
          return c < 0;
        default:
          return c === 0;
      }
    });
}

/** "go1.26.8" (go env GOVERSION) or "go version go1.26.8 linux/amd64" → "1.26.8". */
export function goVersionOf(text: string): string {
  return /go(\d+(?:\.\d+)*)/.exec(text)?.[1] ?? "";
}

/**
 * The name=path lines of hack/build-binaries.sh (an empty path: not there), and the
 * `problem=<what> | fix: <fix>` lines of --check.
 */
export function parseBinaryLines(stdout: string): {
  binaries: Record<string, string>;
  problems: Problem[];
} {
  const binaries: Record<string, string> = {};
  const problems: Problem[] = [];
  for (const line of stdout.split("\n")) {
    const i = line.indexOf("=");
    if (i <= 0) continue;
    const [key, value] = [line.slice(0, i).trim(), line.slice(i + 1).trim()];
    if (key === "problem") {
      const [what, fix = "see hack/build-binaries.sh"] = value.split(" | fix: ");
      problems.push({ what, fix });
    } else binaries[key] = value;
  }
  return { binaries, problems };
}

function buildTime(builds: string[]): string {
  if (builds.includes("kube-apiserver") || builds.includes("kubectl"))
    return "~10-20 min on 2 cores";
  return "a few minutes";
}

/** What is missing and what to do about it: the decision, without touching the machine. */
export function planPrerequisites(p: Probes): Plan {
  const problems: Problem[] = [];
  const found: string[] = [];
  const apt: string[] = [];
  const canApt = p.root && p.aptGet;
  const aptFix = (pkg: string) =>
    `\`sudo apt-get install ${pkg}\` (Debian/Ubuntu; run as root, the project does this itself)`;

  if (satisfies(p.node.version, p.node.range)) found.push(`Node.js ${p.node.version}`);
  else
    problems.push({
      what: `Node.js ${p.node.version} does not satisfy package.json's engines.node "${p.node.range}" (pepr 1.1.x needs Node.js 20)`,
      fix: "install Node.js 20.20 or a later 20.x (https://nodejs.org/dist/latest-v20.x/, or `nvm install 20`), then `npm ci` again",
    });

  const goOk = p.go !== undefined && compareVersions(p.go.version, GO_MIN) >= 0;
  if (p.go) found.push(`Go ${p.go.version || "(version unreadable)"}`);

  if (p.openssl) found.push("openssl");
  else if (canApt) apt.push("openssl");
  else
    problems.push({
      what: "openssl is not installed (certificates of the local control plane)",
      fix: aptFix("openssl"),
    });

  for (const a of p.badAssets)
    problems.push({
      what: `${a.variable}=${a.value} does not name ${a.variable === "KUBEBUILDER_ASSETS" ? "a folder" : "an executable file"}`,
      fix: `correct it, or unset ${a.variable} (then the project builds the binary with Go)`,
    });

  problems.push(...p.buildProblems);
  const builds = Object.entries(p.binaries)
    .filter(([, where]) => !where)
    .map(([name]) => name);
  const present = Object.keys(p.binaries).filter(name => p.binaries[name]);
  if (present.length) found.push(`${present.join(", ")} (ready)`);

  let prometheus: string | undefined;
  let buildPrometheus = false;
  let prometheusFallback = false;
  const pe = p.prometheus.env;
  if (pe) {
    if (pe.executable) prometheus = pe.path;
    else
      problems.push({
        what: `PROMETHEUS_BINARY=${pe.path} is not an executable file`,
        fix: "point PROMETHEUS_BINARY at a prometheus binary, or unset it (then the project finds or obtains one itself)",
      });
  } else {
    prometheus = p.prometheus.installed ?? p.prometheus.built;
    if (!prometheus) {
      if (canApt) {
        apt.push("prometheus");
        prometheusFallback = goOk;
      } else if (goOk) buildPrometheus = true;
      else
        problems.push({
          what: `Prometheus is not installed${p.root ? " and apt-get is not available" : ""}, and there is no Go ≥ ${GO_MIN} to build it`,
          fix: `${aptFix("prometheus")}, or install Go ≥ ${GO_MIN} (https://go.dev/dl) and the project builds it from the Go module proxy, or set PROMETHEUS_BINARY to a prometheus binary`,
        });
    }
  }
  if (prometheus) found.push(`Prometheus (${prometheus})`);

  const goBuilds = [...builds, ...(buildPrometheus ? ["prometheus"] : [])];
  if (goBuilds.length) {
    if (!p.go)
      problems.push({
        what: `Go is not installed; it builds ${goBuilds.join(", ")} from the Go module proxy`,
        fix: `install Go ≥ ${GO_MIN} (https://go.dev/dl; /usr/local/go/bin is found without PATH), or point KUBEBUILDER_ASSETS (or TEST_ASSET_KUBE_APISERVER / TEST_ASSET_ETCD / TEST_ASSET_KUBECTL) at prebuilt binaries`,
      });
    else if (!goOk)
      problems.push({
        what: `Go ${p.go.version || "(version unreadable)"} at ${p.go.path} is older than ${GO_MIN}, needed to build ${goBuilds.join(", ")}`,
        fix: `install Go ≥ ${GO_MIN} (https://go.dev/dl) first on PATH`,
      });
    if (!p.caCertificates) {
      if (canApt) apt.push("ca-certificates");
      else
        problems.push({
          what: "no CA certificates: Go cannot reach the module proxy over HTTPS",
          fix: `${aptFix("ca-certificates")}, or set SSL_CERT_FILE to a CA bundle`,
        });
    }
    const needGb = goBuilds.reduce((sum, b) => sum + (BUILD_GB[b] ?? DEFAULT_BUILD_GB), 0);
    if (p.disk && p.disk.freeBytes < needGb * GB)
      problems.push({
        what: `${(p.disk.freeBytes / GB).toFixed(1)} GB free in ${p.disk.where}; building ${goBuilds.join(", ")} needs about ${needGb.toFixed(1)} GB (Go's module and build caches)`,
        fix: "free some space, or move the caches elsewhere (GOMODCACHE, GOCACHE, MODELROLLOUT_CACHE)",
      });
  }

  for (const b of p.busyPorts)
    problems.push({
      what: `127.0.0.1:${b.port} (${b.what}) is in use by another process`,
      fix: `stop that process, or give the environment another port: ${b.variable}=<free port>`,
    });

  const steps: Step[] = [];
  if (apt.length) steps.push({ kind: "apt", packages: apt, prometheusFallback });
  if (buildPrometheus) steps.push({ kind: "build-prometheus" });
  return { problems, steps, builds, found, prometheus };
}

/** Missing prerequisites: the message is the whole report (a stack trace adds nothing). */
export class PrerequisitesError extends Error {}

export function describeProblems(problems: Problem[]): string {
  return [
    `${problems.length === 1 ? "a prerequisite is" : `${problems.length} prerequisites are`} missing (nothing was built or installed):`,
    ...problems.map(pr => `  - ${pr.what}\n    fix: ${pr.fix}`),
  ].join("\n");
}

type Progress = (msg: string) => void;

export interface RunResult {
  status: number | null;
  stdout: string;
}

/** What ensurePrerequisites does to the machine, replaceable in tests. */
export interface Machine {
  probe(): Promise<Probes>;
  /** Runs a command, its output shown on our stderr (`quiet`: not shown). */
  run(
    command: string,
    args: string[],
    opts?: { env?: NodeJS.ProcessEnv; quiet?: boolean },
  ): RunResult;
  exists(file: string): boolean;
}

const BUILD_SCRIPT = path.join(repoRoot, "hack", "build-binaries.sh");

function aptInstall(m: Machine, packages: string[], progress: Progress): boolean {
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const lock = ["-o", "DPkg::Lock::Timeout=300"];
  progress(
    `installing Debian's ${packages.join(", ")} (running as root: apt-get update && apt-get install -y --no-install-recommends ${packages.join(" ")}; ~1 min)`,
  );
  const update = m.run("apt-get", ["-q", ...lock, "update"], { env });
  if (update.status !== 0)
    progress(`apt-get update failed (exit ${update.status}); trying the install anyway`);
  const install = m.run(
    "apt-get",
    ["-q", ...lock, "install", "-y", "--no-install-recommends", ...packages],
    { env },
  );
  if (install.status !== 0) {
    progress(`apt-get install failed (exit ${install.status}; its messages are above)`);
    return false;
  }
  progress(`installed ${packages.join(", ")}`);
  return true;
}

/**
 * Debian's package enables and starts its own prometheus service (on every address, port 9090)
 * where an init system runs (not in containers, whose policy-rc.d forbids it). The environment
 * runs its own Prometheus with its own configuration on 127.0.0.1:19090, so the package's one is
 * only an unasked-for daemon listening on the network: stop and disable what the install started.
 */
function quietPackageService(m: Machine, progress: Progress): void {
  const again = "`systemctl enable --now prometheus` brings it back";
  if (m.exists("/run/systemd/system")) {
    const active = m.run("systemctl", ["is-active", "--quiet", "prometheus.service"], {
      quiet: true,
    });
    if (active.status !== 0) return;
    m.run("systemctl", ["disable", "--now", "prometheus.service"], { quiet: true });
    progress(
      `the package started its own prometheus service on :9090; stopped and disabled it (the environment runs its own; ${again})`,
    );
  } else if (m.exists("/etc/init.d/prometheus")) {
    if (m.run("/etc/init.d/prometheus", ["status"], { quiet: true }).status !== 0) return;
    m.run("/etc/init.d/prometheus", ["stop"], { quiet: true });
    m.run("update-rc.d", ["prometheus", "disable"], { quiet: true });
    progress(
      "the package started its own prometheus service on :9090; stopped it and disabled it at boot (the environment runs its own)",
    );
  }
}

function buildPrometheus(m: Machine, progress: Progress): boolean {
  progress(
    "Prometheus is not installed and Debian's package needs root: building it from the Go module proxy (hack/build-binaries.sh prometheus, once)",
  );
  return m.run("bash", [BUILD_SCRIPT, "prometheus"]).status === 0;
}

/**
 * Checks every prerequisite; throws with all problems and their fixes before anything is built or
 * installed; else obtains what the project can and returns the Prometheus binary to run.
 */
export async function ensurePrerequisites(
  progress: Progress,
  machine: Machine = thisMachine(),
): Promise<{ prometheus: string; builds: string[] }> {
  const plan = planPrerequisites(await machine.probe());
  if (plan.found.length) progress(`prerequisites: found ${plan.found.join(", ")}`);
  if (plan.problems.length) throw new PrerequisitesError(describeProblems(plan.problems));
  if (plan.steps.length || plan.builds.length)
    progress(
      `to do: ${[
        ...plan.steps.map(s =>
          s.kind === "apt"
            ? `install Debian's ${s.packages.join(", ")} (apt-get)`
            : "build Prometheus from the Go module proxy (~4 min on 2 cores)",
        ),
        ...(plan.builds.length
          ? [`build ${plan.builds.join(", ")} from the Go module proxy (${buildTime(plan.builds)})`]
          : []),
      ].join(", then ")}`,
    );

  for (const step of plan.steps) {
    if (step.kind === "apt") {
      const ok = aptInstall(machine, step.packages, progress);
      if (ok && step.packages.includes("prometheus")) quietPackageService(machine, progress);
      if (!ok && step.prometheusFallback) {
        progress("falling back to building Prometheus from the Go module proxy");
        buildPrometheus(machine, progress);
      }
    } else {
      buildPrometheus(machine, progress);
    }
  }

  if (!plan.steps.length) return { prometheus: plan.prometheus!, builds: plan.builds };
  // What the steps left: every step must have made its piece present.
  const after = planPrerequisites(await machine.probe());
  if (after.problems.length || after.steps.length || !after.prometheus) {
    const left = [
      ...after.problems,
      ...after.steps.map(s => ({
        what:
          s.kind === "apt"
            ? `could not install ${s.packages.join(", ")} with apt-get (messages above)`
            : "could not build Prometheus (messages above)",
        fix:
          s.kind === "apt"
            ? `run \`apt-get install ${s.packages.join(" ")}\` yourself and look at its error, or set PROMETHEUS_BINARY to a prometheus binary`
            : "look at the build log named above, or set PROMETHEUS_BINARY to a prometheus binary",
      })),
    ];
    throw new PrerequisitesError(describeProblems(left));
  }
  progress(`prerequisites: all present (Prometheus: ${after.prometheus})`);
  return { prometheus: after.prometheus, builds: after.builds };
}

// --- Probing this machine ---------------------------------------------------------------------

function executable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

function which(command: string): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    if (dir && executable(path.join(dir, command))) return path.join(dir, command);
  }
  return undefined;
}

// Where Go's crypto/x509 looks for a CA bundle on Linux.
const CA_FILES = [
  "/etc/ssl/certs/ca-certificates.crt",
  "/etc/pki/tls/certs/ca-bundle.crt",
  "/etc/ssl/ca-bundle.pem",
  "/etc/pki/tls/cacert.pem",
  "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
  "/etc/ssl/cert.pem",
];

function freeSpace(dirs: string[]): Probes["disk"] {
  let least: Probes["disk"];
  for (const dir of dirs) {
    let at = path.resolve(dir);
    while (!fs.existsSync(at) && path.dirname(at) !== at) at = path.dirname(at);
    try {
      const s = fs.statfsSync(at);
      const freeBytes = s.bavail * s.bsize;
      if (!least || freeBytes < least.freeBytes) least = { freeBytes, where: at };
    } catch {
      /* not measurable: no check */
    }
  }
  return least;
}

function portBusy(port: number): Promise<boolean> {
  return new Promise(resolve => {
    const srv = net.createServer();
    srv.once("error", () => resolve(true));
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(false)));
  });
}

export async function busyPorts(cfg: EnvConfig): Promise<Probes["busyPorts"]> {
  const ours = [
    { proc: "etcd", what: "etcd", port: cfg.etcdPort, variable: "MODELROLLOUT_ETCD_PORT" },
    {
      proc: "etcd",
      what: "etcd peer",
      port: cfg.etcdPeerPort,
      variable: "MODELROLLOUT_ETCD_PEER_PORT",
    },
    {
      proc: "kube-apiserver",
      what: "kube-apiserver",
      port: cfg.apiserverPort,
      variable: "MODELROLLOUT_APISERVER_PORT",
    },
    {
      proc: "prometheus",
      what: "Prometheus",
      port: cfg.prometheusPort,
      variable: "MODELROLLOUT_PROMETHEUS_PORT",
    },
  ];
  const out: Probes["busyPorts"] = [];
  for (const o of ours) {
    const rec = readProc(cfg.stateDir, o.proc);
    if (rec && isAlive(rec.pid)) continue; // ours, running
    if (await portBusy(o.port)) out.push({ what: o.what, port: o.port, variable: o.variable });
  }
  return out;
}

export async function probeMachine(cfg: EnvConfig = envConfig()): Promise<Probes> {
  const pkg = JSON.parse(fs.readFileSync(path.join(repoRoot, "package.json"), "utf8"));
  const goPath =
    which("go") ?? (executable("/usr/local/go/bin/go") ? "/usr/local/go/bin/go" : undefined);
  let go: Probes["go"];
  let goDirs: string[] = [];
  if (goPath) {
    const res = spawnSync(goPath, ["env", "GOVERSION", "GOMODCACHE", "GOCACHE"], {
      encoding: "utf8",
    });
    const [version = "", modcache, buildcache] = (res.stdout ?? "").split("\n");
    go = { path: goPath, version: goVersionOf(version) };
    goDirs = [modcache, buildcache].filter(Boolean);
  }

  const check = spawnSync("bash", [BUILD_SCRIPT, "--check"], { encoding: "utf8" });
  if (check.status !== 0)
    throw new Error(
      `hack/build-binaries.sh --check failed (exit ${check.status}): ${check.stderr}`.trim(),
    );
  const lines = parseBinaryLines(check.stdout);
  const { prometheus: built, ...rest } = lines.binaries;
  const binaries = Object.fromEntries(
    Object.entries(rest).map(([name, where]) => [
      name,
      where && executable(where) ? where : undefined,
    ]),
  );

  const badAssets: Probes["badAssets"] = [];
  for (const variable of ["TEST_ASSET_KUBE_APISERVER", "TEST_ASSET_ETCD", "TEST_ASSET_KUBECTL"]) {
    const value = process.env[variable];
    if (value && !executable(value)) badAssets.push({ variable, value });
  }
  const assets = process.env.KUBEBUILDER_ASSETS;
  if (assets && !(fs.existsSync(assets) && fs.statSync(assets).isDirectory()))
    badAssets.push({ variable: "KUBEBUILDER_ASSETS", value: assets });

  const envProm = process.env.PROMETHEUS_BINARY;
  return {
    node: { version: process.versions.node, range: pkg.engines?.node ?? "" },
    root: process.getuid?.() === 0,
    aptGet: which("apt-get") !== undefined,
    go,
    openssl: which("openssl") !== undefined,
    caCertificates:
      !!process.env.SSL_CERT_FILE ||
      !!process.env.SSL_CERT_DIR ||
      CA_FILES.some(f => fs.existsSync(f)),
    prometheus: {
      env: envProm ? { path: envProm, executable: executable(envProm) } : undefined,
      installed: systemPrometheusPaths.find(executable) ?? which("prometheus"),
      built: built && executable(built) ? built : undefined,
    },
    binaries,
    buildProblems: lines.problems,
    badAssets,
    disk: freeSpace([...goDirs, cfg.cacheDir]),
    busyPorts: await busyPorts(cfg),
  };
}

export function thisMachine(): Machine {
  return {
    probe: () => probeMachine(),
    run(command, args, opts = {}) {
      const res = spawnSync(command, args, {
        env: opts.env ?? process.env,
        encoding: "utf8",
        // Shown on stderr: stdout stays for machine-readable output (`eval "$(npm run -s cluster:up)"`).
        stdio: ["ignore", opts.quiet ? "pipe" : 2, opts.quiet ? "pipe" : 2],
      });
      if (res.error) return { status: null, stdout: "" };
      return { status: res.status, stdout: res.stdout ?? "" };
    },
    exists: file => fs.existsSync(file),
  };
}
