import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../helpers/paths.js";

/** The repository's own top-level folders: a backticked word that starts with one of these is a path to check. */
const ROOTS = ["src", "test", "docs", "scripts", "bench", "python", "web", ".ci"];
const README_LIMIT_BYTES = 12_500;

const DOCS = [
  "README.md",
  ...readdirSync(path.join(PROJECT_ROOT, "docs"))
    .filter((name) => name.endsWith(".md"))
    .sort()
    .map((name) => `docs/${name}`),
];

/** A markdown file split into its code (fenced blocks and inline spans) and the prose around it. */
function split(markdown: string): { code: string[]; prose: string } {
  const code: string[] = [];
  const withoutFences = markdown.replace(/^(```|~~~)[^\n]*\n([\s\S]*?)^\1[ \t]*$/gm, (_all, _fence, body: string) => {
    code.push(body);
    return "";
  });
  const prose = withoutFences.replace(/(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)/g, (_all, _ticks, body: string) => {
    code.push(body);
    return "";
  });
  return { code, prose };
}

/**
 * Repository paths named in code: a word starting with one of ROOTS and a slash, not glued to something before it
 * (so `/Users/Shared/models/x`, `hf:org/test/x` and `../shared/x` are not taken for ours). Trailing sentence
 * punctuation is dropped; a glob is checked up to its first wildcard's folder.
 */
function pathsInCode(code: string): string[] {
  const roots = ROOTS.map((root) => root.replace(".", "\\.")).join("|");
  const pattern = new RegExp(`(?<![\\w./:~@$-])(?:${roots})/[^\\s\`'"()<>{}\\[\\],;|=]*`, "g");
  return [...code.matchAll(pattern)].map(([match]) => {
    let found = match.replace(/[.:]+$/, "");
    const wildcard = found.search(/[*?]/);
    if (wildcard >= 0) found = found.slice(0, found.lastIndexOf("/", wildcard) + 1);
    return found;
  });
}

/** Inline links' targets, `[text](target)` and `![alt](target)`, with any title left off. */
function linkTargets(prose: string): string[] {
  return [...prose.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)].map(([, target]) => target!);
}

/** GitHub's anchors for a file's headings: lower-case, punctuation dropped, spaces to hyphens, repeats numbered. */
function anchorsOf(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  const { prose } = split(markdown.replace(/^(#{1,6}[ \t].*)$/gm, (line) => line.replace(/`/g, "")));
  for (const [, heading] of prose.matchAll(/^#{1,6}[ \t]+(.+?)[ \t#]*$/gm)) {
    const slug = heading!.toLowerCase().replace(/[^\p{L}\p{N}\p{M} _-]/gu, "").replace(/ /g, "-");
    const count = seen.get(slug) ?? 0;
    seen.set(slug, count + 1);
    anchors.add(count === 0 ? slug : `${slug}-${count}`);
  }
  return anchors;
}

const read = (file: string) => readFileSync(path.join(PROJECT_ROOT, file), "utf8");

describe("path extraction", () => {
  it("takes repository paths and leaves other slashes alone", () => {
    const code = [
      "src/queue/job.ts",
      "(test/real/e2e.test.ts)",
      "bash scripts/fetch-node.sh 24",
      "python/diffusers_runner/families.json.",
      "test/real/**/*.test.ts",
      "/Users/Shared/KITTY/models/src/x",
      "hf:black-forest-labs/FLUX.1-dev",
      "../shared/comfyui",
      "python -m diffusers_runner.tiny_models OUT",
      ".cache/venv/bin/python",
      "tools/generateImage.ts",
      "kitty_images_process_*",
    ].join("\n");
    expect(pathsInCode(code)).toEqual([
      "src/queue/job.ts",
      "test/real/e2e.test.ts",
      "scripts/fetch-node.sh",
      "python/diffusers_runner/families.json",
      "test/real/",
    ]);
  });

  it("reads links from prose, not from code", () => {
    const { prose, code } = split("See [models](docs/models.md#loras) and `[x](not/a/link)`.\n```\n[y](nor/this)\n```\n");
    expect(linkTargets(prose)).toEqual(["docs/models.md#loras"]);
    expect(code).toHaveLength(2);
  });
});

describe.each(DOCS)("%s", (file) => {
  const markdown = read(file);
  const { code, prose } = split(markdown);

  it("names only repository paths that exist", () => {
    const named = [...new Set(code.flatMap(pathsInCode))];
    expect(named.length, "found no paths at all: is the extraction broken?").toBeGreaterThan(0);
    expect(named.filter((named) => !existsSync(path.join(PROJECT_ROOT, named)))).toEqual([]);
  });

  it("links only to files and headings that exist", () => {
    const broken: string[] = [];
    for (const target of linkTargets(prose)) {
      if (/^[a-z][a-z\d+.-]*:/i.test(target)) continue; // https:, mailto:
      const [target_path, anchor] = target.split("#", 2) as [string, string | undefined];
      const resolved = target_path === "" ? path.join(PROJECT_ROOT, file) : path.resolve(PROJECT_ROOT, path.dirname(file), decodeURIComponent(target_path));
      const inRepo = !path.relative(PROJECT_ROOT, resolved).startsWith("..");
      if (!inRepo || !existsSync(resolved)) {
        broken.push(`${target} (no such file)`);
        continue;
      }
      if (anchor !== undefined && resolved.endsWith(".md") && !anchorsOf(readFileSync(resolved, "utf8")).has(anchor)) {
        broken.push(`${target} (no such heading)`);
      }
    }
    expect(broken).toEqual([]);
  });
});

describe("README.md", () => {
  it(`stays under ${README_LIMIT_BYTES} bytes`, () => {
    expect(statSync(path.join(PROJECT_ROOT, "README.md")).size).toBeLessThan(README_LIMIT_BYTES);
  });

  it("links to every page in docs/", () => {
    const targets = new Set(linkTargets(split(read("README.md")).prose).map((target) => target.split("#")[0]));
    expect(DOCS.filter((doc) => doc !== "README.md" && !targets.has(doc))).toEqual([]);
  });
});
