import { deadlineSignal } from "../util/abort.js";
import {
  type KernelLauncher,
  type KernelProfile,
  type LaunchedKernel,
  profileKey,
} from "./kernel-launcher.js";

export interface KernelPoolOptions {
  launcher: KernelLauncher;
  /** Profiles to keep ready, and how many of each. */
  profiles: ReadonlyArray<{ profile: KernelProfile; size: number }>;
  /** A ready kernel older than this is replaced, in ms. */
  maxAgeMs: number;
  /** How often ready kernels are checked (alive, idle, answering `kernel_info`), in ms. */
  healthIntervalMs: number;
  /** Told about start failures (a bad kernelspec, startup code that fails). */
  onError?: (error: unknown, profile: KernelProfile) => void;
}

/** How one profile's pool stands. */
export interface PoolProfileStats {
  kernel: string;
  mode: string;
  target: number;
  ready: number;
  starting: number;
  /** Kernels handed to sessions since start. */
  taken: number;
  failures: number;
}

interface Slot {
  profile: KernelProfile;
  target: number;
  ready: LaunchedKernel[];
  starting: number;
  taken: number;
  failures: number;
  /** Consecutive start failures, for the back-off. */
  streak: number;
  retryAt: number;
}

/** Longest wait between retries of a profile whose kernels fail to start, in ms. */
const MAX_BACKOFF_MS = 60_000;

/**
 * Kernels started ahead of need, per profile, so a new session gets a running kernel (startup
 * code already run) in the time of a hand-over. Refilled in the background one start at a time
 * (a kernel start is CPU-heavy, and requests come first); checked periodically; replaced when old.
 */
export class KernelPool {
  readonly #options: KernelPoolOptions;
  readonly #slots = new Map<string, Slot>();
  readonly #controller = new AbortController();
  #refilling = false;
  #timer: NodeJS.Timeout | undefined;
  #checking = false;
  /** The start under way, awaited by dispose so no kernel outlives the pool. */
  #inflight: Promise<unknown> = Promise.resolve();

  constructor(options: KernelPoolOptions) {
    this.#options = options;
    for (const { profile, size } of options.profiles) {
      const key = profileKey(profile);
      const existing = this.#slots.get(key);
      if (existing) existing.target += size;
      else
        this.#slots.set(key, {
          profile,
          target: size,
          ready: [],
          starting: 0,
          taken: 0,
          failures: 0,
          streak: 0,
          retryAt: 0,
        });
    }
  }

  /** Starts filling the pool and the periodic health check. */
  start(): void {
    this.#refill();
    this.#timer = setInterval(() => void this.#check(), this.#options.healthIntervalMs);
    this.#timer.unref();
  }

  /** A ready kernel of this profile, or undefined; the pool starts a replacement. */
  take(profile: KernelProfile): LaunchedKernel | undefined {
    const slot = this.#slots.get(profileKey(profile));
    if (!slot) return undefined;
    while (slot.ready.length > 0) {
      const launched = slot.ready.shift()!;
      if (launched.kernel.status === "idle") {
        slot.taken++;
        this.#refill();
        return launched;
      }
      void launched.dispose();
    }
    this.#refill();
    return undefined;
  }

  stats(): PoolProfileStats[] {
    return [...this.#slots.values()].map((slot) => ({
      kernel: slot.profile.kernel,
      mode: slot.profile.mode,
      target: slot.target,
      ready: slot.ready.length,
      starting: slot.starting,
      taken: slot.taken,
      failures: slot.failures,
    }));
  }

  /** Kernels ready in every profile together. */
  get readyCount(): number {
    let n = 0;
    for (const slot of this.#slots.values()) n += slot.ready.length;
    return n;
  }

  #refill(): void {
    if (this.#refilling || this.#controller.signal.aborted) return;
    const now = Date.now();
    const slot = [...this.#slots.values()].find(
      (s) => s.ready.length + s.starting < s.target && s.retryAt <= now,
    );
    if (!slot) {
      const waiting = [...this.#slots.values()].filter((s) => s.ready.length + s.starting < s.target);
      if (waiting.length > 0) {
        const next = Math.min(...waiting.map((s) => s.retryAt)) - now;
        setTimeout(() => this.#refill(), Math.max(10, next)).unref();
      }
      return;
    }
    this.#refilling = true;
    slot.starting++;
    this.#inflight = this.#options.launcher
      .launch(slot.profile, this.#controller.signal)
      .then(
        (launched) => {
          slot.streak = 0;
          if (this.#controller.signal.aborted) return launched.dispose();
          slot.ready.push(launched);
        },
        (error: unknown) => {
          if (this.#controller.signal.aborted) return;
          slot.failures++;
          slot.streak++;
          slot.retryAt = Date.now() + Math.min(MAX_BACKOFF_MS, 500 * 2 ** slot.streak);
          this.#options.onError?.(error, slot.profile);
        },
      )
      .finally(() => {
        slot.starting--;
        this.#refilling = false;
        this.#refill();
      });
  }

  /** Drops kernels that died, went busy, stopped answering or grew old; the refill replaces them. */
  async #check(): Promise<void> {
    if (this.#checking) return;
    this.#checking = true;
    try {
      const now = performance.now();
      for (const slot of this.#slots.values()) {
        for (const launched of [...slot.ready]) {
          let healthy = launched.kernel.status === "idle" && now - launched.readyAt < this.#options.maxAgeMs;
          if (healthy) {
            healthy = await launched.kernel
              .request(
                "shell",
                "kernel_info_request",
                {},
                { signal: deadlineSignal(5_000, this.#controller.signal) },
              )
              .then(
                () => true,
                () => false,
              );
          }
          const index = slot.ready.indexOf(launched);
          // Taken by a session while it was being checked: no longer the pool's.
          if (healthy || index < 0) continue;
          slot.ready.splice(index, 1);
          void launched.dispose();
        }
      }
      this.#refill();
    } finally {
      this.#checking = false;
    }
  }

  /** Stops refilling and disposes every ready kernel (starts in flight are aborted). */
  async dispose(): Promise<void> {
    this.#controller.abort(new Error("the kernel pool is shutting down"));
    if (this.#timer) clearInterval(this.#timer);
    await this.#inflight.catch(() => undefined);
    const all = [...this.#slots.values()].flatMap((slot) => slot.ready.splice(0));
    await Promise.all(all.map((launched) => launched.dispose()));
  }
}
