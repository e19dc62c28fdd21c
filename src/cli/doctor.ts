import { formatChecks, runDoctor } from "../app/doctor.js";
import { KittyError } from "../core/errors.js";
import { loadSetup } from "./setup.js";
import { parseCommand } from "./usage.js";

/** `kitty-images doctor [--demo]`: one ok/FAIL line per part on stdout; exit code 1 when any part fails. */
export async function doctorCommand(args: string[]): Promise<void> {
  const { values } = parseCommand("doctor", args, { demo: { type: "boolean" } }, { min: 0, max: 0, name: "" });
  let setup;
  try {
    setup = await loadSetup("person", { demo: values.demo ?? false });
  } catch (error) {
    // models.yaml cannot be read: say so as a check, and what a server already running does meanwhile.
    if (!(error instanceof KittyError) || error.code !== "config_invalid" || !/models\.yaml|MODELS_YAML/.test(error.message)) throw error;
    const checks = [{ name: "models.yaml", ok: false, detail: `${error.message}. A server already running keeps serving the models it read before and takes the file again within seconds of a fix` }];
    process.stdout.write(`${formatChecks(checks)}\n`);
    process.exitCode = 1;
    return;
  }
  const { config, log } = setup;
  const checks = await runDoctor(config, log);
  process.stdout.write(`${formatChecks(checks)}\n`);
  if (checks.some((entry) => !entry.ok)) process.exitCode = 1;
}
