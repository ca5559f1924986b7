// The picker process (started by picker/main.ts; bench/picker's baselines start it with other
// scheduler plugins). Wires the datastore, discovery (watches), the metrics scraper, the core
// router and the front doors: ext_proc gRPC (9002), gRPC health (9003), HTTP proxy (8080),
// metrics (9090).

import { RejectReason } from "./core/admission";
import { OverloadGuard, loopSampleMs } from "./core/overload";
import { PrefixIndex } from "./core/prefix";
import { mathRandom } from "./core/rng";
import { RequestRouter, defaultObjectiveHeaders } from "./core/router";
import { PluginRegistry, builtinPlugins } from "./core/plugins/registry";
import { Scheduler } from "./core/scheduler";
import {
  EndpointPickerConfig,
  buildSchedulerConfig,
  describeSchedulerConfig,
} from "./core/scheduler-config";
import { TrafficSplitter } from "./core/split";
import { ConfigError, PickerConfig, parseConfig, usage } from "./config";
import { Datastore } from "./datastore";
import { Discovery } from "./discovery";
import { defaultExtProcConfig } from "./extproc/config";
import { addExtProcService, addHealthService, startGrpcServer } from "./extproc/server";
import type { ExtProcDeps } from "./extproc/stream";
import { PickerMetrics, poolGaugeValues, startMetricsServer } from "./metrics";
import { defaultProxyConfig } from "./proxy/config";
import { startProxy } from "./proxy/server";
import { MetricsScraper } from "./scraper";

const log = (message: string) => console.log(`${new Date().toISOString()} ${message}`);

/** The scheduler and scraper share this monotonic clock (milliseconds). */
const now = () => performance.now();

export interface RunOptions {
  /** Plugin types besides the picker's own (benchmarks register their baselines here). */
  plugins?: PluginRegistry;
  /** Replaces `config.scheduling` (benchmarks compare against round-robin and random this way). */
  scheduling?: EndpointPickerConfig;
  /** Overrides `config.flowControl.enabled` (baselines dispatch at once, as they always did). */
  flowControl?: boolean;
}

export async function runPicker(
  config: PickerConfig,
  options: RunOptions = {},
): Promise<() => Promise<void>> {
  const ds = new Datastore(config.pool);
  const metrics = new PickerMetrics(config.pool, { processMetrics: true });
  metrics.setPoolGaugeSource(() => poolGaugeValues(ds.readyEndpoints()));

  const router = routerFor(config, options, ds);
  // Held requests leave when a pod may have room: a request finished, a scrape came in, the
  // pods changed; and at least every 50 ms for those held too long.
  metrics.setFlowQueueSource(() => router.heldCount());
  const drainHeld = () => router.drainHeld(now());
  ds.onCapacity(drainHeld);
  const drainTimer = setInterval(drainHeld, 50);
  drainTimer.unref();
  const guard = new OverloadGuard(config.overload);
  const stopWatching = watchEventLoop(guard);
  metrics.setRejectedSource(() => rejectedByReason(router, guard));

  const discovery = new Discovery(ds, {
    namespace: config.namespace,
    poolName: config.pool,
    poolGroup: config.poolGroup,
    log,
  });
  const ready = () => discovery.synced();

  const scraper = new MetricsScraper(ds, {
    intervalMs: config.scrape.intervalMs,
    timeoutMs: config.scrape.timeoutMs,
    concurrency: config.scrape.concurrency,
    path: config.scrape.path,
    now,
  });

  const closers = await startServers(config, { router, pool: ds, metrics, now, log, guard }, ready);

  await discovery.start();
  scraper.start();
  log(`serving pool ${config.namespace}/${config.pool}`);

  return async () => {
    clearInterval(drainTimer);
    stopWatching();
    discovery.stop();
    await scraper.stop();
    await Promise.all(closers.map(c => c()));
  };
}

/**
 * Samples the event loop's delay into the overload guard: how late a timer meant to fire every
 * `loopSampleMs` fires (unref'd: it never keeps the process alive). Returns its stop.
 */
function watchEventLoop(guard: OverloadGuard): () => void {
  let last = now();
  const timer = setInterval(() => {
    const t = now();
    guard.noteLoopDelay(t - last - loopSampleMs);
    last = t;
  }, loopSampleMs);
  timer.unref();
  return () => clearInterval(timer);
}

/** The router's fast 429s and the overload guard's, by reason. */
function rejectedByReason(router: RequestRouter, guard: OverloadGuard): Map<RejectReason, number> {
  const counts = new Map(router.rejectedCount());
  counts.set("picker-overloaded", guard.rejected);
  return counts;
}

/** The scheduler profile from the configuration (or the benchmark's), and the router on it. */
function routerFor(config: PickerConfig, options: RunOptions, ds: Datastore): RequestRouter {
  const prefixIndex = new PrefixIndex(config.prefix.capacityPerEndpoint);
  ds.onChange(() => prefixIndex.retain(new Set(ds.endpoints().map(e => e.name))));
  const schedulerConfig = buildSchedulerConfig(
    options.scheduling ?? config.scheduling,
    { prefixIndex, saturation: config.saturation },
    options.plugins ?? builtinPlugins,
  );
  log(`scheduling: ${describeSchedulerConfig(schedulerConfig)}`);
  return new RequestRouter(
    ds,
    new Scheduler(schedulerConfig),
    new TrafficSplitter({ rng: mathRandom, stickyCapacity: config.stickySessions }),
    mathRandom,
    {
      strict: config.strict,
      sessionHeader: config.sessionHeader,
      objectiveHeaders: defaultObjectiveHeaders,
      maxBodyBytes: config.maxBodyBytes,
      prefix: config.prefix,
      saturation: config.saturation,
      flowControl: {
        ...config.flowControl,
        enabled: options.flowControl ?? config.flowControl.enabled,
      },
    },
  );
}

/** What both front doors share: one router, one pool, one set of metrics. */
type FrontDoorDeps = Omit<ExtProcDeps, "config">;

/** Metrics, gRPC health and the front doors the configuration asks for; returns their closers. */
async function startServers(
  config: PickerConfig,
  doorDeps: FrontDoorDeps,
  ready: () => boolean,
): Promise<(() => Promise<void>)[]> {
  const closers: (() => Promise<void>)[] = [];
  const metricsServer = await startMetricsServer(
    doorDeps.metrics.registry,
    ready,
    config.metricsPort,
    config.host,
  );
  closers.push(metricsServer.close);
  log(`metrics on :${metricsServer.port} (/metrics, /healthz, /readyz)`);

  const health = await startGrpcServer(
    s => addHealthService(s, ready),
    config.healthPort,
    config.host,
  );
  closers.push(health.close);
  log(`gRPC health on :${health.port}`);

  if (config.grpcPort !== undefined)
    closers.push(await startExtProc(config, config.grpcPort, doorDeps, ready));
  if (config.proxyPort !== undefined)
    closers.push(await startHttpProxy(config, config.proxyPort, doorDeps));
  return closers;
}

async function startExtProc(
  config: PickerConfig,
  port: number,
  doorDeps: FrontDoorDeps,
  ready: () => boolean,
): Promise<() => Promise<void>> {
  const grpcServer = await startGrpcServer(
    s => {
      addExtProcService(s, {
        ...doorDeps,
        config: {
          ...defaultExtProcConfig,
          bodyMode: config.bodyMode,
          fallbackCount: config.fallbacks,
        },
      });
      addHealthService(s, ready);
    },
    port,
    config.host,
  );
  log(`ext_proc on :${grpcServer.port} (body mode ${config.bodyMode} unless Envoy announces one)`);
  return grpcServer.close;
}

async function startHttpProxy(
  config: PickerConfig,
  port: number,
  doorDeps: FrontDoorDeps,
): Promise<() => Promise<void>> {
  const proxy = await startProxy(
    {
      ...doorDeps,
      config: {
        ...defaultProxyConfig,
        maxBodyBytes: config.maxBodyBytes,
        maxRetries: config.proxy.retries,
        connectTimeoutMs: config.proxy.connectTimeoutMs,
        headersTimeoutMs: config.proxy.upstreamTimeoutMs,
        bodyTimeoutMs: config.proxy.upstreamTimeoutMs,
      },
    },
    port,
    config.host,
  );
  log(`HTTP proxy on :${proxy.port} (/v1/chat/completions, /v1/completions, /v1/models)`);
  return proxy.close;
}

/** The command line: parses flags, runs until SIGTERM/SIGINT. */
export async function main(
  argv: string[] = process.argv.slice(2),
  options: RunOptions = {},
): Promise<void> {
  let config: PickerConfig | "help";
  try {
    config = parseConfig(argv, process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`picker: ${err.message}\n\n${usage}`);
      process.exit(2);
    }
    throw err;
  }
  if (config === "help") {
    console.log(usage);
    return;
  }
  const stop = await runPicker(config, options);
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log(`${signal}: shutting down`);
    stop().then(
      () => process.exit(0),
      err => {
        console.error(err);
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));
}
