/**
 * Configuration lookup (IHI0070 G.b §3.3.1-§3.3.2, chapter 5): linear and 2-level Stream tables,
 * STE and CD legality (§5.2.2, §5.4.2), SubstreamID selection (S1DSS, S1CDMax), linear and 2-level
 * CD tables, and the configuration error events with their §7.3 records.
 */
import { describe, expect, it } from 'vitest';
import { decodeEvent, EVT } from '../../src/spec/events.ts';
import { encode32, encode64, REG } from '../../src/spec/registers.ts';
import { STE_CONFIG, STE_S1DSS, STE_S1FMT } from '../../src/spec/structures.ts';
import { streamTableConfig, decodeSte, decodeCd } from '../../src/device/config.ts';
import type { TranslateResult } from '../../src/device/translate.ts';
import { FULL_FEATURES } from '../../src/spec/features.ts';
import {
  bed, cdFields, cdWords, G4K, l1cdWords, l1stdWords, linearStreamTable, PageTable, RAM_BASE, s2Fields, steWords,
  type Bed, type CdValues, type SteValues,
} from '../helpers/tables.ts';

function fault(r: TranslateResult): { fault: string; reason: string; words: number[] | undefined } {
  if (r.ok) throw new Error(`expected a fault, got PA 0x${r.pa.toString(16)}`);
  return { fault: r.fault, reason: r.reason, words: r.event === undefined ? undefined : [...r.event] };
}

function pa(r: TranslateResult): number {
  if (!r.ok) throw new Error(`expected a translation, got ${r.fault}: ${r.reason}`);
  return r.pa;
}

/** A stage 1 page table mapping VA page `va` to `out` (non-global: the TLB tags it with the ASID). */
function table(b: Bed, va: number, out: number): PageTable {
  const pt = new PageTable(b.mem, b.alloc, G4K, 48, 0, 1);
  pt.map(va, out, 3, { ng: 1 });
  return pt;
}

describe('Stream table registers (§6.3.24-25)', () => {
  const base = (addr: number): [number, number] => {
    const v = encode64(REG.SMMU_STRTAB_BASE, { ADDR: BigInt(addr) });
    return [Number(v & 0xffff_ffffn), Number(v >> 32n)];
  };
  it('linear: base aligned to the table size, LOG2SIZE capped by IDR1.SIDSIZE', () => {
    const cfg = encode32(REG.SMMU_STRTAB_BASE_CFG, { FMT: 0, LOG2SIZE: 8 });
    expect(streamTableConfig(...base(0x4000_3fc0), cfg, FULL_FEATURES)).toEqual({ base: 0x4000_0000, twoLevel: false, split: 0, log2size: 8 });
    expect(streamTableConfig(...base(0x4000_0000), cfg, { ...FULL_FEATURES, sidSize: 5 }).log2size).toBe(5);
  });
  it('2-level: base aligned to max(64, L1 table size); Reserved SPLIT behaves as 6; FMT needs ST_LEVEL', () => {
    const cfg = encode32(REG.SMMU_STRTAB_BASE_CFG, { FMT: 1, SPLIT: 8, LOG2SIZE: 16 });
    expect(streamTableConfig(...base(0x4000_07c0), cfg, FULL_FEATURES)).toEqual({ base: 0x4000_0000, twoLevel: true, split: 8, log2size: 16 });
    expect(streamTableConfig(...base(0x4000_0040), encode32(REG.SMMU_STRTAB_BASE_CFG, { FMT: 1, SPLIT: 7, LOG2SIZE: 6 }), FULL_FEATURES)).toMatchObject({ base: 0x4000_0040, split: 6 });
    expect(streamTableConfig(...base(0x4000_0000), cfg, { ...FULL_FEATURES, stLevel2: false }).twoLevel).toBe(false);
  });
  it('setStreamTable takes the register words', () => {
    const b = bed();
    b.tr.setStreamTable(...base(0x4000_1000), encode32(REG.SMMU_STRTAB_BASE_CFG, { LOG2SIZE: 4 }));
    expect(b.tr.streamTable).toEqual({ base: 0x4000_1000, twoLevel: false, split: 0, log2size: 4 });
  });
});

describe('Stream table lookup and STE errors (§3.3.1, §5.1, §7.3.3-7.3.5)', () => {
  it('C_BAD_STREAMID for StreamIDs beyond the table, only with SMMU_CR2.RECINVSID (§7.3.3)', () => {
    const b = bed();
    linearStreamTable(b, 4);
    const r = fault(b.tr.translate(16, 0x23, 0x1000, { read: true }));
    // dword 0: EventID 0x02, SSV [11], SubstreamID [31:12]; StreamID [63:32]; nothing else.
    expect(r).toEqual({ fault: 'C_BAD_STREAMID', reason: 'StreamID 0x10 is at or above 2^4 (the Stream table size)', words: [0x0002_3802, 16, 0, 0, 0, 0, 0, 0] });
    b.tr.setControl({ recInvSid: false });
    expect(fault(b.tr.translate(16, -1, 0x1000, { read: true }))).toMatchObject({ fault: 'C_BAD_STREAMID', words: undefined });
  });

  it('F_STE_FETCH: FetchAddr is the STE address outside RAM (§7.3.4)', () => {
    const b = bed();
    b.tr.setStreamTable({ base: 0x2000_0000, twoLevel: false, split: 0, log2size: 8 });
    // FetchAddr[55:3] at [247:195]: word 6 holds bits [31:3] of the address.
    expect(fault(b.tr.translate(5, -1, 0x1000, { read: true }))).toEqual({
      fault: 'F_STE_FETCH', reason: 'STE at PA 0x20000140 is outside RAM', words: [0x03, 5, 0, 0, 0, 0, 0x2000_0140, 0],
    });
  });

  it('C_BAD_STE for V == 0 and for ILLEGAL configurations; Config 0b0xx aborts silently (§5.2, §7.3.5)', () => {
    const b = bed();
    const st = linearStreamTable(b, 4);
    b.mem.writeWords(st.ste(1), steWords({ V: 0 }));
    expect(fault(b.tr.translate(1, -1, 0x1000, { read: true }))).toEqual({ fault: 'C_BAD_STE', reason: 'STE.V == 0', words: [0x04, 1, 0, 0, 0, 0, 0, 0] });
    b.mem.writeWords(st.ste(2), steWords({ Config: 0b010 }));
    expect(fault(b.tr.translate(2, -1, 0x1000, { read: true }))).toEqual({ fault: 'STE_ABORT', reason: 'STE.Config == 0b0xx: stream disabled', words: undefined });
    b.mem.writeWords(st.ste(3), steWords({ Config: STE_CONFIG.S1_TRANS, STRW: 0b01 }));
    expect(fault(b.tr.translate(3, -1, 0x1000, { read: true })).reason).toBe('STE.STRW == 0b01 is Reserved for a Non-secure STE');
  });

  it('STE legality rules (§5.2.2 SteIllegal)', () => {
    const f = FULL_FEATURES;
    const illegal = (v: SteValues, feat = f): string | null => decodeSte(steWords(v), feat, false).illegal;
    const s2 = { S2T0SZ: 24, S2SL0: 1, S2TG: 0, S2PS: 5, S2AA64: 1, S2TTB: 0x4000_0000n };
    expect(illegal({ Config: STE_CONFIG.NESTED, ...s2 })).toBeNull();
    expect(illegal({ Config: STE_CONFIG.S1_TRANS }, { ...f, s1: false, hyp: false, cd2l: false })).toBe('STE.Config enables stage 1, which SMMU_IDR0.S1P says is not implemented');
    expect(illegal({ Config: STE_CONFIG.S2_TRANS, ...s2 }, { ...f, s2: false, hyp: false, vmw: false })).toBe('STE.Config enables stage 2, which SMMU_IDR0.S2P says is not implemented');
    expect(illegal({ Config: STE_CONFIG.S1_TRANS, EATS: 0b10 })).toBe('STE.EATS == 0b10 (split-stage ATS) needs Config == 0b111 and S2S == 0');
    expect(illegal({ Config: STE_CONFIG.S2_TRANS, EATS: 0b01, S2S: 1, ...s2 })).toBe('STE.EATS selects full ATS with stage 2 stalling (S2S == 1)');
    expect(illegal({ Config: STE_CONFIG.S1_TRANS, EATS: 0b11, STRW: 0b10 })).toBe('STE.EATS == 0b11 (DPT) needs StreamWorld EL1');
    expect(illegal({ Config: STE_CONFIG.S1_TRANS, S1STALLD: 1 }, { ...f, stallModel: 'no-stall' })).toBe('STE.S1STALLD == 1 but the stall model is not configurable');
    expect(illegal({ Config: STE_CONFIG.S1_TRANS, S1CDMax: 9 }, { ...f, ssidSize: 8 })).toBe('STE.S1CDMax == 9 is above SMMU_IDR1.SSIDSIZE == 8');
    expect(illegal({ Config: STE_CONFIG.S1_TRANS, S1CDMax: 4, S1Fmt: 1 }, { ...f, cd2l: false })).toBe('STE.S1Fmt selects a 2-level CD table, which SMMU_IDR0.CD2L says is not supported');
    expect(illegal({ Config: STE_CONFIG.S1_TRANS, S1ContextPtr: 2n ** 52n })).toBe('STE.S1ContextPtr 0x10000000000000 is beyond the 52-bit OAS');
    expect(illegal({ Config: STE_CONFIG.S2_TRANS, ...s2, S2S: 1 }, { ...f, stallModel: 'no-stall' })).toBe('STE.S2S == 1 but SMMU_IDR0.STALL_MODEL says stalls are not supported');
    expect(illegal({ Config: STE_CONFIG.S2_TRANS, ...s2 }, { ...f, stallModel: 'stall-forced' })).toBe('STE.S2S == 0 but SMMU_IDR0.STALL_MODEL forces stalls');
    expect(illegal({ Config: STE_CONFIG.S2_TRANS, ...s2, S2AA64: 0 })).toBe('STE.S2AA64 selects VMSAv8-32 LPAE, which SMMU_IDR0.TTF says is not supported');
    expect(illegal({ Config: STE_CONFIG.S2_TRANS, ...s2, S2HA: 1 }, { ...f, httu: 0 })).toBe('STE.S2HA/S2HD set but SMMU_IDR0.HTTU == 0');
    expect(illegal({ Config: STE_CONFIG.S2_TRANS, ...s2, S2HA: 1, S2HD: 1 }, { ...f, httu: 1 })).toBe('STE.S2HD set but SMMU_IDR0.HTTU supports the Access flag only');
    expect(illegal({ Config: STE_CONFIG.S2_TRANS, ...s2, S2ENDI: 1 })).toBe('STE.S2ENDI == 1 but SMMU_IDR0.TTENDIAN supports little-endian tables only');
    expect(illegal({ Config: STE_CONFIG.S2_TRANS, ...s2, S2VMID: 0x100 }, { ...f, vmid16: false })).toBe('STE.S2VMID[15:8] is non-zero but SMMU_IDR0.VMID16 == 0');
    expect(illegal({ Config: STE_CONFIG.S2_TRANS, ...s2, S2TG: 3 })).toBe('STE.S2TG is Reserved');
    // RES0 bits (bits [58:56]) with res0Check, ignored without.
    const w = steWords({ Config: STE_CONFIG.BYPASS });
    w[1]! |= 1 << (56 - 32);
    expect(decodeSte(w, f, false).illegal).toBe('STE RES0 bits set: 56');
    expect(decodeSte(w, { ...f, res0Check: false }, false).illegal).toBeNull();
    // Fields of a disabled stage are IGNORED: a bypass STE with junk S2 fields is legal.
    expect(illegal({ Config: STE_CONFIG.BYPASS, S2TG: 3, S2T0SZ: 63 })).toBeNull();
  });

  it('2-level Stream table: L1STD Span, L2Ptr alignment, C_BAD_STREAMID for invalid spans (§5.1, §7.3.3)', () => {
    const b = bed();
    const l1 = b.alloc.alloc(64 * 8, 64 * 8, 'L1');
    const l2a = b.alloc.alloc(256 * 64, 256 * 64, 'L2 a');
    const l2b = b.alloc.alloc(4 * 64, 4 * 64, 'L2 b');
    b.tr.setStreamTable({ base: l1, twoLevel: true, split: 8, log2size: 14 });
    b.mem.writeWords(l1 + 0 * 8, l1stdWords(9, l2a)); // StreamIDs 0..255
    b.mem.writeWords(l1 + 1 * 8, l1stdWords(3, l2b)); // StreamIDs 256..259
    b.mem.writeWords(l1 + 3 * 8, l1stdWords(12, l2b)); // Reserved Span
    b.mem.writeWords(l1 + 4 * 8, l1stdWords(10, l2a)); // Span > SPLIT + 1
    b.mem.writeWords(l2a + 200 * 64, steWords({ Config: STE_CONFIG.BYPASS }));
    b.mem.writeWords(l2b + 3 * 64, steWords({ Config: STE_CONFIG.BYPASS }));
    expect(pa(b.tr.translate(200, -1, 0x1234, { read: true }))).toBe(0x1234);
    expect(pa(b.tr.translate(259, -1, 0x1234, { read: true }))).toBe(0x1234);
    expect(fault(b.tr.translate(260, -1, 0, { read: true })).reason).toBe('StreamID 0x104 is beyond the 4 STEs of L1STD 1');
    expect(fault(b.tr.translate(512, -1, 0, { read: true })).reason).toBe('StreamID 0x200 selects L1STD 2 with Span == 0');
    expect(fault(b.tr.translate(768, -1, 0, { read: true })).reason).toBe('StreamID 0x300 selects L1STD 3 with the Reserved Span 12');
    expect(fault(b.tr.translate(1024, -1, 0, { read: true })).reason).toBe('StreamID 0x400 selects L1STD 4 with Span 10 > SPLIT + 1');
    expect(fault(b.tr.translate(1 << 14, -1, 0, { read: true })).fault).toBe('C_BAD_STREAMID');
    // An L1STD outside RAM is an F_STE_FETCH with the L1STD's address.
    const b2 = bed();
    b2.tr.setStreamTable({ base: 0x1000_0000, twoLevel: true, split: 6, log2size: 10 });
    expect(fault(b2.tr.translate(130, -1, 0, { read: true }))).toMatchObject({ fault: 'F_STE_FETCH', words: [0x03, 130, 0, 0, 0, 0, 0x1000_0010, 0] });
  });

  it('bypass STE: output == input; beyond the OAS is F_ADDR_SIZE (§3.4); SMMUEN == 0 follows SMMU_GBPA', () => {
    const b = bed({ features: { oas: 0 } });
    const st = linearStreamTable(b, 4);
    b.mem.writeWords(st.ste(1), steWords({ Config: STE_CONFIG.BYPASS }));
    expect(b.tr.translate(1, -1, 0xffff_f000, { read: true })).toMatchObject({ ok: true, pa: 0xffff_f000, source: 'bypass' });
    const r = fault(b.tr.translate(1, -1, 2 ** 32, { write: true }));
    expect(r).toEqual({ fault: 'F_ADDR_SIZE', reason: 'bypass STE: input address beyond the 32-bit OAS', words: [0x11, 1, 0, 0b10_0000_0000, 0, 1, 0, 0] });
    b.tr.setControl({ smmuEn: false });
    expect(b.tr.translate(1, -1, 0x1234, { read: true })).toMatchObject({ ok: true, pa: 0x1234, source: 'bypass' });
    expect(fault(b.tr.translate(1, -1, 2 ** 32, { read: true }))).toMatchObject({ fault: 'BYPASS_ADDRESS_SIZE', words: undefined });
    b.tr.setControl({ gbpaAbort: true });
    expect(fault(b.tr.translate(1, -1, 0x1234, { read: true }))).toMatchObject({ fault: 'GBPA_ABORT', words: undefined });
  });
});

describe('SubstreamIDs and CD tables (§3.3.2, §5.2 S1DSS/S1Fmt/S1CDMax, §5.3, §7.3.7, §7.3.9)', () => {
  const SID = 2;

  /** A stream with a linear table of 2^cdmax CDs; CD i maps VA 0x1000 to 0x10000 + i·0x1000. */
  function linearCds(b: Bed, cdmax: number, s1dss: number, ste: SteValues = {}): void {
    const st = linearStreamTable(b, 4);
    const tbl = b.alloc.alloc(64 << cdmax, 64 << cdmax, 'CD table');
    for (let i = 0; i < 2 ** cdmax; i++) {
      const pt = table(b, 0x1000, 0x10000 + i * 0x1000);
      b.mem.writeWords(tbl + i * 64, cdWords(cdFields(pt, 100 + i)));
    }
    b.mem.writeWords(st.ste(SID), steWords({ Config: STE_CONFIG.S1_TRANS, S1ContextPtr: BigInt(tbl), S1CDMax: cdmax, S1DSS: s1dss, ...ste }));
  }

  it('SubstreamID indexes a linear CD table; each CD has its own ASID and tables', () => {
    const b = bed();
    linearCds(b, 2, STE_S1DSS.TERMINATE);
    expect(pa(b.tr.translate(SID, 3, 0x1008, { read: true }))).toBe(0x13008);
    expect(pa(b.tr.translate(SID, 1, 0x1008, { read: true }))).toBe(0x11008);
  });

  it('S1DSS == 0b00: no SubstreamID is F_STREAM_DISABLED (dword 0: number and StreamID only, §7.3.7)', () => {
    const b = bed();
    linearCds(b, 2, STE_S1DSS.TERMINATE);
    expect(fault(b.tr.translate(SID, -1, 0x1000, { read: true }))).toEqual({
      fault: 'F_STREAM_DISABLED', reason: 'a transaction without a SubstreamID reached an STE with S1DSS == 0b00 (terminate)', words: [0x06, SID, 0, 0, 0, 0, 0, 0],
    });
  });

  it('S1DSS == 0b01: no SubstreamID bypasses stage 1; with a SubstreamID stage 1 translates', () => {
    const b = bed();
    linearCds(b, 1, STE_S1DSS.BYPASS);
    expect(b.tr.translate(SID, -1, 0x1008, { read: true })).toMatchObject({ ok: true, pa: 0x1008, source: 'bypass' });
    expect(pa(b.tr.translate(SID, 1, 0x1008, { read: true }))).toBe(0x11008);
  });

  it('S1DSS == 0b10: no SubstreamID uses CD 0; SubstreamID 0 is F_STREAM_DISABLED', () => {
    const b = bed();
    linearCds(b, 1, STE_S1DSS.SSID0);
    expect(pa(b.tr.translate(SID, -1, 0x1008, { read: true }))).toBe(0x10008);
    expect(fault(b.tr.translate(SID, 0, 0x1008, { read: true }))).toMatchObject({ fault: 'F_STREAM_DISABLED', words: [0x06, SID, 0, 0, 0, 0, 0, 0] });
  });

  it('C_BAD_SUBSTREAMID: SubstreamID beyond S1CDMax, with substreams disabled, or without stage 1 (§7.3.9)', () => {
    const b = bed();
    linearCds(b, 2, STE_S1DSS.TERMINATE);
    // dword 0: EventID 0x08, SubstreamID [31:12], no SSV (bit 11 RES0); StreamID.
    expect(fault(b.tr.translate(SID, 4, 0x1000, { read: true }))).toEqual({
      fault: 'C_BAD_SUBSTREAMID', reason: 'SubstreamID 0x4: is at or above 2^STE.S1CDMax (4)', words: [0x0000_4008, SID, 0, 0, 0, 0, 0, 0],
    });
    const b2 = bed();
    linearCds(b2, 0, STE_S1DSS.TERMINATE);
    expect(fault(b2.tr.translate(SID, 0, 0x1000, { read: true })).reason).toBe('SubstreamID 0x0: substreams are disabled (STE.S1CDMax == 0)');
    const b3 = bed();
    const st = linearStreamTable(b3, 4);
    b3.mem.writeWords(st.ste(SID), steWords({ Config: STE_CONFIG.BYPASS }));
    expect(fault(b3.tr.translate(SID, 7, 0x1000, { read: true }))).toMatchObject({ fault: 'C_BAD_SUBSTREAMID', reason: 'SubstreamID 0x7: stage 1 is not enabled (STE.Config == 0b1x0)' });
    const b4 = bed({ features: { ssidSize: 0 } });
    linearCds(b4, 0, STE_S1DSS.TERMINATE);
    expect(fault(b4.tr.translate(SID, 0, 0x1000, { read: true })).reason).toBe('SubstreamID 0x0: SMMU_IDR1.SSIDSIZE == 0: substreams are not supported');
  });

  for (const [fmt, l2bits, name] of [[STE_S1FMT.L2_4K, 6, '4KB leaves (S1Fmt 0b01)'], [STE_S1FMT.L2_64K, 10, '64KB leaves (S1Fmt 0b10)']] as const) {
    it(`2-level CD table, ${name}: L1CD.V, L2Ptr, index split at SSID[${l2bits}]`, () => {
      const b = bed({ ramMiB: 32 });
      const st = linearStreamTable(b, 4);
      const cdmax = l2bits + 3;
      const l1 = b.alloc.alloc(8 * 8, 64, 'L1CD table');
      const l2 = b.alloc.alloc(64 << l2bits, 64 << l2bits, 'L2 CD table');
      const ssid = 5 * 2 ** l2bits + 17;
      b.mem.writeWords(l1 + 5 * 8, l1cdWords(1, l2));
      b.mem.writeWords(l2 + 17 * 64, cdWords(cdFields(table(b, 0x1000, 0x5_5000), 9)));
      b.mem.writeWords(st.ste(SID), steWords({ Config: STE_CONFIG.S1_TRANS, S1ContextPtr: BigInt(l1), S1CDMax: cdmax, S1Fmt: fmt }));
      expect(pa(b.tr.translate(SID, ssid, 0x1010, { read: true }))).toBe(0x5_5010);
      // L1CD 6 has V == 0: C_BAD_SUBSTREAMID naming the transaction's SubstreamID.
      expect(fault(b.tr.translate(SID, 6 * 2 ** l2bits, 0x1000, { read: true }))).toMatchObject({
        fault: 'C_BAD_SUBSTREAMID', reason: `SubstreamID 0x${(6 * 2 ** l2bits).toString(16)}: L1CD 6 is invalid (V == 0)`,
      });
    });
  }

  it('C_BAD_SUBSTREAMID records SubstreamID 0 for S1DSS == 0b10 traffic through an invalid L1CD (§7.3.9)', () => {
    const b = bed();
    const st = linearStreamTable(b, 4);
    const l1 = b.alloc.alloc(64, 64);
    b.mem.writeWords(st.ste(SID), steWords({ Config: STE_CONFIG.S1_TRANS, S1ContextPtr: BigInt(l1), S1CDMax: 8, S1Fmt: 1, S1DSS: STE_S1DSS.SSID0 }));
    expect(fault(b.tr.translate(SID, -1, 0x1000, { read: true })).words).toEqual([0x08, SID, 0, 0, 0, 0, 0, 0]);
  });

  it('F_CD_FETCH: CD outside RAM, FetchAddr the CD address (§7.3.10)', () => {
    const b = bed();
    const st = linearStreamTable(b, 4);
    b.mem.writeWords(st.ste(SID), steWords({ Config: STE_CONFIG.S1_TRANS, S1ContextPtr: 0x3000_0000n, S1CDMax: 4 }));
    expect(fault(b.tr.translate(SID, 3, 0x1000, { read: true }))).toEqual({
      fault: 'F_CD_FETCH', reason: 'CD 3 at PA 0x300000c0 is outside RAM', words: [0x0000_3809, SID, 0, 0, 0, 0, 0x3000_00c0, 0],
    });
  });

  it('C_BAD_CD for V == 0 and for ILLEGAL CDs (§5.4.2, §7.3.11)', () => {
    const b = bed();
    const st = linearStreamTable(b, 4);
    const cd = b.alloc.alloc(64, 64);
    b.mem.writeWords(cd, cdWords({ V: 0 }));
    b.mem.writeWords(st.ste(SID), steWords({ Config: STE_CONFIG.S1_TRANS, S1ContextPtr: BigInt(cd) }));
    expect(fault(b.tr.translate(SID, -1, 0x1000, { read: true }))).toEqual({ fault: 'C_BAD_CD', reason: 'CD.V == 0', words: [0x0a, SID, 0, 0, 0, 0, 0, 0] });
  });

  it('CD legality rules (§5.4.2 CdIllegal)', () => {
    const f = FULL_FEATURES;
    const ste = decodeSte(steWords({ Config: STE_CONFIG.S1_TRANS }), f, false);
    const el2 = decodeSte(steWords({ Config: STE_CONFIG.S1_TRANS, STRW: 0b10 }), f, false);
    const stalld = decodeSte(steWords({ Config: STE_CONFIG.S1_TRANS, S1STALLD: 1 }), f, false);
    const base: CdValues = { T0SZ: 16, TG0: 0, IPS: 5, EPD1: 1, TTB0: 0x4000_0000n };
    const illegal = (v: CdValues, s = ste, feat = f): string | null => decodeCd(cdWords({ ...base, ...v }), s, feat).illegal;
    expect(illegal({})).toBeNull();
    expect(illegal({ S: 1 }, stalld)).toBe('CD.S == 1 but the STE disables stage 1 stalls (S1STALLD)');
    expect(illegal({ S: 1 }, ste, { ...f, stallModel: 'no-stall' })).toBe('CD.S == 1 but SMMU_IDR0.STALL_MODEL says stalls are not supported');
    expect(illegal({}, ste, { ...f, stallModel: 'stall-forced' })).toBe('CD.S == 0 but SMMU_IDR0.STALL_MODEL forces stalls');
    expect(illegal({ ENDI: 1 })).toBe('CD.ENDI == 1 but SMMU_IDR0.TTENDIAN supports little-endian tables only');
    expect(illegal({ AA64: 0 })).toBe('CD.AA64 selects VMSAv8-32 LPAE, which SMMU_IDR0.TTF says is not supported');
    expect(illegal({ HA: 1 }, ste, { ...f, httu: 0 })).toBe('CD.HA/HD set but SMMU_IDR0.HTTU == 0');
    expect(illegal({ HA: 1, HD: 1 }, ste, { ...f, httu: 1 })).toBe('CD.HD set but SMMU_IDR0.HTTU supports the Access flag only');
    expect(illegal({ ASID: 0x100 }, ste, { ...f, asid16: false })).toBe('CD.ASID[15:8] is non-zero but SMMU_IDR0.ASID16 == 0');
    expect(illegal({ T0SZ: 10 })).toBe('CD.T0SZ == 10 is outside 16..39');
    expect(illegal({ TG0: 3 })).toBe('CD.TG0 is Reserved');
    expect(illegal({ TTB0: 2n ** 48n })).toBe('CD.TTB0 0x1000000000000 is outside the 48-bit IPA size');
    expect(illegal({ EPD1: 0, T1SZ: 16, TG1: 0 })).toBe('CD.TG1 is Reserved');
    // EPD0 == 1: TTB0 fields are not checked (§5.4.1.1).
    expect(illegal({ EPD0: 1, T0SZ: 0, TG0: 3 })).toBeNull();
    // NS-EL2: one range, EPDx IGNORED (effective 0), TTB1 unreachable: its fields are not checked.
    expect(illegal({ EPD1: 0, TG1: 0 }, el2)).toBeNull();
    expect(illegal({ EPD0: 1, T0SZ: 0 }, el2)).toBe('CD.T0SZ == 0 is outside 16..39');
    // ASID[15:8] is not checked for NS-EL2 (ASID IGNORED).
    expect(illegal({ ASID: 0x100 }, el2, { ...f, asid16: false })).toBeNull();
  });

  it('nested: the CD pointer is an IPA translated by stage 2', () => {
    const b = bed();
    const st = linearStreamTable(b, 4);
    const s2 = new PageTable(b.mem, b.alloc, G4K, 40, 1, 2);
    const cdPa = b.alloc.alloc(0x1000, 0x1000);
    const pt = new PageTable(b.mem, b.alloc, G4K, 48, 0, 1);
    pt.map(0x1000, 0x9000_0000);
    // Stage 1 tables (root and the three tables below it) are identity-mapped; the CD sits at
    // IPA 0x7000_0000.
    for (let p = pt.root; p < RAM_BASE + b.alloc.used; p += 0x1000) s2.map(p, p);
    s2.map(0x9000_0000, RAM_BASE + 0x30_0000);
    s2.map(0x7000_0000, cdPa);
    b.mem.writeWords(cdPa, cdWords(cdFields(pt, 1)));
    b.mem.writeWords(st.ste(SID), steWords({ Config: STE_CONFIG.NESTED, S1ContextPtr: 0x7000_0000n, ...s2Fields(s2, 4) }));
    expect(pa(b.tr.translate(SID, -1, 0x1abc, { read: true }))).toBe(RAM_BASE + 0x30_0abc);
  });
});
