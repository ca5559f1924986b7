// The name of the HTTPRoute rule a rollout's setHeaderRoute step adds, and how any such rule is
// recognised: the weight code never takes it for the managed rule, and the JSON Patch may add or
// remove it whole (weight-patch.ts).
import { fingerprint } from "../fingerprint";

const PREFIX = "modelrollout-";
const SUFFIX = "-header";
/** Gateway API: a rule name is a DNS subdomain of at most 253 characters. */
const MAX_RULE_NAME = 253;

/** `modelrollout-<rollout>-header`; a name too long keeps its start plus a hash of the whole. */
export function headerRuleName(rollout: string): string {
  const name = `${PREFIX}${rollout}${SUFFIX}`;
  if (name.length <= MAX_RULE_NAME) return name;
  const hash = fingerprint(rollout);
  const room = MAX_RULE_NAME - PREFIX.length - SUFFIX.length - hash.length - 1;
  // A DNS subdomain label may not end in "-" or ".": trim before adding "-<hash>".
  const start = rollout.slice(0, room).replace(/[-.]+$/, "");
  return `${PREFIX}${start}-${hash}${SUFFIX}`;
}

/** A rule some rollout's setHeaderRoute step added (by its name). */
export function isHeaderRuleName(name: unknown): boolean {
  return (
    typeof name === "string" &&
    name.startsWith(PREFIX) &&
    name.endsWith(SUFFIX) &&
    name.length > PREFIX.length + SUFFIX.length
  );
}
