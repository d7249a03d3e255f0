/**
 * Stream tables, CD tables and the STE/CD writers of the guest driver, as Linux's arm-smmu-v3
 * driver keeps them (read for behaviour only; every line here is ours).
 *
 * - StreamTable: linear (§6.3.25 FMT = 0b00) or 2-level with SPLIT = 8 like Linux (256 STEs,
 *   16KB, per level 2 array; L1STD.Span = SPLIT + 1, §5.1), level 2 arrays allocated on demand.
 * - CdTable: linear (S1Fmt = 0b00), or 2-level with S1Fmt = 0b10 (1024 CDs, 64KB, per leaf
 *   table, §5.2 S1Fmt, §5.3) when SMMU_IDR0.CD2L == 1 and the master has more than 1024
 *   SubstreamIDs, leaf tables allocated on demand.
 * - STE and CD builders for each configuration, with the field values Linux writes.
 * - writeEntry: the update procedure of §3.21.3.1 for a live structure. The words a structure
 *   uses in its current and in its target configuration decide (Linux's arm_smmu_write_entry):
 *   * nothing used changes: write the unused words, no invalidation needed beyond one sync;
 *   * one atomic unit of used bits changes ("hitless"): first write every word the current
 *     configuration ignores (sync), then the one critical unit (sync), then clear what the new
 *     configuration ignores (sync);
 *   * more than one ("breaking"): V = 0 first (sync), then every other word (sync), then the
 *     word holding V (sync).
 *   Each sync is CMD_CFGI_STE / CMD_CFGI_CD (Leaf = 1) and a CMD_SYNC, issued through a
 *   CommandSink. The atomic unit is one 32-bit word by default: the model stores u32 words, so
 *   only a change confined to one word can be made without the SMMU seeing a half-written
 *   mixture (Linux, on hardware with 64-bit single-copy-atomic stores, uses 64-bit units;
 *   `unitWords: 2` reproduces that).
 *
 * Invalid-to-valid (V = 0 → 1) is the hitless case with the word holding V as the critical unit,
 * which is exactly the initialisation procedure of §3.21.3.1: fill every other word, CFGI + SYNC,
 * then set V, CFGI + SYNC.
 */

import type { PhysMem } from '../mem/phys.ts';
import { lowMask, setBits, type Field, type Words } from '../spec/bits.ts';
import { STRTAB_FMT, STRTAB_SPLIT } from '../spec/registers.ts';
import {
  CD,
  CD_BYTES,
  L1CD,
  L1CD_BYTES,
  L1STD,
  L1STD_BYTES,
  STE,
  STE_BYTES,
  STE_CONFIG,
  STE_EATS,
  STE_F,
  STE_S1DSS,
  STE_S1FMT,
  STE_SHCFG,
  STE_STRW,
  cdValid,
  configStage1,
  configStage2,
  encodeStructure,
  steConfig,
  steS1DSS,
  steSTRW,
  steValid,
  type FieldName,
} from '../spec/structures.ts';
import { cfgiCd, cfgiSte } from './invalidate.ts';
import type { Stage1Fields, Stage2Fields, TableAllocator } from './pgtable.ts';

/** Where the writers send their invalidations: GuestDriver.issue has this shape. */
export interface CommandSink {
  issue(cmds: readonly Uint32Array[], opts?: { sync?: boolean }): unknown;
}

const STE_WORDS = STE_BYTES / 4;
const CD_WORDS = CD_BYTES / 4;
/** Tables are aligned to their size, and to at least 64 bytes (STRTAB_BASE.ADDR [55:6], §6.3.24). */
const MIN_TABLE_ALIGN = 64;

/** Linux's STRTAB_SPLIT: 8 StreamID bits index a level 2 array of 256 STEs (16KB). */
export const LINUX_STRTAB_SPLIT = STRTAB_SPLIT.SPLIT_16KB;
/** Linux's CTXDESC_L2_ENTRIES: 1024 CDs (64KB) per leaf table, S1Fmt = 0b10. */
export const CD_L2_ENTRIES = 1024;
const CD_L2_LOG2 = 10;

/** STE.S1CIR/S1COR = 0b01 Write-Back Read-Allocate, S1CSH = 0b11 Inner Shareable (Linux). */
const S1C_CACHE_WBRA = 0b01;
const SH_ISH = 0b11;

// ---------------------------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------------------------

/** What an STE needs to know of a CD table (§5.2 S1ContextPtr, S1Fmt, S1CDMax). */
export interface CdTableRef {
  readonly ptr: number;
  readonly s1fmt: number;
  readonly s1cdmax: number;
}

export interface SteAttrOptions {
  /**
   * SMMU_IDR1.ATTR_TYPES_OVR: STE.SHCFG may be written. Without it SHCFG is RES0 (§5.2), so Linux
   * (ARM_SMMU_FEAT_ATTR_TYPES_OVR) leaves it 0; with it, bypass traffic uses the incoming
   * shareability (SHCFG = 0b01).
   */
  readonly attrTypesOvr?: boolean;
}

/** V = 1, Config = abort: traffic terminates silently (Linux's blocked domain). */
export function steAbort(): Uint32Array {
  return encodeStructure(STE, { V: 1, Config: STE_CONFIG.ABORT });
}

/** V = 1, Config = bypass (Linux's identity domain). */
export function steBypass(o: SteAttrOptions = {}): Uint32Array {
  return encodeStructure(STE, { V: 1, Config: STE_CONFIG.BYPASS, SHCFG: o.attrTypesOvr === true ? STE_SHCFG.INCOMING : 0 });
}

export interface SteStage1Options extends SteAttrOptions {
  readonly cd: CdTableRef;
  /** STE.S1DSS (default SSID0: traffic without a SubstreamID uses CD 0, as Linux sets it). */
  readonly s1dss?: number;
  /** STE.S2VMID: tags NS-EL1 stage 1 translations when stage 2 exists (§5.2; Linux: 0). */
  readonly vmid?: number;
  /** STE.STRW (default NS-EL1). */
  readonly strw?: number;
  /** STE.S1STALLD: set when the SMMU's stall model is configurable and the master must not stall. */
  readonly stallDisable?: boolean;
  /** STE.EATS = 0b01 (full ATS). */
  readonly ats?: boolean;
}

function s1Values(o: SteStage1Options): Partial<Record<FieldName<typeof STE>, number>> {
  const s1dss = o.s1dss ?? STE_S1DSS.SSID0;
  const strw = o.strw ?? STE_STRW.EL1;
  return {
    S1Fmt: o.cd.s1fmt,
    S1ContextPtr: o.cd.ptr,
    S1CDMax: o.cd.s1cdmax,
    S1DSS: s1dss,
    S1CIR: S1C_CACHE_WBRA,
    S1COR: S1C_CACHE_WBRA,
    S1CSH: SH_ISH,
    S1STALLD: o.stallDisable === true ? 1 : 0,
    EATS: o.ats === true ? STE_EATS.FULL_ATS : STE_EATS.ABORT,
    STRW: strw,
    S2VMID: strw === STE_STRW.EL1 ? (o.vmid ?? 0) : 0,
    SHCFG: o.attrTypesOvr === true && s1dss === STE_S1DSS.BYPASS ? STE_SHCFG.INCOMING : 0,
  };
}

/** Stage 1 translation through a CD table (Linux's arm_smmu_make_cdtable_ste). */
export function steStage1(o: SteStage1Options): Uint32Array {
  return encodeStructure(STE, { V: 1, Config: STE_CONFIG.S1_TRANS, ...s1Values(o) });
}

export interface SteStage2Options extends SteAttrOptions {
  readonly s2: Stage2Fields;
  readonly vmid: number;
  readonly ats?: boolean;
  /** STE.S2S: stage 2 faults stall (Linux: when the master has stalls enabled). */
  readonly stall?: boolean;
}

function s2Values(o: SteStage2Options): Partial<Record<FieldName<typeof STE>, number>> {
  return {
    EATS: o.ats === true ? STE_EATS.FULL_ATS : STE_EATS.ABORT,
    SHCFG: o.attrTypesOvr === true ? STE_SHCFG.INCOMING : 0,
    S2VMID: o.vmid,
    ...o.s2,
    S2AA64: 1,
    S2PTW: 1,
    S2S: o.stall === true ? 1 : 0,
    S2R: 1,
  };
}

/** Stage 2 translation (Linux's arm_smmu_make_s2_domain_ste). */
export function steStage2(o: SteStage2Options): Uint32Array {
  return encodeStructure(STE, { V: 1, Config: STE_CONFIG.S2_TRANS, ...s2Values(o) });
}

export interface SteNestedOptions extends SteStage2Options {
  readonly cd: CdTableRef;
  readonly s1dss?: number;
  readonly stallDisable?: boolean;
}

/**
 * Stage 1 nested in stage 2 (Linux's arm_smmu_make_nested_cd_table_ste): the stage 2 STE with
 * Config = 0b111, the stage 1 CD table fields, and MEV = 1 (merge events, as Linux sets for a
 * guest-controlled stage 1). S1ContextPtr is an IPA.
 */
export function steNested(o: SteNestedOptions): Uint32Array {
  const s1 = s1Values({ cd: o.cd, s1dss: o.s1dss ?? STE_S1DSS.SSID0, stallDisable: o.stallDisable === true, ats: o.ats === true, attrTypesOvr: false });
  const { S1Fmt, S1ContextPtr, S1CDMax, S1DSS, S1CIR, S1COR, S1CSH, S1STALLD } = s1;
  return encodeStructure(STE, {
    V: 1,
    Config: STE_CONFIG.NESTED,
    ...s2Values(o),
    S1Fmt,
    S1ContextPtr,
    S1CDMax,
    S1DSS,
    S1CIR,
    S1COR,
    S1CSH,
    S1STALLD,
    MEV: 1,
  });
}

export interface CdOptions {
  readonly s1: Stage1Fields;
  readonly asid: number;
  /** CD.S: stage 1 faults stall. */
  readonly stall?: boolean;
}

/**
 * A stage 1 CD as Linux writes it (arm_smmu_make_s1_cd): the TTB0 walk fields, EPD1 (no TTB1
 * region), V, IPS, AA64, R (record faults), A (abort terminated traffic), ASET (the ASID is not
 * shared with a CPU), ASID, TTB0 and the 64-bit MAIR in dword 3.
 */
export function cdStage1(o: CdOptions): Uint32Array {
  return encodeStructure(CD, {
    T0SZ: o.s1.T0SZ,
    TG0: o.s1.TG0,
    IR0: o.s1.IR0,
    OR0: o.s1.OR0,
    SH0: o.s1.SH0,
    EPD1: 1,
    V: 1,
    IPS: o.s1.IPS,
    AA64: 1,
    S: o.stall === true ? 1 : 0,
    R: 1,
    A: 1,
    ASET: 1,
    ASID: o.asid,
    TTB0: o.s1.TTB0,
    MAIR0: o.s1.MAIR0,
    MAIR1: o.s1.MAIR1,
  });
}

// ---------------------------------------------------------------------------------------------
// Used bits (§5.2, §5.4, §13.5)
// ---------------------------------------------------------------------------------------------

function mark(mask: Uint32Array, f: Field): void {
  let lsb = f.lsb;
  let left = f.width;
  while (left > 0) {
    const chunk = Math.min(32 - (lsb & 31), left);
    setBits(mask, lsb, chunk, lowMask(chunk));
    lsb += chunk;
    left -= chunk;
  }
}

/** Fields of a bypass STE that still apply (§5.2.1). */
const BYPASS_FIELDS: readonly FieldName<typeof STE>[] = ['CONT', 'MTCFG', 'MemAttr', 'ALLOCCFG', 'SHCFG', 'NSCFG', 'PRIVCFG', 'INSTCFG'];

function isS1Field(name: string): boolean {
  return name.startsWith('S1');
}

function isS2Field(name: string): boolean {
  return name.startsWith('S2') || name.startsWith('S_S2') || name === 'VMSPtr';
}

/**
 * The bits of an STE the SMMU uses in the STE's current configuration, per word: everything the
 * spec does not make IGNORED. Erring towards "used" is safe (an update is then breaking rather
 * than hitless), so only the IGNORED rules that matter for Linux's transitions are applied:
 * V == 0: only V (§5.2 V). Config abort: V, Config, CONT (§5.2.1). Bypass: the attribute
 * overrides (§5.2.1). Translating: all fields but SW_RESERVED (IGNORED), S1* when stage 1 is off,
 * S2* other than S2VMID and S2S when stage 2 is off (§5.2 V), STRW when stage 2 is on (§5.2 STRW),
 * S2VMID when stage 2 is off and StreamWorld is not NS-EL1 (§5.2 S2VMID), SHCFG for stage 1 only
 * unless S1DSS bypasses stage 1 (§13.5).
 */
export function steUsedMask(words: Words, base = 0): Uint32Array {
  const m = new Uint32Array(STE_WORDS);
  mark(m, STE_F.V);
  if (!steValid(words, base)) return m;
  mark(m, STE_F.Config);
  const config = steConfig(words, base);
  const s1 = configStage1(config);
  const s2 = configStage2(config);
  if (!s1 && !s2) {
    mark(m, STE_F.CONT);
    if (config === STE_CONFIG.BYPASS) for (const n of BYPASS_FIELDS) mark(m, STE_F[n]);
    return m;
  }
  for (const f of STE.fields) {
    const n = f.name;
    if (n === 'SW_RESERVED') continue;
    if (isS1Field(n) && !s1) continue;
    if (isS2Field(n) && !s2 && n !== 'S2VMID' && n !== 'S2S') continue;
    if (n === 'STRW' && s2) continue;
    if (n === 'S2VMID' && !s2 && steSTRW(words, base) !== STE_STRW.EL1) continue;
    if (n === 'SHCFG' && !s2 && steS1DSS(words, base) !== STE_S1DSS.BYPASS) continue;
    mark(m, f);
  }
  return m;
}

/** CD: V == 0 uses only V; a valid CD uses every bit (Linux's arm_smmu_get_cd_used). */
export function cdUsedMask(words: Words, base = 0): Uint32Array {
  const m = new Uint32Array(CD_WORDS);
  mark(m, CD.f.V);
  if (cdValid(words, base)) m.fill(0xffff_ffff);
  return m;
}

function getWord(words: Words, i: number): number {
  return (words[i] ?? 0) >>> 0;
}

// ---------------------------------------------------------------------------------------------
// The writer (§3.21.3.1)
// ---------------------------------------------------------------------------------------------

export interface WriteReport {
  /** 'none': no used bit changed; 'hitless': one atomic unit of used bits changed; 'breaking': V = 0 first. */
  readonly kind: 'none' | 'hitless' | 'breaking';
  /** Word indices written before each sync, in order (a step that changed nothing is left out). */
  readonly steps: number[][];
}

/**
 * Update the structure of `target.length` words at `pa` to `target`, keeping every intermediate
 * state valid-and-consistent or invalid (Linux's arm_smmu_write_entry, in units of `unitWords`
 * words). `used` gives a structure's used-bit mask; `sync` must invalidate the SMMU's cached copy
 * and wait (CMD_CFGI_* + CMD_SYNC).
 */
export function writeEntry(mem: PhysMem, pa: number, target: Words, used: (w: Words) => Uint32Array, sync: () => void, unitWords = 1): WriteReport {
  const n = target.length;
  if (n % unitWords !== 0) throw new RangeError(`a ${n}-word structure cannot be written in ${unitWords}-word units`);
  mem.check(pa, n * 4, 4);
  const w0 = mem.wordIndex(pa);
  const u32 = mem.u32;
  const cur = u32.slice(w0, w0 + n);
  const curUsed = used(cur);
  const tgtUsed = used(target);
  for (let i = 0; i < n; i++) {
    const extra = (getWord(target, i) & ~tgtUsed[i]!) >>> 0;
    if (extra !== 0) throw new Error(`target word ${i} sets bits 0x${extra.toString(16)} its own configuration does not use`);
  }
  // Bits the current configuration ignores can take their new values now.
  const unusedUpdate = new Uint32Array(n);
  for (let i = 0; i < n; i++) unusedUpdate[i] = ((cur[i]! & curUsed[i]!) | (getWord(target, i) & ~curUsed[i]!)) >>> 0;
  const units = n / unitWords;
  const diff: number[] = [];
  for (let u = 0; u < units; u++) {
    for (let k = 0; k < unitWords; k++) {
      const i = u * unitWords + k;
      if (((unusedUpdate[i]! & tgtUsed[i]!) >>> 0) !== getWord(target, i)) {
        diff.push(u);
        break;
      }
    }
  }
  const steps: number[][] = [];
  const set = (src: Words, from: number, to: number): void => {
    const written: number[] = [];
    for (let i = from; i < to; i++) {
      const v = getWord(src, i);
      if (u32[w0 + i] !== v) {
        Atomics.store(u32, w0 + i, v);
        written.push(i);
      }
    }
    if (written.length > 0) {
      steps.push(written);
      sync();
    }
  };
  if (diff.length === 1) {
    const c = diff[0]! * unitWords;
    for (let k = 0; k < unitWords; k++) unusedUpdate[c + k] = cur[c + k]!;
    set(unusedUpdate, 0, n);
    set(target, c, c + unitWords);
    set(target, 0, n);
    return { kind: 'hitless', steps };
  }
  if (diff.length > 1) {
    // V is in word 0 of both STE (bit 0) and CD (bit 31): clearing unit 0 makes the structure invalid.
    for (let k = 0; k < unitWords; k++) unusedUpdate[k] = 0;
    set(unusedUpdate, 0, unitWords);
    set(target, unitWords, n);
    set(target, 0, unitWords);
    return { kind: 'breaking', steps };
  }
  set(target, 0, n);
  return { kind: 'none', steps };
}

// ---------------------------------------------------------------------------------------------
// 8-byte descriptors (L1STD, L1CD)
// ---------------------------------------------------------------------------------------------

/** Store an 8-byte descriptor: the high word first, then the low word holding its validity. */
function writeDesc64(mem: PhysMem, pa: number, lo: number, hi: number): void {
  mem.check(pa, 8, 8);
  const w = mem.wordIndex(pa);
  mem.u32[w + 1] = hi >>> 0;
  Atomics.store(mem.u32, w, lo >>> 0);
}


// ---------------------------------------------------------------------------------------------
// Stream table
// ---------------------------------------------------------------------------------------------

export interface StreamTableOptions {
  readonly format: 'linear' | '2-level';
  /** log2 of the StreamIDs covered: SMMU_STRTAB_BASE_CFG.LOG2SIZE. */
  readonly log2Size: number;
  /** SMMU_STRTAB_BASE_CFG.SPLIT for 2-level tables (default 8, as Linux). */
  readonly split?: number;
}

export class StreamTable {
  readonly format: 'linear' | '2-level';
  readonly log2Size: number;
  /** SPLIT for 2-level tables; 0 for linear (BASE_CFG.SPLIT is IGNORED then, §6.3.25). */
  readonly split: number;
  /** The linear table or the level 1 table. */
  readonly base: number;
  /** Bytes at `base`. */
  readonly bytes: number;
  private readonly l2 = new Map<number, number>();

  constructor(private readonly mem: PhysMem, private readonly alloc: TableAllocator, o: StreamTableOptions) {
    this.format = o.format;
    this.log2Size = o.log2Size;
    if (o.format === 'linear') {
      this.split = 0;
      this.bytes = STE_BYTES * 2 ** o.log2Size;
      // A linear table is aligned to its size (§6.3.24).
      this.base = alloc.alloc(this.bytes, Math.max(this.bytes, MIN_TABLE_ALIGN), 'stream table');
    } else {
      this.split = o.split ?? LINUX_STRTAB_SPLIT;
      if (o.log2Size <= this.split) throw new RangeError(`a 2-level stream table needs LOG2SIZE ${o.log2Size} > SPLIT ${this.split}`);
      this.bytes = L1STD_BYTES * 2 ** (o.log2Size - this.split);
      // The level 1 table is aligned to the larger of 64 bytes and its size (§6.3.24).
      this.base = alloc.alloc(this.bytes, Math.max(this.bytes, MIN_TABLE_ALIGN), 'stream table level 1');
    }
  }

  /** SMMU_STRTAB_BASE_CFG field values (§6.3.25). */
  get cfg(): { FMT: number; SPLIT: number; LOG2SIZE: number } {
    return { FMT: this.format === 'linear' ? STRTAB_FMT.LINEAR : STRTAB_FMT.TWO_LEVEL, SPLIT: this.split, LOG2SIZE: this.log2Size };
  }

  /** Level 2 arrays allocated, by level 1 index. */
  get level2(): ReadonlyMap<number, number> {
    return this.l2;
  }

  /** Every STE invalid again (reset): zero the table, give the level 2 arrays back. */
  clear(): void {
    this.mem.fill(this.base, this.bytes, 0);
    for (const pa of this.l2.values()) this.alloc.free?.(pa, this.l2Bytes());
    this.l2.clear();
  }

  /** Give the whole table back (a reset that needs another format or size). */
  destroy(): void {
    this.clear();
    this.alloc.free?.(this.base, this.bytes);
  }

  private l2Bytes(): number {
    return STE_BYTES * 2 ** this.split;
  }

  private checkSid(sid: number): void {
    if (!Number.isInteger(sid) || sid < 0 || sid >= 2 ** this.log2Size) {
      throw new RangeError(`StreamID ${sid} is outside the stream table (LOG2SIZE ${this.log2Size})`);
    }
  }

  /** Physical address of the STE for `sid`, or undefined when its level 2 array does not exist. */
  steAddress(sid: number): number | undefined {
    this.checkSid(sid);
    if (this.format === 'linear') return this.base + sid * STE_BYTES;
    const l2 = this.l2.get(Math.floor(sid / 2 ** this.split));
    return l2 === undefined ? undefined : l2 + (sid % 2 ** this.split) * STE_BYTES;
  }

  /**
   * The STE's address, creating its level 2 array first if needed: a zeroed array (every STE
   * invalid), then the L1STD (Span = SPLIT + 1; high word first, Span last), then the non-leaf
   * CMD_CFGI_STE and a CMD_SYNC: an L1STD with Span == 0 may have been cached, and only the
   * Leaf == 0 form reaches it (§5.1.1, §4.3.1).
   */
  ensureSte(sid: number, sink: CommandSink): number {
    const have = this.steAddress(sid);
    if (have !== undefined) return have;
    const idx = Math.floor(sid / 2 ** this.split);
    const bytes = this.l2Bytes();
    const l2 = this.alloc.alloc(bytes, bytes, `stream table level 2 array ${idx}`);
    this.l2.set(idx, l2);
    const words = encodeStructure(L1STD, { Span: this.split + 1, L2Ptr: l2 });
    writeDesc64(this.mem, this.base + idx * L1STD_BYTES, words[0]!, words[1]!);
    sink.issue([cfgiSte(sid, false)], { sync: true });
    return l2 + (sid % 2 ** this.split) * STE_BYTES;
  }

  /** The STE's words as they are in memory (all zero when its level 2 array does not exist). */
  readSte(sid: number): Uint32Array {
    const pa = this.steAddress(sid);
    if (pa === undefined) return new Uint32Array(STE_WORDS);
    const out = new Uint32Array(STE_WORDS);
    this.mem.readWords(pa, out);
    return out;
  }

  /** Write `target` into the STE of `sid` with the §3.21.3.1 procedure; each sync is CFGI_STE + CMD_SYNC. */
  writeSte(sid: number, target: Words, sink: CommandSink, unitWords = 1): WriteReport {
    const pa = this.ensureSte(sid, sink);
    return writeEntry(this.mem, pa, target, (w) => steUsedMask(w), () => sink.issue([cfgiSte(sid, true)], { sync: true }), unitWords);
  }
}


// ---------------------------------------------------------------------------------------------
// CD table
// ---------------------------------------------------------------------------------------------

export interface CdTableOptions {
  /** log2 of the master's SubstreamIDs: STE.S1CDMax (0: one CD, substreams disabled). */
  readonly ssidBits: number;
  /** SMMU_IDR0.CD2L: 2-level CD tables are available. */
  readonly cd2l: boolean;
}

/**
 * A master's CD table (Linux's arm_smmu_ctx_desc_cfg): linear when CD2L is absent or the master
 * has at most 1024 SubstreamIDs, else 2-level with 64KB leaf tables (S1Fmt = 0b10) allocated on
 * demand, each made reachable by an L1CD (§5.3).
 */
export class CdTable {
  readonly ssidBits: number;
  readonly s1fmt: number;
  /** The linear table or the L1CD table. */
  readonly base: number;
  readonly bytes: number;
  private readonly l2 = new Map<number, number>();

  constructor(private readonly mem: PhysMem, private readonly alloc: TableAllocator, o: CdTableOptions) {
    this.ssidBits = o.ssidBits;
    const contexts = 2 ** o.ssidBits;
    if (!o.cd2l || contexts <= CD_L2_ENTRIES) {
      this.s1fmt = STE_S1FMT.LINEAR;
      this.bytes = CD_BYTES * contexts;
      this.base = alloc.alloc(this.bytes, Math.max(this.bytes, MIN_TABLE_ALIGN), 'CD table');
    } else {
      this.s1fmt = STE_S1FMT.L2_64K;
      this.bytes = L1CD_BYTES * Math.ceil(contexts / CD_L2_ENTRIES);
      this.base = alloc.alloc(this.bytes, Math.max(this.bytes, MIN_TABLE_ALIGN), 'CD table level 1');
    }
  }

  /** What the STE points at (§5.2 S1ContextPtr, S1Fmt, S1CDMax). */
  get ref(): CdTableRef {
    return { ptr: this.base, s1fmt: this.s1fmt, s1cdmax: this.ssidBits };
  }

  /** Every table page (level 1 or linear first), e.g. to map them at stage 2. */
  get pages(): { pa: number; bytes: number }[] {
    return [{ pa: this.base, bytes: this.bytes }, ...[...this.l2.values()].map((pa) => ({ pa, bytes: CD_BYTES * CD_L2_ENTRIES }))];
  }

  private checkSsid(ssid: number): void {
    if (!Number.isInteger(ssid) || ssid < 0 || ssid >= 2 ** this.ssidBits) {
      throw new RangeError(`SubstreamID ${ssid} is outside the CD table (S1CDMax ${this.ssidBits})`);
    }
  }

  /** Physical address of CD `ssid`, or undefined when its leaf table does not exist. */
  cdAddress(ssid: number): number | undefined {
    this.checkSsid(ssid);
    if (this.s1fmt === STE_S1FMT.LINEAR) return this.base + ssid * CD_BYTES;
    const l2 = this.l2.get(ssid >>> CD_L2_LOG2);
    return l2 === undefined ? undefined : l2 + (ssid % CD_L2_ENTRIES) * CD_BYTES;
  }

  /**
   * CD `ssid`'s address, creating its leaf table first if needed: a zeroed 64KB table, then the
   * L1CD (high word first, V last), then the non-leaf CMD_CFGI_CD and a CMD_SYNC for every
   * StreamID using the table, because an L1CD with V == 0 may have been cached (§5.3.1; Linux
   * does the same).
   */
  ensureCd(ssid: number, sink: CommandSink, sids: readonly number[]): number {
    const have = this.cdAddress(ssid);
    if (have !== undefined) return have;
    const idx = ssid >>> CD_L2_LOG2;
    const bytes = CD_BYTES * CD_L2_ENTRIES;
    const l2 = this.alloc.alloc(bytes, bytes, `CD leaf table ${idx}`);
    this.l2.set(idx, l2);
    const words = encodeStructure(L1CD, { V: 1, L2Ptr: l2 });
    writeDesc64(this.mem, this.base + idx * L1CD_BYTES, words[0]!, words[1]!);
    if (sids.length > 0) sink.issue(sids.map((sid) => cfgiCd(sid, ssid, false)), { sync: true });
    return l2 + (ssid % CD_L2_ENTRIES) * CD_BYTES;
  }

  readCd(ssid: number): Uint32Array {
    const pa = this.cdAddress(ssid);
    const out = new Uint32Array(CD_WORDS);
    if (pa !== undefined) this.mem.readWords(pa, out);
    return out;
  }

  /**
   * Write `target` into CD `ssid` with the §3.21.3.1 procedure; each sync is CMD_CFGI_CD
   * (Leaf = 1) for every StreamID whose STE points at this table, then a CMD_SYNC (§4.3.3: a CD
   * is cached per StreamID).
   */
  writeCd(ssid: number, target: Words, sink: CommandSink, sids: readonly number[], unitWords = 1): WriteReport {
    const pa = this.ensureCd(ssid, sink, sids);
    const sync = (): void => {
      if (sids.length > 0) sink.issue(sids.map((sid) => cfgiCd(sid, ssid, true)), { sync: true });
    };
    return writeEntry(this.mem, pa, target, (w) => cdUsedMask(w), sync, unitWords);
  }

  /** Give every page back. Only after no STE points at the table any more. */
  destroy(): void {
    for (const pa of this.l2.values()) this.alloc.free?.(pa, CD_BYTES * CD_L2_ENTRIES);
    this.l2.clear();
    this.alloc.free?.(this.base, this.bytes);
  }
}
