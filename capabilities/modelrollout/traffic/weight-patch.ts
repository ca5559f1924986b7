// The JSON Patch (RFC 6902) that turns a traffic target's spec as read into the adapters' result
// (httproute.ts, inferencemodel.ts, inferencemodelrewrite.ts), touching only what the rollout
// owns: `weight` members, and whole entries of the lists in WEIGHTED_LISTS (a backendRef or target
// copied in next to its partner, an entry removed at the end). Everything else in the object —
// fields the operator does not know, their order and formatting in Git — is not part of the
// write, so GitOps tools see differences in weights only. targets/modify-with-retry.ts sends it
// behind a `test` of metadata.resourceVersion: the indexes below are those of the object the
// adapter read.
//
// Array entries are matched by what they are without their weight (see diffArray), so a ref whose
// weight changed is the same ref, and an inserted or removed ref is one `add` / `remove` instead
// of a shift of every later entry.
//
// HTTPRoute rules: the rule a setHeaderRoute step adds (header-route.ts, recognised by its name) is
// added and removed whole; any other rule is paired with itself and may differ in weights only.
import type { Operation } from "kubernetes-fluent-client";
import { canonicalJson, jsonEqual } from "../fingerprint";
import { isHeaderRuleName } from "./header-rule-name";

/** The only member of an entry the operator sets; any other change is refused. */
const WEIGHT = "weight";

type Json = unknown;

function isObject(value: Json): value is Record<string, Json> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** RFC 6901: `~` and `/` in a member name are escaped. */
function pointer(path: string, token: string | number): string {
  return `${path}/${String(token).replaceAll("~", "~0").replaceAll("/", "~1")}`;
}

/** What an array entry is, whatever its weight. */
function identity(entry: Json): string {
  if (!isObject(entry)) return canonicalJson(entry);
  return canonicalJson({ ...entry, [WEIGHT]: undefined }); // undefined members are left out
}

/** Index pairs [i in a, j in b] of a longest common subsequence of a and b. */
function commonEntries(a: string[], b: string[]): [number, number][] {
  const lengths = Array.from({ length: a.length + 1 }, () =>
    new Array<number>(b.length + 1).fill(0),
  );
  for (let i = a.length - 1; i >= 0; i--)
    for (let j = b.length - 1; j >= 0; j--)
      lengths[i][j] =
        a[i] === b[j] ? lengths[i + 1][j + 1] + 1 : Math.max(lengths[i + 1][j], lengths[i][j + 1]);
  const pairs: [number, number][] = [];
  for (let i = 0, j = 0; i < a.length && j < b.length; ) {
    if (a[i] === b[j]) pairs.push([i++, j++]);
    else if (lengths[i + 1][j] >= lengths[i][j + 1]) i++;
    else j++;
  }
  return pairs;
}

/** The lists whose entries the adapters add and remove (HTTPRoute, InferenceModel, Rewrite). */
const WEIGHTED_LISTS = new Set(["backendRefs", "targetModels", "targets"]);

interface Change {
  operation: Operation;
  /** A weight, or a whole entry of a weighted list: what the operator may write. */
  allowed: boolean;
}

function diff(before: Json, after: Json, path: string, member: string, out: Change[]): void {
  if (jsonEqual(before, after)) return;
  if (Array.isArray(before) && Array.isArray(after))
    return diffArray(before, after, path, member, out);
  if (isObject(before) && isObject(after)) {
    for (const key of Object.keys(before))
      if (after[key] === undefined && before[key] !== undefined)
        out.push({
          operation: { op: "remove", path: pointer(path, key) },
          allowed: key === WEIGHT,
        });
    for (const [key, value] of Object.entries(after)) {
      if (value === undefined) continue;
      if (before[key] === undefined)
        out.push({
          operation: { op: "add", path: pointer(path, key), value },
          allowed: key === WEIGHT,
        });
      else diff(before[key], value, pointer(path, key), key, out);
    }
    return;
  }
  out.push({ operation: { op: "replace", path, value: after }, allowed: member === WEIGHT });
}

/**
 * Entries equal but for their weight are the same entry (a longest common subsequence). Between
 * two such anchors, as many entries before as after are paired in order when what differs inside
 * them is allowed (or always, outside a weighted list, to name what changed); the rest are
 * removed and added whole.
 */
function diffArray(before: Json[], after: Json[], path: string, member: string, out: Change[]) {
  const anchors = commonEntries(before.map(identity), after.map(identity));
  const weighted = WEIGHTED_LISTS.has(member);
  // In spec.rules only a header route may be added or removed whole.
  const rules = path === "/spec/rules";
  const whole = (entry: Json) =>
    weighted || (rules && isObject(entry) && isHeaderRuleName(entry.name));
  // Paired in order only when what differs inside is allowed, or (outside whole entries) always.
  const pairable = (i: number, j: number, changes: Change[]) =>
    (!whole(before[i]) && !whole(after[j])) || changes.every(c => c.allowed);
  const pairs: { i: number; j: number; changes: Change[] }[] = [];
  const inside = (i: number, j: number) => {
    const changes: Change[] = [];
    diff(before[i], after[j], pointer(path, j), String(j), changes);
    return changes;
  };
  let i0 = 0;
  let j0 = 0;
  for (const [ai, aj] of [...anchors, [before.length, after.length]]) {
    if (ai - i0 === aj - j0)
      for (let k = 0; k < ai - i0; k++) {
        const changes = inside(i0 + k, j0 + k);
        if (pairable(i0 + k, j0 + k, changes)) pairs.push({ i: i0 + k, j: j0 + k, changes });
      }
    if (ai < before.length) pairs.push({ i: ai, j: aj, changes: inside(ai, aj) });
    i0 = ai + 1;
    j0 = aj + 1;
  }
  const kept = new Set(pairs.map(p => p.i));
  const placed = new Set(pairs.map(p => p.j));
  // Removals from the end first, so each index is still the one read; then insertions in
  // ascending order land at their final index; then the paired entries, at their final index.
  for (let i = before.length - 1; i >= 0; i--)
    if (!kept.has(i))
      out.push({ operation: { op: "remove", path: pointer(path, i) }, allowed: whole(before[i]) });
  after.forEach((value, j) => {
    if (!placed.has(j))
      out.push({ operation: { op: "add", path: pointer(path, j), value }, allowed: whole(value) });
  });
  for (const p of pairs.sort((a, b) => a.j - b.j)) out.push(...p.changes);
}

/**
 * The operations that turn `before` (the spec as read) into `after` (the adapter's result), with
 * paths under `/spec`; [] when they are equal. Throws when `after` differs in anything but weights
 * and whole list entries: the adapters never do that, and a write must not either.
 */
export function weightPatch(before: Json, after: Json, base = "/spec"): Operation[] {
  const changes: Change[] = [];
  diff(before, after, base, base, changes);
  const stray = changes.find(c => !c.allowed);
  if (stray)
    throw new Error(
      `refusing to write ${stray.operation.op} ${stray.operation.path}: the operator writes only weights and list entries`,
    );
  return changes.map(c => c.operation);
}
