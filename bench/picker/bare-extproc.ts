// The reference ext_proc server for part (a): the least a Node gRPC ext_proc server does in
// FULL_DUPLEX_STREAMED mode — buffer the request body, answer with one fixed destination and the
// body handed back untouched, hand response headers and body back — with no parsing, no
// decision and no metrics, on the picker's gRPC server and codec. What the picker's ext_proc door
// adds beyond it is the picker's own work; what it adds over calling the simulator directly is
// gRPC on both sides of one more process, which no Node ext_proc server can go below.
//   node --import tsx bench/picker/bare-extproc.ts --upstream 127.0.0.5:8000
import { defaultExtProcConfig } from "../../picker/extproc/config";
import { ProcessingRequest, ProcessingResponse } from "../../picker/extproc/messages";
import { ServerCall } from "../../picker/extproc/grpc-server";
import { extProcCodec, startGrpcServer } from "../../picker/extproc/server";

const upstreamFlag = process.argv.indexOf("--upstream");
const upstream = upstreamFlag > 0 ? process.argv[upstreamFlag + 1] : undefined;
if (!upstream) {
  process.stderr.write("usage: bare-extproc --upstream HOST:PORT\n");
  process.exit(2);
}
const destination = {
  header: { key: defaultExtProcConfig.destinationHeader, raw_value: Buffer.from(upstream) },
};

function handBack(call: ServerCall<ProcessingResponse>) {
  const chunks: Buffer[] = [];
  return {
    message(msg: ProcessingRequest) {
      if (msg.request_body) {
        if (msg.request_body.body) chunks.push(Buffer.from(msg.request_body.body));
        if (!msg.request_body.end_of_stream) return;
        const body = Buffer.concat(chunks);
        call.write({
          request_headers: { response: { header_mutation: { set_headers: [destination] } } },
        });
        call.write({
          request_body: {
            response: { body_mutation: { streamed_response: { body, end_of_stream: true } } },
          },
        });
      } else if (msg.response_headers) {
        call.write({ response_headers: { response: {} } });
      } else if (msg.response_body) {
        const body = Buffer.from(msg.response_body.body ?? Buffer.alloc(0));
        const eos = msg.response_body.end_of_stream === true;
        call.write({
          response_body: {
            response: { body_mutation: { streamed_response: { body, end_of_stream: eos } } },
          },
        });
      }
    },
    halfClose: () => call.end(),
    cancel: () => undefined,
  };
}

const { path, ...codec } = extProcCodec();
startGrpcServer(server => server.handle(path, { ...codec, open: handBack }), 0, "127.0.0.1").then(
  handle => process.stdout.write(`bare ext_proc on :${handle.port}\n`),
  err => {
    process.stderr.write(`bare ext_proc: ${String(err)}\n`);
    process.exit(1);
  },
);
process.on("SIGTERM", () => process.exit(0));
