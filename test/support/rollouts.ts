// kubectl-level helpers for tests that drive ModelRollouts in one namespace.
import { env, waitFor } from "./env";

export interface Measurement {
  phase: string;
  value?: string;
  message?: string;
}

export interface GateRun {
  phase: string;
  startedAt?: string;
  message?: string;
  metrics: { name: string; phase: string; measurements: Measurement[] }[];
}

export interface Rollout {
  metadata: { annotations?: Record<string, string>; generation: number };
  status?: {
    phase?: string;
    currentStep?: number;
    canaryWeight?: number;
    message?: string;
    analysis?: GateRun;
    stepAnalysis?: GateRun;
    adapterReadiness?: { loadedOn?: string[] };
    conditions?: { type: string; status: string; reason: string; message: string }[];
  };
}

export type TargetModel = { name: string; weight?: number };

/** Helpers bound to a namespace (read when called); `logHint` names where to look when a wait times out. */
export function rolloutHelpers(namespace: () => string, logHint: () => string) {
  const kubectl = (args: string[], input?: string) =>
    env().kubectl(["-n", namespace(), ...args], input);
  const apply = (yaml: string) => kubectl(["apply", "-f", "-"], yaml);
  const getJson = <T>(resource: string, name: string): T =>
    JSON.parse(kubectl(["get", resource, name, "-o", "json"]));
  const rollout = (name: string) => getJson<Rollout>("modelrollout", name);
  const targetModels = (model: string): TargetModel[] =>
    getJson<{ spec: { targetModels: TargetModel[] } }>("inferencemodel", model).spec.targetModels;
  async function waitForRollout(
    name: string,
    what: string,
    check: (r: Rollout) => boolean,
    timeoutMs = 30000,
  ): Promise<Rollout> {
    let last: Rollout | undefined;
    await waitFor(
      `ModelRollout ${name}: ${what}`,
      () => check((last = rollout(name))),
      timeoutMs,
      () => `last status: ${JSON.stringify(last?.status)}; operator log: ${logHint()}`,
    );
    return last!;
  }
  return { kubectl, apply, getJson, rollout, targetModels, waitForRollout };
}
