/**
 * Attacks: device nodes. `os.mknod` of a character device (/dev/mem's 1:1, null's 1:3) and a
 * block device (8:0), plus `os.mkfifo` (HOSTILE.md #27, anchor: isolate `--special-files`,
 * bwrap `nodev`).
 *
 * Expected: mknod of devices fails with EPERM everywhere writable (no CAP_MKNOD); a FIFO on the
 * private /tmp is allowed and harmless; /dev holds only bwrap's minimal set; every writable
 * mount is `nodev`, so even an existing device node would be unusable there.
 *
 * Deterministic: capabilities and mount flags are fixed by the sandbox.
 */
import { describe, it } from "vitest";
import { describeRun, needs, probeHost, probeResults, useHarness } from "../harness.js";

const host = await probeHost();
const h = useHarness(host);
const c = needs(host, "bwrap");

describe("device nodes", () => {
  it.skipIf(c.skip)(
    `#27 mknod is denied (EPERM), FIFOs are harmless, writable mounts are nodev${c.label}`,
    async ({ expect }) => {
      const code = [
        "import errno, json, os, stat",
        "results = {}",
        "for name, where, mode, dev in [",
        "    ('mem', '/tmp/mem', stat.S_IFCHR, (1, 1)),",
        "    ('null', '/workspace/null', stat.S_IFCHR, (1, 3)),",
        "    ('sda', '/dev/shm/sda', stat.S_IFBLK, (8, 0)),",
        "]:",
        "    try:",
        "        os.mknod(where, mode | 0o666, os.makedev(*dev))",
        "        results[name] = 'created'",
        "    except OSError as e:",
        "        results[name] = errno.errorcode[e.errno]",
        "os.mkfifo('/tmp/fifo')",
        "results['fifo'] = stat.S_ISFIFO(os.stat('/tmp/fifo').st_mode)",
        "print('MKNOD=' + json.dumps(results))",
        "print('DEV=' + json.dumps(sorted(os.listdir('/dev'))))",
        "mounts = [l.split() for l in open('/proc/self/mountinfo')]",
        "rw = {m[4]: m[5] for m in mounts if m[4] in ('/tmp', '/dev/shm', '/workspace', '/')}",
        "print('OPTS=' + json.dumps(rw))",
      ].join("\n");
      const { execution: e } = await h.run({ language: "python", code });
      expect(e.status, describeRun(e)).toBe("completed");
      const r = probeResults(e);
      expect(r.MKNOD).toEqual({ mem: "EPERM", null: "EPERM", sda: "EPERM", fifo: true });
      expect(r.DEV).toEqual(expect.arrayContaining(["full", "null", "random", "tty", "urandom", "zero"]));
      const devices = (r.DEV as string[]).filter(
        (n) =>
          ![
            "core",
            "fd",
            "full",
            "null",
            "ptmx",
            "pts",
            "random",
            "shm",
            "stderr",
            "stdin",
            "stdout",
            "tty",
            "urandom",
            "zero",
          ].includes(n),
      );
      expect(devices).toEqual([]);
      for (const [mount, options] of Object.entries(r.OPTS as Record<string, string>)) {
        expect(options.split(","), mount).toContain("nodev");
      }
      h.report("27-devices", e, r.MKNOD as Record<string, unknown>);
    },
  );
});
