import { FIFO, type Board, type WindowLayout } from './board.ts';
import { DEFAULT_WAIT, notifySleepers, waitFor, WaitTimeout, type WaitPolicy } from './wait.ts';

/**
 * MMIO on shared memory.
 *
 * A register window holds the values software reads; only its device writes them. Software's
 * register writes travel over the window's MMIO FIFO, a bounded multi-producer single-consumer
 * queue that plays the interconnect: every write reaches the device once, in the order the
 * producers claimed their tickets, and the device applies its side effects (a CR0 write moves
 * CR0ACK, a PROD write rings the doorbell, a write to a read-only register changes nothing).
 * Writing register words directly would let a write to a read-only register, or to RES0 bits,
 * become visible before the device could restore the architected value, and two writes between
 * two device polls would merge into one.
 *
 * Ordering, as Device-nGnRE memory gives it on Arm: writes from one agent arrive in program order
 * (a ticket order consistent with it), and a read that follows the agent's own write sees that
 * write applied (the read waits until APPLIED passes the agent's last ticket). Reads have no side
 * effects (§6.2), so they are plain Atomics.load of the register word.
 *
 * Slot protocol (tickets are Int32 and wrap; K slots, K a power of two):
 *   slot s = t & (K-1) is free for ticket t when SEQ == t; the producer writes ADDR/LO/HI, then
 *   Atomics.store(SEQ, t + 1) publishes it; the consumer, at head h, takes it when SEQ == h + 1
 *   and frees it for ticket h + K by Atomics.store(SEQ, h + K).
 */

/** ADDR word of a slot: the byte offset in the window, plus flags. */
export const MMIO_WIDE = 0x8000_0000;
/**
 * Not a register write: a DMA master's doorbell. `off` is the DMA port number (see dma.ts). It
 * travels the same bus so that a request is ordered after the master's earlier register writes.
 */
export const MMIO_DMA = 0x4000_0000;
const OFFSET_MASK = 0x00ff_ffff;

function seqIndex(w: WindowLayout, ticket: number): number {
  return w.fifo + FIFO.SLOTS + (ticket & (w.fifoSlots - 1)) * FIFO.SLOT_WORDS;
}

/** The software side of a register window: what a CPU (driver, VMM, fuzzer) uses. */
export class MmioPort {
  readonly window: WindowLayout;
  private readonly i32: Int32Array;
  private readonly u32: Uint32Array;
  /** Word index of the window's first register. */
  private readonly regs: number;
  /** Ticket of this port's last write, or undefined before the first. */
  private last: number | undefined;
  /** Poll counts of this port's waits, for the benchmark counters. */
  polls = 0;

  constructor(board: Board, window: string, readonly policy: WaitPolicy = DEFAULT_WAIT) {
    this.window = board.window(window);
    this.i32 = board.i32;
    this.u32 = board.u32;
    this.regs = this.window.offset >>> 2;
  }

  private checkOffset(off: number, width: 4 | 8): void {
    if (!Number.isInteger(off) || off < 0 || off + width > this.window.bytes || off % width !== 0) {
      throw new RangeError(
        `MMIO ${width * 8}-bit access at offset 0x${off.toString(16)} is outside window ${this.window.name} or misaligned`,
      );
    }
  }

  /** 32-bit register write (blocks, in a worker, while the FIFO is full). */
  write32(off: number, value: number): void {
    this.checkOffset(off, 4);
    this.post(off, value >>> 0, 0);
  }

  /** 64-bit register write: one bus transaction carrying both halves. */
  write64(off: number, value: bigint | number): void {
    this.checkOffset(off, 8);
    const v = BigInt(value);
    this.post(off | MMIO_WIDE, Number(v & 0xffff_ffffn), Number((v >> 32n) & 0xffff_ffffn));
  }

  /** 64-bit write from two halves, for hot paths that avoid BigInt. */
  write64Parts(off: number, lo: number, hi: number): void {
    this.checkOffset(off, 8);
    this.post(off | MMIO_WIDE, lo >>> 0, hi >>> 0);
  }

  /**
   * Non-blocking write for the main thread: false when the FIFO has no free slot right now
   * (nothing is written then; try again after yielding to the event loop).
   */
  tryWrite32(off: number, value: number): boolean {
    this.checkOffset(off, 4);
    return this.tryPost(off, value >>> 0, 0);
  }

  tryWrite64(off: number, value: bigint | number): boolean {
    this.checkOffset(off, 8);
    const v = BigInt(value);
    return this.tryPost(off | MMIO_WIDE, Number(v & 0xffff_ffffn), Number((v >> 32n) & 0xffff_ffffn));
  }

  /** 32-bit register read, ordered after this port's own earlier writes. */
  read32(off: number): number {
    this.checkOffset(off, 4);
    this.drainOwn();
    return Atomics.load(this.u32, this.regs + (off >>> 2));
  }

  /** 64-bit register read (two 32-bit loads: 64-bit single-copy atomicity is IMPDEF, §6.2). */
  read64(off: number): bigint {
    this.checkOffset(off, 8);
    this.drainOwn();
    const i = this.regs + (off >>> 2);
    const lo = Atomics.load(this.u32, i);
    const hi = Atomics.load(this.u32, i + 1);
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  /** Read without waiting for this port's pending writes (a poll loop's hot read). */
  peek32(off: number): number {
    return Atomics.load(this.u32, this.regs + (off >>> 2));
  }

  /**
   * Wait (worker only) until the register at `off` satisfies `ready`. The device notifies a
   * register word when it changes it and someone sleeps on the window.
   */
  waitReg(off: number, ready: (v: number) => boolean, describe: () => string, policy: WaitPolicy = this.policy): number {
    this.checkOffset(off, 4);
    // The caller's policy governs the whole wait, this port's own writes included: a caller
    // that chose to sleep at once (the SMMU is not running) must not spin here first.
    this.drainOwn(policy);
    const i = this.regs + (off >>> 2);
    const u32 = this.u32;
    const n = waitFor(this.i32, i, () => ready(Atomics.load(u32, i)), policy, describe, this.window.fifo + FIFO.SLEEPERS);
    this.polls += n;
    return n;
  }

  /** Ring DMA port `port`'s doorbell (dma.ts): blocking in a worker while the FIFO is full. */
  postDma(port: number): void {
    this.post((port & OFFSET_MASK) | MMIO_DMA, 0, 0);
  }

  /** Non-blocking DMA doorbell for the main thread; false when the FIFO is full. */
  tryPostDma(port: number): boolean {
    return this.tryPost((port & OFFSET_MASK) | MMIO_DMA, 0, 0);
  }

  /** True when every write this port made has been applied by the device. */
  isApplied(): boolean {
    if (this.last === undefined) return true;
    return ((Atomics.load(this.i32, this.window.fifo + FIFO.APPLIED) - (this.last + 1)) | 0) >= 0;
  }

  /** Wait until the device has applied this port's last write (the read-after-write rule). */
  drainOwn(policy: WaitPolicy = this.policy): void {
    if (this.isApplied()) return;
    const applied = this.window.fifo + FIFO.APPLIED;
    this.polls += waitFor(
      this.i32,
      applied,
      () => this.isApplied(),
      policy,
      () => `the device to apply MMIO write ticket ${this.last} on window ${this.window.name} (applied: ${Atomics.load(this.i32, applied)}); is the device worker running?`,
      this.window.fifo + FIFO.SLEEPERS,
    );
  }

  private post(addr: number, lo: number, hi: number): void {
    // Claim a ticket only once its slot is free (tryPost), and wait for a free slot holding no
    // ticket. A ticket claimed before the wait would be a hole in the sequence if the wait
    // ended in WaitTimeout: the device takes tickets in order, so it would never take this one
    // or any later one, and every write to the window from every agent would hang behind it.
    const tail = this.window.fifo + FIFO.TAIL;
    while (!this.tryPost(addr, lo, hi)) {
      // The slot of the next ticket still holds a write from the previous lap: the FIFO is full.
      const t = Atomics.load(this.i32, tail);
      const seq = seqIndex(this.window, t);
      this.polls += waitFor(
        this.i32,
        seq,
        // Free for ticket t, or t was taken by another writer meanwhile: try again either way.
        () => Atomics.load(this.i32, seq) === t || Atomics.load(this.i32, tail) !== t,
        this.policy,
        () => `a free MMIO FIFO slot on window ${this.window.name} (ticket ${t}); is the device worker running?`,
        this.window.fifo + FIFO.PRODUCERS_WAITING,
      );
    }
  }

  private tryPost(addr: number, lo: number, hi: number): boolean {
    const tail = this.window.fifo + FIFO.TAIL;
    for (;;) {
      const t = Atomics.load(this.i32, tail);
      const seq = seqIndex(this.window, t);
      if (Atomics.load(this.i32, seq) !== t) return false;
      // Claim ticket t only if nobody else did meanwhile.
      if (Atomics.compareExchange(this.i32, tail, t, (t + 1) | 0) === t) {
        this.fill(seq, t, addr, lo, hi);
        return true;
      }
    }
  }

  private fill(seq: number, t: number, addr: number, lo: number, hi: number): void {
    this.i32[seq + 1] = addr | 0;
    this.u32[seq + 2] = lo;
    this.u32[seq + 3] = hi;
    Atomics.store(this.i32, seq, (t + 1) | 0);
    this.last = t;
    if (Atomics.load(this.i32, this.window.fifo + FIFO.CONSUMER_SLEEPING) !== 0) {
      Atomics.add(this.i32, this.window.wake, 1);
      Atomics.notify(this.i32, this.window.wake);
    }
  }
}

/** One register write as the device receives it. */
export interface MmioWrite {
  /** Byte offset in the window. */
  off: number;
  /** True for a 64-bit access. */
  wide: boolean;
  /** True for a DMA doorbell: `off` is the DMA port number. */
  dma: boolean;
  lo: number;
  hi: number;
}

/** The device side of a register window: receives writes, publishes register values. */
export class MmioTarget {
  readonly window: WindowLayout;
  readonly i32: Int32Array;
  readonly u32: Uint32Array;
  /** Word index of the window's first register. */
  readonly regs: number;
  private head = 0;

  constructor(board: Board, window: string) {
    this.window = board.window(window);
    this.i32 = board.i32;
    this.u32 = board.u32;
    this.regs = this.window.offset >>> 2;
  }

  /** Whether a write is waiting. */
  pending(): boolean {
    return Atomics.load(this.i32, seqIndex(this.window, this.head)) === ((this.head + 1) | 0);
  }

  /**
   * Take the next write into `out` and return true, or return false when none is waiting. The
   * caller applies it, then calls `done()` so that readers ordered after it may proceed.
   */
  take(out: MmioWrite): boolean {
    const h = this.head;
    const seq = seqIndex(this.window, h);
    if (Atomics.load(this.i32, seq) !== ((h + 1) | 0)) return false;
    const addr = this.u32[seq + 1]!;
    out.off = addr & OFFSET_MASK;
    out.wide = (addr & MMIO_WIDE) !== 0;
    out.dma = (addr & MMIO_DMA) !== 0;
    out.lo = this.u32[seq + 2]!;
    out.hi = this.u32[seq + 3]!;
    Atomics.store(this.i32, seq, (h + this.window.fifoSlots) | 0);
    if (Atomics.load(this.i32, this.window.fifo + FIFO.PRODUCERS_WAITING) !== 0) Atomics.notify(this.i32, seq);
    this.head = (h + 1) | 0;
    return true;
  }

  /** Publish that every write taken so far has been applied. */
  done(): void {
    const applied = this.window.fifo + FIFO.APPLIED;
    Atomics.store(this.i32, applied, this.head);
    notifySleepers(this.i32, applied, this.window.fifo + FIFO.SLEEPERS);
  }

  /**
   * Sleep until a write arrives for this window or for any of `also` (windows whose WAKE word is
   * this one's), or `ms` pass (worker only). Returns true when a write is waiting.
   */
  sleep(ms: number, also: readonly MmioTarget[] = []): boolean {
    const all = [this, ...also];
    const wake = this.window.wake;
    for (const t of all) Atomics.store(this.i32, t.window.fifo + FIFO.CONSUMER_SLEEPING, 1);
    try {
      const seen = Atomics.load(this.i32, wake);
      // A producer publishes, then reads CONSUMER_SLEEPING and bumps WAKE; checking after our
      // flag store and WAKE read means a write that raced us is seen here or wakes the wait.
      if (all.some((t) => t.pending())) return true;
      Atomics.wait(this.i32, wake, seen, ms);
    } finally {
      for (const t of all) Atomics.store(this.i32, t.window.fifo + FIFO.CONSUMER_SLEEPING, 0);
    }
    return all.some((t) => t.pending());
  }

  /** The value software reads at `off`. */
  get32(off: number): number {
    return this.u32[this.regs + (off >>> 2)]!;
  }

  /** Publish a register value and wake readers sleeping on it. */
  set32(off: number, v: number): void {
    const i = this.regs + (off >>> 2);
    Atomics.store(this.u32, i, v >>> 0);
    notifySleepers(this.i32, i, this.window.fifo + FIFO.SLEEPERS);
  }

  /** Word index of a register, for consumers that cache it. */
  index(off: number): number {
    return this.regs + (off >>> 2);
  }
}

export { WaitTimeout };
