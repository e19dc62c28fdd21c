import { parseArgs, type ParseArgsConfig } from "node:util";

export const USAGE = `kitty-images: MCP tool server for local Stable Diffusion

usage:
  kitty-images serve [--demo]   run the MCP server on stdio (Claude Desktop, KITTY, any MCP client)
                                --demo builds tiny random-weight models and serves those (images are noise)
  kitty-images serve --http [--host 127.0.0.1] [--port 8089]
                                serve HTTP instead: MCP at /mcp (both protocol eras), the images-service REST
                                API under /api/images; KITTY_IMAGES_TOKEN guards it
  kitty-images serve ... --worker
                                on a shared Postgres queue (KITTY_IMAGES_DATABASE_URL) serve only queues, reports
                                and lists; --worker makes it run jobs too, like kitty-images worker
  kitty-images generate "prompt" [--model M] [--width N] [--height N] [--steps N] [--cfg X] [--seed N]
                                [--scheduler S] [--refiner] [--refiner-mode ensemble|polish] [--negative TEXT]
                                [--count 1-4] [--init IMAGE] [--strength 0-1] [--mask IMAGE] [--mask-blur 0-64]
                                [--lora NAME[:WEIGHT]]... [--wait]
                                queue an image; prints the job as JSON. --wait follows it to the end (a
                                progress bar on a terminal) and prints the finished job. IMAGE: a file, a key
                                from kitty-images latest, or an imageRef URL; --mask repaints where it is white
  kitty-images upscale IMAGE [--scale 2|4] [--prompt TEXT] [--model M] [--strength 0-1] [--wait]
                                queue the image at 2x (default) or 4x, resized and lightly repainted (hires fix)
  kitty-images latest [--limit N]
                                the newest images (a table on a terminal, JSON otherwise)
  kitty-images select N|KEY     the imageRef {downloadUrl, storageUri, key} of image N (1 = newest) or KEY, as JSON
  kitty-images cancel JOB_ID    cancel a job: a queued one is dropped, a running one stops at its next step
  kitty-images models           print models.yaml as the server sees it
  kitty-images doctor [--demo]  check models, database, storage and the Python runner; say what to fix
  kitty-images reindex          rebuild the image index from storage (its JSON sidecars, else the PNGs themselves)
  kitty-images worker           a GPU host on the shared Postgres queue (KITTY_IMAGES_DATABASE_URL): runs jobs for
                                the models it has on disk, no door; start one per GPU host
  kitty-images service install [--host 127.0.0.1] [--port 8089] [--worker] [--no-start]
                                run serve --http (or, with --worker, a Postgres GPU worker) as a login service: a
                                launchd agent on macOS, a systemd user unit on Linux; this Node, this checkout, and
                                the project's variables from this shell in a 0600 file (--system launchd|systemd)
  kitty-images service uninstall | status
                                stop and remove it; say whether it runs and where its logs are
  kitty-images help

generate, upscale, latest and select talk to the server at KITTY_IMAGES_URL (e.g. http://127.0.0.1:8089, with
KITTY_IMAGES_TOKEN) when it is set, and otherwise work in this process on the same data dir. Each command that
reads the models (generate, upscale, latest, select, models, doctor, serve) takes --demo: the tiny random-weight
models, built once, in place of models.yaml.
Exit codes: 0 done, 1 a failed job or a refused request, 2 bad usage, 130 stopped waiting (Ctrl-C; the job goes on).

Configuration comes from the environment (see README.md): MODELS_YAML, S3_ENDPOINT_URL, KITTY_IMAGES_HOME, ...`;

/** A command line that cannot be run as written: exit code 2, with the usage text. */
export class UsageError extends Error {}

/** Thrown when the person stops waiting (Ctrl-C): the job itself goes on, or back to the queue. Exit code 130. */
export class StoppedWaiting extends Error {}

type Options = NonNullable<ParseArgsConfig["options"]>;

/** node's parseArgs, strict, so an unknown or misspelt flag is a usage error rather than silently ignored. */
export function parseCommand<O extends Options>(command: string, args: string[], options: O, positionals: { min: number; max: number; name: string }) {
  let parsed;
  try {
    parsed = parseArgs({ args, options, strict: true, allowPositionals: positionals.max > 0 });
  } catch (error) {
    const unknown = /Unknown option '([^']+)'/.exec((error as Error).message);
    const accepted = Object.keys(options).map((flag) => `--${flag}`).join(", ") || "no flags";
    throw new UsageError(unknown ? `${command}: unknown flag ${unknown[1]} (${command} accepts ${accepted})` : `${command}: ${(error as Error).message}`);
  }
  const count = parsed.positionals.length;
  if (count < positionals.min) throw new UsageError(`${command} needs ${positionals.name}`);
  if (count > positionals.max) {
    throw new UsageError(`${command} takes ${positionals.max === 0 ? "no arguments" : `one ${positionals.name}`} (got ${parsed.positionals.map((p) => `'${p}'`).join(" ")}); quote text with spaces`);
  }
  return parsed;
}

/** A flag's number, or undefined when it was not given; the tool itself checks the range and says what is allowed. */
export function numberFlag(flag: string, raw: string | undefined, kind: "integer" | "number" = "integer"): number | undefined {
  if (raw === undefined) return undefined;
  const value = raw.trim() === "" ? Number.NaN : Number(raw);
  if (!Number.isFinite(value) || (kind === "integer" && !Number.isInteger(value))) {
    throw new UsageError(`--${flag} must be ${kind === "integer" ? "a whole number" : "a number"} (got '${raw}')`);
  }
  return value;
}
