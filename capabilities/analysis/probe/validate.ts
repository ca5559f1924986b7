// Everything wrong with a metric's probe block, as readable messages naming the field (pure). The
// CRD checks shapes and bounds at admission; this also compiles the regex and the JSON Schema,
// which only the operator can, and guards against objects that bypassed the schema.
import { durationProblem } from "../../duration";
import { isRecord } from "../../api/objects";
import { compileProbeRegex, compileProbeSchema } from "./checks";
import { placeholderProblem } from "./render";

const MAX_PROBE_TIMEOUT_MS = 120_000;

function wholeIn(value: unknown, min: number, max: number): boolean {
  return typeof value === "number" && Number.isInteger(value) && value >= min && value <= max;
}

function stringList(value: unknown, field: string, maxItems: number, maxLength: number): string[] {
  if (value === undefined) return [];
  if (
    !Array.isArray(value) ||
    value.length > maxItems ||
    value.some(v => typeof v !== "string" || v === "" || v.length > maxLength)
  ) {
    return [
      `${field} must be a list of at most ${maxItems} non-empty texts of at most ${maxLength} characters`,
    ];
  }
  return [];
}

function durationField(value: unknown, field: string): string[] {
  if (value === undefined) return [];
  const problem = durationProblem(field, value, MAX_PROBE_TIMEOUT_MS, "2m", true);
  return problem ? [problem] : [];
}

function requestProblems(p: Record<string, unknown>): string[] {
  const problems: string[] = [];
  if (typeof p.url !== "string" || p.url === "") problems.push("probe.url is required");
  else {
    const problem = placeholderProblem(p.url, "probe.url", true);
    if (problem) problems.push(problem);
  }
  if (p.api !== undefined && p.api !== "chat" && p.api !== "completions")
    problems.push('probe.api must be "chat" or "completions"');
  if (p.model !== undefined) {
    const problem =
      typeof p.model === "string" && p.model !== ""
        ? placeholderProblem(p.model, "probe.model", false)
        : "probe.model must be a non-empty text";
    if (problem) problems.push(problem);
  }
  if (!Array.isArray(p.prompts) || p.prompts.length === 0)
    problems.push("probe.prompts needs 1 to 8 prompts");
  else problems.push(...stringList(p.prompts, "probe.prompts", 8, 2000));
  if (p.requests !== undefined && !wholeIn(p.requests, 1, 50))
    problems.push("probe.requests must be a whole number from 1 to 50");
  if (p.rate !== undefined && !wholeIn(p.rate, 1, 20))
    problems.push("probe.rate must be a whole number of requests per second from 1 to 20");
  if (p.maxTokens !== undefined && !wholeIn(p.maxTokens, 1, 4096))
    problems.push("probe.maxTokens must be a whole number from 1 to 4096");
  for (const key of ["stream", "compareStable"] as const)
    if (p[key] !== undefined && typeof p[key] !== "boolean")
      problems.push(`probe.${key} must be true or false`);
  problems.push(...durationField(p.timeout, "probe.timeout"), ...headerProblems(p.headers));
  return problems;
}

function headerProblems(headers: unknown): string[] {
  if (headers === undefined) return [];
  if (!isRecord(headers)) return ["probe.headers must be a map of texts"];
  return Object.entries(headers).flatMap(([name, value]) => {
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name))
      return [`probe.headers: ${JSON.stringify(name)} is not a header name`];
    if (typeof value !== "string") return [`probe.headers.${name} must be a text`];
    return [placeholderProblem(value, `probe.headers.${name}`, false) ?? []].flat();
  });
}

function expectProblems(p: Record<string, unknown>): string[] {
  const e = p.expect;
  if (e === undefined) return [];
  if (!isRecord(e)) return ["probe.expect must be an object"];
  const problems: string[] = [];
  if (e.status !== undefined && !wholeIn(e.status, 100, 599))
    problems.push("probe.expect.status must be an HTTP status from 100 to 599");
  if (e.model !== undefined) {
    const problem =
      typeof e.model === "string" && e.model !== ""
        ? e.model === "*"
          ? undefined
          : placeholderProblem(e.model, "probe.expect.model", false)
        : "probe.expect.model must be a non-empty text";
    if (problem) problems.push(problem);
  }
  problems.push(...stringList(e.contains, "probe.expect.contains", 8, 256));
  problems.push(...stringList(e.notContains, "probe.expect.notContains", 8, 256));
  if (e.regex !== undefined) {
    const compiled =
      typeof e.regex === "string" && e.regex.length <= 256 ? compileProbeRegex(e.regex) : undefined;
    if (!compiled) problems.push("probe.expect.regex must be a text of at most 256 characters");
    else if (compiled instanceof Error) problems.push(`probe.expect.${compiled.message}`);
  }
  if (e.jsonSchema !== undefined) {
    const compiled =
      typeof e.jsonSchema === "string" && e.jsonSchema.length <= 8192
        ? compileProbeSchema(e.jsonSchema)
        : undefined;
    if (!compiled)
      problems.push("probe.expect.jsonSchema must be JSON text of at most 8192 characters");
    else if (compiled instanceof Error) problems.push(`probe.expect.${compiled.message}`);
  }
  problems.push(...durationField(e.maxLatency, "probe.expect.maxLatency"));
  problems.push(...durationField(e.maxTTFT, "probe.expect.maxTTFT"));
  if (e.maxTTFT !== undefined && p.stream !== true)
    problems.push(
      "probe.expect.maxTTFT needs probe.stream: true (time to first token is measured on a streamed answer)",
    );
  return problems;
}

/** Everything wrong with `probe` (a metric's probe block), each message naming its field. */
export function probeProblems(probe: unknown): string[] {
  if (!isRecord(probe)) return ["probe must be an object with url and prompts"];
  const problems = [...requestProblems(probe), ...expectProblems(probe)];
  const ref = probe.bearerTokenSecretRef;
  if (
    ref !== undefined &&
    (!isRecord(ref) ||
      typeof ref.name !== "string" ||
      !ref.name ||
      typeof ref.key !== "string" ||
      !ref.key)
  )
    problems.push("probe.bearerTokenSecretRef needs a name and a key");
  return problems;
}
