// Judging a probe's answers (pure): each answer against the expectations, the canary's pass ratio
// against the metric's conditions, and the stable's answers as the control. A failure the stable
// shares is Inconclusive: the environment (gateway, prompts, checks), not the canary, is at fault.
import { durationMs } from "../../duration";
import { measurementFrom } from "../measure";
import type { Measurement, MetricSpec, TemplateContext } from "../types";
import { compileProbeRegex, compileProbeSchema, schemaErrorText } from "./checks";
import { expectedModel } from "./render";
import {
  PROBE_DEFAULTS,
  PROBE_LIMITS,
  type ProbeAnswer,
  type ProbeExpect,
  type ProbeObservation,
  type ProbeSide,
  type ProbeSpec,
} from "./types";

/** The first check `answer` fails (a short text naming it), or undefined when it passes all. */
export function failedCheck(
  answer: ProbeAnswer,
  expect: ProbeExpect,
  model: string | undefined,
): string | undefined {
  if (answer.error !== undefined) return `no answer: ${answer.error}`;
  const status = expect.status ?? PROBE_DEFAULTS.status;
  if (answer.status !== status) return `status ${answer.status} (expected ${status})`;
  if (model !== undefined && answer.model !== model)
    return `model ${JSON.stringify(answer.model ?? null)} (expected ${JSON.stringify(model)})`;
  if (expect.maxLatency !== undefined && answer.latencyMs > durationMs(expect.maxLatency))
    return `latency ${answer.latencyMs} ms (maxLatency ${expect.maxLatency})`;
  if (expect.maxTTFT !== undefined) {
    if (answer.ttftMs === undefined) return "no streamed content (maxTTFT)";
    if (answer.ttftMs > durationMs(expect.maxTTFT))
      return `TTFT ${answer.ttftMs} ms (maxTTFT ${expect.maxTTFT})`;
  }
  return contentCheck(answer.content.slice(0, PROBE_LIMITS.maxContentChars), expect);
}

function contentCheck(content: string, expect: ProbeExpect): string | undefined {
  for (const text of expect.contains ?? [])
    if (!content.includes(text)) return `content lacks ${JSON.stringify(text)}`;
  for (const text of expect.notContains ?? [])
    if (content.includes(text)) return `content contains ${JSON.stringify(text)}`;
  if (expect.regex !== undefined) {
    const regex = compileProbeRegex(expect.regex);
    if (regex instanceof Error) return regex.message;
    if (!regex.test(content)) return `content does not match regex ${JSON.stringify(expect.regex)}`;
  }
  if (expect.jsonSchema !== undefined) {
    const validate = compileProbeSchema(expect.jsonSchema);
    if (validate instanceof Error) return validate.message;
    let parsed: unknown;
    try {
      parsed = JSON.parse(content);
    } catch {
      return "content is not JSON (jsonSchema)";
    }
    if (!validate(parsed)) return `content fails jsonSchema: ${schemaErrorText(validate)}`;
  }
  return undefined;
}

/** One side's answers judged: how many passed, and the first that did not (with why). */
export interface SideVerdict {
  side: ProbeSide;
  passed: number;
  total: number;
  firstFailure?: { index: number; answer: ProbeAnswer; check: string };
}

export function judgeSide(
  side: ProbeSide,
  answers: readonly ProbeAnswer[],
  expect: ProbeExpect,
  model: string | undefined,
): SideVerdict {
  const verdict: SideVerdict = { side, passed: 0, total: answers.length };
  answers.forEach((answer, index) => {
    const check = failedCheck(answer, expect, model);
    if (check === undefined) verdict.passed++;
    else verdict.firstFailure ??= { index, answer, check };
  });
  return verdict;
}

const ratio = (v: SideVerdict) => (v.total === 0 ? NaN : v.passed / v.total);

/** What a side's first failing answer was, bounded for status. */
export function describeFailure(v: SideVerdict): string {
  const f = v.firstFailure;
  if (!f) return "";
  const a = f.answer;
  const seen = [
    a.status !== undefined ? `HTTP ${a.status}` : undefined,
    a.model !== undefined ? `model ${JSON.stringify(a.model)}` : undefined,
    a.errorType !== undefined ? `error type ${a.errorType}` : undefined,
    `${a.latencyMs} ms`,
    a.ttftMs !== undefined ? `TTFT ${a.ttftMs} ms` : undefined,
  ].filter(Boolean);
  const content = a.content.slice(0, PROBE_LIMITS.shownContentChars);
  const more = a.content.length > content.length ? "…" : "";
  return (
    `${v.side} answer ${f.index + 1}/${v.total} (prompt ${a.prompt + 1}) failed ${f.check} ` +
    `[${seen.join(", ")}]` +
    (a.content !== "" ? ` content ${JSON.stringify(content + more)}` : "")
  );
}

function bounded(text: string): string {
  const max = PROBE_LIMITS.maxMessageChars;
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

type Conditions = Pick<MetricSpec, "successCondition" | "failureCondition">;

function conditionsOf(
  metric: Conditions,
): Required<Pick<Conditions, "successCondition">> & Conditions {
  if (metric.successCondition === undefined && metric.failureCondition === undefined)
    return { successCondition: PROBE_DEFAULTS.successCondition };
  return { ...metric, successCondition: metric.successCondition as string };
}

/**
 * The measurement of one probe: `result` is the canary's pass ratio, judged by the metric's
 * conditions (default `result == 1`). A canary that is not Successful while the stable, judged by
 * the same conditions, is not either, is Inconclusive. The value shows both sides' counts; the
 * message the first failing answer of each side (bounded).
 */
export function probeMeasurement(
  metric: Pick<MetricSpec, "successCondition" | "failureCondition"> & { probe: ProbeSpec },
  observation: ProbeObservation,
  ctx: TemplateContext,
  now: Date,
  startedAt: Date = now,
): Measurement {
  const expect = metric.probe.expect ?? {};
  const conditions = { ...conditionsOf(metric), multipleSeries: false };
  const canary = judgeSide(
    "canary",
    observation.canary,
    expect,
    expectedModel(metric.probe, ctx, "canary"),
  );
  const stable = observation.stable
    ? judgeSide("stable", observation.stable, expect, expectedModel(metric.probe, ctx, "stable"))
    : undefined;
  const judged = measurementFrom(
    conditions,
    { kind: "scalar", value: ratio(canary) },
    now,
    startedAt,
  );
  const counts =
    `canary ${canary.passed}/${canary.total}` +
    (stable ? `, stable ${stable.passed}/${stable.total}` : "");
  const measurement: Measurement = { ...judged, value: `${judged.value} (${counts} passed)` };
  const stableJudged = stable
    ? measurementFrom(conditions, { kind: "scalar", value: ratio(stable) }, now, startedAt)
    : undefined;
  const details = [canary, stable].filter(v => v?.firstFailure).map(v => describeFailure(v!));
  if (measurement.phase === "Failed" && stableJudged && stableJudged.phase !== "Successful") {
    measurement.phase = "Inconclusive";
    measurement.message =
      `${judged.message}, but the stable fails the same checks (${counts} passed): ` +
      "the environment, not the canary, is at fault";
  }
  if (details.length) measurement.message = `${measurement.message}; ${details.join("; ")}`;
  measurement.message = bounded(measurement.message ?? "");
  return measurement;
}
