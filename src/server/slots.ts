import { QuotaExceededError } from "../sessions/errors.js";

/**
 * A counting semaphore with a bounded waiting line: `acquire` waits for a free slot, or fails at
 * once with AT_CAPACITY when `maxWaiting` callers already wait.
 */
export class Slots {
  readonly #max: number;
  readonly #maxWaiting: number;
  readonly #waiting: Array<() => void> = [];
  #used = 0;

  constructor(max: number, maxWaiting: number) {
    this.#max = max;
    this.#maxWaiting = maxWaiting;
  }

  get running(): number {
    return this.#used;
  }

  get waiting(): number {
    return this.#waiting.length;
  }

  async acquire(): Promise<() => void> {
    if (this.#used < this.#max) {
      this.#used++;
      return this.#releaser();
    }
    if (this.#waiting.length >= this.#maxWaiting) {
      throw new QuotaExceededError(
        "server",
        `${this.#used} runs are under way and ${this.#waiting.length} wait; retry later`,
      );
    }
    await new Promise<void>((resolve) => this.#waiting.push(resolve));
    return this.#releaser();
  }

  #releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#waiting.shift();
      // The slot passes straight to the next waiter.
      if (next) next();
      else this.#used--;
    };
  }
}
