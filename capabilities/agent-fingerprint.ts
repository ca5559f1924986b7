import { createHash } from "node:crypto";

/**
 * Equal options → equal fingerprint. Called for every API request: Buffers (CA, client cert, key)
 * are hashed as bytes — JSON.stringify would spell each byte out as a number first.
 */
export function fingerprintOf(options: Record<string, unknown> | undefined): string {
  const hash = createHash("sha256");
  const add = (value: unknown): void => {
    if (Buffer.isBuffer(value) || typeof value === "string") {
      hash
        .update(typeof value === "string" ? "s" : "b")
        .update(String(value.length))
        .update(":");
      hash.update(value);
    } else if (Array.isArray(value)) {
      hash.update("[");
      value.forEach(add);
      hash.update("]");
    } else if (value && typeof value === "object") {
      hash.update("{");
      for (const key of Object.keys(value).sort()) {
        hash.update(JSON.stringify(key));
        add((value as Record<string, unknown>)[key]);
      }
      hash.update("}");
    } else {
      hash.update(`${typeof value}:${String(value)};`);
    }
  };
  add(options ?? {});
  return hash.digest("hex");
}
