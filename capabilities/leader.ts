// Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does (Pepr 1.1
// has none): with two replicas only the holder reconciles; the other keeps its rollout index warm
// from the watch and takes over once the holder stops renewing.
//
// - A Lease held by someone else is taken only after its renewTime stayed unchanged for
//   leaseDurationSeconds on OUR clock (no comparison of two machines' clocks).
// - Every write carries a resourceVersion precondition (JSON Patch `test`), so two candidates
//   can never both win.
// - The holder that cannot renew within the renew deadline stops leading at once (before the
//   lease can expire for the others), and competes again when the apiserver answers.
// - The same identity re-takes its own lease at once: a restarted container of the same pod (or
//   a local operator restarted with the same MODELROLLOUT_IDENTITY) does not wait for expiry.
import { GenericKind, K8s, RegisterKind } from "kubernetes-fluent-client";
import { createHash } from "node:crypto";
import * as os from "node:os";
import { apiFailure } from "./api-failure";

export class Lease extends GenericKind {
  spec?: LeaseSpec;
}
RegisterKind(Lease, {
  group: "coordination.k8s.io",
  version: "v1",
  kind: "Lease",
  plural: "leases",
});

export interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

export interface ElectionTiming {
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
}

/** client-go's defaults are 15/10/2 s; 12/8/2 keeps a takeover after a crash within ~15 s. */
export const DEFAULT_TIMING: ElectionTiming = {
  leaseDurationMs: 12_000,
  renewDeadlineMs: 8_000,
  retryPeriodMs: 2_000,
};

/** What a candidate remembers of the lease it last read (local clock). */
export interface Observed {
  holder?: string;
  renewTime?: string;
  /** Local time when holder/renewTime last changed. */
  changedAt: number;
}

export type LeaseStep =
  | { kind: "create" }
  | { kind: "renew" }
  | { kind: "acquire" }
  | { kind: "wait"; holder: string };

/** Pure: what a candidate does with the lease it just read. */
export function leaseStep(
  lease: LeaseSpec | undefined,
  exists: boolean,
  me: string,
  observed: Observed | undefined,
  now: number,
  timing: ElectionTiming = DEFAULT_TIMING,
): LeaseStep {
  if (!exists) return { kind: "create" };
  const holder = lease?.holderIdentity ?? "";
  if (holder === me) return { kind: "renew" };
  if (!holder) return { kind: "acquire" };
  const durationMs = (lease?.leaseDurationSeconds ?? timing.leaseDurationMs / 1000) * 1000;
  const unchangedSince =
    observed && observed.holder === holder && observed.renewTime === lease?.renewTime
      ? observed.changedAt
      : now;
  return now - unchangedSince >= durationMs ? { kind: "acquire" } : { kind: "wait", holder };
}

/** The next observation after reading `lease`. */
export function observe(lease: LeaseSpec | undefined, prev: Observed | undefined, now: number) {
  const holder = lease?.holderIdentity;
  const renewTime = lease?.renewTime;
  if (prev && prev.holder === holder && prev.renewTime === renewTime) return prev;
  return { holder, renewTime, changedAt: now };
}

/** Kubernetes MicroTime: RFC 3339 with exactly six fractional digits. */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}

/** This replica's identity: MODELROLLOUT_IDENTITY, else the pod name (hostname) and the pid. */
export function defaultIdentity(env: NodeJS.ProcessEnv = process.env): string {
  return env.MODELROLLOUT_IDENTITY || env.POD_NAME || `${os.hostname()}_${process.pid}`;
}

/**
 * The Lease's name: one per set of watched namespaces, so operators limited to different
 * namespaces (tests, or one operator per team) do not compete with each other.
 */
export function leaseName(namespaces: string[] | undefined): string {
  if (!namespaces?.length) return "modelrollout-operator";
  const hash = createHash("sha256")
    .update([...namespaces].sort().join(","))
    .digest("hex");
  return `modelrollout-operator-${hash.slice(0, 10)}`;
}

export interface ElectorOptions {
  namespace: string;
  name: string;
  identity: string;
  timing?: ElectionTiming;
  onStartedLeading: () => void;
  onStoppedLeading: () => void;
  /** Every answer of the apiserver (ok) or transport failure (not ok): the health endpoints use it. */
  onApiResult?: (ok: boolean) => void;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
}

export class LeaderElector {
  readonly #o: ElectorOptions;
  readonly #timing: ElectionTiming;
  #observed?: Observed;
  #leading = false;
  #lastRenew = 0;
  #timer?: NodeJS.Timeout;
  #stopped = false;

  constructor(options: ElectorOptions) {
    this.#o = options;
    this.#timing = options.timing ?? DEFAULT_TIMING;
  }

  get isLeader(): boolean {
    return this.#leading;
  }

  get identity(): string {
    return this.#o.identity;
  }

  start(): void {
    void this.#tick();
  }

  /** Gives the lease up (SIGTERM), so that the other replica takes over without waiting. */
  async release(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    if (!this.#leading) return;
    this.#setLeading(false);
    try {
      const lease = await this.#client().Get(this.#o.name);
      if (lease.spec?.holderIdentity !== this.#o.identity) return;
      await this.#patch(lease, { ...lease.spec, holderIdentity: "", leaseDurationSeconds: 1 });
    } catch {
      // The lease expires on its own.
    }
  }

  #client() {
    return K8s(Lease).InNamespace(this.#o.namespace);
  }

  #setLeading(leading: boolean) {
    if (leading === this.#leading) return;
    this.#leading = leading;
    this.#o.log?.(leading ? "became the leader" : "stopped leading", {
      lease: `${this.#o.namespace}/${this.#o.name}`,
      identity: this.#o.identity,
    });
    if (leading) this.#o.onStartedLeading();
    else this.#o.onStoppedLeading();
  }

  #schedule(ms: number) {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => void this.#tick(), ms);
    this.#timer.unref?.();
  }

  async #tick(): Promise<void> {
    const now = Date.now();
    let timeout: NodeJS.Timeout | undefined;
    try {
      // A request that hangs (etcd down behind a live apiserver) must not hold the decision up.
      await Promise.race([
        this.#attempt(now),
        new Promise((_, reject) => {
          timeout = setTimeout(
            () => reject(new Error("lease request timed out")),
            this.#timing.renewDeadlineMs - this.#timing.retryPeriodMs,
          );
        }),
      ]);
      this.#o.onApiResult?.(true);
    } catch (err) {
      const failure = apiFailure(err);
      // The apiserver works if it answered with a client error (a lost race is 409/422).
      const answered =
        failure.status !== undefined && failure.status < 500 && failure.status !== 429;
      this.#o.onApiResult?.(answered);
      // A lost race (409 conflict, 422 failed test) is an answer: read again next period.
      if (failure.status !== 409 && failure.status !== 422) {
        this.#o.log?.(`lease ${this.#o.namespace}/${this.#o.name}: ${failure.message}`);
      }
    } finally {
      clearTimeout(timeout);
    }
    if (this.#leading && Date.now() - this.#lastRenew > this.#timing.renewDeadlineMs) {
      // Could not renew in time: stop before the others may consider the lease expired.
      this.#setLeading(false);
    }
    this.#schedule(this.#timing.retryPeriodMs);
  }

  async #attempt(now: number): Promise<void> {
    let lease: Lease | undefined;
    try {
      lease = await this.#client().Get(this.#o.name);
    } catch (err) {
      if (apiFailure(err).status !== 404) throw err;
    }
    const step = leaseStep(
      lease?.spec,
      !!lease,
      this.#o.identity,
      this.#observed,
      now,
      this.#timing,
    );
    this.#observed = observe(lease?.spec, this.#observed, now);
    const durationSeconds = Math.round(this.#timing.leaseDurationMs / 1000);
    switch (step.kind) {
      case "wait":
        if (this.#leading) this.#setLeading(false);
        return;
      case "create":
        await K8s(Lease).Create({
          apiVersion: "coordination.k8s.io/v1",
          kind: "Lease",
          metadata: { name: this.#o.name, namespace: this.#o.namespace },
          spec: {
            holderIdentity: this.#o.identity,
            leaseDurationSeconds: durationSeconds,
            acquireTime: microTime(now),
            renewTime: microTime(now),
            leaseTransitions: 0,
          },
        } as Lease);
        break;
      case "acquire":
        await this.#patch(lease!, {
          holderIdentity: this.#o.identity,
          leaseDurationSeconds: durationSeconds,
          acquireTime: microTime(now),
          renewTime: microTime(now),
          leaseTransitions: (lease!.spec?.leaseTransitions ?? 0) + 1,
        });
        break;
      case "renew":
        await this.#patch(lease!, {
          ...lease!.spec,
          leaseDurationSeconds: durationSeconds,
          renewTime: microTime(now),
          acquireTime: lease!.spec?.acquireTime ?? microTime(now),
        });
        break;
    }
    this.#lastRenew = now;
    this.#setLeading(true);
  }

  async #patch(lease: Lease, spec: LeaseSpec): Promise<void> {
    await K8s(Lease, { namespace: this.#o.namespace, name: this.#o.name }).Patch([
      { op: "test", path: "/metadata/resourceVersion", value: lease.metadata!.resourceVersion! },
      { op: "replace", path: "/spec", value: spec },
    ]);
  }
}
