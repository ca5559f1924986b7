// The args of the built-in gates: their kinds, the ones every gate shares (window, minRequests,
// namespaceLabel, selector, poolLabel), and the check of one arg value.

import { durationMs, isDuration } from "../../duration";
import {
  LABEL_NAME_RE,
  TemplateError,
  type LabelMatcher,
  formatLabelMatcher,
  parseLabelMatchers,
  placeholdersOf,
} from "../promql";

export type ArgKind =
  | "fraction"
  | "positive"
  | "count"
  | "duration"
  | "percent"
  | "labelName"
  | "selector"
  | "modelName"
  | "signals";

/** What paired-comparison can compare, in the order its `signals` arg lists them. */
export const PAIRED_SIGNALS = ["ttft", "itl", "errors"] as const;
export type PairedSignal = (typeof PAIRED_SIGNALS)[number];

/** The signals of a `signals` arg value ("ttft, errors"), or a readable error. */
export function parseSignals(value: string): { signals: PairedSignal[] } | { error: string } {
  const names = value.split(",").map(s => s.trim());
  const wrong = names.find(n => !(PAIRED_SIGNALS as readonly string[]).includes(n));
  if (wrong !== undefined) {
    return {
      error: `args.signals: ${JSON.stringify(wrong)} is not a signal (a comma list of ${PAIRED_SIGNALS.join(", ")})`,
    };
  }
  if (new Set(names).size !== names.length) {
    return { error: `args.signals names a signal twice: ${JSON.stringify(value)}` };
  }
  return { signals: PAIRED_SIGNALS.filter(s => names.includes(s)) };
}

export const NUMERIC_KINDS: readonly ArgKind[] = ["fraction", "positive", "count", "percent"];

export interface ArgSpec {
  kind: ArgKind;
  /** Default value; undefined means required (weight: taken from the rollout). */
  default?: string;
  help: string;
}

export const WINDOW: ArgSpec = { kind: "duration", default: "2m", help: "query window" };
export const MIN_REQUESTS: ArgSpec = {
  kind: "count",
  default: "20",
  help: "canary requests (observations) in the window below which the gate is Inconclusive",
};

/** Labels the gates set themselves; a user matcher on them would break canary/stable or p95. */
const RESERVED_LABELS = ["__name__", "pool", "target_model_name", "le"];

/** Placeholders a selector value may use (names, escaped like the rest). */
const SELECTOR_PLACEHOLDERS = ["namespace", "rollout", "modelName", "pool", "canary", "stable"];

export const SCOPE_ARGS: Record<string, ArgSpec> = {
  namespaceLabel: {
    kind: "labelName",
    help: "label carrying the scraped picker's namespace (usually namespace); when set, every series must have the rollout's namespace in it (default: not matched)",
  },
  selector: {
    kind: "selector",
    help: 'extra label matchers for every series, e.g. {cluster="eu-1", job=~"picker.*"}; values may use {{namespace}}, {{rollout}}, {{modelName}}, {{pool}}',
  },
  poolLabel: {
    kind: "labelName",
    default: "pool",
    help: "pools scope, metricsSource upstream-epp, llm-d or vllm: the target label the scrape puts the pool's name in (those metrics carry no pool label of their own)",
  },
};

const NUMBER_RE = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;

function checkLabelName(name: string, label: string): string | undefined {
  if (!LABEL_NAME_RE.test(label)) {
    return `args.${name}: ${JSON.stringify(label)} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*)`;
  }
  if (RESERVED_LABELS.includes(label)) {
    return `args.${name} cannot match ${label}: the gate sets it itself`;
  }
  return undefined;
}

/** The selector arg's matchers, or a readable error. */
function selectorMatchers(value: string): { matchers: LabelMatcher[] } | { error: string } {
  let matchers: LabelMatcher[];
  try {
    matchers = parseLabelMatchers(value);
  } catch (err) {
    if (err instanceof TemplateError) {
      return { error: `args.selector: ${err.message} (want label matchers like {cluster="eu-1"})` };
    }
    throw err;
  }
  for (const matcher of matchers) {
    const problem = checkLabelName("selector", matcher.label);
    if (problem) return { error: problem };
    let used: string[];
    try {
      used = placeholdersOf(formatLabelMatcher(matcher));
    } catch (err) {
      if (err instanceof TemplateError) return { error: `args.selector: ${err.message}` };
      throw err;
    }
    const wrong = used.find(p => !SELECTOR_PLACEHOLDERS.includes(p));
    if (wrong !== undefined) {
      const allowed = SELECTOR_PLACEHOLDERS.map(n => `{{${n}}}`).join(", ");
      return { error: `args.selector: {{${wrong}}} cannot be used here (${allowed} can)` };
    }
  }
  return { matchers };
}

/** A readable error for one arg value, or undefined when valid. */
export function checkArg(name: string, spec: ArgSpec, value: string): string | undefined {
  const n = NUMBER_RE.test(value.trim()) ? Number(value) : NaN;
  switch (spec.kind) {
    case "duration":
      return isDuration(value) && durationMs(value) > 0
        ? undefined
        : `args.${name} must be a positive duration like 30s or 2m, got ${JSON.stringify(value)}`;
    case "fraction":
      return n > 0 && n <= 1
        ? undefined
        : `args.${name} must be a number in (0, 1], got ${JSON.stringify(value)}`;
    case "positive":
      return n > 0 && Number.isFinite(n)
        ? undefined
        : `args.${name} must be a positive number, got ${JSON.stringify(value)}`;
    case "count":
      return Number.isInteger(n) && n >= 1
        ? undefined
        : `args.${name} must be a whole number >= 1, got ${JSON.stringify(value)}`;
    case "percent":
      return n >= 0 && n <= 100
        ? undefined
        : `args.${name} must be a number from 0 to 100, got ${JSON.stringify(value)}`;
    case "labelName":
      return checkLabelName(name, value);
    case "selector": {
      const parsed = selectorMatchers(value);
      return "error" in parsed ? parsed.error : undefined;
    }
    case "modelName":
      return value === ""
        ? `args.${name} must not be empty (use "*" to count every model)`
        : undefined;
    case "signals": {
      const parsed = parseSignals(value);
      return "error" in parsed ? parsed.error : undefined;
    }
  }
}
