import { existsSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { loadConfig } from "../config/config.js";
import type { ServerConfig } from "../config/server-config.js";
import { ExecutionLog } from "../execution/execution-log.js";
import { KernelManager, prepareRuntimeDir } from "../kernels/kernel-manager.js";
import { defaultInterpreters } from "../runner/languages.js";
import { Runner } from "../runner/runner.js";
import { WarmPool } from "../runner/warm-pool.js";
import { detectCgroups } from "../sandbox/cgroups.js";
import { HostSandbox } from "../sandbox/host-sandbox.js";
import { DEFAULT_CEILINGS, DEFAULT_LIMITS, type ResourceLimits } from "../sandbox/limits.js";
import { startSpawnHelper } from "../sandbox/managed-process.js";
import { SandboxFactory } from "../sandbox/sandbox-factory.js";
import { KernelLauncher, type KernelProfile } from "../sessions/kernel-launcher.js";
import { KernelPool } from "../sessions/kernel-pool.js";
import { SessionManager } from "../sessions/session-manager.js";
import { openSqliteStore } from "../store/sqlite-store.js";
import { PythonAnalyzer } from "../notebook/def-use.js";
import { NotebookService } from "../notebook/project-service.js";
import { InvalidArgumentError } from "../errors.js";
import { buildApp } from "./app.js";
import type { ServerDeps } from "./deps.js";
import { ServerMetrics } from "./metrics.js";
import { Slots } from "./slots.js";

const BWRAP = "/usr/bin/bwrap";

export interface StartServerOptions {
  version: string;
  /** Fastify's logger option (pino settings), or false for none. */
  logger?: object | false;
  /** Reports start-up facts meant for a person (where it listens, the first admin token). */
  notice?: (line: string) => void;
}

/** A running server; `close` is the graceful shutdown. */
export interface RunningServer {
  readonly url: string;
  readonly port: number;
  readonly app: FastifyInstance;
  /** The admin token made on this start (an empty data dir), else undefined. */
  readonly adminToken: string | undefined;
  close(): Promise<void>;
}

/**
 * Starts `runcell serve`: opens the store (closing what a previous, dead server left running),
 * prepares the sandboxes, the kernel pool and the one-shot runner, and listens. Everything it
 * starts is stopped by `close()`; a SIGKILLed server's kernels die with it (bubblewrap's
 * --die-with-parent and the spawn helper's parent-death signal).
 */
export async function startServer(config: ServerConfig, options: StartServerOptions): Promise<RunningServer> {
  const notice = options.notice ?? (() => undefined);
  const startedAt = performance.now();
  const base = loadConfig(process.env);
  if (config.sandbox === "bwrap" && !existsSync(BWRAP)) {
    throw new InvalidArgumentError(
      "SANDBOX_UNAVAILABLE",
      "bubblewrap is not installed, so kernels cannot be confined: install it (apt-get install bubblewrap), " +
        "or start with --sandbox none (trusted code only)",
    );
  }
  // The spawn helper forks once, while this process is still small.
  await startSpawnHelper().catch(() => false);

  const store = openSqliteStore(config.data_dir);
  const now = new Date().toISOString();
  const closedSessions = store.sessions.endAllLive("server_restarted", now);
  const failed = store.executions.failUnfinished(
    `the server stopped while this execution ran (restarted at ${now}); its kernel and state are gone`,
    now,
  );
  const blocksFailed = store.blocks.failRunning(
    `the server stopped while this block ran (restarted at ${now}); run it again`,
  );
  if (closedSessions || failed || blocksFailed)
    notice(
      `closed ${closedSessions} sessions, ${failed} executions and ${blocksFailed} running blocks left by the previous run`,
    );
  let adminToken: string | undefined;
  if (store.users.count() === 0) {
    const admin = store.users.ensure("admin", { admin: true });
    adminToken = store.tokens.create(admin.id).token;
  }
  const workspacesDir = join(config.data_dir, "workspaces");
  await rm(workspacesDir, { recursive: true, force: true });
  await mkdir(workspacesDir, { recursive: true, mode: 0o711 });

  await prepareRuntimeDir(base.runtimeDir, { sandboxed: config.sandbox === "bwrap" });
  const detected = config.sandbox === "bwrap" ? await detectCgroups().catch(() => null) : null;
  const cgroups = detected?.support.version === "none" ? null : detected;
  const sandboxes = new SandboxFactory({ mode: config.sandbox, cgroups, runtimeDir: base.runtimeDir });
  const kernels = KernelManager.fromConfig(base, new HostSandbox());

  const l = config.limits;
  const defaults: ResourceLimits = {
    ...DEFAULT_LIMITS,
    timeMs: l.time_ms,
    memoryBytes: l.memory_bytes,
    pids: l.pids,
    outputBytes: l.output_bytes,
  };
  const ceilings: ResourceLimits = {
    ...DEFAULT_CEILINGS,
    timeMs: l.max_time_ms,
    cpuMs: Math.max(DEFAULT_CEILINGS.cpuMs, l.max_time_ms),
    memoryBytes: l.max_memory_bytes,
    pids: l.max_pids,
    outputBytes: l.max_output_bytes,
  };
  for (const key of ["timeMs", "memoryBytes", "pids", "outputBytes"] as const) {
    if (defaults[key] > ceilings[key]) {
      throw new InvalidArgumentError(
        "INVALID_CONFIG",
        `limits: the default ${key} (${defaults[key]}) is above its ceiling (${ceilings[key]})`,
      );
    }
  }

  // Filled in below, once the parts they observe exist.
  const late: { metrics?: ServerMetrics; log?: FastifyInstance["log"] } = {};
  const log = new ExecutionLog({
    sink: {
      save: (userId, execution, events) => {
        store.executions.save(userId, execution, events);
        if (events) late.metrics?.execution("session", execution);
      },
    },
  });
  const launcher = new KernelLauncher({
    manager: kernels,
    sandboxes,
    workspacesDir,
    ceilings,
    startTimeoutMs: config.sessions.kernel_start_timeout_ms,
    startupTimeoutMs: defaults.timeMs,
    outputBytes: defaults.outputBytes,
    maxQueued: config.sessions.max_queued,
  });
  const profileOf = (p: {
    kernel: string;
    mode: "read_only" | "write_access";
    startup_code: string;
  }): KernelProfile => ({
    kernel: p.kernel,
    mode: p.mode,
    network: false,
    startupCode: p.startup_code,
    memoryBytes: defaults.memoryBytes,
    pids: defaults.pids,
    env: {},
  });
  const poolProfiles = [
    {
      profile: profileOf({ kernel: "python3", mode: "write_access", startup_code: "" }),
      size: config.pool.size,
    },
    ...config.pool.profiles.map((p) => ({ profile: profileOf(p), size: p.size })),
  ].filter((p) => p.size > 0);
  const pool =
    poolProfiles.length > 0
      ? new KernelPool({
          launcher,
          profiles: poolProfiles,
          maxAgeMs: config.pool.max_age_ms,
          healthIntervalMs: config.pool.health_interval_ms,
          onError: (error, profile) =>
            late.log?.error(
              { err: error, kernel: profile.kernel, mode: profile.mode },
              "a pooled kernel failed to start",
            ),
        })
      : null;
  const sessions = new SessionManager({
    store,
    kernels,
    launcher,
    pool,
    log,
    defaults,
    ceilings,
    idleTimeoutMs: config.sessions.idle_timeout_ms,
    maxPerUser: config.sessions.max_per_user,
    maxTotal: config.sessions.max_total,
    maxQueued: config.sessions.max_queued,
    maxCodeBytes: config.max_code_bytes,
    onEnded: (info) => late.log?.info({ session: info.id, reason: info.end_reason }, "session ended"),
  });

  const analyzer = new PythonAnalyzer({ python: defaultInterpreters().python });
  const notebooks = new NotebookService({ store, sessions, analyzer });

  const runnerDefaults: ResourceLimits = {
    ...DEFAULT_LIMITS,
    timeMs: defaults.timeMs,
    outputBytes: defaults.outputBytes,
  };
  const warm =
    config.oneshot.warm && cgroups
      ? new WarmPool({
          sandboxes,
          cgroups,
          runtimeDir: base.runtimeDir,
          python: defaultInterpreters().python,
          standbyLimits: runnerDefaults,
        })
      : undefined;
  const runner = new Runner({
    sandboxes,
    runtimeDir: base.runtimeDir,
    warm,
    ceilings,
    defaults: runnerDefaults,
    maxCodeBytes: config.max_code_bytes,
  });
  const oneshotSlots = new Slots(config.oneshot.max_concurrent, config.oneshot.max_waiting);
  const metrics = new ServerMetrics({
    sessions: () => sessions.size,
    kernelsAlive: () => sessions.size + (pool?.readyCount ?? 0),
    pool: () => pool?.stats() ?? [],
    sessionQueueDepth: () => sessions.queueDepth,
    oneshotRunning: () => oneshotSlots.running,
    oneshotWaiting: () => oneshotSlots.waiting,
  });

  let closing = false;
  const deps: ServerDeps = {
    config,
    store,
    sessions,
    notebooks,
    log,
    kernels,
    runner,
    oneshotSlots,
    metrics,
    pool,
    version: options.version,
    startedAt,
    closing: () => closing,
  };
  const app = await buildApp(deps, options.logger ?? false);
  late.log = app.log;
  late.metrics = metrics;
  pool?.start();
  sessions.startCulling();
  warm
    ?.warm("default")
    .catch((error: unknown) => app.log.warn({ err: error }, "warm one-shot interpreters unavailable"));

  let address: string;
  try {
    address = await app.listen({ host: config.host, port: config.port });
  } catch (error) {
    await Promise.all([pool?.dispose(), warm?.dispose(), analyzer.dispose()]);
    store.close();
    const code = (error as NodeJS.ErrnoException).code;
    throw new InvalidArgumentError(
      "LISTEN_FAILED",
      code === "EADDRINUSE"
        ? `port ${config.port} on ${config.host} is in use: pass another --port (0 picks a free one)`
        : `cannot listen on ${config.host}:${config.port}: ${(error as Error).message}`,
    );
  }
  const port = (app.server.address() as { port: number }).port;
  const url = `http://${config.host.includes(":") ? `[${config.host}]` : config.host}:${port}`;
  void address;

  let closed: Promise<void> | undefined;
  return {
    url,
    port,
    app,
    adminToken,
    close: () =>
      (closed ??= (async () => {
        closing = true;
        await sessions.shutdown(config.shutdown_grace_ms);
        await Promise.all([pool?.dispose(), warm?.dispose(), runner.settle(), analyzer.dispose()]);
        await app.close();
        await kernels.disposeAll();
        store.close();
      })()),
  };
}
