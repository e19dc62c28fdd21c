import { KittyError, messageOf } from "../core/errors.js";
import { StoppedWaiting, USAGE, UsageError } from "./usage.js";

type Command = (args: string[]) => Promise<void>;

/** Loaded on demand: `serve` on stdio answers its first tools/list sooner without the client SDK or the bar. */
const COMMANDS: Record<string, () => Promise<Command>> = {
  serve: async () => (await import("./serve.js")).serveCommand,
  generate: async () => (await import("./generate.js")).generateCommand,
  upscale: async () => (await import("./upscale.js")).upscaleCommand,
  latest: async () => (await import("./latest.js")).latestCommand,
  select: async () => (await import("./select.js")).selectCommand,
  models: async () => (await import("./models.js")).modelsCommand,
  doctor: async () => (await import("./doctor.js")).doctorCommand,
  reindex: async () => (await import("./reindex.js")).reindexCommand,
  worker: async () => (await import("./worker.js")).workerCommand,
  service: async () => (await import("./service.js")).serviceCommand,
  cancel: async () => (await import("./cancel.js")).cancelCommand,
};

/** Runs one command line; exit codes: 0 done, 1 a failed job or a refused request, 2 bad usage, 130 stopped waiting. */
export async function main(argv: string[]): Promise<void> {
  const [command = "help", ...rest] = argv;
  try {
    if (command === "help" || command === "--help" || command === "-h" || rest.includes("--help")) {
      process.stdout.write(`${USAGE}\n`);
      return;
    }
    const load = Object.hasOwn(COMMANDS, command) ? COMMANDS[command] : undefined;
    if (!load) throw new UsageError(`unknown command '${command}'`);
    await (await load())(rest);
  } catch (error) {
    if (error instanceof UsageError) {
      // The whole usage for a command we do not know; a pointer to it for a flag that is wrong.
      const hint = Object.hasOwn(COMMANDS, command) ? "run 'kitty-images help' for every command and its flags" : USAGE;
      process.stderr.write(`kitty-images: ${error.message}\n\n${hint}\n`);
      process.exit(2);
    }
    // A tool's refusal already starts with its code ("unknown_model: ..."); our own errors get theirs here.
    const prefix = error instanceof KittyError ? `${error.code}: ` : "";
    process.stderr.write(`kitty-images: ${prefix}${messageOf(error)}\n`);
    process.exit(error instanceof StoppedWaiting ? 130 : 1);
  }
}
