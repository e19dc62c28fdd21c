import { createHash } from "node:crypto";
import { existsSync, readFileSync, statSync, watch, type FSWatcher } from "node:fs";
import path from "node:path";
import { messageOf } from "../core/errors.js";
import type { Logger } from "../core/log.js";
import type { ModelCatalog } from "./catalog.js";
import { nameInFolder, walkFolder } from "./folderWalk.js";
import { inspectEntry } from "./modelFolder.js";

/** How often the file and the LoRA folder are looked at besides what fs.watch reports (it misses edits on some mounts). */
const POLL_MS = 2_000;
/** Editors write in several steps (truncate, write, rename): the file is read once they have settled. */
const SETTLE_MS = 150;

/** What a running server says of its models.yaml: since when it serves it, and why an edit was refused. */
export interface CatalogState {
  source: string | null;
  models: number;
  /** When the catalog now served was read. */
  loadedAt: string;
  /** The last edit that could not be used, and why; null once a good edit (or the old text again) is read. */
  problem: { message: string; at: string } | null;
}

/** What an edit changed, by model name; `loras` when the LoRA folder's files changed. */
export interface CatalogChange {
  added: string[];
  removed: string[];
  changed: string[];
  loras: boolean;
}

/**
 * Watches this process's models.yaml and LoRA folder. A valid edit is adopted by the catalog every part of the
 * process holds; an invalid one keeps the last good catalog and is reported (log, /healthz, doctor). `onChange`
 * hears each adopted change: a Postgres worker advertises its models again.
 */
export class CatalogWatch {
  private lastText: string;
  private lastLoras: string;
  private state: CatalogState;
  private watcher: FSWatcher | null = null;
  private timer: NodeJS.Timeout | null = null;
  private settle: NodeJS.Timeout | null = null;
  private checking: Promise<CatalogChange | null> | null = null;

  constructor(
    private readonly catalog: ModelCatalog,
    private readonly read: () => ModelCatalog,
    private readonly log: Logger,
    private readonly onChange: (change: CatalogChange) => void | Promise<void> = () => undefined,
  ) {
    this.lastText = this.fileText() ?? "";
    this.lastLoras = this.lorasSignature();
    this.state = { source: catalog.sourcePath, models: catalog.entries.length, loadedAt: new Date().toISOString(), problem: null };
  }

  get current(): CatalogState {
    return this.state;
  }

  start(): void {
    const file = this.catalog.sourcePath;
    if (!file) return;
    // The folder, not the file: an editor that saves by renaming a new file over the old one replaces the inode.
    try {
      this.watcher = watch(path.dirname(file), (_event, name) => {
        if (name === null || name === path.basename(file)) this.soon();
      });
      this.watcher.on("error", (error) => this.log.debug({ error: messageOf(error) }, "models.yaml watch stopped; polling goes on"));
    } catch (error) {
      this.log.debug({ error: messageOf(error) }, "cannot watch models.yaml's folder; polling it instead");
    }
    this.timer = setInterval(() => void this.check(), POLL_MS);
    this.timer.unref();
  }

  stop(): void {
    this.watcher?.close();
    if (this.timer) clearInterval(this.timer);
    if (this.settle) clearTimeout(this.settle);
    this.watcher = this.timer = this.settle = null;
  }

  private soon(): void {
    if (this.settle) clearTimeout(this.settle);
    this.settle = setTimeout(() => void this.check(), SETTLE_MS);
    this.settle.unref();
  }

  /** Reads models.yaml (and lists the LoRA folder) now; adopts a valid change. Resolves to what changed, or null. */
  check(): Promise<CatalogChange | null> {
    this.checking ??= this.readNow().finally(() => (this.checking = null));
    return this.checking;
  }

  private async readNow(): Promise<CatalogChange | null> {
    const text = this.fileText();
    const lorasNow = this.lorasSignature();
    if (text === this.lastText && lorasNow === this.lastLoras) return null;
    const lorasChanged = lorasNow !== this.lastLoras;
    this.lastLoras = lorasNow;
    let change: CatalogChange = { added: [], removed: [], changed: [], loras: lorasChanged };
    if (text !== this.lastText) {
      this.lastText = text ?? "";
      let next: ModelCatalog;
      try {
        next = this.read();
      } catch (error) {
        this.state = { ...this.state, problem: { message: messageOf(error), at: new Date().toISOString() } };
        this.log.warn({ modelsYaml: this.catalog.sourcePath, error: messageOf(error) }, "models.yaml edit refused; still serving the models it listed before");
        return null;
      }
      change = { ...diff(this.catalog, next), loras: lorasChanged || next.lorasDir !== this.catalog.lorasDir };
      this.catalog.adopt(next);
      this.state = { source: next.sourcePath, models: next.entries.length, loadedAt: new Date().toISOString(), problem: null };
      this.log.info({ modelsYaml: next.sourcePath, ...change }, "models.yaml reloaded");
      for (const entry of next.entries.filter((each) => change.added.includes(each.name) || change.changed.includes(each.name))) {
        const onDisk = entry.engine === "diffusers" ? inspectEntry(entry) : { present: true, problem: null };
        if (!onDisk.present) this.log.warn({ model: entry.name, problem: onDisk.problem }, "model in models.yaml is not on disk; generate_image will refuse it");
      }
    } else this.log.info({ lorasDir: this.catalog.lorasDir }, "the LoRA folder changed");
    if (!change.added.length && !change.removed.length && !change.changed.length && !change.loras) return null;
    try {
      await this.onChange(change);
    } catch (error) {
      this.log.warn({ error: messageOf(error) }, "could not act on the models.yaml change; the next one tries again");
    }
    return change;
  }

  private fileText(): string | null {
    const file = this.catalog.sourcePath;
    try {
      return file && existsSync(file) ? readFileSync(file, "utf8") : null;
    } catch {
      return null;
    }
  }

  /**
   * The LoRA folder's files, names and sizes, as one hash: walked as listLoras walks it, but with a stat instead of
   * a header read per file, since it is taken every poll.
   */
  private lorasSignature(): string {
    const dir = this.catalog.lorasDir;
    if (!dir) return "";
    const listed: string[] = [];
    walkFolder(dir, (at, names) => {
      for (const name of names.filter((each) => each.endsWith(".safetensors"))) {
        const full = path.join(at, name);
        let size = 0;
        try {
          size = statSync(full).size;
        } catch {
          // gone between the listing and the stat: counted as empty, and the next poll sees it gone
        }
        listed.push(`${nameInFolder(dir, full)}:${size}`);
      }
    });
    return createHash("sha256").update(listed.sort().join("\n")).digest("hex");
  }
}

function diff(before: ModelCatalog, after: ModelCatalog): Omit<CatalogChange, "loras"> {
  const old = new Map(before.entries.map((entry) => [entry.name, JSON.stringify(entry)]));
  const now = new Map(after.entries.map((entry) => [entry.name, JSON.stringify(entry)]));
  return {
    added: [...now.keys()].filter((name) => !old.has(name)),
    removed: [...old.keys()].filter((name) => !now.has(name)),
    changed: [...now.keys()].filter((name) => old.has(name) && old.get(name) !== now.get(name)),
  };
}
