/**
 * Virtual machines with assigned devices behind the host's SMMU (issue 6; src/virt/vsmmu.ts).
 *
 * A VM k has:
 * - guest memory: a slice of host RAM carved above the host driver's, seen by the guest at the
 *   board's RAM base (its IPA base), through a MemView;
 * - a virtual SMMU register window 'vsmmu<k>' on the board, sized for the guest-visible features
 *   (vsmmuFeatures: stage 1 only, no ECMDQ, MSIs);
 * - a stage 2 domain in the host driver (sys.driver): every assigned physical StreamID attached to
 *   it with the VM's VMID, guest RAM mapped IPA → host PA;
 * - a serving worker (src/virt/vmm-worker.ts): the VMM ('trap', 'vcmdq') or the host kernel's
 *   in-kernel queue consumer ('kernel-queue'), which is one host CPU on the host's shared command
 *   queues;
 * - a guest driver worker: the unchanged GuestDriver (driver-worker.ts) on 'vsmmu<k>' and guest
 *   memory. It does not know which path serves it. With VmConfig.guest false there is none, and
 *   Vm.guestOptions says how to run that guest elsewhere.
 *
 * A 'vcmdq' VM (NVIDIA Tegra241 CMDQV, SystemConfig.cmdqv) also has a VINTF of the physical CMDQV
 * (the n-th 'vcmdq' VM, counting from 1, gets VINTF n, VINTF0 being the host's: the kernel's
 * lowest free one when the VMs are created in order) and a trapped CMDQV window 'vcmdqv<k>' of
 * one VINTF that its VMM serves. Its guest driver worker brings up the guest CMDQV driver on that window plus the VINTF's
 * page 0 of the physical window, mapped into the guest: NH_ASID, NH_VA and ATC_INV go to its
 * LVCMDQ without a trap, everything else to its trapped SMMU queue, as on 'trap'.
 *
 * A device in the VM does DMA through sys.dma({ sid: psid, … }): the host SMMU translates with the
 * nested STE the serving worker installed (the guest's stage 1 over the host's stage 2).
 *
 * `planVms` runs before the board exists (it adds windows and RAM); `startVms` runs once the host
 * driver has reset the SMMU and shared its queues with one CPU per VM.
 */
import type { Worker } from 'node:worker_threads';
import { PAGE_64K, type WindowConfig } from '../mem/board.ts';
import { MmioPort } from '../mem/mmio.ts';
import type { WaitPolicy } from '../mem/wait.ts';
import type { CpuQueuesLayout } from '../driver/cpu.ts';
import type { DriverOptions } from '../driver/driver.ts';
import type { Granule } from '../driver/pgtable.ts';
import { OAS_BITS, type SmmuFeatures } from '../spec/features.ts';
import { smmuRegWindow } from '../spec/registers.ts';
import { cmdqvCounts, vintfPage0 } from '../spec/cmdqv.ts';
import { cmdqvGeometry, type CmdqvConfig } from '../device/cmdqv.ts';
import type { IssueResult } from '../driver/driver.ts';
import { virtualCmdqvWindow } from '../virt/cmdqv-host.ts';
import type { VmmCmdqvData, VmmState, VmmWorkerData } from '../virt/vmm-worker.ts';
import { vsmmuFeatures, type GuestRam, type TrapBatch, type VmDeviceConfig, type VmPath } from '../virt/vsmmu.ts';
import type { DriverWorkerData, GuestCmdqvData } from './driver-worker.ts';
import { workerReady } from './rpc.ts';
import { spawnWorker } from './spawn.ts';
import { DriverHandle, WorkerHandle, commandWords, type Command, type System } from './system.ts';

export type { VmmState, VmmCmdqvState } from '../virt/vmm-worker.ts';
export type { VmPath, TrapBatch, VmDeviceConfig, GuestRam, VsmmuCounters } from '../virt/vsmmu.ts';

/** One VM of SystemConfig.vms. */
export interface VmConfig {
  readonly path: VmPath;
  /** Bytes of guest memory, a multiple of 64 KiB (default 2 MiB). */
  readonly ramBytes?: number;
  /** The assigned devices: the StreamID the guest programs (vsid) and the host's (psid). */
  readonly devices: readonly VmDeviceConfig[];
  /**
   * 'trap' and 'vcmdq' (its trapped SMMU queue): one command per HWPT_INVALIDATE ('single', QEMU,
   * default) or all up to each CMD_SYNC.
   */
  readonly trapBatch?: TrapBatch;
  /** Changes to the guest-visible SMMU features (see vsmmuFeatures). */
  readonly features?: Partial<SmmuFeatures>;
  /** The VM's VMID (default: its index + 1, as the kernel's lowest-free allocation gives at boot). */
  readonly vmid?: number;
  /** Guest driver: log2 of the StreamIDs its Stream table covers (default min(SIDSIZE, 8)). */
  readonly strtabLog2?: number;
  /** Guest driver: log2 of its command queue entries. */
  readonly cmdqLog2?: number;
  /** 'vcmdq' only: log2 of each LVCMDQ's entries (default the guest CMDQV driver's, 8; capped at CMDQS). */
  readonly lvcmdqLog2?: number;
  /**
   * Start the VM's guest driver worker, which probes and resets the virtual SMMU (default true).
   * false: no guest runs; the VM's virtual SMMU stays at reset and `Vm.guestOptions` holds what
   * the guest driver would have been given, for a guest run in another thread (the benchmark's
   * bench worker builds the same GuestDriver from it, and brings it up with resetGuest,
   * src/virt/guest-setup.ts).
   */
  readonly guest?: boolean;
}

/** Guest memory of a VM unless its config says otherwise. */
export const DEFAULT_VM_RAM_BYTES = 2 << 20;

function alignUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/** Where one VM lives. */
export interface VmPlan {
  readonly index: number;
  readonly path: VmPath;
  readonly trapBatch: TrapBatch | undefined;
  readonly window: WindowConfig;
  readonly ram: GuestRam;
  readonly vmid: number;
  /** The guest-visible features. */
  readonly features: SmmuFeatures;
  /** IPA bits of the VM's stage 2 (the guest's OAS). */
  readonly ipaBits: number;
  readonly devices: readonly VmDeviceConfig[];
  readonly config: VmConfig;
  /** 'vcmdq' only: the VM's VINTF and its trapped CMDQV window. */
  readonly cmdqv: { readonly vintf: number; readonly window: WindowConfig } | undefined;
}

export interface VmsPlan {
  /** Register windows to add to the board. */
  readonly windows: readonly WindowConfig[];
  /** The board's RAM: the host's bytes plus every VM's. */
  readonly ramBytes: number;
  /** RAM the host driver allocates from: [ramBase, ramBase + hostRamBytes). */
  readonly hostRamBytes: number;
  readonly vms: readonly VmPlan[];
}

export interface VmsHost {
  readonly features: SmmuFeatures;
  readonly smmuBase: number;
  readonly ramBase: number;
  /** Host RAM before the VMs' (SystemConfig.ramBytes, default 64 MiB). */
  readonly hostRamBytes: number;
  /** The physical CMDQV, if the system has one (SystemConfig.cmdqv): its config and window. */
  readonly cmdqv?: { readonly config: CmdqvConfig; readonly window: WindowConfig };
}

/**
 * Lay out the VMs: windows after the host SMMU's, guest RAM carved above host RAM, VMIDs,
 * guest-visible features. Throws a RangeError naming the first inconsistent setting.
 */
export function planVms(configs: readonly VmConfig[], h: VmsHost): VmsPlan {
  if (configs.length > 0 && (!h.features.s1 || !h.features.s2)) throw new RangeError('VMs need a host SMMU with stage 1 and stage 2 (nesting)');
  // The virtual SMMUs' windows follow the host SMMU's, 64 KiB aligned (§6.1).
  let winBase = alignUp(h.smmuBase + smmuRegWindow(h.features), PAGE_64K);
  let ramAt = h.ramBase + h.hostRamBytes;
  const psids = new Map<number, number>();
  const vmids = new Set<number>();
  const maxVmid = 2 ** (h.features.vmid16 ? 16 : 8) - 1;
  const numVintfs = h.cmdqv === undefined ? 0 : cmdqvCounts(cmdqvGeometry(h.cmdqv.config)).numVintfs;
  let nextVintf = 1;
  const vms = configs.map((c, index): VmPlan => {
    const what = `VM ${index}`;
    if (c.path !== 'trap' && c.path !== 'kernel-queue' && c.path !== 'vcmdq') throw new RangeError(`${what}: path '${String(c.path)}' is not 'trap', 'kernel-queue' or 'vcmdq'`);
    if (c.trapBatch !== undefined && (c.path === 'kernel-queue' || (c.trapBatch !== 'single' && c.trapBatch !== 'sync'))) {
      throw new RangeError(`${what}: trapBatch is 'single' or 'sync', for the 'trap' and 'vcmdq' paths only`);
    }
    if (c.guest !== undefined && typeof c.guest !== 'boolean') throw new RangeError(`${what}: guest is true or false`);
    if (c.lvcmdqLog2 !== undefined && (c.path !== 'vcmdq' || !Number.isInteger(c.lvcmdqLog2) || c.lvcmdqLog2 < 1)) {
      throw new RangeError(`${what}: lvcmdqLog2 is a positive integer, for the 'vcmdq' path only`);
    }
    let vintf: number | undefined;
    if (c.path === 'vcmdq') {
      if (h.cmdqv === undefined) throw new RangeError(`${what}: the 'vcmdq' path needs a CMDQV beside the SMMU (SystemConfig.cmdqv)`);
      // VINTF0 is the host kernel's own (viommu.md §4.2).
      if (nextVintf >= numVintfs) throw new RangeError(`${what}: the CMDQV has ${numVintfs} VINTFs, VINTF0 the host's: no VINTF left for this VM`);
      vintf = nextVintf++;
    }
    const bytes = c.ramBytes ?? DEFAULT_VM_RAM_BYTES;
    if (!Number.isInteger(bytes) || bytes <= 0 || bytes % PAGE_64K !== 0) throw new RangeError(`${what}: ramBytes ${bytes} is not a positive multiple of 64 KiB`);
    const features = vsmmuFeatures(h.features, c.features);
    const ipaBits = OAS_BITS[features.oas]!;
    if (h.ramBase + bytes > 2 ** ipaBits) throw new RangeError(`${what}: guest RAM at IPA 0x${h.ramBase.toString(16)} does not fit in ${ipaBits} IPA bits`);
    const vmid = c.vmid ?? index + 1;
    if (!Number.isInteger(vmid) || vmid < 1 || vmid > maxVmid) throw new RangeError(`${what}: VMID ${vmid} is not in 1..${maxVmid} (VMID 0 tags stage-1-only streams)`);
    if (vmids.has(vmid)) throw new RangeError(`${what}: VMID ${vmid} belongs to another VM`);
    vmids.add(vmid);
    if (c.devices.length === 0) throw new RangeError(`${what}: a VM needs at least one assigned device`);
    const strtabLog2 = c.strtabLog2 ?? Math.min(features.sidSize, 8);
    const vsids = new Set<number>();
    for (const d of c.devices) {
      if (!Number.isInteger(d.vsid) || d.vsid < 0 || d.vsid >= 2 ** strtabLog2) throw new RangeError(`${what}: vSID ${d.vsid} is outside the guest's Stream table (2^${strtabLog2} StreamIDs)`);
      if (!Number.isInteger(d.psid) || d.psid < 0 || d.psid >= 2 ** h.features.sidSize) throw new RangeError(`${what}: StreamID ${d.psid} is outside the host SMMU's SIDSIZE`);
      if (vsids.has(d.vsid)) throw new RangeError(`${what}: vSID ${d.vsid} is assigned twice`);
      vsids.add(d.vsid);
      const owner = psids.get(d.psid);
      if (owner !== undefined) throw new RangeError(`${what}: StreamID ${d.psid} is already assigned to VM ${owner}`);
      psids.set(d.psid, index);
    }
    const window: WindowConfig = { name: `vsmmu${index}`, base: winBase, bytes: smmuRegWindow(features) };
    winBase += window.bytes;
    // The guest's CMDQV window (one VINTF, QEMU's size) follows its vSMMU's and wakes its VMM.
    let cmdqv: VmPlan['cmdqv'];
    if (vintf !== undefined) {
      cmdqv = { vintf, window: virtualCmdqvWindow(`vcmdqv${index}`, winBase, window.name) };
      winBase += cmdqv.window.bytes;
    }
    const ram: GuestRam = { ipa: h.ramBase, hostPa: ramAt, bytes };
    ramAt += bytes;
    return {
      index, path: c.path, trapBatch: c.trapBatch, window, ram, vmid, features, ipaBits, devices: c.devices.map((d) => ({ vsid: d.vsid, psid: d.psid })), config: c, cmdqv,
    };
  });
  const windows = vms.flatMap((v) => (v.cmdqv === undefined ? [v.window] : [v.window, v.cmdqv.window]));
  return { windows, ramBytes: ramAt - h.ramBase, hostRamBytes: h.hostRamBytes, vms };
}

// ---------------------------------------------------------------------------------------------
// Running VMs
// ---------------------------------------------------------------------------------------------

/** One running VM, from the main thread. */
export class Vm {
  readonly index: number;
  readonly path: VmPath;
  readonly vmid: number;
  readonly window: string;
  readonly ram: GuestRam;
  readonly devices: readonly VmDeviceConfig[];
  /** The guest-visible SMMU features. */
  readonly features: SmmuFeatures;
  /** The host driver's stage 2 domain of the VM. */
  readonly s2Domain: number;
  /** Whether the VM has its guest driver worker (VmConfig.guest). */
  readonly guest: boolean;
  /**
   * What the guest driver is (or, with VmConfig.guest false, would be) given: the board, the
   * DriverOptions (window, policy, syncMode, ram and memView in guest-physical addresses, table
   * and queue sizes) and, on 'vcmdq', the guest CMDQV's windows and mapped page.
   */
  readonly guestOptions: DriverWorkerData;
  private readonly guestDriver: DriverHandle | undefined;
  /** The serving worker (VMM or in-kernel consumer). */
  readonly vmm: WorkerHandle;
  /** The virtual SMMU's registers, for reads from the main thread. */
  readonly regs: MmioPort;
  /** 'vcmdq' only: the VM's VINTF of the physical CMDQV. */
  readonly vintf: number | undefined;
  /** 'vcmdq' only: the guest's trapped CMDQV window. */
  readonly cmdqvWindow: string | undefined;

  constructor(p: VmPlan, s2Domain: number, guestOptions: DriverWorkerData, driver: DriverHandle | undefined, vmm: WorkerHandle, regs: MmioPort) {
    this.index = p.index;
    this.vintf = p.cmdqv?.vintf;
    this.cmdqvWindow = p.cmdqv?.window.name;
    this.path = p.path;
    this.vmid = p.vmid;
    this.window = p.window.name;
    this.ram = p.ram;
    this.devices = p.devices;
    this.features = p.features;
    this.s2Domain = s2Domain;
    this.guest = driver !== undefined;
    this.guestOptions = guestOptions;
    this.guestDriver = driver;
    this.vmm = vmm;
    this.regs = regs;
  }

  /** The guest driver (a DriverHandle on the virtual SMMU): issue, attachStage1 on a vSID, map, unmap … */
  get driver(): DriverHandle {
    if (this.guestDriver === undefined) throw new Error(`VM ${this.index} has no guest driver worker (started with guest: false; its guest runs elsewhere, from vm.guestOptions)`);
    return this.guestDriver;
  }

  /** The serving worker's counters (per path: VM exits, ioctls, physical commands and syncs …). */
  state(): Promise<VmmState> {
    return this.vmm.call('state');
  }

  /** Zero the counters; resolves with the state before. */
  resetCounters(): Promise<VmmState> {
    return this.vmm.call('resetCounters');
  }

  /** The VM's iommufd objects (Iommufd.describe of each). */
  objects(): Promise<unknown[]> {
    return this.vmm.call('objects');
  }

  /**
   * 'vcmdq' only: the guest writes `cmds` into its own LVCMDQ ring, whatever they are (as a
   * hostile guest may), then a CMD_SYNC unless `sync` is false, and waits for it, taking its
   * CMDQV interrupt (viommu.md §4.7) meanwhile. `lvcmdq` defaults to the guest CPU's queue.
   */
  issueOnVcmdq(cmds: readonly Command[], opts: { lvcmdq?: number; sync?: boolean } = {}): Promise<IssueResult> {
    return this.driver.call('vcmdqIssue', cmds.map((c) => Uint32Array.from(commandWords(c))), opts);
  }

  /** A virtual SMMU register as the guest reads it. */
  readReg(off: number): number {
    return this.regs.peek32(off);
  }

  /** The host physical address of a guest IPA (inside guest RAM). */
  hostAddress(ipa: number): number {
    if (!(ipa >= this.ram.ipa && ipa < this.ram.ipa + this.ram.bytes)) throw new RangeError(`IPA 0x${ipa.toString(16)} is outside VM ${this.index}'s RAM`);
    return this.ram.hostPa + (ipa - this.ram.ipa);
  }

  /** Reject every call in flight (a worker died or the system stopped). */
  failAll(e: Error): void {
    this.guestDriver?.failAll(e);
    this.vmm.failAll(e);
  }
}

/** The physical CMDQV as startVms needs it. */
export interface VmsCmdqv {
  /** The physical window's name and physical address. */
  readonly window: string;
  readonly base: number;
}

export interface VmsHooks {
  /** CPU number of VM 0's serving worker on the host's shared queues (VM k uses cpuBase + k). */
  readonly cpuBase: number;
  /** Take a spawned worker: watch it (crash, unexpected exit) and stop it with the system. */
  adopt(w: Worker, what: string): void;
  /** The system's failure (or its stop), for the handles' calls. */
  failed(): Error | undefined;
  /** The physical CMDQV (needed by 'vcmdq' VMs). */
  readonly cmdqv?: VmsCmdqv;
}

/** The smallest page size the host SMMU implements: the VM's stage 2 granule. */
function stage2Granule(f: SmmuFeatures): Granule {
  if (f.gran4k) return 4096;
  return f.gran16k ? 16384 : 65536;
}


/**
 * Start every planned VM, in order: the host driver's stage 2 for its devices and guest RAM,
 * the serving worker, the guest driver (probe and reset through the virtual SMMU) unless the VM
 * has `guest: false`. Needs sys.queues with a CPU for each VM (cpuBase + k).
 */
export async function startVms(sys: System, plan: VmsPlan, hooks: VmsHooks): Promise<Vm[]> {
  const queues: CpuQueuesLayout | undefined = sys.queues;
  if (plan.vms.length > 0 && queues === undefined) throw new Error('VMs need the host command queues shared with one CPU per VM');
  const policy: WaitPolicy = sys.policy;
  const timeoutMs = Math.max(10_000, 10 * policy.timeoutMs);
  const out: Vm[] = [];
  for (const p of plan.vms) {
    const what = `VM ${p.index}`;
    // The host kernel's stage 2: the nest parent every device of the VM is attached to.
    const [first, ...rest] = p.devices;
    const { domain } = await sys.driver.attachStage2(first!.psid, { vmid: p.vmid, granule: stage2Granule(sys.features), ipaBits: p.ipaBits });
    for (const d of rest) await sys.driver.attachStage2(d.psid, { domain });
    await sys.driver.map(domain, p.ram.ipa, p.ram.hostPa, p.ram.bytes, { read: true, write: true, cache: true });

    let vmmCmdqv: VmmCmdqvData | undefined;
    let guestCmdqv: GuestCmdqvData | undefined;
    if (p.cmdqv !== undefined) {
      const phys = hooks.cmdqv;
      if (phys === undefined) throw new Error(`${what}: the 'vcmdq' path needs the physical CMDQV`);
      const page0 = vintfPage0(p.cmdqv.vintf);
      vmmCmdqv = { vintf: p.cmdqv.vintf, window: p.cmdqv.window.name, physWindow: phys.window, physBase: phys.base, page0 };
      guestCmdqv = { window: p.cmdqv.window.name, physWindow: phys.window, page0, ...(p.config.lvcmdqLog2 !== undefined ? { lvcmdqLog2: p.config.lvcmdqLog2 } : {}) };
    }
    const vmmData: VmmWorkerData = {
      sab: sys.board.sab,
      layout: sys.board.layout,
      policy,
      index: p.index,
      path: p.path,
      ...(p.trapBatch !== undefined ? { trapBatch: p.trapBatch } : {}),
      hostFeatures: sys.features,
      guestFeatures: p.features,
      window: p.window.name,
      ram: p.ram,
      vmid: p.vmid,
      devices: p.devices,
      queues: queues!,
      cpu: hooks.cpuBase + p.index,
      ...(vmmCmdqv !== undefined ? { cmdqv: vmmCmdqv } : {}),
    };
    const vmmWorker = spawnWorker(import.meta.url, '../virt/vmm-worker', { workerData: vmmData });
    const vmmName = `${what} ${p.path === 'kernel-queue' ? 'in-kernel queue' : 'VMM'}`;
    try {
      await workerReady(vmmWorker, vmmName);
    } catch (e) {
      await vmmWorker.terminate();
      throw e;
    }
    hooks.adopt(vmmWorker, vmmName);
    const vmm = new WorkerHandle(vmmWorker, timeoutMs, hooks.failed);

    const options: DriverOptions = {
      window: p.window.name,
      policy,
      syncMode: p.features.msi ? 'msi' : 'cons',
      ram: { start: p.ram.ipa, end: p.ram.ipa + p.ram.bytes },
      memView: { base: p.ram.ipa, hostPa: p.ram.hostPa, bytes: p.ram.bytes },
      ...(p.config.strtabLog2 !== undefined ? { strtabLog2: p.config.strtabLog2 } : {}),
      ...(p.config.cmdqLog2 !== undefined ? { cmdqLog2: p.config.cmdqLog2 } : {}),
    };
    const drvData: DriverWorkerData = { sab: sys.board.sab, layout: sys.board.layout, options, ...(guestCmdqv !== undefined ? { cmdqv: guestCmdqv } : {}) };
    if (p.config.guest === false) {
      // The guest runs elsewhere (e.g. a bench worker): it probes and resets the virtual SMMU itself.
      out.push(new Vm(p, domain, drvData, undefined, vmm, new MmioPort(sys.board, p.window.name, policy)));
      continue;
    }
    const drvWorker = spawnWorker(import.meta.url, './driver-worker', { workerData: drvData });
    hooks.adopt(drvWorker, `${what} guest driver`);
    const driver = new DriverHandle(drvWorker, timeoutMs, hooks.failed);
    const vm = new Vm(p, domain, drvData, driver, vmm, new MmioPort(sys.board, p.window.name, policy));
    out.push(vm);
    try {
      await driver.probe();
      await driver.reset();
    } catch (e) {
      throw new Error(`${what}: the guest driver could not bring its SMMU up: ${(e as Error).message}`);
    }
  }
  return out;
}
