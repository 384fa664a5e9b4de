import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { NotFoundError } from "../errors.js";
import {
  findKernelspecs,
  getKernelspec,
  jupyterDataPaths,
  type KernelspecInfo,
  type KernelspecProblem,
  kernelArgv,
  validateKernelJson,
} from "./kernelspec.js";

let root: string;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), "runcell-kernelspec-test-"));
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

async function writeSpec(base: string, dirName: string, json: unknown): Promise<string> {
  const dir = join(base, "kernels", dirName);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "kernel.json"), typeof json === "string" ? json : JSON.stringify(json));
  return dir;
}

const spec = (displayName: string, extra: Record<string, unknown> = {}) => ({
  argv: ["python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
  display_name: displayName,
  language: "python",
  ...extra,
});

describe("jupyterDataPaths", () => {
  it("puts JUPYTER_PATH entries first, then JUPYTER_DATA_DIR, then the system prefixes", () => {
    expect(jupyterDataPaths({ JUPYTER_PATH: "/a:/b", JUPYTER_DATA_DIR: "/data", HOME: "/home/u" })).toEqual([
      "/a",
      "/b",
      "/data",
      "/usr/local/share/jupyter",
      "/usr/share/jupyter",
    ]);
  });

  it("falls back to XDG_DATA_HOME, then HOME, for the user data dir", () => {
    expect(jupyterDataPaths({ XDG_DATA_HOME: "/xdg", HOME: "/home/u" })[0]).toBe("/xdg/jupyter");
    expect(jupyterDataPaths({ HOME: "/home/u" })[0]).toBe("/home/u/.local/share/jupyter");
    expect(jupyterDataPaths({})).toEqual(["/usr/local/share/jupyter", "/usr/share/jupyter"]);
  });

  it("skips empty JUPYTER_PATH entries and removes duplicates, keeping the first", () => {
    expect(jupyterDataPaths({ JUPYTER_PATH: ":/usr/share/jupyter::/a:/a" })).toEqual([
      "/usr/share/jupyter",
      "/a",
      "/usr/local/share/jupyter",
    ]);
  });
});

describe("findKernelspecs", () => {
  it("reads kernel.json with defaults for optional fields and records the resource dir", async () => {
    const dir = await writeSpec(root, "py", spec("Python"));
    const found = await findKernelspecs([root]);
    expect(found.get("py")).toEqual<KernelspecInfo>({
      name: "py",
      display_name: "Python",
      language: "python",
      argv: ["python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
      env: {},
      interrupt_mode: "signal",
      metadata: {},
      resource_dir: dir,
    });
  });

  it("lower-cases names", async () => {
    await writeSpec(root, "MyKernel", spec("Mine", { interrupt_mode: "message", env: { A: "1" } }));
    const found = await findKernelspecs([root]);
    expect([...found.keys()]).toEqual(["mykernel"]);
    expect(found.get("mykernel")).toMatchObject({ interrupt_mode: "message", env: { A: "1" } });
  });

  it("gives an earlier data path priority over a later one (JUPYTER_PATH order)", async () => {
    const first = join(root, "first");
    const second = join(root, "second");
    await writeSpec(first, "shared", spec("from first"));
    await writeSpec(second, "shared", spec("from second"));
    await writeSpec(second, "only-second", spec("only in second"));
    const paths = jupyterDataPaths({ JUPYTER_PATH: `${first}:${second}` });
    const found = await findKernelspecs(paths);
    expect(found.get("shared")?.display_name).toBe("from first");
    expect(found.get("only-second")?.display_name).toBe("only in second");
    const reversed = await findKernelspecs([second, first]);
    expect(reversed.get("shared")?.display_name).toBe("from second");
  });

  it("reports invalid JSON and schema violations as problems and keeps the valid specs", async () => {
    await writeSpec(root, "good", spec("Good"));
    const broken = await writeSpec(root, "broken", "{ not json");
    const noArgv = await writeSpec(root, "noargv", { display_name: "x", language: "y", argv: [] });
    const badMode = await writeSpec(root, "badmode", spec("Bad", { interrupt_mode: "telepathy" }));
    const problems: KernelspecProblem[] = [];
    const found = await findKernelspecs([root], problems);
    expect([...found.keys()]).toEqual(["good"]);
    const byPath = new Map(problems.map((p) => [p.path, p.message]));
    expect(byPath.size).toBe(3);
    expect(byPath.get(join(broken, "kernel.json"))).toMatch(/^not valid JSON/);
    expect(byPath.get(join(noArgv, "kernel.json"))).toMatch(/^argv:/);
    expect(byPath.get(join(badMode, "kernel.json"))).toMatch(/^interrupt_mode:/);
  });

  it("reports a kernel.json that is not an object and non-string env values", async () => {
    const array = await writeSpec(root, "array", "[1, 2]");
    const badEnv = await writeSpec(root, "badenv", spec("Bad env", { env: { A: 1 } }));
    const problems: KernelspecProblem[] = [];
    expect((await findKernelspecs([root], problems)).size).toBe(0);
    expect(problems).toEqual([
      { path: join(array, "kernel.json"), message: "not a JSON object" },
      { path: join(badEnv, "kernel.json"), message: "env: must map names to strings" },
    ]);
  });

  it("lets a valid spec in a later path stand in for an invalid one of the same name", async () => {
    const first = join(root, "first");
    const second = join(root, "second");
    await writeSpec(first, "dup", "{ broken");
    await writeSpec(second, "dup", spec("valid later"));
    const problems: KernelspecProblem[] = [];
    const found = await findKernelspecs([first, second], problems);
    expect(found.get("dup")?.display_name).toBe("valid later");
    expect(problems.map((p) => p.path)).toEqual([join(first, "kernels", "dup", "kernel.json")]);
  });

  it("ignores missing data paths and directories without kernel.json", async () => {
    await mkdir(join(root, "kernels", "empty"), { recursive: true });
    const problems: KernelspecProblem[] = [];
    const found = await findKernelspecs([join(root, "missing"), root], problems);
    expect(found.size).toBe(0);
    expect(problems).toEqual([]);
  });
});

describe("validateKernelJson", () => {
  it("names the first invalid field", () => {
    const valid = spec("V");
    expect(validateKernelJson(valid)).toMatchObject({ ok: true, value: { interrupt_mode: "signal" } });
    const cases: Array<[unknown, RegExp]> = [
      [null, /^not a JSON object/],
      ["text", /^not a JSON object/],
      [{ ...valid, argv: "python" }, /^argv:/],
      [{ ...valid, argv: ["python", 3] }, /^argv:/],
      [{ ...valid, display_name: 3 }, /^display_name:/],
      [{ ...valid, language: null }, /^language:/],
      [{ ...valid, interrupt_mode: "signals" }, /^interrupt_mode:/],
      [{ ...valid, env: [] }, /^env:/],
      [{ ...valid, metadata: "x" }, /^metadata:/],
    ];
    for (const [json, message] of cases) {
      const result = validateKernelJson(json);
      expect(result.ok).toBe(false);
      if (!result.ok) expect(result.error).toMatch(message);
    }
  });
});

describe("getKernelspec", () => {
  it("finds a spec case-insensitively", async () => {
    await writeSpec(root, "python3", spec("Python 3"));
    expect((await getKernelspec("PYTHON3", [root])).display_name).toBe("Python 3");
  });

  it("names the available kernels when the name is unknown", async () => {
    await writeSpec(root, "python3", spec("Python 3"));
    await writeSpec(root, "ir", spec("R"));
    const error = await getKernelspec("julia", [root]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NotFoundError);
    expect(error).toMatchObject({ code: "KERNEL_NOT_FOUND" });
    expect((error as Error).message).toContain('no kernel named "julia"');
    expect((error as Error).message).toContain("available: ir, python3");
  });

  it("says none are available when there are none", async () => {
    await expect(getKernelspec("python3", [root])).rejects.toThrow(/available: none/);
  });
});

describe("kernelArgv", () => {
  it("substitutes {connection_file} and {resource_dir}", async () => {
    const dir = await writeSpec(root, "k", {
      ...spec("K"),
      argv: ["run", "{resource_dir}/kernel.py", "--file={connection_file}", "{connection_file}"],
    });
    const info = (await findKernelspecs([root])).get("k")!;
    expect(kernelArgv(info, "/run/c.json")).toEqual([
      "run",
      `${dir}/kernel.py`,
      "--file=/run/c.json",
      "/run/c.json",
    ]);
  });
});
