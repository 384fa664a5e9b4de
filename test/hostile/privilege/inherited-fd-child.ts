/**
 * Child process for posture.test.ts: runs one sandboxed Python probe with a Runner of its own
 * and prints the Execution as JSON. It is started with an extra inherited descriptor (fd 3,
 * not close-on-exec), the situation of a runcell started by a parent that leaks an fd.
 *
 * argv: <runtime dir> <first uid> <uid pool size>
 */
import { prepareRuntimeDir } from "../../../src/kernels/kernel-manager.js";
import { Runner } from "../../../src/runner/runner.js";
import { SandboxFactory } from "../../../src/sandbox/sandbox-factory.js";
import { FD_PROBE } from "./fd-probe.js";

const [runtimeDir, firstUid, poolSize] = process.argv.slice(2);
await prepareRuntimeDir(runtimeDir!, { sandboxed: true });
const runner = new Runner({
  sandboxes: new SandboxFactory({
    mode: "bwrap",
    cgroups: null,
    runtimeDir: runtimeDir!,
    firstUid: Number(firstUid),
    uidPoolSize: Number(poolSize),
  }),
  runtimeDir: runtimeDir!,
});
const execution = await runner.runOnce({
  language: "python",
  code: ["import json, os", ...FD_PROBE].join("\n"),
});
process.stdout.write(JSON.stringify(execution));
