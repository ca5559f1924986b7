import { describe, expect, it } from "@jest/globals";
import { NOTIFICATION_WEBHOOK_LABEL, webhookUrlFrom } from "./webhooks";

const ref = { name: "hook", key: "url" };
type Secret = { metadata: { labels: Record<string, string> }; data: Record<string, string> };
const secret = (url: string | undefined, labelled = true): Secret => ({
  metadata: { labels: labelled ? { [NOTIFICATION_WEBHOOK_LABEL]: "true" } : {} },
  data: url === undefined ? {} : { url: Buffer.from(url).toString("base64") },
});
const problem = (s: Secret) => {
  const found = webhookUrlFrom(s, "ns", ref);
  return "problem" in found ? found.problem : undefined;
};

describe("webhook URLs from Secrets", () => {
  it("takes the URL from a labelled Secret", () => {
    expect(webhookUrlFrom(secret("https://hooks.example.com/T0/B0/xyz\n"), "ns", ref)).toEqual({
      url: "https://hooks.example.com/T0/B0/xyz",
    });
  });

  it("refuses an unlabelled Secret, naming the Secret, the label and the command that fixes it", () => {
    expect(problem(secret("https://hooks.example.com/x", false))).toEqual({
      reason: "NotificationSecretNotLabelled",
      message: expect.stringContaining(
        `kubectl -n ns label secret hook ${NOTIFICATION_WEBHOOK_LABEL}=true`,
      ),
    });
  });

  it("names a missing key and a value that is no http(s) URL, never showing the value", () => {
    expect(problem(secret(undefined))?.reason).toBe("NotificationSecretKeyMissing");
    const bad = problem(secret("ftp://secret-token@host/x"));
    expect(bad?.reason).toBe("NotificationURLInvalid");
    expect(bad?.message).not.toContain("secret-token");
    expect(problem(secret("not a url"))?.reason).toBe("NotificationURLInvalid");
  });

  it("refuses cloud metadata and link-local addresses by the operator's address policy", () => {
    for (const url of [
      "http://169.254.169.254/latest/meta-data",
      "http://[fe80::1]/hook",
      "http://metadata.google.internal/x",
    ]) {
      const p = problem(secret(url));
      expect(p?.reason).toBe("NotificationURLRefused");
      expect(p?.message).toMatch(/address refused by the operator's address policy/);
    }
    expect(problem(secret("http://127.0.0.1:9000/hook"))).toBeUndefined();
  });
});
