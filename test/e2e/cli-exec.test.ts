import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureBuilt, runCli } from "./cli-helpers.js";

// `runcell exec` end to end: the built CLI, real bubblewrap, real cgroups, real processes.
let dir: string;
const env = () => ({ RUNCELL_RUNTIME_DIR: join(dir, "rt") });

beforeAll(() => {
  ensureBuilt();
  dir = mkdtempSync(join(tmpdir(), "runcell-cli-exec-"));
  // Sandboxes run as unprivileged uids and must be able to pass through to the runtime dir.
  chmodSync(dir, 0o711);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("runcell exec", () => {
  it("runs python by default, streams its output and exits with its own code", async () => {
    const ok = await runCli(["exec", "-e", "print(6 * 7)"], { env: env() });
    expect(ok).toMatchObject({ code: 0, stdout: "42\n" });
    const failing = await runCli(
      ["exec", "-e", "import sys; print('out'); sys.stderr.write('err\\n'); sys.exit(3)"],
      {
        env: env(),
      },
    );
    expect(failing).toMatchObject({ code: 3, stdout: "out\n", stderr: "err\n" });
  });

  it("runs bash and node, reading code from a file or from standard input", async () => {
    const script = join(dir, "script.sh");
    writeFileSync(script, "echo bash $((6 * 7))\n");
    expect(await runCli(["exec", "-l", "bash", script], { env: env() })).toMatchObject({
      code: 0,
      stdout: "bash 42\n",
    });
    const node = await runCli(["exec", "-l", "node", "-e", "console.log('node', 6 * 7)"], { env: env() });
    expect(node).toMatchObject({ code: 0, stdout: "node 42\n" });
    const { spawnSync } = await import("node:child_process");
    const { CLI } = await import("./cli-helpers.js");
    const piped = spawnSync(process.execPath, [CLI, "exec", "-"], {
      input: "print('from stdin')",
      env: { ...process.env, ...env() },
      encoding: "utf8",
    });
    expect(piped.status).toBe(0);
    expect(piped.stdout).toBe("from stdin\n");
  });

  it("prints one Execution record with --json", async () => {
    const result = await runCli(["exec", "--json", "-e", "print('hi')"], { env: env() });
    expect(result.code).toBe(0);
    const record = JSON.parse(result.stdout);
    expect(record).toMatchObject({
      language: "python",
      status: "completed",
      stdout: "hi\n",
      exit_code: 0,
      limit: null,
      error: null,
      limits: { time_ms: 30_000, output_bytes: 1_048_576, network: false },
    });
    expect(record.duration_ms).toBeGreaterThan(0);
  });

  it("exits 124 on the time limit and 137 on the memory limit, with the record saying which", async () => {
    const slow = await runCli(["exec", "--json", "-t", "1", "-e", "while True: pass"], { env: env() });
    expect(slow.code).toBe(124);
    expect(JSON.parse(slow.stdout)).toMatchObject({
      status: "timed_out",
      limit: "time",
      error: { category: "timeout" },
    });
    const hungry = await runCli(
      ["exec", "--json", "-m", "64", "-e", "x = []\nwhile True: x.append(bytearray(10**7))"],
      { env: env() },
    );
    const record = JSON.parse(hungry.stdout);
    expect(hungry.code).toBe(137);
    expect(record).toMatchObject({ status: "failed", limit: "memory", error: { category: "memory" } });
    expect(record.limits.memory_bytes).toBe(64 * 1024 * 1024);
  });

  it("classifies Python errors from the traceback", async () => {
    const cases = [
      ["1/0", "ZeroDivisionError", "runtime"],
      ["def f(:", "SyntaxError", "syntax"],
      ["import no_such_module", "ModuleNotFoundError", "import"],
    ] as const;
    for (const [code, name, category] of cases) {
      const result = await runCli(["exec", "--json", "-e", code], { env: env() });
      expect(result.code).toBe(1);
      expect(JSON.parse(result.stdout).error).toMatchObject({ name, category });
    }
  });

  it("starts in a fresh empty workspace, and mounts a host directory only when asked", async () => {
    const fresh = await runCli(["exec", "-e", "import os; print(os.getcwd(), os.listdir('.'))"], {
      env: env(),
    });
    expect(fresh.stdout).toBe("/workspace []\n");
    const workspace = join(dir, "ws");
    const { mkdirSync } = await import("node:fs");
    mkdirSync(workspace);
    chmodSync(workspace, 0o777); // the sandbox runs as an unprivileged uid
    writeFileSync(join(workspace, "input.txt"), "data");
    const rw = await runCli(
      [
        "exec",
        "--workspace",
        workspace,
        "-e",
        "print(open('input.txt').read()); open('out.txt','w').write('ok')",
      ],
      { env: env() },
    );
    expect(rw).toMatchObject({ code: 0, stdout: "data\n" });
    expect(readFileSync(join(workspace, "out.txt"), "utf8")).toBe("ok");
    const ro = await runCli(
      ["exec", "--workspace", workspace, "--read-only", "--json", "-e", "open('x.txt','w')"],
      { env: env() },
    );
    expect(JSON.parse(ro.stdout).error).toMatchObject({ name: "OSError" });
    expect(JSON.parse(ro.stdout).error.value).toContain("Read-only file system");
  });

  it("answers usage errors with exit 2", async () => {
    const cases = [
      [["exec", "-l", "ruby", "-e", "1"], "unknown language"],
      [["exec", join(dir, "missing.py")], "no such file"],
      [["exec"], "nothing to run"],
      [["exec", "-t", "0", "-e", "1"], "--timeout"],
      [["exec", "-t", "100000", "-e", "1"], "--timeout"],
      [["exec", "-m", "-5", "-e", "1"], "--memory"],
      [["exec", "--sandbox", "docker", "-e", "1"], "--sandbox"],
    ] as const;
    for (const [args, message] of cases) {
      const result = await runCli([...args], { env: env() });
      expect(result.code, args.join(" ")).toBe(2);
      expect(result.stderr).toContain(message);
    }
  });

  it("says how to fix a runtime dir that sandboxes cannot reach", async () => {
    const { mkdirSync } = await import("node:fs");
    const closed = join(dir, "closed");
    mkdirSync(closed, { mode: 0o700 });
    const result = await runCli(["exec", "-e", "1"], { env: { RUNCELL_RUNTIME_DIR: join(closed, "rt") } });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`chmod o+x ${closed}`);
  });

  it("warns that --sandbox none is unconfined", async () => {
    const result = await runCli(["exec", "--sandbox", "none", "-e", "print('host')"], { env: env() });
    expect(result.code).toBe(0);
    expect(result.stdout).toBe("host\n");
    expect(result.stderr).toContain("unconfined");
  });
});
