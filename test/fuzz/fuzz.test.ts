/**
 * A short, bounded fuzz of every available path with fixed seeds: every run must hold against
 * the oracle (known model deviations waived and counted, src/fuzz/known.ts). Long campaigns run
 * from the CLI: smmu-sim fuzz --path native --time 10m.
 */
import { describe, expect, it } from 'vitest';
import { resolvePath, runCampaign } from '../../src/fuzz/campaign.ts';
import { availablePaths, PATHS } from '../../src/fuzz/paths.ts';

describe('bounded fuzz of the native and ECMDQ paths (the VM paths: vm-paths.test.ts)', () => {
  it('knows which paths exist today', () => {
    expect(availablePaths().map((p) => p.name)).toEqual(['native', 'ecmdq', 'trap', 'kernel-queue', 'vcmdq']);
    expect(['trap', 'kernel-queue', 'vcmdq'].map((n) => resolvePath(n).vm)).toEqual(['trap', 'kernel-queue', 'vcmdq']);
    expect(() => resolvePath('nope')).toThrow("unknown path 'nope' (paths: native, ecmdq, trap, kernel-queue, vcmdq)");
  });

  for (const [path, seed, runs] of [['native', 20_261_121, 75], ['ecmdq', 8, 50]] as const) {
    it(`${path}: ${runs} runs over its feature presets hold`, async () => {
      const presets = PATHS[path]!.presets.length;
      const s = await runCampaign({ path, seed, runs, blockRuns: Math.ceil(runs / presets) });
      expect(s.failed_cases.map((f) => `${f.rule} at step ${f.step}: ${f.message}`)).toEqual([]);
      expect(s.failures).toBe(0);
      expect(s.runs).toBe(runs);
      expect(s.features).toEqual(PATHS[path]!.presets.map((p) => (p === '' ? 'full' : p)));
      // The runs did something: commands consumed and refused, and errors of several kinds.
      expect(s.coverage.opcode_outcome.CMD_SYNC?.consumed ?? 0).toBeGreaterThan(0);
      expect(Object.keys(s.errors_by_kind).filter((k) => k.startsWith('CERROR_ILL:')).length).toBeGreaterThan(3);
      expect(s.errors_by_kind['GERROR:CMDQ_ERR'] ?? 0).toBeGreaterThan(0);
      if (path === 'ecmdq') expect(s.errors_by_kind['GERROR:CMDQP_ERR'] ?? 0).toBeGreaterThan(0);
      // Translation worlds: DMA answers judged against the reference caches, after invalidations.
      expect(s.dma.judged).toBeGreaterThan(20);
      expect((s.coverage.opcode_outcome.CMD_TLBI_NH_VA?.consumed ?? 0) + (s.coverage.opcode_outcome.CMD_CFGI_STE?.consumed ?? 0)).toBeGreaterThan(0);
    });
  }
});
