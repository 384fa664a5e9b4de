/**
 * Attacks: the disk. 'I love beans\n' * 2**24 — 218 MB into the workspace (HOSTILE.md #23,
 * anchor: Piston `tests/fallocate.py`, isolate `-f`/`-q`), from Python and as a shell
 * redirect, while another job starts.
 *
 * Expected: the 16 MiB file-size rlimit stops the write. Python ignores SIGXFSZ and gets
 * EFBIG: `failed`, `limit: file_size`, exit 1, `OSError [Errno 27]`. A shell command is
 * killed by SIGXFSZ: exit 153, `limit: file_size`, and the file is exactly 16 MiB. A job
 * started concurrently completes normally. The literal one-liner
 * `open('beans','w').write('I love beans\n'*2**24)` never reaches the disk under the suite's
 * 256 MiB: the 218 MB string plus its 218 MB encoding exceed the memory cap first, so it is
 * reported as `limit: memory` (asserted separately).
 *
 * Deterministic: the writes are larger than the limit and smaller than the 64 MiB tmpfs, so
 * only the rlimit can stop them.
 */
import { describe, it } from "vitest";
import { describeRun, needs, probeHost, SUITE_LIMITS, useHarness } from "../harness.js";

const host = await probeHost();
const h = useHarness(host);
const c = needs(host, "bwrap");
const mem = needs(host, "bwrap", "memory");

describe.concurrent("big files", () => {
  it.skipIf(c.skip)(
    `#23 Python writing 2**24 lines in chunks gets EFBIG: limit file_size; a concurrent job runs${c.label}`,
    async ({ expect }) => {
      const code =
        "with open('beans', 'w') as f:\n    for _ in range(2**10): f.write('I love beans\\n' * 2**14)";
      const [big, other] = await Promise.all([
        h.run({ language: "python", code }),
        h.run({ language: "python", code: "print('concurrent job')" }),
      ]);
      const e = big.execution;
      expect(e.status, describeRun(e)).toBe("failed");
      expect(e.limit).toBe("file_size");
      expect(e.error?.name).toBe("OSError");
      expect(e.error?.value).toMatch(/\[Errno 27\] File too large/);
      expect(e.error?.category).toBe("runtime");
      expect(e.exit_code).toBe(1);
      expect(other.execution.status).toBe("completed");
      expect(other.execution.stdout).toBe("concurrent job\n");
      h.report("23-python-big-file", e);
    },
  );

  it.skipIf(mem.skip)(
    `#23 the literal one-liner builds a 218 MB string first and hits the 256 MiB memory cap${mem.label}`,
    async ({ expect }) => {
      const { execution: e } = await h.run({
        language: "python",
        code: "open('beans', 'w').write('I love beans\\n' * 2**24)",
      });
      expect(e.status, describeRun(e)).toBe("failed");
      expect(e.limit).toBe("memory");
      expect(e.error?.category).toBe("memory");
      h.report("23-literal", e);
    },
  );

  it.skipIf(c.skip)(
    `#23 a shell write past the limit dies of SIGXFSZ: exit 153, file capped${c.label}`,
    async ({ expect }) => {
      const code = "head -c 100000000 /dev/zero > /tmp/big\nstatus=$?\nstat -c %s /tmp/big\nexit $status";
      const { execution: e } = await h.run({ language: "bash", code });
      expect(e.status, describeRun(e)).toBe("failed");
      expect(e.limit).toBe("file_size");
      expect(e.exit_code).toBe(153);
      expect(e.signal).toBe("SIGXFSZ");
      expect(e.stdout).toBe(`${SUITE_LIMITS.fileBytes}\n`);
      h.report("23-shell-big-file", e);
    },
  );
});
