/**
 * Enhanced Command Queues (SMMUv3.3, IHI0070 G.b §3.5.6), driver side: one command queue per
 * CPU, each with its own BASE/PROD/CONS in a Command queue control page, so that CPUs do not
 * contend for one queue. Linux has no merged ECMDQ support; the never-merged series (2021-2024,
 * shared/reference/driver-and-qemu.md A3) is the model for what a driver does:
 *
 * - probe: SMMU_IDR1.ECMDQ, then SMMU_IDR6 for the geometry (2^LOG2NUMP control pages of
 *   2^LOG2NUMQ queues, §6.3.45), then each SMMU_CMDQ_CONTROL_PAGE_BASE<n> (§6.3.49): refuse
 *   PRESET == 0 (the series supports only the register form), a granule other than 64KB, and
 *   pages that are not contiguous;
 * - enable (the CPU that resets the SMMU, for every queue in use): with EN == ENACK == 0 write
 *   SMMU_ECMDQ_BASE, PROD and CONS (only then are they writable, §6.3.107-109), then PROD with
 *   EN = 1 and ERRACK = CONS.ERR (consistent, §3.5.6.3), and wait for CONS.ENACK (§3.5.6.2);
 * - insert: a CPU that owns its queue is its only producer: no reservation protocol, a local
 *   prod, one PROD write per batch (the series' first version did this; later ones ran the
 *   multi-producer insertion uncontended). Every PROD write carries EN = 1 and the current
 *   ERRACK. CPUs that outnumber the ECMDQs share one with the multi-producer algorithm
 *   (cmdq-mp.ts);
 * - CMD_SYNC: synchronises only its own queue (§3.5.6.1), so a CPU waits on its own queue:
 *   MSI on the CMD_SYNC's own slot, or SMMU_ECMDQ_CONS;
 * - errors (§3.5.6.3): the SMMU toggles CONS.ERR, sets ERR_REASON, stops that queue only, and
 *   activates GERROR.CMDQP_ERR if it was inactive. The CPU that owns the queue sees
 *   CONS.ERR != its ERRACK, fixes the command at CONS.RD as for CERROR_ILL on the CMDQ, writes
 *   PROD with ERRACK := CONS.ERR, and acknowledges GERROR.CMDQP_ERR. (The series' GERROR
 *   handler walked every queue and sent an IPI to the owner for the PROD write; here the owner
 *   notices by itself, which is the same write by the same CPU.)
 */

import type { PhysMem } from '../mem/phys.ts';
import type { WaitPolicy } from '../mem/wait.ts';
import * as ring from '../ring/index.ts';
import { fieldGetNumber, getBits } from '../spec/bits.ts';
import { COMMAND_BYTES, COMMAND_WORDS } from '../spec/commands.ts';
import {
  CMDQGS_64KB,
  REG,
  SMMU_PAGE_SIZE,
  controlPageRegisters,
  encode64,
  regGet,
  regSet,
} from '../spec/registers.ts';
import { writeMsiSync, writeSlot } from './cmdq.ts';
import {
  GERROR_CMDQP_ERR,
  ackGerror,
  ecmdqProdValue,
  fixCommandError,
  waitForSync,
  type CpuContext,
  type Producer,
  type QueueDesc,
} from './cmdq-mp.ts';
import type { RegisterPort } from './port.ts';

const IDR1_ECMDQ = REG.SMMU_IDR1.f.ECMDQ;
const IDR6F = REG.SMMU_IDR6.f;
const CPBASE = REG.SMMU_CMDQ_CONTROL_PAGE_BASE.f;
const EPROD = REG.SMMU_ECMDQ_PROD.f;
const ECONS = REG.SMMU_ECMDQ_CONS.f;
const CMD_WORDS_LOG2 = Math.log2(COMMAND_WORDS);
/** Queue bases are aligned to max(queue bytes, 32) (§6.3.26, which §6.3.107 refers to). */
export const QUEUE_MIN_ALIGN = 32;
/** The series sizes each ECMDQ at 2^8 entries (ECMDQ_MAX_SZ_SHIFT), capped by IDR1.CMDQS. */
export const ECMDQ_DEFAULT_LOG2 = 8;

function hex(v: number): string {
  return `0x${(v >>> 0).toString(16).padStart(8, '0')}`;
}

/** What probe found: the ECMDQs and where their registers are, or why there are none to use. */
export interface EcmdqProbe {
  /** ECMDQs usable (0 when `reason` says why not). */
  readonly count: number;
  readonly log2NumP: number;
  readonly log2NumQ: number;
  /** Offset (from Page 0) of each control page, from SMMU_CMDQ_CONTROL_PAGE_BASE<n>.ADDR. */
  readonly pages: readonly number[];
  /** Bytes between the ECMDQs of a page: 64KB / 2^LOG2NUMQ (§6.2.5). */
  readonly stride: number;
  readonly reason?: string;
}

/** The register offsets of one ECMDQ in the SMMU window. */
export interface EcmdqRegs {
  readonly baseOff: number;
  readonly prodOff: number;
  readonly consOff: number;
}

/**
 * Read SMMU_IDR1.ECMDQ, SMMU_IDR6 and every SMMU_CMDQ_CONTROL_PAGE_BASE<n> (§6.3.2, §6.3.45,
 * §6.3.49). Never writes.
 */
export function probeEcmdqs(port: RegisterPort): EcmdqProbe {
  const none = (reason: string, log2NumP = 0, log2NumQ = 0): EcmdqProbe => ({ count: 0, log2NumP, log2NumQ, pages: [], stride: 0, reason });
  if (regGet(port.read32(REG.SMMU_IDR1.offset), IDR1_ECMDQ) === 0) return none('SMMU_IDR1.ECMDQ == 0: the SMMU has no ECMDQs');
  const idr6 = port.read32(REG.SMMU_IDR6.offset);
  const log2NumP = regGet(idr6, IDR6F.CMDQ_CONTROL_PAGE_LOG2NUMP);
  const log2NumQ = regGet(idr6, IDR6F.CMDQ_CONTROL_PAGE_LOG2NUMQ);
  const pages: number[] = [];
  for (let p = 0; p < 1 << log2NumP; p++) {
    const spec = controlPageRegisters(p).find((r) => r.name === `SMMU_CMDQ_CONTROL_PAGE_BASE${p}`)!;
    const w = [port.read32(spec.offset), port.read32(spec.offset + 4)];
    if (getBits(w, CPBASE.CMDQ_CONTROL_PAGE_PRESET.lsb, CPBASE.CMDQ_CONTROL_PAGE_PRESET.width) === 0) {
      return none(`${spec.name}.CMDQ_CONTROL_PAGE_PRESET == 0: ECMDQs in memory are not supported`, log2NumP, log2NumQ);
    }
    const gs = getBits(w, CPBASE.CMDQGS.lsb, CPBASE.CMDQGS.width);
    if (gs !== CMDQGS_64KB) return none(`${spec.name}.CMDQGS == ${gs}: only the 64KB granule is defined`, log2NumP, log2NumQ);
    const off = fieldGetNumber(w, CPBASE.ADDR);
    if (p > 0 && off !== pages[p - 1]! + SMMU_PAGE_SIZE) {
      return none(`control page ${p} at 0x${off.toString(16)} does not follow page ${p - 1}: the pages are not contiguous`, log2NumP, log2NumQ);
    }
    pages.push(off);
  }
  return { count: 1 << (log2NumP + log2NumQ), log2NumP, log2NumQ, pages, stride: SMMU_PAGE_SIZE >>> log2NumQ };
}

/** Where ECMDQ `n` (page n >> LOG2NUMQ, queue n & (2^LOG2NUMQ - 1)) has its registers (§6.2.5). */
export function ecmdqRegs(info: EcmdqProbe, n: number): EcmdqRegs {
  if (!Number.isInteger(n) || n < 0 || n >= info.count) throw new RangeError(`ECMDQ ${n} does not exist (${info.count} ECMDQs)`);
  const slot = info.pages[n >>> info.log2NumQ]! + (n & ((1 << info.log2NumQ) - 1)) * info.stride;
  return {
    baseOff: slot + REG.SMMU_ECMDQ_BASE.offset,
    prodOff: slot + REG.SMMU_ECMDQ_PROD.offset,
    consOff: slot + REG.SMMU_ECMDQ_CONS.offset,
  };
}

/** The two halves of a 64-bit register value (API edge: queue set-up only). */
function halves(v: bigint): [number, number] {
  return [Number(v & 0xffff_ffffn), Number((v >> 32n) & 0xffff_ffffn)];
}

/**
 * Program and enable ECMDQ `n` (§3.5.6.2): disable it first if it is enabled, write BASE, PROD
 * and CONS while EN == ENACK == 0, then PROD.EN = 1 with ERRACK = CONS.ERR, and wait for
 * CONS.ENACK == 1. Returns the ERRACK the queue runs with. Throws WaitTimeout when ENACK does
 * not follow EN.
 */
export function enableEcmdq(port: RegisterPort, n: number, regs: EcmdqRegs, base: number, log2: number, policy: WaitPolicy): number {
  const name = (r: string): string => `SMMU_ECMDQ_${r}${n}`;
  const prod0 = port.read32(regs.prodOff);
  if (regGet(prod0, EPROD.EN) !== 0 || regGet(port.read32(regs.consOff), ECONS.ENACK) !== 0) {
    port.write32(regs.prodOff, regSet(prod0, EPROD.EN, 0));
    port.waitReg(regs.consOff, (v) => regGet(v, ECONS.ENACK) === 0, () => `${name('CONS')}.ENACK to read 0 after disabling; it reads ${hex(port.peek32(regs.consOff))}`, policy);
  }
  port.write64Parts(regs.baseOff, ...halves(encode64(REG.SMMU_ECMDQ_BASE, { RA: 1, ADDR: base, LOG2SIZE: log2 })));
  port.write32(regs.prodOff, 0);
  port.write32(regs.consOff, 0);
  // CONS.ERR keeps its value if the SMMU ignored the written 0: enable with ERRACK equal to it.
  const errack = regGet(port.read32(regs.consOff), ECONS.ERR);
  const en = ecmdqProdValue(0, errack);
  port.write32(regs.prodOff, en);
  port.waitReg(
    regs.consOff,
    (v) => regGet(v, ECONS.ENACK) === 1,
    () => `${name('CONS')}.ENACK to read 1 after writing ${name('PROD')} = ${hex(en)}; it reads ${hex(port.peek32(regs.consOff))}`,
    policy,
  );
  return errack;
}

/** Disable ECMDQ `n` (PROD.EN = 0) without waiting: the fallback path after a failed enable. */
export function disableEcmdq(port: RegisterPort, regs: EcmdqRegs): void {
  port.write32(regs.prodOff, regSet(port.read32(regs.prodOff), EPROD.EN, 0));
}

/**
 * The errors of one ECMDQ, recovered by a CPU that is its only producer: if CONS.ERR differs
 * from ERRACK, fix the command at CONS.RD by ERR_REASON (as CERROR_ILL on the CMDQ: a CMD_SYNC
 * over it; ABT and ATC_INV_SYNC: retried), then write PROD = prod | EN | ERRACK := CONS.ERR, then
 * acknowledge GERROR.CMDQP_ERR under the handler lock (GERRORN is shared by every CPU).
 */
export function recoverOwnEcmdq(ctx: CpuContext, q: QueueDesc, prod: number, errack: number): number {
  const port = ctx.port;
  const cons = port.read32(q.consOff);
  const err = regGet(cons, ECONS.ERR);
  if (err === errack) return errack;
  // §3.5.6.3: with the ERR toggle visible, ERR_REASON and RD are too.
  fixCommandError(ctx, q, cons, regGet(cons, ECONS.ERR_REASON));
  // The rewritten slot is plain memory; this register write (an Atomics store on the bus)
  // orders it before the SMMU's refetch.
  port.write32(q.prodOff, ecmdqProdValue(prod, err));
  ctx.counters.doorbells++;
  ctx.handler.lock(ctx);
  try {
    ackGerror(port, GERROR_CMDQP_ERR);
  } finally {
    ctx.handler.unlock();
  }
  return err;
}

/** A CPU's own ECMDQ: single producer, local prod and cons, PROD writes with EN and ERRACK. */
export class EcmdqProducer implements Producer {
  /** The next slot to write (index and wrap). */
  private prod: number;
  /** A lower bound of the SMMU's CONS (index and wrap). */
  private cons: number;
  private errack: number;
  private readonly log2: number;
  private readonly ptrMask: number;
  private readonly qWord: number;
  private readonly mem: PhysMem;
  private readonly prodName: string;
  readonly consName: string;

  constructor(
    readonly ctx: CpuContext,
    readonly queue: QueueDesc,
  ) {
    if (queue.ecmdq < 0) throw new Error(`${queue.name} is not an ECMDQ`);
    this.mem = ctx.mem;
    this.log2 = queue.log2;
    this.ptrMask = ring.ptrMask(queue.log2);
    ctx.mem.check(queue.base, COMMAND_BYTES << queue.log2);
    this.qWord = ctx.mem.wordIndex(queue.base);
    // Attach where the queue is: the SMMU's registers say it (the CPU that enabled it wrote 0s).
    const p = ctx.port.read32(queue.prodOff);
    this.prod = p & this.ptrMask;
    this.cons = ctx.port.read32(queue.consOff) & this.ptrMask;
    this.errack = regGet(p, EPROD.ERRACK);
    this.prodName = `SMMU_ECMDQ_PROD${queue.ecmdq}`;
    this.consName = `SMMU_ECMDQ_CONS${queue.ecmdq}`;
  }

  describe(): string {
    const port = this.ctx.port;
    const c = port.peek32(this.queue.consOff);
    const g = port.peek32(REG.SMMU_GERROR.offset);
    const gn = port.peek32(REG.SMMU_GERRORN.offset);
    return (
      `${this.queue.name}: prod ${hex(this.prod)} (ERRACK ${this.errack}), ${this.prodName} ${hex(port.peek32(this.queue.prodOff))}, ` +
      `${this.consName} ${hex(c)} (RD ${hex(c & this.ptrMask)}, ERR ${regGet(c, ECONS.ERR)}, ERR_REASON ${regGet(c, ECONS.ERR_REASON)}, ENACK ${regGet(c, ECONS.ENACK)}), ` +
      `SMMU_GERROR ${hex(g)}, SMMU_GERRORN ${hex(gn)}`
    );
  }

  /** CONS.ERR != ERRACK: the queue is halted by an error (§3.5.6.3). */
  errorPending(): boolean {
    return regGet(this.ctx.port.peek32(this.queue.consOff), ECONS.ERR) !== this.errack;
  }

  recover(): boolean {
    const before = this.errack;
    this.errack = recoverOwnEcmdq(this.ctx, this.queue, this.prod, this.errack);
    return this.errack !== before;
  }

  insert(cmds: readonly ArrayLike<number>[], start: number, count: number, sync: boolean): number {
    const log2 = this.log2;
    const n = count + (sync ? 1 : 0);
    if (n > ring.entries(log2)) throw new RangeError(`cannot insert ${n} entries into a queue of ${ring.entries(log2)}`);
    this.reserve(n);
    const u32 = this.mem.u32;
    let p = this.prod;
    for (let k = 0; k < count; k++) {
      writeSlot(u32, this.qWord + (ring.idx(p, log2) << CMD_WORDS_LOG2), cmds[start + k]!);
      p = ring.inc(p, 1, log2);
    }
    let syncPtr = -1;
    if (sync) {
      const w = this.qWord + (ring.idx(p, log2) << CMD_WORDS_LOG2);
      if (this.ctx.syncMode === 'msi') writeMsiSync(u32, w, this.queue.base + ring.idx(p, log2) * COMMAND_BYTES);
      else writeSlot(u32, w, this.ctx.plainSync);
      syncPtr = p;
      p = ring.inc(p, 1, log2);
    }
    this.prod = p;
    // One PROD write: EN stays 1 and ERRACK rides along (§6.3.108); the MMIO FIFO's Atomics
    // store orders the plain entry stores before it.
    this.ctx.port.write32(this.queue.prodOff, ecmdqProdValue(p, this.errack));
    const c = this.ctx.counters;
    c.doorbells++;
    c.timesOwner++;
    c.commands += count;
    return syncPtr;
  }

  /** Wait until `n` entries are free, recovering an error of this queue meanwhile. */
  private reserve(n: number): void {
    const log2 = this.log2;
    if (ring.space(this.prod, this.cons, log2) >= n) return;
    const { ctx, queue: q } = this;
    ctx.counters.queueFull++;
    const t0 = performance.now();
    const describe = (): string => `room for ${n} commands: ${this.describe()}`;
    let policy = ctx.policy;
    for (;;) {
      const prod = this.prod;
      ctx.counted(ctx.port.waitReg(q.consOff, (v) => ring.space(prod, v, log2) >= n || this.errorPending(), describe, policy), policy);
      const c = ctx.port.peek32(q.consOff);
      if (ring.space(prod, c, log2) >= n) {
        this.cons = c & this.ptrMask;
        return;
      }
      this.recover();
      policy = ctx.remaining(t0, describe);
    }
  }

  waitSync(syncPtr: number): void {
    this.ctx.counters.syncs++;
    this.cons = waitForSync(this.ctx, this.queue, this.qWord, syncPtr, this);
  }
}

