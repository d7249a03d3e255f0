// Worker bootstrap for running TypeScript workers from source on Node 20.
// Loaders given in a Worker's execArgv are ignored on Node 20 (nodejs/node#47747), so the
// worker registers tsx itself and then imports the real entry. Built code (dist/) never uses
// this file: spawn.ts starts the compiled .js entry directly.
import { workerData } from 'node:worker_threads';
import { register } from 'tsx/esm/api';

register();
await import(workerData.__tsEntry);
