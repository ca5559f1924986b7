// PromQL durations ("30s", "1h30m", "500ms"): the one duration syntax used for query ranges and
// for interval / initialDelay / timeout, so a value that works in one place works in the other.

const UNIT_MS: Record<string, number> = {
  y: 365 * 24 * 3600_000,
  w: 7 * 24 * 3600_000,
  d: 24 * 3600_000,
  h: 3600_000,
  m: 60_000,
  s: 1000,
  ms: 1,
};

/** Units in the order Prometheus requires them (model.ParseDuration). */
const DURATION_RE =
  /^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$/;
const UNITS = ["y", "w", "d", "h", "m", "s", "ms"];

/** True when `text` is a PromQL duration such as "30s" or "1h30m" ("0" alone is not accepted). */
export function isDuration(text: string): boolean {
  return text !== "" && DURATION_RE.test(text);
}

/** Milliseconds of a PromQL duration; throws a readable Error for anything else. */
export function durationMs(text: string): number {
  const match = text === "" ? null : DURATION_RE.exec(text);
  if (!match) {
    throw new Error(`"${text}" is not a duration (expected e.g. 30s, 5m, 1h30m, 500ms)`);
  }
  let total = 0;
  UNITS.forEach((unit, i) => {
    const amount = match[i + 1];
    if (amount !== undefined) total += Number(amount) * UNIT_MS[unit];
  });
  return total;
}

/** Milliseconds of a duration, or undefined when `text` is not one. */
export function parseDuration(text: string): number | undefined {
  return isDuration(text) ? durationMs(text) : undefined;
}

/**
 * The longest wait a spec may ask for (pause, interval, initialDelay): one year. Longer values
 * would overflow a Date, and the CRD's CEL rules refuse them too.
 */
export const MAX_WAIT = "8760h";
export const MAX_WAIT_MS = 8760 * 3600_000;
/** The longest Prometheus request timeout a spec may ask for. */
export const MAX_TIMEOUT = "10m";
export const MAX_TIMEOUT_MS = 600_000;

/**
 * Why `value` is not a usable duration for `field` (a positive one when `positive`), or
 * undefined when it is: a readable message naming the field, for Ready=False.
 */
export function durationProblem(
  field: string,
  value: unknown,
  maxMs: number,
  max: string,
  positive = false,
): string | undefined {
  const shown = JSON.stringify(value);
  if (typeof value !== "string" || !isDuration(value))
    return `${field} ${shown} is not a duration like 30s, 5m, 1h or 1m30s`;
  const ms = durationMs(value);
  if (positive && ms === 0) return `${field} ${shown} must be longer than 0`;
  if (!Number.isSafeInteger(ms) || ms > maxMs) return `${field} ${shown} is longer than ${max}`;
  return undefined;
}
