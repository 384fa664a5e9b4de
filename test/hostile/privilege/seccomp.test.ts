/**
 * Attacks: the kernel's attack surface (HOSTILE.md #35, anchors: bwrap `test-seccomp.py`,
 * Docker's default seccomp profile, gVisor `sandboxposture_test.go`). The code calls what
 * kernel exploits reach for: keyrings (`keyctl`, `add_key`), `bpf`, `userfaultfd`, `io_uring`,
 * `perf_event_open`, module loading, `kexec`, the new mount API, `ptrace`; and the same
 * `getpid` through the x32 ABI, which a filter keyed on x86-64 numbers must not let through.
 *
 * Expected: each denied call fails with EPERM, the x32 one with ENOSYS, `getpid` works, and
 * the run completes (the filter refuses calls, it does not kill). On a machine where runcell
 * builds no filter (not x86-64), the case is an explicit skip.
 *
 * Deterministic: the filter's verdict does not depend on timing or load.
 */
import { describe, it } from "vitest";
import { deniedSyscalls, seccompSupported } from "../../../src/sandbox/seccomp.js";
import { describeRun, needs, probeHost, probeResults, useHarness } from "../harness.js";

const host = await probeHost();
const h = useHarness(host);
const c = needs(host, "bwrap");
const arch = seccompSupported() ? "" : ` (skipped: runcell builds no seccomp filter for ${process.arch})`;

/** x86-64 numbers of what the code tries. */
const CALLS: Record<string, number> = {
  keyctl: 250,
  add_key: 248,
  bpf: 321,
  userfaultfd: 323,
  io_uring_setup: 425,
  perf_event_open: 298,
  init_module: 175,
  kexec_load: 246,
  fsopen: 430,
  ptrace: 101,
};

describe("seccomp filter", () => {
  it.skipIf(c.skip || arch !== "")(
    `#35 kernel attack surface calls fail with EPERM${c.label}${arch}`,
    async ({ expect }) => {
      for (const name of Object.keys(CALLS)) expect(deniedSyscalls("run")).toContain(name);
      const code = [
        "import ctypes, errno, json",
        "libc = ctypes.CDLL(None, use_errno=True)",
        "libc.syscall.restype = ctypes.c_long",
        "def call(nr):",
        "    rc = libc.syscall(ctypes.c_long(nr), 0, 0, 0, 0, 0)",
        "    return rc if rc >= 0 else errno.errorcode[ctypes.get_errno()]",
        `r = {name: call(nr) for name, nr in ${JSON.stringify(CALLS)}.items()}`,
        "r['getpid'] = call(39) > 0",
        "r['x32_getpid'] = call(0x40000000 | 39)",
        "print('CALLS=' + json.dumps(r))",
      ].join("\n");
      const { execution: e } = await h.run({ language: "python", code });
      expect(e.status, describeRun(e)).toBe("completed");
      const r = probeResults(e).CALLS as Record<string, unknown>;
      for (const name of Object.keys(CALLS)) expect(r[name], name).toBe("EPERM");
      expect(r.getpid).toBe(true);
      expect(r.x32_getpid).toBe("ENOSYS");
      h.report("35-seccomp", e, r);
    },
  );
});
