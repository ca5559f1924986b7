// The HTTP front door's settings (flags in picker/config.ts) and what it is built from.
import { OverloadGuard } from "../core/overload";
import { RequestRouter } from "../core/router";
import { PoolView } from "../core/types";
import { PickerMetrics } from "../metrics";

export interface ProxyConfig {
  maxBodyBytes: number;
  /** Further endpoints tried when connecting fails (0: no retry). */
  maxRetries: number;
  connectTimeoutMs: number;
  /** Until the model server's response headers (a non-streamed generation can take long). */
  headersTimeoutMs: number;
  /** Longest silence between two response chunks. */
  bodyTimeoutMs: number;
  /** Until the client's whole request has arrived. */
  requestReadTimeoutMs: number;
  /** Non-streamed responses are kept up to this size to read `usage`. */
  maxResponseBufferBytes: number;
  destinationHeader: string;
}

export const defaultProxyConfig: ProxyConfig = {
  maxBodyBytes: 10 << 20,
  maxRetries: 2,
  connectTimeoutMs: 2000,
  headersTimeoutMs: 300_000,
  bodyTimeoutMs: 300_000,
  requestReadTimeoutMs: 60_000,
  maxResponseBufferBytes: 4 << 20,
  destinationHeader: "x-gateway-destination-endpoint",
};

export interface ProxyDeps {
  router: RequestRouter;
  pool: PoolView;
  metrics: PickerMetrics;
  config: ProxyConfig;
  now: () => number;
  log?: (message: string) => void;
  /** Self-protection: past the process' own capacity new requests get 429 before their body. */
  guard?: OverloadGuard;
}
