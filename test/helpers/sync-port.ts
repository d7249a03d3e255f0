/**
 * Single-threaded rigs: a RegisterPort whose writes go over the real MMIO FIFO and are then
 * applied at once by running `pump` (the devices' service loops, and whatever else the other
 * "CPUs" of the rig do), and whose waits pump instead of sleeping. Every agent of a rig runs in
 * this thread, in a deterministic order, through the same FIFOs and register windows as the
 * workers would use.
 */
import type { Board } from '../../src/mem/board.ts';
import { MmioPort } from '../../src/mem/mmio.ts';
import { WaitTimeout, type WaitPolicy } from '../../src/mem/wait.ts';
import type { RegisterPort } from '../../src/driver/port.ts';

export class SyncPort implements RegisterPort {
  readonly port: MmioPort;

  constructor(board: Board, window: string, private readonly pump: () => void, readonly policy: WaitPolicy) {
    this.port = new MmioPort(board, window, policy);
  }

  write32(off: number, value: number): void {
    this.port.write32(off, value);
    this.pump();
  }

  write64Parts(off: number, lo: number, hi: number): void {
    this.port.write64Parts(off, lo, hi);
    this.pump();
  }

  read32(off: number): number {
    this.drainOwn();
    return this.port.peek32(off);
  }

  peek32(off: number): number {
    return this.port.peek32(off);
  }

  waitReg(off: number, ready: (v: number) => boolean, describe: () => string, policy: WaitPolicy = this.policy): number {
    const t0 = performance.now();
    let polls = 0;
    for (;;) {
      if (ready(this.port.peek32(off))) return polls;
      polls++;
      this.pump();
      if (performance.now() - t0 > policy.timeoutMs) throw new WaitTimeout(describe(), policy.timeoutMs);
    }
  }

  drainOwn(): void {
    const t0 = performance.now();
    while (!this.port.isApplied()) {
      this.pump();
      if (performance.now() - t0 > this.policy.timeoutMs) throw new WaitTimeout(`window ${this.port.window.name} to apply this port's writes`, this.policy.timeoutMs);
    }
  }
}
