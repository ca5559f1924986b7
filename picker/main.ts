// Entry point: `npx tsx picker/main.ts --pool NAME --namespace NS [options]` (see config.ts).
// The process itself is picker/app.ts; this file only starts it, so that other entry points
// (bench/picker's baselines) can import app.ts, bundled too, without starting it twice.
import { main } from "./app";

main().catch(err => {
  console.error(`picker: ${err instanceof Error ? err.stack : String(err)}`);
  process.exit(1);
});
