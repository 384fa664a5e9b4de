/**
 * Attacks: privilege. `os.setuid(0)`, `setgid(0)`, `setgroups([0])`; a nested user namespace
 * (`unshare(CLONE_NEWUSER)`, `unshare -Ur`, a nested `bwrap`); a mount namespace without
 * one; and `ptrace` (HOSTILE.md #35, anchor: bwrap `--disable-userns` tests, isolate syscall
 * flags).
 *
 * Expected: setuid/setgid(0) fail with EINVAL (uid 0 is not even mapped in the sandbox's user
 * namespace) and setgroups with EPERM; the ids stay 1000, with no supplementary groups.
 * unshare() fails with EPERM: runcell's seccomp filter denies it (x86-64); without the filter,
 * new user namespaces fail with ENOSPC (`--disable-userns` sets the namespace's limit to 0) and
 * the others with EPERM (no capabilities). `unshare -Ur` and a nested bwrap fail either way.
 * ptrace: denied outright by the filter (EPERM). Without it, a host process (runcell's own pid)
 * cannot even be named (ESRCH, own pid namespace), and the sandbox's pid 1 — bwrap's reaper,
 * same uid, no capabilities — is attachable but holds nothing more than the code's own rights.
 *
 * Deterministic: all outcomes follow from the namespace, uid mapping and capability setup.
 */
import { describe, it } from "vitest";
import { seccompSupported } from "../../../src/sandbox/seccomp.js";
import { describeRun, needs, probeHost, probeResults, useHarness } from "../harness.js";

const host = await probeHost();
const h = useHarness(host);
const c = needs(host, "bwrap");
/** runcell's seccomp filter is in force in its sandboxes on this machine. */
const filtered = seccompSupported();

describe.concurrent("privilege escalation", () => {
  it.skipIf(c.skip)(
    `#35 setuid(0), setgid(0), setgroups fail; ids stay 1000${c.label}`,
    async ({ expect }) => {
      const code = [
        "import errno, json, os",
        "r = {}",
        "for name, call in [('setuid', lambda: os.setuid(0)), ('setgid', lambda: os.setgid(0)),",
        "                   ('seteuid', lambda: os.seteuid(0)), ('setgroups', lambda: os.setgroups([0]))]:",
        "    try:",
        "        call()",
        "        r[name] = 'succeeded'",
        "    except OSError as e:",
        "        r[name] = errno.errorcode[e.errno]",
        "print('CALLS=' + json.dumps(r))",
        "print('IDS=' + json.dumps([os.getuid(), os.geteuid(), os.getgid(), os.getegid(), os.getgroups()]))",
      ].join("\n");
      const { execution: e } = await h.run({ language: "python", code });
      expect(e.status, describeRun(e)).toBe("completed");
      const r = probeResults(e);
      expect(r.CALLS).toEqual({ setuid: "EINVAL", setgid: "EINVAL", seteuid: "EINVAL", setgroups: "EPERM" });
      expect(r.IDS).toEqual([1000, 1000, 1000, 1000, []]);
      h.report("35-setuid", e, r.CALLS as Record<string, unknown>);
    },
  );

  it.skipIf(c.skip)(
    `#35 nested user namespaces and mount namespaces are denied${c.label}`,
    async ({ expect }) => {
      const code = [
        "import ctypes, errno, json, subprocess",
        "libc = ctypes.CDLL(None, use_errno=True)",
        "def unshare(flags):",
        "    return 'succeeded' if libc.unshare(flags) == 0 else errno.errorcode[ctypes.get_errno()]",
        "r = {'newuser': unshare(0x10000000), 'newns': unshare(0x00020000), 'newnet': unshare(0x40000000)}",
        "for name, argv in [('unshare -Ur', ['unshare', '-Ur', 'true']),",
        "                   ('bwrap', ['bwrap', '--ro-bind', '/', '/', 'true'])]:",
        "    p = subprocess.run(argv, capture_output=True, text=True)",
        "    r[name] = [p.returncode, p.stderr.strip()]",
        "print('UNSHARE=' + json.dumps(r))",
      ].join("\n");
      const { execution: e } = await h.run({ language: "python", code });
      expect(e.status, describeRun(e)).toBe("completed");
      const r = probeResults(e) as { UNSHARE: Record<string, unknown> };
      expect(r.UNSHARE.newuser).toBe(filtered ? "EPERM" : "ENOSPC");
      expect(r.UNSHARE.newns).toBe("EPERM");
      expect(r.UNSHARE.newnet).toBe("EPERM");
      const [unshareCode, unshareErr] = r.UNSHARE["unshare -Ur"] as [number, string];
      expect(unshareCode).not.toBe(0);
      expect(unshareErr).toMatch(/No space left on device|Operation not permitted/);
      const [bwrapCode, bwrapErr] = r.UNSHARE.bwrap as [number, string];
      expect(bwrapCode).not.toBe(0);
      expect(bwrapErr).toMatch(/ENOSPC|No space left|Operation not permitted|setuid/);
      h.report("35-namespaces", e, r.UNSHARE);
    },
  );

  it.skipIf(c.skip)(
    `#35 ptrace: denied by the seccomp filter (without it: host pids unreachable, pid 1 holds nothing more)${c.label}`,
    async ({ expect }) => {
      const code = [
        "import ctypes, errno, json",
        "libc = ctypes.CDLL(None, use_errno=True)",
        "libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]",
        "PTRACE_SEIZE = 0x4206",
        "def seize(pid):",
        "    return 'attached' if libc.ptrace(PTRACE_SEIZE, pid, None, None) == 0 else errno.errorcode[ctypes.get_errno()]",
        `r = {'host': seize(${process.pid}), 'pid1': seize(1)}`,
        "status = open('/proc/1/status').read().splitlines()",
        "fields = dict(line.split(':', 1) for line in status)",
        "r['pid1_uid'] = fields['Uid'].split()",
        "r['pid1_capeff'] = fields['CapEff'].strip()",
        "print('PTRACE=' + json.dumps(r))",
      ].join("\n");
      const { execution: e } = await h.run({ language: "python", code });
      expect(e.status, describeRun(e)).toBe("completed");
      const r = probeResults(e).PTRACE as Record<string, unknown>;
      if (filtered) {
        expect(r.host).toBe("EPERM");
        expect(r.pid1).toBe("EPERM");
      } else {
        // runcell's pid is not in the sandbox's pid namespace (unless it happens to be tiny).
        if (process.pid > 1000) expect(r.host).toBe("ESRCH");
        expect(r.pid1).toBe("attached");
      }
      expect(r.pid1_uid).toEqual(["1000", "1000", "1000", "1000"]);
      expect(r.pid1_capeff).toBe("0000000000000000");
      h.report("35-ptrace", e, r);
    },
  );
});
