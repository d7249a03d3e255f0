/**
 * The MMIO FIFO (src/mem/mmio.ts), one thread, the test playing the device with an MmioTarget:
 * a register write that gives up on a full FIFO must leave no hole in the ticket sequence, since
 * the device takes tickets strictly in order and a ticket that is never published would stop
 * every later write to the window, from every agent, for good.
 */
import { describe, expect, it } from 'vitest';
import { Board, FIFO, PAGE_64K } from '../../src/mem/board.ts';
import { MmioPort, MmioTarget, type MmioWrite } from '../../src/mem/mmio.ts';
import { WaitTimeout, type WaitPolicy } from '../../src/mem/wait.ts';

const SLOTS = 4;
const POLICY: WaitPolicy = { mode: 'hybrid', spin: 10, timeoutMs: 5 };

function rig() {
  const board = Board.create({ windows: [{ name: 'smmu', bytes: PAGE_64K, base: 0x0905_0000, fifoSlots: SLOTS }], ramBytes: PAGE_64K });
  const port = new MmioPort(board, 'smmu', POLICY);
  const dev = new MmioTarget(board, 'smmu');
  const tail = (): number => Atomics.load(board.i32, board.window('smmu').fifo + FIFO.TAIL);
  /** Everything the device can take now, as [offset, value]. */
  const drain = (): [number, number][] => {
    const out: [number, number][] = [];
    const w: MmioWrite = { off: 0, wide: false, dma: false, lo: 0, hi: 0 };
    while (dev.take(w)) out.push([w.off, w.lo]);
    dev.done();
    return out;
  };
  return { port, dev, tail, drain };
}

describe('MMIO FIFO', () => {
  it('a write that times out on a full FIFO claims no ticket, and the bus goes on', () => {
    const r = rig();
    for (let k = 0; k < SLOTS; k++) r.port.write32(0x100 + 4 * k, k);
    expect(r.tail()).toBe(SLOTS);
    // The device is not taking writes: the fifth cannot get a slot within the policy's deadline.
    expect(() => r.port.write32(0x200, 0xdead)).toThrow(WaitTimeout);
    expect(r.tail()).toBe(SLOTS);
    expect(r.drain()).toEqual([[0x100, 0], [0x104, 1], [0x108, 2], [0x10c, 3]]);
    // The next write is ticket 4 and the device receives it (a claimed, unpublished ticket 4
    // would have left it stuck before this write forever).
    r.port.write32(0x300, 0xbeef);
    expect(r.tail()).toBe(SLOTS + 1);
    expect(r.drain()).toEqual([[0x300, 0xbeef]]);
    expect(r.port.isApplied()).toBe(true);
  });

  it('once the device frees a slot of a full FIFO, the next write takes it, in order', () => {
    const r = rig();
    for (let k = 0; k < SLOTS; k++) r.port.write32(0x100 + 4 * k, k);
    const w: MmioWrite = { off: 0, wide: false, dma: false, lo: 0, hi: 0 };
    expect(r.dev.take(w)).toBe(true);
    expect(w.off).toBe(0x100);
    r.port.write32(0x200, 7);
    expect(r.drain()).toEqual([[0x104, 1], [0x108, 2], [0x10c, 3], [0x200, 7]]);
  });
});
