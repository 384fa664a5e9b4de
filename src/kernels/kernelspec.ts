import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { NotFoundError } from "../errors.js";

/** A kernelspec as found on disk (`kernels/<name>/kernel.json`). */
export interface KernelspecInfo {
  /** The directory name, lower-cased: what `--kernel` takes. */
  name: string;
  display_name: string;
  language: string;
  argv: string[];
  env: Record<string, string>;
  /** How to interrupt: a signal to the process group, or an `interrupt_request` on control. */
  interrupt_mode: "signal" | "message";
  metadata: Record<string, unknown>;
  /** The kernelspec's directory (its `resource_dir`). */
  resource_dir: string;
}

type KernelJson = Omit<KernelspecInfo, "name" | "resource_dir">;

/**
 * Validates a parsed kernel.json. Hand-written rather than a schema library so that finding a
 * kernel costs nothing at start-up: the kernel process is spawned before anything else loads.
 */
export function validateKernelJson(
  json: unknown,
): { ok: true; value: KernelJson } | { ok: false; error: string } {
  if (json === null || typeof json !== "object" || Array.isArray(json))
    return { ok: false, error: "not a JSON object" };
  const raw = json as Record<string, unknown>;
  const { argv, display_name, language, interrupt_mode = "signal", env = {}, metadata = {} } = raw;
  if (!Array.isArray(argv) || argv.length === 0 || !argv.every((a) => typeof a === "string")) {
    return { ok: false, error: "argv: must be a non-empty list of strings" };
  }
  if (typeof display_name !== "string") return { ok: false, error: "display_name: must be a string" };
  if (typeof language !== "string") return { ok: false, error: "language: must be a string" };
  if (interrupt_mode !== "signal" && interrupt_mode !== "message") {
    return { ok: false, error: 'interrupt_mode: must be "signal" or "message"' };
  }
  if (
    env === null ||
    typeof env !== "object" ||
    Array.isArray(env) ||
    !Object.values(env).every((v) => typeof v === "string")
  ) {
    return { ok: false, error: "env: must map names to strings" };
  }
  if (metadata === null || typeof metadata !== "object" || Array.isArray(metadata)) {
    return { ok: false, error: "metadata: must be an object" };
  }
  return {
    ok: true,
    value: {
      argv: argv as string[],
      display_name,
      language,
      interrupt_mode,
      env: env as Record<string, string>,
      metadata: metadata as Record<string, unknown>,
    },
  };
}

/**
 * The standard Jupyter data paths in priority order: `JUPYTER_PATH` entries, the user data dir
 * (`JUPYTER_DATA_DIR` or `~/.local/share/jupyter`), then the system prefixes.
 */
export function jupyterDataPaths(env: Readonly<Record<string, string | undefined>>): string[] {
  const paths: string[] = [];
  for (const entry of (env.JUPYTER_PATH ?? "").split(":")) if (entry) paths.push(entry);
  if (env.JUPYTER_DATA_DIR) paths.push(env.JUPYTER_DATA_DIR);
  else if (env.XDG_DATA_HOME) paths.push(join(env.XDG_DATA_HOME, "jupyter"));
  else if (env.HOME) paths.push(join(env.HOME, ".local/share/jupyter"));
  paths.push("/usr/local/share/jupyter", "/usr/share/jupyter");
  return [...new Set(paths)];
}

/** Problems met while scanning (an unreadable or invalid kernel.json), reported, never fatal. */
export interface KernelspecProblem {
  path: string;
  message: string;
}

/** Finds kernelspecs under `<path>/kernels/*` for each data path; the first of a name wins. */
export async function findKernelspecs(
  dataPaths: readonly string[],
  problems: KernelspecProblem[] = [],
): Promise<Map<string, KernelspecInfo>> {
  const found = new Map<string, KernelspecInfo>();
  for (const base of dataPaths) {
    const kernelsDir = join(base, "kernels");
    let entries: string[];
    try {
      entries = await readdir(kernelsDir);
    } catch {
      continue;
    }
    for (const entry of entries.sort()) {
      const name = entry.toLowerCase();
      if (found.has(name)) continue;
      const dir = join(kernelsDir, entry);
      const file = join(dir, "kernel.json");
      let raw: string;
      try {
        raw = await readFile(file, "utf8");
      } catch {
        continue;
      }
      let json: unknown;
      try {
        json = JSON.parse(raw);
      } catch (error) {
        problems.push({ path: file, message: `not valid JSON: ${(error as Error).message}` });
        continue;
      }
      const parsed = validateKernelJson(json);
      if (!parsed.ok) {
        problems.push({ path: file, message: parsed.error });
        continue;
      }
      found.set(name, { name, ...parsed.value, resource_dir: dir });
    }
  }
  return found;
}

/** Looks one kernelspec up by name (case-insensitive), with a message listing what exists. */
export async function getKernelspec(name: string, dataPaths: readonly string[]): Promise<KernelspecInfo> {
  const specs = await findKernelspecs(dataPaths);
  const spec = specs.get(name.toLowerCase());
  if (!spec) {
    const available = [...specs.keys()].join(", ") || "none";
    throw new NotFoundError(
      "KERNEL_NOT_FOUND",
      `no kernel named ${JSON.stringify(name)} (available: ${available}); run \`runcell kernels\` to list them`,
    );
  }
  return spec;
}

/** Substitutes `{connection_file}` and `{resource_dir}` in a kernelspec's argv. */
export function kernelArgv(spec: KernelspecInfo, connectionFile: string): string[] {
  return spec.argv.map((arg) =>
    arg.replaceAll("{connection_file}", connectionFile).replaceAll("{resource_dir}", spec.resource_dir),
  );
}
