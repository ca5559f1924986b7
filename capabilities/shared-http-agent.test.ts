import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

const repoRoot = path.resolve(__dirname, "..");

/**
 * Two Agents from kubernetes-fluent-client's getHTTPSAgent for the same options, in a fresh Node
 * process (jest's module registry is not Node's, and the fluent client is imported as ESM there),
 * optionally with ./shared-http-agent loaded first as pepr.ts loads it: whether they are one.
 */
function fluentClientReusesAgent(shared: boolean): boolean {
  const script = `
    ${shared ? 'require("./capabilities/shared-http-agent");' : ""}
    import("kubernetes-fluent-client/dist/fluent/utils.js").then(({ getHTTPSAgent }) => {
      const a = getHTTPSAgent({});
      const b = getHTTPSAgent({});
      console.log(JSON.stringify({ same: a === b }));
    });`;
  const out = execFileSync(process.execPath, ["--import", "tsx", "-e", script], {
    cwd: repoRoot,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
  return (JSON.parse(out) as { same: boolean }).same;
}

describe("shared HTTP agent", () => {
  it("without it, kubernetes-fluent-client makes a new undici Agent per request (what it fixes)", () => {
    expect(fluentClientReusesAgent(false)).toBe(false);
  });

  it("loaded first, as pepr.ts does, it makes the fluent client reuse one Agent", () => {
    expect(fluentClientReusesAgent(true)).toBe(true);
  });

  it("is pepr.ts's first import, ahead of everything that loads the fluent client", () => {
    const pepr = fs.readFileSync(path.join(repoRoot, "pepr.ts"), "utf8");
    const imports = pepr.split("\n").filter(line => line.startsWith("import "));
    expect(imports[0]).toBe('import "./capabilities/shared-http-agent";');
  });
});
