/**
 * Imported first by the CLI, before anything loads better-sqlite3: its 13 line (the one that survives Node 24's
 * stricter native-object cleanup) ships builds for Node 22 and newer only and crashes on older ones.
 */
const MINIMUM_NODE = 22;
const major = Number(process.versions.node.split(".")[0]);
if (major < MINIMUM_NODE) {
  process.stderr.write(
    `kitty-images needs Node ${MINIMUM_NODE} or newer (this is ${process.version}). Install Node 22, 24 or 26, or run ` +
      `'bash scripts/fetch-node.sh 24' in the project and put the folder it prints first on PATH.\n`,
  );
  process.exit(1);
}
export {};
