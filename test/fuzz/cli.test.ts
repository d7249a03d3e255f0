import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { UsageError, type Io } from '../../src/cli/args.ts';
import { fuzzMain, parseDuration, progressLine } from '../../src/cli/fuzz.ts';
import { replayMain } from '../../src/cli/replay.ts';

/** Run a subcommand as src/cli/main.ts does: a UsageError is one line on stderr and exit code 2. */
async function run(main: (argv: string[], io: Io) => Promise<number>, argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: Io = { out: (t) => void (out += t), err: (t) => void (err += t), stdin: () => (async function* () {})(), stdinIsTTY: true };
  try {
    return { code: await main(argv, io), out, err };
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    return { code: 2, out, err: `${err}smmu-sim ${e.message}\n` };
  }
}

const fuzz = (...a: string[]) => run(fuzzMain, a);
const replay = (...a: string[]) => run(replayMain, a);
const tmp = mkdtempSync(join(tmpdir(), 'smmu-fuzz-'));

describe('smmu-sim fuzz', () => {
  it('refuses unknown paths, --features on a VM path, and bad options, with exit code 2', async () => {
    expect(await fuzz('--path', 'trap', '--features', 'no-s1', '--runs', '1')).toEqual({
      code: 2,
      out: '',
      err: "smmu-sim fuzz: path 'trap' runs with the default features only (--features is for native and ecmdq)\n",
    });
    expect(await fuzz('--path', 'bogus')).toEqual({ code: 2, out: '', err: "smmu-sim fuzz: unknown path 'bogus' (paths: native, ecmdq, trap, kernel-queue, vcmdq)\n" });
    expect((await fuzz('--runs', '5', '--time', '1s')).err).toBe('smmu-sim fuzz: give --runs or --time, not both\n');
    expect((await fuzz('--time', 'soon')).err).toBe("smmu-sim fuzz: --time 'soon' is not a duration such as 30s, 5m, 1h or 500ms\n");
    expect((await fuzz('--runs', 'x')).err).toBe("smmu-sim fuzz: --runs 'x' is not an integer\n");
    expect((await fuzz('--path', 'ecmdq', '--features', 'no-ecmdq', '--runs', '1')).err).toBe(
      "smmu-sim fuzz: path 'ecmdq' cannot run with features 'no-ecmdq': the features have no ECMDQs (IDR1.ECMDQ == 0)\n",
    );
    expect((await fuzz('extra')).err).toBe("smmu-sim fuzz: unexpected argument 'extra'\n");
  });

  it('reads durations', () => {
    expect([parseDuration('30s'), parseDuration('5m'), parseDuration('1h'), parseDuration('500ms'), parseDuration('2')]).toEqual([30_000, 300_000, 3_600_000, 500, 2000]);
  });

  it('prints one JSON summary with --json, and exit code 0 when every run held', async () => {
    const r = await fuzz('--runs', '8', '--seed', '3', '--features', '', '--json', '--out', tmp);
    expect(r.code).toBe(0);
    expect(r.err).toBe('');
    const s = JSON.parse(r.out);
    for (const k of ['path', 'seed', 'runs', 'commands', 'register_writes', 'failures', 'errors_by_kind', 'coverage', 'known_deviations']) expect(s).toHaveProperty(k);
    expect([s.path, s.seed, s.runs, s.failures, s.features]).toEqual(['native', 3, 8, 0, ['full']]);
    expect(s.coverage.opcodes_total).toBe(257);
    expect(readdirSync(tmp)).toEqual([]);
  });

  it('draws a progress line', () => {
    expect(progressLine('native', { runs: 50, totalRuns: 200, elapsedMs: 1234, timeMs: undefined, failures: 1, shrinking: false })).toBe(
      'fuzz native [######------------------] 50/200 runs, 1 failure, 1.2 s',
    );
    expect(progressLine('ecmdq', { runs: 7, totalRuns: undefined, elapsedMs: 15_000, timeMs: 30_000, failures: 0, shrinking: true })).toBe(
      'fuzz ecmdq [############------------] 7 runs, 0 failures, 15.0/30 s, shrinking',
    );
  });
});

describe('smmu-sim replay', () => {
  it('prints the trace and exits 0 when the expectation holds', async () => {
    const r = await replay('test/scenarios/illegal-command-recovery.json');
    expect(r.code).toBe(0);
    const lines = r.out.split('\n');
    expect(lines[0]).toBe('scenario CERROR_ILL and Linux-style recovery (test/scenarios/illegal-command-recovery.json)');
    expect(lines).toContain('      CMDQ[0x1] RESERVED_0x08 0x0000000000000008:0x0000000000000000  -> CERROR_ILL');
    expect(lines).toContain('[4] recover cmdq');
    expect(lines.at(-2)).toBe('PASS: 4 commands, 9 register writes; the oracle and the expectation hold');
  });

  it('prints JSON lines with --json', async () => {
    const r = await replay('--json', 'test/scenarios/basic-ring.json');
    expect(r.code).toBe(0);
    const objs = r.out.trim().split('\n').map((l) => JSON.parse(l));
    expect(objs.filter((o) => 'command' in o).map((o) => [o.command.queue, o.command.ptr, o.command.name, o.command.outcome])).toEqual([
      ['CMDQ', 0, 'CMD_TLBI_NH_ASID', 'consumed'],
      ['CMDQ', 1, 'CMD_CFGI_STE', 'consumed'],
      ['CMDQ', 2, 'CMD_SYNC', 'consumed'],
    ]);
    expect(objs.at(-1)).toEqual({ result: 'pass', violations: [], commands: 3, register_writes: 8 });
  });

  it('exits 1 when the expectation does not hold, and says why', async () => {
    const f = join(tmp, 'wrong.json');
    writeFileSync(f, JSON.stringify({
      format: 'smmu-sim-scenario/1',
      steps: [{ kind: 'commands', queue: 'cmdq', cmd: { name: 'CMD_SYNC' } }, { kind: 'doorbell', queue: 'cmdq' }],
      expect: { commands: [{ outcome: 'CERROR_ILL' }] },
    }));
    const r = await replay(f);
    expect(r.code).toBe(1);
    expect(r.out).toContain('!! step 2: expect-mismatch: CMDQ: command 0 expected (any) -> CERROR_ILL, the device read CMD_SYNC at 0x0 -> consumed\n');
    expect(r.out.trim().split('\n').at(-1)).toBe('FAIL: 1 violation (1 commands, 8 register writes)');
  });

  it('exits 2 for a broken file, naming the problem', async () => {
    const bad = (name: string, json: unknown) => {
      const f = join(tmp, name);
      writeFileSync(f, typeof json === 'string' ? json : JSON.stringify(json));
      return f;
    };
    const kind = bad('kind.json', { format: 'smmu-sim-scenario/1', steps: [{ kind: 'bogus' }] });
    expect(await replay(kind)).toEqual({ code: 2, out: '', err: `smmu-sim replay: ${kind}: steps[0]: unknown step kind 'bogus' (kinds: write, commands, doorbell, wait, inject, recover, poke, settle, dma, map, unmap, ste, cd)\n` });
    const hex = bad('hex.json', { format: 'smmu-sim-scenario/1', steps: [{ kind: 'commands', queue: 'cmdq', cmds: ['0x46'] }] });
    expect((await replay(hex)).err).toBe(`smmu-sim replay: ${hex}: steps[0].cmds[0]: bad hex command: '0x46': invalid hex character 'x' at position 1 (memory-order hex has no 0x prefix; use 0xDWORD0:0xDWORD1 for words)\n`);
    const key = bad('key.json', { format: 'smmu-sim-scenario/1', steps: [{ kind: 'doorbell' }] });
    expect((await replay(key)).err).toBe(`smmu-sim replay: ${key}: steps[0]: missing key 'queue'\n`);
    const json = bad('json.json', '{"format": ');
    expect((await replay(json)).err).toMatch(new RegExp(`^smmu-sim replay: ${json.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: not valid JSON: `));
    expect((await replay(join(tmp, 'missing.json'))).err).toBe(`smmu-sim replay: ${join(tmp, 'missing.json')}: cannot read: ENOENT\n`);
    expect((await replay()).err).toBe('smmu-sim replay: give exactly one scenario file\n');
  });
});
