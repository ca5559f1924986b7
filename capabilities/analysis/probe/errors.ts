// The probe's permanent error: its URL is one the operator must not call (retrying will not help).

export class ProbeRefusedError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ProbeRefusedError";
  }
}
