// The parts of undici the picker uses (Agent, request), loaded from undici's internal paths: the
// package's index also loads fetch, WebSocket, the cache, mocks and interceptors, ~8 MiB of RSS and
// ~3 MiB of heap the picker never uses (bench/picker/README.md, "Memory (issue 19)"). The paths are those of undici
// 7.30.2, pinned exactly in package.json; http-client.test.ts fails if an upgrade moves them.
// Types still come from "undici": type-only imports vanish from the bundle.
import type { Agent as UndiciAgent, Dispatcher as UndiciDispatcher } from "undici";

/* eslint-disable @typescript-eslint/no-require-imports */
const AgentClass: typeof UndiciAgent = require("undici/lib/dispatcher/agent");
const DispatcherClass: typeof UndiciDispatcher = require("undici/lib/dispatcher/dispatcher");
const apiRequest = require("undici/lib/api/api-request");
/* eslint-enable @typescript-eslint/no-require-imports */

// What undici's index does with all of lib/api; the picker only calls request.
Object.assign(DispatcherClass.prototype, { request: apiRequest });

export const Agent = AgentClass;
export type Agent = UndiciAgent;

export type RequestOptions = Omit<UndiciDispatcher.RequestOptions, "origin" | "path" | "method"> & {
  method?: UndiciDispatcher.HttpMethod;
  /** Required: the picker never uses undici's global dispatcher. */
  dispatcher: UndiciDispatcher;
};

/** undici's `request(url, options)` with an explicit dispatcher (what its index wires up). */
export function request(
  url: string | URL,
  options: RequestOptions,
): Promise<UndiciDispatcher.ResponseData> {
  const target = typeof url === "string" ? new URL(url) : url;
  const { dispatcher, ...rest } = options;
  return dispatcher.request({
    ...rest,
    origin: target.origin,
    path: `${target.pathname}${target.search}`,
    method: options.method ?? "GET",
  });
}
