// Which plugins the scheduler runs, in the shape of the upstream EPP's EndpointPickerConfig:
// `plugins` lists instances (a registered type, an optional name, parameters), and one scheduling
// profile lists the ones it runs, scorers with a weight. `--config FILE` gives one; `--weights`
// is a shorthand for the default plugins with other weights. Pure: no files, no flags.

import { PrefixIndex } from "./prefix";
import {
  FilterPlugin,
  PickerPlugin,
  PostPickPlugin,
  SchedulerConfig,
  SchedulerPlugin,
  ScorerPlugin,
  WeightedScorer,
  defaultSaturationConfig,
} from "./scheduler";
import { CAPACITY_FILTER } from "./plugins/capacity-filter";
import { KV_CACHE_UTILIZATION_SCORER } from "./plugins/kv-cache-utilization-scorer";
import { LORA_AFFINITY_SCORER } from "./plugins/lora-affinity-scorer";
import { MAX_SCORE_PICKER, maxScorePicker } from "./plugins/max-score-picker";
import { PluginConfigError, PluginParameters } from "./plugins/parameters";
import { PREFIX_CACHE_SCORER } from "./plugins/prefix-cache-scorer";
import { QUEUE_SCORER } from "./plugins/queue-scorer";
import { PluginDeps, PluginRegistry, builtinPlugins } from "./plugins/registry";
import { isRecord } from "../../capabilities/api/objects";

export const ENDPOINT_PICKER_CONFIG_API_VERSION = "inference.networking.x-k8s.io/v1alpha1";
export const ENDPOINT_PICKER_CONFIG_KIND = "EndpointPickerConfig";

export interface PluginSpec {
  /** A registered plugin type, e.g. `queue-scorer`. */
  type: string;
  /** This instance's name, for `pluginRef` (default: the type). */
  name?: string;
  parameters?: PluginParameters;
}

export interface ProfilePluginRef {
  pluginRef: string;
  /** Scorers only: the score's weight (default 1; 0 turns the scoring off). */
  weight?: number;
}

export interface SchedulingProfileSpec {
  name: string;
  plugins: ProfilePluginRef[];
}

export interface EndpointPickerConfig {
  apiVersion?: string;
  kind?: string;
  plugins: PluginSpec[];
  /** One profile (the picker runs one); without it, one that runs every plugin, weight 1. */
  schedulingProfiles?: SchedulingProfileSpec[];
}

export interface ScoreWeights {
  queue: number;
  kvCache: number;
  prefix: number;
  lora: number;
}

/**
 * Upstream's default weights for queue, KV cache and prefix. LoRA affinity gets 3: more than the
 * whole range of the queue score, so an adapter is not evicted on another pod just because that
 * pod has one request less (overloaded pods are already set aside by the capacity filter).
 */
export const defaultScoreWeights: ScoreWeights = { queue: 2, kvCache: 2, prefix: 3, lora: 3 };

/**
 * The default plugins with these weights (`--weights`): the capacity filter, the queue, KV-cache,
 * prefix and LoRA scorers in that order, and the max-score picker.
 */
export function weightsConfig(weights: ScoreWeights): EndpointPickerConfig {
  const plugins = [
    CAPACITY_FILTER,
    QUEUE_SCORER,
    KV_CACHE_UTILIZATION_SCORER,
    PREFIX_CACHE_SCORER,
    LORA_AFFINITY_SCORER,
    MAX_SCORE_PICKER,
  ];
  const weightOf: Record<string, number> = {
    [QUEUE_SCORER]: weights.queue,
    [KV_CACHE_UTILIZATION_SCORER]: weights.kvCache,
    [PREFIX_CACHE_SCORER]: weights.prefix,
    [LORA_AFFINITY_SCORER]: weights.lora,
  };
  return {
    apiVersion: ENDPOINT_PICKER_CONFIG_API_VERSION,
    kind: ENDPOINT_PICKER_CONFIG_KIND,
    plugins: plugins.map(type => ({ type })),
    schedulingProfiles: [
      {
        name: "default",
        plugins: plugins.map(pluginRef =>
          pluginRef in weightOf ? { pluginRef, weight: weightOf[pluginRef] } : { pluginRef },
        ),
      },
    ],
  };
}

/**
 * The plugins of `config`, built from `registry`, each put at every extension point it
 * implements in the order of the profile: filters, scorers with a weight above 0, the picker
 * (max-score-picker when the profile names none) and post-pick plugins. A scorer of weight 0
 * does not score (the prefix scorer then prefers no endpoint either) but still learns post-pick.
 */
export function buildSchedulerConfig(
  config: EndpointPickerConfig,
  deps: PluginDeps,
  registry: PluginRegistry = builtinPlugins,
): SchedulerConfig {
  const instances = new Map<string, SchedulerPlugin>();
  for (const spec of config.plugins) {
    const factory = registry.get(spec.type);
    if (!factory) {
      throw new PluginConfigError(
        `unknown plugin type '${spec.type}' (known: ${[...registry.keys()].join(", ")})`,
      );
    }
    const name = spec.name ?? spec.type;
    if (instances.has(name)) throw new PluginConfigError(`two plugins are named '${name}'`);
    instances.set(name, factory(name, spec.parameters ?? {}, deps));
  }
  const profile: SchedulingProfileSpec = config.schedulingProfiles?.[0] ?? {
    name: "default",
    plugins: [...instances.keys()].map(pluginRef => ({ pluginRef })),
  };
  const built: SchedulerConfig = { filters: [], scorers: [], picker: maxScorePicker, postPick: [] };
  let picker: PickerPlugin | undefined;
  const seen = new Set<string>();
  for (const { pluginRef, weight } of profile.plugins) {
    const plugin = instances.get(pluginRef);
    const where = `scheduling profile '${profile.name}'`;
    if (!plugin) throw new PluginConfigError(`${where}: no plugin is named '${pluginRef}'`);
    if (seen.has(pluginRef)) throw new PluginConfigError(`${where}: '${pluginRef}' twice`);
    seen.add(pluginRef);
    if (plugin.filter) built.filters.push(plugin as FilterPlugin);
    if (plugin.score) {
      if ((weight ?? 1) > 0)
        built.scorers.push({ scorer: plugin as ScorerPlugin, weight: weight ?? 1 });
    } else if (weight !== undefined) {
      throw new PluginConfigError(`${where}: '${pluginRef}' is not a scorer and takes no weight`);
    }
    if (plugin.rank) {
      if (picker) {
        throw new PluginConfigError(`${where}: two pickers, '${picker.name}' and '${pluginRef}'`);
      }
      picker = plugin as PickerPlugin;
    }
    if (plugin.picked) built.postPick.push(plugin as PostPickPlugin);
  }
  return { ...built, picker: picker ?? built.picker };
}

/** The default plugins with these weights, on this prefix index (tests, benchmarks). */
export function defaultSchedulerConfig(
  weights: ScoreWeights,
  prefixIndex: PrefixIndex,
): SchedulerConfig {
  return buildSchedulerConfig(weightsConfig(weights), {
    prefixIndex,
    saturation: defaultSaturationConfig,
  });
}

/** One line for the log: `capacity-filter → queue-scorer×2 + … → max-score-picker`. */
export function describeSchedulerConfig(config: SchedulerConfig): string {
  const scorers = config.scorers.map(
    ({ scorer, weight }: WeightedScorer) => `${scorer.name}×${weight}`,
  );
  return [
    ...config.filters.map(f => f.name),
    scorers.length ? scorers.join(" + ") : "(no scorers)",
    config.picker.name,
  ].join(" → ");
}

// --- Checking a config file's contents ---------------------------------------------------

function onlyKeys(where: string, value: Record<string, unknown>, known: readonly string[]): void {
  for (const key of Object.keys(value)) {
    if (!known.includes(key)) {
      throw new PluginConfigError(`${where}: '${key}' is not supported (only ${known.join(", ")})`);
    }
  }
}

function text(where: string, value: unknown): string {
  if (typeof value !== "string" || value === "") {
    throw new PluginConfigError(`${where} must be a non-empty string`);
  }
  return value;
}

/**
 * A parsed config file (YAML or JSON) as an EndpointPickerConfig, or a PluginConfigError that
 * says what is wrong where. Checks the shape only; plugin types and parameters are checked when
 * the scheduler is built.
 */
export function checkEndpointPickerConfig(raw: unknown): EndpointPickerConfig {
  if (!isRecord(raw)) throw new PluginConfigError("the file must hold one mapping");
  onlyKeys("the file", raw, ["apiVersion", "kind", "plugins", "schedulingProfiles"]);
  if (raw.apiVersion !== undefined && raw.apiVersion !== ENDPOINT_PICKER_CONFIG_API_VERSION) {
    throw new PluginConfigError(`apiVersion must be ${ENDPOINT_PICKER_CONFIG_API_VERSION}`);
  }
  if (raw.kind !== undefined && raw.kind !== ENDPOINT_PICKER_CONFIG_KIND) {
    throw new PluginConfigError(`kind must be ${ENDPOINT_PICKER_CONFIG_KIND}`);
  }
  if (!Array.isArray(raw.plugins) || raw.plugins.length === 0) {
    throw new PluginConfigError("plugins must be a non-empty list");
  }
  const plugins = raw.plugins.map((p: unknown, i): PluginSpec => {
    const where = `plugins[${i}]`;
    if (!isRecord(p)) throw new PluginConfigError(`${where} must be a mapping`);
    onlyKeys(where, p, ["type", "name", "parameters"]);
    if (p.parameters !== undefined && !isRecord(p.parameters)) {
      throw new PluginConfigError(`${where}.parameters must be a mapping`);
    }
    return {
      type: text(`${where}.type`, p.type),
      ...(p.name !== undefined && { name: text(`${where}.name`, p.name) }),
      ...(p.parameters !== undefined && { parameters: p.parameters }),
    };
  });
  if (raw.schedulingProfiles === undefined) {
    return {
      apiVersion: ENDPOINT_PICKER_CONFIG_API_VERSION,
      kind: ENDPOINT_PICKER_CONFIG_KIND,
      plugins,
    };
  }
  if (!Array.isArray(raw.schedulingProfiles) || raw.schedulingProfiles.length !== 1) {
    throw new PluginConfigError(
      "schedulingProfiles must list exactly one profile (the picker runs one)",
    );
  }
  const p: unknown = raw.schedulingProfiles[0];
  if (!isRecord(p)) throw new PluginConfigError("schedulingProfiles[0] must be a mapping");
  onlyKeys("schedulingProfiles[0]", p, ["name", "plugins"]);
  if (!Array.isArray(p.plugins) || p.plugins.length === 0) {
    throw new PluginConfigError("schedulingProfiles[0].plugins must be a non-empty list");
  }
  const refs = p.plugins.map((r: unknown, i): ProfilePluginRef => {
    const where = `schedulingProfiles[0].plugins[${i}]`;
    if (!isRecord(r)) throw new PluginConfigError(`${where} must be a mapping`);
    onlyKeys(where, r, ["pluginRef", "weight"]);
    const w = r.weight;
    if (w !== undefined && (typeof w !== "number" || !Number.isFinite(w) || w < 0)) {
      throw new PluginConfigError(
        `${where}.weight must be a number >= 0, got ${JSON.stringify(w)}`,
      );
    }
    return {
      pluginRef: text(`${where}.pluginRef`, r.pluginRef),
      ...(w !== undefined && { weight: w }),
    };
  });
  return {
    apiVersion: ENDPOINT_PICKER_CONFIG_API_VERSION,
    kind: ENDPOINT_PICKER_CONFIG_KIND,
    plugins,
    schedulingProfiles: [{ name: text("schedulingProfiles[0].name", p.name), plugins: refs }],
  };
}
