/**
 * runcell's benchmark suite: runcell against the reference Jupyter tooling, side by side on the
 * same machine in one run.
 *
 *   roundtrip  warm execute round trip through KernelExecutor vs jupyter_client's BlockingKernelClient
 *   notebook   wall clock of `runcell run` vs `python3 -m nbconvert --execute` on a generated notebook
 *   oneshot    Runner.runOnce (one-shot sandboxed runs) vs spawning bubblewrap and python directly:
 *              latency, throughput with concurrent clients, and a cold `import pandas`
 *   server     `runcell serve` over HTTP vs Jupyter Server's kernel WebSocket (stock and with
 *              TCP_NODELAY): warm execute, session create + first execute, one-shot runs, a load run
 *
 * Prints tables and the ratios against the goals, and writes bench/results/<timestamp>.json.
 * Usage: npx tsx bench/run.ts [--quick] [--only roundtrip|notebook|oneshot|spawn|server] [--help]
 */
import { mkdir, writeFile } from "node:fs/promises";
import os from "node:os";
import { join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { collectEnvironment, type Environment } from "./env.js";
import { type NotebookResult, runNotebookBench } from "./notebook.js";
import { type OneshotResult, type PerEngine, runOneshotBench } from "./oneshot.js";
import { installSignalHandlers, wasInterrupted } from "./proc.js";
import { type RoundtripResult, runRoundtrip, SNIPPETS } from "./roundtrip.js";
import { type EngineLatency as ServerLatency, runServerBench, type ServerResult } from "./server.js";
import { runSpawnBench, type SpawnResult } from "./spawn.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const SECTIONS = ["roundtrip", "notebook", "oneshot", "spawn", "server"] as const;
type Section = (typeof SECTIONS)[number];

/** runcell p50 / jupyter_client p50 must be at most this. */
const ROUNDTRIP_GOAL = 0.95;
/** runcell wall / nbconvert wall must be at most this. */
const NOTEBOOK_GOAL = 0.5;
/** runcell one-shot p50 / direct bubblewrap spawn p50 must be at most this. */
const ONESHOT_GOAL = 0.35;
/** runcell runs/s / direct bubblewrap spawn runs/s must be at least this. */
const THROUGHPUT_GOAL = 3;
/** runcell `import pandas` p50 / cold sandboxed spawn p50 must be at most this. */
const PANDAS_GOAL = 0.05;
/** runcell serve's warm execute p50 / Jupyter Server's (TCP_NODELAY on its WebSockets) must be at most this. */
const SERVER_EXECUTE_GOAL = 1.0;
/** The same against Jupyter Server as shipped (Nagle's algorithm on). */
const SERVER_EXECUTE_STOCK_GOAL = 0.1;
/** runcell session create + first execute p50 (from its pool) / a cold Jupyter Server kernel's must be at most this. */
const SERVER_CREATE_GOAL = 0.1;
/** runcell serve's one-shot p50 over HTTP / direct bubblewrap spawn p50 must be at most this. */
const SERVER_ONESHOT_GOAL = 0.35;
/** Failed requests allowed in the load run. */
const SERVER_LOAD_ERRORS_GOAL = 0;

const USAGE = `usage: npx tsx bench/run.ts [options]   (or: make bench ARGS="...")

  --quick              fewer iterations, rounds and runs (a smoke test of the suite, noisy numbers)
  --only SECTION       roundtrip | notebook | oneshot | spawn | server (comma-separated; default: all)
  --rounds N           round-trip rounds, each with fresh kernels (default 3, quick 1)
  --iterations N       measured executions per snippet per round, and per engine of the server's
                       warm execute (default 500, quick 100)
  --warmup N           warm-up executions per snippet per round / server engine (default 50, quick 10)
  --block N            measured executions per block; blocks alternate between engines (default 50, quick 25)
  --runs N             measured notebook runs per engine (default 5, quick 2)
  --cells N            cells in the generated notebook (default 40)
  --kernel NAME        kernelspec to use (default python3)
  --cli PATH           runcell's CLI for the notebook and server sections (default dist/cli/main.js)
  --oneshot-runs N     measured one-shot print(1+1) runs per engine, oneshot and server sections (default 200, quick 40)
  --oneshot-block N    one-shot runs per block; blocks rotate between engines (default 20, quick 10)
  --throughput-runs N  runs per engine in the throughput test (default 400, quick 60)
  --clients N          concurrent clients in the throughput test (default 2)
  --pandas-runs N      measured \`import pandas\` runs per engine, 0 to skip (default 20, quick 5)
  --spawn-runs N       child-process starts per strategy and memory size (default 100, quick 20)
  --create-runs N      server: measured session creations + first execute per engine (default 20, quick 5)
  --load-sessions N    server load run: sessions (default 10)
  --load-clients N     server load run: concurrent clients, spread evenly over the sessions (default 50)
  --load-executes N    server load run: executes of 1+1 per client (default 40, quick 10)
  -h, --help           this text`;

interface BenchOptions {
  quick: boolean;
  sections: Section[];
  rounds: number;
  iterations: number;
  warmup: number;
  block: number;
  notebookRuns: number;
  notebookWarmup: number;
  cells: number;
  kernel: string;
  cli: string;
  oneshotRuns: number;
  oneshotWarmup: number;
  oneshotBlock: number;
  throughputRuns: number;
  clients: number;
  pandasRuns: number;
  spawnRuns: number;
  createRuns: number;
  loadSessions: number;
  loadClients: number;
  loadExecutes: number;
}

function positiveInt(name: string, value: string | undefined, fallback: number, min = 1): number {
  if (value === undefined) return fallback;
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < min) throw new Error(`--${name} needs an integer ≥ ${min}`);
  return parsed;
}

function parseOptions(argv: string[]): BenchOptions | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: "boolean", default: false },
      only: { type: "string" },
      rounds: { type: "string" },
      iterations: { type: "string" },
      warmup: { type: "string" },
      block: { type: "string" },
      runs: { type: "string" },
      cells: { type: "string" },
      kernel: { type: "string", default: "python3" },
      cli: { type: "string" },
      "oneshot-runs": { type: "string" },
      "oneshot-block": { type: "string" },
      "throughput-runs": { type: "string" },
      clients: { type: "string" },
      "pandas-runs": { type: "string" },
      "spawn-runs": { type: "string" },
      "create-runs": { type: "string" },
      "load-sessions": { type: "string" },
      "load-clients": { type: "string" },
      "load-executes": { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) return undefined;
  const quick = values.quick ?? false;
  const sections = (values.only ?? SECTIONS.join(","))
    .split(",")
    .map((name) => name.trim())
    .filter(Boolean);
  for (const name of sections) {
    if (!(SECTIONS as readonly string[]).includes(name)) {
      throw new Error(`--only: unknown section ${JSON.stringify(name)} (choose from ${SECTIONS.join(", ")})`);
    }
  }
  return {
    quick,
    sections: sections as Section[],
    rounds: positiveInt("rounds", values.rounds, quick ? 1 : 3),
    iterations: positiveInt("iterations", values.iterations, quick ? 100 : 500),
    warmup: positiveInt("warmup", values.warmup, quick ? 10 : 50, 0),
    block: positiveInt("block", values.block, quick ? 25 : 50),
    notebookRuns: positiveInt("runs", values.runs, quick ? 2 : 5),
    notebookWarmup: 1,
    cells: positiveInt("cells", values.cells, 40),
    kernel: values.kernel ?? "python3",
    cli: resolve(values.cli ?? join(ROOT, "dist/cli/main.js")),
    oneshotRuns: positiveInt("oneshot-runs", values["oneshot-runs"], quick ? 40 : 200),
    oneshotWarmup: quick ? 2 : 5,
    oneshotBlock: positiveInt("oneshot-block", values["oneshot-block"], quick ? 10 : 20),
    throughputRuns: positiveInt("throughput-runs", values["throughput-runs"], quick ? 60 : 400),
    clients: positiveInt("clients", values.clients, 2),
    pandasRuns: positiveInt("pandas-runs", values["pandas-runs"], quick ? 5 : 20, 0),
    spawnRuns: positiveInt("spawn-runs", values["spawn-runs"], quick ? 20 : 100),
    createRuns: positiveInt("create-runs", values["create-runs"], quick ? 5 : 20),
    loadSessions: positiveInt("load-sessions", values["load-sessions"], 10),
    loadClients: positiveInt("load-clients", values["load-clients"], 50),
    loadExecutes: positiveInt("load-executes", values["load-executes"], quick ? 10 : 40),
  };
}

function log(line: string): void {
  process.stderr.write(`[bench] ${line}\n`);
}

/** Left-aligns the first column and right-aligns the others. */
function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows) {
    for (const [i, cell] of row.entries()) widths[i] = Math.max(widths[i] ?? 0, cell.length);
  }
  return rows
    .map((row) =>
      row
        .map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0)))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

const ms = (value: number): string => value.toFixed(2);
const ratio = (value: number): string => (Number.isFinite(value) ? value.toFixed(2) : "n/a");
const verdict = (value: number, goal: number): "PASS" | "MISS" => (value <= goal ? "PASS" : "MISS");
const verdictAtLeast = (value: number, goal: number): "PASS" | "MISS" => (value >= goal ? "PASS" : "MISS");

function printEnvironment(env: Environment): void {
  const python =
    "error" in env.python
      ? `python unavailable (${env.python.error})`
      : `python ${env.python.python} (jupyter_client ${env.python.jupyter_client}, ipykernel ${env.python.ipykernel}, ` +
        `nbconvert ${env.python.nbconvert}, pyzmq ${env.python.zmq})`;
  console.log(
    `runcell ${env.runcell ?? "?"} bench: ${env.cpu_count} CPUs (${env.cpu_model}), load ${env.load_average_at_start.join(" ")}\n` +
      `node ${env.node} (zeromq.js ${env.zeromq_js ?? "?"}), ${python}`,
  );
}

function printRoundtrip(result: RoundtripResult, options: BenchOptions): void {
  console.log(
    `\n== Warm execute round trip, ms: ${options.rounds} round(s) × ${options.iterations} executions ` +
      `(+${options.warmup} warm-up) per snippet per engine ==`,
  );
  console.log(
    `   fresh kernels each round; engines take turns in blocks of ${options.block}, never running at once\n` +
      "   values are the median over rounds of each round's percentile; ratio = runcell / jupyter_client\n",
  );
  const rows = [
    ["snippet", "runcell p50", "p95", "jupyter_client p50", "p95", "p50 ratio", "p95 ratio", "goal"],
  ];
  for (const snippet of result.snippets) {
    rows.push([
      snippet.code,
      ms(snippet.runcell.p50_ms),
      ms(snippet.runcell.p95_ms),
      ms(snippet.jupyter_client.p50_ms),
      ms(snippet.jupyter_client.p95_ms),
      ratio(snippet.p50_ratio),
      ratio(snippet.p95_ratio),
      `${verdict(snippet.p50_ratio, ROUNDTRIP_GOAL)} (≤ ${ROUNDTRIP_GOAL})`,
    ]);
  }
  rows.push([
    "overall (geomean)",
    "",
    "",
    "",
    "",
    ratio(result.overall_p50_ratio),
    ratio(result.overall_p95_ratio),
    `${verdict(result.overall_p50_ratio, ROUNDTRIP_GOAL)} (≤ ${ROUNDTRIP_GOAL})`,
  ]);
  console.log(table(rows));
  if (options.rounds > 1) {
    console.log(
      `\n   p50 ratio per round: ${result.snippets
        .map((snippet) => `${snippet.code} ${snippet.per_round_p50_ratio.map(ratio).join(" ")}`)
        .join(" | ")}`,
    );
  }
  const starts = (values: number[]) => values.map((value) => `${value}`).join(", ");
  console.log(
    `   kernel start, ms: runcell ${starts(result.kernel_start_ms.runcell)}; ` +
      `jupyter_client ${starts(result.kernel_start_ms.jupyter_client)}`,
  );
}

function printNotebook(result: NotebookResult): void {
  console.log(
    `\n== Notebook of ${result.cells} cells, wall clock in s: ${result.runs} run(s) per engine after ` +
      `${result.warmup} warm-up, alternating order ==\n`,
  );
  const engines = [
    ["runcell", result.runcell],
    ["nbconvert", result.nbconvert],
  ] as const;
  const rows = [["engine", "median", "min", "max", "runs"]];
  for (const [name, engine] of engines) {
    const { summary, median_ms: median } = engine;
    rows.push(
      engine.available && summary && median !== null
        ? [
            name,
            (median / 1000).toFixed(3),
            (summary.min / 1000).toFixed(3),
            (summary.max / 1000).toFixed(3),
            String(summary.n),
          ]
        : [name, "not available", "", "", ""],
    );
  }
  console.log(table(rows));
  for (const [name, engine] of engines) if (engine.command) console.log(`   ${name}: ${engine.command}`);
  for (const [name, engine] of engines) {
    if (engine.error) console.log(`\n   ${name} not available: ${engine.error.replaceAll("\n", "\n     ")}`);
  }
  if (result.warning) console.log(`\n   warning: ${result.warning}`);
  if (result.ratio !== null) {
    console.log(
      `\n   ratio runcell/nbconvert: ${ratio(result.ratio)} (goal ≤ ${NOTEBOOK_GOAL}) ${verdict(result.ratio, NOTEBOOK_GOAL)}`,
    );
  }
}

/** The rows of the one-shot tables: runcell's engines (the cold one only if shown), then the spawns. */
function oneshotRows<T>(
  engines: PerEngine<T>,
  runcellPath: string,
): Array<{ name: string; value: T; engine: keyof PerEngine<T> }> {
  const rows: Array<{ name: string; value: T; engine: keyof PerEngine<T> }> = [
    { name: `runcell (${runcellPath})`, value: engines.runcell, engine: "runcell" },
  ];
  if (engines.runcell_cold !== null) {
    rows.push({ name: "runcell (cold)", value: engines.runcell_cold, engine: "runcell_cold" });
  }
  rows.push({ name: "bwrap", value: engines.bwrap, engine: "bwrap" });
  rows.push({ name: "python", value: engines.python, engine: "python" });
  return rows;
}

function printOneshot(result: OneshotResult): void {
  const { latency, throughput, pandas, runner } = result;
  const cgroups = runner.cgroups.in_use
    ? `cgroups ${runner.cgroups.version} (${[runner.cgroups.memory && "memory", runner.cgroups.pids && "pids"]
        .filter(Boolean)
        .join(", ")})`
    : "no cgroups";
  const pool = runner.warm_pool;
  console.log(
    `\n== One-shot ${result.code}, ms: ${latency.runs} sequential runs per engine (+${latency.warmup} warm-up), ` +
      `in blocks of ${latency.block} that rotate between the engines ==`,
  );
  const hasCold = latency.engines.runcell_cold !== null;
  console.log(
    `   runcell: Runner.runOnce, sandboxes built as the CLI builds them (bubblewrap + ${cgroups} + rlimits)\n` +
      (pool.in_use
        ? `     (${latency.runner.path}): with a warm pool (fork server started in ${pool.start_ms.default ?? "?"} ms; ` +
          `${latency.runner.warm_runs} of ${latency.runner.runs} runs served warm)\n` +
          "     (cold): without one, a fresh sandboxed interpreter per run (the CLI's Runner)\n"
        : `     (${latency.runner.path}): no warm pool: ${pool.error ?? "?"}\n`) +
      `   bwrap:  ${result.commands.bwrap}\n` +
      `   python: ${result.commands.python}\n` +
      "   each sample: from just before the run starts until it has exited and its output is collected\n",
  );
  const rows = [["engine", "p50", "p95", "min", "mean", "runs"]];
  for (const { name, value } of oneshotRows(latency.engines, latency.runner.path)) {
    const { summary } = value;
    rows.push([name, ms(summary.p50), ms(summary.p95), ms(summary.min), ms(summary.mean), String(summary.n)]);
  }
  console.log(table(rows));
  console.log(
    `\n   runcell's own Execution.duration_ms: p50 ${ms(latency.runcell_duration_ms.p50)}, ` +
      `p95 ${ms(latency.runcell_duration_ms.p95)}\n` +
      `   ratio runcell/bwrap p50: ${ratio(latency.p50_ratio_vs_bwrap)} (goal ≤ ${ONESHOT_GOAL}) ` +
      `${verdict(latency.p50_ratio_vs_bwrap, ONESHOT_GOAL)}; p95: ${ratio(latency.p95_ratio_vs_bwrap)}; ` +
      `runcell/python p50: ${ratio(latency.p50_ratio_vs_python)}` +
      (hasCold ? `; runcell (cold)/bwrap p50: ${ratio(latency.cold_p50_ratio_vs_bwrap ?? Number.NaN)}` : ""),
  );

  console.log(
    `\n== Throughput of ${result.code}: ${throughput.runs} runs per engine, ${throughput.clients} concurrent ` +
      "clients each running its share back to back; engines take turns ==\n",
  );
  const throughputRows = [["engine", "runs/s", "wall s", "runs"]];
  for (const { name, value } of oneshotRows(throughput.engines, throughput.runner.path)) {
    throughputRows.push([
      name,
      value.runs_per_s.toFixed(1),
      (value.wall_ms / 1000).toFixed(2),
      String(value.runs),
    ]);
  }
  console.log(table(throughputRows));
  console.log(
    `\n   ratio runcell/bwrap runs/s: ${ratio(throughput.ratio_vs_bwrap)} (goal ≥ ${THROUGHPUT_GOAL}) ` +
      `${verdictAtLeast(throughput.ratio_vs_bwrap, THROUGHPUT_GOAL)}; ` +
      `runcell/python: ${ratio(throughput.ratio_vs_python)}` +
      (hasCold ? `; runcell (cold)/bwrap: ${ratio(throughput.cold_ratio_vs_bwrap ?? Number.NaN)}` : "") +
      `\n   runcell runs served warm: ${throughput.runner.warm_runs} of ${throughput.runner.runs}`,
  );

  if (!pandas.available) {
    console.log(`\n== import pandas: not available ==\n   ${pandas.error}`);
    return;
  }
  console.log(
    `\n== import pandas; print(pandas.__version__) (pandas ${pandas.version}), ms: ${pandas.runs} runs per ` +
      `engine (+${pandas.warmup} warm-up), in blocks of ${pandas.block} ==`,
  );
  const profileStart = pandas.runner.profile ? pool.start_ms[pandas.runner.profile] : undefined;
  console.log(
    `   runcell: ${pandas.runner.label}` +
      (profileStart !== undefined ? `; its fork server started in ${profileStart} ms` : "") +
      `\n   bwrap:  ${result.commands.bwrap_pandas}\n` +
      "   (the sandboxed spawn also needs /etc/alternatives, where numpy finds BLAS and LAPACK)\n",
  );
  const pandasRows = [["engine", "p50", "p95", "min", "runs"]];
  for (const { name, value } of oneshotRows(pandas.engines, pandas.runner.path)) {
    const { summary } = value;
    pandasRows.push([name, ms(summary.p50), ms(summary.p95), ms(summary.min), String(summary.n)]);
  }
  console.log(table(pandasRows));
  console.log(
    `\n   ratio runcell/bwrap p50: ${ratio(pandas.p50_ratio_vs_bwrap)} (goal ≤ ${PANDAS_GOAL}) ` +
      `${verdict(pandas.p50_ratio_vs_bwrap, PANDAS_GOAL)}; runcell/python p50: ${ratio(pandas.p50_ratio_vs_python)}` +
      (pandas.cold_p50_ratio_vs_bwrap !== null
        ? `; runcell (cold)/bwrap p50: ${ratio(pandas.cold_p50_ratio_vs_bwrap)}`
        : ""),
  );
}

const NOT_AVAILABLE = "not available";

/** A latency row: p50, p90, p99, min, max, runs (a "not available" row for a missing engine). */
function latencyRow(name: string, value: ServerLatency | null): string[] {
  if (!value) return [name, NOT_AVAILABLE, "", "", "", "", ""];
  const { summary } = value;
  return [
    name,
    ms(summary.p50),
    ms(value.p90),
    ms(summary.p99),
    ms(summary.min),
    ms(summary.max),
    String(summary.n),
  ];
}

const LATENCY_HEADER = ["engine", "p50", "p90", "p99", "min", "max", "runs"];

function goalText(value: number | null, goal: number): string {
  return value === null ? `n/a (goal ≤ ${goal})` : `${ratio(value)} (goal ≤ ${goal}) ${verdict(value, goal)}`;
}

function printServer(result: ServerResult): void {
  const { runcell, jupyter_server: jupyter, execute, create, oneshot, load } = result;
  const versions = jupyter.versions ?? {};
  console.log(
    "\n== runcell serve vs Jupyter Server, all over loopback TCP ==\n" +
      `   runcell: ${runcell.command}\n` +
      "     sessions and one-shot runs sandboxed with bubblewrap (the product's default); runcell's kernels\n" +
      "     and runs are confined, Jupyter Server's kernels are not\n" +
      "     client: node:http with one keep-alive Agent (TCP_NODELAY), JSON bodies\n" +
      `   Jupyter Server ${String(versions.jupyter_server ?? "?")} (tornado ${String(versions.tornado ?? "?")}): ` +
      `${jupyter.command}\n` +
      `     kernelspec: ${jupyter.kernelspec_argv.join(" ")}\n` +
      "     client: the kernel channels WebSocket (ws, TCP_NODELAY), Jupyter messaging v5.3 JSON frames\n" +
      "     stock: as shipped; TCP_NODELAY: launched with --nodelay, which makes " +
      `${String(versions.handler ?? "its kernel WebSocket handler")} call set_nodelay(True) on open`,
  );
  if (!runcell.available) {
    console.log(`\n   runcell serve not available: ${(runcell.error ?? "?").replaceAll("\n", "\n     ")}`);
  }

  console.log(
    `\n== Warm execute ${execute.code}, ms: ${execute.iterations} per engine (+${execute.warmup} warm-up), in blocks of ` +
      `${execute.block} that rotate between the engines ==`,
  );
  console.log(
    "   runcell: POST /api/v1/sessions/{id}/execute until its 200 response has arrived\n" +
      "   Jupyter Server: execute_request on the WebSocket until its execute_reply and iopub idle have arrived\n",
  );
  const executeRows = [LATENCY_HEADER];
  executeRows.push(latencyRow("runcell serve", execute.engines.runcell));
  executeRows.push(latencyRow("Jupyter Server (TCP_NODELAY)", execute.engines.jupyter_server_nodelay));
  executeRows.push(latencyRow("Jupyter Server (stock)", execute.engines.jupyter_server));
  console.log(table(executeRows));
  if (execute.runcell_duration_ms) {
    console.log(
      `\n   runcell's own Execution.duration_ms: p50 ${ms(execute.runcell_duration_ms.p50)}, ` +
        `p99 ${ms(execute.runcell_duration_ms.p99)}`,
    );
  }
  console.log(
    `   ratio runcell/Jupyter Server (TCP_NODELAY) p50: ${goalText(execute.p50_ratio_vs_nodelay, SERVER_EXECUTE_GOAL)}; ` +
      `p99: ${ratio(execute.p99_ratio_vs_nodelay ?? Number.NaN)}\n` +
      `   ratio runcell/Jupyter Server (stock) p50: ${goalText(execute.p50_ratio_vs_stock, SERVER_EXECUTE_STOCK_GOAL)}\n` +
      `   Jupyter Server stock/TCP_NODELAY p50: ${ratio(execute.stock_p50_ratio_vs_nodelay)} (what Nagle's algorithm costs it)`,
  );

  console.log(
    `\n== New session + first execute ${create.code}, ms: ${create.runs} per engine (+${create.warmup} warm-up), in ` +
      `blocks of ${create.block} that rotate between the engines ==`,
  );
  console.log(
    "   runcell: POST /api/v1/sessions, then POST …/execute; the pool is full before each sample\n" +
      "   runcell (no pool): the same on a second server started with --pool-size 0\n" +
      "   Jupyter Server (cold kernel): POST /api/kernels, WebSocket connect, first execute (TCP_NODELAY server)\n" +
      "   deleting the session or kernel, and the pool's refill, are not timed\n",
  );
  const createRows = [LATENCY_HEADER];
  createRows.push(latencyRow("runcell serve (pool)", create.engines.runcell));
  createRows.push(latencyRow("runcell serve (no pool)", create.engines.runcell_no_pool));
  createRows.push(latencyRow("Jupyter Server (cold kernel)", create.engines.jupyter_server));
  console.log(table(createRows));
  if (create.runcell_from_pool !== null) {
    console.log(
      `\n   runcell sessions served from the pool: ${create.runcell_from_pool} of ${create.runs}` +
        (create.pool_refill_ms ? `; pool refill after each, p50 ${ms(create.pool_refill_ms.p50)} ms` : ""),
    );
  }
  if (create.no_pool_error)
    console.log(`   runcell (no pool) not available: ${create.no_pool_error.split("\n")[0]}`);
  console.log(
    `   ratio runcell (pool)/cold Jupyter kernel p50: ${goalText(create.p50_ratio_vs_cold, SERVER_CREATE_GOAL)}; ` +
      `runcell (no pool)/cold Jupyter kernel p50: ${ratio(create.no_pool_p50_ratio_vs_cold ?? Number.NaN)}`,
  );

  console.log(
    `\n== One-shot ${oneshot.code} over HTTP, ms: ${oneshot.runs} per engine (+${oneshot.warmup} warm-up), in blocks ` +
      `of ${oneshot.block} that rotate between the engines ==`,
  );
  console.log(
    "   runcell: POST /api/v1/execute until its 200 response has arrived\n" +
      `   bwrap:   ${oneshot.bwrap_command}\n`,
  );
  const oneshotRows = [LATENCY_HEADER];
  oneshotRows.push(latencyRow("runcell serve", oneshot.engines.runcell));
  oneshotRows.push(latencyRow("bwrap", oneshot.engines.bwrap));
  console.log(table(oneshotRows));
  if (oneshot.runcell_duration_ms) {
    console.log(
      `\n   runcell's own Execution.duration_ms: p50 ${ms(oneshot.runcell_duration_ms.p50)}, ` +
        `p99 ${ms(oneshot.runcell_duration_ms.p99)}`,
    );
  }
  console.log(`   ratio runcell/bwrap p50: ${goalText(oneshot.p50_ratio_vs_bwrap, SERVER_ONESHOT_GOAL)}`);

  if (!load.available) {
    console.log(`\n== Load: not available ==\n   ${load.error.split("\n")[0]}`);
  } else {
    console.log(
      `\n== Load: ${load.clients} concurrent clients on ${load.sessions} sessions, each making ` +
        `${load.executes_per_client} executes of ${load.code} back to back ==\n`,
    );
    console.log(
      table([
        ["requests", "completed", "errors", "p50 ms", "p95 ms", "p99 ms", "max ms", "executes/s", "wall s"],
        [
          String(load.requests),
          String(load.completed),
          String(load.errors),
          ms(load.latency.p50),
          ms(load.latency.p95),
          ms(load.latency.p99),
          ms(load.latency.max),
          load.executions_per_s.toFixed(1),
          (load.wall_ms / 1000).toFixed(2),
        ],
      ]),
    );
    console.log(
      `\n   errors: ${load.errors} (goal ≤ ${SERVER_LOAD_ERRORS_GOAL}) ${verdict(load.errors, SERVER_LOAD_ERRORS_GOAL)}` +
        `; the sessions' creation + first execute: p50 ${ms(load.session_create_ms.p50)} ms`,
    );
    for (const sample of load.error_samples) console.log(`   ${sample.count} × ${sample.error}`);
  }
  if (result.problems.length) {
    console.log(
      `\n   server problems seen:\n${result.problems.map((problem) => `   - ${problem}`).join("\n")}`,
    );
  }
}

/** The server section's goal lines (NOT AVAILABLE where runcell's server did not start). */
function serverGoals(result: ServerResult, names: Record<string, string>): GoalLine[] {
  const missing = result.runcell.available
    ? null
    : firstLine(result.runcell.error ?? "runcell serve not available");
  const line = (
    name: string,
    value: number | null,
    goal: number,
    detail: string | null = null,
  ): GoalLine => ({
    name,
    ratio: value,
    comparison: "≤",
    goal,
    verdict: value === null ? "NOT AVAILABLE" : verdict(value, goal),
    detail: value === null ? (missing ?? detail) : detail,
  });
  const loadErrors = result.load.available ? result.load.errors : null;
  return [
    line(names.execute!, result.execute.p50_ratio_vs_nodelay, SERVER_EXECUTE_GOAL),
    line(names.executeStock!, result.execute.p50_ratio_vs_stock, SERVER_EXECUTE_STOCK_GOAL),
    line(
      names.create!,
      result.create.p50_ratio_vs_cold,
      SERVER_CREATE_GOAL,
      result.create.runcell_from_pool === null
        ? null
        : `${result.create.runcell_from_pool} of ${result.create.runs} from the pool`,
    ),
    line(names.oneshot!, result.oneshot.p50_ratio_vs_bwrap, SERVER_ONESHOT_GOAL),
    { ...line(names.load!, loadErrors, SERVER_LOAD_ERRORS_GOAL), count: true },
  ];
}

interface GoalLine {
  name: string;
  /** The measured ratio (or, with `count`, a number of events). */
  ratio: number | null;
  count?: true;
  /** Whether the ratio must stay at most (≤) or reach at least (≥) the goal. */
  comparison: "≤" | "≥";
  goal: number;
  verdict: "PASS" | "MISS" | "NOT AVAILABLE" | "ERROR";
  detail: string | null;
}

type SectionOutcome<T> = { status: "ok"; result: T } | { status: "error"; error: string };

/** After SIGINT/SIGTERM the signal handler cleans up and exits; nothing more is reported. */
function waitForExit(): Promise<number> {
  return new Promise(() => undefined);
}

function firstLine(text: string): string {
  return text.split("\n")[0] ?? text;
}

function printSpawn(result: SpawnResult): void {
  console.log(
    `\n== Starting a child process (/bin/true, until it exits), ms: ${result.runs} per strategy and size; ` +
      "direct = Node's spawn (forks runcell), helper = runcell's spawn helper ==\n",
  );
  console.log(
    `${"runcell rss".padEnd(12)}${"direct p50".padStart(11)}${"p95".padStart(8)}${"helper p50".padStart(12)}${"p95".padStart(8)}${"ratio".padStart(8)}`,
  );
  for (const point of result.points) {
    console.log(
      `${`${point.rss_mib} MiB`.padEnd(12)}${point.direct.p50.toFixed(2).padStart(11)}${point.direct.p95.toFixed(2).padStart(8)}` +
        `${point.helper.p50.toFixed(2).padStart(12)}${point.helper.p95.toFixed(2).padStart(8)}${point.p50_ratio.toFixed(2).padStart(8)}`,
    );
  }
  console.log("   ratio: helper p50 / direct p50 (informational: no goal is set for it)");
}

async function main(): Promise<number> {
  let options: BenchOptions | undefined;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (error) {
    console.error(`${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (!options) {
    console.log(USAGE);
    return 0;
  }
  installSignalHandlers();
  const startedAt = new Date();
  const environment = await collectEnvironment(ROOT);
  printEnvironment(environment);

  const goals: GoalLine[] = [];
  let roundtrip: SectionOutcome<RoundtripResult> | undefined;
  let notebook: SectionOutcome<NotebookResult> | undefined;
  let oneshot: SectionOutcome<OneshotResult> | undefined;
  let spawned: SectionOutcome<SpawnResult> | undefined;
  let server: SectionOutcome<ServerResult> | undefined;

  if (options.sections.includes("roundtrip")) {
    try {
      const result = await runRoundtrip({
        snippets: SNIPPETS,
        iterations: options.iterations,
        warmup: options.warmup,
        rounds: options.rounds,
        block: options.block,
        kernel: options.kernel,
        root: ROOT,
        log,
      });
      roundtrip = { status: "ok", result };
      printRoundtrip(result, options);
      goals.push({
        name: "roundtrip p50 ratio runcell/jupyter_client",
        ratio: result.overall_p50_ratio,
        comparison: "≤",
        goal: ROUNDTRIP_GOAL,
        verdict: verdict(result.overall_p50_ratio, ROUNDTRIP_GOAL),
        detail: null,
      });
    } catch (error) {
      if (wasInterrupted()) return waitForExit();
      const message = (error as Error).message;
      roundtrip = { status: "error", error: (error as Error).stack ?? message };
      console.log(`\n== Warm execute round trip: FAILED ==\n${message}`);
      goals.push({
        name: "roundtrip p50 ratio runcell/jupyter_client",
        ratio: null,
        comparison: "≤",
        goal: ROUNDTRIP_GOAL,
        verdict: "ERROR",
        detail: firstLine(message),
      });
    }
  }

  if (options.sections.includes("notebook")) {
    try {
      const result = await runNotebookBench({
        cells: options.cells,
        runs: options.notebookRuns,
        warmup: options.notebookWarmup,
        kernel: options.kernel,
        cli: options.cli,
        timeoutMs: 300_000,
        root: ROOT,
        log,
      });
      notebook = { status: "ok", result };
      printNotebook(result);
      const missing = [result.runcell, result.nbconvert].find((engine) => !engine.available);
      goals.push({
        name: "notebook wall ratio runcell/nbconvert",
        ratio: result.ratio,
        comparison: "≤",
        goal: NOTEBOOK_GOAL,
        verdict: result.ratio === null ? "NOT AVAILABLE" : verdict(result.ratio, NOTEBOOK_GOAL),
        detail: missing?.error ? firstLine(missing.error) : null,
      });
    } catch (error) {
      if (wasInterrupted()) return waitForExit();
      const message = (error as Error).message;
      notebook = { status: "error", error: (error as Error).stack ?? message };
      console.log(`\n== Notebook: FAILED ==\n${message}`);
      goals.push({
        name: "notebook wall ratio runcell/nbconvert",
        ratio: null,
        comparison: "≤",
        goal: NOTEBOOK_GOAL,
        verdict: "ERROR",
        detail: firstLine(message),
      });
    }
  }

  if (options.sections.includes("oneshot")) {
    const names = {
      latency: "one-shot p50 ratio runcell/bwrap",
      throughput: `throughput ratio runcell/bwrap (${options.clients} clients)`,
      pandas: "pandas p50 ratio runcell/cold bwrap",
    };
    try {
      const result = await runOneshotBench({
        runs: options.oneshotRuns,
        warmup: options.oneshotWarmup,
        block: options.oneshotBlock,
        throughputRuns: options.throughputRuns,
        clients: options.clients,
        pandasRuns: options.pandasRuns,
        log,
      });
      oneshot = { status: "ok", result };
      printOneshot(result);
      goals.push(
        {
          name: names.latency,
          ratio: result.latency.p50_ratio_vs_bwrap,
          comparison: "≤",
          goal: ONESHOT_GOAL,
          verdict: verdict(result.latency.p50_ratio_vs_bwrap, ONESHOT_GOAL),
          detail: `runcell ${result.latency.runner.path}`,
        },
        {
          name: names.throughput,
          ratio: result.throughput.ratio_vs_bwrap,
          comparison: "≥",
          goal: THROUGHPUT_GOAL,
          verdict: verdictAtLeast(result.throughput.ratio_vs_bwrap, THROUGHPUT_GOAL),
          detail: `runcell ${result.throughput.runner.path}`,
        },
        result.pandas.available
          ? {
              name: names.pandas,
              ratio: result.pandas.p50_ratio_vs_bwrap,
              comparison: "≤",
              goal: PANDAS_GOAL,
              verdict: verdict(result.pandas.p50_ratio_vs_bwrap, PANDAS_GOAL),
              detail: `runcell ${result.pandas.runner.label}`,
            }
          : {
              name: names.pandas,
              ratio: null,
              comparison: "≤",
              goal: PANDAS_GOAL,
              verdict: "NOT AVAILABLE",
              detail: firstLine(result.pandas.error),
            },
      );
    } catch (error) {
      if (wasInterrupted()) return waitForExit();
      const message = (error as Error).message;
      oneshot = { status: "error", error: (error as Error).stack ?? message };
      console.log(`\n== One-shot: FAILED ==\n${message}`);
      const failed = (name: string, comparison: GoalLine["comparison"], goal: number): GoalLine => ({
        name,
        ratio: null,
        comparison,
        goal,
        verdict: "ERROR",
        detail: firstLine(message),
      });
      goals.push(
        failed(names.latency, "≤", ONESHOT_GOAL),
        failed(names.throughput, "≥", THROUGHPUT_GOAL),
        failed(names.pandas, "≤", PANDAS_GOAL),
      );
    }
  }

  if (options.sections.includes("spawn")) {
    try {
      const result = await runSpawnBench({ runs: options.spawnRuns, ballastMiB: [0, 1024], log });
      spawned = { status: "ok", result };
      printSpawn(result);
    } catch (error) {
      if (wasInterrupted()) return waitForExit();
      spawned = { status: "error", error: (error as Error).stack ?? (error as Error).message };
      console.log(`\n== Spawn cost: FAILED ==\n${(error as Error).message}`);
    }
  }

  if (options.sections.includes("server")) {
    const names = {
      execute: "server execute p50 ratio runcell/Jupyter Server (TCP_NODELAY)",
      executeStock: "server execute p50 ratio runcell/Jupyter Server (stock)",
      create: "server create + first execute p50 ratio runcell (pool)/cold Jupyter kernel",
      oneshot: "server one-shot p50 ratio runcell HTTP/bwrap",
      load: `server load errors (${options.loadClients} clients, ${options.loadSessions} sessions)`,
    };
    try {
      const result = await runServerBench({
        cli: options.cli,
        root: ROOT,
        iterations: options.iterations,
        warmup: options.warmup,
        block: options.block,
        createRuns: options.createRuns,
        oneshotRuns: options.oneshotRuns,
        oneshotWarmup: options.oneshotWarmup,
        oneshotBlock: options.oneshotBlock,
        loadSessions: options.loadSessions,
        loadClients: options.loadClients,
        loadExecutes: options.loadExecutes,
        log,
      });
      server = { status: "ok", result };
      printServer(result);
      goals.push(...serverGoals(result, names));
    } catch (error) {
      if (wasInterrupted()) return waitForExit();
      const message = (error as Error).message;
      server = { status: "error", error: (error as Error).stack ?? message };
      console.log(`\n== Server: FAILED ==\n${message}`);
      for (const [key, name] of Object.entries(names)) {
        goals.push({
          name,
          ratio: null,
          comparison: "≤",
          goal: {
            execute: SERVER_EXECUTE_GOAL,
            executeStock: SERVER_EXECUTE_STOCK_GOAL,
            create: SERVER_CREATE_GOAL,
            oneshot: SERVER_ONESHOT_GOAL,
            load: SERVER_LOAD_ERRORS_GOAL,
          }[key as keyof typeof names],
          verdict: "ERROR",
          detail: firstLine(message),
        });
      }
    }
  }

  console.log("\n== Summary ==");
  for (const line of goals) {
    const value = line.ratio === null ? "n/a" : line.count ? String(line.ratio) : ratio(line.ratio);
    const detail = line.detail ? `: ${line.detail}` : "";
    console.log(`${line.name}: ${value} (goal ${line.comparison} ${line.goal}) ${line.verdict}${detail}`);
  }

  const finishedAt = new Date();
  const resultsDir = join(ROOT, "bench/results");
  await mkdir(resultsDir, { recursive: true });
  const file = join(
    resultsDir,
    `${startedAt
      .toISOString()
      .replaceAll(":", "-")
      .replace(/\.\d+Z$/, "Z")}.json`,
  );
  const report = {
    schema: 1,
    started_at: startedAt.toISOString(),
    finished_at: finishedAt.toISOString(),
    argv: process.argv.slice(2),
    options,
    goals: {
      roundtrip_p50_ratio_max: ROUNDTRIP_GOAL,
      notebook_wall_ratio_max: NOTEBOOK_GOAL,
      oneshot_p50_ratio_max: ONESHOT_GOAL,
      oneshot_throughput_ratio_min: THROUGHPUT_GOAL,
      oneshot_pandas_p50_ratio_max: PANDAS_GOAL,
      server_execute_p50_ratio_vs_nodelay_max: SERVER_EXECUTE_GOAL,
      server_execute_p50_ratio_vs_stock_max: SERVER_EXECUTE_STOCK_GOAL,
      server_create_p50_ratio_vs_cold_max: SERVER_CREATE_GOAL,
      server_oneshot_p50_ratio_vs_bwrap_max: SERVER_ONESHOT_GOAL,
      server_load_errors_max: SERVER_LOAD_ERRORS_GOAL,
    },
    environment: {
      ...environment,
      load_average_at_end: os.loadavg().map((value) => Math.round(value * 100) / 100),
    },
    summary: goals,
    roundtrip: roundtrip ?? null,
    notebook: notebook ?? null,
    oneshot: oneshot ?? null,
    spawn: spawned ?? null,
    server: server ?? null,
  };
  await writeFile(file, `${JSON.stringify(report, null, 1)}\n`);
  console.log(`\nresults: ${relative(process.cwd(), file)}`);
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  },
);
