import { describe, expect, it } from "vitest";
import { runnerFix } from "../../src/engines/runnerFixes.js";

const PYTHON = "/opt/kitty/.cache/venv/bin/python";

describe("the fix named for a runner that will not start, read from its stderr", () => {
  it.each([
    ["a package missing from the venv", "Traceback (most recent call last):\nModuleNotFoundError: No module named 'diffusers'", /^the Python at \/opt\/kitty\/\.cache\/venv\/bin\/python lacks the 'diffusers' package: run 'npm run setup'/],
    ["a submodule missing (the package named, not its part)", "ModuleNotFoundError: No module named 'torch._C'", /lacks the 'torch' package/],
    ["packages that do not fit together", "ImportError: cannot import name 'cached_download' from 'huggingface_hub'", /do not fit together .*run 'npm run setup' to reinstall/],
    ["a device the machine lacks", "ValueError: KITTY_IMAGES_DEVICE=cuda but torch reports no cuda device", /no cuda device that torch can use: set KITTY_IMAGES_DEVICE=auto/],
    ["a device name that does not exist", "ValueError: KITTY_IMAGES_DEVICE must be auto, cuda, mps or cpu (got 'gpu')", /^set KITTY_IMAGES_DEVICE to auto, cuda, mps or cpu$/],
    ["memory running out at start", "RuntimeError: CUDA error: out of memory", /ran out of memory while the runner started/],
    ["anything else", "Segmentation fault (core dumped)", /^run 'kitty-images doctor' and the runner by hand \(\/opt\/kitty\/\.cache\/venv\/bin\/python -m diffusers_runner/],
  ])("%s", (_case, stderr, fix) => {
    expect(runnerFix(PYTHON, stderr)).toMatch(fix);
  });
});
