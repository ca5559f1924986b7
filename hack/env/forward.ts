// A TCP forwarder: listens on LISTEN_HOST:LISTEN_PORT and pipes every connection to
// TARGET_HOST:TARGET_PORT. The upstream llm-d-inference-sim listens on a port of every address, so
// each emulated pod runs it on a free port and this forwarder gives it the pod's own podIP:port.
import * as net from "node:net";

const [listen, target] = process.argv.slice(2);
if (!listen || !target) {
  process.stderr.write("usage: forward.ts LISTEN_HOST:PORT TARGET_HOST:PORT\n");
  process.exit(2);
}
const split = (hostPort: string) => {
  const i = hostPort.lastIndexOf(":");
  return { host: hostPort.slice(0, i), port: Number(hostPort.slice(i + 1)) };
};
const from = split(listen);
const to = split(target);
const server = net.createServer(client => {
  const upstream = net.connect(to.port, to.host);
  client.pipe(upstream).pipe(client);
  const close = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on("error", close);
  upstream.on("error", close);
});
server.listen(from.port, from.host, () =>
  process.stdout.write(`forwarding ${listen} -> ${target}\n`),
);
process.on("SIGTERM", () => server.close(() => process.exit(0)));
