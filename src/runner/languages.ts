import { dirname } from "node:path";
import { InvalidArgumentError } from "../errors.js";

/** Languages a one-shot run can use. */
export const LANGUAGES = ["python", "bash", "node"] as const;
export type Language = (typeof LANGUAGES)[number];

export interface LanguageSpec {
  /** File the code is written to, inside the read-only code directory. */
  fileName: string;
  /** The command that runs that file. */
  command(file: string): string[];
  /** Host directories the interpreter needs besides /usr (mounted read-only). */
  extraPaths: string[];
  /**
   * Whether a per-process virtual-memory cap (RLIMIT_AS, the fallback when no memory cgroup
   * exists) leaves the interpreter able to start. V8 reserves gigabytes of address space up front.
   */
  toleratesAddressSpaceLimit: boolean;
}

/** Interpreters to use; each must be an absolute path. */
export interface Interpreters {
  python: string;
  bash: string;
  node: string;
}

/** Debian's Python (the one with python3-numpy & co.), bash, and the Node running runcell. */
export function defaultInterpreters(): Interpreters {
  return { python: "/usr/bin/python3", bash: "/bin/bash", node: process.execPath };
}

/** Narrows a caller's language string, with a message listing what is supported. */
export function parseLanguage(value: string): Language {
  if ((LANGUAGES as readonly string[]).includes(value)) return value as Language;
  throw new InvalidArgumentError(
    "UNKNOWN_LANGUAGE",
    `unknown language ${JSON.stringify(value)}: use one of ${LANGUAGES.join(", ")}`,
  );
}

export function languageSpec(language: Language, interpreters: Interpreters): LanguageSpec {
  const outsideUsr = (path: string) => (path.startsWith("/usr/") ? [] : [dirname(dirname(path))]);
  switch (language) {
    case "python":
      // -u: unbuffered, so output interleaves as written and nothing is lost on a kill.
      return {
        fileName: "main.py",
        command: (f) => [interpreters.python, "-u", f],
        extraPaths: outsideUsr(interpreters.python),
        toleratesAddressSpaceLimit: true,
      };
    case "bash":
      return {
        fileName: "main.sh",
        command: (f) => [interpreters.bash, f],
        extraPaths: [],
        toleratesAddressSpaceLimit: true,
      };
    case "node":
      return {
        fileName: "main.js",
        command: (f) => [interpreters.node, f],
        extraPaths: outsideUsr(interpreters.node),
        toleratesAddressSpaceLimit: false,
      };
  }
}
