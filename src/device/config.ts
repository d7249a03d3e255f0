/**
 * Configuration lookup (IHI0070 G.b §3.3.1-§3.3.2, chapter 5): the Stream table (linear and
 * 2-level), STE decoding and legality (§5.2.2 SteIllegal), SubstreamID selection (S1DSS, S1CDMax),
 * CD tables (linear and 2-level) and CD legality (§5.4.2 CdIllegal), through the configuration cache.
 *
 * Configuration errors come back as Faults carrying the event number the spec names (C_BAD_STREAMID,
 * F_STE_FETCH, C_BAD_STE, C_BAD_SUBSTREAMID, F_STREAM_DISABLED, F_CD_FETCH, C_BAD_CD); the translator
 * decides whether a record is written and builds it.
 *
 * ILLEGAL conditions implemented (§5.2.2, §5.4.2, §5.5), with the model's fixed ID values (no
 * VMSAv8-32, little-endian tables only, no STT, no D128, TERM_MODEL 0, NS1ATS 0, no Secure state):
 * STE: V == 0; RES0 bits set (with features.res0Check); Config 0b1x1 without S1P, 0b11x without
 * S2P; EATS 0b10 unless Config == 0b111 and S2S == 0; EATS 0b01/0b11 with stage 2 and S2S == 1;
 * EATS 0b11 with DPT and StreamWorld not EL1; STRW 0bx1 where STRW is used; S1STALLD == 1 without
 * the stall-and-terminate model; S1CDMax > SSIDSIZE; S1Fmt 0b01/0b10 without CD2L; S1ContextPtr
 * beyond the IAS (stage 2) or OAS; S2S against the stall model; S2AA64 == 0; S2HA/S2HD against
 * IDR0.HTTU; S2TG Reserved or unsupported; S2T0SZ out of range; S2SL0 invalid or inconsistent with
 * S2T0SZ/S2TG; S2TTB beyond the effective S2PS or 48 bits; S2ENDI == 1; S2VMID[15:8] without VMID16.
 * CD: V == 0; RES0 bits; S == 1 with STE.S1STALLD or without stall support; S == 0 with forced
 * stall; ENDI == 1; AA64 == 0; HA/HD against IDR0.HTTU; ASID[15:8] without ASID16; for each
 * enabled half: TGx Reserved or unsupported, TxSZ out of range, TTBx beyond the effective IPS or
 * 48 bits.
 * Not checked (features the model does not implement, so the fields are RES0 and not inspected
 * unless res0Check sees them as undefined bits): VMSAv8-32 and VMSAv9-128 fields, S2FWB, S2PIE/
 * S2POE/S2POI, PIE/PIIU/PIIP, HAFT, VMSPtr (no VMS), Secure-only fields, DPT_VMATCH, MPAM IDs.
 */

import type { PhysMem } from '../mem/phys.ts';
import { bitsOutside, getBits, layoutMask } from '../spec/bits.ts';
import type { Words } from '../spec/bits.ts';
import { EVT } from '../spec/events.ts';
import type { SmmuFeatures } from '../spec/features.ts';
import { REG, STRTAB_FMT, STRTAB_SPLIT, regGet } from '../spec/registers.ts';
import {
  CD, CD_BYTES, CD_F, L1CD_BYTES, L1CD_F, L1STD_BYTES, L1STD_F, L1STD_SPAN_MAX, STE, STE_BYTES, STE_CONFIG, STE_EATS,
  STE_F, STE_S1DSS, STE_S1FMT, STE_STRW, configStage1, configStage2, readAddress,
} from '../spec/structures.ts';
import type { ConfigCache } from './tlb.ts';
import { CD_L2_4K_BITS, CD_L2_64K_BITS, REGIME } from './tlb.ts';
import type { Fault, WalkParams } from './walk.ts';
import { fault, granuleTg0, granuleTg1, oasBits, stage1Params, stage2Params } from './walk.ts';

// ---------------------------------------------------------------------------------------------
// Stream table
// ---------------------------------------------------------------------------------------------

/** The Stream table as SMMU_STRTAB_BASE and SMMU_STRTAB_BASE_CFG configure it (§6.3.24-25). */
export interface StreamTableConfig {
  /** Effective base: ADDR aligned as §6.3.24 requires. */
  readonly base: number;
  readonly twoLevel: boolean;
  /** Effective SPLIT (2-level only): 6, 8 or 10. */
  readonly split: number;
  /** Effective LOG2SIZE: min(LOG2SIZE, IDR1.SIDSIZE). */
  readonly log2size: number;
}

const STE_WORDS = STE_BYTES / 4;
const CD_WORDS = CD_BYTES / 4;
const STE_LOG2 = 6;
const L1_LOG2 = 3;
const CD_LOG2 = 6;
/** L1CD and L1STD tables are aligned to at least 64 bytes (§5.2 S1Fmt, §6.3.24). */
const MIN_TABLE_ALIGN = 64;
const SPLITS: readonly number[] = [STRTAB_SPLIT.SPLIT_4KB, STRTAB_SPLIT.SPLIT_16KB, STRTAB_SPLIT.SPLIT_64KB];

/**
 * Decode SMMU_STRTAB_BASE (two 32-bit halves) and SMMU_STRTAB_BASE_CFG. FMT values other than
 * 2-level, and FMT without IDR0.ST_LEVEL, are Linear; SPLIT values other than 6/8/10 behave as 6;
 * alignment uses the literal LOG2SIZE (§6.3.24).
 */
export function streamTableConfig(baseLo: number, baseHi: number, cfg: number, f: SmmuFeatures): StreamTableConfig {
  const C = REG.SMMU_STRTAB_BASE_CFG.f;
  const addr = readAddress([baseLo, baseHi], REG.SMMU_STRTAB_BASE.f.ADDR);
  const log2 = regGet(cfg, C.LOG2SIZE);
  const twoLevel = f.stLevel2 && regGet(cfg, C.FMT) === STRTAB_FMT.TWO_LEVEL;
  const rawSplit = regGet(cfg, C.SPLIT);
  const split = SPLITS.includes(rawSplit) ? rawSplit : STRTAB_SPLIT.SPLIT_4KB;
  const align = twoLevel ? Math.max(MIN_TABLE_ALIGN, 2 ** (log2 - split + L1_LOG2)) : 2 ** (log2 + STE_LOG2);
  return {
    base: addr - (addr % align),
    twoLevel,
    split: twoLevel ? split : 0,
    log2size: Math.min(log2, f.sidSize),
  };
}

// ---------------------------------------------------------------------------------------------
// Decoded structures
// ---------------------------------------------------------------------------------------------

/** A fetched STE, decoded and checked once (the configuration cache keeps this). */
export interface SteInfo {
  readonly words: Uint32Array;
  /** Why the STE is ILLEGAL (V == 0 included), or null. */
  readonly illegal: string | null;
  readonly config: number;
  /** Stage 1 / stage 2 translate (Config 0b1x1 / 0b11x). */
  readonly s1: boolean;
  readonly s2: boolean;
  /** S1Fmt with 0b11 as 0b00; S1CDMax (0 when IDR1.SSIDSIZE == 0); S1DSS with 0b11 as 0b00. */
  readonly s1fmt: number;
  readonly s1cdmax: number;
  readonly s1dss: number;
  readonly s1ctx: number;
  readonly s1stalld: boolean;
  readonly eats: number;
  /** Translation regime (REGIME) of the stream's stage 1 (§5.2 STRW, SMMU_CR2.E2H when fetched). */
  readonly regime: number;
  /** VMID tag of the stream's TLB entries: S2VMID for NS-EL1 with stage 2 implemented, else 0. */
  readonly vmid: number;
  readonly s2p: WalkParams | null;
  readonly s2r: boolean;
  readonly s2s: boolean;
  readonly s2affd: boolean;
  readonly s2ha: boolean;
  readonly s2hd: boolean;
  readonly s2ptw: boolean;
}

/** A fetched CD, decoded and checked against the STE that located it. */
export interface CdInfo {
  readonly words: Uint32Array;
  readonly illegal: string | null;
  readonly asid: number;
  readonly aset: number;
  /** The TTB0 and TTB1 halves; null when walks are disabled (EPDx) or TTB1 is unreachable (EL2). */
  readonly tt0: WalkParams | null;
  readonly tt1: WalkParams | null;
  /** NS-EL1 and NS-EL2-E2H have two VA ranges; NS-EL2 one (TTB0 only, §5.4.1). */
  readonly twoRanges: boolean;
  readonly tbi0: boolean;
  readonly tbi1: boolean;
  readonly wxn: boolean;
  readonly pan: boolean;
  readonly affd: boolean;
  readonly ha: boolean;
  readonly hd: boolean;
  readonly r: boolean;
  readonly a: boolean;
  readonly s: boolean;
}

export interface L1stdInfo {
  readonly span: number;
  readonly l2ptr: number;
}

export interface L1cdInfo {
  readonly v: boolean;
  readonly l2ptr: number;
}

export type ConfigCacheT = ConfigCache<SteInfo, L1stdInfo, CdInfo, L1cdInfo>;

function bit(words: Words, f: { lsb: number; width: number }): number {
  return getBits(words, f.lsb, f.width);
}

function res0Reason(name: string, words: Words, mask: Uint32Array): string | null {
  const set = bitsOutside(words, mask);
  return set.length === 0 ? null : `${name} RES0 bits set: ${set.join(', ')}`;
}

const STE_MASK = layoutMask(STE);
const CD_MASK = layoutMask(CD);
const VMID8_HI = 0xff00;

/**
 * Decode an STE and decide its legality (§5.2, §5.2.2). `e2h` is SMMU_CR2.E2H, which the StreamWorld
 * of an STRW == 0b10 stream depends on (and which a configuration cache may keep, §3.17.5).
 */
export function decodeSte(words: Uint32Array, f: SmmuFeatures, e2h: boolean): SteInfo {
  const S = STE_F;
  const config = bit(words, S.Config);
  const s1 = config >= STE_CONFIG.BYPASS && configStage1(config);
  const s2 = config >= STE_CONFIG.BYPASS && configStage2(config);
  const strw = bit(words, S.STRW);
  // IgnoreSTESTRW(): no stage 1, no Hyp, stage 2 translating, or bypass.
  const strwUnused = !f.s1 || !f.hyp || s2 || config === STE_CONFIG.BYPASS;
  const regime = !s1 || strwUnused || strw === STE_STRW.EL1 ? REGIME.EL1 : e2h ? REGIME.EL2_E2H : REGIME.EL2;
  const rawVmid = bit(words, S.S2VMID);
  const s1fmtRaw = bit(words, S.S1Fmt);
  const s1dssRaw = bit(words, S.S1DSS);
  const base = {
    words,
    config,
    s1,
    s2,
    s1fmt: s1fmtRaw === 0b11 ? STE_S1FMT.LINEAR : s1fmtRaw,
    s1cdmax: f.ssidSize === 0 ? 0 : bit(words, S.S1CDMax),
    s1dss: s1dssRaw === 0b11 ? STE_S1DSS.TERMINATE : s1dssRaw,
    s1ctx: readAddress(words, S.S1ContextPtr),
    s1stalld: bit(words, S.S1STALLD) === 1,
    eats: bit(words, S.EATS),
    regime,
    vmid: f.s2 && regime === REGIME.EL1 ? rawVmid : 0,
    s2r: bit(words, S.S2R) === 1,
    s2s: bit(words, S.S2S) === 1,
    s2affd: bit(words, S.S2AFFD) === 1,
    s2ha: bit(words, S.S2HA) === 1,
    s2hd: bit(words, S.S2HD) === 1,
    s2ptw: bit(words, S.S2PTW) === 1,
  };
  let s2p: WalkParams | null = null;
  const illegal = ((): string | null => {
    if (bit(words, S.V) === 0) return 'STE.V == 0';
    if (f.res0Check) {
      const r = res0Reason('STE', words, STE_MASK);
      if (r !== null) return r;
    }
    // Config 0b0xx: the stream is disabled (abort without an event); nothing else is checked.
    if (config < STE_CONFIG.BYPASS) return null;
    if (s1 && !f.s1) return 'STE.Config enables stage 1, which SMMU_IDR0.S1P says is not implemented';
    if (s2 && !f.s2) return 'STE.Config enables stage 2, which SMMU_IDR0.S2P says is not implemented';
    const s2s = base.s2s;
    if (f.ats && (config & 0b11) !== 0) {
      const eats = base.eats;
      if (eats === STE_EATS.SPLIT_STAGE && (config !== STE_CONFIG.NESTED || s2s)) {
        return 'STE.EATS == 0b10 (split-stage ATS) needs Config == 0b111 and S2S == 0';
      }
      if ((eats === STE_EATS.FULL_ATS || eats === STE_EATS.FULL_ATS_DPT) && s2s && s2) return 'STE.EATS selects full ATS with stage 2 stalling (S2S == 1)';
      if (eats === STE_EATS.FULL_ATS_DPT && f.dpt && !strwUnused && strw !== STE_STRW.EL1) return 'STE.EATS == 0b11 (DPT) needs StreamWorld EL1';
    }
    if (!strwUnused && (strw & 1) !== 0) return `STE.STRW == 0b${strw.toString(2).padStart(2, '0')} is Reserved for a Non-secure STE`;
    if (s1) {
      if (base.s1stalld && f.stallModel !== 'stall-and-terminate') return 'STE.S1STALLD == 1 but the stall model is not configurable';
      const cdmax = bit(words, S.S1CDMax);
      if (f.ssidSize !== 0 && cdmax > f.ssidSize) return `STE.S1CDMax == ${cdmax} is above SMMU_IDR1.SSIDSIZE == ${f.ssidSize}`;
      if (f.ssidSize !== 0 && cdmax !== 0 && !f.cd2l && (s1fmtRaw === STE_S1FMT.L2_4K || s1fmtRaw === STE_S1FMT.L2_64K)) {
        return 'STE.S1Fmt selects a 2-level CD table, which SMMU_IDR0.CD2L says is not supported';
      }
      // STES1ContextPtrOutOfRange(): an IPA beyond the IAS (== OAS here), or a PA beyond the OAS.
      if (base.s1ctx >= 2 ** oasBits(f)) return `STE.S1ContextPtr 0x${base.s1ctx.toString(16)} is beyond the ${oasBits(f)}-bit ${s2 ? 'IAS' : 'OAS'}`;
    }
    if (s2) {
      if (s2s && f.stallModel === 'no-stall') return 'STE.S2S == 1 but SMMU_IDR0.STALL_MODEL says stalls are not supported';
      if (!s2s && f.stallModel === 'stall-forced') return 'STE.S2S == 0 but SMMU_IDR0.STALL_MODEL forces stalls';
      if (bit(words, S.S2AA64) === 0) return 'STE.S2AA64 selects VMSAv8-32 LPAE, which SMMU_IDR0.TTF says is not supported';
      if ((base.s2ha || base.s2hd) && f.httu === 0) return 'STE.S2HA/S2HD set but SMMU_IDR0.HTTU == 0';
      if (base.s2hd && f.httu === 1) return 'STE.S2HD set but SMMU_IDR0.HTTU supports the Access flag only';
      const p = stage2Params(
        f,
        bit(words, S.S2T0SZ),
        bit(words, S.S2SL0),
        f.ds ? bit(words, S.S2SL0_2) : 0,
        bit(words, S.S2TG),
        f.ds && bit(words, S.S2DS) === 1,
        bit(words, S.S2PS),
        readAddress(words, S.S2TTB),
      );
      if (typeof p === 'string') return p;
      s2p = p;
      if (bit(words, S.S2ENDI) === 1) return 'STE.S2ENDI == 1 but SMMU_IDR0.TTENDIAN supports little-endian tables only';
    }
    // IgnoreSTES2VMID(): S2VMID is used by NS-EL1 translating streams when stage 2 exists.
    const vmidUsed = f.s2 && config !== STE_CONFIG.BYPASS && (strw === STE_STRW.EL1 || strwUnused);
    if (vmidUsed && !f.vmid16 && (rawVmid & VMID8_HI) !== 0) return 'STE.S2VMID[15:8] is non-zero but SMMU_IDR0.VMID16 == 0';
    return null;
  })();
  return { ...base, illegal, s2p };
}

/**
 * Decode a CD and decide its legality against the STE that located it (§5.4, §5.4.2). StreamWorld
 * NS-EL2 has one VA range: TTB1 is unreachable and EPDx are IGNORED (effective 0) (§5.4.1).
 */
export function decodeCd(words: Uint32Array, ste: SteInfo, f: SmmuFeatures): CdInfo {
  const C = CD_F;
  const twoRanges = ste.regime !== REGIME.EL2;
  const epd0 = twoRanges && bit(words, C.EPD0) === 1;
  const epd1 = !twoRanges || bit(words, C.EPD1) === 1;
  const s = bit(words, C.S) === 1;
  const ha = bit(words, C.HA) === 1;
  const hd = bit(words, C.HD) === 1;
  const asid = bit(words, C.ASID);
  const ds = bit(words, C.DS) === 1;
  const ips = bit(words, C.IPS);
  let tt0: WalkParams | null = null;
  let tt1: WalkParams | null = null;
  const illegal = ((): string | null => {
    if (bit(words, C.V) === 0) return 'CD.V == 0';
    if (f.res0Check) {
      const r = res0Reason('CD', words, CD_MASK);
      if (r !== null) return r;
    }
    if (ste.s1stalld && s) return 'CD.S == 1 but the STE disables stage 1 stalls (S1STALLD)';
    if (f.stallModel === 'no-stall' && s) return 'CD.S == 1 but SMMU_IDR0.STALL_MODEL says stalls are not supported';
    if (f.stallModel === 'stall-forced' && !s) return 'CD.S == 0 but SMMU_IDR0.STALL_MODEL forces stalls';
    if ((!epd0 || !epd1) && bit(words, C.ENDI) === 1) return 'CD.ENDI == 1 but SMMU_IDR0.TTENDIAN supports little-endian tables only';
    if (bit(words, C.AA64) === 0) return 'CD.AA64 selects VMSAv8-32 LPAE, which SMMU_IDR0.TTF says is not supported';
    if ((ha || hd) && f.httu === 0) return 'CD.HA/HD set but SMMU_IDR0.HTTU == 0';
    if (hd && f.httu === 1) return 'CD.HD set but SMMU_IDR0.HTTU supports the Access flag only';
    if (ste.regime !== REGIME.EL2 && !f.asid16 && (asid & VMID8_HI) !== 0) return 'CD.ASID[15:8] is non-zero but SMMU_IDR0.ASID16 == 0';
    if (!epd0) {
      const p = stage1Params(f, bit(words, C.T0SZ), granuleTg0(bit(words, C.TG0)), ds, ips, readAddress(words, C.TTB0), '0');
      if (typeof p === 'string') return p;
      tt0 = p;
    }
    if (!epd1) {
      const p = stage1Params(f, bit(words, C.T1SZ), granuleTg1(bit(words, C.TG1)), ds, ips, readAddress(words, C.TTB1), '1');
      if (typeof p === 'string') return p;
      tt1 = p;
    }
    return null;
  })();
  return {
    words,
    illegal,
    asid: twoRanges ? asid : 0,
    aset: bit(words, C.ASET),
    tt0,
    tt1,
    twoRanges,
    tbi0: bit(words, C.TBI0) === 1,
    tbi1: twoRanges && bit(words, C.TBI1) === 1,
    wxn: bit(words, C.WXN) === 1,
    pan: twoRanges && bit(words, C.PAN) === 1,
    affd: bit(words, C.AFFD) === 1,
    ha: f.httu >= 1 && ha,
    hd: f.httu >= 2 && hd && ha,
    r: bit(words, C.R) === 1,
    a: bit(words, C.A) === 1,
    s,
  };
}

// ---------------------------------------------------------------------------------------------
// Lookup
// ---------------------------------------------------------------------------------------------

/** Translate an address used to fetch a CD or L1CD: an IPA through stage 2 when stage 2 translates. */
export type ConfigFetch = (ste: SteInfo, ia: number) => number | Fault;

function badStreamId(sid: number, why: string): Fault {
  return fault(EVT.C_BAD_STREAMID, `StreamID 0x${sid.toString(16)} ${why}`);
}

/**
 * Reads configuration structures through the configuration cache. Cache insertions happen only for
 * structures that were fetched (never for a fetch that aborted or faulted at stage 2, §3.21.3).
 */
export class ConfigReader {
  private table: StreamTableConfig = { base: 0, twoLevel: false, split: 0, log2size: 0 };
  /** 2^LOG2SIZE: the first StreamID out of range. */
  private sidLimit = 1;
  /** SMMU_CR2.E2H, kept with STEs fetched under it. */
  e2h = false;

  get st(): StreamTableConfig {
    return this.table;
  }

  set st(st: StreamTableConfig) {
    this.table = st;
    this.sidLimit = 2 ** st.log2size;
  }

  constructor(private readonly mem: PhysMem, private readonly f: SmmuFeatures, readonly cache: ConfigCacheT) {}

  /** The STE of a StreamID (§3.3.1, §5.1, §6.3.25), or the configuration error. */
  ste(sid: number): SteInfo | Fault {
    const st = this.table;
    // §7.3.3 (1): StreamID >= 2^LOG2SIZE (the effective LOG2SIZE, capped by IDR1.SIDSIZE).
    if (sid >= this.sidLimit) return badStreamId(sid, `is at or above 2^${st.log2size} (the Stream table size)`);
    const cached = this.cache.ste.get(sid);
    if (cached !== undefined) return cached;
    let addr: number;
    if (!st.twoLevel) {
      addr = st.base + sid * STE_BYTES;
    } else {
      const l1idx = Math.floor(sid / 2 ** st.split);
      let l1 = this.cache.l1std.get(l1idx);
      if (l1 === undefined) {
        const l1addr = st.base + l1idx * L1STD_BYTES;
        if (!this.mem.contains(l1addr, L1STD_BYTES)) return fault(EVT.F_STE_FETCH, `L1STD ${l1idx} at PA 0x${l1addr.toString(16)} is outside RAM`, l1addr);
        const w = [this.mem.read32(l1addr), this.mem.read32(l1addr + 4)];
        l1 = { span: bit(w, L1STD_F.Span), l2ptr: readAddress(w, L1STD_F.L2Ptr) };
        this.cache.l1std.set(l1idx, l1);
      }
      // §5.1.1, §7.3.3 (2): Span 0, Reserved, beyond SPLIT + 1, or the StreamID beyond the span.
      if (l1.span === 0) return badStreamId(sid, `selects L1STD ${l1idx} with Span == 0`);
      if (l1.span > L1STD_SPAN_MAX) return badStreamId(sid, `selects L1STD ${l1idx} with the Reserved Span ${l1.span}`);
      if (l1.span > st.split + 1) return badStreamId(sid, `selects L1STD ${l1idx} with Span ${l1.span} > SPLIT + 1`);
      const sub = sid % 2 ** st.split;
      if (sub >= 2 ** (l1.span - 1)) return badStreamId(sid, `is beyond the ${2 ** (l1.span - 1)} STEs of L1STD ${l1idx}`);
      const l2bytes = 2 ** (STE_LOG2 + l1.span - 1);
      addr = l1.l2ptr - (l1.l2ptr % l2bytes) + sub * STE_BYTES;
    }
    if (!this.mem.contains(addr, STE_BYTES)) return fault(EVT.F_STE_FETCH, `STE at PA 0x${addr.toString(16)} is outside RAM`, addr);
    const words = new Uint32Array(STE_WORDS);
    this.mem.readWords(addr, words);
    const info = decodeSte(words, this.f, this.e2h);
    this.cache.ste.set(sid, info);
    return info;
  }

  /**
   * The CD at table index `index` for a stream whose STE is valid and translates at stage 1
   * (§3.3.2, §5.2 S1Fmt/S1CDMax, §5.3). `recordSsid` is the SubstreamID a C_BAD_SUBSTREAMID record
   * carries (0 for S1DSS == 0b10 traffic without one, §7.3.9). Addresses are IPAs translated by
   * `fetch` when stage 2 translates.
   */
  cd(ste: SteInfo, sid: number, index: number, recordSsid: number, fetch: ConfigFetch): CdInfo | Fault {
    const cached = this.cache.getCd(sid, index);
    if (cached !== undefined) return cached;
    const ptr = ste.s1ctx;
    let cdIa: number;
    if (ste.s1cdmax === 0 || ste.s1fmt === STE_S1FMT.LINEAR) {
      // A single CD, or a linear table aligned to its size (S1ContextPtr[S1CDMax+5:6] RES0: the
      // model treats them as zero, one of the permitted behaviours).
      const bytes = 2 ** (ste.s1cdmax + CD_LOG2);
      cdIa = ptr - (ptr % bytes) + index * CD_BYTES;
    } else {
      const l2bits = ste.s1fmt === STE_S1FMT.L2_4K ? CD_L2_4K_BITS : CD_L2_64K_BITS;
      const l1idx = ste.s1cdmax <= l2bits ? 0 : Math.floor(index / 2 ** l2bits);
      let l1 = this.cache.getL1cd(sid, ste.s1fmt, l1idx);
      if (l1 === undefined) {
        const l1bytes = Math.max(MIN_TABLE_ALIGN, 2 ** (Math.max(ste.s1cdmax - l2bits, 0) + L1_LOG2));
        const l1Ia = ptr - (ptr % l1bytes) + l1idx * L1CD_BYTES;
        const pa = fetch(ste, l1Ia);
        if (typeof pa !== 'number') return pa;
        if (!this.mem.contains(pa, L1CD_BYTES)) return fault(EVT.F_CD_FETCH, `L1CD ${l1idx} at PA 0x${pa.toString(16)} is outside RAM`, pa);
        const w = [this.mem.read32(pa), this.mem.read32(pa + 4)];
        l1 = { v: bit(w, L1CD_F.V) === 1, l2ptr: readAddress(w, L1CD_F.L2Ptr) };
        this.cache.setL1cd(sid, ste.s1fmt, l1idx, l1);
      }
      // §5.3.1: L1CD.V == 0 terminates with C_BAD_SUBSTREAMID; so does an L2Ptr out of range in
      // SMMUv3.1 and later (§3.4.3 notes 3 and 4).
      if (!l1.v) return substreamFault(recordSsid, `L1CD ${l1idx} is invalid (V == 0)`);
      if (l1.l2ptr >= 2 ** oasBits(this.f)) return substreamFault(recordSsid, `L1CD ${l1idx} L2Ptr 0x${l1.l2ptr.toString(16)} is out of range`);
      const l2bytes = 2 ** (l2bits + CD_LOG2);
      cdIa = l1.l2ptr - (l1.l2ptr % l2bytes) + (index % 2 ** l2bits) * CD_BYTES;
    }
    const pa = fetch(ste, cdIa);
    if (typeof pa !== 'number') return pa;
    if (!this.mem.contains(pa, CD_BYTES)) return fault(EVT.F_CD_FETCH, `CD ${index} at PA 0x${pa.toString(16)} is outside RAM`, pa);
    const words = new Uint32Array(CD_WORDS);
    this.mem.readWords(pa, words);
    const info = decodeCd(words, ste, this.f);
    this.cache.setCd(sid, index, info);
    return info;
  }
}

export function substreamFault(ssid: number, why: string): Fault {
  const x = fault(EVT.C_BAD_SUBSTREAMID, `SubstreamID 0x${ssid.toString(16)}: ${why}`);
  x.ssid = ssid;
  return x;
}

/** selectSubstream's answer for traffic that bypasses stage 1 (S1DSS == 0b01 without a SubstreamID). */
export const SUBSTREAM_BYPASS = -1;

/**
 * SubstreamID checks and selection for a valid STE (§3.3.2, §5.2 S1DSS/S1CDMax, §7.3.7, §7.3.9):
 * the CD table index the transaction uses, SUBSTREAM_BYPASS, or the fault. `ssid` is -1 when the
 * transaction has none. Order: C_BAD_SUBSTREAMID before F_STREAM_DISABLED (§7.3.22). A number, not
 * an object, so the per-transaction path allocates nothing.
 */
export function selectSubstream(ste: SteInfo, ssid: number, f: SmmuFeatures): number | Fault {
  if (ssid >= 0) {
    if (f.ssidSize === 0) return substreamFault(ssid, 'SMMU_IDR1.SSIDSIZE == 0: substreams are not supported');
    if (!ste.s1) return substreamFault(ssid, 'stage 1 is not enabled (STE.Config == 0b1x0)');
    if (ste.s1cdmax === 0) return substreamFault(ssid, 'substreams are disabled (STE.S1CDMax == 0)');
    if (ssid >= 2 ** ste.s1cdmax) return substreamFault(ssid, `is at or above 2^STE.S1CDMax (${2 ** ste.s1cdmax})`);
    if (ste.s1dss === STE_S1DSS.SSID0 && ssid === 0) {
      return fault(EVT.F_STREAM_DISABLED, 'SubstreamID 0 is reserved for traffic without a SubstreamID (STE.S1DSS == 0b10)');
    }
    return ssid;
  }
  if (!ste.s1 || ste.s1cdmax === 0) return 0;
  if (ste.s1dss === STE_S1DSS.BYPASS) return SUBSTREAM_BYPASS;
  if (ste.s1dss === STE_S1DSS.SSID0) return 0;
  return fault(EVT.F_STREAM_DISABLED, 'a transaction without a SubstreamID reached an STE with S1DSS == 0b00 (terminate)');
}
