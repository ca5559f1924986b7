// The picker's gRPC server speaking to a real gRPC client (grpc-js) and to raw HTTP/2: framing
// across DATA frames, statuses, limits and cancellation.
import * as grpc from "@grpc/grpc-js";
import * as http2 from "node:http2";
import { GrpcServer, GrpcStatus, ServerCall } from "./grpc-server";
import { addHealthService } from "./server";

/** An echo method over raw bytes: each message comes back upper-cased, then OK at half-close. */
const echoPath = "/test.Echo/Chat";
/** Its decode refuses "bad"; its method throws on "boom". */
const strictPath = "/test.Echo/Strict";
const enc = (s: string) => Buffer.from(s);
const frame = (payload: Buffer, flags = 0) => {
  const f = Buffer.alloc(5 + payload.length);
  f[0] = flags;
  f.writeUInt32BE(payload.length, 1);
  payload.copy(f, 5);
  return f;
};

let server: GrpcServer;
let port: number;
const cancelled: string[] = [];
const halfClosed: string[] = [];

beforeAll(async () => {
  server = new GrpcServer({ maxMessageBytes: 1024 });
  server.handle<Buffer, Buffer>(echoPath, {
    decode: b => Buffer.from(b),
    encode: m => m,
    open: (call: ServerCall<Buffer>) => ({
      message(msg) {
        const text = msg.toString();
        if (text === "fail") call.fail(GrpcStatus.INTERNAL, "asked to fail: 100%");
        // "many N,M,…": messages of N, M, … bytes in one writeAll.
        else if (text.startsWith("many "))
          call.writeAll(
            text
              .slice(5)
              .split(",")
              .map((n, i) => enc(String(i).repeat(+n))),
          );
        else call.write(enc(text.toUpperCase()));
      },
      halfClose: () => {
        halfClosed.push("halfClose");
        call.end();
      },
      cancel: () => cancelled.push("cancel"),
    }),
  });
  server.handle<Buffer, Buffer>(strictPath, {
    decode: b => {
      if (b.toString() === "bad") throw new Error("bad bytes");
      return b;
    },
    encode: m => m,
    open: (call: ServerCall<Buffer>) => ({
      message(msg) {
        if (msg.toString() === "boom") throw new Error("the method broke");
        call.write(msg);
      },
      halfClose: () => call.end(),
      cancel: () => undefined,
    }),
  });
  addHealthService(server, () => true);
  port = await server.listen(0, "127.0.0.1");
});
afterAll(() => server.close(100));

const client = () =>
  new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as grpc.Client;

function chat(messages: string[]): Promise<{ replies: string[]; status: grpc.StatusObject }> {
  return new Promise(resolve => {
    const c = client();
    const replies: string[] = [];
    const call = c.makeBidiStreamRequest(
      echoPath,
      (b: Buffer) => b,
      (b: Buffer) => b,
    );
    call.on("data", (b: Buffer) => replies.push(b.toString()));
    call.on("error", () => undefined);
    call.on("status", status => {
      c.close();
      resolve({ replies, status });
    });
    for (const m of messages) call.write(enc(m));
    call.end();
  });
}

/** Raw HTTP/2: sends `chunks` as separate DATA frames; resolves with the body and trailers. */
function raw(path: string, chunks: Buffer[], contentType = "application/grpc") {
  return new Promise<{ status: number; body: Buffer; grpcStatus?: string; message?: string }>(
    (resolve, reject) => {
      const session = http2.connect(`http://127.0.0.1:${port}`);
      session.on("error", reject);
      const req = session.request({
        ":method": "POST",
        ":path": path,
        "content-type": contentType,
      });
      let status = 0;
      let grpcStatus: string | undefined;
      let message: string | undefined;
      const body: Buffer[] = [];
      req.on("response", h => {
        status = Number(h[":status"]);
        grpcStatus ??= h["grpc-status"] as string | undefined;
        message ??= h["grpc-message"] as string | undefined;
      });
      req.on("trailers", t => {
        grpcStatus = t["grpc-status"] as string;
        message = t["grpc-message"] as string;
      });
      req.on("data", (d: Buffer) => body.push(d));
      req.on("close", () => {
        session.close();
        resolve({ status, body: Buffer.concat(body), grpcStatus, message });
      });
      const send = (i: number) => {
        if (i === chunks.length) return req.end();
        req.write(chunks[i], () => setImmediate(() => send(i + 1)));
      };
      send(0);
    },
  );
}

describe("the picker's gRPC server", () => {
  it("answers a grpc-js client's stream in order and ends it with OK", async () => {
    const { replies, status } = await chat(["a", "bc", "def"]);
    expect(replies).toEqual(["A", "BC", "DEF"]);
    expect(status.code).toBe(grpc.status.OK);
  });

  it("sends the method's failure as the status, with its message", async () => {
    const { replies, status } = await chat(["a", "fail", "b"]);
    expect(replies).toEqual(["A"]);
    expect(status.code).toBe(grpc.status.INTERNAL);
    expect(status.details).toBe("asked to fail: 100%");
  });

  it("reassembles messages split across DATA frames and several in one frame", async () => {
    const two = Buffer.concat([frame(enc("hello")), frame(enc("world"))]);
    const long = frame(enc("x".repeat(600)));
    const chunks = [two.subarray(0, 3), two.subarray(3, 12), two.subarray(12)];
    for (let i = 0; i < long.length; i += 100) chunks.push(long.subarray(i, i + 100));
    const { body, grpcStatus } = await raw(echoPath, chunks);
    expect(grpcStatus).toBe("0");
    const replies: string[] = [];
    for (let at = 0; at < body.length; ) {
      const n = body.readUInt32BE(at + 1);
      replies.push(body.subarray(at + 5, at + 5 + n).toString());
      at += 5 + n;
    }
    expect(replies).toEqual(["HELLO", "WORLD", "X".repeat(600)]);
  });

  it("sends the messages of one writeAll in order, small ones coalesced and large ones not", async () => {
    const small = await chat(["many 3,1,200", "x"]);
    expect(small.replies).toEqual(["000", "1", "2".repeat(200), "X"]);
    const large = await chat(["many 20000,5,30000"]);
    expect(large.replies).toEqual(["0".repeat(20000), "11111", "2".repeat(30000)]);
    expect(large.status.code).toBe(grpc.status.OK);
  });

  it("tells a message it cannot parse from a method that throws, and stays up", async () => {
    const bad = await raw(strictPath, [frame(enc("ok")), frame(enc("bad"))]);
    expect(bad.grpcStatus).toBe(String(GrpcStatus.INTERNAL));
    expect(decodeURI(bad.message ?? "")).toMatch(/could not parse the request: Error: bad bytes/);
    const boom = await raw(strictPath, [frame(enc("boom"))]);
    expect(boom.grpcStatus).toBe(String(GrpcStatus.INTERNAL));
    expect(decodeURI(boom.message ?? "")).toMatch(/internal error: Error: the method broke/);
    const { replies, status } = await chat(["still", "up"]);
    expect([replies, status.code]).toEqual([["STILL", "UP"], grpc.status.OK]);
  });

  it("answers health Check once, and INTERNAL for a Check without its request", async () => {
    const check = "/grpc.health.v1.Health/Check";
    const ok = await raw(check, [frame(Buffer.alloc(0))]);
    expect(ok.grpcStatus).toBe("0");
    // HealthCheckResponse { status: SERVING (1) }: field 1, varint 1.
    expect(ok.body).toEqual(frame(Buffer.from([0x08, 0x01])));
    const empty = await raw(check, []);
    expect(empty.grpcStatus).toBe(String(GrpcStatus.INTERNAL));
    expect(decodeURI(empty.message ?? "")).toBe("no request message");
  });

  it("answers an unknown method UNIMPLEMENTED, and what is not gRPC 415", async () => {
    const unknown = await raw("/test.Echo/Nope", [frame(enc("a"))]);
    expect(unknown.grpcStatus).toBe(String(GrpcStatus.UNIMPLEMENTED));
    const notGrpc = await raw(echoPath, [enc("{}")], "application/json");
    expect(notGrpc.status).toBe(415);
  });

  it("refuses a message over the limit and a compressed one, and tells the method", async () => {
    const before = cancelled.length;
    const big = await raw(echoPath, [frame(Buffer.alloc(2000, 1))]);
    expect(big.grpcStatus).toBe(String(GrpcStatus.RESOURCE_EXHAUSTED));
    expect(decodeURI(big.message ?? "")).toMatch(/2000 bytes exceeds the limit of 1024/);
    const compressed = await raw(echoPath, [frame(enc("a"), 1)]);
    expect(compressed.grpcStatus).toBe(String(GrpcStatus.UNIMPLEMENTED));
    expect(cancelled.length).toBe(before + 2);
  });

  // Node ends the stream's readable side on the client's reset before it reports the reset, so
  // the method hears the end of the client's messages: for ext_proc the same (the stream closes).
  it("ends the call for the method when the client cancels", async () => {
    const ended = () => cancelled.length + halfClosed.length;
    const before = ended();
    const c = client();
    const call = c.makeBidiStreamRequest(
      echoPath,
      (b: Buffer) => b,
      (b: Buffer) => b,
    );
    call.on("error", () => undefined);
    await new Promise<void>(resolve => {
      call.once("data", () => resolve());
      call.write(enc("a"));
    });
    call.cancel();
    for (let i = 0; i < 500 && ended() === before; i++) {
      await new Promise(r => setTimeout(r, 10));
    }
    c.close();
    expect(ended()).toBe(before + 1);
  });
});
