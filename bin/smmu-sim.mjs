#!/usr/bin/env node
// Launcher. In a checkout (src/ present and tsx installed as a dev dependency) the CLI runs
// from the TypeScript sources; an installed package runs the compiled dist/ with no loader.
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const source = `${root}src/cli/main.ts`;
const built = `${root}dist/src/cli/main.js`;

let entry = built;
if (existsSync(source)) {
  try {
    const { register } = await import('tsx/esm/api');
    register();
    entry = source;
  } catch {
    if (!existsSync(built)) {
      process.stderr.write('smmu-sim: neither tsx (npm install) nor a build (npm run build) is present\n');
      process.exit(2);
    }
  }
}
// `smmu-sim decode < big | head` closes the pipe early: that is the reader's choice, not an error.
process.stdout.on('error', (e) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});
const { main } = await import(pathToFileURL(entry).href);
process.exitCode = await main(process.argv.slice(2));
