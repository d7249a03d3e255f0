/**
 * VMSAv8-64 translation table descriptors, as the SMMU walks them (IHI0070 G.b §3.4, §5.4
 * CD.AA64 == 1, §5.2 STE.S2AA64 == 1; the formats themselves are the A-profile architecture's,
 * Arm ARM D8.3). 64-bit descriptors with 48-bit output addresses: the table rows below, the
 * builders that turn them into the two 32-bit words software stores, and the reader of a leaf's
 * output address. Tables with 52-bit output addresses (LPA, LPA2) place OA[51:48] elsewhere and
 * are not described here.
 */

import { addressField, field, getBits, setBits, type NamedField } from './bits.ts';

/** Bytes per descriptor. */
export const DESC_BYTES = 8;
export const DESC_WORDS = 2;

/** bits [1:0]: valid, and table/page (1) versus block (0) (Arm ARM D8.3.1). */
export const DESC_TYPE = Object.freeze({ INVALID: 0b00, BLOCK: 0b01, TABLE: 0b11, PAGE: 0b11 } as const);

/** Fields shared by stage 1 and stage 2 leaf descriptors, and the table descriptor's. */
export const DESC = Object.freeze({
  /** bits [1:0]: DESC_TYPE. */
  Type: field('Type', 1, 0),
  /** Stage 1 AttrIndx[2:0]: the MAIR byte (CD.MAIR0/1). */
  AttrIndx: field('AttrIndx', 4, 2),
  /** Stage 2 MemAttr[3:0]. */
  MemAttr: field('MemAttr', 5, 2),
  /** Stage 1 AP[2:1]: AP[2] read-only, AP[1] EL0 access. */
  AP: field('AP', 7, 6),
  /** Stage 2 S2AP[1:0]: bit 0 read, bit 1 write. */
  S2AP: field('S2AP', 7, 6),
  SH: field('SH', 9, 8),
  /** Access flag: a leaf with AF == 0 faults (F_ACCESS) unless HTTU sets it. */
  AF: field('AF', 10),
  /** Stage 1 not-global: the entry is ASID-tagged (§3.17.1). */
  nG: field('nG', 11),
  DBM: field('DBM', 51),
  PXN: field('PXN', 53),
  /** Stage 1 UXN, stage 2 XN[1]. */
  UXN: field('UXN', 54),
  /** Table descriptor hierarchical controls (stage 1): PXNTable, UXNTable, APTable[1:0]. */
  PXNTable: field('PXNTable', 59),
  UXNTable: field('UXNTable', 60),
  APTable: field('APTable', 62, 61),
} as const);

/** Stage 1 AP[2:1] encodings. */
export const S1_AP = Object.freeze({ RW_EL1: 0b00, RW_ANY: 0b01, RO_EL1: 0b10, RO_ANY: 0b11 } as const);
/** Stage 2 S2AP encodings. */
export const S2_AP = Object.freeze({ NONE: 0b00, RO: 0b01, WO: 0b10, RW: 0b11 } as const);
/** SH encodings. */
export const DESC_SH = Object.freeze({ NSH: 0b00, OSH: 0b10, ISH: 0b11 } as const);
/** Stage 2 MemAttr: Normal, Inner and Outer Write-Back cacheable. */
export const S2_MEMATTR_NORMAL_WB = 0b1111;

/**
 * The output address field for granule 2^g (g = 12, 14 or 16): OA[47:g] in place (a table
 * descriptor's next-level address has the same field).
 */
export function outputAddressField(g: number): NamedField<'OA'> {
  return addressField('OA', 47, g);
}

/** A descriptor as the two words software stores: word 0 holds bits [31:0]. */
export interface DescriptorWords {
  readonly lo: number;
  readonly hi: number;
}

function put(w: number[], f: { lsb: number; width: number }, v: number): void {
  setBits(w, f.lsb, f.width, v);
}

function placeOa(w: number[], oa: number, g: number): void {
  const f = outputAddressField(g);
  // OA[47:g] are stored in place: split at bit 32 so no field crosses a number's 53 bits.
  const page = Math.floor(oa / 2 ** g);
  put(w, { lsb: f.lsb, width: 32 - f.lsb }, page % 2 ** (32 - f.lsb));
  put(w, { lsb: 32, width: 48 - 32 }, Math.floor(oa / 2 ** 32) % 2 ** 16);
}

export interface S1LeafAttrs {
  /** AP[2:1]; default RW at any EL. */
  readonly ap?: number;
  /** nG; default 1 (ASID-tagged, as a process's mappings are). */
  readonly nG?: 0 | 1;
  readonly af?: 0 | 1;
  readonly attrIndx?: number;
}

export interface S2LeafAttrs {
  /** S2AP; default RW. */
  readonly s2ap?: number;
  readonly af?: 0 | 1;
  readonly memAttr?: number;
}

/** A stage 1 page (level 3) or block descriptor mapping to `oa` with granule 2^g. */
export function s1LeafWords(oa: number, g: number, level: number, a: S1LeafAttrs = {}): DescriptorWords {
  const w = [0, 0];
  put(w, DESC.Type, level === 3 ? DESC_TYPE.PAGE : DESC_TYPE.BLOCK);
  put(w, DESC.AttrIndx, a.attrIndx ?? 0);
  put(w, DESC.AP, a.ap ?? S1_AP.RW_ANY);
  put(w, DESC.SH, DESC_SH.ISH);
  put(w, DESC.AF, a.af ?? 1);
  put(w, DESC.nG, a.nG ?? 1);
  placeOa(w, oa, g);
  return { lo: w[0]! >>> 0, hi: w[1]! >>> 0 };
}

/** A stage 2 page (level 3) or block descriptor mapping to `oa` with granule 2^g. */
export function s2LeafWords(oa: number, g: number, level: number, a: S2LeafAttrs = {}): DescriptorWords {
  const w = [0, 0];
  put(w, DESC.Type, level === 3 ? DESC_TYPE.PAGE : DESC_TYPE.BLOCK);
  put(w, DESC.MemAttr, a.memAttr ?? S2_MEMATTR_NORMAL_WB);
  put(w, DESC.S2AP, a.s2ap ?? S2_AP.RW);
  put(w, DESC.SH, DESC_SH.ISH);
  put(w, DESC.AF, a.af ?? 1);
  placeOa(w, oa, g);
  return { lo: w[0]! >>> 0, hi: w[1]! >>> 0 };
}

/** A table descriptor pointing at the next-level table at `next`. */
export function tableDescWords(next: number, g: number): DescriptorWords {
  const w = [0, 0];
  put(w, DESC.Type, DESC_TYPE.TABLE);
  placeOa(w, next, g);
  return { lo: w[0]! >>> 0, hi: w[1]! >>> 0 };
}

/** The output address a valid leaf or table descriptor holds (granule 2^g, 48-bit OA). */
export function descriptorOa(d: DescriptorWords, g: number): number {
  const f = outputAddressField(g);
  const low = getBits([d.lo, d.hi], f.lsb, 32 - f.lsb) * 2 ** f.lsb;
  return getBits([d.lo, d.hi], 32, 16) * 2 ** 32 + low;
}

/** Bit position of the lowest input-address bit a level resolves (granule 2^g, levels 0-3). */
export function levelShift(g: number, level: number): number {
  return g + (3 - level) * (g - 3);
}
