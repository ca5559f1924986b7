// Command line of `kubectl modelrollout` (pure): argv in, a command and the kubectl calls out.
import { parseArgs } from "node:util";
import { ACTION_ANNOTATION, type ManualAction } from "../capabilities/api/constants";
export const RESOURCE = "modelrollouts.rollouts.inference.dev";

export const usage = `kubectl modelrollout - watch and steer ModelRollouts (rollouts.inference.dev)

Usage:
  kubectl modelrollout get [NAME] [-w|--watch]   steps, weights and gate results at a glance
  kubectl modelrollout promote NAME [--full]     past the current pause or gate (--full: to the end)
  kubectl modelrollout abort NAME                all traffic back to stable, phase Aborted
  kubectl modelrollout retry NAME                start a Failed or Aborted rollout again from step 0
  kubectl modelrollout pause NAME                hold at the current step (spec.paused: true)
  kubectl modelrollout resume NAME               continue (spec.paused: false)

Flags:
  -n, --namespace NS    namespace (default: the kubeconfig context's)
  -A, --all-namespaces  get: list the rollouts of every namespace
      --context NAME    kubeconfig context
      --kubeconfig FILE kubeconfig file (default: $KUBECONFIG or ~/.kube/config)
      --no-wait         do not wait for the operator to confirm an action
  -h, --help            this text

promote, abort and retry set the annotation ${ACTION_ANNOTATION}=<action> (--overwrite); the
operator performs it once, records it in status.lastAction and removes the annotation. --watch
redraws on every change and ends once every rollout shown has finished. The kubectl binary is
$KUBECTL, else \`kubectl\` on PATH.`;

export class UsageError extends Error {}

export type Command =
  | { verb: "help" }
  | { verb: "get"; name?: string; watch: boolean; allNamespaces: boolean; global: GlobalFlags }
  | { verb: "action"; action: ManualAction; name: string; wait: boolean; global: GlobalFlags }
  | { verb: "pause" | "resume"; name: string; wait: boolean; global: GlobalFlags };

export interface GlobalFlags {
  namespace?: string;
  context?: string;
  kubeconfig?: string;
}

const VERBS = ["get", "promote", "abort", "retry", "pause", "resume"];

const OPTIONS = {
  help: { type: "boolean", short: "h" },
  namespace: { type: "string", short: "n" },
  context: { type: "string" },
  kubeconfig: { type: "string" },
  watch: { type: "boolean", short: "w" },
  full: { type: "boolean" },
  "no-wait": { type: "boolean" },
  "all-namespaces": { type: "boolean", short: "A" },
} as const;

export function parseCli(argv: string[]): Command {
  // Not strict: parseArgs would throw its own messages and before looking at --help. The tokens
  // keep kubectl-like order instead: the first of --help and a usage error in argv wins.
  const { values, positionals, tokens } = parseArgs({
    args: argv,
    options: OPTIONS,
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  for (const token of tokens) {
    if (token.kind === "option-terminator") throw new UsageError("unknown flag --");
    if (token.kind !== "option") continue;
    if (token.name === "help") return { verb: "help" };
    if (!Object.hasOwn(OPTIONS, token.name))
      throw new UsageError(`unknown flag ${argv[token.index]}`);
    if (OPTIONS[token.name as keyof typeof OPTIONS].type === "string" && !token.value)
      throw new UsageError(`${token.rawName} needs a value`);
  }
  const global: GlobalFlags = {};
  if (values.namespace !== undefined) global.namespace = String(values.namespace);
  if (values.context !== undefined) global.context = String(values.context);
  if (values.kubeconfig !== undefined) global.kubeconfig = String(values.kubeconfig);
  // A boolean flag given as --flag=anything still counts as given, as it always did.
  const watch = values.watch !== undefined;
  const full = values.full !== undefined;
  const wait = values["no-wait"] === undefined;
  const allNamespaces = values["all-namespaces"] !== undefined;
  const [verb, name, ...extra] = positionals;
  if (!verb) return { verb: "help" };
  if (!VERBS.includes(verb))
    throw new UsageError(`unknown command "${verb}" (commands: ${VERBS.join(", ")})`);
  if (extra.length) throw new UsageError(`unexpected argument "${extra[0]}"`);
  if (verb !== "promote" && full) throw new UsageError("--full belongs to promote");
  if (verb === "get") {
    if (allNamespaces && name)
      throw new UsageError("get NAME and --all-namespaces exclude each other");
    return { verb, name, watch, allNamespaces, global };
  }
  if (watch) throw new UsageError("--watch belongs to get");
  if (allNamespaces) throw new UsageError("--all-namespaces belongs to get");
  if (!name) throw new UsageError(`${verb} needs the name of a ModelRollout`);
  if (verb === "pause" || verb === "resume") return { verb, name, wait, global };
  const action: ManualAction =
    verb === "promote" ? (full ? "promote-full" : "promote") : (verb as ManualAction);
  return { verb: "action", action, name, wait, global };
}

/** kubectl flags every call carries. */
export function globalArgs(g: GlobalFlags): string[] {
  return [
    ...(g.kubeconfig ? ["--kubeconfig", g.kubeconfig] : []),
    ...(g.context ? ["--context", g.context] : []),
    ...(g.namespace ? ["--namespace", g.namespace] : []),
  ];
}

/** The kubectl call that asks the operator for a one-off action. */
export function actionArgs(g: GlobalFlags, name: string, action: ManualAction): string[] {
  return [
    ...globalArgs(g),
    "annotate",
    RESOURCE,
    name,
    `${ACTION_ANNOTATION}=${action}`,
    "--overwrite",
    "-o",
    "json",
  ];
}

/** The kubectl call that pauses (true) or resumes (false) through spec.paused. */
export function pausedArgs(g: GlobalFlags, name: string, paused: boolean): string[] {
  return [
    ...globalArgs(g),
    "patch",
    RESOURCE,
    name,
    "--type=merge",
    "-p",
    JSON.stringify({ spec: { paused } }),
    "-o",
    "json",
  ];
}

export function getArgs(
  g: GlobalFlags,
  name: string | undefined,
  allNamespaces: boolean,
): string[] {
  return [
    ...globalArgs(g),
    "get",
    RESOURCE,
    ...(name ? [name] : []),
    ...(allNamespaces ? ["--all-namespaces"] : []),
    "-o",
    "json",
  ];
}

/** Events of one rollout; with its uid, not those of an earlier object of the same name. */
export function eventArgs(g: GlobalFlags, name: string, uid?: string): string[] {
  return [
    ...globalArgs(g),
    "get",
    "events",
    "--field-selector",
    `involvedObject.kind=ModelRollout,involvedObject.name=${name}${uid ? `,involvedObject.uid=${uid}` : ""}`,
    "-o",
    "json",
  ];
}
