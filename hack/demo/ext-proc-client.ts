// Envoy's side of ext_proc for the local gateway: one envoy.service.ext_proc.v3.ExternalProcessor/
// Process stream per HTTP request, as Envoy's ext_proc filter runs it with the configuration the
// Inference Extension documents for its endpoint pickers (request and response headers SEND, request
// and response bodies FULL_DUPLEX_STREAMED, announced in protocol_config):
//
//   request:  request_headers (pseudo-headers and the client's headers) -> request_body (end of
//             stream) -> the picker's request_headers response (header mutation, the destination in
//             `x-gateway-destination-endpoint` and in the `envoy.lb` dynamic metadata) -> its
//             request_body streamed_response chunks (the body to send, maybe rewritten)
//   response: response_headers (":status" and the endpoint's headers) -> response_body chunks as
//             they arrive -> the picker's response_headers response (header mutation) -> its
//             streamed_response chunks, which are what the client gets
//
// An immediate_response at any point is the answer (429, 503, ...). A picker may skip the
// response phase with `mode_override` (response_header_mode SKIP), as Envoy allows. Only
// FULL_DUPLEX_STREAMED is played: it is what GIE v1.x's and this project's pickers are deployed
// with (the BUFFERED exchange is covered by hack/envoy-side against our picker).
import * as grpc from "@grpc/grpc-js";
import type * as http from "node:http";
import { loadExtProcDefinition } from "../../picker/protos";
import type { HeaderValueOption__Output } from "../../picker/generated/envoy/config/core/v3/HeaderValueOption";
import type { CommonResponse__Output } from "../../picker/generated/envoy/service/ext_proc/v3/CommonResponse";
import type { ProcessingRequest } from "../../picker/generated/envoy/service/ext_proc/v3/ProcessingRequest";
import type { ProcessingResponse__Output } from "../../picker/generated/envoy/service/ext_proc/v3/ProcessingResponse";
import type { Struct__Output } from "../../picker/generated/google/protobuf/Struct";
import { DESTINATION_ENDPOINT, LB_METADATA_NAMESPACE, destinationsOf } from "./gateway-core";

type Stream = grpc.ClientDuplexStream<ProcessingRequest, ProcessingResponse__Output>;

let clientConstructor: grpc.ServiceClientConstructor | undefined;
/** envoy.type.v3.StatusCode by name: the loader decodes enums as their names ("BadRequest"). */
const statusCodes = new Map<string, number>();

/** A client for the picker at host:port (plaintext gRPC, as the local pickers serve it). */
export function extProcClient(address: string): grpc.Client {
  if (!clientConstructor) {
    const definition = loadExtProcDefinition();
    const pkg = grpc.loadPackageDefinition(definition) as unknown as {
      envoy: {
        service: { ext_proc: { v3: { ExternalProcessor: grpc.ServiceClientConstructor } } };
      };
    };
    clientConstructor = pkg.envoy.service.ext_proc.v3.ExternalProcessor;
    const statusEnum = definition["envoy.type.v3.StatusCode"] as unknown as {
      type: { value: Array<{ name: string; number: number }> };
    };
    for (const v of statusEnum.type.value) statusCodes.set(v.name, v.number);
  }
  return new clientConstructor(address, grpc.credentials.createInsecure());
}

/** An ImmediateResponse's HTTP status (a number or the enum's name); 500 when unusable. */
function httpStatusOf(code: unknown): number {
  const n = typeof code === "number" ? code : statusCodes.get(String(code));
  return n !== undefined && n >= 200 && n <= 599 ? n : 500;
}

/** The picker's answers, in order; undefined once the stream ended. */
class Inbox {
  private readonly queue: ProcessingResponse__Output[] = [];
  private waiters: Array<() => void> = [];
  private ended = false;
  error: Error | undefined;

  constructor(stream: Stream) {
    const wake = () => {
      const w = this.waiters;
      this.waiters = [];
      w.forEach(f => f());
    };
    stream.on("data", (m: ProcessingResponse__Output) => {
      this.queue.push(m);
      wake();
    });
    stream.on("end", () => {
      this.ended = true;
      wake();
    });
    stream.on("error", (err: Error) => {
      this.error ??= err;
      this.ended = true;
      wake();
    });
  }

  async next(): Promise<ProcessingResponse__Output | undefined> {
    for (;;) {
      const m = this.queue.shift();
      if (m) return m;
      if (this.ended) return undefined;
      await new Promise<void>(resolve => this.waiters.push(resolve));
    }
  }
}

export interface ProxiedRequest {
  method: string;
  /** Path with the query string. */
  path: string;
  authority: string;
  /** The client's headers, names in lower case (hop-by-hop ones already removed). */
  headers: Record<string, string | undefined>;
  body: Buffer;
}

export interface ImmediateAnswer {
  kind: "immediate";
  status: number;
  headers: Array<[string, string]>;
  body: Buffer;
}

export interface RouteAnswer {
  kind: "route";
  /** Endpoints to try in order ("ip:port"). */
  destinations: string[];
  setHeaders: Array<[string, string]>;
  removeHeaders: string[];
  /** The body to send upstream (the picker may have rewritten it). */
  body: Buffer;
}

export type PickerAnswer = ImmediateAnswer | RouteAnswer;

export class PickerProtocolError extends Error {}

function headerValue(h: HeaderValueOption__Output): [string, string] | undefined {
  const key = h.header?.key;
  if (!key) return undefined;
  const raw = h.header?.raw_value;
  // Newer Envoy APIs carry values in raw_value; older pickers may still set value.
  const value = raw && raw.length > 0 ? raw.toString("utf8") : (h.header?.value ?? "");
  return [key, value];
}

function metadataDestination(m: Struct__Output | undefined): string | undefined {
  const lb = m?.fields?.[LB_METADATA_NAMESPACE]?.structValue;
  return lb?.fields?.[DESTINATION_ENDPOINT]?.stringValue ?? undefined;
}

const header = (key: string, value: string) => ({ key, raw_value: Buffer.from(value, "utf8") });

function immediate(m: ProcessingResponse__Output): ImmediateAnswer | undefined {
  const ir = m.immediate_response;
  if (!ir) return undefined;
  return {
    kind: "immediate",
    status: httpStatusOf(ir.status?.code),
    headers: (ir.headers?.set_headers ?? [])
      .map(headerValue)
      .filter((h): h is [string, string] => h !== undefined),
    body: ir.body ?? Buffer.alloc(0),
  };
}

/**
 * One request's ext_proc stream. `decide` runs the request phase; `respond` the response phase
 * (or passes the answer through when the picker skipped it); `close` ends the stream.
 */
export class ExtProcExchange {
  private readonly stream: Stream;
  private readonly inbox: Inbox;
  private responsePhase = true;
  private closed = false;

  constructor(client: grpc.Client, deadlineMs: number) {
    const process = (client as unknown as { Process: (o: grpc.CallOptions) => Stream }).Process;
    this.stream = process.call(client, { deadline: Date.now() + deadlineMs });
    this.inbox = new Inbox(this.stream);
  }

  private send(message: ProcessingRequest): void {
    this.stream.write(message);
  }

  private async next(what: string): Promise<ProcessingResponse__Output> {
    const m = await this.inbox.next();
    if (!m) {
      const cause = this.inbox.error ? `: ${this.inbox.error.message}` : "";
      throw new PickerProtocolError(`the endpoint picker ended the stream before ${what}${cause}`);
    }
    return m;
  }

  /** The request phase: the picker's decision or its immediate answer. */
  async decide(req: ProxiedRequest): Promise<PickerAnswer> {
    const headers = [
      header(":method", req.method),
      header(":path", req.path),
      header(":authority", req.authority),
      header(":scheme", "http"),
      ...Object.entries(req.headers)
        .filter((e): e is [string, string] => e[1] !== undefined)
        .map(([k, v]) => header(k, v)),
    ];
    this.send({
      request_headers: { headers: { headers }, end_of_stream: req.body.length === 0 },
      protocol_config: {
        request_body_mode: "FULL_DUPLEX_STREAMED",
        response_body_mode: "FULL_DUPLEX_STREAMED",
      },
    });
    if (req.body.length > 0) this.send({ request_body: { body: req.body, end_of_stream: true } });

    const first = await this.next("answering the request headers");
    const early = immediate(first);
    if (early) return early;
    if (!first.request_headers) {
      throw new PickerProtocolError(
        `expected a request_headers response first, got ${first.response ?? "an empty message"}`,
      );
    }
    let metadata = metadataDestination(first.dynamic_metadata);
    if (first.mode_override?.response_header_mode === "SKIP") this.responsePhase = false;
    const common: CommonResponse__Output | undefined = first.request_headers.response;
    const setHeaders = (common?.header_mutation?.set_headers ?? [])
      .map(headerValue)
      .filter((h): h is [string, string] => h !== undefined);
    const removeHeaders = common?.header_mutation?.remove_headers ?? [];

    // The body: streamed_response chunks to end of stream (a non-streamed body mutation or a
    // plain CONTINUE is taken as the whole body, as Envoy would in the older modes).
    let body = req.body;
    if (req.body.length > 0 && !first.request_headers.response?.body_mutation) {
      const chunks: Buffer[] = [];
      for (;;) {
        const m = await this.next("sending the request body back");
        const late = immediate(m);
        if (late) return late;
        metadata = metadataDestination(m.dynamic_metadata) ?? metadata;
        const mutation = m.request_body?.response?.body_mutation;
        if (!m.request_body) {
          throw new PickerProtocolError(
            `expected request_body responses, got ${m.response ?? "an empty message"}`,
          );
        }
        if (mutation?.streamed_response) {
          chunks.push(mutation.streamed_response.body ?? Buffer.alloc(0));
          if (mutation.streamed_response.end_of_stream) break;
        } else {
          if (mutation?.body) chunks.push(mutation.body);
          else if (!mutation?.clear_body) chunks.push(req.body);
          break;
        }
      }
      body = Buffer.concat(chunks);
    }
    const headerDestination = setHeaders.find(([k]) => k.toLowerCase() === DESTINATION_ENDPOINT);
    return {
      kind: "route",
      destinations: destinationsOf(metadata, headerDestination?.[1]),
      setHeaders,
      removeHeaders,
      body,
    };
  }

  /**
   * The response phase: the endpoint's answer goes through the picker, and what it hands back
   * goes to the client (status from the endpoint, headers mutated, body streamed back).
   */
  async respond(
    upstream: http.IncomingMessage,
    res: http.ServerResponse,
    extraHeaders: Record<string, string>,
    passHeader: (name: string) => boolean,
  ): Promise<void> {
    const status = upstream.statusCode ?? 502;
    const upstreamHeaders: Array<[string, string]> = [];
    for (const [k, v] of Object.entries(upstream.headers)) {
      if (v === undefined || !passHeader(k)) continue;
      upstreamHeaders.push([k, Array.isArray(v) ? v.join(",") : v]);
    }
    if (!this.responsePhase) {
      res.writeHead(status, { ...Object.fromEntries(upstreamHeaders), ...extraHeaders });
      upstream.pipe(res);
      await new Promise<void>(resolve => res.on("close", resolve));
      return;
    }
    this.send({
      response_headers: {
        headers: {
          headers: [
            header(":status", String(status)),
            ...upstreamHeaders.map(([k, v]) => header(k, v)),
          ],
        },
        end_of_stream: false,
      },
    });
    upstream.on("data", (chunk: Buffer) =>
      this.send({ response_body: { body: chunk, end_of_stream: false } }),
    );
    upstream.on("end", () =>
      this.send({ response_body: { body: Buffer.alloc(0), end_of_stream: true } }),
    );

    const first = await this.next("answering the response headers");
    const early = immediate(first);
    if (early) {
      upstream.destroy();
      res.writeHead(early.status, Object.fromEntries(early.headers));
      res.end(early.body);
      return;
    }
    if (!first.response_headers) {
      throw new PickerProtocolError(
        `expected a response_headers response, got ${first.response ?? "an empty message"}`,
      );
    }
    const mutation = first.response_headers.response?.header_mutation;
    const out = new Map(upstreamHeaders.map(([k, v]) => [k.toLowerCase(), v]));
    for (const name of mutation?.remove_headers ?? []) out.delete(name.toLowerCase());
    for (const h of mutation?.set_headers ?? []) {
      const kv = headerValue(h);
      if (kv && !kv[0].startsWith(":") && passHeader(kv[0].toLowerCase()))
        out.set(kv[0].toLowerCase(), kv[1]);
    }
    // The picker may change the body (e.g. the model name back): the length is recomputed.
    out.delete("content-length");
    res.writeHead(status, { ...Object.fromEntries(out), ...extraHeaders });
    for (;;) {
      const m = await this.next("handing the response body back");
      const late = immediate(m);
      if (late) {
        res.destroy();
        return;
      }
      const body = m.response_body?.response?.body_mutation;
      if (!m.response_body) continue; // e.g. a response_trailers answer
      if (body?.streamed_response) {
        const chunk = body.streamed_response.body;
        if (chunk && chunk.length > 0) res.write(chunk);
        if (body.streamed_response.end_of_stream) break;
      } else {
        if (body?.body) res.write(body.body);
        break;
      }
    }
    res.end();
  }

  /** Ends Envoy's side; the picker then ends the stream. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stream.end();
  }

  /** Abandons the stream (the client went away, an error). */
  cancel(): void {
    this.closed = true;
    this.stream.cancel();
  }
}
