import { DMA_PORT_WORDS, type Board } from './board.ts';
import { MmioPort } from './mmio.ts';
import { notifySleepers, waitFor, type WaitPolicy } from './wait.ts';

/**
 * DMA ports: how a DMA master (a PCIe endpoint, a platform device) asks the SMMU to translate.
 *
 * Real masters send transactions with a StreamID; the SMMU translates them on the way to memory.
 * In the model a master fills its port's request words, then rings the port's doorbell over the
 * SMMU window's MMIO FIFO (so the request is ordered after the master's earlier register writes);
 * the device translates (walks, caches, faults, events) and answers in the response words. The
 * master then reads or writes physical memory at the returned address itself.
 */

/** Int32 word indices within one port. */
export const DMA = {
  /** Request sequence number, written last by the master. */
  REQ_SEQ: 0,
  /** Response sequence number: equals REQ_SEQ when the answer is complete. */
  RESP_SEQ: 1,
  SID: 2,
  /** SubstreamID, or DMA_NO_SSID when the transaction carries none. */
  SSID: 3,
  IOVA_LO: 4,
  IOVA_HI: 5,
  /** DMA_ACCESS bits. */
  ACCESS: 6,
  /** DMA_STATUS. */
  STATUS: 7,
  PA_LO: 8,
  PA_HI: 9,
  /** The event number recorded for a fault, 0 when none was recorded. */
  EVENT: 10,
  /** DMA_FLAGS of the answer. */
  FLAGS: 11,
  /** Threads sleeping on RESP_SEQ. */
  SLEEPERS: 12,
  WORDS: DMA_PORT_WORDS,
} as const;

export const DMA_NO_SSID = 0xffff_ffff;

export const DMA_ACCESS = { READ: 1, WRITE: 2, EXEC: 4, PRIV: 8, ATS: 16 } as const;

/** How a transaction ended. */
export const DMA_STATUS = {
  /** Translated: PA_LO/PA_HI hold the output address (or the input address in bypass). */
  OK: 0,
  /** Terminated with an abort to the master (the fault may have been recorded: see EVENT). */
  ABORT: 1,
  /** Terminated with RAZ/WI behaviour (CD.A == 0 style termination, §3.12). */
  RAZ_WI: 2,
} as const;

export const DMA_FLAGS = {
  /** The translation came from the TLB. */
  TLB_HIT: 1,
  /** Bypassed (SMMUEN == 0 with GBPA bypass, or an STE in bypass). */
  BYPASS: 2,
} as const;

export interface DmaRequest {
  readonly sid: number;
  /** SubstreamID, or undefined for none. */
  readonly ssid?: number;
  readonly iova: number;
  readonly read?: boolean;
  readonly write?: boolean;
  readonly exec?: boolean;
  readonly priv?: boolean;
  /** A PCIe ATS translation request rather than an untranslated transaction. */
  readonly ats?: boolean;
}

export interface DmaResult {
  readonly status: 'ok' | 'abort' | 'raz-wi';
  /** The output address when status is 'ok'. */
  readonly pa?: number;
  /** The event number recorded for a fault, if one was. */
  readonly event?: number;
  readonly tlbHit: boolean;
  readonly bypass: boolean;
}

export function accessBits(r: DmaRequest): number {
  return (r.read ? DMA_ACCESS.READ : 0) | (r.write ? DMA_ACCESS.WRITE : 0) | (r.exec ? DMA_ACCESS.EXEC : 0)
    | (r.priv ? DMA_ACCESS.PRIV : 0) | (r.ats ? DMA_ACCESS.ATS : 0);
}

/** Int32 index of port `n`'s first word. */
export function dmaPortIndex(board: Board, n: number): number {
  const { index, ports } = board.layout.dma;
  if (!Number.isInteger(n) || n < 0 || n >= ports) throw new RangeError(`DMA port ${n} does not exist (the board has ${ports})`);
  return index + n * DMA.WORDS;
}

function writeRequest(i32: Int32Array, at: number, r: DmaRequest): number {
  i32[at + DMA.SID] = r.sid | 0;
  i32[at + DMA.SSID] = (r.ssid ?? DMA_NO_SSID) | 0;
  i32[at + DMA.IOVA_LO] = r.iova % 0x1_0000_0000 | 0;
  i32[at + DMA.IOVA_HI] = Math.floor(r.iova / 0x1_0000_0000) | 0;
  i32[at + DMA.ACCESS] = accessBits(r);
  const seq = (i32[at + DMA.REQ_SEQ]! + 1) | 0;
  Atomics.store(i32, at + DMA.REQ_SEQ, seq);
  return seq;
}

function readResult(u32: Uint32Array, at: number): DmaResult {
  const status = u32[at + DMA.STATUS]!;
  const flags = u32[at + DMA.FLAGS]!;
  const event = u32[at + DMA.EVENT]!;
  return {
    status: status === DMA_STATUS.OK ? 'ok' : status === DMA_STATUS.RAZ_WI ? 'raz-wi' : 'abort',
    ...(status === DMA_STATUS.OK ? { pa: u32[at + DMA.PA_LO]! + u32[at + DMA.PA_HI]! * 0x1_0000_0000 } : {}),
    ...(event !== 0 ? { event } : {}),
    tlbHit: (flags & DMA_FLAGS.TLB_HIT) !== 0,
    bypass: (flags & DMA_FLAGS.BYPASS) !== 0,
  };
}

/** A DMA master's port, in a worker: requests block until the SMMU answers or the policy times out. */
export class DmaMaster {
  private readonly at: number;
  private readonly bus: MmioPort;

  constructor(private readonly board: Board, readonly port: number, private readonly policy: WaitPolicy, window = 'smmu') {
    this.at = dmaPortIndex(board, port);
    this.bus = new MmioPort(board, window, policy);
  }

  translate(r: DmaRequest): DmaResult {
    const i32 = this.board.i32;
    const seq = writeRequest(i32, this.at, r);
    this.bus.postDma(this.port);
    const resp = this.at + DMA.RESP_SEQ;
    waitFor(i32, resp, () => Atomics.load(i32, resp) === seq, this.policy,
      () => `the SMMU to answer DMA port ${this.port} request ${seq} (StreamID 0x${r.sid.toString(16)}, IOVA 0x${r.iova.toString(16)})`,
      this.at + DMA.SLEEPERS);
    return readResult(this.board.u32, this.at);
  }
}

/** The same from the main thread, without blocking it. */
export async function translateAsync(board: Board, bus: MmioPort, port: number, r: DmaRequest, timeoutMs: number): Promise<DmaResult> {
  const at = dmaPortIndex(board, port);
  const i32 = board.i32;
  const seq = writeRequest(i32, at, r);
  const deadline = Date.now() + timeoutMs;
  while (!bus.tryPostDma(port)) {
    if (Date.now() > deadline) throw new Error(`MMIO FIFO stayed full for ${timeoutMs} ms; is the device running?`);
    await new Promise((res) => setImmediate(res));
  }
  for (;;) {
    const v = Atomics.load(i32, at + DMA.RESP_SEQ);
    if (v === seq) return readResult(board.u32, at);
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for the SMMU to answer DMA port ${port} request ${seq}`);
    Atomics.add(i32, at + DMA.SLEEPERS, 1);
    try {
      const w = Atomics.waitAsync(i32, at + DMA.RESP_SEQ, v, 20);
      if (w.async) await w.value;
    } finally {
      Atomics.sub(i32, at + DMA.SLEEPERS, 1);
    }
  }
}

/** The device's side: read a request, answer it. */
export class DmaPortServer {
  constructor(private readonly board: Board) {}

  request(port: number): { sid: number; ssid: number; iova: number; access: number; seq: number } {
    const at = dmaPortIndex(this.board, port);
    const u32 = this.board.u32;
    return {
      seq: Atomics.load(this.board.i32, at + DMA.REQ_SEQ),
      sid: u32[at + DMA.SID]!,
      ssid: u32[at + DMA.SSID]!,
      iova: u32[at + DMA.IOVA_LO]! + u32[at + DMA.IOVA_HI]! * 0x1_0000_0000,
      access: u32[at + DMA.ACCESS]!,
    };
  }

  respond(port: number, seq: number, status: number, pa: number, event: number, flags: number): void {
    const at = dmaPortIndex(this.board, port);
    const u32 = this.board.u32;
    u32[at + DMA.STATUS] = status;
    u32[at + DMA.PA_LO] = pa % 0x1_0000_0000;
    u32[at + DMA.PA_HI] = Math.floor(pa / 0x1_0000_0000);
    u32[at + DMA.EVENT] = event;
    u32[at + DMA.FLAGS] = flags;
    Atomics.store(this.board.i32, at + DMA.RESP_SEQ, seq);
    notifySleepers(this.board.i32, at + DMA.RESP_SEQ, at + DMA.SLEEPERS);
  }
}
