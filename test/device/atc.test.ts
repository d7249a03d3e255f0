/**
 * PCIe ATS and endpoint ATCs (IHI0070 G.b §3.9.1, §4.5.1, §7.3.6, §7.3.8): Translation Requests,
 * ATC hits, CMD_ATC_INV scope (StreamID, PASID, span alignment, Size 52), SMMUEN gating,
 * invalidation timeouts reported to CMD_SYNC as CERROR_ATC_INV_SYNC, ATSCHK and split-stage ATS.
 */
import { describe, expect, it } from 'vitest';
import { CERROR_ATC_INV_SYNC, CERROR_NONE } from '../../src/spec/cerror.ts';
import { decodeEvent, EVT } from '../../src/spec/events.ts';
import { STE_CONFIG, STE_S1DSS } from '../../src/spec/structures.ts';
import type { TranslateResult } from '../../src/device/translate.ts';
import { bed, cdFields, cdWords, cmd, G4K, linearStreamTable, PageTable, s2Fields, steWords, type Bed, type SteValues } from '../helpers/tables.ts';

const SID = 8;

/** An ATS stream (EATS full) with a CD table of 4 CDs (S1DSS SSID0); CD i maps page p to 0x100_0000·(i+1) + p. */
function atsStream(b: Bed, ste: SteValues = {}): PageTable[] {
  const st = linearStreamTable(b, 4);
  const tbl = b.alloc.alloc(4 * 64, 256);
  const pts: PageTable[] = [];
  for (let i = 0; i < 4; i++) {
    const pt = new PageTable(b.mem, b.alloc, G4K, 48, 0, 1);
    for (let p = 0; p < 8; p++) pt.map(p * 0x1000, 0x100_0000 * (i + 1) + p * 0x1000, 3, { ng: 1 });
    pts.push(pt);
    b.mem.writeWords(tbl + i * 64, cdWords(cdFields(pt, 20 + i)));
  }
  b.mem.writeWords(st.ste(SID), steWords({ Config: STE_CONFIG.S1_TRANS, S1ContextPtr: BigInt(tbl), S1CDMax: 2, S1DSS: STE_S1DSS.SSID0, EATS: 0b01, ...ste }));
  return pts;
}

function ats(b: Bed, va: number, ssid = -1, write = false): TranslateResult {
  return b.tr.translate(SID, ssid, va, { read: !write, write, ats: true });
}

function src(r: TranslateResult): string {
  return r.ok ? `${r.source}:0x${r.pa.toString(16)}` : `${r.fault}${r.ats !== undefined ? `/${r.ats}` : ''}`;
}

describe('ATS translation and the endpoint ATC', () => {
  it('a miss makes a Translation Request; the completion is cached in the ATC (one STU)', () => {
    const b = bed();
    atsStream(b);
    expect(src(ats(b, 0x1234))).toBe('walk:0x1001234');
    expect(src(ats(b, 0x1ff0))).toBe('atc:0x1001ff0');
    expect(src(ats(b, 0x2000))).toBe('walk:0x1002000');
    expect(b.tr.counters().atc).toMatchObject({ hits: 1, misses: 2, insertions: 2 });
  });

  it('the ATC stays stale after an SMMU TLBI until CMD_ATC_INV (§4.5.1 procedure)', () => {
    const b = bed();
    const pts = atsStream(b);
    ats(b, 0x1000);
    pts[0]!.map(0x1000, 0x900_0000, 3, { ng: 1 });
    b.tr.invalidateCommand(cmd({ name: 'CMD_TLBI_NH_VA', VMID: 0, ASID: 20, Address: 0x1000n }));
    expect(src(ats(b, 0x1000))).toBe('atc:0x1001000');
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_ATC_INV', StreamID: SID, Address: 0x1000n, Size: 0 }))).toBe(1);
    expect(src(ats(b, 0x1000))).toBe('walk:0x9000000');
  });

  it('CMD_ATC_INV span: 4KB·2^Size aligned to its size; entries just outside survive', () => {
    const b = bed();
    atsStream(b);
    for (let p = 0; p < 8; p++) ats(b, p * 0x1000);
    // Address 0x5000, Size 1: the 8KB span 0x4000..0x5fff.
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_ATC_INV', StreamID: SID, Address: 0x5000n, Size: 1 }))).toBe(2);
    expect(b.tr.atc.entries(SID).map((e) => e.page).sort((x, y) => x - y)).toEqual([0, 1, 2, 3, 6, 7]);
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_ATC_INV', StreamID: SID, Address: 0n, Size: 52 }))).toBe(6);
  });

  it('SSV == 1 invalidates one PASID; SSV == 0 invalidates every PASID of the endpoint (PCIe semantics)', () => {
    const b = bed();
    atsStream(b);
    for (const ssid of [-1, 1, 2]) ats(b, 0x3000, ssid);
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_ATC_INV', StreamID: SID, SSV: 1, SubstreamID: 2, Address: 0x3000n, Size: 0 }))).toBe(1);
    expect(b.tr.atc.entries(SID).map((e) => e.ssid).sort()).toEqual([-1, 1]);
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_ATC_INV', StreamID: SID, Address: 0x3000n, Size: 0 }))).toBe(2);
    // Other StreamIDs are never touched.
    ats(b, 0x3000, 1);
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_ATC_INV', StreamID: SID + 1, Address: 0n, Size: 52 }))).toBe(0);
  });

  it('CMD_ATC_INV is IGNORED while SMMUEN == 0 (§4.5.1)', () => {
    const b = bed();
    atsStream(b);
    ats(b, 0x1000);
    b.tr.setControl({ smmuEn: false });
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_ATC_INV', StreamID: SID, Address: 0n, Size: 52 }))).toBe(0);
    expect(b.tr.atc.size).toBe(1);
    expect(b.tr.counters().atc.commands).toBe(0);
  });

  it('ATC capacity per endpoint, LRU eviction', () => {
    const b = bed({ translator: { atcEntries: 2 } });
    atsStream(b);
    ats(b, 0x1000);
    ats(b, 0x2000);
    ats(b, 0x1000);
    ats(b, 0x3000);
    expect(b.tr.atc.entries(SID).map((e) => e.page).sort()).toEqual([1, 3]);
    expect(b.tr.counters().atc.evictions).toBe(1);
  });
});

describe('ATS invalidation timeouts and CMD_SYNC (§3.9.1.4, §4.7.3, §7.1)', () => {
  it('every Nth CMD_ATC_INV times out: it invalidates nothing and the next sync reports CERROR_ATC_INV_SYNC once', () => {
    const b = bed({ translator: { atcTimeoutEvery: 2 } });
    atsStream(b);
    ats(b, 0x1000);
    ats(b, 0x2000);
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_ATC_INV', StreamID: SID, Address: 0x1000n, Size: 0 }))).toBe(1);
    expect(b.tr.syncCheck()).toBe(CERROR_NONE);
    expect(b.tr.invalidateCommand(cmd({ name: 'CMD_ATC_INV', StreamID: SID, Address: 0x2000n, Size: 0 }))).toBe(0);
    expect(b.tr.syncCheck()).toBe(CERROR_ATC_INV_SYNC);
    expect(b.tr.syncCheck()).toBe(CERROR_NONE); // the re-issued CMD_SYNC completes
    expect(src(ats(b, 0x2000))).toBe('atc:0x1002000'); // never invalidated
    expect(b.tr.counters().atc).toMatchObject({ commands: 2, timeouts: 1 });
  });

  it('an unresponsive endpoint times out every invalidation', () => {
    const b = bed({ translator: { atcTimeoutSids: [SID] } });
    atsStream(b);
    b.tr.invalidateCommand(cmd({ name: 'CMD_ATC_INV', StreamID: SID + 1, Address: 0n, Size: 52 }));
    expect(b.tr.syncCheck()).toBe(CERROR_NONE);
    b.tr.invalidateCommand(cmd({ name: 'CMD_ATC_INV', StreamID: SID, Address: 0n, Size: 52 }));
    expect(b.tr.syncCheck()).toBe(CERROR_ATC_INV_SYNC);
  });
});

describe('Translation Request outcomes (§3.9.1.2) and Translated transactions (§3.9.1.3)', () => {
  it('EATS == 0b00: UR and F_BAD_ATS_TREQ (R 1, W, X, PRIV as requested, one STU, InputAddr[63:12])', () => {
    const b = bed();
    atsStream(b, { EATS: 0 });
    const r = b.tr.translate(SID, 1, 0x7654_3210, { write: true, priv: true, ats: true });
    expect(src(r)).toBe('F_BAD_ATS_TREQ/UR');
    if (r.ok || r.event === undefined) throw new Error('expected a record');
    expect(decodeEvent(r.event).fields).toMatchObject({ EventID: EVT.F_BAD_ATS_TREQ, StreamID: SID, SSV: 1, SubstreamID: 1, Span: 1, R: 1, W: 1, X: 0, PRIV: 1, InputAddr: 0x7654_3000n });
  });

  it('configuration errors complete with CA and record nothing; Config 0b000 with UR; faults with no access', () => {
    const b = bed();
    const st = linearStreamTable(b, 4);
    b.mem.writeWords(st.ste(SID), steWords({ V: 0 }));
    const r = ats(b, 0x1000);
    expect(src(r)).toBe('C_BAD_STE/CA');
    expect(r.ok ? null : r.event).toBeUndefined();
    b.mem.writeWords(st.ste(SID + 1), steWords({ Config: 0 }));
    expect(src(b.tr.translate(SID + 1, -1, 0, { read: true, ats: true }))).toBe('STE_ABORT/UR');
    const b2 = bed();
    atsStream(b2);
    const q = ats(b2, 0x40_0000); // unmapped
    expect(src(q)).toBe('F_TRANSLATION/DENIED');
    expect(q.ok ? null : q.event).toBeUndefined();
  });

  it('permissions: a read-only page grants R but not W; a write through it is denied without an event', () => {
    const b = bed();
    const pts = atsStream(b);
    pts[0]!.map(0x5000, 0x100_5000, 3, { ng: 1, ap: 0b11 });
    expect(src(ats(b, 0x5000))).toBe('walk:0x1005000');
    expect(src(ats(b, 0x5000, -1, true))).toBe('ATS_DENIED/DENIED');
  });

  it('ATSCHK == 1: Translated traffic of a stream whose EATS became 0b00 is F_TRANSL_FORBIDDEN (§7.3.8)', () => {
    const b = bed();
    b.tr.setControl({ atsChk: true });
    atsStream(b);
    ats(b, 0x1000);
    const st = b.tr.streamTable;
    const w = new Uint32Array(16);
    b.mem.readWords(st.base + SID * 64, w);
    b.mem.writeWords(st.base + SID * 64, steWords({ Config: STE_CONFIG.S1_TRANS, S1ContextPtr: 0n }));
    b.tr.invalidateCommand(cmd({ name: 'CMD_CFGI_STE', StreamID: SID, Leaf: 1 }));
    const r = ats(b, 0x1004);
    expect(src(r)).toBe('F_TRANSL_FORBIDDEN');
    if (r.ok || r.event === undefined) throw new Error('expected a record');
    expect([...r.event]).toEqual([0x07, SID, 0, 1 << 3, 0x1004, 0, 0, 0]);
    // Without ATSCHK Translated traffic passes unchecked.
    b.tr.setControl({ atsChk: false });
    expect(src(ats(b, 0x1004))).toBe('atc:0x1001004');
  });

  it('SMMUEN == 0: requests get UR with F_BAD_ATS_TREQ; cached Translated traffic F_TRANSL_FORBIDDEN', () => {
    const b = bed();
    atsStream(b);
    ats(b, 0x1000);
    b.tr.setControl({ smmuEn: false });
    expect(src(ats(b, 0x1000))).toBe('F_TRANSL_FORBIDDEN');
    expect(src(ats(b, 0x2000))).toBe('F_BAD_ATS_TREQ/UR');
  });

  it('split-stage ATS (EATS == 0b10, ATSCHK == 1): the ATC holds IPAs; Translated traffic goes through stage 2', () => {
    const b = bed();
    b.tr.setControl({ atsChk: true });
    const st = linearStreamTable(b, 4);
    const s2 = new PageTable(b.mem, b.alloc, G4K, 40, 1, 2);
    const s1 = new PageTable(b.mem, b.alloc, G4K, 48, 0, 1);
    const cd = b.alloc.alloc(64, 64);
    b.mem.writeWords(cd, cdWords(cdFields(s1, 5)));
    s1.map(0x1000, 0x8000_0000, 3, { ng: 1 });
    for (let p = s2.root; p < b.mem.base + b.alloc.used + 0x1000; p += 0x1000) s2.map(p, p);
    s2.map(0x8000_0000, 0x77_0000);
    b.mem.writeWords(st.ste(SID), steWords({ Config: STE_CONFIG.NESTED, S1ContextPtr: BigInt(cd), EATS: 0b10, ...s2Fields(s2, 3) }));
    expect(src(ats(b, 0x1008))).toBe('walk:0x770008');
    expect(b.tr.atc.entries(SID)[0]).toMatchObject({ outBase: 0x8000_0000, split: true });
    // A stage 2 change shows through at once (the ATC holds the IPA) after a stage 2 TLBI.
    s2.map(0x8000_0000, 0x88_0000);
    b.tr.invalidateCommand(cmd({ name: 'CMD_TLBI_S2_IPA', VMID: 3, Address: 0x8000_0000n }));
    expect(src(ats(b, 0x1008))).toBe('atc:0x880008');
    // Without ATSCHK, EATS == 0b10 behaves as 0b00.
    b.tr.setControl({ atsChk: false });
    expect(src(ats(b, 0x2000))).toBe('F_BAD_ATS_TREQ/UR');
  });

  it('S1DSS == 0b01 on a stage-1-only STE: requests without PASID get an identity mapping (§3.9.1.2)', () => {
    const b = bed();
    atsStream(b, { S1DSS: STE_S1DSS.BYPASS });
    expect(src(ats(b, 0x4_5678))).toBe('walk:0x45678');
    expect(src(ats(b, 0x4_5000, -1, true))).toBe('atc:0x45000');
  });
});
