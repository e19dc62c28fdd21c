/**
 * What to do about a runner that will not start, read from its last stderr lines. The same sentence reaches a
 * failed job's error, job_status' notice and `kitty-images doctor`, so a person hears one fix wherever they look.
 */
export function runnerFix(python: string, stderrTail: string): string {
  const missingModule = /ModuleNotFoundError: No module named '?([\w.]+)'?/.exec(stderrTail)?.[1];
  if (missingModule) {
    return `the Python at ${python} lacks the '${missingModule.split(".")[0]}' package: run 'npm run setup' (it builds .cache/venv from python/requirements.txt), or install python/requirements.txt into that Python, or point KITTY_IMAGES_PYTHON at one that has it`;
  }
  if (/ImportError|cannot import name|undefined symbol/.test(stderrTail)) {
    return `the packages in ${python}'s environment do not fit together (an import failed): run 'npm run setup' to reinstall python/requirements.txt`;
  }
  const device = /KITTY_IMAGES_DEVICE=(\w+) but torch reports no/.exec(stderrTail)?.[1];
  if (device) return `this machine has no ${device} device that torch can use: set KITTY_IMAGES_DEVICE=auto (or cpu), or install a torch build with ${device} support`;
  if (/KITTY_IMAGES_DEVICE must be/.test(stderrTail)) return "set KITTY_IMAGES_DEVICE to auto, cuda, mps or cpu";
  if (/out of memory|Cannot allocate memory|MemoryError/i.test(stderrTail)) return "the machine ran out of memory while the runner started: close other GPU programs or lower KITTY_IMAGES_WARM_MODELS";
  return `run 'kitty-images doctor' and the runner by hand (${python} -m diffusers_runner, from the python/ folder) to see why it stops; 'npm run setup' rebuilds the venv`;
}
