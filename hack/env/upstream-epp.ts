// The upstream endpoint picker (Gateway API Inference Extension v1.5.0 `cmd/epp`, built by
// hack/build-binaries.sh) serving one v1 InferencePool of the local environment, emulated as a Pod
// as the model servers are (no kubelet here):
//   1. the `epp` process, with the environment's kubeconfig: it watches the v1 InferencePool and
//      its Pods (whose podIPs are the model servers' 127.0.0.N), scrapes their vLLM metrics and
//      serves ext_proc, gRPC health and Prometheus metrics on free ports (plaintext: no
//      --secure-serving, no metrics auth; no tracing exporter),
//   2. its Pod and the Service the pool's endpointPickerRef names (publishPicker, below: any local
//      picker process can be published so), the Pod marked Ready once the EPP sees the pool's pods,
//   3. a Prometheus scrape target of its metrics with target labels namespace, component and
//      `pool` (its own metrics carry model_name / target_model_name only: the gates' poolLabel).
import { ClusterInfo, ensureBinaries, kubectlFor } from "./cluster";
import { setPodReady } from "./model-servers";
import { addScrapeTarget, removeScrapeTarget } from "./prometheus";
import { freePort, isAlive, readProc, startProc, stopProc, tailOf, waitFor } from "./procs";

export interface UpstreamEppOptions {
  namespace: string;
  /** The v1 InferencePool it serves. */
  pool: string;
  /** The Service the pool's endpointPickerRef names (default `<pool>-epp`). */
  service?: string;
  /** The Service port (endpointPickerRef.port.number), default 9002. */
  servicePort?: number;
  /** Model-server Pods that must be in its datastore before it counts as ready (default 1). */
  readyPods?: number;
}

export interface UpstreamEpp {
  service: string;
  servicePort: number;
  grpcPort: number;
  metricsUrl: string;
  log: string;
}

export const UPSTREAM_EPP_VERSION = "v1.5.0";

function procName(namespace: string, service: string): string {
  return `upstream-epp.${namespace}.${service}`;
}

/** The pool's ready-pod gauge on the picker's own /metrics, or -1. */
export async function readyPods(metricsUrl: string, pool: string): Promise<number> {
  const res = await fetch(`${metricsUrl}/metrics`, { signal: AbortSignal.timeout(2000) });
  const text = await res.text();
  const line = text
    .split("\n")
    .find(l => l.startsWith(`inference_pool_ready_pods{name="${pool}"}`));
  return line ? Number(line.split(" ").pop()) : -1;
}

/**
 * The EPP's command line for one pool on these ports: plaintext (no --secure-serving, no metrics
 * auth), no tracing exporter, no pprof, its default scorers (no config file).
 */
export function upstreamEppArgs(o: {
  pool: string;
  namespace: string;
  grpcPort: number;
  healthPort: number;
  metricsPort: number;
}): string[] {
  return [
    `--pool-name=${o.pool}`,
    `--pool-namespace=${o.namespace}`,
    `--grpc-port=${o.grpcPort}`,
    `--grpc-health-port=${o.healthPort}`,
    `--metrics-port=${o.metricsPort}`,
    "--secure-serving=false",
    "--metrics-endpoint-auth=false",
    "--tracing=false",
    "--enable-pprof=false",
    // The pool gauges are flushed every 5 s by default; 1 s matches the scrape interval.
    "--refresh-prometheus-metrics-interval=1s",
    "--zap-encoder=json",
  ];
}

export async function deployUpstreamEpp(
  info: ClusterInfo,
  o: UpstreamEppOptions,
): Promise<UpstreamEpp> {
  const service = o.service ?? `${o.pool}-epp`;
  const servicePort = o.servicePort ?? 9002;
  const name = procName(o.namespace, service);
  const [grpcPort, healthPort, metricsPort] = [
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  const proc = startProc(
    info.stateDir,
    info.logDir,
    name,
    ensureBinaries(() => undefined).epp,
    upstreamEppArgs({ ...o, grpcPort, healthPort, metricsPort }),
    { ...process.env, KUBECONFIG: info.kubeconfig },
  );
  const metricsUrl = `http://127.0.0.1:${metricsPort}`;
  try {
    publishPicker(info, {
      namespace: o.namespace,
      service,
      servicePort,
      grpcPort,
      image: `registry.k8s.io/gateway-api-inference-extension/epp:${UPSTREAM_EPP_VERSION}`,
      ready: false,
    });
    const want = o.readyPods ?? 1;
    await waitFor(
      `the upstream EPP of InferencePool ${o.namespace}/${o.pool} to see ${want} ready pod(s)`,
      async () => isAlive(proc.pid) && (await readyPods(metricsUrl, o.pool)) >= want,
      60_000,
      () => `see ${proc.log}:\n${tailOf(proc.log, 8)}`,
      250,
    );
    setPodReady(info, o.namespace, service, PICKER_POD_IP, true);
    addScrapeTarget(info.stateDir, name, `127.0.0.1:${metricsPort}`, {
      namespace: o.namespace,
      component: "upstream-epp",
      pool: o.pool,
    });
    return { service, servicePort, grpcPort, metricsUrl, log: proc.log };
  } catch (err) {
    await removeUpstreamEpp(info, o.namespace, service);
    throw err;
  }
}

export async function removeUpstreamEpp(
  info: ClusterInfo,
  namespace: string,
  service: string,
): Promise<void> {
  const name = procName(namespace, service);
  removeScrapeTarget(info.stateDir, name);
  if (readProc(info.stateDir, name)) await stopProc(info.stateDir, name);
  unpublishPicker(info, namespace, service);
}

/** The podIP of an emulated picker Pod: its process listens on every loopback address. */
export const PICKER_POD_IP = "127.0.0.1";

/**
 * Publishes a picker process running on this machine (ext_proc on `grpcPort`) as Kubernetes
 * would see it: a Pod labelled app=<service> with container port "grpc-ext-proc", marked Ready
 * at 127.0.0.1 unless `ready: false`, and the Service `service` whose port `servicePort` targets
 * it — what a pool's endpointPickerRef / extensionRef names. Works for any picker (the upstream
 * EPP, ours).
 */
export function publishPicker(
  info: ClusterInfo,
  o: {
    namespace: string;
    service: string;
    servicePort: number;
    grpcPort: number;
    image: string;
    ready?: boolean;
  },
): void {
  const labels = { app: o.service, "modelrollout.dev/picker": "true" };
  kubectlFor(info)(
    ["apply", "--server-side", "--field-manager=modelrollout-env", "-f", "-"],
    JSON.stringify({
      apiVersion: "v1",
      kind: "List",
      items: [
        {
          apiVersion: "v1",
          kind: "Pod",
          metadata: {
            name: o.service,
            namespace: o.namespace,
            labels,
            annotations: {
              "modelrollout.dev/emulated": "picker process run by hack/env (no kubelet here)",
            },
          },
          spec: {
            nodeName: "local",
            containers: [
              {
                name: "picker",
                image: o.image,
                ports: [{ name: "grpc-ext-proc", containerPort: o.grpcPort }],
              },
            ],
          },
        },
        {
          apiVersion: "v1",
          kind: "Service",
          metadata: { name: o.service, namespace: o.namespace },
          spec: {
            selector: labels,
            ports: [
              {
                name: "grpc-ext-proc",
                port: o.servicePort,
                targetPort: "grpc-ext-proc",
                appProtocol: "http2",
              },
            ],
          },
        },
      ],
    }),
  );
  if (o.ready !== false) setPodReady(info, o.namespace, o.service, PICKER_POD_IP, true);
}

export function unpublishPicker(info: ClusterInfo, namespace: string, service: string): void {
  kubectlFor(info)([
    "-n",
    namespace,
    "delete",
    `pod/${service}`,
    `service/${service}`,
    "--ignore-not-found",
    "--force",
    "--grace-period=0",
  ]);
}
