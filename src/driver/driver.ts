/**
 * The guest driver: software that programs the SMMU the way Linux's arm-smmu-v3 driver does
 * (shared/reference/driver-and-qemu.md Part A; smmuv3.md §11), through nothing but the register
 * window and physical memory of the board. It never sees the device model: it runs in its own
 * thread and meets the SMMU only in shared memory, as software meets hardware.
 *
 * - probe(): reads SMMU_IDR0-IDR6, SMMU_IIDR and SMMU_AIDR (§6.3.1-§6.3.8, §6.3.45).
 * - reset(): the bring-up of §3.11 in Linux's order.
 * - issue(): single-producer command insertion: plain stores into the queue in RAM, then one
 *   SMMU_CMDQ_PROD write (the doorbell) per batch of at most 64 commands, one CMD_SYNC at the end.
 * - handleGerror(): the global error handler, with Linux's command-error recovery (§7.1).
 * - drainEvents(): the event queue consumer, with the overflow acknowledgement of §7.4.
 * - attachStage1/attachStage2/attachNested/attachBypass/detach/enableAts, map/unmap: translation
 *   domains (domain.ts) over VMSAv8-64 page tables (pgtable.ts), the stream and CD tables and
 *   their update procedures (tables.ts, §3.21.3.1) and the invalidations Linux issues
 *   (invalidate.ts), all through issue().
 *
 * Every wait is a bounded spin-then-sleep (src/mem/wait.ts) whose timeout message says what was
 * read at that moment.
 */

import { HDR, type Board } from '../mem/board.ts';
import { MmioPort } from '../mem/mmio.ts';
import { PhysAllocator, PhysMem, type MemView } from '../mem/phys.ts';
import { WaitTimeout, type WaitPolicy } from '../mem/wait.ts';
import * as ring from '../ring/index.ts';
import { mask32, type FieldValue } from '../spec/bits.ts';
import { EVENT_BYTES, EVENT_WORDS, decodeEvent } from '../spec/events.ts';
import { cerrorName } from '../spec/cerror.ts';
import { encodeCommandWords } from '../spec/command-codec.ts';
import { COMMAND_BYTES, COMMAND_WORDS } from '../spec/commands.ts';
import type { SmmuFeatures } from '../spec/features.ts';
import { featuresFromIdr, type IdrValues } from '../spec/idr.ts';
import { REG, encode32, encode64, regGet, regSet } from '../spec/registers.ts';
import { CMDQ_BATCH_ENTRIES, buildSync, cmdqErrorAction, consSyncCs, enumCode, readSlot, writeMsiSync, writeSlot } from './cmdq.ts';
import { planEventDrain } from './events.ts';
import {
  DomainManager,
  type AttachNestedOptions,
  type AttachResult,
  type AttachStage1Options,
  type AttachStage2Options,
  type DomainInfo,
  type DomainUnmapResult,
} from './domain.ts';
import { TablePool, type MapProt, type MapResult } from './pgtable.ts';
import { LINUX_STRTAB_SPLIT, StreamTable, type WriteReport } from './tables.ts';
import type { RegisterPort } from './port.ts';
import { ackGerror } from './cmdq-mp.ts';

export type { RegisterPort } from './port.ts';

export interface DriverOptions {
  /** The register window to program (default 'smmu'). */
  readonly window?: string;
  /** Spin-then-sleep policy and deadline of every wait. */
  readonly policy: WaitPolicy;
  /**
   * How the driver waits for a CMD_SYNC:
   * - 'msi': Linux's MSI polling (ARM_SMMU_OPT_MSIPOLL): CS = SIG_IRQ with the MSI aimed at the
   *   CMD_SYNC's own slot, wait for its first word to read 0. Needs SMMU_IDR0.MSI == 1.
   * - 'cons': poll SMMU_CMDQ_CONS until it passes the CMD_SYNC (CS = SIG_SEV, or SIG_NONE when
   *   the SMMU has no SEV).
   */
  readonly syncMode: 'msi' | 'cons';
  /** The physical range [start, end) the driver allocates its tables and queues from. */
  readonly ram: { readonly start: number; readonly end: number };
  /**
   * For a guest in a VM: its physical memory as it sees it (guest-physical addresses onto a part
   * of host RAM). `ram` is then in guest-physical addresses. Default: all of RAM as is.
   */
  readonly memView?: MemView;
  /** log2 of the command queue entries (default min(IDR1.CMDQS, 8)). */
  readonly cmdqLog2?: number;
  /** log2 of the event queue entries (default min(IDR1.EVENTQS, 7)). */
  readonly eventqLog2?: number;
  /** log2 of the StreamIDs the stream table covers (default min(IDR1.SIDSIZE, 8)). */
  readonly strtabLog2?: number;
  /**
   * Stream table format. 'auto' (default) follows Linux's rule on the StreamIDs covered: 2-level
   * (SPLIT = 8) when SMMU_IDR0.ST_LEVEL allows it and strtabLog2 > 8, else linear.
   */
  readonly strtabFormat?: 'auto' | 'linear' | '2-level';
  /** The register interface; default: an MmioPort on `window`. Tests pass a stand-in. */
  readonly port?: RegisterPort;
}

export interface IssueError {
  /** The queue pointer (index and wrap) of the command in error: SMMU_CMDQ_CONS.RD at the time. */
  readonly index: number;
  /** SMMU_CMDQ_CONS.ERR (§7.1). */
  readonly code: number;
  readonly name: string;
}

export interface IssueResult {
  /** Commands the caller passed (the CMD_SYNC not counted). */
  commands: number;
  /** Batches in Linux's sense: groups of at most 64 commands, the last one with the CMD_SYNC. */
  batches: number;
  /** SMMU_CMDQ_PROD writes. One per batch, more when a batch is larger than the queue. */
  doorbells: number;
  /** Polls made by this call's waits. */
  polls: number;
  /** Command errors recovered while this call waited. */
  errors: IssueError[];
}

export interface GerrorResult {
  /** SMMU_GERROR ^ SMMU_GERRORN as read: the errors that were active (all are acknowledged). */
  active: number;
  /** Present when CMDQ_ERR was active: SMMU_CMDQ_CONS.ERR and the queue pointer it stopped at. */
  cmdq?: { code: number; name: string; cons: number };
}

export interface DrainedEvent {
  /** The event number, record bits [7:0] (§7.3). */
  readonly id: number;
  /** The spec's name for it (F_TRANSLATION …), IMPDEF_EVENTn, or UNKNOWN. */
  readonly name: string;
  /** The record's fields by spec name (decodeEvent). */
  readonly fields: Record<string, FieldValue>;
  /** The 32-byte record as eight u32 words (a copy). */
  readonly words: Uint32Array;
}

/** The records one drainEvents() call read; `overflow` says records were lost before them (§7.4). */
export type DrainedEvents = DrainedEvent[] & { overflow: boolean };

/** What the driver's handlers did, in order: Linux's dev_err/dev_warn lines as data. */
export type DriverLogEntry =
  | { readonly kind: 'gerror'; readonly active: number; readonly errors: readonly string[] }
  | {
      readonly kind: 'cmdq-skip';
      readonly cons: number;
      readonly code: number;
      readonly name: string;
      /** The command in error, as it was in the queue. */
      readonly words: readonly number[];
      /** The CMD_SYNC written over it. */
      readonly replacement: readonly number[];
    }
  | { readonly kind: 'cmdq-retry'; readonly cons: number; readonly code: number; readonly name: string }
  | { readonly kind: 'service-failure'; readonly gerror: number }
  | { readonly kind: 'msi-fallback'; readonly sync: number; readonly reason: string }
  | { readonly kind: 'eventq-overflow'; readonly prod: number; readonly cons: number };

export interface DriverCounters {
  doorbells: number;
  polls: number;
  waits: number;
  syncs: number;
  errorsRecovered: number;
}

/**
 * Default queue and table sizes. Linux sizes its queues to the IDR maxima (and a 2-level stream
 * table to SIDSIZE); the model keeps them small, as RAM is a shared buffer.
 */
const DEFAULT_CMDQ_LOG2 = 8;
const DEFAULT_EVENTQ_LOG2 = 7;
const DEFAULT_STRTAB_LOG2 = 8;
/**
 * Queue bases are aligned to the larger of the queue size and 32 bytes (§6.3.26, §6.3.29): the
 * SMMU ignores the address bits below that.
 */
const QUEUE_MIN_ALIGN = 32;
/**
 * Longest sleep of a command-queue wait. A wait sleeps on one word (the CMD_SYNC slot, or CONS);
 * a command error shows in SMMU_GERROR instead, so the waiter must wake up to look.
 */
export const CMDQ_SLICE_MS = 1;
/** Entries of driver.log kept; older ones are dropped (counted in logDropped). */
export const DRIVER_LOG_LIMIT = 4096;

// Register offsets and fields, from the register table (§6.2).
const R = {
  IDR0: REG.SMMU_IDR0.offset,
  IDR1: REG.SMMU_IDR1.offset,
  IDR2: REG.SMMU_IDR2.offset,
  IDR3: REG.SMMU_IDR3.offset,
  IDR4: REG.SMMU_IDR4.offset,
  IDR5: REG.SMMU_IDR5.offset,
  IDR6: REG.SMMU_IDR6.offset,
  IIDR: REG.SMMU_IIDR.offset,
  AIDR: REG.SMMU_AIDR.offset,
  CR0: REG.SMMU_CR0.offset,
  CR0ACK: REG.SMMU_CR0ACK.offset,
  CR1: REG.SMMU_CR1.offset,
  CR2: REG.SMMU_CR2.offset,
  GBPA: REG.SMMU_GBPA.offset,
  IRQ_CTRL: REG.SMMU_IRQ_CTRL.offset,
  IRQ_CTRLACK: REG.SMMU_IRQ_CTRLACK.offset,
  GERROR: REG.SMMU_GERROR.offset,
  GERRORN: REG.SMMU_GERRORN.offset,
  GERROR_IRQ_CFG0: REG.SMMU_GERROR_IRQ_CFG0.offset,
  STRTAB_BASE: REG.SMMU_STRTAB_BASE.offset,
  STRTAB_BASE_CFG: REG.SMMU_STRTAB_BASE_CFG.offset,
  CMDQ_BASE: REG.SMMU_CMDQ_BASE.offset,
  CMDQ_PROD: REG.SMMU_CMDQ_PROD.offset,
  CMDQ_CONS: REG.SMMU_CMDQ_CONS.offset,
  EVENTQ_BASE: REG.SMMU_EVENTQ_BASE.offset,
  EVENTQ_IRQ_CFG0: REG.SMMU_EVENTQ_IRQ_CFG0.offset,
  PRIQ_IRQ_CFG0: REG.SMMU_PRIQ_IRQ_CFG0.offset,
  EVENTQ_PROD: REG.SMMU_EVENTQ_PROD.offset,
  EVENTQ_CONS: REG.SMMU_EVENTQ_CONS.offset,
} as const;

const CR0F = REG.SMMU_CR0.f;
const CONS_ERR = REG.SMMU_CMDQ_CONS.f.ERR;
const CONS_RD = REG.SMMU_CMDQ_CONS.f.RD;
const GERRORF = REG.SMMU_GERROR.f;
const GBPA_UPDATE = REG.SMMU_GBPA.f.Update;
const CMD_WORDS_LOG2 = Math.log2(COMMAND_WORDS);

// SMMU_CR1 attributes (§6.3.11): Linux uses Inner Shareable Write-Back for tables and queues on a
// coherent SMMU, Outer Shareable Non-cacheable otherwise.
const CR1F = REG.SMMU_CR1.f;
const SH_ISH = enumCode(CR1F.TABLE_SH.values, 'Inner Shareable');
const SH_OSH = enumCode(CR1F.TABLE_SH.values, 'Outer Shareable');
const CACHE_WB = enumCode(CR1F.TABLE_OC.values, 'Write-Back Cacheable');
const CACHE_NC = enumCode(CR1F.TABLE_OC.values, 'Non-cacheable');

function hex(v: number): string {
  return `0x${(v >>> 0).toString(16).padStart(8, '0')}`;
}

/** The two 32-bit halves of a 64-bit register value (API edge: reset programming only). */
function halves(v: bigint): [number, number] {
  return [Number(v & 0xffff_ffffn), Number((v >> 32n) & 0xffff_ffffn)];
}

/** The names of the GERROR fields set in `bits`. */
function gerrorNames(bits: number): string[] {
  return REG.SMMU_GERROR.fields.filter((f) => regGet(bits, f) !== 0).map((f) => f.name);
}

function checkLog2(what: string, v: number, max: number): number {
  if (!Number.isInteger(v) || v < 0 || v > max) throw new RangeError(`${what} ${v} must be an integer in 0..${max} (the SMMU's IDR1 maximum)`);
  return v;
}

/**
 * Another way to put commands on the SMMU: a guest CPU of the multi-producer queues (cpu.ts).
 * Once the queues are shared between CPUs, the driver's own commands (reset's are done; domains'
 * are not) must go through the same lock-free insertion, and command-queue errors belong to the
 * CPUs' handler (they hold the handler lock while they fix a slot).
 */
export interface CommandIssuer {
  issue(cmds: readonly ArrayLike<number>[], opts?: { sync?: boolean }): IssueResult;
  /** Recover this issuer's queue if it is in error; true when something was fixed. */
  recover(): boolean;
  withHandlerLock<T>(fn: () => T): T;
}

export class GuestDriver {
  readonly mem: PhysMem;
  readonly port: RegisterPort;
  /** What the handlers did (bounded: the newest DRIVER_LOG_LIMIT entries). */
  readonly log: DriverLogEntry[] = [];
  logDropped = 0;
  readonly counters: DriverCounters = { doorbells: 0, polls: 0, waits: 0, syncs: 0, errorsRecovered: 0 };

  private readonly board: Board;
  private readonly opts: DriverOptions;
  private readonly alloc: PhysAllocator;
  /** Set once guest CPUs share the command queues (setIssuer). */
  private issuer: CommandIssuer | undefined;
  private readonly policy: WaitPolicy;
  /** `policy` with a short sleep slice, for waits that must also notice SMMU_GERROR. */
  private readonly cmdqPolicy: WaitPolicy;
  private feats: SmmuFeatures | undefined;

  // Command queue, the driver's view (single producer: prod is exact, cons a lower bound).
  private cmdqBase = -1;
  private cmdqLog2 = 0;
  /** Index into board.u32 of the queue's first word. */
  private cmdqWord = 0;
  private prod = 0;
  private cons = 0;
  /** The CMD_SYNC used in 'cons' mode and to replace a command in error. */
  private plainSync: Uint32Array = new Uint32Array(COMMAND_WORDS);

  // Event queue.
  private evtqBase = -1;
  private evtqLog2 = 0;
  private evtqWord = 0;
  private evtqCons = 0;
  private evtqOvAck = 0;

  // Stream table.
  private strtabBase = -1;
  private strtabLog2 = 0;
  private strtab: StreamTable | undefined;
  /** Table memory: the driver's RAM, with freed tables reused. */
  private readonly pool: TablePool;
  /** Translation domains and attached streams (created on first use after reset()). */
  private domainMgr: DomainManager | undefined;

  /** The SMMU_CR0 value the driver last made effective. */
  private enables = 0;
  /** Set when the SMMU entered Service Failure Mode and the driver disabled it. */
  private failed = false;
  /** The issue() call in progress, so that the error handler can report into it. */
  private current: IssueResult | undefined;
  private seenGerrorIrq = 0;
  private seenEventqIrq = 0;

  constructor(board: Board, opts: DriverOptions) {
    this.board = board;
    this.opts = opts;
    this.policy = opts.policy;
    this.cmdqPolicy = { ...opts.policy, sliceMs: Math.min(opts.policy.sliceMs ?? CMDQ_SLICE_MS, CMDQ_SLICE_MS) };
    this.mem = new PhysMem(board, opts.memView);
    this.port = opts.port ?? new MmioPort(board, opts.window ?? 'smmu', opts.policy);
    if (!(opts.ram.start < opts.ram.end) || !this.mem.contains(opts.ram.start, opts.ram.end - opts.ram.start)) {
      throw new RangeError(`driver RAM [${hex(opts.ram.start)}, ${hex(opts.ram.end)}) is not inside the board's RAM`);
    }
    this.alloc = new PhysAllocator(this.mem, opts.ram.start, opts.ram.end);
    this.pool = new TablePool(this.mem, this.alloc);
  }

  get features(): SmmuFeatures | undefined {
    return this.feats;
  }

  /** The command queue as the driver sees it. */
  get cmdq(): { base: number; log2: number; prod: number } {
    return { base: this.cmdqBase, log2: this.cmdqLog2, prod: this.prod };
  }

  /** The event queue and stream table the driver allocated (-1 before reset). */
  get tables(): { strtab: { base: number; log2: number }; eventq: { base: number; log2: number; cons: number } } {
    return {
      strtab: { base: this.strtabBase, log2: this.strtabLog2 },
      eventq: { base: this.evtqBase, log2: this.evtqLog2, cons: this.evtqCons },
    };
  }

  // -------------------------------------------------------------------------------------------
  // Probe and reset
  // -------------------------------------------------------------------------------------------

  /** Read the ID registers and derive the features (§6.3.1-§6.3.8, §6.3.45). */
  probe(): SmmuFeatures {
    const p = this.port;
    const IDR1 = p.read32(R.IDR1);
    const idr: IdrValues = {
      IDR0: p.read32(R.IDR0),
      IDR1,
      IDR2: p.read32(R.IDR2),
      IDR3: p.read32(R.IDR3),
      IDR4: p.read32(R.IDR4),
      IDR5: p.read32(R.IDR5),
      // §6.3.45: SMMU_IDR6 exists only with ECMDQ; it is RES0 otherwise, so read it only then.
      IDR6: regGet(IDR1, REG.SMMU_IDR1.f.ECMDQ) !== 0 ? p.read32(R.IDR6) : 0,
      IIDR: p.read32(R.IIDR),
      AIDR: p.read32(R.AIDR),
    };
    this.feats = featuresFromIdr(idr);
    return this.feats;
  }

  /**
   * Bring the SMMU up (§3.11; Linux's arm_smmu_device_reset). Tables and queues are allocated on
   * the first reset and reused by later ones.
   */
  reset(): void {
    if (this.issuer !== undefined) throw new Error('reset() while guest CPUs share the command queues: stop them first');
    const f = this.feats ?? this.probe();
    if (this.opts.syncMode === 'msi' && !f.msi) {
      throw new Error("syncMode 'msi' needs SMMU_IDR0.MSI == 1, but this SMMU has no MSIs: use syncMode 'cons'");
    }
    const p = this.port;
    this.failed = false;

    // 1. If the SMMU is enabled, make incoming traffic abort while it is reprogrammed: set
    //    GBPA.ABORT with the Update protocol (§6.3.14.1), then disable everything.
    if (regGet(p.read32(R.CR0), CR0F.SMMUEN) !== 0) this.updateGbpa(REG.SMMU_GBPA.f.ABORT, 1);
    this.enables = 0;
    this.writeAck(R.CR0, 0, R.CR0ACK, REG.SMMU_CR0.name, REG.SMMU_CR0ACK.name);

    // 2. Table and queue attributes, and CR2. RECINVSID: record C_BAD_STREAMID. PTM only where it
    //    exists (IDR0.BTM, §6.3.12; Linux sets it unconditionally). No E2H: this is an EL1 driver.
    const sh = f.coherent ? SH_ISH : SH_OSH;
    const cache = f.coherent ? CACHE_WB : CACHE_NC;
    p.write32(R.CR1, encode32(REG.SMMU_CR1, { TABLE_SH: sh, TABLE_OC: cache, TABLE_IC: cache, QUEUE_SH: sh, QUEUE_OC: cache, QUEUE_IC: cache }));
    p.write32(R.CR2, encode32(REG.SMMU_CR2, { RECINVSID: 1, PTM: f.btm ? 1 : 0 }));

    // 3. The stream table (tables.ts) of invalid STEs (all zero: V == 0): linear, aligned to its
    //    size, or a level 1 table of invalid L1STDs (Span == 0) whose level 2 arrays come on demand
    //    (§6.3.24, §6.3.25). Domains of an earlier reset are forgotten: every STE is invalid now.
    this.domainMgr?.dropAll();
    this.domainMgr = undefined;
    this.strtabLog2 = checkLog2('strtabLog2', this.opts.strtabLog2 ?? Math.min(f.sidSize, DEFAULT_STRTAB_LOG2), f.sidSize);
    const format = this.strtabFormat(f, this.strtabLog2);
    if (this.strtab === undefined || this.strtab.format !== format || this.strtab.log2Size !== this.strtabLog2) {
      this.strtab?.destroy();
      this.strtab = new StreamTable(this.mem, this.pool, { format, log2Size: this.strtabLog2 });
    } else {
      this.strtab.clear();
    }
    this.strtabBase = this.strtab.base;
    p.write64Parts(R.STRTAB_BASE, ...halves(encode64(REG.SMMU_STRTAB_BASE, { RA: 1, ADDR: this.strtabBase })));
    p.write32(R.STRTAB_BASE_CFG, encode32(REG.SMMU_STRTAB_BASE_CFG, this.strtab.cfg));

    // 4. The command queue: BASE, then PROD and CONS, then CMDQEN (§6.3.26).
    this.cmdqLog2 = checkLog2('cmdqLog2', this.opts.cmdqLog2 ?? Math.min(f.cmdqs, DEFAULT_CMDQ_LOG2), f.cmdqs);
    const cqBytes = COMMAND_BYTES << this.cmdqLog2;
    if (this.cmdqBase < 0) this.cmdqBase = this.alloc.alloc(cqBytes, Math.max(cqBytes, QUEUE_MIN_ALIGN), 'command queue');
    this.cmdqWord = this.mem.wordIndex(this.cmdqBase);
    this.plainSync = buildSync(consSyncCs(f.sev));
    p.write64Parts(R.CMDQ_BASE, ...halves(encode64(REG.SMMU_CMDQ_BASE, { RA: 1, ADDR: this.cmdqBase, LOG2SIZE: this.cmdqLog2 })));
    this.prod = 0;
    this.cons = 0;
    p.write32(R.CMDQ_PROD, this.prod);
    p.write32(R.CMDQ_CONS, this.cons);
    this.enable(CR0F.CMDQEN);

    // 5. Invalidate all cached configuration and TLB entries before enabling translation
    //    (§3.11), each command followed by a CMD_SYNC as Linux does.
    this.issue([encodeCommandWords({ name: 'CMD_CFGI_ALL' })]);
    if (f.hyp) this.issue([encodeCommandWords({ name: 'CMD_TLBI_EL2_ALL' })]);
    this.issue([encodeCommandWords({ name: 'CMD_TLBI_NSNH_ALL' })]);

    // 6. The event queue (PROD and CONS live in Page 1, §6.2.2), then EVENTQEN.
    this.evtqLog2 = checkLog2('eventqLog2', this.opts.eventqLog2 ?? Math.min(f.eventqs, DEFAULT_EVENTQ_LOG2), f.eventqs);
    const eqBytes = EVENT_BYTES << this.evtqLog2;
    if (this.evtqBase < 0) this.evtqBase = this.alloc.alloc(eqBytes, Math.max(eqBytes, QUEUE_MIN_ALIGN), 'event queue');
    this.evtqWord = this.mem.wordIndex(this.evtqBase);
    p.write64Parts(R.EVENTQ_BASE, ...halves(encode64(REG.SMMU_EVENTQ_BASE, { WA: 1, ADDR: this.evtqBase, LOG2SIZE: this.evtqLog2 })));
    this.evtqCons = 0;
    this.evtqOvAck = 0;
    p.write32(R.EVENTQ_PROD, 0);
    p.write32(R.EVENTQ_CONS, 0);
    this.enable(CR0F.EVENTQEN);

    // 7. ATS Translated traffic checked against STE.EATS, where ATS exists (Linux: ATSCHK).
    if (f.ats) this.enable(CR0F.ATSCHK);

    // 8. Interrupts: disable, clear the MSI addresses (wired lines only: CFG0.ADDR == 0 sends no
    //    MSI, §6.3.21), then enable the GERROR and event queue interrupts (§6.3.16).
    this.writeAck(R.IRQ_CTRL, 0, R.IRQ_CTRLACK, REG.SMMU_IRQ_CTRL.name, REG.SMMU_IRQ_CTRLACK.name);
    if (f.msi) {
      p.write64Parts(R.GERROR_IRQ_CFG0, 0, 0);
      p.write64Parts(R.EVENTQ_IRQ_CFG0, 0, 0);
      if (f.pri) p.write64Parts(R.PRIQ_IRQ_CFG0, 0, 0);
    }
    const irqen = encode32(REG.SMMU_IRQ_CTRL, { GERROR_IRQEN: 1, EVENTQ_IRQEN: 1 });
    this.writeAck(R.IRQ_CTRL, irqen, R.IRQ_CTRLACK, REG.SMMU_IRQ_CTRL.name, REG.SMMU_IRQ_CTRLACK.name);
    this.seenGerrorIrq = Atomics.load(this.board.i32, HDR.IRQ_GERROR);
    this.seenEventqIrq = Atomics.load(this.board.i32, HDR.IRQ_EVENTQ);

    // 9. Translation on.
    this.enable(CR0F.SMMUEN);
  }

  /** The stream table format for `log2` StreamIDs (see DriverOptions.strtabFormat). */
  private strtabFormat(f: SmmuFeatures, log2: number): 'linear' | '2-level' {
    const want = this.opts.strtabFormat ?? 'auto';
    if (want === 'linear') return 'linear';
    if (want === '2-level') {
      if (!f.stLevel2) throw new RangeError("strtabFormat '2-level' needs SMMU_IDR0.ST_LEVEL == 0b01");
      if (log2 <= LINUX_STRTAB_SPLIT) throw new RangeError(`strtabFormat '2-level' needs strtabLog2 > SPLIT (${LINUX_STRTAB_SPLIT}), not ${log2}`);
      return '2-level';
    }
    return f.stLevel2 && log2 > LINUX_STRTAB_SPLIT ? '2-level' : 'linear';
  }

  /** Set one more SMMU_CR0 field and wait for SMMU_CR0ACK to show it (§6.3.9). */
  private enable(field: (typeof CR0F)[keyof typeof CR0F]): void {
    this.enables = regSet(this.enables, field, 1);
    this.writeAck(R.CR0, this.enables, R.CR0ACK, REG.SMMU_CR0.name, REG.SMMU_CR0ACK.name);
  }

  /**
   * Write a register with an ACK twin and wait until the twin reads the value written (the
   * Update procedure of §6.3.9; Linux's arm_smmu_write_reg_sync).
   */
  private writeAck(off: number, value: number, ackOff: number, name: string, ackName: string): void {
    this.port.write32(off, value);
    this.counters.waits++;
    this.counters.polls += this.port.waitReg(
      ackOff,
      (v) => v === value,
      () => `${ackName} to read ${hex(value)} after writing ${name} = ${hex(value)}; ${ackName} reads ${hex(this.port.peek32(ackOff))}`,
      this.policy,
    );
  }

  /** SMMU_GBPA Update procedure (§6.3.14.1): wait for Update == 0, write with Update = 1, wait again. */
  private updateGbpa(field: (typeof REG.SMMU_GBPA.f)[keyof typeof REG.SMMU_GBPA.f], value: number): void {
    const p = this.port;
    const idle = (v: number): boolean => regGet(v, GBPA_UPDATE) === 0;
    this.counters.waits++;
    this.counters.polls += p.waitReg(R.GBPA, idle, () => `SMMU_GBPA.Update to read 0 before an update; SMMU_GBPA reads ${hex(p.peek32(R.GBPA))}`, this.policy);
    const v = regSet(regSet(p.read32(R.GBPA), field, value), GBPA_UPDATE, 1);
    p.write32(R.GBPA, v);
    this.counters.waits++;
    this.counters.polls += p.waitReg(R.GBPA, idle, () => `SMMU_GBPA.Update to read 0 after writing SMMU_GBPA = ${hex(v)}; SMMU_GBPA reads ${hex(p.peek32(R.GBPA))}`, this.policy);
  }

  // -------------------------------------------------------------------------------------------
  // Command queue
  // -------------------------------------------------------------------------------------------

  /**
   * Put commands (four u32 words each) on the command queue, in batches of at most 64: a full
   * batch goes out without a CMD_SYNC, the remainder with the one CMD_SYNC (unless `sync` is
   * false), and the call waits for that CMD_SYNC. Entries are written with plain stores, then
   * one SMMU_CMDQ_PROD write rings the doorbell. While waiting, command errors are recovered
   * (handleGerror) and waiting goes on.
   */
  issue(cmds: readonly Uint32Array[], opts?: { sync?: boolean }): IssueResult {
    if (this.issuer !== undefined) return this.issuer.issue(cmds, opts);
    if (this.cmdqBase < 0) throw new Error('issue() before reset(): the command queue is not set up');
    if (this.failed) throw new Error('the SMMU entered Service Failure Mode and the driver disabled it; reset() first');
    const sync = opts?.sync ?? true;
    const n = cmds.length;
    for (let i = 0; i < n; i++) {
      if (cmds[i]!.length !== COMMAND_WORDS) throw new RangeError(`command ${i} has ${cmds[i]!.length} words, not ${COMMAND_WORDS}`);
    }
    const res: IssueResult = { commands: n, batches: 0, doorbells: 0, polls: 0, errors: [] };
    if (n === 0 && !sync) return res;
    const outer = this.current;
    this.current = res;
    try {
      let start = 0;
      let syncPtr = -1;
      do {
        const count = Math.min(n - start, CMDQ_BATCH_ENTRIES);
        const withSync = sync && start + count >= n;
        syncPtr = this.publish(cmds, start, count, withSync, res);
        start += count;
        res.batches++;
      } while (start < n);
      if (sync) this.waitSync(syncPtr, res);
      return res;
    } finally {
      this.current = outer;
    }
  }

  /** A lone CMD_SYNC. */
  sync(): IssueResult {
    return this.issue([]);
  }

  /**
   * Write cmds[start, start+count) and, if `withSync`, a CMD_SYNC after them, then ring the
   * doorbell. Returns the CMD_SYNC's queue pointer (or -1). A batch larger than the whole queue
   * (only with queues below Linux's minimum of 128 entries) goes out in queue-sized pieces, each
   * with its own doorbell.
   */
  private publish(cmds: readonly Uint32Array[], start: number, count: number, withSync: boolean, res: IssueResult): number {
    const log2 = this.cmdqLog2;
    const idxMask = (1 << log2) - 1;
    const cap = 1 << log2;
    const u32 = this.mem.u32;
    const base = this.cmdqWord;
    const total = count + (withSync ? 1 : 0);
    let syncPtr = -1;
    let i = 0;
    while (i < total) {
      const chunk = Math.min(total - i, cap);
      this.reserve(chunk, res);
      let p = this.prod;
      for (let k = 0; k < chunk; k++, i++) {
        const w = base + ((p & idxMask) << CMD_WORDS_LOG2);
        if (i < count) {
          writeSlot(u32, w, cmds[start + i]!);
        } else if (this.opts.syncMode === 'msi') {
          writeMsiSync(u32, w, this.cmdqBase + (p & idxMask) * COMMAND_BYTES);
          syncPtr = p;
        } else {
          writeSlot(u32, w, this.plainSync);
          syncPtr = p;
        }
        p = ring.inc(p, 1, log2);
      }
      this.prod = p;
      // The doorbell. The entries above are plain stores; the MMIO FIFO publishes this write with
      // an Atomics store, which orders them before it for the SMMU (Linux's dma_wmb()).
      this.port.write32(R.CMDQ_PROD, p);
      res.doorbells++;
      this.counters.doorbells++;
    }
    return syncPtr;
  }

  /** Wait until `n` entries are free (never overwrite unconsumed commands, §3.5.1). */
  private reserve(n: number, res: IssueResult): void {
    const log2 = this.cmdqLog2;
    if (ring.space(this.prod, this.cons, log2) >= n) return;
    const t0 = performance.now();
    let policy = this.cmdqPolicy;
    const prod = this.prod;
    for (;;) {
      this.counters.waits++;
      const polls = this.port.waitReg(
        R.CMDQ_CONS,
        (v) => ring.space(prod, v, log2) >= n || this.gerrorPending(),
        () => `space for ${n} commands in the command queue: ${this.cmdqState()}`,
        policy,
      );
      res.polls += polls;
      this.counters.polls += polls;
      const cons = this.port.peek32(R.CMDQ_CONS);
      if (ring.space(prod, cons, log2) >= n) {
        this.cons = cons & ring.ptrMask(log2);
        return;
      }
      this.handleGerror();
      policy = this.remaining(t0, () => `space for ${n} commands in the command queue: ${this.cmdqState()}`);
    }
  }

  /** The command-queue policy with what is left of a deadline that started at `t0`. */
  private remaining(t0: number, describe: () => string): WaitPolicy {
    if (this.failed) throw new Error(`the SMMU entered Service Failure Mode while the driver waited for ${describe()}`);
    const left = this.cmdqPolicy.timeoutMs - (performance.now() - t0);
    if (left <= 0) throw new WaitTimeout(describe(), this.cmdqPolicy.timeoutMs);
    return { ...this.cmdqPolicy, timeoutMs: left };
  }

  /** Wait for the CMD_SYNC at queue pointer `syncPtr` to complete. */
  private waitSync(syncPtr: number, res: IssueResult): void {
    const log2 = this.cmdqLog2;
    this.counters.syncs++;
    const t0 = performance.now();
    let policy = this.cmdqPolicy;
    let msi = this.opts.syncMode === 'msi';
    const slot = ring.idx(syncPtr, log2);
    const slotPa = this.cmdqBase + slot * COMMAND_BYTES;
    const slotWord = this.cmdqWord + (slot << CMD_WORDS_LOG2);
    const u32 = this.mem.u32;
    for (;;) {
      this.counters.waits++;
      let polls: number;
      if (msi) {
        // Linux's MSI polling: the SMMU writes MSIData (0) over the slot's first word (§4.7.3).
        const describe = (): string =>
          `the CMD_SYNC at command queue pointer ${hex(syncPtr)} to write 0 over its slot at PA 0x${slotPa.toString(16)} (the slot reads ${hex(Atomics.load(u32, slotWord))}): ${this.cmdqState()}`;
        polls = this.mem.waitWord(slotPa, (v) => v === 0 || this.gerrorPending(), policy, describe);
        res.polls += polls;
        this.counters.polls += polls;
        if (Atomics.load(u32, slotWord) === 0) {
          // The MSI is visible only after the CMD_SYNC's consumption is (§4.7.3).
          this.cons = ring.inc(syncPtr, 1, log2);
          return;
        }
      } else {
        const describe = (): string => `SMMU_CMDQ_CONS to pass the CMD_SYNC at command queue pointer ${hex(syncPtr)}: ${this.cmdqState()}`;
        polls = this.port.waitReg(R.CMDQ_CONS, (v) => ring.consumed(syncPtr, v, log2) || this.gerrorPending(), describe, policy);
        res.polls += polls;
        this.counters.polls += polls;
        const cons = this.port.peek32(R.CMDQ_CONS);
        if (ring.consumed(syncPtr, cons, log2)) {
          this.cons = cons & ring.ptrMask(log2);
          return;
        }
      }
      const g = this.handleGerror();
      if (msi) {
        // Two ways the MSI can never arrive: the CMD_SYNC itself was replaced (it was the
        // command in error), or its MSI write aborted (GERROR.MSI_CMDQ_ABT_ERR, §6.3.19). CONS
        // still passes the CMD_SYNC, so wait for that instead (Linux would time out here).
        let reason: string | undefined;
        if (g.cmdq !== undefined && g.cmdq.cons === syncPtr && cmdqErrorAction(g.cmdq.code) === 'replace') {
          reason = `the CMD_SYNC was replaced after ${g.cmdq.name}`;
        } else if (regGet(g.active, GERRORF.MSI_CMDQ_ABT_ERR) !== 0) {
          reason = 'GERROR.MSI_CMDQ_ABT_ERR: a CMD_SYNC MSI write aborted';
        }
        if (reason !== undefined) {
          msi = false;
          this.pushLog({ kind: 'msi-fallback', sync: syncPtr, reason });
        }
      }
      policy = this.remaining(t0, () => `the CMD_SYNC at command queue pointer ${hex(syncPtr)}: ${this.cmdqState()}`);
    }
  }

  /** True when SMMU_GERROR and SMMU_GERRORN differ: an error is active (§6.3.19). */
  private gerrorPending(): boolean {
    return (this.port.peek32(R.GERROR) ^ this.port.peek32(R.GERRORN)) !== 0;
  }

  /** The command queue registers as read now, for timeout messages. */
  private cmdqState(): string {
    const p = this.port;
    const prod = p.peek32(R.CMDQ_PROD);
    const cons = p.peek32(R.CMDQ_CONS);
    const ge = p.peek32(R.GERROR);
    const gn = p.peek32(R.GERRORN);
    const err = regGet(cons, CONS_ERR);
    return (
      `SMMU_CMDQ_PROD ${hex(prod)} (driver prod ${hex(this.prod)}), ` +
      `SMMU_CMDQ_CONS ${hex(cons)} (RD ${hex(regGet(cons, CONS_RD))}, ERR ${err} ${cerrorName(err)}), ` +
      `SMMU_GERROR ${hex(ge)}, SMMU_GERRORN ${hex(gn)} (active ${hex(ge ^ gn)})`
    );
  }

  // -------------------------------------------------------------------------------------------
  // Translation domains (domain.ts)
  // -------------------------------------------------------------------------------------------

  /** The stream table as programmed: format, LOG2SIZE, SPLIT, base, level 2 arrays by L1 index. */
  get streamTable(): { format: 'linear' | '2-level'; log2Size: number; split: number; base: number; level2: Record<number, number> } | undefined {
    const t = this.strtab;
    if (t === undefined) return undefined;
    return { format: t.format, log2Size: t.log2Size, split: t.split, base: t.base, level2: Object.fromEntries(t.level2) };
  }

  private domains(): DomainManager {
    if (this.domainMgr !== undefined) return this.domainMgr;
    const f = this.feats;
    const strtab = this.strtab;
    if (f === undefined || strtab === undefined || this.cmdqBase < 0) throw new Error('domains before reset(): the stream table and command queue are not set up');
    this.domainMgr = new DomainManager({
      mem: this.mem,
      alloc: this.pool,
      features: f,
      attrTypesOvr: regGet(this.port.read32(R.IDR1), REG.SMMU_IDR1.f.ATTR_TYPES_OVR) !== 0,
      streamTable: strtab,
      sink: this,
    });
    return this.domainMgr;
  }

  /** Stage 1 translation for a stream (and SubstreamID) through a new or existing stage 1 domain. */
  attachStage1(sid: number, o: AttachStage1Options): AttachResult {
    return this.domains().attachStage1(sid, o);
  }

  /** Stage 2 translation for a stream through a new or existing stage 2 domain. */
  attachStage2(sid: number, o: AttachStage2Options): AttachResult {
    return this.domains().attachStage2(sid, o);
  }

  /** Stage 1 nested in a stage 2 domain (o.s2); the stage 1 tables are mapped there at IPA == PA. */
  attachNested(sid: number, o: AttachNestedOptions): AttachResult {
    return this.domains().attachNested(sid, o);
  }

  /** STE Config = bypass. */
  attachBypass(sid: number): AttachResult {
    return this.domains().attachBypass(sid);
  }

  /** STE Config = abort, or (with ssid) that CD invalid. */
  detach(sid: number, ssid?: number): { ste?: WriteReport; cd?: WriteReport; commands: number } {
    return this.domains().detach(sid, ssid);
  }

  /** STE.EATS = full ATS, then ATC_INV of everything for the stream. */
  enableAts(sid: number): { ste: WriteReport; commands: number } {
    return this.domains().enableAts(sid);
  }

  map(domainId: number, iova: number, pa: number, size: number, prot: MapProt): MapResult {
    return this.domains().map(domainId, iova, pa, size, prot);
  }

  /** Unmap, then invalidate TLBs (range TLBIs) and ATCs through issue(). */
  unmap(domainId: number, iova: number, size: number): DomainUnmapResult {
    return this.domains().unmap(domainId, iova, size);
  }

  iovaToPhys(domainId: number, iova: number): number | undefined {
    return this.domains().iovaToPhys(domainId, iova);
  }

  domainInfo(domainId: number): DomainInfo {
    return this.domains().domainInfo(domainId);
  }

  // -------------------------------------------------------------------------------------------
  // Global errors
  // -------------------------------------------------------------------------------------------

  /**
   * The GERROR handler (Linux's arm_smmu_gerror_handler): the active errors are
   * GERROR ^ GERRORN. SFM_ERR: the SMMU is in Service Failure Mode; disable it. CMDQ_ERR: read
   * SMMU_CMDQ_CONS.ERR; CERROR_ILL and unknown codes: overwrite the command at CONS.RD with a
   * CMD_SYNC; CERROR_ABT, CERROR_ATC_INV_SYNC: nothing (the SMMU retries). Then acknowledge every
   * active error at once by writing GERRORN := GERROR, which restarts command consumption (§7.1).
   */
  handleGerror(): GerrorResult {
    if (this.issuer !== undefined) return this.handleGerrorShared(this.issuer);
    const p = this.port;
    const gerror = p.read32(R.GERROR);
    const active = (gerror ^ p.read32(R.GERRORN)) >>> 0;
    if (active === 0) return { active };
    const out: GerrorResult = { active };
    this.pushLog({ kind: 'gerror', active, errors: gerrorNames(active) });

    if (regGet(active, GERRORF.SFM_ERR) !== 0) {
      this.pushLog({ kind: 'service-failure', gerror });
      this.failed = true;
      this.enables = 0;
      this.writeAck(R.CR0, 0, R.CR0ACK, REG.SMMU_CR0.name, REG.SMMU_CR0ACK.name);
    }

    if (regGet(active, GERRORF.CMDQ_ERR) !== 0) {
      // §7.1: CONS.RD points at the command in error and ERR holds the reason; both are visible
      // before GERROR.CMDQ_ERR is.
      const consReg = p.read32(R.CMDQ_CONS);
      const code = regGet(consReg, CONS_ERR);
      const name = cerrorName(code);
      const cons = consReg & ring.ptrMask(this.cmdqLog2);
      out.cmdq = { code, name, cons };
      const action = cmdqErrorAction(code);
      if (action === 'replace' && this.cmdqBase >= 0) {
        const w = this.cmdqWord + (ring.idx(cons, this.cmdqLog2) << CMD_WORDS_LOG2);
        const words = readSlot(this.mem.u32, w);
        writeSlot(this.mem.u32, w, this.plainSync);
        this.pushLog({ kind: 'cmdq-skip', cons, code, name, words, replacement: [...this.plainSync] });
      } else if (action === 'retry') {
        this.pushLog({ kind: 'cmdq-retry', cons, code, name });
      }
      if (action !== 'none') {
        this.current?.errors.push({ index: cons, code, name });
        this.counters.errorsRecovered++;
      }
    }

    // Acknowledge everything that was active (toggle only active bits: GERRORN := GERROR). The
    // rewritten slot is plain memory; this MMIO write orders it before the SMMU's refetch.
    p.write32(R.GERRORN, gerror);
    p.drainOwn();
    return out;
  }

  /**
   * The GERROR handler once CPUs share the command queues: everything but the command-queue
   * errors is handled here under the CPUs' handler lock and acknowledged bit by bit; CMDQ_ERR and
   * CMDQP_ERR are the CPUs' (their recovery rewrites slots they may be reusing).
   */
  private handleGerrorShared(issuer: CommandIssuer): GerrorResult {
    const p = this.port;
    const cmdqBits = mask32(GERRORF.CMDQ_ERR) | mask32(GERRORF.CMDQP_ERR);
    const out = issuer.withHandlerLock((): GerrorResult => {
      const gerror = p.read32(R.GERROR);
      const active = (gerror ^ p.read32(R.GERRORN)) >>> 0;
      const mine = active & ~cmdqBits;
      if (mine === 0) return { active };
      this.pushLog({ kind: 'gerror', active: mine, errors: gerrorNames(mine) });
      if (regGet(mine, GERRORF.SFM_ERR) !== 0) {
        this.pushLog({ kind: 'service-failure', gerror });
        this.failed = true;
        this.enables = 0;
        this.writeAck(R.CR0, 0, R.CR0ACK, REG.SMMU_CR0.name, REG.SMMU_CR0ACK.name);
      }
      ackGerror(p, mine);
      return { active };
    });
    if ((out.active & cmdqBits) !== 0) issuer.recover();
    return out;
  }

  /** The physical memory this driver allocates from (shared queue state comes from here too). */
  get allocator(): PhysAllocator {
    return this.alloc;
  }

  /**
   * Route this driver's commands through `issuer` (a guest CPU on the shared queues), or back to
   * the single-producer path with undefined. reset() is not supported while an issuer is set.
   */
  setIssuer(issuer: CommandIssuer | undefined): void {
    this.issuer = issuer;
  }

  // -------------------------------------------------------------------------------------------
  // Event queue
  // -------------------------------------------------------------------------------------------

  /**
   * Read the records between SMMU_EVENTQ_CONS and SMMU_EVENTQ_PROD (Page 1), then move CONS past
   * them, acknowledging an overflow by writing OVACKFLG = PROD.OVFLG (§7.4). One pass: records
   * the SMMU writes meanwhile are left for the next call.
   */
  drainEvents(): DrainedEvents {
    const out = Object.assign([] as DrainedEvent[], { overflow: false });
    if (this.evtqBase < 0) return out;
    const prod = this.port.read32(R.EVENTQ_PROD);
    const plan = planEventDrain(prod, this.evtqCons, this.evtqOvAck, this.evtqLog2);
    const u32 = this.mem.u32;
    let c = this.evtqCons;
    for (let k = 0; k < plan.count; k++) {
      const w = this.evtqWord + ring.idx(c, this.evtqLog2) * EVENT_WORDS;
      // One copy of the record (it may be overwritten once CONS moves past it).
      const words = u32.slice(w, w + EVENT_WORDS);
      const d = decodeEvent(words);
      out.push({ id: d.id, name: d.name, fields: d.fields, words });
      c = ring.inc(c, 1, this.evtqLog2);
    }
    if (plan.overflow) {
      out.overflow = true;
      this.pushLog({ kind: 'eventq-overflow', prod, cons: this.evtqCons });
    }
    if (plan.write) {
      this.evtqCons = plan.nextCons;
      this.evtqOvAck = plan.ovflg;
      this.port.write32(R.EVENTQ_CONS, plan.consValue);
    }
    return out;
  }

  /**
   * What interrupt handlers would do, for a driver without interrupt threads: run the GERROR
   * handler if the wired GERROR line was asserted since the last look, and drain the event queue
   * if the EVENTQ line was (the device bumps HDR.IRQ_* when it asserts them, §3.18).
   */
  serviceInterrupts(): { gerror?: GerrorResult; events: DrainedEvents } {
    const i32 = this.board.i32;
    const g = Atomics.load(i32, HDR.IRQ_GERROR);
    const e = Atomics.load(i32, HDR.IRQ_EVENTQ);
    let gerror: GerrorResult | undefined;
    if (g !== this.seenGerrorIrq) {
      this.seenGerrorIrq = g;
      gerror = this.handleGerror();
    }
    let events = Object.assign([] as DrainedEvent[], { overflow: false });
    if (e !== this.seenEventqIrq) {
      this.seenEventqIrq = e;
      events = this.drainEvents();
    }
    return gerror === undefined ? { events } : { gerror, events };
  }

  private pushLog(e: DriverLogEntry): void {
    if (this.log.length >= DRIVER_LOG_LIMIT) {
      this.log.shift();
      this.logDropped++;
    }
    this.log.push(e);
  }
}
