import { describe, expect, it } from "vitest";
import type { TaskIndex, TaskRecord } from "../../src/queue/ports.js";

const T0 = Date.UTC(2026, 11, 1);
const at = (ms: number) => new Date(T0 + ms);
const record = (n: number, ttlMs = 60_000): TaskRecord => ({ taskId: `task-${String(n).padStart(3, "0")}`, tool: "generate_image", createdAt: at(n * 1000).toISOString(), ttlMs, cancelled: false });

/** The MCP task index both databases pass; `current()` is the empty index of the test running now. */
export function taskIndexContract(name: string, current: () => TaskIndex): void {
  describe(`${name}: the task index contract`, () => {
    it("keeps a task until created_at plus its ttl, then answers as if it never was", async () => {
      const tasks = current();
      await tasks.add(record(1));
      expect(await tasks.get("task-001", at(1000 + 59_999))).toEqual(record(1));
      expect(await tasks.get("task-001", at(1000 + 60_000))).toBeUndefined();
      expect(await tasks.get("task-999", at(0))).toBeUndefined();
    });

    it("records a cancel", async () => {
      const tasks = current();
      await tasks.add(record(1));
      await tasks.markCancelled("task-001");
      expect(await tasks.get("task-001", at(1000))).toMatchObject({ cancelled: true });
    });

    it("pages unexpired tasks newest first without gaps or repeats, ties broken by id", async () => {
      const tasks = current();
      for (let n = 0; n < 25; n++) await tasks.add({ ...record(n, n < 5 ? 10_000 : 3600_000), createdAt: at(Math.floor(n / 2) * 1000).toISOString() });
      const now = at(20_000); // the first five (ttl 10 s) have expired
      const seen: string[] = [];
      let after: { createdAt: string; taskId: string } | undefined;
      for (;;) {
        const page = await tasks.page(now, 7, after);
        seen.push(...page.map((task) => task.taskId));
        if (page.length < 7) break;
        after = page.at(-1)!;
      }
      const expected = Array.from({ length: 20 }, (_, i) => i + 5)
        .map((n) => ({ id: record(n).taskId, createdAt: at(Math.floor(n / 2) * 1000).toISOString() }))
        .sort((a, b) => (a.createdAt === b.createdAt ? b.id.localeCompare(a.id) : b.createdAt.localeCompare(a.createdAt)))
        .map((task) => task.id);
      expect(seen).toEqual(expected);
    });

    it("forgets only expired tasks, and says how many", async () => {
      const tasks = current();
      await tasks.add(record(1, 10_000));
      await tasks.add(record(2, 3600_000));
      expect(await tasks.forgetExpired(at(30_000))).toBe(1);
      expect(await tasks.forgetExpired(at(30_000))).toBe(0);
      expect(await tasks.get("task-002", at(30_000))).toMatchObject({ taskId: "task-002" });
    });
  });
}
