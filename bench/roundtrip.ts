import { join } from "node:path";
import { HostSandbox, KernelExecutor, KernelManager, loadConfig } from "../src/index.js";
import { SYSTEM_PYTHON } from "./env.js";
import { describeFailure, onInterrupt, runProcess } from "./proc.js";
import { geomean, median, round, roundSummary, type Summary, summarize } from "./stats.js";

/** The snippets timed: no output, an expression result, and a stream write. */
export const SNIPPETS: readonly string[] = ["pass", "1+1", 'print("x")'];

export type Engine = "runcell" | "jupyter_client";

export interface RoundtripOptions {
  snippets: readonly string[];
  /** Measured executions per snippet per round. */
  iterations: number;
  /** Unmeasured executions per snippet per round, before the measured ones. */
  warmup: number;
  /** Each round starts a fresh kernel per engine; the engine that goes first alternates. */
  rounds: number;
  kernel: string;
  /** The repository root (where bench/ lives). */
  root: string;
  log: (line: string) => void;
}

/** One engine's measurements in one round: a fresh kernel, then every snippet in turn. */
export interface EngineRun {
  engine: Engine;
  round: number;
  /** 0 if this engine ran first in its round, 1 if second. */
  position: number;
  kernel_start_ms: number;
  /** Milliseconds per measured execution, by snippet. */
  samples_ms: Record<string, number[]>;
  versions?: Record<string, string>;
}

export interface EngineSnippetStats {
  /** Median over rounds of each round's p50. */
  p50_ms: number;
  /** Median over rounds of each round's p95. */
  p95_ms: number;
  per_round: Summary[];
  /** All rounds' samples together. */
  pooled: Summary;
}

export interface SnippetResult {
  code: string;
  runcell: EngineSnippetStats;
  jupyter_client: EngineSnippetStats;
  /** runcell p50 / jupyter_client p50 (each the median over rounds). */
  p50_ratio: number;
  p95_ratio: number;
  /** The same ratio computed within each round, to show how stable it is. */
  per_round_p50_ratio: number[];
}

export interface RoundtripResult {
  snippets: SnippetResult[];
  /** Geometric mean of the per-snippet p50 ratios. */
  overall_p50_ratio: number;
  overall_p95_ratio: number;
  kernel_start_ms: Record<Engine, number[]>;
  runs: EngineRun[];
}

/** runcell's engine in this process: KernelManager + KernelExecutor, timed until `execute` resolves. */
async function measureRuncell(options: RoundtripOptions): Promise<Omit<EngineRun, "round" | "position">> {
  const manager = KernelManager.fromConfig(loadConfig(), new HostSandbox());
  const unregister = onInterrupt(() => manager.disposeAll());
  try {
    const startedAt = performance.now();
    const kernel = await manager.start({ name: options.kernel });
    const kernelStartMs = performance.now() - startedAt;
    const executor = new KernelExecutor(kernel);
    const samples: Record<string, number[]> = {};
    try {
      for (const code of options.snippets) {
        const run = async (): Promise<number> => {
          const t0 = performance.now();
          const execution = await executor.execute(code);
          const elapsed = performance.now() - t0;
          if (execution.status !== "completed") {
            throw new Error(
              `runcell: execution of ${JSON.stringify(code)} ended ${execution.status}: ` +
                `${execution.error?.name ?? ""} ${execution.error?.value ?? ""}`,
            );
          }
          return elapsed;
        };
        for (let i = 0; i < options.warmup; i++) await run();
        const timings: number[] = [];
        for (let i = 0; i < options.iterations; i++) timings.push(await run());
        samples[code] = timings;
      }
    } finally {
      await executor.dispose();
    }
    return { engine: "runcell", kernel_start_ms: kernelStartMs, samples_ms: samples };
  } finally {
    await manager.disposeAll();
    unregister();
  }
}

interface PythonReport {
  ok: boolean;
  start_ms: number;
  versions: Record<string, string>;
  samples_ms: Record<string, number[]>;
}

function isPythonReport(value: unknown): value is PythonReport {
  if (value === null || typeof value !== "object") return false;
  const report = value as Partial<PythonReport>;
  return report.ok === true && typeof report.start_ms === "number" && typeof report.samples_ms === "object";
}

/** jupyter_client's BlockingKernelClient, in a separate /usr/bin/python3 process. */
async function measureJupyterClient(
  options: RoundtripOptions,
): Promise<Omit<EngineRun, "round" | "position">> {
  const script = join(options.root, "bench/jupyter_client_roundtrip.py");
  const perRun = options.snippets.length * (options.iterations + options.warmup);
  const result = await runProcess(
    [
      SYSTEM_PYTHON,
      script,
      "--snippets",
      JSON.stringify(options.snippets),
      "--iterations",
      String(options.iterations),
      "--warmup",
      String(options.warmup),
      "--kernel",
      options.kernel,
    ],
    {
      cwd: options.root,
      // The same kernel environment tweak runcell applies (silences debugpy's start-up warning).
      env: { ...process.env, PYDEVD_DISABLE_FILE_VALIDATION: "1" },
      timeoutMs: 120_000 + perRun * 100,
    },
  );
  if (result.code !== 0) throw new Error(`jupyter_client: ${describeFailure(result)}`);
  const lastLine = result.stdout.trim().split("\n").pop() ?? "";
  let report: unknown;
  try {
    report = JSON.parse(lastLine);
  } catch {
    throw new Error(`jupyter_client: unreadable output: ${lastLine.slice(0, 200)}`);
  }
  if (!isPythonReport(report)) throw new Error(`jupyter_client: unexpected report: ${lastLine.slice(0, 200)}`);
  for (const code of options.snippets) {
    if (report.samples_ms[code]?.length !== options.iterations) {
      throw new Error(`jupyter_client: missing samples for ${JSON.stringify(code)}`);
    }
  }
  return {
    engine: "jupyter_client",
    kernel_start_ms: report.start_ms,
    samples_ms: report.samples_ms,
    versions: report.versions,
  };
}

function engineStats(runs: readonly EngineRun[], code: string): EngineSnippetStats {
  const perRound = runs.map((run) => summarize(run.samples_ms[code] ?? []));
  return {
    p50_ms: round(median(perRound.map((summary) => summary.p50))),
    p95_ms: round(median(perRound.map((summary) => summary.p95))),
    per_round: perRound.map((summary) => roundSummary(summary)),
    pooled: roundSummary(summarize(runs.flatMap((run) => run.samples_ms[code] ?? []))),
  };
}

/** Reduces the raw runs to per-snippet percentiles and runcell/jupyter_client ratios. */
export function analyzeRoundtrip(runs: readonly EngineRun[], snippets: readonly string[]): RoundtripResult {
  const byEngine = (engine: Engine) =>
    runs.filter((run) => run.engine === engine).sort((a, b) => a.round - b.round);
  const runcell = byEngine("runcell");
  const jupyter = byEngine("jupyter_client");
  const results = snippets.map((code): SnippetResult => {
    const ours = engineStats(runcell, code);
    const theirs = engineStats(jupyter, code);
    return {
      code,
      runcell: ours,
      jupyter_client: theirs,
      p50_ratio: round(ours.p50_ms / theirs.p50_ms),
      p95_ratio: round(ours.p95_ms / theirs.p95_ms),
      per_round_p50_ratio: ours.per_round.map((summary, index) =>
        round(summary.p50 / (theirs.per_round[index]?.p50 ?? Number.NaN)),
      ),
    };
  });
  return {
    snippets: results,
    overall_p50_ratio: round(geomean(results.map((result) => result.p50_ratio))),
    overall_p95_ratio: round(geomean(results.map((result) => result.p95_ratio))),
    kernel_start_ms: {
      runcell: runcell.map((run) => Math.round(run.kernel_start_ms)),
      jupyter_client: jupyter.map((run) => Math.round(run.kernel_start_ms)),
    },
    runs: runs.map((run) => ({
      ...run,
      kernel_start_ms: round(run.kernel_start_ms, 1),
      samples_ms: Object.fromEntries(
        Object.entries(run.samples_ms).map(([code, samples]) => [code, samples.map((ms) => round(ms))]),
      ),
    })),
  };
}

/**
 * Runs both engines `rounds` times, one after the other (never concurrently: they would
 * compete for the CPUs), alternating which goes first so neither always inherits the other's
 * leftovers (page cache, CPU frequency, background load).
 */
export async function runRoundtrip(options: RoundtripOptions): Promise<RoundtripResult> {
  const runs: EngineRun[] = [];
  for (let round = 0; round < options.rounds; round++) {
    const order: Engine[] = round % 2 === 0 ? ["runcell", "jupyter_client"] : ["jupyter_client", "runcell"];
    for (const [position, engine] of order.entries()) {
      options.log(
        `round trip: round ${round + 1}/${options.rounds}, ${engine} ` +
          `(${options.snippets.length} snippets × ${options.iterations} + ${options.warmup} warm-up)`,
      );
      const run = engine === "runcell" ? await measureRuncell(options) : await measureJupyterClient(options);
      runs.push({ ...run, round, position });
    }
  }
  return analyzeRoundtrip(runs, options.snippets);
}
