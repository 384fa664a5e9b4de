/**
 * Attacks: the workspace set-up. Input file names that climb out of /workspace or name a
 * directory: `../../x`, `a/../../x`, absolute paths, `..`, `.`, `d/`, empty, NUL bytes
 * (HOSTILE.md #25, anchor: jupyter_server `test_resolve_path_server_traversal`).
 *
 * Expected: runOnce throws InvalidArgumentError (INVALID_FILE_PATH) before anything is
 * written or started; the message quotes only the name given, never a host path; nothing is
 * created outside the run directory (the planted target path stays absent) and no run
 * directory, cgroup or process is left. A well-formed nested name works (control).
 *
 * Deterministic: validation is pure; the control run only reads its input.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "vitest";
import { describeRun, needs, probeHost, useHarness } from "../harness.js";

const host = await probeHost();
const h = useHarness(host);
const c = needs(host, "bwrap");

describe.concurrent("input file names", () => {
  for (const name of [
    "../../x",
    "a/../../x",
    "../x",
    "..",
    "/etc/x",
    "/tmp/hostile-x",
    ".",
    "d/",
    "",
    "a\0b",
  ]) {
    it.skipIf(c.skip)(`#25 ${JSON.stringify(name)} is rejected${c.label}`, async ({ expect }) => {
      const error = await h.rejects({
        language: "python",
        code: "print('ran')",
        files: [{ path: name, content: "x" }],
      });
      expect(error.code).toBe("INVALID_FILE_PATH");
      expect(error.message).not.toContain(h.runtimeDir);
      expect(existsSync(join(h.runtimeDir, "x"))).toBe(false);
      expect(existsSync("/tmp/hostile-x")).toBe(false);
      h.report(`25-${JSON.stringify(name)}`, null, { rejected: error.code });
    });
  }

  it.skipIf(c.skip)(
    `#25 files and a workspace directory together are rejected${c.label}`,
    async ({ expect }) => {
      const error = await h.rejects({
        language: "python",
        code: "print('ran')",
        files: [{ path: "a", content: "x" }],
        workspace: { hostPath: h.runtimeDir },
      });
      expect(error.code).toBe("INVALID_FILES");
    },
  );

  it.skipIf(c.skip)(
    `#25 control: a nested relative name is placed in /workspace${c.label}`,
    async ({ expect }) => {
      const { execution: e } = await h.run({
        language: "python",
        code: "import os\nprint(open('d/e/x.txt').read(), os.getcwd())",
        files: [{ path: "d/e/x.txt", content: "inside" }],
      });
      expect(e.status, describeRun(e)).toBe("completed");
      expect(e.stdout).toBe("inside /workspace\n");
    },
  );
});
