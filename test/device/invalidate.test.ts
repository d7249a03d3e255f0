/**
 * Invalidation commands and their exact scope (IHI0070 G.b §4.3 configuration, §4.4 TLB, §3.17
 * tagging): for each command a translation stays stale (served from a cache after the tables
 * changed) until the command, is fresh after it, and everything outside the command's scope stays
 * stale (other StreamIDs, SubstreamIDs, VMIDs, ASIDs, global entries, addresses, granules, levels).
 */
import { describe, expect, it } from 'vitest';
import { STE_CONFIG, STE_S1DSS } from '../../src/spec/structures.ts';
import type { TranslateResult } from '../../src/device/translate.ts';
import {
  bed, cdFields, cdWords, cmd, G16K, G4K, l1cdWords, l1stdWords, linearStreamTable, PageTable, s2Fields, steWords,
  type Bed, type LeafAttrs, type SteValues,
} from '../helpers/tables.ts';

/** PA of a translation, or the fault name. */
function t(b: Bed, sid: number, va: number, ssid = -1): number | string {
  const r: TranslateResult = b.tr.translate(sid, ssid, va, { read: true });
  return r.ok ? r.pa : r.fault;
}

interface S1Stream {
  readonly pt: PageTable;
  readonly cd: number;
}

/** A stage-1-only stream: STE (VMID, STRW) → one CD (ASID) → a 4KB-granule 48-bit table. */
function s1Stream(b: Bed, steAddr: number, vmid: number, asid: number, ste: SteValues = {}, g = G4K): S1Stream {
  const pt = new PageTable(b.mem, b.alloc, g, g === G4K ? 48 : 47, g === G4K ? 0 : 1, 1);
  const cd = b.alloc.alloc(64, 64, 'CD');
  b.mem.writeWords(cd, cdWords(cdFields(pt, asid, { TG0: g === G4K ? 0 : 2, T0SZ: g === G4K ? 16 : 17 })));
  b.mem.writeWords(steAddr, steWords({ Config: STE_CONFIG.S1_TRANS, S1ContextPtr: BigInt(cd), S2VMID: vmid, ...ste }));
  return { pt, cd };
}

const NG: LeafAttrs = { ng: 1 };

describe('configuration invalidation (§4.3)', () => {
  it('CMD_CFGI_STE: a changed STE stays cached until invalidated; other StreamIDs keep theirs', () => {
    const b = bed();
    const st = linearStreamTable(b, 4);
    for (const sid of [1, 2]) b.mem.writeWords(st.ste(sid), steWords({ Config: STE_CONFIG.BYPASS }));
    expect(t(b, 1, 0x5000)).toBe(0x5000);
    expect(t(b, 2, 0x5000)).toBe(0x5000);
    for (const sid of [1, 2]) b.mem.writeWords(st.ste(sid), steWords({ Config: STE_CONFIG.ABORT }));
    expect(t(b, 1, 0x5000)).toBe(0x5000); // stale
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_CFGI_STE', StreamID: 1, Leaf: 1 }))).toBe(1);
    expect(t(b, 1, 0x5000)).toBe('STE_ABORT');
    expect(t(b, 2, 0x5000)).toBe(0x5000); // StreamID 2 still stale
  });

  it('CMD_CFGI_STE also drops the CDs cached through the StreamID; Leaf == 0 drops the L1STD', () => {
    const b = bed();
    const l1 = b.alloc.alloc(64, 64);
    const l2 = b.alloc.alloc(64 * 64, 64 * 64);
    b.tr.setStreamTable({ base: l1, twoLevel: true, split: 6, log2size: 8 });
    b.mem.writeWords(l1, l1stdWords(7, l2));
    const s = s1Stream(b, l2 + 5 * 64, 0, 1);
    s.pt.map(0x1000, 0xa000, 3, NG);
    expect(t(b, 5, 0x1000)).toBe(0xa000);
    b.mem.writeWords(s.cd, cdWords({ V: 0 }));
    b.mem.writeWords(l1, l1stdWords(0, 0));
    expect(t(b, 5, 0x1000)).toBe(0xa000); // STE, CD, TLB all cached
    // Leaf == 1: STE and CD go, the L1STD stays (Span still 7); the CD is now invalid.
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_CFGI_STE', StreamID: 5, Leaf: 1 }))).toBe(2);
    expect(t(b, 5, 0x1000)).toBe('C_BAD_CD');
    // Leaf == 0: STE, (invalid) CD and the L1STD go; the L1STD (Span == 0 now) is refetched.
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_CFGI_STE', StreamID: 5, Leaf: 0 }))).toBe(3);
    expect(t(b, 5, 0x1000)).toBe('C_BAD_STREAMID');
  });

  it('CMD_CFGI_STE_RANGE: an aligned range of 2^(Range+1) StreamIDs, boundaries exact (§4.3.2)', () => {
    const b = bed();
    const st = linearStreamTable(b, 5);
    for (let sid = 0; sid < 16; sid++) b.mem.writeWords(st.ste(sid), steWords({ Config: STE_CONFIG.BYPASS }));
    for (let sid = 0; sid < 16; sid++) t(b, sid, 0x1000);
    for (let sid = 0; sid < 16; sid++) b.mem.writeWords(st.ste(sid), steWords({ Config: STE_CONFIG.ABORT }));
    // StreamID 9, Range 1: the bottom 2 bits are IGNORED: StreamIDs 8..11.
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_CFGI_STE_RANGE', StreamID: 9, Range: 1 }))).toBe(4);
    const after = Array.from({ length: 16 }, (_, sid) => t(b, sid, 0x1000));
    expect(after.map((x) => x === 'STE_ABORT')).toEqual(Array.from({ length: 16 }, (_, sid) => sid >= 8 && sid <= 11));
  });

  it('CMD_CFGI_ALL (CFGI_STE_RANGE with Range 31) drops every structure', () => {
    const b = bed();
    const st = linearStreamTable(b, 4);
    for (const sid of [0, 15]) b.mem.writeWords(st.ste(sid), steWords({ Config: STE_CONFIG.BYPASS }));
    t(b, 0, 0);
    t(b, 15, 0);
    for (const sid of [0, 15]) b.mem.writeWords(st.ste(sid), steWords({ V: 0 }));
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_CFGI_ALL' }))).toBe(2);
    expect([t(b, 0, 0), t(b, 15, 0)]).toEqual(['C_BAD_STE', 'C_BAD_STE']);
  });

  it('CMD_CFGI_CD: one CD table index of one StreamID; other SubstreamIDs and StreamIDs stay stale (§4.3.3)', () => {
    const b = bed();
    const st = linearStreamTable(b, 4);
    const tbl = b.alloc.alloc(4 * 64, 4 * 64, 'CD table');
    const pts: PageTable[] = [];
    for (let i = 0; i < 4; i++) {
      const pt = new PageTable(b.mem, b.alloc, G4K, 48, 0, 1);
      pt.map(0x1000, 0x10_0000 + i * 0x1000, 3, NG);
      pts.push(pt);
      b.mem.writeWords(tbl + i * 64, cdWords(cdFields(pt, 10 + i)));
    }
    // Two StreamIDs share the CD table (§4.3.3: cached per StreamID).
    for (const sid of [1, 2]) b.mem.writeWords(st.ste(sid), steWords({ Config: STE_CONFIG.S1_TRANS, S1ContextPtr: BigInt(tbl), S1CDMax: 2, S1DSS: STE_S1DSS.SSID0 }));
    for (const sid of [1, 2]) for (const ssid of [1, 2]) expect(t(b, sid, 0x1000, ssid)).toBe(0x10_0000 + ssid * 0x1000);
    for (let i = 0; i < 4; i++) b.mem.writeWords(tbl + i * 64, cdWords({ V: 0 }));
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_CFGI_CD', StreamID: 1, SubstreamID: 2, Leaf: 1 }))).toBe(1);
    expect(t(b, 1, 0x1000, 2)).toBe('C_BAD_CD');
    expect(t(b, 1, 0x1000, 1)).toBe(0x10_1000);
    expect(t(b, 2, 0x1000, 2)).toBe(0x10_2000);
    // SubstreamID 0 names CD index 0, the CD of traffic without a SubstreamID under S1DSS == 0b10.
    expect(t(b, 1, 0x1000)).toBe('C_BAD_CD'); // index 0 was never cached: fetched now, invalid
  });

  it('CMD_CFGI_CD Leaf == 0 drops the L1CD that located the CD (§4.3.3, §5.3.1)', () => {
    const b = bed();
    const st = linearStreamTable(b, 4);
    const l1 = b.alloc.alloc(64, 64);
    const l2 = b.alloc.alloc(64 * 64, 4096);
    const pt = new PageTable(b.mem, b.alloc, G4K, 48, 0, 1);
    pt.map(0x1000, 0x7000, 3, NG);
    b.mem.writeWords(l1 + 8, l1cdWords(1, l2));
    b.mem.writeWords(l2 + 3 * 64, cdWords(cdFields(pt, 4)));
    b.mem.writeWords(st.ste(1), steWords({ Config: STE_CONFIG.S1_TRANS, S1ContextPtr: BigInt(l1), S1CDMax: 8, S1Fmt: 1 }));
    expect(t(b, 1, 0x1000, 64 + 3)).toBe(0x7000);
    b.mem.writeWords(l1 + 8, l1cdWords(0, 0));
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_CFGI_CD', StreamID: 1, SubstreamID: 64 + 3, Leaf: 1 }))).toBe(1);
    expect(t(b, 1, 0x1000, 64 + 3)).toBe(0x7000); // CD refetched through the cached L1CD
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_CFGI_CD', StreamID: 1, SubstreamID: 64 + 5, Leaf: 0 }))).toBe(1);
    expect(t(b, 1, 0x1000, 64 + 3)).toBe(0x7000); // the CD itself is still cached
    expect(t(b, 1, 0x1000, 64 + 4)).toBe('C_BAD_SUBSTREAMID'); // a new CD needs the L1CD: now V == 0
  });

  it('CMD_CFGI_CD_ALL: every CD and L1CD of the StreamID; other StreamIDs stay stale (§4.3.4)', () => {
    const b = bed();
    const st = linearStreamTable(b, 4);
    const a = s1Stream(b, st.ste(1), 0, 1);
    const c = s1Stream(b, st.ste(2), 0, 2);
    a.pt.map(0x1000, 0xa000, 3, NG);
    c.pt.map(0x1000, 0xc000, 3, NG);
    t(b, 1, 0x1000);
    t(b, 2, 0x1000);
    b.mem.writeWords(a.cd, cdWords({ V: 0 }));
    b.mem.writeWords(c.cd, cdWords({ V: 0 }));
    b.tr.invalidateCommand(cmd({ name: 'CMD_TLBI_NSNH_ALL' }));
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_CFGI_CD_ALL', StreamID: 1 }))).toBe(1);
    expect(t(b, 1, 0x1000)).toBe('C_BAD_CD');
    expect(t(b, 2, 0x1000)).toBe(0xc000);
  });
});

describe('stage 1 TLB invalidation (§4.4.2)', () => {
  /** Streams: 1 (VMID 1, ASID 1), 2 (VMID 1, ASID 2), 3 (VMID 2, ASID 1), all mapping 0x1000 and 0x2000. */
  function world(): { b: Bed; pts: PageTable[] } {
    const b = bed();
    const st = linearStreamTable(b, 4);
    const pts = [
      s1Stream(b, st.ste(1), 1, 1).pt,
      s1Stream(b, st.ste(2), 1, 2).pt,
      s1Stream(b, st.ste(3), 2, 1).pt,
    ];
    pts.forEach((pt, i) => {
      pt.map(0x1000, 0x10_0000 * (i + 1), 3, NG);
      pt.map(0x2000, 0x10_0000 * (i + 1) + 0x1000, 3, NG);
    });
    for (const sid of [1, 2, 3]) for (const va of [0x1000, 0x2000]) t(b, sid, va);
    // Remap everything: cached translations now disagree with memory.
    pts.forEach((pt, i) => {
      pt.map(0x1000, 0x80_0000 * (i + 1), 3, NG);
      pt.map(0x2000, 0x80_0000 * (i + 1) + 0x1000, 3, NG);
    });
    return { b, pts };
  }
  const fresh = (b: Bed, sid: number, va: number): boolean => t(b, sid, va) === 0x80_0000 * sid + (va - 0x1000);

  it('CMD_TLBI_NH_ALL: every stage 1 entry of the VMID; other VMIDs survive', () => {
    const { b } = world();
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_TLBI_NH_ALL', VMID: 1 }))).toBe(4);
    expect([fresh(b, 1, 0x1000), fresh(b, 2, 0x2000), fresh(b, 3, 0x1000)]).toEqual([true, true, false]);
  });

  it('CMD_TLBI_NH_ASID: non-global entries of (VMID, ASID); other ASIDs and VMIDs survive', () => {
    const { b } = world();
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_TLBI_NH_ASID', VMID: 1, ASID: 1 }))).toBe(2);
    expect([fresh(b, 1, 0x1000), fresh(b, 1, 0x2000), fresh(b, 2, 0x1000), fresh(b, 3, 0x1000)]).toEqual([true, true, false, false]);
  });

  it('CMD_TLBI_NH_VA: one page of (VMID, ASID); other pages, ASIDs and VMIDs survive', () => {
    const { b } = world();
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_TLBI_NH_VA', VMID: 1, ASID: 2, Address: 0x2000n, Leaf: 1 }))).toBe(1);
    expect([fresh(b, 2, 0x2000), fresh(b, 2, 0x1000), fresh(b, 1, 0x2000), fresh(b, 3, 0x2000)]).toEqual([true, false, false, false]);
  });

  it('CMD_TLBI_NH_VAA: one page for every ASID of the VMID', () => {
    const { b } = world();
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_TLBI_NH_VAA', VMID: 1, Address: 0x1000n }))).toBe(2);
    expect([fresh(b, 1, 0x1000), fresh(b, 2, 0x1000), fresh(b, 1, 0x2000), fresh(b, 3, 0x1000)]).toEqual([true, true, false, false]);
  });

  it('global entries: shared across ASIDs (same ASET), kept by NH_ASID, removed by NH_VA of any ASID (§3.17.1)', () => {
    const b = bed();
    const st = linearStreamTable(b, 4);
    const a = s1Stream(b, st.ste(1), 1, 1);
    const c = s1Stream(b, st.ste(2), 1, 2);
    a.pt.map(0x1000, 0xa000); // global
    c.pt.map(0x1000, 0xc000); // global (a different table: the global entry wins for ASID 2)
    expect(t(b, 1, 0x1000)).toBe(0xa000);
    expect(t(b, 2, 0x1000)).toBe(0xa000); // served by ASID 1's global entry
    a.pt.map(0x1000, 0xb000);
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_TLBI_NH_ASID', VMID: 1, ASID: 1 }))).toBe(0);
    expect(t(b, 1, 0x1000)).toBe(0xa000);
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_TLBI_NH_VA', VMID: 1, ASID: 7, Address: 0x1000n }))).toBe(1);
    expect(t(b, 1, 0x1000)).toBe(0xb000);
    // A global entry inserted with ASET 0 does not match an ASET 1 context.
    const b2 = bed();
    const st2 = linearStreamTable(b2, 4);
    const x = s1Stream(b2, st2.ste(1), 1, 1);
    const y = s1Stream(b2, st2.ste(2), 1, 2);
    b2.mem.writeWords(y.cd, cdWords(cdFields(y.pt, 2, { ASET: 1 })));
    x.pt.map(0x1000, 0xa000);
    y.pt.map(0x1000, 0xc000);
    expect([t(b2, 1, 0x1000), t(b2, 2, 0x1000)]).toEqual([0xa000, 0xc000]);
  });

  it('range invalidation: (NUM+1)·2^SCALE granules from Address, first/last page in, neighbours out (§4.4.1.1)', () => {
    const b = bed();
    const st = linearStreamTable(b, 4);
    const s = s1Stream(b, st.ste(1), 1, 1);
    for (let p = 0x10; p < 0x30; p++) s.pt.map(p * 0x1000, p * 0x1000, 3, NG);
    for (let p = 0x10; p < 0x30; p++) t(b, 1, p * 0x1000);
    for (let p = 0x10; p < 0x30; p++) s.pt.map(p * 0x1000, 0x100_0000 + p * 0x1000, 3, NG);
    // TG 4KB, NUM 2, SCALE 2: 12 pages from 0x14000: 0x14000..0x1f000.
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_TLBI_NH_VA', VMID: 1, ASID: 1, Address: 0x14000n, TG: 1, NUM: 2, SCALE: 2, TTL: 0 }))).toBe(12);
    const freshPages = [];
    for (let p = 0x10; p < 0x30; p++) if (t(b, 1, p * 0x1000) !== p * 0x1000) freshPages.push(p);
    expect(freshPages).toEqual(Array.from({ length: 12 }, (_, i) => 0x14 + i));
  });

  it('TTL and TG restrict the required scope: level and granule of the leaf (§4.4.1.1)', () => {
    const b = bed();
    const st = linearStreamTable(b, 4);
    const s = s1Stream(b, st.ste(1), 1, 1);
    s.pt.map(0x20_0000, 0x4000_0000, 2, NG); // a 2MB block (level 2)
    s.pt.map(0x40_0000, 0x5000_0000, 3, NG); // a page (level 3)
    t(b, 1, 0x20_0000);
    t(b, 1, 0x40_0000);
    s.pt.map(0x20_0000, 0x6000_0000, 2, NG);
    s.pt.map(0x40_0000, 0x7000_0000, 3, NG);
    // A range over both, TTL 3: only the level 3 entry.
    const range = { name: 'CMD_TLBI_NH_VA', VMID: 1, ASID: 1, Address: 0x20_0000n, TG: 1, NUM: 0, SCALE: 10 } as const;
    expect(b.tr.invalidateCommand(cmd({ ...range, TTL: 3 }))).toBe(1);
    expect([t(b, 1, 0x20_0000), t(b, 1, 0x40_0000)]).toEqual([0x4000_0000, 0x7000_0000]);
    // TG 16KB: entries inserted with the 4KB granule are out of scope.
    expect(b.tr.invalidateCommand(cmd({ ...range, TG: 2, TTL: 2 }))).toBe(0);
    expect(b.tr.invalidateCommand(cmd({ ...range, TTL: 2 }))).toBe(1);
    expect(t(b, 1, 0x20_0000)).toBe(0x6000_0000);
  });

  it('TG == 0: the single address hits whatever entry holds it (a block, any level)', () => {
    const b = bed();
    const st = linearStreamTable(b, 4);
    const s = s1Stream(b, st.ste(1), 1, 1);
    s.pt.map(0x20_0000, 0x4000_0000, 2, NG);
    t(b, 1, 0x20_0000);
    s.pt.map(0x20_0000, 0x6000_0000, 2, NG);
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_TLBI_NH_VA', VMID: 1, ASID: 1, Address: 0x3f_f000n }))).toBe(1);
    expect(t(b, 1, 0x20_0000)).toBe(0x6000_0000);
  });

  it('16KB granule entries: TG 0b10 range in 16KB units; TTL 0b01 without DS is treated as 0', () => {
    const b = bed({ features: { ds: false } });
    const st = linearStreamTable(b, 4);
    const s = s1Stream(b, st.ste(1), 1, 1, {}, G16K);
    for (let p = 0; p < 4; p++) s.pt.map(p * 0x4000, 0x10_0000 + p * 0x4000, 3, NG);
    for (let p = 0; p < 4; p++) t(b, 1, p * 0x4000);
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_TLBI_NH_VA', VMID: 1, ASID: 1, Address: 0x4000n, TG: 2, NUM: 1, SCALE: 0, TTL: 3 }))).toBe(2);
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_TLBI_NH_VA', VMID: 1, ASID: 1, Address: 0xc000n, TG: 2, NUM: 1, SCALE: 0, TTL: 1 }))).toBe(1);
  });

  it('TTL128 == 1 asks for 128-bit descriptor entries: none exist, nothing is removed', () => {
    const { b } = world();
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_TLBI_NH_VA', VMID: 1, ASID: 1, Address: 0x1000n, TG: 1, NUM: 0, SCALE: 0, TTL: 3, TTL128: 1 }))).toBe(0);
  });

  it('TTB1 addresses: the command names VA[63:12]; the entry is found by VA[55:12]', () => {
    const b = bed();
    const st = linearStreamTable(b, 4);
    const pt0 = new PageTable(b.mem, b.alloc, G4K, 39, 1, 1);
    const pt1 = new PageTable(b.mem, b.alloc, G4K, 39, 1, 1);
    pt1.map(0x1000, 0xa000, 3, NG);
    const cdAddr = b.alloc.alloc(64, 64);
    b.mem.writeWords(cdAddr, cdWords({ T0SZ: 25, T1SZ: 25, TG1: 0b10, IPS: 5, ASID: 1, TTB0: BigInt(pt0.root), TTB1: BigInt(pt1.root) }));
    b.mem.writeWords(st.ste(1), steWords({ Config: STE_CONFIG.S1_TRANS, S1ContextPtr: BigInt(cdAddr), S2VMID: 1 }));
    const va = 0xffff_ff80_0000_1000n;
    expect(b.tr.translate(1, -1, va, { read: true })).toMatchObject({ ok: true, pa: 0xa000 });
    pt1.map(0x1000, 0xb000, 3, NG);
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_TLBI_NH_VA', VMID: 1, ASID: 1, Address: 0x1000n }))).toBe(0);
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_TLBI_NH_VA', VMID: 1, ASID: 1, Address: va }))).toBe(1);
    expect(b.tr.translate(1, -1, va, { read: true })).toMatchObject({ ok: true, pa: 0xb000 });
  });

  it('VMID wildcard (SMMU_CR0.VMW, §3.17.6): NH_ALL for VMID 0x20 with VMW == 1 also hits 0x21', () => {
    const b = bed();
    const st = linearStreamTable(b, 4);
    const pts = [s1Stream(b, st.ste(1), 0x20, 1).pt, s1Stream(b, st.ste(2), 0x21, 1).pt, s1Stream(b, st.ste(3), 0x22, 1).pt];
    pts.forEach((pt) => pt.map(0x1000, 0x1000, 3, NG));
    for (const sid of [1, 2, 3]) t(b, sid, 0x1000);
    b.tr.setControl({ vmw: 1 });
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_TLBI_NH_ALL', VMID: 0x20 }))).toBe(2);
    expect(b.tr.tlb.entries().map((e) => e.ctx.vmid)).toEqual([0x22]);
  });

  it('overInvalidate: NH_VA removes the whole ASID (scope the spec permits, §4.4)', () => {
    const b = bed({ translator: { overInvalidate: true } });
    const st = linearStreamTable(b, 4);
    const s = s1Stream(b, st.ste(1), 1, 1);
    s.pt.map(0x1000, 0x1000, 3, NG);
    s.pt.map(0x2000, 0x2000, 3, NG);
    t(b, 1, 0x1000);
    t(b, 1, 0x2000);
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_TLBI_NH_VA', VMID: 1, ASID: 1, Address: 0x1000n }))).toBe(2);
  });
});

describe('EL2 TLB invalidation (§4.4.2.7-§4.4.2.10)', () => {
  /** NS-EL2 (E2H 0) or NS-EL2-E2H (E2H 1) streams 1 (ASID 1) and 2 (ASID 2), plus NS-EL1 stream 3. */
  function el2(e2h: boolean): Bed {
    const b = bed();
    b.tr.setControl({ e2h });
    const st = linearStreamTable(b, 4);
    const a = s1Stream(b, st.ste(1), 0, 1, { STRW: 0b10 });
    const c = s1Stream(b, st.ste(2), 0, 2, { STRW: 0b10 });
    const d = s1Stream(b, st.ste(3), 0, 1);
    for (const [pt, out] of [[a.pt, 0xa000], [c.pt, 0xc000], [d.pt, 0xd000]] as const) {
      pt.map(0x1000, out, 3, NG);
      pt.map(0x2000, out + 0x10_0000, 3, NG);
    }
    for (const sid of [1, 2, 3]) for (const va of [0x1000, 0x2000]) t(b, sid, va);
    return b;
  }
  const kinds = (b: Bed): string[] => b.tr.tlb.entries().map((e) => `${e.ctx.regime}:${e.ctx.asid}:${e.page.toString(16)}`).sort();

  it('CMD_TLBI_EL2_ALL: every EL2 and EL2-E2H entry; NS-EL1 survives', () => {
    const b = el2(true);
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_TLBI_EL2_ALL' }))).toBe(4);
    expect(kinds(b)).toEqual(['0:1:1', '0:1:2']);
  });

  it('CMD_TLBI_EL2_ASID: NS-EL2-E2H entries of the ASID', () => {
    const b = el2(true);
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_TLBI_EL2_ASID', ASID: 2 }))).toBe(2);
    expect(kinds(b)).toEqual(['0:1:1', '0:1:2', '2:1:1', '2:1:2']);
  });

  it('CMD_TLBI_EL2_VA: with E2H == 1 by ASID and VA; with E2H == 0 by VA, ASID ignored', () => {
    const b = el2(true);
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_TLBI_EL2_VA', ASID: 1, Address: 0x2000n }))).toBe(1);
    expect(kinds(b)).toEqual(['0:1:1', '0:1:2', '2:1:1', '2:2:1', '2:2:2']);
    const c = el2(false);
    // NS-EL2 has no ASIDs: both EL2 streams share one translation (the first one walked).
    expect(kinds(c)).toEqual(['0:1:1', '0:1:2', '1:0:1', '1:0:2']);
    expect(c.tr.invalidateCommand(cmd({ name: 'CMD_TLBI_EL2_VA', ASID: 9, Address: 0x2000n }))).toBe(1);
    expect(kinds(c)).toEqual(['0:1:1', '0:1:2', '1:0:1']);
  });

  it('CMD_TLBI_EL2_VAA: all ASIDs by VA in the regime SMMU_CR2.E2H selects', () => {
    const b = el2(true);
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_TLBI_EL2_VAA', Address: 0x1000n }))).toBe(2);
    expect(kinds(b)).toEqual(['0:1:1', '0:1:2', '2:1:2', '2:2:2']);
    // With E2H changed to 0 (without the invalidation §6.3.12.3 requires) EL2-E2H entries are not touched.
    b.tr.setControl({ e2h: false });
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_TLBI_EL2_VAA', Address: 0x2000n }))).toBe(0);
  });
});

describe('stage 2 and combined invalidation (§4.4.3, §4.4.4)', () => {
  /** Stream 4: stage 2 only (VMID 5); stream 5: nested (VMID 6) with the CD and stage 1 tables identity-mapped. */
  function s2world(): { b: Bed; s2a: PageTable; s2b: PageTable; s1: PageTable } {
    const b = bed();
    const st = linearStreamTable(b, 4);
    const s2a = new PageTable(b.mem, b.alloc, G4K, 40, 1, 2);
    b.mem.writeWords(st.ste(4), steWords({ Config: STE_CONFIG.S2_TRANS, ...s2Fields(s2a, 5) }));
    s2a.map(0x1000, 0x11_000);
    s2a.map(0x2000, 0x12_000);
    const s2b = new PageTable(b.mem, b.alloc, G4K, 40, 1, 2);
    const s1 = new PageTable(b.mem, b.alloc, G4K, 48, 0, 1);
    const cd = b.alloc.alloc(64, 64);
    b.mem.writeWords(cd, cdWords(cdFields(s1, 3)));
    s1.map(0x1000, 0x9000_0000, 3, NG);
    s1.map(0x2000, 0x9000_1000, 3, NG);
    for (let p = s2b.root; p < b.mem.base + b.alloc.used + 0x1000; p += 0x1000) s2b.map(p, p);
    s2b.map(0x9000_0000, 0x21_000);
    s2b.map(0x9000_1000, 0x22_000);
    b.mem.writeWords(st.ste(5), steWords({ Config: STE_CONFIG.NESTED, S1ContextPtr: BigInt(cd), ...s2Fields(s2b, 6) }));
    for (const sid of [4, 5]) for (const va of [0x1000, 0x2000]) t(b, sid, va);
    s2a.map(0x1000, 0x31_000);
    s2a.map(0x2000, 0x32_000);
    s2b.map(0x9000_0000, 0x41_000);
    s2b.map(0x9000_1000, 0x42_000);
    return { b, s2a, s2b, s1 };
  }

  it('CMD_TLBI_S2_IPA: stage 2 entries by VMID and IPA; combined entries stay (software adds NH_ALL, §4.4.3.1)', () => {
    const { b } = s2world();
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_TLBI_S2_IPA', VMID: 5, Address: 0x1000n, Leaf: 1 }))).toBe(1);
    expect([t(b, 4, 0x1000), t(b, 4, 0x2000)]).toEqual([0x31_000, 0x12_000]);
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_TLBI_S2_IPA', VMID: 6, Address: 0x9000_0000n, Leaf: 1 }))).toBe(1);
    expect(t(b, 5, 0x1000)).toBe(0x21_000); // the combined VA → PA entry is still used
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_TLBI_NH_ALL', VMID: 6 }))).toBe(2);
    expect([t(b, 5, 0x1000), t(b, 5, 0x2000)]).toEqual([0x41_000, 0x22_000]); // 0x9000_1000's stage 2 entry survived
  });

  it('CMD_TLBI_S2_IPA range: TG/NUM/SCALE in IPA space', () => {
    const { b } = s2world();
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_TLBI_S2_IPA', VMID: 5, Address: 0x2000n, TG: 1, NUM: 1, SCALE: 0, TTL: 3 }))).toBe(1);
    expect([t(b, 4, 0x1000), t(b, 4, 0x2000)]).toEqual([0x11_000, 0x32_000]);
  });

  it('CMD_TLBI_S12_VMALL: all stages for one VMID; other VMIDs survive', () => {
    const { b } = s2world();
    const before = b.tr.tlb.size;
    const removed = b.tr.invalidateCommand(cmd({ name: 'CMD_TLBI_S12_VMALL', VMID: 6 }));
    expect(removed).toBe(before - 2); // only VMID 5's two stage 2 entries remain
    expect([t(b, 5, 0x1000), t(b, 4, 0x1000)]).toEqual([0x41_000, 0x11_000]);
  });

  it('CMD_TLBI_NSNH_ALL: every NS-EL1 entry at every stage; EL2 entries survive', () => {
    const { b } = s2world();
    const st = b.tr.streamTable;
    const el2 = s1Stream(b, st.base + 6 * 64, 0, 1, { STRW: 0b10 });
    el2.pt.map(0x1000, 0xe000);
    t(b, 6, 0x1000);
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_TLBI_NSNH_ALL' }))).toBe(b.tr.counters().tlb.invalidated);
    expect(b.tr.tlb.entries().map((e) => e.ctx.regime)).toEqual([1]);
    expect([t(b, 4, 0x2000), t(b, 5, 0x2000)]).toEqual([0x32_000, 0x42_000]);
  });

  it('NH_VA hits combined entries anywhere in their stage 1 block (§4.4.2.4 on cached VA→PA)', () => {
    const b = bed();
    const st = linearStreamTable(b, 4);
    const s2 = new PageTable(b.mem, b.alloc, G4K, 40, 1, 2);
    const s1 = new PageTable(b.mem, b.alloc, G4K, 48, 0, 1);
    const cd = b.alloc.alloc(64, 64);
    b.mem.writeWords(cd, cdWords(cdFields(s1, 3)));
    s1.map(0x20_0000, 0x8020_0000, 2, NG); // a 2MB stage 1 block
    for (let p = s2.root; p < b.mem.base + b.alloc.used + 0x1000; p += 0x1000) s2.map(p, p);
    s2.map(0x8020_5000, 0x55_000); // stage 2 pages: combined entries are 4KB
    b.mem.writeWords(st.ste(1), steWords({ Config: STE_CONFIG.NESTED, S1ContextPtr: BigInt(cd), ...s2Fields(s2, 2) }));
    expect(t(b, 1, 0x20_5000)).toBe(0x55_000);
    s1.map(0x20_0000, 0x8040_0000, 2, NG);
    s2.map(0x8040_5000, 0x66_000);
    // Invalidate by an address in the block but outside the cached 4KB piece.
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_TLBI_NH_VA', VMID: 2, ASID: 3, Address: 0x3f_f000n }))).toBe(1);
    expect(t(b, 1, 0x20_5000)).toBe(0x66_000);
  });
});
