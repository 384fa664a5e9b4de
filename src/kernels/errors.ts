import { RuncellError } from "../errors.js";

/** The kernel process exited or stopped answering its heartbeat. */
export class KernelDiedError extends RuncellError<{
  exitCode: number | null;
  signal: string | null;
  stderr: string;
}> {
  constructor(message: string, data: { exitCode: number | null; signal: string | null; stderr: string }) {
    super("KERNEL_DIED", message, { data });
  }
}

/** The kernel did not become ready (no kernel_info_reply) before the start deadline. */
export class KernelStartError extends RuncellError<{ stderr: string }> {
  constructor(message: string, stderr: string, cause?: unknown) {
    super("KERNEL_START_FAILED", message, { data: { stderr }, cause });
  }
}
