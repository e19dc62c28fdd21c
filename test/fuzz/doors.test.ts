import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHttpDoor, type HttpDoor } from "../../src/http/httpDoor.js";
import { startInProcess, type InProcessServer } from "../helpers/inProcess.js";
import { makePng } from "../helpers/png.js";
import { errorText } from "../helpers/toolCalls.js";

/**
 * Property-based bad input: every tool, and the REST generate endpoint, gets at least 1,000 generated calls of
 * wrong types, huge numbers, unicode, control characters, nested junk and megabyte strings. None may crash the
 * server, hang, or refuse without naming the field at fault. The fixed seed makes a failure replayable.
 */
const SEED = 20261128;
const RUNS = 1_000;

/** What may stand for an image: data: URLs whole, broken and of the wrong kind, paths and URLs no door may read. */
const imageLike = fc.oneof(
  fc.constantFrom(
    `data:image/png;base64,${makePng(8, 8).toString("base64")}`,
    `data:image/png;base64,${makePng(300, 260, {}, (x, y) => ((x >> 4) + (y >> 4)) % 2 ? 255 : 0).toString("base64")}`,
    "data:image/png;base64,iVBORw0KGgo=",
    "data:image/png;base64,@@@",
    "data:text/html,<b>",
    "data:image/webp;base64,UklGRg==",
    "/etc/hostname",
    "~/../../etc/shadow",
    "http://127.0.0.1:1/x.png",
    "https://169.254.169.254/latest/meta-data",
    "file:///etc/passwd",
    "uploads/0000.png",
  ),
  fc.string({ maxLength: 30 }).map((tail) => `data:image/png;base64,${tail}`),
);

/** A value of any shape, weighted towards what breaks parsers. */
const junk = fc.oneof(
  fc.anything({ maxDepth: 3 }),
  fc.string({ unit: "grapheme", maxLength: 40 }),
  fc.string({ unit: fc.integer({ min: 0, max: 31 }).map((code) => String.fromCharCode(code)), maxLength: 20 }),
  fc.double(),
  fc.integer({ min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER }),
  fc.constantFrom(0, -1, 2 ** 32, 1e308, Number.NaN, null, true, "", " ", "0", "images/../x.png", "/etc/passwd.png", "images%2F..%2Fx.png"),
  fc.constant("x".repeat(1024 * 1024)),
  imageLike,
  fc.array(fc.record({ image: fc.constantFrom("images/a.png", "data:image/png;base64,AAAA"), type: fc.constantFrom("canny", "depth", "sketch", 3), strength: fc.double() }, { requiredKeys: [] }), { maxLength: 3 }),
);

/** Arguments built from a tool's own field names (so validation goes deep) plus names it does not have. */
function argumentsFor(fields: string[]) {
  return fc.dictionary(fc.oneof(fc.constantFrom(...fields), fc.string({ maxLength: 12 })), junk, { maxKeys: 6 });
}

const TOOL_FIELDS: Record<string, string[]> = {
  generate_image: ["prompt", "negative_prompt", "model", "width", "height", "steps", "cfg_scale", "seed", "scheduler", "refiner", "init_image", "strength", "outpaint", "mask", "mask_blur", "control", "loras", "count"],
  edit_image: ["image", "instruction", "references", "model", "seed"],
  job_status: ["jobId", "wait_seconds"],
  list_latest_images: ["limit", "cursor"],
  select_image: ["key", "index"],
  upscale_image: ["image", "scale", "prompt", "model", "strength"],
  cancel_job: ["jobId"],
  list_models: [],
};

/** A refusal names the field at fault, or (an unknown job, key or index) the thing it could not find. */
function namesItsField(text: string, fields: string[]): boolean {
  return fields.some((field) => text.includes(field)) || /unknown argument|not_found|give exactly one of key or index|accepts no arguments/.test(text);
}

function withinSeconds<T>(seconds: number, promise: Promise<T>): Promise<T> {
  return Promise.race([promise, new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`no answer in ${seconds} s`)), seconds * 1000))]);
}

describe(`fuzzing every door with ${RUNS} generated calls each (seed ${SEED})`, () => {
  let server: InProcessServer;
  let door: HttpDoor;

  beforeAll(async () => {
    server = await startInProcess();
    door = await startHttpDoor(server.app, { host: "127.0.0.1", port: 0 });
  });

  afterAll(async () => {
    await door?.close();
    await server?.close();
  });

  it.each(Object.entries(TOOL_FIELDS))("%s: never crashes, hangs or refuses without naming the field", async (tool, fields) => {
    await fc.assert(
      fc.asyncProperty(argumentsFor([...fields, "jobId", "key"]), async (args) => {
        // wait_seconds would really wait for a job that exists; random ids never do, so it answers at once.
        const result = await withinSeconds(10, server.call(tool, args as Record<string, unknown>));
        if (result.isError) {
          const text = errorText(result);
          expect(namesItsField(text, fields), `${tool} refused ${JSON.stringify(args).slice(0, 300)} with: ${text.slice(0, 300)}`).toBe(true);
        } else {
          expect(result.structuredContent, JSON.stringify(args).slice(0, 300)).toBeTypeOf("object");
        }
      }),
      { numRuns: RUNS, seed: SEED },
    );
    // Still serving after all of it.
    expect((await server.ok("list_models")).models.length).toBe(3);
  });

  // The image fields get deep only when everything else is valid: a valid prompt and model, junk in the images.
  it.each([
    ["generate_image", (image: unknown, other: unknown) => ({ prompt: "x", init_image: image, mask: other })],
    ["generate_image", (image: unknown, other: unknown) => ({ prompt: "x", control: [{ image, type: "canny" }, { image: other, type: "depth" }] })],
    ["upscale_image", (image: unknown, other: unknown) => ({ image, prompt: typeof other === "string" ? other : "x" })],
    ["edit_image", (image: unknown, other: unknown) => ({ image, instruction: "x", references: [other] })],
  ] as const)("%s: any image argument is taken or refused naming its field", async (tool, build) => {
    const fields = ["init_image", "mask", "control", "image", "references", "prompt", "model", "scale"];
    await fc.assert(
      fc.asyncProperty(imageLike, fc.oneof(imageLike, junk), async (image, other) => {
        const args = build(image, other);
        const result = await withinSeconds(20, server.call(tool, args as Record<string, unknown>));
        if (result.isError) expect(namesItsField(errorText(result), fields), `${tool} refused ${JSON.stringify(args).slice(0, 300)} with: ${errorText(result).slice(0, 300)}`).toBe(true);
      }),
      { numRuns: 150, seed: SEED },
    );
    expect((await server.ok("list_models")).models.length).toBe(3);
  });

  it("REST generate: every answer is 200 or a 422 naming its field, never a 500", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(argumentsFor(["prompt", "width", "height", "steps", "cfg", "seed", "model", "refiner", "init_image", "mask", "mask_blur", "strength", "outpaint"]), junk),
        async (body) => {
          const response = await withinSeconds(10, fetch(`${door.url}/api/images/generate`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) ?? "" }));
          expect([200, 413, 422], `${response.status} for ${JSON.stringify(body)?.slice(0, 200)}`).toContain(response.status);
          if (response.status === 422) {
            const { detail } = (await response.json()) as { detail: Array<{ loc: string[]; msg: string }> };
            expect(detail.length).toBeGreaterThan(0);
            for (const problem of detail) expect(problem.loc[0]).toBe("body");
          } else {
            await response.arrayBuffer();
          }
        },
      ),
      { numRuns: RUNS, seed: SEED },
    );
  });
});
