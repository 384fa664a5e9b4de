import { chmod, mkdir, stat } from "node:fs/promises";
import { resolve } from "node:path";
import { InvalidArgumentError } from "../errors.js";
import type { RuncellConfig } from "../config/config.js";
import type { Sandbox } from "../sandbox/types.js";
import { Kernel, type KernelStartOptions } from "./kernel.js";
import { findKernelspecs, getKernelspec, type KernelspecInfo, type KernelspecProblem } from "./kernelspec.js";

export interface KernelManagerOptions {
  /** Jupyter data paths to search for kernelspecs. */
  jupyterPaths: readonly string[];
  /** Directory for connection files and kernel sockets (created 0711). */
  runtimeDir: string;
  /** Base environment of every kernel. */
  env: Readonly<Record<string, string>>;
  sandbox: Sandbox;
  /** Defaults for every start (timeouts, heartbeat, message size). */
  defaults?: Partial<Omit<KernelStartOptions, "spec" | "sandbox" | "runtimeDir" | "env">>;
}

/** Options for one start; the kernelspec is chosen by name. */
export type StartKernelOptions = Partial<Omit<KernelStartOptions, "spec" | "runtimeDir">> & {
  name?: string;
};

/**
 * Creates the runtime dir as 0711: others may traverse it but not list it. Sandboxed kernels
 * run as other uids and must reach their own directory inside it, whose name is a random UUID;
 * connection files of unsandboxed kernels stay 0600.
 */
export async function prepareRuntimeDir(dir: string, options: { sandboxed?: boolean } = {}): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o711 });
  await chmod(dir, 0o711);
  if (!options.sandboxed) return;
  // Sandboxes run as other uids: every directory above must let them through.
  for (let current = resolve(dir, ".."); ; current = resolve(current, "..")) {
    const mode = (await stat(current)).mode;
    if ((mode & 0o001) === 0) {
      throw new InvalidArgumentError(
        "RUNTIME_DIR_UNREACHABLE",
        `sandboxed processes cannot reach the runtime dir ${dir}: ${current} is not searchable by other users ` +
          `(chmod o+x ${current}, or set RUNCELL_RUNTIME_DIR to a directory under /tmp)`,
      );
    }
    if (current === "/") break;
  }
}

/**
 * Finds kernelspecs and starts kernels, and keeps track of every kernel it started so that
 * `disposeAll()` can stop them together.
 */
export class KernelManager {
  readonly #options: KernelManagerOptions;
  readonly #kernels = new Set<Kernel>();
  #runtimeReady: Promise<unknown> | undefined;

  constructor(options: KernelManagerOptions) {
    this.#options = options;
  }

  /** A manager for the paths, runtime dir and kernel environment of a loaded config. */
  static fromConfig(config: RuncellConfig, sandbox: Sandbox): KernelManager {
    return new KernelManager({
      jupyterPaths: config.jupyterPaths,
      runtimeDir: config.runtimeDir,
      env: config.kernelEnv,
      sandbox,
      defaults: { startTimeoutMs: config.kernelStartTimeoutMs },
    });
  }

  /** All valid kernelspecs, sorted by name; invalid ones are reported in `problems`. */
  async listKernelspecs(problems?: KernelspecProblem[]): Promise<KernelspecInfo[]> {
    const specs = await findKernelspecs(this.#options.jupyterPaths, problems);
    return [...specs.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Looks a kernelspec up by name; throws NotFoundError naming the available ones. */
  getKernelspec(name: string): Promise<KernelspecInfo> {
    return getKernelspec(name, this.#options.jupyterPaths);
  }

  /** Starts a kernel of kernelspec `name` (default `python3`). */
  async start(options: StartKernelOptions = {}): Promise<Kernel> {
    const { name = "python3", ...rest } = options;
    const spec = await this.getKernelspec(name);
    this.#runtimeReady ??= prepareRuntimeDir(this.#options.runtimeDir);
    await this.#runtimeReady;
    const kernel = await Kernel.start({
      ...this.#options.defaults,
      ...rest,
      env: { ...this.#options.env, ...rest.env },
      spec,
      sandbox: rest.sandbox ?? this.#options.sandbox,
      runtimeDir: this.#options.runtimeDir,
    });
    this.#kernels.add(kernel);
    kernel.onStatus((status) => {
      if (status === "dead" && kernel.death?.reason === "shutdown") this.#kernels.delete(kernel);
    });
    return kernel;
  }

  /** Kernels started here and not yet disposed. */
  get kernels(): Kernel[] {
    return [...this.#kernels];
  }

  /** Shuts every kernel down (in parallel, each with its bounded escalation). */
  async disposeAll(): Promise<void> {
    const kernels = [...this.#kernels];
    this.#kernels.clear();
    await Promise.all(kernels.map((kernel) => kernel.dispose()));
  }
}
