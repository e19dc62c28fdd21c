import { describe, expect, it } from "vitest";
import { formatLogLine } from "../../src/core/log.js";

describe("readable log lines for a person at a terminal", () => {
  it("show the level, the message and the fields that matter, quoting values with spaces", () => {
    const line = JSON.stringify({ level: 40, time: 1, pid: 2, hostname: "h", name: "kitty-images", msg: "storage failed; will retry", retryInMs: 1000, error: "connect ECONNREFUSED 127.0.0.1:9000" });
    expect(formatLogLine(line)).toBe('WARN storage failed; will retry retryInMs=1000 error="connect ECONNREFUSED 127.0.0.1:9000"');
  });

  it("pass a line that is not JSON through as it is", () => {
    expect(formatLogLine("plain text\n")).toBe("plain text");
  });
});
