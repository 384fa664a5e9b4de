/**
 * Attacks: memory through tmpfs. Writing to /dev/shm and /tmp until something stops it
 * (HOSTILE.md #9, anchor: bwrap `--size`, gVisor `resources.md`).
 *
 * Expected: each private tmpfs stops at its size (`tmpBytes`, 64 MiB) with ENOSPC; the run
 * itself ends normally (the code handles the error); the host's /dev/shm and /tmp never see
 * the files. Files are written 8 MiB at a time so the 16 MiB file-size limit is not what stops
 * them, and the pages written count against the run's memory cgroup.
 *
 * The sandbox's root is bwrap's own tmpfs, created without `--size`; runcell remounts it
 * read-only once every mount is in place, so / and its directories (/etc, /run, /var) give
 * EROFS and nothing unsized can be filled.
 *
 * Deterministic: tmpfs sizes are exact; the code writes until the kernel refuses.
 */
import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { describe, it } from "vitest";
import { describeRun, needs, probeHost, probeResults, SUITE_LIMITS, useHarness } from "../harness.js";

const host = await probeHost();
const h = useHarness(host);
const c = needs(host, "bwrap");

describe("filling the private tmpfs mounts", () => {
  it.skipIf(c.skip)(
    `#9 /dev/shm and /tmp end in ENOSPC at the tmpfs size; host untouched${c.label}`,
    async ({ expect }) => {
      const name = `hostile-fill-${randomUUID()}`;
      const code = [
        "import errno, json, os",
        `NAME = ${JSON.stringify(name)}`,
        "chunk = b'\\0' * (1 << 20)",
        "for d in ('/dev/shm', '/tmp'):",
        "    total, err, i = 0, None, 0",
        "    while err is None:",
        "        fd = os.open(f'{d}/{NAME}-{i}', os.O_WRONLY | os.O_CREAT, 0o600)",
        "        try:",
        "            for _ in range(8):",
        "                total += os.write(fd, chunk)",
        "        except OSError as e:",
        "            err = errno.errorcode[e.errno]",
        "        finally:",
        "            os.close(fd)",
        "        i += 1",
        "    print(d.replace('/', '_') + '=' + json.dumps({'bytes': total, 'error': err}))",
      ].join("\n");
      const { execution: e } = await h.run({ language: "python", code });
      expect(e.status, describeRun(e)).toBe("completed");
      const results = probeResults(e) as Record<string, { bytes: number; error: string }>;
      for (const key of ["_dev_shm", "_tmp"]) {
        expect(results[key]?.error, key).toBe("ENOSPC");
        expect(results[key]!.bytes).toBeLessThanOrEqual(SUITE_LIMITS.tmpBytes);
        expect(results[key]!.bytes).toBeGreaterThan(SUITE_LIMITS.tmpBytes - 2 * 1024 * 1024);
      }
      for (const dir of ["/dev/shm", "/tmp"]) expect(existsSync(`${dir}/${name}-0`)).toBe(false);
      // tmpfs pages are the run's memory: both mounts' worth shows in its cgroup's peak.
      if (host.cgroupSupport.memory)
        expect(e.peak_memory_bytes!).toBeGreaterThanOrEqual(2 * SUITE_LIMITS.tmpBytes);
      h.report("9-tmpfs-fill", e, {
        shm_bytes: results._dev_shm?.bytes,
        tmp_bytes: results._tmp?.bytes,
      });
    },
  );

  it.skipIf(c.skip)(
    `#9 the sandbox root (/, /run, /etc, /var) is read-only: nothing unsized to fill${c.label}`,
    async ({ expect }) => {
      const code = [
        "import errno",
        "for path in ('/fill', '/run/fill', '/etc/fill', '/var/fill', '/usr/fill'):",
        "    try:",
        "        open(path, 'wb').write(b'x')",
        "        print(path, 'WRITABLE')",
        "    except OSError as e:",
        "        print(path, errno.errorcode[e.errno])",
      ].join("\n");
      const { execution: e } = await h.run({ language: "python", code });
      expect(e.status, describeRun(e)).toBe("completed");
      expect(e.stdout).not.toContain("WRITABLE");
      expect(e.stdout.trim().split("\n")).toEqual(
        ["/fill", "/run/fill", "/etc/fill", "/var/fill", "/usr/fill"].map((p) => `${p} EROFS`),
      );
      h.report("9-root-read-only", e);
    },
  );
});
