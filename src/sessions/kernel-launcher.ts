import { createHash, randomUUID } from "node:crypto";
import { chown, mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { SANDBOXED_KERNEL_ENV } from "../config/config.js";
import { RuncellError } from "../errors.js";
import { KernelExecutor } from "../execution/kernel-executor.js";
import type { Execution } from "../execution/types.js";
import type { Kernel } from "../kernels/kernel.js";
import type { KernelManager } from "../kernels/kernel-manager.js";
import { type ResourceLimits, resolveLimits } from "../sandbox/limits.js";
import type { SandboxFactory, SandboxLease } from "../sandbox/sandbox-factory.js";
import type { SessionMode } from "./types.js";

/** Everything that makes two kernels interchangeable: a pooled kernel serves a session of the same profile. */
export interface KernelProfile {
  kernel: string;
  mode: SessionMode;
  network: boolean;
  startupCode: string;
  memoryBytes: number;
  pids: number;
  env: Readonly<Record<string, string>>;
}

/** A pool key for a profile: equal keys, interchangeable kernels. */
export function profileKey(profile: KernelProfile): string {
  const hash = createHash("sha256")
    .update(profile.startupCode)
    .update("\0")
    .update(JSON.stringify(Object.entries(profile.env).sort()))
    .digest("hex")
    .slice(0, 16);
  return `${profile.kernel}/${profile.mode}/${profile.network ? "net" : "nonet"}/${profile.memoryBytes}/${profile.pids}/${hash}`;
}

/** A started kernel with its executor, sandbox lease and workspace; `dispose` releases all of it. */
export interface LaunchedKernel {
  readonly kernel: Kernel;
  readonly executor: KernelExecutor;
  readonly profile: KernelProfile;
  readonly key: string;
  /** Host directory mounted as the kernel's /workspace. */
  readonly workspace: string;
  /** performance.now() when the kernel became ready. */
  readonly readyAt: number;
  /** The record of the startup code's execution, when there was startup code. */
  readonly startup: Execution | null;
  dispose(): Promise<void>;
}

export interface KernelLauncherOptions {
  manager: KernelManager;
  sandboxes: SandboxFactory;
  /** Where per-kernel workspace directories are made. */
  workspacesDir: string;
  /** Limits other than memory and pids (which come from the profile). */
  ceilings: ResourceLimits;
  startTimeoutMs: number;
  /** Time limit of the startup code, in ms. */
  startupTimeoutMs: number;
  outputBytes: number;
  maxQueued: number;
}

/** The startup code of a session failed; `data` is its Execution record. */
export class StartupFailedError extends RuncellError<Execution> {
  constructor(execution: Execution) {
    const what = execution.error ? `${execution.error.name}: ${execution.error.value}` : execution.status;
    super(
      "STARTUP_CODE_FAILED",
      `the session's startup_code failed (${what}); fix it and create the session again`,
      {
        data: execution,
      },
    );
  }
}

/** Starts confined kernels for profiles: a sandbox lease, a workspace, the kernel, its startup code. */
export class KernelLauncher {
  readonly #options: KernelLauncherOptions;

  constructor(options: KernelLauncherOptions) {
    this.#options = options;
  }

  /** The sandbox mode kernels are started in. */
  get sandboxMode(): string {
    return this.#options.sandboxes.mode;
  }

  async launch(profile: KernelProfile, signal?: AbortSignal): Promise<LaunchedKernel> {
    const o = this.#options;
    const limits = resolveLimits({ memoryBytes: profile.memoryBytes, pids: profile.pids }, o.ceilings);
    const workspace = join(o.workspacesDir, randomUUID());
    await mkdir(workspace, { recursive: true, mode: 0o700 });
    const confined = o.sandboxes.mode !== "none";
    const network = profile.mode === "read_only" ? false : profile.network;
    let lease: SandboxLease | undefined;
    let kernel: Kernel | undefined;
    let executor: KernelExecutor | undefined;
    const dispose = async () => {
      await executor?.dispose();
      await kernel?.dispose({ now: confined });
      lease?.release();
      await rm(workspace, { recursive: true, force: true }).catch(() => undefined);
    };
    try {
      lease = await o.sandboxes.lease({
        limits,
        network,
        workspace: { hostPath: workspace, readOnly: profile.mode === "read_only" },
        processCpuLimit: false,
      });
      if (lease.hostUid !== null) await chown(workspace, lease.hostUid, lease.hostUid);
      kernel = await o.manager.start({
        name: profile.kernel,
        sandbox: lease.sandbox,
        signal,
        startTimeoutMs: o.startTimeoutMs,
        cwd: confined ? undefined : workspace,
        envOverrides: { ...(confined ? SANDBOXED_KERNEL_ENV : {}), ...profile.env },
      });
      executor = new KernelExecutor(kernel, { outputBytes: o.outputBytes, maxQueued: o.maxQueued });
      let startup: Execution | null = null;
      if (profile.startupCode.trim()) {
        startup = await executor.execute(profile.startupCode, {
          timeoutMs: o.startupTimeoutMs,
          storeHistory: false,
          signal,
        });
        if (startup.status !== "completed") throw new StartupFailedError(startup);
      }
      return {
        kernel,
        executor,
        profile,
        key: profileKey(profile),
        workspace,
        readyAt: performance.now(),
        startup,
        dispose,
      };
    } catch (error) {
      await dispose();
      throw error;
    }
  }
}
