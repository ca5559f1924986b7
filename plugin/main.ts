// `kubectl modelrollout ...` (bin/kubectl-modelrollout runs this with tsx). Every read and write
// goes through kubectl, so the user's kubeconfig, context, namespace and auth plugins apply as they
// do for kubectl itself.
import { execFile } from "node:child_process";
import {
  actionArgs,
  Command,
  eventArgs,
  getArgs,
  GlobalFlags,
  parseCli,
  pausedArgs,
  usage,
  UsageError,
} from "./cli";
import { EventJson, formatDetail, formatTable, isFinished, RolloutJson } from "./format";

const kubectlBinary = process.env.KUBECTL || "kubectl";
const WAIT_MS = 10_000;
const POLL_MS = 500;

class KubectlError extends Error {}

function kubectl(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(kubectlBinary, args, { maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (!err) return resolve(stdout);
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT")
        return reject(
          new KubectlError(`${kubectlBinary} not found: put kubectl on PATH or set KUBECTL`),
        );
      reject(new KubectlError((stderr || err.message).trim()));
    });
  });
}

const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

async function getRollouts(
  g: GlobalFlags,
  name: string | undefined,
  all: boolean,
): Promise<RolloutJson[]> {
  const parsed = JSON.parse(await kubectl(getArgs(g, name, all))) as RolloutJson & {
    items?: RolloutJson[];
  };
  return name ? [parsed] : (parsed.items ?? []);
}

async function getEvents(g: GlobalFlags, r: RolloutJson): Promise<EventJson[]> {
  const ns = r.metadata.namespace ? { ...g, namespace: r.metadata.namespace } : g;
  const list = JSON.parse(await kubectl(eventArgs(ns, r.metadata.name, r.metadata.uid))) as {
    items?: EventJson[];
  };
  const when = (e: EventJson) =>
    Date.parse(e.lastTimestamp ?? e.eventTime ?? e.firstTimestamp ?? "") || 0;
  return (list.items ?? []).sort((a, b) => when(a) - when(b));
}

async function render(
  cmd: Extract<Command, { verb: "get" }>,
): Promise<{ text: string; key: string; done: boolean }> {
  const rollouts = await getRollouts(cmd.global, cmd.name, cmd.allNamespaces);
  const done = rollouts.length > 0 && rollouts.every(isFinished);
  if (cmd.name) {
    const events = await getEvents(cmd.global, rollouts[0]);
    return {
      text: formatDetail(rollouts[0], events, new Date()),
      key: JSON.stringify([rollouts[0].status, rollouts[0].spec?.paused, events.length]),
      done,
    };
  }
  const text = cmd.allNamespaces
    ? rollouts
        .map(r => r.metadata.namespace ?? "")
        .filter((ns, i, all) => all.indexOf(ns) === i)
        .map(
          ns =>
            `Namespace ${ns}:\n${formatTable(rollouts.filter(r => r.metadata.namespace === ns))}`,
        )
        .join("\n\n") || "No ModelRollouts found."
    : formatTable(rollouts);
  return { text, key: text, done };
}

async function get(cmd: Extract<Command, { verb: "get" }>): Promise<number> {
  if (!cmd.watch) {
    process.stdout.write(`${(await render(cmd)).text}\n`);
    return 0;
  }
  const tty = process.stdout.isTTY === true;
  let lastKey = "";
  for (;;) {
    const view = await render(cmd);
    if (tty) {
      // Redraw in place on a terminal; a log gets a new block per change instead.
      process.stdout.write(`\x1b[H\x1b[2J${view.text}\n`);
    } else if (view.key !== lastKey) {
      process.stdout.write(`--- ${new Date().toISOString()}\n${view.text}\n`);
    }
    lastKey = view.key;
    if (view.done) return 0;
    await sleep(1000);
  }
}

async function action(cmd: Extract<Command, { verb: "action" }>): Promise<number> {
  const [before] = await getRollouts(cmd.global, cmd.name, false);
  const previous = JSON.stringify(before.status?.lastAction ?? null);
  await kubectl(actionArgs(cmd.global, cmd.name, cmd.action));
  process.stdout.write(`modelrollout/${cmd.name}: asked for ${cmd.action}\n`);
  if (!cmd.wait) return 0;
  const deadline = Date.now() + WAIT_MS;
  while (Date.now() < deadline) {
    await sleep(POLL_MS);
    const [r] = await getRollouts(cmd.global, cmd.name, false);
    const last = r.status?.lastAction;
    if (last && JSON.stringify(last) !== previous && last.action === cmd.action) {
      process.stdout.write(
        `modelrollout/${cmd.name}: ${last.action} ${last.result}${last.message ? `: ${last.message}` : ""}\n` +
          `phase ${r.status?.phase ?? "Pending"}${r.status?.message ? ` - ${r.status.message}` : ""}\n`,
      );
      return last.result === "Applied" ? 0 : 1;
    }
  }
  process.stderr.write(
    `modelrollout/${cmd.name}: the operator has not handled the action within ${WAIT_MS / 1000}s (is it running?); ` +
      `the annotation stays until it does\n`,
  );
  return 0;
}

async function setPaused(cmd: Extract<Command, { verb: "pause" | "resume" }>): Promise<number> {
  const paused = cmd.verb === "pause";
  const [before] = await getRollouts(cmd.global, cmd.name, false);
  const patched = JSON.parse(
    await kubectl(pausedArgs(cmd.global, cmd.name, paused)),
  ) as RolloutJson & {
    metadata: { generation?: number };
  };
  process.stdout.write(`modelrollout/${cmd.name}: spec.paused set to ${paused}\n`);
  if (!paused && before.spec?.paused !== true && before.status?.phase === "Paused") {
    process.stdout.write(
      `note: it was not paused by spec.paused but by "${before.status?.message ?? "a pause step or an inconclusive gate"}"; ` +
        `continue it with: kubectl modelrollout promote ${cmd.name}\n`,
    );
  }
  if (!cmd.wait) return 0;
  const generation = patched.metadata.generation ?? 0;
  const deadline = Date.now() + WAIT_MS;
  while (Date.now() < deadline) {
    const [r] = await getRollouts(cmd.global, cmd.name, false);
    const observed =
      (r.status as { observedGeneration?: number } | undefined)?.observedGeneration ?? 0;
    if (observed >= generation) {
      process.stdout.write(
        `phase ${r.status?.phase ?? "Pending"}${r.status?.message ? ` - ${r.status.message}` : ""}\n`,
      );
      return 0;
    }
    await sleep(POLL_MS);
  }
  process.stderr.write(
    `modelrollout/${cmd.name}: the operator has not seen the change within ${WAIT_MS / 1000}s (is it running?)\n`,
  );
  return 0;
}

export async function runCli(argv: string[]): Promise<number> {
  let cmd: Command;
  try {
    cmd = parseCli(argv);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`error: ${err.message}\n\n${usage}\n`);
      return 2;
    }
    throw err;
  }
  try {
    switch (cmd.verb) {
      case "help":
        process.stdout.write(`${usage}\n`);
        return 0;
      case "get":
        return await get(cmd);
      case "action":
        return await action(cmd);
      case "pause":
      case "resume":
        return await setPaused(cmd);
    }
  } catch (err) {
    if (err instanceof KubectlError) {
      process.stderr.write(`error: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}

runCli(process.argv.slice(2)).then(
  code => process.exit(code),
  err => {
    process.stderr.write(`error: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);
