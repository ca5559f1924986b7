// Health that means something, decided by pure functions over what the process observed:
//   /readyz  — the watches are established (Pepr's store and bindings are up) and the apiserver
//              answered recently: this replica sees the world.
//   /metrics — the operator's Prometheus metrics (operator-metrics.ts).
//   /livez   — fails only when the process is truly stuck: its start-up or its reconciles made
//              no progress for minutes WHILE the apiserver answers. Waiting out an apiserver or
//              etcd outage is alive: a restart would not help it.
import * as http from "node:http";

export interface HealthState {
  startedAt: number;
  /** When Pepr's store and watches were up (its /healthz answered), if they are. */
  watchesReadyAt?: number;
  /** Last time the apiserver answered anything, and since when it has not. */
  lastApiAnswerAt?: number;
  apiFailingSince?: number;
  leader?: boolean;
  identity?: string;
  /** Reconciles queued or running, and when the last one finished. */
  reconcilesPending: number;
  lastReconcileAt?: number;
}

export const API_FRESH_MS = 15_000;
export const STARTUP_STUCK_MS = 120_000;
export const RECONCILE_STUCK_MS = 300_000;

export interface Verdict {
  ok: boolean;
  reason: string;
}

function apiAnswering(s: HealthState, now: number): boolean {
  return s.lastApiAnswerAt !== undefined && now - s.lastApiAnswerAt <= API_FRESH_MS;
}

export function readiness(s: HealthState, now: number): Verdict {
  if (s.watchesReadyAt === undefined)
    return { ok: false, reason: "watches not established yet (waiting for the apiserver)" };
  if (!apiAnswering(s, now)) {
    const since = s.apiFailingSince ? ` since ${new Date(s.apiFailingSince).toISOString()}` : "";
    return { ok: false, reason: `the apiserver is not answering${since}` };
  }
  return { ok: true, reason: s.leader === false ? "ready (standby)" : "ready" };
}

export function liveness(s: HealthState, now: number): Verdict {
  if (!apiAnswering(s, now)) return { ok: true, reason: "waiting out an apiserver outage" };
  if (s.watchesReadyAt === undefined && now - s.startedAt > STARTUP_STUCK_MS) {
    return {
      ok: false,
      reason: `start-up stuck: the apiserver answers but the watches are not up after ${Math.round((now - s.startedAt) / 1000)} s`,
    };
  }
  const since = s.lastReconcileAt ?? s.watchesReadyAt ?? s.startedAt;
  if (s.reconcilesPending > 0 && now - since > RECONCILE_STUCK_MS) {
    return {
      ok: false,
      reason: `reconciles stuck: ${s.reconcilesPending} pending, none finished for ${Math.round((now - since) / 1000)} s`,
    };
  }
  return { ok: true, reason: "alive" };
}

/** The text exposition of the operator's metrics (operator-metrics.ts), served at /metrics. */
export type MetricsSource = () => Promise<{ contentType: string; body: string }>;

/**
 * Serves /livez, /readyz, /status (JSON) and, given `metrics`, /metrics on `port` (0 = any free
 * port); returns the server.
 */
export function serveHealth(
  port: number,
  state: () => HealthState,
  host = "0.0.0.0",
  metrics?: MetricsSource,
): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const now = Date.now();
    const s = state();
    const path = (req.url ?? "/").split("?")[0];
    const send = (code: number, body: string, type = "text/plain") => {
      res.writeHead(code, { "content-type": type });
      res.end(body);
    };
    if (path === "/livez" || path === "/readyz") {
      const v = path === "/livez" ? liveness(s, now) : readiness(s, now);
      return send(v.ok ? 200 : 503, `${v.reason}\n`);
    }
    if (path === "/status") {
      return send(
        200,
        JSON.stringify({ ...s, readiness: readiness(s, now), liveness: liveness(s, now) }),
        "application/json",
      );
    }
    if (path === "/metrics" && metrics) {
      metrics().then(
        m => send(200, m.body, m.contentType),
        (err: unknown) => send(500, `cannot collect the metrics: ${String(err)}\n`),
      );
      return;
    }
    send(404, "not found\n");
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve(server));
  });
}
