// In-process stand-in for llm-d-inference-sim (the vLLM simulator): OpenAI completions with
// simulated latency and a real request queue, vLLM metrics, LoRA adapters with max-loras slots,
// failure injection and runtime changes via /admin/config. See README.md for what differs.
import http from "node:http";
import type { AddressInfo } from "node:net";
import { randomUUID } from "node:crypto";
import {
  applyAdminUpdate,
  configToFlags,
  defaultConfig,
  validateConfig,
  type FailureType,
  type SimConfig,
} from "./config";
import { PrefixCache, promptBlockKeys } from "./kv-cache";
import { SimMetrics } from "./metrics";
import { Scheduler, type Job } from "./scheduler";
import { contentText, generate, seededRandom, tokenize, type FinishReason } from "./text";

export { parseArgs, helpText, type SimConfig } from "./config";

export interface SimulatorOptions extends Partial<SimConfig> {
  model: string;
  /** As upstream's POD_NAME / POD_NAMESPACE env: adds x-inference-pod/-port/-namespace headers. */
  podName?: string;
  podNamespace?: string;
}

export interface RunningSimulator {
  url: string;
  port: number;
  close(): Promise<void>;
}

interface Work {
  job: Job;
  chat: boolean;
  stream: boolean;
  includeUsage: boolean;
  displayModel: string;
  promptTokens: number;
  /** Prefix-cache keys of the prompt's blocks (with --enable-kvcache). */
  blockKeys: string[];
  tokens: string[];
  finishReason: FinishReason;
  arrival: number;
  res: http.ServerResponse;
  headers: Record<string, string>;
  timer?: NodeJS.Timeout;
  done: boolean;
}

// Injected failures (upstream pkg/llm-d-inference-sim/failures.go).
const FAILURES: Record<FailureType, [number, string, string | null]> = {
  rate_limit: [
    429,
    "Rate limit reached for %s in organization org-xxx on requests per min (RPM): Limit 3, Used 3, Requested 1.",
    null,
  ],
  invalid_api_key: [401, "Incorrect API key provided.", null],
  context_length: [
    400,
    "This model's maximum context length is 4096 tokens. However, your messages resulted in 4500 tokens.",
    "messages",
  ],
  server_error: [503, "The server is overloaded or not ready yet.", null],
  invalid_request: [400, "Invalid request: missing required parameter 'model'.", "model"],
  model_not_found: [404, "The model '%s-nonexistent' does not exist", "model"],
};

/** OpenAI SDK error type names by status (upstream ErrorCodeToType). */
function errorType(code: number): string {
  const names: Record<number, string> = {
    400: "BadRequestError",
    401: "AuthenticationError",
    403: "PermissionDeniedError",
    404: "NotFoundError",
    422: "UnprocessableEntityError",
    429: "RateLimitError",
  };
  return names[code] ?? (code >= 500 ? "InternalServerError" : "APIConnectionError");
}

function sendJson(res: http.ServerResponse, status: number, body: unknown, headers = {}): void {
  res.writeHead(status, { ...headers, "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

function sendText(res: http.ServerResponse, status: number, text: string): void {
  res.writeHead(status, { "content-type": "text/plain; charset=utf-8" });
  res.end(text);
}

function sendError(res: http.ServerResponse, code: number, message: string, param: string | null) {
  sendJson(res, code, { error: { message, type: errorType(code), param, code } });
}

async function readBody(req: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

/** Upstream RandomNormTruncated: normal around mean, kept within ±70% of it. */
function jitter(mean: number, stdDev: number, random: () => number): number {
  if (stdDev <= 0 || mean <= 0) return mean;
  const normal = Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
  return Math.min(1.7 * mean, Math.max(0.3 * mean, mean + normal * stdDev));
}

export async function startSimulator(options: SimulatorOptions): Promise<RunningSimulator> {
  const {
    podName = process.env.POD_NAME,
    podNamespace = process.env.POD_NAMESPACE,
    ...rest
  } = options;
  let config = validateConfig({ ...defaultConfig(options.model), ...rest });
  const random = seededRandom(config.seed);
  const loras = new Map(config.loraModules.map(l => [l.name, l.path ?? ""]));
  const metrics = new SimMetrics(config.servedModelName[0], config.maxLoras, config.maxModelLen, {
    blockSize: config.blockSize,
    kvCacheSize: config.kvCacheSize,
  });
  const cache = config.enableKvcache ? new PrefixCache(config.kvCacheSize) : undefined;
  const scheduler = new Scheduler(config, state =>
    metrics.update(
      state,
      cache ? cache.usage : Math.min(1, state.kvBlocksInUse / config.kvCacheSize),
    ),
  );
  metrics.update(scheduler.state(), 0);
  const active = new Set<Work>();
  let port = config.port;
  let closing = false;

  const isValidModel = (model: string) =>
    config.servedModelName.includes(model) || loras.has(model);

  // Upstream latencies.go: load factor grows linearly to time-factor-under-load at max-num-seqs.
  function latencies(
    promptTokens: number,
    cachedTokens: number,
    outputTokens: number,
  ): { ttft: number; itls: number[] } {
    const running = scheduler.state().running;
    const load =
      config.maxNumSeqs <= 1
        ? 1
        : 1 + ((config.timeFactorUnderLoad - 1) * (running - 1)) / (config.maxNumSeqs - 1);
    const ttft =
      config.timeToFirstToken === 0 && config.timeToFirstTokenStdDev === 0
        ? jitter(
            (config.prefillOverhead + (promptTokens - cachedTokens) * config.prefillTimePerToken) *
              load,
            config.prefillTimeStdDev,
            random,
          )
        : jitter(config.timeToFirstToken * load, config.timeToFirstTokenStdDev, random);
    const itls = Array.from({ length: Math.max(0, outputTokens - 1) }, () =>
      jitter(config.interTokenLatency * load, config.interTokenLatencyStdDev, random),
    );
    return { ttft, itls };
  }

  function finish(work: Work, success: boolean): void {
    if (work.done) return;
    work.done = true;
    clearTimeout(work.timer);
    active.delete(work);
    cache?.finish(work);
    scheduler.finish(work.job);
    if (success) {
      metrics.recordSuccess({
        promptTokens: work.promptTokens,
        generationTokens: work.tokens.length,
        finishReason: work.finishReason,
        e2eSeconds: (performance.now() - work.arrival) / 1000,
      });
    }
  }

  function usage(work: Work) {
    const completion = work.tokens.length;
    return {
      prompt_tokens: work.promptTokens,
      completion_tokens: completion,
      total_tokens: work.promptTokens + completion,
    };
  }

  function base(work: Work, id: string, object: string) {
    const created = Math.floor(Date.now() / 1000);
    return { id, object, created, model: work.displayModel };
  }

  // Runs an admitted request: TTFT, then one inter-token latency per further token.
  function run(work: Work): void {
    if (closing) return;
    const startedAt = performance.now();
    metrics.observe("queueTime", (startedAt - work.arrival) / 1000);
    let cachedTokens = 0;
    if (cache) {
      cachedTokens = (cache.start(work, work.blockKeys) ?? 0) * config.blockSize;
      metrics.recordPrefixLookup(work.promptTokens, cachedTokens);
    }
    const { ttft, itls } = latencies(work.promptTokens, cachedTokens, work.tokens.length);
    const id = (work.chat ? "chatcmpl-" : "cmpl-") + randomUUID();
    const observeTokens = (from: number, to: number) => {
      for (const itl of itls.slice(from, to)) {
        metrics.observe("tpot", itl / 1000);
        metrics.observe("interTokenLatency", itl / 1000);
      }
    };
    if (!work.stream) {
      const total = ttft + itls.reduce((a, b) => a + b, 0);
      work.timer = setTimeout(() => {
        metrics.observe("ttft", ttft / 1000);
        observeTokens(0, itls.length);
        const text = work.tokens.join("");
        const choice = work.chat
          ? {
              index: 0,
              finish_reason: work.finishReason,
              message: { role: "assistant", content: text },
            }
          : { index: 0, finish_reason: work.finishReason, text };
        const object = work.chat ? "chat.completion" : "text_completion";
        sendJson(
          work.res,
          200,
          { ...base(work, id, object), choices: [choice], usage: usage(work) },
          work.headers,
        );
        finish(work, true);
      }, total);
      return;
    }
    work.res.writeHead(200, { ...work.headers, "content-type": "text/event-stream" });
    const object = work.chat ? "chat.completion.chunk" : "text_completion";
    const send = (payload: unknown) => work.res.write(`data: ${JSON.stringify(payload)}\n\n`);
    const chunk = (delta: Record<string, string>, finishReason: string | null) =>
      send({
        ...base(work, id, object),
        choices: [
          work.chat
            ? { index: 0, delta, finish_reason: finishReason }
            : { index: 0, text: delta.content ?? "", finish_reason: finishReason },
        ],
      });
    // Deadlines from the start, so timer drift does not accumulate over many tokens.
    const deadlines = [ttft];
    for (const itl of itls) deadlines.push(deadlines[deadlines.length - 1] + itl);
    let next = 0;
    const step = () => {
      if (next === 0) {
        metrics.observe("ttft", ttft / 1000);
        if (work.chat) chunk({ role: "assistant", content: "" }, null);
      } else observeTokens(next - 1, next);
      if (next < work.tokens.length) chunk({ content: work.tokens[next] }, null);
      next++;
      if (next < work.tokens.length) {
        work.timer = setTimeout(step, Math.max(0, startedAt + deadlines[next] - performance.now()));
        return;
      }
      chunk({}, work.finishReason);
      if (work.includeUsage) send({ ...base(work, id, object), choices: [], usage: usage(work) });
      work.res.end("data: [DONE]\n\n");
      finish(work, true);
    };
    work.timer = setTimeout(step, ttft);
  }

  async function completions(req: http.IncomingMessage, res: http.ServerResponse, chat: boolean) {
    // Upstream injects failures first, before even parsing the request.
    if (config.failureInjectionRate > 0 && random() * 100 < config.failureInjectionRate) {
      const types = config.failureTypes.length > 0 ? config.failureTypes : Object.keys(FAILURES);
      const [code, message, param] =
        FAILURES[types[Math.floor(random() * types.length)] as FailureType];
      return sendError(res, code, message.replace("%s", config.model), param);
    }
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(await readBody(req)) as Record<string, unknown>;
      if (typeof body !== "object" || body === null) throw new Error("not a JSON object");
    } catch (err) {
      return sendText(res, 400, `Failed to read and parse request body, ${err}`);
    }
    const model = String(body.model ?? "");
    if (!isValidModel(model)) {
      return sendError(res, 404, `The model \`${model}\` does not exist.`, null);
    }
    const maxTokensRaw = chat ? (body.max_completion_tokens ?? body.max_tokens) : body.max_tokens;
    const maxTokens = typeof maxTokensRaw === "number" ? maxTokensRaw : undefined;
    if (maxTokens !== undefined && maxTokens <= 0) {
      return sendError(res, 400, "Max completion tokens and max tokens should be positive", null);
    }
    const messages = Array.isArray(body.messages) ? (body.messages as { content?: unknown }[]) : [];
    const prompts = Array.isArray(body.prompt)
      ? body.prompt.map(String)
      : [String(body.prompt ?? "")];
    const promptText = chat
      ? messages.map(m => contentText(m.content)).join("\n")
      : prompts.join("\n");
    const promptTokenList = tokenize(promptText);
    const promptTokens = promptTokenList.length;
    if (promptTokens + (maxTokens ?? 0) > config.maxModelLen) {
      const message =
        maxTokens === undefined
          ? `This model's maximum context length is ${config.maxModelLen} tokens. However, you requested ${promptTokens} tokens in the messages. Please reduce the length of the messages`
          : `This model's maximum context length is ${config.maxModelLen} tokens. However, you requested ${promptTokens + maxTokens} tokens (${promptTokens} in the messages, ${maxTokens} in the completion). Please reduce the length of the messages or completion.`;
      return sendError(res, 400, message, null);
    }
    const echoText = chat ? contentText(messages[messages.length - 1]?.content) : promptText;
    const generated = generate(config.mode, echoText, maxTokens, body.ignore_eos === true, random);
    const isLora = loras.has(model);
    const headers: Record<string, string> = {};
    if (podName)
      Object.assign(headers, { "x-inference-pod": podName, "x-inference-port": `${port}` });
    if (podNamespace) headers["x-inference-namespace"] = podNamespace;
    if (config.enableRequestIdHeaders) {
      headers["x-request-id"] = String(req.headers["x-request-id"] ?? randomUUID());
    }
    const streamOptions = body.stream_options as { include_usage?: boolean } | undefined;
    const work: Work = {
      job: {
        model,
        isLora,
        kvBlocks: Math.ceil((promptTokens + generated.tokens.length) / config.blockSize),
        start: () => run(work),
      },
      chat,
      stream: body.stream === true,
      includeUsage: streamOptions?.include_usage === true,
      displayModel: isLora ? model : config.servedModelName[0], // upstream getDisplayedModelName
      promptTokens,
      blockKeys: config.enableKvcache
        ? promptBlockKeys(model, promptTokenList, config.blockSize)
        : [],
      tokens: generated.tokens,
      finishReason: generated.finishReason,
      arrival: performance.now(),
      res,
      headers,
      done: false,
    };
    active.add(work);
    res.on("close", () => finish(work, false)); // client gone: leave the queue or free the slot
    if (scheduler.submit(work.job) === "rejected") {
      finish(work, false);
      sendText(res, 429, "Failed to enqueue request, waiting requests queue is full");
    }
  }

  function models(res: http.ServerResponse): void {
    const created = Math.floor(Date.now() / 1000);
    const entry = (id: string, parent: string | null) => ({
      id,
      object: "model",
      created,
      owned_by: "vllm",
      root: id,
      parent,
      max_model_len: config.maxModelLen,
    });
    const data = [
      ...config.servedModelName.map(name => entry(name, null)),
      ...[...loras.keys()].map(name => entry(name, config.servedModelName[0])),
    ];
    sendJson(res, 200, { object: "list", data });
  }

  async function loraAdapter(req: http.IncomingMessage, res: http.ServerResponse, load: boolean) {
    const verb = load ? "load" : "unload";
    let body: { lora_name?: unknown; lora_path?: unknown };
    try {
      body = JSON.parse(await readBody(req)) as typeof body;
    } catch (err) {
      return sendText(res, 400, `failed to read and parse ${verb} lora request body, ${err}`);
    }
    const name = String(body.lora_name ?? "");
    if (load) loras.set(name, String(body.lora_path ?? ""));
    else loras.delete(name);
    res.writeHead(200);
    res.end();
  }

  async function adminConfig(req: http.IncomingMessage, res: http.ServerResponse) {
    if (req.method === "POST") {
      try {
        config = applyAdminUpdate(config, JSON.parse(await readBody(req)));
      } catch (err) {
        return sendError(res, 400, String(err instanceof Error ? err.message : err), null);
      }
    }
    sendJson(res, 200, configToFlags(config));
  }

  async function route(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = new URL(req.url ?? "/", "http://sim").pathname;
    const key = `${req.method} ${path}`;
    switch (key) {
      case "POST /v1/chat/completions":
        return completions(req, res, true);
      case "POST /v1/completions":
        return completions(req, res, false);
      case "GET /v1/models":
        return models(res);
      case "GET /health":
      case "GET /ready":
      case "GET /health/ready":
        return sendJson(res, 200, {});
      case "GET /metrics":
        res.writeHead(200, { "content-type": metrics.registry.contentType });
        res.end(await metrics.registry.metrics());
        return;
      case "POST /v1/load_lora_adapter":
        return loraAdapter(req, res, true);
      case "POST /v1/unload_lora_adapter":
        return loraAdapter(req, res, false);
      case "GET /admin/config":
      case "POST /admin/config":
        return adminConfig(req, res);
      default:
        return sendText(res, 404, "Not Found");
    }
  }

  const server = http.createServer((req, res) => {
    route(req, res).catch(err => {
      if (!res.headersSent) sendText(res, 500, String(err));
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(config.port, config.host, () => resolve());
  });
  port = (server.address() as AddressInfo).port;
  const urlHost = ["0.0.0.0", "::", ""].includes(config.host) ? "127.0.0.1" : config.host;
  return {
    url: `http://${urlHost.includes(":") ? `[${urlHost}]` : urlHost}:${port}`,
    port,
    close: () =>
      new Promise<void>(resolve => {
        closing = true;
        for (const work of [...active]) {
          finish(work, false);
          work.res.destroy();
        }
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
