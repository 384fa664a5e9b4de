import { constants } from "node:os";

/**
 * bubblewrap (and a shell) reports a program killed by signal n as exit code 128+n. These turn
 * that convention into a signal name and back, for every signal the platform knows.
 */
export function signalOfExitCode(code: number | null): NodeJS.Signals | null {
  if (code === null || code <= 128 || code > 128 + 64) return null;
  const found = Object.entries(constants.signals).find(([, n]) => n === code - 128);
  return (found?.[0] as NodeJS.Signals | undefined) ?? null;
}

/** The exit code a shell would report for a program killed by `signal` (128+n). */
export function exitCodeOfSignal(signal: NodeJS.Signals): number {
  return 128 + (constants.signals[signal] ?? 0);
}
