import { request } from "undici";
import { PickerMetrics, poolGaugeValues, startMetricsServer } from "./metrics";

describe("PickerMetrics", () => {
  it("exports the upstream-compatible names with pool labels", async () => {
    const m = new PickerMetrics("pool-a");
    m.recordRequest("travel-helper", "travel-helper-v2");
    m.recordError("travel-helper", "travel-helper-v2", "ModelServerError");
    m.observeDuration("travel-helper", "travel-helper-v2", 0.0015);
    m.observeTtft("travel-helper", "travel-helper-v2", 0.0009);
    m.observeTokens("travel-helper", "travel-helper-v2", 12, 0);
    m.observeDecision(0.00002);
    m.recordPick("10.0.0.1:8000");
    m.setPoolGaugeSource(() =>
      poolGaugeValues([
        { podName: "a", metrics: { kvCacheUsage: 0.2, waiting: 1 } },
        { podName: "b", metrics: { kvCacheUsage: 0.4, waiting: 3 } },
        { podName: "b" },
      ]),
    );
    m.setFlowQueueSource(() => ({ now: 3, total: 17 }));
    const text = await m.registry.metrics();
    expect(text).toContain('modelrollout_picker_flow_queue_size{pool="pool-a"} 3');
    expect(text).toContain('modelrollout_picker_flow_held_total{pool="pool-a"} 17');
    expect(await m.registry.metrics()).toContain(
      'modelrollout_picker_flow_held_total{pool="pool-a"} 17',
    );
    const labels = 'model_name="travel-helper",target_model_name="travel-helper-v2",pool="pool-a"';
    expect(text).toContain(`inference_objective_request_total{${labels}} 1`);
    expect(text).toContain(
      `inference_objective_request_error_total{${labels},error_code="ModelServerError"} 1`,
    );
    expect(text).toContain(
      `inference_objective_request_duration_seconds_bucket{le="0.001",${labels}} 0`,
    );
    expect(text).toContain(
      `inference_objective_request_duration_seconds_bucket{le="0.0025",${labels}} 1`,
    );
    expect(text).toContain(
      `inference_objective_request_ttft_seconds_bucket{le="0.001",${labels}} 1`,
    );
    expect(text).toContain(`inference_objective_input_tokens_count{${labels}} 1`);
    expect(text).not.toContain("inference_objective_output_tokens_count"); // zero is not observed
    expect(text).toContain('inference_pool_average_kv_cache_utilization{name="pool-a"} 0.3');
    expect(text).toContain('inference_pool_average_queue_size{name="pool-a"} 2');
    expect(text).toContain('inference_pool_ready_pods{name="pool-a"} 2');
    expect(text).toContain(
      'modelrollout_picker_decision_seconds_bucket{le="0.000025",pool="pool-a"} 1',
    );
    expect(text).toContain(
      'modelrollout_picker_endpoint_picks_total{pool="pool-a",endpoint="10.0.0.1:8000"} 1',
    );
  });

  it("serves /metrics, /healthz and /readyz", async () => {
    const m = new PickerMetrics("pool-a");
    let ready = false;
    const srv = await startMetricsServer(m.registry, () => ready, 0, "127.0.0.1");
    const get = async (path: string) => {
      const res = await request(`http://127.0.0.1:${srv.port}${path}`);
      return { status: res.statusCode, text: await res.body.text() };
    };
    try {
      expect((await get("/metrics")).text).toContain("inference_pool_ready_pods");
      expect((await get("/healthz")).status).toBe(200);
      expect((await get("/readyz")).status).toBe(503);
      ready = true;
      expect((await get("/readyz")).status).toBe(200);
      expect((await get("/nope")).status).toBe(404);
    } finally {
      await srv.close();
    }
  });
});
