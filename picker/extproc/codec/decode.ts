// Decoding into the plain objects proto-loader's options give; bytes fields are views of the
// received buffer. See plan.ts for why this codec exists.
import { FieldPlan, Kind, MessagePlan, Obj, wireType } from "./plan";

class Reader {
  pos: number;
  constructor(
    readonly buf: Buffer,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }

  varint(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      if (this.pos >= this.end) throw new Error("protobuf: truncated varint");
      const byte = this.buf[this.pos++];
      if (shift < 28) result |= (byte & 0x7f) << shift;
      else result += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return shift < 28 ? result >>> 0 : result;
      shift += 7;
      if (shift > 63) throw new Error("protobuf: varint too long");
    }
  }

  bigVarint(): bigint {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (this.pos >= this.end) throw new Error("protobuf: truncated varint");
      const byte = this.buf[this.pos++];
      result |= BigInt(byte & 0x7f) << shift;
      if (byte < 0x80) return result;
      shift += 7n;
      if (shift > 63n) throw new Error("protobuf: varint too long");
    }
  }

  slice(): [number, number] {
    const n = this.varint();
    const start = this.pos;
    if (start + n > this.end) throw new Error("protobuf: truncated field");
    this.pos += n;
    return [start, this.pos];
  }

  skip(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 1) this.pos += 8;
    else if (wire === 2) this.slice();
    else if (wire === 5) this.pos += 4;
    else throw new Error(`protobuf: wire type ${wire} not supported`);
    if (this.pos > this.end) throw new Error("protobuf: truncated field");
  }
}

function readValue(field: FieldPlan, r: Reader): unknown {
  switch (field.kind) {
    case "message": {
      const [start, end] = r.slice();
      return decodeRange(field.message!, r.buf, start, end);
    }
    case "string": {
      const [start, end] = r.slice();
      return r.buf.toString("utf8", start, end);
    }
    case "bytes": {
      const [start, end] = r.slice();
      return r.buf.subarray(start, end);
    }
    case "bool":
      return r.varint() !== 0;
    case "enum": {
      const n = Number(BigInt.asIntN(32, r.bigVarint()));
      return field.enumNames?.[n] ?? n;
    }
    case "varint":
      return Number(BigInt.asIntN(32, r.bigVarint()));
    case "int64":
      return BigInt.asIntN(64, r.bigVarint()).toString();
    case "sint": {
      const v = r.varint();
      return (v >>> 1) ^ -(v & 1);
    }
    case "sint64": {
      const v = r.bigVarint();
      return ((v >> 1n) ^ -(v & 1n)).toString();
    }
    default:
      return readFixed(field.kind, r);
  }
}

function readFixed(kind: Kind, r: Reader): unknown {
  const at = r.pos;
  r.pos += kind === "double" || kind === "fixed64" ? 8 : 4;
  if (r.pos > r.end) throw new Error("protobuf: truncated field");
  if (kind === "double") return r.buf.readDoubleLE(at);
  if (kind === "float") return r.buf.readFloatLE(at);
  if (kind === "fixed32") return r.buf.readUInt32LE(at);
  return r.buf.readBigUInt64LE(at).toString();
}

function decodeMapEntry(field: FieldPlan, r: Reader, into: Obj): void {
  const [start, end] = r.slice();
  const entry = new Reader(r.buf, start, end);
  let key: unknown = "";
  let value: unknown;
  while (entry.pos < end) {
    const tag = entry.varint();
    const id = tag >>> 3;
    if (id === 1) key = readValue(field.map!.key, entry);
    else if (id === 2) value = readValue(field.map!.value, entry);
    else entry.skip(tag & 7);
  }
  // A key is the sender's string: "__proto__" must become a key, not the object's prototype.
  Object.defineProperty(into, String(key), {
    value,
    enumerable: true,
    writable: true,
    configurable: true,
  });
}

function decodeRange(plan: MessagePlan, buf: Buffer, start: number, end: number): Obj {
  const out: Obj = {};
  const r = new Reader(buf, start, end);
  while (r.pos < end) {
    const tag = r.varint();
    const field = plan.byId.get(tag >>> 3);
    if (!field) {
      r.skip(tag & 7);
      continue;
    }
    if (field.map) {
      decodeMapEntry(field, r, (out[field.name] ??= {}) as Obj);
      continue;
    }
    if ((tag & 7) === 2 && field.repeated && wireType(field.kind) !== 2) {
      // A packed list of scalars.
      const [s, e] = r.slice();
      const packed = new Reader(buf, s, e);
      const list = (out[field.name] ??= []) as unknown[];
      while (packed.pos < e) list.push(readValue(field, packed));
      continue;
    }
    const value = readValue(field, r);
    if (field.repeated) ((out[field.name] ??= []) as unknown[]).push(value);
    else {
      out[field.name] = value;
      if (field.oneof) out[field.oneof] = field.name;
    }
  }
  return out;
}

/** The message as proto-loader's options decode it; bytes fields are views of `buf`. */
export function decodeMessage(plan: MessagePlan, buf: Buffer): Obj {
  return decodeRange(plan, buf, 0, buf.length);
}
