import { writeFileSync } from "node:fs";
import { it } from "vitest";
import { startInProcess } from "../helpers/inProcess.js";
it("dump", async () => {
  for (const era of ["legacy", "modern"] as const) {
    const server = await startInProcess({ era });
    await server.client.listTools();
    const answer = server.received.findLast((m) => (m as { result?: { tools?: unknown } }).result?.tools);
    writeFileSync(`/tmp/tl/${era}.json`, JSON.stringify(answer, null, 1));
    await server.close();
  }
});
