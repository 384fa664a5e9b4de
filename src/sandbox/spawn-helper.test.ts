import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { connect } from "node:net";
import { afterAll, describe, expect, it } from "vitest";
import { isProcessAlive } from "../../test/support/processes.js";
import { SpawnHelper, type SpawnedChild } from "./spawn-helper.js";

// Against a real helper process (Debian's python3) and real children.
const helpers: SpawnHelper[] = [];
afterAll(() => {
  for (const helper of helpers) helper.dispose();
});

async function started(): Promise<SpawnHelper> {
  const helper = await SpawnHelper.start();
  helpers.push(helper);
  return helper;
}

function collect(child: SpawnedChild): { out: () => string; err: () => string; ended: Promise<void> } {
  let out = "";
  let err = "";
  const end = (stream: NodeJS.ReadableStream) => new Promise<void>((resolve) => stream.once("end", resolve));
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (err += chunk));
  return {
    out: () => out,
    err: () => err,
    ended: Promise.all([end(child.stdout), end(child.stderr)]).then(),
  };
}

/** Waits (bounded) until `pid` runs `program`. */
async function execed(pid: number, program: string): Promise<boolean> {
  for (let i = 0; i < 250; i++) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")[0]!.endsWith(program)) return true;
    } catch {
      return false;
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return false;
}

describe("SpawnHelper", () => {
  it("starts a child in its own session with exactly the given argv, env, cwd and stdin", async () => {
    const helper = await started();
    const { started: pid, child } = helper.spawn({
      argv: [
        "/usr/bin/python3",
        "-c",
        "import os, sys\n" +
          "print(sorted(os.environ.items()), os.getcwd(), os.getsid(0) == os.getpid(), sys.stdin.read())\n" +
          "print('to stderr', file=sys.stderr)\n" +
          "sys.exit(3)",
      ],
      env: { ONLY: "this", PATH: "/usr/bin" },
      cwd: "/tmp",
      stdin: true,
    });
    const output = collect(child);
    child.stdin!.end("fed");
    expect(await pid).toBeGreaterThan(1);
    expect(await child.exited).toEqual({ code: 3, signal: null });
    await output.ended;
    expect(output.out()).toBe(
      "[('LC_CTYPE', 'C.UTF-8'), ('ONLY', 'this'), ('PATH', '/usr/bin')] /tmp True fed\n",
    );
    expect(output.err()).toBe("to stderr\n");
  });

  it("gives children default signal dispositions, an empty mask, and /dev/null as stdin", async () => {
    const helper = await started();
    const { child } = helper.spawn({
      argv: ["/bin/sh", "-c", "grep -E '^Sig(Ign|Blk)' /proc/self/status; head -c 10 -"],
      env: {},
      stdin: false,
    });
    const output = collect(child);
    await child.exited;
    await output.ended;
    const [blocked, ignored] = output
      .out()
      .trim()
      .split("\n")
      .map((line) => BigInt(`0x${line.split(/\s+/)[1]}`));
    // Signals 1-31 (32 and 33 are glibc's own, never a program's).
    const standard = (1n << 31n) - 1n;
    expect(blocked! & standard).toBe(0n);
    expect(ignored! & standard).toBe(0n);
  });

  it("loses no output a child wrote just before exiting", async () => {
    const helper = await started();
    const { child } = helper.spawn({
      argv: ["/usr/bin/python3", "-c", "import sys; sys.stdout.write('x' * 3_000_000)"],
      env: {},
      stdin: false,
    });
    const output = collect(child);
    expect(await child.exited).toEqual({ code: 0, signal: null });
    await output.ended;
    expect(output.out().length).toBe(3_000_000);
  });

  it("reports a program that cannot be started as exit 127 with the reason", async () => {
    const helper = await started();
    const { started: pid, child } = helper.spawn({
      argv: ["no-such-program-x"],
      env: { PATH: "/usr/bin" },
      stdin: false,
    });
    await expect(pid).rejects.toThrow(/no-such-program-x/);
    const exit = await child.exited;
    expect(exit.code).toBe(127);
    expect(exit.error?.message).toMatch(/not found/);
  });

  it("reports the signal that killed a child", async () => {
    const helper = await started();
    const { started: pid, child } = helper.spawn({ argv: ["/bin/sleep", "60"], env: {}, stdin: false });
    process.kill(-(await pid), "SIGTERM"); // its own process group
    expect(await child.exited).toMatchObject({ code: null, signal: "SIGTERM" });
  });

  it("drops connections that do not carry its token", async () => {
    const helper = await started();
    const socket = connect(helper.socketPath);
    socket.write("not-the-token 1 stdout\n");
    await new Promise<void>((resolve) => socket.once("close", () => resolve()));
    expect(socket.destroyed).toBe(true);
  });

  it("ends its pending children as killed when it dies, and dies with runcell", async () => {
    const helper = await started();
    const { started: pid, child } = helper.spawn({
      argv: ["/usr/bin/setpriv", "--pdeathsig", "KILL", "--", "/bin/sleep", "60"],
      env: {},
      stdin: false,
    });
    const childPid = await pid;
    // Only once setpriv has armed the parent-death signal (it then execs sleep).
    expect(await execed(childPid, "sleep")).toBe(true);
    helper.dispose(); // closes its stdin: the helper exits, and the child with it
    expect(await child.exited).toMatchObject({ signal: "SIGKILL" });
    expect(helper.alive).toBe(false);
    expect(existsSync(helper.socketPath)).toBe(false);
    await expect(helper.spawn({ argv: ["/bin/true"], env: {}, stdin: false }).started).rejects.toThrow(
      /spawn helper exited/,
    );
    for (let i = 0; i < 100 && isProcessAlive(childPid); i++) await new Promise((r) => setTimeout(r, 20));
    expect(isProcessAlive(childPid)).toBe(false);

    // runcell killed with SIGKILL: its helper and the helper's children go too.
    const script =
      "import { SpawnHelper } from './src/sandbox/spawn-helper.ts';" +
      "const h = await SpawnHelper.start();" +
      "const s = h.spawn({ argv: ['/usr/bin/setpriv', '--pdeathsig', 'KILL', '--', '/bin/sleep', '60'], env: {}, stdin: false });" +
      "console.log(await s.started, h.socketPath); setInterval(() => {}, 1000);";
    const owner = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    const [grandchildText, socketPath] = await new Promise<string[]>((resolve) =>
      owner.stdout.once("data", (chunk: Buffer) => resolve(chunk.toString().trim().split(" "))),
    );
    const grandchild = Number(grandchildText);
    expect(await execed(grandchild, "sleep")).toBe(true);
    expect(existsSync(socketPath!)).toBe(true);
    owner.kill("SIGKILL");
    for (let i = 0; i < 100 && (isProcessAlive(grandchild) || existsSync(socketPath!)); i++)
      await new Promise((r) => setTimeout(r, 20));
    expect(isProcessAlive(grandchild)).toBe(false);
    // The helper removed runcell's socket directory on its way out.
    expect(existsSync(socketPath!)).toBe(false);
  });
});
