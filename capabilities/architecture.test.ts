// The layering rules of README "Architecture", checked on the import statements: a newcomer's
// change that breaks one fails here with the file and the import.
import { describe, expect, it } from "@jest/globals";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import ts from "typescript";

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

const MAX_FILE_LINES = 400;
const MAX_FUNCTION_LINES = 80;

const lineOf = (file: ts.SourceFile, pos: number) => file.getLineAndCharacterOfPosition(pos).line;

/** A function's name, or the name it is assigned to (`const f = () => ...`). */
function functionName(node: ts.SignatureDeclaration, file: ts.SourceFile): string {
  if (node.name) return node.name.getText(file);
  if (ts.isConstructorDeclaration(node)) return "constructor";
  const parent = node.parent;
  if ((ts.isVariableDeclaration(parent) || ts.isPropertyAssignment(parent)) && parent.name)
    return parent.name.getText(file);
  return `(${ts.SyntaxKind[node.kind]})`;
}

/** Runtime files over MAX_FILE_LINES and functions over MAX_FUNCTION_LINES, as readable lines. */
function sizeViolations(path: string, text: string): string[] {
  const file = ts.createSourceFile(path, text, ts.ScriptTarget.Latest, true);
  const lines = text.split("\n").length - (text.endsWith("\n") ? 1 : 0);
  const found =
    lines > MAX_FILE_LINES ? [`${path}: ${lines} lines (at most ${MAX_FILE_LINES})`] : [];
  const visit = (node: ts.Node) => {
    // Declarations, methods, constructors, accessors, arrow functions and function expressions.
    if (ts.isFunctionLike(node) && "body" in node && node.body) {
      const start = lineOf(file, node.getStart(file));
      const span = lineOf(file, node.getEnd()) - start + 1;
      if (span > MAX_FUNCTION_LINES) {
        const name = functionName(node, file);
        found.push(`${path}:${start + 1} ${name}: ${span} lines (at most ${MAX_FUNCTION_LINES})`);
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(file);
  return found;
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

  it("runtime files stay under 400 lines, their functions under 80", () => {
    const runtime = [
      "pepr.ts",
      ...sources("capabilities"),
      ...sources("picker"),
      ...sources("plugin"),
    ].filter(f => !/(^|\/)generated\//.test(f));
    const found = runtime.flatMap(f => sizeViolations(f, readFileSync(join(root, f), "utf8")));
    expect(found).toEqual([]);
  });

  it("the size check sees long files and every kind of long function", () => {
    const body = Array.from({ length: 80 }, (_, i) => `  x += ${i};`).join("\n");
    const text = [
      `function declared() {\n${body}\n}`,
      `class C {\n  method() {\n${body}\n  }\n  constructor() {\n${body}\n  }\n}`,
      `const arrow = () => {\n${body}\n};`,
      `const expression = function () {\n${body}\n};`,
      `function short() {\n  return 1;\n}`,
      `setTimeout(() => {\n${body}\n});`,
    ].join("\n");
    expect(sizeViolations("example.ts", text)).toEqual([
      "example.ts: 497 lines (at most 400)",
      "example.ts:1 declared: 82 lines (at most 80)",
      "example.ts:84 method: 82 lines (at most 80)",
      "example.ts:166 constructor: 82 lines (at most 80)",
      "example.ts:249 arrow: 82 lines (at most 80)",
      "example.ts:331 expression: 82 lines (at most 80)",
      "example.ts:416 (ArrowFunction): 82 lines (at most 80)",
    ]);
  });
});
