/**
 * Attacks: nothing — this is the golden posture every hostile case relies on, read from inside
 * the run and from the host (HOSTILE.md #34, anchor: gVisor `sandboxposture_test.go`, isolate
 * fd closing).
 *
 * Expected inside: uid/gid 1000 (all four ids), no capabilities in any set, NoNewPrivs 1,
 * Seccomp 2 (runcell's filter, on x86-64),
 * namespaces (user, pid, net, ipc, uts, mnt, cgroup) all different from runcell's, rlimits as
 * configured (CPU 2 s, file 16 MiB, nofile 256, core 0), and only fds 0, 1, 2 open.
 * Expected from the host, while the run sleeps: every process of the run's cgroup runs as the
 * run's pooled host uid with CapEff 0 and NoNewPrivs 1; cancelling the run then ends it as
 * `cancelled`.
 *
 * Inherited descriptors: the launcher closes every fd above 2 before anything else, so a
 * descriptor runcell inherited without close-on-exec never reaches the sandbox. The last case
 * proves it by starting a runner that inherits an extra fd 200.
 *
 * Deterministic: all values are fixed by the sandbox configuration; the host-side probe waits
 * for the run to print READY (bounded by the run's own wall limit) before reading /proc.
 */
import { spawn } from "node:child_process";
import { seccompSupported } from "../../../src/sandbox/seccomp.js";
import { FD_PROBE } from "./fd-probe.js";
import { readFileSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, it } from "vitest";
import type { Execution } from "../../../src/execution/types.js";
import { describeRun, needs, probeHost, probeResults, SUITE_LIMITS, useHarness } from "../harness.js";

const host = await probeHost();
const h = useHarness(host);
const c = needs(host, "bwrap");
const outside = needs(host, "bwrap", "root", "pids");

const NAMESPACES = ["user", "pid", "net", "ipc", "uts", "mnt", "cgroup"];

function statusField(status: string, key: string): string {
  return new RegExp(`^${key}:\\s*(.*)$`, "m").exec(status)?.[1]?.trim() ?? "";
}

describe.concurrent("posture", () => {
  it.skipIf(c.skip)(
    `#34 inside: uid 1000, no caps, NoNewPrivs, own namespaces, rlimits, fds 0-2${c.label}`,
    async ({ expect }) => {
      const code = [
        "import json, os",
        "status = open('/proc/self/status').read()",
        "print('STATUS=' + json.dumps(status))",
        `print('NS=' + json.dumps({n: os.readlink(f'/proc/self/ns/{n}') for n in ${JSON.stringify(NAMESPACES)}}))`,
        "print('LIMITS=' + json.dumps(open('/proc/self/limits').read()))",
        ...FD_PROBE,
      ].join("\n");
      const { execution: e } = await h.run({ language: "python", code });
      expect(e.status, describeRun(e)).toBe("completed");
      const r = probeResults(e);
      const status = r.STATUS as string;
      expect(statusField(status, "Uid").split(/\s+/)).toEqual(["1000", "1000", "1000", "1000"]);
      expect(statusField(status, "Gid").split(/\s+/)).toEqual(["1000", "1000", "1000", "1000"]);
      for (const set of ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]) {
        expect(statusField(status, set), set).toBe("0000000000000000");
      }
      expect(statusField(status, "NoNewPrivs")).toBe("1");
      // Filtered (mode 2) where runcell builds its filter; otherwise no filter (0).
      expect(statusField(status, "Seccomp")).toBe(seccompSupported() ? "2" : "0");

      const ns = r.NS as Record<string, string>;
      for (const name of NAMESPACES) {
        expect(ns[name], name).not.toBe(readlinkSync(`/proc/self/ns/${name}`));
      }

      const limits = r.LIMITS as string;
      const limit = (label: string) =>
        new RegExp(`^${label}\\s+(\\S+)\\s+(\\S+)`, "m").exec(limits)?.slice(1, 3);
      expect(limit("Max cpu time")).toEqual([
        String(SUITE_LIMITS.cpuMs / 1000),
        String(SUITE_LIMITS.cpuMs / 1000 + 1),
      ]);
      expect(limit("Max file size")).toEqual([
        String(SUITE_LIMITS.fileBytes),
        String(SUITE_LIMITS.fileBytes),
      ]);
      expect(limit("Max open files")).toEqual([
        String(SUITE_LIMITS.openFiles),
        String(SUITE_LIMITS.openFiles),
      ]);
      expect(limit("Max core file size")).toEqual(["0", "0"]);
      if (host.root) expect(limit("Max processes")?.[0]).not.toBe("unlimited");

      // Only the standard streams: nothing runcell holds or inherited reaches the code.
      expect(r.FDS).toEqual([0, 1, 2]);
      h.report("34-posture-inside", e, { fds: r.FDS });
    },
  );

  it.skipIf(outside.skip)(
    `#34 from the host: pooled uid, CapEff 0, NoNewPrivs 1; cancel ends it${outside.label}`,
    async ({ expect }) => {
      const abort = new AbortController();
      let ready!: () => void;
      const isReady = new Promise<void>((resolve) => (ready = resolve));
      const live = h.start({
        language: "python",
        code: "import time\nprint('READY', flush=True)\ntime.sleep(30)",
        signal: abort.signal,
        onStdout: (text) => text.includes("READY") && ready(),
      });
      // Bounded: the run's own wall limit ends it (and `done` settles) if READY never comes.
      await Promise.race([isReady, live.done]);
      const members = live.tracked.cgroupDirs.flatMap((dir) => {
        try {
          return readFileSync(join(dir, "cgroup.procs"), "utf8").split("\n").filter(Boolean).map(Number);
        } catch {
          return [];
        }
      });
      const seen = [...new Set(members)].map((pid) => {
        const status = readFileSync(`/proc/${pid}/status`, "utf8");
        return {
          name: statusField(status, "Name"),
          uid: statusField(status, "Uid").split(/\s+/),
          capEff: statusField(status, "CapEff"),
          noNewPrivs: statusField(status, "NoNewPrivs"),
        };
      });
      abort.abort();
      const { execution: e, tracked } = await live.done;
      expect(e.status, describeRun(e)).toBe("cancelled");
      expect(e.error?.category).toBe("cancelled");
      expect(seen.map((p) => p.name).sort()).toEqual(["bwrap", "bwrap", "python3"]);
      const uid = String(tracked.uids[0]);
      expect(Number(uid)).toBeGreaterThanOrEqual(200_000);
      for (const p of seen) {
        expect(p.uid, p.name).toEqual([uid, uid, uid, uid]);
        expect(p.capEff, p.name).toBe("0000000000000000");
        expect(p.noNewPrivs, p.name).toBe("1");
      }
      h.report("34-posture-outside", e, { processes: seen });
    },
  );
});

// Sequential, after the others: its child process's pipes would otherwise count as fds the
// runner leaked in the harness's check of a concurrent case.
describe("posture: inherited descriptors", () => {
  it.skipIf(c.skip)(
    `#34 an fd runcell inherited without close-on-exec does not reach the sandbox${c.label}`,
    async ({ expect }) => {
      // bash opens fd 200 (not close-on-exec) and execs a runner, which runs the probe.
      const child = spawn(
        "/bin/bash",
        [
          "-c",
          'exec 200</dev/null; exec "$0" "$@"',
          process.execPath,
          "--import",
          "tsx",
          fileURLToPath(new URL("./inherited-fd-child.ts", import.meta.url)),
          join(h.runtimeDir, "child"),
          String(h.uidRange.first + h.uidRange.size - 16),
          "16",
        ],
        { stdio: ["ignore", "pipe", "pipe"] },
      );
      let out = "";
      let err = "";
      child.stdout!.on("data", (chunk: Buffer) => (out += chunk));
      child.stderr!.on("data", (chunk: Buffer) => (err += chunk));
      const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
      const code = await new Promise<number | null>((resolve) => child.once("close", resolve));
      clearTimeout(timer);
      expect(code, err).toBe(0);
      const e = JSON.parse(out) as Execution;
      expect(e.status, describeRun(e)).toBe("completed");
      h.report("34-inherited-fd", e, { fds: probeResults(e).FDS });
      expect(probeResults(e).FDS).toEqual([0, 1, 2]);
    },
  );
});
