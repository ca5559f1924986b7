// The reference hop for part (a): the least a Node HTTP proxy does — read the request, send it to
// one fixed model server over undici, relay the answer — with no parsing, no decision and no
// metrics. What it adds over calling the simulator directly is this machine's cost of one more
// process and two more loopback hops, which no Node picker can go below.
//   node --import tsx bench/picker/bare-proxy.ts --upstream 127.0.0.5:8000
import http from "node:http";
import { AddressInfo } from "node:net";
import { Agent, Dispatcher } from "undici";

const upstreamArg = process.argv.indexOf("--upstream");
const origin = `http://${process.argv[upstreamArg + 1]}`;
const agent = new Agent({ keepAliveTimeout: 30_000 });

function relay(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer): void {
  let held: Buffer | undefined;
  agent.dispatch(
    {
      origin,
      path: req.url ?? "/",
      method: (req.method ?? "POST") as Dispatcher.HttpMethod,
      headers: { "content-type": "application/json", "content-length": String(body.length) },
      body,
    },
    {
      onRequestStart() {},
      onResponseStart(_c, status, headers) {
        res.writeHead(status, { "content-type": String(headers["content-type"] ?? "") });
      },
      onResponseData(c, chunk) {
        if (held && !res.write(held)) {
          c.pause();
          res.once("drain", () => c.resume());
        }
        held = chunk;
      },
      onResponseEnd() {
        res.end(held);
      },
      onResponseError() {
        res.destroy();
      },
    },
  );
}

const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => relay(req, res, Buffer.concat(chunks)));
});
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`bare proxy on :${(server.address() as AddressInfo).port}\n`);
});
process.on("SIGTERM", () => process.exit(0));
