// The fast codec against proto-loader's, the reference: what one encodes the other decodes to the
// same object, for the messages the picker builds and for random ones.
import fc from "fast-check";
import { RouteSuccess } from "../../core/router";
import { pickerError } from "../../core/types";
import { loadExtProcDefinition, loadExtProcRoot } from "../../protos";
import { defaultExtProcConfig } from "../config";
import { EXT_PROC_PATH, extProcCodec } from "../server";
import {
  ProcessingRequest,
  ProcessingResponse,
  bodyWithDecision,
  headersWithDecision,
  immediateResponse,
  streamedBody,
} from "../messages";
import { decodeMessage } from "./decode";
import { encodeMessage } from "./encode";
import { CodecUnsupported, planOf } from "./plan";

interface Method {
  requestSerialize(m: unknown): Buffer;
  requestDeserialize(b: Buffer): ProcessingRequest;
  responseSerialize(m: unknown): Buffer;
  responseDeserialize(b: Buffer): ProcessingResponse;
}
const reference = (
  loadExtProcDefinition()["envoy.service.ext_proc.v3.ExternalProcessor"] as unknown as {
    Process: Method;
  }
).Process;
const root = loadExtProcRoot();
const requestPlan = planOf(root.lookupType("envoy.service.ext_proc.v3.ProcessingRequest"));
const responsePlan = planOf(root.lookupType("envoy.service.ext_proc.v3.ProcessingResponse"));
type Obj = Record<string, unknown>;

/** Buffers as their bytes (a view and a copy compare equal), keys in one order. */
const canonical = (o: unknown): unknown => {
  if (Buffer.isBuffer(o)) return `bytes:${o.toString("hex")}`;
  if (Array.isArray(o)) return o.map(canonical);
  if (o && typeof o === "object")
    return Object.fromEntries(
      Object.keys(o)
        .sort()
        .map(k => [k, canonical((o as Obj)[k])]),
    );
  return o;
};

function decision(body: string, addresses: string[], bodyChanged: boolean): RouteSuccess {
  return {
    ok: true,
    endpoints: addresses.map(address => ({ address })),
    body: Buffer.from(body),
    bodyChanged,
    model: "travel-helper",
    targetModel: "travel-helper-v2",
  } as unknown as RouteSuccess;
}

const address = fc
  .tuple(fc.nat(255), fc.nat(255), fc.integer({ min: 1, max: 65535 }))
  .map(([a, b, p]) => `10.${a}.${b}.7:${p}`);
const text = fc.string({ unit: "grapheme", maxLength: 40 });
const bytes = fc.uint8Array({ maxLength: 300 }).map(a => Buffer.from(a));
const addresses = fc.array(address, { minLength: 1, maxLength: 4 });

/** Every response the picker builds, from random decisions and errors. */
const builtResponse: fc.Arbitrary<ProcessingResponse> = fc.oneof(
  fc
    .tuple(text, addresses, fc.boolean(), fc.boolean())
    .map(([body, addrs, changed, hasBody]) =>
      headersWithDecision(decision(body, addrs, changed), defaultExtProcConfig, hasBody),
    ),
  fc
    .tuple(text, addresses, fc.boolean())
    .map(([body, addrs, changed]) =>
      bodyWithDecision(decision(body, addrs, changed), defaultExtProcConfig),
    ),
  fc
    .tuple(fc.constantFrom(400, 404, 413, 429, 500, 503), text)
    .map(([status, message]) => immediateResponse({ ...pickerError("Internal", message), status })),
  fc
    .tuple(
      fc.constantFrom("request_body" as const, "response_body" as const),
      bytes,
      fc.integer({ min: 1, max: 100 }),
      fc.boolean(),
    )
    .map(([phase, body, chunk, eos]) => streamedBody(phase, body, chunk, eos)[0]),
  fc.constantFrom<ProcessingResponse>(
    { request_headers: { response: {} } },
    { response_headers: { response: {} } },
    { response_body: { response: {} } },
    { request_trailers: {} },
    { response_trailers: {} },
  ),
);

const headerValue = fc.record(
  { key: text, value: text, raw_value: bytes },
  { requiredKeys: ["key"] },
);
const headers = fc.record(
  {
    headers: fc.record({ headers: fc.array(headerValue, { maxLength: 5 }) }),
    end_of_stream: fc.boolean(),
  },
  { requiredKeys: [] },
);
const body = fc.record({ body: bytes, end_of_stream: fc.boolean() }, { requiredKeys: [] });
const mode = fc.constantFrom(
  "NONE",
  "STREAMED",
  "BUFFERED",
  "BUFFERED_PARTIAL",
  "FULL_DUPLEX_STREAMED",
);
const trailers = { trailers: { headers: [{ key: "grpc-status", value: "0" }] } };
const struct = fc.record({
  fields: fc.dictionary(fc.string({ maxLength: 5 }), fc.record({ stringValue: text })),
});

/** What Envoy may send: one phase of the request, and the optional fields beside it. */
const request: fc.Arbitrary<Obj> = fc
  .tuple(
    fc.oneof(
      headers.map(h => ({ request_headers: h })),
      headers.map(h => ({ response_headers: h })),
      body.map(b => ({ request_body: b })),
      body.map(b => ({ response_body: b })),
      fc.constant({ request_trailers: trailers }),
      fc.constant({ response_trailers: {} }),
    ),
    fc.record(
      {
        observability_mode: fc.boolean(),
        protocol_config: fc.record(
          { request_body_mode: mode, response_body_mode: mode },
          { requiredKeys: [] },
        ),
        attributes: fc.dictionary(fc.string({ maxLength: 10 }), struct, { maxKeys: 2 }),
      },
      { requiredKeys: [] },
    ),
  )
  .map(([phase, extra]) => ({ ...phase, ...extra }));

describe("ext_proc codec", () => {
  it("encodes every response the picker builds as proto-loader does (same decoded message)", () => {
    fc.assert(
      fc.property(builtResponse, response => {
        const ours = encodeMessage(responsePlan, response as Obj);
        const theirs = reference.responseSerialize(response);
        expect(canonical(reference.responseDeserialize(ours))).toEqual(
          canonical(reference.responseDeserialize(theirs)),
        );
      }),
      { numRuns: 400 },
    );
  });

  it("gives each caller its own buffer (the encoder is shared, its output is not)", () => {
    const a = { request_headers: { response: { clear_route_cache: true } } } as Obj;
    const b = { response_body: { response: { status: "CONTINUE" } } } as Obj;
    const first = encodeMessage(responsePlan, a);
    const copy = Buffer.from(first);
    encodeMessage(responsePlan, b);
    expect(first).toEqual(copy);
  });

  it("decodes what Envoy sends as proto-loader does", () => {
    fc.assert(
      fc.property(request, msg => {
        const wire = reference.requestSerialize(msg);
        expect(canonical(decodeMessage(requestPlan, wire))).toEqual(
          canonical(reference.requestDeserialize(wire)),
        );
      }),
      { numRuns: 400 },
    );
  });

  it("keeps a map key named __proto__ as a key (it is the sender's string)", () => {
    const wire = reference.requestSerialize({
      request_headers: {},
      attributes: { ["__proto__"]: { fields: {} }, other: { fields: {} } },
    });
    const decoded = decodeMessage(requestPlan, wire) as Obj;
    expect(canonical(decoded)).toEqual(canonical(reference.requestDeserialize(wire)));
    expect(Object.keys(decoded.attributes as Obj)).toEqual(["__proto__", "other"]);
    expect(Object.getPrototypeOf(decoded.attributes)).toBe(Object.prototype);
  });

  it("gives bytes fields as views of the received buffer, not copies", () => {
    const wire = reference.requestSerialize({
      request_body: { body: Buffer.from("hello"), end_of_stream: true },
    });
    const decoded = decodeMessage(requestPlan, wire) as ProcessingRequest;
    expect(decoded.request_body?.body?.buffer).toBe(wire.buffer);
    expect(decoded.request).toBe("request_body");
  });

  it("refuses what it does not know, so that the caller can use proto-loader's serializer", () => {
    const unknownField = { request_headers: { response: { not_a_field: 1 } } };
    expect(() => encodeMessage(responsePlan, unknownField)).toThrow(CodecUnsupported);
    const wrongType = { request_headers: { response: { clear_route_cache: "yes" } } };
    expect(() => encodeMessage(responsePlan, wrongType)).toThrow(CodecUnsupported);
    const unknownEnum = { request_body: { response: { status: "MAYBE" } } };
    expect(() => encodeMessage(responsePlan, unknownEnum)).toThrow(CodecUnsupported);
    // A oneof's name (as proto-loader's decoded objects carry it) is not a field: it is skipped.
    const withOneofName = { response: "request_trailers", request_trailers: {} } as Obj;
    expect(reference.responseDeserialize(encodeMessage(responsePlan, withOneofName))).toEqual(
      reference.responseDeserialize(reference.responseSerialize(withOneofName)),
    );
  });

  it("serves Process at proto-loader's path, and falls back to its serializer", () => {
    expect(EXT_PROC_PATH).toBe((reference as unknown as { path: string }).path);
    const codec = extProcCodec();
    const unknown = { request_headers: { response: { clear_route_cache: true } }, extra: 1 };
    expect(codec.encode(unknown as ProcessingResponse)).toEqual(
      reference.responseSerialize(unknown),
    );
    // Framed: the same bytes after 5 left for gRPC's prefix, known messages and the fallback.
    const known: ProcessingResponse = {
      response_headers: { response: { clear_route_cache: true } },
    };
    for (const msg of [known, unknown as ProcessingResponse]) {
      const framed = codec.encodeFramed(msg);
      expect(framed.length).toBe(codec.encode(msg).length + 5);
      expect(framed.subarray(5)).toEqual(codec.encode(msg));
    }
  });

  it("rejects truncated input instead of reading past it", () => {
    const wire = reference.requestSerialize({
      request_body: { body: Buffer.alloc(100, 1), end_of_stream: true },
    });
    for (const cut of [1, 2, 10, 50, wire.length - 1]) {
      expect(() => decodeMessage(requestPlan, wire.subarray(0, cut))).toThrow(/protobuf/);
    }
  });

  it("writes 64-bit, negative and unicode values as proto-loader does", () => {
    const response = {
      immediate_response: {
        status: { code: 429 },
        grpc_status: { status: 4294967295 },
        details: "trop de requêtes — ✓",
      },
      override_message_timeout: { seconds: "9007199254740993", nanos: -5 },
      dynamic_metadata: {
        fields: {
          n: { numberValue: -1.5 },
          b: { boolValue: false },
          l: { nullValue: "NULL_VALUE" },
        },
      },
    };
    const ours = encodeMessage(responsePlan, response);
    expect(canonical(reference.responseDeserialize(ours))).toEqual(
      canonical(reference.responseDeserialize(reference.responseSerialize(response))),
    );
  });
});
