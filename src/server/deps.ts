import type { ServerConfig } from "../config/server-config.js";
import type { ExecutionLog } from "../execution/execution-log.js";
import type { KernelManager } from "../kernels/kernel-manager.js";
import type { NotebookService } from "../notebook/project-service.js";
import type { Runner } from "../runner/runner.js";
import type { KernelPool } from "../sessions/kernel-pool.js";
import type { SessionManager } from "../sessions/session-manager.js";
import type { Store } from "../store/types.js";
import type { ServerMetrics } from "./metrics.js";
import type { Slots } from "./slots.js";

/** What the HTTP routes work with; built once by the server runtime. */
export interface ServerDeps {
  config: ServerConfig;
  store: Store;
  sessions: SessionManager;
  notebooks: NotebookService;
  log: ExecutionLog;
  kernels: KernelManager;
  runner: Runner;
  oneshotSlots: Slots;
  metrics: ServerMetrics;
  pool: KernelPool | null;
  version: string;
  /** performance.now() at start. */
  startedAt: number;
  /** True once a graceful shutdown began: new work is refused with 503. */
  closing(): boolean;
}
