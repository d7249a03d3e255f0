import { HDR, type Board } from '../mem/board.ts';
import { DMA_FLAGS, DMA_STATUS, DmaPortServer } from '../mem/dma.ts';
import { MmioTarget, type MmioWrite } from '../mem/mmio.ts';
import { PhysMem } from '../mem/phys.ts';
import type { WaitPolicy } from '../mem/wait.ts';
import * as ring from '../ring/index.ts';
import { coverMask, fieldGetNumber, getBits, mask32, type Field } from '../spec/bits.ts';
import { CERROR_ILL, CERROR_NONE } from '../spec/cerror.ts';
import { commandField, commandSpec, CS_SIG_IRQ, CS_SIG_SEV, OP } from '../spec/commands.ts';
import { EVENT_WORDS } from '../spec/events.ts';
import { ecmdqCount, OAS_BITS, type SmmuFeatures } from '../spec/features.ts';
import { idrFromFeatures } from '../spec/idr.ts';
import { IMPDEF_BASE, SIM_EVENT_WORDS, SIM_REG } from '../spec/impdef.ts';
import { checkCommand } from '../spec/legality.ts';
import { controlPageBaseValue, controlPageCount, controlPageRegisters, ecmdqRegisterAt, ecmdqRegisterOffset, findRegister, isPresent, modelResetValue, REG, REGISTERS, type RegisterSpec } from '../spec/registers.ts';
import { CommandQueue, type CommandExecutor } from './cmdq.ts';
import { EventOutcome, EventQueue } from './evtq.ts';
import { TRACE_QUEUE_CMDQ, TRACE_QUEUE_ECMDQ, TraceWriter } from './trace.ts';
import { Translator, type TranslatorOptions } from './translate.ts';

/**
 * The SMMU hardware model: the register file with its side effects, the command queue consumers
 * (CMDQ and ECMDQs), the event queue producer, translation for DMA masters. It runs in its own worker (worker.ts) and talks to software only
 * through the board: register writes arrive over the MMIO FIFO, register values, queue entries,
 * event records and MSIs go into shared memory.
 *
 * Register values live in the window and only this class writes them, so a read by software is a
 * plain load and always shows the architected value: a write to a read-only register, to RES0
 * bits or to a Guarded register while its guard is closed changes nothing visible (§6.2, §6.3).
 */

/**
 * What executing a legal command means beyond the queue mechanics. The hardware's backend is its
 * translator (caches, ATCs); a VMM's virtual SMMU forwards guest commands to the host instead.
 */
export interface CommandBackend {
  /**
   * A legal command other than CMD_SYNC, with no out-of-range parameter. Returns CERROR_NONE, or
   * a code that stops the queue on this command (a VMM reports an unconvertible guest command as
   * CERROR_ILL on the virtual queue).
   */
  command(q: CommandQueue, words: Uint32Array): number;
  /**
   * Before a CMD_SYNC completes: make everything before it in `q` complete. Returns CERROR_NONE
   * or the code that fails the sync (CERROR_ATC_INV_SYNC).
   */
  sync(q: CommandQueue): number;
}

/**
 * Hardware beside the SMMU proper with its own register window, served by the same device worker
 * (NVIDIA's CMDQV): its writes arrive on its window's MMIO FIFO; its queues join the device's
 * round robin through activate()/deactivate() and execute through SmmuDevice.execute.
 */
export interface DeviceExtension {
  readonly target: MmioTarget;
  applyWrite(w: MmioWrite): void;
}

export interface DeviceOptions {
  readonly features: SmmuFeatures;
  /** Extensions built once the device exists (they need it to execute commands). */
  readonly extensions?: (dev: SmmuDevice) => DeviceExtension[];
  /** Memory the device reaches: all of RAM (the hardware) or a VM's guest memory (a vSMMU). */
  readonly mem?: PhysMem;
  /** Command semantics; default: the translator's invalidations (the hardware). */
  readonly backend?: CommandBackend;
  /** TLB, configuration cache and ATC sizes, replacement, over-invalidation, ATC timeouts. */
  readonly translate?: TranslatorOptions;
  /** The register window this device serves (default 'smmu'). */
  readonly window?: string;
  /** How the device idles: spin on the FIFO, sleep, or spin then sleep. */
  readonly policy: WaitPolicy;
}

const R = REG;
/** Commands consumed before the device looks at the MMIO FIFO again. */
const CONSUME_CHUNK = 256;

function maskOf(...fields: Field[]): number {
  let m = 0;
  for (const f of fields) m |= mask32(f);
  return m >>> 0;
}

/** Writable bits of SMMU_ECMDQ_BASE<n>, per 32-bit half. */
const ECMDQ_BASE_MASK = coverMask(R.SMMU_ECMDQ_BASE.fields, 2);

/** CMD_SYNC fields, taken from the command table. */
const SYNC = commandSpec(OP.CMD_SYNC);
const F_CS = commandField(SYNC, 'CS')!;
const F_MSIDATA = commandField(SYNC, 'MSIData')!;
const F_MSIADDR = commandField(SYNC, 'MSIAddress')!;

export class SmmuDevice implements CommandExecutor {
  readonly regs: MmioTarget;
  readonly mem: PhysMem;
  readonly cmdq: CommandQueue;
  /** ECMDQ n is ecmdqs[n] (trace queue id TRACE_QUEUE_ECMDQ + n). */
  readonly ecmdqs: Ecmdq[];
  /** The CMDQ and every enabled ECMDQ: the queues the consumer serves, round robin. */
  private active: CommandQueue[];
  private next = 0;
  readonly evtq: EventQueue;
  /** Stream table and CD lookup, walks, TLB, configuration cache, ATCs. */
  readonly translator: Translator;
  private readonly backend: CommandBackend;
  private readonly extensions: DeviceExtension[];
  private readonly extensionTargets: MmioTarget[];
  private readonly dma: DmaPortServer;
  private readonly trace: TraceWriter;
  private readonly f: SmmuFeatures;
  /** Register spec by 32-bit word of the window (undefined: no register). */
  private readonly regAt: (RegisterSpec | undefined)[];
  /** Writable bits per 32-bit word of the window, for plain RW storage. */
  private readonly writable: Uint32Array;
  private readonly cr0Mask: number;
  private readonly irqCtrlMask: number;
  private readonly gerrorMask: number;
  private readonly cr2Mask: number;
  /** 2^OAS: physical addresses the SMMU can emit (IDR5.OAS). */
  private readonly oasSpan: number;
  private readonly take: MmioWrite = { off: 0, wide: false, dma: false, lo: 0, hi: 0 };

  constructor(readonly board: Board, readonly opts: DeviceOptions) {
    this.f = opts.features;
    this.regs = new MmioTarget(board, opts.window ?? 'smmu');
    this.mem = opts.mem ?? new PhysMem(board);
    this.trace = new TraceWriter(board);
    this.cmdq = new CommandQueue(TRACE_QUEUE_CMDQ, 'CMDQ', this.mem, this);
    this.ecmdqs = Array.from({ length: ecmdqCount(opts.features) }, (_, n) => new Ecmdq(n, new CommandQueue(TRACE_QUEUE_ECMDQ + n, `ECMDQ${n}`, this.mem, this)));
    this.active = [this.cmdq];
    this.evtq = new EventQueue(this.mem);
    this.translator = new Translator(this.mem, opts.features, opts.translate ?? {});
    const t = this.translator;
    this.backend = opts.backend ?? {
      command: (_q, w) => {
        t.invalidateCommand(w);
        return CERROR_NONE;
      },
      sync: () => t.syncCheck(),
    };
    this.dma = new DmaPortServer(board);
    this.extensions = opts.extensions?.(this) ?? [];
    this.extensionTargets = this.extensions.map((x) => x.target);
    for (const t of this.extensionTargets) {
      if (t.window.wake !== this.regs.window.wake) throw new Error(`window ${t.window.name} must wake with ${this.regs.window.name} (WindowConfig.wakeWith)`);
    }

    const f = this.f;
    const c = R.SMMU_CR0.f;
    this.cr0Mask = maskOf(c.SMMUEN, c.CMDQEN, c.EVENTQEN)
      | (f.pri ? mask32(c.PRIQEN) : 0)
      | (f.ats ? mask32(c.ATSCHK) : 0)
      | (f.vmw ? mask32(c.VMW) : 0)
      | (f.dpt ? mask32(c.DPT_WALK_EN) : 0);
    const i = R.SMMU_IRQ_CTRL.f;
    this.irqCtrlMask = maskOf(i.GERROR_IRQEN, i.EVENTQ_IRQEN) | (f.pri ? mask32(i.PRIQ_IRQEN) : 0);
    const g = R.SMMU_GERROR.f;
    this.gerrorMask = maskOf(g.CMDQ_ERR, g.EVENTQ_ABT_ERR, g.SFM_ERR)
      | (f.pri ? mask32(g.PRIQ_ABT_ERR) : 0)
      | (f.msi ? maskOf(g.MSI_CMDQ_ABT_ERR, g.MSI_EVENTQ_ABT_ERR, g.MSI_GERROR_ABT_ERR) : 0)
      | (f.msi && f.pri ? mask32(g.MSI_PRIQ_ABT_ERR) : 0)
      | (f.ecmdq ? mask32(g.CMDQP_ERR) : 0)
      | (f.dpt ? mask32(g.DPT_ERR) : 0);
    this.oasSpan = 2 ** OAS_BITS[f.oas]!;
    const c2 = R.SMMU_CR2.f;
    this.cr2Mask = mask32(c2.RECINVSID) | (f.btm ? mask32(c2.PTM) : 0) | (f.hyp ? mask32(c2.E2H) : 0);

    const words = this.regs.window.bytes >>> 2;
    this.regAt = new Array<RegisterSpec | undefined>(words);
    this.writable = new Uint32Array(words);
    for (const spec of REGISTERS) {
      if (spec.page === 'ecmdq' || spec.page === 'secure') continue;
      if (spec.offset + spec.width / 8 > this.regs.window.bytes) continue;
      if (!isPresent(spec, f)) continue;
      const m = coverMask(spec.fields, spec.width / 32);
      for (let h = 0; h < spec.width / 32; h++) {
        this.regAt[(spec.offset >>> 2) + h] = spec;
        this.writable[(spec.offset >>> 2) + h] = spec.access === 'RW' ? m[h]! : 0;
      }
    }
    this.reset();
  }

  // -------------------------------------------------------------------------------------------
  // Reset and register access
  // -------------------------------------------------------------------------------------------

  /** Load every register's reset value (§6.3: architected where given, the model's choice otherwise). */
  reset(): void {
    this.translator.reset();
    for (const spec of REGISTERS) {
      if (spec.page === 'ecmdq' || spec.page === 'secure') continue;
      if (spec.offset + spec.width / 8 > this.regs.window.bytes || !isPresent(spec, this.f)) continue;
      const v = modelResetValue(spec);
      if (spec.width === 64) {
        const b = BigInt(v);
        this.regs.set32(spec.offset, Number(b & 0xffff_ffffn));
        this.regs.set32(spec.offset + 4, Number(b >> 32n));
      } else {
        this.regs.set32(spec.offset, Number(v));
      }
    }
    const idr = idrFromFeatures(this.f);
    this.regs.set32(R.SMMU_IDR0.offset, idr.IDR0);
    this.regs.set32(R.SMMU_IDR1.offset, idr.IDR1);
    this.regs.set32(R.SMMU_IDR2.offset, idr.IDR2);
    this.regs.set32(R.SMMU_IDR3.offset, idr.IDR3);
    this.regs.set32(R.SMMU_IDR4.offset, idr.IDR4);
    this.regs.set32(R.SMMU_IDR5.offset, idr.IDR5);
    this.regs.set32(R.SMMU_IIDR.offset, idr.IIDR);
    this.regs.set32(R.SMMU_AIDR.offset, idr.AIDR);
    if (this.f.ecmdq) this.regs.set32(R.SMMU_IDR6.offset, idr.IDR6);
    // §6.3.49: each control page's BASE names where it is (an offset from page 0).
    for (let p = 0; p < controlPageCount(this.f); p++) {
      const base = controlPageRegisters(p).find((r) => r.width === 64)!;
      this.regs.set32(base.offset, controlPageBaseValue(p));
    }
  }

  private get32(off: number): number {
    return this.regs.get32(off);
  }

  private cr0ack(field: Field): number {
    return getBits([this.get32(R.SMMU_CR0ACK.offset)], field.lsb, field.width);
  }

  private cr0(field: Field): number {
    return getBits([this.get32(R.SMMU_CR0.offset)], field.lsb, field.width);
  }

  /** Apply one register write as it arrives from the bus. */
  applyWrite(w: MmioWrite): void {
    if (w.dma) {
      this.serveDma(w.off);
      return;
    }
    this.board.count('MMIO_WRITES');
    if (w.wide) {
      const spec = this.regAt[w.off >>> 2];
      // A 64-bit access is architected only for a 64-bit register at its own offset (§6.2); the
      // model applies any other as two 32-bit writes (one of the permitted CONSTRAINED
      // UNPREDICTABLE behaviours) and counts it.
      if (spec === undefined || spec.width !== 64 || spec.offset !== w.off) this.board.count('MMIO_BAD_WIDTH');
      this.write32(w.off, w.lo);
      this.write32(w.off + 4, w.hi);
    } else {
      this.write32(w.off, w.lo);
    }
  }

  private write32(off: number, v: number): void {
    // The doorbell first: the hottest write of all.
    if (off === R.SMMU_CMDQ_PROD.offset) {
      this.regs.set32(off, v & this.writable[off >>> 2]!);
      this.cmdq.prod = v & ring.ptrMask(19);
      return;
    }
    const spec = this.regAt[off >>> 2];
    if (spec === undefined) {
      this.writeUnmapped(off, v);
      return;
    }
    if (spec.access !== 'RW') {
      this.board.count('MMIO_RO_WRITES');
      return;
    }
    const v2 = v & this.writable[off >>> 2]!;
    switch (spec.name) {
      case 'SMMU_CR0':
        return this.writeCr0(v2);
      case 'SMMU_CR1':
        return this.writeCr1(v2);
      case 'SMMU_CR2':
        if (this.cr0(R.SMMU_CR0.f.SMMUEN) === 0 && this.cr0ack(R.SMMU_CR0.f.SMMUEN) === 0) this.regs.set32(off, v & this.cr2Mask);
        this.syncTranslationControl(false);
        return;
      case 'SMMU_GBPA':
        return this.writeGbpa(v2);
      case 'SMMU_IRQ_CTRL':
        this.regs.set32(off, v & this.irqCtrlMask);
        // The model takes no time to make earlier MSIs visible, so the ACK follows at once (§6.3.18).
        this.regs.set32(R.SMMU_IRQ_CTRLACK.offset, v & this.irqCtrlMask);
        return;
      case 'SMMU_GERRORN':
        return this.writeGerrorn(v & this.gerrorMask);
      case 'SMMU_GERROR_IRQ_CFG0':
      case 'SMMU_GERROR_IRQ_CFG1':
      case 'SMMU_GERROR_IRQ_CFG2':
        return this.guarded(off, v2, this.irqEnabled(R.SMMU_IRQ_CTRL.f.GERROR_IRQEN));
      case 'SMMU_EVENTQ_IRQ_CFG0':
      case 'SMMU_EVENTQ_IRQ_CFG1':
      case 'SMMU_EVENTQ_IRQ_CFG2':
        return this.guarded(off, v2, this.irqEnabled(R.SMMU_IRQ_CTRL.f.EVENTQ_IRQEN));
      case 'SMMU_PRIQ_IRQ_CFG0':
      case 'SMMU_PRIQ_IRQ_CFG1':
      case 'SMMU_PRIQ_IRQ_CFG2':
        return this.guarded(off, v2, this.irqEnabled(R.SMMU_IRQ_CTRL.f.PRIQ_IRQEN));
      case 'SMMU_STRTAB_BASE':
      case 'SMMU_STRTAB_BASE_CFG':
        return this.guarded(off, v2, this.enabledOrAck(R.SMMU_CR0.f.SMMUEN));
      case 'SMMU_CMDQ_BASE':
        if (this.enabledOrAck(R.SMMU_CR0.f.CMDQEN)) return;
        this.regs.set32(off, v2);
        // §6.3.28: after LOG2SIZE decreases RD reads as its truncation (the bits above the new
        // wrap bit are RAZ); after an increase the bits above the old wrap bit are UNKNOWN: 0 here.
        if (off === R.SMMU_CMDQ_BASE.offset) {
          this.cmdq.cons &= ring.ptrMask(this.queueLog2(off, this.f.cmdqs));
          this.publishCons(this.cmdq);
        }
        return;
      case 'SMMU_CMDQ_CONS':
        // §6.3.28: RW only while the queue is disabled. The ERR field is permitted to take the
        // written value or ignore it: the model ignores it (ERR keeps the last reason code).
        if (!this.enabledOrAck(R.SMMU_CR0.f.CMDQEN)) {
          // §6.3.28: RD bits above the wrap bit read as zero, for the LOG2SIZE in force now.
          this.cmdq.cons = v & ring.ptrMask(this.queueLog2(R.SMMU_CMDQ_BASE.offset, this.f.cmdqs));
          this.publishCons(this.cmdq);
        }
        return;
      case 'SMMU_EVENTQ_BASE':
        if (this.enabledOrAck(R.SMMU_CR0.f.EVENTQEN)) return;
        this.regs.set32(off, v2);
        // §6.3.95: WR is truncated when LOG2SIZE decreases (as RD of §6.3.28).
        if (off === R.SMMU_EVENTQ_BASE.offset) {
          this.evtq.prod &= ring.ptrMask(this.queueLog2(off, this.f.eventqs));
          this.publishEventqProd();
        }
        return;
      case 'SMMU_EVENTQ_PROD':
        // §6.3.95: RW only while the event queue is disabled (software initialises it).
        if (!this.enabledOrAck(R.SMMU_CR0.f.EVENTQEN)) {
          // §6.3.95: WR bits above the wrap bit read as zero.
          this.evtq.prod = v2 & ring.ptrMask(this.queueLog2(R.SMMU_EVENTQ_BASE.offset, this.f.eventqs));
          this.evtq.ovflg = getBits([v2], R.SMMU_EVENTQ_PROD.f.OVFLG.lsb, 1);
          this.publishEventqProd();
        }
        return;
      case 'SMMU_EVENTQ_CONS':
        this.regs.set32(off, v2);
        this.evtq.cons = v2 & mask32(R.SMMU_EVENTQ_CONS.f.RD);
        this.evtq.ovackflg = getBits([v2], R.SMMU_EVENTQ_CONS.f.OVACKFLG.lsb, 1);
        return;
      case 'SMMU_PRIQ_BASE':
        return this.guarded(off, v2, this.enabledOrAck(R.SMMU_CR0.f.PRIQEN));
      case 'SMMU_PRIQ_PROD':
        return this.guarded(off, v2, this.enabledOrAck(R.SMMU_CR0.f.PRIQEN));
      default:
        this.regs.set32(off, v2);
    }
  }

  /** Offsets no page 0/1 table row covers: ECMDQs, the model's IMPDEF registers, or RAZ/WI (counted). */
  private writeUnmapped(off: number, v: number): void {
    const e = this.ecmdqs.length > 0 ? ecmdqRegisterAt(this.f, off) : undefined;
    if (e !== undefined) {
      this.writeEcmdq(this.ecmdqs[e.n]!, e.spec.name, off, v);
      return;
    }
    if (off >= SIM_REG.SIM_EVENT_DATA && off < SIM_REG.SIM_EVENT_DATA + 4 * SIM_EVENT_WORDS) {
      this.regs.set32(off, v);
      return;
    }
    if (off === SIM_REG.SIM_EVENT_GO) {
      const rec = new Uint32Array(EVENT_WORDS);
      for (let k = 0; k < SIM_EVENT_WORDS; k++) rec[k] = this.get32(SIM_REG.SIM_EVENT_DATA + 4 * k);
      this.recordEvent(rec);
      return;
    }
    if (off === SIM_REG.SIM_INV_ALL) {
      this.translator.reset();
      return;
    }
    const known = findRegister(off);
    // Secure registers are RAZ/WI to Non-secure accesses (§6.2.1) and the page-0 aliases of the
    // page-1 queue registers are RAZ/WI in this model: architected, not counted as unknown.
    if (known === undefined && !(off >= IMPDEF_BASE && off < IMPDEF_BASE + 0x100)) this.board.count('MMIO_UNKNOWN_WRITES');
  }

  /** The effective LOG2SIZE of the queue whose BASE register is at `baseOff`: capped at the IDR1 maximum (§6.3.26). */
  private queueLog2(baseOff: number, max: number): number {
    return Math.min(getBits([this.get32(baseOff)], R.SMMU_CMDQ_BASE.f.LOG2SIZE.lsb, R.SMMU_CMDQ_BASE.f.LOG2SIZE.width), max);
  }

  private publishEventqProd(): void {
    const p = R.SMMU_EVENTQ_PROD.f;
    this.regs.set32(R.SMMU_EVENTQ_PROD.offset, ((this.evtq.ovflg << p.OVFLG.lsb) | this.evtq.prod) >>> 0);
  }

  private guarded(off: number, v: number, closed: boolean): void {
    // SMMUv3.2 and later IGNORE a write to a Guarded register while its guard is closed (§6.3.26).
    if (!closed) this.regs.set32(off, v);
  }

  /** A queue/translation enable or its ACK is 1: Guarded registers are read-only. */
  private enabledOrAck(field: Field): boolean {
    return this.cr0(field) !== 0 || this.cr0ack(field) !== 0;
  }

  private irqEnabled(field: Field): boolean {
    const ctrl = this.get32(R.SMMU_IRQ_CTRL.offset);
    const ack = this.get32(R.SMMU_IRQ_CTRLACK.offset);
    return ((ctrl | ack) & mask32(field)) !== 0;
  }

  private writeCr0(v: number): void {
    const c = R.SMMU_CR0.f;
    const old = this.get32(R.SMMU_CR0ACK.offset);
    const now = v & this.cr0Mask;
    this.regs.set32(R.SMMU_CR0.offset, now);
    const rose = now & ~old;
    const fell = old & ~now;
    if (rose & mask32(c.CMDQEN)) {
      const lo = this.get32(R.SMMU_CMDQ_BASE.offset);
      const hi = this.get32(R.SMMU_CMDQ_BASE.offset + 4);
      const f = R.SMMU_CMDQ_BASE.f;
      this.cmdq.configure(fieldGetNumber([lo, hi], f.ADDR), getBits([lo], f.LOG2SIZE.lsb, f.LOG2SIZE.width), this.f.cmdqs);
      this.cmdq.prod = this.get32(R.SMMU_CMDQ_PROD.offset) & mask32(R.SMMU_CMDQ_PROD.f.WR);
      // §6.3.28: a LOG2SIZE decreased since CONS was written truncates RD to the new size.
      this.cmdq.cons = this.get32(R.SMMU_CMDQ_CONS.offset) & ring.ptrMask(this.cmdq.log2);
      this.publishCons(this.cmdq);
      this.cmdq.enabled = true;
    }
    // §6.3.9.3: CMDQEN 1 -> 0 completes once consumption has stopped and CONS shows the entry
    // after the last consumed command. The consumer runs between register writes, so it has.
    if (fell & mask32(c.CMDQEN)) this.cmdq.enabled = false;
    if (rose & mask32(c.EVENTQEN)) {
      const lo = this.get32(R.SMMU_EVENTQ_BASE.offset);
      const hi = this.get32(R.SMMU_EVENTQ_BASE.offset + 4);
      const f = R.SMMU_EVENTQ_BASE.f;
      this.evtq.configure(fieldGetNumber([lo, hi], f.ADDR), getBits([lo], f.LOG2SIZE.lsb, f.LOG2SIZE.width), this.f.eventqs);
      // §6.3.95: WR truncated to the size in force when the queue is enabled.
      this.evtq.prod &= ring.ptrMask(this.evtq.log2);
      this.publishEventqProd();
      this.evtq.enabled = true;
    }
    if (fell & mask32(c.EVENTQEN)) this.evtq.enabled = false;
    this.regs.set32(R.SMMU_CR0ACK.offset, now);
    this.syncTranslationControl((rose & mask32(c.SMMUEN)) !== 0);
  }

  private writeCr1(v: number): void {
    const c = R.SMMU_CR1.f;
    const e = R.SMMU_CR0.f;
    const old = this.get32(R.SMMU_CR1.offset);
    const tableMask = maskOf(c.TABLE_SH, c.TABLE_OC, c.TABLE_IC);
    const queueMask = maskOf(c.QUEUE_SH, c.QUEUE_OC, c.QUEUE_IC);
    let now = old;
    // §6.3.11: TABLE_* are Guarded by SMMUEN, QUEUE_* by every queue enable.
    if (!this.enabledOrAck(e.SMMUEN)) now = (now & ~tableMask) | (v & tableMask);
    const ecmdqOn = this.ecmdqs.some((x) => x.en || x.enack);
    if (!this.enabledOrAck(e.CMDQEN) && !this.enabledOrAck(e.EVENTQEN) && !this.enabledOrAck(e.PRIQEN) && !ecmdqOn) {
      now = (now & ~queueMask) | (v & queueMask);
    }
    this.regs.set32(R.SMMU_CR1.offset, now >>> 0);
  }

  private writeGbpa(v: number): void {
    // §6.3.14: a write takes effect only with Update = 1; the model completes it at once, so
    // Update reads 0 again by the time software can look. A write without Update is IGNORED.
    const update = mask32(R.SMMU_GBPA.f.Update);
    if ((v & update) === 0) return;
    this.regs.set32(R.SMMU_GBPA.offset, v & ~update);
    this.syncTranslationControl(false);
  }

  /**
   * Give the translator the register state translation depends on. The stream table registers
   * are Guarded by SMMUEN (§6.3.24-25), so they are taken when SMMUEN rises and stay fixed while
   * it is set.
   */
  private syncTranslationControl(smmuEnRose: boolean): void {
    const cr0ack = this.get32(R.SMMU_CR0ACK.offset);
    const cr2 = this.get32(R.SMMU_CR2.offset);
    const c = R.SMMU_CR0.f;
    const c2 = R.SMMU_CR2.f;
    if (smmuEnRose) {
      this.translator.setStreamTable(this.get32(R.SMMU_STRTAB_BASE.offset), this.get32(R.SMMU_STRTAB_BASE.offset + 4), this.get32(R.SMMU_STRTAB_BASE_CFG.offset));
    }
    this.translator.setControl({
      smmuEn: getBits([cr0ack], c.SMMUEN.lsb, 1) === 1,
      atsChk: getBits([cr0ack], c.ATSCHK.lsb, 1) === 1,
      vmw: getBits([cr0ack], c.VMW.lsb, c.VMW.width),
      recInvSid: getBits([cr2], c2.RECINVSID.lsb, 1) === 1,
      e2h: getBits([cr2], c2.E2H.lsb, 1) === 1,
      gbpaAbort: getBits([this.get32(R.SMMU_GBPA.offset)], R.SMMU_GBPA.f.ABORT.lsb, 1) === 1,
    });
  }

  private writeGerrorn(v: number): void {
    this.regs.set32(R.SMMU_GERRORN.offset, v);
    // §7.1: acknowledging CMDQ_ERR (GERRORN.CMDQ_ERR == GERROR.CMDQ_ERR) lets the queue resume at
    // CONS.RD; nothing else restarts it (writing PROD is not needed, CMDQEN does not acknowledge).
    if (this.cmdq.errActive && !this.gerrorActive(R.SMMU_GERROR.f.CMDQ_ERR)) this.cmdq.errActive = false;
  }

  private gerrorActive(field: Field): boolean {
    return ((this.get32(R.SMMU_GERROR.offset) ^ this.get32(R.SMMU_GERRORN.offset)) & mask32(field)) !== 0;
  }

  /**
   * §7.2: activate a global error by toggling its GERROR bit, unless it is already active, and
   * raise the GERROR interrupt.
   */
  activateGerror(field: Field): void {
    if (this.gerrorActive(field)) return;
    this.regs.set32(R.SMMU_GERROR.offset, this.get32(R.SMMU_GERROR.offset) ^ mask32(field));
    if (this.irqEnabled(R.SMMU_IRQ_CTRL.f.GERROR_IRQEN)) {
      // A GERROR MSI that aborts is recorded in MSI_GERROR_ABT_ERR, which sends no further MSI.
      if (!this.interrupt(R.SMMU_GERROR_IRQ_CFG0.offset, R.SMMU_GERROR_IRQ_CFG1.offset, HDR.IRQ_GERROR) && this.f.msi) {
        const g = R.SMMU_GERROR.f.MSI_GERROR_ABT_ERR;
        if (!this.gerrorActive(g)) this.regs.set32(R.SMMU_GERROR.offset, this.get32(R.SMMU_GERROR.offset) ^ mask32(g));
      }
    }
  }

  /**
   * Send an interrupt (§3.18): an MSI of CFG1.DATA to CFG0.ADDR when MSIs are implemented and
   * ADDR is not 0, else the wired line. Returns false when the MSI write aborted.
   */
  private interrupt(cfg0: number, cfg1: number, line: number): boolean {
    const a = R.SMMU_GERROR_IRQ_CFG0.f.ADDR;
    const addr = this.f.msi ? fieldGetNumber([this.get32(cfg0), this.get32(cfg0 + 4)], a) : 0;
    if (addr === 0) {
      this.board.raiseIrq(line);
      return true;
    }
    this.board.count('MSI_WRITES');
    return this.mem.storeNotify32(addr, this.get32(cfg1));
  }

  // -------------------------------------------------------------------------------------------
  // Command execution (CommandExecutor)
  // -------------------------------------------------------------------------------------------

  execute(q: CommandQueue, w: Uint32Array, next: number): number {
    const verdict = checkCommand(w, this.f);
    if (!verdict.ok) {
      this.board.count('COMMAND_ERRORS');
      return CERROR_ILL;
    }
    const op = w[0]! & 0xff;
    if (op === OP.CMD_SYNC) {
      // §4.5.1, §7.1: an ATC invalidation that did not complete fails the next CMD_SYNC, which
      // is then not consumed and signals nothing; software re-issues it after recovery.
      const err = this.backend.sync(q);
      if (err !== CERROR_NONE) {
        this.board.count('COMMAND_ERRORS');
        return err;
      }
      this.board.count('COMMANDS_CONSUMED');
      return CERROR_NONE;
    }
    // Out-of-range parameters are CONSTRAINED UNPREDICTABLE (§4.1.7); the model's documented
    // choice is that such a command is consumed with no effect (docs/fidelity.md).
    if (verdict.outOfRange.length === 0) {
      const err = this.backend.command(q, w);
      if (err !== CERROR_NONE) {
        this.board.count('COMMAND_ERRORS');
        return err;
      }
    }
    this.board.count('COMMANDS_CONSUMED');
    return CERROR_NONE;
  }

  /**
   * §4.7.3 CMD_SYNC: everything before it in this queue has taken effect (the consumer is in
   * order, and execute() asked the backend). CONS passes the sync before the completion signal
   * is observable.
   */
  completeSync(q: CommandQueue, w: Uint32Array): void {
    this.board.count('CMD_SYNCS');
    q.publish();
    const cs = getBits(w, F_CS.lsb, F_CS.width);
    if (cs === CS_SIG_IRQ) {
      // §4.7.3: an MSI is written when the MSIAddress field is non-zero, to the address truncated
      // to the OAS (§3.4.3): a field with only bits above the OAS set aims at address 0.
      const field = this.f.msi ? fieldGetNumber(w, F_MSIADDR) : 0;
      if (field !== 0) {
        const addr = field % this.oasSpan;
        this.board.count('MSI_WRITES');
        if (!this.mem.storeNotify32(addr, getBits(w, F_MSIDATA.lsb, F_MSIDATA.width))) {
          // The sync is still complete; the lost MSI is a global error (§7.2, GERROR.MSI_CMDQ_ABT_ERR).
          this.activateGerror(R.SMMU_GERROR.f.MSI_CMDQ_ABT_ERR);
        }
      }
      // The wired CMD_SYNC interrupt pulses whatever the MSI does (§4.7.3).
      this.board.raiseIrq(HDR.IRQ_CMD_SYNC);
    } else if (cs === CS_SIG_SEV) {
      this.sendEvent();
    }
  }

  /** A WFE wake-up event (§4.1, §4.7.3), when IDR0.SEV says the SMMU sends them. */
  private sendEvent(): void {
    if (!this.f.sev) return;
    Atomics.add(this.board.i32, HDR.SEV, 1);
    if (Atomics.load(this.board.i32, HDR.SEV_SLEEPERS) !== 0) Atomics.notify(this.board.i32, HDR.SEV);
  }

  notFull(_q: CommandQueue): void {
    this.sendEvent();
  }

  publishCons(q: CommandQueue): void {
    if (q.id !== TRACE_QUEUE_CMDQ) {
      this.publishEcmdqCons(this.ecmdqs[q.id - TRACE_QUEUE_ECMDQ]!);
      return;
    }
    const f = R.SMMU_CMDQ_CONS.f;
    this.regs.set32(R.SMMU_CMDQ_CONS.offset, ((q.err << f.ERR.lsb) & mask32(f.ERR)) | q.cons);
  }

  raiseError(q: CommandQueue, _code: number): void {
    if (q.id === TRACE_QUEUE_CMDQ) {
      // §7.1: CONS.ERR holds the code before GERROR.CMDQ_ERR becomes visible.
      this.publishCons(q);
      this.activateGerror(R.SMMU_GERROR.f.CMDQ_ERR);
      return;
    }
    // §3.5.6.3: toggle CONS.ERR with ERR_REASON and RD on the failing command, then report in
    // GERROR.CMDQP_ERR if that is not already active. The queue halts while ERR != PROD.ERRACK.
    const e = this.ecmdqs[q.id - TRACE_QUEUE_ECMDQ]!;
    e.err ^= 1;
    this.publishEcmdqCons(e);
    this.activateGerror(R.SMMU_GERROR.f.CMDQP_ERR);
  }

  // -------------------------------------------------------------------------------------------
  // ECMDQs (§3.5.6, §6.3.107-109)
  // -------------------------------------------------------------------------------------------

  private ecmdqOffset(e: Ecmdq, which: 'BASE' | 'PROD' | 'CONS'): number {
    return ecmdqRegisterOffset(this.f, e.n, which);
  }

  private publishEcmdqCons(e: Ecmdq): void {
    const f = R.SMMU_ECMDQ_CONS.f;
    const v = (e.enack << f.ENACK.lsb) | ((e.q.err << f.ERR_REASON.lsb) & mask32(f.ERR_REASON)) | (e.err << f.ERR.lsb) | e.q.cons;
    this.regs.set32(this.ecmdqOffset(e, 'CONS'), v >>> 0);
  }

  private writeEcmdq(e: Ecmdq, name: string, off: number, v: number): void {
    const disabled = !e.en && !e.enack;
    switch (name) {
      case 'SMMU_ECMDQ_BASE': {
        // §6.3.107: RW only while the queue is disabled (EN == ENACK == 0).
        if (!disabled) return;
        const half = (off - this.ecmdqOffset(e, 'BASE')) >>> 2;
        this.regs.set32(off, v & ECMDQ_BASE_MASK[half]!);
        // §6.3.109: RD truncated when LOG2SIZE decreases (as SMMU_CMDQ_CONS, §6.3.28).
        if (half === 0) {
          e.q.cons &= ring.ptrMask(this.queueLog2(off, this.f.cmdqs));
          this.publishEcmdqCons(e);
        }
        return;
      }
      case 'SMMU_ECMDQ_CONS': {
        // §6.3.109: RW only while disabled; ENACK is the SMMU's. Software may set RD (and ERR,
        // to make it consistent with PROD.ERRACK before enabling, §3.5.6.3).
        if (!disabled) return;
        const f = R.SMMU_ECMDQ_CONS.f;
        // §6.3.109: RD bits above the wrap bit read as zero.
        e.q.cons = v & ring.ptrMask(this.queueLog2(this.ecmdqOffset(e, 'BASE'), this.f.cmdqs));
        e.err = getBits([v], f.ERR.lsb, 1);
        this.publishEcmdqCons(e);
        return;
      }
      case 'SMMU_ECMDQ_PROD': {
        // §6.3.108: RW when EN == ENACK (the model completes transitions at once, so always).
        const f = R.SMMU_ECMDQ_PROD.f;
        const now = v & maskOf(f.EN, f.ERRACK, f.WR);
        this.regs.set32(off, now);
        const en = getBits([now], f.EN.lsb, 1) === 1;
        e.errack = getBits([now], f.ERRACK.lsb, 1);
        e.q.prod = now & mask32(f.WR);
        if (en && !e.en) {
          const base = this.ecmdqOffset(e, 'BASE');
          const b = R.SMMU_ECMDQ_BASE.f;
          const lo = this.get32(base);
          const hi = this.get32(base + 4);
          e.q.configure(fieldGetNumber([lo, hi], b.ADDR), getBits([lo], b.LOG2SIZE.lsb, b.LOG2SIZE.width), this.f.cmdqs);
          e.q.cons &= ring.ptrMask(e.q.log2);
          e.q.enabled = true;
          this.activate(e.q);
        } else if (!en && e.en) {
          // §3.5.6.2: ENACK = 0 once consumption has stopped (it has: the consumer runs between
          // register writes), even if ERRACK != ERR.
          e.q.enabled = false;
          this.deactivate(e.q);
        }
        e.en = en;
        e.enack = en ? 1 : 0;
        // The queue consumes only while ERRACK == ERR (§3.5.6.3). Enabling with a mismatch is
        // CONSTRAINED UNPREDICTABLE: the model keeps the queue halted until they match.
        e.q.errActive = e.errack !== e.err;
        this.publishEcmdqCons(e);
        return;
      }
    }
  }

  traced(q: CommandQueue, ptr: number, words: Uint32Array, outcome: number): void {
    this.trace.record(q.id, ptr, words, outcome);
  }

  // -------------------------------------------------------------------------------------------
  // DMA (src/mem/dma.ts)
  // -------------------------------------------------------------------------------------------

  /** Translate one DMA master's transaction and answer on its port; record its fault, if any. */
  private serveDma(port: number): void {
    if (port >= this.board.layout.dma.ports) return; // no such port: nobody can be waiting on it
    const r = this.dma.request(port);
    const t = this.translator.translateWords(r.sid, r.ssid, r.iova % 0x1_0000_0000, Math.floor(r.iova / 0x1_0000_0000), r.access);
    this.board.count('DMA_TRANSACTIONS');
    if (t.ok) {
      const flags = (t.cached ? DMA_FLAGS.TLB_HIT : 0) | (t.source === 'bypass' ? DMA_FLAGS.BYPASS : 0);
      this.dma.respond(port, r.seq, DMA_STATUS.OK, t.pa, 0, flags);
      return;
    }
    this.board.count('DMA_FAULTS');
    let event = 0;
    if (t.event !== undefined) {
      this.recordEvent(t.event);
      event = t.event[0]! & 0xff;
    }
    this.dma.respond(port, r.seq, t.abort ? DMA_STATUS.ABORT : DMA_STATUS.RAZ_WI, 0, event, 0);
  }

  // -------------------------------------------------------------------------------------------
  // Events
  // -------------------------------------------------------------------------------------------

  /** Record an event (§7.2–§7.4). */
  recordEvent(record: Uint32Array): void {
    // §7.2.1: while GERROR.EVENTQ_ABT_ERR is active the queue is not writable; events are lost.
    if (this.gerrorActive(R.SMMU_GERROR.f.EVENTQ_ABT_ERR)) {
      this.board.count('EVENTS_DROPPED');
      return;
    }
    const wasEmpty = this.evtq.empty;
    const outcome = this.evtq.write(record);
    const p = R.SMMU_EVENTQ_PROD.f;
    switch (outcome) {
      case EventOutcome.Written:
        this.board.count('EVENTS_WRITTEN');
        this.publishEventqProd();
        // §3.18.2: the event queue interrupt fires when the queue becomes non-empty.
        if (wasEmpty && this.irqEnabled(R.SMMU_IRQ_CTRL.f.EVENTQ_IRQEN)) {
          if (!this.interrupt(R.SMMU_EVENTQ_IRQ_CFG0.offset, R.SMMU_EVENTQ_IRQ_CFG1.offset, HDR.IRQ_EVENTQ)) {
            this.activateGerror(R.SMMU_GERROR.f.MSI_EVENTQ_ABT_ERR);
          }
        }
        return;
      case EventOutcome.Overflow:
        this.board.count('EVENTS_DROPPED');
        this.publishEventqProd();
        return;
      case EventOutcome.Abort:
        this.board.count('EVENTS_DROPPED');
        this.activateGerror(R.SMMU_GERROR.f.EVENTQ_ABT_ERR);
        return;
      case EventOutcome.Disabled:
        this.board.count('EVENTS_DROPPED');
        return;
    }
  }

  // -------------------------------------------------------------------------------------------
  // The loop
  // -------------------------------------------------------------------------------------------

  /**
   * Apply every register write waiting on the bus, then consume commands, a chunk at a time so
   * that new writes (a GERRORN acknowledgement, a CR0 change, more doorbells) are seen promptly.
   * Returns true when anything happened.
   */
  service(): boolean {
    let worked = false;
    for (;;) {
      let took = false;
      while (this.regs.take(this.take)) {
        this.applyWrite(this.take);
        took = true;
      }
      if (took) this.regs.done();
      for (const x of this.extensions) {
        let any = false;
        while (x.target.take(this.take)) {
          x.applyWrite(this.take);
          any = true;
        }
        if (any) {
          x.target.done();
          took = true;
        }
      }
      const n = this.consumeRoundRobin();
      if (!took && n === 0) return worked;
      worked = true;
    }
  }

  /** Serve `q` from now on (an ECMDQ or an extension's queue that software enabled). */
  activate(q: CommandQueue): void {
    if (!this.active.includes(q)) this.active.push(q);
  }

  /** Stop serving `q` (disabled). Consumption has stopped: the consumer runs between writes. */
  deactivate(q: CommandQueue): void {
    this.active = this.active.filter((x) => x !== q);
  }

  /**
   * One chunk from each runnable queue, starting after the queue served first last time, so no
   * queue starves another (§3.5.6.1 permits any schedule; round robin is the fair one).
   */
  private consumeRoundRobin(): number {
    const qs = this.active;
    const k = qs.length;
    let n = 0;
    for (let i = 0; i < k; i++) {
      const q = qs[(this.next + i) % k]!;
      if (q.runnable) n += q.consume(CONSUME_CHUNK);
    }
    this.next = k > 0 ? (this.next + 1) % k : 0;
    return n;
  }

  /** Run until the board asks to stop. Idles by the policy: spin, sleep, or spin then sleep. */
  run(): void {
    const { mode, spin } = this.opts.policy;
    const sliceMs = this.opts.policy.sliceMs ?? 50;
    let idle = 0;
    while (!this.board.stopRequested) {
      if (this.service()) {
        idle = 0;
        continue;
      }
      if (mode === 'spin' || (mode === 'hybrid' && idle < spin)) {
        idle++;
        // Re-check the stop flag now and then without a load per spin.
        if ((idle & 1023) === 0 && this.board.stopRequested) break;
        continue;
      }
      this.board.count('DEVICE_SLEEPS');
      if (this.regs.sleep(sliceMs, this.extensionTargets)) {
        this.board.count('DEVICE_WAKEUPS');
        idle = 0;
      } else {
        // Nothing arrived during the slice: sleep again rather than spin again.
        idle = spin;
      }
    }
  }
}

/** An ECMDQ's state beyond its consumer: the enable handshake and the error toggle (§3.5.6). */
class Ecmdq {
  /** PROD.EN as software last wrote it. */
  en = false;
  /** CONS.ENACK. */
  enack = 0;
  /** CONS.ERR: toggled by the SMMU on each error. */
  err = 0;
  /** PROD.ERRACK as software last wrote it. */
  errack = 0;

  constructor(readonly n: number, readonly q: CommandQueue) {}
}
