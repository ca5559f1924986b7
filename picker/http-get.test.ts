// The picker's GET client (node:http) against a real HTTP server: path, query and headers, status,
// bodies read every way, keep-alive, and its two timeouts.
import http from "node:http";
import { AddressInfo } from "node:net";
import { HttpTimeoutError, get } from "./http-get";

describe("http-get", () => {
  let server: http.Server;
  let base: string;
  const seen: { url?: string; accept?: string; port: number }[] = [];

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      seen.push({ url: req.url, accept: req.headers.accept, port: req.socket.remotePort! });
      if (req.url === "/hang") return; // never answers
      if (req.url === "/stall") {
        res.writeHead(200).write("part"); // then silence
        return;
      }
      if (req.url === "/lines") {
        res.writeHead(200);
        let n = 0;
        const timer = setInterval(() => {
          res.write(`{"n":${n}}\n`);
          if (++n === 3) {
            clearInterval(timer);
            res.end();
          }
        }, 20);
        return;
      }
      if (req.url === "/json") {
        res.writeHead(200, { "content-type": "application/json" }).end('{"a":[1,2]}');
        return;
      }
      res.writeHead(req.url?.startsWith("/missing") ? 404 : 200).end(`hello ${req.url}`);
    });
    await new Promise<void>(resolve => server.listen(0, "127.0.0.1", resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise(resolve => server.close(resolve));
  });

  const timeouts = { headersTimeoutMs: 2000, bodyTimeoutMs: 2000 };

  it("GETs path, query and headers, reads text, JSON and chunks, and reuses the connection", async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const res = await get(`${base}/metrics?a=1&b=2`, {
        agent,
        headers: { accept: "text/plain" },
        ...timeouts,
      });
      expect(res.statusCode).toBe(200);
      expect(await res.body.text()).toBe("hello /metrics?a=1&b=2");
      const missing = await get(new URL(`${base}/missing`), { agent, ...timeouts });
      expect(missing.statusCode).toBe(404);
      await missing.body.dump();
      expect(await (await get(`${base}/json`, { agent, ...timeouts })).body.json()).toEqual({
        a: [1, 2],
      });
      const lines: string[] = [];
      for await (const chunk of (await get(`${base}/lines`, { agent, ...timeouts })).body)
        lines.push(chunk.toString());
      expect(lines.join("")).toBe('{"n":0}\n{"n":1}\n{"n":2}\n');
      const mine = seen.slice(-4);
      expect(mine[0]).toMatchObject({ url: "/metrics?a=1&b=2", accept: "text/plain" });
      expect(mine[1]).toMatchObject({ url: "/missing", accept: undefined });
      expect(new Set(mine.map(s => s.port)).size).toBe(1); // one kept-alive connection
    } finally {
      agent.destroy();
    }
  });

  it("fails a request without headers in time, and a body that goes silent", async () => {
    const agent = new http.Agent({ keepAlive: true });
    try {
      const t0 = Date.now();
      const hang = get(`${base}/hang`, { agent, headersTimeoutMs: 100, bodyTimeoutMs: 5000 });
      await expect(hang).rejects.toThrow(new HttpTimeoutError("headers", 100));
      const stall = await get(`${base}/stall`, {
        agent,
        headersTimeoutMs: 5000,
        bodyTimeoutMs: 100,
      });
      await expect(stall.body.text()).rejects.toThrow(/the body went silent for 100 ms/);
      expect(Date.now() - t0).toBeLessThan(2000);
      // A trickle keeps the body alive: each chunk resets its silence timeout.
      const lines = await get(`${base}/lines`, {
        agent,
        headersTimeoutMs: 5000,
        bodyTimeoutMs: 60,
      });
      expect(await lines.body.text()).toContain('{"n":2}');
    } finally {
      agent.destroy();
    }
  });

  it("bounds the whole GET with one timeout, a trickling body included", async () => {
    const agent = new http.Agent({ keepAlive: true });
    try {
      await expect(get(`${base}/hang`, { agent, timeoutMs: 100 })).rejects.toThrow(
        new HttpTimeoutError("whole", 100),
      );
      // Headers at once, then silence: the body is cut at the same deadline.
      const stalled = get(`${base}/stall`, { agent, timeoutMs: 150 }).then(r => r.body.text());
      await expect(stalled).rejects.toThrow(/no answer in 150 ms/);
      const quick = await get(`${base}/json`, { agent, timeoutMs: 2000 });
      expect(await quick.body.json()).toEqual({ a: [1, 2] });
    } finally {
      agent.destroy();
    }
  });

  it("stops at the caller's signal", async () => {
    const agent = new http.Agent({ keepAlive: true });
    try {
      const abort = new AbortController();
      const res = await get(`${base}/stall`, { agent, signal: abort.signal, ...timeouts });
      const reading = res.body.text();
      abort.abort();
      await expect(reading).rejects.toThrow(/abort/i);
      await expect(
        get(`${base}/json`, { agent, signal: abort.signal, ...timeouts }),
      ).rejects.toThrow(/abort/i);
    } finally {
      agent.destroy();
    }
  });
});
