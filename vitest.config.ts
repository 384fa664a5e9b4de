import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    // Real kernels start in ~0.6 s; deadlines inside the tests are AbortSignals, these are only backstops.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Two cores: more workers only make kernel start-up slower for everyone.
    pool: "forks",
    maxWorkers: 2,
    reporters: ["default"],
  },
});
