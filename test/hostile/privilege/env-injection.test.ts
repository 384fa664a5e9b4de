/**
 * Attacks: the launcher's argv and environment through request fields: `LD_PRELOAD`, values
 * holding bwrap options (`--dev-bind / /`) and shell syntax, variable names that are not
 * names (spaces, `=`, `--dev-bind`, `BASH_FUNC_x%%`), NUL bytes, and a language named like an
 * option (HOSTILE.md #37, anchor: bwrap "defanged by --", Judge0 arg gsub).
 *
 * Expected: values are data. The run completes, sees each value byte for byte, and the
 * sandbox is unchanged (host paths still absent). LD_PRELOAD=/nonexistent.so reaches only the
 * program: exactly one "cannot be preloaded" warning, from python itself — the launcher chain
 * (sh, setpriv, prlimit, bwrap) shares the stderr pipe and would add one per exec had it seen
 * the variable. Invalid names, NUL bytes and unknown languages are refused with
 * InvalidArgumentError before anything starts.
 *
 * Deterministic: argv and environment are built the same way every time.
 */
import { describe, it } from "vitest";
import { describeRun, needs, probeHost, probeResults, REPO_ROOT, useHarness } from "../harness.js";

const host = await probeHost();
const h = useHarness(host);
const c = needs(host, "bwrap");

const VALUES = {
  DEV_BIND: "--dev-bind / /",
  SPACES: "a b  --bind / /host",
  SHELL: "; rm -rf ~ && $(id) `id` | cat",
  NEWLINE: "line1\nline2 --ro-bind / /",
};

describe.concurrent("environment injection", () => {
  it.skipIf(c.skip)(
    `#37 LD_PRELOAD and option-like values stay data inside the run${c.label}`,
    async ({ expect }) => {
      const code = [
        "import json, os",
        `names = ${JSON.stringify(Object.keys(VALUES))}`,
        "print('VALUES=' + json.dumps({k: os.environ.get(k) for k in names}))",
        "print('PRELOAD=' + json.dumps(os.environ.get('LD_PRELOAD')))",
        `print('HOST_VISIBLE=' + json.dumps([p for p in ['/etc/shadow', '/root', '/host', ${JSON.stringify(REPO_ROOT)}] if os.path.exists(p)]))`,
      ].join("\n");
      const { execution: e } = await h.run({
        language: "python",
        code,
        env: { LD_PRELOAD: "/nonexistent.so", ...VALUES },
      });
      expect(e.status, describeRun(e)).toBe("completed");
      const r = probeResults(e);
      expect(r.VALUES).toEqual(VALUES);
      expect(r.PRELOAD).toBe("/nonexistent.so");
      expect(r.HOST_VISIBLE).toEqual([]);
      const warnings = e.stderr.split("\n").filter((line) => line.includes("cannot be preloaded"));
      expect(warnings).toHaveLength(1);
      h.report("37-env-values", e, { preload_warnings: warnings.length });
    },
  );

  for (const name of ["BAD NAME", "A=B", "", "--dev-bind", "1X", "BASH_FUNC_x%%", "X\0Y"]) {
    it.skipIf(c.skip)(
      `#37 variable name ${JSON.stringify(name)} is rejected${c.label}`,
      async ({ expect }) => {
        const error = await h.rejects({ language: "python", code: "print('ran')", env: { [name]: "x" } });
        expect(error.code).toBe("INVALID_ENV");
        h.report(`37-name-${JSON.stringify(name)}`, null, { rejected: error.code });
      },
    );
  }

  it.skipIf(c.skip)(
    `#37 a NUL byte in a value is rejected, not a runcell failure${c.label}`,
    async ({ expect }) => {
      const error = await h.rejects({ language: "python", code: "print('ran')", env: { X: "a\0b" } });
      expect(error.code).toBe("INVALID_ENV");
    },
  );

  it.skipIf(c.skip)(`#37 a language named like an option is rejected${c.label}`, async ({ expect }) => {
    for (const language of ["--dev-bind / /", "python; id", "../python"]) {
      const error = await h.rejects({ language, code: "print('ran')" });
      expect(error.code).toBe("UNKNOWN_LANGUAGE");
    }
  });

  it.skipIf(c.skip)(
    `#37 PATH set by the caller only changes the program's own lookups${c.label}`,
    async ({ expect }) => {
      const { execution: e } = await h.run({
        language: "bash",
        code: 'echo "$PATH"; command -v ls',
        env: { PATH: "/nonexistent:/usr/bin" },
      });
      expect(e.status, describeRun(e)).toBe("completed");
      expect(e.stdout).toBe("/nonexistent:/usr/bin\n/usr/bin/ls\n");
    },
  );
});
