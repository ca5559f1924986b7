// The I/O around the pure traffic adapters (traffic/*.ts): read the target object, transform it,
// write back only what changed — weights and whole weighted-list entries, as a JSON Patch
// (traffic/weight-patch.ts), so every other field stays as Git has it — behind a resourceVersion
// precondition (a JSON Patch `test` op) so that a concurrent edit by another client is never lost:
// on a conflict we read again and redo the transform on the fresh object.
//
// The parts: targets/traffic-target.ts (per kind: inspect a target, set and finalize its weights),
// targets/modify-with-retry.ts (the write: JSON Patch behind the resourceVersion test, retried),
// targets/pools.ts (create the canary pool and its clones, delete the unused pool),
// targets/gate-secret.ts (gate credentials from a Secret), targets/model-servers.ts (adapter
// readiness: the pool's pods and vLLM's /v1/models and runtime LoRA API), targets/kube-objects.ts
// (get, list and create with 404 / 409 read as answers), targets/analysis-templates.ts (the gates'
// templates).
export { apiFailure, type ApiFailure } from "../api-failure";
export { modifyWithRetry, TargetContendedError } from "./targets/modify-with-retry";
export {
  type TargetInspection,
  type TrafficTarget,
  trafficTargetFor,
} from "./targets/traffic-target";
export { deletePool, ensureCanaryPool } from "./targets/pools";
export { readSecretKey } from "./targets/gate-secret";
export { readAnalysisTemplates } from "./targets/analysis-templates";
export { loadAdapter, observeAdapterReadiness, unloadAdapter } from "./targets/model-servers";
