// The Prometheus address policy: defaults, the two variables, IP forms, resolved addresses.
import {
  ALLOWED_HOSTS_ENV,
  AddressPolicyConfigError,
  DEFAULT_ADDRESS_POLICY,
  DENIED_ENV,
  addressPolicyFromEnv,
  checkResolvedAddresses,
  checkUrl,
  parseAddressPolicy,
  type AddressPolicy,
} from "./address-policy";

const verdict = (address: string, policy: AddressPolicy = DEFAULT_ADDRESS_POLICY) =>
  checkUrl(new URL(address), policy);

const reasonOf = (address: string, policy?: AddressPolicy) => {
  const v = verdict(address, policy);
  if (v.allowed) throw new Error(`${address} was allowed`);
  return `${v.reason}; ${v.fix}`;
};

describe("the default policy", () => {
  it.each([
    // cloud metadata, in every form WHATWG URL parsing turns into the same address
    ["http://169.254.169.254/", /169\.254\.169\.254 is a cloud metadata address/],
    ["http://169.254.169.254:80/latest/meta-data/", /cloud metadata/],
    ["http://2852039166/", /169\.254\.169\.254 is a cloud metadata/], // decimal
    ["http://0xa9fea9fe/", /169\.254\.169\.254 is a cloud metadata/], // hex
    ["http://0251.0376.0251.0376/", /169\.254\.169\.254 is a cloud metadata/], // octal
    ["http://169.254.43518/", /169\.254\.169\.254 is a cloud metadata/], // a.b.c16
    ["http://169.254.169.254./", /cloud metadata/], // trailing dot
    ["http://[::ffff:169.254.169.254]/", /cloud metadata/], // IPv4-mapped IPv6
    ["http://[::ffff:a9fe:a9fe]/", /cloud metadata/],
    ["http://[0:0:0:0:0:ffff:169.254.169.254]/", /cloud metadata/],
    ["http://[64:ff9b::169.254.169.254]/", /cloud metadata/], // NAT64
    ["http://[fd00:ec2::254]/", /cloud metadata address \(AWS IPv6\)/],
    ["http://100.100.100.200/", /cloud metadata address \(Alibaba Cloud\)/],
    ["http://metadata.google.internal/computeMetadata/v1/", /cloud metadata address \(GCP\)/],
    ["http://METADATA.Google.Internal./", /cloud metadata address \(GCP\)/],
    // link-local
    ["http://169.254.1.1:9090/", /169\.254\.1\.1 is a link-local address/],
    ["http://169.254.170.2/", /link-local/], // ECS task metadata
    ["http://[fe80::1]:9090/", /fe80::1 is a link-local address/],
    ["http://[febf:ffff::1]/", /link-local/],
    ["http://[::ffff:169.254.0.1]/", /link-local/],
    // unspecified
    ["http://0.0.0.0:9090/", /0\.0\.0\.0 is an unspecified address/],
    ["http://0/", /0\.0\.0\.0 is an unspecified address/],
    ["http://0.1.2.3/", /unspecified/],
    ["http://[::]:9090/", /the unspecified address/],
  ])("refuses %s", (address, reason) => {
    expect(reasonOf(address)).toMatch(reason);
  });

  it("names the variable that would allow an address refused by default", () => {
    expect(reasonOf("http://169.254.1.1/")).toContain(
      `to allow it, list this address (or a subnet of 169.254.0.0/16) in ${ALLOWED_HOSTS_ENV} on the operator`,
    );
  });

  it.each([
    "http://127.0.0.1:19090",
    "http://127.1.2.3/",
    "http://localhost:9090/prometheus",
    "http://[::1]:9090/",
    "http://[::ffff:127.0.0.1]/",
    "http://prometheus.monitoring:9090",
    "https://prometheus.monitoring.svc.cluster.local",
    "http://10.0.0.1:9090",
    "http://192.168.1.10/",
    "http://[fd12::1]/",
    "http://[fec0::1]/", // just past fe80::/10
    "http://169.253.255.255/",
    "http://169.255.0.0/",
    "http://1.0.0.0/",
  ])("allows %s", address => {
    expect(verdict(address).allowed).toBe(true);
  });

  it("checks a host name's addresses when connecting, an IP literal's not", () => {
    expect(verdict("http://prometheus.monitoring:9090")).toEqual({ allowed: true, resolve: true });
    expect(verdict("http://10.0.0.1:9090")).toEqual({ allowed: true, resolve: false });
  });

  it("refuses credentials in the address", () => {
    expect(reasonOf("http://user:secret@prometheus:9090/")).toMatch(
      /carries credentials \(user:password@\).*bearerTokenSecretRef/,
    );
    expect(reasonOf("http://token@prometheus:9090/")).toMatch(/carries credentials/);
    expect(reasonOf("http://user:secret@prometheus:9090/")).not.toContain("secret");
  });
});

describe("resolved addresses", () => {
  it("refuses a host name that resolves to a denied address (DNS rebinding)", () => {
    const r = checkResolvedAddresses(
      "prom.attacker.example",
      ["169.254.169.254"],
      DEFAULT_ADDRESS_POLICY,
    );
    expect(r.allowed).toEqual([]);
    expect(r.refused?.reason).toBe(
      "prom.attacker.example resolves to 169.254.169.254, which is a cloud metadata address (AWS, Azure, GCP, OpenStack, …), refused by default",
    );
    for (const address of ["::ffff:169.254.169.254", "fe80::1", "0.0.0.0", "::", "fd00:ec2::254"])
      expect(checkResolvedAddresses("x", [address], DEFAULT_ADDRESS_POLICY).allowed).toEqual([]);
  });

  it("keeps only the allowed ones of several", () => {
    expect(
      checkResolvedAddresses(
        "prom",
        ["169.254.169.254", "10.0.0.7", "::1"],
        DEFAULT_ADDRESS_POLICY,
      ),
    ).toEqual({ allowed: ["10.0.0.7", "::1"] });
  });

  it("with an allow list of CIDRs, a host name passes by its addresses", () => {
    const policy = parseAddressPolicy({ allowedHosts: "10.0.0.0/8, fd12::/16" });
    expect(verdict("http://prometheus.monitoring:9090", policy)).toEqual({
      allowed: true,
      resolve: true,
    });
    expect(checkResolvedAddresses("prometheus.monitoring", ["10.3.2.1"], policy).allowed).toEqual([
      "10.3.2.1",
    ]);
    expect(checkResolvedAddresses("p", ["fd12:1::5"], policy).allowed).toEqual(["fd12:1::5"]);
    const refused = checkResolvedAddresses("prometheus.monitoring", ["192.168.1.1"], policy);
    expect(refused.refused?.reason).toBe(
      `prometheus.monitoring (resolves to 192.168.1.1) is not in ${ALLOWED_HOSTS_ENV}`,
    );
  });

  it("with an allow list of names, a listed name passes whatever it resolves to, except denied addresses", () => {
    const policy = parseAddressPolicy({ allowedHosts: "*.monitoring.svc.cluster.local" });
    const host = "prometheus.monitoring.svc.cluster.local";
    expect(checkResolvedAddresses(host, ["10.96.0.12"], policy).allowed).toEqual(["10.96.0.12"]);
    expect(checkResolvedAddresses(host, ["169.254.169.254"], policy).allowed).toEqual([]);
  });
});

describe("MODELROLLOUT_PROMETHEUS_ALLOWED_HOSTS", () => {
  it("when set, allows only what it lists", () => {
    const policy = parseAddressPolicy({
      allowedHosts: "prometheus.monitoring, *.metrics.example.com, 127.0.0.1, 10.20.0.0/16",
    });
    expect(verdict("http://prometheus.monitoring:9090", policy).allowed).toBe(true);
    expect(verdict("http://PROMETHEUS.monitoring.:9090", policy).allowed).toBe(true);
    expect(verdict("http://a.metrics.example.com", policy).allowed).toBe(true);
    expect(verdict("http://a.b.metrics.example.com", policy).allowed).toBe(true);
    expect(verdict("http://127.0.0.1:19090", policy).allowed).toBe(true);
    expect(verdict("http://[::ffff:127.0.0.1]:19090", policy).allowed).toBe(true);
    expect(verdict("http://10.20.3.4", policy).allowed).toBe(true);
    expect(reasonOf("http://10.21.0.1", policy)).toBe(
      `10.21.0.1 is not in ${ALLOWED_HOSTS_ENV}; use an address the operator allows, or add it to ${ALLOWED_HOSTS_ENV} on the operator`,
    );
    expect(verdict("http://127.0.0.2", policy).allowed).toBe(false);
    expect(verdict("http://[::1]", policy).allowed).toBe(false);
  });

  it("matches globs within labels, a leading *. over one or more labels", () => {
    const policy = parseAddressPolicy({ allowedHosts: "*.monitoring.svc, prom-*.example.com" });
    const allowed = (host: string) => verdict(`http://${host}/`, policy).allowed;
    expect(allowed("prometheus.monitoring.svc")).toBe(true);
    expect(allowed("a.b.monitoring.svc")).toBe(true);
    expect(allowed("monitoring.svc")).toBe(false);
    expect(allowed("evilmonitoring.svc")).toBe(false);
    expect(allowed("prometheus.monitoring.svc.evil.com")).toBe(false);
    expect(allowed("prom-1.example.com")).toBe(true);
    expect(allowed("prom-.example.com")).toBe(true);
    expect(allowed("prom-1.x.example.com")).toBe(false);
    expect(allowed("xprom-1.example.com")).toBe(false);
  });

  it("a name-only list refuses other names before any lookup", () => {
    const policy = parseAddressPolicy({ allowedHosts: "prometheus.monitoring" });
    expect(verdict("http://other.monitoring", policy)).toMatchObject({ allowed: false });
    expect(verdict("http://10.0.0.1", policy)).toMatchObject({ allowed: false });
  });

  it("lifts a default only for an entry inside the refused range", () => {
    expect(
      verdict("http://169.254.10.5/", parseAddressPolicy({ allowedHosts: "169.254.10.5" })).allowed,
    ).toBe(true);
    expect(
      verdict("http://169.254.10.5/", parseAddressPolicy({ allowedHosts: "169.254.10.0/24" }))
        .allowed,
    ).toBe(true);
    expect(
      verdict("http://[fe80::5]/", parseAddressPolicy({ allowedHosts: "fe80::/64" })).allowed,
    ).toBe(true);
    // metadata stays refused unless named exactly; broad entries lift nothing
    expect(
      verdict("http://169.254.169.254/", parseAddressPolicy({ allowedHosts: "169.254.0.0/16" }))
        .allowed,
    ).toBe(false);
    expect(
      verdict("http://169.254.169.254/", parseAddressPolicy({ allowedHosts: "0.0.0.0/0" })).allowed,
    ).toBe(false);
    expect(verdict("http://[fe80::1]/", parseAddressPolicy({ allowedHosts: "::/0" })).allowed).toBe(
      false,
    );
    expect(
      verdict("http://0.0.0.0/", parseAddressPolicy({ allowedHosts: "0.0.0.0/0" })).allowed,
    ).toBe(false);
    expect(
      verdict("http://169.254.169.254/", parseAddressPolicy({ allowedHosts: "169.254.169.254" }))
        .allowed,
    ).toBe(true);
    // a name is no IP entry: metadata.google.internal stays refused
    expect(
      verdict(
        "http://metadata.google.internal/",
        parseAddressPolicy({ allowedHosts: "metadata.google.internal" }),
      ).allowed,
    ).toBe(false);
  });

  it("an empty value is unset", () => {
    expect(parseAddressPolicy({ allowedHosts: " " }).allowed).toBeUndefined();
    expect(verdict("http://10.0.0.1/", parseAddressPolicy({ allowedHosts: "" })).allowed).toBe(
      true,
    );
  });
});

describe("MODELROLLOUT_PROMETHEUS_DENIED", () => {
  it("refuses what it lists in addition to the defaults, and wins over the allow list", () => {
    const policy = parseAddressPolicy({
      allowedHosts: "10.0.0.0/8, *.monitoring",
      denied: "10.0.0.5, fd00::/8, *.internal, legacy.monitoring",
    });
    expect(reasonOf("http://10.0.0.5/", policy)).toBe(
      `10.0.0.5 is denied by ${DENIED_ENV} (10.0.0.5); remove it from ${DENIED_ENV} on the operator`,
    );
    expect(reasonOf("http://[::ffff:10.0.0.5]/", policy)).toMatch(/denied by/);
    expect(verdict("http://10.0.0.6/", policy).allowed).toBe(true);
    expect(reasonOf("http://legacy.monitoring/", policy)).toMatch(/denied by .*legacy\.monitoring/);
    expect(verdict("http://prometheus.corp.internal/", policy).allowed).toBe(false);
    expect(checkResolvedAddresses("p.monitoring", ["fd00::1"], policy).refused?.reason).toBe(
      `p.monitoring resolves to fd00::1, which is denied by ${DENIED_ENV} (fd00::/8)`,
    );
    expect(verdict("http://169.254.169.254/", policy).allowed).toBe(false);
  });

  it("can refuse loopback", () => {
    const policy = parseAddressPolicy({ denied: "127.0.0.0/8, ::1" });
    expect(verdict("http://127.0.0.1:9090", policy).allowed).toBe(false);
    expect(verdict("http://[::1]:9090", policy).allowed).toBe(false);
    expect(verdict("http://[::ffff:127.0.0.1]:9090", policy).allowed).toBe(false);
    expect(checkResolvedAddresses("localhost", ["127.0.0.1", "::1"], policy).allowed).toEqual([]);
  });
});

describe("reading the variables", () => {
  it("reads both from the environment", () => {
    const policy = addressPolicyFromEnv({
      [ALLOWED_HOSTS_ENV]: "prometheus.monitoring",
      [DENIED_ENV]: "10.0.0.0/8",
    });
    expect(verdict("http://prometheus.monitoring/", policy).allowed).toBe(true);
    expect(verdict("http://other/", policy).allowed).toBe(false);
    expect(addressPolicyFromEnv({}).key).toBe(DEFAULT_ADDRESS_POLICY.key);
    expect(policy.key).not.toBe(DEFAULT_ADDRESS_POLICY.key);
  });

  it.each([
    [ALLOWED_HOSTS_ENV, "http://prometheus:9090"],
    [ALLOWED_HOSTS_ENV, "prometheus:9090"],
    [ALLOWED_HOSTS_ENV, "10.0.0.0/33"],
    [ALLOWED_HOSTS_ENV, "1.2.3"],
    [DENIED_ENV, "a b"],
    [DENIED_ENV, "fe80::/129"],
    [DENIED_ENV, "prometheus/x"],
  ])("%s=%j is a configuration error naming the variable", (variable, value) => {
    const read = () => addressPolicyFromEnv({ [variable]: value });
    expect(read).toThrow(AddressPolicyConfigError);
    expect(read).toThrow(new RegExp(`^${variable}: `));
  });
});
