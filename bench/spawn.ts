import {
  ManagedProcess,
  setSpawnStrategy,
  type SpawnStrategy,
  startSpawnHelper,
} from "../src/sandbox/managed-process.js";
import { roundSummary, type Summary, summarize } from "./stats.js";

/**
 * What starting a child process costs runcell as its own memory grows: Node's spawn forks
 * runcell (copying its page tables), the spawn helper does not. Each sample is
 * ManagedProcess.spawn of /bin/true until it has exited; the two strategies alternate.
 */
export interface SpawnOptions {
  runs: number;
  /** Extra memory runcell holds (touched, so mapped) for each measurement, in MiB. */
  ballastMiB: number[];
  log: (line: string) => void;
}

export interface SpawnPoint {
  ballast_mib: number;
  /** runcell's resident memory while measuring, in MiB. */
  rss_mib: number;
  direct: Summary;
  helper: Summary;
  /** helper p50 / direct p50. */
  p50_ratio: number;
}

export interface SpawnResult {
  runs: number;
  points: SpawnPoint[];
}

async function once(strategy: SpawnStrategy): Promise<number> {
  setSpawnStrategy(strategy);
  const startedAt = performance.now();
  const proc = await ManagedProcess.spawn({ argv: ["/bin/true"], env: {}, output: "tail" });
  const exit = await proc.exited;
  const ms = performance.now() - startedAt;
  await proc.dispose(0);
  if (exit.code !== 0) throw new Error(`/bin/true exited with ${exit.code ?? exit.signal}`);
  return ms;
}

export async function runSpawnBench(options: SpawnOptions): Promise<SpawnResult> {
  if (!(await startSpawnHelper())) throw new Error("the spawn helper did not start");
  const points: SpawnPoint[] = [];
  try {
    for (const mib of options.ballastMiB) {
      // Touched memory, as a server's heap and buffers would be: fork copies its page tables.
      let ballast: Buffer | null = mib > 0 ? Buffer.alloc(mib * 1024 * 1024, 1) : null;
      const rss = Math.round(process.memoryUsage().rss / (1024 * 1024));
      options.log(`spawn: ${options.runs} runs per strategy with ${mib} MiB of ballast (rss ${rss} MiB)`);
      const samples: Record<SpawnStrategy, number[]> = { direct: [], helper: [] };
      for (let i = 0; i < 5; i++) {
        await once("direct");
        await once("helper");
      }
      for (let i = 0; i < options.runs; i++) {
        for (const strategy of i % 2 === 0
          ? (["direct", "helper"] as const)
          : (["helper", "direct"] as const)) {
          samples[strategy].push(await once(strategy));
        }
      }
      ballast = null;
      void ballast;
      const direct = roundSummary(summarize(samples.direct));
      const helper = roundSummary(summarize(samples.helper));
      points.push({
        ballast_mib: mib,
        rss_mib: rss,
        direct,
        helper,
        p50_ratio: Math.round((helper.p50 / direct.p50) * 1000) / 1000,
      });
    }
  } finally {
    setSpawnStrategy("helper");
  }
  return { runs: options.runs, points };
}
