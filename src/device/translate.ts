/**
 * The SMMU's translation of incoming transactions (IHI0070 G.b §3.3.2 steps, §3.4, §3.9.1, §3.12,
 * chapter 15), over physical memory, with the TLB, the configuration cache and the endpoints' ATCs.
 * Pure: no worker, no MMIO. SmmuDevice feeds it register state (setStreamTable, setControl) and
 * invalidation commands, and asks it to translate DMA requests.
 *
 * Order of checks follows §7.3.22: C_BAD_STREAMID, F_STE_FETCH, C_BAD_STE, C_BAD_SUBSTREAMID,
 * F_STREAM_DISABLED, stage 2 faults of the CD fetch, F_CD_FETCH, C_BAD_CD, then the translation
 * faults of the transaction (stage 1 range, walk: F_WALK_EABT, F_TRANSLATION, F_ADDR_SIZE; then
 * F_ACCESS, F_PERMISSION; then stage 2 likewise for the IPA).
 *
 * Fault behaviour (§5.5, §3.12): stage 1 translation-related faults are recorded when CD.R or CD.S
 * is set and end in an abort when CD.A or CD.S is set (RAZ/WI otherwise); stage 2 ones are recorded
 * when STE.S2R or S2S is set and always abort. Stalling is not modelled: a fault that the
 * configuration would stall is recorded with Stall == 0 and aborted, the behaviour §3.12 permits
 * for devices the system does not advertise as stall-capable. Every other fault and configuration
 * error is recorded (C_BAD_STREAMID only with SMMU_CR2.RECINVSID) and aborts.
 */

import type { PhysMem } from '../mem/phys.ts';
import { DMA_ACCESS, DMA_NO_SSID } from '../mem/dma.ts';
import type { Field } from '../spec/bits.ts';
import { setBits } from '../spec/bits.ts';
import { CERROR_NONE } from '../spec/cerror.ts';
import { OP } from '../spec/commands.ts';
import { EVENT_CLASS, EVENT_F, EVENT_WORDS, EVT, eventLayout } from '../spec/events.ts';
import type { SmmuFeatures } from '../spec/features.ts';
import { STE_CONFIG, STE_EATS } from '../spec/structures.ts';
import { Atc } from './atc.ts';
import type { AtcCounters, AtcEntry } from './atc.ts';
import type { CdInfo, ConfigCacheT, SteInfo, StreamTableConfig } from './config.ts';
import { ConfigReader, SUBSTREAM_BYPASS, selectSubstream, streamTableConfig } from './config.ts';
import type { CacheCounters, InvalidationState, Replacement } from './tlb.ts';
import { ConfigCache, REGIME, TLB_KIND, Tlb } from './tlb.ts';
import type { Fault, WalkParams, WalkStats } from './walk.ts';
import {
  G16K, G4K, G64K, Leaf, P1, P2, PERM, bitsAll, descAf, descNg, fault, isFault, lowBits, markDirtyS1, markDirtyS2, needsDirty, oasBits,
  s1Allows, s1Granted, s1Perms, s2Allows, s2Granted, s2Perms, setAccessFlag, walk,
} from './walk.ts';

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

export interface TranslatorOptions {
  /** TLB capacity in entries (0 disables the TLB). Default 1024. */
  readonly tlbEntries?: number;
  /** Capacity of each configuration cache (STE, CD, L1STD, L1CD). Default 256. */
  readonly cfgEntries?: number;
  /** Capacity of each endpoint's ATC. Default 64. */
  readonly atcEntries?: number;
  readonly replacement?: Replacement;
  /** Seed of the random replacement policies. */
  readonly seed?: number;
  /** Invalidations remove more than the minimum scope (§4.3, §4.4 permit over-invalidation). */
  readonly overInvalidate?: boolean;
  /** Every Nth CMD_ATC_INV times out, so the next CMD_SYNC reports CERROR_ATC_INV_SYNC. */
  readonly atcTimeoutEvery?: number;
  /** StreamIDs whose endpoints never answer ATS invalidations. */
  readonly atcTimeoutSids?: readonly number[];
}

/** The register state translation depends on. */
export interface TranslatorControl {
  /** SMMU_CR0.SMMUEN (as acknowledged). */
  smmuEn: boolean;
  /** SMMU_CR2.RECINVSID: record C_BAD_STREAMID. */
  recInvSid: boolean;
  /** SMMU_CR2.E2H. */
  e2h: boolean;
  /** SMMU_GBPA.ABORT: with SMMUEN == 0, abort rather than bypass. */
  gbpaAbort: boolean;
  /** SMMU_CR0.ATSCHK: check ATS Translated transactions against the STE. */
  atsChk: boolean;
  /** SMMU_CR0.VMW: VMID wildcard bits for invalidation (0..4; Reserved values behave as 0). */
  vmw: number;
}

/** A transaction's attributes (post-STE-override; the model has no attribute overrides). */
export interface Access {
  readonly read?: boolean;
  readonly write?: boolean;
  /** An instruction fetch (a read). */
  readonly exec?: boolean;
  readonly priv?: boolean;
  /** The endpoint uses PCIe ATS: its ATC first, else a Translation Request, then a Translated access. */
  readonly ats?: boolean;
}

export type TranslateSource = 'tlb' | 'walk' | 'atc' | 'bypass';

export interface TranslateOk {
  readonly ok: true;
  /** Output physical address. */
  readonly pa: number;
  /** PERM bits (R 1, W 2, X 4) the translation grants at the access's privilege. */
  readonly perm: number;
  /** The answer came from a cache (TLB or ATC) without a walk. */
  readonly cached: boolean;
  readonly source: TranslateSource;
}

/** How an ATS Translation Request ended when it did not translate (§3.9.1.2). */
export type AtsOutcome = 'UR' | 'CA' | 'DENIED';

export interface TranslateFault {
  readonly ok: false;
  /** The event name (EVT key) of the fault, recorded or not, or a termination without an event name. */
  readonly fault: string;
  readonly reason: string;
  /** The 8-word event record, when the fault is recorded. */
  readonly event?: Uint32Array;
  /** true: abort to the master; false: RAZ/WI termination (CD.A == 0). */
  readonly abort: boolean;
  readonly ats?: AtsOutcome;
}

export type TranslateResult = TranslateOk | TranslateFault;

/** Terminations that have no event: their `fault` names. */
export const TERMINATION = Object.freeze({
  /** SMMUEN == 0 and SMMU_GBPA.ABORT == 1 (§3.3.2 step 1). */
  GBPA_ABORT: 'GBPA_ABORT',
  /** SMMUEN == 0, bypass, and the address is beyond the OAS (§3.4). */
  BYPASS_ADDRESS_SIZE: 'BYPASS_ADDRESS_SIZE',
  /** STE.Config == 0b0xx: abort, no event (§5.2). */
  STE_ABORT: 'STE_ABORT',
  /** An ATS Translated transaction beyond the OAS (§3.9.1.1: the model aborts without an event). */
  TRANSLATED_ADDRESS_SIZE: 'TRANSLATED_ADDRESS_SIZE',
  /** An ATS Translation Request granted no access for the requested permissions (§3.9.1.2). */
  ATS_DENIED: 'ATS_DENIED',
} as const);

export interface TranslatorCounters {
  translations: number;
  faults: number;
  eventsRecorded: number;
  bypassed: number;
  tlb: CacheCounters;
  ste: CacheCounters;
  l1std: CacheCounters;
  cd: CacheCounters;
  l1cd: CacheCounters;
  atc: AtcCounters;
  s1Walks: number;
  s2Walks: number;
  descriptorReads: number;
  invalidationCommands: number;
}

// ---------------------------------------------------------------------------------------------
// Events (§7.3)
// ---------------------------------------------------------------------------------------------

const EVENT_NAMES: Readonly<Record<number, string>> = Object.freeze(Object.fromEntries(Object.entries(EVT).map(([k, v]) => [v, k])));

export function eventName(id: number): string {
  return EVENT_NAMES[id] ?? `EVENT_0x${id.toString(16)}`;
}

const ACC_WRITE = DMA_ACCESS.WRITE;
const ACC_EXEC = DMA_ACCESS.EXEC;
const ACC_PRIV = DMA_ACCESS.PRIV;
const ACC_ATS = DMA_ACCESS.ATS;

/** Write a number into a field of any width (shift applied), without BigInt. */
function setNumber(words: Uint32Array, f: Field, value: number): void {
  let v = Math.floor(value / 2 ** (f.shift ?? 0));
  let done = 0;
  while (done < f.width) {
    const chunk = Math.min(32, f.width - done);
    setBits(words, f.lsb + done, chunk, v % 0x1_0000_0000);
    v = Math.floor(v / 0x1_0000_0000);
    done += chunk;
  }
}

/**
 * The event record of a fault (§7.3), fields placed by the event layouts of src/spec/events.ts.
 * RnW/InD/PnU are the transaction's (InD == 0 for writes); InputAddr is the whole 64-bit input.
 */
export function buildEvent(f: Fault, sid: number, ssid: number, hi: number, lo: number, acc: number): Uint32Array {
  const w = new Uint32Array(EVENT_WORDS);
  const layout = eventLayout(f.event);
  const has = layout.f as Readonly<Record<string, Field | undefined>>;
  const EF = EVENT_F;
  setBits(w, EF.EventID.lsb, EF.EventID.width, f.event);
  if (has.StreamID !== undefined) setBits(w, EF.StreamID.lsb, EF.StreamID.width, sid);
  if (f.event === EVT.C_BAD_SUBSTREAMID) {
    setBits(w, EF.SubstreamID.lsb, EF.SubstreamID.width, f.ssid >= 0 ? f.ssid : Math.max(ssid, 0));
  } else if (has.SSV !== undefined && ssid >= 0) {
    setBits(w, EF.SSV.lsb, EF.SSV.width, 1);
    setBits(w, EF.SubstreamID.lsb, EF.SubstreamID.width, ssid);
  }
  const write = (acc & ACC_WRITE) !== 0;
  if (has.RnW !== undefined) setBits(w, EF.RnW.lsb, 1, write ? 0 : 1);
  if (has.InD !== undefined) setBits(w, EF.InD.lsb, 1, !write && (acc & ACC_EXEC) !== 0 ? 1 : 0);
  if (has.PnU !== undefined) setBits(w, EF.PnU.lsb, 1, (acc & ACC_PRIV) !== 0 ? 1 : 0);
  if (has.S2 !== undefined) setBits(w, EF.S2.lsb, 1, f.s2 ? 1 : 0);
  if (has.CLASS !== undefined) setBits(w, EF.CLASS.lsb, EF.CLASS.width, f.cls);
  if (has.TTRnW !== undefined && f.cls === EVENT_CLASS.TTD) setBits(w, EF.TTRnW.lsb, 1, f.ttrnw);
  if (has.IPA !== undefined && f.s2) setNumber(w, EF.IPA, f.ipa);
  if (has.FetchAddr !== undefined) setNumber(w, EF.FetchAddr, f.fetch);
  const input = has.InputAddr;
  if (input !== undefined) {
    // InputAddr[63:0], or InputAddr[63:12] (F_BAD_ATS_TREQ): stored from bit `shift` of the address.
    const shift = input.shift ?? 0;
    setBits(w, input.lsb, 32 - shift, lo >>> shift);
    setBits(w, input.lsb + 32 - shift, 32, hi);
  }
  if (f.event === EVT.F_BAD_ATS_TREQ) {
    // §7.3.6: one STU requested; R always 1; W == !NW; X and PRIV as requested.
    const L = layout.f as Readonly<Record<string, Field>>;
    setBits(w, L.Span!.lsb, L.Span!.width, 1);
    setBits(w, L.R!.lsb, 1, 1);
    setBits(w, L.W!.lsb, 1, write ? 1 : 0);
    setBits(w, L.X!.lsb, 1, (acc & ACC_EXEC) !== 0 ? 1 : 0);
    setBits(w, L.PRIV!.lsb, 1, (acc & ACC_PRIV) !== 0 ? 1 : 0);
  }
  return w;
}

// ---------------------------------------------------------------------------------------------
// The translator
// ---------------------------------------------------------------------------------------------

const PAGE_BITS = 12;
const PAGE = 0x1000;
const TWO32 = 0x1_0000_0000;
/** VA[55:12] of (hi, lo): hi bits [23:0] are VA[55:32]. */
const VA55_HI_MASK = 0x00ff_ffff;
const VA55_HI_SHIFT = 23;
const VA_TOP = 63;
const VA_TOP_TBI = 55;

/** How far a translation goes (ATS Translation Requests stop before permission faults). */
const MODE_TXN = 0;
const MODE_ATS = 1;
/** Split-stage ATS: stage 1 only, the completion returns the IPA (§13.6.3). */
const MODE_ATS_SPLIT = 2;

/** Translation-related faults (§3.12): the ones CD.{A,R,S} and STE.{S2R,S2S} govern. */
function translationRelated(ev: number): boolean {
  return ev === EVT.F_TRANSLATION || ev === EVT.F_ADDR_SIZE || ev === EVT.F_ACCESS || ev === EVT.F_PERMISSION;
}

export class Translator {
  readonly tlb: Tlb;
  readonly cache: ConfigCacheT;
  readonly atc: Atc;
  readonly reader: ConfigReader;
  readonly ctl: TranslatorControl = { smmuEn: false, recInvSid: false, e2h: false, gbpaAbort: false, atsChk: false, vmw: 0 };
  private readonly overInvalidate: boolean;
  private readonly invState: { -readonly [K in keyof InvalidationState]: InvalidationState[K] };
  private readonly leaf = new Leaf();
  private readonly leaf2 = new Leaf();
  private readonly s1Stats: WalkStats = { walks: 0, descriptorReads: 0 };
  private readonly s2Stats: WalkStats = { walks: 0, descriptorReads: 0 };
  private readonly stats = { translations: 0, faults: 0, eventsRecorded: 0, bypassed: 0, invalidationCommands: 0 };
  /** The last stage 2 translation: the leaf's log2 size, permissions, TLB hit. */
  private s2Log2 = 0;
  private s2Perms = 0;
  private s2Hit = false;
  /** The STE whose stage 2 translates descriptor fetches in the walk under way. */
  private walkSte: SteInfo | null = null;
  private readonly oas: number;
  /** Smallest Translation Unit: the smallest implemented granule (§3.9.1), log2 bytes. */
  private readonly stu: number;
  private readonly descFetch = (ia: number): number | Fault => this.s2Fetch(this.walkSte!, ia, EVENT_CLASS.TTD, false);
  private readonly cdFetch = (ste: SteInfo, ia: number): number | Fault => (ste.s2 ? this.s2Fetch(ste, ia, EVENT_CLASS.CD, false) : ia);

  constructor(readonly mem: PhysMem, readonly features: SmmuFeatures, opts: TranslatorOptions = {}) {
    const replacement = opts.replacement ?? 'lru';
    const seed = opts.seed ?? 1;
    this.tlb = new Tlb({ entries: opts.tlbEntries ?? 1024, replacement, seed });
    this.cache = new ConfigCache({ entries: opts.cfgEntries ?? 256, replacement, seed: seed + 7 });
    this.atc = new Atc({
      entries: opts.atcEntries ?? 64,
      replacement,
      seed: seed + 13,
      ...(opts.atcTimeoutEvery !== undefined ? { timeoutEvery: opts.atcTimeoutEvery } : {}),
      ...(opts.atcTimeoutSids !== undefined ? { timeoutSids: opts.atcTimeoutSids } : {}),
    });
    this.reader = new ConfigReader(mem, features, this.cache);
    this.overInvalidate = opts.overInvalidate ?? false;
    this.invState = { features, e2h: false, vmw: 0, overInvalidate: this.overInvalidate };
    this.oas = oasBits(features);
    this.stu = features.gran4k ? G4K : features.gran16k ? G16K : G64K;
  }

  // -------------------------------------------------------------------------------------------
  // Register state
  // -------------------------------------------------------------------------------------------

  /** SMMU_STRTAB_BASE (low and high words) and SMMU_STRTAB_BASE_CFG, or a decoded configuration. */
  setStreamTable(baseLo: number | StreamTableConfig, baseHi = 0, cfg = 0): void {
    this.reader.st = typeof baseLo === 'number' ? streamTableConfig(baseLo, baseHi, cfg, this.features) : baseLo;
  }

  get streamTable(): StreamTableConfig {
    return this.reader.st;
  }

  setControl(c: Partial<TranslatorControl>): void {
    Object.assign(this.ctl, c);
    // Reserved VMW values behave as 0 (§6.3.9).
    if (!(this.ctl.vmw >= 0 && this.ctl.vmw <= 4)) this.ctl.vmw = 0;
    this.reader.e2h = this.ctl.e2h;
  }

  // -------------------------------------------------------------------------------------------
  // Translation
  // -------------------------------------------------------------------------------------------

  /**
   * Translate one transaction. `ssid` is -1 (or DMA_NO_SSID) for none. `iova` is a number below
   * 2^53, or a bigint for any 64-bit address (TTB1 addresses with low bits set need one).
   */
  translate(sid: number, ssid: number, iova: number | bigint, access: Access): TranslateResult {
    let hi: number;
    let lo: number;
    if (typeof iova === 'bigint') {
      hi = Number((iova >> 32n) & 0xffff_ffffn);
      lo = Number(iova & 0xffff_ffffn);
    } else {
      if (!Number.isSafeInteger(iova) || iova < 0) throw new RangeError(`iova ${iova} is not a non-negative safe integer; pass a bigint`);
      hi = Math.floor(iova / TWO32);
      lo = iova % TWO32;
    }
    const acc = (access.write === true ? ACC_WRITE : 0) | (access.exec === true ? ACC_EXEC : 0)
      | (access.priv === true ? ACC_PRIV : 0) | (access.ats === true ? ACC_ATS : 0);
    return this.translateWords(sid, ssid, lo, hi, acc);
  }

  /**
   * The hot path for DMA ports: the address as two u32 words, the attributes as DMA_ACCESS bits
   * (READ is implied by the absence of WRITE).
   */
  translateWords(sid: number, ssidIn: number, lo: number, hi: number, acc: number): TranslateResult {
    const ssid = ssidIn < 0 || ssidIn === DMA_NO_SSID ? -1 : ssidIn;
    lo >>>= 0;
    hi >>>= 0;
    this.stats.translations++;
    const ats = (acc & ACC_ATS) !== 0 && this.features.ats;
    if (!this.ctl.smmuEn) {
      if (ats) return this.atsDisabled(sid, ssid, hi, lo, acc);
      if (this.ctl.gbpaAbort) return this.terminate(TERMINATION.GBPA_ABORT, 'SMMUEN == 0 and SMMU_GBPA.ABORT == 1');
      // §3.4: with the SMMU disabled the address goes out unchanged unless it exceeds the OAS.
      if (this.above(hi, lo, this.oas)) return this.terminate(TERMINATION.BYPASS_ADDRESS_SIZE, `input address beyond the ${this.oas}-bit OAS with SMMUEN == 0`);
      this.stats.bypassed++;
      return { ok: true, pa: hi * TWO32 + lo, perm: PERM.R | PERM.W | PERM.X, cached: false, source: 'bypass' };
    }
    if (ats) return this.atsAccess(sid, ssid, hi, lo, acc);
    const r = this.untranslated(sid, ssid, hi, lo, acc, MODE_TXN);
    if (isFault(r)) return this.fail(r, sid, ssid, hi, lo, acc);
    if (r === null) return this.terminate(TERMINATION.STE_ABORT, 'STE.Config == 0b0xx: stream disabled');
    return r;
  }

  private terminate(name: string, reason: string): TranslateFault {
    this.stats.faults++;
    return { ok: false, fault: name, reason, abort: true };
  }

  private fail(f: Fault, sid: number, ssid: number, hi: number, lo: number, acc: number): TranslateFault {
    this.stats.faults++;
    if (!f.record) return { ok: false, fault: eventName(f.event), reason: f.reason, abort: f.abort };
    this.stats.eventsRecorded++;
    return { ok: false, fault: eventName(f.event), reason: f.reason, event: buildEvent(f, sid, ssid, hi, lo, acc), abort: f.abort };
  }

  /** True when (hi, lo) >= 2^bits. */
  private above(hi: number, lo: number, bits: number): boolean {
    return bits >= 64 ? false : bits >= 32 ? hi >= 2 ** (bits - 32) : hi !== 0 || lo >= 2 ** bits;
  }

  /**
   * An untranslated transaction (or, in the ATS modes, a Translation Request): configuration, then
   * translation. Returns the result, a Fault, or null for an STE that aborts without an event.
   */
  private untranslated(sid: number, ssid: number, hi: number, lo: number, acc: number, mode: number): TranslateOk | Fault | null {
    const ste = this.reader.ste(sid);
    if (isFault(ste)) {
      if (ste.event === EVT.C_BAD_STREAMID) ste.record = this.ctl.recInvSid;
      return ste;
    }
    if (ste.illegal !== null) return fault(EVT.C_BAD_STE, ste.illegal);
    if (ste.config < STE_CONFIG.BYPASS) return null;
    const sel = selectSubstream(ste, ssid, this.features);
    if (isFault(sel)) return sel;
    if (ste.config === STE_CONFIG.BYPASS) {
      // §3.4: both stages bypass; an address beyond the OAS is a stage 1 Address Size fault.
      if (this.above(hi, lo, this.oas)) return fault(EVT.F_ADDR_SIZE, `bypass STE: input address beyond the ${this.oas}-bit OAS`);
      this.stats.bypassed++;
      return { ok: true, pa: hi * TWO32 + lo, perm: PERM.R | PERM.W | PERM.X, cached: false, source: 'bypass' };
    }
    if (!ste.s1 || sel === SUBSTREAM_BYPASS) {
      // §3.4: stage 1 bypassed (Config 0b110, or S1DSS == 0b01): the input must fit the IAS.
      if (this.above(hi, lo, this.oas)) return fault(EVT.F_ADDR_SIZE, `stage 1 bypassed: input address beyond the ${this.oas}-bit IAS`);
      const ipa = hi * TWO32 + lo;
      if (!ste.s2 || mode === MODE_ATS_SPLIT) {
        this.stats.bypassed++;
        return { ok: true, pa: ipa, perm: PERM.R | PERM.W | PERM.X, cached: false, source: 'bypass' };
      }
      const pa = this.s2(ste, ipa, acc, EVENT_CLASS.IN, mode);
      if (typeof pa !== 'number') return pa;
      return { ok: true, pa, perm: s2Granted(this.s2Perms), cached: this.s2Hit, source: this.s2Hit ? 'tlb' : 'walk' };
    }
    // §7.3.9: a C_BAD_SUBSTREAMID from the CD table records the SubstreamID, or 0 for traffic
    // without one (S1DSS == 0b10 uses CD 0).
    const cd = this.reader.cd(ste, sid, sel, ssid >= 0 ? ssid : 0, this.cdFetch);
    if (isFault(cd)) return cd;
    if (cd.illegal !== null) return fault(EVT.C_BAD_CD, cd.illegal);
    return this.stage1(ste, cd, hi, lo, acc, mode);
  }

  /** A stage 1 fault: recorded per CD.R (or S), aborting per CD.A (or S) (§5.5). */
  private s1Fault(cd: CdInfo, f: Fault): Fault {
    if (translationRelated(f.event)) {
      f.record = cd.r || cd.s;
      f.abort = cd.a || cd.s;
    }
    return f;
  }

  /** A stage 2 fault: recorded per STE.S2R (or S2S), always an abort (§5.5). */
  private s2Fault(ste: SteInfo, f: Fault, cls: number, ipa: number): Fault {
    f.s2 = true;
    f.cls = cls;
    f.ipa = ipa;
    if (translationRelated(f.event)) f.record = ste.s2r || ste.s2s;
    f.abort = true;
    return f;
  }

  private stage1(ste: SteInfo, cd: CdInfo, hi: number, lo: number, acc: number, mode: number): TranslateOk | Fault {
    // §3.4.1: VA[55] selects TTB1 in regimes with two ranges; the range check covers
    // VA[AddrTop:IA] (AddrTop 55 with TBI, else 63).
    const upper = cd.twoRanges && ((hi >>> VA55_HI_SHIFT) & 1) === 1;
    const p: WalkParams | null = upper ? cd.tt1 : cd.tt0;
    const top = (upper ? cd.tbi1 : cd.tbi0) ? VA_TOP_TBI : VA_TOP;
    if (p !== null && !bitsAll(hi, lo, p.ia, top, upper ? 1 : 0)) {
      return this.s1Fault(cd, fault(EVT.F_TRANSLATION, `VA outside the ${p.ia}-bit TTB${upper ? 1 : 0} range`));
    }
    const page = (hi & VA55_HI_MASK) * 2 ** (32 - PAGE_BITS) + (lo >>> PAGE_BITS);
    const nested = ste.s2;
    const kind = nested ? TLB_KIND.NESTED : TLB_KIND.S1;
    const write = (acc & ACC_WRITE) !== 0;
    const priv = (acc & ACC_PRIV) !== 0;
    const e = this.tlb.lookupVa(kind, ste.regime, ste.vmid, cd.asid, cd.aset, page);
    // A write to a writable-clean location needs the walk's dirty-state update (§3.13).
    if (e !== undefined && !(write && ((e.perms & P1.DIRTY) !== 0 || (e.s2perms & P2.DIRTY) !== 0))) {
      const off = (page - e.page) * PAGE + (lo % PAGE);
      let perm = s1Granted(e.perms, priv);
      if (mode === MODE_TXN && !s1Allows(e.perms, acc)) return this.s1Fault(cd, fault(EVT.F_PERMISSION, 'stage 1 permissions deny the access (TLB)'));
      // Split-stage ATS answers with the IPA, which a combined entry remembers.
      if (mode === MODE_ATS_SPLIT) return { ok: true, pa: e.ipaBase + off, perm, cached: true, source: 'tlb' };
      if (nested) {
        perm &= s2Granted(e.s2perms);
        if (mode === MODE_TXN && !s2Allows(e.s2perms, acc)) {
          return this.s2Fault(ste, fault(EVT.F_PERMISSION, 'stage 2 permissions deny the access (TLB)'), EVENT_CLASS.IN, e.ipaBase + off);
        }
      }
      return { ok: true, pa: e.outBase + off, perm, cached: true, source: 'tlb' };
    }
    // §5.4.1.1: a TLB miss in a half whose walks are disabled (EPDx == 1) is a Translation fault.
    if (p === null) return this.s1Fault(cd, fault(EVT.F_TRANSLATION, `TTB${upper ? 1 : 0} walks are disabled (CD.EPD${upper ? 1 : 0} == 1)`));
    const leaf = this.leaf;
    this.walkSte = ste;
    const err = walk(this.mem, p, hi, lo, leaf, nested ? this.descFetch : null, this.s1Stats);
    this.walkSte = null;
    if (err !== null) {
      if (err.s2) return err;
      // §7.3.12: a stage 1 walk external abort is S2 == 0, CLASS == TT; other stage 1 faults CLASS IN.
      if (err.event === EVT.F_WALK_EABT) err.cls = EVENT_CLASS.TTD;
      return this.s1Fault(cd, err);
    }
    const level = leaf.level;
    const log2 = leaf.log2;
    const outBase = leaf.outBase;
    const dlo = leaf.lo;
    const dhi = leaf.hi;
    const descIa = leaf.descIa;
    const descPa = leaf.descPa;
    if (!descAf(dlo)) {
      if (cd.ha) {
        // HTTU (§3.13): set AF; in a nested walk the write is an access through stage 2.
        const pa = nested ? this.s2Fetch(ste, descIa, EVENT_CLASS.TTD, true) : descPa;
        if (typeof pa !== 'number') return pa;
        setAccessFlag(this.mem, pa);
      } else if (!cd.affd) {
        return this.s1Fault(cd, fault(EVT.F_ACCESS, `level ${level} descriptor has AF == 0`));
      }
    }
    let perms = s1Perms(dlo, dhi, leaf.table, ste.regime, cd.wxn, cd.pan, cd.hd);
    if (mode === MODE_TXN && !s1Allows(perms, acc)) return this.s1Fault(cd, fault(EVT.F_PERMISSION, `stage 1 permissions of the level ${level} descriptor deny the access`));
    let granted = s1Granted(perms, priv);
    if (mode !== MODE_TXN) granted &= this.requested(acc);
    if (mode !== MODE_TXN && granted === 0) return this.s1Fault(cd, fault(EVT.F_PERMISSION, 'stage 1 grants none of the requested permissions'));
    if (needsDirty(perms, P1.DIRTY, acc) && (mode === MODE_TXN || (granted & PERM.W) !== 0)) {
      const pa = nested ? this.s2Fetch(ste, descIa, EVENT_CLASS.TTD, true) : descPa;
      if (typeof pa !== 'number') return pa;
      markDirtyS1(this.mem, pa);
      perms &= ~P1.DIRTY;
    }
    const vaOff = lowBits(hi, lo, log2);
    const out = outBase + vaOff;
    const blockPages = 2 ** (log2 - PAGE_BITS);
    const vaPage = Math.floor(page / blockPages) * blockPages;
    // NS-EL2 has no ASIDs (§3.17.1: nG has no effect there).
    const asid = ste.regime === REGIME.EL2 ? 0 : descNg(dlo) ? cd.asid : -1;
    if (!nested) {
      this.tlb.insertVa(TLB_KIND.S1, ste.regime, ste.vmid, asid, cd.aset, vaPage, log2, vaPage, log2, level, p.tg, outBase, outBase, perms, 0);
      return { ok: true, pa: out, perm: granted, cached: false, source: 'walk' };
    }
    if (mode === MODE_ATS_SPLIT) return { ok: true, pa: out, perm: granted, cached: false, source: 'walk' };
    // Nested: the IPA goes through stage 2 (§3.3.2 step d).
    const pa = this.s2(ste, out, acc, EVENT_CLASS.IN, mode);
    if (typeof pa !== 'number') return pa;
    const s2perms = this.s2Perms;
    const c = Math.min(log2, this.s2Log2);
    const cPages = 2 ** (c - PAGE_BITS);
    const cPage = Math.floor(page / cPages) * cPages;
    const cOff = lowBits(hi, lo, c);
    this.tlb.insertVa(TLB_KIND.NESTED, ste.regime, ste.vmid, asid, cd.aset, cPage, c, vaPage, log2, level, p.tg, pa - cOff, out - cOff, perms, s2perms);
    return { ok: true, pa, perm: granted & s2Granted(s2perms), cached: false, source: 'walk' };
  }

  /** PERM bits an ATS Translation Request asks for: R always, W unless NW, X if requested (§3.9.1). */
  private requested(acc: number): number {
    return PERM.R | ((acc & ACC_WRITE) !== 0 ? PERM.W : 0) | ((acc & ACC_EXEC) !== 0 ? PERM.X : 0);
  }

  /**
   * Stage 2 translation of an IPA (§3.4 stage 2 checks, §13.4.3). `cls` says what the IPA is for
   * (EVENT_CLASS.IN: the transaction; CD: a CD or L1CD fetch; TTD: a stage 1 descriptor). Returns
   * the PA (and leaves the leaf's size, base and permissions in s2Log2/s2Base/s2Perms/s2Hit) or the
   * decorated stage 2 fault.
   */
  private s2(ste: SteInfo, ipa: number, acc: number, cls: number, mode: number): number | Fault {
    const p = ste.s2p!;
    const write = (acc & ACC_WRITE) !== 0;
    if (ipa >= 2 ** p.ia) return this.s2Fault(ste, fault(EVT.F_TRANSLATION, `IPA 0x${ipa.toString(16)} beyond the ${p.ia}-bit stage 2 input range`), cls, ipa);
    const page = Math.floor(ipa / PAGE);
    let e = this.tlb.lookupIpa(ste.vmid, page);
    if (e !== undefined && write && (e.perms & P2.DIRTY) !== 0) e = undefined;
    let perms: number;
    let pa: number;
    if (e !== undefined) {
      perms = e.perms;
      pa = e.outBase + (ipa - e.page * PAGE);
      this.s2Log2 = e.log2;
      this.s2Hit = true;
    } else {
      const leaf = this.leaf2;
      const err = walk(this.mem, p, Math.floor(ipa / TWO32), ipa % TWO32, leaf, null, this.s2Stats);
      if (err !== null) return this.s2Fault(ste, err, cls, ipa);
      if (!descAf(leaf.lo)) {
        if (ste.s2ha && this.features.httu >= 1) setAccessFlag(this.mem, leaf.descPa);
        else if (!ste.s2affd) return this.s2Fault(ste, fault(EVT.F_ACCESS, `stage 2 level ${leaf.level} descriptor has AF == 0`), cls, ipa);
      }
      perms = s2Perms(leaf.lo, leaf.hi, ste.s2hd && ste.s2ha && this.features.httu >= 2);
      const off = ipa % 2 ** leaf.log2;
      pa = leaf.outBase + off;
      this.s2Log2 = leaf.log2;
      this.s2Hit = false;
      const allowed = cls === EVENT_CLASS.IN && mode === MODE_TXN ? s2Allows(perms, acc) : (perms & (write ? P2.W : P2.R)) !== 0;
      if (allowed && needsDirty(perms, P2.DIRTY, acc)) {
        markDirtyS2(this.mem, leaf.descPa);
        perms &= ~P2.DIRTY;
      }
      const pages = 2 ** (leaf.log2 - PAGE_BITS);
      this.tlb.insertIpa(ste.vmid, Math.floor(page / pages) * pages, leaf.log2, leaf.level, p.tg, leaf.outBase, perms);
    }
    this.s2Perms = perms;
    if (cls !== EVENT_CLASS.IN) {
      // §5.2 S2PTW: a CD fetch or stage 1 walk to a Device page at stage 2 is a Permission fault.
      if (ste.s2ptw && (perms & P2.DEVICE) !== 0) {
        const f = fault(EVT.F_PERMISSION, `stage 2 maps the ${cls === EVENT_CLASS.CD ? 'CD' : 'descriptor'} as Device with STE.S2PTW == 1`);
        f.ttrnw = write ? 0 : 1;
        return this.s2Fault(ste, f, cls, ipa);
      }
      // An SMMU-originated access is a data read (or an HTTU write) (§7.3.16).
      if ((perms & (write ? P2.W : P2.R)) === 0) {
        const f = fault(EVT.F_PERMISSION, `stage 2 permissions deny the ${write ? 'descriptor update' : 'fetch'}`);
        f.ttrnw = write ? 0 : 1;
        return this.s2Fault(ste, f, cls, ipa);
      }
    } else if (mode === MODE_TXN && !s2Allows(perms, acc)) {
      return this.s2Fault(ste, fault(EVT.F_PERMISSION, 'stage 2 permissions deny the access'), cls, ipa);
    } else if (mode !== MODE_TXN && (s2Granted(perms) & this.requested(acc)) === 0) {
      return this.s2Fault(ste, fault(EVT.F_PERMISSION, 'stage 2 grants none of the requested permissions'), cls, ipa);
    }
    return pa;
  }

  /** Stage 2 for an SMMU-originated access (CD, L1CD, stage 1 descriptor, HTTU update). */
  private s2Fetch(ste: SteInfo, ipa: number, cls: number, write: boolean): number | Fault {
    return this.s2(ste, ipa, write ? ACC_WRITE : 0, cls, MODE_TXN);
  }

  // -------------------------------------------------------------------------------------------
  // ATS (§3.9.1)
  // -------------------------------------------------------------------------------------------

  /** Effective STE.EATS (§5.2 EATS): 0b10 needs ATSCHK; 0b11 needs DPT and ATSCHK (else 0b00). */
  private effectiveEats(ste: SteInfo): number {
    if (ste.config === STE_CONFIG.BYPASS || (ste.config & 0b11) === 0) return STE_EATS.ABORT;
    if (ste.eats === STE_EATS.SPLIT_STAGE) return this.ctl.atsChk ? STE_EATS.SPLIT_STAGE : STE_EATS.ABORT;
    if (ste.eats === STE_EATS.FULL_ATS_DPT) return this.features.dpt && this.ctl.atsChk ? STE_EATS.FULL_ATS : STE_EATS.ABORT;
    return ste.eats;
  }

  /** ATS while SMMUEN == 0 (§3.9.1.2, §3.9.1.3): requests get UR and F_BAD_ATS_TREQ; Translated traffic F_TRANSL_FORBIDDEN. */
  private atsDisabled(sid: number, ssid: number, hi: number, lo: number, acc: number): TranslateResult {
    const e = this.atc.lookup(sid, ssid, hi * 2 ** (32 - PAGE_BITS) + (lo >>> PAGE_BITS));
    if (e !== undefined) return this.fail(fault(EVT.F_TRANSL_FORBIDDEN, 'ATS Translated transaction with SMMUEN == 0'), sid, ssid, hi, lo, acc);
    return this.atsFail(fault(EVT.F_BAD_ATS_TREQ, 'ATS Translation Request with SMMUEN == 0'), 'UR', sid, ssid, hi, lo, acc);
  }

  private atsFail(f: Fault, outcome: AtsOutcome, sid: number, ssid: number, hi: number, lo: number, acc: number): TranslateFault {
    const r = this.fail(f, sid, ssid, hi, lo, acc);
    return { ...r, ats: outcome };
  }

  /** An endpoint access with ATS: its ATC, else a Translation Request; then the Translated transaction. */
  private atsAccess(sid: number, ssid: number, hi: number, lo: number, acc: number): TranslateResult {
    const page = hi * 2 ** (32 - PAGE_BITS) + (lo >>> PAGE_BITS);
    const need = (acc & ACC_WRITE) !== 0 ? PERM.W : (acc & ACC_EXEC) !== 0 ? PERM.X : PERM.R;
    let e = this.atc.lookup(sid, ssid, page);
    let cached = true;
    if (e === undefined || (e.perms & need) === 0) {
      cached = false;
      const tr = this.translationRequest(sid, ssid, hi, lo, acc);
      if (!tr.ok) return tr;
      e = tr.entry;
      if ((e.perms & need) === 0) {
        this.stats.faults++;
        return { ok: false, fault: TERMINATION.ATS_DENIED, reason: 'the Translation Completion did not grant the access', abort: true, ats: 'DENIED' };
      }
    }
    return this.translated(sid, ssid, hi, lo, acc, e, page, cached);
  }

  /**
   * An ATS Translation Request (§3.9.1.2): UR for ATS disabled (F_BAD_ATS_TREQ where the spec says
   * so), CA for configuration errors (no record: the model has no SMMU_CR2.REC_CFG_ATS), Success with
   * R == W == 0 ('DENIED') for translation-related faults; otherwise the granted permissions, cached
   * in the endpoint's ATC.
   */
  private translationRequest(sid: number, ssid: number, hi: number, lo: number, acc: number): { ok: true; entry: AtcEntry } | TranslateFault {
    const ste = this.reader.ste(sid);
    if (isFault(ste)) return this.atsQuiet(ste, 'CA');
    if (ste.illegal !== null) return this.atsQuiet(fault(EVT.C_BAD_STE, ste.illegal), 'CA');
    if (ste.config < STE_CONFIG.BYPASS) return { ok: false, fault: TERMINATION.STE_ABORT, reason: 'STE.Config == 0b0xx: Translation Request refused', abort: true, ats: 'UR' };
    const eats = this.effectiveEats(ste);
    if (eats === STE_EATS.ABORT) {
      return this.atsFail(fault(EVT.F_BAD_ATS_TREQ, ste.config === STE_CONFIG.BYPASS ? 'ATS Translation Request to a bypass STE' : 'ATS is disabled for the stream (effective STE.EATS == 0b00)'), 'UR', sid, ssid, hi, lo, acc);
    }
    const split = eats === STE_EATS.SPLIT_STAGE;
    const r = this.untranslated(sid, ssid, hi, lo, acc, split ? MODE_ATS_SPLIT : MODE_ATS);
    if (r === null) return { ok: false, fault: TERMINATION.STE_ABORT, reason: 'STE.Config == 0b0xx', abort: true, ats: 'UR' };
    if (isFault(r)) return this.atsQuiet(r, translationRelated(r.event) ? 'DENIED' : 'CA');
    // §3.9.1.2: stage 1 skipped (S1DSS == 0b01, stage-1-only STE) is an identity mapping with
    // R == W == 1; otherwise what the translation grants of what was requested.
    const perm = r.source === 'bypass' ? PERM.R | PERM.W | PERM.X : r.perm & this.requested(acc);
    if (perm === 0) return { ok: false, fault: TERMINATION.ATS_DENIED, reason: 'the translation grants none of the requested permissions', abort: true, ats: 'DENIED' };
    // The completion covers one STU (the smallest granule the SMMU implements, §3.9.1).
    const page = hi * 2 ** (32 - PAGE_BITS) + (lo >>> PAGE_BITS);
    const stu = this.stu;
    const outBase = r.pa - lowBits(hi, lo, stu);
    return { ok: true, entry: this.atc.insert(sid, ssid, page, stu, outBase, perm, split) };
  }

  private atsQuiet(f: Fault, outcome: AtsOutcome): TranslateFault {
    this.stats.faults++;
    return { ok: false, fault: eventName(f.event), reason: f.reason, abort: true, ats: outcome };
  }

  /** An ATS Translated transaction (§3.9.1.3). */
  private translated(sid: number, ssid: number, hi: number, lo: number, acc: number, e: AtcEntry, page: number, cached: boolean): TranslateResult {
    let out = e.outBase + (page - e.page) * PAGE + (lo % PAGE);
    let perm = e.perms;
    if (this.ctl.atsChk) {
      const ste = this.reader.ste(sid);
      if (isFault(ste) || ste.illegal !== null || ste.config < STE_CONFIG.BYPASS) {
        return this.terminate(isFault(ste) ? eventName(ste.event) : ste.illegal !== null ? 'C_BAD_STE' : TERMINATION.STE_ABORT, 'ATS Translated transaction: no valid STE (ATSCHK == 1)');
      }
      const eats = this.effectiveEats(ste);
      if (eats === STE_EATS.ABORT) {
        return this.fail(fault(EVT.F_TRANSL_FORBIDDEN, 'ATS Translated transaction not allowed for the stream (ATSCHK == 1)'), sid, ssid, hi, lo, acc);
      }
      if (eats === STE_EATS.SPLIT_STAGE && e.split) {
        // §3.9.1.3: Translated traffic of a split-stage stream is an IPA for stage 2; without a
        // PASID prefix it is unprivileged data (IDR3.PASIDTT == 0).
        const pa = this.s2(ste, out, acc & ACC_WRITE, EVENT_CLASS.IN, MODE_TXN);
        if (typeof pa !== 'number') return this.fail(pa, sid, -1, hi, lo, acc & ACC_WRITE);
        out = pa;
        perm &= s2Granted(this.s2Perms);
      }
    }
    if (out >= 2 ** this.oas) return this.terminate(TERMINATION.TRANSLATED_ADDRESS_SIZE, `Translated address beyond the ${this.oas}-bit OAS`);
    return { ok: true, pa: out, perm, cached, source: cached ? 'atc' : 'walk' };
  }

  // -------------------------------------------------------------------------------------------
  // Commands
  // -------------------------------------------------------------------------------------------

  /**
   * Apply one command's effect on the caches: CMD_CFGI_*, CMD_TLBI_*, CMD_ATC_INV. The command must
   * be legal (the executor checks it first). Returns the number of entries removed; 0 for any other
   * command.
   */
  invalidateCommand(words: ArrayLike<number>): number {
    const op = (words[0] ?? 0) & 0xff;
    const st = this.reader.st;
    switch (op) {
      case OP.CMD_CFGI_STE:
      case OP.CMD_CFGI_STE_RANGE:
      case OP.CMD_CFGI_CD:
      case OP.CMD_CFGI_CD_ALL:
        this.stats.invalidationCommands++;
        return this.cache.invalidate(words, st.twoLevel ? st.split : -1, this.overInvalidate);
      case OP.CMD_TLBI_NH_ALL:
      case OP.CMD_TLBI_NH_ASID:
      case OP.CMD_TLBI_NH_VA:
      case OP.CMD_TLBI_NH_VAA:
      case OP.CMD_TLBI_EL2_ALL:
      case OP.CMD_TLBI_EL2_ASID:
      case OP.CMD_TLBI_EL2_VA:
      case OP.CMD_TLBI_EL2_VAA:
      case OP.CMD_TLBI_S12_VMALL:
      case OP.CMD_TLBI_S2_IPA:
      case OP.CMD_TLBI_NSNH_ALL:
        this.stats.invalidationCommands++;
        return this.tlb.invalidate(words, this.invalidationState());
      case OP.CMD_ATC_INV:
        this.stats.invalidationCommands++;
        return this.atc.invalidate(words, this.features, this.ctl.smmuEn, this.overInvalidate);
      default:
        return 0;
    }
  }

  private invalidationState(): InvalidationState {
    // One object, refreshed per command: a TLBI is the device's hottest command and allocates nothing.
    const st = this.invState;
    st.e2h = this.ctl.e2h;
    st.vmw = this.ctl.vmw;
    return st;
  }

  /** Execute CMD_ATC_INV (also reachable through invalidateCommand). */
  atcInvalidate(words: ArrayLike<number>): number {
    return this.invalidateCommand(words);
  }

  /** For CMD_SYNC (§4.7.3): CERROR_ATC_INV_SYNC once after a timed-out CMD_ATC_INV, else CERROR_NONE. */
  syncCheck(): number {
    return this.features.ats ? this.atc.syncCheck() : CERROR_NONE;
  }

  /** Empty every cache and forget pending ATC timeouts (an SMMU reset). Counters are kept. */
  reset(): void {
    this.tlb.invalidateAll();
    this.cache.invalidateAll();
    this.atc.clear();
    this.atc.syncCheck();
  }

  counters(): TranslatorCounters {
    return {
      ...this.stats,
      tlb: { ...this.tlb.counters },
      ste: { ...this.cache.ste.counters },
      l1std: { ...this.cache.l1std.counters },
      cd: { ...this.cache.cd.counters },
      l1cd: { ...this.cache.l1cd.counters },
      atc: { ...this.atc.counters },
      s1Walks: this.s1Stats.walks,
      s2Walks: this.s2Stats.walks,
      descriptorReads: this.s1Stats.descriptorReads + this.s2Stats.descriptorReads,
    };
  }
}
