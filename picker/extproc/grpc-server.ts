// The picker's gRPC server, on node:http2 itself: gRPC's framing (5-byte length prefix), status in
// trailers, Trailers-Only errors, 415 for what is not gRPC, UNIMPLEMENTED for unknown methods,
// keepalive pings. Why not grpc-js' server (issue 19): per call it builds an intercepting call,
// metadata objects, a message decoder and object-mode Node streams around the HTTP/2 stream —
// with ext_proc's one call per HTTP request that was a fifth of the picker's CPU per request and
// much of the young garbage whose scavenges cost throughput. What the picker serves is two
// services of a handful of methods, without compression or deadlines (Envoy sends neither on
// ext_proc): the protocol part is small. grpc-js stays the client in tests; Go's gRPC (the load
// generator, envoy-side) and grpc-js clients exercise this server in the tests.
import * as http2 from "node:http2";
import type * as net from "node:net";

/** gRPC status codes used here. */
export const GrpcStatus = {
  OK: 0,
  INTERNAL: 13,
  UNIMPLEMENTED: 12,
  RESOURCE_EXHAUSTED: 8,
} as const;

/** What a method's implementation can do with its call. */
export interface ServerCall<Res> {
  write(msg: Res): void;
  /** Several messages in one HTTP/2 write (one DATA frame when small): one write's cost, not n. */
  writeAll(msgs: readonly Res[]): void;
  /** Ends the call with status OK (the client may still be sending). */
  end(): void;
  fail(code: number, message: string): void;
}

/** What the server tells a method's implementation: messages, the client's half-close, a cancel. */
export interface CallEvents<Req> {
  message(msg: Req): void;
  halfClose(): void;
  /** The call ended without our status (client reset, connection lost) or failed. */
  cancel(): void;
}

export interface GrpcMethod<Req, Res> {
  decode(bytes: Buffer): Req;
  encode(msg: Res): Buffer;
  /** Optional: the message after 5 bytes left for gRPC's prefix (saves a copy per message). */
  encodeFramed?(msg: Res): Buffer;
  open(call: ServerCall<Res>): CallEvents<Req>;
}

export interface GrpcServerOptions {
  maxMessageBytes: number;
  keepaliveMs: number;
  keepaliveTimeoutMs: number;
}

const defaults: GrpcServerOptions = {
  maxMessageBytes: 64 << 20,
  keepaliveMs: 30_000,
  keepaliveTimeoutMs: 20_000,
};

class MessageTooLarge extends Error {}

/** Splits a stream's DATA into gRPC messages; copies only a message that spans chunks. */
class Deframer {
  private chunks: Buffer[] = [];
  private buffered = 0;

  constructor(private readonly maxBytes: number) {}

  /** Calls `each` per whole message (flags, bytes); throws on an oversized message. */
  push(chunk: Buffer, each: (flags: number, bytes: Buffer) => void): void {
    let data = chunk;
    if (this.buffered > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
      if (this.buffered < 5 || this.buffered < 5 + this.lengthOf(this.head())) return;
      data = Buffer.concat(this.chunks, this.buffered);
      this.chunks = [];
      this.buffered = 0;
    }
    let at = 0;
    while (data.length - at >= 5) {
      const length = data.readUInt32BE(at + 1);
      this.check(length);
      if (data.length - at < 5 + length) break;
      each(data[at], data.subarray(at + 5, at + 5 + length));
      at += 5 + length;
    }
    if (at < data.length) {
      this.chunks = [data.subarray(at)];
      this.buffered = data.length - at;
      if (this.buffered >= 5) this.check(this.lengthOf(this.chunks[0]));
    }
  }

  private head(): Buffer {
    if (this.chunks[0].length < 5) this.chunks = [Buffer.concat(this.chunks, this.buffered)];
    return this.chunks[0];
  }

  private lengthOf(head: Buffer): number {
    return head.readUInt32BE(1);
  }

  private check(length: number): void {
    if (length > this.maxBytes) {
      throw new MessageTooLarge(`message of ${length} bytes exceeds the limit of ${this.maxBytes}`);
    }
  }
}

/** Up to this many bytes, the messages of one writeAll are copied into one buffer. */
const coalesceBytes = 16 * 1024;

const responseHeaders = { ":status": 200, "content-type": "application/grpc" };

/** One call: the HTTP/2 stream, its method, and whether our status went out. */
class Call<Req, Res> implements ServerCall<Res> {
  private headersSent = false;
  private done = false;
  private status: { code: number; message: string } = { code: GrpcStatus.OK, message: "" };
  private readonly events: CallEvents<Req>;
  private readonly deframer: Deframer;

  constructor(
    private readonly stream: http2.ServerHttp2Stream,
    private readonly method: GrpcMethod<Req, Res>,
    maxBytes: number,
  ) {
    this.deframer = new Deframer(maxBytes);
    this.events = method.open(this);
    stream.on("data", (chunk: Buffer) => this.onData(chunk));
    stream.on("end", () => {
      if (!this.done) this.events.halfClose();
    });
    stream.on("close", () => {
      if (this.done) return;
      this.done = true;
      this.events.cancel();
    });
  }

  /** Closed or destroyed (a reset, a lost connection): Node throws on a write to it. */
  private gone(): boolean {
    return this.stream.closed || this.stream.destroyed;
  }

  write(msg: Res): void {
    this.writeAll([msg]);
  }

  writeAll(msgs: readonly Res[]): void {
    if (msgs.length === 0 || this.done || this.gone()) return;
    const frames = msgs.map(m => this.frame(m));
    this.sendHeaders();
    let bytes = 0;
    for (const f of frames) bytes += f.length;
    // A copy is cheaper than a stream write for small frames; large ones go out as they are.
    if (frames.length === 1 || bytes > coalesceBytes) for (const f of frames) this.stream.write(f);
    else this.stream.write(Buffer.concat(frames, bytes));
  }

  /** The message with gRPC's 5-byte prefix (uncompressed, its length). */
  private frame(msg: Res): Buffer {
    let frame: Buffer;
    if (this.method.encodeFramed) frame = this.method.encodeFramed(msg);
    else {
      const payload = this.method.encode(msg);
      frame = Buffer.allocUnsafe(5 + payload.length);
      payload.copy(frame, 5);
    }
    frame[0] = 0;
    frame.writeUInt32BE(frame.length - 5, 1);
    return frame;
  }

  end(): void {
    this.finish(GrpcStatus.OK, "");
  }

  fail(code: number, message: string): void {
    if (this.finish(code, message)) this.events.cancel();
  }

  private sendHeaders(): void {
    if (this.headersSent) return;
    this.headersSent = true;
    this.stream.respond(responseHeaders, { waitForTrailers: true });
    this.stream.once("wantTrailers", () =>
      this.stream.sendTrailers({
        "grpc-status": String(this.status.code),
        "grpc-message": encodeURI(this.status.message),
      }),
    );
  }

  /** Sends the status once (trailers, or Trailers-Only before any message); false if sent. */
  private finish(code: number, message: string): boolean {
    if (this.done) return false;
    this.done = true;
    if (this.gone()) return true;
    this.status = { code, message };
    if (this.headersSent) this.stream.end();
    else trailersOnly(this.stream, code, message);
    return true;
  }

  private onData(chunk: Buffer): void {
    if (this.done) return;
    try {
      this.deframer.push(chunk, (flags, bytes) => this.onMessage(flags, bytes));
    } catch (err) {
      const tooLarge = err instanceof MessageTooLarge;
      this.fail(
        tooLarge ? GrpcStatus.RESOURCE_EXHAUSTED : GrpcStatus.INTERNAL,
        tooLarge ? err.message : `internal error: ${String(err)}`,
      );
    }
  }

  private onMessage(flags: number, bytes: Buffer): void {
    if (this.done) return;
    if (flags & 1) {
      this.fail(GrpcStatus.UNIMPLEMENTED, "compressed messages are not supported");
      return;
    }
    let msg: Req;
    try {
      msg = this.method.decode(bytes);
    } catch (err) {
      this.fail(GrpcStatus.INTERNAL, `could not parse the request: ${String(err)}`);
      return;
    }
    this.events.message(msg);
  }
}

function trailersOnly(stream: http2.ServerHttp2Stream, code: number, message: string): void {
  stream.respond(
    { ...responseHeaders, "grpc-status": String(code), "grpc-message": encodeURI(message) },
    { endStream: true },
  );
}

/** Pings an idle connection's peer; one that does not answer in time is closed. */
function keepAlive(session: http2.ServerHttp2Session, o: GrpcServerOptions): void {
  const timer = setInterval(() => {
    if (session.destroyed || session.closed) return;
    const deadline = setTimeout(() => session.destroy(), o.keepaliveTimeoutMs);
    deadline.unref();
    const sent = session.ping(() => clearTimeout(deadline));
    if (!sent) clearTimeout(deadline);
  }, o.keepaliveMs);
  timer.unref();
  session.on("close", () => clearInterval(timer));
}

export class GrpcServer {
  private readonly methods = new Map<string, GrpcMethod<unknown, unknown>>();
  private readonly sessions = new Set<http2.ServerHttp2Session>();
  private readonly options: GrpcServerOptions;
  private readonly http2: http2.Http2Server;

  constructor(options: Partial<GrpcServerOptions> = {}) {
    this.options = { ...defaults, ...options };
    // As grpc-js: no session memory cap (Node's default refuses new streams past 10 MB held,
    // which large request bodies in flight reach) and no cap on sent header blocks.
    this.http2 = http2.createServer({
      maxSessionMemory: Number.MAX_SAFE_INTEGER,
      maxSendHeaderBlockLength: Number.MAX_SAFE_INTEGER,
    });
    // Small frames go out at once, as Go's gRPC (and the EPP) sends them: no Nagle delay.
    this.http2.on("connection", (socket: net.Socket) => socket.setNoDelay(true));
    this.http2.on("session", session => {
      this.sessions.add(session);
      session.on("close", () => this.sessions.delete(session));
      session.on("error", () => undefined); // a 'close' follows
      keepAlive(session, this.options);
    });
    this.http2.on("stream", (stream, headers) => this.onStream(stream, headers));
  }

  /** Serves `path` ("/package.Service/Method") with `method`. */
  handle<Req, Res>(path: string, method: GrpcMethod<Req, Res>): void {
    this.methods.set(path, method as GrpcMethod<unknown, unknown>);
  }

  listen(port: number, host: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.http2.once("error", reject);
      this.http2.listen(port, host, () => {
        this.http2.off("error", reject);
        const address = this.http2.address();
        resolve(typeof address === "object" && address ? address.port : port);
      });
    });
  }

  /** Stops accepting; open calls get `graceMs` to finish before their connections are closed. */
  close(graceMs = 2000): Promise<void> {
    return new Promise(resolve => {
      const timer = setTimeout(() => {
        for (const session of this.sessions) session.destroy();
        resolve();
      }, graceMs);
      timer.unref();
      this.http2.close(() => {
        clearTimeout(timer);
        resolve();
      });
      for (const session of this.sessions) session.close();
    });
  }

  private onStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): void {
    stream.on("error", () => undefined); // a 'close' follows, which cancels the call
    const contentType = headers["content-type"];
    if (typeof contentType !== "string" || !contentType.startsWith("application/grpc")) {
      stream.respond({ ":status": 415 }, { endStream: true });
      return;
    }
    const path = headers[":path"] ?? "";
    const method = this.methods.get(path);
    if (!method) {
      trailersOnly(stream, GrpcStatus.UNIMPLEMENTED, `no method ${path}`);
      return;
    }
    new Call(stream, method, this.options.maxMessageBytes);
  }
}
