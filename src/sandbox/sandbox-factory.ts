import { randomInt } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { BwrapSandbox, SANDBOX_UID, type SandboxPolicy } from "./bwrap-sandbox.js";
import type { CgroupManager } from "./cgroups-types.js";
import { HostSandbox } from "./host-sandbox.js";
import { type SeccompFiles, writeSeccompFiles } from "./seccomp.js";
import type { Sandbox } from "./types.js";

/** `bwrap`: confined (the default); `none`: no isolation at all, only when asked for explicitly. */
export type SandboxMode = "bwrap" | "none";

export interface SandboxFactoryOptions {
  mode: SandboxMode;
  cgroups: CgroupManager | null;
  /** runcell's runtime dir, where the sandbox's /etc/passwd and /etc/group are written once. */
  runtimeDir: string;
  /** First host uid of the pool sandboxes run as (when runcell is root). Default 200000. */
  firstUid?: number;
  /** Size of the uid pool, i.e. the most sandboxes alive at once with distinct uids. Default 65536. */
  uidPoolSize?: number;
  /** Install runcell's seccomp filter in every sandbox (where built: x86-64). Default true. */
  seccomp?: boolean;
}

/** A sandbox for one run or one kernel; release it when the process is gone. */
export interface SandboxLease {
  sandbox: Sandbox;
  /** Host uid the sandbox runs as, or null when not root (or mode none). */
  hostUid: number | null;
  release(): void;
}

/**
 * Makes one sandbox per run or kernel, each with its own host uid from a pool so that per-uid
 * limits (RLIMIT_NPROC) and file ownership never mix two sandboxes.
 */
export class SandboxFactory {
  readonly mode: SandboxMode;
  readonly #options: SandboxFactoryOptions;
  readonly #uidsInUse = new Set<number>();
  /** Where this process starts in the pool: random, so concurrent runcell processes rarely meet. */
  #nextUid = randomInt(0, 1 << 16);
  #identity: Promise<{ passwd: string; group: string }> | undefined;
  #seccomp: Promise<SeccompFiles | null> | undefined;

  constructor(options: SandboxFactoryOptions) {
    this.mode = options.mode;
    this.#options = options;
  }

  get cgroups(): CgroupManager | null {
    return this.#options.cgroups;
  }

  async lease(policy: SandboxPolicy): Promise<SandboxLease> {
    if (this.mode === "none") return { sandbox: new HostSandbox(), hostUid: null, release: () => undefined };
    const identityFiles = await (this.#identity ??= this.#writeIdentityFiles());
    const seccomp = await this.seccompFiles();
    const hostUid = process.getuid?.() === 0 ? this.#allocateUid() : null;
    const sandbox = new BwrapSandbox({
      policy,
      cgroups: this.#options.cgroups,
      hostUid: hostUid ?? undefined,
      identityFiles,
      stagingRoot: this.#options.runtimeDir,
      seccompFile: (policy.forkServer ? seccomp?.forkServer : seccomp?.run) ?? undefined,
    });
    let released = false;
    return {
      sandbox,
      hostUid,
      release: () => {
        if (released || hostUid === null) return;
        released = true;
        this.#uidsInUse.delete(hostUid);
      },
    };
  }

  /**
   * The compiled seccomp filters every sandbox of this factory gets (written once into the
   * runtime dir), or null where none is built (not x86-64) or `seccomp: false` was asked.
   */
  seccompFiles(): Promise<SeccompFiles | null> {
    if (this.#options.seccomp === false) return Promise.resolve(null);
    return (this.#seccomp ??= writeSeccompFiles(this.#options.runtimeDir));
  }

  #allocateUid(): number {
    const first = this.#options.firstUid ?? 200_000;
    const size = this.#options.uidPoolSize ?? 65_536;
    for (let i = 0; i < size; i++) {
      const uid = first + ((this.#nextUid + i) % size);
      if (!this.#uidsInUse.has(uid)) {
        this.#nextUid = (this.#nextUid + i + 1) % size;
        this.#uidsInUse.add(uid);
        return uid;
      }
    }
    throw new Error(`all ${size} sandbox uids are in use; lower the concurrency or raise uidPoolSize`);
  }

  async #writeIdentityFiles(): Promise<{ passwd: string; group: string }> {
    const passwd = join(this.#options.runtimeDir, "sandbox-passwd");
    const group = join(this.#options.runtimeDir, "sandbox-group");
    const id = SANDBOX_UID;
    await writeFile(
      passwd,
      `root:x:0:0:root:/nonexistent:/usr/sbin/nologin\nrunner:x:${id}:${id}:runcell:/workspace:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n`,
      { mode: 0o644 },
    );
    await writeFile(group, `root:x:0:\nrunner:x:${id}:\nnogroup:x:65534:\n`, { mode: 0o644 });
    return { passwd, group };
  }
}
