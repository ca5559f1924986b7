// Builds a Dockerfile's image as a directory tree, for machines without a Docker engine (the
// build machine has only the docker client). Every stage's FROM, WORKDIR, ENV, COPY and RUN are
// carried out in a folder of its own, in order, and the last stage's ENTRYPOINT and CMD come
// back to run from its WORKDIR. What stands in for Docker: this machine's Node and
// Debian for the base image (the picker's is node:20-bookworm-slim: the same Node 20 line), a
// folder for each stage's filesystem, the user's own account for USER. What is real: the copied
// files, the commands the RUN lines say (npm ci from the lockfile, the esbuild bundle) and the
// entry point run from the resulting tree, so a missing file or a production-only install that
// lacks a module fails here as it would in the image.
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

export interface DockerInstruction {
  op: string;
  args: string;
  /** First line of the instruction in the Dockerfile. */
  line: number;
}

/** Instructions of a Dockerfile: continuation lines joined, comments and blank lines dropped. */
export function parseDockerfile(text: string): DockerInstruction[] {
  const out: DockerInstruction[] = [];
  let pending = "";
  let start = 0;
  text.split("\n").forEach((raw, i) => {
    const line = raw.trimEnd();
    // Docker drops comment lines, also between the continued lines of one instruction.
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

export interface ImageTree {
  /** The last stage's filesystem. */
  root: string;
  /** Its WORKDIR, on this machine. */
  workdir: string;
  /** ENTRYPOINT (exec form): `docker run IMAGE ARGS...` runs it followed by ARGS... */
  entrypoint: string[];
  /** CMD (exec form): the arguments when `docker run` is given none. */
  cmd: string[];
  /** The last stage's ENV. */
  env: Record<string, string>;
}

interface Stage {
  name?: string;
  root: string;
  workdir: string;
  env: Record<string, string>;
  entrypoint: string[];
  cmd: string[];
}

/** `["a", "b"]` (exec form); the shell form is not needed by our images and not supported. */
function execForm(ins: DockerInstruction): string[] {
  try {
    const v: unknown = JSON.parse(ins.args);
    if (Array.isArray(v) && v.every(x => typeof x === "string")) return v;
  } catch {
    // fall through
  }
  throw new Error(`Dockerfile line ${ins.line}: ${ins.op} must be a JSON array (exec form)`);
}

function envPairs(ins: DockerInstruction): Record<string, string> {
  // Quoting and $VAR substitution are not implemented: refuse rather than differ from Docker.
  if (/["'$\\]/.test(ins.args)) {
    throw new Error(`Dockerfile line ${ins.line}: ENV with quotes or $ is not supported here`);
  }
  if (!ins.args.includes("=")) {
    const [key, ...rest] = ins.args.split(/\s+/);
    return { [key]: rest.join(" ") };
  }
  return Object.fromEntries(
    ins.args.split(/\s+/).map(pair => {
      const eq = pair.indexOf("=");
      return [pair.slice(0, eq), pair.slice(eq + 1).replace(/^"(.*)"$/, "$1")];
    }),
  );
}

function runShell(
  command: string,
  cwd: string,
  env: Record<string, string>,
  where: string,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn("sh", ["-c", command], { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (c: Buffer) => (output += c.toString()));
    child.stderr.on("data", (c: Buffer) => (output += c.toString()));
    child.on("error", reject);
    child.on("close", code =>
      code === 0
        ? resolve()
        : reject(
            new Error(`${where}: RUN ${command} failed (exit ${code}):\n${output.slice(-4000)}`),
          ),
    );
  });
}

/**
 * Carries out `dockerfile` with `context` as the build context into `outDir` (emptied first).
 * `log` receives one line per step, with the time the slow ones took.
 */
export async function buildImageTree(
  dockerfile: string,
  context: string,
  outDir: string,
  log: (message: string) => void = () => undefined,
): Promise<ImageTree> {
  const instructions = parseDockerfile(fs.readFileSync(dockerfile, "utf8"));
  fs.rmSync(outDir, { recursive: true, force: true });
  fs.mkdirSync(outDir, { recursive: true });
  // RUN lines get a clean environment (no npm_* settings of the npm that runs this) and an npm
  // cache of their own, seeded from this machine's (before the first RUN that uses npm) so that
  // `npm ci` need not download what it has; `npm cache clean` in a RUN line then empties only
  // that copy.
  const npmCache = path.join(outDir, "npm-cache");
  const hostCache = path.join(
    process.env.npm_config_cache ?? path.join(process.env.HOME ?? "/root", ".npm"),
    "_cacache",
  );
  let npmCacheSeeded = false;
  const seedNpmCache = () => {
    if (npmCacheSeeded || !fs.existsSync(hostCache)) return;
    fs.cpSync(hostCache, path.join(npmCache, "_cacache"), { recursive: true });
    npmCacheSeeded = true;
  };
  const baseEnv: Record<string, string> = {
    PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin",
    HOME: outDir,
    npm_config_cache: npmCache,
    npm_config_update_notifier: "false",
    npm_config_fund: "false",
    npm_config_audit: "false",
  };
  const stages: Stage[] = [];
  const where = (ins: DockerInstruction) => `${path.basename(dockerfile)} line ${ins.line}`;
  const inStage = (s: Stage, p: string) =>
    path.join(s.root, path.isAbsolute(p) ? p : path.join(s.workdir, p));

  for (const ins of instructions) {
    const stage = stages[stages.length - 1];
    if (ins.op !== "FROM" && !stage) throw new Error(`${where(ins)}: ${ins.op} before FROM`);
    switch (ins.op) {
      case "FROM": {
        const [image, as, name] = ins.args.split(/\s+/);
        if (image.startsWith("--") || stages.some(s => s.name === image)) {
          throw new Error(
            `${where(ins)}: FROM ${image}: flags and earlier stages as a base are not supported here`,
          );
        }
        const root = path.join(outDir, `stage-${stages.length}`);
        fs.mkdirSync(root);
        stages.push({
          name: as?.toUpperCase() === "AS" ? name : undefined,
          root,
          workdir: "/",
          env: {},
          entrypoint: [],
          cmd: [],
        });
        log(`FROM ${image}: this machine's Node ${process.version} and Debian stand in for it`);
        break;
      }
      case "WORKDIR":
        stage.workdir = path.posix.resolve(stage.workdir, ins.args);
        fs.mkdirSync(path.join(stage.root, stage.workdir), { recursive: true });
        break;
      case "ENV":
        Object.assign(stage.env, envPairs(ins));
        break;
      case "COPY": {
        const words = ins.args.split(/\s+/);
        const from = words.find(w => w.startsWith("--from="))?.slice("--from=".length);
        const [dest, ...sourcesReversed] = words.filter(w => !w.startsWith("--")).reverse();
        const sources = sourcesReversed.reverse();
        const source = from === undefined ? undefined : stages.find(s => s.name === from);
        if (from !== undefined && !source) throw new Error(`${where(ins)}: no stage named ${from}`);
        const target = inStage(stage, dest);
        if (sources.length > 1 && !dest.endsWith("/")) {
          throw new Error(
            `${where(ins)}: COPY with several sources needs a destination ending in /`,
          );
        }
        const intoDir =
          dest.endsWith("/") || (fs.existsSync(target) && fs.statSync(target).isDirectory());
        for (const src of sources) {
          const abs = source
            ? path.join(source.root, path.posix.resolve("/", src))
            : path.join(context, src);
          if (!fs.existsSync(abs)) throw new Error(`${where(ins)}: COPY ${src}: no such file`);
          if (fs.statSync(abs).isDirectory()) {
            // Docker copies a directory's contents, not the directory itself.
            fs.cpSync(abs, target, { recursive: true, verbatimSymlinks: true });
          } else {
            const file = intoDir ? path.join(target, path.basename(abs)) : target;
            fs.mkdirSync(path.dirname(file), { recursive: true });
            fs.copyFileSync(abs, file);
          }
        }
        break;
      }
      case "RUN": {
        const t0 = performance.now();
        log(`RUN ${ins.args}`);
        if (/\bnp[mx]\b/.test(ins.args)) seedNpmCache();
        await runShell(
          ins.args,
          path.join(stage.root, stage.workdir),
          { ...baseEnv, ...stage.env },
          where(ins),
        );
        log(`  done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
        break;
      }
      case "ENTRYPOINT":
        stage.entrypoint = execForm(ins);
        break;
      case "CMD":
        stage.cmd = execForm(ins);
        break;
      case "USER":
      case "EXPOSE":
      case "LABEL":
        break; // nothing to build: the process runs as this user, ports are the caller's
      default:
        throw new Error(`${where(ins)}: ${ins.op} is not supported without a Docker engine`);
    }
  }
  const last = stages[stages.length - 1];
  if (!last) throw new Error(`${dockerfile}: no FROM`);
  return {
    root: last.root,
    workdir: path.join(last.root, last.workdir),
    entrypoint: last.entrypoint,
    cmd: last.cmd,
    env: last.env,
  };
}
