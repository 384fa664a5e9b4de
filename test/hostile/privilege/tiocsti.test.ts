/**
 * Attacks: terminal injection. `fcntl.ioctl(fd, termios.TIOCSTI, b'r')` pushes characters into
 * the controlling terminal's input queue, so they run in the shell that started the sandbox
 * once it exits (CVE-2017-5226); tried on fds 0, 1 and 2 and with a high-bit byte
 * (HOSTILE.md #33, anchor: bwrap `test-seccomp.py`).
 *
 * Expected: every attempt fails with ENOTTY (stdin is /dev/null, stdout/stderr are pipes), and
 * /dev/tty cannot be opened (ENXIO): the program's session has no controlling terminal
 * (`--new-session`, and runcell spawns the sandbox detached in its own session).
 *
 * Deterministic: no fd of the run is a terminal and it has no controlling terminal to open.
 */
import { describe, it } from "vitest";
import { describeRun, needs, probeHost, probeResults, useHarness } from "../harness.js";

const host = await probeHost();
const h = useHarness(host);
const c = needs(host, "bwrap");

describe("TIOCSTI", () => {
  it.skipIf(c.skip)(
    `#33 TIOCSTI fails on every fd; there is no controlling terminal${c.label}`,
    async ({ expect }) => {
      const code = [
        "import errno, fcntl, json, os, termios",
        "r = {}",
        "for byte in (b'r', b'\\x80'):",
        "    for fd in (0, 1, 2):",
        "        try:",
        "            fcntl.ioctl(fd, termios.TIOCSTI, byte)",
        "            r[f'{fd}-{byte[0]}'] = 'injected'",
        "        except OSError as e:",
        "            r[f'{fd}-{byte[0]}'] = errno.errorcode[e.errno]",
        "print('TIOCSTI=' + json.dumps(r))",
        "try:",
        "    os.open('/dev/tty', os.O_RDWR)",
        "    print('TTY=\"opened\"')",
        "except OSError as e:",
        "    print('TTY=' + json.dumps(errno.errorcode[e.errno]))",
        "print('SID=' + json.dumps(os.getsid(0)))",
      ].join("\n");
      const { execution: e } = await h.run({ language: "python", code });
      expect(e.status, describeRun(e)).toBe("completed");
      const r = probeResults(e);
      expect(Object.values(r.TIOCSTI as Record<string, string>)).toEqual(Array(6).fill("ENOTTY"));
      expect(r.TTY).toBe("ENXIO");
      // The session is the sandbox's own: its leader is the sandbox's pid 1 (bwrap).
      expect(r.SID).toBe(1);
      h.report("33-tiocsti", e, { attempts: 6, injected: 0, tty: r.TTY, sid_inside: r.SID });
    },
  );
});
