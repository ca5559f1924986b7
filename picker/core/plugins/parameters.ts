// Plugin parameters as a config file gives them (`parameters:` of one plugin): each plugin reads
// the ones it knows, and anything else is an error, so that a typo does not go unnoticed.

export type PluginParameters = Readonly<Record<string, unknown>>;

/** A plugin, its parameters or a scheduling profile is not as the picker can run it. */
export class PluginConfigError extends Error {}

/** Refuses parameters other than `known` ("takes no parameters" when there are none). */
export function onlyParameters(
  type: string,
  parameters: PluginParameters,
  known: readonly string[],
): void {
  for (const key of Object.keys(parameters)) {
    if (!known.includes(key)) {
      throw new PluginConfigError(
        known.length === 0
          ? `${type} takes no parameters, got '${key}'`
          : `${type} has no parameter '${key}' (it has ${known.join(", ")})`,
      );
    }
  }
}

/** A number parameter in [min, max], or undefined when not given. */
export function numberParameter(
  type: string,
  parameters: PluginParameters,
  key: string,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number | undefined {
  const value = parameters[key];
  if (value === undefined) return undefined;
  if (typeof value !== "number" || !Number.isFinite(value) || value < min || value > max) {
    throw new PluginConfigError(
      `${type}: ${key} must be a number between ${min} and ${max}, got ${JSON.stringify(value)}`,
    );
  }
  return value;
}
