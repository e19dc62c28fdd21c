// Run by `npm run setup` before installing: better-sqlite3 13 ships builds for Node 22 and newer only.
const major = Number(process.versions.node.split(".")[0]);
if (major < 22) {
  console.error(
    `kitty-images needs Node 22 or newer (this is ${process.version}). Install Node 22, 24 or 26, or run ` +
      `'bash scripts/fetch-node.sh 24' and put the folder it prints first on PATH.`,
  );
  process.exit(1);
}
