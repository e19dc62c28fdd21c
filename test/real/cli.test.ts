import { execa } from "execa";
import { appendFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startHttpServer, type RunningHttpServer } from "../helpers/httpServer.js";
import { freePort } from "../helpers/minio.js";
import { SERVER_ENTRY } from "../helpers/paths.js";
import { makeMaskPng } from "../helpers/png.js";
import { makeTestHome, serverEnv, type TestHome } from "../helpers/server.js";

const TOKEN = "cli-test-token-0123456789abcdef";
/** Enough steps that a person would see the bar move, and that the plain "step k/n" lines are several. */
const SMALL_JOB = ["--model", "tiny_sd15", "--width", "256", "--height", "256", "--steps", "40"];

let home: TestHome;
/** What a person's shell would have: the test home, local storage, CPU, and no log level of its own. */
let env: Record<string, string>;

/** The built command, as a person or a script runs it: output captured, never a terminal, exit code checked by the test. */
function kitty(args: string[], extraEnv: Record<string, string> = {}) {
  return execa(process.execPath, [SERVER_ENTRY, ...args], { env: { ...env, ...extraEnv }, extendEnv: false, reject: false, timeout: 180_000 });
}

const jsonLogLine = /^\{"level"/m;

beforeAll(async () => {
  home = await makeTestHome(inject("tinyModelsDir"));
  // A diffusers folder with an index and no weights: accepted at queue time, fails when the runner loads it.
  const hollow = path.join(home.home, "hollow-model");
  mkdirSync(hollow);
  writeFileSync(path.join(hollow, "model_index.json"), JSON.stringify({ _class_name: "StableDiffusionPipeline" }));
  appendFileSync(home.modelsYaml, `hollow_model: ${hollow}\n`);
  const { KITTY_IMAGES_LOG_LEVEL: _serverLevel, ...rest } = serverEnv(home, { KITTY_IMAGES_STORAGE: "local" });
  env = rest;
});

afterAll(() => {
  if (home) rmSync(home.home, { recursive: true, force: true });
});

describe("kitty-images in-process (no KITTY_IMAGES_URL)", () => {
  let key: string;

  it("generate --wait runs the job here, prints the finished job as JSON and plain step lines on stderr", async () => {
    const run = await kitty(["generate", "a cat", ...SMALL_JOB, "--wait"]);
    expect(run.exitCode, run.stderr).toBe(0);
    const job = JSON.parse(run.stdout);
    expect(job).toMatchObject({ status: "done", model: "tiny_sd15", prompt: "a cat" });
    key = job.images[0].key;
    expect(key).toMatch(/^images\/.+\.png$/);
    // Where the file is, not only its key.
    expect(job.images[0].file).toMatch(new RegExp(`${key.replace(/[.]/g, "\\.")}$`));
    expect(readFileSync(job.images[0].file).subarray(1, 4).toString()).toBe("PNG");
    expect(run.stderr).toMatch(/^step \d+\/40$/m);
    expect(run.stderr).not.toMatch(jsonLogLine);
  });

  it("latest lists that image first, as JSON when stdout is not a terminal", async () => {
    const run = await kitty(["latest", "--limit", "5"]);
    expect(run.exitCode, run.stderr).toBe(0);
    const latest = JSON.parse(run.stdout);
    expect(latest.images[0]).toMatchObject({ index: 1, key, prompt: "a cat" });
  });

  it("select N and select KEY print the imageRef JSON alone on stdout", async () => {
    for (const target of ["1", key]) {
      const run = await kitty(["select", target]);
      expect(run.exitCode, run.stderr).toBe(0);
      expect(run.stdout.trim()).toMatch(/^\{[\s\S]*\}$/);
      const ref = JSON.parse(run.stdout);
      expect(Object.keys(ref).sort()).toEqual(["downloadUrl", "key", "storageUri"]);
      expect(ref.key).toBe(key);
      expect(ref.storageUri).toMatch(/^file:\/\/.*\.png$/);
      expect(run.stderr).toBe("");
    }
  });

  it("upscale KEY --wait makes the image at twice its size and prints the finished job; a scale of 3 is refused", async () => {
    const run = await kitty(["upscale", key, "--strength", "0.5", "--wait"]);
    expect(run.exitCode, run.stderr).toBe(0);
    const job = JSON.parse(run.stdout);
    expect(job).toMatchObject({ status: "done", model: "tiny_sd15", prompt: "a cat", images: [{ width: 512, height: 512 }] });
    expect(run.stderr).toMatch(/^step \d+\/\d+$/m);
    const bad = await kitty(["upscale", key, "--scale", "3"]);
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr).toMatch(/scale must be 2 or 4/);
  });

  it("generate takes --init (a file:// storageUri here), --strength, --count and repeated --lora", async () => {
    const ref = JSON.parse((await kitty(["select", key])).stdout);
    const args = ["--model", "tiny_sd15", "--steps", "4", "--init", ref.storageUri, "--strength", "0.5", "--count", "2", "--lora", "tiny_sd15_detail:0.5"];
    const run = await kitty(["generate", "a cat, again", ...args, "--wait"]);
    expect(run.exitCode, run.stderr).toBe(0);
    const job = JSON.parse(run.stdout);
    expect(job.images).toHaveLength(2);
    expect(job.images[0]).toMatchObject({ width: 256, height: 256 });
    const bad = await kitty(["generate", "x", "--lora", "tiny_sd15_detail:heavy"]);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toContain("--lora weight must be a number (got 'heavy')");
  });

  it("generate without --wait prints the queued job and says a server will run it", async () => {
    const run = await kitty(["generate", "queued for the server", "--model", "tiny_sd15", "--width", "256", "--height", "256", "--steps", "1"]);
    expect(run.exitCode, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ status: "queued", steps: 1 });
    expect(run.stderr).toMatch(/runs when a kitty-images server .* takes the queue/);
  });
});

describe("kitty-images against a running server (KITTY_IMAGES_URL)", () => {
  let server: RunningHttpServer;
  let remote: Record<string, string>;

  beforeAll(async () => {
    server = await startHttpServer(home, { KITTY_IMAGES_STORAGE: "local", KITTY_IMAGES_TOKEN: TOKEN });
    remote = { KITTY_IMAGES_URL: server.url, KITTY_IMAGES_TOKEN: TOKEN };
  });

  afterAll(async () => {
    await server?.stop();
  });

  it("generate --wait runs on the server, after the job queued earlier without --wait", async () => {
    const run = await kitty(["generate", "a remote cat", ...SMALL_JOB, "--wait"], remote);
    expect(run.exitCode, `${run.stderr}\n--- server log ---\n${readFileSync(server.logPath, "utf8").slice(-3000)}`).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ status: "done", prompt: "a remote cat" });
    // Over HTTP, steps reach the CLI only as progress notifications while job_status waits.
    expect(run.stderr).toMatch(/^step \d+\/40$/m);

    const latest = await kitty(["latest"], remote);
    expect(latest.exitCode, latest.stderr).toBe(0);
    const prompts = JSON.parse(latest.stdout).images.map((image: { prompt: string }) => image.prompt);
    expect(prompts.slice(0, 4)).toEqual(["a remote cat", "queued for the server", "a cat, again", "a cat, again"]);

    const selected = await kitty(["select", "1"], remote);
    expect(selected.exitCode, selected.stderr).toBe(0);
    const ref = JSON.parse(selected.stdout);
    expect(ref.downloadUrl.startsWith(`${server.url}/files/`)).toBe(true);
    expect((await fetch(ref.downloadUrl)).status).toBe(200);
  });

  it("generate takes image files for --init and --mask, sent to the server as data: URLs; upscale takes a file here, in-process", async () => {
    const files = path.join(home.home, "my-pictures");
    mkdirSync(files, { recursive: true });
    const png = (await kitty(["select", "1"], remote)).stdout;
    const source = path.join(files, "source.png");
    writeFileSync(source, readFileSync(new URL(JSON.parse(png).storageUri)));
    const mask = path.join(files, "mask.png");
    writeFileSync(mask, makeMaskPng(256, 256, { x: 64, y: 64, size: 128 }));
    const run = await kitty(["generate", "a cat with a hat", "--model", "tiny_sd15", "--steps", "4", "--init", source, "--mask", mask, "--mask-blur", "0", "--wait"], remote);
    expect(run.exitCode, run.stderr).toBe(0);
    const job = JSON.parse(run.stdout);
    expect(job).toMatchObject({ status: "done", images: [{ width: 256, height: 256 }] });
    const selected = JSON.parse((await kitty(["select", job.images[0].key], remote)).stdout);
    const sidecar = JSON.parse(readFileSync(new URL(selected.storageUri.replace(/\.png$/, ".json")), "utf8"));
    expect(sidecar.parents).toHaveLength(2);
    expect(sidecar.request.mask).toEqual({ key: sidecar.parents[1], blur: 0 });
    const up = await kitty(["upscale", source, "--prompt", "a cat", "--model", "tiny_sd15", "--wait"]);
    expect(up.exitCode, up.stderr).toBe(0);
    expect(JSON.parse(up.stdout)).toMatchObject({ status: "done", images: [{ width: 512, height: 512 }] });
  });

  it("a wrong or missing token exits 1 with a message that names KITTY_IMAGES_TOKEN", async () => {
    const wrong = await kitty(["generate", "never queued", "--wait"], { KITTY_IMAGES_URL: server.url, KITTY_IMAGES_TOKEN: "not-the-token-0123456789" });
    expect(wrong.exitCode).toBe(1);
    expect(wrong.stderr).toMatch(/refused KITTY_IMAGES_TOKEN/);
    expect(wrong.stdout).toBe("");
    const missing = await kitty(["latest"], { KITTY_IMAGES_URL: server.url });
    expect(missing.exitCode).toBe(1);
    expect(missing.stderr).toMatch(/needs a token.*set KITTY_IMAGES_TOKEN/);
  });

  it("a shared Postgres queue that is not there exits 1, naming it without its password", async () => {
    const run = await kitty(["serve"], { KITTY_IMAGES_DATABASE_URL: `postgres://kitty:secret@127.0.0.1:${await freePort()}/kitty` });
    expect(run.exitCode).toBe(1);
    expect(run.stderr).toMatch(/cannot use the Postgres queue at postgres:\/\/kitty:\*\*\*@127\.0\.0\.1:\d+\/kitty \(KITTY_IMAGES_DATABASE_URL\): connect ECONNREFUSED/);
    expect(run.stderr).not.toContain("secret");
  });

  it("a server that is not there exits 1 and says how to start one", async () => {
    const run = await kitty(["latest"], { KITTY_IMAGES_URL: `http://127.0.0.1:${await freePort()}` });
    expect(run.exitCode).toBe(1);
    expect(run.stderr).toMatch(/cannot reach kitty-images .*ECONNREFUSED.*kitty-images serve --http/);
  });
});

describe("kitty-images exit codes", () => {
  it.each([
    ["an unknown command", ["paint", "a cat"], /unknown command 'paint'/],
    ["generate without a prompt", ["generate"], /generate needs a prompt/],
    ["a number flag that is not a number", ["generate", "a cat", "--steps", "abc"], /--steps must be a whole number \(got 'abc'\)/],
    ["an unknown flag", ["generate", "a cat", "--stepz", "3"], /unknown flag --stepz/],
    ["select without an image", ["select"], /select needs an image/],
    ["a flag on a command that takes none", ["models", "--verbose"], /unknown flag --verbose/],
    ["serve --worker on the embedded SQLite queue", ["serve", "--worker"], /--worker goes with a shared Postgres queue \(KITTY_IMAGES_DATABASE_URL\)/],
    ["worker without a shared queue", ["worker"], /kitty-images worker takes jobs from a shared Postgres queue: set KITTY_IMAGES_DATABASE_URL/],
  ])("%s is bad usage: exit 2", async (_what, args, message) => {
    const run = await kitty(args);
    expect(run.exitCode).toBe(2);
    expect(run.stderr).toMatch(message);
    expect(run.stdout).toBe("");
  });

  it("a request the tool refuses exits 1 with the tool's message on stderr", async () => {
    const run = await kitty(["generate", "a cat", "--model", "no_such_model"]);
    expect(run.exitCode).toBe(1);
    expect(run.stderr).toMatch(/unknown_model: model 'no_such_model' is not in models.yaml \(known: tiny_sd15, /);
    expect(run.stdout).toBe("");
    const select = await kitty(["select", "999"]);
    expect(select.exitCode).toBe(1);
    expect(select.stderr).toMatch(/not_found: there is no image #999; kitty-images latest shows how many there are/);
  });

  it("speaks in its own words: a refused flag is named as typed, once, without the SDK's preamble", async () => {
    const run = await kitty(["generate", "a cat", "--width", "100", "--cfg", "99"]);
    expect(run.exitCode).toBe(1);
    expect(run.stderr.trim()).toBe("kitty-images: --width must be a multiple of 8 between 256 and 2048 (got 100); --cfg must be a number between 0 and 30 (got 99)");
  });

  it("takes --demo on every command that reads the models", async () => {
    for (const args of [["models", "--demo"], ["latest", "--demo"]]) {
      const run = await kitty(args);
      expect(run.exitCode, `${args.join(" ")}: ${run.stderr}`).toBe(0);
    }
    const models = await kitty(["models", "--demo"]);
    expect(JSON.parse(models.stdout).models.map((model: { name: string }) => model.name)).toContain("demo_sd15");
  });

  it("a job that fails exits 1, with the failed job on stdout and its reason on stderr", async () => {
    const run = await kitty(["generate", "from a hollow model", "--model", "hollow_model", "--width", "256", "--height", "256", "--steps", "2", "--wait"]);
    expect(run.exitCode).toBe(1);
    expect(JSON.parse(run.stdout)).toMatchObject({ status: "failed", error: { code: "model_load_failed" } });
    expect(run.stderr).toMatch(/job .* failed: model_load_failed: could not load /);
  });
});

describe("kitty-images doctor", () => {
  it("doctor --demo prints only its own ok/FAIL lines: no JSON log lines on either stream", async () => {
    const run = await kitty(["doctor", "--demo"]);
    expect(run.exitCode, run.stdout + run.stderr).toBe(0);
    const lines = run.stdout.trim().split("\n");
    expect(lines.length).toBeGreaterThan(3);
    for (const line of lines) expect(line).toMatch(/^(ok|FAIL) /);
    expect(run.stderr).not.toMatch(jsonLogLine);
  });
});
