// The part of undici the HTTP proxy door uses (its Agent), loaded from undici's internal paths: the
// package's index also loads fetch, WebSocket, the cache, mocks and interceptors, ~8 MiB of RSS and
// ~3 MiB of heap the picker never uses (bench/picker/README.md, "Memory (issue 19)"). The paths are those of undici
// 7.30.2, pinned exactly in package.json; http-client.test.ts fails if an upgrade moves them.
// Types still come from "undici": type-only imports vanish from the bundle. The picker's own GETs
// (scraping, the Kubernetes client) use node:http instead (http-get.ts), and the proxy loads this
// module only when it first forwards a request: a picker serving ext_proc only never loads undici.
import type { Agent as UndiciAgent } from "undici";

// eslint-disable-next-line @typescript-eslint/no-require-imports
const AgentClass: typeof UndiciAgent = require("undici/lib/dispatcher/agent");

export const Agent = AgentClass;
export type Agent = UndiciAgent;
