// Live progress of the demo. Two renderings of the same content:
//   - a terminal: a board (a few lines per rollout) redrawn in place, with notable events scrolling
//     above it;
//   - anything else (CI logs, a pipe): plain lines, printed when a rollout changes and as a
//     heartbeat every few seconds. No cursor movement, no colours.
import {
  describeProgress,
  describeWeights,
  gateBriefs,
  gatesShort,
  isFinished,
  RolloutJson,
  weightBar,
} from "../../plugin/format";

export interface ObservedSplit {
  /** Canary share (percent) of the requests the pickers counted in the window. */
  canaryPercent: number;
  total: number;
  window: string;
}

export interface RolloutView {
  name: string;
  /** One line: which scenario this is. */
  title: string;
  rollout?: RolloutJson;
  /** Why it has not started yet. */
  waitingFor?: string;
  observed?: ObservedSplit;
}

export function formatElapsed(ms: number): string {
  const s = Math.round(ms / 1000);
  return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
}

export function describeObserved(o: ObservedSplit | undefined): string {
  if (!o || o.total === 0) return "observed: no requests yet";
  return `observed: canary ${o.canaryPercent.toFixed(1)}% of ${Math.round(o.total)} requests (last ${o.window})`;
}

/** The lines of one rollout: status, weights with the observed split, gates. */
export function rolloutLines(v: RolloutView): string[] {
  if (!v.rollout) return [`${v.name}  (${v.waitingFor ?? "not created yet"})`, `  ${v.title}`];
  const r = v.rollout;
  const phase = r.status?.phase ?? "Pending";
  return [
    `${v.name}  ${phase}  ${describeProgress(r)}${r.status?.message ? `  - ${r.status.message}` : ""}`,
    `  weights ${weightBar(r.status?.canaryWeight)} ${describeWeights(r)}   ${describeObserved(v.observed)}`,
    `  gates   ${gatesShort(r)}`,
  ];
}

/** What counts as a change worth a new plain line: phase, step, weight, gate verdicts, message. */
export function changeKey(v: RolloutView): string {
  const r = v.rollout;
  if (!r) return `${v.name}:waiting`;
  const gates = gateBriefs(r).map(g => `${g.scope}/${g.name}:${g.word}`);
  return JSON.stringify([
    r.status?.phase,
    r.status?.currentStep,
    r.status?.canaryWeight,
    r.status?.message,
    gates,
  ]);
}

function truncate(line: string, width: number | undefined): string {
  if (!width || line.length <= width) return line;
  return `${line.slice(0, Math.max(0, width - 1))}…`;
}

export class ProgressBoard {
  private readonly lastKeys = new Map<string, string>();
  private lastHeartbeat = 0;
  private drawnLines = 0;

  constructor(
    private readonly out: NodeJS.WriteStream,
    private readonly live: boolean,
    private readonly startedAt: number,
    private readonly heartbeatMs = 10_000,
  ) {}

  /** A notable event: one line, kept in the scroll-back in both modes. */
  event(message: string): void {
    const line = `[${formatElapsed(Date.now() - this.startedAt).padStart(6)}] ${message}`;
    if (this.live) {
      this.clear();
      this.out.write(`${line}\n`);
      this.redrawLast();
    } else {
      this.out.write(`${line}\n`);
    }
  }

  private lastBoard: string[] = [];

  update(views: RolloutView[], footer: string[]): void {
    const now = Date.now();
    const stamp = `[${formatElapsed(now - this.startedAt).padStart(6)}]`;
    if (this.live) {
      const width = this.out.columns;
      this.lastBoard = [
        `${stamp} rollouts (live)`,
        ...views.flatMap(v => rolloutLines(v)),
        ...footer,
      ].map(l => truncate(l, width));
      this.clear();
      this.redrawLast();
      return;
    }
    const heartbeat = now - this.lastHeartbeat >= this.heartbeatMs;
    for (const v of views) {
      const key = changeKey(v);
      const changed = this.lastKeys.get(v.name) !== key;
      this.lastKeys.set(v.name, key);
      const running = v.rollout && !isFinished(v.rollout);
      if (changed || (heartbeat && running)) {
        for (const line of rolloutLines(v)) this.out.write(`${stamp} ${line}\n`);
      }
    }
    if (heartbeat) {
      for (const line of footer) this.out.write(`${stamp} ${line}\n`);
      this.lastHeartbeat = now;
    }
  }

  /** Leaves the board on screen as it is and stops redrawing it. */
  finish(): void {
    this.drawnLines = 0;
    this.lastBoard = [];
  }

  private clear(): void {
    if (this.drawnLines > 0) this.out.write(`\x1b[${this.drawnLines}F\x1b[J`);
    this.drawnLines = 0;
  }

  private redrawLast(): void {
    if (!this.lastBoard.length) return;
    this.out.write(`${this.lastBoard.join("\n")}\n`);
    this.drawnLines = this.lastBoard.length;
  }
}
