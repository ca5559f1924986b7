// CLI over startSimulator with llm-d-inference-sim's flags (plus --host), e.g.
//   npx tsx hack/model-server-sim/main.ts --port 8000 --model Qwen/Qwen2.5-1.5B \
//     --served-model-name mymodel --lora-modules '{"name":"travel-helper-v1","path":"/x"}' \
//     --max-loras 2 --max-num-seqs 5 --time-to-first-token 20 --inter-token-latency 5
import { helpText, parseArgs, startSimulator } from "./index";

async function main(argv: string[]): Promise<void> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(helpText());
    return;
  }
  const config = parseArgs(argv, process.env);
  const sim = await startSimulator(config);
  console.log(
    `model-server-sim (llm-d-inference-sim stand-in) serving ${config.servedModelName.join(", ")} on ${config.host}:${sim.port}`,
  );
  const stop = () => {
    sim.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
}

main(process.argv.slice(2)).catch(err => {
  console.error(`model-server-sim: ${err instanceof Error ? err.message : err}`);
  process.exit(1);
});
