import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
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

const kernelJsonSchema = z.object({
  argv: z.array(z.string()).min(1),
  display_name: z.string(),
  language: z.string(),
  interrupt_mode: z.enum(["signal", "message"]).default("signal"),
  env: z.record(z.string(), z.string()).default({}),
  metadata: z.record(z.string(), z.unknown()).default({}),
});

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
      const parsed = kernelJsonSchema.safeParse(json);
      if (!parsed.success) {
        problems.push({
          path: file,
          message: parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; "),
        });
        continue;
      }
      found.set(name, { name, ...parsed.data, resource_dir: dir });
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
