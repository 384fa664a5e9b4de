import { dirname } from "node:path";
import type {
  CgroupHandle,
  CgroupLimits,
  CgroupManager,
  CgroupSupport,
} from "../../src/sandbox/cgroups-types.js";

/**
 * A CgroupManager that records the directories of every group it creates, so a test can assert
 * afterwards that each one is gone. `onCreate` also gets each group's directories, for callers
 * that attribute groups to a run or a kernel.
 */
export class TrackingCgroups implements CgroupManager {
  readonly #inner: CgroupManager;
  readonly #all: Set<string>;
  readonly #onCreate: ((dirs: string[]) => void) | undefined;

  constructor(inner: CgroupManager, all: Set<string>, onCreate?: (dirs: string[]) => void) {
    this.#inner = inner;
    this.#all = all;
    this.#onCreate = onCreate;
  }

  get support(): CgroupSupport {
    return this.#inner.support;
  }

  sweep(): Promise<number> {
    return this.#inner.sweep();
  }

  async create(name: string, limits: CgroupLimits): Promise<CgroupHandle> {
    const handle = await this.#inner.create(name, limits);
    const dirs = handle.procsFiles.map((file) => dirname(file));
    for (const dir of dirs) this.#all.add(dir);
    this.#onCreate?.(dirs);
    return handle;
  }
}
