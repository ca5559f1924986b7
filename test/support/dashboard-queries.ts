// Test support: the PromQL queries of a Grafana dashboard (panels, rows' panels and templating
// variables), made runnable (Grafana's $variables replaced), and the metric names each selects.
import * as fs from "node:fs";
import { lex } from "./promql-lexer";

export interface DashboardQuery {
  /** "panel <title> (refId)" or "variable <name>". */
  where: string;
  expr: string;
}

interface Panel {
  title?: string;
  targets?: { expr?: string; refId?: string }[];
  panels?: Panel[];
}

interface Dashboard {
  panels?: Panel[];
  templating?: { list?: { name: string; type: string; query?: string | { query?: string } }[] };
}

/**
 * Every query of the dashboard. A variable's `label_values(selector, label)` is Grafana's, not
 * PromQL: its selector is what Prometheus is asked.
 */
export function dashboardQueries(file: string): DashboardQuery[] {
  const d = JSON.parse(fs.readFileSync(file, "utf8")) as Dashboard;
  const out: DashboardQuery[] = [];
  const visit = (panels: Panel[] = []) => {
    for (const p of panels) {
      for (const t of p.targets ?? [])
        if (t.expr) out.push({ where: `panel "${p.title}" (${t.refId})`, expr: t.expr });
      visit(p.panels);
    }
  };
  visit(d.panels);
  for (const v of d.templating?.list ?? []) {
    if (v.type !== "query") continue;
    const q = typeof v.query === "string" ? v.query : (v.query?.query ?? "");
    const m = /^label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\)$/.exec(q.trim());
    out.push({ where: `variable $${v.name}`, expr: m ? m[1] : q });
  }
  return out;
}

/** Grafana's variables as a query runs: every $namespace/$rollout/$pool matches all ("All"). */
export function withVariables(expr: string): string {
  return expr
    .replace(/\$__rate_interval|\$__interval|\$__range/g, "1m")
    .replace(/\$\{?(namespace|rollout|pool)\}?/g, ".*");
}

const KEYWORDS = new Set([
  ...["by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"],
  ...["and", "or", "unless", "atan2"],
  ...["sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values"],
  ...["bottomk", "topk", "quantile", "inf", "nan"],
]);
const GROUPING = new Set(["by", "without", "on", "ignoring", "group_left", "group_right"]);

/** The metric names a PromQL query selects (not functions, labels, keywords or numbers). */
export function metricNames(expr: string): string[] {
  const tokens = lex(expr).filter(t => t.kind !== "comment");
  const names = new Set<string>();
  let braces = 0;
  let brackets = 0;
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (t.kind === "op") {
      if (t.text === "{") braces++;
      else if (t.text === "}") braces--;
      else if (t.text === "[") brackets++;
      else if (t.text === "]") brackets--;
      continue;
    }
    if (t.kind !== "word" || braces > 0 || brackets > 0) continue;
    if (GROUPING.has(t.text) && tokens[i + 1]?.text === "(") {
      // by (a, b): label names up to the closing parenthesis.
      while (i < tokens.length && tokens[i].text !== ")") i++;
      continue;
    }
    if (KEYWORDS.has(t.text.toLowerCase())) continue;
    if (tokens[i + 1]?.text === "(") continue; // a function
    if (!/^[A-Za-z_:][A-Za-z0-9_:]*$/.test(t.text)) continue; // a number or duration
    names.add(t.text);
  }
  return [...names];
}
