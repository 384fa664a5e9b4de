/**
 * Attacks: privilege. `os.setuid(0)`, `setgid(0)`, `setgroups([0])`; a nested user namespace
 * (`unshare(CLONE_NEWUSER)`, `unshare -Ur`, a nested `bwrap`); a mount namespace without
 * one; and `ptrace` (HOSTILE.md #35, anchor: bwrap `--disable-userns` tests, isolate syscall
 * flags).
 *
 * Expected: setuid/setgid(0) fail with EINVAL (uid 0 is not even mapped in the sandbox's user
 * namespace) and setgroups with EPERM; the ids stay 1000, with no supplementary groups. New user namespaces fail with ENOSPC
 * (`--disable-userns` sets the namespace's user-namespace limit to 0), so `unshare -Ur` and a
 * nested bwrap fail too; unshare(CLONE_NEWNS) fails with EPERM (no capabilities).
 * ptrace: a host process (runcell's own pid) cannot even be named (ESRCH, own pid namespace).
 * The sandbox's pid 1 — bwrap's reaper — runs as the same uid with no capabilities, so the
 * kernel's same-uid rule lets the code attach to it (PTRACE_SEIZE succeeds; there is no
 * seccomp filter): asserted as what happens, together with why it grants nothing (pid 1 has
 * uid 1000 and CapEff 0, the code's own rights). Denying it would need a seccomp filter.
 *
 * Deterministic: all outcomes follow from the namespace, uid mapping and capability setup.
 */
import { describe, it } from "vitest";
import { describeRun, needs, probeHost, probeResults, useHarness } from "../harness.js";

const host = await probeHost();
const h = useHarness(host);
const c = needs(host, "bwrap");

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
      expect(r.UNSHARE.newuser).toBe("ENOSPC");
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
    `#35 ptrace: host pids unreachable; pid 1 attachable but holds nothing more${c.label}`,
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
      // runcell's pid is not in the sandbox's pid namespace (unless it happens to be tiny).
      if (process.pid > 1000) expect(r.host).toBe("ESRCH");
      expect(r.pid1).toBe("attached");
      expect(r.pid1_uid).toEqual(["1000", "1000", "1000", "1000"]);
      expect(r.pid1_capeff).toBe("0000000000000000");
      h.report("35-ptrace", e, r);
    },
  );
});
