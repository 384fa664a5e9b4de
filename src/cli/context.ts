import { loadConfig, type RuncellConfig } from "../config/config.js";
import { KernelManager } from "../kernels/kernel-manager.js";
import { existsSync } from "node:fs";
import { prepareRuntimeDir } from "../kernels/kernel-manager.js";
import { Runner } from "../runner/runner.js";
import { detectCgroups } from "../sandbox/cgroups.js";
import { HostSandbox } from "../sandbox/host-sandbox.js";
import { setSpawnStrategy } from "../sandbox/managed-process.js";
import { SandboxFactory, type SandboxMode } from "../sandbox/sandbox-factory.js";
import { UsageError } from "./errors.js";

const BWRAP = "/usr/bin/bwrap";

/** What every command gets: streams, config, and the resources it must release. */
export interface CliContext {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
  config: RuncellConfig;
  /** Lazily created; disposed by main() on exit and on SIGINT/SIGTERM. */
  kernels(): KernelManager;
  /** Sandboxes of a mode; refuses `bwrap` when bubblewrap is missing. */
  sandboxes(mode: SandboxMode): Promise<SandboxFactory>;
  /** The one-shot runner for a sandbox mode. */
  runner(mode: SandboxMode): Promise<Runner>;
  /** Fires when the user interrupts (SIGINT/SIGTERM). */
  signal: AbortSignal;
}

export function createContext(signal: AbortSignal): CliContext & { dispose(): Promise<void> } {
  // A CLI process is small and short-lived: its own fork costs about a millisecond, less than
  // starting the spawn helper a long-lived server uses.
  setSpawnStrategy("direct");
  const config = loadConfig(process.env);
  let manager: KernelManager | undefined;
  const factories = new Map<SandboxMode, Promise<SandboxFactory>>();
  const context: CliContext & { dispose(): Promise<void> } = {
    stdout: process.stdout,
    stderr: process.stderr,
    config,
    signal,
    sandboxes: (mode) => {
      const cached = factories.get(mode);
      if (cached) return cached;
      const made = (async () => {
        if (mode === "bwrap" && !existsSync(BWRAP)) {
          throw new UsageError(
            "bubblewrap is not installed, so code cannot be confined: install it (apt-get install bubblewrap), " +
              "or pass --sandbox none to run unconfined (trusted code only)",
          );
        }
        await prepareRuntimeDir(config.runtimeDir, { sandboxed: mode === "bwrap" });
        const cgroups = mode === "bwrap" ? await detectCgroups().catch(() => null) : null;
        return new SandboxFactory({
          mode,
          cgroups: cgroups?.support.version === "none" ? null : cgroups,
          runtimeDir: config.runtimeDir,
        });
      })();
      factories.set(mode, made);
      return made;
    },
    runner: async (mode) => {
      const factory = await context.sandboxes(mode);
      return new Runner({ sandboxes: factory, runtimeDir: config.runtimeDir });
    },
    kernels: () => {
      manager ??= KernelManager.fromConfig(config, new HostSandbox());
      return manager;
    },
    dispose: async () => {
      await manager?.disposeAll();
    },
  };
  return context;
}
