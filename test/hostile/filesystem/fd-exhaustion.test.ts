/**
 * Attacks: file descriptors. `[open('/dev/null') for _ in range(10**6)]` (HOSTILE.md #26,
 * anchor: isolate `-n`, nsjail `rlimit_nofile`).
 *
 * Expected: open() fails with EMFILE exactly at the 256-descriptor limit (the last fd that
 * opened is 255); the program handles it and completes; the runner's own fd count does not
 * grow (harness check).
 *
 * Deterministic: descriptors are allocated lowest-first, so the failing open is the one that
 * would have been fd 256.
 */
import { describe, it } from "vitest";
import { describeRun, needs, probeHost, probeResults, SUITE_LIMITS, useHarness } from "../harness.js";

const host = await probeHost();
const h = useHarness(host);
const c = needs(host, "bwrap");

describe("fd exhaustion", () => {
  it.skipIf(c.skip)(`#26 open() fails with EMFILE at the nofile limit${c.label}`, async ({ expect }) => {
    const code = [
      "import errno, json",
      "files = []",
      "try:",
      "    for _ in range(10**6): files.append(open('/dev/null'))",
      "except OSError as e:",
      "    print('RESULT=' + json.dumps({'errno': errno.errorcode[e.errno], 'last_fd': files[-1].fileno()}))",
    ].join("\n");
    const { execution: e } = await h.run({ language: "python", code });
    expect(e.status, describeRun(e)).toBe("completed");
    expect(probeResults(e).RESULT).toEqual({ errno: "EMFILE", last_fd: SUITE_LIMITS.openFiles - 1 });
    h.report("26-fd-exhaustion", e, probeResults(e).RESULT as Record<string, unknown>);
  });
});
