import { KittyError, messageOf } from "../errors.js";
import { doctorCommand } from "./doctor.js";
import { generateCommand, StoppedWaiting } from "./generate.js";
import { latestCommand } from "./latest.js";
import { modelsCommand } from "./models.js";
import { reindexCommand } from "./reindex.js";
import { selectCommand } from "./select.js";
import { serveCommand } from "./serve.js";
import { USAGE, UsageError } from "./usage.js";

const COMMANDS: Record<string, (args: string[]) => Promise<void>> = {
  serve: serveCommand,
  generate: generateCommand,
  latest: latestCommand,
  select: selectCommand,
  models: modelsCommand,
  doctor: doctorCommand,
  reindex: reindexCommand,
};

/** Runs one command line; exit codes: 0 done, 1 a failed job or a refused request, 2 bad usage, 130 stopped waiting. */
export async function main(argv: string[]): Promise<void> {
  const [command = "help", ...rest] = argv;
  try {
    if (command === "help" || command === "--help" || command === "-h" || rest.includes("--help")) {
      process.stdout.write(`${USAGE}\n`);
      return;
    }
    const run = Object.hasOwn(COMMANDS, command) ? COMMANDS[command] : undefined;
    if (!run) throw new UsageError(`unknown command '${command}'`);
    await run(rest);
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
