/**
 * VMSAv8-64 translation table walks for the SMMU (IHI0070 G.b §3.3, §3.4, §13.4; the table formats
 * are the A-profile architecture's, which the SMMU follows "unless otherwise specified", §3.3.2).
 *
 * Everything here works on u32 words and numbers: a descriptor is read as its low and high words,
 * input addresses arrive as (hi, lo) word pairs, output and table addresses are numbers (< 2^52, so
 * exact). No BigInt.
 *
 * The model implements VMSAv8-64 only (IDR0.TTF = AArch64, little-endian tables, no D128): 4KB,
 * 16KB and 64KB granules, start levels from TxSZ (stage 1) or SL0 (stage 2, with concatenated
 * initial tables), block and page descriptors, 52-bit output with the 64KB granule (FEAT_LPA
 * layout, when the OAS is 52 bits) and with DS (FEAT_LPA2 layout, level -1 for 4KB).
 */

import type { PhysMem } from '../mem/phys.ts';
import { DMA_ACCESS } from '../mem/dma.ts';
import { EVENT_CLASS, EVT } from '../spec/events.ts';
import type { SmmuFeatures } from '../spec/features.ts';
import { OAS_BITS } from '../spec/features.ts';
import { ADDRESS_SIZE_BITS, TG0_16KB, TG0_4KB, TG0_64KB, TG1_16KB, TG1_4KB, TG1_64KB } from '../spec/structures.ts';
import { REGIME, tgCode } from './tlb.ts';

// ---------------------------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------------------------

/**
 * A fault or configuration error on the way to a translation. The translator decides whether it
 * is recorded (CD.R/S, STE.S2R/S2S, CR2.RECINVSID) and turns it into an event record (§7.3).
 */
export interface Fault {
  /** Event number (EVT), also for faults that end up not recorded. */
  readonly event: number;
  /** Why, in words (for people and tests; not part of any record). */
  readonly reason: string;
  /** Stage 2 fault (S2 field). */
  s2: boolean;
  /** CLASS field: EVENT_CLASS.CD, TTD or IN. */
  cls: number;
  /** IPA field (stage 2 faults): the IPA being translated. */
  ipa: number;
  /** FetchAddr field (F_STE_FETCH, F_CD_FETCH, F_WALK_EABT). */
  fetch: number;
  /** TTRnW (F_PERMISSION with CLASS == TTD): 1 a descriptor read, 0 a descriptor write faulted. */
  ttrnw: number;
  /** C_BAD_SUBSTREAMID: the SubstreamID to record when it differs from the transaction's (§7.3.9). */
  ssid: number;
  /** Filled in by the translator: whether a record is written, and how the transaction ends. */
  record: boolean;
  abort: boolean;
}

export function fault(event: number, reason: string, fetch = 0): Fault {
  return { event, reason, s2: false, cls: EVENT_CLASS.IN, ipa: 0, fetch, ttrnw: 1, ssid: -1, record: true, abort: true };
}

export function isFault(x: unknown): x is Fault {
  return typeof x === 'object' && x !== null && 'event' in x && 'reason' in x;
}

// ---------------------------------------------------------------------------------------------
// Granules, sizes, parameters
// ---------------------------------------------------------------------------------------------

/** Granule sizes as log2 bytes. */
export const G4K = 12;
export const G16K = 14;
export const G64K = 16;

/** Descriptors are 8 bytes: a table of one granule resolves granule_bits - 3 address bits. */
const DESC_BYTES = 8;
const DESC_LOG2 = 3;
/** Concatenation of up to 16 initial tables adds up to 4 bits at the start level (stage 2). */
const MAX_CONCAT_BITS = 4;
/** The largest TxSZ without IDR3.STT (the model has no small translation tables), §5.4, §5.2. */
const TXSZ_MAX = 39;
/** Output/input address widths (bits). */
const VA_48 = 48;
const VA_52 = 52;
const PA_52 = 52;
/** 52-bit output needs 64-byte alignment of the starting table (§5.2 S2TTB, §5.4 TTB0). */
const ALIGN_52 = 64;

/** How output addresses sit in descriptors. */
export const OA_MODE = Object.freeze({
  /** OA[47:g] in descriptor bits [47:g]. */
  BITS48: 0,
  /** 64KB granule with a 52-bit PA (FEAT_LPA): OA[51:48] in bits [15:12]. */
  LPA: 1,
  /** DS == 1 (FEAT_LPA2): OA[49:g] in bits [49:g], OA[51:50] in bits [9:8]. */
  DS: 2,
} as const);

/** Everything a walk of one translation table needs. */
export interface WalkParams {
  /** Granule, log2 bytes: 12, 14 or 16. */
  readonly g: number;
  /** Bits resolved per level: g - 3. */
  readonly stride: number;
  /** TLBI TG code of the granule (§4.4.1.1). */
  readonly tg: number;
  /** Input address size in bits (64 - TxSZ). */
  readonly ia: number;
  /** Starting level, -1..3. */
  readonly start: number;
  /** Starting table address (aligned as the architecture requires). */
  readonly ttb: number;
  /** Effective output address size in bits (IPS/S2PS capped to the OAS and the granule). */
  readonly ps: number;
  readonly oa: number;
  /** Levels at which block descriptors are allowed: a bit mask, bit (level + 1). */
  readonly blocks: number;
}

/** OAS in bits. */
export function oasBits(f: SmmuFeatures): number {
  return OAS_BITS[f.oas] ?? VA_48;
}

/** CD.TG0 / STE.S2TG granule (0 for the Reserved encoding). */
export function granuleTg0(code: number): number {
  return code === TG0_4KB ? G4K : code === TG0_16KB ? G16K : code === TG0_64KB ? G64K : 0;
}

/** CD.TG1 granule (0 for the Reserved encoding). */
export function granuleTg1(code: number): number {
  return code === TG1_4KB ? G4K : code === TG1_16KB ? G16K : code === TG1_64KB ? G64K : 0;
}

export function granuleSupported(f: SmmuFeatures, g: number): boolean {
  return g === G4K ? f.gran4k : g === G16K ? f.gran16k : g === G64K ? f.gran64k : false;
}

/**
 * Effective output size of a CD.IPS / STE.S2PS encoding (§5.4 IPS, §5.2 S2PS): capped to the OAS;
 * 0b110/0b111 behave as 0b101 in SMMUv3.0, 0b111 as 0b110 before v3.4. A 52-bit size is only
 * representable with the 64KB granule or DS; otherwise the effective size is 48 bits (as the PE's
 * TCR.IPS with FEAT_LPA and a 4KB/16KB granule).
 */
export function effectivePs(f: SmmuFeatures, code: number, g: number, ds: boolean): number {
  let bits = ADDRESS_SIZE_BITS[code] ?? VA_48;
  if (f.archMinor === 0 && bits > VA_48) bits = VA_48;
  bits = Math.min(bits, oasBits(f));
  if (bits > VA_48 && g !== G64K && !ds) bits = VA_48;
  return bits;
}

function oaMode(f: SmmuFeatures, g: number, ds: boolean): number {
  if (ds) return OA_MODE.DS;
  if (g === G64K && oasBits(f) === PA_52) return OA_MODE.LPA;
  return OA_MODE.BITS48;
}

/**
 * Levels at which a block descriptor is allowed: 4KB levels 1 and 2 (0 with DS), 16KB level 2
 * (1 with DS), 64KB level 2 (1 with a 52-bit PA). The A-profile architecture's
 * AArch64.BlockDescSupported().
 */
function blockLevels(f: SmmuFeatures, g: number, ds: boolean): number {
  const bit = (level: number): number => 1 << (level + 1);
  if (g === G4K) return bit(1) | bit(2) | (ds ? bit(0) : 0);
  if (g === G16K) return bit(2) | (ds ? bit(1) : 0);
  return bit(2) | (oasBits(f) === PA_52 ? bit(1) : 0);
}

function alignDown(a: number, bytes: number): number {
  return a - (a % bytes);
}

/** Bytes of the table at the start level (with stage 2 concatenation, the whole group). */
function startTableBytes(ia: number, g: number, start: number): number {
  const bits = ia - g - (3 - start) * (g - DESC_LOG2);
  return 2 ** Math.max(bits, 0) * DESC_BYTES;
}

/**
 * Stage 1 parameters for one half of a CD (§5.4 TxSZ, TGx, IPS, TTBx; §3.4). Returns the reason the
 * CD is ILLEGAL when the half is inconsistent.
 */
export function stage1Params(f: SmmuFeatures, txsz: number, g: number, dsBit: boolean, ipsCode: number, ttb: number, half: string): WalkParams | string {
  if (g === 0) return `CD.TG${half} is Reserved`;
  if (!granuleSupported(f, g)) return `CD.TG${half} selects a ${2 ** (g - 10)}KB granule, which SMMU_IDR5 does not support`;
  const ds = dsBit && f.ds && g !== G64K;
  // §5.4 T0SZ: max 39 without IDR3.STT; min 12 for 52-bit VAs (VAX and 64KB or DS), else 16.
  const min = f.vax === 1 && (g === G64K || ds) ? 64 - VA_52 : 64 - VA_48;
  if (txsz > TXSZ_MAX || txsz < min) return `CD.T${half}SZ == ${txsz} is outside ${min}..${TXSZ_MAX}`;
  const ps = effectivePs(f, ipsCode, g, ds);
  // §5.4 TTB0/TTB1: ILLEGAL outside the effective IPS, or above 48 bits for 4KB/16KB without DS.
  if (ttb >= 2 ** ps) return `CD.TTB${half} 0x${ttb.toString(16)} is outside the ${ps}-bit IPA size`;
  if (g !== G64K && !ds && ttb >= 2 ** VA_48) return `CD.TTB${half} 0x${ttb.toString(16)} is above 48 bits without CD.DS`;
  const ia = 64 - txsz;
  const stride = g - DESC_LOG2;
  const start = 4 - Math.ceil((ia - g) / stride);
  const align = Math.max(startTableBytes(ia, g, start), ps === PA_52 ? ALIGN_52 : DESC_BYTES);
  return { g, stride, tg: tgCode(g), ia, start, ttb: alignDown(ttb, align), ps, oa: oaMode(f, g, ds), blocks: blockLevels(f, g, ds) };
}

/**
 * The stage 2 starting level of VTCR_EL2.{SL2, SL0} (the A-profile architecture's
 * AArch64.S2StartLevel), or undefined for an invalid encoding (AArch64.S2InvalidSL; the model has
 * no IDR3.STT, and PAMax is the OAS).
 */
function s2StartLevel(f: SmmuFeatures, g: number, sl0: number, sl2: number, ds: boolean): number | undefined {
  const pa = oasBits(f);
  if (g === G4K) {
    const sl = sl2 * 4 + sl0;
    if (sl === 0b000) return 2;
    if (sl === 0b001) return 1;
    if (sl === 0b010) return pa < 44 ? undefined : 0;
    if (sl === 0b100) return ds ? -1 : undefined;
    return undefined; // 0b011 needs IDR3.STT; 0b1x1 and 0b11x are invalid
  }
  if (g === G16K) {
    if (sl0 === 0b00) return 3;
    if (sl0 === 0b01) return 2;
    if (sl0 === 0b10) return pa < 42 ? undefined : 1;
    return ds ? 0 : undefined;
  }
  if (sl0 === 0b00) return 3;
  if (sl0 === 0b01) return 2;
  if (sl0 === 0b10) return pa < 44 ? undefined : 1;
  return undefined;
}

/**
 * Stage 2 parameters (§5.2 S2T0SZ, S2SL0, S2TG, S2PS, S2TTB, S2DS; §5.2.2 SteIllegal). Returns the
 * reason the STE is ILLEGAL when the fields are inconsistent.
 */
export function stage2Params(f: SmmuFeatures, t0sz: number, sl0: number, sl2: number, tgCodeRaw: number, dsBit: boolean, psCode: number, ttb: number): WalkParams | string {
  const g = granuleTg0(tgCodeRaw);
  if (g === 0) return 'STE.S2TG is Reserved';
  if (!granuleSupported(f, g)) return `STE.S2TG selects a ${2 ** (g - 10)}KB granule, which SMMU_IDR5 does not support`;
  const ds = dsBit && f.ds && g !== G64K;
  const ias = oasBits(f);
  // STES2T0SZInvalid(): max 39 without STT; min max(16, 64-IAS), or max(12, 64-IAS) with 64KB or DS.
  const min = Math.max(g === G64K || ds ? 64 - VA_52 : 64 - VA_48, 64 - ias);
  if (t0sz > TXSZ_MAX || t0sz < min) return `STE.S2T0SZ == ${t0sz} is outside ${min}..${TXSZ_MAX}`;
  const start = s2StartLevel(f, g, sl0, ds && g === G4K ? sl2 : 0, ds);
  if (start === undefined) return `STE.S2SL0 == ${sl0} is invalid for the ${2 ** (g - 10)}KB granule`;
  // AArch64.S2InconsistentSL(): the IPA must need the start level and fit in 16 concatenated tables.
  const ia = 64 - t0sz;
  const stride = g - DESC_LOG2;
  const minIa = (3 - start) * stride + g + 1;
  const maxIa = minIa + stride - 1 + MAX_CONCAT_BITS;
  if (ia < minIa || ia > maxIa) return `STE.S2SL0 (start level ${start}) is inconsistent with STE.S2T0SZ == ${t0sz}`;
  const ps = effectivePs(f, psCode, g, ds);
  if (ttb >= 2 ** ps) return `STE.S2TTB 0x${ttb.toString(16)} is outside the ${ps}-bit output size`;
  if (g !== G64K && !ds && ttb >= 2 ** VA_48) return `STE.S2TTB 0x${ttb.toString(16)} is above 48 bits without STE.S2DS`;
  const align = Math.max(startTableBytes(ia, g, start), ps === PA_52 ? ALIGN_52 : DESC_BYTES);
  return { g, stride, tg: tgCode(g), ia, start, ttb: alignDown(ttb, align), ps, oa: oaMode(f, g, ds), blocks: blockLevels(f, g, ds) };
}

// ---------------------------------------------------------------------------------------------
// Bits of (hi, lo) word pairs
// ---------------------------------------------------------------------------------------------

/** Bits [lsb + width - 1 : lsb] of the 64-bit value (hi, lo); width <= 32. */
export function bits64(hi: number, lo: number, lsb: number, width: number): number {
  const mask = width >= 32 ? 0xffff_ffff : (1 << width) - 1;
  let v: number;
  if (lsb >= 32) v = hi >>> (lsb - 32);
  else if (lsb + width <= 32) v = lo >>> lsb;
  else v = (lo >>> lsb) | (hi << (32 - lsb));
  return (v & mask) >>> 0;
}

/** The value of (hi, lo) modulo 2^n, as a number (n <= 53). */
export function lowBits(hi: number, lo: number, n: number): number {
  if (n <= 32) return n === 32 ? lo >>> 0 : (lo & ((1 << n) - 1)) >>> 0;
  return (hi & ((1 << (n - 32)) - 1)) * 0x1_0000_0000 + (lo >>> 0);
}

/** Mask of bits [lo + n - 1 : lo] of a 32-bit word (n >= 1). */
function wordMask(lo: number, n: number): number {
  return ((n >= 32 ? 0xffff_ffff : (1 << n) - 1) << lo) >>> 0;
}

/** True when bits [top:from] of (hi, lo) are all equal to `bit` (0 or 1); from <= top <= 63. */
export function bitsAll(hi: number, lo: number, from: number, top: number, bit: number): boolean {
  if (from < 32) {
    const m = wordMask(from, Math.min(top, 31) - from + 1);
    if (((lo & m) >>> 0) !== (bit !== 0 ? m : 0)) return false;
  }
  if (top >= 32) {
    const f = Math.max(from, 32) - 32;
    const m = wordMask(f, top - 32 - f + 1);
    if (((hi & m) >>> 0) !== (bit !== 0 ? m : 0)) return false;
  }
  return true;
}

/** Output address held in a table, block or page descriptor (before the block offset is applied). */
export function descOutput(lo: number, hi: number, g: number, mode: number): number {
  let v = (lo >>> g) * 2 ** g + (hi & 0xffff) * 0x1_0000_0000;
  if (mode === OA_MODE.LPA) v += ((lo >>> 12) & 0xf) * 2 ** 48;
  else if (mode === OA_MODE.DS) v += ((hi >>> 16) & 0x3) * 2 ** 48 + ((lo >>> 8) & 0x3) * 2 ** 50;
  return v;
}

// ---------------------------------------------------------------------------------------------
// The walk
// ---------------------------------------------------------------------------------------------

/** The leaf a walk found; a mutable scratch object the caller owns (no allocation per walk). */
export class Leaf {
  level = 0;
  /** log2 of the block or page size. */
  log2 = 0;
  /** Output address of the block or page (aligned). */
  outBase = 0;
  lo = 0;
  hi = 0;
  /** Address of the leaf descriptor as the walk named it (an IPA in a nested stage 1) and its PA. */
  descIa = 0;
  descPa = 0;
  /** Hierarchical attributes of the table descriptors walked: TABLE bits. */
  table = 0;
}

/** Accumulated table descriptor attributes (stage 1, §13.4.1; bits [59:62] of table descriptors). */
export const TABLE = Object.freeze({ PXN: 1, UXN: 2, AP_NO_EL0: 4, AP_RO: 8 } as const);
const TABLE_ATTR_SHIFT = 27; // descriptor bit 59 is hi bit 27
const TABLE_ATTR_MASK = 0xf;

/** Translate a descriptor address (an IPA in a nested stage 1 walk) to the PA to read. */
export type DescFetch = (ia: number) => number | Fault;

/** Walk statistics the translator reports. */
export interface WalkStats {
  walks: number;
  descriptorReads: number;
}

/**
 * Walk `p` for the input address (hi, lo). On success fills `out` and returns null; otherwise the
 * fault (F_WALK_EABT, F_TRANSLATION or F_ADDR_SIZE; a stage 2 fault from `fetch` passes through).
 * The caller has already checked the input address against p.ia. Access flag, HTTU and
 * permissions are the caller's (they depend on the stage's configuration).
 */
export function walk(mem: PhysMem, p: WalkParams, hi: number, lo: number, out: Leaf, fetch: DescFetch | null, stats: WalkStats): Fault | null {
  stats.walks++;
  let table = p.ttb;
  let attrs = 0;
  const u32 = mem.u32;
  for (let level = p.start; level <= 3; level++) {
    const lsb = p.g + (3 - level) * p.stride;
    const width = level === p.start ? p.ia - lsb : p.stride;
    const ia = table + bits64(hi, lo, lsb, width) * DESC_BYTES;
    let pa = ia;
    if (fetch !== null) {
      const r = fetch(ia);
      if (typeof r !== 'number') return r;
      pa = r;
    }
    if (!mem.contains(pa, DESC_BYTES)) {
      return fault(EVT.F_WALK_EABT, `level ${level} descriptor at PA 0x${pa.toString(16)} is outside RAM`, pa);
    }
    stats.descriptorReads++;
    const wi = mem.wordIndex(pa);
    const dlo = u32[wi]!;
    const dhi = u32[wi + 1]!;
    if ((dlo & 1) === 0) return fault(EVT.F_TRANSLATION, `level ${level} descriptor at 0x${ia.toString(16)} is invalid`);
    const isTable = (dlo & 2) !== 0;
    if (level < 3 && isTable) {
      const next = descOutput(dlo, dhi, p.g, p.oa);
      if (next >= 2 ** p.ps) {
        return fault(EVT.F_ADDR_SIZE, `level ${level} table descriptor points at 0x${next.toString(16)}, beyond the ${p.ps}-bit output size`);
      }
      attrs |= (dhi >>> TABLE_ATTR_SHIFT) & TABLE_ATTR_MASK;
      table = next;
      continue;
    }
    if (level === 3 && !isTable) return fault(EVT.F_TRANSLATION, `level 3 descriptor at 0x${ia.toString(16)} has the Reserved type 0b01`);
    if (level < 3 && (p.blocks & (1 << (level + 1))) === 0) {
      return fault(EVT.F_TRANSLATION, `block descriptor at level ${level} is not allowed with the ${2 ** (p.g - 10)}KB granule`);
    }
    const oa = descOutput(dlo, dhi, p.g, p.oa);
    const base = oa - (oa % 2 ** lsb);
    if (base >= 2 ** p.ps) return fault(EVT.F_ADDR_SIZE, `output address 0x${base.toString(16)} is beyond the ${p.ps}-bit output size`);
    out.level = level;
    out.log2 = lsb;
    out.outBase = base;
    out.lo = dlo;
    out.hi = dhi;
    out.descIa = ia;
    out.descPa = pa;
    out.table = attrs;
    return null;
  }
  // Unreachable: level 3 always ends the loop.
  return fault(EVT.F_TRANSLATION, 'walk ran past level 3');
}

// ---------------------------------------------------------------------------------------------
// Descriptor attributes
// ---------------------------------------------------------------------------------------------

/** Access flag, descriptor bit [10]. */
export const AF_BIT = 1 << 10;
/** nG, descriptor bit [11]. */
const NG_BIT = 1 << 11;
/** AP[2] (stage 1) / S2AP[1] (stage 2), descriptor bit [7]. */
export const AP2_BIT = 1 << 7;
const AP1_SHIFT = 6;
const AP2_SHIFT = 7;
/** DBM, descriptor bit [51] (hi bit 19). */
const DBM_SHIFT = 19;
/** PXN [53] and UXN/XN [54] (hi bits 21, 22). */
const PXN_SHIFT = 21;
const UXN_SHIFT = 22;
/** Stage 2 MemAttr [5:2]; MemAttr[3:2] == 0b00 is Device (without FWB). */
const MEMATTR_SHIFT = 2;
const MEMATTR_MASK = 0xf;

export function descAf(lo: number): boolean {
  return (lo & AF_BIT) !== 0;
}

export function descNg(lo: number): boolean {
  return (lo & NG_BIT) !== 0;
}

/** Stage 1 permission bits (TLB entries keep them). */
export const P1 = Object.freeze({ PR: 1, PW: 2, PX: 4, UR: 8, UW: 16, UX: 32, PAN: 64, DIRTY: 128 } as const);
/** Stage 2 permission bits. */
export const P2 = Object.freeze({ R: 1, W: 2, X: 4, DIRTY: 128, DEVICE: 256 } as const);

/** Effective permission summary the translator reports: PERM_R | PERM_W | PERM_X. */
export const PERM = Object.freeze({ R: 1, W: 2, X: 4 } as const);

/**
 * Stage 1 permissions of a leaf (Direct Permission Scheme, §13.4.1, A-profile AArch64.S1Direct-
 * BasePermissions with hierarchical APTable/UXNTable/PXNTable, HAD not implemented).
 * - NS-EL1 and NS-EL2-E2H: AP[2:1] give EL1 and EL0 access; EL0-writable locations are PXN; with
 *   CD.WXN a writable location is not executable at that privilege; CD.PAN marks EL0-accessible
 *   locations (P1.PAN) so privileged data accesses fault.
 * - NS-EL2: AP[1] is ignored (treated as 1), only AP[2] and XN (bit 54, XNTable) matter, and every
 *   access is checked as privileged (the unprivileged bits equal the privileged ones).
 * With CD.HD and DBM == 1 a read-only (AP[2] == 1) location is writable-clean: P1.DIRTY marks it,
 * and a write must first clear AP[2] in the descriptor (HTTU dirty state, §3.13).
 */
export function s1Perms(lo: number, hi: number, table: number, regime: number, wxn: boolean, pan: boolean, hd: boolean): number {
  const ap1 = (lo >>> AP1_SHIFT) & 1;
  const ap2 = (lo >>> AP2_SHIFT) & 1;
  const dbm = (hi >>> DBM_SHIFT) & 1;
  const tableRo = (table & TABLE.AP_RO) !== 0;
  const dirty = ap2 === 1 && dbm === 1 && hd && !tableRo;
  const w = (ap2 === 0 && !tableRo) || dirty;
  if (regime === REGIME.EL2) {
    const x = ((hi >>> UXN_SHIFT) & 1) === 0 && (table & TABLE.UXN) === 0 && !(wxn && w);
    const p = P1.PR | (w ? P1.PW : 0) | (x ? P1.PX : 0);
    return p | (p << 3) | (dirty ? P1.DIRTY : 0);
  }
  const ur = ap1 === 1 && (table & TABLE.AP_NO_EL0) === 0;
  const uw = ur && w;
  const ux = ((hi >>> UXN_SHIFT) & 1) === 0 && (table & TABLE.UXN) === 0 && !(wxn && uw);
  const px = ((hi >>> PXN_SHIFT) & 1) === 0 && (table & TABLE.PXN) === 0 && !uw && !(wxn && w);
  return P1.PR | (w ? P1.PW : 0) | (px ? P1.PX : 0) | (ur ? P1.UR : 0) | (uw ? P1.UW : 0) | (ux ? P1.UX : 0)
    | (pan && ur ? P1.PAN : 0) | (dirty ? P1.DIRTY : 0);
}

/**
 * Stage 2 permissions (§13.4.3, Direct Permission Scheme): S2AP[0] read, S2AP[1] write, XN (bit 54;
 * the model has no IDR3.XNX, so PRIV plays no part). With STE.S2HD and DBM == 1 a non-writable
 * location is writable-clean (P2.DIRTY). P2.DEVICE marks MemAttr[3:2] == 0b00 (for STE.S2PTW).
 */
export function s2Perms(lo: number, hi: number, hd: boolean): number {
  const r = (lo >>> AP1_SHIFT) & 1;
  const w = (lo >>> AP2_SHIFT) & 1;
  const dirty = w === 0 && ((hi >>> DBM_SHIFT) & 1) === 1 && hd;
  const x = ((hi >>> UXN_SHIFT) & 1) === 0;
  const device = ((lo >>> MEMATTR_SHIFT) & MEMATTR_MASK) >>> 2 === 0;
  return (r ? P2.R : 0) | (w || dirty ? P2.W : 0) | (x ? P2.X : 0) | (dirty ? P2.DIRTY : 0) | (device ? P2.DEVICE : 0);
}

const ACC_WRITE = DMA_ACCESS.WRITE;
const ACC_EXEC = DMA_ACCESS.EXEC;
const ACC_PRIV = DMA_ACCESS.PRIV;

/**
 * Does stage 1 permit the access (DMA_ACCESS bits)? Writes are data accesses (InD == 0 when
 * RnW == 0, §7.3); an instruction fetch needs execute permission; PAN stops privileged data
 * accesses to EL0-accessible locations. A write to a writable-clean location is permitted: the
 * caller performs the dirty-state update.
 */
export function s1Allows(perms: number, acc: number): boolean {
  const priv = (acc & ACC_PRIV) !== 0;
  if ((acc & ACC_WRITE) !== 0) return (perms & (priv ? P1.PW : P1.UW)) !== 0 && !(priv && (perms & P1.PAN) !== 0);
  if ((acc & ACC_EXEC) !== 0) return (perms & (priv ? P1.PX : P1.UX)) !== 0;
  return (perms & (priv ? P1.PR : P1.UR)) !== 0 && !(priv && (perms & P1.PAN) !== 0);
}

export function s2Allows(perms: number, acc: number): boolean {
  if ((acc & ACC_WRITE) !== 0) return (perms & P2.W) !== 0;
  if ((acc & ACC_EXEC) !== 0) return (perms & P2.X) !== 0;
  return (perms & P2.R) !== 0;
}

/** R/W/X a stage 1 entry grants at the access's privilege (PERM bits). */
export function s1Granted(perms: number, priv: boolean): number {
  if (priv) {
    const pan = (perms & P1.PAN) !== 0;
    return ((perms & P1.PR) !== 0 && !pan ? PERM.R : 0) | ((perms & P1.PW) !== 0 && !pan ? PERM.W : 0) | ((perms & P1.PX) !== 0 ? PERM.X : 0);
  }
  return ((perms & P1.UR) !== 0 ? PERM.R : 0) | ((perms & P1.UW) !== 0 ? PERM.W : 0) | ((perms & P1.UX) !== 0 ? PERM.X : 0);
}

export function s2Granted(perms: number): number {
  return ((perms & P2.R) !== 0 ? PERM.R : 0) | ((perms & P2.W) !== 0 ? PERM.W : 0) | ((perms & P2.X) !== 0 ? PERM.X : 0);
}

/** Does a write need a dirty-state update first (writable-clean, §3.13)? */
export function needsDirty(perms: number, dirtyBit: number, acc: number): boolean {
  return (acc & ACC_WRITE) !== 0 && (perms & dirtyBit) !== 0;
}

/** HTTU: set the Access flag in the descriptor at `pa` (atomic read-modify-write, §3.13). */
export function setAccessFlag(mem: PhysMem, pa: number): void {
  Atomics.or(mem.u32, mem.wordIndex(pa), AF_BIT);
}

/** HTTU dirty state, stage 1: clear AP[2] (the location becomes writable-dirty). */
export function markDirtyS1(mem: PhysMem, pa: number): void {
  Atomics.and(mem.u32, mem.wordIndex(pa), ~AP2_BIT);
}

/** HTTU dirty state, stage 2: set S2AP[1]. */
export function markDirtyS2(mem: PhysMem, pa: number): void {
  Atomics.or(mem.u32, mem.wordIndex(pa), AP2_BIT);
}

