/**
 * VMSAv8-64 translation tables in guest physical memory, built the way Linux's io-pgtable-arm
 * builds them for an SMMU (read for behaviour only; every line here is ours).
 *
 * The descriptor formats are the A-profile ones (Arm ARM DDI 0487, chapter D8 "The AArch64
 * Virtual Memory System Architecture", VMSAv8-64 descriptor formats), which the SMMU walks as a PE
 * would (IHI0070 §3.21.1: "Translation table walks ... match those of Armv8-A"):
 *
 *   bits [1:0]  0b11 table (levels 0-2) or page (level 3); 0b01 block (levels 1-2); bit 0 = valid
 *   stage 1 leaf: AttrIndx [4:2], AP[2:1] [7:6], SH [9:8], AF [10], nG [11], PXN [53], UXN [54]
 *   stage 2 leaf: MemAttr [5:2], S2AP [7:6], SH [9:8], AF [10], XN[1:0] [54:53]
 *   output / next-level address: bits [47:granule shift]; with the 64KB granule and a 52-bit
 *   output size, address bits [51:48] sit in descriptor bits [15:12].
 *
 * Levels, start level and table sizes follow io-pgtable-arm: levels = ceil((ias - shift) /
 * (shift - 3)); the start table holds what is left; a stage 2 table that would start at level 0
 * with at most 16 entries starts at level 1 instead, with up to 16 concatenated level 1 tables.
 * Leaf sizes are those Linux offers for the granule: 4KB, 2MB, 1GB (4KB granule); 16KB, 32MB
 * (16KB); 64KB, 512MB (64KB).
 *
 * Atomicity. A 64-bit descriptor store is single-copy atomic on the hardware this imitates; the
 * model's memory is u32 words, so a descriptor is written as two words in the order that keeps a
 * concurrent walker safe: to make a descriptor valid the high word is stored first and the low
 * word, which holds the valid bit, last (with Atomics.store, so a walker that loads the low word
 * with Atomics.load also sees the high word); to make it invalid the low word is cleared first
 * (Atomics.store) and the high word after. A walker therefore never sees a valid descriptor with a
 * stale half. Replacing one valid descriptor by another valid one is never done (break-before-make
 * by construction: unmap, invalidate, then map).
 *
 * No BigInt: a descriptor is a (lo, hi) pair of u32 numbers; addresses are numbers below 2^53.
 */

import type { PhysMem } from '../mem/phys.ts';
import { ADDRESS_SIZE_BITS, TG0_16KB, TG0_4KB, TG0_64KB } from '../spec/structures.ts';

// ---------------------------------------------------------------------------------------------
// Constants (Arm ARM D8, VMSAv8-64 descriptor formats)
// ---------------------------------------------------------------------------------------------

/** The translation granules of VMSAv8-64. */
export type Granule = 4096 | 16384 | 65536;
export const GRANULES: readonly Granule[] = Object.freeze([4096, 16384, 65536]);

/** A VMSAv8-64 descriptor is 8 bytes; a table of 2^n entries is 2^(n+3) bytes. */
const DESC_BYTES = 8;
const DESC_BYTES_LOG2 = 3;
/** Levels are numbered 0..3; the last level holds page descriptors. */
const LAST_LEVEL = 3;
/** Stage 2 may concatenate up to 16 tables at the initial lookup level (Arm ARM D8, VTCR_EL2.SL0). */
const S2_MAX_CONCAT = 16;
/** Translation tables are aligned to their size, and to at least 64 bytes (TTBR BADDR[5:0]). */
const MIN_TABLE_ALIGN = 64;

const TWO32 = 0x1_0000_0000;
/** 2^48: output addresses at or above it need the 64KB granule's OA[51:48] field. */
const TWO48 = 2 ** 48;
/** The 64KB granule's OA[51:48] field: descriptor bits [15:12]. */
const OA_HI_SHIFT = 12;
const OA_HI_MASK = 0xf;
/** Output address bits [47:32] live in the high word, bits [15:0]. */
const HI_OA_MASK = 0xffff;

/** Descriptor bits [1:0] (low word). */
const DESC_VALID = 0b01;
const DESC_TABLE = 0b11;
const DESC_PAGE = 0b11;
const DESC_BLOCK = 0b01;
const DESC_TYPE_MASK = 0b11;

/** Lower attributes, low word. */
const ATTRINDX_SHIFT = 2; // stage 1 AttrIndx[2:0]
const MEMATTR_SHIFT = 2; // stage 2 MemAttr[3:0]
const AP_UNPRIV = 1 << 6; // stage 1 AP[1]: EL0 access
const AP_RDONLY = 1 << 7; // stage 1 AP[2]: read-only
const S2AP_READ = 1 << 6; // stage 2 S2AP[0]
const S2AP_WRITE = 1 << 7; // stage 2 S2AP[1]
const SH_SHIFT = 8;
const SH_OSH = 0b10;
const SH_ISH = 0b11;
const AF = 1 << 10;
const NG = 1 << 11;
/** Upper attributes, high word (descriptor bit - 32). */
const PXN_HI = 1 << (53 - 32);
const UXN_HI = 1 << (54 - 32);
/**
 * Stage 2 XN[1:0] at [54:53] = 0b10: not executable at EL0 or EL1 (with FEAT_XNX); without XNX
 * bit 53 is RES0 and bit 54 alone is XN. Linux writes 0b11 (its stage 1 PXN|UXN), which with XNX
 * would mean "executable at EL1"; the model's SMMU has no XNX (idr.ts), and 0b10 is right either way.
 */
const S2_XN_HI = 1 << (54 - 32);

/** Stage 1 MAIR attribute indices and the MAIR Linux programs (io-pgtable-arm). */
export const MAIR_ATTR = Object.freeze({
  /** Index 0: Normal, Inner and Outer Non-cacheable (0x44). */
  IDX_NC: 0,
  /** Index 1: Normal, Inner and Outer Write-Back Read/Write-Allocate (0xff). */
  IDX_CACHE: 1,
  /** Index 2: Device-nGnRE (0x04). */
  IDX_DEV: 2,
  /** Index 3: Normal, Inner Non-cacheable, Outer Write-Back RW-Allocate (0xf4). */
  IDX_INC_OCACHE: 3,
});
const MAIR_NC = 0x44;
const MAIR_WBRWA = 0xff;
const MAIR_DEVICE = 0x04;
const MAIR_INC_OWBRWA = 0xf4;
const MAIR_ATTR_BITS = 8;
/** MAIR_ELx bits [31:0] (Attr0..Attr3) as Linux sets them; bits [63:32] are zero. */
export const MAIR0_VALUE =
  ((MAIR_NC << (MAIR_ATTR_BITS * MAIR_ATTR.IDX_NC)) |
    (MAIR_WBRWA << (MAIR_ATTR_BITS * MAIR_ATTR.IDX_CACHE)) |
    (MAIR_DEVICE << (MAIR_ATTR_BITS * MAIR_ATTR.IDX_DEV)) |
    (MAIR_INC_OWBRWA << (MAIR_ATTR_BITS * MAIR_ATTR.IDX_INC_OCACHE))) >>>
  0;

/** Stage 2 MemAttr[3:0] (Arm ARM D8, stage 2 memory type): Linux's three choices. */
export const S2_MEMATTR = Object.freeze({
  /** 0b0001: Device-nGnRE. */
  DEVICE: 0b0001,
  /** 0b0101: Normal, Outer and Inner Non-cacheable. */
  NC: 0b0101,
  /** 0b1111: Normal, Outer and Inner Write-Back Cacheable. */
  OIWB: 0b1111,
});

/** Walk attributes (CD IR0/OR0, STE S2IR0/S2OR0, §5.2, §5.4): 0b01 Write-Back RA WA, 0b00 NC. */
const WALK_WBWA = 0b01;
const WALK_NC = 0b00;

/** Levels that may hold block descriptors, by granule (Linux's page sizes; no 52-bit blocks). */
const BLOCK_LEVELS: Readonly<Record<Granule, readonly number[]>> = Object.freeze({
  4096: [1, 2],
  16384: [2],
  65536: [2],
});

/** Stage 2 starting level by SL0 (Arm ARM D8, VTCR_EL2.SL0; STE.S2SL0, §5.2). */
const S2SL0_4K: Readonly<Record<number, number>> = Object.freeze({ 2: 0b00, 1: 0b01, 0: 0b10 });
const S2SL0_16K_64K: Readonly<Record<number, number>> = Object.freeze({ 3: 0b00, 2: 0b01, 1: 0b10, 0: 0b11 });

/** Input sizes: T0SZ at most 39 (25-bit regions) and, without DS, at least 16 (48 bits; 52 with 64KB). */
const MIN_IAS = 25;
const MAX_IAS = 48;
const MAX_IAS_64K = 52;
const MAX_OAS = 48;
const MAX_OAS_64K = 52;
const TNSZ_BASE = 64;

// ---------------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------------

/** Memory allocation for tables: aligned, zeroed. */
export interface TableAllocator {
  alloc(bytes: number, align: number, what?: string): number;
  /** Give memory back (optional: a bump allocator never reuses). */
  free?(pa: number, bytes: number): void;
}

/** Access and attributes of a mapping: Linux's IOMMU_READ/WRITE/CACHE/NOEXEC/MMIO/PRIV. */
export interface MapProt {
  readonly read?: boolean;
  readonly write?: boolean;
  /** Normal Write-Back cacheable, Inner Shareable (else Normal Non-cacheable, Outer Shareable). */
  readonly cache?: boolean;
  /** Execute-never. */
  readonly noexec?: boolean;
  /** Device-nGnRE (takes precedence over `cache`). */
  readonly mmio?: boolean;
  /** Stage 1: privileged only (AP[1] = 0). Ignored at stage 2. */
  readonly priv?: boolean;
}

export interface IoPgtableConfig {
  readonly stage: 1 | 2;
  readonly granule: Granule;
  /** Input address bits: VA (stage 1) or IPA (stage 2). */
  readonly ias: number;
  /** Output address bits: one of 32, 36, 40, 42, 44, 48 (52 with the 64KB granule). */
  readonly oas: number;
  /**
   * Walks are cache coherent (SMMU_IDR0.COHACC): walk attributes Write-Back and Inner Shareable;
   * otherwise Non-cacheable and Outer Shareable (default true).
   */
  readonly coherentWalk?: boolean;
}

/** An address range whose TLB entries must be invalidated: what an unmap gathers. */
export interface Gather {
  readonly iova: number;
  readonly size: number;
  /** Size of the leaves removed (leaf), or the table granule (a removed table: a walk flush). */
  readonly granule: number;
  /** Only last-level (leaf) entries changed: TLBI Leaf = 1 and a TTL hint. */
  readonly leaf: boolean;
}

export interface PgtableOps {
  /**
   * Invalidate all TLB and walk-cache entries for [iova, iova + size) (a table was removed) and
   * wait for completion. Called synchronously, before the removed table's memory is reused
   * (Linux's tlb_flush_walk). Without it, removed tables are never reused.
   */
  flushWalk?(g: Gather): void;
}

export interface UnmapResult {
  /** Bytes unmapped, from the start of the range. */
  unmapped: number;
  /** Leaf ranges to invalidate (Leaf = 1), contiguous runs of one leaf size. */
  gathers: Gather[];
  /** Tables removed; already flushed through PgtableOps.flushWalk when one was given. */
  walks: Gather[];
  /** Why the unmap stopped before the end of the range (as Linux's iommu_unmap stops). */
  stopped?: { iova: number; reason: 'not mapped' | 'inside a larger block' };
}

export interface MapResult {
  mapped: number;
  /** Leaf size used for each run, in order. */
  leaves: { iova: number; size: number; count: number }[];
  /** Empty tables replaced by blocks; flushed through PgtableOps.flushWalk. */
  walks: Gather[];
}

/** The CD fields a stage 1 table needs (§5.4; Linux arm_smmu_make_s1_cd). */
export interface Stage1Fields {
  readonly TTB0: number;
  readonly T0SZ: number;
  readonly TG0: number;
  readonly IR0: number;
  readonly OR0: number;
  readonly SH0: number;
  readonly IPS: number;
  readonly MAIR0: number;
  readonly MAIR1: number;
}

/** The STE fields a stage 2 table needs (§5.2; Linux's VTCR fields of STE dword 2). */
export interface Stage2Fields {
  readonly S2TTB: number;
  readonly S2T0SZ: number;
  readonly S2SL0: number;
  readonly S2IR0: number;
  readonly S2OR0: number;
  readonly S2SH0: number;
  readonly S2TG: number;
  readonly S2PS: number;
}

/** One step of a walk, for inspection. */
export interface WalkStep {
  readonly level: number;
  /** Physical address of the descriptor. */
  readonly pa: number;
  readonly lo: number;
  readonly hi: number;
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

function log2(n: number): number {
  return Math.log2(n);
}

function isAligned(v: number, align: number): boolean {
  return v % align === 0;
}

/** An output (or next-level table) address as the descriptor's (lo, hi) address bits. */
function oaWords(pa: number): [number, number] {
  const hi32 = Math.floor(pa / TWO32);
  let lo = pa % TWO32;
  if (pa >= TWO48) lo += ((Math.floor(pa / TWO48) & OA_HI_MASK) << OA_HI_SHIFT) >>> 0;
  return [lo >>> 0, hi32 & HI_OA_MASK];
}

/** hex for messages */
function hx(v: number): string {
  return `0x${v.toString(16)}`;
}

/**
 * A pool over a TableAllocator: freed blocks are kept by size and handed out again (zeroed)
 * before new memory is taken. Linux frees table pages to the page allocator; the model's
 * PhysAllocator never frees, so the pool is the reuse.
 */
export class TablePool implements TableAllocator {
  private readonly free_ = new Map<number, number[]>();

  constructor(private readonly mem: PhysMem, private readonly backing: TableAllocator) {}

  alloc(bytes: number, align: number, what = 'table'): number {
    const list = this.free_.get(bytes);
    if (list !== undefined) {
      const i = list.findIndex((pa) => isAligned(pa, align));
      if (i >= 0) {
        const pa = list.splice(i, 1)[0]!;
        this.mem.fill(pa, bytes, 0);
        return pa;
      }
    }
    return this.backing.alloc(bytes, align, what);
  }

  free(pa: number, bytes: number): void {
    let list = this.free_.get(bytes);
    if (list === undefined) this.free_.set(bytes, (list = []));
    list.push(pa);
  }

  /** Blocks waiting for reuse, by size. */
  get pooled(): Record<number, number> {
    const out: Record<number, number> = {};
    for (const [k, v] of this.free_) out[k] = v.length;
    return out;
  }
}

// ---------------------------------------------------------------------------------------------
// The page table
// ---------------------------------------------------------------------------------------------

export class IoPgtable {
  readonly stage: 1 | 2;
  readonly granule: Granule;
  readonly ias: number;
  readonly oas: number;
  readonly coherentWalk: boolean;
  /** log2 of the granule: 12, 14 or 16. */
  readonly pgShift: number;
  /** Index bits per level below the start: pgShift - 3. */
  readonly bitsPerLevel: number;
  /** Lookup levels. */
  readonly levels: number;
  /** Initial lookup level (0..3). */
  readonly startLevel: number;
  /** Index bits at the start level (more than bitsPerLevel when stage 2 tables are concatenated). */
  readonly pgdBits: number;
  /** Size in bytes of the start-level table (all concatenated tables). */
  readonly pgdBytes: number;
  /** Physical address of the start-level table: the TTB. */
  readonly pgd: number;
  /** Leaf sizes, ascending (Linux's pgsize_bitmap for the granule, from the start level down). */
  readonly pageSizes: readonly number[];

  private readonly mem: PhysMem;
  private readonly alloc: TableAllocator;
  private readonly ops: PgtableOps;
  /** Table pages in use, pgd excluded, for destroy(). */
  private readonly tables = new Set<number>();

  constructor(mem: PhysMem, alloc: TableAllocator, cfg: IoPgtableConfig, ops: PgtableOps = {}) {
    if (!GRANULES.includes(cfg.granule)) throw new RangeError(`granule ${cfg.granule} is not 4096, 16384 or 65536`);
    const big = cfg.granule === 65536;
    const maxIas = big ? MAX_IAS_64K : MAX_IAS;
    if (!Number.isInteger(cfg.ias) || cfg.ias < MIN_IAS || cfg.ias > maxIas) {
      throw new RangeError(`input size ${cfg.ias} bits is outside ${MIN_IAS}..${maxIas} for the ${cfg.granule / 1024}KB granule`);
    }
    const maxOas = big ? MAX_OAS_64K : MAX_OAS;
    if (!ADDRESS_SIZE_BITS.includes(cfg.oas) || cfg.oas > maxOas) {
      throw new RangeError(`output size ${cfg.oas} bits is not one of ${ADDRESS_SIZE_BITS.filter((b) => b <= maxOas).join(', ')} for the ${cfg.granule / 1024}KB granule`);
    }
    this.mem = mem;
    this.alloc = alloc;
    this.ops = ops;
    this.stage = cfg.stage;
    this.granule = cfg.granule;
    this.ias = cfg.ias;
    this.oas = cfg.oas;
    this.coherentWalk = cfg.coherentWalk ?? true;
    this.pgShift = log2(cfg.granule);
    this.bitsPerLevel = this.pgShift - DESC_BYTES_LOG2;
    const vaBits = cfg.ias - this.pgShift;
    let levels = Math.ceil(vaBits / this.bitsPerLevel);
    let pgdBits = vaBits - this.bitsPerLevel * (levels - 1);
    // Stage 2 concatenation (Linux arm_64_lpae_alloc_pgtable_s2): a level 0 table of at most 16
    // entries becomes that many concatenated level 1 tables, saving a level of walk.
    if (cfg.stage === 2 && levels === LAST_LEVEL + 1 && 2 ** pgdBits <= S2_MAX_CONCAT) {
      levels--;
      pgdBits += this.bitsPerLevel;
    }
    this.levels = levels;
    this.startLevel = LAST_LEVEL + 1 - levels;
    this.pgdBits = pgdBits;
    this.pgdBytes = DESC_BYTES << pgdBits;
    const sizes: number[] = [];
    const blockLevels = BLOCK_LEVELS[cfg.granule];
    for (let l = LAST_LEVEL; l >= this.startLevel; l--) if (l === LAST_LEVEL || blockLevels.includes(l)) sizes.push(this.blockSize(l));
    this.pageSizes = Object.freeze(sizes);
    this.pgd = alloc.alloc(this.pgdBytes, Math.max(this.pgdBytes, MIN_TABLE_ALIGN), `stage ${cfg.stage} start-level table`);
  }

  /** Bytes one descriptor at `level` maps: 2^(pgShift + bitsPerLevel * (3 - level)). */
  blockSize(level: number): number {
    return 2 ** this.levelShift(level);
  }

  private levelShift(level: number): number {
    return this.pgShift + this.bitsPerLevel * (LAST_LEVEL - level);
  }

  private indexBits(level: number): number {
    return level === this.startLevel ? this.pgdBits : this.bitsPerLevel;
  }

  private index(iova: number, level: number): number {
    return Math.floor(iova / 2 ** this.levelShift(level)) % 2 ** this.indexBits(level);
  }

  /** The level whose descriptors map `size` bytes. */
  private levelFor(size: number): number {
    for (let l = LAST_LEVEL; l >= this.startLevel; l--) if (this.blockSize(l) === size) return l;
    throw new RangeError(`no level maps ${hx(size)} bytes`);
  }

  // -- descriptor access ------------------------------------------------------------------------

  private readDesc(pa: number): [number, number] {
    const w = this.mem.wordIndex(pa);
    const u32 = this.mem.u32;
    return [Atomics.load(u32, w), u32[w + 1]!];
  }

  /** Make a descriptor valid: high word first, then the low word with the valid bit. */
  private writeDesc(pa: number, lo: number, hi: number): void {
    this.mem.check(pa, DESC_BYTES, DESC_BYTES);
    const w = this.mem.wordIndex(pa);
    const u32 = this.mem.u32;
    u32[w + 1] = hi >>> 0;
    Atomics.store(u32, w, lo >>> 0);
  }

  /** Make a descriptor invalid: the low word (valid bit) first, then the high word. */
  private clearDesc(pa: number): void {
    const w = this.mem.wordIndex(pa);
    const u32 = this.mem.u32;
    Atomics.store(u32, w, 0);
    u32[w + 1] = 0;
  }

  private isTable(lo: number, level: number): boolean {
    return level < LAST_LEVEL && (lo & DESC_TYPE_MASK) === DESC_TABLE;
  }

  private isLeaf(lo: number, level: number): boolean {
    return level === LAST_LEVEL ? (lo & DESC_TYPE_MASK) === DESC_PAGE : (lo & DESC_TYPE_MASK) === DESC_BLOCK;
  }

  /** The output / next-level address in a descriptor. */
  private descAddress(lo: number, hi: number): number {
    const mask = (2 ** this.pgShift - 1) >>> 0;
    let pa = (hi & HI_OA_MASK) * TWO32 + ((lo & ~mask) >>> 0);
    // With the 64KB granule, low-word bits [15:12] (below the mask) are OA[51:48].
    if (this.granule === 65536) pa += ((lo >>> OA_HI_SHIFT) & OA_HI_MASK) * TWO48;
    return pa;
  }

  private entryPa(table: number, iova: number, level: number): number {
    return table + this.index(iova, level) * DESC_BYTES;
  }

  private tableBytes(level: number): number {
    return level === this.startLevel ? this.pgdBytes : this.granule;
  }

  // -- attributes -------------------------------------------------------------------------------

  /** Leaf attribute bits for `prot` (Linux arm_lpae_prot_to_pte), without type and address. */
  protBits(prot: MapProt): [number, number] {
    let lo = AF;
    let hi = 0;
    const cache = prot.cache === true;
    if (this.stage === 1) {
      lo |= NG;
      if (prot.read === true && prot.write !== true) lo |= AP_RDONLY;
      if (prot.priv !== true) lo |= AP_UNPRIV;
      const idx = prot.mmio === true ? MAIR_ATTR.IDX_DEV : cache ? MAIR_ATTR.IDX_CACHE : MAIR_ATTR.IDX_NC;
      lo |= idx << ATTRINDX_SHIFT;
      if (prot.noexec === true) hi |= PXN_HI | UXN_HI;
    } else {
      if (prot.read === true) lo |= S2AP_READ;
      if (prot.write === true) lo |= S2AP_WRITE;
      const attr = prot.mmio === true ? S2_MEMATTR.DEVICE : cache ? S2_MEMATTR.OIWB : S2_MEMATTR.NC;
      lo |= attr << MEMATTR_SHIFT;
      if (prot.noexec === true) hi |= S2_XN_HI;
    }
    // Shareability follows `cache` alone, as in Linux (Device memory is Outer Shareable whatever SH says).
    lo |= (cache ? SH_ISH : SH_OSH) << SH_SHIFT;
    return [lo >>> 0, hi >>> 0];
  }

  // -- configuration values for the CD / STE ----------------------------------------------------

  private walkAttrs(): { ir: number; or: number; sh: number } {
    return this.coherentWalk ? { ir: WALK_WBWA, or: WALK_WBWA, sh: SH_ISH } : { ir: WALK_NC, or: WALK_NC, sh: SH_OSH };
  }

  private tgCode(): number {
    return this.granule === 4096 ? TG0_4KB : this.granule === 16384 ? TG0_16KB : TG0_64KB;
  }

  /** CD fields for this stage 1 table (§5.4). */
  get stage1Fields(): Stage1Fields {
    if (this.stage !== 1) throw new Error('stage1Fields of a stage 2 table');
    const w = this.walkAttrs();
    return {
      TTB0: this.pgd,
      T0SZ: TNSZ_BASE - this.ias,
      TG0: this.tgCode(),
      IR0: w.ir,
      OR0: w.or,
      SH0: w.sh,
      IPS: ADDRESS_SIZE_BITS.indexOf(this.oas),
      MAIR0: MAIR0_VALUE,
      MAIR1: 0,
    };
  }

  /** STE fields for this stage 2 table (§5.2). */
  get stage2Fields(): Stage2Fields {
    if (this.stage !== 2) throw new Error('stage2Fields of a stage 1 table');
    const w = this.walkAttrs();
    const sl0 = (this.granule === 4096 ? S2SL0_4K : S2SL0_16K_64K)[this.startLevel];
    if (sl0 === undefined) throw new RangeError(`no S2SL0 encoding starts a ${this.granule / 1024}KB walk at level ${this.startLevel}`);
    return {
      S2TTB: this.pgd,
      S2T0SZ: TNSZ_BASE - this.ias,
      S2SL0: sl0,
      S2IR0: w.ir,
      S2OR0: w.or,
      S2SH0: w.sh,
      S2TG: this.tgCode(),
      S2PS: ADDRESS_SIZE_BITS.indexOf(this.oas),
    };
  }

  // -- map --------------------------------------------------------------------------------------

  private checkRange(what: string, iova: number, size: number): void {
    if (!Number.isSafeInteger(iova) || iova < 0 || !Number.isSafeInteger(size) || size <= 0) {
      throw new RangeError(`${what}: iova ${iova} and size ${size} must be non-negative integers, size > 0`);
    }
    if (!isAligned(iova, this.granule) || !isAligned(size, this.granule)) {
      throw new RangeError(`${what}: iova ${hx(iova)} and size ${hx(size)} must be multiples of the ${this.granule / 1024}KB granule`);
    }
    if (iova + size > 2 ** this.ias) throw new RangeError(`${what}: [${hx(iova)}, ${hx(iova + size)}) exceeds the ${this.ias}-bit input range`);
  }

  /** Largest leaf size that fits `left` bytes with both addresses aligned (Linux iommu_pgsize). */
  private pickSize(iova: number, pa: number, left: number): number {
    for (let i = this.pageSizes.length - 1; i >= 0; i--) {
      const s = this.pageSizes[i]!;
      if (s <= left && isAligned(iova, s) && isAligned(pa, s)) return s;
    }
    return this.granule;
  }

  /** True when a table (at `level`, at `table`) holds no valid descriptor at any depth. */
  private tableEmpty(table: number, level: number): boolean {
    const n = this.tableBytes(level) / DESC_BYTES;
    for (let i = 0; i < n; i++) {
      const [lo, hi] = this.readDesc(table + i * DESC_BYTES);
      if ((lo & DESC_VALID) === 0) continue;
      if (!this.isTable(lo, level)) return false;
      if (!this.tableEmpty(this.descAddress(lo, hi), level + 1)) return false;
    }
    return true;
  }

  /** Why a leaf of `size` at `iova` cannot be installed, or undefined. */
  private conflict(iova: number, size: number): string | undefined {
    const target = this.levelFor(size);
    let table = this.pgd;
    for (let l = this.startLevel; ; l++) {
      const [lo, hi] = this.readDesc(this.entryPa(table, iova, l));
      if ((lo & DESC_VALID) === 0) return undefined;
      if (this.isLeaf(lo, l)) return `${hx(iova)} is already mapped by a level ${l} ${l === LAST_LEVEL ? 'page' : 'block'}`;
      if (l === target) {
        return this.tableEmpty(this.descAddress(lo, hi), l + 1) ? undefined : `${hx(iova)}+${hx(size)} is already mapped in part (a level ${l + 1} table holds mappings)`;
      }
      table = this.descAddress(lo, hi);
    }
  }

  /**
   * Map [iova, iova + size) to [pa, pa + size), in the largest leaves that size and alignment
   * allow. Every target slot is checked first, so a refused map changes nothing; only running
   * out of table memory can leave new (empty) tables behind.
   */
  map(iova: number, pa: number, size: number, prot: MapProt): MapResult {
    this.checkRange('map', iova, size);
    if (!Number.isSafeInteger(pa) || pa < 0 || !isAligned(pa, this.granule)) throw new RangeError(`map: pa ${hx(pa)} must be a multiple of the ${this.granule / 1024}KB granule`);
    if (pa + size > 2 ** this.oas) throw new RangeError(`map: [${hx(pa)}, ${hx(pa + size)}) exceeds the ${this.oas}-bit output range`);
    if (prot.read !== true && prot.write !== true) throw new RangeError('map: prot grants neither read nor write');
    // Plan and check.
    const plan: { iova: number; pa: number; size: number }[] = [];
    for (let off = 0; off < size; ) {
      const s = this.pickSize(iova + off, pa + off, size - off);
      const why = this.conflict(iova + off, s);
      if (why !== undefined) throw new RangeError(`map: ${why}`);
      plan.push({ iova: iova + off, pa: pa + off, size: s });
      off += s;
    }
    const [attrLo, attrHi] = this.protBits(prot);
    const res: MapResult = { mapped: 0, leaves: [], walks: [] };
    for (const p of plan) {
      this.installLeaf(p.iova, p.pa, p.size, attrLo, attrHi, res);
      res.mapped += p.size;
      const last = res.leaves.at(-1);
      if (last !== undefined && last.size === p.size && last.iova + last.size * last.count === p.iova) last.count++;
      else res.leaves.push({ iova: p.iova, size: p.size, count: 1 });
    }
    return res;
  }

  private installLeaf(iova: number, pa: number, size: number, attrLo: number, attrHi: number, res: MapResult): void {
    const target = this.levelFor(size);
    let table = this.pgd;
    for (let l = this.startLevel; l < target; l++) {
      const ep = this.entryPa(table, iova, l);
      const [lo, hi] = this.readDesc(ep);
      if ((lo & DESC_VALID) !== 0) {
        table = this.descAddress(lo, hi);
        continue;
      }
      // A new next-level table: zeroed memory, then the table descriptor (Linux installs it the
      // same way, so a walker sees either no table or an empty one).
      const next = this.alloc.alloc(this.granule, this.granule, `level ${l + 1} table`);
      this.tables.add(next);
      const [alo, ahi] = oaWords(next);
      this.writeDesc(ep, alo | DESC_TABLE, ahi);
      table = next;
    }
    const ep = this.entryPa(table, iova, target);
    const [lo, hi] = this.readDesc(ep);
    if ((lo & DESC_VALID) !== 0) {
      // An empty table where a block goes (conflict() checked it is empty): remove it first, as
      // Linux's arm_lpae_init_pte does, with a walk flush before the block replaces it.
      const sub = this.descAddress(lo, hi);
      this.clearDesc(ep);
      const g: Gather = { iova, size, granule: this.granule, leaf: false };
      res.walks.push(g);
      this.flushAndFree(g, sub, target + 1);
    }
    const [olo, ohi] = oaWords(pa);
    const type = target === LAST_LEVEL ? DESC_PAGE : DESC_BLOCK;
    this.writeDesc(ep, (olo | attrLo | type) >>> 0, (ohi | attrHi) >>> 0);
  }

  private flushAndFree(g: Gather, table: number, level: number): void {
    if (this.ops.flushWalk === undefined) return; // nothing guarantees the walk caches forgot it
    this.ops.flushWalk(g);
    this.freeTree(table, level);
  }

  private freeTree(table: number, level: number): void {
    if (level < LAST_LEVEL) {
      const n = this.tableBytes(level) / DESC_BYTES;
      for (let i = 0; i < n; i++) {
        const [lo, hi] = this.readDesc(table + i * DESC_BYTES);
        if ((lo & DESC_VALID) !== 0 && this.isTable(lo, level)) this.freeTree(this.descAddress(lo, hi), level + 1);
      }
    }
    this.tables.delete(table);
    this.alloc.free?.(table, this.tableBytes(level));
  }

  // -- unmap ------------------------------------------------------------------------------------

  /**
   * Unmap [iova, iova + size) the way Linux's iommu_unmap drives io-pgtable-arm: chunks of the
   * largest leaf size the alignment allows; a leaf of that size is cleared and gathered; a table
   * where the chunk's leaf would be is removed whole (walk flush, then its memory is reused);
   * a hole stops the unmap; so does a block larger than the chunk (Linux since v6.13 refuses to
   * split a block on unmap).
   */
  unmap(iova: number, size: number): UnmapResult {
    this.checkRange('unmap', iova, size);
    const res: UnmapResult = { unmapped: 0, gathers: [], walks: [] };
    while (res.unmapped < size) {
      const at = iova + res.unmapped;
      const s = this.pickSize(at, at, size - res.unmapped);
      const target = this.levelFor(s);
      let table = this.pgd;
      let stopped: UnmapResult['stopped'];
      for (let l = this.startLevel; ; l++) {
        const ep = this.entryPa(table, at, l);
        const [lo, hi] = this.readDesc(ep);
        if ((lo & DESC_VALID) === 0) {
          stopped = { iova: at, reason: 'not mapped' };
          break;
        }
        if (l < target) {
          if (this.isLeaf(lo, l)) {
            stopped = { iova: at, reason: 'inside a larger block' };
            break;
          }
          table = this.descAddress(lo, hi);
          continue;
        }
        this.clearDesc(ep);
        if (this.isLeaf(lo, l)) {
          const last = res.gathers.at(-1);
          if (last !== undefined && last.granule === s && last.iova + last.size === at) {
            res.gathers[res.gathers.length - 1] = { ...last, size: last.size + s };
          } else {
            res.gathers.push({ iova: at, size: s, granule: s, leaf: true });
          }
        } else {
          const g: Gather = { iova: at, size: s, granule: this.granule, leaf: false };
          res.walks.push(g);
          this.flushAndFree(g, this.descAddress(lo, hi), l + 1);
        }
        break;
      }
      if (stopped !== undefined) {
        res.stopped = stopped;
        break;
      }
      res.unmapped += s;
    }
    return res;
  }

  // -- lookups ----------------------------------------------------------------------------------

  /** The descriptors a walk of `iova` reads, start level first, ending at a leaf or an invalid one. */
  walk(iova: number): WalkStep[] {
    const out: WalkStep[] = [];
    let table = this.pgd;
    for (let l = this.startLevel; l <= LAST_LEVEL; l++) {
      const pa = this.entryPa(table, iova, l);
      const [lo, hi] = this.readDesc(pa);
      out.push({ level: l, pa, lo, hi });
      if ((lo & DESC_VALID) === 0 || this.isLeaf(lo, l) || !this.isTable(lo, l)) break;
      table = this.descAddress(lo, hi);
    }
    return out;
  }

  /** The output address `iova` maps to, or undefined (Linux arm_lpae_iova_to_phys). */
  iovaToPhys(iova: number): number | undefined {
    if (!Number.isSafeInteger(iova) || iova < 0 || iova >= 2 ** this.ias) return undefined;
    const last = this.walk(iova).at(-1);
    if (last === undefined || !this.isLeaf(last.lo, last.level)) return undefined;
    const bs = this.blockSize(last.level);
    return this.descAddress(last.lo, last.hi) + (iova % bs);
  }

  /** Every table page this page table uses, start-level table first. */
  get tablePages(): number[] {
    return [this.pgd, ...this.tables];
  }

  /** Give every table back to the allocator. Only after the SMMU can no longer walk them. */
  destroy(): void {
    for (const t of this.tables) this.alloc.free?.(t, this.granule);
    this.tables.clear();
    this.alloc.free?.(this.pgd, this.pgdBytes);
  }
}
