import { existsSync } from "node:fs";
import { ManagedProcess } from "./managed-process.js";
import type { Sandbox, SandboxProcess, SpawnOptions } from "./types.js";

const SETPRIV = "/usr/bin/setpriv";

/**
 * Runs processes directly on the host, each in its own process group and session, with the
 * parent-death signal set so they die with runcell even when runcell is killed with SIGKILL.
 * This provides NO isolation: it is the explicit `--sandbox none` mode.
 */
export class HostSandbox implements Sandbox {
  readonly kind = "host";
  readonly kernelTransport = "tcp";
  readonly forwardsSignals = true;
  readonly #usePdeathsig = existsSync(SETPRIV);

  spawn(options: SpawnOptions): Promise<SandboxProcess> {
    const argv = this.#usePdeathsig ? [SETPRIV, "--pdeathsig", "KILL", "--", ...options.argv] : options.argv;
    return ManagedProcess.spawn({
      argv,
      // ipykernel polls this pid and exits when it goes away: a second guard against orphans.
      // (Only here: inside a pid namespace the parent is pid 1, which ipykernel takes as orphaned.)
      env: { ...options.env, JPY_PARENT_PID: String(process.pid) },
      cwd: options.cwd,
      output: options.output ?? "tail",
      input: options.input,
      tailBytes: options.stderrTailBytes,
      ...(options.strategy ? { strategy: options.strategy } : {}),
    });
  }
}
