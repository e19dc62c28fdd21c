import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";

/** `hf:org/name` in models.yaml: a Hugging Face repo, taken from the local Hub cache only (never downloaded). */
export const HUB_PREFIX = "hf:";
const REPO_ID = /^[\w.-]+\/[\w.-]+$/;

/**
 * The snapshot folder of a cached repo (what `hf download` or any from_pretrained left in the cache), or null.
 * refs/main names the snapshot; without it, the newest snapshot there.
 */
export function cachedSnapshot(repoId: string, hubCache: string): string | null {
  if (!REPO_ID.test(repoId)) return null;
  const repo = path.join(hubCache, `models--${repoId.replace("/", "--")}`);
  const main = path.join(repo, "refs", "main");
  if (existsSync(main)) {
    const snapshot = path.join(repo, "snapshots", readFileSync(main, "utf8").trim());
    if (existsSync(snapshot)) return snapshot;
  }
  let snapshots: string[];
  try {
    snapshots = readdirSync(path.join(repo, "snapshots")).map((name) => path.join(repo, "snapshots", name));
  } catch {
    return null;
  }
  return snapshots.sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0] ?? null;
}

/** A models.yaml path: `hf:org/name` becomes its cached snapshot when there is one, else stays as written. */
export function locateHubModel(raw: string, hubCache: string): string | null {
  if (!raw.startsWith(HUB_PREFIX)) return null;
  return cachedSnapshot(raw.slice(HUB_PREFIX.length), hubCache) ?? raw;
}
