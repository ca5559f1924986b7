// A client that went away: the signal the router and the front doors share.

/**
 * What the router needs of a cancellation signal: an AbortSignal has it, and so does
 * CancellationFlag below.
 */
export interface Cancellation {
  readonly aborted: boolean;
  addEventListener(type: "abort", listener: () => void, options?: { once?: boolean }): void;
}

/**
 * A client went away: a flag and its listeners. The front doors use it instead of an
 * AbortController per request, whose abort() builds a DOMException with a stack trace (with the
 * EventTarget around it, about a tenth of the ext_proc door's samples in a CPU profile).
 */
export class CancellationFlag implements Cancellation {
  aborted = false;
  private listeners: (() => void)[] = [];

  addEventListener(_type: "abort", listener: () => void): void {
    this.listeners.push(listener);
  }

  removeEventListener(_type: "abort", listener: () => void): void {
    const i = this.listeners.indexOf(listener);
    if (i >= 0) this.listeners.splice(i, 1);
  }

  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    for (const listener of this.listeners.splice(0)) listener();
  }
}
