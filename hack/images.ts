// Builds the project's images for real with buildah, and runs a built image's filesystem.
//
//   npx tsx hack/images.ts [picker|operator|all] [--force]
//
// buildah (Debian's, as root) builds the Dockerfiles with `--isolation chroot` (overlay storage
// here; vfs where overlay cannot mount), RUN steps included. No registry is reachable here, so the one base image the
// Dockerfiles name, node:20-bookworm-slim, is made locally under that name: Debian bookworm from
// debootstrap (minbase) plus this machine's Node 20 and npm where the official image has them
// (/usr/local), and its `node` user (1000). The operator image also needs `pepr build` (the
// module and the manifests that name the image). Every result is cached by a digest of its inputs
// (label dev.modelrollout.inputs): an unchanged image is not built again.
//
// Running: podman cannot start containers here (cgroups), so `runInImage` runs a command in a
// buildah container's mounted filesystem with chroot (hack/images/plan.ts chrootCommand).
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { envConfig, repoRoot } from "./env/config";
import {
  ProjectImage,
  chrootCommand,
  contextSources,
  envFromConfig,
  externalBases,
  imageRef,
  inputsDigest,
  projectImages,
  resolveUser,
} from "./images/plan";

type Log = (line: string) => void;

/** buildah's chroot isolation, debootstrap, chroot and unshare --mount all need root here. */
function requireRoot(what: string): void {
  if (os.userInfo().uid !== 0) {
    throw new Error(
      `${what} needs root here (buildah with chroot isolation and no user namespaces, debootstrap, chroot): run it as root`,
    );
  }
}
const stderrLog: Log = line => process.stderr.write(`[images] ${line}\n`);

const inputsLabel = "dev.modelrollout.inputs";
const version = (): string =>
  JSON.parse(fs.readFileSync(path.join(repoRoot, "package.json"), "utf8")).version;

/**
 * buildah's global flags: the storage driver buildah picks (overlay here, which works on this
 * machine's ext4) unless MODELROLLOUT_BUILDAH_STORAGE_DRIVER says otherwise (vfs works anywhere,
 * copying every layer in full: several times slower).
 */
function buildahGlobal(): string[] {
  const driver = process.env.MODELROLLOUT_BUILDAH_STORAGE_DRIVER;
  return driver ? ["--storage-driver", driver] : [];
}

function buildah(args: string[], opts: { allowFail?: boolean } = {}): string {
  const r = spawnSync("buildah", [...buildahGlobal(), ...args], {
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.error) {
    throw new Error(
      `buildah not found (${r.error.message}): install it with apt-get install -y buildah (Debian's, run as root)`,
    );
  }
  if (r.status !== 0 && !opts.allowFail) {
    throw new Error(`buildah ${args.join(" ")} failed (exit ${r.status}): ${r.stderr.trim()}`);
  }
  return r.status === 0 ? r.stdout : "";
}

interface ImageConfig {
  id: string;
  labels: Record<string, string>;
  entrypoint: string[];
  cmd: string[];
  env: Record<string, string>;
  workdir: string;
  user: string;
}

/** The local image's ID and config, or undefined when there is no such image. */
export function inspectImage(ref: string): ImageConfig | undefined {
  const out = buildah(["inspect", "--type", "image", ref], { allowFail: true });
  if (!out) return undefined;
  const j = JSON.parse(out) as {
    FromImageID: string;
    OCIv1: {
      config?: {
        Labels?: Record<string, string>;
        Entrypoint?: string[];
        Cmd?: string[];
        Env?: string[];
        WorkingDir?: string;
        User?: string;
      };
    };
  };
  const c = j.OCIv1.config ?? {};
  return {
    id: j.FromImageID,
    labels: c.Labels ?? {},
    entrypoint: c.Entrypoint ?? [],
    cmd: c.Cmd ?? [],
    env: envFromConfig(c.Env),
    workdir: c.WorkingDir || "/",
    user: c.User ?? "",
  };
}

function sha256File(file: string): string {
  return createHash("sha256").update(fs.readFileSync(file)).digest("hex");
}

/** Content digests of a context path's files (a directory: every file below it), by path. */
function fileDigests(rel: string): Record<string, string> {
  const abs = path.join(repoRoot, rel);
  if (!fs.existsSync(abs)) throw new Error(`${rel} (copied by a Dockerfile) does not exist`);
  const out: Record<string, string> = {};
  const walk = (p: string) => {
    const st = fs.statSync(p);
    if (st.isDirectory()) for (const e of fs.readdirSync(p).sort()) walk(path.join(p, e));
    else out[`file:${path.relative(repoRoot, p)}`] = `${sha256File(p)}:${st.mode & 0o111}`;
  };
  walk(abs);
  return out;
}

/** Prints a line every 30 s while `promise` runs, so a slow step shows it is alive. */
async function withHeartbeat<T>(what: string, log: Log, promise: Promise<T>): Promise<T> {
  const t0 = Date.now();
  const timer = setInterval(
    () => log(`${what}: still running (${Math.round((Date.now() - t0) / 1000)} s)`),
    30_000,
  );
  try {
    return await promise;
  } finally {
    clearInterval(timer);
  }
}

/** Runs a command, logging its output lines that `show` picks; rejects with the output's tail. */
function runLogged(
  command: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; log: Log; show: (line: string) => boolean },
): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      env: opts.env ?? process.env,
      cwd: opts.cwd ?? repoRoot,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const t0 = Date.now();
    let tail = "";
    let partial = "";
    const onData = (chunk: Buffer) => {
      const text = partial + chunk.toString("utf8");
      const lines = text.split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines) {
        tail = (tail + line + "\n").slice(-6000);
        if (opts.show(line)) opts.log(`[${Math.round((Date.now() - t0) / 1000)} s] ${line.trim()}`);
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("error", reject);
    child.on("close", code =>
      code === 0
        ? resolve()
        : reject(new Error(`${command} ${args.join(" ")} failed (exit ${code}):\n${tail}`)),
    );
  });
}

// --- The base image, made locally ---------------------------------------------------------------

/** The base every Dockerfile here starts FROM, and the only one that can be made without a registry. */
export const baseImage = "docker.io/library/node:20-bookworm-slim";
const debianSuite = "bookworm";
/** Bump when the recipe below changes, so cached bases are remade. */
const baseRecipe = "1";

/** npm of the Node running this (its global install, as Debian/NodeSource packages lay it out). */
function hostNpmDir(): string {
  const dir = path.join(path.dirname(path.dirname(process.execPath)), "lib", "node_modules", "npm");
  if (!fs.existsSync(path.join(dir, "package.json"))) {
    throw new Error(
      `npm not found at ${dir}: install Node.js 20 with its npm (e.g. NodeSource's nodejs package)`,
    );
  }
  return dir;
}

/** Debian bookworm (debootstrap minbase) as a tar file, made once (~2 min) into the cache. */
async function debianRootfsTar(log: Log): Promise<string> {
  const dir = path.join(envConfig().cacheDir, "images");
  const tar = path.join(dir, `debian-${debianSuite}-minbase.tar`);
  if (fs.existsSync(tar)) return tar;
  fs.mkdirSync(dir, { recursive: true });
  if (spawnSync("debootstrap", ["--version"]).error) {
    throw new Error(
      "debootstrap not found: install it with apt-get install -y debootstrap (it makes the Debian base of node:20-bookworm-slim here)",
    );
  }
  const root = fs.mkdtempSync(path.join(dir, "rootfs-"));
  try {
    const mirror = process.env.MODELROLLOUT_DEBIAN_MIRROR ?? "http://deb.debian.org/debian";
    log(`debootstrap --variant=minbase ${debianSuite} from ${mirror} (~2 min, once)`);
    await withHeartbeat(
      "debootstrap",
      log,
      runLogged("debootstrap", ["--variant=minbase", debianSuite, root, mirror], {
        log,
        show: l => /^I: (Retrieving Release|Installing core packages|Base system)/.test(l),
      }),
    );
    // As the official slim image: no package lists, downloaded packages or documentation.
    for (const p of [
      "var/cache/apt/archives",
      "var/lib/apt/lists",
      "usr/share/doc",
      "usr/share/man",
      "usr/share/info",
      "usr/share/locale",
    ]) {
      const abs = path.join(root, p);
      for (const e of fs.existsSync(abs) ? fs.readdirSync(abs) : []) {
        if (e !== "partial" && e !== "lock")
          fs.rmSync(path.join(abs, e), { recursive: true, force: true });
      }
    }
    const tmp = `${tar}.partial`;
    await runLogged("tar", ["-C", root, "-cf", tmp, "."], { log, show: () => true });
    fs.renameSync(tmp, tar);
    return tar;
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}

/** node:20-bookworm-slim, made locally (see the top of this file); returns its image ID. */
export async function ensureBaseImage(log: Log = stderrLog, force = false): Promise<string> {
  const npmDir = hostNpmDir();
  const npmVersion = JSON.parse(fs.readFileSync(path.join(npmDir, "package.json"), "utf8")).version;
  if (!process.version.startsWith("v20.")) {
    throw new Error(
      `${baseImage} is made from this machine's Node, which is ${process.version}: run hack/images.ts with Node 20`,
    );
  }
  const digest = inputsDigest({
    recipe: baseRecipe,
    suite: debianSuite,
    node: `${process.version}:${sha256File(process.execPath)}`,
    npm: npmVersion,
  });
  const existing = inspectImage(baseImage);
  if (!force && existing?.labels[inputsLabel] === digest) return existing.id;
  const tar = await debianRootfsTar(log);
  log(
    `making ${baseImage}: Debian ${debianSuite} + Node ${process.version} and npm ${npmVersion} of this machine`,
  );
  const ctr = buildah(["from", "scratch"]).trim();
  try {
    buildah(["add", ctr, tar, "/"]);
    const root = buildah(["mount", ctr]).trim();
    fs.mkdirSync(path.join(root, "usr/local/bin"), { recursive: true });
    fs.mkdirSync(path.join(root, "usr/local/lib/node_modules"), { recursive: true });
    fs.copyFileSync(process.execPath, path.join(root, "usr/local/bin/node"));
    fs.chmodSync(path.join(root, "usr/local/bin/node"), 0o755);
    fs.cpSync(npmDir, path.join(root, "usr/local/lib/node_modules/npm"), {
      recursive: true,
      verbatimSymlinks: true,
    });
    fs.symlinkSync("../lib/node_modules/npm/bin/npm-cli.js", path.join(root, "usr/local/bin/npm"));
    fs.symlinkSync("../lib/node_modules/npm/bin/npx-cli.js", path.join(root, "usr/local/bin/npx"));
    // The official image's user (picker/Dockerfile runs as it).
    fs.appendFileSync(path.join(root, "etc/passwd"), "node:x:1000:1000::/home/node:/bin/bash\n");
    fs.appendFileSync(path.join(root, "etc/group"), "node:x:1000:\n");
    fs.mkdirSync(path.join(root, "home/node"), { recursive: true });
    fs.chownSync(path.join(root, "home/node"), 1000, 1000);
    buildah(["umount", ctr]);
    buildah([
      "config",
      "--env",
      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      "--env",
      `NODE_VERSION=${process.version.slice(1)}`,
      "--cmd",
      "node",
      "--label",
      `${inputsLabel}=${digest}`,
      "--label",
      "dev.modelrollout.base=made locally by hack/images.ts (debootstrap + this machine's Node)",
      ctr,
    ]);
    log(`committing ${baseImage} (~1-2 min)`);
    await withHeartbeat(
      "commit",
      log,
      runLogged("buildah", [...buildahGlobal(), "commit", "--rm", ctr, baseImage], {
        log,
        show: () => false,
      }),
    );
  } catch (err) {
    buildah(["rm", ctr], { allowFail: true });
    throw err;
  }
  return inspectImage(baseImage)!.id;
}

// --- pepr build --------------------------------------------------------------------------------

/** Where `pepr build` writes the operator's module and manifests (inside the repository, so the
 *  module it loads to read its configuration resolves the repository's node_modules). */
export const peprBuildDir = path.join(repoRoot, ".local", "images", "pepr-build");

export interface PeprBuild {
  /** pepr-module-<uuid>.yaml: every object `pepr deploy` would apply, the module Secret included. */
  manifests: string;
  /** The bundled module (pepr-<uuid>.js). */
  module: string;
}

/** The sources `pepr build` bundles into the module: pepr.ts and what it imports. */
const peprInputs = [
  "pepr.ts",
  "capabilities",
  "package.json",
  "package-lock.json",
  "tsconfig.json",
];

/** `npx pepr build -i <operator image>`, cached by its inputs and the image name. */
export async function peprBuild(
  ref: string,
  log: Log = stderrLog,
  force = false,
): Promise<PeprBuild> {
  const uuid = JSON.parse(fs.readFileSync(path.join(repoRoot, "package.json"), "utf8")).pepr.uuid;
  const result = {
    manifests: path.join(peprBuildDir, `pepr-module-${uuid}.yaml`),
    module: path.join(peprBuildDir, `pepr-${uuid}.js`),
  };
  const inputs: Record<string, string> = { image: ref };
  for (const p of peprInputs) Object.assign(inputs, fileDigests(p));
  const digest = inputsDigest(inputs);
  const stamp = path.join(peprBuildDir, "inputs.digest");
  if (
    !force &&
    fs.existsSync(stamp) &&
    fs.readFileSync(stamp, "utf8") === digest &&
    fs.existsSync(result.manifests)
  ) {
    log(`pepr build: up to date (${path.relative(repoRoot, result.manifests)})`);
    return result;
  }
  fs.rmSync(peprBuildDir, { recursive: true, force: true });
  log(`npx pepr build -i ${ref} (~1-3 min: type check, bundle, manifests)`);
  await withHeartbeat(
    "pepr build",
    log,
    runLogged(
      process.execPath,
      [
        path.join(repoRoot, "node_modules", "pepr", "dist", "cli.js"),
        "build",
        "-i",
        ref,
        "-o",
        path.relative(repoRoot, peprBuildDir),
      ],
      { log, show: l => /saved to|Error|error TS/.test(l) },
    ),
  );
  if (!fs.existsSync(result.manifests)) throw new Error(`pepr build wrote no ${result.manifests}`);
  fs.writeFileSync(stamp, digest);
  return result;
}

// --- The project's images ----------------------------------------------------------------------

/**
 * Build-time settings for a RUN step's npm on this machine: its CA bundle when it has one
 * (a TLS-inspecting proxy here), mounted only while building — never in a layer.
 */
function buildMounts(): string[] {
  const npmCafile = spawnSync("npm", ["config", "get", "cafile"], {
    encoding: "utf8",
  }).stdout?.trim();
  const ca = [npmCafile, process.env.NODE_EXTRA_CA_CERTS].find(
    f => f && f !== "null" && fs.existsSync(f),
  );
  if (!ca) return [];
  const dir = path.join(envConfig().cacheDir, "images", "build-config");
  fs.mkdirSync(dir, { recursive: true });
  fs.copyFileSync(ca, path.join(dir, "ca.crt"));
  fs.writeFileSync(
    path.join(dir, "npmrc"),
    "cafile=/etc/ssl/certs/build-ca.crt\nupdate-notifier=false\n",
  );
  return [
    "-v",
    `${path.join(dir, "ca.crt")}:/etc/ssl/certs/build-ca.crt:ro`,
    // npm's global configuration file of the image's npm (prefix /usr/local).
    "-v",
    `${path.join(dir, "npmrc")}:/usr/local/etc/npmrc:ro`,
  ];
}

export interface BuiltImage {
  ref: string;
  id: string;
  /** False when the cached image was up to date. */
  built: boolean;
  /** The operator's `pepr build` output. */
  pepr?: PeprBuild;
}

/** Builds one of the project's images unless the cached one has the same inputs. */
export async function ensureImage(
  image: ProjectImage,
  log: Log = stderrLog,
  force = false,
): Promise<BuiltImage> {
  const ref = imageRef(image, version(), process.env);
  requireRoot(`building ${ref}`);
  const dockerfile = projectImages[image].dockerfile;
  const text = fs.readFileSync(path.join(repoRoot, dockerfile), "utf8");
  const inputs: Record<string, string> = { dockerfile: text };
  for (const base of externalBases(text)) {
    if (`docker.io/library/${base}` !== baseImage && base !== baseImage) {
      throw new Error(
        `${dockerfile}: FROM ${base} cannot be pulled here (no registry) and hack/images.ts makes only ${baseImage}: use that base`,
      );
    }
    inputs[`base:${base}`] = await ensureBaseImage(log);
  }
  for (const src of contextSources(text)) Object.assign(inputs, fileDigests(src));
  const pepr = image === "operator" ? await peprBuild(ref, log, force) : undefined;
  const digest = inputsDigest(inputs);
  const existing = inspectImage(ref);
  if (!force && existing?.labels[inputsLabel] === digest) {
    log(`${ref}: up to date (inputs ${digest.slice(0, 12)})`);
    return { ref, id: existing.id, built: false, pepr };
  }
  log(`building ${ref} from ${dockerfile} (buildah, chroot isolation; several minutes on 2 cores)`);
  const t0 = Date.now();
  await withHeartbeat(
    `build ${image}`,
    log,
    runLogged(
      "buildah",
      [
        ...buildahGlobal(),
        "build",
        "--pull=never",
        "--isolation",
        "chroot",
        "--layers",
        "--label",
        `${inputsLabel}=${digest}`,
        ...buildMounts(),
        "-f",
        dockerfile,
        "-t",
        ref,
        ".",
      ],
      { log, show: l => /STEP \d|^Error|error:|ERR!/.test(l) },
    ),
  );
  const built = inspectImage(ref);
  if (!built) throw new Error(`buildah build reported success but ${ref} is not there`);
  log(`${ref}: built in ${Math.round((Date.now() - t0) / 1000)} s (${built.id.slice(0, 12)})`);
  return { ref, id: built.id, built: true, pepr };
}

// --- Running a built image ---------------------------------------------------------------------

/** Where tests put a kubeconfig into an image's filesystem (as a Secret volume would). */
export const imageKubeconfigPath = "/etc/modelrollout/kubeconfig";

export interface ImageFilesystem {
  ref: string;
  /** The container's filesystem on this machine. */
  root: string;
  config: ImageConfig;
  /** Writes a file into the container (as a volume mount would put it there). */
  writeFile(pathInImage: string, content: string | Buffer, mode?: number): void;
  /**
   * The command line that runs `argv` (default: ENTRYPOINT + CMD; `args` replace CMD) in the
   * image's filesystem as its USER, from its WORKDIR, with exactly its ENV plus `env`.
   */
  command(opts?: { args?: string[]; env?: Record<string, string> }): {
    command: string;
    args: string[];
  };
  /** Removes the container (its filesystem and everything written into it). */
  remove(): void;
}

/** A buildah container of `ref`, mounted: the filesystem a container of the image starts with. */
export function openImage(ref: string): ImageFilesystem {
  requireRoot(`running ${ref}`);
  const config = inspectImage(ref);
  if (!config) throw new Error(`no local image ${ref}: build it first (npx tsx hack/images.ts)`);
  const ctr = buildah(["from", "--pull=never", ref]).trim().split("\n").pop()!;
  const root = buildah(["mount", ctr]).trim();
  const read = (p: string) => fs.readFileSync(path.join(root, p), "utf8");
  return {
    ref,
    root,
    config,
    writeFile(pathInImage, content, mode = 0o644) {
      const abs = path.join(root, pathInImage);
      // An absolute symlink in the image (Debian's /var/run -> /run) would lead out of it.
      let existing = path.dirname(abs);
      while (!fs.existsSync(existing)) existing = path.dirname(existing);
      const real = fs.realpathSync(existing);
      if (!`${real}/`.startsWith(`${fs.realpathSync(root)}/`)) {
        throw new Error(
          `${pathInImage} leads out of the image ${ref} (through a symlink to ${real}): write elsewhere`,
        );
      }
      fs.mkdirSync(path.dirname(abs), { recursive: true });
      fs.writeFileSync(abs, content, { mode });
      const { uid, gid } = resolveUser(config.user, read("etc/passwd"), read("etc/group"));
      fs.chownSync(abs, uid, gid);
    },
    command(opts = {}) {
      const { uid, gid, home } = resolveUser(config.user, read("etc/passwd"), read("etc/group"));
      return chrootCommand({
        root,
        uid,
        gid,
        workdir: config.workdir,
        env: { HOME: home, ...config.env, ...opts.env },
        argv: [...config.entrypoint, ...(opts.args ?? config.cmd)],
      });
    },
    remove() {
      buildah(["umount", ctr], { allowFail: true });
      buildah(["rm", ctr], { allowFail: true });
    },
  };
}

// --- CLI ---------------------------------------------------------------------------------------

async function main(argv: string[]): Promise<void> {
  const force = argv.includes("--force");
  const which = argv.filter(a => !a.startsWith("--"));
  const names = (
    which.length === 0 || which.includes("all") ? Object.keys(projectImages) : which
  ) as ProjectImage[];
  for (const n of names) {
    if (!(n in projectImages)) {
      throw new Error(
        `unknown image '${n}': choose from ${Object.keys(projectImages).join(", ")} or all`,
      );
    }
  }
  for (const n of names) {
    const r = await ensureImage(n, stderrLog, force);
    process.stdout.write(
      `${r.ref} ${r.id}${r.pepr ? ` ${path.relative(repoRoot, r.pepr.manifests)}` : ""}\n`,
    );
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).catch(err => {
    process.stderr.write(`[images] ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
