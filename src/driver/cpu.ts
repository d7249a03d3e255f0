/**
 * Guest CPUs: many producers, one SMMU. The CPU that resets the SMMU (the GuestDriver's CPU)
 * allocates the state the CPUs share in guest RAM and describes it in a plain-object layout
 * (`shareCommandQueues`); every CPU worker then attaches a GuestCpu to the board with that layout
 * and inserts commands without any further help: through the shared SMMU_CMDQ with the lock-free
 * multi-producer algorithm (cmdq-mp.ts), or through its own ECMDQ (ecmdq.ts).
 *
 * A GuestCpu never probes or resets; it only inserts commands, waits for its CMD_SYNCs and
 * recovers the command errors it meets while waiting. `run()` is a self-contained workload loop
 * (no message per command) for tests and benchmarks: commands tagged with the CPU and a sequence
 * number, so that the device trace says who inserted what, in which order.
 */

import { HDR, type Board } from '../mem/board.ts';
import { MmioPort } from '../mem/mmio.ts';
import { PhysMem } from '../mem/phys.ts';
import { WaitTimeout, type WaitPolicy } from '../mem/wait.ts';
import { fieldGetNumber, getBits, setBits } from '../spec/bits.ts';
import { encodeCommandWords } from '../spec/command-codec.ts';
import { COMMAND_BYTES, COMMAND_WORDS, OP, commandByName, commandField, commandSpec } from '../spec/commands.ts';
import type { SmmuFeatures } from '../spec/features.ts';
import { REG } from '../spec/registers.ts';
import { CMDQ_BATCH_ENTRIES, buildSync, consSyncCs, putFieldNumber } from './cmdq.ts';
import {
  CpuContext,
  KERNEL,
  MP_LINE_BYTES,
  MP_MIN_LOG2,
  MpProducer,
  MpState,
  mpStateBytes,
  type CpuCounters,
  type CpuIssueError,
  type CpuLogEntry,
  type Producer,
  type QueueDesc,
} from './cmdq-mp.ts';
import { ECMDQ_DEFAULT_LOG2, QUEUE_MIN_ALIGN, EcmdqProducer, disableEcmdq, ecmdqRegs, enableEcmdq, probeEcmdqs, type EcmdqRegs } from './ecmdq.ts';
import type { RegisterPort } from './port.ts';

export type { CpuCounters, CpuIssueError, CpuLogEntry, QueueDesc } from './cmdq-mp.ts';

// ---------------------------------------------------------------------------------------------
// The shared layout, made once by the CPU that resets the SMMU
// ---------------------------------------------------------------------------------------------

/** Everything a CPU worker needs to attach: plain data (it crosses to workers in workerData). */
export interface CpuQueuesLayout {
  /** 'shared': every CPU uses SMMU_CMDQ; 'ecmdq': CPU i uses queues[cpuQueue[i]], an ECMDQ. */
  readonly mode: 'shared' | 'ecmdq';
  /** Set when 'ecmdq' was asked for and the CPUs fell back to the shared CMDQ: why. */
  readonly fallback?: string;
  readonly cpus: number;
  /** How CPUs wait for a CMD_SYNC (the GuestDriver's DriverOptions.syncMode). */
  readonly syncMode: 'msi' | 'cons';
  /** SMMU_IDR0.SEV: CONS-polled CMD_SYNCs and replacements use CS = SIG_SEV, else SIG_NONE. */
  readonly sev: boolean;
  /** PA of the kernel block (the GERROR handler lock every CPU takes). */
  readonly kernel: number;
  readonly queues: readonly QueueDesc[];
  /** Index into `queues` of each CPU's queue. */
  readonly cpuQueue: readonly number[];
}

/** Kernel memory for the shared state: a PhysAllocator, or the GuestDriver's allocator. */
export interface Allocator {
  alloc(bytes: number, align: number, what?: string): number;
}

/** What `shareCommandQueues` needs of the driver that reset the SMMU (GuestDriver has it). */
export interface ResetDriverView {
  readonly port: RegisterPort;
  readonly mem: PhysMem;
  readonly features: SmmuFeatures | undefined;
  /** The command queue the driver set up; `prod` where its single-producer insertion left it. */
  readonly cmdq: { readonly base: number; readonly log2: number; readonly prod: number };
}

export interface ShareOptions {
  readonly cpus: number;
  readonly cmdq: 'shared' | 'ecmdq';
  readonly syncMode: 'msi' | 'cons';
  /** Waits of the ECMDQ enable handshake. */
  readonly policy: WaitPolicy;
  /** log2 of each ECMDQ's entries (default min(IDR1.CMDQS, 8)). */
  readonly ecmdqLog2?: number;
}

/** Bytes `shareCommandQueues` may allocate for `cpus` CPUs on queues of at most 2^log2 entries (a bound). */
export function shareBytes(cpus: number, log2: number): number {
  const perQueue = (COMMAND_BYTES << log2) * 2 + mpStateBytes(log2) + MP_LINE_BYTES;
  return KERNEL.BYTES + MP_LINE_BYTES + (cpus + 1) * perQueue;
}

const CMDQ_PROD_OFF = REG.SMMU_CMDQ_PROD.offset;
const CMDQ_CONS_OFF = REG.SMMU_CMDQ_CONS.offset;

/**
 * Run on the CPU that reset the SMMU, right after GuestDriver.reset() and before any other
 * command: allocate the state the CPUs share and describe it. 'shared': the multi-producer state
 * of SMMU_CMDQ, starting where the driver's single-producer insertion stopped. 'ecmdq': probe
 * the ECMDQs, allocate and enable one per CPU (CPU i gets ECMDQ i; with more CPUs than ECMDQs,
 * CPU i shares ECMDQ i mod count with the multi-producer algorithm), or fall back to 'shared'
 * when the SMMU has none or an enable fails (as the series does). From then on the driver's own
 * issue() must not be used: the CPUs own the queue.
 */
export function shareCommandQueues(drv: ResetDriverView, alloc: Allocator, opts: ShareOptions): CpuQueuesLayout {
  const { cpus } = opts;
  if (!Number.isInteger(cpus) || cpus < 1) throw new RangeError(`cpus ${cpus} must be a positive integer`);
  const f = drv.features;
  if (f === undefined || drv.cmdq.base < 0) throw new Error('shareCommandQueues() before the driver reset the SMMU');
  const kernel = alloc.alloc(KERNEL.BYTES, MP_LINE_BYTES, 'CPU kernel block');
  const common = { cpus, syncMode: opts.syncMode, sev: f.sev, kernel };
  const shared = (fallback?: string): CpuQueuesLayout => ({
    mode: 'shared',
    ...common,
    ...(fallback !== undefined ? { fallback } : {}),
    queues: [shareCmdq(drv, alloc)],
    cpuQueue: new Array<number>(cpus).fill(0),
  });
  if (opts.cmdq === 'ecmdq') {
    const probe = probeEcmdqs(drv.port);
    if (probe.count === 0) return shared(probe.reason ?? 'no ECMDQs');
    const log2 = opts.ecmdqLog2 ?? Math.min(f.cmdqs, ECMDQ_DEFAULT_LOG2);
    if (!Number.isInteger(log2) || log2 < MP_MIN_LOG2 || log2 > f.cmdqs) {
      throw new RangeError(`ecmdqLog2 ${log2} must be in ${MP_MIN_LOG2}..${f.cmdqs} (SMMU_IDR1.CMDQS; a batch of ${CMDQ_BATCH_ENTRIES} and a CMD_SYNC must fit)`);
    }
    const used = Math.min(probe.count, cpus);
    const queues: QueueDesc[] = [];
    const enabled: EcmdqRegs[] = [];
    const bytes = COMMAND_BYTES << log2;
    for (let n = 0; n < used; n++) {
      const regs = ecmdqRegs(probe, n);
      const base = alloc.alloc(bytes, Math.max(bytes, QUEUE_MIN_ALIGN), `ECMDQ${n}`);
      let errack: number;
      try {
        errack = enableEcmdq(drv.port, n, regs, base, log2, opts.policy);
      } catch (e) {
        if (!(e instanceof WaitTimeout)) throw e;
        for (const r of [...enabled, regs]) disableEcmdq(drv.port, r);
        return shared(`ECMDQ${n} did not enable: ${e.message}`);
      }
      enabled.push(regs);
      const sharers = Math.floor((cpus - 1 - n) / used) + 1;
      let mpState = -1;
      if (sharers > 1) {
        mpState = alloc.alloc(mpStateBytes(log2), MP_LINE_BYTES, `ECMDQ${n} multi-producer state`);
        new MpState(drv.mem, mpState, log2).init(0, 0, errack);
      }
      queues.push({ name: `ECMDQ${n}`, ecmdq: n, base, log2, prodOff: regs.prodOff, consOff: regs.consOff, mpState, errack });
    }
    return { mode: 'ecmdq', ...common, queues, cpuQueue: Array.from({ length: cpus }, (_, c) => c % used) };
  }
  return shared();
}

/** The multi-producer state of SMMU_CMDQ, continuing from the driver's prod and the SMMU's CONS. */
function shareCmdq(drv: ResetDriverView, alloc: Allocator): QueueDesc {
  const { base, log2, prod } = drv.cmdq;
  if (log2 < MP_MIN_LOG2) {
    throw new RangeError(`the command queue has 2^${log2} entries; many CPUs need at least 2^${MP_MIN_LOG2} (Linux refuses 64 or fewer)`);
  }
  const mpState = alloc.alloc(mpStateBytes(log2), MP_LINE_BYTES, 'CMDQ multi-producer state');
  // After reset every command the driver inserted was waited for, so CONS == prod; read it anyway.
  const cons = drv.port.read32(CMDQ_CONS_OFF);
  new MpState(drv.mem, mpState, log2).init(prod, cons);
  return { name: 'CMDQ', ecmdq: -1, base, log2, prodOff: CMDQ_PROD_OFF, consOff: CMDQ_CONS_OFF, mpState, errack: 0 };
}

// ---------------------------------------------------------------------------------------------
// Workload commands
// ---------------------------------------------------------------------------------------------

const NH_VA = commandByName('CMD_TLBI_NH_VA')!;
const F_ASID = commandField(NH_VA, 'ASID')!;
const F_ADDRESS = commandField(NH_VA, 'Address')!;
const F_OPCODE = commandField(NH_VA, 'Opcode')!;
const NH_VA_TEMPLATE = encodeCommandWords({ name: 'CMD_TLBI_NH_VA' });
/** The workload's addresses are 4KB pages: Address = seq << 12. */
export const WORKLOAD_PAGE_SHIFT = 12;
const PAGE = 2 ** WORKLOAD_PAGE_SHIFT;
/**
 * The lowest non-zero Reserved opcode (§4.1.1; 0x08): what the workload inserts as an illegal
 * command. Not 0, so that a zero-filled slot never passes for one.
 */
export const ILLEGAL_OPCODE: number = (() => {
  for (let op = 1; op < 256; op++) if (commandSpec(op).cls === 'reserved') return op;
  throw new Error('the command table has no Reserved opcode');
})();
/** Illegal workload commands carry the CPU in word 1 and the sequence number in word 2. */
const ILLEGAL_CPU_WORD = 1;
const ILLEGAL_SEQ_WORD = 2;

/**
 * Workload command `seq` of CPU `cpu`: CMD_TLBI_NH_VA with ASID = cpu, VMID = 0 and
 * Address = seq << 12 (§4.4.2.4), into `out`.
 */
export function workloadCommand(cpu: number, seq: number, out: Uint32Array = new Uint32Array(COMMAND_WORDS)): Uint32Array {
  out.set(NH_VA_TEMPLATE);
  setBits(out, F_ASID.lsb, F_ASID.width, cpu);
  putFieldNumber(out, F_ADDRESS, seq * PAGE);
  return out;
}

/** An illegal command tagged with (cpu, seq): a Reserved opcode, so CERROR_ILL (§4.1.1, §7.1). */
export function illegalCommand(cpu: number, seq: number, out: Uint32Array = new Uint32Array(COMMAND_WORDS)): Uint32Array {
  out.fill(0);
  setBits(out, F_OPCODE.lsb, F_OPCODE.width, ILLEGAL_OPCODE);
  out[ILLEGAL_CPU_WORD] = cpu >>> 0;
  out[ILLEGAL_SEQ_WORD] = seq >>> 0;
  return out;
}

/** The (cpu, seq) a workload command carries, or undefined for any other command. */
export function workloadTag(words: ArrayLike<number>): { cpu: number; seq: number; illegal: boolean } | undefined {
  const op = getBits(words, F_OPCODE.lsb, F_OPCODE.width);
  if (op === OP.CMD_TLBI_NH_VA) return { cpu: getBits(words, F_ASID.lsb, F_ASID.width), seq: fieldGetNumber(words, F_ADDRESS) / PAGE, illegal: false };
  if (op === ILLEGAL_OPCODE) return { cpu: words[ILLEGAL_CPU_WORD]! >>> 0, seq: words[ILLEGAL_SEQ_WORD]! >>> 0, illegal: true };
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// The CPU
// ---------------------------------------------------------------------------------------------

export interface CpuIssueResult {
  /** Commands the caller passed (the CMD_SYNC not counted). */
  commands: number;
  /** Groups of at most 64 commands, the last one with the CMD_SYNC (Linux's batches). */
  batches: number;
  /** PROD writes this CPU made during the call (as the owner, or for its own ECMDQ). */
  doorbells: number;
  /** Polls of this call's waits. */
  polls: number;
  /** Command errors this CPU recovered during the call (another CPU may have fixed others). */
  errors: CpuIssueError[];
}

export interface RunOptions {
  /** Commands to insert (M). */
  readonly commands: number;
  /** Commands per issue() call: one size, or sizes used in turn (default 64). Above 64, a call is several batches. */
  readonly batch?: number | readonly number[];
  /** End every call with a CMD_SYNC and wait for it (default true). */
  readonly sync?: boolean;
  /** Sequence numbers (of this run's range) to insert as illegal commands instead. */
  readonly illegal?: readonly number[];
  /** Return a record per CMD_SYNC (default false). */
  readonly record?: boolean;
}

export interface SyncRecord {
  /** The CMD_SYNC's queue pointer (index and wrap). */
  readonly ptr: number;
  /** The sequence number of the command just before it. */
  readonly lastSeq: number;
  /**
   * HDR.TRACE_TAIL when the wait returned: the device traces a command after executing it, so
   * every command before the CMD_SYNC must be among the first `traceTail` trace records.
   */
  readonly traceTail: number;
}

export interface RunResult {
  readonly cpu: number;
  readonly queue: string;
  /** Sequence numbers firstSeq .. firstSeq + commands - 1 were used. */
  readonly firstSeq: number;
  readonly commands: number;
  /** issue() calls made. */
  readonly calls: number;
  readonly ms: number;
  /** What this run added to the counters. */
  readonly counters: CpuCounters;
  readonly errors: CpuIssueError[];
  readonly syncs: SyncRecord[];
}

export interface CpuState {
  readonly cpu: number;
  readonly queue: string;
  readonly mode: 'shared' | 'ecmdq';
  readonly counters: CpuCounters;
  readonly log: readonly CpuLogEntry[];
}

function diff(a: CpuCounters, b: CpuCounters): CpuCounters {
  const out = { ...a };
  for (const k of Object.keys(a) as (keyof CpuCounters)[]) out[k] = a[k] - b[k];
  return out;
}

/** One guest CPU attached to the board and to the shared state the resetting CPU made. */
export class GuestCpu {
  readonly ctx: CpuContext;
  readonly producer: Producer;
  readonly queue: QueueDesc;
  private nextSeq = 0;

  constructor(
    private readonly board: Board,
    readonly layout: CpuQueuesLayout,
    readonly cpu: number,
    policy: WaitPolicy,
    /** The register interface; default: this CPU's own MmioPort on the 'smmu' window. */
    port?: RegisterPort,
    mem?: PhysMem,
  ) {
    if (!Number.isInteger(cpu) || cpu < 0 || cpu >= layout.cpus) throw new RangeError(`CPU ${cpu} is not one of the layout's ${layout.cpus} CPUs`);
    const p = port ?? new MmioPort(board, 'smmu', policy);
    const m = mem ?? new PhysMem(board);
    this.ctx = new CpuContext(cpu, m, p, policy, layout.syncMode, buildSync(consSyncCs(layout.sev)), layout.kernel);
    const q = layout.queues[layout.cpuQueue[cpu] ?? -1];
    if (q === undefined) throw new Error(`the layout gives CPU ${cpu} no queue`);
    this.queue = q;
    this.producer = q.mpState >= 0 ? new MpProducer(this.ctx, q) : new EcmdqProducer(this.ctx, q);
  }

  get counters(): CpuCounters {
    return this.ctx.counters;
  }

  /**
   * Insert commands (four u32 words each) in batches of at most 64: full batches without a
   * CMD_SYNC, the remainder with one (unless `sync` is false), and wait for that CMD_SYNC.
   */
  issue(cmds: readonly ArrayLike<number>[], opts?: { sync?: boolean }): CpuIssueResult {
    for (let i = 0; i < cmds.length; i++) {
      if (cmds[i]!.length !== COMMAND_WORDS) throw new RangeError(`command ${i} has ${cmds[i]!.length} words, not ${COMMAND_WORDS}`);
    }
    const c = this.ctx.counters;
    const doorbells = c.doorbells;
    const polls = c.pollIterations;
    this.ctx.errors = [];
    const { batches } = this.issueN(cmds, cmds.length, opts?.sync ?? true);
    return { commands: cmds.length, batches, doorbells: c.doorbells - doorbells, polls: c.pollIterations - polls, errors: this.ctx.errors };
  }

  /** A lone CMD_SYNC. */
  sync(): CpuIssueResult {
    return this.issue([]);
  }

  /** Look for an error on this CPU's queue (or CMDQ_ERR) and recover it; true when this CPU fixed one. */
  recover(): boolean {
    this.ctx.errors = [];
    return this.producer.recover();
  }

  /**
   * Run `fn` holding the GERROR handler lock every CPU takes before it read-modify-writes
   * SMMU_GERRORN or fixes a command in error: for a GERROR handler running beside the CPUs (the
   * driver's), which must then acknowledge only the bits it handled (cmdq-mp.ts ackGerror).
   */
  withHandlerLock<T>(fn: () => T): T {
    this.ctx.handler.lock(this.ctx);
    try {
      return fn();
    } finally {
      this.ctx.handler.unlock();
    }
  }

  /** The first `n` of `cmds`, batched; returns the CMD_SYNC pointer (or -1) and the batch count. */
  private issueN(cmds: readonly ArrayLike<number>[], n: number, sync: boolean): { syncPtr: number; batches: number } {
    let start = 0;
    let batches = 0;
    let syncPtr = -1;
    if (n === 0 && !sync) return { syncPtr, batches };
    do {
      const count = Math.min(n - start, CMDQ_BATCH_ENTRIES);
      const withSync = sync && start + count >= n;
      syncPtr = this.producer.insert(cmds, start, count, withSync);
      start += count;
      batches++;
    } while (start < n);
    if (sync) this.producer.waitSync(syncPtr);
    return { syncPtr, batches };
  }

  /**
   * The workload loop: `commands` tagged commands (workloadCommand(cpu, seq)), `batch` per
   * issue() call, each call ending with a CMD_SYNC unless `sync` is false. Sequence numbers
   * continue from the previous run.
   */
  run(opts: RunOptions): RunResult {
    const sizes = typeof opts.batch === 'number' ? [opts.batch] : (opts.batch ?? [CMDQ_BATCH_ENTRIES]);
    if (sizes.length === 0 || sizes.some((b) => !Number.isInteger(b) || b < 1)) throw new RangeError('batch sizes must be positive integers');
    if (!Number.isInteger(opts.commands) || opts.commands < 0) throw new RangeError(`commands ${opts.commands} must be a non-negative integer`);
    const sync = opts.sync ?? true;
    const illegal = new Set(opts.illegal ?? []);
    const maxBatch = Math.max(...sizes);
    const bufs = Array.from({ length: maxBatch }, () => new Uint32Array(COMMAND_WORDS));
    const first = this.nextSeq;
    const end = first + opts.commands;
    const before = { ...this.ctx.counters };
    const syncs: SyncRecord[] = [];
    const errors: CpuIssueError[] = [];
    const i32 = this.board.i32;
    const t0 = performance.now();
    let seq = first;
    let calls = 0;
    while (seq < end) {
      const b = Math.min(sizes[calls % sizes.length]!, end - seq);
      for (let k = 0; k < b; k++) {
        if (illegal.has(seq + k)) illegalCommand(this.cpu, seq + k, bufs[k]);
        else workloadCommand(this.cpu, seq + k, bufs[k]);
      }
      this.ctx.errors = errors;
      const { syncPtr } = this.issueN(bufs, b, sync);
      if (opts.record === true && sync) syncs.push({ ptr: syncPtr, lastSeq: seq + b - 1, traceTail: Atomics.load(i32, HDR.TRACE_TAIL) });
      seq += b;
      calls++;
    }
    this.nextSeq = end;
    return {
      cpu: this.cpu,
      queue: this.queue.name,
      firstSeq: first,
      commands: opts.commands,
      calls,
      ms: performance.now() - t0,
      counters: diff(this.ctx.counters, before),
      errors,
      syncs,
    };
  }

  state(): CpuState {
    return { cpu: this.cpu, queue: this.queue.name, mode: this.layout.mode, counters: { ...this.ctx.counters }, log: [...this.ctx.log] };
  }
}
