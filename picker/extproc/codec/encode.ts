// Encoding: measure the message (sub-message sizes kept in pre-order), then write it into one
// buffer. See plan.ts for why this codec exists.
import { CodecUnsupported, FieldPlan, MessagePlan, Obj, wireType } from "./plan";

const varintSize = (v: number): number =>
  v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5;

function bigOf(value: unknown): bigint {
  if (typeof value === "bigint") return value;
  if (typeof value === "number" && Number.isInteger(value)) return BigInt(value);
  if (typeof value === "string" && /^-?\d+$/.test(value)) return BigInt(value);
  throw new CodecUnsupported(`not an integer: ${String(value)}`);
}

function enumNumber(field: FieldPlan, value: unknown): number {
  if (typeof value === "number" && Number.isInteger(value)) return value;
  const n = typeof value === "string" ? field.enumValues?.[value] : undefined;
  if (n === undefined) throw new CodecUnsupported(`${field.name}: no enum value ${String(value)}`);
  return n;
}

/** An enum or 32-bit integer that is a non-negative int32 (the usual case), else -1. */
function smallVarint(field: FieldPlan, value: unknown): number {
  if (field.kind === "enum") {
    const n = enumNumber(field, value);
    return n >= 0 && n <= 0x7fffffff ? n : -1;
  }
  if (field.kind === "varint" && typeof value === "number" && Number.isInteger(value))
    return value >= 0 && value <= 0x7fffffff ? value : -1;
  return -1;
}

const empty = Buffer.alloc(0);

/** Measures, then writes: message sizes are kept in the order the writer meets them. */
class Encoder {
  private sizes: number[] = [];
  private next = 0;
  private buf: Buffer = empty;
  private pos = 0;

  encode(plan: MessagePlan, msg: Obj, headroom: number): Buffer {
    this.sizes.length = 0;
    this.next = 0;
    const size = this.measure(plan, msg);
    this.buf = Buffer.allocUnsafe(headroom + size);
    this.pos = headroom;
    this.writeMessage(plan, msg);
    if (this.pos !== headroom + size) throw new Error(`codec: wrote ${this.pos} of ${size} bytes`);
    const out = this.buf;
    this.buf = empty; // the caller owns it now
    return out;
  }

  private measure(plan: MessagePlan, msg: Obj): number {
    if (typeof msg !== "object" || msg === null) throw new CodecUnsupported(`${plan.name}: value`);
    let size = 0;
    for (const key in msg) {
      const value = msg[key];
      if (value === undefined || value === null) continue;
      const field = plan.byName.get(key);
      if (!field) {
        if (plan.oneofs.has(key)) continue;
        throw new CodecUnsupported(`${plan.name} has no field ${key}`);
      }
      size += this.measureField(field, value);
    }
    return size;
  }

  private measureField(field: FieldPlan, value: unknown): number {
    if (field.map) {
      if (typeof value !== "object") throw new CodecUnsupported(`${field.name}: not a map`);
      let size = 0;
      for (const k in value as Obj) {
        const v = (value as Obj)[k];
        const index = this.sizes.length;
        this.sizes.push(0);
        const entry = this.measureOne(field.map.key, k) + this.measureOne(field.map.value, v);
        this.sizes[index] = entry;
        size += varintSize(field.id << 3) + varintSize(entry) + entry;
      }
      return size;
    }
    if (!field.repeated) return this.measureOne(field, value);
    if (!Array.isArray(value)) throw new CodecUnsupported(`${field.name}: not a list`);
    let size = 0;
    for (const v of value) size += this.measureOne(field, v);
    return size;
  }

  /** The field's tag and value; sub-message sizes are pushed in pre-order. */
  private measureOne(field: FieldPlan, value: unknown): number {
    const tag = varintSize((field.id << 3) | wireType(field.kind));
    switch (field.kind) {
      case "message": {
        const index = this.sizes.length;
        this.sizes.push(0);
        const size = this.measure(field.message!, value as Obj);
        this.sizes[index] = size;
        return tag + varintSize(size) + size;
      }
      case "string": {
        if (typeof value !== "string") throw new CodecUnsupported(`${field.name}: not a string`);
        const n = Buffer.byteLength(value, "utf8");
        return tag + varintSize(n) + n;
      }
      case "bytes": {
        if (!(value instanceof Uint8Array)) throw new CodecUnsupported(`${field.name}: not bytes`);
        return tag + varintSize(value.length) + value.length;
      }
      case "bool":
        if (typeof value !== "boolean") throw new CodecUnsupported(`${field.name}: not a bool`);
        return tag + 1;
      case "double":
      case "fixed64":
        return tag + 8;
      case "float":
      case "fixed32":
        return tag + 4;
      default: {
        const small = smallVarint(field, value);
        return tag + (small >= 0 ? varintSize(small) : this.varintBytes(field, value).length);
      }
    }
  }

  /** Varint-coded values as bytes (enum, 32- and 64-bit integers, zigzag). */
  private varintBytes(field: FieldPlan, value: unknown): number[] {
    let v: bigint;
    if (field.kind === "enum") v = BigInt(enumNumber(field, value));
    else v = bigOf(value);
    if (field.kind === "sint" || field.kind === "sint64") v = v >= 0n ? v << 1n : (-v << 1n) - 1n;
    if (v < 0n) v = BigInt.asUintN(64, v);
    const out: number[] = [];
    do {
      const byte = Number(v & 0x7fn);
      v >>= 7n;
      out.push(v > 0n ? byte | 0x80 : byte);
    } while (v > 0n);
    return out;
  }

  private varint(v: number): void {
    while (v >= 0x80) {
      this.buf[this.pos++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    this.buf[this.pos++] = v;
  }

  private writeMessage(plan: MessagePlan, msg: Obj): void {
    // Fields in the order the object holds them: the sizes were measured in the same order.
    for (const key in msg) {
      const value = msg[key];
      if (value === undefined || value === null) continue;
      const field = plan.byName.get(key);
      if (!field) continue; // a oneof's name
      if (field.map) {
        for (const k in value as Obj) {
          this.varint((field.id << 3) | 2);
          this.varint(this.sizes[this.next++]);
          this.writeOne(field.map.key, k);
          this.writeOne(field.map.value, (value as Obj)[k]);
        }
      } else if (field.repeated) for (const v of value as unknown[]) this.writeOne(field, v);
      else this.writeOne(field, value);
    }
  }

  private writeOne(field: FieldPlan, value: unknown): void {
    this.varint((field.id << 3) | wireType(field.kind));
    switch (field.kind) {
      case "message":
        this.varint(this.sizes[this.next++]);
        this.writeMessage(field.message!, value as Obj);
        return;
      case "string": {
        const s = value as string;
        const n = Buffer.byteLength(s, "utf8");
        this.varint(n);
        this.pos += this.buf.write(s, this.pos, n, "utf8");
        return;
      }
      case "bytes": {
        const b = value as Uint8Array;
        this.varint(b.length);
        this.buf.set(b, this.pos);
        this.pos += b.length;
        return;
      }
      case "bool":
        this.buf[this.pos++] = value ? 1 : 0;
        return;
      case "double":
        this.pos = this.buf.writeDoubleLE(Number(value), this.pos);
        return;
      case "float":
        this.pos = this.buf.writeFloatLE(Number(value), this.pos);
        return;
      case "fixed32":
        this.pos = this.buf.writeUInt32LE(Number(value) >>> 0, this.pos);
        return;
      case "fixed64":
        this.pos = this.buf.writeBigUInt64LE(BigInt.asUintN(64, bigOf(value)), this.pos);
        return;
      default: {
        const small = smallVarint(field, value);
        if (small >= 0) this.varint(small);
        else for (const byte of this.varintBytes(field, value)) this.buf[this.pos++] = byte;
      }
    }
  }
}

/**
 * The message as protobuf bytes, after `headroom` bytes left for the caller (gRPC's message
 * prefix); throws CodecUnsupported for what the plan does not know.
 */
export function encodeMessage(plan: MessagePlan, msg: Obj, headroom = 0): Buffer {
  // One encoder for all: encoding is synchronous, and its sizes array is reused (no garbage).
  return encoder.encode(plan, msg, headroom);
}

const encoder = new Encoder();
