import { describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../errors.js";
import { DEFAULT_CEILINGS, DEFAULT_LIMITS, resolveLimits } from "./limits.js";

describe("resolveLimits", () => {
  it("gives the documented defaults when nothing is asked", () => {
    expect(resolveLimits()).toEqual({
      timeMs: 30_000,
      cpuMs: 30_000,
      memoryBytes: 512 * 1024 * 1024,
      pids: 64,
      outputBytes: 1024 * 1024,
      fileBytes: 16 * 1024 * 1024,
      openFiles: 256,
      tmpBytes: 64 * 1024 * 1024,
    });
  });

  it("lets a request lower a limit or raise it up to the ceiling", () => {
    expect(resolveLimits({ timeMs: 1000 }).timeMs).toBe(1000);
    expect(resolveLimits({ memoryBytes: DEFAULT_CEILINGS.memoryBytes }).memoryBytes).toBe(
      DEFAULT_CEILINGS.memoryBytes,
    );
  });

  it.each([
    ["timeMs", 0],
    ["timeMs", -1],
    ["timeMs", 1e12],
    ["memoryBytes", -1],
    ["pids", Number.NaN],
    ["pids", Number.POSITIVE_INFINITY],
    ["outputBytes", 1.5],
  ] as const)("rejects %s = %s, naming the allowed range", (key, value) => {
    let error: unknown;
    try {
      resolveLimits({ [key]: value });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect((error as Error).message).toContain(key);
    if (Number.isInteger(value)) expect((error as Error).message).toContain(String(DEFAULT_CEILINGS[key]));
  });

  it("clamps the defaults to lower server ceilings", () => {
    const ceilings = { ...DEFAULT_CEILINGS, timeMs: 5000 };
    expect(resolveLimits({}, ceilings, DEFAULT_LIMITS).timeMs).toBe(5000);
    expect(() => resolveLimits({ timeMs: 6000 }, ceilings)).toThrow(/5000/);
  });
});
