/**
 * Test helpers around the fake kernel: a temporary Jupyter data dir with fake kernelspecs, a
 * KernelManager over it, and bounded waits.
 */
import { randomUUID } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { KernelExecutor, type KernelExecutorOptions } from "../../src/execution/kernel-executor.js";
import type { Kernel, KernelStatus } from "../../src/kernels/kernel.js";
import {
  KernelManager,
  type KernelManagerOptions,
  type StartKernelOptions,
} from "../../src/kernels/kernel-manager.js";
import { HostSandbox } from "../../src/sandbox/host-sandbox.js";
import { processesMatching } from "../support/processes.js";

/** Absolute path of the fake kernel script. */
export const FAKE_KERNEL_PATH = fileURLToPath(new URL("./fake-kernel.mjs", import.meta.url));

/** Fault switches understood by the fake kernel (see fake-kernel.mjs). */
export interface FakeKernelEnv {
  FAKE_FAIL_ON_START?: "1";
  FAKE_ENV_FILE?: string;
  FAKE_STARTUP_DELAY_MS?: string;
  FAKE_STDIN_DELAY_MS?: string;
  FAKE_NO_HEARTBEAT?: "1";
  FAKE_IGNORE_SHUTDOWN?: "1";
  FAKE_IGNORE_SHUTDOWN_REQUEST?: "1";
  FAKE_IGNORE_SIGINT?: "1";
  FAKE_NO_IDLE?: "1";
  [name: string]: string | undefined;
}

export interface FakeSpecOptions {
  env?: FakeKernelEnv;
  interruptMode?: "signal" | "message";
  displayName?: string;
  language?: string;
  /** Written verbatim as kernel.json instead of a generated one (to test invalid specs). */
  rawKernelJson?: string;
}

export interface FakeJupyterDir {
  /** The Jupyter data path (holds `kernels/<name>/kernel.json`). */
  dataPath: string;
  /** A unique string in the argv of every kernel started from these specs. */
  tag: string;
  cleanup(): Promise<void>;
}

function cleanEnv(env: FakeKernelEnv | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(env ?? {})) if (value !== undefined) out[name] = value;
  return out;
}

/** Writes `kernels/<name>/kernel.json` files into `dataPath`, each starting the fake kernel. */
export async function writeFakeKernelspecs(
  dataPath: string,
  specs: Record<string, FakeSpecOptions>,
  tag: string,
): Promise<void> {
  for (const [name, spec] of Object.entries(specs)) {
    const dir = join(dataPath, "kernels", name);
    await mkdir(dir, { recursive: true });
    const json =
      spec.rawKernelJson ??
      JSON.stringify(
        {
          argv: [process.execPath, FAKE_KERNEL_PATH, "-f", "{connection_file}", `--tag=${tag}`],
          display_name: spec.displayName ?? `Fake (${name})`,
          language: spec.language ?? "fake",
          interrupt_mode: spec.interruptMode ?? "signal",
          env: cleanEnv(spec.env),
          metadata: { fake: true },
        },
        null,
        1,
      );
    await writeFile(join(dir, "kernel.json"), json);
  }
}

/** A temporary Jupyter data dir with the given fake kernelspecs (default: one named `fake`). */
export async function createFakeJupyterDir(
  specs: Record<string, FakeSpecOptions> = { fake: {} },
): Promise<FakeJupyterDir> {
  const dataPath = await mkdtemp(join(tmpdir(), "runcell-fake-jupyter-"));
  const tag = `runcell-fake-${randomUUID()}`;
  await writeFakeKernelspecs(dataPath, specs, tag);
  return { dataPath, tag, cleanup: () => rm(dataPath, { recursive: true, force: true }) };
}

export interface FakeManager {
  manager: KernelManager;
  dataPath: string;
  runtimeDir: string;
  tag: string;
  /** Starts a kernel (spec `fake` unless `options.name` says otherwise) with an executor on it. */
  startKernel(
    options?: StartKernelOptions,
    executorOptions?: KernelExecutorOptions,
  ): Promise<{ kernel: Kernel; executor: KernelExecutor }>;
  /** Disposes the executors made by `startKernel`, then every kernel the manager still tracks. */
  disposeAll(): Promise<void>;
  /** Pids of live processes started from these kernelspecs. */
  leftovers(): number[];
  /** Disposes as `disposeAll` does and removes the temporary dirs. */
  cleanup(): Promise<void>;
}

/** A KernelManager on a HostSandbox over fake kernelspecs, with a private runtime dir. */
export async function createFakeManager(
  options: { specs?: Record<string, FakeSpecOptions>; defaults?: KernelManagerOptions["defaults"] } = {},
): Promise<FakeManager> {
  const dir = await createFakeJupyterDir(options.specs);
  const runtimeDir = await mkdtemp(join(tmpdir(), "runcell-fake-runtime-"));
  const manager = new KernelManager({
    jupyterPaths: [dir.dataPath],
    runtimeDir,
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: runtimeDir },
    sandbox: new HostSandbox(),
    defaults: options.defaults,
  });
  const executors: KernelExecutor[] = [];
  const disposeAll = async () => {
    for (const executor of executors.splice(0)) await executor.dispose();
    await manager.disposeAll();
  };
  return {
    manager,
    dataPath: dir.dataPath,
    runtimeDir,
    tag: dir.tag,
    startKernel: async (startOptions = {}, executorOptions = {}) => {
      const kernel = await manager.start({ name: "fake", ...startOptions });
      const executor = new KernelExecutor(kernel, executorOptions);
      executors.push(executor);
      return { kernel, executor };
    },
    disposeAll,
    leftovers: () => processesMatching(dir.tag),
    cleanup: async () => {
      try {
        await disposeAll();
      } finally {
        await dir.cleanup();
        await rm(runtimeDir, { recursive: true, force: true });
      }
    },
  };
}

/** Resolves once `kernel.status` satisfies `wanted`; rejects after `timeoutMs`. */
export function waitForStatus(
  kernel: Kernel,
  wanted: KernelStatus | ((status: KernelStatus) => boolean),
  timeoutMs = 20_000,
): Promise<KernelStatus> {
  const matches = typeof wanted === "function" ? wanted : (status: KernelStatus) => status === wanted;
  if (matches(kernel.status)) return Promise.resolve(kernel.status);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      unsubscribe();
      reject(new Error(`kernel status still ${kernel.status} after ${timeoutMs} ms`));
    }, timeoutMs);
    const unsubscribe = kernel.onStatus((status) => {
      if (!matches(status)) return;
      clearTimeout(timer);
      unsubscribe();
      resolve(status);
    });
  });
}

/** Rejects with a clear message when `promise` has not settled within `timeoutMs`. */
export function within<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${timeoutMs} ms`)), timeoutMs);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}
