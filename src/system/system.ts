import { once } from 'node:events';
import type { Worker } from 'node:worker_threads';
import { Board, DEFAULT_RAM_BASE, DEFAULT_RAM_BYTES, DEVICE_STATE, FIFO, HDR, type CounterName } from '../mem/board.ts';
import { MmioPort } from '../mem/mmio.ts';
import { PhysMem } from '../mem/phys.ts';
import { DEFAULT_WAIT, parseWaitPolicy, type WaitPolicy } from '../mem/wait.ts';
import { commandToJson, decodeCommand, encodeCommandWords, formatCommand, parseCommandHex, type CommandInput } from '../spec/command-codec.ts';
import { cerrorName } from '../spec/cerror.ts';
import { FULL_FEATURES, parseFeatures, validateFeatures, type SmmuFeatures } from '../spec/features.ts';
import { findRegister, smmuRegWindow } from '../spec/registers.ts';
import { SIM_EVENT_WORDS, SIM_REG } from '../spec/impdef.ts';
import { drainTrace, traceQueueName, TRACE_QUEUE_VCMDQ, type TraceRecord } from '../device/trace.ts';
import type { DeviceWorkerData } from '../device/worker.ts';
import { cmdqvWindowConfig, type CmdqvConfig } from '../device/cmdqv.ts';
import { vcmdqErrName } from '../spec/cmdqv.ts';
import type { TranslatorOptions } from '../device/translate.ts';
import type { CpuQueuesLayout, CpuState, RunOptions, RunResult } from '../driver/cpu.ts';
import type { CpuWorkerData } from './cpu-worker.ts';
import { translateAsync, type DmaRequest, type DmaResult } from '../mem/dma.ts';
import type { DriverOptions, IssueResult } from '../driver/driver.ts';
import type { DriverWorkerData } from './driver-worker.ts';
import { workerReady, type WorkerReply } from './rpc.ts';
import { spawnWorker } from './spawn.ts';
import { planVms, startVms, type Vm, type VmConfig } from './vms.ts';

export type { IssueResult };

/** How to build a system. Every member is optional. */
export interface SystemConfig {
  /** The SMMU: a SmmuFeatures object or a --features list such as 'no-s1,sidsize=16'. */
  readonly features?: SmmuFeatures | string;
  /** Wait policy for the device and the driver: an object, or 'spin' | 'hybrid' | 'hybrid:N' | 'wait'. */
  readonly policy?: WaitPolicy | string;
  /** Physical address of SMMU page 0 (default 0x0905_0000, 64 KiB aligned). */
  readonly smmuBase?: number;
  readonly ramBase?: number;
  /** Bytes of physical memory (default 64 MiB). */
  readonly ramBytes?: number;
  /** Record every consumed command: true (65 536 records) or a power-of-two record count. */
  readonly trace?: boolean | number;
  /** How the guest driver waits for a CMD_SYNC: 'msi' (Linux's MSI polling) or 'cons'. */
  readonly syncMode?: 'msi' | 'cons';
  /** log2 of the driver's command queue entries (default: the driver's choice). */
  readonly cmdqLog2?: number;
  readonly eventqLog2?: number;
  /** Start a guest driver and bring the SMMU up with it (default true). */
  readonly driver?: boolean;
  /** log2 of the StreamIDs the driver's stream table covers (2-level above 8). */
  readonly strtabLog2?: number;
  readonly strtabFormat?: 'auto' | 'linear' | '2-level';
  /**
   * Guest CPU workers that share the command queues with the driver (Linux's lock-free
   * insertion on the CMDQ, or one ECMDQ per CPU). 0 or absent: the driver is the only producer.
   */
  readonly cpus?: number;
  /** How CPUs reach the SMMU: the one CMDQ ('shared', default) or ECMDQs ('ecmdq'). */
  readonly cmdq?: 'shared' | 'ecmdq';
  /** log2 of each ECMDQ's entries. */
  readonly ecmdqLog2?: number;
  /** TLB, configuration cache and ATC sizes, replacement policy, over-invalidation, ATC timeouts. */
  readonly translate?: TranslatorOptions;
  /** DMA ports for masters (default 4). */
  readonly dmaPorts?: number;
  /** Virtual machines with assigned devices (src/system/vms.ts); each adds one host CPU. */
  readonly vms?: readonly VmConfig[];
  /**
   * An NVIDIA Tegra241 CMDQV beside the SMMU (src/device/cmdqv.ts): true for the defaults, or its
   * geometry and switches. Needed by VMs on the 'vcmdq' path.
   */
  readonly cmdqv?: CmdqvConfig | true;
  /** Physical address of the CMDQV window (default 0x0a00_0000, 64 KiB aligned). */
  readonly cmdqvBase?: number;
}

/** Where the CMDQV window sits unless SystemConfig.cmdqvBase says otherwise. */
export const DEFAULT_CMDQV_BASE = 0x0a00_0000;

/** One consumed (or refused) command, decoded. */
export interface TraceEntry {
  readonly queue: string;
  /** The queue pointer (index and wrap) the command was read from. */
  readonly ptr: number;
  readonly words: readonly [number, number, number, number];
  /** 'consumed', or the CERROR name the command raised (a VCMDQ's VCMDQ_CONS.ERR name). */
  readonly outcome: string;
  /** One readable line. */
  readonly text: string;
  /** One JSON object (as in `smmu-sim decode --json`, plus queue, ptr and outcome). */
  readonly json: Record<string, unknown>;
}

export type Command = CommandInput | string | ArrayLike<number>;

/** Turn a command given as fields, hex, or four words into four words. */
export function commandWords(c: Command): number[] {
  if (typeof c === 'string') return [...parseCommandHex(c)];
  if (typeof (c as ArrayLike<number>).length === 'number' && !('name' in c) && !('opcode' in c)) {
    const a = c as ArrayLike<number>;
    if (a.length !== 4) throw new RangeError(`a command given as words has 4 of them, not ${a.length}`);
    return [a[0]! >>> 0, a[1]! >>> 0, a[2]! >>> 0, a[3]! >>> 0];
  }
  return [...encodeCommandWords(c as CommandInput)];
}

function traceEntry(r: TraceRecord): TraceEntry {
  const d = decodeCommand(r.words);
  const queue = traceQueueName(r.queue);
  const outcome = r.outcome === 0 ? 'consumed' : r.queue >= TRACE_QUEUE_VCMDQ ? vcmdqErrName(r.outcome) : cerrorName(r.outcome);
  const ptr = `0x${r.ptr.toString(16)}`;
  return {
    queue,
    ptr: r.ptr,
    words: r.words,
    outcome,
    text: `${queue}[${ptr}] ${formatCommand(d)}  -> ${outcome}`,
    json: { queue, ptr: r.ptr, outcome, ...commandToJson(d) },
  };
}

/** A worker reached by request messages: each call runs to completion in that worker. */
export class WorkerHandle {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();

  constructor(private readonly worker: Worker, private readonly timeoutMs: number, private readonly failed: () => Error | undefined) {
    worker.on('message', (r: WorkerReply) => {
      const p = this.pending.get(r.id);
      if (p === undefined) return;
      this.pending.delete(r.id);
      clearTimeout(p.timer);
      if (r.ok) p.resolve(r.result);
      else {
        const e = new Error(r.error.message);
        e.name = r.error.name;
        p.reject(e);
      }
    });
  }

  /** Reject every call in flight (the worker died or the system stopped). */
  failAll(e: Error): void {
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(e);
      this.pending.delete(id);
    }
  }

  call<T>(method: string, ...args: unknown[]): Promise<T> {
    const f = this.failed();
    if (f !== undefined) return Promise.reject(f);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`driver call ${method} did not answer within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      this.worker.postMessage({ id, method, args });
    });
  }

  /** Issue commands (fields, hex or words): batches, doorbells, CMD_SYNC, error recovery. */
  issue(cmds: readonly Command[], opts?: { sync?: boolean }): Promise<IssueResult> {
    return this.call('issue', cmds.map((c) => Uint32Array.from(commandWords(c))), opts ?? {});
  }

  sync(): Promise<IssueResult> {
    return this.call('sync');
  }
}

/** The guest driver, reached by messages: each call runs in the driver's worker. */
export class DriverHandle extends WorkerHandle {
  probe(): Promise<SmmuFeatures> {
    return this.call('probe');
  }

  reset(): Promise<void> {
    return this.call('reset');
  }

  handleGerror(): Promise<unknown> {
    return this.call('handleGerror');
  }

  drainEvents(): Promise<unknown[]> {
    return this.call('drainEvents');
  }

  /** The driver's features, queue state, counters and recovery log. */
  state(): Promise<{ features: SmmuFeatures | undefined; cmdq: unknown; counters: Record<string, number>; log: unknown[] }> {
    return this.call('state');
  }

  // Translation domains (GuestDriver's domain methods; see src/driver/domain.ts for the options).
  attachStage1(sid: number, o: Record<string, unknown>): Promise<{ domain: number }> {
    return this.call('attachStage1', sid, o);
  }
  attachStage2(sid: number, o: Record<string, unknown>): Promise<{ domain: number }> {
    return this.call('attachStage2', sid, o);
  }
  attachNested(sid: number, o: Record<string, unknown>): Promise<{ domain: number }> {
    return this.call('attachNested', sid, o);
  }
  attachBypass(sid: number): Promise<{ domain: number }> {
    return this.call('attachBypass', sid);
  }
  detach(sid: number, ssid?: number): Promise<unknown> {
    return this.call('detach', sid, ssid);
  }
  enableAts(sid: number): Promise<unknown> {
    return this.call('enableAts', sid);
  }
  map(domain: number, iova: number, pa: number, size: number, prot: Record<string, boolean>): Promise<unknown> {
    return this.call('map', domain, iova, pa, size, prot);
  }
  unmap(domain: number, iova: number, size: number): Promise<unknown> {
    return this.call('unmap', domain, iova, size);
  }
  iovaToPhys(domain: number, iova: number): Promise<number | undefined> {
    return this.call('iovaToPhys', domain, iova);
  }
}

/** A guest CPU worker on the shared command queues. */
export class CpuHandle extends WorkerHandle {
  /** Run a self-contained tagged workload in the CPU (no message per command). */
  run(opts: RunOptions): Promise<RunResult> {
    return this.call('run', opts);
  }

  recover(): Promise<boolean> {
    return this.call('recover');
  }

  /** The CPU's queue, counters (cmpxchg retries, times owner, doorbells, polls, waits) and log. */
  state(): Promise<CpuState> {
    return this.call('state');
  }
}


/**
 * A running model: the SMMU hardware in one worker, a guest driver in another, one
 * SharedArrayBuffer between them. The main thread never blocks: it talks to the driver by
 * messages and reads shared memory directly.
 */
export class System {
  readonly board: Board;
  readonly mem: PhysMem;
  readonly features: SmmuFeatures;
  readonly policy: WaitPolicy;
  /** The main thread's own MMIO port (non-blocking writes via writeReg; reads are plain loads). */
  readonly regs: MmioPort;
  private readonly device: Worker;
  private readonly driverWorker: Worker | undefined;
  /** The worker threads, for diagnostics (resource usage, heap snapshots, fault injection in tests). */
  readonly threads: { readonly device: Worker; readonly driver: Worker | undefined };
  private readonly driverHandle: DriverHandle | undefined;
  /** Guest CPU workers sharing the command queues (SystemConfig.cpus). */
  readonly cpus: CpuHandle[] = [];
  /** How the CPUs' queues are laid out (undefined without CPUs). */
  queues: CpuQueuesLayout | undefined;
  private readonly cpuWorkers: Worker[] = [];
  /** Running VMs (SystemConfig.vms). */
  readonly vms: Vm[] = [];
  private readonly vmWorkers: Worker[] = [];
  private failure: Error | undefined;
  private stopping = false;
  private readonly traceLog: TraceEntry[] = [];
  private traceLost = 0;

  private constructor(board: Board, features: SmmuFeatures, policy: WaitPolicy, device: Worker, driverWorker: Worker | undefined) {
    this.board = board;
    this.mem = new PhysMem(board);
    this.features = features;
    this.policy = policy;
    this.regs = new MmioPort(board, 'smmu', policy);
    this.device = device;
    this.driverWorker = driverWorker;
    this.threads = { device, driver: driverWorker };
    const failed = () => this.failure ?? (this.stopping ? new Error('the system was stopped') : undefined);
    this.driverHandle = driverWorker !== undefined
      ? new DriverHandle(driverWorker, Math.max(10_000, 10 * policy.timeoutMs), failed)
      : undefined;
    this.watch(device, 'SMMU device');
    if (driverWorker !== undefined) this.watch(driverWorker, 'guest driver');
  }

  private watch(w: Worker, what: string): void {
    w.on('error', (e) => this.fail(new Error(`${what} worker crashed: ${e.message}`)));
    w.on('exit', (code) => {
      if (!this.stopping) this.fail(new Error(`${what} worker exited unexpectedly (code ${code})`));
    });
  }

  /** The guest driver (the host's, without VMs). Throws when the system was started with driver: false. */
  get driver(): DriverHandle {
    if (this.driverHandle === undefined) throw new Error('this system was started with driver: false: it has no guest driver');
    return this.driverHandle;
  }

  private fail(e: Error): void {
    if (this.failure !== undefined) return;
    this.failure = e;
    this.driverHandle?.failAll(e);
    for (const c of this.cpus) c.failAll(e);
    for (const v of this.vms) v.failAll(e);
  }

  /** The first worker failure, if any. */
  get error(): Error | undefined {
    return this.failure;
  }

  static async start(cfg: SystemConfig = {}): Promise<System> {
    const features = typeof cfg.features === 'string' ? parseFeatures(cfg.features) : validateFeatures(cfg.features ?? FULL_FEATURES);
    const policy = typeof cfg.policy === 'string' ? parseWaitPolicy(cfg.policy) : (cfg.policy ?? DEFAULT_WAIT);
    const traceRecords = cfg.trace === true ? 1 << 16 : cfg.trace === false || cfg.trace === undefined ? 0 : cfg.trace;
    const smmuBase = cfg.smmuBase ?? 0x0905_0000;
    const hostRamBytes = cfg.ramBytes ?? DEFAULT_RAM_BYTES;
    const cmdqv = cfg.cmdqv === true ? {} : cfg.cmdqv;
    const cmdqvWindow = cmdqv !== undefined ? cmdqvWindowConfig(cmdqv, cfg.cmdqvBase ?? DEFAULT_CMDQV_BASE) : undefined;
    const vmPlan = planVms(cfg.vms ?? [], {
      features, smmuBase, ramBase: cfg.ramBase ?? DEFAULT_RAM_BASE, hostRamBytes, ...(cmdqv && cmdqvWindow ? { cmdqv: { config: cmdqv, window: cmdqvWindow } } : {}),
    });
    const board = Board.create({
      windows: [{ name: 'smmu', base: smmuBase, bytes: smmuRegWindow(features) }, ...(cmdqvWindow ? [cmdqvWindow] : []), ...vmPlan.windows],
      ...(cfg.dmaPorts !== undefined ? { dmaPorts: cfg.dmaPorts } : {}),
      ...(cfg.ramBase !== undefined ? { ramBase: cfg.ramBase } : {}),
      ramBytes: vmPlan.ramBytes,
      traceRecords,
    });
    const devData: DeviceWorkerData = {
      sab: board.sab, layout: board.layout, features, policy, ...(cfg.translate ? { translate: cfg.translate } : {}), ...(cmdqv ? { cmdqv } : {}),
    };
    const device = spawnWorker(import.meta.url, '../device/worker', { workerData: devData });
    try {
      await workerReady(device, 'SMMU device');
    } catch (e) {
      await device.terminate();
      throw e;
    }

    let driverWorker: Worker | undefined;
    if (cfg.driver !== false) {
      const options: DriverOptions = {
        policy,
        syncMode: cfg.syncMode ?? (features.msi ? 'msi' : 'cons'),
        ram: { start: board.layout.ram.base, end: board.layout.ram.base + vmPlan.hostRamBytes },
        ...(cfg.cmdqLog2 !== undefined ? { cmdqLog2: cfg.cmdqLog2 } : {}),
        ...(cfg.eventqLog2 !== undefined ? { eventqLog2: cfg.eventqLog2 } : {}),
        ...(cfg.strtabLog2 !== undefined ? { strtabLog2: cfg.strtabLog2 } : {}),
        ...(cfg.strtabFormat !== undefined ? { strtabFormat: cfg.strtabFormat } : {}),
      };
      const drvData: DriverWorkerData = { sab: board.sab, layout: board.layout, options };
      driverWorker = spawnWorker(import.meta.url, './driver-worker', { workerData: drvData });
    }
    const sys = new System(board, features, policy, device, driverWorker);
    if (driverWorker !== undefined) {
      try {
        await sys.driver.probe();
        await sys.driver.reset();
        // The CMDQV's part of the host SMMU's reset (tegra241_cmdqv_hw_reset), before any VM.
        if (cmdqvWindow) await sys.driver.call('hostCmdqvReset', { window: cmdqvWindow.name, base: cmdqvWindow.base });
      } catch (e) {
        await sys.stop();
        throw new Error(`the guest driver could not bring the SMMU up: ${(e as Error).message}`);
      }
    }
    const cpus = cfg.cpus ?? 0;
    const vmCpus = vmPlan.vms.length;
    if (cpus + vmCpus > 0) {
      if (driverWorker === undefined) throw new Error('cpus and vms need the guest driver (driver: true) to reset the SMMU and share its queues');
      try {
        await sys.startCpus(cpus, vmCpus, cfg.cmdq ?? 'shared', cfg.ecmdqLog2);
      } catch (e) {
        await sys.stop();
        throw new Error(`the guest CPUs could not start: ${(e as Error).message}`);
      }
    }
    if (vmCpus > 0) {
      try {
        const failed = () => sys.failure ?? (sys.stopping ? new Error('the system was stopped') : undefined);
        sys.vms.push(...(await startVms(sys, vmPlan, {
          cpuBase: cpus,
          adopt: (w, what) => {
            sys.vmWorkers.push(w);
            sys.watch(w, what);
          },
          failed,
          ...(cmdqvWindow ? { cmdqv: { window: cmdqvWindow.name, base: cmdqvWindow.base } } : {}),
        })));
      } catch (e) {
        await sys.stop();
        throw new Error(`the VMs could not start: ${(e as Error).message}`);
      }
    }
    return sys;
  }

  /** Share the command queues (with `n` CPU workers and `vmCpus` VM serving workers) and spawn one worker per guest CPU. */
  private async startCpus(n: number, vmCpus: number, cmdq: 'shared' | 'ecmdq', ecmdqLog2: number | undefined): Promise<void> {
    if (!Number.isInteger(n) || n < 0 || n > 64) throw new RangeError(`cpus ${n} must be an integer in 0..64`);
    this.queues = await this.driver.call<CpuQueuesLayout>('shareQueues', { cpus: n + vmCpus, cmdq, ...(ecmdqLog2 !== undefined ? { ecmdqLog2 } : {}) });
    for (let i = 0; i < n; i++) {
      const data: CpuWorkerData = { role: 'cpu', sab: this.board.sab, layout: this.board.layout, queues: this.queues, cpu: i, policy: this.policy };
      const w = spawnWorker(import.meta.url, './cpu-worker', { workerData: data });
      this.cpuWorkers.push(w);
      this.watch(w, `guest CPU ${i}`);
      this.cpus.push(new CpuHandle(w, Math.max(30_000, 10 * this.policy.timeoutMs), () => this.failure ?? (this.stopping ? new Error('the system was stopped') : undefined)));
    }
  }

  /**
   * A DMA master's transaction through the SMMU (src/mem/dma.ts): translation by the device,
   * with its caches, faults and events. Does not block the main thread.
   */
  dma(req: DmaRequest, port = 0): Promise<DmaResult> {
    if (this.failure) return Promise.reject(this.failure);
    return translateAsync(this.board, this.regs, port, req, this.policy.timeoutMs * 5);
  }

  // -------------------------------------------------------------------------------------------
  // Registers, as a fuzzer or a buggy driver would touch them
  // -------------------------------------------------------------------------------------------

  private offsetOf(reg: string | number): number {
    if (typeof reg === 'number') return reg;
    const r = findRegister(reg);
    if (r === undefined) throw new RangeError(`no register named ${reg}`);
    return r.offset;
  }

  /** Read a 32-bit register (a plain load: reads have no side effects). */
  readReg(reg: string | number): number {
    return this.regs.peek32(this.offsetOf(reg));
  }

  /** Write a register (32-bit, or 64-bit when `value` is a bigint) and wait until the device applied it. */
  async writeReg(reg: string | number, value: number | bigint): Promise<void> {
    const off = this.offsetOf(reg);
    const deadline = Date.now() + this.policy.timeoutMs * 5;
    while (!(typeof value === 'bigint' ? this.regs.tryWrite64(off, value) : this.regs.tryWrite32(off, value))) {
      if (Date.now() > deadline) throw new Error(`MMIO FIFO stayed full for ${this.policy.timeoutMs * 5} ms; is the device running?`);
      await new Promise((r) => setImmediate(r));
    }
    const applied = this.board.window('smmu').fifo + FIFO.APPLIED;
    while (!this.regs.isApplied()) {
      if (this.failure) throw this.failure;
      if (Date.now() > deadline) throw new Error(`the device did not apply a write to 0x${off.toString(16)} within ${this.policy.timeoutMs * 5} ms`);
      const seen = Atomics.load(this.board.i32, applied);
      Atomics.add(this.board.i32, this.board.window('smmu').fifo + FIFO.SLEEPERS, 1);
      try {
        const r = Atomics.waitAsync(this.board.i32, applied, seen, 50);
        if (r.async) await r.value;
      } finally {
        Atomics.sub(this.board.i32, this.board.window('smmu').fifo + FIFO.SLEEPERS, 1);
      }
    }
  }

  /**
   * Wait, without blocking the main thread, until the register satisfies `ready`. Resolves with
   * the value; rejects after `timeoutMs` with the register's name and last value.
   */
  waitReg(reg: string | number, ready: (v: number) => boolean, timeoutMs = this.policy.timeoutMs * 5): Promise<number> {
    const off = this.offsetOf(reg);
    const w = this.board.window('smmu');
    const what = typeof reg === 'string' ? reg : `register 0x${off.toString(16)}`;
    return this.waitWord((w.offset >>> 2) + (off >>> 2), w.fifo + FIFO.SLEEPERS, ready, what, timeoutMs);
  }

  /** Wait until the 32-bit word of RAM at `pa` satisfies `ready` (an MSI target, a queue slot). */
  waitMem(pa: number, ready: (v: number) => boolean, timeoutMs = this.policy.timeoutMs * 5): Promise<number> {
    this.mem.check(pa, 4);
    return this.waitWord(this.mem.wordIndex(pa), HDR.RAM_SLEEPERS, ready, `memory at 0x${pa.toString(16)}`, timeoutMs);
  }

  /** Wait until a control-block word (HDR.SEV, HDR.IRQ_*) satisfies `ready`. */
  waitLine(line: number, ready: (v: number) => boolean, timeoutMs = this.policy.timeoutMs * 5): Promise<number> {
    const sleepers = line === HDR.SEV ? HDR.SEV_SLEEPERS : HDR.IRQ_SLEEPERS;
    return this.waitWord(line, sleepers, ready, `control word ${line}`, timeoutMs);
  }

  private async waitWord(index: number, sleepers: number, ready: (v: number) => boolean, what: string, timeoutMs: number): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = Atomics.load(this.board.u32, index);
      if (ready(v)) return v;
      if (this.failure) throw this.failure;
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last value 0x${v.toString(16)})`);
      Atomics.add(this.board.i32, sleepers, 1);
      try {
        const r = Atomics.waitAsync(this.board.i32, index, v | 0, 20);
        if (r.async) await r.value;
      } finally {
        Atomics.sub(this.board.i32, sleepers, 1);
      }
    }
  }

  /**
   * Make the device record an event (32 bytes, §7.3 layout) through the model's IMPLEMENTATION
   * DEFINED SIM_EVENT registers: the event queue then behaves exactly as for a detected fault
   * (enable, overflow, abort, interrupt).
   */
  async injectEvent(record: ArrayLike<number>): Promise<void> {
    if (record.length !== SIM_EVENT_WORDS) throw new RangeError(`an event record is ${SIM_EVENT_WORDS} words, not ${record.length}`);
    for (let k = 0; k < SIM_EVENT_WORDS; k++) await this.writeReg(SIM_REG.SIM_EVENT_DATA + 4 * k, record[k]! >>> 0);
    await this.writeReg(SIM_REG.SIM_EVENT_GO, 1);
  }

  // -------------------------------------------------------------------------------------------
  // Observation
  // -------------------------------------------------------------------------------------------

  /** Every command traced since start (needs `trace`); drains the shared ring first. */
  trace(): { entries: TraceEntry[]; lost: number } {
    const { records, lost } = drainTrace(this.board);
    for (const r of records) this.traceLog.push(traceEntry(r));
    this.traceLost += lost;
    return { entries: [...this.traceLog], lost: this.traceLost };
  }

  counter(name: CounterName): number {
    return this.board.counter(name);
  }

  counters(): Record<CounterName, number> {
    return this.board.counters();
  }

  get deviceState(): 'booting' | 'running' | 'stopped' | 'crashed' {
    const s = Atomics.load(this.board.i32, HDR.DEVICE_STATE);
    return s === DEVICE_STATE.RUNNING ? 'running' : s === DEVICE_STATE.STOPPED ? 'stopped' : s === DEVICE_STATE.CRASHED ? 'crashed' : 'booting';
  }

  /** Stop every worker: cleanly when they listen, by termination after a grace period otherwise. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.board.requestStop();
    const workers = [this.device, ...(this.driverWorker ? [this.driverWorker] : []), ...this.cpuWorkers, ...this.vmWorkers];
    this.driverWorker?.postMessage('close');
    for (const w of [...this.cpuWorkers, ...this.vmWorkers]) w.postMessage('close');
    await Promise.all(workers.map(async (w) => {
      if (w.threadId === -1) return;
      const exited = once(w, 'exit');
      const grace = new Promise((r) => setTimeout(r, 500).unref());
      if ((await Promise.race([exited.then(() => 'exited'), grace])) !== 'exited') await w.terminate();
    }));
    this.driverHandle?.failAll(new Error('the system was stopped'));
    for (const c of this.cpus) c.failAll(new Error('the system was stopped'));
    for (const v of this.vms) v.failAll(new Error('the system was stopped'));
  }
}
