import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { runnerEventSchema, runnerRequestSchema, RUNNER_ERROR_CODES } from "../../src/engines/runnerProtocol.js";
import { SCHEDULERS } from "../../src/core/generation.js";
import { PIPELINE_FAMILIES } from "../../src/models/families.js";
import { PROJECT_ROOT } from "../helpers/paths.js";

const fixture = JSON.parse(readFileSync(path.join(PROJECT_ROOT, "test/fixtures/runner-protocol.json"), "utf8"));

describe("runner protocol, TypeScript side", () => {
  it("accepts every request in the shared fixture, unchanged", () => {
    for (const request of fixture.requests) expect(runnerRequestSchema.parse(request)).toEqual(request);
  });

  it("accepts every event in the shared fixture, unchanged", () => {
    for (const event of fixture.events) expect(runnerEventSchema.parse(event)).toEqual(event);
  });

  it("covers every message type and error code the fixture shows", () => {
    expect(new Set(fixture.events.map((event: { type: string }) => event.type))).toEqual(new Set(["ready", "progress", "done", "error"]));
    for (const event of fixture.events.filter((candidate: { type: string }) => candidate.type === "error")) {
      expect(RUNNER_ERROR_CODES).toContain(event.code);
    }
  });

  it("refuses an event that lacks a field", () => {
    const { step: _dropped, ...progress } = fixture.events[1];
    expect(runnerEventSchema.safeParse(progress).success).toBe(false);
  });

  it("lists the same schedulers as the fixture (and so as the runner)", () => {
    expect([...SCHEDULERS]).toEqual(fixture.schedulers);
  });

  it("maps the same pipeline classes to the same families as the fixture (and so as the runner)", () => {
    expect(PIPELINE_FAMILIES).toEqual(fixture.pipelineFamilies);
  });
});
