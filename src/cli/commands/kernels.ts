import type { KernelspecProblem } from "../../kernels/kernelspec.js";
import type { CliContext } from "../context.js";
import { EXIT } from "../errors.js";

export const KERNELS_HELP = `Usage: runcell kernels [--json]

Lists the installed Jupyter kernelspecs (name, language, display name) found in the
standard Jupyter data paths: $JUPYTER_PATH, the user data dir, /usr/local/share/jupyter,
/usr/share/jupyter.`;

/** `runcell kernels`: the kernelspecs runcell can start. */
export async function kernelsCommand(args: { json: boolean }, ctx: CliContext): Promise<number> {
  const problems: KernelspecProblem[] = [];
  const specs = await ctx.kernels().listKernelspecs(problems);
  if (args.json) {
    ctx.stdout.write(
      `${JSON.stringify(
        specs.map((s) => ({
          name: s.name,
          language: s.language,
          display_name: s.display_name,
          argv: s.argv,
          resource_dir: s.resource_dir,
        })),
        null,
        2,
      )}\n`,
    );
  } else if (specs.length === 0) {
    ctx.stderr.write(
      `runcell: no kernels found in ${ctx.config.jupyterPaths.join(", ")}\n` +
        "runcell: install one, e.g. apt-get install python3-ipykernel\n",
    );
  } else {
    const width = Math.max(4, ...specs.map((s) => s.name.length));
    const langWidth = Math.max(8, ...specs.map((s) => s.language.length));
    ctx.stdout.write(`${"NAME".padEnd(width)}  ${"LANGUAGE".padEnd(langWidth)}  DISPLAY NAME\n`);
    for (const spec of specs) {
      ctx.stdout.write(
        `${spec.name.padEnd(width)}  ${spec.language.padEnd(langWidth)}  ${spec.display_name}\n`,
      );
    }
  }
  for (const problem of problems) ctx.stderr.write(`runcell: skipped ${problem.path}: ${problem.message}\n`);
  return specs.length === 0 ? EXIT.failed : EXIT.ok;
}
