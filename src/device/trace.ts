import { HDR, TRACE_RECORD_WORDS, type Board } from '../mem/board.ts';

/**
 * The command trace: one record per command the device consumed or refused, in a ring in shared
 * memory that the system drains (the device never blocks on it). Record words:
 *   0  queue id [15:0] (TRACE_QUEUE_*: the CMDQ, ECMDQ n, VCMDQ n) | outcome [23:16] (0 =
 *      consumed, else the CERROR code)
 *   1  the queue pointer (index and wrap) the command was read from
 *   2..5  the command's four words as the device snapshot them
 *   6  sequence number of the record (wraps)
 *   7  reserved
 * When the reader falls behind by a whole ring, records are counted in HDR.TRACE_LOST rather than
 * overwriting unread ones; the reader reports the loss.
 */

/** Trace queue ids: the CMDQ is 0, ECMDQ n is 1 + n, VCMDQ n (CMDQV) is TRACE_QUEUE_VCMDQ + n. */
export const TRACE_QUEUE_CMDQ = 0;
export const TRACE_QUEUE_ECMDQ = 1;
export const TRACE_QUEUE_VCMDQ = 0x8000;

/** The name of a trace queue id. */
export function traceQueueName(id: number): string {
  if (id === TRACE_QUEUE_CMDQ) return 'CMDQ';
  return id >= TRACE_QUEUE_VCMDQ ? `VCMDQ${id - TRACE_QUEUE_VCMDQ}` : `ECMDQ${id - TRACE_QUEUE_ECMDQ}`;
}

export class TraceWriter {
  private readonly i32: Int32Array;
  private readonly u32: Uint32Array;
  private readonly base: number;
  private readonly records: number;

  constructor(board: Board) {
    this.i32 = board.i32;
    this.u32 = board.u32;
    this.base = board.layout.trace.index;
    this.records = board.layout.trace.records;
  }

  get enabled(): boolean {
    return this.records > 0;
  }

  record(queue: number, ptr: number, w: Uint32Array, outcome: number): void {
    if (this.records === 0) return;
    const tail = Atomics.load(this.i32, HDR.TRACE_TAIL);
    const head = Atomics.load(this.i32, HDR.TRACE_HEAD);
    if (((tail - head) | 0) >= this.records) {
      Atomics.add(this.i32, HDR.TRACE_LOST, 1);
      return;
    }
    const at = this.base + (tail & (this.records - 1)) * TRACE_RECORD_WORDS;
    const u = this.u32;
    u[at] = ((queue & 0xffff) | ((outcome & 0xff) << 16)) >>> 0;
    u[at + 1] = ptr >>> 0;
    u[at + 2] = w[0]!;
    u[at + 3] = w[1]!;
    u[at + 4] = w[2]!;
    u[at + 5] = w[3]!;
    u[at + 6] = tail >>> 0;
    u[at + 7] = 0;
    Atomics.store(this.i32, HDR.TRACE_TAIL, (tail + 1) | 0);
  }
}

/** One trace record as the reader sees it. */
export interface TraceRecord {
  readonly queue: number;
  readonly ptr: number;
  readonly words: readonly [number, number, number, number];
  /** 0 when consumed, else the CERROR code the command raised. */
  readonly outcome: number;
  readonly seq: number;
}

/** Drain every record written since the last drain (any thread; never blocks). */
export function drainTrace(board: Board): { records: TraceRecord[]; lost: number } {
  const { index, records: cap } = board.layout.trace;
  const out: TraceRecord[] = [];
  if (cap === 0) return { records: out, lost: 0 };
  const i32 = board.i32;
  const u = board.u32;
  const tail = Atomics.load(i32, HDR.TRACE_TAIL);
  let head = Atomics.load(i32, HDR.TRACE_HEAD);
  while (head !== tail) {
    const at = index + (head & (cap - 1)) * TRACE_RECORD_WORDS;
    out.push({
      queue: u[at]! & 0xffff,
      outcome: (u[at]! >>> 16) & 0xff,
      ptr: u[at + 1]!,
      words: [u[at + 2]!, u[at + 3]!, u[at + 4]!, u[at + 5]!],
      seq: u[at + 6]!,
    });
    head = (head + 1) | 0;
  }
  Atomics.store(i32, HDR.TRACE_HEAD, head);
  const lost = Atomics.exchange(i32, HDR.TRACE_LOST, 0);
  return { records: out, lost };
}
