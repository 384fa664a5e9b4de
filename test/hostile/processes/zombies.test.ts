/**
 * Attacks: process-table leaks through zombies. 500 children that exit at once and are never
 * `wait()`ed for (HOSTILE.md #13, anchor: bwrap README "pid 1", gVisor `container_test.go`).
 *
 * Expected: the 500 zombies exist inside the sandbox (counted from its own /proc), the run
 * completes, and when it ends the sandbox's pid 1 and the kernel reap them: no process of
 * the run's host uid is left, zombie or not (bounded wait). With the default cap of 64, the
 * zombies count against it: fork fails and the run says `limit: pids`.
 *
 * Deterministic: the children exit immediately and nobody reaps them while the code runs;
 * the pids cap is raised to 1024 (the ceiling) for the first case so 500 fit.
 */
import { describe, it } from "vitest";
import { pollUntil } from "../../support/processes.js";
import { describeRun, needs, probeHost, probeResults, useHarness } from "../harness.js";

const host = await probeHost();
const h = useHarness(host);
const c = needs(host, "bwrap", "root");
const pids = needs(host, "bwrap", "pids");

const ZOMBIES = [
  "import os, time",
  "for _ in range(500):",
  "    if os.fork() == 0:",
  "        os._exit(0)",
  "def zombies():",
  "    n = 0",
  "    for p in os.listdir('/proc'):",
  "        if p.isdigit():",
  "            try:",
  "                if open(f'/proc/{p}/stat').read().rsplit(')', 1)[1].split()[0] == 'Z': n += 1",
  "            except OSError:",
  "                pass",
  "    return n",
  "deadline = time.monotonic() + 3",
  "while zombies() < 500 and time.monotonic() < deadline: time.sleep(0.05)",
  "print(f'ZOMBIES={zombies()}')",
].join("\n");

describe.concurrent("zombie children", () => {
  it.skipIf(c.skip)(
    `#13 500 unreaped children are reaped when the run ends; no host zombies${c.label}`,
    async ({ expect }) => {
      const { execution: e, tracked } = await h.run({
        language: "python",
        code: ZOMBIES,
        limits: { pids: 1024 },
      });
      expect(e.status, describeRun(e)).toBe("completed");
      expect(probeResults(e).ZOMBIES).toBe(500);
      // The harness already checked nothing is alive; zombies handed to the host's init must go too.
      const left = () => h.survivors().filter((p) => tracked.uids.includes(p.uid));
      expect(await pollUntil(() => left().length === 0, 10_000), JSON.stringify(left())).toBe(true);
      h.report("13-zombies", e, {
        zombies_inside: probeResults(e).ZOMBIES,
        host_zombies_after: left().length,
      });
    },
  );

  it.skipIf(pids.skip)(
    `#13 at the default cap of 64, zombies count against it: limit pids${pids.label}`,
    async ({ expect }) => {
      const { execution: e } = await h.run({ language: "python", code: ZOMBIES });
      expect(e.status, describeRun(e)).toBe("failed");
      expect(e.error?.name).toBe("BlockingIOError");
      expect(e.limit).toBe("pids");
      h.report("13-zombies-capped", e);
    },
  );
});
