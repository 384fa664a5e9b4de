import { beforeAll, describe, expect, it } from "vitest";
import { ensureBuilt, runCli } from "./cli-helpers.js";

// `runcell doctor` end to end: the built CLI probing this host for real.
interface DoctorJson {
  confinable: boolean;
  checks: Array<{ name: string; state: "ok" | "fallback" | "missing"; detail: string; fix: string | null }>;
  capabilities: {
    bubblewrap: { path: string | null; version: string | null; works: boolean };
    cgroups: { version: "v1" | "v2" | "none"; notes: string[] };
    root: boolean;
  };
}

let report: DoctorJson;
let jsonExit: number | null;

beforeAll(async () => {
  ensureBuilt();
  const result = await runCli(["doctor", "--json"], { timeoutMs: 30_000 });
  jsonExit = result.code;
  expect(result.stderr).toBe("");
  report = JSON.parse(result.stdout) as DoctorJson;
});

const CHECKS = [
  "sandbox",
  "user namespaces",
  "memory limit",
  "process limit",
  "CPU time",
  "kill tree",
  "rlimits",
  "privileges",
  "seccomp",
];

describe("runcell doctor", () => {
  it("--json reports every check with a state, the capabilities, and exits by the verdict", () => {
    expect(report.checks.map((c) => c.name)).toEqual(CHECKS);
    for (const check of report.checks) {
      expect(["ok", "fallback", "missing"]).toContain(check.state);
      if (check.state === "ok") expect(check.fix).toBeNull();
    }
    expect(["v1", "v2", "none"]).toContain(report.capabilities.cgroups.version);
    expect(jsonExit).toBe(report.confinable ? 0 : 1);
    const sandbox = report.checks.find((c) => c.name === "sandbox")!;
    expect(sandbox.state === "ok").toBe(report.capabilities.bubblewrap.works);
    if (!report.capabilities.bubblewrap.works) expect(report.confinable).toBe(false);
  });

  it("prints a readable report that agrees with --json", async () => {
    const result = await runCli(["doctor"], { timeoutMs: 30_000 });
    expect(result.code).toBe(jsonExit);
    for (const check of report.checks) {
      expect(result.stdout).toMatch(new RegExp(`^  (ok|fallback|MISSING)\\s+${check.name}\\s`, "m"));
    }
    expect(result.stdout).toContain(`cgroups: ${report.capabilities.cgroups.version}`);
    expect(result.stdout).toContain(report.confinable ? "can confine code" : "cannot confine code");
    for (const check of report.checks.filter((c) => c.state === "fallback")) {
      expect(result.stdout).toContain(`  - ${check.name}: ${check.detail}`);
    }
    for (const check of report.checks.filter((c) => c.state !== "ok" && c.fix)) {
      expect(result.stdout).toContain(check.fix!);
    }
  });

  it("exits 0 on a host where bubblewrap works and limits are enforced", ({ skip }) => {
    if (!report.capabilities.bubblewrap.works) skip("bubblewrap does not work on this host");
    const limits = report.checks.filter((c) =>
      ["memory limit", "process limit", "CPU time"].includes(c.name),
    );
    expect(limits.every((c) => c.state !== "missing")).toBe(true);
    expect(report.confinable).toBe(true);
    expect(jsonExit).toBe(0);
  });

  it("is listed in the help, has its own --help, and rejects arguments", async () => {
    const help = await runCli(["--help"]);
    expect(help.stdout).toContain("runcell doctor [--json]");
    const own = await runCli(["doctor", "--help"]);
    expect(own.code).toBe(0);
    expect(own.stdout).toContain("Usage: runcell doctor [--json]");
    const extra = await runCli(["doctor", "now"]);
    expect(extra.code).toBe(2);
    expect(extra.stderr).toContain("doctor takes no arguments");
    const unknown = await runCli(["doctor", "--bogus"]);
    expect(unknown.code).toBe(2);
  });
});
