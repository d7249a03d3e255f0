import { describe, expect, it } from 'vitest';
import { once } from 'node:events';
import { Board, planBoard, PAGE_64K, HDR, BOARD_MAGIC } from '../../src/mem/board.ts';
import { PhysMem, PhysAllocator } from '../../src/mem/phys.ts';
import { MmioPort } from '../../src/mem/mmio.ts';
import { spawnWorker } from '../../src/system/spawn.ts';

const SMMU = { name: 'smmu', bytes: 2 * PAGE_64K, base: 0x0905_0000 };

describe('board layout', () => {
  it('places windows and RAM 64 KiB aligned, after the control block and FIFOs', () => {
    const l = planBoard({ windows: [SMMU], ramBytes: 1 << 20 });
    expect(l.windows[0]!.offset % PAGE_64K).toBe(0);
    expect(l.windows[0]!.offset).toBe(PAGE_64K); // 4 KiB control + one 4 KiB FIFO fit below 64 KiB
    expect(l.ram).toEqual({ base: 0x4000_0000, bytes: 1 << 20, offset: 3 * PAGE_64K });
    expect(l.totalBytes).toBe(3 * PAGE_64K + (1 << 20));
  });

  it('rejects overlapping physical ranges and bad sizes with a clear message', () => {
    expect(() => planBoard({ windows: [{ ...SMMU, base: 0x4000_0000 }] })).toThrow(/overlap/);
    expect(() => planBoard({ windows: [SMMU], ramBytes: 1000 })).toThrow(/multiple of 64 KiB/);
    expect(() => planBoard({ windows: [{ ...SMMU, bytes: 4096 }] })).toThrow(/not a multiple of 64 KiB/);
    expect(() => planBoard({ windows: [SMMU], ramBase: 0x1234 })).toThrow(/64 KiB-aligned/);
    expect(() => planBoard({ windows: [{ ...SMMU, fifoSlots: 3 }] })).toThrow(/power of two/);
  });

  it('attaches only to a board of this version', () => {
    const b = Board.create({ windows: [SMMU], ramBytes: PAGE_64K });
    expect(b.i32[HDR.MAGIC]).toBe(BOARD_MAGIC);
    expect(() => Board.attach(new SharedArrayBuffer(b.layout.totalBytes), b.layout)).toThrow(/not an smmu-sim board/);
  });
});

describe('physical memory', () => {
  const b = Board.create({ windows: [SMMU], ramBytes: 2 * PAGE_64K });
  const m = new PhysMem(b);

  it('stores little-endian words at physical addresses', () => {
    m.write64(0x4000_0010, 0x1122_3344_5566_7788n);
    expect([...m.readBytes(0x4000_0010, 8)]).toEqual([0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]);
    expect(m.read32(0x4000_0014)).toBe(0x1122_3344);
  });

  it('refuses accesses outside RAM, naming the address', () => {
    expect(() => m.read32(0x3fff_fffc)).toThrow(/0x3ffffffc\+4 is outside RAM/);
    expect(() => m.read32(0x4002_0000)).toThrow(/outside RAM/);
    expect(() => m.read32(0x4000_0002)).toThrow(/not 4-byte aligned/);
    expect(m.storeNotify32(0x4002_0000, 1)).toBe(false);
    expect(m.storeNotify32(0x4000_0100, 7)).toBe(true);
    expect(m.read32(0x4000_0100)).toBe(7);
  });

  it('allocates aligned, zeroed blocks and says when RAM runs out', () => {
    const a = new PhysAllocator(m);
    m.fill(0x4000_1000, 16, 0xff);
    const x = a.alloc(16, 16);
    const y = a.alloc(4096, 4096, 'CMDQ');
    expect(x).toBe(0x4000_0000);
    expect(y).toBe(0x4000_1000);
    expect(m.read32(y)).toBe(0);
    expect(() => a.alloc(PAGE_64K * 2, 8, 'stream table')).toThrow(/stream table: 131072 bytes/);
  });
});

describe('MMIO FIFO', () => {
  async function run(producers: number, count: number, fifoSlots: number, consumerDelayEvery: number) {
    const board = Board.create({ windows: [{ ...SMMU, fifoSlots }], ramBytes: PAGE_64K });
    const common = { sab: board.sab, layout: board.layout, count, producers, consumerDelayEvery };
    const consumer = spawnWorker(import.meta.url, '../fixtures/mmio-worker', { workerData: { ...common, role: 'consumer', id: 0 } });
    const ps = Array.from({ length: producers }, (_, id) =>
      spawnWorker(import.meta.url, '../fixtures/mmio-worker', { workerData: { ...common, role: 'producer', id } }),
    );
    const results = await Promise.all([consumer, ...ps].map(async (w) => {
      const errored = once(w, 'error').then(([e]) => { throw e; });
      const [msg] = await Promise.race([once(w, 'message'), errored]);
      await once(w, 'exit');
      return msg;
    }));
    expect(results[0]).toEqual({ total: producers * (count + 1) });
    const port = new MmioPort(board, 'smmu');
    for (let id = 0; id < producers; id++) {
      expect(port.peek32(4 * id)).toBe(((id << 24) | (count - 1)) >>> 0);
      expect(port.read64(0x100 + 8 * id)).toBe((BigInt(id) << 32n) | 0xabcdn);
    }
  }

  it('delivers every write once, in each producer\'s order, with 3 producers on 2 cores', async () => {
    await run(3, 3000, 256, 0);
  });

  it('makes producers wait while the FIFO is full, losing nothing', async () => {
    await run(2, 400, 2, 50);
  });

  it('refuses offsets outside the window', () => {
    const board = Board.create({ windows: [SMMU], ramBytes: PAGE_64K });
    const port = new MmioPort(board, 'smmu');
    expect(() => port.write32(2 * PAGE_64K, 0)).toThrow(/outside window smmu/);
    expect(() => port.write64(4, 0n)).toThrow(/misaligned/);
  });
});
