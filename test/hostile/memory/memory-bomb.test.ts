/**
 * Attacks: memory. `x.append(bytearray(10**7))` forever (HOSTILE.md #7, anchor: isolate
 * `cg-oom-killed`, gVisor `test/root/cgroup_test.go`) and a single 1 TiB allocation,
 * `bytearray(2**40)` (#8, anchor: isolate `-m` "allocations fail").
 *
 * Expected: #7 is OOM-killed inside its own memory cgroup: `failed`, `limit: memory`,
 * category `memory`, SIGKILL (137), CLI 137, peak memory at the 256 MiB cap; the runner is
 * unaffected and the next job runs. #8 fails cleanly in the program: `MemoryError`, category
 * `memory`, `limit: null` (no limit was hit: the kernel refused the allocation outright).
 *
 * Deterministic: #7 allocates without bound, so only the cgroup can stop it (bytearray
 * zero-fills, so every page is touched and charged). #8 asks for more than RAM + swap, which
 * the kernel's overcommit heuristic refuses at once (and RLIMIT_AS would too).
 */
import { describe, it } from "vitest";
import { execExitCode } from "../../../src/cli/commands/exec.js";
import { describeRun, needs, probeHost, SUITE_LIMITS, useHarness } from "../harness.js";

const host = await probeHost();
const h = useHarness(host);
const mem = needs(host, "bwrap", "memory");
const c = needs(host, "bwrap");

describe.concurrent("memory", () => {
  it.skipIf(mem.skip)(
    `#7 a growing list of bytearrays is OOM-killed in its cgroup${mem.label}`,
    async ({ expect }) => {
      const rssBefore = process.memoryUsage().rss;
      const { execution: e } = await h.run({
        language: "python",
        code: "x = []\nwhile True: x.append(bytearray(10**7))",
      });
      expect(e.status, describeRun(e)).toBe("failed");
      expect(e.limit).toBe("memory");
      expect(e.error?.category).toBe("memory");
      expect(e.error?.name).toBe("MemoryLimitExceeded");
      expect(e.exit_code).toBe(137);
      expect(e.signal).toBe("SIGKILL");
      expect(execExitCode(e)).toBe(137);
      expect(e.limits.memory_bytes).toBe(SUITE_LIMITS.memoryBytes);
      expect(e.peak_memory_bytes).not.toBeNull();
      expect(e.peak_memory_bytes!).toBeLessThanOrEqual(SUITE_LIMITS.memoryBytes);
      expect(e.peak_memory_bytes!).toBeGreaterThan(SUITE_LIMITS.memoryBytes / 2);

      const { execution: next } = await h.run({ language: "python", code: "print('alive')" });
      expect(next.status, describeRun(next)).toBe("completed");
      h.report("7-memory-bomb", e, { runner_rss_delta: process.memoryUsage().rss - rssBefore });
    },
  );

  it.skipIf(c.skip)(
    `#8 bytearray(2**40) fails with MemoryError, category memory${c.label}`,
    async ({ expect }) => {
      const { execution: e } = await h.run({ language: "python", code: "bytearray(2**40)" });
      expect(e.status, describeRun(e)).toBe("failed");
      expect(e.error?.name).toBe("MemoryError");
      expect(e.error?.category).toBe("memory");
      expect(e.limit).toBeNull();
      expect(e.exit_code).toBe(1);
      h.report("8-huge-alloc", e);
    },
  );
});
