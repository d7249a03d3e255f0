/**
 * NVIDIA Tegra241 CMDQV hardware: VINTFs and VCMDQs beside the SMMU (shared/reference/viommu.md
 * §4), as a DeviceExtension of SmmuDevice on its own register window ('cmdqv', which wakes with
 * 'smmu'). The register map is src/spec/cmdqv.ts.
 *
 * - A VCMDQ is a CommandQueue whose executor is this model. Its commands execute through
 *   SmmuDevice.execute: the same legality checks, the same TLB, configuration cache and ATCs as
 *   the SMMU's own command queue, and CMD_SYNC completes by publishing CONS.
 * - The host programs everything but page 0: CMDQV_CONFIG, CMDQ_ALLOC(q) (which global VCMDQ is
 *   which VINTF's logical VCMDQ), VINTF_CONFIG (EN, VMID, HYP_OWN), SID_MATCH/SID_REPLACE, and
 *   VCMDQ_BASE with a host physical address. A guest owns only its VINTF's page 0: CONS, PROD,
 *   CONFIG, STATUS, GERROR, GERRORN of its logical VCMDQs (viommu.md §4.2).
 * - On a guest-owned VINTF (HYP_OWN = 0) the model enforces, per command (viommu.md §4.4, §4.5):
 *   the VMID field of TLBI_NH_* becomes VINTF_CONFIG.VMID; the StreamID of ATC_INV (and CFGI_CD*,
 *   when accepted) is looked up in the VINTF's SID_MATCH slots and replaced by SID_REPLACE, no
 *   match being CERROR_ILL_ACCESS; only TLBI_NH_ASID, TLBI_NH_VA, ATC_INV and CMD_SYNC are
 *   accepted (NH_ALL, NH_VAA, CFGI_CD/CFGI_CD_ALL behind `guestCommands` switches, default off),
 *   anything else is CERROR_ILL_OPCODE. CMD_SYNC must have CS = SIG_NONE on every VCMDQ.
 *   The substitution is done in the command's snapshot, so the trace shows the command as the
 *   SMMU executed it.
 * - Errors (viommu.md §4.7 step 1): the queue stops with CONS.RD on the command, CONS.ERR holds
 *   the code, VCMDQ_GERROR.CMDQ_ERR toggles, then the LVCMDQ's bit in its VINTF's
 *   LVCMDQ_ERR_MAP_64, the VCMDQ's bit in CMDQ_ERR_MAP and the VINTF's bit in VINTF_ERR_MAP are
 *   set, in that order, and the CMDQV interrupt is raised unless VINTF_INT_MASK masks it. The
 *   interrupt is the model's CMDQV_SIM_IRQ word in this window (a counter, as HDR.IRQ_* are).
 *   Acknowledging through VCMDQ_GERRORN (GERRORN := GERROR) resumes the queue and clears its map
 *   bits (the clearing is UNVERIFIED: the registers are read-only and Linux never clears them).
 *
 * Every choice no source settles is listed in docs/fidelity.md ("Tegra241 CMDQV").
 */

import type { Board, WindowConfig } from '../mem/board.ts';
import { MmioTarget, type MmioWrite } from '../mem/mmio.ts';
import { fieldGetNumber, getBits, mask32, setBits, type Field } from '../spec/bits.ts';
import { CERROR_NONE } from '../spec/cerror.ts';
import {
  CMDQV_REG as C,
  CMDQV_SIM_IRQ_OFFSET,
  VCMDQ_ERR,
  VCMDQ_PAGE0_BASE,
  VCMDQ_PAGE1_BASE,
  VCMDQ_STRIDE,
  VINTF_PAGE1_OFFSET,
  VINTF_PAGE_BASE,
  VINTF_PAGE_STRIDE,
  VINTF_STATUS_CODE,
  cget,
  cmdqvCounts,
  cmdqvGeometryError,
  cmdqvGlobalOffset,
  cmdqvLocate,
  cmdqvParamValue,
  cmdqvWindowBytes,
  cmdqvWritableMask,
  cset,
  lvcmdqPage0,
  lvcmdqPage1,
  vcmdqPage0,
  vcmdqPage1,
  vintfRegOffset,
  type CmdqvCounts,
  type CmdqvGeometry,
  type CmdqvRegisterSpec,
} from '../spec/cmdqv.ts';
import { commandField, commandSpec, CS_SIG_NONE, OP } from '../spec/commands.ts';
import { CommandQueue, type CommandExecutor } from './cmdq.ts';
import type { DeviceExtension, SmmuDevice } from './smmu.ts';
import { TRACE_QUEUE_VCMDQ } from './trace.ts';

/** Which restricted commands a guest-owned VINTF accepts beyond the confirmed set (viommu.md §4.5). */
export interface GuestCommandSwitches {
  /** CMD_TLBI_NH_ALL (VMID substituted). UNVERIFIED; default false. */
  readonly nhAll?: boolean;
  /** CMD_TLBI_NH_VAA (VMID substituted). UNVERIFIED; default false. */
  readonly nhVaa?: boolean;
  /** CMD_CFGI_CD and CMD_CFGI_CD_ALL (StreamID substituted). UNVERIFIED; default false. */
  readonly cfgiCd?: boolean;
}

/** The CMDQV of a device worker (DeviceWorkerData.cmdqv): plain data, it crosses to workers. */
export interface CmdqvConfig {
  /** The register window (default 'cmdqv'); it must wake with the SMMU's window. */
  readonly window?: string;
  /** CMDQV_PARAM.NUM_VINTF_LOG2 (default 2: VINTF0 for the host, three for guests). */
  readonly numVintfsLog2?: number;
  /** CMDQV_PARAM.NUM_VCMDQ_LOG2 (default 3: two logical VCMDQs per VINTF). */
  readonly numVcmdqsLog2?: number;
  /** CMDQV_PARAM.NUM_SID_PER_VM_LOG2 (default 4: 16 SID_MATCH/SID_REPLACE pairs, as QEMU's guest). */
  readonly numSidsLog2?: number;
  /** CMDQV_PARAM.VER (default 1, QEMU's). */
  readonly version?: number;
  /** The documented switch for commands whose acceptance no source confirms. */
  readonly guestCommands?: GuestCommandSwitches;
  /**
   * A TLBI_NH_* on a guest-owned VINTF whose VMID field is neither 0 nor the VINTF's VMID:
   * 'overwrite' (default: the VMID field is replaced whatever it holds, viommu.md §4.4) or
   * 'ill-access' (the command fails with CERROR_ILL_ACCESS). UNVERIFIED either way.
   */
  readonly foreignVmid?: 'overwrite' | 'ill-access';
}

export const CMDQV_DEFAULT_WINDOW = 'cmdqv';
export const CMDQV_DEFAULT_GEOMETRY: CmdqvGeometry = Object.freeze({ version: 1, numVintfsLog2: 2, numVcmdqsLog2: 3, numSidsLog2: 4 });

/** The geometry a config asks for; throws a RangeError naming the bad setting. */
export function cmdqvGeometry(cfg: CmdqvConfig = {}): CmdqvGeometry {
  const d = CMDQV_DEFAULT_GEOMETRY;
  const g: CmdqvGeometry = {
    version: cfg.version ?? d.version,
    numVintfsLog2: cfg.numVintfsLog2 ?? d.numVintfsLog2,
    numVcmdqsLog2: cfg.numVcmdqsLog2 ?? d.numVcmdqsLog2,
    numSidsLog2: cfg.numSidsLog2 ?? d.numSidsLog2,
  };
  const err = cmdqvGeometryError(g);
  if (err !== undefined) throw new RangeError(err);
  return g;
}

/** The board window for a CMDQV at `base`, serviced by the consumer of `wakeWith` (the SMMU). */
export function cmdqvWindowConfig(cfg: CmdqvConfig, base: number, wakeWith = 'smmu'): WindowConfig {
  const counts = cmdqvCounts(cmdqvGeometry(cfg));
  return { name: cfg.window ?? CMDQV_DEFAULT_WINDOW, bytes: cmdqvWindowBytes(counts.numVintfs), base, wakeWith };
}

/** For DeviceOptions.extensions: the CMDQV beside the SMMU. */
export function cmdqvExtension(cfg: CmdqvConfig): (dev: SmmuDevice) => DeviceExtension[] {
  return (dev) => [new CmdqvDevice(dev, cfg)];
}

// Field positions, from the tables.
const CONS_ERR = C.VCMDQ_CONS.f.ERR;
const CONS_RD = C.VCMDQ_CONS.f.RD;
const PROD_WR = C.VCMDQ_PROD.f.WR;
const CONFIG_EN = C.VCMDQ_CONFIG.f.EN;
const GERR = C.VCMDQ_GERROR.f;
const BASE = C.VCMDQ_BASE.f;
const VC = C.VINTF_CONFIG.f;
const VS = C.VINTF_STATUS.f;
const ALLOC = C.CMDQV_CMDQ_ALLOC.f;
const MATCH = C.VINTF_SID_MATCH.f;
const REPLACE = C.VINTF_SID_REPLACE.f;
const VCMDQ_GERROR_MASK = cmdqvWritableMask(C.VCMDQ_GERRORN);
const BASE_MASK = [cmdqvWritableMask(C.VCMDQ_BASE, 0), cmdqvWritableMask(C.VCMDQ_BASE, 1)] as const;
const CIB_MASK = [cmdqvWritableMask(C.VCMDQ_CONS_INDX_BASE, 0), cmdqvWritableMask(C.VCMDQ_CONS_INDX_BASE, 1)] as const;

/** Command fields the substitution rewrites (§4.1.6 positions, from the command table). */
const OPCODE_BITS = 8;
const F_VMID = commandField(commandSpec(OP.CMD_TLBI_NH_VA), 'VMID')!;
const F_SID = commandField(commandSpec(OP.CMD_ATC_INV), 'StreamID')!;
const F_CS = commandField(commandSpec(OP.CMD_SYNC), 'CS')!;
for (const op of [OP.CMD_TLBI_NH_ALL, OP.CMD_TLBI_NH_ASID, OP.CMD_TLBI_NH_VAA]) {
  const f = commandField(commandSpec(op), 'VMID');
  if (f === undefined || f.lsb !== F_VMID.lsb || f.width !== F_VMID.width) throw new Error('TLBI_NH_* VMID fields differ: the CMDQV substitution assumes one position');
}
for (const op of [OP.CMD_CFGI_CD, OP.CMD_CFGI_CD_ALL]) {
  const f = commandField(commandSpec(op), 'StreamID');
  if (f === undefined || f.lsb !== F_SID.lsb || f.width !== F_SID.width) throw new Error('StreamID fields differ: the CMDQV substitution assumes one position');
}

/** One global VCMDQ. */
class Vcmdq {
  /** Page-0 and page-1 slot offsets through the direct aperture. */
  readonly p0: number;
  readonly p1: number;
  /** The logical alias slots while allocated to a VINTF, else -1. */
  aliasP0 = -1;
  aliasP1 = -1;
  /** The VINTF and logical index it is allocated to (CMDQ_ALLOC), or -1. */
  vintf = -1;
  lidx = -1;

  constructor(readonly n: number, readonly q: CommandQueue) {
    this.p0 = vcmdqPage0(n);
    this.p1 = vcmdqPage1(n);
  }
}

/** One VINTF's state as its registers set it. */
class Vintf {
  en = false;
  vmid = 0;
  hypOwn = false;
  /** Logical VCMDQ l → the global VCMDQ allocated to it. */
  readonly lv: (Vcmdq | undefined)[];
  readonly sidMatch: Uint32Array;
  readonly sidReplace: Uint32Array;
  /** LVCMDQ_ERR_MAP_64 as four 32-bit words, as last published. */
  readonly errMap = new Uint32Array(4);

  constructor(readonly n: number, counts: CmdqvCounts) {
    this.lv = new Array<Vcmdq | undefined>(counts.lvcmdqsPerVintf).fill(undefined);
    this.sidMatch = new Uint32Array(counts.numSids);
    this.sidReplace = new Uint32Array(counts.numSids);
  }
}

const PAGE0_REGS: readonly CmdqvRegisterSpec[] = [C.VCMDQ_CONS, C.VCMDQ_PROD, C.VCMDQ_CONFIG, C.VCMDQ_STATUS, C.VCMDQ_GERROR, C.VCMDQ_GERRORN];

export class CmdqvDevice implements DeviceExtension, CommandExecutor {
  readonly target: MmioTarget;
  readonly geometry: CmdqvGeometry;
  readonly counts: CmdqvCounts;
  private readonly board: Board;
  private readonly vcmdqs: Vcmdq[];
  private readonly vintfs: Vintf[];
  private readonly accept: Required<GuestCommandSwitches>;
  private readonly foreignVmidIllegal: boolean;
  private readonly maxLog2: number;
  private cmdqvEn = false;
  private readonly vintfErr = new Uint32Array(2);
  private readonly cmdqErr = new Uint32Array(4);
  private readonly intMask = new Uint32Array(2);

  constructor(private readonly dev: SmmuDevice, cfg: CmdqvConfig = {}) {
    this.board = dev.board;
    this.geometry = cmdqvGeometry(cfg);
    this.counts = cmdqvCounts(this.geometry);
    this.target = new MmioTarget(dev.board, cfg.window ?? CMDQV_DEFAULT_WINDOW);
    const need = cmdqvWindowBytes(this.counts.numVintfs);
    if (this.target.window.bytes < need) {
      throw new RangeError(`window ${this.target.window.name} has ${this.target.window.bytes} bytes; a CMDQV with ${this.counts.numVintfs} VINTFs needs 0x${need.toString(16)}`);
    }
    this.accept = { nhAll: cfg.guestCommands?.nhAll ?? false, nhVaa: cfg.guestCommands?.nhVaa ?? false, cfgiCd: cfg.guestCommands?.cfgiCd ?? false };
    this.foreignVmidIllegal = (cfg.foreignVmid ?? 'overwrite') === 'ill-access';
    // VCMDQ_BASE.LOG2SIZE is capped like SMMU_CMDQ_BASE's, at SMMU_IDR1.CMDQS (§6.3.26; the host
    // kernel refuses larger guest queues, viommu.md §4.6).
    this.maxLog2 = dev.opts.features.cmdqs;
    this.vcmdqs = Array.from({ length: this.counts.numVcmdqs }, (_, n) => new Vcmdq(n, new CommandQueue(TRACE_QUEUE_VCMDQ + n, `VCMDQ${n}`, dev.mem, this)));
    this.vintfs = Array.from({ length: this.counts.numVintfs }, (_, n) => new Vintf(n, this.counts));
    this.loadResetValues();
  }

  /** Every register to its reset value (no source gives them): all zero except CMDQV_PARAM. */
  private loadResetValues(): void {
    for (let off = 0; off < this.target.window.bytes; off += 4) if (this.target.get32(off) !== 0) this.target.set32(off, 0);
    this.target.set32(C.CMDQV_PARAM.offset, cmdqvParamValue(this.geometry));
  }

  // -------------------------------------------------------------------------------------------
  // Register writes
  // -------------------------------------------------------------------------------------------

  applyWrite(w: MmioWrite): void {
    if (w.dma) return; // no DMA port lives behind this window
    this.board.count('MMIO_WRITES');
    if (!w.wide) {
      this.write32(w.off, w.lo);
      return;
    }
    const loc = cmdqvLocate(w.off, this.counts);
    if (loc === undefined || loc.spec.width !== 64 || loc.half !== 0) {
      // As on the SMMU window: a 64-bit access to anything but a 64-bit register is applied as
      // two 32-bit writes and counted.
      this.board.count('MMIO_BAD_WIDTH');
      this.write32(w.off, w.lo);
      this.write32(w.off + 4, w.hi);
      return;
    }
    if (loc.kind === 'global' || loc.kind === 'vintf') {
      // LVCMDQ_ERR_MAP_64 is the only 64-bit register there, and it is read-only.
      this.board.count('MMIO_RO_WRITES');
      return;
    }
    const vq = loc.kind === 'vcmdq' ? this.vcmdqs[loc.q] : this.vintfs[loc.vintf]?.lv[loc.lvcmdq];
    if (vq !== undefined) this.writePage1(vq, loc.spec, w.lo, w.hi, true);
  }

  private write32(off: number, v: number): void {
    if (off >= VCMDQ_PAGE0_BASE) {
      this.writeQueueSlot(off, v);
      return;
    }
    const loc = cmdqvLocate(off, this.counts);
    if (loc === undefined) {
      this.board.count('MMIO_UNKNOWN_WRITES');
      return;
    }
    if (loc.spec.access !== 'RW') {
      this.board.count('MMIO_RO_WRITES');
      return;
    }
    if (loc.kind === 'global') {
      switch (loc.spec) {
        case C.CMDQV_CONFIG:
          return this.writeCmdqvConfig(v & cmdqvWritableMask(C.CMDQV_CONFIG));
        case C.CMDQV_VINTF_INT_MASK:
          return this.writeIntMask(loc.index, v);
        case C.CMDQV_CMDQ_ALLOC:
          return this.writeAlloc(this.vcmdqs[loc.index]!, v & cmdqvWritableMask(C.CMDQV_CMDQ_ALLOC));
      }
    } else if (loc.kind === 'vintf') {
      const vi = this.vintfs[loc.vintf]!;
      switch (loc.spec) {
        case C.VINTF_CONFIG:
          return this.writeVintfConfig(vi, v & cmdqvWritableMask(C.VINTF_CONFIG));
        case C.VINTF_SID_MATCH:
          vi.sidMatch[loc.index] = v & cmdqvWritableMask(C.VINTF_SID_MATCH);
          this.target.set32(off, vi.sidMatch[loc.index]!);
          return;
        case C.VINTF_SID_REPLACE:
          vi.sidReplace[loc.index] = v & cmdqvWritableMask(C.VINTF_SID_REPLACE);
          this.target.set32(off, vi.sidReplace[loc.index]!);
          return;
      }
    }
    this.board.count('MMIO_UNKNOWN_WRITES');
  }

  /**
   * A write into a VCMDQ slot: the doorbell and the other page-0 registers, or page 1. Through a
   * VINTF's logical aperture, a slot with no VCMDQ allocated drops the write (QEMU's comment on
   * the hardware, viommu.md §4.2).
   */
  private writeQueueSlot(off: number, v: number): void {
    let vq: Vcmdq | undefined;
    let page1: boolean;
    let slotOff: number;
    if (off < VINTF_PAGE_BASE) {
      page1 = off >= VCMDQ_PAGE1_BASE;
      const rel = off - (page1 ? VCMDQ_PAGE1_BASE : VCMDQ_PAGE0_BASE);
      vq = this.vcmdqs[Math.floor(rel / VCMDQ_STRIDE)];
      slotOff = rel % VCMDQ_STRIDE;
      if (vq === undefined) {
        this.board.count('MMIO_UNKNOWN_WRITES');
        return;
      }
    } else {
      const vrel = off - VINTF_PAGE_BASE;
      const vi = this.vintfs[Math.floor(vrel / VINTF_PAGE_STRIDE)];
      const inVintf = vrel % VINTF_PAGE_STRIDE;
      page1 = inVintf >= VINTF_PAGE1_OFFSET;
      const rel = inVintf - (page1 ? VINTF_PAGE1_OFFSET : 0);
      const l = Math.floor(rel / VCMDQ_STRIDE);
      slotOff = rel % VCMDQ_STRIDE;
      if (vi === undefined || l >= this.counts.lvcmdqsPerVintf) {
        this.board.count('MMIO_UNKNOWN_WRITES');
        return;
      }
      vq = vi.lv[l];
      if (vq === undefined) return;
    }
    if (!page1) {
      this.writePage0(vq, slotOff, v);
      return;
    }
    const spec = slotOff < C.VCMDQ_CONS_INDX_BASE.offset ? C.VCMDQ_BASE : C.VCMDQ_CONS_INDX_BASE;
    const half = (slotOff - spec.offset) >>> 2;
    if (slotOff >= spec.offset + spec.width / 8) {
      this.board.count('MMIO_UNKNOWN_WRITES');
      return;
    }
    if (half === 0) this.writePage1(vq, spec, v, 0, false);
    else this.writePage1Hi(vq, spec, v);
  }

  private writePage0(vq: Vcmdq, rel: number, v: number): void {
    const q = vq.q;
    switch (rel) {
      case C.VCMDQ_PROD.offset: {
        // The doorbell (as SMMU_CMDQ_PROD, §6.3.27).
        const wr = v & mask32(PROD_WR);
        this.setP0(vq, C.VCMDQ_PROD, wr);
        q.prod = wr;
        return;
      }
      case C.VCMDQ_CONS.offset:
        // Writable while the queue is disabled (as SMMU_CMDQ_CONS, §6.3.28); ERR keeps its code.
        if (!q.enabled) {
          q.cons = v & mask32(CONS_RD);
          this.publishCons(q);
        }
        return;
      case C.VCMDQ_CONFIG.offset:
        return this.writeVcmdqConfig(vq, v & mask32(CONFIG_EN));
      case C.VCMDQ_GERRORN.offset:
        return this.writeGerrorn(vq, v & VCMDQ_GERROR_MASK);
      case C.VCMDQ_STATUS.offset:
      case C.VCMDQ_GERROR.offset:
        this.board.count('MMIO_RO_WRITES');
        return;
      default:
        this.board.count('MMIO_UNKNOWN_WRITES');
    }
  }

  /** The low half (or, `wide`, both halves) of VCMDQ_BASE or VCMDQ_CONS_INDX_BASE. */
  private writePage1(vq: Vcmdq, spec: CmdqvRegisterSpec, lo: number, hi: number, wide: boolean): void {
    // The model guards VCMDQ_BASE like SMMU_CMDQ_BASE: ignored while the queue is enabled.
    if (spec === C.VCMDQ_BASE && vq.q.enabled) return;
    const m = spec === C.VCMDQ_BASE ? BASE_MASK : CIB_MASK;
    this.setP1(vq, spec.offset, lo & m[0]);
    if (wide) this.setP1(vq, spec.offset + 4, hi & m[1]);
  }

  private writePage1Hi(vq: Vcmdq, spec: CmdqvRegisterSpec, hi: number): void {
    if (spec === C.VCMDQ_BASE && vq.q.enabled) return;
    const m = spec === C.VCMDQ_BASE ? BASE_MASK : CIB_MASK;
    this.setP1(vq, spec.offset + 4, hi & m[1]);
  }

  /** VCMDQ_CONFIG.EN: start the queue if it may run, else report CMDQ_INIT_ERR; 0 stops it. */
  private writeVcmdqConfig(vq: Vcmdq, en: number): void {
    this.setP0(vq, C.VCMDQ_CONFIG, en);
    const q = vq.q;
    if (en === 0) {
      if (q.enabled) this.stop(vq);
      return;
    }
    if (q.enabled) return;
    if (!this.mayRun(vq)) {
      // Model choice (QEMU reports a failed allocation this way): EN stays without effect.
      if (!this.gerrorActive(vq, GERR.CMDQ_INIT_ERR)) this.toggleGerror(vq, GERR.CMDQ_INIT_ERR);
      return;
    }
    const lo = this.target.get32(vq.p1 + C.VCMDQ_BASE.offset);
    const hi = this.target.get32(vq.p1 + C.VCMDQ_BASE.offset + 4);
    q.configure(fieldGetNumber([lo, hi], BASE.ADDR), cget(lo, BASE.LOG2SIZE), this.maxLog2);
    q.prod = this.target.get32(vq.p0 + C.VCMDQ_PROD.offset) & mask32(PROD_WR);
    q.cons = this.target.get32(vq.p0 + C.VCMDQ_CONS.offset) & mask32(CONS_RD);
    q.enabled = true;
    this.setP0(vq, C.VCMDQ_STATUS, mask32(C.VCMDQ_STATUS.f.ENABLED));
    this.dev.activate(q);
  }

  private stop(vq: Vcmdq): void {
    vq.q.enabled = false;
    this.dev.deactivate(vq.q);
    this.setP0(vq, C.VCMDQ_STATUS, 0);
  }

  /** A VCMDQ runs only while the CMDQV is enabled and it is allocated to an enabled VINTF. */
  private mayRun(vq: Vcmdq): boolean {
    return this.cmdqvEn && vq.vintf >= 0 && this.vintfs[vq.vintf]!.en;
  }

  /** Stop every running queue that may no longer run (a CMDQV or VINTF disable, an unmap). */
  private stopStranded(): void {
    for (const vq of this.vcmdqs) if (vq.q.enabled && !this.mayRun(vq)) this.stop(vq);
  }

  private writeCmdqvConfig(v: number): void {
    this.target.set32(C.CMDQV_CONFIG.offset, v);
    this.cmdqvEn = cget(v, C.CMDQV_CONFIG.f.CMDQV_EN) === 1;
    this.target.set32(C.CMDQV_STATUS.offset, this.cmdqvEn ? mask32(C.CMDQV_STATUS.f.CMDQV_ENABLED) : 0);
    if (!this.cmdqvEn) this.stopStranded();
  }

  private writeIntMask(m: number, v: number): void {
    const first = m * 32;
    const bits = Math.max(0, Math.min(32, this.counts.numVintfs - first));
    const keep = bits >= 32 ? 0xffff_ffff : (1 << bits) - 1;
    this.intMask[m] = (v & keep) >>> 0;
    this.target.set32(cmdqvGlobalOffset(C.CMDQV_VINTF_INT_MASK, m), this.intMask[m]!);
  }

  /**
   * CMDQ_ALLOC(q): the VCMDQ becomes VINTF v's logical VCMDQ l while ALLOCATED is 1. An
   * allocation to a VINTF or logical index that does not exist, or to a logical slot another
   * VCMDQ holds, has no effect (model choice: the sources say only that the host must map in
   * ascending and unmap in descending order).
   */
  private writeAlloc(vq: Vcmdq, v: number): void {
    this.target.set32(cmdqvGlobalOffset(C.CMDQV_CMDQ_ALLOC, vq.n), v);
    let vintf = -1;
    let lidx = -1;
    if (cget(v, ALLOC.CMDQ_ALLOCATED) === 1) {
      const wantV = cget(v, ALLOC.CMDQ_ALLOC_VINTF);
      const wantL = cget(v, ALLOC.CMDQ_ALLOC_LVCMDQ);
      const vi = this.vintfs[wantV];
      if (vi !== undefined && wantL < this.counts.lvcmdqsPerVintf && (vi.lv[wantL] === undefined || vi.lv[wantL] === vq)) {
        vintf = wantV;
        lidx = wantL;
      }
    }
    if (vintf === vq.vintf && lidx === vq.lidx) return;
    if (vq.vintf >= 0) this.unmap(vq);
    if (vintf >= 0) this.map(vq, vintf, lidx);
    this.stopStranded();
    this.refreshErrorMaps();
  }

  private unmap(vq: Vcmdq): void {
    const vi = this.vintfs[vq.vintf]!;
    vi.lv[vq.lidx] = undefined;
    // An unallocated logical slot reads as zero (model choice).
    for (const r of PAGE0_REGS) this.target.set32(vq.aliasP0 + r.offset, 0);
    for (let o = 0; o < C.VCMDQ_CONS_INDX_BASE.offset + 8; o += 4) this.target.set32(vq.aliasP1 + o, 0);
    vq.vintf = -1;
    vq.lidx = -1;
    vq.aliasP0 = -1;
    vq.aliasP1 = -1;
    this.publishVintfStatus(vi);
  }

  private map(vq: Vcmdq, v: number, l: number): void {
    const vi = this.vintfs[v]!;
    vi.lv[l] = vq;
    vq.vintf = v;
    vq.lidx = l;
    vq.aliasP0 = lvcmdqPage0(v, l);
    vq.aliasP1 = lvcmdqPage1(v, l);
    for (const r of PAGE0_REGS) this.target.set32(vq.aliasP0 + r.offset, this.target.get32(vq.p0 + r.offset));
    for (let o = 0; o < C.VCMDQ_CONS_INDX_BASE.offset + 8; o += 4) this.target.set32(vq.aliasP1 + o, this.target.get32(vq.p1 + o));
    this.publishVintfStatus(vi);
  }

  /**
   * VINTF_CONFIG: EN shows in VINTF_STATUS.ENABLED at once; VMID and HYP_OWN act from the next
   * command on (the host changes them only while the VINTF is disabled).
   */
  private writeVintfConfig(vi: Vintf, v: number): void {
    this.target.set32(vintfRegOffset(vi.n, C.VINTF_CONFIG), v);
    vi.en = cget(v, VC.EN) === 1;
    vi.vmid = cget(v, VC.VMID);
    vi.hypOwn = cget(v, VC.HYP_OWN) === 1;
    this.publishVintfStatus(vi);
    if (!vi.en) this.stopStranded();
  }

  private publishVintfStatus(vi: Vintf): void {
    let n = 0;
    for (const x of vi.lv) if (x !== undefined) n++;
    const inError = vi.errMap.some((w) => w !== 0);
    let s = cset(0, VS.ENABLED, vi.en ? 1 : 0);
    s = cset(s, VS.STATUS, inError ? VINTF_STATUS_CODE.VCMDQ_ERROR : VINTF_STATUS_CODE.NO_ERROR);
    s = cset(s, VS.VI_NUM_LVCMDQ, n);
    const off = vintfRegOffset(vi.n, C.VINTF_STATUS);
    if (this.target.get32(off) !== s) this.target.set32(off, s);
  }

  // -------------------------------------------------------------------------------------------
  // Errors
  // -------------------------------------------------------------------------------------------

  private gerrorActive(vq: Vcmdq, f: Field): boolean {
    return ((this.target.get32(vq.p0 + C.VCMDQ_GERROR.offset) ^ this.target.get32(vq.p0 + C.VCMDQ_GERRORN.offset)) & mask32(f)) !== 0;
  }

  private toggleGerror(vq: Vcmdq, f: Field): void {
    this.setP0(vq, C.VCMDQ_GERROR, (this.target.get32(vq.p0 + C.VCMDQ_GERROR.offset) ^ mask32(f)) >>> 0);
  }

  /** GERRORN := GERROR acknowledges; once CMDQ_ERR is inactive the queue resumes at CONS.RD. */
  private writeGerrorn(vq: Vcmdq, v: number): void {
    this.setP0(vq, C.VCMDQ_GERRORN, v);
    if (vq.q.errActive && !this.gerrorActive(vq, GERR.CMDQ_ERR)) {
      vq.q.errActive = false;
      this.refreshErrorMaps();
    }
  }

  /**
   * Publish the error maps from the queues' state, in the order the host's ISR reads them
   * backwards: CMDQ_ERR_MAP, each VINTF's LVCMDQ_ERR_MAP_64 and VINTF_STATUS, then VINTF_ERR_MAP.
   */
  private refreshErrorMaps(): void {
    const cmdq = new Uint32Array(4);
    const perVintf = this.vintfs.map(() => new Uint32Array(4));
    const vintf = new Uint32Array(2);
    for (const vq of this.vcmdqs) {
      if (!vq.q.errActive) continue;
      cmdq[vq.n >>> 5]! |= 1 << (vq.n & 31);
      if (vq.vintf >= 0) {
        perVintf[vq.vintf]![vq.lidx >>> 5]! |= 1 << (vq.lidx & 31);
        vintf[vq.vintf >>> 5]! |= 1 << (vq.vintf & 31);
      }
    }
    for (let m = 0; m < 4; m++) {
      if (this.cmdqErr[m] === cmdq[m]) continue;
      this.cmdqErr[m] = cmdq[m]!;
      this.target.set32(cmdqvGlobalOffset(C.CMDQV_CMDQ_ERR_MAP, m), cmdq[m]!);
    }
    for (const vi of this.vintfs) {
      const map = perVintf[vi.n]!;
      let changed = false;
      for (let k = 0; k < 4; k++) {
        if (vi.errMap[k] === map[k]) continue;
        vi.errMap[k] = map[k]!;
        this.target.set32(vintfRegOffset(vi.n, C.VINTF_LVCMDQ_ERR_MAP_64, k >>> 1) + 4 * (k & 1), map[k]!);
        changed = true;
      }
      if (changed) this.publishVintfStatus(vi);
    }
    for (let m = 0; m < 2; m++) {
      if (this.vintfErr[m] === vintf[m]) continue;
      this.vintfErr[m] = vintf[m]!;
      this.target.set32(cmdqvGlobalOffset(C.CMDQV_VINTF_ERR_MAP, m), vintf[m]!);
    }
  }

  /** Assert the CMDQV interrupt (the model's counter word; viommu.md §4.7 step 1). */
  private interrupt(vq: Vcmdq): void {
    if (vq.vintf >= 0 && ((this.intMask[vq.vintf >>> 5]! >>> (vq.vintf & 31)) & 1) === 1) return;
    this.target.set32(CMDQV_SIM_IRQ_OFFSET, (this.target.get32(CMDQV_SIM_IRQ_OFFSET) + 1) >>> 0);
  }

  // -------------------------------------------------------------------------------------------
  // CommandExecutor
  // -------------------------------------------------------------------------------------------

  execute(q: CommandQueue, w: Uint32Array, next: number): number {
    const vq = this.vcmdqs[q.id - TRACE_QUEUE_VCMDQ]!;
    const code = this.filter(vq, w);
    if (code !== CERROR_NONE) {
      this.board.count('COMMAND_ERRORS');
      return code;
    }
    return this.dev.execute(q, w, next);
  }

  /** The CMDQV's own checks and substitutions, before the SMMU executes the command. */
  private filter(vq: Vcmdq, w: Uint32Array): number {
    const op = getBits(w, 0, OPCODE_BITS);
    // "The CMDQV only supports CS_NONE in the CS field of CMD_SYNC" (viommu.md §4.5), on every VCMDQ.
    if (op === OP.CMD_SYNC) return getBits(w, F_CS.lsb, F_CS.width) === CS_SIG_NONE ? CERROR_NONE : VCMDQ_ERR.ILL_OPCODE;
    const vi = this.vintfs[vq.vintf];
    if (vi === undefined || vi.hypOwn) return CERROR_NONE;
    switch (op) {
      case OP.CMD_TLBI_NH_ASID:
      case OP.CMD_TLBI_NH_VA:
        return this.substituteVmid(vi, w);
      case OP.CMD_TLBI_NH_ALL:
        return this.accept.nhAll ? this.substituteVmid(vi, w) : VCMDQ_ERR.ILL_OPCODE;
      case OP.CMD_TLBI_NH_VAA:
        return this.accept.nhVaa ? this.substituteVmid(vi, w) : VCMDQ_ERR.ILL_OPCODE;
      case OP.CMD_ATC_INV:
        return this.substituteSid(vi, w);
      case OP.CMD_CFGI_CD:
      case OP.CMD_CFGI_CD_ALL:
        return this.accept.cfgiCd ? this.substituteSid(vi, w) : VCMDQ_ERR.ILL_OPCODE;
      default:
        return VCMDQ_ERR.ILL_OPCODE;
    }
  }

  private substituteVmid(vi: Vintf, w: Uint32Array): number {
    if (this.foreignVmidIllegal) {
      const given = getBits(w, F_VMID.lsb, F_VMID.width);
      if (given !== 0 && given !== vi.vmid) return VCMDQ_ERR.ILL_ACCESS;
    }
    setBits(w, F_VMID.lsb, F_VMID.width, vi.vmid);
    return CERROR_NONE;
  }

  private substituteSid(vi: Vintf, w: Uint32Array): number {
    const vsid = getBits(w, F_SID.lsb, F_SID.width);
    const m = vi.sidMatch;
    for (let s = 0; s < m.length; s++) {
      const x = m[s]!;
      if (cget(x, MATCH.ENABLE) === 1 && cget(x, MATCH.VIRT_SID) === vsid) {
        setBits(w, F_SID.lsb, F_SID.width, cget(vi.sidReplace[s]!, REPLACE.PHYS_SID));
        return CERROR_NONE;
      }
    }
    return VCMDQ_ERR.ILL_ACCESS;
  }

  completeSync(q: CommandQueue, w: Uint32Array): void {
    // CS is SIG_NONE (filter): the SMMU's completion publishes CONS and signals nothing else.
    this.dev.completeSync(q, w);
  }

  publishCons(q: CommandQueue): void {
    const vq = this.vcmdqs[q.id - TRACE_QUEUE_VCMDQ]!;
    this.setP0(vq, C.VCMDQ_CONS, (((q.err << CONS_ERR.lsb) & mask32(CONS_ERR)) | q.cons) >>> 0);
  }

  raiseError(q: CommandQueue, _code: number): void {
    const vq = this.vcmdqs[q.id - TRACE_QUEUE_VCMDQ]!;
    // CONS.ERR and RD first, then the GERROR toggle, then the maps, then the interrupt.
    this.publishCons(q);
    if (!this.gerrorActive(vq, GERR.CMDQ_ERR)) this.toggleGerror(vq, GERR.CMDQ_ERR);
    this.refreshErrorMaps();
    this.interrupt(vq);
  }

  traced(q: CommandQueue, ptr: number, words: Uint32Array, outcome: number): void {
    this.dev.traced(q, ptr, words, outcome);
  }

  notFull(q: CommandQueue): void {
    this.dev.notFull(q);
  }

  // -------------------------------------------------------------------------------------------
  // Register storage: a VCMDQ's words live at its direct slot and, while allocated, its alias
  // -------------------------------------------------------------------------------------------

  private setP0(vq: Vcmdq, spec: CmdqvRegisterSpec, v: number): void {
    this.target.set32(vq.p0 + spec.offset, v);
    if (vq.aliasP0 >= 0) this.target.set32(vq.aliasP0 + spec.offset, v);
  }

  private setP1(vq: Vcmdq, rel: number, v: number): void {
    this.target.set32(vq.p1 + rel, v);
    if (vq.aliasP1 >= 0) this.target.set32(vq.aliasP1 + rel, v);
  }
}
