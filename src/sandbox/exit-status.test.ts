import { describe, expect, it } from "vitest";
import { exitCodeOfSignal, signalOfExitCode } from "./exit-status.js";

describe("exit status of signalled programs", () => {
  it("decodes 128+n into the signal's name, and back", () => {
    expect(signalOfExitCode(137)).toBe("SIGKILL");
    expect(signalOfExitCode(139)).toBe("SIGSEGV");
    expect(signalOfExitCode(152)).toBe("SIGXCPU");
    expect(exitCodeOfSignal("SIGKILL")).toBe(137);
    expect(exitCodeOfSignal("SIGXFSZ")).toBe(153);
  });

  it("leaves ordinary exit codes alone", () => {
    for (const code of [null, 0, 1, 2, 125, 128]) expect(signalOfExitCode(code)).toBeNull();
  });
});
