/**
 * Attacks: the stack. `sys.setrecursionlimit(10**7)` then infinite recursion (HOSTILE.md #10,
 * anchor: Judge0 "Runtime Error (SIGSEGV)").
 *
 * What actually happens depends on where the recursion lives, so both are covered:
 *   - pure-Python recursion: Python ≥ 3.11 keeps Python frames on the heap, not the C stack,
 *     so the frames grow memory until the cgroup OOM-kills the run: `failed`, `limit: memory`,
 *     category `memory`, exit 137;
 *   - recursion through C (repr of a list nested 10**6 deep): the C stack overflows and the
 *     interpreter dies of SIGSEGV: `failed`, category `runtime`, `exit_code: 139`,
 *     `signal: SIGSEGV`.
 * Either way the crash is classified from the exit status, never an `environment` (runcell)
 * error, and the host is untouched.
 *
 * Deterministic: the recursion has no base case; the C-stack case overflows the 8 MiB stack
 * long before 256 MiB of heap is used.
 */
import { describe, it } from "vitest";
import { describeRun, needs, probeHost, useHarness } from "../harness.js";

const host = await probeHost();
const h = useHarness(host);
const mem = needs(host, "bwrap", "memory");
const c = needs(host, "bwrap");

describe.concurrent("deep recursion", () => {
  it.skipIf(mem.skip)(
    `#10 Python-level infinite recursion under setrecursionlimit(10**7) is OOM-killed, classified memory${mem.label}`,
    async ({ expect }) => {
      const code = "import sys\nsys.setrecursionlimit(10**7)\ndef f(n): return f(n + 1)\nf(0)";
      const { execution: e } = await h.run({ language: "python", code });
      expect(e.status, describeRun(e)).toBe("failed");
      expect(e.error?.category).not.toBe("environment");
      expect(e.limit).toBe("memory");
      expect(e.error?.category).toBe("memory");
      expect(e.exit_code).toBe(137);
      h.report("10-python-recursion", e);
    },
  );

  it.skipIf(c.skip)(
    `#10 C-level recursion overflows the stack: exit 139, SIGSEGV, category runtime${c.label}`,
    async ({ expect }) => {
      const code = [
        "import sys",
        "sys.setrecursionlimit(10**7)",
        "x = []",
        "for _ in range(10**6): x = [x]",
        "repr(x)",
      ].join("\n");
      const { execution: e } = await h.run({ language: "python", code });
      expect(e.status, describeRun(e)).toBe("failed");
      expect(e.exit_code).toBe(139);
      expect(e.signal).toBe("SIGSEGV");
      expect(e.error?.category).toBe("runtime");
      expect(e.error?.name).toBe("NonZeroExit");
      expect(e.limit).toBeNull();
      h.report("10-c-recursion", e);
    },
  );

  it.skipIf(c.skip)(
    `#10 without raising the limit, RecursionError is a runtime error${c.label}`,
    async ({ expect }) => {
      const { execution: e } = await h.run({ language: "python", code: "def f(n): return f(n + 1)\nf(0)" });
      expect(e.status, describeRun(e)).toBe("failed");
      expect(e.error?.name).toBe("RecursionError");
      expect(e.error?.category).toBe("runtime");
      expect(e.exit_code).toBe(1);
      h.report("10-recursion-error", e);
    },
  );
});
