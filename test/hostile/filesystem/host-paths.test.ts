/**
 * Attacks: host data. Reading secrets and runcell's own files by path (HOSTILE.md #21, anchor:
 * bwrap `test-run.sh`), and walking the whole tree for databases and runcell's source
 * (#22, anchor: Judge0 CHANGELOG v1.4.0, the `/api` move).
 *
 * Expected: /etc/shadow, /root, /home, ~/.ssh, runcell's source directory (this repository)
 * and its runtime directory do not exist inside; /etc holds only the allowlist plus a
 * synthetic passwd/group with no host accounts; a `find /` (minus /proc and /sys) finds no
 * *.sqlite file, no copy of runcell's source and no marker file planted in the runtime
 * directory and the host's /tmp. Only /usr is shared with the host (read-only, by design), so
 * matches there are reported but are not host data of runcell's.
 *
 * Not asserted, reported instead: /proc/self/mountinfo inside names the host path of the
 * run's code directory (inside the runtime directory) as the source of the /run/runcell bind
 * mount, so the runtime directory's path, not its content, is visible.
 *
 * Deterministic: the mounts are fixed by the sandbox; the probes only look.
 */
import { randomUUID } from "node:crypto";
import { rmSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { ETC_ALLOWLIST } from "../../../src/sandbox/bwrap-sandbox.js";
import { describe, it } from "vitest";
import { describeRun, needs, probeHost, probeResults, REPO_ROOT, useHarness } from "../harness.js";

const host = await probeHost();
const h = useHarness(host);
const c = needs(host, "bwrap");

// What the sandbox may show of /etc: its allowlist, plus the generated passwd and group.
const ETC_ALLOWED = new Set([...ETC_ALLOWLIST, "passwd", "group"]);

describe.concurrent("host paths", () => {
  it.skipIf(c.skip)(
    `#21 secrets, homes, runcell's source and runtime dir are absent${c.label}`,
    async ({ expect }) => {
      const paths = [
        "/etc/shadow",
        "/etc/gshadow",
        "/etc/sudoers",
        "/root",
        "/root/.ssh/id_rsa",
        "/home",
        join(homedir(), ".ssh"),
        REPO_ROOT,
        join(REPO_ROOT, "package.json"),
        h.runtimeDir,
        join(h.runtimeDir, "sandbox-passwd"),
        "/var/run/docker.sock",
      ];
      const code = [
        "import json, os",
        `paths = ${JSON.stringify(paths)}`,
        "print('VISIBLE=' + json.dumps([p for p in paths if os.path.lexists(p)]))",
        "print('ETC=' + json.dumps(sorted(os.listdir('/etc'))))",
        "print('PASSWD=' + json.dumps(open('/etc/passwd').read().splitlines()))",
        "print('MOUNTINFO=' + json.dumps(open('/proc/self/mountinfo').read()))",
      ].join("\n");
      const { execution: e } = await h.run({ language: "python", code });
      expect(e.status, describeRun(e)).toBe("completed");
      const r = probeResults(e);
      expect(r.VISIBLE).toEqual([]);
      expect((r.ETC as string[]).filter((name) => !ETC_ALLOWED.has(name))).toEqual([]);
      expect((r.PASSWD as string[]).map((line) => line.split(":")[0])).toEqual(["root", "runner", "nobody"]);
      h.report("21-host-paths", e, {
        probes: paths.length,
        visible: (r.VISIBLE as string[]).length,
        mountinfo_names_runtime_dir: (r.MOUNTINFO as string).includes(h.runtimeDir),
      });
    },
  );

  it.skipIf(c.skip)(
    `#22 walking / finds no database, no runcell source, no planted marker${c.label}`,
    async ({ expect }) => {
      const marker = `hostile-marker-${randomUUID()}`;
      const planted = [join(h.runtimeDir, marker), join(tmpdir(), marker)];
      for (const path of planted) writeFileSync(path, "host data\n");
      try {
        const find = [
          "find / \\( -path /proc -o -path /sys \\) -prune -o \\(",
          "-name '*.sqlite' -o -name '*.sqlite3' -o -path '*/src/runner/runner.ts'",
          `-o -name '${marker}' -o -path '${REPO_ROOT}' \\) -print 2>/dev/null`,
        ].join(" ");
        const code = `${find}\necho END`;
        const { execution: e } = await h.run({ language: "bash", code, limits: { timeMs: 15_000 } });
        expect(e.status, describeRun(e)).toBe("completed");
        const found = e.stdout.split("\n").filter((line) => line && line !== "END");
        expect(e.stdout).toContain("END");
        expect(found.filter((path) => !path.startsWith("/usr/"))).toEqual([]);
        expect(
          found.filter((path) => path.includes(marker) || path.endsWith("src/runner/runner.ts")),
        ).toEqual([]);
        h.report("22-walk", e, { found_outside_usr: 0, found_in_usr: found.length });
      } finally {
        for (const path of planted) rmSync(path, { force: true });
      }
    },
  );
});
