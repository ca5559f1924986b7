import { actionArgs, eventArgs, getArgs, parseCli, pausedArgs, UsageError } from "./cli";

describe("parseCli", () => {
  it("reads get with a name, --watch and kubectl's global flags in any order", () => {
    expect(
      parseCli(["get", "-n", "demo", "r1", "-w", "--context=kind", "--kubeconfig", "/k"]),
    ).toEqual({
      verb: "get",
      name: "r1",
      watch: true,
      allNamespaces: false,
      global: { namespace: "demo", context: "kind", kubeconfig: "/k" },
    });
    expect(parseCli(["get", "-A"])).toMatchObject({
      verb: "get",
      name: undefined,
      allNamespaces: true,
    });
  });

  it("maps promote, promote --full, abort and retry to the annotation values", () => {
    expect(parseCli(["promote", "r"])).toMatchObject({
      verb: "action",
      action: "promote",
      name: "r",
      wait: true,
    });
    expect(parseCli(["promote", "--full", "r", "--no-wait"])).toMatchObject({
      action: "promote-full",
      wait: false,
    });
    expect(parseCli(["abort", "r"])).toMatchObject({ action: "abort" });
    expect(parseCli(["retry", "r"])).toMatchObject({ action: "retry" });
    expect(parseCli(["pause", "r"])).toMatchObject({ verb: "pause", name: "r" });
    expect(parseCli(["resume", "r"])).toMatchObject({ verb: "resume", name: "r" });
  });

  it("gives help for no arguments, -h and --help", () => {
    expect(parseCli([])).toEqual({ verb: "help" });
    expect(parseCli(["get", "--help"])).toEqual({ verb: "help" });
    expect(parseCli(["-h"])).toEqual({ verb: "help" });
    // The first of --help and a usage error wins.
    expect(parseCli(["frobnicate", "--help", "--bogus"])).toEqual({ verb: "help" });
    expect(() => parseCli(["get", "--bogus", "--help"])).toThrow(/unknown flag --bogus/);
  });

  it("takes values as kubectl does: separate, after =, or attached to a short flag", () => {
    const g = { namespace: "demo", context: "c", kubeconfig: "/k" };
    for (const argv of [
      ["get", "-n", "demo", "--context", "c", "--kubeconfig", "/k"],
      ["get", "--namespace=demo", "--context=c", "--kubeconfig=/k"],
      ["get", "-ndemo", "--context=c", "--kubeconfig", "/k"],
    ]) {
      expect(parseCli(argv)).toMatchObject({ verb: "get", global: g });
    }
    expect(parseCli(["get", "-wA"])).toMatchObject({ watch: true, allNamespaces: true });
    expect(parseCli(["pause", "r", "--no-wait"])).toMatchObject({ wait: false });
  });

  it.each([
    [["frobnicate"], /unknown command "frobnicate"/],
    [["promote"], /promote needs the name/],
    [["abort", "a", "b"], /unexpected argument "b"/],
    [["abort", "a", "--full"], /--full belongs to promote/],
    [["pause", "a", "--watch"], /--watch belongs to get/],
    [["get", "a", "-A"], /exclude each other/],
    [["get", "-n"], /-n needs a value/],
    [["get", "--namespace="], /--namespace needs a value/],
    [["get", "--bogus"], /unknown flag --bogus/],
    [["get", "--bogus=1"], /unknown flag --bogus=1/],
    [["get", "--", "r"], /unknown flag --$/],
  ])("rejects %j", (argv, message) => {
    expect(() => parseCli(argv as string[])).toThrow(UsageError);
    expect(() => parseCli(argv as string[])).toThrow(message);
  });
});

describe("kubectl calls", () => {
  const g = { namespace: "demo", context: "c" };

  it("annotates with --overwrite so the same action can be asked again", () => {
    expect(actionArgs(g, "r", "promote-full")).toEqual([
      "--context",
      "c",
      "--namespace",
      "demo",
      "annotate",
      "modelrollouts.rollouts.inference.dev",
      "r",
      "rollouts.inference.dev/action=promote-full",
      "--overwrite",
      "-o",
      "json",
    ]);
  });

  it("pauses and resumes with a merge patch of spec.paused", () => {
    const args = pausedArgs({}, "r", true);
    expect(args.slice(0, 4)).toEqual([
      "patch",
      "modelrollouts.rollouts.inference.dev",
      "r",
      "--type=merge",
    ]);
    expect(JSON.parse(args[5])).toEqual({ spec: { paused: true } });
    expect(JSON.parse(pausedArgs({}, "r", false)[5])).toEqual({ spec: { paused: false } });
  });

  it("gets one, all, or every namespace's rollouts, and a rollout's own events", () => {
    expect(getArgs({}, "r", false)).toEqual([
      "get",
      "modelrollouts.rollouts.inference.dev",
      "r",
      "-o",
      "json",
    ]);
    expect(getArgs({}, undefined, true)).toEqual([
      "get",
      "modelrollouts.rollouts.inference.dev",
      "--all-namespaces",
      "-o",
      "json",
    ]);
    expect(eventArgs({}, "r", "u-1")).toContain(
      "involvedObject.kind=ModelRollout,involvedObject.name=r,involvedObject.uid=u-1",
    );
  });
});
