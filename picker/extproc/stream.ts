// The ext_proc front door: Envoy's envoy.service.ext_proc.v3.ExternalProcessor/Process, one
// bidirectional gRPC stream per HTTP request. Supports request body modes BUFFERED and
// FULL_DUPLEX_STREAMED (taken from `protocol_config` when Envoy sends it, else configured).
//
// BUFFERED: Envoy waits for the headers response before it sends the body, so request headers
// are answered at once (CONTINUE) and the decision rides on the body response (header mutation,
// body mutation, clear_route_cache, dynamic metadata).
// FULL_DUPLEX_STREAMED: body chunks arrive without waiting; they are buffered to end of stream,
// then one headers response carries the decision and the (rewritten) body follows as
// streamed_response chunks of at most 62,000 bytes (Envoy implementations cap chunks at 64 KiB).
// This file: one stream's state machine; messages.ts builds what it sends, server.ts serves it.
import { rejection } from "../core/admission";
import { OverloadGuard } from "../core/overload";
import { CancellationFlag } from "../core/cancellation";
import { RequestRouter, RouteDecision, RouteSuccess } from "../core/router";
import { PickerError, PoolView, pickerError } from "../core/types";
import { ResponseUsage } from "../core/usage";
import { PickerMetrics } from "../metrics";
import { BodyMode, ExtProcConfig } from "./config";
import {
  HttpBody,
  HttpHeaders,
  ProcessingRequest,
  ProcessingResponse,
  bodyWithDecision,
  headersToMap,
  headersWithDecision,
  immediateResponse,
  modeFrom,
  streamedBody,
  toBuffer,
} from "./messages";

export interface ExtProcDeps {
  router: RequestRouter;
  pool: PoolView;
  metrics: PickerMetrics;
  config: ExtProcConfig;
  /** Milliseconds on the clock the scraper stamps metrics with. */
  now: () => number;
  log?: (message: string) => void;
  /** Self-protection: past the process' own capacity new requests get 429 at their headers. */
  guard?: OverloadGuard;
}

// --- One stream ------------------------------------------------------------------------------

/**
 * The state machine of one ext_proc stream. `handle` returns the responses to send, in order;
 * `closed` turns true after an ImmediateResponse, when the stream should end.
 */
export class ExtProcStream {
  closed = false;
  private requestMode: BodyMode;
  private responseMode: BodyMode | "other" | undefined;
  private observeOnly = false;
  private headers = new Map<string, string>();
  private chunks: Buffer[] = [];
  private bodyBytes = 0;
  private decision: RouteSuccess | undefined;
  private startMs = 0;
  private sawResponseBody = false;
  private responseStatus = 0;
  private usage: ResponseUsage | undefined;
  private finished = false;
  /** Taken in by the overload guard and not decided yet. */
  private pending = false;
  private readonly gone = new CancellationFlag();

  constructor(private readonly deps: ExtProcDeps) {
    this.requestMode = deps.config.bodyMode;
  }

  /**
   * The responses to one message, in order — a Promise only while flow control holds the request
   * (every pod's running slots are busy); the caller sends nothing else on this stream until then.
   */
  handle(msg: ProcessingRequest): ProcessingResponse[] | Promise<ProcessingResponse[]> {
    if (this.closed) return [];
    if (msg.observability_mode) this.observeOnly = true;
    const internalError = (err: unknown): ProcessingResponse[] => {
      this.deps.log?.(
        `ext_proc: internal error: ${err instanceof Error ? err.stack : String(err)}`,
      );
      return [this.fail(pickerError("Internal", "internal error in the endpoint picker"))];
    };
    let out: ProcessingResponse[] | Promise<ProcessingResponse[]>;
    try {
      out = this.dispatch(msg);
    } catch (err) {
      out = internalError(err);
    }
    if (out instanceof Promise) {
      return out.catch(internalError).then(o => (this.observeOnly || this.gone.aborted ? [] : o));
    }
    return this.observeOnly ? [] : out;
  }

  /** The stream ended (Envoy closed it, or it was cancelled): a held request leaves the queue. */
  close(): void {
    this.gone.abort();
    this.settle();
    this.complete(false);
  }

  /** The request is decided (or gone): the overload guard no longer counts it. */
  private settle(): void {
    if (!this.pending) return;
    this.pending = false;
    this.deps.guard?.release();
  }

  private dispatch(msg: ProcessingRequest): ProcessingResponse[] | Promise<ProcessingResponse[]> {
    if (msg.protocol_config) {
      const req = modeFrom(msg.protocol_config.request_body_mode);
      if (req === "buffered" || req === "full-duplex") this.requestMode = req;
      this.responseMode = modeFrom(msg.protocol_config.response_body_mode);
    }
    if (msg.request_headers) return this.onRequestHeaders(msg.request_headers);
    if (msg.request_body) return this.onRequestBody(msg.request_body);
    if (msg.request_trailers) return this.onRequestTrailers();
    if (msg.response_headers) return this.onResponseHeaders(msg.response_headers);
    if (msg.response_body) return this.onResponseBody(msg.response_body);
    if (msg.response_trailers) {
      this.complete(true);
      return [{ response_trailers: {} }];
    }
    return [];
  }

  private onRequestHeaders(h: HttpHeaders): ProcessingResponse[] {
    this.startMs = this.deps.now();
    const guard = this.deps.guard;
    // Cheapest answer first: an overloaded process turns the request away before its body.
    if (guard) {
      if (!guard.admit()) return [this.fail(rejection("picker-overloaded").error)];
      this.pending = true;
    }
    this.headers = headersToMap(h.headers);
    if (h.end_of_stream) {
      // No body (GET /v1/models and the like): route at once.
      const decision = this.deps.metrics.timedDecision(() =>
        this.deps.router.decideBodyless(this.deps.now()),
      );
      if (!decision.ok) return [this.fail(decision.error, decision.model, decision.targetModel)];
      this.accept(decision, false);
      return [headersWithDecision(decision, this.deps.config, false)];
    }
    return this.requestMode === "buffered" ? [{ request_headers: { response: {} } }] : [];
  }

  private onRequestBody(b: HttpBody): ProcessingResponse[] | Promise<ProcessingResponse[]> {
    const chunk = toBuffer(b.body);
    this.bodyBytes += chunk.length;
    const limit = this.deps.router.options.maxBodyBytes;
    if (this.bodyBytes > limit) {
      return [
        this.fail(
          pickerError("PayloadTooLarge", `request body exceeds the limit of ${limit} bytes`),
        ),
      ];
    }
    if (chunk.length > 0) this.chunks.push(chunk);
    if (!b.end_of_stream) {
      if (this.requestMode === "buffered") {
        // A partial body in BUFFERED mode means Envoy's buffer limit was hit (BUFFERED_PARTIAL).
        return [
          this.fail(
            pickerError("PayloadTooLarge", "request body exceeds the gateway's buffer limit"),
          ),
        ];
      }
      return [];
    }
    return this.decideOnBody(true);
  }

  private onRequestTrailers(): ProcessingResponse[] | Promise<ProcessingResponse[]> {
    if (this.decision || this.requestMode === "buffered") return [{ request_trailers: {} }];
    // Trailers end the request body in full-duplex mode.
    const decided = this.decideOnBody(false);
    const withTrailers = (out: ProcessingResponse[]) => [...out, { request_trailers: {} }];
    return decided instanceof Promise ? decided.then(withTrailers) : withTrailers(decided);
  }

  private decideOnBody(endOfStream: boolean): ProcessingResponse[] | Promise<ProcessingResponse[]> {
    const body = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
    this.chunks = [];
    const header = (name: string) => this.headers.get(name);
    const request = { body, header, nowMs: this.deps.now() };
    // A request Envoy only shows us (observability mode) goes on without us: never hold it.
    const decided = this.deps.metrics.timedDecision(() =>
      this.observeOnly
        ? this.deps.router.decide(request)
        : this.deps.router.decideOrHold(request, this.gone),
    );
    // Held by flow control until a pod has a free slot.
    return decided instanceof Promise
      ? decided.then(d => this.respondToDecision(d, endOfStream))
      : this.respondToDecision(decided, endOfStream);
  }

  private respondToDecision(decision: RouteDecision, endOfStream: boolean): ProcessingResponse[] {
    if (this.gone.aborted) {
      // Envoy gave up while the request was held: the slot the router counted is free again.
      if (decision.ok)
        this.deps.pool.noteCompleted(decision.endpoints[0].address, decision.adapter);
      return [];
    }
    if (!decision.ok) return [this.fail(decision.error, decision.model, decision.targetModel)];
    this.accept(decision, true);
    if (this.requestMode === "buffered") return [bodyWithDecision(decision, this.deps.config)];
    return [
      headersWithDecision(decision, this.deps.config, true),
      ...streamedBody("request_body", decision.body, this.deps.config.chunkBytes, endOfStream),
    ];
  }

  private onResponseHeaders(h: HttpHeaders): ProcessingResponse[] {
    const headers = headersToMap(h.headers);
    this.responseStatus = Number(headers.get(":status") ?? "0") || 0;
    this.usage = this.responseUsage(headers.get("content-type") ?? "");
    if (h.end_of_stream) this.complete(true);
    return [{ response_headers: { response: {} } }];
  }

  private onResponseBody(b: HttpBody): ProcessingResponse[] {
    const chunk = toBuffer(b.body);
    if (!this.sawResponseBody && this.decision) {
      this.sawResponseBody = true;
      const d = this.decision;
      this.deps.metrics.observeTtft(
        d.model,
        d.targetModel,
        (this.deps.now() - this.startMs) / 1000,
      );
    }
    // Without response headers (Envoy configured to skip them) the body is read as JSON.
    (this.usage ??= this.responseUsage("")).push(chunk);
    const eos = b.end_of_stream === true;
    if (eos) this.complete(true);
    const responseMode = this.responseMode ?? this.requestMode;
    if (responseMode !== "full-duplex") return [{ response_body: { response: {} } }];
    // Full duplex: Envoy forwards only what we send back, so echo every byte untouched.
    return streamedBody("response_body", chunk, this.deps.config.chunkBytes, eos);
  }

  // --- decisions and their responses ---

  private accept(decision: RouteSuccess, counted: boolean): void {
    this.settle();
    this.decision = decision;
    if (counted) this.deps.metrics.recordRequest(decision.model, decision.targetModel);
    this.deps.metrics.recordPick(decision.endpoints[0].address);
  }

  private fail(err: PickerError, model = "", targetModel = ""): ProcessingResponse {
    this.closed = true;
    this.settle();
    this.deps.metrics.recordRequest(model, targetModel);
    this.deps.metrics.recordError(model, targetModel, err.code);
    return immediateResponse(err);
  }

  private responseUsage(contentType: string): ResponseUsage {
    return new ResponseUsage(contentType, this.deps.config.maxResponseBufferBytes);
  }

  /** Records the outcome once; `responded` is false when the stream ended early. */
  private complete(responded: boolean): void {
    if (this.finished || !this.decision) return;
    this.finished = true;
    const d = this.decision;
    this.deps.pool.noteCompleted(d.endpoints[0].address, d.adapter);
    if (!responded) return;
    const { metrics } = this.deps;
    metrics.observeDuration(d.model, d.targetModel, (this.deps.now() - this.startMs) / 1000);
    if (this.responseStatus >= 400) metrics.recordError(d.model, d.targetModel, "ModelServerError");
    const usage = this.usage?.finish();
    if (usage)
      metrics.observeTokens(d.model, d.targetModel, usage.promptTokens, usage.completionTokens);
  }
}
