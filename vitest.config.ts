import { defineConfig } from "vitest/config";

/**
 * Two tiers. `fast`: in-process, a stand-in engine, temp SQLite and the local store; no torch, no MinIO; seconds.
 * `real`: the built server as a subprocess, the Python runner with torch, MinIO; minutes.
 */
export default defineConfig({
  test: {
    testTimeout: 120_000,
    hookTimeout: 300_000,
    reporters: ["default"],
    projects: [
      {
        extends: true,
        // Its files wait on sockets, subprocesses and timers more than they compute: three at a time on two cores.
        // Projects with their own worker counts run one after another (vitest asks each for a group of its own).
        test: { name: "fast", include: ["test/unit/**/*.test.ts", "test/fast/**/*.test.ts"], maxWorkers: 3, sequence: { groupOrder: 0 } },
      },
      {
        // In-process like the fast tier, but thousands of generated calls: run by npm test, not by test:fast.
        extends: true,
        test: { name: "fuzz", include: ["test/fuzz/**/*.test.ts"], sequence: { groupOrder: 1 } },
      },
      {
        extends: true,
        test: {
          name: "real",
          include: ["test/real/**/*.test.ts"],
          globalSetup: ["test/globalSetup.ts"],
          // Each file starts a runner (torch import) and MinIO: on 2 cores, one file at a time is fastest.
          fileParallelism: false,
          sequence: { groupOrder: 2 },
        },
      },
      // Benchmarks that reuse the real tier's helpers (Postgres, MinIO, the tiny models): only when asked for
      // (npm run bench:scale-out), never by npm test.
      ...(process.env.KITTY_BENCH
        ? [{ extends: true, test: { name: "bench", include: ["bench/**/*.bench.ts"], globalSetup: ["test/globalSetup.ts"], fileParallelism: false, sequence: { groupOrder: 3 } } }]
        : []),
    ],
  },
});
