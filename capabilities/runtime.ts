// What the watcher process does around Pepr so that it rides out control-plane outages and runs
// as two replicas (pepr.ts calls these; nothing here decides about rollouts):
//  - waitForApiserver: Pepr creates its store once at start and never retries (the module's
//    watches would never start), so the module is only constructed once the apiserver answers.
//  - health: /livez, /readyz, /status and /metrics on MODELROLLOUT_HEALTH_PORT (health.ts).
//  - leader election on a Lease (leader.ts); only the leader reconciles.
// Watches retry for ever: PEPR_RESYNC_FAILURE_MAX is set high in the Deployment's env and by
// hack/run-operator.ts (Pepr's default gives up, and exits, after 5 failures ~30 s apart).
import { K8s, kind } from "kubernetes-fluent-client";
import { Log } from "pepr";
import { Agent, request } from "undici";
import { apiFailure } from "./api-failure";
import { serveHealth, type HealthState } from "./health";
import { defaultIdentity, LeaderElector, leaseName } from "./leader";
import { operatorMetrics } from "./operator-metrics";
import {
  followLeadership,
  onApiserverAnswered,
  reconcileActivity,
  reconcileAll,
  stopReconciling,
} from "./modelrollout/reconciler";

const STORE_NAMESPACE = "pepr-system";

function delay(ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms));
}

/** Resolves once the apiserver answers (any HTTP status); retries with capped backoff. */
export async function waitForApiserver(): Promise<void> {
  let wait = 1000;
  let logged = 0;
  const since = Date.now();
  for (;;) {
    try {
      await K8s(kind.Namespace).Get(STORE_NAMESPACE);
      return;
    } catch (err) {
      const failure = apiFailure(err);
      if (!failure.transport) return; // an answer (e.g. 403/404): Pepr can start
      if (Date.now() - logged > 30_000) {
        logged = Date.now();
        Log.warn(
          { waitedSeconds: Math.round((Date.now() - since) / 1000) },
          `waiting for the apiserver before starting the watches: ${failure.message}`,
        );
      }
    }
    await delay(wait);
    wait = Math.min(10_000, wait * 2);
  }
}

const state: HealthState = { startedAt: Date.now(), reconcilesPending: 0 };

function apiResult(ok: boolean) {
  const now = Date.now();
  if (ok) {
    const wasFailing = state.apiFailingSince !== undefined;
    state.lastApiAnswerAt = now;
    delete state.apiFailingSince;
    if (wasFailing) onApiserverAnswered();
  } else {
    state.apiFailingSince ??= now;
  }
}

/** Polls Pepr's own /healthz: it answers 200 only once the store and the bindings are up. */
async function watchPeprReady(peprPort: number): Promise<void> {
  const insecure = new Agent({ connect: { rejectUnauthorized: false } });
  while (state.watchesReadyAt === undefined) {
    try {
      const res = await request(`https://127.0.0.1:${peprPort}/healthz`, { dispatcher: insecure });
      await res.body.dump();
      if (res.statusCode === 200) state.watchesReadyAt = Date.now();
    } catch {
      // not listening yet
    }
    if (state.watchesReadyAt === undefined) await delay(500);
  }
  await insecure.close();
}

/**
 * Starts health endpoints and leader election. MODELROLLOUT_LEADER_ELECTION=false reconciles
 * without a Lease (one replica only). Returns a function to call on SIGTERM.
 */
export async function startOperatorRuntime(peprPort: number): Promise<() => Promise<void>> {
  void watchPeprReady(peprPort);
  const healthPort = Number(process.env.MODELROLLOUT_HEALTH_PORT ?? 8081);
  try {
    const server = await serveHealth(
      healthPort,
      () => ({ ...state, ...reconcileActivity() }),
      undefined,
      () => operatorMetrics.exposition(),
    );
    const address = server.address();
    const port = typeof address === "object" && address ? address.port : healthPort;
    Log.info({ port }, `health endpoints on port ${port}: /livez /readyz /status /metrics`);
  } catch (err) {
    // Without health endpoints the operator still works; the probes will say so.
    Log.error({ port: healthPort, err: String(err) }, "cannot serve the health endpoints");
  }

  const namespaces = process.env.MODELROLLOUT_NAMESPACES?.split(",")
    .map(ns => ns.trim())
    .filter(Boolean);
  if (process.env.MODELROLLOUT_LEADER_ELECTION === "false") {
    state.leader = true;
    // Without the elector's calls, probe the apiserver for the health endpoints.
    const probe = async () => {
      try {
        await K8s(kind.Namespace).Get(STORE_NAMESPACE);
        apiResult(true);
      } catch (err) {
        apiResult(!apiFailure(err).transport);
      }
      setTimeout(() => void probe(), 5000).unref();
    };
    void probe();
    return async () => {};
  }
  const elector = new LeaderElector({
    namespace: process.env.MODELROLLOUT_LEASE_NAMESPACE ?? STORE_NAMESPACE,
    name: leaseName(namespaces),
    identity: defaultIdentity(),
    onStartedLeading: () => {
      state.leader = true;
      reconcileAll();
    },
    onStoppedLeading: () => {
      state.leader = false;
      stopReconciling();
    },
    onApiResult: apiResult,
    log: (msg, fields) => Log.info(fields ?? {}, `leader election: ${msg}`),
  });
  state.leader = false;
  state.identity = elector.identity;
  followLeadership(() => elector.isLeader);
  elector.start();
  return () => elector.release();
}
