import { assessHost, type HostCheck, probeHost } from "../../sandbox/capabilities.js";
import type { CliContext } from "../context.js";
import { EXIT } from "../errors.js";

export const DOCTOR_HELP = `Usage: runcell doctor [--json]

Checks what this host offers for confining code: bubblewrap, user namespaces, cgroups (memory,
pids, CPU accounting, freezer), prlimit, setpriv and seccomp. Each check is ok, fallback (a
weaker mechanism is used instead) or missing, with the command that fixes it.

Exit status: 0 when code can be confined (bubblewrap works and every limit is enforced, by
cgroups or at least by rlimits), 1 when it cannot.`;

const MARK: Record<HostCheck["state"], string> = { ok: "ok", fallback: "fallback", missing: "MISSING" };

/** `runcell doctor`: can this host confine code, and what would make it better. */
export async function doctorCommand(args: { json: boolean }, ctx: CliContext): Promise<number> {
  const caps = await probeHost({ path: ctx.config.kernelEnv.PATH });
  const { checks, confinable } = assessHost(caps);
  const code = confinable ? EXIT.ok : EXIT.failed;
  if (args.json) {
    ctx.stdout.write(`${JSON.stringify({ confinable, checks, capabilities: caps }, null, 2)}\n`);
    return code;
  }
  const out: string[] = [];
  const nameWidth = Math.max(...checks.map((c) => c.name.length));
  for (const check of checks) {
    out.push(`  ${MARK[check.state].padEnd(8)}  ${check.name.padEnd(nameWidth)}  ${check.detail}`);
  }
  const cg = caps.cgroups;
  const controllers = (["memory", "pids", "cpu", "freezer"] as const).filter((c) => cg[c]);
  out.push("", `cgroups: ${cg.version}${controllers.length > 0 ? ` (${controllers.join(", ")})` : ""}`);
  for (const note of cg.notes) out.push(`  - ${note}`);

  const fallbacks = checks.filter((c) => c.state === "fallback");
  if (fallbacks.length > 0) {
    out.push("", "Falls back to weaker mechanisms:");
    for (const check of fallbacks) out.push(`  - ${check.name}: ${check.detail}`);
  }
  const fixes = [...new Set(checks.filter((c) => c.state !== "ok" && c.fix).map((c) => c.fix!))];
  if (fixes.length > 0) {
    out.push("", "To fix:");
    for (const fix of fixes) out.push(`  ${fix}`);
  }
  out.push(
    "",
    confinable
      ? "Result: runcell can confine code on this host."
      : "Result: runcell cannot confine code on this host; it refuses to run code unless --sandbox none (no isolation).",
  );
  ctx.stdout.write(`runcell doctor\n\n${out.join("\n")}\n`);
  return code;
}
