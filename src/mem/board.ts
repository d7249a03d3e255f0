import { notifySleepers } from './wait.ts';

/**
 * The shared-memory board: one SharedArrayBuffer holding everything hardware and software share.
 *
 *   [control block]   header words, counters, SEV word, worker status
 *   [MMIO FIFOs]      one per register window: the bus that carries register writes, in order
 *   [register windows] SMMU page 0, page 1, ECMDQ control pages (and, later, virtual SMMUs),
 *                     each 64 KiB aligned, holding the values software reads
 *   [physical memory]  RAM at a configurable physical base: queues, tables, MSI targets
 *
 * All multi-byte values are little-endian (the typed-array views are native-endian; the model
 * refuses to start on a big-endian host rather than silently byte-swapping). The device worker is
 * the only writer of register windows; software writes registers through the MMIO FIFO so the
 * device sees every write, in order, and applies its side effects (see mmio.ts and
 * docs/architecture.md).
 */

/** 64 KiB: the SMMU page size (IHI0070 G.b §6.1) and the alignment of every window and of RAM. */
export const PAGE_64K = 0x1_0000;

export const BOARD_MAGIC = 0x534d_4d55; // 'SMMU'
export const BOARD_VERSION = 1;

/** Header words of the control block (Int32 indices). */
export const HDR = {
  MAGIC: 0,
  VERSION: 1,
  /** Set to 1 to ask every worker to stop. */
  STOP: 2,
  /** WFE event counter: bumped and notified on CMD_SYNC CS=SIG_SEV and queue-not-full (§3.18). */
  SEV: 3,
  /** Threads sleeping on a physical-memory word (MSI targets): gates Atomics.notify. */
  RAM_SLEEPERS: 4,
  /** Device worker state: see DEVICE_STATE. */
  DEVICE_STATE: 5,
  /** Threads sleeping on SEV. */
  SEV_SLEEPERS: 6,
  /**
   * Wired interrupt lines (§3.18): the device bumps the line's counter and wakes sleepers each
   * time it asserts the interrupt. A driver's "interrupt handler" waits for the count to move.
   */
  IRQ_GERROR: 7,
  IRQ_EVENTQ: 8,
  IRQ_PRIQ: 9,
  IRQ_CMD_SYNC: 10,
  /** Threads sleeping on an IRQ line. */
  IRQ_SLEEPERS: 11,
  /** Trace ring: records written so far (device), records read so far (reader), records lost. */
  TRACE_TAIL: 12,
  TRACE_HEAD: 13,
  TRACE_LOST: 14,
  /** First counter word. */
  COUNTERS: 16,
} as const;

export const DEVICE_STATE = { BOOTING: 0, RUNNING: 1, STOPPED: 2, CRASHED: 3 } as const;

/**
 * Counters the device keeps for tests and benchmarks (u32, wrapping). Indices relative to
 * HDR.COUNTERS.
 */
export const COUNTER = {
  MMIO_WRITES: 0,
  MMIO_UNKNOWN_WRITES: 1,
  MMIO_RO_WRITES: 2,
  MMIO_BAD_WIDTH: 3,
  COMMANDS_CONSUMED: 4,
  COMMAND_ERRORS: 5,
  CMD_SYNCS: 6,
  MSI_WRITES: 7,
  EVENTS_WRITTEN: 8,
  EVENTS_DROPPED: 9,
  DEVICE_WAKEUPS: 10,
  DEVICE_SLEEPS: 11,
  DMA_TRANSACTIONS: 12,
  DMA_FAULTS: 13,
} as const;
export type CounterName = keyof typeof COUNTER;
const COUNTER_WORDS = 48;

/** Words of one MMIO FIFO's control area (Int32 indices relative to the FIFO). */
export const FIFO = {
  /** Next ticket a producer claims (compare-and-swap, once the ticket's slot is free). */
  TAIL: 0,
  /** Tickets applied so far: a reader whose last write has ticket t waits for APPLIED > t. */
  APPLIED: 1,
  /** 1 while the consumer sleeps on the head slot. */
  CONSUMER_SLEEPING: 2,
  /** Threads sleeping on APPLIED or on a register word of this window. */
  SLEEPERS: 3,
  /** Producers waiting for a free slot. */
  PRODUCERS_WAITING: 4,
  /**
   * Wake-up counter of the consumer's sleep. A consumer serving several windows (the SMMU and
   * its CMDQV) sleeps on the first window's WAKE word; producers of every window in the group
   * bump and notify that word (WindowLayout.wake).
   */
  WAKE: 5,
  /** First slot; each slot is SLOT_WORDS words: SEQ, ADDR (offset | flags), LO, HI. */
  SLOTS: 16,
  SLOT_WORDS: 4,
} as const;

export interface WindowConfig {
  /** 'smmu' for the physical SMMU; virtual windows get their own names. */
  readonly name: string;
  /** Bytes of register space, a multiple of 64 KiB. */
  readonly bytes: number;
  /** Physical address of the window's first byte (page 0 for an SMMU). */
  readonly base: number;
  /** FIFO depth, a power of two (default 256). */
  readonly fifoSlots?: number;
  /** The window whose consumer also serves this one (its WAKE word wakes them both). */
  readonly wakeWith?: string;
}

export interface BoardConfig {
  readonly windows: readonly WindowConfig[];
  /** Physical address of RAM, 64 KiB aligned (default 0x4000_0000, as on Arm's virt machine). */
  readonly ramBase?: number;
  /** Bytes of RAM, a multiple of 64 KiB (default 64 MiB). */
  readonly ramBytes?: number;
  /** Records in the trace ring, a power of two, or 0 for no trace (default 0). */
  readonly traceRecords?: number;
  /** DMA ports for DMA masters (dma.ts), default 4. */
  readonly dmaPorts?: number;
}

/** Words per trace record (see device/trace.ts for their meaning). */
export const TRACE_RECORD_WORDS = 8;
/** Words per DMA port (see dma.ts). */
export const DMA_PORT_WORDS = 16;

export interface WindowLayout {
  readonly name: string;
  readonly base: number;
  readonly bytes: number;
  /** Byte offset of the window in the buffer. */
  readonly offset: number;
  /** Int32 index of the FIFO control area. */
  readonly fifo: number;
  readonly fifoSlots: number;
  /** Int32 index of the WAKE word the consumer of this window sleeps on. */
  readonly wake: number;
}

/** Where everything lives: a plain object, so it crosses to workers in workerData. */
export interface BoardLayout {
  readonly totalBytes: number;
  readonly windows: readonly WindowLayout[];
  readonly ram: { readonly base: number; readonly bytes: number; readonly offset: number };
  /** Int32 index of the trace ring's first record, and its capacity in records (0: no trace). */
  readonly trace: { readonly index: number; readonly records: number };
  /** Int32 index of the first DMA port, and the number of ports (16 words each, dma.ts). */
  readonly dma: { readonly index: number; readonly ports: number };
}

export const DEFAULT_RAM_BASE = 0x4000_0000;
export const DEFAULT_RAM_BYTES = 64 << 20;
const CONTROL_BYTES = 4096;

function alignUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/** Compute the layout; throws an Error naming the first inconsistent setting. */
export function planBoard(cfg: BoardConfig): BoardLayout {
  const ramBase = cfg.ramBase ?? DEFAULT_RAM_BASE;
  const ramBytes = cfg.ramBytes ?? DEFAULT_RAM_BYTES;
  if (!Number.isSafeInteger(ramBase) || ramBase < 0 || ramBase % PAGE_64K !== 0) {
    throw new Error(`ramBase 0x${ramBase.toString(16)} must be a 64 KiB-aligned physical address`);
  }
  if (!Number.isSafeInteger(ramBytes) || ramBytes < PAGE_64K || ramBytes % PAGE_64K !== 0 || ramBytes > 1 << 30) {
    throw new Error(`ramBytes ${ramBytes} must be a multiple of 64 KiB between 64 KiB and 1 GiB`);
  }
  const spans: [string, number, number][] = [['RAM', ramBase, ramBase + ramBytes]];
  let at = CONTROL_BYTES;
  const fifos: number[] = [];
  for (const w of cfg.windows) {
    const slots = w.fifoSlots ?? 256;
    if (!Number.isInteger(slots) || slots < 2 || (slots & (slots - 1)) !== 0) {
      throw new Error(`window ${w.name}: fifoSlots ${slots} must be a power of two ≥ 2`);
    }
    fifos.push(at / 4);
    at = alignUp(at + (FIFO.SLOTS + slots * FIFO.SLOT_WORDS) * 4, 64);
  }
  const traceRecords = cfg.traceRecords ?? 0;
  if (!Number.isInteger(traceRecords) || traceRecords < 0 || (traceRecords & (traceRecords - 1)) !== 0 || traceRecords > 1 << 20) {
    throw new Error(`traceRecords ${traceRecords} must be 0 or a power of two up to 2^20`);
  }
  const trace = { index: at / 4, records: traceRecords };
  at += traceRecords * TRACE_RECORD_WORDS * 4;
  const dmaPorts = cfg.dmaPorts ?? 4;
  if (!Number.isInteger(dmaPorts) || dmaPorts < 0 || dmaPorts > 256) throw new Error(`dmaPorts ${dmaPorts} must be an integer in 0..256`);
  const dma = { index: at / 4, ports: dmaPorts };
  at += dmaPorts * DMA_PORT_WORDS * 4;
  at = alignUp(at, PAGE_64K);
  const windows: WindowLayout[] = [];
  cfg.windows.forEach((w, i) => {
    if (w.bytes <= 0 || w.bytes % PAGE_64K !== 0) throw new Error(`window ${w.name}: ${w.bytes} bytes is not a multiple of 64 KiB`);
    if (w.base % PAGE_64K !== 0) throw new Error(`window ${w.name}: base 0x${w.base.toString(16)} is not 64 KiB aligned`);
    if (windows.some((x) => x.name === w.name)) throw new Error(`window ${w.name} is defined twice`);
    spans.push([`window ${w.name}`, w.base, w.base + w.bytes]);
    windows.push({ name: w.name, base: w.base, bytes: w.bytes, offset: at, fifo: fifos[i]!, fifoSlots: w.fifoSlots ?? 256, wake: fifos[i]! + FIFO.WAKE });
    at += w.bytes;
  });
  cfg.windows.forEach((w, i) => {
    if (w.wakeWith === undefined) return;
    const leader = windows.find((x) => x.name === w.wakeWith);
    if (leader === undefined) throw new Error(`window ${w.name}: wakeWith names no window '${w.wakeWith}'`);
    windows[i] = { ...windows[i]!, wake: leader.wake };
  });
  spans.sort((a, b) => a[1] - b[1]);
  for (let i = 1; i < spans.length; i++) {
    if (spans[i]![1] < spans[i - 1]![2]) throw new Error(`${spans[i - 1]![0]} and ${spans[i]![0]} overlap in the physical address map`);
  }
  return { totalBytes: at + ramBytes, windows, ram: { base: ramBase, bytes: ramBytes, offset: at }, trace, dma };
}

/** Views over one board. Cheap to construct: each worker builds its own from the buffer. */
export class Board {
  readonly u8: Uint8Array;
  readonly u32: Uint32Array;
  readonly i32: Int32Array;

  private constructor(readonly sab: SharedArrayBuffer, readonly layout: BoardLayout) {
    if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
      throw new Error('smmu-sim needs a little-endian host: the SMMU structures are little-endian');
    }
    this.u8 = new Uint8Array(sab);
    this.u32 = new Uint32Array(sab);
    this.i32 = new Int32Array(sab);
  }

  /** Allocate and initialise a fresh board. */
  static create(cfg: BoardConfig): Board {
    const layout = planBoard(cfg);
    const b = new Board(new SharedArrayBuffer(layout.totalBytes), layout);
    b.i32[HDR.MAGIC] = BOARD_MAGIC;
    b.i32[HDR.VERSION] = BOARD_VERSION;
    for (const w of layout.windows) {
      // Slot i is free for ticket i (see mmio.ts).
      for (let s = 0; s < w.fifoSlots; s++) b.i32[w.fifo + FIFO.SLOTS + s * FIFO.SLOT_WORDS] = s;
    }
    return b;
  }

  /** Views over a board created elsewhere (in a worker). */
  static attach(sab: SharedArrayBuffer, layout: BoardLayout): Board {
    const b = new Board(sab, layout);
    if (b.i32[HDR.MAGIC] !== BOARD_MAGIC || b.i32[HDR.VERSION] !== BOARD_VERSION) {
      throw new Error('the shared buffer is not an smmu-sim board of this version');
    }
    return b;
  }

  window(name: string): WindowLayout {
    const w = this.layout.windows.find((x) => x.name === name);
    if (w === undefined) throw new Error(`no register window '${name}' on this board`);
    return w;
  }

  counter(name: CounterName): number {
    return Atomics.load(this.u32, HDR.COUNTERS + COUNTER[name]);
  }

  counters(): Record<CounterName, number> {
    const out = {} as Record<CounterName, number>;
    for (const k of Object.keys(COUNTER) as CounterName[]) out[k] = this.counter(k);
    return out;
  }

  /** Assert a wired interrupt line: bump its count and wake its sleepers. */
  raiseIrq(line: number): void {
    Atomics.add(this.i32, line, 1);
    notifySleepers(this.i32, line, HDR.IRQ_SLEEPERS);
  }

  /** Bump a counter (device side). Plain add: one writer per counter. */
  count(name: CounterName, n = 1): void {
    const i = HDR.COUNTERS + COUNTER[name];
    Atomics.store(this.u32, i, (this.u32[i]! + n) >>> 0);
  }

  get stopRequested(): boolean {
    return Atomics.load(this.i32, HDR.STOP) !== 0;
  }

  requestStop(): void {
    Atomics.store(this.i32, HDR.STOP, 1);
    // Wake every sleeper so it sees STOP now rather than at its next slice.
    Atomics.notify(this.i32, HDR.STOP);
    for (const line of [HDR.SEV, HDR.IRQ_GERROR, HDR.IRQ_EVENTQ, HDR.IRQ_PRIQ, HDR.IRQ_CMD_SYNC]) Atomics.notify(this.i32, line);
    for (const w of this.layout.windows) {
      for (let s = 0; s < w.fifoSlots; s++) Atomics.notify(this.i32, w.fifo + FIFO.SLOTS + s * FIFO.SLOT_WORDS);
      Atomics.notify(this.i32, w.fifo + FIFO.APPLIED);
    }
  }
}

if (COUNTER_WORDS < Object.keys(COUNTER).length || HDR.COUNTERS * 4 + COUNTER_WORDS * 4 > CONTROL_BYTES) {
  throw new Error('board control block too small for its counters');
}
