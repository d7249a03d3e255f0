/**
 * The worker that serves one VM's virtual SMMU: the VMM on the 'trap' and 'vcmdq' paths, the host
 * kernel's in-kernel queue consumer on the 'kernel-queue' path (vsmmu.ts). It is one host CPU:
 *
 * - an SmmuDevice on the VM's register window ('vsmmu<k>'), whose memory is the guest's (IPAs)
 *   and whose command backend is a VsmmuForwarder: the guest-visible SMMU, registers and queues;
 * - a GuestCpu on the host's shared command queues (the physical submission path, as any host
 *   CPU's: Linux's lock-free insertion on SMMU_CMDQ), through which every chunk of at most
 *   VIOMMU_CHUNK commands plus one CMD_SYNC goes, synchronously;
 * - the VM's iommufd objects (iommufd.ts) on a HostSmmu whose PhysicalQueue is that CPU and whose
 *   installSte writes the physical STE with the §3.21.3.1 procedure (tables.ts writeEntry), each
 *   step followed by CMD_CFGI_STE and a CMD_SYNC through the same CPU.
 *
 * The host driver made the VM's stage 2 before this worker started (vms.ts): the stage 2 STE it
 * installed for the VM's first StreamID is the template every nested STE is built on.
 *
 * On the 'vcmdq' path (NVIDIA Tegra241 CMDQV, viommu.md §4) the worker also runs:
 * - the host kernel's CMDQV driver for this VM's VINTF (CmdqvHostDriver on the physical 'cmdqv'
 *   window): the TEGRA241_CMDQV vIOMMU enables the VINTF with the VM's VMID, each vDEVICE fills a
 *   SID_MATCH/SID_REPLACE pair, each HW_QUEUE allocates a VCMDQ and programs its host PA; its ISR
 *   (polled each round: the model's CMDQV interrupt is a counter word) posts the VINTF's
 *   LVCMDQ_ERR_MAP as a vEVENT;
 * - the VMM's trapped CMDQV window for the guest (VirtualCmdqv, an extension of the vSMMU device:
 *   it serves the 'vcmdqv<k>' FIFO), which turns the guest's VCMDQ_BASE into HW_QUEUE_ALLOC and
 *   the vEVENTs into the guest's error maps and CMDQV interrupt.
 * The VINTF page 0 the VMM maps is the guest's direct page: its PROD writes reach the CMDQV
 * hardware without passing through this worker.
 *
 * The virtual SMMU must not touch what belongs to the host's SMMU: it gets a board view with no
 * trace ring and no DMA ports, and its counters and wired interrupt lines are its own (a VM has
 * no wire to the host's interrupt controller; the guest driver uses MSIs). The device loop is this
 * file's, not SmmuDevice.run(): between services it flushes the forwarder (a consumer that goes
 * idle sends what it batched) and answers the System's requests ('state', 'objects',
 * 'resetCounters'), which it polls with receiveMessageOnPort because the loop never yields.
 */
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { Board, COUNTER, type BoardLayout, type CounterName } from '../mem/board.ts';
import { MmioPort, type MmioWrite } from '../mem/mmio.ts';
import { PhysMem } from '../mem/phys.ts';
import { WaitTimeout, type WaitPolicy } from '../mem/wait.ts';
import type { CommandQueue } from '../device/cmdq.ts';
import { SmmuDevice, type CommandBackend, type DeviceOptions } from '../device/smmu.ts';
import { GuestCpu, type CpuQueuesLayout } from '../driver/cpu.ts';
import { cfgiSte } from '../driver/invalidate.ts';
import { steUsedMask, writeEntry } from '../driver/tables.ts';
import type { SmmuFeatures } from '../spec/features.ts';
import { REG, modelResetValue, regGet } from '../spec/registers.ts';
import { STE_BYTES, STE_CONFIG, steConfig, steS2VMID, steValid } from '../spec/structures.ts';
import { AssignedVintfHostSmmu, CmdqvHostDriver, VirtualCmdqv, type VirtualCmdqvCounters } from './cmdqv-host.ts';
import { ETIMEDOUT } from './errno.ts';
import { HostSmmu, type HostSmmuOptions } from './iommufd.ts';
import {
  AssignedVmid, CountingQueue, VirtualIommu, VsmmuForwarder, locateSte, mirroredStage2, streamTableRegs, zeroCounters,
  type GuestRam, type HostSubmitter, type TrapBatch, type VmDeviceConfig, type VmPath, type VsmmuCounters,
} from './vsmmu.ts';

export interface VmmWorkerData {
  readonly sab: SharedArrayBuffer;
  readonly layout: BoardLayout;
  readonly policy: WaitPolicy;
  /** The VM's number (for messages). */
  readonly index: number;
  readonly path: VmPath;
  readonly trapBatch?: TrapBatch;
  readonly hostFeatures: SmmuFeatures;
  /** What the virtual SMMU presents (vsmmuFeatures). */
  readonly guestFeatures: SmmuFeatures;
  /** The virtual SMMU's register window. */
  readonly window: string;
  readonly ram: GuestRam;
  /** The VMID of the VM's stage 2 (the host driver's domain). */
  readonly vmid: number;
  readonly devices: readonly VmDeviceConfig[];
  /** The host's shared queues and this worker's CPU number on them. */
  readonly queues: CpuQueuesLayout;
  readonly cpu: number;
  /** 'vcmdq' only: the VM's VINTF and the CMDQV windows (vms.ts). */
  readonly cmdqv?: VmmCmdqvData;
}

export interface VmmCmdqvData {
  /** The VINTF the system gave this VM (1..numVintfs−1; VINTF0 is the host kernel's). */
  readonly vintf: number;
  /** The guest's trapped CMDQV window ('vcmdqv<k>', wakes with the vSMMU's). */
  readonly window: string;
  /** The physical CMDQV window and its physical address. */
  readonly physWindow: string;
  readonly physBase: number;
  /** Offset of the VINTF's page 0 in the physical window: the page the guest gets mapped. */
  readonly page0: number;
}

/** What 'state' answers about the CMDQV ('vcmdq' only). */
export interface VmmCmdqvState {
  readonly vintf: number;
  /** The VMM's trapped CMDQV window: guest exits, HW_QUEUE allocations, vEVENTs, guest interrupts. */
  readonly counters: VirtualCmdqvCounters;
  /** The host ISR's runs for this VINTF and the LVCMDQ_ERR_MAPs it posted as vEVENTs. */
  readonly hostIsrRuns: number;
  readonly hostPosted: number;
  /** The VMM's failures (HW_QUEUE_ALLOC, DESTROY), with errnos. */
  readonly log: readonly { readonly what: string; readonly errno: number }[];
}

/** What 'state' answers. */
export interface VmmState {
  readonly index: number;
  readonly path: VmPath;
  /** 'trap' only. */
  readonly trapBatch: TrapBatch | undefined;
  readonly vmid: number;
  readonly counters: VsmmuCounters;
  /** The virtual SMMU's own device counters (COUNTER names). */
  readonly device: Record<CounterName, number>;
  /** Its wired interrupt lines, asserted count by HDR line index. */
  readonly irqs: Record<number, number>;
  readonly devices: readonly { vsid: number; psid: number; attached: number; s1Hwpt: number | undefined }[];
  readonly viommuId: number;
  readonly abortHwpt: number;
  readonly bypassHwpt: number;
  /** 'vcmdq' only. */
  readonly cmdqv: VmmCmdqvState | undefined;
}

interface Request {
  readonly id: number;
  readonly method: string;
  readonly args: unknown[];
}

const data = workerData as VmmWorkerData;
const policy = data.policy;
const board = Board.attach(data.sab, data.layout);

// ---------------------------------------------------------------------------------------------
// The host side: one CPU on the shared queues, the host's Stream table, the iommufd model
// ---------------------------------------------------------------------------------------------

const hostPort = new MmioPort(board, 'smmu', policy);
const hostMem = new PhysMem(board);
const hostRegs = { get32: (off: number): number => hostPort.peek32(off) };
const cpu = new GuestCpu(board, data.queues, data.cpu, policy, hostPort, hostMem);
const counters = zeroCounters();

const submitter: HostSubmitter = {
  submit(cmds) {
    try {
      return { ok: true, recovered: cpu.issue(cmds, { sync: true }).errors.length };
    } catch (e) {
      // The CMD_SYNC did not complete in time: the ioctl's ETIMEDOUT (viommu.md §3.3).
      if (e instanceof WaitTimeout) return { ok: false, errno: ETIMEDOUT, failedIndex: cmds.length };
      throw e;
    }
  },
};
const queue = new CountingQueue(submitter, counters);

function hostStePa(psid: number): number {
  const pa = locateSte(hostMem, streamTableRegs(hostRegs), data.hostFeatures, psid);
  if (pa === undefined) throw new Error(`VM ${data.index}: the host Stream table has no STE for StreamID ${psid} (the host driver attaches it at VM creation)`);
  return pa;
}

/** The physical STE update (§3.21.3.1), each step made visible by CFGI_STE + CMD_SYNC. */
function installSte(psid: number, ste: Uint32Array): void {
  const pa = hostStePa(psid);
  writeEntry(hostMem, pa, ste, (w) => steUsedMask(w), () => {
    counters.steCommands++;
    const r = queue.submit([cfgiSte(psid, true)], true);
    if (!r.ok) throw new Error(`VM ${data.index}: CMD_CFGI_STE of StreamID ${psid} did not complete (errno ${r.errno})`);
  });
}

/** The stage 2 STE the host driver installed: Config S2_TRANS with the VM's VMID. */
function stage2Template(): Uint32Array {
  const psid = data.devices[0]!.psid;
  const s = new Uint32Array(STE_BYTES / 4);
  hostMem.readWords(hostStePa(psid), s);
  if (!steValid(s) || steConfig(s) !== STE_CONFIG.S2_TRANS || steS2VMID(s) !== data.vmid) {
    throw new Error(`VM ${data.index}: StreamID ${psid} is not attached to a stage 2 domain with VMID ${data.vmid}`);
  }
  return s;
}

const hostOptions: HostSmmuOptions = {
  name: `smmu0 (VM ${data.index})`,
  features: data.hostFeatures,
  queue,
  vmids: new AssignedVmid(data.hostFeatures.vmid16 ? 16 : 8, data.vmid),
  installSte,
  pagingDomain: mirroredStage2(stage2Template()),
};

/**
 * 'vcmdq': the host kernel's CMDQV driver on the physical window. The CMD_SYNC it issues when it
 * disables a guest VCMDQ (viommu.md §4.7 step 5) goes on the SMMU's queue through this CPU.
 */
const cq = data.cmdqv;
const cmdqvHost = cq === undefined
  ? undefined
  : new CmdqvHostDriver(new MmioPort(board, cq.physWindow, policy), {
    policy,
    base: cq.physBase,
    mainSync: () => {
      queue.submit([], true);
    },
  });
const host: HostSmmu = cq === undefined || cmdqvHost === undefined
  ? new HostSmmu(hostOptions)
  : new AssignedVintfHostSmmu({ ...hostOptions, cmdqv: cmdqvHost.hooks() }, cq.vintf);

// ---------------------------------------------------------------------------------------------
// The guest side: the virtual SMMU
// ---------------------------------------------------------------------------------------------

/**
 * A board view for the virtual SMMU: the same buffer, but no trace ring and no DMA ports (those
 * are the host SMMU's, each with one writer), and counters and interrupt lines of its own.
 */
const vlayout: BoardLayout = { ...data.layout, trace: { ...data.layout.trace, records: 0 }, dma: { ...data.layout.dma, ports: 0 } };
const vboard = Board.attach(data.sab, vlayout);
const deviceCounters = Object.fromEntries(Object.keys(COUNTER).map((k) => [k, 0])) as Record<CounterName, number>;
const irqs: Record<number, number> = {};
vboard.count = (name: CounterName, n = 1): void => {
  deviceCounters[name] = (deviceCounters[name] + n) >>> 0;
};
vboard.raiseIrq = (line: number): void => {
  irqs[line] = (irqs[line] ?? 0) + 1;
};

const PROD_OFF = REG.SMMU_CMDQ_PROD.offset;

/** The guest-visible SMMU: every register write is a trap, counted, then emulated. */
class VirtualSmmu extends SmmuDevice {
  forwarder: VsmmuForwarder | undefined;

  constructor(b: Board, o: DeviceOptions, private readonly path: VmPath) {
    super(b, o);
  }

  override applyWrite(w: MmioWrite): void {
    if (w.dma) {
      super.applyWrite(w);
      return;
    }
    counters.mmioTraps++;
    const doorbell = w.off === PROD_OFF;
    if (doorbell) counters.vmExits++;
    // The in-kernel queue handles its doorbell in the host kernel; every other register is the VMM's.
    if (this.path !== 'kernel-queue' || !doorbell) counters.userExits++;
    super.applyWrite(w);
    this.forwarder?.controlChanged();
  }
}

let forwarder: VsmmuForwarder | undefined;
const backend: CommandBackend = {
  command: (q: CommandQueue, w: Uint32Array) => forwarder!.command(q, w),
  sync: (q: CommandQueue) => forwarder!.sync(q),
};
const guestMem = new PhysMem(board, { base: data.ram.ipa, hostPa: data.ram.hostPa, bytes: data.ram.bytes });
// The VM's objects come first (the virtual CMDQV, an extension of the vSMMU device, needs its
// vIOMMU): the guest SMMU is still at reset, so its GBPA is the reset value.
const gbpaAbort = regGet(Number(modelResetValue(REG.SMMU_GBPA)), REG.SMMU_GBPA.f.ABORT) !== 0;
const vm = new VirtualIommu(host, { devices: data.devices, ram: data.ram, gbpaAbort, ...(cq !== undefined ? { cmdqv: true } : {}) });
if (cq !== undefined && vm.vintfPage !== cq.physBase + cq.page0) {
  throw new Error(`VM ${data.index}: the host mapped VINTF page 0x${(vm.vintfPage ?? 0).toString(16)} (VINTF ${vm.vintf}), not VINTF ${cq.vintf}'s page the guest was given`);
}
const vcmdqv = cq === undefined ? undefined : new VirtualCmdqv(vboard, { window: cq.window, fd: vm.fd, viommuId: vm.viommuId, ...(vm.veventqFd !== undefined ? { veventqFd: vm.veventqFd } : {}) });
const dev = new VirtualSmmu(
  vboard,
  { features: data.guestFeatures, mem: guestMem, backend, window: data.window, policy, ...(vcmdqv !== undefined ? { extensions: () => [vcmdqv] } : {}) },
  data.path,
);
if ((regGet(dev.regs.get32(REG.SMMU_GBPA.offset), REG.SMMU_GBPA.f.ABORT) !== 0) !== gbpaAbort) throw new Error(`VM ${data.index}: the guest SMMU's GBPA.ABORT at reset is not the register table's`);
let hostIsrRuns = 0;
let hostPosted = 0;
forwarder = new VsmmuForwarder({
  path: data.path,
  ...(data.trapBatch !== undefined ? { trapBatch: data.trapBatch } : {}),
  vm,
  guestMem,
  guestRegs: dev.regs,
  guestFeatures: data.guestFeatures,
  counters,
});
dev.forwarder = forwarder;
// Setup is not the workload: counters start now.
Object.assign(counters, zeroCounters());

// ---------------------------------------------------------------------------------------------
// Requests and the loop
// ---------------------------------------------------------------------------------------------

function state(): VmmState {
  const f = forwarder!;
  return {
    index: data.index,
    path: f.path,
    trapBatch: f.path !== 'kernel-queue' ? f.trapBatch : undefined,
    vmid: vm.vmid,
    counters: { ...counters },
    device: { ...deviceCounters },
    irqs: { ...irqs },
    devices: vm.devices.map((d) => ({ vsid: d.vsid, psid: d.psid, attached: d.attached, s1Hwpt: d.s1Hwpt })),
    viommuId: vm.viommuId,
    abortHwpt: vm.abortHwpt,
    bypassHwpt: vm.bypassHwpt,
    cmdqv: cq === undefined || vcmdqv === undefined
      ? undefined
      : { vintf: cq.vintf, counters: { ...vcmdqv.counters }, hostIsrRuns, hostPosted, log: [...vcmdqv.log] },
  };
}

const METHODS: Record<string, (...args: unknown[]) => unknown> = {
  state,
  /** Every iommufd object of the VM, as Iommufd.describe gives it. */
  objects: () => vm.fd.ids().map((id) => vm.fd.describe(id)),
  /** Zero the counters; returns what they were. */
  resetCounters: () => {
    const before = state();
    Object.assign(counters, zeroCounters());
    for (const k of Object.keys(deviceCounters) as CounterName[]) deviceCounters[k] = 0;
    if (vcmdqv !== undefined) for (const k of Object.keys(vcmdqv.counters) as (keyof VirtualCmdqvCounters)[]) vcmdqv.counters[k] = 0;
    hostIsrRuns = 0;
    hostPosted = 0;
    return before;
  },
};

const port = parentPort!;

/** Answer every waiting request; true when asked to close. */
function serveRequests(): boolean {
  for (;;) {
    const m = receiveMessageOnPort(port);
    if (m === undefined) return false;
    const req = m.message as Request | 'close';
    if (req === 'close') return true;
    try {
      const fn = Object.hasOwn(METHODS, req.method) ? METHODS[req.method] : undefined;
      if (fn === undefined) throw new Error(`the VM ${data.index} VMM has no method '${req.method}'`);
      port.postMessage({ id: req.id, ok: true, result: fn(...req.args) });
    } catch (e) {
      const err = e as Error;
      port.postMessage({ id: req.id, ok: false, error: { name: err.name, message: err.message } });
    }
  }
}

/** Polls between request checks while spinning. */
const SPIN_CHECK = 1024;
/** Longest sleep: requests are answered at least this often when the VM is idle. */
const MAX_SLICE_MS = 20;

/**
 * 'vcmdq': the host's CMDQV interrupt, polled (a counter word in the physical window that does not
 * wake this worker, so an error is seen within one slice). The ISR posts this VINTF's error map
 * to the vEVENTQ; the VMM then reads it and raises the guest's CMDQV interrupt. Only this
 * worker's ISR reports into this VM's vEVENTQ, so there is nothing to read otherwise.
 */
function serviceCmdqv(): void {
  if (cmdqvHost === undefined || vcmdqv === undefined || cq === undefined) return;
  const r = cmdqvHost.serviceInterrupt(host, cq.vintf);
  if (r === undefined) return;
  hostIsrRuns++;
  hostPosted += r.posted.length;
  if (r.posted.length > 0) vcmdqv.pollEvents();
}

/** Windows besides the vSMMU's whose writes wake this worker (the guest's CMDQV window). */
const alsoWake = vcmdqv !== undefined ? [vcmdqv.target] : [];

port.postMessage({ ready: true });
const sliceMs = Math.min(policy.sliceMs ?? MAX_SLICE_MS, MAX_SLICE_MS);
let idle = 0;
while (!board.stopRequested) {
  serviceCmdqv();
  if (dev.service()) {
    // The queue is drained (or stopped on an error): what was batched goes now.
    forwarder.flush();
    idle = 0;
    if (serveRequests()) break;
    continue;
  }
  if (policy.mode === 'spin' || (policy.mode === 'hybrid' && idle < policy.spin)) {
    idle++;
    if (idle % SPIN_CHECK === 0 && serveRequests()) break;
    continue;
  }
  if (serveRequests()) break;
  if (dev.regs.sleep(sliceMs, alsoWake)) idle = 0;
  else idle = policy.mode === 'hybrid' ? policy.spin : 0;
}
