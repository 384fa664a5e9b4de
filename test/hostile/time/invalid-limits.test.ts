/**
 * Attacks: limit requests meant to turn a limit off — 0, negative, absurdly large, NaN,
 * infinite or fractional values (HOSTILE.md #5, anchor: Judge0 `MAX_*` and its wall ≥ 1 s fix,
 * Piston api-v2.md).
 *
 * Expected: runOnce throws InvalidArgumentError (code INVALID_LIMIT) whose message names the
 * limit and the server's ceiling; nothing is started (the harness checks that no run
 * directory, cgroup or process was left). Never clamped to "unlimited".
 *
 * Deterministic: validation happens before anything runs.
 */
import { describe, it } from "vitest";
import { DEFAULT_CEILINGS, type ResourceLimits } from "../../../src/sandbox/limits.js";
import { needs, probeHost, useHarness } from "../harness.js";

const host = await probeHost();
const h = useHarness(host);
const c = needs(host, "bwrap");

const cases: Array<[keyof ResourceLimits, number]> = [
  ["timeMs", 0],
  ["timeMs", -1],
  ["timeMs", 1e12],
  ["timeMs", Number.NaN],
  ["cpuMs", Number.POSITIVE_INFINITY],
  ["memoryBytes", -1],
  ["memoryBytes", 1e12],
  ["pids", 0],
  ["pids", Number.NaN],
  ["outputBytes", 1.5],
  ["openFiles", 1e9],
];

describe.concurrent("invalid limits", () => {
  for (const [key, value] of cases) {
    it.skipIf(c.skip)(
      `#5 ${key} = ${value} is rejected, naming the ceiling${c.label}`,
      async ({ expect }) => {
        const error = await h.rejects({ language: "python", code: "print('ran')", limits: { [key]: value } });
        expect(error.code).toBe("INVALID_LIMIT");
        expect(error.message).toContain(key);
        expect(error.message).toContain(String(DEFAULT_CEILINGS[key]));
        expect(error.message).toContain(String(value));
        h.report(`5-${key}-${value}`, null, { rejected: error.code, message: error.message });
      },
    );
  }
});
