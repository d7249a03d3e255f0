import { describe, expect, it } from 'vitest';
import { once } from 'node:events';
import { spawnWorker } from '../../src/system/spawn.ts';

describe('spawnWorker', () => {
  it('runs a TypeScript worker that shares memory with the caller', async () => {
    const sab = new SharedArrayBuffer(8);
    const i32 = new Int32Array(sab);
    i32[0] = 41;
    const w = spawnWorker(import.meta.url, '../fixtures/echo-worker', { workerData: { sab } });
    const [code] = await once(w, 'exit');
    expect(code).toBe(0);
    expect(Atomics.load(i32, 1)).toBe(42);
  });
});
