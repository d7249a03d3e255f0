/**
 * Translation table walks through the Translator (IHI0070 G.b §3.3, §3.4, §13.4; VMSAv8-64 formats
 * from the A-profile architecture): granules, start levels, blocks and pages, stage 2 concatenation,
 * nesting, permissions, HTTU, and every translation fault with its event record checked field by
 * field against the §7.3 layout.
 */
import { describe, expect, it } from 'vitest';
import { decodeEvent, EVENT_CLASS, EVT } from '../../src/spec/events.ts';
import { STE_CONFIG } from '../../src/spec/structures.ts';
import { stage1Params, stage2Params, bits64, descOutput, OA_MODE } from '../../src/device/walk.ts';
import type { TranslateResult } from '../../src/device/translate.ts';
import {
  bed, cdFields, cdWords, G16K, G4K, G64K, linearStreamTable, PageTable, RAM_BASE, s2Fields, steWords,
  type Bed, type CdValues, type LeafAttrs, type SteValues,
} from '../helpers/tables.ts';
import { FULL_FEATURES } from '../../src/spec/features.ts';

const SID = 3;
const ASID = 7;
const VMID = 9;

/** A stage-1-only stream (SID) with one CD and a TTB0 table. */
function s1(b: Bed, g: number, ia: number, cd: CdValues = {}, ste: SteValues = {}): PageTable {
  const st = linearStreamTable(b, 6);
  const pt = new PageTable(b.mem, b.alloc, g, ia, PageTable.s1Start(g, ia), 1);
  const cdAddr = b.alloc.alloc(64, 64, 'CD');
  b.mem.writeWords(cdAddr, cdWords(cdFields(pt, ASID, cd)));
  b.mem.writeWords(st.ste(SID), steWords({ Config: STE_CONFIG.S1_TRANS, S1ContextPtr: BigInt(cdAddr), S2VMID: VMID, ...ste }));
  return pt;
}

function ok(r: TranslateResult): { pa: number; cached: boolean; perm: number } {
  if (!r.ok) throw new Error(`expected a translation, got ${r.fault}: ${r.reason}`);
  return r;
}

function fields(r: TranslateResult): Record<string, number | bigint> {
  if (r.ok) throw new Error(`expected a fault, got PA 0x${r.pa.toString(16)}`);
  if (r.event === undefined) throw new Error(`fault ${r.fault} was not recorded`);
  return decodeEvent(r.event).fields;
}

describe('stage 1 walks, three granules (§3.3, VMSAv8-64)', () => {
  const cases = [
    { g: G4K, tg: 0, ia: 48, start: 0, block: 2, blockBytes: 2 ** 21 },
    { g: G16K, tg: 2, ia: 47, start: 1, block: 2, blockBytes: 2 ** 25 },
    { g: G64K, tg: 1, ia: 42, start: 2, block: 2, blockBytes: 2 ** 29 },
  ];
  for (const c of cases) {
    it(`${2 ** (c.g - 10)}KB granule: page at level 3 and block at level ${c.block}, start level ${c.start}`, () => {
      const b = bed();
      expect(PageTable.s1Start(c.g, c.ia)).toBe(c.start);
      const pt = s1(b, c.g, c.ia, { TG0: c.tg });
      const va = 7 * 2 ** c.g * 3;
      pt.map(va, 0x8765 * 2 ** c.g);
      const r = ok(b.tr.translate(SID, -1, va + 0x123, { read: true }));
      expect(r.pa).toBe(0x8765 * 2 ** c.g + 0x123);
      expect(r.cached).toBe(false);
      expect(ok(b.tr.translate(SID, -1, va + 0x456, { read: true }))).toMatchObject({ pa: 0x8765 * 2 ** c.g + 0x456, cached: true });
      // A block: the output keeps the input's offset within the block.
      const bva = 5 * c.blockBytes;
      pt.map(bva, 3 * c.blockBytes, c.block);
      const off = c.blockBytes - 8;
      expect(ok(b.tr.translate(SID, -1, bva + off, { read: true })).pa).toBe(3 * c.blockBytes + off);
      // The whole block is one TLB entry.
      expect(ok(b.tr.translate(SID, -1, bva + 0x1000, { read: true })).cached).toBe(true);
    });
  }

  it('64KB granule with a 52-bit OAS: OA[51:48] in descriptor bits [15:12] (FEAT_LPA layout)', () => {
    const b = bed();
    const st = linearStreamTable(b, 6);
    const pt = new PageTable(b.mem, b.alloc, G64K, 52, PageTable.s1Start(G64K, 52), 1, 'lpa');
    const cdAddr = b.alloc.alloc(64, 64);
    b.mem.writeWords(cdAddr, cdWords(cdFields(pt, 1, { TG0: 1, T0SZ: 12, IPS: 0b110 })));
    b.mem.writeWords(st.ste(SID), steWords({ Config: STE_CONFIG.S1_TRANS, S1ContextPtr: BigInt(cdAddr) }));
    const out = 0xa_bcde_f123_0000;
    pt.map(0xf_0000_0000_0000, out);
    expect(ok(b.tr.translate(SID, -1, 0xf_0000_0000_0042, { read: true })).pa).toBe(out + 0x42);
  });

  it('4KB granule with DS: level -1 start and OA[51:50] in bits [9:8] (FEAT_LPA2 layout)', () => {
    const b = bed();
    const st = linearStreamTable(b, 6);
    expect(PageTable.s1Start(G4K, 52)).toBe(-1);
    const pt = new PageTable(b.mem, b.alloc, G4K, 52, -1, 1, 'ds');
    const cdAddr = b.alloc.alloc(64, 64);
    b.mem.writeWords(cdAddr, cdWords(cdFields(pt, 1, { T0SZ: 12, IPS: 0b110, DS: 1 })));
    b.mem.writeWords(st.ste(SID), steWords({ Config: STE_CONFIG.S1_TRANS, S1ContextPtr: BigInt(cdAddr) }));
    const out = 0xf_2345_6789_a000;
    pt.map(0x8_0000_1234_5000, out);
    expect(ok(b.tr.translate(SID, -1, 0x8_0000_1234_5008, { read: true })).pa).toBe(out + 8);
  });

  it('TTB1: VA[55] selects the upper range; addresses must be sign-extended unless TBI1', () => {
    const b = bed();
    const st = linearStreamTable(b, 6);
    const pt0 = new PageTable(b.mem, b.alloc, G4K, 39, 1, 1);
    const pt1 = new PageTable(b.mem, b.alloc, G4K, 39, 1, 1);
    pt0.map(0x1000, 0x10_0000);
    pt1.map(0x1000, 0x20_0000); // low 39 bits of 0xffff_ff80_0000_1000
    const cdAddr = b.alloc.alloc(64, 64);
    b.mem.writeWords(cdAddr, cdWords({ T0SZ: 25, T1SZ: 25, TG1: 0b10, IPS: 0b101, ASID: 1, TTB0: BigInt(pt0.root), TTB1: BigInt(pt1.root) }));
    b.mem.writeWords(st.ste(SID), steWords({ Config: STE_CONFIG.S1_TRANS, S1ContextPtr: BigInt(cdAddr) }));
    expect(ok(b.tr.translate(SID, -1, 0xffff_ff80_0000_1010n, { read: true })).pa).toBe(0x20_0010);
    expect(ok(b.tr.translate(SID, -1, 0x1010, { read: true })).pa).toBe(0x10_0010);
    // Top byte not a sign extension of bit 55: Translation fault (TBI1 == 0).
    expect(b.tr.translate(SID, -1, 0x00ff_ff80_0000_1010n, { read: true })).toMatchObject({ ok: false, fault: 'F_TRANSLATION' });
  });

  it('TBI0 ignores VA[63:56] for the range check and the translation', () => {
    const b = bed();
    const pt = s1(b, G4K, 48, { TBI0: 1 });
    pt.map(0x5000, 0x9000);
    expect(ok(b.tr.translate(SID, -1, 0xab00_0000_0000_5004n, { read: true })).pa).toBe(0x9004);
  });

  it('EPD0 == 1: a TLB miss in the TTB0 range is a Translation fault (§5.4.1.1)', () => {
    const b = bed();
    s1(b, G4K, 48, { EPD0: 1, TTB0: 0n });
    const r = b.tr.translate(SID, -1, 0x5000, { read: true });
    expect(r).toMatchObject({ ok: false, fault: 'F_TRANSLATION', reason: 'TTB0 walks are disabled (CD.EPD0 == 1)' });
  });
});

describe('stage 1 parameters and start levels (§5.4, A-profile TxSZ rules)', () => {
  const f = FULL_FEATURES;
  it('derives the start level from TxSZ and aligns TTB to the starting table', () => {
    expect(stage1Params(f, 16, G4K, false, 5, 0x4000_1fff, '0')).toMatchObject({ start: 0, ia: 48, ttb: 0x4000_1000, ps: 48, tg: 1 });
    expect(stage1Params(f, 25, G4K, false, 5, 0x4000_1000, '0')).toMatchObject({ start: 1 });
    expect(stage1Params(f, 33, G4K, false, 5, 0x4000_1000, '0')).toMatchObject({ start: 1, ttb: 0x4000_1000 });
    expect(stage1Params(f, 34, G4K, false, 5, 0x4000_1000, '0')).toMatchObject({ start: 2, ttb: 0x4000_1000 });
    expect(stage1Params(f, 17, G16K, false, 5, 0x4000_4000, '0')).toMatchObject({ start: 1, tg: 2 });
    expect(stage1Params(f, 16, G16K, false, 5, 0x4000_4000, '0')).toMatchObject({ start: 0 });
    expect(stage1Params(f, 12, G64K, false, 6, 0x4000_0000, '0')).toMatchObject({ start: 1, ps: 52, tg: 3 });
  });
  it('rejects TxSZ outside 16..39 (12 with 52-bit VAs) and TTBs beyond the IPS (CD ILLEGAL)', () => {
    expect(stage1Params(f, 40, G4K, false, 5, 0, '0')).toBe('CD.T0SZ == 40 is outside 16..39');
    expect(stage1Params(f, 15, G4K, false, 5, 0, '0')).toBe('CD.T0SZ == 15 is outside 16..39');
    expect(stage1Params(f, 12, G64K, false, 6, 0, '1')).not.toBeTypeOf('string');
    expect(stage1Params({ ...f, vax: 0 }, 12, G64K, false, 6, 0, '1')).toBe('CD.T1SZ == 12 is outside 16..39');
    expect(stage1Params(f, 16, G4K, false, 0, 2 ** 32, '0')).toBe('CD.TTB0 0x100000000 is outside the 32-bit IPA size');
    expect(stage1Params(f, 16, 0, false, 5, 0, '0')).toBe('CD.TG0 is Reserved');
    expect(stage1Params({ ...f, gran16k: false }, 16, G16K, false, 5, 0, '0')).toBe("CD.TG0 selects a 16KB granule, which SMMU_IDR5 does not support");
    // IPS 52 with a 4KB granule and no DS is effectively 48 bits.
    expect(stage1Params(f, 16, G4K, false, 6, 0, '0')).toMatchObject({ ps: 48 });
  });
});

describe('stage 2 parameters (§5.2 S2T0SZ/S2SL0/S2TG, A-profile S2InconsistentSL)', () => {
  const f = FULL_FEATURES;
  it('start levels by SL0 and granule, with up to 16 concatenated tables', () => {
    expect(stage2Params(f, 24, 1, 0, 0, false, 5, 0x4000_0000)).toMatchObject({ start: 1, ia: 40 });
    expect(stage2Params(f, 16, 2, 0, 0, false, 5, 0x4000_0000)).toMatchObject({ start: 0 });
    expect(stage2Params(f, 34, 0, 0, 0, false, 5, 0x4000_0000)).toMatchObject({ start: 2 });
    expect(stage2Params(f, 21, 1, 0, 0, false, 5, 0x4000_0000)).toMatchObject({ start: 1, ttb: 0x4000_0000 }); // 43 bits: 16 tables
    expect(stage2Params(f, 21, 1, 0, 0, false, 5, 0x4000_8000)).toMatchObject({ ttb: 0x4000_0000 }); // aligned to 16 × 4KB
    expect(stage2Params(f, 25, 1, 0, 2, false, 5, 0x4000_0000)).toMatchObject({ start: 2, g: G16K });
    expect(stage2Params(f, 22, 1, 0, 1, false, 5, 0x4000_0000)).toMatchObject({ start: 2, g: G64K });
  });
  it('rejects inconsistent SL0/T0SZ, Reserved SL0, TTB beyond S2PS', () => {
    expect(stage2Params(f, 20, 1, 0, 0, false, 5, 0)).toBe('STE.S2SL0 (start level 1) is inconsistent with STE.S2T0SZ == 20');
    expect(stage2Params(f, 34, 1, 0, 0, false, 5, 0)).toBe('STE.S2SL0 (start level 1) is inconsistent with STE.S2T0SZ == 34');
    expect(stage2Params(f, 24, 3, 0, 0, false, 5, 0)).toBe('STE.S2SL0 == 3 is invalid for the 4KB granule');
    expect(stage2Params(f, 24, 3, 0, 1, false, 5, 0)).toBe('STE.S2SL0 == 3 is invalid for the 64KB granule');
    expect(stage2Params(f, 24, 1, 0, 3, false, 5, 0)).toBe('STE.S2TG is Reserved');
    expect(stage2Params(f, 40, 0, 0, 0, false, 5, 0)).toBe('STE.S2T0SZ == 40 is outside 16..39');
    expect(stage2Params(f, 24, 1, 0, 0, false, 1, 2 ** 36)).toBe('STE.S2TTB 0x1000000000 is outside the 36-bit output size');
  });
});

describe('descriptor helpers', () => {
  it('bits64 reads fields across the word boundary', () => {
    expect(bits64(0x1, 0x8000_0000, 31, 2)).toBe(0b11);
    expect(bits64(0xabcd, 0, 32, 16)).toBe(0xabcd);
    expect(bits64(0, 0x0000_3000, 12, 9)).toBe(3);
  });
  it('descOutput places the address per layout', () => {
    expect(descOutput(0x1234_5003, 0x0000_00ab, G4K, OA_MODE.BITS48)).toBe(0xab_1234_5000);
    expect(descOutput(0x1234_f003, 0, G64K, OA_MODE.LPA)).toBe(0xf_0000_1234_0000);
    expect(descOutput(0x0000_0303, 0x0002_0000, G4K, OA_MODE.DS)).toBe(0xe_0000_0000_0000);
  });
});

describe('stage 2 and nested walks', () => {
  it('stage-2-only: concatenated level 1 tables (IPA bit 39 selects the second table)', () => {
    const b = bed();
    const st = linearStreamTable(b, 6);
    const pt = new PageTable(b.mem, b.alloc, G4K, 40, 1, 2);
    expect(pt.tableBytes(1)).toBe(8192);
    pt.map(0x80_1234_5000, 0x5_0000);
    pt.map(0x1000, 0x6_0000);
    b.mem.writeWords(st.ste(SID), steWords({ Config: STE_CONFIG.S2_TRANS, ...s2Fields(pt, VMID) }));
    expect(ok(b.tr.translate(SID, -1, 0x80_1234_5abc, { write: true })).pa).toBe(0x5_0abc);
    expect(ok(b.tr.translate(SID, -1, 0x1abc, { read: true })).pa).toBe(0x6_0abc);
  });

  it('stage-2-only 16KB and 64KB granules with level 2 blocks', () => {
    for (const [g, tg, sl0, t0sz, blk] of [[G16K, 2, 1, 25, 2 ** 25], [G64K, 1, 1, 22, 2 ** 29]] as const) {
      const b = bed();
      const st = linearStreamTable(b, 6);
      const pt = new PageTable(b.mem, b.alloc, g, 64 - t0sz, 2, 2);
      pt.map(3 * blk, 7 * blk, 2);
      b.mem.writeWords(st.ste(SID), steWords({ Config: STE_CONFIG.S2_TRANS, ...s2Fields(pt, VMID, { S2TG: tg, S2SL0: sl0 }) }));
      expect(ok(b.tr.translate(SID, -1, 3 * blk + 0x777, { read: true })).pa).toBe(7 * blk + 0x777);
    }
  });

  it('nested: CD and stage 1 tables live in IPA space; combined entry is the smaller of the two leaves', () => {
    const b = bed();
    const n = nested(b);
    // Stage 1 maps a 2MB block VA 0x4020_0000 → IPA 0x8000_0000; stage 2 maps that IPA page by page.
    n.s1.map(0x4020_0000, 0x8000_0000, 2);
    n.s2.map(0x8000_3000, RAM_BASE + 0x70_0000);
    const r = ok(b.tr.translate(SID, -1, 0x4020_3010, { read: true }));
    expect(r.pa).toBe(RAM_BASE + 0x70_0010);
    expect(ok(b.tr.translate(SID, -1, 0x4020_3ff0, { read: true })).cached).toBe(true);
    // Another page of the same stage 1 block needs its own stage 2 translation.
    expect(b.tr.translate(SID, -1, 0x4020_4000, { read: true })).toMatchObject({ ok: false, fault: 'F_TRANSLATION' });
  });
});

/**
 * A nested stream: stage 2 identity-maps the RAM pages that hold the CD and the stage 1 tables
 * (IPA == PA for them), so stage 1 structures are written at their PAs and named by IPA.
 */
function nested(b: Bed, ste: SteValues = {}, cd: CdValues = {}): { s1: PageTable; s2: PageTable; cdAddr: number } {
  const st = linearStreamTable(b, 6);
  const s2 = new PageTable(b.mem, b.alloc, G4K, 40, 1, 2);
  // Stage 1 tables and the CD come from a RAM region that stage 2 identity-maps below.
  const region = b.alloc.alloc(0x10_0000, 0x1000, 'stage 1 region');
  const sub = { next: region };
  const alloc = { alloc: (bytes: number, align: number) => { const a = Math.ceil(sub.next / align) * align; sub.next = a + bytes; return a; } };
  const cdAddr = alloc.alloc(64, 64);
  const s1 = new PageTable(b.mem, alloc as never, G4K, 39, 1, 1);
  for (let pa = region; pa < region + 0x10_0000; pa += 0x1000) s2.map(pa, pa);
  b.mem.writeWords(cdAddr, cdWords(cdFields(s1, ASID, { T0SZ: 25, ...cd })));
  b.mem.writeWords(st.ste(SID), steWords({ Config: STE_CONFIG.NESTED, S1ContextPtr: BigInt(cdAddr), ...s2Fields(s2, VMID), ...ste }));
  return { s1, s2, cdAddr };
}

describe('translation faults and their records (§7.3.12-§7.3.16)', () => {
  it('F_TRANSLATION record words, stage 1 (§7.3.13; positions of §7.3 / fact sheet §7.1)', () => {
    const b = bed();
    s1(b, G4K, 48);
    const r = b.tr.translate(SID, -1, 0x1234_5678_9abc, { read: true, exec: true, priv: true });
    if (r.ok || r.event === undefined) throw new Error('expected a record');
    // word0: EventID 0x10; word1: StreamID; word2: STAG 0, Stall 0; word3: PnU [97] = bit 1,
    // InD [98] = bit 2, RnW [99] = bit 3, S2 [103] = 0, CLASS [105:104] = 0b10 (IN) at bits 9:8;
    // words 4-5: InputAddr; words 6-7: IPA (UNKNOWN for stage 1, written as 0).
    expect([...r.event]).toEqual([0x10, SID, 0, 0b10_0000_1110, 0x5678_9abc, 0x1234, 0, 0]);
  });

  it('F_ADDR_SIZE at stage 1: output beyond CD.IPS', () => {
    const b = bed();
    const pt = s1(b, G4K, 48, { IPS: 0 });
    pt.map(0x7000, 0x1_0000_0000);
    const r = b.tr.translate(SID, -1, 0x7008, { write: true });
    expect(r).toMatchObject({ ok: false, fault: 'F_ADDR_SIZE', reason: 'output address 0x100000000 is beyond the 32-bit output size' });
    expect(fields(r)).toMatchObject({ EventID: EVT.F_ADDR_SIZE, StreamID: SID, S2: 0, CLASS: EVENT_CLASS.IN, RnW: 0, InD: 0, PnU: 0, InputAddr: 0x7008n });
  });

  it('F_ADDR_SIZE at stage 1 from a table descriptor', () => {
    const b = bed();
    const pt = s1(b, G4K, 48, { IPS: 0 });
    pt.raw(0x7000, 2, 0x0000_0003, 0x0000_0001); // table at 0x1_0000_0000
    expect(b.tr.translate(SID, -1, 0x7000, { read: true })).toMatchObject({ fault: 'F_ADDR_SIZE', reason: 'level 2 table descriptor points at 0x100000000, beyond the 32-bit output size' });
  });

  it('F_ACCESS (AF == 0), suppressed by CD.AFFD, fixed by CD.HA (HTTU sets AF in memory)', () => {
    const b = bed();
    const pt = s1(b, G4K, 48);
    pt.map(0x3000, 0x9000, 3, { af: 0 });
    const r = b.tr.translate(SID, -1, 0x3000, { read: true });
    expect(r).toMatchObject({ ok: false, fault: 'F_ACCESS', abort: true });
    expect(fields(r)).toMatchObject({ EventID: EVT.F_ACCESS, S2: 0, CLASS: EVENT_CLASS.IN, RnW: 1 });
    const b2 = bed();
    const pt2 = s1(b2, G4K, 48, { HA: 1 });
    pt2.map(0x3000, 0x9000, 3, { af: 0 });
    expect(ok(b2.tr.translate(SID, -1, 0x3000, { read: true })).pa).toBe(0x9000);
    expect(pt2.read(0x3000, 3).lo & (1 << 10)).toBe(1 << 10);
    const b3 = bed();
    const pt3 = s1(b3, G4K, 48, { AFFD: 1 });
    pt3.map(0x3000, 0x9000, 3, { af: 0 });
    expect(ok(b3.tr.translate(SID, -1, 0x3000, { read: true })).pa).toBe(0x9000);
    expect(pt3.read(0x3000, 3).lo & (1 << 10)).toBe(0);
  });

  it('F_PERMISSION at stage 1: AP, UXN/PXN, EL0-writable implies PXN, PAN, WXN, APTable', () => {
    const b = bed();
    const pt = s1(b, G4K, 48, { PAN: 1, WXN: 1 });
    pt.map(0x1000, 0x1000, 3, { ap: 0b00 }); // EL1 RW, EL0 none
    pt.map(0x2000, 0x2000, 3, { ap: 0b11 }); // RO both
    pt.map(0x3000, 0x3000, 3, { ap: 0b01 }); // RW both: PXN implied, WXN makes it XN
    pt.map(0x4000, 0x4000, 3, { ap: 0b10, uxn: 1 }); // EL1 RO, executable at EL1 only
    const t = (va: number, a: { write?: boolean; exec?: boolean; priv?: boolean }): string => {
      const r = b.tr.translate(SID, -1, va, { read: true, ...a });
      return r.ok ? 'ok' : r.fault;
    };
    expect(t(0x1000, { priv: true, write: true })).toBe('ok');
    expect(t(0x1000, {})).toBe('F_PERMISSION');
    expect(t(0x2000, { write: true })).toBe('F_PERMISSION');
    expect(t(0x2000, { priv: true })).toBe('F_PERMISSION'); // PAN: EL0-readable
    expect(t(0x3000, { exec: true })).toBe('F_PERMISSION'); // WXN
    expect(t(0x3000, { exec: true, priv: true })).toBe('F_PERMISSION'); // EL0-writable ⇒ PXN
    expect(t(0x4000, { exec: true, priv: true })).toBe('ok');
    expect(t(0x4000, { exec: true })).toBe('F_PERMISSION');
    const r = b.tr.translate(SID, -1, 0x2000, { write: true, priv: false });
    expect(fields(r)).toMatchObject({ EventID: EVT.F_PERMISSION, S2: 0, CLASS: EVENT_CLASS.IN, RnW: 0, PnU: 0, InD: 0, TTRnW: 0 });
    // APTable[1] (no write below this table) and UXNTable.
    const b2 = bed();
    const pt2 = s1(b2, G4K, 48);
    pt2.map(0x20_0000, 0x5000, 3, {}, { apTable: 0b10, uxnTable: 1 });
    expect(b2.tr.translate(SID, -1, 0x20_0000, { write: true })).toMatchObject({ fault: 'F_PERMISSION' });
    expect(b2.tr.translate(SID, -1, 0x20_0000, { exec: true })).toMatchObject({ fault: 'F_PERMISSION' });
    expect(ok(b2.tr.translate(SID, -1, 0x20_0000, { read: true })).perm).toBe(1);
  });

  it('NS-EL2 StreamWorld: AP[1] ignored, every access checked as privileged; EL2-E2H keeps EL0 checks', () => {
    const b = bed();
    const pt = s1(b, G4K, 48, {}, { STRW: 0b10 });
    pt.map(0x1000, 0x1000, 3, { ap: 0b00 });
    expect(ok(b.tr.translate(SID, -1, 0x1000, { write: true, priv: false })).pa).toBe(0x1000);
    const b2 = bed();
    b2.tr.setControl({ e2h: true });
    const pt2 = s1(b2, G4K, 48, {}, { STRW: 0b10 });
    pt2.map(0x1000, 0x1000, 3, { ap: 0b00 });
    expect(b2.tr.translate(SID, -1, 0x1000, { write: true, priv: false })).toMatchObject({ fault: 'F_PERMISSION' });
  });

  it('HTTU dirty state (CD.HD, DBM): a write to a writable-clean page clears AP[2]', () => {
    const b = bed();
    const pt = s1(b, G4K, 48, { HA: 1, HD: 1 });
    pt.map(0x6000, 0x6000, 3, { ap: 0b10, dbm: 1 });
    expect(ok(b.tr.translate(SID, -1, 0x6000, { read: true, priv: true })).cached).toBe(false);
    expect(pt.read(0x6000, 3).lo & 0x80).toBe(0x80); // still clean after a read
    const w = ok(b.tr.translate(SID, -1, 0x6000, { write: true, priv: true }));
    expect(w.cached).toBe(false); // the clean TLB entry cannot serve the write
    expect(pt.read(0x6000, 3).lo & 0x80).toBe(0);
    expect(ok(b.tr.translate(SID, -1, 0x6004, { write: true, priv: true })).cached).toBe(true);
  });

  it('CD.A == 0 terminates stage 1 faults RAZ/WI; CD.R == 0 suppresses the record', () => {
    const b = bed();
    s1(b, G4K, 48, { A: 0, R: 0 });
    const r = b.tr.translate(SID, -1, 0x5000, { read: true });
    expect(r).toMatchObject({ ok: false, fault: 'F_TRANSLATION', abort: false });
    expect(r.ok ? null : r.event).toBeUndefined();
  });

  it('CD.S == 1: recorded with Stall == 0 and aborted (stalls are not modelled, §3.12)', () => {
    const b = bed();
    s1(b, G4K, 48, { A: 0, R: 0, S: 1 });
    const r = b.tr.translate(SID, -1, 0x5000, { read: true });
    expect(r).toMatchObject({ ok: false, fault: 'F_TRANSLATION', abort: true });
    expect(fields(r)).toMatchObject({ Stall: 0, STAG: 0 });
  });

  it('F_WALK_EABT at stage 1: S2 0, CLASS TT, FetchAddr = the descriptor PA; exact words (§7.3.12)', () => {
    const b = bed();
    const pt = s1(b, G4K, 48);
    pt.raw(0x2000, 2, 0x1000_0003, 0); // next table at PA 0x1000_0000, outside RAM
    const r = b.tr.translate(SID, -1, 0x2000, { write: true, priv: true });
    expect(r).toMatchObject({ ok: false, fault: 'F_WALK_EABT', abort: true });
    if (r.ok || r.event === undefined) throw new Error('expected a record');
    // Level 3 index of 0x2000 is 2: FetchAddr = 0x1000_0010, at [247:195] (word 6 bits [31:3]).
    // word3: PnU bit 1, RnW 0, S2 0, CLASS 0b01 (TT) at bits 9:8.
    expect([...r.event]).toEqual([0x0b, SID, 0, 0b01_0000_0010, 0x2000, 0, 0x1000_0010, 0]);
  });

  it('stage 2 faults: CLASS IN with the IPA; S2R gates the record; exact words (§7.3.13)', () => {
    const b = bed();
    const st = linearStreamTable(b, 6);
    const pt = new PageTable(b.mem, b.alloc, G4K, 40, 1, 2);
    pt.map(0x10_0000, 0x20_0000, 3, { ap: 0b01 }); // read-only at stage 2
    b.mem.writeWords(st.ste(SID), steWords({ Config: STE_CONFIG.S2_TRANS, ...s2Fields(pt, VMID) }));
    const r = b.tr.translate(SID, -1, 0x10_0123, { write: true });
    expect(r).toMatchObject({ ok: false, fault: 'F_PERMISSION', abort: true });
    if (r.ok || r.event === undefined) throw new Error('expected a record');
    // word3: RnW 0, S2 [103] = bit 7, CLASS IN; IPA[55:12] at [247:204]: word 6 = IPA[31:12] << 12.
    expect([...r.event]).toEqual([0x13, SID, 0, 0b10_1000_0000, 0x10_0123, 0, 0x10_0000, 0]);
    const miss = b.tr.translate(SID, -1, 0x77_7000, { read: true });
    expect(fields(miss)).toMatchObject({ EventID: EVT.F_TRANSLATION, S2: 1, CLASS: EVENT_CLASS.IN, IPA: 0x77_7000n, InputAddr: 0x77_7000n, RnW: 1 });
    // Beyond the S2T0SZ input range.
    expect(b.tr.translate(SID, -1, 2 ** 40, { read: true })).toMatchObject({ fault: 'F_TRANSLATION', reason: 'IPA 0x10000000000 beyond the 40-bit stage 2 input range' });
    // S2R == 0: not recorded, still an abort.
    const b2 = bed();
    const st2 = linearStreamTable(b2, 6);
    const pt2 = new PageTable(b2.mem, b2.alloc, G4K, 40, 1, 2);
    b2.mem.writeWords(st2.ste(SID), steWords({ Config: STE_CONFIG.S2_TRANS, ...s2Fields(pt2, VMID, { S2R: 0 }) }));
    const q = b2.tr.translate(SID, -1, 0x1000, { read: true });
    expect(q).toMatchObject({ ok: false, fault: 'F_TRANSLATION', abort: true });
    expect(q.ok ? null : q.event).toBeUndefined();
  });

  it('stage 2 F_ACCESS (S2AFFD, S2HA) and F_ADDR_SIZE beyond S2PS', () => {
    const b = bed();
    const st = linearStreamTable(b, 6);
    const pt = new PageTable(b.mem, b.alloc, G4K, 40, 1, 2);
    pt.map(0x1000, 0x5000, 3, { af: 0 });
    pt.map(0x2000, 0x10_0000_0000); // beyond a 36-bit S2PS
    b.mem.writeWords(st.ste(SID), steWords({ Config: STE_CONFIG.S2_TRANS, ...s2Fields(pt, VMID, { S2PS: 0b001 }) }));
    expect(fields(b.tr.translate(SID, -1, 0x1000, { read: true }))).toMatchObject({ EventID: EVT.F_ACCESS, S2: 1, CLASS: EVENT_CLASS.IN, IPA: 0x1000n });
    expect(fields(b.tr.translate(SID, -1, 0x2000, { read: true }))).toMatchObject({ EventID: EVT.F_ADDR_SIZE, S2: 1, IPA: 0x2000n });
    const b2 = bed();
    const st2 = linearStreamTable(b2, 6);
    const p2 = new PageTable(b2.mem, b2.alloc, G4K, 40, 1, 2);
    const d = p2.map(0x1000, 0x5000, 3, { af: 0 });
    b2.mem.writeWords(st2.ste(SID), steWords({ Config: STE_CONFIG.S2_TRANS, ...s2Fields(p2, VMID, { S2HA: 1 }) }));
    expect(ok(b2.tr.translate(SID, -1, 0x1000, { read: true })).pa).toBe(0x5000);
    expect(b2.mem.read32(d) & (1 << 10)).toBe(1 << 10);
  });

  it('nested: stage 2 faults on the CD fetch (CLASS CD) and on a stage 1 descriptor (CLASS TT), with IPAs', () => {
    const b = bed();
    const n = nested(b);
    // Unmap the CD's page at stage 2.
    n.s2.raw(n.cdAddr, 3, 0, 0);
    const r = b.tr.translate(SID, -1, 0x4000_0000, { read: true });
    expect(fields(r)).toMatchObject({ EventID: EVT.F_TRANSLATION, S2: 1, CLASS: EVENT_CLASS.CD, IPA: BigInt(n.cdAddr - (n.cdAddr % 0x1000)), InputAddr: 0x4000_0000n });

    const b2 = bed();
    const n2 = nested(b2);
    n2.s1.map(0x4000_0000, 0x8000_0000);
    const d = n2.s1.descAddr(0x4000_0000, 3);
    n2.s2.map(d - (d % 0x1000), d - (d % 0x1000), 3, { ap: 0b00 }); // no read at stage 2
    const q = b2.tr.translate(SID, -1, 0x4000_0000, { write: true });
    expect(fields(q)).toMatchObject({ EventID: EVT.F_PERMISSION, S2: 1, CLASS: EVENT_CLASS.TTD, TTRnW: 1, IPA: BigInt(d - (d % 0x1000)), RnW: 0 });
  });

  it('nested: HTTU Access flag update needs stage 2 write permission (F_PERMISSION TTRnW == 0)', () => {
    const b = bed();
    const n = nested(b, {}, { HA: 1 });
    n.s1.map(0x4000_0000, 0x8000_0000, 3, { af: 0 });
    n.s2.map(0x8000_0000, RAM_BASE + 0x80_0000);
    const d = n.s1.descAddr(0x4000_0000, 3);
    n.s2.map(d - (d % 0x1000), d - (d % 0x1000), 3, { ap: 0b01 }); // read-only at stage 2
    const r = b.tr.translate(SID, -1, 0x4000_0000, { read: true });
    expect(fields(r)).toMatchObject({ EventID: EVT.F_PERMISSION, S2: 1, CLASS: EVENT_CLASS.TTD, TTRnW: 0, RnW: 1 });
    n.s2.map(d - (d % 0x1000), d - (d % 0x1000), 3, { ap: 0b11 });
    b.tr.invalidateCommand([0x30, 0, 0, 0]); // CMD_TLBI_NSNH_ALL
    expect(ok(b.tr.translate(SID, -1, 0x4000_0000, { read: true })).pa).toBe(RAM_BASE + 0x80_0000);
    expect(b.mem.read32(d) & (1 << 10)).toBe(1 << 10);
  });

  it('nested: S2PTW == 1 turns a CD fetch from a Device page into a stage 2 Permission fault', () => {
    const b = bed();
    const n = nested(b, { S2PTW: 1 });
    const page = n.cdAddr - (n.cdAddr % 0x1000);
    n.s2.map(page, page, 3, { memattr: 0b0001 }); // Device
    expect(fields(b.tr.translate(SID, -1, 0x4000_0000, { read: true }))).toMatchObject({ EventID: EVT.F_PERMISSION, S2: 1, CLASS: EVENT_CLASS.CD });
  });

  it('F_WALK_EABT at stage 2: S2 1, CLASS IN for the final IPA, TT for a stage 1 descriptor; FetchAddr = stage 2 descriptor PA', () => {
    const b = bed();
    const n = nested(b);
    n.s1.map(0x4000_0000, 0x8000_0000);
    // Point the level 3 stage 2 table for IPA 0x8000_0000 outside RAM (index 0 of it: FetchAddr
    // is the table address itself).
    n.s2.raw(0x8000_0000, 2, 0x2000_0003, 0);
    expect(fields(b.tr.translate(SID, -1, 0x4000_0000, { read: true }))).toMatchObject({
      EventID: EVT.F_WALK_EABT, S2: 1, CLASS: EVENT_CLASS.IN, FetchAddr: 0x2000_0000n, InputAddr: 0x4000_0000n,
    });
    // The same for the stage 2 walk of a stage 1 table's IPA. The CD is fetched first (and would
    // fault with CLASS CD), so warm the configuration cache, then drop the TLB only.
    const b2 = bed();
    const n2 = nested(b2);
    n2.s1.map(0x4000_0000, 0x8000_0000);
    n2.s2.map(0x8000_0000, RAM_BASE + 0x80_0000);
    ok(b2.tr.translate(SID, -1, 0x4000_0000, { read: true }));
    b2.tr.invalidateCommand([0x30, 0, 0, 0]); // CMD_TLBI_NSNH_ALL: the CD stays cached
    const root = n2.s1.root;
    n2.s2.raw(root, 2, 0x2000_0003, 0);
    expect(fields(b2.tr.translate(SID, -1, 0x4000_0000, { read: true }))).toMatchObject({
      EventID: EVT.F_WALK_EABT, S2: 1, CLASS: EVENT_CLASS.TTD, FetchAddr: BigInt(0x2000_0000 + Math.floor(root / 0x1000) % 512 * 8),
    });
  });

  it('exact record words for F_ACCESS (S1), F_ADDR_SIZE (S2, IN) and F_PERMISSION (S2, TT with TTRnW [108]) (§7.3.14-16)', () => {
    // F_ACCESS, stage 1, an unprivileged data read with a SubstreamID: word0 = 0x12 | SSV [11] |
    // SubstreamID [31:12]; word3 = RnW (bit 3) | CLASS IN (0b10 << 8).
    const b = bed();
    const st = linearStreamTable(b, 6);
    const pt = new PageTable(b.mem, b.alloc, G4K, 48, 0, 1);
    pt.map(0x3000, 0x9000, 3, { af: 0 });
    const tbl = b.alloc.alloc(4 * 64, 256);
    b.mem.writeWords(tbl + 2 * 64, cdWords(cdFields(pt, ASID)));
    b.mem.writeWords(st.ste(SID), steWords({ Config: STE_CONFIG.S1_TRANS, S1ContextPtr: BigInt(tbl), S1CDMax: 2 }));
    const a = b.tr.translate(SID, 2, 0x3abc, { read: true });
    if (a.ok || a.event === undefined) throw new Error('expected a record');
    expect([...a.event]).toEqual([0x12 | (1 << 11) | (2 << 12), SID, 0, 0b10_0000_1000, 0x3abc, 0, 0, 0]);

    // F_ADDR_SIZE, stage 2, CLASS IN: word3 = S2 (bit 7) | CLASS IN | RnW; IPA[55:12] in words 6-7.
    const c = bed();
    const st2 = linearStreamTable(c, 6);
    const p2 = new PageTable(c.mem, c.alloc, G4K, 40, 1, 2);
    p2.map(0x80_0000_0000 - 0x1000, 0x10_0000_0000);
    c.mem.writeWords(st2.ste(SID), steWords({ Config: STE_CONFIG.S2_TRANS, ...s2Fields(p2, VMID, { S2PS: 0b001 }) }));
    const q = c.tr.translate(SID, -1, 0x80_0000_0000 - 0x1000 + 0x24, { read: true });
    if (q.ok || q.event === undefined) throw new Error('expected a record');
    expect([...q.event]).toEqual([0x11, SID, 0, 0b10_1000_1000, 0xffff_f024, 0x7f, 0xffff_f000, 0x7f]);

    // F_PERMISSION at stage 2 on a stage 1 descriptor read: CLASS TT (0b01), TTRnW [108] = word3 bit 12.
    const d = bed();
    const n = nested(d);
    n.s1.map(0x4000_0000, 0x8000_0000);
    const desc = n.s1.descAddr(0x4000_0000, 3);
    const page = desc - (desc % 0x1000);
    n.s2.map(page, page, 3, { ap: 0b10 }); // write-only at stage 2: the descriptor read faults
    const r = d.tr.translate(SID, -1, 0x4000_0000, { write: true, priv: true });
    if (r.ok || r.event === undefined) throw new Error('expected a record');
    expect([...r.event]).toEqual([0x13, SID, 0, (1 << 12) | 0b01_1000_0010, 0x4000_0000, 0, page, 0]);
  });

  it('stage 1 bypassed: input beyond the IAS is F_ADDR_SIZE with S2 0 (§3.4), recorded regardless of S2R', () => {
    const b = bed({ features: { oas: 2 } });
    const st = linearStreamTable(b, 6);
    const pt = new PageTable(b.mem, b.alloc, G4K, 40, 1, 2);
    b.mem.writeWords(st.ste(SID), steWords({ Config: STE_CONFIG.S2_TRANS, ...s2Fields(pt, VMID, { S2R: 0, S2PS: 2 }) }));
    const r = b.tr.translate(SID, -1, 2 ** 40, { read: true });
    expect(fields(r)).toMatchObject({ EventID: EVT.F_ADDR_SIZE, S2: 0, CLASS: EVENT_CLASS.IN, InputAddr: 2n ** 40n });
  });
});
