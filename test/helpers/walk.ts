/**
 * A small software walker for end-to-end tests: finds, in physical memory, the STE of a StreamID
 * (from SMMU_STRTAB_BASE/_CFG, linear or 2-level), the CD of a SubstreamID (from the STE, linear or
 * 2-level CD table) and the leaf descriptor of an input address (from a page table's root), so a
 * test can change them behind the driver's back and watch the SMMU's caches stay stale until the
 * right invalidation command.
 *
 * Independent of the driver and the device: it reads only architected state (registers and the
 * structures in memory, §3.3.1, §3.4.3, §5.1-§5.4, Arm ARM D8 VMSAv8-64 descriptors).
 */
import type { PhysMem } from '../../src/mem/phys.ts';
import { fieldSet, type Field, type FieldValue } from '../../src/spec/bits.ts';
import { REG, STRTAB_FMT, regGet } from '../../src/spec/registers.ts';
import {
  CD_BYTES, L1CD_BYTES, L1STD_BYTES, STE_BYTES, STE_S1FMT, l1cdL2Ptr, l1cdValid, l1stdL2Ptr, l1stdSpan, readAddress, steS1ContextPtr, steS1Fmt,
} from '../../src/spec/structures.ts';

const TWO32 = 0x1_0000_0000;
/** Descriptor bits [1:0]: 0b11 table (levels 0-2) or page (level 3), 0b01 block (Arm ARM D8). */
export const DESC_VALID = 0b01;
const DESC_TABLE = 0b11;
const LAST_LEVEL = 3;
/** Output / next-level address bits [47:32] in the descriptor's high word. */
const HI_OA_MASK = 0xffff;
/** Descriptor bit 10: AF, the Access flag (both stages). */
export const DESC_AF = 1 << 10;
/** Descriptor bit 11: nG (stage 1). */
export const DESC_NG = 1 << 11;
/** SubstreamID bits a level 2 CD table indexes: 64 CDs (4KB) or 1024 CDs (64KB) (§5.2 S1Fmt). */
const CD_L2_BITS: Readonly<Record<number, number>> = { [STE_S1FMT.L2_4K]: 6, [STE_S1FMT.L2_64K]: 10 };

/** Something that reads 32-bit registers (System.readReg). */
export interface RegReader {
  readReg(reg: string | number): number;
}

// ---------------------------------------------------------------------------------------------
// Structures
// ---------------------------------------------------------------------------------------------

export function readWords(mem: PhysMem, pa: number, n: number): Uint32Array {
  const w = new Uint32Array(n);
  mem.readWords(pa, w);
  return w;
}

/** Read a structure, set fields, write it back (whole words; no SMMU invalidation). */
export function patch(mem: PhysMem, pa: number, words: number, fields: ReadonlyArray<readonly [Field, FieldValue]>): Uint32Array {
  const w = readWords(mem, pa, words);
  const before = w.slice();
  for (const [f, v] of fields) fieldSet(w, f, v);
  mem.writeWords(pa, w);
  return before;
}

/**
 * Physical address of StreamID `sid`'s STE, as the SMMU locates it (§3.3.1, §6.3.24-25): linear,
 * or through the L1STD of a 2-level table. Undefined when the StreamID is beyond LOG2SIZE or its
 * L1STD has Span == 0.
 */
export function stePa(mem: PhysMem, regs: RegReader, sid: number): number | undefined {
  const lo = regs.readReg(REG.SMMU_STRTAB_BASE.offset);
  const hi = regs.readReg(REG.SMMU_STRTAB_BASE.offset + 4);
  const cfg = regs.readReg(REG.SMMU_STRTAB_BASE_CFG.offset);
  const C = REG.SMMU_STRTAB_BASE_CFG.f;
  const base = readAddress([lo, hi], REG.SMMU_STRTAB_BASE.f.ADDR);
  if (sid >= 2 ** regGet(cfg, C.LOG2SIZE)) return undefined;
  if (regGet(cfg, C.FMT) !== STRTAB_FMT.TWO_LEVEL) return base + sid * STE_BYTES;
  const split = regGet(cfg, C.SPLIT);
  const l1 = readWords(mem, base + Math.floor(sid / 2 ** split) * L1STD_BYTES, 2);
  if (l1stdSpan(l1) === 0) return undefined;
  return l1stdL2Ptr(l1) + (sid % 2 ** split) * STE_BYTES;
}

/** The L1STD that locates `sid` in a 2-level Stream table (§5.1). */
export function l1stdPa(regs: RegReader, sid: number): number {
  const lo = regs.readReg(REG.SMMU_STRTAB_BASE.offset);
  const hi = regs.readReg(REG.SMMU_STRTAB_BASE.offset + 4);
  const split = regGet(regs.readReg(REG.SMMU_STRTAB_BASE_CFG.offset), REG.SMMU_STRTAB_BASE_CFG.f.SPLIT);
  return readAddress([lo, hi], REG.SMMU_STRTAB_BASE.f.ADDR) + Math.floor(sid / 2 ** split) * L1STD_BYTES;
}

/**
 * Physical address of CD `ssid` of the STE at `ste` (§5.2 S1ContextPtr/S1Fmt, §5.3): linear, or
 * through an L1CD. The CD table pointer is taken as a PA (nested tables in these tests are mapped
 * at IPA == PA). Undefined when the L1CD is invalid.
 */
export function cdPa(mem: PhysMem, ste: number, ssid: number): number | undefined {
  const s = readWords(mem, ste, STE_BYTES / 4);
  const ptr = steS1ContextPtr(s);
  const fmt = steS1Fmt(s);
  if (fmt === STE_S1FMT.LINEAR) return ptr + ssid * CD_BYTES;
  const bits = CD_L2_BITS[fmt]!;
  const l1 = readWords(mem, ptr + (ssid >>> bits) * L1CD_BYTES, 2);
  if (!l1cdValid(l1)) return undefined;
  return l1cdL2Ptr(l1) + (ssid % 2 ** bits) * CD_BYTES;
}

// ---------------------------------------------------------------------------------------------
// Page tables (VMSAv8-64, 64-bit descriptors, OA below 2^48)
// ---------------------------------------------------------------------------------------------

/** What a walk needs: DomainInfo's pgd, granule, startLevel and ias. */
export interface TableGeometry {
  readonly pgd: number;
  readonly granule: number;
  readonly startLevel: number;
  readonly ias: number;
}

export interface Desc {
  /** Physical address of the descriptor. */
  readonly pa: number;
  readonly level: number;
  readonly lo: number;
  readonly hi: number;
  /** A page or block descriptor (false: invalid). */
  readonly leaf: boolean;
  /** log2 of the bytes a leaf at this level maps. */
  readonly log2: number;
}

function levelShift(g: number, level: number): number {
  return g + (LAST_LEVEL - level) * (g - 3);
}

/**
 * The descriptor that ends a walk of `ia`: the leaf, or the first invalid descriptor. The start
 * table indexes every input bit above its level's shift (stage 2 concatenation included).
 */
export function walkLeaf(mem: PhysMem, t: TableGeometry, ia: number): Desc {
  const g = Math.log2(t.granule);
  let table = t.pgd;
  for (let l = t.startLevel; l <= LAST_LEVEL; l++) {
    const shift = levelShift(g, l);
    const width = l === t.startLevel ? t.ias - shift : g - 3;
    const pa = table + (Math.floor(ia / 2 ** shift) % 2 ** width) * 8;
    const lo = mem.read32(pa);
    const hi = mem.read32(pa + 4);
    const isTable = l < LAST_LEVEL && (lo & DESC_TABLE) === DESC_TABLE;
    if ((lo & DESC_VALID) === 0 || !isTable) return { pa, level: l, lo, hi, leaf: (lo & DESC_VALID) !== 0, log2: shift };
    table = (hi & HI_OA_MASK) * TWO32 + ((lo >>> 0) - ((lo >>> 0) % t.granule));
  }
  throw new Error('unreachable: level 3 always ends the walk');
}

/** The output address of a leaf descriptor (OA below 2^48). */
export function descOutput(d: Desc): number {
  return (d.hi & HI_OA_MASK) * TWO32 + ((d.lo >>> 0) - ((d.lo >>> 0) % 2 ** Math.min(d.log2, 32)));
}

/** Rewrite a leaf's output address (attributes kept), as software would without break-before-make. */
export function setOutput(mem: PhysMem, d: Desc, oa: number): void {
  if (oa % 2 ** d.log2 !== 0) throw new RangeError(`0x${oa.toString(16)} is not aligned to the level ${d.level} leaf size`);
  const keep = d.log2 >= 32 ? 0xffff_ffff : 2 ** d.log2 - 1;
  const lo = ((d.lo >>> 0) & keep) + ((oa % TWO32) - ((oa % TWO32) & keep));
  const hi = ((d.hi & ~HI_OA_MASK) | (Math.floor(oa / TWO32) & HI_OA_MASK)) >>> 0;
  mem.write32(d.pa + 4, hi);
  mem.write32(d.pa, lo >>> 0);
}

/** Rewrite a descriptor's low word with bits set and cleared (nG, AF, the valid bit …). */
export function setLowBits(mem: PhysMem, d: Desc, set: number, clear: number): void {
  mem.write32(d.pa, (((d.lo >>> 0) & ~clear) | set) >>> 0);
}

/** Put a descriptor back as it was. */
export function restore(mem: PhysMem, d: Desc): void {
  mem.write32(d.pa + 4, d.hi >>> 0);
  mem.write32(d.pa, d.lo >>> 0);
}
