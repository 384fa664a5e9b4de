/**
 * Child process for lifecycle.test.ts: an owner of one sandboxed kernel, started as `runcell run`
 * starts it (leased BwrapSandbox, kernel policy, real cgroups). Once the kernel is ready it prints
 * one line, `READY <json>` (the kernel's pid, pooled host uid, connection file and cgroup
 * directories), and then waits to be killed. A backstop disposes the kernel and exits after 60 s,
 * so a test that failed to kill it leaves nothing behind for long.
 *
 * argv: <runtime dir> <cgroup parent name> <first uid> <uid pool size> <kernel env overrides as JSON>
 */
import { dirname } from "node:path";
import { loadConfig } from "../../../src/config/config.js";
import { KernelManager, prepareRuntimeDir } from "../../../src/kernels/kernel-manager.js";
import { detectCgroups } from "../../../src/sandbox/cgroups.js";
import type { CgroupManager } from "../../../src/sandbox/cgroups-types.js";
import { HostSandbox } from "../../../src/sandbox/host-sandbox.js";
import { resolveLimits } from "../../../src/sandbox/limits.js";
import { SandboxFactory } from "../../../src/sandbox/sandbox-factory.js";

const [runtimeDir, parentName, firstUid, poolSize, envJson] = process.argv.slice(2);
await prepareRuntimeDir(runtimeDir!, { sandboxed: true });
const detected = await detectCgroups({ parentName: parentName! });
const cgroupDirs: string[] = [];
const cgroups: CgroupManager | null =
  detected.support.version === "none"
    ? null
    : {
        support: detected.support,
        sweep: () => detected.sweep(),
        create: async (name, limits) => {
          const handle = await detected.create(name, limits);
          cgroupDirs.push(...handle.procsFiles.map((file) => dirname(file)));
          return handle;
        },
      };
const factory = new SandboxFactory({
  mode: "bwrap",
  cgroups,
  runtimeDir: runtimeDir!,
  firstUid: Number(firstUid),
  uidPoolSize: Number(poolSize),
});
const lease = await factory.lease({ limits: resolveLimits(), network: false, processCpuLimit: false });
const config = loadConfig(process.env);
const manager = new KernelManager({
  jupyterPaths: config.jupyterPaths,
  runtimeDir: runtimeDir!,
  env: config.kernelEnv,
  sandbox: new HostSandbox(),
});
const kernel = await manager.start({
  name: "python3",
  sandbox: lease.sandbox,
  envOverrides: JSON.parse(envJson!) as Record<string, string>,
  startTimeoutMs: 30_000,
});
process.stdout.write(
  `READY ${JSON.stringify({
    pid: kernel.pid,
    hostUid: lease.hostUid,
    connectionFile: kernel.connectionFile,
    cgroupDirs,
  })}\n`,
);
setTimeout(() => {
  void kernel.dispose().finally(() => process.exit(3));
}, 60_000);
