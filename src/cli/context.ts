import { loadConfig, type RuncellConfig } from "../config/config.js";
import { KernelManager } from "../kernels/kernel-manager.js";
import { HostSandbox } from "../sandbox/host-sandbox.js";

/** What every command gets: streams, config, and the resources it must release. */
export interface CliContext {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
  config: RuncellConfig;
  /** Lazily created; disposed by main() on exit and on SIGINT/SIGTERM. */
  kernels(): KernelManager;
  /** Fires when the user interrupts (SIGINT/SIGTERM). */
  signal: AbortSignal;
}

export function createContext(signal: AbortSignal): CliContext & { dispose(): Promise<void> } {
  const config = loadConfig(process.env);
  let manager: KernelManager | undefined;
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    config,
    signal,
    kernels: () => {
      manager ??= KernelManager.fromConfig(config, new HostSandbox());
      return manager;
    },
    dispose: async () => {
      await manager?.disposeAll();
    },
  };
}
