/**
 * runcell's seccomp filters: classic BPF programs, built here (no libseccomp), that deny the
 * system calls confined code has no use for and that widen the kernel's attack surface (keys,
 * BPF, userfaultfd, io_uring, perf, ptrace, module loading, mounting…). A denied call fails
 * with EPERM; calls from another ABI (i386 through `int 0x80`, x32) fail with ENOSYS, since a
 * filter keyed on x86-64 numbers cannot judge them. Built for x86-64 only: elsewhere there is
 * no filter, and `runcell doctor` says so.
 */
import { chmod, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";

/** x86-64 system call numbers (asm/unistd_64.h). */
const X86_64: Readonly<Record<string, number>> = {
  // Kernel keyrings.
  add_key: 248,
  request_key: 249,
  keyctl: 250,
  // In-kernel programs and tracing.
  bpf: 321,
  perf_event_open: 298,
  // Classic kernel exploit primitives.
  userfaultfd: 323,
  io_uring_setup: 425,
  io_uring_enter: 426,
  io_uring_register: 427,
  // Other processes' memory.
  ptrace: 101,
  process_vm_readv: 310,
  process_vm_writev: 311,
  kcmp: 312,
  // Filesystems and namespaces (also refused for want of capabilities; denied outright here).
  mount: 165,
  umount2: 166,
  pivot_root: 155,
  chroot: 161,
  unshare: 272,
  setns: 308,
  open_tree: 428,
  move_mount: 429,
  fsopen: 430,
  fsconfig: 431,
  fsmount: 432,
  fspick: 433,
  mount_setattr: 442,
  open_by_handle_at: 304,
  name_to_handle_at: 303,
  fanotify_init: 300,
  quotactl: 179,
  // The machine itself.
  kexec_load: 246,
  kexec_file_load: 320,
  init_module: 175,
  finit_module: 313,
  delete_module: 176,
  reboot: 169,
  swapon: 167,
  swapoff: 168,
  acct: 163,
  syslog: 103,
  lookup_dcookie: 212,
  iopl: 172,
  ioperm: 173,
  settimeofday: 164,
  clock_settime: 227,
  adjtimex: 159,
  clock_adjtime: 305,
  vhangup: 153,
  // Obsolete interfaces.
  uselib: 134,
  ustat: 136,
  sysfs: 139,
  _sysctl: 156,
  nfsservctl: 180,
};

/**
 * `run`: every confined program (one-shot runs, kernels, and each warm run, which applies it
 * itself before its code starts). `fork-server`: the warm fork server, which must still mount
 * each run's /proc and tmpfs; its runs then add the `run` filter.
 */
export type SeccompProfile = "run" | "fork-server";

const ALLOWED_FOR: Record<SeccompProfile, ReadonlySet<string>> = {
  run: new Set(),
  "fork-server": new Set(["mount"]),
};

const AUDIT_ARCH_X86_64 = 0xc000003e;
const X32_SYSCALL_BIT = 0x40000000;
const EPERM = 1;
const ENOSYS = 38;

// Classic BPF opcodes (linux/filter.h) and seccomp return values (linux/seccomp.h).
const LD_W_ABS = 0x20;
const JMP_JEQ_K = 0x15;
const JMP_JGE_K = 0x35;
const RET_K = 0x06;
const RET_ALLOW = 0x7fff0000;
const RET_ERRNO = 0x00050000;
/** Offsets in struct seccomp_data. */
const NR_OFFSET = 0;
const ARCH_OFFSET = 4;

/** The names of the calls a profile denies, for reports and tests. */
export function deniedSyscalls(profile: SeccompProfile): string[] {
  return Object.keys(X86_64).filter((name) => !ALLOWED_FOR[profile].has(name));
}

/** Whether filters exist for this machine's architecture. */
export function seccompSupported(): boolean {
  return process.arch === "x64";
}

/**
 * The filter of `profile` as the kernel takes it (an array of struct sock_filter, 8 bytes each,
 * in this machine's byte order), or null where no filter is built (not x86-64).
 */
export function seccompProgram(profile: SeccompProfile): Buffer | null {
  if (!seccompSupported()) return null;
  const denied = deniedSyscalls(profile).map((name) => X86_64[name]!);
  type Insn = [code: number, jt: number, jf: number, k: number];
  // Layout: arch check, x32 check, one comparison per denied call, then allow, deny, foreign.
  const program: Insn[] = [];
  const tail = denied.length; // index of the ALLOW return, relative to the first comparison
  program.push([LD_W_ABS, 0, 0, ARCH_OFFSET]);
  // Not x86-64: jump to FOREIGN (past the comparisons, ALLOW and DENY).
  program.push([JMP_JEQ_K, 0, 1 + 1 + tail + 2, AUDIT_ARCH_X86_64]);
  program.push([LD_W_ABS, 0, 0, NR_OFFSET]);
  // x32 numbers: FOREIGN too.
  program.push([JMP_JGE_K, tail + 2, 0, X32_SYSCALL_BIT]);
  denied.forEach((nr, index) => {
    // On a match, jump over the remaining comparisons and ALLOW, to DENY.
    program.push([JMP_JEQ_K, tail - index, 0, nr]);
  });
  program.push([RET_K, 0, 0, RET_ALLOW]);
  program.push([RET_K, 0, 0, RET_ERRNO | EPERM]);
  program.push([RET_K, 0, 0, RET_ERRNO | ENOSYS]);
  const bytes = Buffer.alloc(program.length * 8);
  program.forEach(([code, jt, jf, k], index) => {
    if (jt > 255 || jf > 255) throw new Error("seccomp program too long for classic BPF jumps");
    bytes.writeUInt16LE(code, index * 8);
    bytes.writeUInt8(jt, index * 8 + 2);
    bytes.writeUInt8(jf, index * 8 + 3);
    bytes.writeUInt32LE(k >>> 0, index * 8 + 4);
  });
  return bytes;
}

/** Paths of the compiled filters, readable by every sandbox uid. */
export interface SeccompFiles {
  run: string;
  forkServer: string;
}

/**
 * Writes both filters into `<runtimeDir>/seccomp/` (0755 directory, 0644 files): bubblewrap
 * reads them as the sandbox's unprivileged uid. Null where no filter is built.
 */
export async function writeSeccompFiles(runtimeDir: string): Promise<SeccompFiles | null> {
  const run = seccompProgram("run");
  const forkServer = seccompProgram("fork-server");
  if (!run || !forkServer) return null;
  const dir = join(runtimeDir, "seccomp");
  await mkdir(dir, { recursive: true, mode: 0o755 });
  await chmod(dir, 0o755);
  const files = { run: join(dir, "run.bpf"), forkServer: join(dir, "fork-server.bpf") };
  await writeFile(files.run, run, { mode: 0o644 });
  await writeFile(files.forkServer, forkServer, { mode: 0o644 });
  return files;
}
