// A protobuf codec for the ext_proc messages, compiled once from the same protobufjs reflection
// that proto-loader builds its serializers from, for the objects proto-loader's options give
// (picker/protos.ts: field names as in the proto, enums as names, 64-bit integers as strings,
// no defaults, oneof names). Why not proto-loader's own: per message it converts the plain object
// into a protobufjs message (fromObject), queues every field on a Writer and copies the result,
// and on the way in builds a message and then a plain object (toObject) — a third of the
// picker's CPU per request on the ext_proc path went there and to the garbage it leaves (issue
// 19). Here a message is measured, then written into one buffer; a decoded message is the plain
// object itself, its bytes fields views of the received buffer. Anything the codec does not know
// (a key that is not a field, a value of the wrong type) makes encode() throw, and the caller
// falls back to proto-loader's serializer.
import * as protobuf from "protobufjs";

export type Obj = Record<string, unknown>;

/** The scalar kinds a field can have, by how they go on the wire. */
export type Kind =
  | "message"
  | "string"
  | "bytes"
  | "bool"
  | "enum"
  | "varint"
  | "int64"
  | "sint"
  | "sint64"
  | "double"
  | "float"
  | "fixed32"
  | "fixed64";

export interface FieldPlan {
  id: number;
  name: string;
  kind: Kind;
  repeated: boolean;
  oneof?: string;
  message?: MessagePlan;
  enumValues?: Record<string, number>;
  enumNames?: Record<number, string>;
  /** Map fields: the key and value of each entry (entry fields 1 and 2). */
  map?: { key: FieldPlan; value: FieldPlan };
}

export interface MessagePlan {
  name: string;
  fields: FieldPlan[];
  byName: Map<string, FieldPlan>;
  byId: Map<number, FieldPlan>;
  /** Names of the oneofs: proto-loader's objects carry them (which member is set); not fields. */
  oneofs: Set<string>;
}

const kinds: Record<string, Kind> = {
  string: "string",
  bytes: "bytes",
  bool: "bool",
  int32: "varint",
  uint32: "varint",
  int64: "int64",
  uint64: "int64",
  sint32: "sint",
  sint64: "sint64",
  double: "double",
  float: "float",
  fixed32: "fixed32",
  sfixed32: "fixed32",
  fixed64: "fixed64",
  sfixed64: "fixed64",
};

export const wireType = (k: Kind): number =>
  k === "message" || k === "string" || k === "bytes"
    ? 2
    : k === "double" || k === "fixed64"
      ? 1
      : k === "float" || k === "fixed32"
        ? 5
        : 0;

export class CodecUnsupported extends Error {}

/** Compiles a message type (and every type it reaches) once. */
export function planOf(type: protobuf.Type, seen = new Map<string, MessagePlan>()): MessagePlan {
  const cached = seen.get(type.fullName);
  if (cached) return cached;
  const plan: MessagePlan = {
    name: type.fullName,
    fields: [],
    byName: new Map(),
    byId: new Map(),
    oneofs: new Set(type.oneofsArray.map(o => o.name)),
  };
  seen.set(type.fullName, plan);
  for (const f of type.fieldsArray) {
    f.resolve();
    const field = fieldPlan(f, seen);
    plan.fields.push(field);
    plan.byName.set(field.name, field);
    // protobufjs' built-in google.protobuf types name their fields in camelCase whatever
    // keepCase says; either spelling is accepted on the way out.
    plan.byName.set(protobuf.util.camelCase(field.name), field);
    plan.byId.set(field.id, field);
  }
  plan.fields.sort((a, b) => a.id - b.id);
  return plan;
}

function scalarPlan(
  id: number,
  name: string,
  typeName: string,
  resolved: protobuf.ReflectionObject | null,
  seen: Map<string, MessagePlan>,
): FieldPlan {
  if (resolved instanceof protobuf.Type) {
    return { id, name, kind: "message", repeated: false, message: planOf(resolved, seen) };
  }
  if (resolved instanceof protobuf.Enum) {
    const enumNames: Record<number, string> = {};
    for (const [n, v] of Object.entries(resolved.values)) enumNames[v] ??= n;
    return { id, name, kind: "enum", repeated: false, enumValues: resolved.values, enumNames };
  }
  const kind = kinds[typeName];
  if (!kind) throw new CodecUnsupported(`field ${name}: type ${typeName}`);
  return { id, name, kind, repeated: false };
}

function fieldPlan(f: protobuf.Field, seen: Map<string, MessagePlan>): FieldPlan {
  if (f instanceof protobuf.MapField) {
    const key = scalarPlan(1, "key", f.keyType, null, seen);
    const value = scalarPlan(2, "value", f.type, f.resolvedType, seen);
    return { id: f.id, name: f.name, kind: "message", repeated: true, map: { key, value } };
  }
  const base = scalarPlan(f.id, f.name, f.type, f.resolvedType, seen);
  return { ...base, repeated: f.repeated, oneof: f.partOf?.name };
}
