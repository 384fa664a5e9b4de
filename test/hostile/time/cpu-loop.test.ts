/**
 * Attacks: CPU time. Code that spins forever (HOSTILE.md #1, anchor: Piston `run_cpu_time`,
 * isolate `-t`), and code that ignores or catches every signal runcell could send before
 * spinning (#4, anchor: nsjail `subproc.cc`, jupyter_client `shutdown_wait_time`).
 *
 * Expected: `timed_out`, `limit: time`, category `timeout`, CLI exit 124; the runner keeps
 * working for the next job. Ignoring SIGTERM/SIGINT/SIGXCPU/SIGHUP buys nothing: the hard
 * RLIMIT_CPU sends SIGKILL a second after the soft one, and the wall timer SIGKILLs too.
 *
 * Deterministic: the loops never end by themselves, so one of two kills must end them — the
 * CPU rlimit (SIGXCPU at the soft limit, or SIGKILL at the hard one when SIGXCPU is ignored)
 * or the wall timer. Which one fires first depends on how much CPU the host gives the run,
 * but the record is the same for both (asserted); only exit_code/error.value tell them apart,
 * and those are checked against the path that was taken.
 */
import { describe, it } from "vitest";
import { execExitCode } from "../../../src/cli/commands/exec.js";
import { describeRun, needs, probeHost, useHarness } from "../harness.js";

const host = await probeHost();
const h = useHarness(host);
const c = needs(host, "bwrap");

// CPU 1 s (hard limit 2 s) well inside a 4 s wall: the CPU path is the one expected on an idle core.
const limits = { cpuMs: 1_000, timeMs: 4_000 };
// For #4 the wall is far away, so the hard CPU rlimit's SIGKILL (2 s of CPU) is what ends the
// run even when the host is busy; the wall timer stays the backstop and gives the same record.
const signalLimits = { cpuMs: 1_000, timeMs: 15_000 };

describe.concurrent("CPU loops", () => {
  it.skipIf(c.skip)(
    `#1 while True: pass is killed as timed_out/time, CLI 124${c.label}`,
    async ({ expect }) => {
      const { execution: e } = await h.run({ language: "python", code: "while True: pass", limits });
      expect(e.status, describeRun(e)).toBe("timed_out");
      expect(e.limit).toBe("time");
      expect(e.error?.category).toBe("timeout");
      expect(execExitCode(e)).toBe(124);
      // SIGXCPU from the CPU rlimit (152), or SIGKILL from the wall timer (137).
      expect([152, 137]).toContain(e.exit_code);
      expect(e.signal).toBe(e.exit_code === 152 ? "SIGXCPU" : "SIGKILL");
      expect(e.error?.value).toMatch(e.exit_code === 152 ? /CPU time/ : /time limit/);
      h.report("1-while-true", e, { kill_path: e.exit_code === 152 ? "rlimit-cpu" : "wall" });

      // The next job starts normally.
      const { execution: next } = await h.run({ language: "python", code: "print('next')" });
      expect(next.status, describeRun(next)).toBe("completed");
      expect(next.stdout).toBe("next\n");
    },
  );

  it.skipIf(c.skip)(
    `#4 ignoring TERM, INT, XCPU and HUP then spinning is still killed: timed_out/time${c.label}`,
    async ({ expect }) => {
      const code = [
        "import signal",
        "for s in (signal.SIGTERM, signal.SIGINT, signal.SIGXCPU, signal.SIGHUP):",
        "    signal.signal(s, signal.SIG_IGN)",
        "print('ignoring', flush=True)",
        "while True: pass",
      ].join("\n");
      const { execution: e } = await h.run({ language: "python", code, limits: signalLimits });
      expect(e.stdout).toBe("ignoring\n");
      expect(e.status, describeRun(e)).toBe("timed_out");
      expect(e.limit).toBe("time");
      expect(e.error?.category).toBe("timeout");
      expect(execExitCode(e)).toBe(124);
      // Both paths end in SIGKILL here: the hard CPU rlimit or the wall timer.
      expect(e.exit_code).toBe(137);
      expect(e.signal).toBe("SIGKILL");
      h.report("4-signals-ignored", e, {
        kill_path: /CPU time/.test(e.error?.value ?? "") ? "rlimit-cpu-hard" : "wall",
      });
    },
  );

  it.skipIf(c.skip)(
    `#4 a SIGXCPU handler that keeps spinning is SIGKILLed at the hard limit and still reported timed_out${c.label}`,
    async ({ expect }) => {
      const code = [
        "import signal",
        "signal.signal(signal.SIGXCPU, lambda *a: print('xcpu caught', flush=True))",
        "while True: pass",
      ].join("\n");
      const { execution: e } = await h.run({ language: "python", code, limits: signalLimits });
      expect(e.status, describeRun(e)).toBe("timed_out");
      expect(e.limit).toBe("time");
      expect(e.error?.category).toBe("timeout");
      expect(e.exit_code).toBe(137);
      expect(e.signal).toBe("SIGKILL");
      h.report("4-sigxcpu-caught", e, {
        caught: e.stdout.includes("xcpu caught"),
        kill_path: /CPU time/.test(e.error?.value ?? "") ? "rlimit-cpu-hard" : "wall",
      });
    },
  );
});
