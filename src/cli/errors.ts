import { InvalidArgumentError, NotFoundError, RuncellError } from "../errors.js";
import { KernelStartError } from "../kernels/errors.js";

/** Exit codes of the CLI contract. */
export const EXIT = {
  ok: 0,
  failed: 1,
  usage: 2,
  timeout: 124,
  internal: 125,
  killed: 137,
} as const;

/** A mistake in how the CLI was called: exit 2 with the message and a hint. */
export class UsageError extends RuncellError {
  constructor(message: string) {
    super("USAGE", message);
  }
}

/** The one place that turns an error into a CLI message and exit code. */
export function reportError(error: unknown, stderr: NodeJS.WritableStream): number {
  if (
    error instanceof UsageError ||
    error instanceof InvalidArgumentError ||
    error instanceof NotFoundError
  ) {
    stderr.write(`runcell: ${error.message}\n`);
    return EXIT.usage;
  }
  if (error instanceof KernelStartError) {
    stderr.write(`runcell: ${error.message}\n`);
    return EXIT.internal;
  }
  if (error instanceof RuncellError) {
    stderr.write(`runcell: ${error.message} (${error.code})\n`);
    return EXIT.internal;
  }
  const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
  stderr.write(`runcell: internal error: ${message}\n`);
  return EXIT.internal;
}
