import http from "node:http";
import { AddressInfo } from "node:net";
import { Agent } from "./http-client";

// Loading ./http-client already fails if an undici upgrade moved the internal paths it requires;
// these check that what they export still behaves as the picker expects.
describe("http-client (undici's Agent without its index)", () => {
  let server: http.Server;
  let base: string;
  const seen: { method?: string; url?: string; accept?: string }[] = [];

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      seen.push({ method: req.method, url: req.url, accept: req.headers.accept });
      res.writeHead(req.url?.startsWith("/missing") ? 404 : 200, { "content-type": "text/plain" });
      res.end(`hello ${req.url}`);
    });
    await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise(resolve => server.close(resolve));
  });

  it("does not load undici's index (fetch, WebSocket, cache, mocks)", () => {
    const loaded = Object.keys(require.cache);
    expect(loaded.filter(k => /undici[\\/]index\.js$/.test(k))).toEqual([]);
    expect(loaded.filter(k => /undici[\\/]lib[\\/](web|mock|cache)[\\/]/.test(k))).toEqual([]);
  });

  it("dispatches a handler directly (the proxy's exchange)", async () => {
    const agent = new Agent();
    try {
      const body = await new Promise<string>((resolve, reject) => {
        const chunks: Buffer[] = [];
        agent.dispatch(
          { origin: base, path: "/direct", method: "GET" },
          {
            onRequestStart: () => {},
            onResponseStart: () => {},
            onResponseData: (_c, chunk) => void chunks.push(chunk),
            onResponseEnd: () => resolve(Buffer.concat(chunks).toString()),
            onResponseError: (_c, err) => reject(err),
          },
        );
      });
      expect(body).toBe("hello /direct");
    } finally {
      await agent.close();
    }
  });
});
