// The picker's gRPC server: the ext_proc service (one ExtProcStream per Envoy stream, messages
// answered in order) and grpc.health.v1.Health.
import * as grpc from "@grpc/grpc-js";
import type { ExternalProcessorHandlers } from "../generated/envoy/service/ext_proc/v3/ExternalProcessor";
import { loadExtProcDefinition, loadHealthDefinition } from "../protos";
import { ProcessingRequest, ProcessingResponse } from "./messages";
import { ExtProcDeps, ExtProcStream } from "./stream";

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
  const handlers: ExternalProcessorHandlers = {
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
  };
  server.addService(service, handlers);
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
    // No channelz service is registered; its per-stream trackers are only garbage (issue 19).
    "grpc.enable_channelz": 0,
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
