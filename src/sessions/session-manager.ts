import { checkCode } from "../execution/check-code.js";
import { randomUUID } from "node:crypto";
import { NotFoundError, InvalidArgumentError } from "../errors.js";
import type { ExecutionLog } from "../execution/execution-log.js";
import type { KernelManager } from "../kernels/kernel-manager.js";
import { type ResourceLimits, resolveLimits } from "../sandbox/limits.js";
import type { SessionEndReason, Store } from "../store/types.js";
import { QuotaExceededError, SessionEndedError } from "./errors.js";
import type { KernelLauncher, KernelProfile } from "./kernel-launcher.js";
import type { KernelPool } from "./kernel-pool.js";
import { Session } from "./session.js";
import type { CreateSessionOptions, SessionInfo } from "./types.js";

export interface SessionManagerOptions {
  store: Store;
  kernels: KernelManager;
  launcher: KernelLauncher;
  pool: KernelPool | null;
  log: ExecutionLog;
  /** What a session gets when it asks for nothing. */
  defaults: ResourceLimits;
  /** The most a session may ask for. */
  ceilings: ResourceLimits;
  idleTimeoutMs: number;
  maxPerUser: number;
  maxTotal: number;
  maxQueued: number;
  /** Largest accepted code (startup code included), in bytes. */
  maxCodeBytes: number;
  /** Told about sessions that end on their own (culled, kernel lost). */
  onEnded?: (info: SessionInfo) => void;
}

/** A kernel as the seed kernel routes list it. */
export interface KernelListing {
  kernel_id: string;
  session_id: string;
  name: string;
  status: string;
  started_at: string;
  last_activity_at: string;
}

/**
 * Sessions of every user: creation (from the warm pool when the profile matches), ownership
 * (another user's session is "not found"), quotas, idle culling and shutdown. Each session is
 * saved to the store as it changes, so an ended one still reads as it was.
 */
export class SessionManager {
  readonly #options: SessionManagerOptions;
  readonly #sessions = new Map<string, Session>();
  /** Sessions being created, counted against the quotas. */
  readonly #pending = new Map<string, number>();
  #cullTimer: NodeJS.Timeout | undefined;
  #closing = false;

  constructor(options: SessionManagerOptions) {
    this.#options = options;
  }

  /** Looks a kernelspec up by name; NotFoundError naming the installed ones. */
  kernelspec(name: string): ReturnType<KernelManager["getKernelspec"]> {
    return this.#options.kernels.getKernelspec(name);
  }

  /** Live sessions. */
  get size(): number {
    return this.#sessions.size;
  }

  get sessions(): Session[] {
    return [...this.#sessions.values()];
  }

  /** Executions waiting across every session. */
  get queueDepth(): number {
    let n = 0;
    for (const session of this.#sessions.values()) n += session.launched.executor.queueDepth;
    return n;
  }

  async create(userId: string, request: CreateSessionOptions): Promise<Session> {
    const o = this.#options;
    const mode = request.mode ?? "write_access";
    if (mode === "read_only" && request.network) {
      throw new InvalidArgumentError(
        "INVALID_REQUEST",
        "network: a read_only session has no network; drop network or use mode write_access",
      );
    }
    if (request.startup_code) checkCode(request.startup_code, o.maxCodeBytes);
    const limits = resolveLimits(
      {
        memoryBytes: request.memory_bytes,
        pids: request.pids,
        timeMs: request.timeout_ms,
        outputBytes: request.output_bytes,
      },
      o.ceilings,
      o.defaults,
    );
    const kernelName = request.kernel ?? "python3";
    // Unknown kernels fail here, naming the known ones, before any quota is taken.
    await o.kernels.getKernelspec(kernelName);
    const userCount =
      [...this.#sessions.values()].filter((s) => s.userId === userId).length +
      (this.#pending.get(userId) ?? 0);
    const total = this.#sessions.size + [...this.#pending.values()].reduce((a, b) => a + b, 0);
    if (this.#closing) throw new QuotaExceededError("server", "the server is shutting down");
    if (userCount >= o.maxPerUser) {
      throw new QuotaExceededError(
        "user",
        `you have ${userCount} live sessions, the most allowed per user; delete one (DELETE /api/v1/sessions/{id})`,
      );
    }
    if (total >= o.maxTotal) {
      throw new QuotaExceededError("server", `the server runs ${total} sessions, its capacity; retry later`);
    }
    const profile: KernelProfile = {
      kernel: kernelName,
      mode,
      network: mode === "read_only" ? false : Boolean(request.network),
      startupCode: request.startup_code ?? "",
      memoryBytes: limits.memoryBytes,
      pids: limits.pids,
      env: request.env ?? {},
    };
    this.#pending.set(userId, (this.#pending.get(userId) ?? 0) + 1);
    let launched;
    let fromPool = true;
    try {
      launched = o.pool?.take(profile);
      if (!launched) {
        fromPool = false;
        launched = await o.launcher.launch(profile);
      }
    } finally {
      const left = (this.#pending.get(userId) ?? 1) - 1;
      if (left > 0) this.#pending.set(userId, left);
      else this.#pending.delete(userId);
    }
    const session = new Session({
      id: randomUUID(),
      userId,
      launched,
      fromPool,
      log: o.log,
      timeoutMs: limits.timeMs,
      outputBytes: limits.outputBytes,
      idleTimeoutMs: request.idle_timeout_ms ?? o.idleTimeoutMs,
      maxQueued: o.maxQueued,
      maxCodeBytes: o.maxCodeBytes,
      maxTimeoutMs: o.ceilings.timeMs,
      envKeys: Object.keys(profile.env).sort(),
      limits: {
        time_ms: limits.timeMs,
        memory_bytes: limits.memoryBytes,
        pids: limits.pids,
        output_bytes: limits.outputBytes,
        network: profile.network,
      },
      onChange: (s) => this.#persist(s),
      onFatal: (s) => void this.#end(s, "kernel_failed"),
    });
    if (this.#closing) {
      await session.end("server_shutdown");
      throw new QuotaExceededError("server", "the server is shutting down");
    }
    this.#sessions.set(session.id, session);
    o.store.sessions.insert({
      id: session.id,
      user_id: userId,
      kernel: kernelName,
      mode,
      snapshot: { ...session.info() },
      created_at: session.createdAt,
      ended_at: null,
      end_reason: null,
    });
    if (launched.startup) {
      // The startup code ran before the session existed (in the pool, or just now): file it under the session.
      o.store.executions.save(userId, { ...launched.startup, session_id: session.id });
    }
    return session;
  }

  /**
   * The caller's live session `id`: SessionEndedError when it has ended, NotFoundError when it is
   * unknown or another user's.
   */
  get(userId: string, id: string): Session {
    const session = this.#sessions.get(id);
    if (session) {
      if (session.userId !== userId) throw notFound(id);
      return session;
    }
    const stored = this.#options.store.sessions.get(id);
    if (stored && stored.user_id === userId) throw new SessionEndedError(id, stored.end_reason);
    throw notFound(id);
  }

  /** The caller's session `id`, live or ended. */
  info(userId: string, id: string): SessionInfo {
    const live = this.#sessions.get(id);
    if (live) {
      if (live.userId !== userId) throw notFound(id);
      return live.info();
    }
    const stored = this.#options.store.sessions.get(id);
    if (!stored || stored.user_id !== userId) throw notFound(id);
    return {
      ...(stored.snapshot as unknown as SessionInfo),
      status: "ended",
      kernel_id: null,
      queue_depth: 0,
      ended_at: stored.ended_at,
      end_reason: stored.end_reason,
    };
  }

  list(userId: string): SessionInfo[] {
    return this.sessions.filter((s) => s.userId === userId).map((s) => s.info());
  }

  /** Ends the caller's session (kernel stopped, executions kept). */
  async delete(userId: string, id: string): Promise<void> {
    await this.#end(this.get(userId, id), "deleted");
  }

  kernels(userId: string): KernelListing[] {
    return this.sessions
      .filter((s) => s.userId === userId)
      .map((s) => ({
        kernel_id: s.launched.kernel.id,
        session_id: s.id,
        name: s.launched.profile.kernel,
        status: s.launched.kernel.status,
        started_at: s.createdAt,
        last_activity_at: new Date(s.lastActivity).toISOString(),
      }));
  }

  /** Stops a kernel by id; the session that owned it ends. */
  async stopKernel(userId: string, kernelId: string): Promise<string> {
    const session = this.sessions.find((s) => s.userId === userId && s.launched.kernel.id === kernelId);
    if (!session)
      throw new NotFoundError("KERNEL_NOT_FOUND", `no kernel ${kernelId} among your sessions' kernels`);
    await this.#end(session, "kernel_stopped");
    return session.id;
  }

  /** Ends sessions idle longer than their idle timeout, every `intervalMs`. */
  startCulling(intervalMs = 1_000): void {
    this.#cullTimer = setInterval(() => {
      const now = Date.now();
      for (const session of this.sessions) {
        if (!session.busy && now - session.lastActivity > session.idleTimeoutMs) {
          void this.#end(session, "culled");
        }
      }
    }, intervalMs);
    this.#cullTimer.unref();
  }

  async #end(session: Session, reason: SessionEndReason): Promise<void> {
    if (!this.#sessions.has(session.id)) return session.end(reason);
    // Ended at once (the kernel stops in the background of this call): saved before it leaves
    // the live map, so no reader ever sees it ended without its reason.
    const ending = session.end(reason);
    const info = session.info();
    this.#options.store.sessions.update(session.id, {
      snapshot: { ...info },
      ended_at: info.ended_at,
      end_reason: reason,
    });
    this.#sessions.delete(session.id);
    await ending;
    if (reason !== "deleted") this.#options.onEnded?.(info);
  }

  #persist(session: Session): void {
    if (this.#sessions.has(session.id))
      this.#options.store.sessions.update(session.id, { snapshot: { ...session.info() } });
  }

  /** Waits up to `graceMs` for running executions, then ends every session. */
  async shutdown(graceMs: number): Promise<void> {
    this.#closing = true;
    if (this.#cullTimer) clearInterval(this.#cullTimer);
    const deadline = Date.now() + graceMs;
    while (this.sessions.some((s) => s.busy) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await Promise.all(this.sessions.map((s) => this.#end(s, "server_shutdown")));
  }
}

function notFound(id: string): NotFoundError {
  return new NotFoundError("SESSION_NOT_FOUND", `no session ${id} (GET /api/v1/sessions lists yours)`);
}
