/**
 * Attack: runcell dies (SIGKILL) while a sandbox is still being launched. The launcher chain
 * relies on a parent-death signal that setpriv arms on its way to bwrap; a parent that died
 * before that never sends it, and the sandbox would run on with nobody to end it (seen under
 * load: `runcell run` SIGKILLed during a kernel start left the kernel's launcher running).
 *
 * Expected: once the signal is armed, the chain compares its parent with the pid that started
 * it (RUNCELL_PARENT_PID, set by ManagedProcess) and exits 125 before bwrap runs if they
 * differ; with the right parent the program runs as usual.
 *
 * Deterministic: a dead parent is shown to the chain as what it sees after one, a parent other
 * than the recorded starter (the chain is reparented), by recording another pid as the starter.
 */
import { spawnSync } from "node:child_process";
import { describe, it } from "vitest";
import { BwrapSandbox } from "../../../src/sandbox/bwrap-sandbox.js";
import { DEFAULT_LIMITS } from "../../../src/sandbox/limits.js";
import { PARENT_PID_ENV } from "../../../src/sandbox/managed-process.js";
import { needs, probeHost } from "../harness.js";

const host = await probeHost();
const c = needs(host, "bwrap", "root");

/** Runs the whole launcher chain of a sandbox for `echo ran`, naming `starter` as its parent. */
function launch(starter: string): { status: number | null; stdout: string; stderr: string } {
  const sandbox = new BwrapSandbox({
    policy: { limits: { ...DEFAULT_LIMITS }, network: false },
    cgroups: null,
    // A host uid of its own, far from every harness's pool.
    hostUid: 1_900_000_000 + (process.pid % 100_000),
  });
  const argv = sandbox.buildArgv(["/usr/bin/echo", "ran"]);
  const run = spawnSync(argv[0]!, argv.slice(1), {
    env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", LANG: "C.UTF-8", [PARENT_PID_ENV]: starter },
    encoding: "utf8",
    timeout: 30_000,
  });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

describe("a launch whose parent is gone", () => {
  it.skipIf(c.skip)(`runs the program while its starter is its parent${c.label}`, ({ expect }) => {
    const run = launch(String(process.pid));
    expect(run.stderr).toBe("");
    expect(run.stdout).toBe("ran\n");
    expect(run.status).toBe(0);
  });

  it.skipIf(c.skip)(`stops before bwrap once reparented away from its starter${c.label}`, ({ expect }) => {
    // A pid that cannot be this chain's parent: the chain's parent is this test process.
    const run = launch(String(process.pid + 1_000_000));
    expect(run.stdout).toBe("");
    expect(run.status).toBe(125);
  });
});
