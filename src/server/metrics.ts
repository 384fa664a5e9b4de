import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { Execution } from "../execution/types.js";

/** Live figures read at scrape time. */
export interface MetricSources {
  sessions(): number;
  kernelsAlive(): number;
  pool(): Array<{ kernel: string; mode: string; ready: number; starting: number }>;
  sessionQueueDepth(): number;
  oneshotRunning(): number;
  oneshotWaiting(): number;
}

/** The server's Prometheus metrics, all prefixed `runcell_`. */
export class ServerMetrics {
  readonly registry = new Registry();
  readonly #executions: Counter<"kind" | "status" | "language">;
  readonly #duration: Histogram<"kind">;
  readonly #requests: Counter<"method" | "route" | "status_code">;
  readonly #requestDuration: Histogram<"method" | "route">;

  constructor(sources: MetricSources) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: "runcell_" });
    this.#executions = new Counter({
      name: "runcell_executions_total",
      help: "Finished executions by kind (session or oneshot), status and language",
      labelNames: ["kind", "status", "language"],
      registers,
    });
    this.#duration = new Histogram({
      name: "runcell_execution_duration_seconds",
      help: "Duration of finished executions, from start to finish",
      labelNames: ["kind"],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers,
    });
    this.#requests = new Counter({
      name: "runcell_http_requests_total",
      help: "HTTP requests by method, route and status code",
      labelNames: ["method", "route", "status_code"],
      registers,
    });
    this.#requestDuration = new Histogram({
      name: "runcell_http_request_duration_seconds",
      help: "Time to answer HTTP requests (streams: until the headers)",
      labelNames: ["method", "route"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30],
      registers,
    });
    new Gauge({
      name: "runcell_sessions_active",
      help: "Live sessions",
      registers,
      collect() {
        this.set(sources.sessions());
      },
    });
    new Gauge({
      name: "runcell_kernels_alive",
      help: "Kernel processes alive (sessions' and the pool's)",
      registers,
      collect() {
        this.set(sources.kernelsAlive());
      },
    });
    new Gauge({
      name: "runcell_pool_kernels",
      help: "Pre-started kernels per pool profile and state",
      labelNames: ["kernel", "mode", "state"],
      registers,
      collect() {
        this.reset();
        for (const p of sources.pool()) {
          this.set({ kernel: p.kernel, mode: p.mode, state: "ready" }, p.ready);
          this.set({ kernel: p.kernel, mode: p.mode, state: "starting" }, p.starting);
        }
      },
    });
    new Gauge({
      name: "runcell_queue_depth",
      help: "Executions waiting: behind a session's running one, or for a one-shot slot",
      labelNames: ["kind"],
      registers,
      collect() {
        this.set({ kind: "session" }, sources.sessionQueueDepth());
        this.set({ kind: "oneshot" }, sources.oneshotWaiting());
      },
    });
    new Gauge({
      name: "runcell_oneshot_running",
      help: "One-shot runs under way",
      registers,
      collect() {
        this.set(sources.oneshotRunning());
      },
    });
  }

  execution(kind: "session" | "oneshot", execution: Execution): void {
    this.#executions.inc({ kind, status: execution.status, language: execution.language });
    if (execution.duration_ms !== null) this.#duration.observe({ kind }, execution.duration_ms / 1000);
  }

  request(method: string, route: string, statusCode: number, seconds: number): void {
    this.#requests.inc({ method, route, status_code: String(statusCode) });
    this.#requestDuration.observe({ method, route }, seconds);
  }
}
