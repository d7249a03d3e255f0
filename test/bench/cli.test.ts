import { describe, expect, it } from 'vitest';
import { benchMain, BENCH_HELP, parseBenchArgs } from '../../src/cli/bench.ts';
import { UsageError, type Io } from '../../src/cli/args.ts';

function fakeIo(): Io & { outs: string[]; errs: string[] } {
  const outs: string[] = [];
  const errs: string[] = [];
  return {
    outs,
    errs,
    out: (t) => void outs.push(t),
    err: (t) => void errs.push(t),
    stdin: () => (async function* () {})(),
    stdinIsTTY: false,
  };
}

/** The one line `smmu-sim` prints for a UsageError (src/cli/main.ts: "smmu-sim <message>", exit 2). */
function usage(argv: string[]): string {
  try {
    parseBenchArgs(argv);
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    return (e as Error).message;
  }
  throw new Error(`accepted: ${argv.join(' ')}`);
}

describe('smmu-sim bench arguments', () => {
  it('refuses bad values with one line naming the option', () => {
    expect(usage(['--batch', '0'])).toBe("bench: --batch '0' must be an integer in 1..64");
    expect(usage(['--batch', '65'])).toBe("bench: --batch '65' must be an integer in 1..64");
    expect(usage(['--batch', '1,,8'])).toBe("bench: --batch '1,,8': empty item in the list");
    expect(usage(['--batch', '2.5'])).toBe("bench: --batch '2.5' must be an integer in 1..64");
    expect(usage(['--producers', '0'])).toBe("bench: --producers '0' must be an integer in 1..64");
    expect(usage(['--policy', 'busy'])).toBe("bench: --policy: wait policy 'busy': expected spin, hybrid, hybrid:<polls> or wait");
    expect(usage(['--paths', 'native,warp'])).toBe("bench: unknown path 'warp' (known: native, native-mp, native-ecmdq, trap, trap-batched, kernel-queue, vcmdq; 'list' shows which are available)");
    expect(usage(['--sync', 'irq'])).toBe("bench: --sync 'irq' must be msi or cons");
    expect(usage(['--queue', '100'])).toBe('bench: --queue 100 must be a power of two (a queue holds 2^LOG2SIZE entries, §3.5.1)');
    expect(usage(['--queue', '1'])).toBe("bench: --queue '1' must be an integer in 2..524288");
    expect(usage(['--workloads', 'tlbi'])).toBe("bench: unknown workload 'tlbi' (workloads: tlbi-va, tlbi-range, unmap, atc-inv, stream)");
    expect(usage(['--cost', 'exit=-3'])).toBe('bench: --cost: cost exit in --cost must be a number of ns ≥ 0, not -3');
    expect(usage(['--cost', '/nonexistent/costs.json'])).toBe('bench: --cost: cost file /nonexistent/costs.json: ENOENT');
    expect(usage(['--features', 'no-s1,no-s2'])).toMatch(/^bench: --features: .*s1 and s2/);
    expect(usage(['--samples', '0'])).toBe("bench: --samples '0' must be an integer in 1..100000000");
    expect(usage(['--jsn'])).toBe("bench: unknown option '--jsn'");
    expect(usage(['fast'])).toBe("bench: unexpected argument 'fast'");
  });

  it('rejects before starting anything: benchMain throws the UsageError (main prints it, exit 2)', async () => {
    const io = fakeIo();
    await expect(benchMain(['--batch', '0'], io)).rejects.toThrow(UsageError);
    expect(io.outs).toEqual([]);
  });

  it('defaults to every available path (the host\'s and the VM paths), hybrid, batches 1,8,64 when quick, one producer, both sync modes, 256 entries', () => {
    const p = parseBenchArgs(['--quick']);
    if (p.kind !== 'run') throw new Error('expected a run');
    const o = p.options;
    expect([o.paths, o.policies, o.batches, o.producers, o.syncs, o.queues, o.quick]).toEqual([
      ['native', 'native-mp', 'native-ecmdq', 'trap', 'trap-batched', 'kernel-queue', 'vcmdq'], ['hybrid'], [1, 8, 64], [1], ['msi', 'cons'], [8], true,
    ]);
    expect(o.workloads).toEqual(['tlbi-va', 'tlbi-range', 'unmap', 'atc-inv', 'stream']);
    expect(o.cost.source).toBe('default');
    const full = parseBenchArgs([]);
    expect(full.kind === 'run' && full.options.batches).toEqual([1, 2, 4, 8, 16, 32, 64]);
  });

  it('takes lists, sorts and de-duplicates them, and keeps the command line', () => {
    const p = parseBenchArgs(['--batch', '64,1,8,8', '--producers', '2,1', '--policy', 'spin,hybrid:2000', '--queue', '1024', '--cost', 'exit=100', '--json', '--out', 'o']);
    if (p.kind !== 'run') throw new Error('expected a run');
    expect(p.options.batches).toEqual([1, 8, 64]);
    expect(p.options.producers).toEqual([1, 2]);
    expect(p.options.policies).toEqual(['spin', 'hybrid:2000']);
    expect(p.options.queues).toEqual([10]);
    expect(p.options.cost.exit).toBe(100);
    expect([p.json, p.out]).toEqual([true, 'o']);
    expect(p.options.command).toBe('smmu-sim bench --batch 64,1,8,8 --producers 2,1 --policy spin,hybrid:2000 --queue 1024 --cost exit=100 --json --out o');
  });

  it("lists every known path and whether it can run with '--paths list'", async () => {
    const io = fakeIo();
    expect(await benchMain(['--paths', 'list'], io)).toBe(0);
    const lines = io.outs.join('').trimEnd().split('\n');
    expect(lines.map((l) => l.split(/\s+/)[0])).toEqual(['native', 'native-mp', 'native-ecmdq', 'trap', 'trap-batched', 'kernel-queue', 'vcmdq']);
    expect(lines[0]).toMatch(/^native\s+available, 1 hop:/);
    expect(lines[2]).toMatch(/^native-ecmdq\s+available, 1 hop:/);
    expect(lines[3]).toMatch(/^trap\s+available, 2 hops: .*each command in its own HWPT_INVALIDATE/);
    expect(lines[4]).toMatch(/^trap-batched\s+available, 2 hops: .*every command up to each CMD_SYNC in one HWPT_INVALIDATE/);
    expect(lines[5]).toMatch(/^kernel-queue\s+available, 2 hops: /);
    expect(lines[6]).toMatch(/^vcmdq\s+available, 1 hop: /);
    expect(BENCH_HELP).toContain(lines[0]);
  });
});
