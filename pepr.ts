import { PeprModule } from "pepr";
// cfg loads the Pepr configuration (uuid, rbac, ...) from package.json
import cfg from "./package.json";
import { ModelRollouts } from "./capabilities";

// The watcher serves /healthz and /metrics on PEPR_PORT (default 3000, as Pepr's own default), so
// that several local operators (tests, benchmarks) can run side by side.
const module = new PeprModule(cfg, [ModelRollouts], { deferStart: true });
if (process.env.PEPR_MODE !== "build") module.start(Number(process.env.PEPR_PORT ?? 3000));
