// Copies ModelRollout's gate metric schema (crds/modelrollout.yaml, spec.analysis.metrics) into the
// AnalysisTemplate and ClusterAnalysisTemplate CRDs, whose spec.metrics must be the same schema
// (capabilities/modelrollout/crd.test.ts asserts it). Run after changing the metric schema:
//   npx tsx hack/crds/sync-template-crds.ts
import * as fs from "node:fs";
import * as path from "node:path";

const crds = path.join(__dirname, "..", "..", "crds");

/** The lines of the block that starts with `<indent>metrics:` (the key line and everything under it). */
function metricsBlock(lines: string[], indent: number): { start: number; end: number } {
  const start = lines.findIndex(l => l === `${" ".repeat(indent)}metrics:`);
  if (start < 0) throw new Error(`no "metrics:" at indentation ${indent}`);
  let end = start + 1;
  while (end < lines.length) {
    const line = lines[end];
    if (line.trim() !== "" && line.length - line.trimStart().length <= indent) break;
    end++;
  }
  return { start, end };
}

const rollout = fs.readFileSync(path.join(crds, "modelrollout.yaml"), "utf8").split("\n");
const from = metricsBlock(rollout, 20); // spec.analysis.metrics
const schema = rollout.slice(from.start, from.end).map(l => (l.trim() === "" ? l : l.slice(4)));
if (
  !schema[1].trimStart().startsWith("description: ") ||
  !schema[2].trimStart().startsWith("type:")
)
  throw new Error("spec.analysis.metrics must start with a one-line description, then its type");

for (const file of ["analysistemplate.yaml", "clusteranalysistemplate.yaml"]) {
  const target = path.join(crds, file);
  const lines = fs.readFileSync(target, "utf8").split("\n");
  const to = metricsBlock(lines, 16); // spec.metrics
  // The template keeps its own (one-line) description of the list.
  const ownDescription = lines[to.start + 1];
  const copy = [schema[0], ownDescription, ...schema.slice(2)];
  const next = [...lines.slice(0, to.start), ...copy, ...lines.slice(to.end)].join("\n");
  if (next !== lines.join("\n")) fs.writeFileSync(target, next);
  console.log(`${file}: spec.metrics ${next === lines.join("\n") ? "already in sync" : "updated"}`);
}
