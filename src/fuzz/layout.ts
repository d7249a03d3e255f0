/**
 * Where a scenario's queues and MSI targets live by default, relative to the start of RAM. The
 * generators and the scenario parser share it, so a saved scenario needs no addresses unless it
 * moves something on purpose. Each queue's region is aligned to its largest size (§6.3.26: the
 * effective base is aligned to the queue's size in bytes).
 */

export type QueueKind = 'cmdq' | 'eventq' | 'ecmdq';

/** Bytes per command (§4.1.1) and per event record (§7.3). */
const CMD_BYTES = 16;
const EVT_BYTES = 32;

export const DEFAULT_LAYOUT = Object.freeze({
  /** Arm's virt machine puts RAM here; so does the model by default. */
  ramBase: 0x4000_0000,
  /** 4 MiB: small enough to compare whole after every run. */
  ramBytes: 0x40_0000,
  minRamBytes: 0x40_0000,
  /** CMD_SYNC MSI targets the generators use (one word each). */
  syncMsi: 0x1000,
  syncMsiWords: 256,
  /** GERROR and event queue MSI targets. */
  irqMsi: 0x2000,
  irqMsiWords: 64,
  cmdq: 0x10_0000,
  eventq: 0x20_0000,
  ecmdq: 0x30_0000,
  /** Room per ECMDQ; ECMDQs 0..ecmdqSlots-1 have default bases. */
  ecmdqStride: 0x4000,
  ecmdqSlots: 16,
  /** Default LOG2SIZE per queue kind. */
  log2: Object.freeze({ cmdq: 4, eventq: 2, ecmdq: 3 } as Record<QueueKind, number>),
  /** The largest LOG2SIZE that fits each default region. */
  maxLog2: Object.freeze({
    cmdq: Math.log2((0x20_0000 - 0x10_0000) / CMD_BYTES),
    eventq: Math.log2((0x30_0000 - 0x20_0000) / EVT_BYTES),
    ecmdq: Math.log2(0x4000 / CMD_BYTES),
  } as Record<QueueKind, number>),
});

/** The default base of a queue (ECMDQ n for kind 'ecmdq'). */
export function defaultQueueBase(kind: QueueKind, ramBase: number, n = 0): number {
  switch (kind) {
    case 'cmdq':
      return ramBase + DEFAULT_LAYOUT.cmdq;
    case 'eventq':
      return ramBase + DEFAULT_LAYOUT.eventq;
    case 'ecmdq':
      return ramBase + DEFAULT_LAYOUT.ecmdq + n * DEFAULT_LAYOUT.ecmdqStride;
  }
}
