/**
 * Table builders for translation tests: a board with RAM, a bump allocator, VMSAv8-64 page tables
 * written descriptor by descriptor (hand-built u32 words), and STEs/CDs/L1 descriptors encoded with
 * the structure layouts of src/spec/structures.ts.
 */
import { Board, PAGE_64K } from '../../src/mem/board.ts';
import { PhysAllocator, PhysMem } from '../../src/mem/phys.ts';
import type { FieldValue } from '../../src/spec/bits.ts';
import type { SmmuFeatures } from '../../src/spec/features.ts';
import { FULL_FEATURES } from '../../src/spec/features.ts';
import { CD, L1CD, L1STD, STE, encodeStructure } from '../../src/spec/structures.ts';
import type { FieldName } from '../../src/spec/structures.ts';
import { encodeCommandWords, type CommandInput } from '../../src/spec/command-codec.ts';
import { Translator, type TranslatorOptions } from '../../src/device/translate.ts';

export const RAM_BASE = 0x4000_0000;
export const SMMU_WINDOW = { name: 'smmu', bytes: 2 * PAGE_64K, base: 0x0905_0000 };

export interface Bed {
  readonly board: Board;
  readonly mem: PhysMem;
  readonly alloc: PhysAllocator;
  readonly f: SmmuFeatures;
  readonly tr: Translator;
}

/** A board with `ramMiB` of RAM, an allocator from its start, and a Translator (SMMUEN == 1). */
export function bed(opts: { features?: Partial<SmmuFeatures>; translator?: TranslatorOptions; ramMiB?: number } = {}): Bed {
  const board = Board.create({ windows: [SMMU_WINDOW], ramBytes: (opts.ramMiB ?? 16) << 20 });
  const mem = new PhysMem(board);
  const alloc = new PhysAllocator(mem);
  const f: SmmuFeatures = { ...FULL_FEATURES, ...opts.features };
  const tr = new Translator(mem, f, opts.translator ?? {});
  tr.setControl({ smmuEn: true, recInvSid: true });
  return { board, mem, alloc, f, tr };
}

export function cmd(c: CommandInput): Uint32Array {
  return encodeCommandWords(c);
}

// ---------------------------------------------------------------------------------------------
// Descriptors (VMSAv8-64, hand-built words)
// ---------------------------------------------------------------------------------------------

export const G4K = 12;
export const G16K = 14;
export const G64K = 16;

/** Leaf descriptor attributes. Stage 1 and stage 2 share positions: AP/S2AP [7:6], AF [10]. */
export interface LeafAttrs {
  /** AP[2:1] (stage 1) or S2AP[1:0] (stage 2); default 0b01 (stage 1 RW at EL1 and EL0) / 0b11. */
  readonly ap?: number;
  /** Access flag; default 1. */
  readonly af?: 0 | 1;
  /** nG (stage 1); default 0 (global). */
  readonly ng?: 0 | 1;
  readonly pxn?: 0 | 1;
  /** UXN (stage 1) or XN (stage 2), bit 54. */
  readonly uxn?: 0 | 1;
  /** DBM, bit 51. */
  readonly dbm?: 0 | 1;
  /** Stage 2 MemAttr[3:0] at [5:2]; default 0b1111 (Normal WB). */
  readonly memattr?: number;
  /** Raw extra bits to OR into the low and high words. */
  readonly lo?: number;
  readonly hi?: number;
}

/** Table descriptor attributes (stage 1 hierarchical controls, bits 59..62). */
export interface TableAttrs {
  readonly pxnTable?: 0 | 1;
  readonly uxnTable?: 0 | 1;
  /** APTable[1:0] at bits [62:61]. */
  readonly apTable?: number;
}

/** How output addresses sit in descriptors: 'bits48', 'lpa' (64KB, OA[51:48] at [15:12]), 'ds'. */
export type OaLayout = 'bits48' | 'lpa' | 'ds';

/** Place an output address into descriptor words. */
export function oaWords(oa: number, g: number, layout: OaLayout): { lo: number; hi: number } {
  const lo = (oa % 0x1_0000_0000) - (oa % 2 ** g);
  let hi = Math.floor(oa / 0x1_0000_0000) & 0xffff;
  let extra = 0;
  if (layout === 'lpa') {
    extra = (Math.floor(oa / 2 ** 48) & 0xf) << 12;
  } else if (layout === 'ds') {
    hi |= (Math.floor(oa / 2 ** 48) & 0x3) << 16;
    extra = (Math.floor(oa / 2 ** 50) & 0x3) << 8;
  }
  return { lo: (lo | extra) >>> 0, hi: hi >>> 0 };
}

export function leafWords(oa: number, g: number, level: number, stage: 1 | 2, a: LeafAttrs = {}, layout: OaLayout = 'bits48'): { lo: number; hi: number } {
  const w = oaWords(oa, g, layout);
  const page = level === 3 ? 0b11 : 0b01;
  const ap = a.ap ?? (stage === 1 ? 0b01 : 0b11);
  let lo = w.lo | page | (ap << 6) | ((a.af ?? 1) << 10) | ((a.ng ?? 0) << 11);
  if (stage === 2) lo |= (a.memattr ?? 0b1111) << 2;
  else lo |= 0b11 << 8; // SH = Inner Shareable
  const hi = w.hi | ((a.dbm ?? 0) << 19) | ((a.pxn ?? 0) << 21) | ((a.uxn ?? 0) << 22);
  return { lo: (lo | (a.lo ?? 0)) >>> 0, hi: (hi | (a.hi ?? 0)) >>> 0 };
}

export function tableWords(next: number, g: number, t: TableAttrs = {}, layout: OaLayout = 'bits48'): { lo: number; hi: number } {
  const w = oaWords(next, g, layout);
  const hi = w.hi | ((t.pxnTable ?? 0) << 27) | ((t.uxnTable ?? 0) << 28) | ((t.apTable ?? 0) << 29);
  return { lo: (w.lo | 0b11) >>> 0, hi: hi >>> 0 };
}

/**
 * A translation table tree. `ia` input bits, granule `g`, starting level `start` (stage 2 may
 * concatenate: the starting table then spans the remaining input bits). Tables are allocated on
 * demand, aligned to their size. Addresses are numbers: only their low `ia` bits select
 * descriptors, so a TTB1 VA is given by its low bits (e.g. 0x1000 for 0xffff_ff80_0000_1000 with a
 * 39-bit range).
 */
export class PageTable {
  readonly root: number;
  readonly stride: number;
  private readonly tables = new Map<string, number>();

  constructor(
    readonly mem: PhysMem,
    readonly alloc: PhysAllocator,
    readonly g: number,
    readonly ia: number,
    readonly start: number,
    readonly stage: 1 | 2,
    readonly layout: OaLayout = 'bits48',
  ) {
    this.stride = g - 3;
    this.root = alloc.alloc(this.tableBytes(start), Math.max(this.tableBytes(start), 64), 'root table');
  }

  /** Stage 1 start level for an input size (§5.4 TxSZ; the A-profile rule). */
  static s1Start(g: number, ia: number): number {
    return 4 - Math.ceil((ia - g) / (g - 3));
  }

  tableBytes(level: number): number {
    const bits = level === this.start ? this.ia - this.g - (3 - level) * this.stride : this.stride;
    return 2 ** bits * 8;
  }

  /** Bit position of the lowest index bit at `level`. */
  lsb(level: number): number {
    return this.g + (3 - level) * this.stride;
  }

  private index(addr: number, level: number): number {
    const width = level === this.start ? this.ia - this.lsb(level) : this.stride;
    return Math.floor(addr / 2 ** this.lsb(level)) % 2 ** width;
  }

  /** Address of the descriptor for `addr` at `level` (tables allocated as needed). */
  descAddr(addr: number, level: number, tattrs: TableAttrs = {}): number {
    let table = this.root;
    for (let l = this.start; l < level; l++) {
      const d = table + this.index(addr, l) * 8;
      const key = `${l}:${d}`;
      let next = this.tables.get(key);
      if (next === undefined) {
        next = this.alloc.alloc(this.tableBytes(l + 1), this.tableBytes(l + 1), `level ${l + 1} table`);
        this.tables.set(key, next);
        const w = tableWords(next, this.g, l === level - 1 ? tattrs : {}, this.layout);
        this.mem.write32(d, w.lo);
        this.mem.write32(d + 4, w.hi);
      }
      table = next;
    }
    return table + this.index(addr, level) * 8;
  }

  /** Map the block or page at `level` holding `addr` to `oa` (both aligned to the level's size). */
  map(addr: number, oa: number, level = 3, a: LeafAttrs = {}, tattrs: TableAttrs = {}): number {
    const d = this.descAddr(addr, level, tattrs);
    const w = leafWords(oa, this.g, level, this.stage, a, this.layout);
    this.mem.write32(d, w.lo);
    this.mem.write32(d + 4, w.hi);
    return d;
  }

  /** Write raw descriptor words at the level for `addr`. */
  raw(addr: number, level: number, lo: number, hi: number): number {
    const d = this.descAddr(addr, level);
    this.mem.write32(d, lo);
    this.mem.write32(d + 4, hi);
    return d;
  }

  /** The descriptor words currently at the level for `addr`. */
  read(addr: number, level: number): { lo: number; hi: number; pa: number } {
    const d = this.descAddr(addr, level);
    return { lo: this.mem.read32(d), hi: this.mem.read32(d + 4), pa: d };
  }
}

// ---------------------------------------------------------------------------------------------
// Structures
// ---------------------------------------------------------------------------------------------

export type SteValues = Partial<Record<FieldName<typeof STE>, FieldValue>>;
export type CdValues = Partial<Record<FieldName<typeof CD>, FieldValue>>;

/** An STE: V = 1 plus the given fields. */
export function steWords(v: SteValues): Uint32Array {
  return encodeStructure(STE, { V: 1, ...v });
}

/** A CD: V = 1, AA64 = 1, A = 1, R = 1 plus the given fields. */
export function cdWords(v: CdValues): Uint32Array {
  return encodeStructure(CD, { V: 1, AA64: 1, A: 1, R: 1, ...v });
}

export function l1stdWords(span: number, l2ptr: number): Uint32Array {
  return encodeStructure(L1STD, { Span: span, L2Ptr: BigInt(l2ptr) });
}

export function l1cdWords(v: 0 | 1, l2ptr: number): Uint32Array {
  return encodeStructure(L1CD, { V: v, L2Ptr: BigInt(l2ptr) });
}

/** A linear Stream table of 2^log2 STEs, installed in the translator. */
export function linearStreamTable(b: Bed, log2: number): { base: number; ste: (sid: number) => number } {
  const base = b.alloc.alloc(64 << log2, 64 << log2, 'stream table');
  b.tr.setStreamTable({ base, twoLevel: false, split: 0, log2size: Math.min(log2, b.f.sidSize) });
  return { base, ste: (sid: number) => base + sid * 64 };
}

/** Stage 2 STE fields for a page table (S2SL0 derived from its start level). */
export function s2Fields(pt: PageTable, vmid: number, extra: SteValues = {}): SteValues {
  const tg = pt.g === G4K ? 0 : pt.g === G64K ? 1 : 2;
  let sl0: number;
  if (pt.g === G4K) sl0 = pt.start === 2 ? 0 : pt.start === 1 ? 1 : pt.start === 0 ? 2 : 0;
  else sl0 = 3 - pt.start;
  return { S2VMID: vmid, S2T0SZ: 64 - pt.ia, S2SL0: sl0, S2TG: tg, S2PS: 0b101, S2AA64: 1, S2R: 1, S2TTB: BigInt(pt.root), ...extra };
}

/** Stage 1 CD fields for a TTB0 page table. */
export function cdFields(pt: PageTable, asid: number, extra: CdValues = {}): CdValues {
  const tg = pt.g === G4K ? 0 : pt.g === G64K ? 1 : 2;
  return { T0SZ: 64 - pt.ia, TG0: tg, IPS: 0b101, EPD1: 1, ASID: asid, TTB0: BigInt(pt.root), ...extra };
}
