import * as ring from '../ring/index.ts';
import type { PhysMem } from '../mem/phys.ts';
import { EVENT_BYTES, EVENT_WORDS } from '../spec/events.ts';

/** What happened to a record the device tried to write. */
export const enum EventOutcome {
  Written,
  /** EVENTQEN == 0: the record is discarded without overflow (§7.4). */
  Disabled,
  /** The queue was full: the record is discarded and the overflow flag toggled if not already (§7.4). */
  Overflow,
  /** The queue lies outside memory: GERROR.EVENTQ_ABT_ERR (§7.2). */
  Abort,
}

/**
 * The event queue's producer side (§7.2, §7.4). The device owns PROD (index, wrap, OVFLG); CONS is
 * what software last wrote (index, wrap, OVACKFLG).
 */
export class EventQueue {
  base = 0;
  log2 = 0;
  /** Index and wrap the device writes next. */
  prod = 0;
  /** PROD.OVFLG, bit 31 of the register. */
  ovflg = 0;
  /** CONS as software last wrote it. */
  cons = 0;
  /** CONS.OVACKFLG as software last wrote it. */
  ovackflg = 0;
  enabled = false;

  constructor(private readonly mem: PhysMem) {}

  configure(addr: number, log2size: number, maxLog2: number): void {
    this.log2 = Math.min(log2size, maxLog2);
    const bytes = Math.max(EVENT_BYTES << this.log2, 32);
    this.base = addr - (addr % bytes);
  }

  get empty(): boolean {
    return ring.isEmpty(this.prod, this.cons, this.log2);
  }

  /**
   * Write one record. The record's words are stored before PROD moves, so a consumer that sees
   * the new PROD sees the whole record (the caller publishes PROD with Atomics.store).
   */
  write(record: ArrayLike<number>): EventOutcome {
    if (!this.enabled) return EventOutcome.Disabled;
    if (ring.isFull(this.prod, this.cons, this.log2)) {
      // §7.4: toggle OVFLG only if the previous overflow has been acknowledged.
      if (this.ovflg === this.ovackflg) this.ovflg ^= 1;
      return EventOutcome.Overflow;
    }
    const pa = this.base + ring.idx(this.prod, this.log2) * EVENT_BYTES;
    if (!this.mem.contains(pa, EVENT_BYTES)) return EventOutcome.Abort;
    const wi = this.mem.wordIndex(pa);
    const u32 = this.mem.u32;
    for (let k = 0; k < EVENT_WORDS; k++) u32[wi + k] = (record[k] ?? 0) >>> 0;
    this.prod = ring.inc(this.prod, 1, this.log2);
    return EventOutcome.Written;
  }
}
