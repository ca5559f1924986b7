// Small pure helpers shared by the engine and the traffic adapters.
//
// The canonical JSON comes from safe-stable-stringify (sorted keys, undefined members dropped,
// undefined array items as null: byte for byte what the hand-written version produced, so stored
// status.stepHash/analysisHash stay valid across an upgrade). The hash stays hand-written on
// purpose: FNV-1a 32 is what those stored fingerprints are; any other hash (node:crypto's
// included) would change them and restart every running step and gate after an upgrade.
import { configure } from "safe-stable-stringify";

const stableStringify = configure({ deterministic: true });

/** JSON with object keys sorted, so equal values give equal text whatever the key order. */
export function canonicalJson(value: unknown): string {
  return stableStringify(value) ?? "null";
}

/** Short fingerprint (FNV-1a, 32 bit, hex) of a value's canonical JSON; not for security. */
export function fingerprint(value: unknown): string {
  const text = canonicalJson(value);
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash.toString(16).padStart(8, "0");
}

/** Structural equality of JSON values (key order ignored, undefined members ignored). */
export function jsonEqual(a: unknown, b: unknown): boolean {
  return canonicalJson(a) === canonicalJson(b);
}
