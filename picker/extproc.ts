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

import * as grpc from "@grpc/grpc-js";
import { CancellationFlag, RequestRouter, RouteDecision, RouteSuccess } from "./core/router";
import { PickerError, PoolView, errorBody, pickerError } from "./core/types";
import { ResponseUsage } from "./core/usage";
import { PickerMetrics } from "./metrics";
import { loadExtProcDefinition, loadHealthDefinition } from "./protos";

// --- Message shapes (proto-loader with keepCase, enums as strings, oneofs) -------------------

export interface HeaderValue {
  key: string;
  value?: string;
  raw_value?: Buffer | Uint8Array;
}
export interface HeaderMap {
  headers?: HeaderValue[];
}
export interface HttpHeaders {
  headers?: HeaderMap;
  end_of_stream?: boolean;
}
export interface HttpBody {
  body?: Buffer | Uint8Array;
  end_of_stream?: boolean;
}
export interface HttpTrailers {
  trailers?: HeaderMap;
}
export interface ProtocolConfiguration {
  request_body_mode?: string | number;
  response_body_mode?: string | number;
  send_body_without_waiting_for_header_response?: boolean;
}
export interface ProcessingRequest {
  request?: string;
  request_headers?: HttpHeaders;
  response_headers?: HttpHeaders;
  request_body?: HttpBody;
  response_body?: HttpBody;
  request_trailers?: HttpTrailers;
  response_trailers?: HttpTrailers;
  observability_mode?: boolean;
  protocol_config?: ProtocolConfiguration;
}

export interface HeaderValueOption {
  header: { key: string; raw_value: Buffer };
  append_action?: string;
}
export interface HeaderMutation {
  set_headers?: HeaderValueOption[];
  remove_headers?: string[];
}
export interface BodyMutation {
  body?: Buffer;
  clear_body?: boolean;
  streamed_response?: { body: Buffer; end_of_stream: boolean };
}
export interface CommonResponse {
  status?: string;
  header_mutation?: HeaderMutation;
  body_mutation?: BodyMutation;
  clear_route_cache?: boolean;
}
// google.protobuf.Struct comes from protobufjs' built-in JSON descriptors, whose field names are
// camelCase whatever `keepCase` says: `stringValue`, not `string_value` (the snake_case names
// would be dropped silently on encode).
export interface StructValue {
  stringValue?: string;
  structValue?: Struct;
}
export interface Struct {
  fields: Record<string, StructValue>;
}
export interface ImmediateResponse {
  status: { code: number };
  headers?: HeaderMutation;
  body?: Buffer;
  details?: string;
}
export interface ProcessingResponse {
  request_headers?: { response?: CommonResponse };
  response_headers?: { response?: CommonResponse };
  request_body?: { response?: CommonResponse };
  response_body?: { response?: CommonResponse };
  request_trailers?: { header_mutation?: HeaderMutation };
  response_trailers?: { header_mutation?: HeaderMutation };
  immediate_response?: ImmediateResponse;
  dynamic_metadata?: Struct;
}

// --- Configuration ---------------------------------------------------------------------------

export type BodyMode = "buffered" | "full-duplex";

export interface ExtProcConfig {
  /** Request body mode assumed when Envoy does not announce it in `protocol_config`. */
  bodyMode: BodyMode;
  /** Largest streamed_response chunk. */
  chunkBytes: number;
  destinationHeader: string;
  metadataNamespace: string;
  /** Extra endpoints appended to the destination as a comma list (0: a single endpoint). */
  fallbackCount: number;
  /** Non-streamed response bodies are kept up to this size to read `usage`. */
  maxResponseBufferBytes: number;
}

export const defaultExtProcConfig: ExtProcConfig = {
  bodyMode: "full-duplex",
  chunkBytes: 62_000,
  destinationHeader: "x-gateway-destination-endpoint",
  metadataNamespace: "envoy.lb",
  fallbackCount: 0,
  maxResponseBufferBytes: 4 << 20,
};

export interface ExtProcDeps {
  router: RequestRouter;
  pool: PoolView;
  metrics: PickerMetrics;
  config: ExtProcConfig;
  /** Milliseconds on the clock the scraper stamps metrics with. */
  now: () => number;
  log?: (message: string) => void;
}

function modeFrom(value: string | number | undefined): BodyMode | "other" | undefined {
  if (value === undefined) return undefined;
  if (value === "FULL_DUPLEX_STREAMED" || value === 4) return "full-duplex";
  if (value === "BUFFERED" || value === 2) return "buffered";
  return "other";
}

/** Header map from Envoy: `raw_value` (bytes, newer Envoy) wins over `value`; keys lower case. */
export function headersToMap(map: HeaderMap | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const h of map?.headers ?? []) {
    const raw =
      h.raw_value && h.raw_value.length > 0 ? toBuffer(h.raw_value).toString("utf8") : undefined;
    const value = raw ?? h.value ?? "";
    const key = h.key.toLowerCase();
    const previous = out.get(key);
    out.set(key, previous === undefined ? value : `${previous},${value}`);
  }
  return out;
}

function toBuffer(bytes: Buffer | Uint8Array | undefined): Buffer {
  if (!bytes) return Buffer.alloc(0);
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
}

function setHeader(key: string, value: string): HeaderValueOption {
  return {
    header: { key, raw_value: Buffer.from(value, "utf8") },
    append_action: "OVERWRITE_IF_EXISTS_OR_ADD",
  };
}

export function immediateResponse(err: PickerError): ProcessingResponse {
  return {
    immediate_response: {
      status: { code: err.status },
      headers: { set_headers: [setHeader("content-type", "application/json")] },
      body: Buffer.from(errorBody(err), "utf8"),
      details: `picker_${err.code}`,
    },
  };
}

/** Splits a body into streamed_response chunks; an empty body is one empty final chunk. */
export function streamedChunks(body: Buffer, chunkBytes: number): Buffer[] {
  if (body.length === 0) return [body];
  const chunks: Buffer[] = [];
  for (let i = 0; i < body.length; i += chunkBytes) chunks.push(body.subarray(i, i + chunkBytes));
  return chunks;
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
    this.complete(false);
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
    this.headers = headersToMap(h.headers);
    if (h.end_of_stream) {
      // No body (GET /v1/models and the like): route at once.
      const decision = this.deps.metrics.timedDecision(() =>
        this.deps.router.decideBodyless(this.deps.now()),
      );
      if (!decision.ok) return [this.fail(decision.error, decision.model, decision.targetModel)];
      this.accept(decision, false);
      return [this.headersWithDecision(decision, false)];
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
    if (this.requestMode === "buffered") return [this.bodyWithDecision(decision)];
    const out: ProcessingResponse[] = [this.headersWithDecision(decision, true)];
    const parts = streamedChunks(decision.body, this.deps.config.chunkBytes);
    parts.forEach((part, i) =>
      out.push({
        request_body: {
          response: {
            body_mutation: {
              streamed_response: {
                body: part,
                end_of_stream: endOfStream && i === parts.length - 1,
              },
            },
          },
        },
      }),
    );
    return out;
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
    const parts = streamedChunks(chunk, this.deps.config.chunkBytes);
    return parts.map((part, i) => ({
      response_body: {
        response: {
          body_mutation: {
            streamed_response: { body: part, end_of_stream: eos && i === parts.length - 1 },
          },
        },
      },
    }));
  }

  // --- decisions and their responses ---

  private accept(decision: RouteSuccess, counted: boolean): void {
    this.decision = decision;
    if (counted) this.deps.metrics.recordRequest(decision.model, decision.targetModel);
    this.deps.metrics.recordPick(decision.endpoints[0].address);
  }

  private fail(err: PickerError, model = "", targetModel = ""): ProcessingResponse {
    this.closed = true;
    this.deps.metrics.recordRequest(model, targetModel);
    this.deps.metrics.recordError(model, targetModel, err.code);
    return immediateResponse(err);
  }

  private destination(decision: RouteSuccess): string {
    return decision.endpoints
      .slice(0, 1 + this.deps.config.fallbackCount)
      .map(e => e.address)
      .join(",");
  }

  private mutation(decision: RouteSuccess, contentLength: boolean): HeaderMutation {
    const { destinationHeader } = this.deps.config;
    const set = [setHeader(destinationHeader, this.destination(decision))];
    if (contentLength) set.push(setHeader("content-length", String(decision.body.length)));
    // The client's own destination header is overwritten above; its fallback variants go.
    return {
      set_headers: set,
      remove_headers: [`${destinationHeader}-fallback`, `${destinationHeader}-fallbacks`],
    };
  }

  private metadata(decision: RouteSuccess): Struct {
    const { metadataNamespace, destinationHeader } = this.deps.config;
    return {
      fields: {
        [metadataNamespace]: {
          structValue: {
            fields: { [destinationHeader]: { stringValue: this.destination(decision) } },
          },
        },
      },
    };
  }

  private headersWithDecision(decision: RouteSuccess, hasBody: boolean): ProcessingResponse {
    return {
      request_headers: {
        response: {
          header_mutation: this.mutation(decision, hasBody && decision.body.length > 0),
          clear_route_cache: true,
        },
      },
      dynamic_metadata: this.metadata(decision),
    };
  }

  private bodyWithDecision(decision: RouteSuccess): ProcessingResponse {
    const response: CommonResponse = {
      status: "CONTINUE",
      header_mutation: this.mutation(decision, decision.bodyChanged),
      clear_route_cache: true,
    };
    if (decision.bodyChanged) response.body_mutation = { body: decision.body };
    return { request_body: { response }, dynamic_metadata: this.metadata(decision) };
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

// --- gRPC wiring -----------------------------------------------------------------------------

type ServiceDefinition = grpc.ServiceDefinition<grpc.UntypedServiceImplementation>;

function serviceOf(def: ReturnType<typeof loadExtProcDefinition>, name: string): ServiceDefinition {
  const service = def[name];
  if (!service || typeof service !== "object" || !("Process" in service || "Check" in service)) {
    throw new Error(`service ${name} not found in the loaded protos`);
  }
  return service as unknown as ServiceDefinition;
}

export function addExtProcService(server: grpc.Server, deps: ExtProcDeps): void {
  const service = serviceOf(loadExtProcDefinition(), "envoy.service.ext_proc.v3.ExternalProcessor");
  server.addService(service, {
    Process(call: grpc.ServerDuplexStream<ProcessingRequest, ProcessingResponse>) {
      const stream = new ExtProcStream(deps);
      let ended = false;
      const end = () => {
        if (ended) return;
        ended = true;
        stream.close();
        call.end();
      };
      const deliver = (responses: ProcessingResponse[]) => {
        if (ended) return;
        for (const response of responses) call.write(response);
        if (stream.closed) end();
      };
      const step = (msg: ProcessingRequest): Promise<void> | undefined => {
        const out = stream.handle(msg);
        if (out instanceof Promise)
          return out
            .then(deliver)
            .catch(err => deps.log?.(`ext_proc: could not answer: ${String(err)}`));
        deliver(out);
        return undefined;
      };
      // Messages are answered in order: while a held request waits for a slot, later messages
      // of the stream wait behind it.
      let backlog: Promise<void> | undefined;
      let waiting = 0;
      call.on("data", (msg: ProcessingRequest) => {
        const next = backlog ? backlog.then(() => step(msg)) : step(msg);
        if (!next) return;
        waiting++;
        backlog = next.finally(() => {
          if (--waiting === 0) backlog = undefined;
        });
      });
      call.on("end", end);
      call.on("cancelled", () => stream.close());
      call.on("error", () => stream.close());
    },
  });
}

export type ServingState = () => boolean;

/** grpc.health.v1.Health: SERVING once the pool is known and synced, for any service name. */
export function addHealthService(server: grpc.Server, serving: ServingState): void {
  const service = serviceOf(loadHealthDefinition(), "grpc.health.v1.Health");
  const status = () => ({ status: serving() ? "SERVING" : "NOT_SERVING" });
  server.addService(service, {
    Check(_call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) {
      callback(null, status());
    },
    Watch(call: grpc.ServerWritableStream<unknown, unknown>) {
      let last = "";
      const send = () => {
        const s = status();
        if (s.status !== last) {
          last = s.status;
          call.write(s);
        }
      };
      send();
      const timer = setInterval(send, 1000);
      const stop = () => clearInterval(timer);
      call.on("cancelled", stop);
      call.on("close", stop);
    },
  });
}

export interface GrpcServerHandle {
  server: grpc.Server;
  port: number;
  close(): Promise<void>;
}

export async function startGrpcServer(
  register: (server: grpc.Server) => void,
  port: number,
  host = "0.0.0.0",
): Promise<GrpcServerHandle> {
  const server = new grpc.Server({
    "grpc.keepalive_time_ms": 30_000,
    "grpc.max_receive_message_length": 64 << 20,
    "grpc.max_send_message_length": 64 << 20,
  });
  register(server);
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host}:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  return {
    server,
    port: bound,
    close: () =>
      new Promise<void>(resolve => {
        server.tryShutdown(() => resolve());
        setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 2000).unref();
      }),
  };
}
