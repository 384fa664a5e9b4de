/** Python lines that print `FDS=[...]`: every descriptor open in the run (needs `import json, os`). */
export const FD_PROBE: readonly string[] = [
  "fds = []",
  "for fd in range(1024):",
  "    try:",
  "        os.fstat(fd)",
  "        fds.append(fd)",
  "    except OSError:",
  "        pass",
  "print('FDS=' + json.dumps(fds))",
];
