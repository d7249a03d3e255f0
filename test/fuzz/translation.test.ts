/**
 * The translation world and the reference caches alone, without workers: VMSAv8-64 descriptor
 * words, the stores a World makes, and what ReferenceCaches accepts of a DMA after the
 * configuration (§4.3) and TLB (§4.4) invalidations a scenario issues.
 */
import { describe, expect, it } from 'vitest';
import { ReferenceCaches, type DmaOutcome, type DmaVerdict } from '../../src/fuzz/translation.ts';
import { World, worldProblems, worldS2Ia, type WorldSpec, type WorldStreamSpec } from '../../src/fuzz/world.ts';
import { encodeCommandWords, type CommandInput } from '../../src/spec/command-codec.ts';
import { descriptorOa, levelShift, outputAddressField, s1LeafWords, s2LeafWords, tableDescWords, S1_AP, S2_AP } from '../../src/spec/descriptors.ts';
import { EVENT_CLASS, EVT, encodeEvent } from '../../src/spec/events.ts';
import { FULL_FEATURES, parseFeatures, type SmmuFeatures } from '../../src/spec/features.ts';
import { CD, STE, STE_CONFIG, decodeStructure } from '../../src/spec/structures.ts';

const RAM = 0x4000_0000;
const ON = { smmuEn: true, gbpaAbort: false } as const;
const OAS32 = parseFeatures('oas=0');

const st = (sid: number, kind: WorldStreamSpec['kind'], vmid: number, asid: number, record: boolean, pages: [number, number][] = []): WorldStreamSpec => ({ sid, kind, vmid, asid, record, pages });
/** Two stage 1 streams in VMID 1 (ASIDs 5 and 6), stage 2 streams in VMIDs 2 and 1, a bypass and an abort stream. */
const SPEC: WorldSpec = {
  strtabLog2: 4,
  streams: [
    st(1, 's1', 1, 5, true, [[0x1000_0000, 0x8000_0000], [0x1000_1000, 0x8000_1000], [0x1000_2000, 0x8000_2000]]),
    st(2, 's1', 1, 6, false, [[0x1000_0000, 0x8100_0000]]),
    st(3, 's2', 2, 0, true, [[0x1000_0000, 0x8200_0000]]),
    st(4, 'bypass', 0, 0, false),
    st(5, 'abort', 0, 0, false),
    st(6, 's2', 1, 0, true, [[0x1000_0000, 0x8600_0000]]),
  ],
};

const walk = (pa: number): DmaOutcome => ({ status: 'ok', pa, tlbHit: false, bypass: false });
const hit = (pa: number): DmaOutcome => ({ status: 'ok', pa, tlbHit: true, bypass: false });
const passed = (pa: number): DmaOutcome => ({ status: 'ok', pa, tlbHit: false, bypass: true });
const aborted = (event?: number): DmaOutcome => ({ status: 'abort', tlbHit: false, bypass: false, ...(event !== undefined ? { event } : {}) });
const rd = (sid: number, iova: number, write = false) => ({ sid, iova, write });
const cmd = (c: ReferenceCaches, input: CommandInput, oor: readonly string[] = []) => c.command([...encodeCommandWords(input)], oor);

function world(f: SmmuFeatures = FULL_FEATURES): { w: World; c: ReferenceCaches } {
  const w = new World(SPEC, f, RAM);
  w.build();
  return { w, c: new ReferenceCaches(w, f) };
}
function dma(c: ReferenceCaches, sid: number, iova: number, got: DmaOutcome): DmaVerdict {
  return c.dma(rd(sid, iova), got, ON);
}
const OK = { ok: true, judged: true };

/** Every entry the stale worlds warm: [sid, iova, pa then, pa after the remap]. */
const ENTRIES: readonly (readonly [number, number, number, number])[] = [
  [1, 0x1000_0000, 0x8000_0000, 0x9000_0000],
  [1, 0x1000_1000, 0x8000_1000, 0x9000_1000],
  [1, 0x1000_2000, 0x8000_2000, 0x9000_2000],
  [2, 0x1000_0000, 0x8100_0000, 0x9100_0000],
  [3, 0x1000_0000, 0x8200_0000, 0x9200_0000],
  [6, 0x1000_0000, 0x8600_0000, 0x9600_0000],
];

/** Every entry cached by a walk, then remapped behind the SMMU's back (stale), then `input` consumed. */
function stale(input: CommandInput, oor: readonly string[] = []): { w: World; c: ReferenceCaches } {
  const { w, c } = world();
  for (const [sid, iova, pa] of ENTRIES) expect(dma(c, sid, iova, walk(pa))).toEqual(OK);
  for (const [sid, iova, , pa] of ENTRIES) w.map(sid, iova, pa);
  cmd(c, input, oor);
  return { w, c };
}

/** What each entry may be after `input`: 'hit' (old PA only), 'miss' (a walk to the new PA only) or 'maybe'. */
function scope(input: CommandInput, oor: readonly string[] = []): string[] {
  return ENTRIES.map(([sid, iova, old, now]) => {
    const h = dma(stale(input, oor).c, sid, iova, hit(old)).ok;
    const m = dma(stale(input, oor).c, sid, iova, walk(now)).ok;
    return `${sid}:${iova.toString(16)} ${h && m ? 'maybe' : h ? 'hit' : m ? 'miss' : 'neither'}`;
  });
}
const ALL_HIT = ENTRIES.map(([sid, iova]) => `${sid}:${iova.toString(16)} hit`);
const only = (changes: Record<string, string>) => ALL_HIT.map((x) => { const k = x.split(' ')[0]!; return `${k} ${changes[k] ?? 'hit'}`; });

describe('VMSAv8-64 descriptors (Arm ARM D8.3, §3.4)', () => {
  it('a stage 1 level 3 page with the defaults: Type 0b11, AP 0b01 [7:6], SH 0b11 [9:8], AF [10], nG [11]', () => {
    expect(s1LeafWords(0x8000_1000, 12, 3)).toEqual({ lo: (0x8000_1000 | 0x3 | 0x40 | 0x300 | 0x400 | 0x800) >>> 0, hi: 0 });
    expect(s1LeafWords(0x8000_1000, 12, 3).lo).toBe(0x8000_1f43);
  });
  it('a stage 1 level 2 block: Type 0b01, AttrIndx [4:2], AP RO at any EL, global', () => {
    expect(s1LeafWords(0x4020_0000, 12, 2, { ap: S1_AP.RO_ANY, nG: 0, attrIndx: 1 })).toEqual({ lo: 0x4020_0000 | 0x1 | 0x4 | 0xc0 | 0x300 | 0x400, hi: 0 });
  });
  it('a stage 2 page: MemAttr 0b1111 [5:2], S2AP 0b11 [7:6], SH 0b11, AF; and RO Device with AF clear', () => {
    expect(s2LeafWords(0x1234_5000, 12, 3)).toEqual({ lo: 0x1234_5000 | 0x3 | 0x3c | 0xc0 | 0x300 | 0x400, hi: 0 });
    expect(s2LeafWords(0x8000_0000, 12, 3, { s2ap: S2_AP.RO, memAttr: 0b0001, af: 0 })).toEqual({ lo: 0x8000_0347, hi: 0 });
  });
  it('an output address above 4 GiB splits OA[47:32] into the high word', () => {
    expect(s1LeafWords(0x12_3456_7000, 12, 3)).toEqual({ lo: 0x3456_7f43, hi: 0x12 });
    expect(s1LeafWords(0xffff_ffff_f000, 12, 3)).toEqual({ lo: 0xffff_ff43, hi: 0xffff });
    expect(tableDescWords(0x1_0000_2000, 12)).toEqual({ lo: 0x2003, hi: 1 });
    expect(tableDescWords(0x4034_9000, 12)).toEqual({ lo: 0x4034_9003, hi: 0 });
  });
  it('descriptorOa reads OA[47:g] and ignores attributes, the granule offset and bits above 47', () => {
    expect(descriptorOa({ lo: 0x3456_7f43, hi: 0x12 | (1 << 22) }, 12)).toBe(0x12_3456_7000);
    expect(descriptorOa({ lo: 0x1234_5f43, hi: 0 }, 16)).toBe(0x1234_0000);
    expect(descriptorOa(s2LeafWords(0xabc_dead_0000, 16, 3), 16)).toBe(0xabc_dead_0000);
  });
  it('levelShift and outputAddressField for the 4KB, 16KB and 64KB granules', () => {
    expect([0, 1, 2, 3].map((l) => levelShift(12, l))).toEqual([39, 30, 21, 12]);
    expect([1, 2, 3].map((l) => levelShift(14, l))).toEqual([36, 25, 14]);
    expect([1, 2, 3].map((l) => levelShift(16, l))).toEqual([42, 29, 16]);
    expect(outputAddressField(12)).toMatchObject({ name: 'OA', lsb: 12, width: 36, shift: 12 });
    expect(outputAddressField(16)).toMatchObject({ name: 'OA', lsb: 16, width: 32, shift: 16 });
  });
});

describe('World', () => {
  it('build() stores the STE, CD and tables of a stage 1 stream (§5.2, §5.4)', () => {
    const w = new World(SPEC, FULL_FEATURES, RAM);
    const out = w.build();
    expect(out).toHaveLength(7 + 5 + 4 + 1 + 1 + 4);
    const hex = out.slice(0, 7).map((s) => [s.pa, s.words.length === 2 ? s.words : s.words.slice(0, 3)]);
    expect(hex).toEqual([
      [0x4034_0040, [0x4034_400b, 0, 0]],
      [0x4034_4000, [0xc000_0019, 0x0005_6205, 0x4034_8000]],
      [0x4034_8000, [0x4034_9003, 0]],
      [0x4034_9400, [0x4034_a003, 0]], // level 2 index 128 = VA[29:21] of 0x1000_0000
      [0x4034_a000, [0x8000_0f43, 0]],
      [0x4034_a008, [0x8000_1f43, 0]],
      [0x4034_a010, [0x8000_2f43, 0]],
    ]);
    const ste = decodeStructure(STE, out[0]!.words).fields;
    expect({ V: ste.V, Config: ste.Config, S1Fmt: ste.S1Fmt, S1CDMax: ste.S1CDMax, S1ContextPtr: ste.S1ContextPtr, S2VMID: ste.S2VMID, STRW: ste.STRW })
      .toEqual({ V: 1, Config: STE_CONFIG.S1_TRANS, S1Fmt: 0, S1CDMax: 0, S1ContextPtr: 0x4034_4000n, S2VMID: 1, STRW: 0 });
    const cd = decodeStructure(CD, out[1]!.words).fields;
    expect({ V: cd.V, AA64: cd.AA64, A: cd.A, R: cd.R, T0SZ: cd.T0SZ, TG0: cd.TG0, EPD1: cd.EPD1, IPS: cd.IPS, ASID: cd.ASID, TTB0: cd.TTB0 })
      .toEqual({ V: 1, AA64: 1, A: 1, R: 1, T0SZ: 25, TG0: 0, EPD1: 1, IPS: 5, ASID: 5, TTB0: 0x4034_8000n });
    expect(decodeStructure(CD, out[8]!.words).fields.R).toBe(0); // stream 2: record false
    expect(w.words.get(0x4034_a008)).toBe(0x8000_1f43);
    expect(w.words.get(0x4034_0040 + 60)).toBe(0);
  });

  it('build() stores stage 2, bypass and abort STEs (§5.2)', () => {
    const w = new World(SPEC, FULL_FEATURES, RAM);
    const out = w.build();
    const s2 = decodeStructure(STE, out[12]!.words).fields;
    expect(out[12]!.pa).toBe(w.steAddress(3));
    expect(w.steAddress(3)).toBe(0x4034_00c0);
    expect({ V: s2.V, Config: s2.Config, S2VMID: s2.S2VMID, S2T0SZ: s2.S2T0SZ, S2SL0: s2.S2SL0, S2TG: s2.S2TG, S2PS: s2.S2PS, S2AA64: s2.S2AA64, S2R: s2.S2R, S2TTB: s2.S2TTB })
      .toEqual({ V: 1, Config: STE_CONFIG.S2_TRANS, S2VMID: 2, S2T0SZ: 25, S2SL0: 1, S2TG: 0, S2PS: 5, S2AA64: 1, S2R: 1, S2TTB: 0x4034_e000n });
    expect(out[15]!).toEqual({ pa: 0x4035_0000, words: [(0x8200_0000 | 0x3 | 0x3c | 0xc0 | 0x300 | 0x400) >>> 0, 0] });
    // Config BYPASS (0b100) and ABORT (0b000) at [3:1], V at [0]; nothing else.
    expect(out[16]!).toEqual({ pa: 0x4034_0100, words: [0b1001, ...new Array<number>(15).fill(0)] });
    expect(out[17]!).toEqual({ pa: 0x4034_0140, words: [0b0001, ...new Array<number>(15).fill(0)] });
    const w32 = new World(SPEC, OAS32, RAM);
    const s2small = decodeStructure(STE, w32.build()[12]!.words).fields;
    expect([s2small.S2T0SZ, s2small.S2PS, worldS2Ia(OAS32), worldS2Ia(FULL_FEATURES), worldS2Ia(parseFeatures('oas=2')), worldS2Ia(parseFeatures('oas=1'))]).toEqual([32, 0, 32, 39, 39, 32]);
  });

  it('map, unmap, setSte and setCd make their stores and update the truth', () => {
    const { w } = world();
    expect(w.map(1, 0x1000_3000, 0x8000_3000)).toEqual([{ pa: 0x4034_a018, words: [0x8000_3f43, 0] }]);
    expect(w.stream(1).pages.get(0x1_0003)).toBe(0x8000_3000);
    expect(w.map(1, 0x4000_0000, 0x9000_0000)).toEqual([
      { pa: 0x4034_8008, words: [0x4035_4003, 0] },
      { pa: 0x4035_4000, words: [0x4035_5003, 0] },
      { pa: 0x4035_5000, words: [0x9000_0f43, 0] },
    ]);
    expect(w.map(3, 0x1000_1000, 0x8200_1000)).toEqual([{ pa: 0x4035_0008, words: [0x8200_17ff, 0] }]);
    expect(w.unmap(1, 0x1000_1234)).toEqual([{ pa: 0x4034_a008, words: [0, 0] }]);
    expect([w.stream(1).pages.has(0x1_0001), w.words.get(0x4034_a008)]).toEqual([false, 0]);
    const ste = w.setSte(1, { vmid: 3 });
    expect([ste.length, ste[0]!.pa, decodeStructure(STE, ste[0]!.words).fields.S2VMID, w.stream(1).vmid]).toEqual([1, 0x4034_0040, 3, 3]);
    const cd = w.setCd(1, 9);
    expect([cd.length, cd[0]!.pa, decodeStructure(CD, cd[0]!.words).fields.ASID, w.stream(1).asid]).toEqual([1, 0x4034_4000, 9, 9]);
    const up = w.setSte(4, { kind: 's1' });
    expect(up.map((s) => s.pa)).toEqual([0x4034_40c0, 0x4034_0100]);
    expect(decodeStructure(CD, up[0]!.words).fields.TTB0).toBe(0x4035_6000n);
    expect(decodeStructure(STE, up[1]!.words).fields).toMatchObject({ Config: STE_CONFIG.S1_TRANS, S1ContextPtr: 0x4034_40c0n });
    expect([w.stream(4).kind, w.stream(4).stage, w.stream(4).ia]).toEqual(['s1', 1, 39]);
  });

  it('a stage 1 stream set to bypass keeps stage 1 descriptors in its tables', () => {
    const w = new World(SPEC, FULL_FEATURES, RAM);
    w.build();
    w.setSte(1, { kind: 'bypass' });
    const leaf = w.map(1, 0x1000_3000, 0x8000_3000).at(-1);
    // Type 0b11, AP 0b01, SH 0b11, AF, nG: a stage 1 page (not S2AP/MemAttr, Arm ARM D8.3).
    expect(leaf!.words).toEqual([0x8000_3f43, 0]);
  });

  it('refuses what its tables cannot express', () => {
    const { w } = world();
    expect(() => w.setSte(1, { kind: 's2' })).toThrow('StreamID 1: its tables are for stage 1, it cannot become s2');
    expect(() => w.setSte(3, { kind: 's1' })).toThrow('StreamID 3: its tables are for stage 2, it cannot become s1');
    expect(() => w.setCd(3, 1)).toThrow('StreamID 3 is s2: it has no CD');
    expect(() => w.map(4, 0, 0)).toThrow('StreamID 4 is bypass: it has no page tables');
    expect(() => w.unmap(5, 0)).toThrow('StreamID 5 is abort: it has no page tables');
    expect(() => w.map(1, 0x1000_0800, 0x8000_0000)).toThrow('map 0x10000800 -> 0x80000000: not 4KB aligned');
    expect(() => w.map(1, 2 ** 39, 0)).toThrow("map 0x8000000000: beyond the stream's 39-bit input range");
    expect(() => w.stream(7)).toThrow('StreamID 7 is not a stream of the world');
    expect(() => new World({ strtabLog2: 4, streams: [st(0, 'bypass', 0, 0, false, [[0, 0]])] }, FULL_FEATURES, RAM).build()).toThrow('StreamID 0 is bypass: it has no page tables to map pages in');
    expect(() => new World({ strtabLog2: 4, streams: [st(16, 's1', 0, 0, false)] }, FULL_FEATURES, RAM)).toThrow('streams[0]: StreamID 16 is beyond the Stream table (2^4 entries)');
    const noS1 = parseFeatures('no-s1');
    expect(() => new World({ strtabLog2: 4, streams: [st(0, 'bypass', 0, 0, false)] }, noS1, RAM).setSte(0, { kind: 's1' })).toThrow('StreamID 0: the features have no stage 1');
    // 184 table pages from 0x34_8000 to 0x40_0000; 12 are in use, each new 1GB region takes two.
    expect(() => { for (let k = 1; k < 512; k++) w.map(1, k * 2 ** 30, 0x8000_0000); }).toThrow("the world's page tables need more than 184 table pages");
    expect(w.stream(1).pages.has((86 * 2 ** 30) / 4096)).toBe(true);
    expect(w.stream(1).pages.has((87 * 2 ** 30) / 4096)).toBe(false);
  });

  it('worldProblems names every problem', () => {
    const p = (streams: WorldStreamSpec[], f: SmmuFeatures, log2 = 4) => worldProblems({ strtabLog2: log2, streams }, f);
    expect(p([], parseFeatures('sidsize=8'), 9)).toEqual(['strtab log2 9 is above SIDSIZE 8', 'strtab log2 9 is above 8']);
    expect(p([st(1, 's1', 0, 0, false), st(1, 'bypass', 0, 0, false)], FULL_FEATURES)).toEqual(['streams[1]: StreamID 1 is listed twice']);
    expect(p([st(0, 's1', 0, 0, false)], parseFeatures('no-s1'))).toEqual(['streams[0]: a stage 1 stream needs IDR0.S1P (the features have no stage 1)']);
    expect(p([st(0, 's2', 0, 0, false)], parseFeatures('no-s2'))).toEqual(['streams[0]: a stage 2 stream needs IDR0.S2P (the features have no stage 2)']);
    expect(p([st(0, 's1', 256, 256, false)], parseFeatures('no-vmid16,no-asid16'))).toEqual(['streams[0]: VMID 256 does not fit 8 bits', 'streams[0]: ASID 256 does not fit 8 bits']);
    expect(p([st(0, 's1', 0, 0, false, [[0x1800, 0x2000]])], FULL_FEATURES)).toEqual(['streams[0]: page 0x1800 -> 0x2000 is not 4KB aligned']);
    expect(p([st(0, 's2', 0, 0, false, [[0x1_0000_0000, 0x1_0000_0000]])], OAS32)).toEqual([
      'streams[0]: input address 0x100000000 is beyond the 32-bit input range',
      'streams[0]: output address 0x100000000 is beyond the 32-bit output range',
    ]);
    expect(p([st(0, 's2', 0, 0, false, [[0x1_0000_0000, 0x1_0000_0000]])], FULL_FEATURES)).toEqual([]);
    expect(p([st(0, 's1', 0, 0, false, [[2 ** 39, 0]])], FULL_FEATURES)).toEqual(['streams[0]: input address 0x8000000000 is beyond the 39-bit input range']);
    expect(p([], parseFeatures('no-gran4k'))).toEqual(['the world uses 4KB granule tables and the features have no 4KB granule']);
  });
});

describe('ReferenceCaches: DMA against the caches (§3.17)', () => {
  it('the first DMA is a walk, the second a TLB hit; stale after a remap until invalidated', () => {
    const { w, c } = world();
    expect(dma(c, 1, 0x1000_0010, hit(0x8000_0010))).toEqual({ ok: false, judged: true, message: 'expected ok pa=0x80000010 (the STE fetched from memory, the CD fetched from memory (ASID 5), a walk); the device answered ok pa=0x80000010 (TLB hit)' });
    expect(dma(c, 1, 0x1000_0010, walk(0x8000_0010))).toEqual(OK);
    expect(dma(c, 1, 0x1000_0020, walk(0x8000_0020)).message).toBe('expected ok pa=0x80000020 (TLB hit) (the cached STE, the cached CD (ASID 5), a TLB hit); the device answered ok pa=0x80000020');
    expect(dma(c, 1, 0x1000_0020, hit(0x8000_0020))).toEqual(OK);
    w.map(1, 0x1000_0000, 0x8800_0000);
    expect(dma(c, 1, 0x1000_0000, walk(0x8800_0000)).message).toBe('expected ok pa=0x80000000 (TLB hit) (the cached STE, the cached CD (ASID 5), a TLB hit); the device answered ok pa=0x88000000');
    expect(dma(c, 1, 0x1000_0000, hit(0x8000_0000))).toEqual(OK);
    expect([c.judged, c.unjudged]).toEqual([6, 0]);
  });

  it('stage 1 and stage 2 Translation faults carry the expected record, and are not cached (§7.3.13)', () => {
    const { w, c } = world();
    const f1 = { StreamID: 1, SSV: 0, S2: 0, CLASS: EVENT_CLASS.IN, RnW: 1, InD: 0, PnU: 0, Stall: 0, InputAddr: 0x1000_5008 };
    expect(dma(c, 1, 0x1000_5008, aborted()).message).toBe('expected abort (event 0x10) (the STE fetched from memory, the CD fetched from memory (ASID 5), a walk that finds no valid descriptor); the device answered abort (no event)');
    expect(dma(c, 1, 0x1000_5008, aborted(EVT.F_TRANSLATION))).toEqual({ ...OK, fault: { name: 'F_TRANSLATION', fields: f1 } });
    w.map(1, 0x1000_5000, 0x8000_5000);
    expect(c.dma(rd(1, 0x1000_5008, true), walk(0x8000_5008), ON)).toEqual(OK);
    expect(c.dma(rd(1, 2 ** 39, true), aborted(EVT.F_TRANSLATION), ON).fault).toEqual({ name: 'F_TRANSLATION', fields: { ...f1, RnW: 0, InputAddr: 2 ** 39 } });
    expect(dma(c, 2, 0x1000_1000, aborted())).toEqual(OK); // CD.R == 0: nothing recorded
    expect(dma(c, 2, 0x1000_1000, aborted(EVT.F_TRANSLATION)).ok).toBe(false);
    const f2 = { StreamID: 3, SSV: 0, S2: 1, CLASS: EVENT_CLASS.IN, RnW: 1, InD: 0, PnU: 0, Stall: 0 };
    expect(dma(c, 3, 0x1000_7010, aborted(EVT.F_TRANSLATION)).fault).toEqual({ name: 'F_TRANSLATION', fields: { ...f2, InputAddr: 0x1000_7010, IPA: 0x1000_7000 } });
    // §3.4: beyond the 39-bit stage 2 input range but within the IAS: a stage 2 Translation fault.
    expect(dma(c, 3, 2 ** 40 + 0x10, aborted(EVT.F_TRANSLATION)).fault).toEqual({ name: 'F_TRANSLATION', fields: { ...f2, InputAddr: 2 ** 40 + 0x10, IPA: 2 ** 40 } });
    expect(dma(c, 5, 0x1000, aborted())).toEqual(OK); // Config ABORT: no event
  });

  it('with a 32-bit OAS, bypass and stage 2 addresses beyond it are stage 1 Address Size faults (§3.4)', () => {
    const { c } = world(OAS32);
    expect(dma(c, 4, 0xffff_f000, passed(0xffff_f000))).toEqual(OK);
    const fields = { StreamID: 4, SSV: 0, S2: 0, CLASS: EVENT_CLASS.IN, RnW: 1, InD: 0, PnU: 0, Stall: 0, InputAddr: 0x1_0000_0000 };
    expect(dma(c, 4, 0x1_0000_0000, aborted(EVT.F_ADDR_SIZE))).toEqual({ ...OK, fault: { name: 'F_ADDR_SIZE', fields } });
    expect(dma(c, 3, 0x1_0000_0000, aborted(EVT.F_ADDR_SIZE)).fault).toEqual({ name: 'F_ADDR_SIZE', fields: { ...fields, StreamID: 3 } });
    expect(c.dma(rd(4, 0x1_0000_0000), aborted(), { smmuEn: false, gbpaAbort: false })).toEqual(OK);
  });

  it('SMMUEN == 0 bypasses or aborts by GBPA without the caches (§3.4, §6.3.14)', () => {
    const { c } = world();
    const off = { smmuEn: false, gbpaAbort: false };
    expect(c.dma(rd(1, 0x1000_0000), walk(0x8000_0000), off).message).toBe('SMMUEN == 0: expected ok pa=0x10000000 (bypass) by GBPA, the device answered ok pa=0x80000000');
    expect(c.dma(rd(1, 0x1000_0000), passed(0x1000_0000), off)).toEqual(OK);
    expect(c.dma(rd(1, 0x1000_0000), passed(0x1000_0000), { smmuEn: false, gbpaAbort: true }).message).toBe('SMMUEN == 0: expected abort (no event) by GBPA, the device answered ok pa=0x10000000 (bypass)');
    expect(c.dma(rd(1, 0x1000_0000), aborted(), { smmuEn: false, gbpaAbort: true })).toEqual(OK);
    expect(dma(c, 1, 0x1000_0000, hit(0x8000_0000)).ok).toBe(false); // nothing was cached
  });

  it('faultDiffs names the wrong field; faultRecord round-trips', () => {
    const { c } = world();
    const exp = dma(c, 3, 0x1000_7010, aborted(EVT.F_TRANSLATION)).fault!;
    expect(ReferenceCaches.faultDiffs(exp, [...ReferenceCaches.faultRecord(exp)])).toEqual([]);
    expect(ReferenceCaches.faultDiffs(exp, [...encodeEvent({ name: 'F_TRANSLATION', ...exp.fields, StreamID: 2 })])).toEqual(['StreamID = 0x2, expected 0x3']);
    expect(ReferenceCaches.faultDiffs(exp, [...encodeEvent({ name: 'F_TRANSLATION', ...exp.fields, IPA: 0x1000_8000 })])).toEqual(['IPA = 0x10008000, expected 0x10007000']);
    expect(ReferenceCaches.faultDiffs(exp, [...encodeEvent({ name: 'F_ADDR_SIZE', ...exp.fields })])).toEqual(['event F_ADDR_SIZE, expected F_TRANSLATION']);
  });

  it('checkMemory: a changed world word stops judging; other words do not', () => {
    const { w, c } = world();
    c.checkMemory(new Map([[w.steAddress(1), 0x4034_400b], [RAM, 7], [RAM + 0x40_0000, 1], [0x4035_f000, 0]]));
    expect(c.disturbed).toBeUndefined();
    c.checkMemory(new Map([[0x4034_a000, 0x1234]]));
    expect(c.disturbed).toBe("RAM at 0x4034a000, in the translation world's tables, was overwritten with 0x1234");
    expect(dma(c, 1, 0x1000_0000, hit(0x1234))).toEqual({ ok: true, judged: false });
    expect([c.judged, c.unjudged]).toEqual([0, 1]);
    const other = world().c;
    expect(other.dma(rd(1, 0), passed(0), { ...ON, strtabMoved: 'SMMU_STRTAB_BASE changed' })).toEqual({ ok: true, judged: false });
    expect(other.disturbed).toBe('SMMU_STRTAB_BASE changed');
  });
});

describe('ReferenceCaches: TLB invalidation scope (§4.4)', () => {
  const VA = 0x1000_0000;
  it.each<[string, CommandInput, Record<string, string>]>([
    ['NH_VA (§4.4.2.4): that VMID, ASID and page only', { name: 'CMD_TLBI_NH_VA', VMID: 1, ASID: 5, Address: VA }, { '1:10000000': 'miss' }],
    ['NH_VA in another VMID: nothing', { name: 'CMD_TLBI_NH_VA', VMID: 2, ASID: 5, Address: VA }, {}],
    ['NH_ASID (§4.4.2.2): every page of that ASID', { name: 'CMD_TLBI_NH_ASID', VMID: 1, ASID: 5 }, { '1:10000000': 'miss', '1:10001000': 'miss', '1:10002000': 'miss' }],
    ['NH_ALL (§4.4.2.1): stage 1 of the VMID, not its stage 2', { name: 'CMD_TLBI_NH_ALL', VMID: 1 }, { '1:10000000': 'miss', '1:10001000': 'miss', '1:10002000': 'miss', '2:10000000': 'miss' }],
    ['NH_VAA (§4.4.2.3): the page in every ASID of the VMID', { name: 'CMD_TLBI_NH_VAA', VMID: 1, Address: VA }, { '1:10000000': 'miss', '2:10000000': 'miss' }],
    ['S12_VMALL (§4.4.3.2): both stages of the VMID', { name: 'CMD_TLBI_S12_VMALL', VMID: 1 }, { '1:10000000': 'miss', '1:10001000': 'miss', '1:10002000': 'miss', '2:10000000': 'miss', '6:10000000': 'miss' }],
    ['S2_IPA (§4.4.3.1): stage 2 only, not stage 1 at the same address', { name: 'CMD_TLBI_S2_IPA', VMID: 1, Address: VA }, { '6:10000000': 'miss' }],
    ['NSNH_ALL (§4.4.4.1): everything', { name: 'CMD_TLBI_NSNH_ALL' }, Object.fromEntries(ENTRIES.map(([s, i]) => [`${s}:${i.toString(16)}`, 'miss']))],
    ['range (§4.4.1.1) TG=4KB NUM=1 SCALE=0: two pages', { name: 'CMD_TLBI_NH_VA', VMID: 1, ASID: 5, Address: VA, TG: 1, NUM: 1, SCALE: 0, TTL: 0 }, { '1:10000000': 'miss', '1:10001000': 'miss' }],
    ['range TG=4KB NUM=0 SCALE=1 TTL=3: two pages', { name: 'CMD_TLBI_NH_VA', VMID: 1, ASID: 5, Address: 0x1000_1000, TG: 1, NUM: 0, SCALE: 1, TTL: 3 }, { '1:10001000': 'miss', '1:10002000': 'miss' }],
    ['TG=16KB (§4.4.1.1): 4 pages, not the world granule', { name: 'CMD_TLBI_NH_VA', VMID: 1, ASID: 5, Address: VA, TG: 2, NUM: 0, SCALE: 0, TTL: 3 }, { '1:10000000': 'maybe', '1:10001000': 'maybe', '1:10002000': 'maybe' }],
    ['TTL=2: not the leaf level', { name: 'CMD_TLBI_NH_VA', VMID: 1, ASID: 5, Address: VA, TG: 1, NUM: 0, SCALE: 0, TTL: 2 }, { '1:10000000': 'maybe' }],
    ['TTL128=1: 128-bit descriptors only', { name: 'CMD_TLBI_NH_VA', VMID: 1, ASID: 5, Address: VA, TG: 1, NUM: 0, SCALE: 0, TTL: 3, TTL128: 1 }, { '1:10000000': 'maybe' }],
    ['a top byte that TBI may or may not ignore (§4.4.2)', { name: 'CMD_TLBI_NH_VAA', VMID: 1, Address: 0x1200_0000_1000_0000n }, { '1:10000000': 'maybe', '2:10000000': 'maybe' }],
    ['EL2_ALL (§4.4.2.7): EL1 entries untouched', { name: 'CMD_TLBI_EL2_ALL' }, {}],
    ['EL2_ASID', { name: 'CMD_TLBI_EL2_ASID', ASID: 5 }, {}],
    ['EL2_VA', { name: 'CMD_TLBI_EL2_VA', ASID: 5, Address: VA }, {}],
    ['EL2_VAA', { name: 'CMD_TLBI_EL2_VAA', Address: VA }, {}],
    ['CFGI_ALL does not touch the TLB (§4.3.1)', { name: 'CMD_CFGI_ALL' }, {}],
  ])('%s', (_, input, changes) => {
    expect(scope(input)).toEqual(only(changes));
  });

  it('an out-of-range parameter (§4.1.7) makes every TLB entry maybe', () => {
    expect(scope({ name: 'CMD_TLBI_NH_VA', VMID: 1, ASID: 5, Address: VA }, ['va-out-of-range'])).toEqual(ALL_HIT.map((x) => x.replace('hit', 'maybe')));
  });

  it('after a maybe, the state follows what the device showed', () => {
    const tg16 = { name: 'CMD_TLBI_NH_VA', VMID: 1, ASID: 5, Address: VA, TG: 2, NUM: 0, SCALE: 0, TTL: 3 };
    const a = stale(tg16).c;
    expect(dma(a, 1, VA, walk(0x9000_0000))).toEqual(OK);
    expect(dma(a, 1, VA, hit(0x8000_0000)).message).toBe('expected ok pa=0x90000000 (TLB hit) (the cached STE, the cached CD (ASID 5), a TLB hit); the device answered ok pa=0x80000000 (TLB hit)');
    expect(dma(a, 1, VA, hit(0x9000_0000))).toEqual(OK);
    const b = stale(tg16).c;
    expect(dma(b, 1, VA, hit(0x8000_0000))).toEqual(OK);
    expect(dma(b, 1, VA, walk(0x9000_0000)).ok).toBe(false);
    expect(dma(b, 1, VA, hit(0x8000_0000))).toEqual(OK);
  });

  it('a fault after a maybe shows the entry is gone: a later stale hit is refused (§7.3.13, faults are not cached)', () => {
    const { w, c } = stale({ name: 'CMD_TLBI_NH_VA', VMID: 1, ASID: 5, Address: VA, TG: 2, NUM: 0, SCALE: 0, TTL: 3 });
    w.unmap(1, VA);
    expect(dma(c, 1, VA, aborted(0x10))).toMatchObject({ ok: true, fault: { name: 'F_TRANSLATION' } });
    expect(dma(c, 1, VA, hit(0x8000_0000)).ok).toBe(false);
    expect(dma(c, 1, VA, aborted(0x10)).ok).toBe(true);
  });
});

describe('ReferenceCaches: configuration invalidation (§4.3) and prefetch (§4.2)', () => {
  const VA = 0x1000_0000;
  it('CFGI_STE drops the STE and the CD cached through it, not the TLB (§4.3.1)', () => {
    const { w, c } = world();
    expect(dma(c, 1, VA, walk(0x8000_0000))).toEqual(OK);
    w.setCd(1, 9);
    cmd(c, { name: 'CMD_CFGI_STE', StreamID: 2, Leaf: 1 });
    expect(dma(c, 1, VA, walk(0x8000_0000)).message).toBe('expected ok pa=0x80000000 (TLB hit) (the cached STE, the cached CD (ASID 5), a TLB hit); the device answered ok pa=0x80000000');
    cmd(c, { name: 'CMD_CFGI_STE', StreamID: 1, Leaf: 1 });
    expect(dma(c, 1, VA, hit(0x8000_0000)).message).toBe('expected ok pa=0x80000000 (the STE fetched from memory, the CD fetched from memory (ASID 9), a walk); the device answered ok pa=0x80000000 (TLB hit)');
    expect(dma(c, 1, VA, walk(0x8000_0000))).toEqual(OK);
    // Back to ASID 5 through CFGI_CD: its TLB entries survived both CFGIs.
    w.setCd(1, 5);
    cmd(c, { name: 'CMD_CFGI_CD', StreamID: 1, SubstreamID: 0, Leaf: 1 });
    expect(dma(c, 1, VA, hit(0x8000_0000))).toEqual(OK);
  });

  it('CFGI_CD with SubstreamID 1 misses the one CD at index 0; CFGI_CD_ALL drops it but not the STE (§4.3.3, §4.3.4)', () => {
    const { w, c } = world();
    expect(dma(c, 1, VA, walk(0x8000_0000))).toEqual(OK);
    w.setCd(1, 9);
    w.setSte(1, { kind: 'bypass' });
    cmd(c, { name: 'CMD_CFGI_CD', StreamID: 1, SubstreamID: 1, Leaf: 1 });
    expect(dma(c, 1, VA, walk(0x8000_0000)).ok).toBe(false);
    cmd(c, { name: 'CMD_CFGI_CD_ALL', StreamID: 1 });
    expect(dma(c, 1, VA, passed(VA)).message).toBe('expected ok pa=0x80000000 (the cached STE, the CD fetched from memory (ASID 9), a walk); the device answered ok pa=0x10000000 (bypass)');
    expect(dma(c, 1, VA, walk(0x8000_0000))).toEqual(OK);
  });

  it('CFGI_STE_RANGE drops an aligned block of 2^(Range+1) StreamIDs; CFGI_ALL every one (§4.3.2, §4.3.6)', () => {
    const { w, c } = world();
    for (const [sid, pa] of [[1, 0x8000_0000], [2, 0x8100_0000], [3, 0x8200_0000]] as const) {
      expect(dma(c, sid, VA, walk(pa))).toEqual(OK);
      w.setSte(sid, { kind: 'bypass' });
    }
    cmd(c, { name: 'CMD_CFGI_STE_RANGE', StreamID: 3, Range: 0 });
    expect(dma(c, 2, VA, passed(VA))).toEqual(OK);
    expect(dma(c, 3, VA, passed(VA))).toEqual(OK);
    expect(dma(c, 1, VA, passed(VA)).message).toBe('expected ok pa=0x80000000 (TLB hit) (the cached STE, the cached CD (ASID 5), a TLB hit); the device answered ok pa=0x10000000 (bypass)');
    cmd(c, { name: 'CMD_CFGI_ALL' });
    expect(dma(c, 1, VA, passed(VA))).toEqual(OK);
  });

  it('an out-of-range CFGI may or may not have dropped the configuration (§4.1.7)', () => {
    const run = (got: DmaOutcome) => {
      const { w, c } = world();
      expect(dma(c, 1, VA, walk(0x8000_0000))).toEqual(OK);
      w.setCd(1, 9);
      cmd(c, { name: 'CMD_CFGI_CD', StreamID: 1, SubstreamID: 0 }, ['substreamid-out-of-range']);
      return dma(c, 1, VA, got);
    };
    expect([run(hit(0x8000_0000)), run(walk(0x8000_0000))]).toEqual([OK, OK]);
  });

  it('PREFETCH_CONFIG may cache the STE and CD as memory holds them now (§4.2.1)', () => {
    const run = (prefetch: boolean, got: DmaOutcome) => {
      const { w, c } = world();
      if (prefetch) cmd(c, { name: 'CMD_PREFETCH_CONFIG', StreamID: 1 });
      w.setSte(1, { kind: 'bypass' });
      return { c, v: dma(c, 1, VA, got) };
    };
    expect(run(false, walk(0x8000_0000)).v.message).toBe('expected ok pa=0x10000000 (bypass) (the STE fetched from memory bypasses); the device answered ok pa=0x80000000');
    expect(run(true, passed(VA)).v).toEqual(OK);
    const { c, v } = run(true, walk(0x8000_0000));
    expect(v).toEqual(OK);
    expect(dma(c, 1, VA, passed(VA)).ok).toBe(false); // the prefetched STE is now known to be cached
    expect(dma(c, 1, VA, hit(0x8000_0000))).toEqual(OK);
  });
});
