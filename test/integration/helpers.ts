/**
 * Shared set-up for the integration tests: a KernelManager on a private runtime directory,
 * and assertions on finished executions.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { expect } from "vitest";
import {
  type Execution,
  type ExecutionStatus,
  HostSandbox,
  KernelManager,
  loadConfig,
  type RuncellConfig,
} from "../../src/index.js";

export const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));

export interface TestEnv {
  manager: KernelManager;
  config: RuncellConfig;
  runtimeDir: string;
  /** Disposes every kernel of the manager and removes the runtime directory. */
  cleanup: () => Promise<void>;
}

/**
 * A manager whose connection files live in a fresh temporary directory. Call it from a
 * `beforeAll` (not at collection time) so a filtered-out suite leaves no directory behind.
 */
export function createManager(): TestEnv {
  const runtimeDir = mkdtempSync(join(tmpdir(), "runcell-it-"));
  const config = loadConfig({ ...process.env, RUNCELL_RUNTIME_DIR: runtimeDir });
  const manager = KernelManager.fromConfig(config, new HostSandbox());
  return {
    manager,
    config,
    runtimeDir,
    cleanup: async () => {
      await manager.disposeAll();
      rmSync(runtimeDir, { recursive: true, force: true });
    },
  };
}

/** Asserts the fields every finished kernel execution has, whatever its outcome. */
export function expectFinished(execution: Execution, status: ExecutionStatus, code?: string): void {
  expect(execution.status, describeExecution(execution)).toBe(status);
  expect(execution.id).toMatch(/^[0-9a-f-]{36}$/);
  expect(execution.language).toBe("python");
  if (code !== undefined) expect(execution.code).toBe(code);
  expect(execution.exit_code).toBeNull();
  expect(execution.finished_at).not.toBeNull();
  expect(execution.duration_ms).toBeTypeOf("number");
  expect(execution.duration_ms!).toBeGreaterThanOrEqual(0);
  expect(execution.stdout_bytes).toBe(Buffer.byteLength(execution.stdout));
  expect(execution.stderr_bytes).toBe(Buffer.byteLength(execution.stderr));
  expect(execution.truncated).toBe(false);
  if (status === "completed") {
    expect(execution.error).toBeNull();
    expect(execution.limit).toBeNull();
  } else {
    expect(execution.error).not.toBeNull();
  }
}

/** A one-line summary for assertion messages. */
export function describeExecution(execution: Execution): string {
  return JSON.stringify({
    status: execution.status,
    error: execution.error && { name: execution.error.name, value: execution.error.value },
    stdout: execution.stdout.slice(0, 200),
    stderr: execution.stderr.slice(0, 200),
  });
}

/** The `text/plain` of the execution's result output, if it has one. */
export function resultText(execution: Execution): string | undefined {
  const result = execution.outputs.find((output) => output.type === "result");
  return result?.type === "result" ? (result.data["text/plain"] as string | undefined) : undefined;
}

// ESC, written out so the pattern itself holds no control character.
export const ANSI_ESCAPE = new RegExp(String.fromCharCode(0x1b));
