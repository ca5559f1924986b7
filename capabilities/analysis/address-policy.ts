// The operator-level policy for the Prometheus addresses a ModelRollout may make the operator call
// (pure: no DNS, no I/O; prometheus.ts applies it before sending and again to the addresses a host
// name resolves to, at connect time).
//
// - MODELROLLOUT_PROMETHEUS_ALLOWED_HOSTS (comma list): when set, only these. An entry is a host
//   name, a host glob (`*` stands for any characters inside one DNS label; a leading `*.` for one
//   or more labels: `*.monitoring.svc.cluster.local`), an IP address or a CIDR (`10.0.0.0/8`,
//   `fd00::/8`). A host name is allowed when it matches a name entry, or when every address it
//   resolves to (the ones connected to) is inside an IP/CIDR entry; an IP literal only by IP/CIDR.
// - MODELROLLOUT_PROMETHEUS_DENIED (same syntax): refused in addition to the defaults; always wins.
// - Refused by default: link-local (169.254.0.0/16, fe80::/10), cloud metadata (169.254.169.254,
//   fd00:ec2::254, 100.100.100.200, metadata.google.internal) and the unspecified addresses
//   (0.0.0.0/8, ::). An IP or CIDR entry of the allow list that lies inside one of these ranges lifts
//   that default for itself (e.g. `169.254.10.5`); a broader entry (`0.0.0.0/0`) does not. Loopback
//   is allowed (a Prometheus next to the operator).
// - An address with credentials (`http://user:pass@host`) is refused: credentials come from
//   Secrets that opt in (bearerTokenSecretRef).
// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) and NAT64 ones (64:ff9b::a.b.c.d) are checked as the
// IPv4 address they carry; WHATWG URL parsing already turns 2852039166, 0xa9fea9fe and
// 0251.0376.0251.0376 into 169.254.169.254.

export const ALLOWED_HOSTS_ENV = "MODELROLLOUT_PROMETHEUS_ALLOWED_HOSTS";
export const DENIED_ENV = "MODELROLLOUT_PROMETHEUS_DENIED";

interface Ip {
  version: 4 | 6;
  value: bigint;
}

interface CidrRule {
  type: "cidr";
  text: string;
  version: 4 | 6;
  base: bigint;
  prefix: number;
}

interface NameRule {
  type: "name";
  text: string;
  pattern: RegExp;
}

type Rule = CidrRule | NameRule;

export interface AddressPolicy {
  /** Identifies the policy (the two lists as given): equal keys, equal policies. */
  readonly key: string;
  /** MODELROLLOUT_PROMETHEUS_ALLOWED_HOSTS's rules; undefined when unset (everything not denied). */
  readonly allowed?: readonly Rule[];
  /** MODELROLLOUT_PROMETHEUS_DENIED's rules (the defaults are not listed here). */
  readonly denied: readonly Rule[];
}

/**
 * allowed: `resolve` when the host is a name whose addresses are checked when connecting.
 * refused: `reason` says what is refused and why, `fix` how to change it.
 */
export type AddressVerdict =
  | { allowed: true; resolve: boolean }
  | { allowed: false; reason: string; fix: string };

/** A MODELROLLOUT_PROMETHEUS_* variable that cannot be read. */
export class AddressPolicyConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AddressPolicyConfigError";
  }
}

// ---------------------------------------------------------------------------------------------
// IP addresses

function parseIpv4(text: string): bigint | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  let value = 0n;
  for (const part of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(part) || Number(part) > 255) return undefined;
    value = (value << 8n) | BigInt(part);
  }
  return value;
}

function parseIpv6(text: string): bigint | undefined {
  let s = text;
  if (s.includes("%")) return undefined; // zone ids: never in a URL host
  const groups: number[] = [];
  // A trailing dotted IPv4 part (::ffff:1.2.3.4) is two groups.
  const lastColon = s.lastIndexOf(":");
  if (s.slice(lastColon + 1).includes(".")) {
    const v4 = parseIpv4(s.slice(lastColon + 1));
    if (v4 === undefined) return undefined;
    s =
      s.slice(0, lastColon + 1) +
      ((v4 >> 16n) & 0xffffn).toString(16) +
      ":" +
      (v4 & 0xffffn).toString(16);
  }
  const halves = s.split("::");
  if (halves.length > 2) return undefined;
  const parse = (half: string): number[] | undefined => {
    if (half === "") return [];
    const out: number[] = [];
    for (const g of half.split(":")) {
      if (!/^[0-9a-f]{1,4}$/i.test(g)) return undefined;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const head = parse(halves[0]);
  const tail = halves.length === 2 ? parse(halves[1]) : [];
  if (!head || !tail) return undefined;
  if (halves.length === 2) {
    if (head.length + tail.length > 7) return undefined;
    groups.push(...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail);
  } else {
    if (head.length !== 8) return undefined;
    groups.push(...head);
  }
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(g), 0n);
}

/** An IPv4 or IPv6 address in its usual text forms (IPv6 with or without brackets). */
function parseIp(text: string): Ip | undefined {
  const t = text.startsWith("[") && text.endsWith("]") ? text.slice(1, -1) : text;
  const v4 = parseIpv4(t);
  if (v4 !== undefined) return { version: 4, value: v4 };
  if (!t.includes(":")) return undefined;
  const v6 = parseIpv6(t);
  return v6 === undefined ? undefined : { version: 6, value: v6 };
}

const MAPPED_PREFIX = 0xffffn << 32n; // ::ffff:0:0/96
const NAT64_PREFIX = 0x0064ff9bn << 96n; // 64:ff9b::/96
const LOW_96_MASK = (1n << 96n) - 1n;
const LOW_32_MASK = (1n << 32n) - 1n;

/** The addresses to check for `ip`: itself, and the IPv4 address an IPv6 one carries. */
function forms(ip: Ip): Ip[] {
  if (ip.version === 6) {
    const high = ip.value & ~LOW_32_MASK;
    if (high === MAPPED_PREFIX) return [{ version: 4, value: ip.value & LOW_32_MASK }];
    if ((ip.value & ~LOW_96_MASK) === NAT64_PREFIX && (ip.value & LOW_96_MASK) >> 32n === 0n)
      return [ip, { version: 4, value: ip.value & LOW_32_MASK }];
  }
  return [ip];
}

function inCidr(ip: Ip, rule: CidrRule): boolean {
  if (ip.version !== rule.version) return false;
  const bits = BigInt(rule.version === 4 ? 32 : 128);
  const shift = bits - BigInt(rule.prefix);
  return ip.value >> shift === rule.base >> shift;
}

/** `inner` lies inside `outer` (at least as specific). */
function cidrWithin(inner: CidrRule, outer: CidrRule): boolean {
  return (
    inner.version === outer.version &&
    inner.prefix >= outer.prefix &&
    inCidr({ version: inner.version, value: inner.base }, outer)
  );
}

// ---------------------------------------------------------------------------------------------
// Rules

function cidr(text: string): CidrRule | undefined {
  const slash = text.indexOf("/");
  const ip = parseIp(slash < 0 ? text : text.slice(0, slash));
  if (!ip) return undefined;
  const max = ip.version === 4 ? 32 : 128;
  let prefix = max;
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    if (!/^[0-9]{1,3}$/.test(p) || Number(p) > max) return undefined;
    prefix = Number(p);
  }
  const shift = BigInt(max - prefix);
  return { type: "cidr", text, version: ip.version, base: (ip.value >> shift) << shift, prefix };
}

function normalizeHost(host: string): string {
  return host.toLowerCase().replace(/\.$/, "");
}

function nameRule(text: string): NameRule | undefined {
  const t = normalizeHost(text);
  if (!/^[a-z0-9*_-]+(\.[a-z0-9*_-]+)*$/.test(t)) return undefined;
  if (/^[0-9.]+$/.test(t)) return undefined; // not an IP address, and no host name either
  const label = (l: string) =>
    l
      .split("*")
      .map(part => part.replace(/[-]/g, "\\-"))
      .join("[^.]*");
  const labels = t.split(".");
  const source =
    labels[0] === "*" && labels.length > 1
      ? `^[^.]+(\\.[^.]+)*\\.${labels.slice(1).map(label).join("\\.")}$`
      : `^${labels.map(label).join("\\.")}$`;
  return { type: "name", text, pattern: new RegExp(source) };
}

function parseRules(value: string, variable: string): Rule[] {
  const rules: Rule[] = [];
  for (const raw of value.split(",")) {
    const entry = raw.trim();
    if (!entry) continue;
    const rule = cidr(entry) ?? (entry.includes("/") ? undefined : nameRule(entry));
    if (!rule) {
      throw new AddressPolicyConfigError(
        `${variable}: ${JSON.stringify(entry)} is not a host name, host glob (*.example.com), IP address or CIDR (10.0.0.0/8); ` +
          `entries are comma-separated, without scheme or port`,
      );
    }
    rules.push(rule);
  }
  return rules;
}

interface DefaultRule {
  rule: Rule;
  why: string;
}

const defaultRule = (text: string, why: string): DefaultRule => ({
  rule: (cidr(text) ?? nameRule(text))!,
  why,
});

/** Refused unless the allow list names the address explicitly (most specific first). */
export const DEFAULT_DENIED: readonly DefaultRule[] = [
  defaultRule("169.254.169.254", "a cloud metadata address (AWS, Azure, GCP, OpenStack, …)"),
  defaultRule("fd00:ec2::254", "a cloud metadata address (AWS IPv6)"),
  defaultRule("100.100.100.200", "a cloud metadata address (Alibaba Cloud)"),
  defaultRule("metadata.google.internal", "a cloud metadata address (GCP)"),
  defaultRule("169.254.0.0/16", "a link-local address (169.254.0.0/16)"),
  defaultRule("fe80::/10", "a link-local address (fe80::/10)"),
  defaultRule("0.0.0.0/8", "an unspecified address (0.0.0.0/8)"),
  defaultRule("::/128", "the unspecified address (::)"),
];

/** A policy from the two lists' texts (each a comma list; empty or undefined: none). */
export function parseAddressPolicy(input: {
  allowedHosts?: string;
  denied?: string;
}): AddressPolicy {
  const allowedText = input.allowedHosts?.trim() ? input.allowedHosts.trim() : undefined;
  const deniedText = input.denied?.trim() ?? "";
  return {
    key: JSON.stringify([allowedText ?? null, deniedText]),
    allowed: allowedText === undefined ? undefined : parseRules(allowedText, ALLOWED_HOSTS_ENV),
    denied: parseRules(deniedText, DENIED_ENV),
  };
}

/** The policy from MODELROLLOUT_PROMETHEUS_ALLOWED_HOSTS and MODELROLLOUT_PROMETHEUS_DENIED. */
export function addressPolicyFromEnv(env: NodeJS.ProcessEnv = process.env): AddressPolicy {
  return parseAddressPolicy({ allowedHosts: env[ALLOWED_HOSTS_ENV], denied: env[DENIED_ENV] });
}

/** Nothing configured: only the defaults. */
export const DEFAULT_ADDRESS_POLICY: AddressPolicy = parseAddressPolicy({});

// ---------------------------------------------------------------------------------------------
// Decisions

/** A refusal: what is refused and why, and how to change it. */
export type AddressRefusal = Extract<AddressVerdict, { allowed: false }>;

const refuse = (reason: string, fix: string): AddressRefusal => ({ allowed: false, reason, fix });

const matchesName = (host: string, rule: Rule) => rule.type === "name" && rule.pattern.test(host);

function deniedIp(ip: Ip, shown: string, policy: AddressPolicy): AddressRefusal | undefined {
  for (const form of forms(ip)) {
    const explicit = policy.denied.find(r => r.type === "cidr" && inCidr(form, r));
    if (explicit)
      return refuse(
        `${shown} is denied by ${DENIED_ENV} (${explicit.text})`,
        `remove it from ${DENIED_ENV} on the operator`,
      );
    for (const { rule, why } of DEFAULT_DENIED) {
      if (rule.type !== "cidr" || !inCidr(form, rule)) continue;
      const lifted = policy.allowed?.some(
        a => a.type === "cidr" && inCidr(form, a) && cidrWithin(a, rule),
      );
      if (lifted) break;
      return refuse(
        `${shown} is ${why}, refused by default`,
        rule.prefix === (rule.version === 4 ? 32 : 128)
          ? `to allow it, list this address in ${ALLOWED_HOSTS_ENV} on the operator`
          : `to allow it, list this address (or a subnet of ${rule.text}) in ${ALLOWED_HOSTS_ENV} on the operator`,
      );
    }
  }
  return undefined;
}

function ipAllowedByList(ip: Ip, policy: AddressPolicy): boolean {
  return forms(ip).some(f => policy.allowed!.some(a => a.type === "cidr" && inCidr(f, a)));
}

const notListed = (what: string) =>
  refuse(
    `${what} is not in ${ALLOWED_HOSTS_ENV}`,
    `use an address the operator allows, or add it to ${ALLOWED_HOSTS_ENV} on the operator`,
  );

/** The host of a URL as the policy sees it: lower case, no brackets, no trailing dot. */
function hostOf(url: URL): string {
  const h = url.hostname;
  return normalizeHost(h.startsWith("[") && h.endsWith("]") ? h.slice(1, -1) : h);
}

/**
 * Decision on a URL before anything is sent: credentials in it, an IP literal, a host name that is
 * denied or (with an allow list) not listed. An allowed host name still has its addresses checked
 * when connecting (`resolve: true`, see checkResolvedAddresses).
 */
export function checkUrl(url: URL, policy: AddressPolicy): AddressVerdict {
  if (url.username || url.password) {
    return refuse(
      "the address carries credentials (user:password@)",
      "remove them from the address; put a token in a Secret labelled for gate credentials and reference it with bearerTokenSecretRef",
    );
  }
  const host = hostOf(url);
  const ip = parseIp(host);
  if (ip) {
    const denied = deniedIp(ip, host, policy);
    if (denied) return denied;
    if (policy.allowed && !ipAllowedByList(ip, policy)) return notListed(host);
    return { allowed: true, resolve: false };
  }
  const explicit = policy.denied.find(r => matchesName(host, r));
  if (explicit)
    return refuse(
      `${host} is denied by ${DENIED_ENV} (${explicit.text})`,
      `remove it from ${DENIED_ENV} on the operator`,
    );
  const byDefault = DEFAULT_DENIED.find(d => matchesName(host, d.rule));
  if (byDefault)
    return refuse(`${host} is ${byDefault.why}, refused by default`, "use another address");
  if (policy.allowed) {
    const byName = policy.allowed.some(a => matchesName(host, a));
    const byAddress = policy.allowed.some(a => a.type === "cidr");
    if (!byName && !byAddress) return notListed(host);
  }
  return { allowed: true, resolve: true };
}

/**
 * The addresses `host` resolved to that may be connected to (in the given order), or the refusal
 * of the first one when none may. Each must pass the deny rules; with an allow list, the host
 * name must match a name entry or the address an IP/CIDR entry.
 */
export function checkResolvedAddresses(
  host: string,
  addresses: readonly string[],
  policy: AddressPolicy,
): { allowed: string[]; refused?: AddressRefusal } {
  const name = normalizeHost(host);
  const byName = policy.allowed?.some(a => matchesName(name, a)) ?? true;
  const allowed: string[] = [];
  let refused: AddressRefusal | undefined;
  for (const address of addresses) {
    const ip = parseIp(address);
    let verdict: AddressVerdict | undefined;
    if (!ip) verdict = refuse(`${name} resolved to ${address}, not an IP address`, "fix DNS");
    else {
      verdict = deniedIp(ip, `${name} resolves to ${address}, which`, policy);
      if (!verdict && !byName && !ipAllowedByList(ip, policy))
        verdict = notListed(`${name} (resolves to ${address})`);
    }
    if (verdict && !verdict.allowed) refused ??= verdict;
    else allowed.push(address);
  }
  return allowed.length
    ? { allowed }
    : { allowed, refused: refused ?? refuse(`${name} resolved to no address`, "fix DNS") };
}
