/**
 * Attacks: state carried from one run to the next. Run 1 writes files in every writable place
 * (/tmp, /dev/shm, /var/tmp, /workspace, $HOME, /run/lock), exports variables, sets a module
 * global, and leaves a daemonised grandchild behind; run 2 looks for all of it (HOSTILE.md
 * #24, anchor: Piston `tests/file_persistance.py`).
 *
 * Expected: run 2 finds nothing — no file, no variable, no global, no process — and the
 * harness finds no process of run 1's host uid after run 1 (the daemon died with it).
 *
 * Deterministic: every mount written is a tmpfs private to the run, and the process tree is
 * killed with its cgroup; nothing depends on timing.
 */
import { describe, it } from "vitest";
import { describeRun, needs, probeHost, probeResults, useHarness } from "../harness.js";

const host = await probeHost();
const h = useHarness(host);
const c = needs(host, "bwrap");

const PLACES = ["/tmp", "/dev/shm", "/var/tmp", "/workspace", "/run/lock", "/run"];

describe("state between runs", () => {
  it.skipIf(c.skip)(
    `#24 files, variables, globals and processes of run 1 are gone in run 2${c.label}`,
    async ({ expect }) => {
      const first = [
        "import builtins, json, os, sys, time",
        `places = ${JSON.stringify(PLACES)}`,
        "written = []",
        "for d in places + [os.environ['HOME']]:",
        "    try:",
        "        os.makedirs(d, exist_ok=True)",
        "        with open(os.path.join(d, 'left-behind'), 'w') as f: f.write('x')",
        "        written.append(d)",
        "    except OSError:",
        "        pass",
        "os.environ['LEFT_BEHIND'] = '1'",
        "os.putenv('LEFT_BEHIND_TOO', '1')",
        "builtins.LEFT_BEHIND = 1",
        "if os.fork() == 0:",
        "    os.setsid()",
        "    if os.fork() == 0:",
        "        os.execv('/bin/sleep', ['sleep', '300'])",
        "    os._exit(0)",
        "time.sleep(0.2)",
        "print('WRITTEN=' + json.dumps(written))",
      ].join("\n");
      const one = await h.run({ language: "python", code: first });
      expect(one.execution.status, describeRun(one.execution)).toBe("completed");
      const written = probeResults(one.execution).WRITTEN as string[];
      expect(written).toEqual(expect.arrayContaining(["/tmp", "/dev/shm", "/var/tmp", "/workspace"]));

      const second = [
        "import builtins, json, os",
        `places = ${JSON.stringify(PLACES)}`,
        "found = [d for d in places + [os.environ['HOME']] if os.path.exists(os.path.join(d, 'left-behind'))]",
        "print('FOUND=' + json.dumps(found))",
        "print('ENV=' + json.dumps([k for k in os.environ if k.startswith('LEFT_BEHIND')]))",
        "print('GLOBAL=' + json.dumps(hasattr(builtins, 'LEFT_BEHIND')))",
        "procs = [open(f'/proc/{p}/comm').read().strip() for p in os.listdir('/proc') if p.isdigit()]",
        "print('PROCS=' + json.dumps(sorted(procs)))",
      ].join("\n");
      const two = await h.run({ language: "python", code: second });
      expect(two.execution.status, describeRun(two.execution)).toBe("completed");
      const r = probeResults(two.execution);
      expect(r.FOUND).toEqual([]);
      expect(r.ENV).toEqual([]);
      expect(r.GLOBAL).toBe(false);
      // Only the sandbox's pid 1 (bwrap) and the probe itself.
      expect(r.PROCS).toEqual(["bwrap", "python3"]);
      h.report("24-persistence", two.execution, { written_in_run_1: written, leftovers: 0 });
    },
  );
});
