// The picker with a baseline scheduler, for bench/picker/run.ts:
//   node --import tsx bench/picker/baseline-picker.ts --strategy STRATEGY <picker flags>
// with STRATEGY one of queue-only, round-robin, random. Baselines dispatch every request at once
// (no flow control), as the schedulers they stand for do.
import { main } from "../../picker/app";
import { Baseline, baselineConfig, baselinePlugins } from "./baselines";

const argv = process.argv.slice(2);
const at = argv.indexOf("--strategy");
const baselines: readonly string[] = ["queue-only", "round-robin", "random"];
const strategy = (at >= 0 ? argv[at + 1] : "") as Baseline;
if (!baselines.includes(strategy)) {
  console.error(`usage: baseline-picker.ts --strategy ${baselines.join("|")} <picker flags>`);
  process.exit(2);
}
argv.splice(at, 2);
main(argv, {
  plugins: baselinePlugins,
  scheduling: baselineConfig(strategy),
  flowControl: false,
}).catch(err => {
  console.error(err);
  process.exit(1);
});
