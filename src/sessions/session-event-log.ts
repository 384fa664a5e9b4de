import type { SessionEvent } from "./types.js";

type DistributiveOmit<T, K extends keyof never> = T extends unknown ? Omit<T, K> : never;
type Listener = (event: SessionEvent) => void;

/**
 * A session's event stream: numbered in order, the last `capacity` kept for replay (the oldest
 * dropped first), and pushed to every subscriber as it happens.
 */
export class SessionEventLog {
  readonly #sessionId: string;
  readonly #capacity: number;
  readonly #events: SessionEvent[] = [];
  readonly #listeners = new Set<Listener>();
  #seq = 0;

  constructor(sessionId: string, capacity = 5_000) {
    this.#sessionId = sessionId;
    this.#capacity = capacity;
  }

  /** The seq of the last event, 0 before any. */
  get lastSeq(): number {
    return this.#seq;
  }

  /** The oldest seq still kept (lastSeq + 1 when none are). */
  get oldestSeq(): number {
    return this.#events[0]?.seq ?? this.#seq + 1;
  }

  push(event: DistributiveOmit<SessionEvent, "seq" | "session_id">): void {
    const stamped = { ...event, seq: ++this.#seq, session_id: this.#sessionId } as SessionEvent;
    this.#events.push(stamped);
    if (this.#events.length > this.#capacity) this.#events.splice(0, this.#events.length - this.#capacity);
    for (const listener of this.#listeners) {
      try {
        listener(stamped);
      } catch {
        // one subscriber's failure must not stop the others
      }
    }
  }

  /**
   * Replays the kept events after `afterSeq`, then follows live. `gap` is true when some events
   * after the cursor were already dropped (the client should refetch the executions it cares about).
   */
  subscribe(afterSeq: number, listener: Listener): { unsubscribe: () => void; gap: boolean } {
    const gap = afterSeq + 1 < this.oldestSeq && afterSeq < this.#seq;
    for (const event of this.#events) if (event.seq > afterSeq) listener(event);
    this.#listeners.add(listener);
    return { unsubscribe: () => this.#listeners.delete(listener), gap };
  }

  close(): void {
    this.#listeners.clear();
  }
}
