// The generated types (capabilities/api/generate.sh) as the objects really are on the wire. The
// generator types `format: date-time` as Date and enums as TS enums, but the API sends plain JSON
// strings; these mappings turn them into what is really there (strings and string literals).
import type { V1ObjectMeta } from "@kubernetes/client-node";

type IsAny<T> = 0 extends 1 & T ? true : false;

/** Wire<T> or OpenWire<T>: objects also admit fields T does not name when Open is true. */
type WireOf<T, Open extends boolean> =
  IsAny<T> extends true
    ? T
    : T extends Date
      ? string
      : T extends string
        ? `${T}`
        : T extends readonly (infer U)[]
          ? WireOf<U, Open>[]
          : T extends object
            ? { [K in keyof T]: WireOf<T[K], Open> } & (Open extends true
                ? { [key: string]: unknown }
                : unknown)
            : T;

/** T with Date → string (RFC3339) and string enums → their string literal union, recursively. */
export type Wire<T> = WireOf<T, false>;

/**
 * Wire<T> in which every object also admits fields T does not name. What the API returns can carry
 * fields of a newer CRD version or of other controllers; the operator edits objects
 * read-modify-write on deep copies, so such fields must be allowed through, and they are kept.
 */
export type OpenWire<T> = WireOf<T, true>;

/** The declared fields of T without its index signature (GenericKind has `[key: string]: any`). */
type Declared<T> = {
  [K in keyof T as string extends K ? never : number extends K ? never : K]: T[K];
};

/** metadata as the API sends it (the generated classes type it as `{ [key: string]: any }`). */
export type ObjectMeta = OpenWire<V1ObjectMeta>;

/** A Kubernetes object of a generated class as it is on the wire (see OpenWire). */
export type ApiObject<T> = OpenWire<Omit<Declared<T>, "metadata">> & { metadata?: ObjectMeta };

/**
 * An object the fluent client returned, as it is on the wire: the client types it as the
 * generated class (Date, enums), but what it parsed is JSON with strings there.
 */
export function onWire<T>(obj: T): ApiObject<T> {
  return obj as unknown as ApiObject<T>;
}
