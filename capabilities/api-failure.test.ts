import { describe, expect, it } from "@jest/globals";
import { apiFailure } from "./api-failure";

describe("apiFailure", () => {
  it("names a connection failure for what it is, not as the 400 the client makes of it", () => {
    const cause = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:16443"), {
      code: "ECONNREFUSED",
    });
    const thrown = {
      status: 400,
      statusText: "fetch failed",
      e: new TypeError("fetch failed", { cause }),
    };
    expect(apiFailure(thrown)).toEqual({
      transport: true,
      message:
        "apiserver not reachable: connection refused (ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:16443)",
    });
    const timeout = {
      status: 400,
      statusText: "fetch failed",
      e: new TypeError("fetch failed", { cause: { code: "UND_ERR_CONNECT_TIMEOUT" } }),
    };
    expect(apiFailure(timeout)).toMatchObject({
      transport: true,
      message: expect.stringMatching(/timed out/),
    });
    expect(apiFailure({ status: 400, statusText: "fetch failed" }).transport).toBe(true);
  });
  it("keeps the apiserver's status and message for an HTTP answer", () => {
    expect(apiFailure({ status: 403, data: { message: "cannot patch" } })).toEqual({
      status: 403,
      message: "cannot patch",
    });
    expect(apiFailure({ status: 500, statusText: "Internal Server Error" })).toEqual({
      status: 500,
      message: "Internal Server Error",
    });
  });
});
