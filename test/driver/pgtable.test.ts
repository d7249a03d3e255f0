/**
 * The guest driver's VMSAv8-64 page tables (src/driver/pgtable.ts).
 *
 * Every descriptor word below is derived by hand from the Arm ARM (DDI 0487) chapter D8
 * VMSAv8-64 descriptor formats:
 *   [1:0] 0b11 table / page, 0b01 block; stage 1: AttrIndx [4:2], AP[1] (EL0) [6], AP[2] (RO) [7],
 *   SH [9:8], AF [10], nG [11], PXN [53], UXN [54]; stage 2: MemAttr [5:2], S2AP [7:6], SH [9:8],
 *   AF [10], XN [54]; output address [47:shift], with the 64KB granule OA[51:48] in [15:12].
 * and from Linux io-pgtable-arm's choices (stage 1: nG, AP[1] unless privileged, MAIR index 1
 * cacheable / 0 non-cacheable / 2 device; SH ISH when cacheable else OSH; AF always).
 * Index arithmetic: level l of granule 2^g indexes VA bits [g + (g-3)(3-l) + n - 1 : g + (g-3)(3-l)].
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Board, PAGE_64K } from '../../src/mem/board.ts';
import { PhysAllocator, PhysMem } from '../../src/mem/phys.ts';
import { IoPgtable, MAIR0_VALUE, TablePool, type Gather, type Granule, type IoPgtableConfig } from '../../src/driver/pgtable.ts';

const RAM = 0x4000_0000;
const MIB = 1 << 20;
const KIB = 1024;

function setup(cfg: IoPgtableConfig, ramBytes = 4 * MIB) {
  const board = Board.create({ windows: [{ name: 'smmu', bytes: 2 * PAGE_64K, base: 0x0905_0000 }], ramBytes });
  const mem = new PhysMem(board);
  const pool = new TablePool(mem, new PhysAllocator(mem, RAM, RAM + ramBytes));
  const flushes: Gather[] = [];
  const pt = new IoPgtable(mem, pool, cfg, { flushWalk: (g) => flushes.push(g) });
  /** The descriptor at `pa` as [lo, hi]. */
  const desc = (pa: number): [number, number] => [mem.read32(pa), mem.read32(pa + 4)];
  return { board, mem, pool, pt, flushes, desc };
}

const RW_CACHE = { read: true, write: true, cache: true } as const;

describe('layout: levels, start level and table sizes (io-pgtable-arm rules)', () => {
  it.each([
    // [stage, granule, ias, levels, startLevel, pgdBytes]
    [1, 4096, 48, 4, 0, 4096],
    [1, 4096, 39, 3, 1, 4096],
    [1, 4096, 32, 3, 1, 32], // 2 bits at level 1: 4 entries
    [1, 16384, 48, 4, 0, 16], // 34 VA bits over 11-bit levels: 1 bit at level 0
    [1, 16384, 47, 3, 1, 16384],
    [1, 65536, 48, 3, 1, 512], // 32 bits: 6 at level 1
    [1, 65536, 52, 3, 1, 8192],
    // Stage 2: a level 0 table of at most 16 entries becomes concatenated level 1 tables.
    [2, 4096, 40, 3, 1, 8192], // 2 level-0 entries → 2 concatenated 4KB tables
    [2, 4096, 42, 3, 1, 32768], // 8 → 8 tables
    [2, 4096, 44, 4, 0, 256], // 32 level-0 entries: too many to concatenate
    [2, 4096, 48, 4, 0, 4096],
    [2, 16384, 48, 3, 1, 32768], // 2 level-0 entries → 2 concatenated 16KB tables
    [2, 65536, 48, 3, 1, 512],
    [2, 65536, 42, 2, 2, 65536],
  ] as const)('stage %i, %i-byte granule, %i-bit input: %i levels from level %i, %i-byte start table', (stage, granule, ias, levels, start, bytes) => {
    const { pt } = setup({ stage, granule, ias, oas: 48 });
    expect([pt.levels, pt.startLevel, pt.pgdBytes]).toEqual([levels, start, bytes]);
  });

  it('offers Linux leaf sizes per granule: 4K/2M/1G, 16K/32M, 64K/512M', () => {
    expect(setup({ stage: 1, granule: 4096, ias: 48, oas: 48 }).pt.pageSizes).toEqual([4 * KIB, 2 * MIB, 1024 * MIB]);
    expect(setup({ stage: 1, granule: 16384, ias: 48, oas: 48 }).pt.pageSizes).toEqual([16 * KIB, 32 * MIB]);
    expect(setup({ stage: 1, granule: 65536, ias: 48, oas: 48 }).pt.pageSizes).toEqual([64 * KIB, 512 * MIB]);
    // A 2-level 64KB stage 2 table (start level 2) has no level 1 to hold larger blocks anyway.
    expect(setup({ stage: 2, granule: 65536, ias: 42, oas: 48 }).pt.pageSizes).toEqual([64 * KIB, 512 * MIB]);
  });

  it('rejects sizes the tables cannot express', () => {
    expect(() => setup({ stage: 1, granule: 4096, ias: 52, oas: 48 })).toThrow(/input size 52 bits is outside 25..48 for the 4KB granule/);
    expect(() => setup({ stage: 1, granule: 4096, ias: 48, oas: 52 })).toThrow(/output size 52 bits is not one of 32, 36, 40, 42, 44, 48 for the 4KB granule/);
    expect(() => setup({ stage: 1, granule: 8192 as Granule, ias: 48, oas: 48 })).toThrow(/granule 8192/);
  });
});

describe('configuration values for the CD and STE (§5.4, §5.2)', () => {
  it('stage 1: TTB0 = start table, T0SZ = 64 - ias, TG0 by granule, WB/ISH walks, IPS, Linux MAIR', () => {
    const { pt } = setup({ stage: 1, granule: 16384, ias: 47, oas: 40 });
    // TG0 (§5.4): 0b00 4KB, 0b01 64KB, 0b10 16KB. IPS: 40 bits = 0b010.
    // MAIR (io-pgtable-arm): Attr0 0x44 NC, Attr1 0xff WB RWA, Attr2 0x04 Device-nGnRE, Attr3 0xf4.
    expect(pt.stage1Fields).toEqual({ TTB0: RAM, T0SZ: 17, TG0: 0b10, IR0: 1, OR0: 1, SH0: 3, IPS: 2, MAIR0: 0xf404ff44, MAIR1: 0 });
    expect(MAIR0_VALUE).toBe(0xf404ff44);
  });

  it('non-coherent walks: Non-cacheable, Outer Shareable', () => {
    const { pt } = setup({ stage: 1, granule: 65536, ias: 48, oas: 48, coherentWalk: false });
    expect(pt.stage1Fields).toMatchObject({ TG0: 0b01, IR0: 0, OR0: 0, SH0: 2, IPS: 5 });
  });

  it.each([
    // VTCR_EL2.SL0 (Arm ARM D8; STE.S2SL0 §5.2): 4KB 0b00 level 2, 0b01 level 1, 0b10 level 0;
    // 16KB/64KB 0b00 level 3, 0b01 level 2, 0b10 level 1.
    [4096, 40, 0b01, 24, 0b00],
    [4096, 48, 0b10, 16, 0b00],
    [16384, 48, 0b10, 16, 0b10],
    [65536, 48, 0b10, 16, 0b01],
    [65536, 42, 0b01, 22, 0b01],
  ] as const)('stage 2, granule %i, %i-bit IPA: S2SL0 %i, S2T0SZ %i, S2TG %i', (granule, ias, sl0, t0sz, tg) => {
    const { pt } = setup({ stage: 2, granule, ias, oas: 44 });
    expect(pt.stage2Fields).toEqual({ S2TTB: pt.pgd, S2T0SZ: t0sz, S2SL0: sl0, S2IR0: 1, S2OR0: 1, S2SH0: 3, S2TG: tg, S2PS: 0b100 });
  });

  it('a stage 1 table has no stage 2 fields and the reverse', () => {
    expect(() => setup({ stage: 1, granule: 4096, ias: 48, oas: 48 }).pt.stage2Fields).toThrow(/stage2Fields of a stage 1 table/);
    expect(() => setup({ stage: 2, granule: 4096, ias: 48, oas: 48 }).pt.stage1Fields).toThrow(/stage1Fields of a stage 2 table/);
  });
});

describe('stage 1 descriptors, 4KB granule, 48-bit VA (levels 0-3)', () => {
  it('a 4KB page: three table descriptors and a page descriptor with Linux attributes', () => {
    const { pt, desc } = setup({ stage: 1, granule: 4096, ias: 48, oas: 48 });
    const r = pt.map(0x1000, 0x4010_0000, 0x1000, RW_CACHE);
    expect(r).toEqual({ mapped: 0x1000, leaves: [{ iova: 0x1000, size: 0x1000, count: 1 }], walks: [] });
    // Start table at RAM; level 1, 2, 3 tables follow, 4KB each.
    expect(desc(RAM)).toEqual([0x4000_1003, 0]); // table → 0x4000_1000
    expect(desc(0x4000_1000)).toEqual([0x4000_2003, 0]);
    expect(desc(0x4000_2000)).toEqual([0x4000_3003, 0]);
    // Level 3 index = VA[20:12] = 1. 0x4010_0000 | nG 0x800 | AF 0x400 | SH ISH 0x300 | AP[1] 0x40 |
    // AttrIndx 1 (0x4) | page 0b11.
    expect(desc(0x4000_3008)).toEqual([0x4010_0f47, 0]);
    expect(pt.iovaToPhys(0x1abc)).toBe(0x4010_0abc);
    expect(pt.iovaToPhys(0x2000)).toBeUndefined();
  });

  it('read-only, execute-never, non-cacheable: AP[2], PXN|UXN, AttrIndx 0, SH OSH', () => {
    const { pt, desc } = setup({ stage: 1, granule: 4096, ias: 48, oas: 48 });
    pt.map(0x5000, 0x8000_0000, 0x1000, { read: true, noexec: true });
    // 0x8000_0000 | nG | AF | SH OSH 0x200 | AP[2] 0x80 | AP[1] 0x40 | page; hi: bits 53, 54 → 0x0060_0000.
    expect(desc(0x4000_3000 + 5 * 8)).toEqual([0x8000_0ec3, 0x0060_0000]);
  });

  it('privileged device memory: AP[1] clear, AttrIndx 2', () => {
    const { pt, desc } = setup({ stage: 1, granule: 4096, ias: 48, oas: 48 });
    pt.map(0x7000, 0x0900_0000, 0x1000, { read: true, write: true, mmio: true, priv: true });
    // nG | AF | SH OSH | AttrIndx 2 (0x8) | page.
    expect(desc(0x4000_3000 + 7 * 8)).toEqual([0x0900_0e0b, 0]);
  });

  it('a 2MB block at level 2 and a 1GB block at level 1', () => {
    const { pt, desc } = setup({ stage: 1, granule: 4096, ias: 48, oas: 48 });
    pt.map(0x20_0000, 0x4020_0000, 2 * MIB, RW_CACHE);
    pt.map(0x4000_0000, 0x8000_0000, 1024 * MIB, RW_CACHE);
    // Level 2 index = VA[29:21] = 1 in the level 2 table at 0x4000_2000: block 0b01.
    expect(desc(0x4000_2008)).toEqual([0x4020_0f45, 0]);
    // Level 1 index = VA[38:30] = 1 in the level 1 table at 0x4000_1000.
    expect(desc(0x4000_1008)).toEqual([0x8000_0f45, 0]);
    expect(pt.iovaToPhys(0x4123_4567)).toBe(0x8123_4567);
    expect(pt.walk(0x4123_4567).map((s) => s.level)).toEqual([0, 1]);
  });

  it('a high VA: level 0 index VA[47:39]', () => {
    const { pt, desc } = setup({ stage: 1, granule: 4096, ias: 48, oas: 48 });
    pt.map(0xffff_ffff_f000, 0x4000_0000, 0x1000, RW_CACHE);
    expect(desc(RAM + 511 * 8)).toEqual([0x4000_1003, 0]);
    expect(desc(0x4000_1000 + 511 * 8)).toEqual([0x4000_2003, 0]);
    expect(desc(0x4000_2000 + 511 * 8)).toEqual([0x4000_3003, 0]);
    expect(desc(0x4000_3000 + 511 * 8)).toEqual([0x4000_0f47, 0]);
  });

  it('chooses blocks where size and alignment allow, pages elsewhere (iommu_pgsize)', () => {
    const { pt } = setup({ stage: 1, granule: 4096, ias: 48, oas: 48 });
    expect(pt.map(0x1f_f000, 0x401f_f000, 2 * MIB + 0x2000, RW_CACHE).leaves).toEqual([
      { iova: 0x1f_f000, size: 0x1000, count: 1 },
      { iova: 0x20_0000, size: 2 * MIB, count: 1 },
      { iova: 0x40_0000, size: 0x1000, count: 1 },
    ]);
    // VA 2MB-aligned but PA not: pages only.
    expect(pt.map(0x80_0000, 0x5030_1000, 2 * MIB, RW_CACHE).leaves).toEqual([{ iova: 0x80_0000, size: 0x1000, count: 512 }]);
  });

  it('refuses a map that overlaps a mapping, changing nothing', () => {
    const { pt, mem } = setup({ stage: 1, granule: 4096, ias: 48, oas: 48 });
    pt.map(0x3000, 0x4010_0000, 0x1000, RW_CACHE);
    const before = mem.readBytes(RAM, 0x5000);
    expect(() => pt.map(0x2000, 0x5000_0000, 0x3000, RW_CACHE)).toThrow('map: 0x3000 is already mapped by a level 3 page');
    expect(() => pt.map(0, 0x5000_0000, 2 * MIB, RW_CACHE)).toThrow('map: 0x0+0x200000 is already mapped in part (a level 3 table holds mappings)');
    expect(mem.readBytes(RAM, 0x5000)).toEqual(before);
  });

  it('checks alignment, ranges and access', () => {
    const { pt } = setup({ stage: 1, granule: 4096, ias: 39, oas: 40 });
    expect(() => pt.map(0x800, 0, 0x1000, RW_CACHE)).toThrow(/multiples of the 4KB granule/);
    expect(() => pt.map(2 ** 39 - 0x1000, 0, 0x2000, RW_CACHE)).toThrow(/exceeds the 39-bit input range/);
    expect(() => pt.map(0, 2 ** 40 - 0x1000, 0x2000, RW_CACHE)).toThrow(/exceeds the 40-bit output range/);
    expect(() => pt.map(0, 0, 0x1000, { cache: true })).toThrow('map: prot grants neither read nor write');
  });
});

describe('stage 1 descriptors, 16KB and 64KB granules', () => {
  it('16KB: a 16KB page at level 3 and a 32MB block at level 2', () => {
    const { pt, desc } = setup({ stage: 1, granule: 16384, ias: 48, oas: 48 });
    pt.map(0x4000, 0x4100_0000, 0x4000, RW_CACHE);
    pt.map(0x200_0000, 0x4200_0000, 32 * MIB, RW_CACHE);
    // Start table: 2 entries (16 bytes, 64-byte aligned) at RAM; 16KB tables at 0x4000_4000,
    // 0x4000_8000, 0x4000_c000 (each aligned to 16KB).
    expect(desc(RAM)).toEqual([0x4000_4003, 0]);
    expect(desc(0x4000_4000)).toEqual([0x4000_8003, 0]);
    expect(desc(0x4000_8000)).toEqual([0x4000_c003, 0]);
    // Level 3 index = VA[24:14] = 1; level 2 index = VA[35:25] = 1.
    expect(desc(0x4000_c008)).toEqual([0x4100_0f47, 0]);
    expect(desc(0x4000_8008)).toEqual([0x4200_0f45, 0]);
    expect(pt.iovaToPhys(0x203_0000)).toBe(0x4203_0000);
  });

  it('64KB: a 64KB page; a 52-bit output address puts OA[51:48] in bits [15:12]', () => {
    const { pt, desc } = setup({ stage: 1, granule: 65536, ias: 48, oas: 52 });
    const pa = 0xf_1234_5678_0000;
    pt.map(0x1_0000, pa, 0x1_0000, RW_CACHE);
    // Start table 512 bytes at RAM; level 2 and 3 tables at 0x4001_0000, 0x4002_0000.
    expect(desc(RAM)).toEqual([0x4001_0003, 0]);
    expect(desc(0x4001_0000)).toEqual([0x4002_0003, 0]);
    // lo: OA[31:16] 0x5678 << 16 | OA[51:48] 0xf << 12 | 0xf47; hi: OA[47:32] = 0x1234.
    expect(desc(0x4002_0008)).toEqual([0x5678_ff47, 0x1234]);
    expect(pt.iovaToPhys(0x1_0abc)).toBe(pa + 0xabc);
  });

  it('64KB: a 512MB block at level 2', () => {
    const { pt, desc } = setup({ stage: 1, granule: 65536, ias: 48, oas: 48 });
    pt.map(0x2000_0000, 0x6000_0000, 512 * MIB, RW_CACHE);
    // Level 2 index = VA[41:29] = 1.
    expect(desc(0x4001_0008)).toEqual([0x6000_0f45, 0]);
  });
});

describe('stage 2 descriptors', () => {
  it('4KB, 40-bit IPA: concatenated level 1 tables; a 1GB block at level 1 index 256', () => {
    const { pt, desc } = setup({ stage: 2, granule: 4096, ias: 40, oas: 48 });
    expect(pt.pgd).toBe(RAM); // 8KB, aligned to 8KB
    pt.map(0x40_0000_0000, 0x4000_0000, 1024 * MIB, RW_CACHE);
    // IPA[39:30] = 256 indexes the 1024-entry concatenated level 1 table.
    // AF 0x400 | SH ISH 0x300 | S2AP RW 0xc0 | MemAttr 0b1111 << 2 (0x3c) | block.
    expect(desc(RAM + 256 * 8)).toEqual([0x4000_07fd, 0]);
    expect(pt.iovaToPhys(0x40_0000_1234)).toBe(0x4000_1234);
  });

  it('read-only, execute-never, non-cacheable and device pages', () => {
    const { pt, desc } = setup({ stage: 2, granule: 4096, ias: 40, oas: 48 });
    pt.map(0x1000, 0x5000_0000, 0x1000, { read: true, noexec: true });
    pt.map(0x2000, 0x0900_0000, 0x1000, { write: true, mmio: true });
    // Level 2 table at 0x4000_2000, level 3 at 0x4000_3000.
    expect(desc(RAM)).toEqual([0x4000_2003, 0]);
    // AF | SH OSH 0x200 | S2AP read 0x40 | MemAttr 0b0101 (0x14) | page; XN[1:0] = 0b10: bit 54.
    expect(desc(0x4000_3008)).toEqual([0x5000_0657, 0x0040_0000]);
    // AF | SH OSH | S2AP write 0x80 | MemAttr 0b0001 (0x4) | page.
    expect(desc(0x4000_3010)).toEqual([0x0900_0687, 0]);
  });

  it('16KB, 48-bit IPA: two concatenated level 1 tables, index IPA[47:36]', () => {
    const { pt, desc } = setup({ stage: 2, granule: 16384, ias: 48, oas: 48 });
    pt.map(0x8000_0000_0000, 0x4200_0000, 32 * MIB, RW_CACHE);
    // IPA bit 47 set: index 2048 of 4096 (the first entry of the second table); the 32KB start
    // table ends at 0x4000_8000, where the level 2 table goes; its index IPA[35:25] = 0 holds the block.
    expect(desc(RAM + 2048 * 8)).toEqual([0x4000_8003, 0]);
    expect(desc(0x4000_8000)).toEqual([0x4200_07fd, 0]);
  });
});

describe('unmap: gathers, walk flushes, holes (iommu_unmap over io-pgtable-arm)', () => {
  it('contiguous pages gather into one range of one leaf size', () => {
    const { pt, desc } = setup({ stage: 1, granule: 4096, ias: 48, oas: 48 });
    pt.map(0x1000, 0x4010_0000, 0x4000, RW_CACHE);
    const r = pt.unmap(0x1000, 0x3000);
    expect(r).toEqual({ unmapped: 0x3000, gathers: [{ iova: 0x1000, size: 0x3000, granule: 0x1000, leaf: true }], walks: [] });
    expect(desc(0x4000_3008)).toEqual([0, 0]);
    expect(desc(0x4000_3020)).toEqual([0x4010_3f47, 0]);
    expect(pt.iovaToPhys(0x1000)).toBeUndefined();
    expect(pt.iovaToPhys(0x4000)).toBe(0x4010_3000);
  });

  it('a change of leaf size starts a new gather', () => {
    const { pt } = setup({ stage: 1, granule: 4096, ias: 48, oas: 48 });
    pt.map(0x1f_f000, 0x401f_f000, 2 * MIB + 0x2000, RW_CACHE);
    expect(pt.unmap(0x1f_f000, 2 * MIB + 0x2000).gathers).toEqual([
      { iova: 0x1f_f000, size: 0x1000, granule: 0x1000, leaf: true },
      { iova: 0x20_0000, size: 2 * MIB, granule: 2 * MIB, leaf: true },
      { iova: 0x40_0000, size: 0x1000, granule: 0x1000, leaf: true },
    ]);
  });

  it('a 2MB chunk over a table of pages removes the table: a non-leaf walk flush, then reuse', () => {
    const { pt, desc, flushes, pool } = setup({ stage: 1, granule: 4096, ias: 48, oas: 48 });
    pt.map(0x20_0000, 0x5030_1000, 2 * MIB, RW_CACHE); // 512 pages in the level 3 table at 0x4000_3000
    const r = pt.unmap(0x20_0000, 2 * MIB);
    const walk = { iova: 0x20_0000, size: 2 * MIB, granule: 0x1000, leaf: false };
    expect(r).toEqual({ unmapped: 2 * MIB, gathers: [], walks: [walk] });
    expect(flushes).toEqual([walk]);
    expect(desc(0x4000_2008)).toEqual([0, 0]);
    expect(pool.pooled).toEqual({ 4096: 1 });
    // The next table needed is the freed one, zeroed.
    pt.map(0x4000_0000 + 0x1000, 0x7000_0000, 0x1000, RW_CACHE);
    expect(desc(0x4000_1008)).toEqual([0x4000_3003, 0]); // new level 2 table = the reused page
    expect(desc(0x4000_3000)).toEqual([0x4000_4003, 0]); // its entry 0 → a new level 3 table
    expect(desc(0x4000_3008)).toEqual([0, 0]); // a page descriptor before the reuse: zeroed
  });

  it('a block over an empty table: the table goes first with a walk flush (arm_lpae_init_pte)', () => {
    const { pt, desc, flushes } = setup({ stage: 1, granule: 4096, ias: 48, oas: 48 });
    pt.map(0x20_0000, 0x4000_0000, 0x1000, RW_CACHE);
    pt.unmap(0x20_0000, 0x1000);
    const r = pt.map(0x20_0000, 0x4020_0000, 2 * MIB, RW_CACHE);
    expect(r.walks).toEqual([{ iova: 0x20_0000, size: 2 * MIB, granule: 0x1000, leaf: false }]);
    expect(flushes).toEqual(r.walks);
    expect(desc(0x4000_2008)).toEqual([0x4020_0f45, 0]);
  });

  it('stops at a hole, and inside a larger block (Linux no longer splits blocks on unmap)', () => {
    const { pt } = setup({ stage: 1, granule: 4096, ias: 48, oas: 48 });
    pt.map(0x1000, 0x4010_0000, 0x1000, RW_CACHE);
    pt.map(0x20_0000, 0x4020_0000, 2 * MIB, RW_CACHE);
    expect(pt.unmap(0x1000, 0x2000)).toEqual({
      unmapped: 0x1000,
      gathers: [{ iova: 0x1000, size: 0x1000, granule: 0x1000, leaf: true }],
      walks: [],
      stopped: { iova: 0x2000, reason: 'not mapped' },
    });
    expect(pt.unmap(0x20_1000, 0x1000)).toEqual({ unmapped: 0, gathers: [], walks: [], stopped: { iova: 0x20_1000, reason: 'inside a larger block' } });
    expect(pt.iovaToPhys(0x20_1000)).toBe(0x4020_1000);
  });

  it('without a flushWalk, removed tables are never reused', () => {
    const board = Board.create({ windows: [{ name: 'smmu', bytes: 2 * PAGE_64K, base: 0x0905_0000 }], ramBytes: MIB });
    const mem = new PhysMem(board);
    const pool = new TablePool(mem, new PhysAllocator(mem, RAM, RAM + MIB));
    const pt = new IoPgtable(mem, pool, { stage: 1, granule: 4096, ias: 48, oas: 48 });
    pt.map(0x20_0000, 0x5030_1000, 0x2000, RW_CACHE);
    expect(pt.unmap(0x20_0000, 2 * MIB).walks).toHaveLength(1);
    expect(pool.pooled).toEqual({});
  });

  it('map then unmap of random page runs leaves every table empty and translates in between', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1023 }), fc.integer({ min: 1, max: 700 }), fc.integer({ min: 0, max: 255 }), (page, pages, paPage) => {
        const { pt } = setup({ stage: 2, granule: 4096, ias: 40, oas: 48 }, 2 * MIB);
        const iova = page * 0x1000;
        const pa = 0x8000_0000 + paPage * 0x1000;
        pt.map(iova, pa, pages * 0x1000, RW_CACHE);
        for (const off of [0, (pages - 1) * 0x1000]) expect(pt.iovaToPhys(iova + off + 8)).toBe(pa + off + 8);
        const r = pt.unmap(iova, pages * 0x1000);
        expect(r.unmapped).toBe(pages * 0x1000);
        expect(r.gathers.reduce((s, g) => s + g.size, 0) + r.walks.reduce((s, g) => s + g.size, 0)).toBe(pages * 0x1000);
        expect(pt.iovaToPhys(iova)).toBeUndefined();
      }),
      { numRuns: 40 },
    );
  });
});
