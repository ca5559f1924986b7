// `npm run model-server -- deploy --namespace NS --name POD --label app=x --port 8000 --model M [...]`
// `npm run model-server -- remove --namespace NS --name POD`
import { parseArgs } from "node:util";
import { connectCluster } from "./env/cluster";
import { deployModelServer, removeModelServer } from "./env/model-servers";

const usage = `usage:
  model-server deploy --namespace NS --name POD --label k=v [--label k=v...] --port PORT --model MODEL
                      [--served-model-name NAME...] [--lora ADAPTER...] [--max-loras N] [--max-num-seqs N]
                      [--ttft MS] [--itl MS] [--failure-rate PERCENT]
  model-server remove --namespace NS --name POD`;

async function main(): Promise<void> {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
      namespace: { type: "string", default: "default" },
      name: { type: "string" },
      label: { type: "string", multiple: true, default: [] },
      port: { type: "string", default: "8000" },
      model: { type: "string" },
      "served-model-name": { type: "string", multiple: true, default: [] },
      lora: { type: "string", multiple: true, default: [] },
      "max-loras": { type: "string" },
      "max-num-seqs": { type: "string" },
      ttft: { type: "string" },
      itl: { type: "string" },
      "failure-rate": { type: "string" },
    },
  });
  const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
  const info = connectCluster();
  if (!values.name) throw new Error(`--name is required\n${usage}`);
  if (positionals[0] === "deploy") {
    if (!values.model) throw new Error(`--model is required\n${usage}`);
    const labels = Object.fromEntries(
      values.label.map(kv => {
        const [k, v] = kv.split("=", 2);
        if (!k || v === undefined) throw new Error(`--label ${kv}: expected key=value`);
        return [k, v];
      }),
    );
    const server = await deployModelServer(info, {
      namespace: values.namespace,
      name: values.name,
      labels,
      port: Number(values.port),
      model: values.model,
      servedModelNames: values["served-model-name"],
      loraAdapters: values.lora,
      maxLoras: num(values["max-loras"]),
      maxNumSeqs: num(values["max-num-seqs"]),
      timeToFirstTokenMs: num(values.ttft),
      interTokenLatencyMs: num(values.itl),
      failureInjectionRate: num(values["failure-rate"]),
    });
    process.stdout.write(`pod ${server.namespace}/${server.name} ready at ${server.url}\n`);
  } else if (positionals[0] === "remove") {
    await removeModelServer(info, values.namespace, values.name);
    process.stdout.write(`pod ${values.namespace}/${values.name} removed\n`);
  } else {
    throw new Error(usage);
  }
}

main().catch(err => {
  process.stderr.write(`[model-server] error: ${err.message}\n`);
  process.exitCode = 1;
});
