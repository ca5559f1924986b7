// The client's HTTP handling against a local server that answers with canned Prometheus API JSON.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import * as https from "node:https";
import type { AddressInfo } from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { ALLOWED_HOSTS_ENV, DENIED_ENV, parseAddressPolicy } from "../address-policy";
import { GateCredentialsError } from "../credentials";
import { clientOptionsFor, queryPrometheus } from "./client";
import { closePrometheusAgents, prometheusAddressProblem } from "./connection";
import { PrometheusError, isPermanentGateError, isPermanentPrometheusError } from "./errors";
import { decodeQueryResponse, parseSampleValue } from "./response";

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

  it("turns a Prometheus error into a typed error naming address, query, status and errorType, not Prometheus' text", async () => {
    handler = json(400, {
      status: "error",
      errorType: "bad_data",
      error: 'invalid parameter "query": 1:5: parse error: unexpected <EOF>',
    });
    const err = await failure(queryPrometheus({ address }, "sum("));
    expect(err.kind).toBe("prometheus");
    expect(err.status).toBe(400);
    expect(err.errorType).toBe("bad_data");
    expect(err.permanent).toBe(true);
    expect(err.address).toBe(address);
    expect(err.query).toBe("sum(");
    expect(err.message).toBe(
      `Prometheus ${address}: query rejected (HTTP 400 Bad Request, errorType bad_data; Prometheus' message not shown) (query: sum()`,
    );
  });

  it("reports a non-JSON HTTP error with its status only", async () => {
    handler = (_req, res) => {
      res.writeHead(502, "Bad Gateway from the proxy", { "content-type": "text/plain" });
      res.end("Bad Gateway from the proxy");
    };
    const err = await failure(queryPrometheus({ address }, "up"));
    expect(err.kind).toBe("http");
    expect(err.status).toBe(502);
    expect(err.permanent).toBe(false);
    expect(err.message).toBe(
      `Prometheus ${address}: HTTP 502 Bad Gateway: server error (Prometheus or a proxy in front of it) (query: up)`,
    );
  });

  it("reports a 401 from an auth proxy as a permanent error pointing at the token", async () => {
    handler = json(401, { message: "unauthorized" });
    const err = await failure(queryPrometheus({ address, bearerToken: "wrong" }, "up"));
    expect(err.kind).toBe("http");
    expect(err.status).toBe(401);
    expect(err.permanent).toBe(true);
    expect(err.message).toContain("HTTP 401 Unauthorized: check the bearer token");
    expect(err.message).not.toContain("wrong");
  });

  it("rejects a 200 that is not a Prometheus response without quoting it", async () => {
    handler = (_req, res) => {
      res.writeHead(200, { "content-type": "text/html" });
      res.end("<html>login</html>");
    };
    const err = await failure(queryPrometheus({ address }, "up"));
    expect(err.kind).toBe("bad-response");
    expect(err.message).toContain("HTTP 200 OK but not a Prometheus API response (not JSON)");
    expect(err.message).not.toContain("login");
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

describe("replies are never echoed", () => {
  const SECRET = "AKIAEXAMPLESECRET-do-not-leak-8f3a";
  const cases: [string, Handler][] = [
    [
      "a 500 with a text body and reason phrase",
      (_req, res) => {
        res.writeHead(500, `oops ${SECRET}`, { "content-type": "text/plain" });
        res.end(`internal error: ${SECRET}`);
      },
    ],
    ["a 403 JSON body", json(403, { message: SECRET })],
    [
      "a Prometheus error's text and an unknown errorType",
      json(422, { status: "error", errorType: SECRET, error: SECRET }),
    ],
    [
      "a Prometheus bad_data error's text",
      json(400, { status: "error", errorType: "bad_data", error: SECRET }),
    ],
    [
      "a 200 that is not JSON (an internal page)",
      (_req, res) => {
        res.writeHead(200, { "content-type": "text/html" });
        res.end(`<html><body>${SECRET}</body></html>`);
      },
    ],
    ["a 200 JSON that is not a Prometheus response", json(200, { secret: SECRET })],
    ["an unknown result type", success({ resultType: SECRET, result: [] })],
    ["a malformed sample value", success({ resultType: "scalar", result: [1, SECRET] })],
    [
      "a sample value that is no string",
      success({ resultType: "scalar", result: [1, { SECRET }] }),
    ],
    [
      "a redirect to a secret location",
      (_req, res) => {
        res.writeHead(302, { location: `/elsewhere?${SECRET}` });
        res.end(SECRET);
      },
    ],
  ];
  it.each(cases)("%s: the error carries no byte of the reply", async (_what, h) => {
    handler = h;
    const err = await failure(queryPrometheus({ address }, "up"));
    expect(err.message).not.toContain(SECRET);
    expect(err.message).not.toContain("AKIA");
    expect(JSON.stringify({ ...err, message: err.message })).not.toContain(SECRET);
    expect(err.status).toBeGreaterThanOrEqual(200);
  });

  it("keeps only Prometheus' documented errorTypes", async () => {
    handler = json(422, {
      status: "error",
      errorType: "execution",
      error: "many-to-many matching",
    });
    const err = await failure(queryPrometheus({ address }, "a / b"));
    expect(err.errorType).toBe("execution");
    expect(err.permanent).toBe(false);
    expect(err.message).toContain("(HTTP 422 Unprocessable Entity, errorType execution;");
    expect(err.message).not.toContain("many-to-many");
    handler = json(422, { status: "error", errorType: "made_up", error: "x" });
    expect((await failure(queryPrometheus({ address }, "up"))).errorType).toBeUndefined();
  });
});

describe("redirects", () => {
  it("are not followed: one request, a permanent error without the location", async () => {
    handler = (req, res) => {
      if (req.url === "/api/v1/query") {
        res.writeHead(307, { location: "/moved/api/v1/query" });
        res.end();
      } else success({ resultType: "scalar", result: [1, "1"] })(req, res);
    };
    const err = await failure(queryPrometheus({ address, bearerToken: "tok" }, "up"));
    expect(seen.map(s => s.url)).toEqual(["/api/v1/query"]);
    expect(err.kind).toBe("http");
    expect(err.status).toBe(307);
    expect(err.permanent).toBe(true);
    expect(err.message).toContain(
      "HTTP 307 Temporary Redirect: redirects are not followed; use the address Prometheus answers on",
    );
    expect(err.message).not.toContain("moved");
  });
});

describe("the address policy", () => {
  const envBefore = { ...process.env };
  afterEach(() => {
    for (const name of [ALLOWED_HOSTS_ENV, DENIED_ENV]) {
      if (envBefore[name] === undefined) delete process.env[name];
      else process.env[name] = envBefore[name];
    }
  });
  const port = () => new URL(address).port;

  it("refuses a cloud metadata address before sending anything, naming the variable", async () => {
    const started = Date.now();
    const err = await failure(
      queryPrometheus(
        { address: "http://169.254.169.254/", bearerToken: "tok", timeoutMs: 5000 },
        "up",
      ),
    );
    expect(Date.now() - started).toBeLessThan(1000);
    expect(err.kind).toBe("forbidden-address");
    expect(err.permanent).toBe(true);
    expect(isPermanentPrometheusError(err)).toBe(true);
    expect(err.message).toBe(
      `Prometheus http://169.254.169.254/: address refused by the operator's address policy: ` +
        `169.254.169.254 is a cloud metadata address (AWS, Azure, GCP, OpenStack, …), refused by default; ` +
        `to allow it, list this address in ${ALLOWED_HOSTS_ENV} on the operator (query: up)`,
    );
    expect((await failure(queryPrometheus({ address: "http://2852039166:9090" }, "up"))).kind).toBe(
      "forbidden-address",
    );
  });

  it("refuses a denied IP literal with no request made", async () => {
    handler = success({ resultType: "scalar", result: [1, "1"] });
    const addressPolicy = parseAddressPolicy({ denied: "127.0.0.1" });
    const err = await failure(
      queryPrometheus({ address, addressPolicy, bearerToken: "tok" }, "up"),
    );
    expect(err.kind).toBe("forbidden-address");
    expect(err.message).toContain(`127.0.0.1 is denied by ${DENIED_ENV} (127.0.0.1)`);
    expect(seen).toHaveLength(0);
  });

  it("checks the addresses a host name resolves to when connecting", async () => {
    handler = success({ resultType: "scalar", result: [1, "1"] });
    const addressPolicy = parseAddressPolicy({ denied: "127.0.0.0/8, ::1" });
    const err = await failure(
      queryPrometheus({ address: `http://localhost:${port()}`, addressPolicy }, "up"),
    );
    expect(err.kind).toBe("forbidden-address");
    expect(err.permanent).toBe(true);
    expect(err.message).toMatch(
      new RegExp(`localhost resolves to (127\\.0\\.0\\.1|::1), which is denied by ${DENIED_ENV}`),
    );
    expect(seen).toHaveLength(0);
  });

  it("connects only to resolved addresses the allow list covers", async () => {
    handler = success({ resultType: "scalar", result: [1, "2"] });
    // localhost may resolve to ::1 first; only 127.0.0.1 (where the server listens) is allowed.
    const addressPolicy = parseAddressPolicy({ allowedHosts: "127.0.0.1" });
    const result = await queryPrometheus(
      { address: `http://localhost:${port()}`, addressPolicy },
      "up",
    );
    expect(result).toEqual({ kind: "scalar", value: 2 });
    const byName = parseAddressPolicy({ allowedHosts: "localhost" });
    expect(
      await queryPrometheus({ address: `http://localhost:${port()}`, addressPolicy: byName }, "up"),
    ).toEqual({ kind: "scalar", value: 2 });
    const other = parseAddressPolicy({ allowedHosts: "prometheus.monitoring" });
    const err = await failure(queryPrometheus({ address, addressPolicy: other }, "up"));
    expect(err.kind).toBe("forbidden-address");
    expect(err.message).toContain(`127.0.0.1 is not in ${ALLOWED_HOSTS_ENV}`);
  });

  it("refuses credentials in the address and does not repeat them", async () => {
    const withCreds = `http://admin:hunter2@127.0.0.1:${port()}/`;
    const err = await failure(queryPrometheus({ address: withCreds }, "up"));
    expect(err.kind).toBe("forbidden-address");
    expect(err.message).toContain("carries credentials");
    expect(err.message).not.toContain("hunter2");
    expect(err.address).toBe(`http://***@127.0.0.1:${port()}/`);
    expect(seen).toHaveLength(0);
  });

  it("follows the operator's environment, read again when it changes", async () => {
    handler = success({ resultType: "scalar", result: [1, "1"] });
    process.env[DENIED_ENV] = "127.0.0.1";
    expect((await failure(queryPrometheus({ address }, "up"))).kind).toBe("forbidden-address");
    process.env[DENIED_ENV] = "not a host";
    const invalid = await failure(queryPrometheus({ address }, "up"));
    expect(invalid.kind).toBe("forbidden-address");
    expect(invalid.message).toContain(`the operator's address policy is invalid`);
    expect(invalid.message).toContain(`${DENIED_ENV}: "not a host"`);
    delete process.env[DENIED_ENV];
    process.env[ALLOWED_HOSTS_ENV] = "127.0.0.0/8";
    expect(await queryPrometheus({ address }, "up")).toEqual({ kind: "scalar", value: 1 });
    expect(seen).toHaveLength(1);
  });

  it("prometheusAddressProblem checks a spec's address without a lookup or request", () => {
    expect(prometheusAddressProblem("http://prometheus.monitoring:9090")).toBeUndefined();
    expect(prometheusAddressProblem(address)).toBeUndefined();
    const metadata = prometheusAddressProblem("http://169.254.169.254/latest/");
    expect(metadata?.kind).toBe("forbidden-address");
    expect(metadata?.message).toMatch(
      /^Prometheus http:\/\/169\.254\.169\.254\/latest\/: address refused .* on the operator$/,
    );
    expect(prometheusAddressProblem("prometheus:9090")?.kind).toBe("invalid-address");
    expect(
      prometheusAddressProblem(address, parseAddressPolicy({ allowedHosts: "10.0.0.0/8" }))?.kind,
    ).toBe("forbidden-address");
  });
});

describe("permanent and transient errors", () => {
  const err = (kind: PrometheusError["kind"], status?: number, errorType?: string) =>
    new PrometheusError(kind, "x", { address: "http://p", query: "up", status, errorType });
  it.each([
    ["invalid-address", undefined, undefined, true],
    ["forbidden-address", undefined, undefined, true],
    ["network", undefined, undefined, false],
    ["timeout", undefined, undefined, false],
    ["prometheus", 400, "bad_data", true],
    ["prometheus", 404, "not_found", true],
    ["prometheus", 422, "execution", false],
    ["prometheus", 503, "timeout", false],
    ["prometheus", 499, "canceled", false],
    ["prometheus", 500, "internal", false],
    ["prometheus", 503, "unavailable", false],
    ["prometheus", 400, undefined, true],
    ["prometheus", 500, undefined, false],
    ["http", 301, undefined, true],
    ["http", 400, undefined, true],
    ["http", 401, undefined, true],
    ["http", 403, undefined, true],
    ["http", 404, undefined, true],
    ["http", 405, undefined, true],
    ["http", 408, undefined, false],
    ["http", 429, undefined, false],
    ["http", 500, undefined, false],
    ["http", 502, undefined, false],
    ["http", 503, undefined, false],
    ["http", 504, undefined, false],
    ["bad-response", 200, undefined, true],
  ] as const)("%s %s %s: permanent %s", (kind, status, errorType, permanent) => {
    const e = err(kind, status, errorType);
    expect(e.permanent).toBe(permanent);
    expect(isPermanentPrometheusError(e)).toBe(permanent);
    expect(isPermanentGateError(e)).toBe(permanent);
  });

  it("other errors are not permanent; GateCredentialsError is a permanent gate error", () => {
    expect(isPermanentPrometheusError(new Error("x"))).toBe(false);
    expect(isPermanentGateError(new Error("x"))).toBe(false);
    const creds = new GateCredentialsError("ns", "s", "not labelled");
    expect(isPermanentPrometheusError(creds)).toBe(false);
    expect(isPermanentGateError(creds)).toBe(true);
  });

  it("a 404 names the path it tried", async () => {
    handler = (_req, res) => {
      res.writeHead(404);
      res.end("404 page not found");
    };
    const e = await failure(queryPrometheus({ address: `${address}/prom` }, "up"));
    expect(e.permanent).toBe(true);
    expect(e.message).toContain(
      "HTTP 404 Not Found: no Prometheus query API at /prom/api/v1/query; check the address and its path prefix",
    );
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
    if (text) expect(() => parseSampleValue(text)).not.toThrow(text);
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
    const addressPolicy = parseAddressPolicy({ allowedHosts: "p" });
    expect(clientOptionsFor({ address: "http://p" }, {}, addressPolicy).addressPolicy).toBe(
      addressPolicy,
    );
    expect(clientOptionsFor({ address: "http://p" }).timeoutMs).toBe(10000);
  });
});
