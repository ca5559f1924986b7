// The client's HTTP handling against a local server that answers with canned Prometheus API JSON.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import * as https from "node:https";
import type { AddressInfo } from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import {
  PrometheusError,
  clientOptionsFor,
  closePrometheusAgents,
  decodeQueryResponse,
  parseSampleValue,
  queryPrometheus,
} from "./prometheus";

interface Seen {
  method?: string;
  url?: string;
  headers: http.IncomingHttpHeaders;
  form: URLSearchParams;
}

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

let handler: Handler;
let seen: Seen[] = [];
let server: http.Server;
let address: string;

function onRequest(req: http.IncomingMessage, res: http.ServerResponse) {
  let body = "";
  req.on("data", chunk => (body += chunk));
  req.on("end", () => {
    seen.push({
      method: req.method,
      url: req.url,
      headers: req.headers,
      form: new URLSearchParams(body),
    });
    handler(req, res);
  });
}

function listen(s: http.Server): Promise<string> {
  return new Promise(resolve =>
    s.listen(0, "127.0.0.1", () => resolve(String((s.address() as AddressInfo).port))),
  );
}

function json(status: number, body: unknown): Handler {
  return (_req, res) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  };
}

const success = (data: unknown) => json(200, { status: "success", data });

async function failure(promise: Promise<unknown>): Promise<PrometheusError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof PrometheusError) return err;
    throw err;
  }
  throw new Error("expected the query to fail");
}

beforeAll(async () => {
  server = http.createServer(onRequest);
  address = `http://127.0.0.1:${await listen(server)}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise(resolve => server.close(resolve));
  await closePrometheusAgents();
});

beforeEach(() => {
  seen = [];
});

describe("queryPrometheus", () => {
  it("POSTs a form-encoded instant query and decodes a vector", async () => {
    handler = success({
      resultType: "vector",
      result: [
        { metric: { pool: "v2" }, value: [1700000000.5, "0.25"] },
        { metric: {}, value: [1700000000.5, "NaN"] },
        { metric: { a: "b" }, value: [1700000000.5, "+Inf"] },
        { metric: { a: "c" }, value: [1700000000.5, "-Inf"] },
      ],
    });
    const query = 'sum(rate(x{pool="a&b=c"}[1m]))';
    const result = await queryPrometheus(
      { address, timeoutMs: 2000 },
      query,
      new Date(1700000000500),
    );
    expect(result).toEqual({
      kind: "vector",
      series: [
        { labels: { pool: "v2" }, value: 0.25 },
        { labels: {}, value: NaN },
        { labels: { a: "b" }, value: Infinity },
        { labels: { a: "c" }, value: -Infinity },
      ],
    });
    expect(seen).toHaveLength(1);
    expect(seen[0].method).toBe("POST");
    expect(seen[0].url).toBe("/api/v1/query");
    expect(seen[0].headers["content-type"]).toBe("application/x-www-form-urlencoded");
    expect(seen[0].headers.authorization).toBeUndefined();
    expect(seen[0].form.get("query")).toBe(query);
    expect(seen[0].form.get("timeout")).toBe("2000ms");
    expect(seen[0].form.get("time")).toBe("1700000000.500");
  });

  it("decodes a scalar, keeps a path prefix and sends the bearer token", async () => {
    handler = success({ resultType: "scalar", result: [1700000000, "3.5"] });
    const result = await queryPrometheus(
      { address: `${address}/prometheus/`, bearerToken: "s3cret\n" },
      "scalar(1)",
    );
    expect(result).toEqual({ kind: "scalar", value: 3.5 });
    expect(seen[0].url).toBe("/prometheus/api/v1/query");
    expect(seen[0].headers.authorization).toBe("Bearer s3cret");
    expect(seen[0].form.get("time")).toBeNull();
    expect(seen[0].form.get("timeout")).toBe("10000ms");
  });

  it("turns a Prometheus error into a typed error naming address, query and cause", async () => {
    handler = json(400, {
      status: "error",
      errorType: "bad_data",
      error: 'invalid parameter "query": 1:5: parse error: unexpected <EOF>',
    });
    const err = await failure(queryPrometheus({ address }, "sum("));
    expect(err.kind).toBe("prometheus");
    expect(err.status).toBe(400);
    expect(err.errorType).toBe("bad_data");
    expect(err.address).toBe(address);
    expect(err.query).toBe("sum(");
    expect(err.message).toBe(
      `Prometheus ${address}: query rejected (HTTP 400, bad_data): invalid parameter "query": 1:5: parse error: unexpected <EOF> (query: sum()`,
    );
  });

  it("reports a non-JSON HTTP error with its status and a snippet", async () => {
    handler = (_req, res) => {
      res.writeHead(502, { "content-type": "text/plain" });
      res.end("Bad Gateway from the proxy");
    };
    const err = await failure(queryPrometheus({ address }, "up"));
    expect(err.kind).toBe("http");
    expect(err.status).toBe(502);
    expect(err.message).toContain("HTTP 502: Bad Gateway from the proxy");
  });

  it("reports a 401 from an auth proxy", async () => {
    handler = json(401, { message: "unauthorized" });
    const err = await failure(queryPrometheus({ address, bearerToken: "wrong" }, "up"));
    expect(err.kind).toBe("http");
    expect(err.status).toBe(401);
  });

  it("rejects a 200 that is not a Prometheus response", async () => {
    handler = (_req, res) => {
      res.writeHead(200, { "content-type": "text/html" });
      res.end("<html>login</html>");
    };
    const err = await failure(queryPrometheus({ address }, "up"));
    expect(err.kind).toBe("bad-response");
    expect(err.message).toContain("not a Prometheus API response: <html>login</html>");
  });

  it("rejects a range vector with advice", async () => {
    handler = success({ resultType: "matrix", result: [] });
    const err = await failure(queryPrometheus({ address }, "up[5m]"));
    expect(err.kind).toBe("bad-response");
    expect(err.message).toContain("range vector (matrix)");
  });

  it("times out when Prometheus does not answer", async () => {
    handler = () => undefined; // never answers
    const started = Date.now();
    const err = await failure(queryPrometheus({ address, timeoutMs: 200 }, "up"));
    expect(err.kind).toBe("timeout");
    expect(err.message).toBe(`Prometheus ${address}: no answer within 200 ms (query: up)`);
    expect(Date.now() - started).toBeLessThan(5000);
    server.closeAllConnections();
  });

  it("reports an unreachable Prometheus", async () => {
    const closed = http.createServer();
    const port = await listen(closed);
    await new Promise(resolve => closed.close(resolve));
    const err = await failure(queryPrometheus({ address: `http://127.0.0.1:${port}` }, "up"));
    expect(err.kind).toBe("network");
    expect(err.message).toContain("connection refused (ECONNREFUSED)");
  });

  it("rejects an invalid address before sending anything", async () => {
    const err = await failure(queryPrometheus({ address: "prometheus:9090" }, "up"));
    expect(err.kind).toBe("invalid-address");
    expect(err.message).toContain("address must be http:// or https://");
    expect((await failure(queryPrometheus({ address: "::" }, "up"))).kind).toBe("invalid-address");
  });
});

describe("queryPrometheus over TLS", () => {
  let tlsServer: https.Server;
  let tlsAddress: string;
  let caPem: string;

  beforeAll(async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "prom-tls-"));
    const key = path.join(dir, "key.pem");
    const cert = path.join(dir, "cert.pem");
    execFileSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        key,
        "-out",
        cert,
        "-days",
        "1",
        "-subj",
        "/CN=127.0.0.1",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
      ],
      { stdio: "ignore" },
    );
    caPem = fs.readFileSync(cert, "utf8");
    tlsServer = https.createServer({ key: fs.readFileSync(key), cert: caPem }, onRequest);
    tlsAddress = `https://127.0.0.1:${await listen(tlsServer)}`;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  afterAll(async () => {
    tlsServer.closeAllConnections();
    await new Promise(resolve => tlsServer.close(resolve));
  });

  it("trusts the given CA bundle", async () => {
    handler = success({ resultType: "vector", result: [{ metric: {}, value: [1, "1"] }] });
    const result = await queryPrometheus({ address: tlsAddress, caPem }, "up");
    expect(result).toEqual({ kind: "vector", series: [{ labels: {}, value: 1 }] });
  });

  it("refuses a server certificate it cannot verify", async () => {
    handler = success({ resultType: "vector", result: [] });
    const err = await failure(queryPrometheus({ address: tlsAddress }, "up"));
    expect(err.kind).toBe("network");
    expect(err.message).toMatch(/self[- ]signed/i);
  });
});

describe("decoding", () => {
  it.each([
    ["1", 1],
    ["-2.5e3", -2500],
    ["NaN", NaN],
    ["+Inf", Infinity],
    ["-Inf", -Infinity],
  ])("parses sample value %j", (text, value) => {
    expect(parseSampleValue(text)).toBe(value);
  });

  it.each(["", "abc", "1,5", " 1"])("rejects sample value %j", text => {
    expect(() => parseSampleValue(text)).toThrow(/is not a number/);
  });

  it("rejects malformed bodies with a readable message", () => {
    expect(() => decodeQueryResponse({ status: "success" })).toThrow("response has no data object");
    expect(() => decodeQueryResponse({ data: { resultType: "vector", result: {} } })).toThrow(
      "vector result is not a list",
    );
    expect(() =>
      decodeQueryResponse({ data: { resultType: "vector", result: [{ metric: {}, value: [1] }] } }),
    ).toThrow('vector sample 0: expected [timestamp, "value"]');
    expect(() =>
      decodeQueryResponse({
        data: { resultType: "vector", result: [{ metric: {}, histogram: [1, {}] }] },
      }),
    ).toThrow("native histogram samples are not supported");
    expect(() => decodeQueryResponse({ data: { resultType: "string", result: [1, "a"] } })).toThrow(
      'unsupported result type "string"',
    );
  });

  it("builds client options from a provider and its secrets", () => {
    expect(
      clientOptionsFor(
        { address: "http://p:9090", timeout: "5s", bearerTokenSecretRef: { name: "s", key: "t" } },
        { bearerToken: "tok" },
      ),
    ).toEqual({ address: "http://p:9090", timeoutMs: 5000, bearerToken: "tok", caPem: undefined });
    expect(clientOptionsFor({ address: "http://p" }).timeoutMs).toBe(10000);
  });
});
