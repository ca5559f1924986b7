// How Prometheus writes a float64 as text, in its exposition format (what the picker scrapes from
// model servers) and in the sample values of its HTTP API (what gates query): a decimal or
// exponent number, NaN, +Inf or -Inf. One reader for both.

const DECIMAL = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;

/** The number a Prometheus float string stands for ("Inf" counts as +Inf); undefined if none. */
export function parsePrometheusFloat(text: string): number | undefined {
  switch (text) {
    case "NaN":
      return NaN;
    case "+Inf":
    case "Inf":
      return Infinity;
    case "-Inf":
      return -Infinity;
  }
  return DECIMAL.test(text) ? Number(text) : undefined;
}
