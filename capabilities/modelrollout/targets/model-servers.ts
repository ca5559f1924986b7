// Adapter readiness, the I/O (spec.adapters.readiness): the Ready pods of the model's InferencePool,
// which of them list the canary adapter in vLLM's GET /v1/models, and vLLM's runtime LoRA API
// (POST /v1/load_lora_adapter, /v1/unload_lora_adapter). Every call goes to a pod IP taken from
// the apiserver, still checked against the operator's address policy (as Prometheus addresses
// are), with a bounded time and body; redirects are never followed.
import { K8s, kind } from "kubernetes-fluent-client";
import pLimit from "p-limit";
import { request } from "undici";
import { checkUrl } from "../../analysis/address-policy";
import { dispatcherFor, operatorPolicy, refusal } from "../../analysis/prometheus/connection";
import { inferencePoolClass } from "../../api/kinds";
import type { AdapterEndpoint, AdapterReadinessObservation } from "../engine";
import {
  modelsListAdapter,
  poolEndpoints,
  poolSelection,
  type PodLike,
} from "../traffic/pool-endpoints";
import { getOrUndefined } from "./kube-objects";

const MAX_BODY_BYTES = 1024 * 1024;
/** Pods asked at once. */
const CONCURRENT_CALLS = 8;

/** One HTTP exchange with a pod: status and body text, or a thrown Error saying what failed. */
async function call(
  url: string,
  timeoutMs: number,
  body?: object,
): Promise<{ status: number; text: string }> {
  const target = new URL(url);
  const policy = operatorPolicy();
  const verdict = checkUrl(target, policy);
  if (!verdict.allowed) throw new Error(refusal(verdict));
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    const res = await request(target, {
      method: body ? "POST" : "GET",
      headers: body ? { "content-type": "application/json" } : { accept: "application/json" },
      body: body ? JSON.stringify(body) : undefined,
      signal,
      dispatcher: dispatcherFor(policy, undefined),
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of res.body) {
      size += (chunk as Buffer).length;
      if (size > MAX_BODY_BYTES) {
        res.body.destroy();
        throw new Error(`answer larger than ${MAX_BODY_BYTES} bytes`);
      }
      chunks.push(chunk as Buffer);
    }
    return { status: res.statusCode, text: Buffer.concat(chunks).toString("utf8") };
  } catch (err) {
    if (signal.aborted) throw new Error(`no answer within ${timeoutMs} ms`);
    const e = err as { code?: string; message?: string };
    throw new Error(e.code ? `${e.code}: ${e.message}` : String(e.message ?? err));
  }
}

/** Whether the endpoint's GET /v1/models lists `adapter`; a failure is kept as `error`. */
async function askEndpoint(
  endpoint: { key: string; url: string },
  adapter: string,
  timeoutMs: number,
): Promise<AdapterEndpoint> {
  try {
    const { status, text } = await call(`${endpoint.url}/v1/models`, timeoutMs);
    if (status !== 200) return { ...endpoint, error: `GET /v1/models answered HTTP ${status}` };
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return { ...endpoint, error: "GET /v1/models answered no JSON" };
    }
    const serving = modelsListAdapter(parsed, adapter);
    if (serving === undefined)
      return { ...endpoint, error: "GET /v1/models answered no model list" };
    return { ...endpoint, serving };
  } catch (err) {
    return { ...endpoint, error: `unreachable: ${(err as Error).message}` };
  }
}

/** Which Ready pods of `pool` (at each target port) list `adapter`. */
export async function observeAdapterReadiness(
  namespace: string,
  pool: { name: string; group: string },
  adapter: string,
  timeoutMs: number,
): Promise<AdapterReadinessObservation> {
  const found = await getOrUndefined(inferencePoolClass(pool.group), namespace, pool.name);
  const result = (extra: Partial<AdapterReadinessObservation>) => ({
    pool: pool.name,
    endpoints: [],
    ...extra,
  });
  if (!found)
    return result({ problem: `InferencePool ${namespace}/${pool.name} (${pool.group}) not found` });
  const selection = poolSelection(found);
  if ("problem" in selection)
    return result({ problem: `InferencePool ${pool.name} cannot be used: ${selection.problem}` });
  let query = K8s(kind.Pod).InNamespace(namespace);
  for (const [k, v] of Object.entries(selection.selector)) query = query.WithLabel(k, v);
  const pods = (await query.Get()).items as unknown as PodLike[];
  const limit = pLimit(CONCURRENT_CALLS);
  const endpoints = await Promise.all(
    poolEndpoints(selection, pods).map(e => limit(() => askEndpoint(e, adapter, timeoutMs))),
  );
  return result({ endpoints });
}

/** vLLM answers 400 for an adapter already loaded; that is the state we want. */
const alreadyLoaded = (text: string) => /already been loaded|already loaded/i.test(text);
/** vLLM answers 400/404 for an adapter it does not have; that is the state we want. */
const notLoaded = (text: string) => /cannot be found|not found|does not exist/i.test(text);

/** POST /v1/load_lora_adapter; throws naming the pod and the answer when it is refused. */
export async function loadAdapter(
  endpoint: { key: string; url: string },
  adapter: string,
  path: string,
  timeoutMs: number,
): Promise<void> {
  const { status, text } = await call(`${endpoint.url}/v1/load_lora_adapter`, timeoutMs, {
    lora_name: adapter,
    lora_path: path,
  }).catch(err => {
    throw new Error(`pod ${endpoint.key} (${endpoint.url}): ${(err as Error).message}`);
  });
  if (status === 200 || (status === 400 && alreadyLoaded(text))) return;
  throw new Error(
    `pod ${endpoint.key} (${endpoint.url}): POST /v1/load_lora_adapter answered HTTP ${status}: ${text.slice(0, 300)}`,
  );
}

/** POST /v1/unload_lora_adapter; an adapter the pod does not have counts as unloaded. */
export async function unloadAdapter(
  endpoint: { key: string; url: string },
  adapter: string,
  timeoutMs: number,
): Promise<void> {
  const { status, text } = await call(`${endpoint.url}/v1/unload_lora_adapter`, timeoutMs, {
    lora_name: adapter,
  }).catch(err => {
    throw new Error(`pod ${endpoint.key} (${endpoint.url}): ${(err as Error).message}`);
  });
  if (status === 200 || ((status === 400 || status === 404) && notLoaded(text))) return;
  throw new Error(
    `pod ${endpoint.key} (${endpoint.url}): POST /v1/unload_lora_adapter answered HTTP ${status}: ${text.slice(0, 300)}`,
  );
}
