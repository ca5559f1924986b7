// Compiles `kubectl modelrollout` (plugin/main.ts and what it imports) into one self-contained
// CommonJS file, plugin/dist/kubectl-modelrollout.js: the published package (plugin/package.json)
// has no dependencies, so `npm install -g` needs nothing but that file and Node. Runs on
// `npm pack` / `npm publish` in plugin/ (prepack); esbuild comes from the repository's
// devDependencies and is needed to build only, never at run time.
import { build } from "esbuild";
import { chmodSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const outfile = join(here, "dist", "kubectl-modelrollout.js");
const result = await build({
  entryPoints: [join(here, "main.ts")],
  outfile,
  bundle: true,
  platform: "node",
  target: "node20",
  format: "cjs",
  banner: { js: "#!/usr/bin/env node" },
  legalComments: "none",
  metafile: true,
  logLevel: "warning",
});
// Self-contained means no package from node_modules may be left to resolve at run time (Node's
// built-ins are fine) and none may be bundled unnoticed either.
const fromPackages = Object.keys(result.metafile.inputs).filter(i => i.includes("node_modules"));
const external = Object.values(result.metafile.outputs)
  .flatMap(o => o.imports)
  .filter(i => i.external && !i.path.startsWith("node:"));
if (fromPackages.length || external.length) {
  console.error("kubectl-modelrollout must not depend on packages:", fromPackages, external);
  process.exit(1);
}
chmodSync(outfile, 0o755);
console.error(
  `built ${relative(process.cwd(), outfile)} from ${Object.keys(result.metafile.inputs).length} files`,
);
