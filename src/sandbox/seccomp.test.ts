import { describe, expect, it } from "vitest";
import { deniedSyscalls, seccompProgram, seccompSupported } from "./seccomp.js";

describe("seccomp programs", () => {
  it("deny the same calls for runs and the fork server, except that the server may mount", () => {
    const run = deniedSyscalls("run");
    const server = deniedSyscalls("fork-server");
    expect(run).toContain("mount");
    expect(server).not.toContain("mount");
    expect(run.filter((name) => name !== "mount")).toEqual(server);
    for (const name of [
      "keyctl",
      "bpf",
      "userfaultfd",
      "io_uring_setup",
      "ptrace",
      "unshare",
      "kexec_load",
    ]) {
      expect(run).toContain(name);
    }
    for (const name of ["read", "write", "openat", "clone", "execve", "mmap", "socket"]) {
      expect(run).not.toContain(name);
    }
  });

  it.skipIf(!seccompSupported())(
    "compile to classic BPF: arch check, x32 check, one test per call, three returns",
    () => {
      const program = seccompProgram("run")!;
      const count = program.length / 8;
      expect(count).toBe(4 + deniedSyscalls("run").length + 3);
      const insn = (i: number) => ({
        code: program.readUInt16LE(i * 8),
        jt: program.readUInt8(i * 8 + 2),
        jf: program.readUInt8(i * 8 + 3),
        k: program.readUInt32LE(i * 8 + 4),
      });
      expect(insn(0)).toEqual({ code: 0x20, jt: 0, jf: 0, k: 4 }); // load arch
      expect(insn(1).k).toBe(0xc000003e); // x86-64, else the last return
      expect(1 + 1 + insn(1).jf).toBe(count - 1);
      expect(3 + 1 + insn(3).jt).toBe(count - 1); // x32 numbers: the last return
      // Every comparison jumps to the EPERM return.
      for (let i = 4; i < count - 3; i++) expect(i + 1 + insn(i).jt).toBe(count - 2);
      expect(insn(count - 3).k).toBe(0x7fff0000); // allow
      expect(insn(count - 2).k).toBe(0x00050000 | 1); // EPERM
      expect(insn(count - 1).k).toBe(0x00050000 | 38); // ENOSYS
    },
  );
});
