import { z } from "zod";
import { InvalidArgumentError } from "../errors.js";
import type { Notebook } from "./ipynb.js";

/** nbformat's multiline strings: a string or a list of lines. */
const multiline = z.union([z.string(), z.array(z.string())]);

const outputSchema = z.looseObject({ output_type: z.string() });

const cellSchema = z.looseObject({
  cell_type: z.enum(["code", "markdown", "raw"]),
  source: multiline,
  metadata: z.record(z.string(), z.unknown()).default({}),
  id: z.string().optional(),
  outputs: z.array(outputSchema).optional(),
  execution_count: z.number().int().nullable().optional(),
  attachments: z.record(z.string(), z.unknown()).optional(),
});

const notebookSchema = z.looseObject({
  nbformat: z.literal(4, {
    error: "only nbformat 4 notebooks are supported (convert with `jupyter nbconvert --to notebook`)",
  }),
  nbformat_minor: z.number().int().nonnegative(),
  metadata: z.looseObject({
    kernelspec: z
      .looseObject({ name: z.string(), display_name: z.string().optional(), language: z.string().optional() })
      .optional(),
    language_info: z.looseObject({ name: z.string() }).optional(),
  }),
  cells: z.array(cellSchema),
});

/**
 * Parses and validates notebook JSON. Throws InvalidArgumentError saying what is wrong and
 * where (`cells.3.cell_type: …`), never a bare JSON syntax error.
 */
export function parseNotebook(text: string, origin = "notebook"): Notebook {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new InvalidArgumentError(
      "INVALID_NOTEBOOK",
      `${origin} is not valid JSON: ${(error as Error).message}`,
    );
  }
  return validateNotebook(json, origin);
}

/** Validates already-parsed notebook JSON; throws InvalidArgumentError naming the bad field. */
export function validateNotebook(json: unknown, origin = "notebook"): Notebook {
  const parsed = notebookSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.length ? issue.path.join(".") : "(top level)";
    throw new InvalidArgumentError(
      "INVALID_NOTEBOOK",
      `${origin} is not a valid nbformat 4 notebook: ${where}: ${issue.message}`,
    );
  }
  return parsed.data as Notebook;
}
