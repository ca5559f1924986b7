// The picker's gRPC services on its own gRPC server (grpc-server.ts): the ext_proc service (one
// ExtProcStream per Envoy stream, messages answered in order) and grpc.health.v1.Health.
import type { PackageDefinition } from "@grpc/proto-loader";
import { loadExtProcDefinition, loadExtProcRoot, loadHealthDefinition } from "../protos";
import { decodeMessage } from "./codec/decode";
import { encodeMessage } from "./codec/encode";
import { CodecUnsupported, planOf } from "./codec/plan";
import { GrpcMethod, GrpcServer, GrpcStatus } from "./grpc-server";
import { ProcessingRequest, ProcessingResponse } from "./messages";
import { ExtProcDeps, ExtProcStream } from "./stream";

/** A method as proto-loader describes it: its path and proto-loader's (de)serializers. */
interface LoadedMethod {
  path: string;
  requestDeserialize(bytes: Buffer): unknown;
  responseSerialize(msg: unknown): Buffer;
}

function methodOf(def: PackageDefinition, service: string, name: string): LoadedMethod {
  const method = (def[service] as unknown as Record<string, LoadedMethod> | undefined)?.[name];
  if (!method?.path) throw new Error(`method ${service}/${name} not found in the loaded protos`);
  return method;
}

export const EXT_PROC_PATH = "/envoy.service.ext_proc.v3.ExternalProcessor/Process";

/**
 * Process' path and messages, with extproc/codec (the same wire format, a fraction of
 * proto-loader's CPU). The reflection the codec is compiled from is dropped afterwards; a
 * response the codec does not know (none the picker builds: codec.test.ts) goes through
 * proto-loader's serializer, loaded then.
 */
export function extProcCodec() {
  const root = loadExtProcRoot();
  const request = planOf(root.lookupType("envoy.service.ext_proc.v3.ProcessingRequest"));
  const response = planOf(root.lookupType("envoy.service.ext_proc.v3.ProcessingResponse"));
  let reference: LoadedMethod | undefined;
  const fallback = (msg: ProcessingResponse) =>
    (reference ??= methodOf(
      loadExtProcDefinition(),
      "envoy.service.ext_proc.v3.ExternalProcessor",
      "Process",
    )).responseSerialize(msg);
  const encode = (msg: ProcessingResponse, headroom: number): Buffer => {
    try {
      return encodeMessage(response, msg as Record<string, unknown>, headroom);
    } catch (err) {
      if (!(err instanceof CodecUnsupported)) throw err;
      const bytes = fallback(msg);
      return headroom ? Buffer.concat([Buffer.alloc(headroom), bytes]) : bytes;
    }
  };
  return {
    path: EXT_PROC_PATH,
    decode: (bytes: Buffer) => decodeMessage(request, bytes) as ProcessingRequest,
    encode: (msg: ProcessingResponse): Buffer => encode(msg, 0),
    encodeFramed: (msg: ProcessingResponse): Buffer => encode(msg, 5),
  };
}

export function addExtProcService(server: GrpcServer, deps: ExtProcDeps): void {
  const { path, ...codec } = extProcCodec();
  const method: GrpcMethod<ProcessingRequest, ProcessingResponse> = {
    ...codec,
    open(call) {
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
        call.writeAll(responses); // a decision and its body chunks: one write
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
      return {
        message(msg) {
          const next = backlog ? backlog.then(() => step(msg)) : step(msg);
          if (!next) return;
          waiting++;
          backlog = next.finally(() => {
            if (--waiting === 0) backlog = undefined;
          });
        },
        halfClose: end,
        cancel() {
          ended = true;
          stream.close();
        },
      };
    },
  };
  server.handle(path, method);
}

export type ServingState = () => boolean;

/** grpc.health.v1.Health: SERVING once the pool is known and synced, for any service name. */
export function addHealthService(server: GrpcServer, serving: ServingState): void {
  const def = loadHealthDefinition();
  const status = () => ({ status: serving() ? "SERVING" : "NOT_SERVING" });
  const check = methodOf(def, "grpc.health.v1.Health", "Check");
  server.handle(check.path, {
    decode: check.requestDeserialize,
    encode: check.responseSerialize,
    open: call => {
      let answered = false;
      return {
        message() {
          if (answered) return;
          answered = true;
          call.write(status());
          call.end();
        },
        // A unary call without its request message: grpc-js' server answered INTERNAL too.
        halfClose: () => {
          if (!answered) call.fail(GrpcStatus.INTERNAL, "no request message");
        },
        cancel: () => undefined,
      };
    },
  });
  const watch = methodOf(def, "grpc.health.v1.Health", "Watch");
  server.handle(watch.path, {
    decode: watch.requestDeserialize,
    encode: watch.responseSerialize,
    open: call => {
      let timer: NodeJS.Timeout | undefined;
      return {
        message() {
          let last = "";
          const send = () => {
            const s = status();
            if (s.status !== last) {
              last = s.status;
              call.write(s);
            }
          };
          send();
          timer ??= setInterval(send, 1000);
        },
        halfClose: () => undefined,
        cancel: () => clearInterval(timer),
      };
    },
  });
}

export interface GrpcServerHandle {
  server: GrpcServer;
  port: number;
  close(): Promise<void>;
}

export async function startGrpcServer(
  register: (server: GrpcServer) => void,
  port: number,
  host = "0.0.0.0",
): Promise<GrpcServerHandle> {
  const server = new GrpcServer();
  register(server);
  const bound = await server.listen(port, host);
  return { server, port: bound, close: () => server.close() };
}
