/**
 * The guest's Tegra241 CMDQV driver: what Linux's tegra241-cmdqv.c does when it runs in a VM
 * whose VMM presents a CMDQV with one VINTF (shared/reference/viommu.md §4.2, §4.3, §4.7; Linux
 * and QEMU read for facts only).
 *
 * The guest sees a CMDQV register window laid out as the hardware's with one VINTF (0x50000
 * bytes). Two kinds of page sit behind it:
 * - VINTF0 page 0 (0x30000-0x3FFFF) is the host's VINTF page 0, mapped into the guest (the VMM's
 *   mmap of the vIOMMU region): the guest's CONS, PROD, CONFIG, STATUS, GERROR and GERRORN writes
 *   reach the CMDQV hardware with no trap. `MappedPage` is that stage 2 mapping: one 64 KiB page
 *   of the physical 'cmdqv' window, and nothing else of it.
 * - Everything else (the global page, VINTF0's registers, page 1 with VCMDQ_BASE, the direct
 *   apertures) traps to the VMM: a virtual window the VMM serves (src/virt/cmdqv-host.ts).
 * `GuestCmdqvBus` routes each access by offset, so the driver code uses the hardware's offsets.
 *
 * Bring-up (`reset`) is Linux's tegra241_cmdqv_hw_reset with VINTF0 asked for HYP_OWN = 1: the
 * VMM forces it to 0 and the driver reads it back, which restricts its logical VCMDQs to the
 * commands the guest-owned hardware takes (tegra241_guest_vcmdq_supports_cmd: TLBI_NH_ASID,
 * TLBI_NH_VA, ATC_INV). Writing VCMDQ_BASE (page 1, trapped) makes the VMM allocate the hardware
 * queue (IOMMU_HW_QUEUE_ALLOC); the guest then enables it through its mapped page 0.
 *
 * Issue (`VcmdqIssuer`) follows arm_smmu_cmdq_batch_add: a batch goes to the queue its first
 * command chose (the LVCMDQ of this CPU for a supported command, the ordinary, trapped SMMU
 * command queue otherwise); a command the batch's queue does not support flushes the batch with
 * a CMD_SYNC first. On the LVCMDQ the guest is its single producer: plain stores into the ring,
 * one VCMDQ_PROD write per batch, CMD_SYNC with CS = SIG_NONE, and CONS busy-polled (the CMDQV
 * supports only CS_NONE, arm_smmu_cmdq_needs_busy_polling).
 *
 * Errors (§4.7 step 4) arrive as the guest's CMDQV interrupt, which the VMM raises after the host
 * reported the VINTF's LVCMDQ_ERR_MAP: the guest ISR (tegra241_cmdqv_isr, VINTF0 part) reads
 * VINTF_ERR_MAP and LVCMDQ_ERR_MAP_64 (trapped), and for each LVCMDQ in the map reads GERROR,
 * skips the command at CONS as __arm_smmu_cmdq_skip_err does (a CMD_SYNC CS_NONE over it for
 * ILL_OPCODE and any code it does not know, ILL_ACCESS included; nothing for ABT and ATC_INV_SYNC)
 * and writes GERRORN := GERROR through the mapped page. A single-threaded guest takes the
 * interrupt while it polls CONS.
 */

import type { PhysAllocator, PhysMem } from '../mem/phys.ts';
import { WaitTimeout, type WaitPolicy } from '../mem/wait.ts';
import * as ring from '../ring/index.ts';
import { getBits, mask32 } from '../spec/bits.ts';
import {
  CMDQV_PAGE_SIZE,
  CMDQV_REG as C,
  CMDQV_SIM_IRQ_OFFSET,
  VCMDQ_ERR,
  VINTF_PAGE_BASE,
  cget,
  cmdqAllocValue,
  cmdqvCounts,
  cmdqvGlobalOffset,
  cmdqvParamDecode,
  cset,
  lvcmdqPage0,
  lvcmdqPage1,
  vcmdqErrName,
  vintfConfigValue,
  vintfRegOffset,
  type CmdqvCounts,
} from '../spec/cmdqv.ts';
import { COMMAND_BYTES, COMMAND_WORDS, CS_SIG_NONE, OP } from '../spec/commands.ts';
import { CMDQ_BATCH_ENTRIES, buildSync, readSlot, writeSlot } from './cmdq.ts';
import type { CommandIssuer, GuestDriver, IssueError, IssueResult } from './driver.ts';
import type { RegisterPort } from './port.ts';

/** The guest's VINTF: the VMM presents exactly one (viommu.md §4.2). */
export const GUEST_VINTF = 0;
/** Offset of the guest's mapped page in its CMDQV window: VINTF0 page 0. */
export const GUEST_PAGE0 = VINTF_PAGE_BASE;
/** The guest's LVCMDQ ring size unless told otherwise: QEMU's IDR1.CMDQS cap for 4 KiB backing pages. */
export const GUEST_LVCMDQ_LOG2 = 8;
/** Longest sleep of a CONS poll: the interrupt shows in another window, so look often. */
export const VCMDQ_SLICE_MS = 1;

const CONS_ERR = C.VCMDQ_CONS.f.ERR;
const CONS_RD = C.VCMDQ_CONS.f.RD;
const CMD_WORDS_LOG2 = Math.log2(COMMAND_WORDS);
const OPCODE_BITS = 8;

function hex(v: number): string {
  return `0x${(v >>> 0).toString(16).padStart(8, '0')}`;
}

// ---------------------------------------------------------------------------------------------
// The guest's two kinds of CMDQV page
// ---------------------------------------------------------------------------------------------

/**
 * One 64 KiB page of a register window mapped at offset 0 of a guest view: the guest's stage 2
 * mapping of its VINTF page 0 (the host PA the vIOMMU's mmap returned). An offset outside the
 * page is a stage 2 fault: a RangeError, never an access to the rest of the window.
 */
export class MappedPage implements RegisterPort {
  /** `port` is a port on the whole window (an MmioPort on 'cmdqv'); `hostOffset` the page's offset in it. */
  constructor(readonly port: RegisterPort, readonly hostOffset: number, readonly bytes = CMDQV_PAGE_SIZE) {
    if (!Number.isInteger(hostOffset) || hostOffset < 0 || hostOffset % CMDQV_PAGE_SIZE !== 0) {
      throw new RangeError(`0x${hostOffset.toString(16)} is not the offset of a 64 KiB page`);
    }
  }

  private at(off: number, width: number): number {
    if (!Number.isInteger(off) || off < 0 || off + width > this.bytes) {
      throw new RangeError(`access at 0x${off.toString(16)} is outside the mapped page (stage 2 fault)`);
    }
    return this.hostOffset + off;
  }

  write32(off: number, value: number): void {
    this.port.write32(this.at(off, 4), value);
  }

  write64Parts(off: number, lo: number, hi: number): void {
    this.port.write64Parts(this.at(off, 8), lo, hi);
  }

  read32(off: number): number {
    return this.port.read32(this.at(off, 4));
  }

  peek32(off: number): number {
    return this.port.peek32(this.at(off, 4));
  }

  waitReg(off: number, ready: (v: number) => boolean, describe: () => string, policy?: WaitPolicy): number {
    return this.port.waitReg(this.at(off, 4), ready, describe, policy);
  }

  drainOwn(): void {
    this.port.drainOwn();
  }
}

/**
 * The guest's CMDQV window: VINTF0 page 0 goes to the mapped page, everything else traps (the
 * VMM's virtual window). Register offsets are the hardware's with one VINTF.
 */
export class GuestCmdqvBus implements RegisterPort {
  constructor(readonly trapped: RegisterPort, readonly direct: RegisterPort) {}

  private route(off: number): [RegisterPort, number] {
    return off >= GUEST_PAGE0 && off < GUEST_PAGE0 + CMDQV_PAGE_SIZE ? [this.direct, off - GUEST_PAGE0] : [this.trapped, off];
  }

  write32(off: number, value: number): void {
    const [p, o] = this.route(off);
    p.write32(o, value);
  }

  write64Parts(off: number, lo: number, hi: number): void {
    const [p, o] = this.route(off);
    p.write64Parts(o, lo, hi);
  }

  read32(off: number): number {
    const [p, o] = this.route(off);
    return p.read32(o);
  }

  peek32(off: number): number {
    const [p, o] = this.route(off);
    return p.peek32(o);
  }

  waitReg(off: number, ready: (v: number) => boolean, describe: () => string, policy?: WaitPolicy): number {
    const [p, o] = this.route(off);
    return p.waitReg(o, ready, describe, policy);
  }

  drainOwn(): void {
    this.trapped.drainOwn();
    this.direct.drainOwn();
  }
}

// ---------------------------------------------------------------------------------------------
// The driver
// ---------------------------------------------------------------------------------------------

export interface GuestCmdqvOptions {
  /** The guest's CMDQV window (a GuestCmdqvBus in a VM). */
  readonly bus: RegisterPort;
  /** Guest memory, and the allocator the rings come from (the GuestDriver's). */
  readonly mem: PhysMem;
  readonly alloc: PhysAllocator;
  readonly policy: WaitPolicy;
  /** SMMU_IDR1.CMDQS of the guest's SMMU: LVCMDQ rings are capped at it ([TEG]). */
  readonly cmdqs: number;
  /** log2 of each LVCMDQ's entries (default GUEST_LVCMDQ_LOG2, capped at cmdqs). */
  readonly log2?: number;
  /** The guest CPU issuing: it uses LVCMDQ cpu % per-VINTF ([TEG] raw_smp_processor_id()). */
  readonly cpu?: number;
  /**
   * A CMD_SYNC on the ordinary SMMU command queue, which [TEG] issues whenever it disables a
   * VCMDQ (tegra241_vcmdq_hw_flush_timeout). Without it the step is skipped.
   */
  readonly mainSync?: () => void;
}

/** What the guest's CMDQV handlers did, in order (Linux's dev_err lines as data). */
export type CmdqvLogEntry =
  | { readonly kind: 'cmdqv-irq'; readonly vintfMap: number; readonly cmdqMap: readonly number[] }
  | {
      readonly kind: 'vcmdq-skip';
      readonly lidx: number;
      readonly cons: number;
      readonly code: number;
      readonly name: string;
      readonly words: readonly number[];
      readonly replacement: readonly number[];
    }
  | { readonly kind: 'vcmdq-retry'; readonly lidx: number; readonly cons: number; readonly code: number; readonly name: string };

export interface GuestCmdqvCounters {
  doorbells: number;
  polls: number;
  waits: number;
  syncs: number;
  /** Guest CMDQV interrupts taken. */
  interrupts: number;
  errorsRecovered: number;
  /** Commands put on LVCMDQs (CMD_SYNCs not counted). */
  commands: number;
}

/** One logical VCMDQ as the guest drives it. */
export interface GuestLvcmdq {
  readonly lidx: number;
  /** Guest PA of the ring. */
  readonly base: number;
  readonly log2: number;
  /** Offsets in the guest's CMDQV window. */
  readonly page0: number;
  readonly page1: number;
  /** The next slot to write (index and wrap); a lower bound of CONS. */
  prod: number;
  cons: number;
  enabled: boolean;
}

/** The [TEG] guest allow-list (tegra241_guest_vcmdq_supports_cmd). */
export function guestVcmdqSupports(words: ArrayLike<number>): boolean {
  const op = getBits(words as Uint32Array, 0, OPCODE_BITS);
  return op === OP.CMD_TLBI_NH_ASID || op === OP.CMD_TLBI_NH_VA || op === OP.CMD_ATC_INV;
}

export class GuestCmdqv {
  readonly log: CmdqvLogEntry[] = [];
  readonly counters: GuestCmdqvCounters = { doorbells: 0, polls: 0, waits: 0, syncs: 0, interrupts: 0, errorsRecovered: 0, commands: 0 };
  private readonly bus: RegisterPort;
  private readonly mem: PhysMem;
  private readonly policy: WaitPolicy;
  private readonly pollPolicy: WaitPolicy;
  /** The CMD_SYNC of every batch and of every skipped command: CS = SIG_NONE (viommu.md §4.5). */
  readonly syncCmd: Uint32Array = buildSync(CS_SIG_NONE);
  private countsSeen: CmdqvCounts | undefined;
  private queues: GuestLvcmdq[] = [];
  private vintfEnabled = false;
  private hypOwn = true;
  private irqSeen = 0;
  /** The issue() in progress, to report recovered errors into. */
  private current: IssueResult | undefined;

  constructor(readonly opts: GuestCmdqvOptions) {
    this.bus = opts.bus;
    this.mem = opts.mem;
    this.policy = opts.policy;
    this.pollPolicy = { ...opts.policy, sliceMs: Math.min(opts.policy.sliceMs ?? VCMDQ_SLICE_MS, VCMDQ_SLICE_MS) };
  }

  /** CMDQV_PARAM as the guest reads it ([TEG] __tegra241_cmdqv_probe). */
  probe(): CmdqvCounts {
    const c = cmdqvCounts(cmdqvParamDecode(this.bus.read32(C.CMDQV_PARAM.offset)));
    if (c.numVintfs < 1 || c.lvcmdqsPerVintf < 1) throw new Error(`CMDQV_PARAM announces ${c.numVintfs} VINTFs and ${c.numVcmdqs} VCMDQs: nothing to use`);
    this.countsSeen = c;
    return c;
  }

  get counts(): CmdqvCounts {
    return this.countsSeen ?? this.probe();
  }

  /** HYP_OWN as read back after enabling VINTF0: false in a VM (the VMM forces it). */
  get hypOwned(): boolean {
    return this.hypOwn;
  }

  get lvcmdqs(): readonly GuestLvcmdq[] {
    return this.queues;
  }

  /** The LVCMDQ this CPU issues on, if VINTF0 and it are enabled ([TEG] tegra241_cmdqv_get_cmdq). */
  queueForCpu(): GuestLvcmdq | undefined {
    if (!this.vintfEnabled || this.queues.length === 0) return undefined;
    const q = this.queues[(this.opts.cpu ?? 0) % this.queues.length];
    return q !== undefined && q.enabled ? q : undefined;
  }

  /** Whether this CPU's LVCMDQ takes `words` (else they go to the SMMU's own queue). */
  supports(words: ArrayLike<number>): boolean {
    return this.hypOwn || guestVcmdqSupports(words);
  }

  // -------------------------------------------------------------------------------------------
  // Bring-up: tegra241_cmdqv_hw_reset
  // -------------------------------------------------------------------------------------------

  reset(): void {
    const c = this.counts;
    const b = this.bus;
    this.irqSeen = b.peek32(CMDQV_SIM_IRQ_OFFSET);
    // Rings: preallocated for every logical VCMDQ of VINTF0 (init_structures), on the first reset.
    if (this.queues.length === 0) {
      const log2 = Math.min(this.opts.log2 ?? GUEST_LVCMDQ_LOG2, this.opts.cmdqs);
      for (let l = 0; l < c.lvcmdqsPerVintf; l++) {
        const bytes = COMMAND_BYTES << log2;
        // Natural alignment: the host refuses a ring not aligned to its size (viommu.md §4.6).
        const base = this.opts.alloc.alloc(bytes, Math.max(bytes, 32), `LVCMDQ ${l}`);
        this.queues.push({ lidx: l, base, log2, page0: lvcmdqPage0(GUEST_VINTF, l), page1: lvcmdqPage1(GUEST_VINTF, l), prod: 0, cons: 0, enabled: false });
      }
    }
    // The CMDQV off and on again.
    const cfg = b.read32(C.CMDQV_CONFIG.offset);
    this.writeConfig(C.CMDQV_CONFIG.offset, cset(cfg, C.CMDQV_CONFIG.f.CMDQV_EN, 0), C.CMDQV_STATUS.offset, 'CMDQV');
    this.writeConfig(C.CMDQV_CONFIG.offset, cset(cfg, C.CMDQV_CONFIG.f.CMDQV_EN, 1), C.CMDQV_STATUS.offset, 'CMDQV');
    // Every global VCMDQ assigned to its VINTF and logical index, not yet allocated.
    for (let v = 0, q = 0; v < c.numVintfs; v++) {
      for (let l = 0; l < c.lvcmdqsPerVintf; l++) b.write32(cmdqvGlobalOffset(C.CMDQV_CMDQ_ALLOC, q++), cmdqAllocValue(v, l, false));
    }
    this.vintfHwInit();
  }

  /** tegra241_vintf_hw_init(VINTF0, hyp_own = true). */
  private vintfHwInit(): void {
    const b = this.bus;
    this.vintfHwDeinit();
    const cfgOff = vintfRegOffset(GUEST_VINTF, C.VINTF_CONFIG);
    const value = vintfConfigValue({ en: false, vmid: 0, hypOwn: true });
    b.write32(cfgOff, value);
    this.writeConfig(cfgOff, cset(value, C.VINTF_CONFIG.f.EN, 1), vintfRegOffset(GUEST_VINTF, C.VINTF_STATUS), 'VINTF0');
    this.vintfEnabled = true;
    // HYP_OWN is wired to 0 for a guest: read it back ([TEG]).
    this.hypOwn = cget(b.read32(cfgOff), C.VINTF_CONFIG.f.HYP_OWN) === 1;
    // Map the logical VCMDQs in ascending order, each then initialised and enabled.
    for (const q of this.queues) {
      this.setAllocated(q.lidx, true);
      this.vcmdqHwInit(q);
    }
  }

  /** tegra241_vintf_hw_deinit(VINTF0): queues down in descending order, VINTF off, SID slots cleared. */
  private vintfHwDeinit(): void {
    const b = this.bus;
    for (let l = this.queues.length - 1; l >= 0; l--) {
      const q = this.queues[l]!;
      this.vcmdqHwDeinit(q);
      this.setAllocated(l, false);
    }
    this.writeConfig(vintfRegOffset(GUEST_VINTF, C.VINTF_CONFIG), 0, vintfRegOffset(GUEST_VINTF, C.VINTF_STATUS), 'VINTF0');
    this.vintfEnabled = false;
    for (let s = 0; s < this.counts.numSids; s++) {
      b.write32(vintfRegOffset(GUEST_VINTF, C.VINTF_SID_MATCH, s), 0);
      b.write32(vintfRegOffset(GUEST_VINTF, C.VINTF_SID_REPLACE, s), 0);
    }
  }

  private setAllocated(lidx: number, on: boolean): void {
    const off = cmdqvGlobalOffset(C.CMDQV_CMDQ_ALLOC, GUEST_VINTF * this.counts.lvcmdqsPerVintf + lidx);
    this.bus.write32(off, cset(this.bus.read32(off), C.CMDQV_CMDQ_ALLOC.f.CMDQ_ALLOCATED, on ? 1 : 0));
  }

  /** tegra241_vcmdq_hw_deinit: disable, flush a pending ATC timeout, zero the pointers and base, clear errors. */
  private vcmdqHwDeinit(q: GuestLvcmdq): void {
    const b = this.bus;
    this.writeConfig(q.page0 + C.VCMDQ_CONFIG.offset, 0, q.page0 + C.VCMDQ_STATUS.offset, `LVCMDQ${q.lidx}`);
    q.enabled = false;
    this.opts.mainSync?.();
    b.write32(q.page0 + C.VCMDQ_PROD.offset, 0);
    b.write32(q.page0 + C.VCMDQ_CONS.offset, 0);
    b.write64Parts(q.page1 + C.VCMDQ_BASE.offset, 0, 0);
    b.write64Parts(q.page1 + C.VCMDQ_CONS_INDX_BASE.offset, 0, 0);
    const gerrorn = b.read32(q.page0 + C.VCMDQ_GERRORN.offset);
    const gerror = b.read32(q.page0 + C.VCMDQ_GERROR.offset);
    if (gerror !== gerrorn) b.write32(q.page0 + C.VCMDQ_GERRORN.offset, gerror);
    q.prod = 0;
    q.cons = 0;
  }

  /**
   * tegra241_vcmdq_hw_init: reset, then VCMDQ_BASE (trapped: the VMM allocates the host queue),
   * then VCMDQ_CONFIG.EN through the mapped page and a wait for STATUS.ENABLED.
   */
  private vcmdqHwInit(q: GuestLvcmdq): void {
    this.vcmdqHwDeinit(q);
    const f = C.VCMDQ_BASE.f;
    const lo = (q.base % 2 ** 32) - ((q.base % 2 ** 32) % 2 ** f.ADDR.lsb) + q.log2;
    this.bus.write64Parts(q.page1 + C.VCMDQ_BASE.offset, lo >>> 0, Math.floor(q.base / 2 ** 32));
    this.writeConfig(q.page0 + C.VCMDQ_CONFIG.offset, 1, q.page0 + C.VCMDQ_STATUS.offset, `LVCMDQ${q.lidx}`);
    q.enabled = true;
  }

  /**
   * tegra241_cmdqv_write_config: write a CONFIG register and poll its STATUS until bit 0 follows
   * EN (readl_poll_timeout). Throws WaitTimeout naming the unit ("failed to enable").
   */
  private writeConfig(cfgOff: number, value: number, statusOff: number, what: string): void {
    const en = value & 1;
    this.bus.write32(cfgOff, value);
    this.counters.waits++;
    this.counters.polls += this.bus.waitReg(
      statusOff,
      (v) => (v & 1) === en,
      () => `${what} to ${en === 1 ? 'en' : 'dis'}able: STATUS reads ${hex(this.bus.peek32(statusOff))}`,
      this.policy,
    );
  }

  // -------------------------------------------------------------------------------------------
  // Issue on an LVCMDQ
  // -------------------------------------------------------------------------------------------

  /**
   * Put cmds[start, start + count) on `q`, with a CMD_SYNC (CS = SIG_NONE) after them when
   * `sync`, one VCMDQ_PROD write per piece (a piece is at most the ring's size), and wait for the
   * CMD_SYNC by polling CONS. `res` collects doorbells, polls and recovered errors.
   */
  issueOn(q: GuestLvcmdq, cmds: readonly ArrayLike<number>[], start: number, count: number, sync: boolean, res: IssueResult): void {
    const outer = this.current;
    this.current = res;
    try {
      const total = count + (sync ? 1 : 0);
      const cap = ring.entries(q.log2);
      const u32 = this.mem.u32;
      const qWord = this.mem.wordIndex(q.base);
      let i = 0;
      let syncPtr = -1;
      while (i < total) {
        const chunk = Math.min(total - i, cap);
        this.reserve(q, chunk, res);
        let p = q.prod;
        for (let k = 0; k < chunk; k++, i++) {
          const w = qWord + (ring.idx(p, q.log2) << CMD_WORDS_LOG2);
          if (i < count) {
            writeSlot(u32, w, cmds[start + i]!);
          } else {
            writeSlot(u32, w, this.syncCmd);
            syncPtr = p;
          }
          p = ring.inc(p, 1, q.log2);
        }
        q.prod = p;
        // The doorbell through the mapped page: the MMIO FIFO's Atomics store orders the plain
        // stores of the entries before it.
        this.bus.write32(q.page0 + C.VCMDQ_PROD.offset, p);
        res.doorbells++;
        this.counters.doorbells++;
      }
      this.counters.commands += count;
      if (sync) {
        this.counters.syncs++;
        const ptr = syncPtr;
        this.waitCons(q, (c) => ring.consumed(ptr, c, q.log2), () => `VCMDQ_CONS of LVCMDQ${q.lidx} to pass the CMD_SYNC at ${hex(ptr)}`, res);
      }
    } finally {
      this.current = outer;
    }
  }

  /** Wait for room for `n` entries (never overwrite unconsumed commands). */
  private reserve(q: GuestLvcmdq, n: number, res: IssueResult): void {
    if (ring.space(q.prod, q.cons, q.log2) >= n) return;
    const prod = q.prod;
    this.waitCons(q, (c) => ring.space(prod, c, q.log2) >= n, () => `room for ${n} commands in LVCMDQ${q.lidx}`, res);
  }

  /**
   * Busy-poll VCMDQ_CONS until `ready`, taking the guest's CMDQV interrupt whenever it is raised
   * meanwhile (a command error stops the queue until the ISR recovers it). The deadline is the
   * policy's, over the whole wait.
   */
  private waitCons(q: GuestLvcmdq, ready: (cons: number) => boolean, what: () => string, res: IssueResult): void {
    const consOff = q.page0 + C.VCMDQ_CONS.offset;
    const t0 = performance.now();
    let policy = this.pollPolicy;
    const describe = (): string => `${what()}: ${this.describe(q)}`;
    for (;;) {
      this.counters.waits++;
      const polls = this.bus.waitReg(consOff, (v) => ready(v) || this.irqPending(), describe, policy);
      this.counters.polls += polls;
      res.polls += polls;
      const c = this.bus.peek32(consOff);
      if (ready(c)) {
        q.cons = c & ring.ptrMask(q.log2);
        return;
      }
      this.serviceInterrupt();
      const left = this.pollPolicy.timeoutMs - (performance.now() - t0);
      if (left <= 0) throw new WaitTimeout(describe(), this.pollPolicy.timeoutMs);
      policy = { ...this.pollPolicy, timeoutMs: left };
    }
  }

  /** One line of state for timeout messages: the mapped registers and the guest's view. */
  describe(q: GuestLvcmdq): string {
    const b = this.bus;
    const cons = b.peek32(q.page0 + C.VCMDQ_CONS.offset);
    const ge = b.peek32(q.page0 + C.VCMDQ_GERROR.offset);
    const gn = b.peek32(q.page0 + C.VCMDQ_GERRORN.offset);
    const err = cget(cons, CONS_ERR);
    return (
      `LVCMDQ${q.lidx} prod ${hex(q.prod)}, VCMDQ_PROD ${hex(b.peek32(q.page0 + C.VCMDQ_PROD.offset))}, ` +
      `VCMDQ_CONS ${hex(cons)} (RD ${hex(cget(cons, CONS_RD))}, ERR ${err} ${vcmdqErrName(err)}), ` +
      `VCMDQ_STATUS ${hex(b.peek32(q.page0 + C.VCMDQ_STATUS.offset))}, VCMDQ_GERROR ${hex(ge)}, VCMDQ_GERRORN ${hex(gn)}, ` +
      `guest CMDQV interrupts ${b.peek32(CMDQV_SIM_IRQ_OFFSET)} (handled ${this.irqSeen})`
    );
  }

  // -------------------------------------------------------------------------------------------
  // The interrupt
  // -------------------------------------------------------------------------------------------

  /** The guest's CMDQV interrupt line moved since the ISR last ran. */
  irqPending(): boolean {
    return this.bus.peek32(CMDQV_SIM_IRQ_OFFSET) !== this.irqSeen;
  }

  /** Run the ISR if the interrupt was raised; returns the LVCMDQs it handled. */
  serviceInterrupt(): number {
    const now = this.bus.peek32(CMDQV_SIM_IRQ_OFFSET);
    if (now === this.irqSeen) return 0;
    this.irqSeen = now;
    return this.isr();
  }

  /**
   * tegra241_cmdqv_isr for VINTF0: the maps come from the VMM's emulation; GERROR, CONS and
   * GERRORN from the mapped page. Returns the number of LVCMDQs handled.
   */
  isr(): number {
    const b = this.bus;
    this.counters.interrupts++;
    const vintfMap = b.read32(cmdqvGlobalOffset(C.CMDQV_VINTF_ERR_MAP, 0));
    b.read32(cmdqvGlobalOffset(C.CMDQV_VINTF_ERR_MAP, 1));
    const cmdqMap = [0, 1, 2, 3].map((m) => b.read32(cmdqvGlobalOffset(C.CMDQV_CMDQ_ERR_MAP, m)));
    this.log.push({ kind: 'cmdqv-irq', vintfMap, cmdqMap });
    if ((vintfMap & (1 << GUEST_VINTF)) === 0) return 0;
    let handled = 0;
    for (let m = 0; m < 2; m++) {
      const off = vintfRegOffset(GUEST_VINTF, C.VINTF_LVCMDQ_ERR_MAP_64, m);
      for (let half = 0; half < 2; half++) {
        let map = b.read32(off + 4 * half);
        while (map !== 0) {
          const bit = 31 - Math.clz32(map & -map);
          map = (map & (map - 1)) >>> 0;
          const q = this.queues[m * 64 + half * 32 + bit];
          if (q === undefined) continue;
          const gerror = b.read32(q.page0 + C.VCMDQ_GERROR.offset);
          // Model choice: skip only while CMDQ_ERR is active. The map is the VMM's copy of what the
          // host last posted; a repeated post (the host ISR runs for any VINTF's error and
          // re-reads every map still set) would otherwise rewrite a live command at CONS, since
          // CONS.ERR keeps its last code. Linux's guest does not look.
          if (((gerror ^ b.read32(q.page0 + C.VCMDQ_GERRORN.offset)) & mask32(C.VCMDQ_GERROR.f.CMDQ_ERR)) !== 0) {
            this.skipErr(q);
            handled++;
          }
          b.write32(q.page0 + C.VCMDQ_GERRORN.offset, gerror);
        }
      }
    }
    return handled;
  }

  /** __arm_smmu_cmdq_skip_err on an LVCMDQ, with the CS_NONE CMD_SYNC a busy-polled queue needs. */
  private skipErr(q: GuestLvcmdq): void {
    const cons = this.bus.read32(q.page0 + C.VCMDQ_CONS.offset);
    const code = cget(cons, CONS_ERR);
    const name = vcmdqErrName(code);
    const ptr = cget(cons, CONS_RD) & ring.ptrMask(q.log2);
    if (code === VCMDQ_ERR.NONE) return;
    if (code === VCMDQ_ERR.ABT || code === VCMDQ_ERR.ATC_INV_SYNC) {
      // ABT: the fetch is retried; ATC_INV_SYNC: CONS stays on the CMD_SYNC, which is retried.
      this.log.push({ kind: 'vcmdq-retry', lidx: q.lidx, cons: ptr, code, name });
    } else {
      const w = this.mem.wordIndex(q.base) + (ring.idx(ptr, q.log2) << CMD_WORDS_LOG2);
      const words = readSlot(this.mem.u32, w);
      writeSlot(this.mem.u32, w, this.syncCmd);
      this.log.push({ kind: 'vcmdq-skip', lidx: q.lidx, cons: ptr, code, name, words, replacement: [...this.syncCmd] });
    }
    const e: IssueError = { index: ptr, code, name };
    this.current?.errors.push(e);
    this.counters.errorsRecovered++;
  }
}

// ---------------------------------------------------------------------------------------------
// Routing: the LVCMDQ or the SMMU's own queue
// ---------------------------------------------------------------------------------------------

/**
 * The guest's commands, routed as Linux's arm_smmu_cmdq_batch_add routes them: each batch goes to
 * the queue its first command picked (this CPU's LVCMDQ if it supports the command, else the
 * GuestDriver's ordinary SMMU command queue, which traps in a VM); a command the batch's queue
 * does not support flushes the batch (with a CMD_SYNC) and starts a new one; a full batch of
 * CMDQ_BATCH_ENTRIES goes out without a CMD_SYNC. Install with driver.setIssuer(issuer) after the
 * driver's reset(), so that the driver's own invalidations (unmap, detach …) take this path.
 */
export class VcmdqIssuer implements CommandIssuer {
  /** Commands sent to the LVCMDQ and to the SMMU's queue, over the issuer's life. */
  readonly routed = { vcmdq: 0, smmu: 0 };

  constructor(readonly driver: GuestDriver, readonly cmdqv: GuestCmdqv) {}

  issue(cmds: readonly ArrayLike<number>[], opts?: { sync?: boolean }): IssueResult {
    const sync = opts?.sync ?? true;
    const n = cmds.length;
    const res: IssueResult = { commands: n, batches: 0, doorbells: 0, polls: 0, errors: [] };
    let start = 0;
    let target: 'vcmdq' | 'smmu' | undefined;
    let lq = this.cmdqv.queueForCpu();
    const pick = (c: ArrayLike<number>): 'vcmdq' | 'smmu' => {
      lq = this.cmdqv.queueForCpu();
      return lq !== undefined && this.cmdqv.supports(c) ? 'vcmdq' : 'smmu';
    };
    const flush = (end: number, withSync: boolean): void => {
      if (target === undefined) return;
      this.submit(target, lq, cmds, start, end - start, withSync, res);
      start = end;
      target = undefined;
    };
    for (let i = 0; i < n; i++) {
      const c = cmds[i]!;
      if (target === 'vcmdq' && !this.cmdqv.supports(c)) flush(i, true);
      if (target !== undefined && i - start === CMDQ_BATCH_ENTRIES) flush(i, false);
      if (target === undefined) target = pick(c);
    }
    if (target !== undefined) flush(n, sync);
    else if (sync) this.submit('smmu', undefined, cmds, 0, 0, true, res);
    return res;
  }

  private submit(target: 'vcmdq' | 'smmu', lq: GuestLvcmdq | undefined, cmds: readonly ArrayLike<number>[], start: number, count: number, sync: boolean, res: IssueResult): void {
    res.batches++;
    if (target === 'vcmdq' && lq !== undefined) {
      this.routed.vcmdq += count;
      this.cmdqv.issueOn(lq, cmds, start, count, sync, res);
      return;
    }
    this.routed.smmu += count;
    const batch = cmds.slice(start, start + count).map((c) => Uint32Array.from(c as ArrayLike<number>));
    const r = this.direct(() => this.driver.issue(batch, { sync }));
    res.doorbells += r.doorbells;
    res.polls += r.polls;
    res.errors.push(...r.errors);
  }

  /** Run `fn` with the driver on its own single-producer path (this issuer out of the way). */
  private direct<T>(fn: () => T): T {
    this.driver.setIssuer(undefined);
    try {
      return fn();
    } finally {
      this.driver.setIssuer(this);
    }
  }

  /** The driver's GERROR handler for the SMMU's queue, and the CMDQV interrupt. */
  recover(): boolean {
    const g = this.direct(() => this.driver.handleGerror());
    const n = this.cmdqv.serviceInterrupt();
    return g.active !== 0 || n > 0;
  }

  withHandlerLock<T>(fn: () => T): T {
    return fn();
  }
}
