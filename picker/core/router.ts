// One decision per request, shared by both front doors (ext_proc and the HTTP proxy):
// parse the body, resolve the public model name, draw the target model (LoRA split, sticky per
// session when asked), schedule an endpoint, and rewrite `model` in the body.

import { PrefixConfig, hashPromptBlocks } from "./prefix";
import { parseInferenceRequest, rewriteModel } from "./request";
import { SaturationConfig, Scheduler } from "./scheduler";
import { TrafficSplitter } from "./split";
import { EndpointView, PickerError, PoolView, Rng, pickerError } from "./types";

export interface RouterOptions {
  /** Unknown model names get 404 instead of passing through unchanged. */
  strict: boolean;
  /** Header whose value keeps a session on one target version (lower case); "" disables. */
  sessionHeader: string;
  /** Headers naming the InferenceObjective of a request, first present wins (lower case). */
  objectiveHeaders: string[];
  maxBodyBytes: number;
  prefix: PrefixConfig;
  saturation: SaturationConfig;
}

export const defaultObjectiveHeaders = [
  "x-gateway-inference-objective",
  "x-llm-d-inference-objective",
];

export interface IncomingRequest {
  body: Buffer;
  /** Lower-case header lookup; the value of a client's destination header is never used. */
  header(name: string): string | undefined;
  nowMs: number;
}

export interface RouteSuccess {
  ok: true;
  model: string;
  targetModel: string;
  /** The LoRA adapter the request needs (the target of a split), for in-flight accounting. */
  adapter?: string;
  /** Best first; the first is the destination, the next ones fallbacks or retry candidates. */
  endpoints: EndpointView[];
  body: Buffer;
  bodyChanged: boolean;
  stream: boolean;
  sheddable: boolean;
}

export interface RouteFailure {
  ok: false;
  error: PickerError;
  model: string;
  targetModel: string;
}

export type RouteDecision = RouteSuccess | RouteFailure;

export class RequestRouter {
  constructor(
    private readonly pool: PoolView,
    private readonly scheduler: Scheduler,
    private readonly splitter: TrafficSplitter,
    private readonly rng: Rng,
    readonly options: RouterOptions,
  ) {}

  decide(req: IncomingRequest): RouteDecision {
    const fail = (error: PickerError, model = "", targetModel = ""): RouteFailure => ({
      ok: false,
      error,
      model,
      targetModel,
    });
    if (req.body.length > this.options.maxBodyBytes) {
      return fail(
        pickerError(
          "PayloadTooLarge",
          `request body of ${req.body.length} bytes exceeds the limit of ${this.options.maxBodyBytes}`,
        ),
      );
    }
    const parsed = parseInferenceRequest(req.body);
    if (!parsed.ok) return fail(parsed.error);
    const { model, stream, promptText, cacheSalt, modelSpan } = parsed.request;

    let resolution = this.pool.resolveModel(model);
    if (resolution === undefined) {
      if (this.options.strict) {
        return fail(
          pickerError(
            "BadConfiguration",
            `model '${model}' is not served by pool '${this.pool.poolName()}'`,
          ),
          model,
        );
      }
      resolution = {
        source: "passthrough",
        targets: [{ name: model, weight: 1 }],
        adapters: false,
      };
    }

    const sessionKey = this.options.sessionHeader
      ? req.header(this.options.sessionHeader)
      : undefined;
    const targetModel = this.splitter.choose(model, resolution.targets, sessionKey);
    if (targetModel === undefined) {
      return fail(
        pickerError("BadConfiguration", `model '${model}' has no target model with weight > 0`),
        model,
      );
    }

    const sheddable =
      resolution.criticality === "Sheddable" || (this.objectivePriority(req) ?? 0) < 0;
    const prefixHashes =
      promptText.length >= this.options.prefix.blockSize
        ? hashPromptBlocks(`${targetModel}\u0000${cacheSalt}`, promptText, this.options.prefix)
        : [];

    const candidates = this.pool.readyEndpoints();
    const result = this.scheduler.schedule(
      { model, targetModel, adapter: resolution.adapters, sheddable, prefixHashes },
      candidates,
      { nowMs: req.nowMs, rng: this.rng, saturation: this.options.saturation },
    );
    if (!result.ok) return fail(result.error, model, targetModel);

    const endpoints = withRemaining(result.ranked, candidates);
    const adapter = resolution.adapters ? targetModel : undefined;
    this.pool.noteDispatched(endpoints[0].address, adapter);
    const bodyChanged = targetModel !== model;
    return {
      ok: true,
      model,
      targetModel,
      adapter,
      endpoints,
      body: bodyChanged ? rewriteModel(req.body, modelSpan, targetModel) : req.body,
      bodyChanged,
      stream,
      sheddable,
    };
  }

  /** Requests without a body (GET /v1/models): any ready endpoint, least loaded first. */
  decideBodyless(nowMs: number): RouteDecision {
    const candidates = this.pool.readyEndpoints();
    const result = this.scheduler.schedule(
      { model: "", targetModel: "", adapter: false, sheddable: false, prefixHashes: [] },
      candidates,
      { nowMs, rng: this.rng, saturation: this.options.saturation },
    );
    if (!result.ok) return { ok: false, error: result.error, model: "", targetModel: "" };
    const endpoints = withRemaining(result.ranked, candidates);
    this.pool.noteDispatched(endpoints[0].address);
    return {
      ok: true,
      model: "",
      targetModel: "",
      endpoints,
      body: Buffer.alloc(0),
      bodyChanged: false,
      stream: false,
      sheddable: false,
    };
  }

  private objectivePriority(req: IncomingRequest): number | undefined {
    for (const header of this.options.objectiveHeaders) {
      const name = req.header(header);
      if (name) return this.pool.objectivePriority(name);
    }
    return undefined;
  }
}

/** Ranked candidates first, then the endpoints a filter set aside (last-resort retries). */
function withRemaining(ranked: EndpointView[], all: readonly EndpointView[]): EndpointView[] {
  if (ranked.length === all.length) return ranked;
  const seen = new Set(ranked);
  return ranked.concat(all.filter(e => !seen.has(e)));
}
