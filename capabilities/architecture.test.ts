// The layering rules of README "Architecture", checked on the import statements: a newcomer's
// change that breaks one fails here with the file and the import.
import { describe, expect, it } from "@jest/globals";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";

const root = join(__dirname, "..");

function sources(dir: string): string[] {
  return readdirSync(join(root, dir)).flatMap(name => {
    const path = join(dir, name);
    if (statSync(join(root, path)).isDirectory())
      return name === "node_modules" ? [] : sources(path);
    return path.endsWith(".ts") && !path.endsWith(".test.ts") ? [path] : [];
  });
}

function importsOf(file: string): string[] {
  const text = readFileSync(join(root, file), "utf8");
  return [...text.matchAll(/^\s*(?:import|export)[^'"]*?from\s+["']([^"']+)["']/gm)].map(m => m[1]);
}

/** Imports of `files` that match `forbidden`, as "file -> import". */
function violations(files: string[], forbidden: RegExp): string[] {
  return files.flatMap(f =>
    importsOf(f)
      .filter(i => forbidden.test(i))
      .map(i => `${f} -> ${i}`),
  );
}

describe("architecture", () => {
  it("the step engine is pure: no I/O library, no clock, no reconciler", () => {
    const engine = [
      "capabilities/modelrollout/engine.ts",
      ...sources("capabilities/modelrollout/engine"),
    ];
    expect(
      violations(
        engine,
        /^(kubernetes-fluent-client|@kubernetes|pepr|undici|node:)|reconciler|observe|apply|targets/,
      ),
    ).toEqual([]);
    for (const f of engine)
      expect([f, /Date\.now\(\)|new Date\(\)/.test(readFileSync(join(root, f), "utf8"))]).toEqual([
        f,
        false,
      ]);
  });

  it("runtime code never imports hack/, test/ or bench/", () => {
    const runtime = [
      "pepr.ts",
      ...sources("capabilities"),
      ...sources("picker"),
      ...sources("plugin"),
    ];
    expect(violations(runtime, /(^|\/)(hack|test|bench)\//)).toEqual([]);
  });

  it("the picker and the plugin share only the API vocabulary with the operator", () => {
    const files = [...sources("picker"), ...sources("plugin")];
    const operator = violations(files, /capabilities\//).filter(
      v => !/capabilities\/api\//.test(v),
    );
    expect(operator).toEqual([]);
  });

  it("no devDependency in runtime code", () => {
    const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
    const dev = Object.keys(pkg.devDependencies ?? {});
    const runtime = [
      "pepr.ts",
      ...sources("capabilities"),
      ...sources("picker"),
      ...sources("plugin"),
    ];
    const uses = runtime.flatMap(f =>
      importsOf(f)
        .filter(i => dev.some(d => i === d || i.startsWith(`${d}/`)))
        .map(i => `${relative(root, join(root, f))} -> ${i}`),
    );
    expect(uses).toEqual([]);
  });
});
