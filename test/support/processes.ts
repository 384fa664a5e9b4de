/**
 * Probes of the Linux process table (/proc) for tests that check what kernels leave behind,
 * and a bounded poll for the OS changes no event announces.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";

/** The state letter of a process (R, S, Z…), or undefined when it does not exist. */
function processState(pid: number): string | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // Field 3, after the parenthesised command name (which may itself contain spaces or parens).
  const end = stat.lastIndexOf(")");
  return stat.slice(end + 2, end + 3);
}

/** True while a process with this pid exists and is not a zombie (dead, waiting to be reaped). */
export function isProcessAlive(pid: number): boolean {
  const state = processState(pid);
  return state !== undefined && state !== "Z" && state !== "X";
}

/** Whether /proc has any entry for this pid at all (a zombie counts). */
export function procEntryExists(pid: number): boolean {
  return existsSync(`/proc/${pid}`);
}

/** Pids of live processes other than this one whose command line contains `needle`. */
export function processesMatching(needle: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8");
    } catch {
      continue; // exited while we looked
    }
    if (cmdline.includes(needle) && isProcessAlive(pid)) pids.push(pid);
  }
  return pids;
}

/** A process as `processesOwnedBy` reports it. */
export interface OwnedProcess {
  pid: number;
  /** Real uid (first field of the `Uid:` line of /proc/<pid>/status). */
  uid: number;
  /** State letter; zombies (Z) are included, since they are what a missing reaper leaves. */
  state: string;
  /** Parent pid: who has to reap it once it is a zombie (1: the host's init). */
  ppid: number;
  /** The process name (`Name:`), for messages. */
  name: string;
}

/** Processes (zombies included), other than this one, whose real uid satisfies `match`. */
export function processesOwnedBy(match: (uid: number) => boolean): OwnedProcess[] {
  const found: OwnedProcess[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    let status: string;
    try {
      status = readFileSync(`/proc/${entry}/status`, "utf8");
    } catch {
      continue; // exited while we looked
    }
    const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
    if (!Number.isInteger(uid) || !match(uid)) continue;
    found.push({
      pid,
      uid,
      state: processState(pid) ?? "?",
      ppid: Number(/^PPid:\s+(\d+)/m.exec(status)?.[1] ?? -1),
      name: /^Name:\s+(.*)$/m.exec(status)?.[1] ?? "?",
    });
  }
  return found;
}

/**
 * Polls `check` every 50 ms until it returns true or `timeoutMs` passes; returns the last result.
 * Only for observing the OS (a process going away), where no event can be awaited.
 */
export async function pollUntil(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = AbortSignal.timeout(timeoutMs);
  while (!deadline.aborted) {
    if (check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return check();
}
