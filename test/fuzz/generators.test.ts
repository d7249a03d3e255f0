import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  buildScenario,
  edgeCommand,
  fieldEdges,
  genContext,
  planArb,
  readOnlyOffsets,
  relevantOpcodes,
  res0Command,
  res0Targets,
  tlbiRangeCommand,
  validCommand,
  wordsHex,
  type Plan,
} from '../../src/fuzz/generators.ts';
import { FEATURE_PRESETS, PATHS } from '../../src/fuzz/paths.ts';
import { parseScenario } from '../../src/fuzz/scenario.ts';
import { commandField, commandSpec, OP } from '../../src/spec/commands.ts';
import { FULL_FEATURES, parseFeatures } from '../../src/spec/features.ts';
import { checkCommand } from '../../src/spec/legality.ts';
import { REG } from '../../src/spec/registers.ts';

const FULL = genContext(FULL_FEATURES, '');
const name = (w: readonly number[]) => commandSpec(w[0]! & 0xff).name;

describe('command generators (from the command table)', () => {
  it('knows which opcodes the features make relevant (§4.1.3, §7.1)', () => {
    const names = (f: Parameters<typeof relevantOpcodes>[0]) => relevantOpcodes(f).map((o) => commandSpec(o).name);
    expect(names(FULL_FEATURES)).toEqual([
      'CMD_PREFETCH_CONFIG', 'CMD_PREFETCH_ADDR', 'CMD_CFGI_STE', 'CMD_CFGI_STE_RANGE', 'CMD_CFGI_CD', 'CMD_CFGI_CD_ALL', 'CMD_CFGI_VMS_PIDM',
      'CMD_TLBI_NH_ALL', 'CMD_TLBI_NH_ASID', 'CMD_TLBI_NH_VA', 'CMD_TLBI_NH_VAA', 'CMD_TLBI_EL2_ALL', 'CMD_TLBI_EL2_ASID', 'CMD_TLBI_EL2_VA',
      'CMD_TLBI_EL2_VAA', 'CMD_TLBI_S12_VMALL', 'CMD_TLBI_S2_IPA', 'CMD_TLBI_NSNH_ALL', 'CMD_ATC_INV', 'CMD_PRI_RESP', 'CMD_RESUME',
      'CMD_STALL_TERM', 'CMD_SYNC', 'CMD_DPTI_ALL', 'CMD_DPTI_PA',
    ]);
    // Without stage 1: no CFGI_CD*, no stage 1 TLBIs, no EL2 (§4.3.3, §4.4.2).
    expect(names(parseFeatures('no-s1'))).toEqual([
      'CMD_PREFETCH_CONFIG', 'CMD_PREFETCH_ADDR', 'CMD_CFGI_STE', 'CMD_CFGI_STE_RANGE', 'CMD_CFGI_VMS_PIDM', 'CMD_TLBI_S12_VMALL', 'CMD_TLBI_S2_IPA',
      'CMD_TLBI_NSNH_ALL', 'CMD_ATC_INV', 'CMD_PRI_RESP', 'CMD_RESUME', 'CMD_STALL_TERM', 'CMD_SYNC', 'CMD_DPTI_ALL', 'CMD_DPTI_PA',
    ]);
  });

  it('puts fields at, just past and far past their limits', () => {
    const ctx = genContext(parseFeatures('sidsize=8'), 'sidsize=8');
    const ste = commandSpec(OP.CMD_CFGI_STE);
    // SIDSIZE 8: 255 is the last StreamID, 256 and 257 are past it, 2^32-1 far past (§4.1.7); 0x10 and 127 are ids in use.
    expect(fieldEdges(ste, commandField(ste, 'StreamID')!, ctx)).toEqual([0n, 1n, 16n, 127n, 255n, 256n, 257n, 0xffff_ffffn]);
    const sync = commandSpec(OP.CMD_SYNC);
    expect(fieldEdges(sync, commandField(sync, 'CS')!, ctx)).toEqual([0n, 1n, 2n, 3n]); // 3 is Reserved (§4.7.3)
    const atc = commandSpec(OP.CMD_ATC_INV);
    expect(fieldEdges(atc, commandField(atc, 'Size')!, ctx)).toEqual([0n, 51n, 52n, 53n, 63n]); // 52 = all (§4.5.1)
  });

  it('valid commands are legal and reach every relevant opcode', () => {
    for (const text of Object.values(FEATURE_PRESETS)) {
      const f = text === '' ? FULL_FEATURES : parseFeatures(text);
      const ctx = genContext(f, text);
      const xs = fc.sample(validCommand(ctx), { seed: 7, numRuns: 600 });
      expect(xs.every((w) => checkCommand(w, f).ok)).toBe(true);
      expect(new Set(xs.map(name))).toEqual(new Set(relevantOpcodes(f).map((o) => commandSpec(o).name)));
    }
  });

  it('a RES0 bit makes a legal command CERROR_ILL with res0Check (§4.1.5)', () => {
    const xs = fc.sample(res0Command(FULL), { seed: 3, numRuns: 200 });
    const rules = new Set(xs.map((w) => {
      const v = checkCommand(w, FULL_FEATURES);
      return v.ok ? 'ok' : v.finding.rule;
    }));
    expect(rules).toEqual(new Set(['res0-bits']));
  });

  it('edge commands cover reserved, IMPLEMENTATION DEFINED and illegal field values', () => {
    const xs = fc.sample(edgeCommand(FULL), { seed: 11, numRuns: 3000 });
    const classes = new Set(xs.map((w) => commandSpec(w[0]! & 0xff).cls));
    expect(classes).toEqual(new Set(['architected', 'secure', 'dpti', 'reserved', 'impdef']));
    const rules = new Set(xs.map((w) => {
      const v = checkCommand(w, FULL_FEATURES);
      return v.ok ? 'ok' : v.finding.rule;
    }));
    for (const r of ['ok', 'reserved-opcode', 'impdef-opcode', 'ssec-on-nonsecure-queue', 'sync-cs-reserved', 'pri-resp-reserved', 'address-res0-bits', 'secure-command-not-secure-queue', 'el3-command-not-secure-queue']) {
      expect(rules).toContain(r);
    }
  });

  it('range TLBIs hit the TG/NUM/SCALE/TTL combinations (§4.4.1.1)', () => {
    const xs = fc.sample(tlbiRangeCommand(FULL), { seed: 5, numRuns: 1500 });
    const rules = new Set(xs.map((w) => {
      const v = checkCommand(w, FULL_FEATURES);
      return v.ok ? 'ok' : v.finding.rule;
    }));
    for (const r of ['ok', 'tlbi-range-reserved-combination', 'range-fields-res0-tg0', 'ttl128-res0-ttl0']) expect(rules).toContain(r);
  });
});

describe('register targets (from the register table)', () => {
  it('lists read-only registers and RES0 bits of read-write ones', () => {
    const ro = readOnlyOffsets(FULL_FEATURES);
    expect(ro).toContain(REG.SMMU_IDR0.offset);
    expect(ro).toContain(REG.SMMU_GERROR.offset);
    expect(ro).not.toContain(REG.SMMU_CR0.offset);
    const cr0 = res0Targets(FULL_FEATURES).find((t) => t.off === REG.SMMU_CR0.offset)!;
    // §6.3.9: CR0 bits 5, 9 and [31:11] are RES0.
    expect(cr0.bits).toEqual([5, 9, ...Array.from({ length: 21 }, (_, i) => 11 + i)]);
  });
});

describe('scenarios', () => {
  it('builds the steps of a plan, with MSI targets resolved per queue', () => {
    const plan: Plan = {
      cmdqLog2: 1,
      eventqLog2: 0,
      ecmdqs: [],
      acts: [
        { a: 'batch', q: 0, recover: true, cmds: [{ w: [0x30, 0, 0, 0] }, { sync: { cs: 1, target: { t: 'own' }, data: 0, msh: 3, attr: 0xf } }, { w: [0x30, 0, 0, 0] }] },
        { a: 'jump', q: 0, laps: 3, extra: 1 },
        { a: 'gerrorn', mask: 0x20, back: true },
      ],
    };
    const json = buildScenario(FULL, plan);
    // The queue holds 2 entries, so the batch keeps its first two; the sync's MSI goes to its own slot
    // (Linux's MSI polling), CMDQ base + 16 * 1.
    const sync = [0x46 | (1 << 12) | (3 << 22) | (0xf << 24), 0, (0x4010_0010 >>> 2) << 2, 0];
    expect(json.steps).toEqual([
      { kind: 'commands', queue: 'cmdq', cmds: [wordsHex([0x30, 0, 0, 0]), wordsHex(sync)] },
      { kind: 'doorbell', queue: 'cmdq' },
      { kind: 'recover', queue: 'cmdq' },
      { kind: 'doorbell', queue: 'cmdq', advance: 7, note: 'PROD jumps 3 laps' },
      { kind: 'write', reg: 'SMMU_GERRORN', toggle: '0x20', note: 'GERRORN toggles a bit of no active error' },
      { kind: 'write', reg: 'SMMU_GERRORN', toggle: '0x20' },
      { kind: 'recover', queue: 'all', note: 'final recovery: the rest must run' },
    ]);
    expect(json.config).toEqual({ features: '', ram: { base: '0x40000000', bytes: '0x400000' }, queues: { cmdq: { log2: 1 }, eventq: { log2: 0 } } });
  });

  it('every generated scenario is a valid file, on every path and preset', () => {
    for (const path of Object.values(PATHS).filter((p) => p.unavailable === undefined)) {
      for (const text of path.presets) {
        const f = text === '' ? FULL_FEATURES : parseFeatures(text);
        const ctx = genContext(f, text);
        const xs = fc.sample(planArb(ctx, path.shape).map((p) => buildScenario(ctx, p)), { seed: 1, numRuns: 60 });
        for (const x of xs) {
          const sc = parseScenario(x);
          expect(sc.config.ecmdq.length >= path.shape.ecmdqs.min && sc.config.ecmdq.length <= path.shape.ecmdqs.max).toBe(true);
        }
      }
    }
  });
});
