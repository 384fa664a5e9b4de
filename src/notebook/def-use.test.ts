import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AbortedError, RuncellError, TimeoutError } from "../errors.js";
import { MAX_DEF_USE_SOURCE_BYTES, PythonAnalyzer } from "./def-use.js";

const HELPER_SOURCE = fileURLToPath(new URL("../../assets/def-use.py", import.meta.url));

/** A block that takes the helper a noticeable time (about a second): 25 000 small functions. */
const SLOW_SOURCE = Array.from(
  { length: 25_000 },
  (_, i) => `def f${i}(a):\n    return a + g${i % 50}\n`,
).join("");

let analyzer: PythonAnalyzer;
beforeAll(() => {
  // A generous deadline: the large blocks below take seconds on a loaded machine.
  analyzer = new PythonAnalyzer({ timeoutMs: 60_000 });
});
afterAll(async () => {
  await analyzer.dispose();
});

/** [source, defines, uses] */
type Case = [string, string[], string[]];

function describeCases(title: string, cases: Case[]): void {
  describe(title, () => {
    it.each(cases)("%j", async (source, defines, uses) => {
      expect(await analyzer.analyze(source)).toEqual({ defines, uses, error: null });
    });
  });
}

describeCases("imports", [
  ["import os", ["os"], []],
  ["import a.b.c", ["a"], []],
  ["import numpy as np, pandas as pd", ["np", "pd"], []],
  ["import a.b as ab", ["ab"], []],
  ["from m import n as k, q", ["k", "q"], []],
  ["from . import sibling", ["sibling"], []],
  ["from m import *", [], []],
  ["import numpy as np\nnp.array([1])", ["np"], []],
  ["np.array([1])", [], ["np"]],
  ["df.groupby('k').sum()", [], ["df"]],
]);

describeCases("module-level order", [
  ["x = 1\nprint(x)", ["x"], []],
  ["print(x)\nx = 1", ["x"], ["x"]],
  ["x = x + 1", ["x"], ["x"]],
  ["x += 1", ["x"], ["x"]],
  ["x = 1\nx += 1", ["x"], []],
  ["d[k] += 1", [], ["d", "k"]],
  ["obj.attr = value\narr[i] = 3", [], ["arr", "i", "obj", "value"]],
  ["a, (b, *c) = pairs", ["a", "b", "c"], ["pairs"]],
  ["x: int = 1\ny: Annotation", ["x"], ["Annotation"]],
  ["print(len(x), get_ipython(), display(1), In, Out)", [], ["x"]],
]);

describeCases("functions", [
  ["def f(a, b=1, *args, c, **kw):\n    local = a + b + c\n    return local, args, kw", ["f"], []],
  ["def f(a):\n    return a + g + np.pi", ["f"], ["g", "np"]],
  ["def f(a=default) -> Ret:\n    pass", ["f"], ["Ret", "default"]],
  ["@decorator(option)\ndef f():\n    pass", ["f"], ["decorator", "option"]],
  ["def f(n):\n    return f(n - 1) if n else 0", ["f"], []],
  ["def f():\n    return x\nx = 1", ["f", "x"], []],
  ["def outer():\n    z = 1\n    def inner():\n        return z + g\n    return inner", ["outer"], ["g"]],
  ["async def fetch(url):\n    return await client.get(url)", ["fetch"], ["client"]],
  ["def f():\n    import json\n    return json.dumps(1)", ["f"], []],
]);

describeCases("global statements", [
  ["def inc():\n    global count\n    count += 1", ["count", "inc"], ["count"]],
  ["def reset():\n    global count\n    count = 0", ["count", "reset"], []],
  ["def load():\n    global np\n    import numpy as np", ["load", "np"], []],
  ["def read():\n    global cfg\n    return cfg", ["read"], ["cfg"]],
]);

describeCases("classes", [
  [
    "class C(Base, metaclass=Meta):\n    n = 3\n    def m(self):\n        return self.n + k",
    ["C"],
    ["Base", "Meta", "k"],
  ],
  ["class C:\n    size = limit\n    def copy(self):\n        return C()", ["C"], ["limit"]],
  // A comprehension in a class body does not see the class's names.
  ["class C:\n    n = 3\n    xs = [i * n for i in range(m)]", ["C"], ["m", "n"]],
  ["@dataclass\nclass P:\n    x: float", ["P"], ["dataclass"]],
]);

describeCases("comprehensions and lambdas", [
  ["ys = [x * k for x in data if x > t]", ["ys"], ["data", "k", "t"]],
  ["s = {a: b for a, b in items.items()}", ["s"], ["items"]],
  ["total = sum(v for v in values)", ["total"], ["values"]],
  ["pairs = [(i, j) for i in range(n) for j in range(i)]", ["pairs"], ["n"]],
  ["f = lambda p, q=d: p + q + w", ["f"], ["d", "w"]],
  ["key = lambda row: row[col]\ncol = 0", ["col", "key"], []],
  ["handlers = (lambda: a, lambda: b)", ["handlers"], ["a", "b"]],
]);

describeCases("walrus, for, with, try, match", [
  ["if (n := len(items)) > 3:\n    print(n)", ["n"], ["items"]],
  ["[y := f(x) for x in data]\nprint(y)", ["y"], ["data", "f"]],
  ["for i, (a, b) in enumerate(pairs):\n    tot = tot + a", ["a", "b", "i", "tot"], ["pairs", "tot"]],
  ["with open(path) as fh, lock:\n    data = fh.read()", ["data", "fh"], ["lock", "path"]],
  ["try:\n    import foo\nexcept ImportError as e:\n    print(e)", ["e", "foo"], []],
  [
    "match cmd:\n    case [a, *rest]:\n        pass\n    case Point(x=px) as p:\n        pass",
    ["a", "p", "px", "rest"],
    ["Point", "cmd"],
  ],
]);

describeCases("del", [
  ["del x", ["x"], ["x"]],
  ["x = 1\ndel x", ["x"], []],
  ["del d[k]", [], ["d", "k"]],
]);

describeCases("IPython syntax", [
  ["%time x = 1", ["x"], []],
  ["%time y = f(x)", ["y"], ["f", "x"]],
  ["%timeit z = f(x)", [], ["f", "x"]],
  ["%%time\ny = x + 1\n", ["y"], ["x"]],
  ["%%capture out\nq = 1", ["out", "q"], []],
  ["%%bash\necho $HOME", [], []],
  ["!ls", [], []],
  ["files = !ls {pattern} $folder", ["files"], ["folder", "pattern"]],
  ["%matplotlib inline\nimport numpy as np\nnp.ones(3)", ["np"], []],
  ["if ready:\n    !make\n    done = True", ["done"], ["ready"]],
  ["await fetch()", [], ["fetch"]],
]);

describe("errors", () => {
  it("reports a syntax error with its line and empty lists", async () => {
    expect(await analyzer.analyze("x = 1\ndef f(:\n    pass")).toEqual({
      defines: [],
      uses: [],
      error: "SyntaxError: invalid syntax (line 2)",
    });
    const unclosed = await analyzer.analyze("x = (");
    expect(unclosed.error).toMatch(/^SyntaxError: .*never closed \(line 1\)$/);
    expect((await analyzer.analyze("if x:\nprint(1)")).error).toMatch(/^IndentationError: .* \(line 2\)$/);
    expect((await analyzer.analyze("a = 1\0")).error).toMatch(/^SyntaxError: .*null bytes/);
  });

  it("survives blocks nested too deeply to analyse", async () => {
    const deep = await analyzer.analyze(`x = ${"-".repeat(100_000)}a`);
    expect(deep).toMatchObject({ defines: [], uses: [] });
    expect(deep.error).toMatch(/nested too deeply/);
    expect(await analyzer.analyze("after = deep")).toEqual({
      defines: ["after"],
      uses: ["deep"],
      error: null,
    });
  });

  it("refuses blocks over 1 MiB without sending them", async () => {
    const big = await analyzer.analyze(`x = 1\n${"#".repeat(MAX_DEF_USE_SOURCE_BYTES)}`);
    expect(big).toEqual({ defines: [], uses: [], error: expect.stringMatching(/larger than 1048576 bytes/) });
    // The cap counts UTF-8 bytes, not characters.
    const wide = await analyzer.analyze(`s = "${"é".repeat(MAX_DEF_USE_SOURCE_BYTES / 2 + 1)}"`);
    expect(wide.error).toMatch(/larger than/);
  });

  it("analyses a large block under the cap", async () => {
    expect(SLOW_SOURCE.length).toBeLessThan(MAX_DEF_USE_SOURCE_BYTES);
    const result = await analyzer.analyze(SLOW_SOURCE);
    expect(result.error).toBeNull();
    expect(result.defines).toHaveLength(25_000);
    expect(result.uses).toEqual(Array.from({ length: 50 }, (_, i) => `g${i}`).sort());
  });
});

describe("PythonAnalyzer", () => {
  it("answers concurrent requests each with its own result", async () => {
    const sources = Array.from({ length: 60 }, (_, i) => `v${i} = u${i} + shared`);
    const results = await Promise.all(sources.map((source) => analyzer.analyze(source)));
    results.forEach((result, i) => {
      expect(result).toEqual({ defines: [`v${i}`], uses: [`u${i}`, "shared"].sort(), error: null });
    });
  });

  it("serves a repeated source from its cache, as a fresh copy", async () => {
    const source = "cached = origin * 2";
    const first = await analyzer.analyze(source);
    const pid = analyzer.pid!;
    // A stopped helper cannot answer: only the cache can.
    process.kill(pid, "SIGSTOP");
    try {
      first.defines.push("mutated");
      expect(await analyzer.analyze(source)).toEqual({ defines: ["cached"], uses: ["origin"], error: null });
    } finally {
      process.kill(pid, "SIGCONT");
    }
  });

  it("rejects the pending request when the helper is killed, and restarts it on the next call", async () => {
    const own = new PythonAnalyzer();
    try {
      expect(own.pid).toBeUndefined();
      await own.analyze("started = True");
      const pid = own.pid!;
      expect(pid).toBeGreaterThan(0);
      const pending = [own.analyze(`${SLOW_SOURCE}\nkilled = 1`), own.analyze("queued = 1")];
      process.kill(pid, "SIGKILL");
      for (const request of pending) {
        const error = await request.then(
          () => undefined,
          (failure: unknown) => failure,
        );
        expect(error).toBeInstanceOf(RuncellError);
        expect(error).toMatchObject({ code: "DEF_USE_HELPER_DIED", data: { signal: "SIGKILL" } });
        expect((error as Error).message).toMatch(/exited \(SIGKILL\).*restarts it/);
      }
      expect(await own.analyze("y = x")).toEqual({ defines: ["y"], uses: ["x"], error: null });
      expect(own.pid).toBeGreaterThan(0);
      expect(own.pid).not.toBe(pid);
    } finally {
      await own.dispose();
    }
  });

  it("restarts a helper stuck past a deadline and re-sends the requests queued behind it", async () => {
    const own = new PythonAnalyzer();
    try {
      await own.analyze("warm = 1");
      const pid = own.pid!;
      const stuck = own.analyze(`${SLOW_SOURCE}\nstuck = 1`, AbortSignal.timeout(50));
      const behind = own.analyze("behind = 1");
      await expect(stuck).rejects.toBeInstanceOf(TimeoutError);
      expect(await behind).toEqual({ defines: ["behind"], uses: [], error: null });
      expect(own.pid).not.toBe(pid);
    } finally {
      await own.dispose();
    }
  });

  it("applies its own deadline", async () => {
    const own = new PythonAnalyzer({ timeoutMs: 50 });
    try {
      await expect(own.analyze(`${SLOW_SOURCE}\nslow = 1`)).rejects.toThrow(/timed out/);
    } finally {
      await own.dispose();
    }
  });

  it("rejects with AbortedError when the caller aborts, keeping the helper", async () => {
    await analyzer.analyze("before_abort = 1");
    const pid = analyzer.pid;
    const controller = new AbortController();
    const aborted = analyzer.analyze("never_waited_for = 1", controller.signal);
    controller.abort();
    await expect(aborted).rejects.toBeInstanceOf(AbortedError);
    await expect(analyzer.analyze("x = 2", AbortSignal.abort())).rejects.toBeInstanceOf(AbortedError);
    expect(await analyzer.analyze("after_abort = 1")).toMatchObject({ defines: ["after_abort"] });
    expect(analyzer.pid).toBe(pid);
  });

  it("says how to fix a missing interpreter", async () => {
    const own = new PythonAnalyzer({ python: "/nonexistent/python3" });
    try {
      await expect(own.analyze("x = 1")).rejects.toThrow(/cannot start the def-use helper.*python option/);
    } finally {
      await own.dispose();
    }
  });

  it("rejects requests beyond its queue's cap at once", async () => {
    const own = new PythonAnalyzer();
    try {
      const requests = Array.from({ length: 257 }, (_, i) => own.analyze(`queued${i} = ${i}`));
      await expect(requests.pop()).rejects.toMatchObject({ code: "DEF_USE_BUSY" });
      expect((await Promise.all(requests)).map((result) => result.defines[0])).toEqual(
        Array.from({ length: 256 }, (_, i) => `queued${i}`),
      );
    } finally {
      await own.dispose();
    }
  });

  it("validates its options", () => {
    expect(() => new PythonAnalyzer({ timeoutMs: 0 })).toThrow(/timeoutMs/);
  });

  it("disposes idempotently, rejecting pending and later requests", async () => {
    const own = new PythonAnalyzer();
    await own.analyze("x = 1");
    const pid = own.pid!;
    const pending = own.analyze(`${SLOW_SOURCE}\npending = 1`);
    const disposed = own.dispose();
    expect(own.dispose()).toBe(disposed);
    await expect(pending).rejects.toMatchObject({ code: "DEF_USE_DISPOSED" });
    await disposed;
    expect(own.pid).toBeUndefined();
    expect(() => process.kill(pid, 0)).toThrow();
    await expect(own.analyze("y = 1")).rejects.toMatchObject({ code: "DEF_USE_DISPOSED" });
  });

  it("disposes an analyzer that never started", async () => {
    await new PythonAnalyzer().dispose();
  });
});

describe("PythonAnalyzer with a misbehaving helper", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "runcell-def-use-test-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** An analyzer whose "python" is a shell script: it ignores its arguments and runs `body`. */
  function fake(name: string, body: string): PythonAnalyzer {
    const path = join(dir, name);
    writeFileSync(path, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
    return new PythonAnalyzer({ python: path });
  }

  async function failure(analyzer: PythonAnalyzer, source = "x = 1"): Promise<RuncellError> {
    try {
      const error = await analyzer.analyze(source).then(
        () => undefined,
        (rejected: unknown) => rejected,
      );
      expect(error).toBeInstanceOf(RuncellError);
      return error as RuncellError;
    } finally {
      await analyzer.dispose();
    }
  }

  it("reports the exit code and stderr of a helper that exits", async () => {
    const error = await failure(fake("exits", "echo 'Traceback: boom' >&2\nexit 3"));
    expect(error.code).toBe("DEF_USE_HELPER_DIED");
    expect(error.message).toMatch(/exited \(code 3\).*Traceback: boom/s);
    expect(error.data).toMatchObject({ exitCode: 3, stderr: "Traceback: boom" });
  });

  it("restarts a helper that writes something other than a reply", async () => {
    const error = await failure(fake("garbage", "read request\necho 'Hello from a library'\nsleep 30"));
    expect(error.code).toBe("DEF_USE_PROTOCOL");
    expect(error.message).toMatch(/an invalid reply: Hello from a library/);
  });

  it("restarts a helper whose reply line exceeds the cap", async () => {
    const error = await failure(fake("endless", "read request\ntr '\\0' a < /dev/zero\nsleep 30"));
    expect(error.code).toBe("DEF_USE_PROTOCOL");
    expect(error.message).toMatch(/longer than \d+ characters/);
  });

  it("ignores replies to requests it never sent", async () => {
    const analyzer = fake(
      "stranger",
      `read request\necho '{"id": 999, "defines": ["x"], "uses": [], "error": null}'\nsleep 30`,
    );
    try {
      await expect(analyzer.analyze("x = 1", AbortSignal.timeout(300))).rejects.toBeInstanceOf(TimeoutError);
    } finally {
      await analyzer.dispose();
    }
  });
});

describe("assets/def-use.py", () => {
  /** Sends raw lines to a fresh helper, returns its reply lines once it exits at end of input. */
  async function converse(input: string | Buffer, args: string[] = []): Promise<unknown[]> {
    const child = spawn("/usr/bin/python3", ["-I", HELPER_SOURCE, ...args], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => (stdout += chunk));
    const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
    child.stdin.end(input);
    expect(await exited).toBe(0);
    return stdout
      .split("\n")
      .filter(Boolean)
      .map((line) => JSON.parse(line) as unknown);
  }

  it("answers malformed requests with an error and keeps serving", async () => {
    const replies = await converse(
      [
        "not json",
        JSON.stringify({ id: 1 }),
        JSON.stringify({ id: 2, source: 3 }),
        "",
        JSON.stringify({ id: 3, source: "a = b" }),
        JSON.stringify({ id: 4, source: "\ud800 = 1" }),
        "",
      ].join("\n"),
    );
    expect(replies).toEqual([
      { id: null, defines: [], uses: [], error: expect.stringMatching(/^invalid request/) },
      { id: 1, defines: [], uses: [], error: expect.stringMatching(/^invalid request/) },
      { id: 2, defines: [], uses: [], error: "invalid request: source must be a string" },
      { id: 3, defines: ["a"], uses: ["b"], error: null },
      { id: 4, defines: [], uses: [], error: expect.any(String) },
    ]);
  });

  it("refuses an oversized request line by its id, then goes on", async () => {
    const huge = Buffer.concat([
      Buffer.from('{"id": 7, "source": "'),
      Buffer.alloc(7 * MAX_DEF_USE_SOURCE_BYTES, "a"),
      Buffer.from('"}\n{"id": 8, "source": "ok = 1"}\n{"id": 9, "source": "'),
      Buffer.alloc(MAX_DEF_USE_SOURCE_BYTES + 1, "a"),
      Buffer.from('"}\n'),
    ]);
    expect(await converse(huge)).toEqual([
      { id: 7, defines: [], uses: [], error: expect.stringMatching(/larger than 1048576 bytes/) },
      { id: 8, defines: ["ok"], uses: [], error: null },
      { id: 9, defines: [], uses: [], error: expect.stringMatching(/larger than 1048576 bytes/) },
    ]);
  });

  it("without IPython, skips magic and shell lines instead of failing", async () => {
    const sources = [
      "%time x = 1\ny = x",
      "!ls\nimport os",
      "files = !ls",
      "if c:\n    %matplotlib inline\n    z = 1",
    ];
    const replies = await converse(
      sources.map((source, id) => `${JSON.stringify({ id, source })}\n`).join(""),
      ["--no-ipython"],
    );
    expect(replies).toEqual([
      { id: 0, defines: ["y"], uses: ["x"], error: null },
      { id: 1, defines: ["os"], uses: [], error: null },
      { id: 2, defines: ["files"], uses: [], error: null },
      { id: 3, defines: ["z"], uses: ["c"], error: null },
    ]);
  });
});
