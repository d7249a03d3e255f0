/**
 * The host and VMM sides of the 'vcmdq' path (NVIDIA Tegra241 CMDQV; shared/reference/viommu.md
 * §4; Linux tegra241-cmdqv.c and QEMU hw/arm/tegra241-cmdqv.c read for facts only).
 *
 * - `CmdqvHostDriver`: the host kernel's CMDQV driver. Its `hooks()` are what HostSmmu calls from
 *   the iommufd objects (CmdqvHooks in iommufd.ts), written to the hardware model's registers
 *   through a RegisterPort on the physical 'cmdqv' window: VIOMMU_ALLOC enables a VINTF for the
 *   guest (VMID, HYP_OWN = 0), VDEVICE_ALLOC fills a SID_MATCH/SID_REPLACE pair, HW_QUEUE_ALLOC
 *   allocates the logical VCMDQ (CMDQ_ALLOC) and programs its VCMDQ_BASE with the host PA without
 *   enabling it, destruction undoes each. `isr()` is tegra241_cmdqv_isr for user VINTFs: it posts
 *   each erroring VINTF's LVCMDQ_ERR_MAP_64 pair as a TEGRA241_CMDQV vEVENT and clears nothing.
 * - `VirtualCmdqv`: the VMM's trapped CMDQV window for the guest (QEMU's model): one VINTF, the
 *   global page and page 1 emulated, VINTF0 page 0 being the host page the guest has mapped.
 *   A guest VCMDQ_BASE write (with the CMDQV and VINTF0 enabled and CMDQ_ALLOC.ALLOCATED set)
 *   becomes IOMMU_HW_QUEUE_ALLOC; VINTF0 or CMDQV disable and ALLOCATED 1 → 0 destroy the queues
 *   (descending). `pollEvents()` reads the vIOMMU's TEGRA241_CMDQV vEVENTQ, copies the map into
 *   the guest's VINTF0 LVCMDQ_ERR_MAP and CMDQ_ERR_MAP, sets VINTF_ERR_MAP bit 0 and raises the
 *   guest's CMDQV interrupt (the window's CMDQV_SIM_IRQ word) unless VINTF_INT_MASK bit 0 masks it.
 *   It is a DeviceExtension: the VMM's SmmuDevice (the vSMMU) serves its window's FIFO.
 */

import type { DeviceExtension } from '../device/smmu.ts';
import type { Board, WindowConfig } from '../mem/board.ts';
import { MmioTarget, type MmioWrite } from '../mem/mmio.ts';
import type { WaitPolicy } from '../mem/wait.ts';
import type { RegisterPort } from '../driver/port.ts';
import { fieldGetNumber } from '../spec/bits.ts';
import {
  CMDQV_REG as C,
  CMDQV_SIM_IRQ_OFFSET,
  cget,
  cmdqAllocValue,
  cmdqvCounts,
  cmdqvGeometryError,
  cmdqvGlobalOffset,
  cmdqvLocate,
  cmdqvParamDecode,
  cmdqvParamValue,
  cmdqvWindowBytes,
  cmdqvWritableMask,
  cset,
  globalVcmdq,
  lvcmdqPage0,
  lvcmdqPage1,
  sidMatchValue,
  vcmdqPage1,
  vintfConfigValue,
  vintfRegOffset,
  type CmdqvCounts,
  type CmdqvGeometry,
  type CmdqvRegisterSpec,
} from '../spec/cmdqv.ts';
import { COMMAND_BYTES } from '../spec/commands.ts';
import { errnoName } from './errno.ts';
import { HostSmmu, parseVevents, type CmdqvHooks, type CmdqvParams, type HostSmmuOptions, type Iommufd } from './iommufd.ts';
import { IOMMU_HW_QUEUE_TYPE, IOMMU_VEVENT_TEGRA241_CMDQV_S, readU64 } from './uapi.ts';

function hex(v: number): string {
  return `0x${(v >>> 0).toString(16).padStart(8, '0')}`;
}

// ---------------------------------------------------------------------------------------------
// The host kernel's driver
// ---------------------------------------------------------------------------------------------

export interface CmdqvHostOptions {
  readonly policy: WaitPolicy;
  /** Physical address of the CMDQV window (for the VINTF page-0 address the vIOMMU mmaps). */
  readonly base: number;
  /**
   * A CMD_SYNC on the SMMU's own command queue, issued whenever a guest-owned VCMDQ is disabled
   * so a pending ATC_INV timeout is not blamed on the next VM (viommu.md §4.7 step 5). Without it
   * the step is skipped.
   */
  readonly mainSync?: () => void;
}

/** What the host ISR did: for each user VINTF in VINTF_ERR_MAP, the map it posted and the errno. */
export interface HostIsrReport {
  readonly vintfMap: bigint;
  readonly posted: { readonly vintf: number; readonly map: readonly [bigint, bigint]; readonly errno: number }[];
}

export class CmdqvHostDriver {
  readonly counts: CmdqvCounts;
  readonly geometry: CmdqvGeometry;
  private irqSeen: number;

  constructor(readonly port: RegisterPort, readonly opts: CmdqvHostOptions) {
    this.geometry = cmdqvParamDecode(port.read32(C.CMDQV_PARAM.offset));
    const err = cmdqvGeometryError(this.geometry);
    if (err !== undefined) throw new Error(`CMDQV_PARAM ${hex(port.read32(C.CMDQV_PARAM.offset))}: ${err}`);
    this.counts = cmdqvCounts(this.geometry);
    this.irqSeen = port.peek32(CMDQV_SIM_IRQ_OFFSET);
  }

  /** HostSmmuOptions.cmdqv: the geometry and these hooks. */
  hooks(): CmdqvParams & CmdqvHooks {
    const c = this.counts;
    return {
      numVintfs: c.numVintfs,
      numVcmdqs: c.numVcmdqs,
      numSidsPerVintf: c.numSids,
      base: this.opts.base,
      vintfEnable: (v, vmid) => this.vintfEnable(v, vmid),
      vintfDisable: (v) => this.vintfDisable(v),
      sidMap: (v, s, vsid, psid) => this.sidMap(v, s, vsid, psid),
      sidUnmap: (v, s) => this.sidUnmap(v, s),
      lvcmdqInit: (v, l, pa, log2) => this.lvcmdqInit(v, l, pa, log2),
      lvcmdqDeinit: (v, l) => this.lvcmdqDeinit(v, l),
    };
  }

  /**
   * The CMDQV's part of the host's SMMU reset (tegra241_cmdqv_hw_reset): CMDQV off and on, every
   * global VCMDQ assigned to its VINTF and logical index (q = v·per-VINTF + l, not allocated), and
   * VINTF0 enabled for the kernel (HYP_OWN = 1). Once per system, before any VM. The model's host
   * issues its own commands on the SMMU's command queue, so VINTF0 gets no logical VCMDQs.
   */
  reset(): void {
    const p = this.port;
    const cfg = p.read32(C.CMDQV_CONFIG.offset);
    this.writeConfig(C.CMDQV_CONFIG.offset, cset(cfg, C.CMDQV_CONFIG.f.CMDQV_EN, 0), C.CMDQV_STATUS.offset, 'CMDQV');
    this.writeConfig(C.CMDQV_CONFIG.offset, cset(cfg, C.CMDQV_CONFIG.f.CMDQV_EN, 1), C.CMDQV_STATUS.offset, 'CMDQV');
    const c = this.counts;
    for (let v = 0; v < c.numVintfs; v++) {
      for (let l = 0; l < c.lvcmdqsPerVintf; l++) p.write32(cmdqvGlobalOffset(C.CMDQV_CMDQ_ALLOC, globalVcmdq(v, l, c.lvcmdqsPerVintf)), cmdqAllocValue(v, l, false));
    }
    this.vintfHwInit(0, 0, true);
  }

  /** tegra241_vintf_hw_init: deinit, CONFIG with VMID and HYP_OWN, then EN and a wait for ENABLED. */
  private vintfHwInit(v: number, vmid: number, hypOwn: boolean): void {
    this.vintfHwDeinit(v);
    const off = vintfRegOffset(v, C.VINTF_CONFIG);
    this.port.write32(off, vintfConfigValue({ en: false, vmid, hypOwn }));
    this.writeConfig(off, vintfConfigValue({ en: true, vmid, hypOwn }), vintfRegOffset(v, C.VINTF_STATUS), `VINTF${v}`);
  }

  /** tegra241_vintf_hw_deinit: logical VCMDQs down in descending order, CONFIG 0, SID slots cleared. */
  private vintfHwDeinit(v: number): void {
    const c = this.counts;
    for (let l = c.lvcmdqsPerVintf - 1; l >= 0; l--) {
      const q = globalVcmdq(v, l, c.lvcmdqsPerVintf);
      if (cget(this.port.read32(cmdqvGlobalOffset(C.CMDQV_CMDQ_ALLOC, q)), C.CMDQV_CMDQ_ALLOC.f.CMDQ_ALLOCATED) === 1) this.lvcmdqDeinit(v, l);
    }
    this.writeConfig(vintfRegOffset(v, C.VINTF_CONFIG), 0, vintfRegOffset(v, C.VINTF_STATUS), `VINTF${v}`);
    for (let s = 0; s < c.numSids; s++) this.sidUnmap(v, s);
  }

  /** VIOMMU_ALLOC of a TEGRA241_CMDQV vIOMMU (tegra241_cmdqv_init_vintf_user): HYP_OWN = 0, the vIOMMU's VMID. */
  vintfEnable(v: number, vmid: number): void {
    this.vintfHwInit(v, vmid, false);
  }

  /** The vIOMMU destroyed (tegra241_cmdqv_remove_vintf). */
  vintfDisable(v: number): void {
    this.vintfHwDeinit(v);
  }

  /** VDEVICE_ALLOC (tegra241_vintf_init_vsid): SID_REPLACE first, then SID_MATCH with ENABLE. */
  sidMap(v: number, slot: number, vsid: number, psid: number): void {
    this.port.write32(vintfRegOffset(v, C.VINTF_SID_REPLACE, slot), psid);
    this.port.write32(vintfRegOffset(v, C.VINTF_SID_MATCH, slot), sidMatchValue(vsid));
  }

  sidUnmap(v: number, slot: number): void {
    this.port.write32(vintfRegOffset(v, C.VINTF_SID_MATCH, slot), 0);
    this.port.write32(vintfRegOffset(v, C.VINTF_SID_REPLACE, slot), 0);
  }

  /**
   * HW_QUEUE_ALLOC (tegra241_vintf_alloc_lvcmdq_user): allocate global VCMDQ v·per + l to VINTF v
   * as LVCMDQ l, then VCMDQ_BASE = host PA | LOG2SIZE through the VINTF's page 1. The queue is
   * not enabled: the guest does that through its page 0 (viommu.md §4.3 step 3).
   */
  lvcmdqInit(v: number, l: number, basePa: number, log2size: number): void {
    const q = globalVcmdq(v, l, this.counts.lvcmdqsPerVintf);
    this.port.write32(cmdqvGlobalOffset(C.CMDQV_CMDQ_ALLOC, q), cmdqAllocValue(v, l, true));
    const f = C.VCMDQ_BASE.f;
    const lo = (basePa % 2 ** 32) - ((basePa % 2 ** 32) % 2 ** f.ADDR.lsb) + cset(0, f.LOG2SIZE, log2size);
    this.port.write64Parts(lvcmdqPage1(v, l) + C.VCMDQ_BASE.offset, lo >>> 0, Math.floor(basePa / 2 ** 32));
  }

  /**
   * HW_QUEUE destroyed (tegra241_vintf_destroy_lvcmdq_user): tegra241_vcmdq_hw_deinit (disable and
   * wait, a CMD_SYNC on the SMMU's queue, PROD, CONS, BASE and CONS_INDX_BASE zeroed, a pending
   * error acknowledged), then CMDQ_ALLOC.ALLOCATED cleared.
   */
  lvcmdqDeinit(v: number, l: number): void {
    const p = this.port;
    const p0 = lvcmdqPage0(v, l);
    const p1 = lvcmdqPage1(v, l);
    this.writeConfig(p0 + C.VCMDQ_CONFIG.offset, 0, p0 + C.VCMDQ_STATUS.offset, `VINTF${v} LVCMDQ${l}`);
    this.opts.mainSync?.();
    p.write32(p0 + C.VCMDQ_PROD.offset, 0);
    p.write32(p0 + C.VCMDQ_CONS.offset, 0);
    p.write64Parts(p1 + C.VCMDQ_BASE.offset, 0, 0);
    p.write64Parts(p1 + C.VCMDQ_CONS_INDX_BASE.offset, 0, 0);
    const gerrorn = p.read32(p0 + C.VCMDQ_GERRORN.offset);
    const gerror = p.read32(p0 + C.VCMDQ_GERROR.offset);
    if (gerror !== gerrorn) p.write32(p0 + C.VCMDQ_GERRORN.offset, gerror);
    const q = globalVcmdq(v, l, this.counts.lvcmdqsPerVintf);
    const off = cmdqvGlobalOffset(C.CMDQV_CMDQ_ALLOC, q);
    p.write32(off, cset(p.read32(off), C.CMDQV_CMDQ_ALLOC.f.CMDQ_ALLOCATED, 0));
  }

  private writeConfig(cfgOff: number, value: number, statusOff: number, what: string): void {
    const en = value & 1;
    this.port.write32(cfgOff, value);
    this.port.waitReg(statusOff, (x) => (x & 1) === en, () => `${what} to ${en === 1 ? 'en' : 'dis'}able: STATUS reads ${hex(this.port.peek32(statusOff))}`, this.opts.policy);
  }

  /** The CMDQV interrupt was raised since the last look. */
  irqPending(): boolean {
    return this.port.peek32(CMDQV_SIM_IRQ_OFFSET) !== this.irqSeen;
  }

  /** Run the ISR if the interrupt was raised (a host that polls its interrupt line). */
  serviceInterrupt(host: HostSmmu, only?: number): HostIsrReport | undefined {
    const now = this.port.peek32(CMDQV_SIM_IRQ_OFFSET);
    if (now === this.irqSeen) return undefined;
    this.irqSeen = now;
    return this.isr(host, only);
  }

  /**
   * tegra241_cmdqv_isr for user VINTFs: VINTF_ERR_MAP as two 32-bit reads, then for each user
   * VINTF in it (or only `only`, the one this host model owns) the two LVCMDQ_ERR_MAP_64 words,
   * posted with HostSmmu.reportVintfError. VINTF0 is the kernel's own and has no LVCMDQs here.
   */
  isr(host: HostSmmu, only?: number): HostIsrReport {
    const p = this.port;
    const lo = p.read32(cmdqvGlobalOffset(C.CMDQV_VINTF_ERR_MAP, 0));
    const hi = p.read32(cmdqvGlobalOffset(C.CMDQV_VINTF_ERR_MAP, 1));
    const vintfMap = (BigInt(hi) << 32n) | BigInt(lo);
    const posted: HostIsrReport['posted'] = [];
    for (let v = 1; v < this.counts.numVintfs; v++) {
      if (((vintfMap >> BigInt(v)) & 1n) === 0n || (only !== undefined && v !== only)) continue;
      const map: [bigint, bigint] = [0n, 0n];
      for (let m = 0; m < 2; m++) {
        const off = vintfRegOffset(v, C.VINTF_LVCMDQ_ERR_MAP_64, m);
        map[m] = (BigInt(p.read32(off + 4)) << 32n) | BigInt(p.read32(off));
      }
      posted.push({ vintf: v, map, errno: host.reportVintfError(v, map) });
    }
    return { vintfMap, posted };
  }
}

/**
 * A HostSmmu that gives its one guest a VINTF the system assigned. The model runs one host-kernel
 * instance per VMM worker (vmm-worker.ts), and VINTFs belong to the one CMDQV they share: the
 * system hands each VM its own, as AssignedVmid does for VMIDs.
 */
export class AssignedVintfHostSmmu extends HostSmmu {
  private claimed = false;

  constructor(o: HostSmmuOptions, readonly vintf: number) {
    super(o);
    const c = o.cmdqv;
    if (c === undefined) throw new Error('AssignedVintfHostSmmu needs a CMDQV (HostSmmuOptions.cmdqv)');
    if (!Number.isInteger(vintf) || vintf < 1 || vintf >= c.numVintfs) throw new RangeError(`VINTF ${vintf} is not a user VINTF (1..${c.numVintfs - 1})`);
  }

  override freeVintfIndex(): number | undefined {
    return this.claimed ? undefined : this.vintf;
  }

  override claimVintf(...a: Parameters<HostSmmu['claimVintf']>): void {
    super.claimVintf(...a);
    this.claimed = true;
  }

  override freeVintf(i: number): void {
    super.freeVintf(i);
    if (i === this.vintf) this.claimed = false;
  }
}

// ---------------------------------------------------------------------------------------------
// The VMM's virtual CMDQV
// ---------------------------------------------------------------------------------------------

/** QEMU's guest-visible CMDQV: VER 1, 2 VCMDQs, 1 VINTF, 16 SID slots (viommu.md §4.2). */
export const GUEST_CMDQV_GEOMETRY: CmdqvGeometry = Object.freeze({ version: 1, numVcmdqsLog2: 1, numVintfsLog2: 0, numSidsLog2: 4 });

/** The guest's CMDQV window: 5 pages, as QEMU's TEGRA241_CMDQV_IO_LEN. */
export function virtualCmdqvWindow(name: string, base: number, wakeWith: string): WindowConfig {
  return { name, base, bytes: cmdqvWindowBytes(1), wakeWith };
}

export interface VirtualCmdqvOptions {
  /** The guest's CMDQV window on the board (virtualCmdqvWindow). */
  readonly window: string;
  readonly fd: Iommufd;
  /** The TEGRA241_CMDQV vIOMMU. */
  readonly viommuId: number;
  /** The fd of its TEGRA241_CMDQV vEVENTQ (pollEvents reads it). */
  readonly veventqFd?: number;
  /** What the guest sees; default GUEST_CMDQV_GEOMETRY. One VINTF only. */
  readonly geometry?: CmdqvGeometry;
}

export interface VirtualCmdqvCounters {
  /** Guest writes to the trapped window (each an exit to the VMM). */
  mmioTraps: number;
  hwQueueAllocs: number;
  hwQueueFrees: number;
  /** HW_QUEUE_ALLOC or DESTROY failures (the guest's enable then times out, as with QEMU). */
  failures: number;
  vevents: number;
  guestInterrupts: number;
}

/** A VMM failure worth a line in its log. */
export interface VirtualCmdqvLogEntry {
  readonly what: string;
  readonly errno: number;
}

export class VirtualCmdqv implements DeviceExtension {
  readonly target: MmioTarget;
  readonly counts: CmdqvCounts;
  readonly counters: VirtualCmdqvCounters = { mmioTraps: 0, hwQueueAllocs: 0, hwQueueFrees: 0, failures: 0, vevents: 0, guestInterrupts: 0 };
  readonly log: VirtualCmdqvLogEntry[] = [];
  private readonly geometry: CmdqvGeometry;
  /** HW_QUEUE ids by guest VCMDQ index. */
  private readonly hwQueues: (number | undefined)[];

  constructor(board: Board, readonly opts: VirtualCmdqvOptions) {
    this.geometry = opts.geometry ?? GUEST_CMDQV_GEOMETRY;
    const err = cmdqvGeometryError(this.geometry);
    if (err !== undefined) throw new RangeError(err);
    if (this.geometry.numVintfsLog2 !== 0) throw new RangeError('the VMM presents exactly one VINTF (viommu.md §4.2)');
    this.counts = cmdqvCounts(this.geometry);
    this.target = new MmioTarget(board, opts.window);
    if (this.target.window.bytes < cmdqvWindowBytes(1)) throw new RangeError(`window ${opts.window} is smaller than a one-VINTF CMDQV (0x${cmdqvWindowBytes(1).toString(16)} bytes)`);
    this.hwQueues = new Array<number | undefined>(this.counts.numVcmdqs).fill(undefined);
    for (let off = 0; off < this.target.window.bytes; off += 4) if (this.target.get32(off) !== 0) this.target.set32(off, 0);
    this.target.set32(C.CMDQV_PARAM.offset, cmdqvParamValue(this.geometry));
  }

  private get(off: number): number {
    return this.target.get32(off);
  }

  private cmdqvEnabled(): boolean {
    return cget(this.get(C.CMDQV_CONFIG.offset), C.CMDQV_CONFIG.f.CMDQV_EN) === 1;
  }

  private vintfEnabled(): boolean {
    return cget(this.get(vintfRegOffset(0, C.VINTF_CONFIG)), C.VINTF_CONFIG.f.EN) === 1;
  }

  private allocated(i: number): boolean {
    return cget(this.get(cmdqvGlobalOffset(C.CMDQV_CMDQ_ALLOC, i)), C.CMDQV_CMDQ_ALLOC.f.CMDQ_ALLOCATED) === 1;
  }

  /** The guest's VCMDQ_BASE of index i (page 1 of VINTF0: the direct aperture is the same cache). */
  private base(i: number): { lo: number; hi: number } {
    const off = lvcmdqPage1(0, i) + C.VCMDQ_BASE.offset;
    return { lo: this.get(off), hi: this.get(off + 4) };
  }

  // -------------------------------------------------------------------------------------------
  // Trapped writes
  // -------------------------------------------------------------------------------------------

  applyWrite(w: MmioWrite): void {
    if (w.dma) return;
    this.counters.mmioTraps++;
    const loc = cmdqvLocate(w.off, this.counts);
    if (loc === undefined) return;
    if (w.wide && loc.spec.width === 64 && loc.half === 0 && (loc.kind === 'vcmdq' || loc.kind === 'lvcmdq')) {
      const i = loc.kind === 'vcmdq' ? loc.q : loc.lvcmdq;
      this.writePage1(i, loc.spec, w.lo, w.hi, true);
      return;
    }
    this.write32(w.off, w.lo);
    if (w.wide) this.write32(w.off + 4, w.hi);
  }

  private write32(off: number, v: number): void {
    const loc = cmdqvLocate(off, this.counts);
    if (loc === undefined || loc.spec.access !== 'RW') return;
    switch (loc.kind) {
      case 'global':
        if (loc.spec === C.CMDQV_CONFIG) return this.writeConfig(v & cmdqvWritableMask(C.CMDQV_CONFIG));
        if (loc.spec === C.CMDQV_VINTF_INT_MASK) return this.target.set32(off, loc.index === 0 ? v & 1 : 0);
        if (loc.spec === C.CMDQV_CMDQ_ALLOC) return this.writeAlloc(loc.index, v & cmdqvWritableMask(C.CMDQV_CMDQ_ALLOC));
        return;
      case 'vintf':
        if (loc.spec === C.VINTF_CONFIG) return this.writeVintfConfig(v & cmdqvWritableMask(C.VINTF_CONFIG));
        // SID_MATCH/SID_REPLACE: kept for the guest to read back; the host's pairs act (§4.4).
        if (loc.spec === C.VINTF_SID_MATCH || loc.spec === C.VINTF_SID_REPLACE) return this.target.set32(off, v & cmdqvWritableMask(loc.spec));
        return;
      case 'vcmdq':
      case 'lvcmdq': {
        if (loc.spec.block !== 'page1') {
          // Page 0 of the direct aperture: QEMU forwards it to the mapped host page and reads it
          // back from there; a window of this model cannot serve reads, so it is RAZ/WI here.
          return;
        }
        const i = loc.kind === 'vcmdq' ? loc.q : loc.lvcmdq;
        if (loc.half === 0) this.writePage1(i, loc.spec, v, 0, false);
        else this.writePage1Hi(i, loc.spec, v);
        return;
      }
    }
  }

  private setPage1(i: number, rel: number, v: number): void {
    // Both apertures show the one cached value (QEMU's single copy).
    this.target.set32(lvcmdqPage1(0, i) + rel, v);
    this.target.set32(vcmdqPage1(i) + rel, v);
  }

  private writePage1(i: number, spec: CmdqvRegisterSpec, lo: number, hi: number, wide: boolean): void {
    this.setPage1(i, spec.offset, lo & cmdqvWritableMask(spec, 0));
    if (wide) this.setPage1(i, spec.offset + 4, hi & cmdqvWritableMask(spec, 1));
    if (spec === C.VCMDQ_BASE) this.setup(i);
  }

  private writePage1Hi(i: number, spec: CmdqvRegisterSpec, hi: number): void {
    this.setPage1(i, spec.offset + 4, hi & cmdqvWritableMask(spec, 1));
    if (spec === C.VCMDQ_BASE) this.setup(i);
  }

  private writeConfig(v: number): void {
    this.target.set32(C.CMDQV_CONFIG.offset, v);
    const en = cget(v, C.CMDQV_CONFIG.f.CMDQV_EN);
    this.target.set32(C.CMDQV_STATUS.offset, cset(0, C.CMDQV_STATUS.f.CMDQV_ENABLED, en));
    if (en === 1) this.setupAll();
    else this.freeAll();
  }

  /** VINTF0_CONFIG: HYP_OWN is masked off (the VINTF stays guest-owned, viommu.md §4.5). */
  private writeVintfConfig(v: number): void {
    const value = cset(v, C.VINTF_CONFIG.f.HYP_OWN, 0);
    this.target.set32(vintfRegOffset(0, C.VINTF_CONFIG), value);
    const en = cget(value, C.VINTF_CONFIG.f.EN);
    const st = vintfRegOffset(0, C.VINTF_STATUS);
    this.target.set32(st, cset(this.get(st), C.VINTF_STATUS.f.ENABLED, en));
    if (en === 1) this.setupAll();
    else this.freeAll();
  }

  private writeAlloc(i: number, v: number): void {
    const was = this.allocated(i);
    this.target.set32(cmdqvGlobalOffset(C.CMDQV_CMDQ_ALLOC, i), v);
    const now = this.allocated(i);
    if (!was && now) this.setup(i);
    else if (was && !now) this.free(i);
  }

  // -------------------------------------------------------------------------------------------
  // HW queues
  // -------------------------------------------------------------------------------------------

  /**
   * Allocate guest VCMDQ i's hardware queue once BASE ≠ 0, ALLOCATED, CMDQV and VINTF0 are all
   * set (viommu.md §4.3 step 2): IOMMU_HW_QUEUE_ALLOC(index i, nesting_parent_iova = BASE.ADDR,
   * length = 2^(LOG2SIZE + 4)), after destroying the one it had.
   */
  private setup(i: number): void {
    const b = this.base(i);
    if ((b.lo === 0 && b.hi === 0) || !this.allocated(i) || !this.cmdqvEnabled() || !this.vintfEnabled()) return;
    this.free(i);
    const f = C.VCMDQ_BASE.f;
    const addr = fieldGetNumber([b.lo, b.hi], f.ADDR);
    const length = COMMAND_BYTES * 2 ** cget(b.lo, f.LOG2SIZE);
    const r = this.opts.fd.hwQueueAlloc({ viommuId: this.opts.viommuId, type: IOMMU_HW_QUEUE_TYPE.TEGRA241_CMDQV, index: i, iova: addr, length });
    if (!r.ok) {
      this.counters.failures++;
      this.log.push({ what: `HW_QUEUE_ALLOC of VCMDQ ${i} (IPA 0x${addr.toString(16)}, ${length} bytes): ${errnoName(r.errno)}`, errno: r.errno });
      return;
    }
    this.counters.hwQueueAllocs++;
    this.hwQueues[i] = r.hwQueueId;
  }

  private setupAll(): void {
    for (let i = 0; i < this.counts.numVcmdqs; i++) this.setup(i);
  }

  private free(i: number): void {
    const id = this.hwQueues[i];
    if (id === undefined) return;
    const rc = this.opts.fd.destroy(id);
    if (rc !== 0) {
      this.counters.failures++;
      this.log.push({ what: `DESTROY of HW_QUEUE ${id} (VCMDQ ${i}): ${errnoName(rc)}`, errno: rc });
      return;
    }
    this.counters.hwQueueFrees++;
    this.hwQueues[i] = undefined;
  }

  /** Every hardware queue destroyed, in descending index order (the uAPI's rule). */
  freeAll(): void {
    for (let i = this.counts.numVcmdqs - 1; i >= 0; i--) this.free(i);
  }

  /** The HW_QUEUE id behind guest VCMDQ i, if allocated. */
  hwQueue(i: number): number | undefined {
    return this.hwQueues[i];
  }

  // -------------------------------------------------------------------------------------------
  // Errors from the host
  // -------------------------------------------------------------------------------------------

  /**
   * Read the TEGRA241_CMDQV vEVENTQ (QEMU tegra241_cmdqv_event_read): each non-empty
   * lvcmdq_err_map becomes the guest's VINTF0 LVCMDQ_ERR_MAP (and CMDQ_ERR_MAP: with one VINTF
   * they carry the same bits), VINTF_ERR_MAP bit 0 is set, and the guest's CMDQV interrupt is
   * raised unless masked. Returns the events read.
   */
  pollEvents(): number {
    const fd = this.opts.veventqFd;
    if (fd === undefined) return 0;
    const S = IOMMU_VEVENT_TEGRA241_CMDQV_S;
    const r = this.opts.fd.veventqRead(fd, 64 * 1024);
    if (r.errno !== 0 || r.data.length === 0) return 0;
    const events = parseVevents(r.data, S.size);
    for (const e of events) {
      this.counters.vevents++;
      if (e.payload.length < S.size) continue; // a lost-events header
      const m0 = readU64(e.payload, 0);
      const m1 = readU64(e.payload, 8);
      if (m0 === 0n && m1 === 0n) continue;
      const words = [m0 & 0xffff_ffffn, m0 >> 32n, m1 & 0xffff_ffffn, m1 >> 32n].map(Number);
      words.forEach((w, k) => {
        this.target.set32(vintfRegOffset(0, C.VINTF_LVCMDQ_ERR_MAP_64, k >>> 1) + 4 * (k & 1), w);
        this.target.set32(cmdqvGlobalOffset(C.CMDQV_CMDQ_ERR_MAP, k), w);
      });
      const vm = cmdqvGlobalOffset(C.CMDQV_VINTF_ERR_MAP, 0);
      this.target.set32(vm, (this.get(vm) | 1) >>> 0);
      if ((this.get(cmdqvGlobalOffset(C.CMDQV_VINTF_INT_MASK, 0)) & 1) === 0) {
        this.counters.guestInterrupts++;
        this.target.set32(CMDQV_SIM_IRQ_OFFSET, (this.get(CMDQV_SIM_IRQ_OFFSET) + 1) >>> 0);
      }
    }
    return events.length;
  }
}
