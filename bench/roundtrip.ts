import { join } from "node:path";
import { HostSandbox, KernelExecutor, KernelManager, loadConfig } from "../src/index.js";
import { SYSTEM_PYTHON } from "./env.js";
import { JsonLineProcess, onInterrupt } from "./proc.js";
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
  /** Measured executions are run in blocks of this many, alternating between the engines. */
  block: number;
  kernel: string;
  /** The repository root (where bench/ lives). */
  root: string;
  log: (line: string) => void;
}

/** One engine's measurements in one round: a fresh kernel, then every snippet in turn. */
export interface EngineRun {
  engine: Engine;
  round: number;
  /** 0 if this engine started its round (its kernel started first, it ran the first block). */
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

/** One engine with a live, warm kernel, able to time a batch of executions of a snippet. */
interface Driver {
  engine: Engine;
  kernelStartMs: number;
  versions?: Record<string, string>;
  /** Milliseconds per execution of `code`, `iterations` times in a row. */
  measure(code: string, iterations: number): Promise<number[]>;
  close(): Promise<void>;
}

/** runcell's engine in this process: KernelManager + KernelExecutor, timed until `execute` resolves. */
async function startRuncell(options: RoundtripOptions): Promise<Driver> {
  const manager = KernelManager.fromConfig(loadConfig(), new HostSandbox());
  const unregister = onInterrupt(() => manager.disposeAll());
  const close = async () => {
    await manager.disposeAll();
    unregister();
  };
  try {
    const startedAt = performance.now();
    const kernel = await manager.start({ name: options.kernel });
    const kernelStartMs = performance.now() - startedAt;
    const executor = new KernelExecutor(kernel);
    return {
      engine: "runcell",
      kernelStartMs,
      async measure(code, iterations) {
        const timings: number[] = [];
        for (let i = 0; i < iterations; i++) {
          const t0 = performance.now();
          const execution = await executor.execute(code);
          timings.push(performance.now() - t0);
          if (execution.status !== "completed") {
            throw new Error(
              `runcell: execution of ${JSON.stringify(code)} ended ${execution.status}: ` +
                `${execution.error?.name ?? ""} ${execution.error?.value ?? ""}`,
            );
          }
        }
        return timings;
      },
      async close() {
        await executor.dispose();
        await close();
      },
    };
  } catch (error) {
    await close();
    throw error;
  }
}

interface PythonAnswer {
  ok: boolean;
  error?: string;
  start_ms?: number;
  versions?: Record<string, string>;
  samples_ms?: number[];
}

function asAnswer(value: unknown): PythonAnswer {
  if (value === null || typeof value !== "object" || typeof (value as PythonAnswer).ok !== "boolean") {
    throw new Error(`jupyter_client: unexpected answer ${JSON.stringify(value)?.slice(0, 200)}`);
  }
  return value as PythonAnswer;
}

/** jupyter_client's BlockingKernelClient, in a /usr/bin/python3 process serving measurement requests. */
async function startJupyterClient(options: RoundtripOptions): Promise<Driver> {
  const script = join(options.root, "bench/jupyter_client_roundtrip.py");
  const child = new JsonLineProcess([SYSTEM_PYTHON, script, "--serve", "--kernel", options.kernel], {
    cwd: options.root,
    // The same kernel environment tweak runcell applies (silences debugpy's start-up warning).
    env: { ...process.env, PYDEVD_DISABLE_FILE_VALIDATION: "1" },
  });
  const quit = { quit: true };
  try {
    const ready = asAnswer(await child.next(90_000));
    if (!ready.ok || typeof ready.start_ms !== "number") {
      throw new Error(`jupyter_client: kernel start failed: ${ready.error ?? "no start time"}`);
    }
    return {
      engine: "jupyter_client",
      kernelStartMs: ready.start_ms,
      versions: ready.versions,
      async measure(code, iterations) {
        const answer = asAnswer(await child.request({ code, iterations }, 30_000 + iterations * 1000));
        if (!answer.ok || answer.samples_ms?.length !== iterations) {
          throw new Error(`jupyter_client: ${answer.error ?? "wrong number of samples"}`);
        }
        return answer.samples_ms;
      },
      close: () => child.close(quit),
    };
  } catch (error) {
    await child.close(quit);
    throw new Error(`jupyter_client: ${(error as Error).message}`, { cause: error });
  }
}

const STARTERS: Record<Engine, (options: RoundtripOptions) => Promise<Driver>> = {
  runcell: startRuncell,
  jupyter_client: startJupyterClient,
};

/**
 * One round: a fresh kernel per engine, then for each snippet a warm-up on both and the
 * measured executions in alternating blocks (A B B A A B…), never two engines at once.
 */
async function runRound(options: RoundtripOptions, round: number): Promise<EngineRun[]> {
  const order: Engine[] = round % 2 === 0 ? ["runcell", "jupyter_client"] : ["jupyter_client", "runcell"];
  const drivers: Driver[] = [];
  try {
    for (const engine of order) drivers.push(await STARTERS[engine](options));
    const slots = drivers.map((driver) => ({ driver, samples: {} as Record<string, number[]> }));
    for (const code of options.snippets) {
      options.log(
        `round trip: round ${round + 1}/${options.rounds}, ${JSON.stringify(code)}: ` +
          `${options.warmup} warm-up + ${options.iterations} measured per engine, in blocks of ${options.block}`,
      );
      for (const { driver } of slots) await driver.measure(code, options.warmup);
      const measured = slots.map((slot) => {
        slot.samples[code] = [];
        return { driver: slot.driver, into: slot.samples[code] };
      });
      for (let done = 0, block = 0; done < options.iterations; block++) {
        const count = Math.min(options.block, options.iterations - done);
        for (const { driver, into } of block % 2 === 0 ? measured : [...measured].reverse()) {
          into.push(...(await driver.measure(code, count)));
        }
        done += count;
      }
    }
    return slots.map(({ driver, samples }, position): EngineRun => {
      const run: EngineRun = {
        engine: driver.engine,
        round,
        position,
        kernel_start_ms: driver.kernelStartMs,
        samples_ms: samples,
      };
      if (driver.versions) run.versions = driver.versions;
      return run;
    });
  } finally {
    for (const driver of drivers.reverse()) {
      await driver.close().catch((error: Error) => options.log(`closing ${driver.engine}: ${error.message}`));
    }
  }
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
 * Runs `rounds` rounds. Only one engine executes at any moment (they would otherwise compete for
 * the CPUs); interleaving blocks spreads slow drifts in background load evenly over both, and
 * the engine that starts each round alternates.
 */
export async function runRoundtrip(options: RoundtripOptions): Promise<RoundtripResult> {
  const runs: EngineRun[] = [];
  for (let round = 0; round < options.rounds; round++) runs.push(...(await runRound(options, round)));
  return analyzeRoundtrip(runs, options.snippets);
}
