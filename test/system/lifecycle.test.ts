import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { System } from '../../src/system/system.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));

describe('System lifecycle', () => {
  it('stops every worker within a second, also when stopped twice', async () => {
    const sys = await System.start();
    const t0 = performance.now();
    await sys.stop();
    await sys.stop();
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(sys.deviceState).toBe('stopped');
    await expect(sys.driver.sync()).rejects.toThrow(/stopped/);
  });

  it('turns a dead device worker into a clear error for every caller, not a hang', async () => {
    const sys = await System.start();
    try {
      await sys.threads.device.terminate();
      await expect(sys.driver.sync()).rejects.toThrow('SMMU device worker exited unexpectedly');
      await expect(sys.waitReg('SMMU_CR0ACK', () => false)).rejects.toThrow('SMMU device worker exited unexpectedly');
    } finally {
      await sys.stop();
    }
  });

  it('reports a bad configuration before starting anything', async () => {
    await expect(System.start({ features: 'no-s1,no-s2' })).rejects.toThrow(/at least one of s1 and s2/);
    await expect(System.start({ policy: 'busy' })).rejects.toThrow(/wait policy 'busy'/);
    await expect(System.start({ ramBytes: 12345 })).rejects.toThrow(/multiple of 64 KiB/);
  });
});

describe('the README walkthrough script', () => {
  it('runs as printed and shows the error and the recovery', async () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const script = /```js\n([\s\S]*?)```/.exec(readme)![1]!;
    const file = `${root}readme-walkthrough.test-tmp.mjs`;
    writeFileSync(file, script);
    try {
      const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', file], { cwd: root, timeout: 30_000 });
      expect(stdout).toMatch(/\[ \{ index: \d+, code: 1, name: 'CERROR_ILL' \} \]/);
      expect(stdout).toMatch(/kind: 'cmdq-skip'/);
      expect(stdout).toMatch(/SYNC cs=Reserved {2}-> CERROR_ILL/);
      expect(stdout).toMatch(/TLBI_NH_ALL vmid=0x1 {2}-> consumed/);
    } finally {
      rmSync(file, { force: true });
    }
  });
});
