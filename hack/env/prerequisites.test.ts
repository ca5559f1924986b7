import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { EnvConfig } from "./config";
import { freePort } from "./procs";
import {
  busyPorts,
  compareVersions,
  describeProblems,
  ensurePrerequisites,
  goVersionOf,
  Machine,
  parseBinaryLines,
  planPrerequisites,
  Probes,
  satisfies,
} from "./prerequisites";

const BUILT = {
  "kube-apiserver": "/c/bin/kube-apiserver",
  kubectl: "/c/bin/kubectl",
  etcd: "/c/bin/etcd",
  "envoy-side": "/c/bin/envoy-side-abc",
};
const NOTHING_BUILT = {
  "kube-apiserver": undefined,
  kubectl: undefined,
  etcd: undefined,
  "envoy-side": undefined,
};

/** A machine with everything: Node 20.20, Go 1.26.8, openssl, Debian's Prometheus, binaries built. */
function probes(over: Partial<Probes> = {}): Probes {
  return {
    node: { version: "20.20.0", range: ">=20.20.0 <21" },
    root: false,
    aptGet: true,
    go: { path: "/usr/local/go/bin/go", version: "1.26.8" },
    openssl: true,
    caCertificates: true,
    prometheus: { installed: "/usr/bin/prometheus" },
    binaries: BUILT,
    buildProblems: [],
    badAssets: [],
    disk: { freeBytes: 50 * 1024 ** 3, where: "/" },
    busyPorts: [],
    ...over,
  };
}

/** A fresh Debian machine of the issue: Node and Go only, nothing built. */
const fresh = (over: Partial<Probes> = {}) =>
  probes({ openssl: false, prometheus: {}, binaries: NOTHING_BUILT, ...over });

describe("versions", () => {
  it("compares dotted versions numerically, missing parts as 0", () => {
    expect(compareVersions("1.26.8", "1.26.0")).toBe(1);
    expect(compareVersions("1.26", "1.26.0")).toBe(0);
    expect(compareVersions("1.9.0", "1.26.0")).toBe(-1);
    expect(compareVersions("1.25.9", "1.26")).toBe(-1);
  });
  it("reads npm's comparator ranges as package.json's engines writes them", () => {
    expect(satisfies("20.20.0", ">=20.20.0 <21")).toBe(true);
    expect(satisfies("20.21.3", ">=20.20.0 <21")).toBe(true);
    expect(satisfies("20.19.5", ">=20.20.0 <21")).toBe(false);
    expect(satisfies("22.1.0", ">=20.20.0 <21")).toBe(false);
    expect(satisfies("21.0.0", ">=20.20.0 <21")).toBe(false);
    expect(satisfies("18.0.0", "")).toBe(true);
  });
  it("takes Go's version from `go env GOVERSION` or `go version`", () => {
    expect(goVersionOf("go1.26.8")).toBe("1.26.8");
    expect(goVersionOf("go version go1.26.0 linux/amd64")).toBe("1.26.0");
    expect(goVersionOf("")).toBe("");
  });
  it("reads hack/build-binaries.sh's name=path lines", () => {
    expect(
      parseBinaryLines(
        "kube-apiserver=/a/b\netcd=\nprometheus=/x/prometheus\nproblem=no source | fix: get it\n",
      ),
    ).toEqual({
      binaries: { "kube-apiserver": "/a/b", etcd: "", prometheus: "/x/prometheus" },
      problems: [{ what: "no source", fix: "get it" }],
    });
  });
});

describe("planPrerequisites", () => {
  it("has nothing to do on a machine that has everything", () => {
    const plan = planPrerequisites(probes());
    expect(plan).toMatchObject({ problems: [], steps: [], builds: [] });
    expect(plan.prometheus).toBe("/usr/bin/prometheus");
    expect(plan.found.join(", ")).toContain("Node.js 20.20.0");
  });

  it("on a fresh Debian machine as root: installs prometheus and openssl with apt, then builds", () => {
    const plan = planPrerequisites(fresh({ root: true }));
    expect(plan.problems).toEqual([]);
    expect(plan.steps).toEqual([
      { kind: "apt", packages: ["openssl", "prometheus"], prometheusFallback: true },
    ]);
    expect(plan.builds).toEqual(["kube-apiserver", "kubectl", "etcd", "envoy-side"]);
  });

  it("as root without Go: still apt, but no Go fallback for Prometheus", () => {
    const plan = planPrerequisites(probes({ root: true, prometheus: {}, go: undefined }));
    expect(plan.steps).toEqual([
      { kind: "apt", packages: ["prometheus"], prometheusFallback: false },
    ]);
    expect(plan.problems).toEqual([]);
  });

  it("not root: builds Prometheus from the Go module proxy, and names what only the user can fix", () => {
    const plan = planPrerequisites(fresh({ root: false }));
    expect(plan.steps).toEqual([{ kind: "build-prometheus" }]);
    expect(plan.problems).toHaveLength(1);
    expect(plan.problems[0].what).toMatch(/openssl/);
    expect(plan.problems[0].fix).toMatch(/apt-get install openssl/);
  });

  it("root but no apt-get (another distribution): builds Prometheus with Go", () => {
    const plan = planPrerequisites(probes({ root: true, aptGet: false, prometheus: {} }));
    expect(plan.steps).toEqual([{ kind: "build-prometheus" }]);
  });

  it("uses a Prometheus built earlier rather than installing one", () => {
    const plan = planPrerequisites(probes({ root: true, prometheus: { built: "/c/prom" } }));
    expect(plan.steps).toEqual([]);
    expect(plan.prometheus).toBe("/c/prom");
  });

  it("without Go, Prometheus or root: every problem at once, each with its fix", () => {
    const plan = planPrerequisites(fresh({ go: undefined, openssl: true }));
    expect(plan.steps).toEqual([]);
    const whats = plan.problems.map(p => p.what);
    expect(whats).toEqual([
      expect.stringMatching(/^Prometheus is not installed/),
      expect.stringMatching(/^Go is not installed; it builds kube-apiserver, kubectl, etcd/),
    ]);
    expect(plan.problems[0].fix).toMatch(/apt-get install prometheus.*PROMETHEUS_BINARY/);
    expect(plan.problems[1].fix).toMatch(/go\.dev\/dl.*KUBEBUILDER_ASSETS/);
  });

  it("needs no Go when every binary is there", () => {
    expect(planPrerequisites(probes({ go: undefined })).problems).toEqual([]);
  });

  it("refuses a Go older than the builds need", () => {
    const plan = planPrerequisites(
      probes({ go: { path: "/usr/bin/go", version: "1.22.2" }, binaries: { etcd: undefined } }),
    );
    expect(plan.problems.map(p => p.what)).toEqual([
      "Go 1.22.2 at /usr/bin/go is older than 1.26.0, needed to build etcd",
    ]);
  });

  it("an old Go does not build Prometheus: as root apt has no fallback", () => {
    const plan = planPrerequisites(
      probes({ root: true, prometheus: {}, go: { path: "/usr/bin/go", version: "1.21.0" } }),
    );
    expect(plan.steps).toEqual([
      { kind: "apt", packages: ["prometheus"], prometheusFallback: false },
    ]);
  });

  it("a PROMETHEUS_BINARY that names nothing is a problem, not a reason to install one", () => {
    const plan = planPrerequisites(
      probes({ root: true, prometheus: { env: { path: "/nope", executable: false } } }),
    );
    expect(plan.steps).toEqual([]);
    expect(plan.problems.map(p => p.what)).toEqual([
      "PROMETHEUS_BINARY=/nope is not an executable file",
    ]);
    const given = planPrerequisites(
      probes({
        prometheus: { env: { path: "/opt/p", executable: true }, installed: "/usr/bin/x" },
      }),
    );
    expect(given.prometheus).toBe("/opt/p");
  });

  it("refuses a Node.js outside package.json's engines", () => {
    const plan = planPrerequisites(probes({ node: { version: "22.3.0", range: ">=20.20.0 <21" } }));
    expect(plan.problems).toHaveLength(1);
    expect(plan.problems[0].what).toMatch(/Node.js 22.3.0/);
    expect(plan.problems[0].fix).toMatch(/Node.js 20/);
  });

  it("gets CA certificates for Go's HTTPS only when something is to be built", () => {
    expect(planPrerequisites(probes({ caCertificates: false })).problems).toEqual([]);
    expect(planPrerequisites(fresh({ root: true, caCertificates: false })).steps[0]).toMatchObject({
      packages: ["openssl", "prometheus", "ca-certificates"],
    });
    const user = planPrerequisites(fresh({ openssl: true, caCertificates: false }));
    expect(user.problems.map(p => p.what)).toEqual([
      "no CA certificates: Go cannot reach the module proxy over HTTPS",
    ]);
  });

  it("checks free space against what the builds need", () => {
    const low = { freeBytes: 2 * 1024 ** 3, where: "/root" };
    expect(planPrerequisites(probes({ disk: low })).problems).toEqual([]);
    const plan = planPrerequisites(fresh({ root: true, disk: low }));
    expect(plan.problems).toHaveLength(1);
    expect(plan.problems[0].what).toMatch(/^2\.0 GB free in \/root; building kube-apiserver/);
  });

  it("names taken ports and the variable that moves each", () => {
    const plan = planPrerequisites(
      probes({
        busyPorts: [{ what: "Prometheus", port: 19090, variable: "MODELROLLOUT_PROMETHEUS_PORT" }],
      }),
    );
    expect(plan.problems).toEqual([
      {
        what: "127.0.0.1:19090 (Prometheus) is in use by another process",
        fix: "stop that process, or give the environment another port: MODELROLLOUT_PROMETHEUS_PORT=<free port>",
      },
    ]);
  });

  it("rejects prebuilt binaries named by a variable that point at nothing", () => {
    const plan = planPrerequisites(
      probes({ badAssets: [{ variable: "KUBEBUILDER_ASSETS", value: "/missing" }] }),
    );
    expect(plan.problems.map(p => p.what)).toEqual([
      "KUBEBUILDER_ASSETS=/missing does not name a folder",
    ]);
  });

  it("reports what a build would lack (a build's preflight in build-binaries.sh --check)", () => {
    const lack = { what: "llm-d-inference-sim's source is missing", fix: "put shared/ beside" };
    const plan = planPrerequisites(
      probes({ binaries: { ...BUILT, "llm-d-inference-sim": undefined }, buildProblems: [lack] }),
    );
    expect(plan.problems).toEqual([lack]);
  });

  it("counts any binary build-binaries.sh names, not only the control plane's", () => {
    const plan = planPrerequisites(
      probes({ binaries: { ...BUILT, "llm-d-inference-sim": undefined } }),
    );
    expect(plan.builds).toEqual(["llm-d-inference-sim"]);
  });
});

describe("ensurePrerequisites", () => {
  type Call = string;
  function machine(
    sequence: Probes[],
    opts: { fail?: RegExp; systemd?: boolean; serviceActive?: boolean } = {},
  ) {
    const calls: Call[] = [];
    const m: Machine = {
      probe: async () => (sequence.length > 1 ? sequence.shift()! : sequence[0]),
      run(command, args) {
        const call = [command, ...args].join(" ");
        calls.push(call);
        if (opts.fail?.test(call)) return { status: 100, stdout: "" };
        if (call.includes("is-active")) return { status: opts.serviceActive ? 0 : 3, stdout: "" };
        return { status: 0, stdout: "" };
      },
      exists: file => file === "/run/systemd/system" && !!opts.systemd,
    };
    return { m, calls };
  }
  const messages: string[] = [];
  const progress = (msg: string) => messages.push(msg);
  beforeEach(() => (messages.length = 0));

  it("fails at once with every fix, running nothing", async () => {
    const { m, calls } = machine([fresh({ go: undefined, openssl: false })]);
    await expect(ensurePrerequisites(progress, m)).rejects.toThrow(
      /3 prerequisites are missing \(nothing was built or installed\):[\s\S]*fix: `sudo apt-get install openssl`/,
    );
    expect(calls).toEqual([]);
  });

  it("as root: apt-get update and install, then checks again and returns the installed one", async () => {
    const { m, calls } = machine([fresh({ root: true }), probes({ root: true })]);
    const got = await ensurePrerequisites(progress, m);
    expect(got.prometheus).toBe("/usr/bin/prometheus");
    expect(calls).toEqual([
      "apt-get -q -o DPkg::Lock::Timeout=300 update",
      "apt-get -q -o DPkg::Lock::Timeout=300 install -y --no-install-recommends openssl prometheus",
    ]);
    expect(messages.join("\n")).toMatch(
      /to do: install Debian's openssl, prometheus \(apt-get\), then build kube-apiserver, kubectl, etcd, envoy-side from the Go module proxy \(~10-20 min/,
    );
  });

  it("stops and disables the service the package started under systemd", async () => {
    const { m, calls } = machine([fresh({ root: true }), probes({ root: true })], {
      systemd: true,
      serviceActive: true,
    });
    await ensurePrerequisites(progress, m);
    expect(calls.slice(2)).toEqual([
      "systemctl is-active --quiet prometheus.service",
      "systemctl disable --now prometheus.service",
    ]);
    const quiet = machine([fresh({ root: true }), probes({ root: true })], { systemd: true });
    await ensurePrerequisites(progress, quiet.m);
    expect(quiet.calls.slice(2)).toEqual(["systemctl is-active --quiet prometheus.service"]);
  });

  it("falls back to the Go build when apt-get install fails", async () => {
    const { m, calls } = machine(
      [fresh({ root: true }), probes({ root: true, prometheus: { built: "/c/prom" } })],
      { fail: /install -y/ },
    );
    const got = await ensurePrerequisites(progress, m);
    expect(got.prometheus).toBe("/c/prom");
    expect(calls[2]).toMatch(/^bash .*hack\/build-binaries\.sh prometheus$/);
  });

  it("not root: builds Prometheus with hack/build-binaries.sh", async () => {
    const { m, calls } = machine([
      probes({ prometheus: {} }),
      probes({ prometheus: { built: "/c/prom" } }),
    ]);
    expect((await ensurePrerequisites(progress, m)).prometheus).toBe("/c/prom");
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatch(/build-binaries\.sh prometheus$/);
  });

  it("says what is still missing when a step did not deliver", async () => {
    const { m } = machine([probes({ prometheus: {} })], { fail: /build-binaries/ });
    await expect(ensurePrerequisites(progress, m)).rejects.toThrow(
      /could not build Prometheus[\s\S]*PROMETHEUS_BINARY/,
    );
  });

  it("describes one problem in the singular", () => {
    expect(describeProblems([{ what: "x", fix: "y" }])).toBe(
      "a prerequisite is missing (nothing was built or installed):\n  - x\n    fix: y",
    );
  });
});

describe("busyPorts (real sockets)", () => {
  it("names a port another process holds, unless our own component is the one running there", async () => {
    const holder = net.createServer();
    await new Promise<void>(resolve => holder.listen(0, "127.0.0.1", resolve));
    const held = (holder.address() as net.AddressInfo).port;
    const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), "prereq-"));
    try {
      const cfg: EnvConfig = {
        cacheDir: stateDir,
        stateDir,
        logDir: path.join(stateDir, "logs"),
        kubeconfig: path.join(stateDir, "kubeconfig"),
        etcdPort: await freePort(),
        etcdPeerPort: await freePort(),
        apiserverPort: await freePort(),
        prometheusPort: held,
      };
      expect(await busyPorts(cfg)).toEqual([
        { what: "Prometheus", port: held, variable: "MODELROLLOUT_PROMETHEUS_PORT" },
      ]);
      // A running Prometheus of this environment (its pid file names a live process) is ours.
      fs.mkdirSync(path.join(stateDir, "pids"));
      fs.writeFileSync(
        path.join(stateDir, "pids", "prometheus.json"),
        JSON.stringify({ name: "prometheus", pid: process.pid }),
      );
      expect(await busyPorts(cfg)).toEqual([]);
    } finally {
      holder.close();
      fs.rmSync(stateDir, { recursive: true, force: true });
    }
  });
});
