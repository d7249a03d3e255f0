/**
 * The virtual SMMU of a VM, as its VMM (or the host kernel) serves it: the command backend of an
 * SmmuDevice that presents the guest-visible register window, and that forwards the guest's
 * commands to the host instead of acting on caches of its own (shared/reference/viommu.md §3;
 * QEMU hw/arm/smmuv3-accel.c and the Linux vIOMMU, read for facts only).
 *
 * Two paths share the consumer and differ in how a guest invalidation reaches the physical queue:
 * - 'trap' (QEMU with iommufd): every guest register write, the SMMU_CMDQ_PROD doorbell included,
 *   exits to the VMM in user space, which reads the guest queue from guest memory and calls
 *   IOMMU_HWPT_INVALIDATE on the vIOMMU, one command per call as QEMU does ('single'), or every
 *   forwardable command up to the next CMD_SYNC in one call ('sync'). The kernel converts and
 *   submits (iommufd.ts, convert.ts).
 * - 'kernel-queue' (the in-kernel vSMMU queue proposed upstream): the host kernel consumes the
 *   guest queue itself; each command goes through the same conversion with the vIOMMU's VMID and
 *   vSID table, with no ioctl marshalling, and everything up to the guest's CMD_SYNC goes to the
 *   physical queue as one batch (chunks of VIOMMU_CHUNK commands, each with the kernel's CMD_SYNC).
 *
 * A third path, 'vcmdq' (NVIDIA Tegra241 CMDQV), gives the guest a hardware command queue of its
 * own for TLBI_NH_ASID, TLBI_NH_VA and ATC_INV (src/virt/cmdqv-host.ts, src/driver/cmdqv.ts); its
 * ordinary SMMU command queue, which carries everything else, is trapped exactly as on 'trap'
 * (QEMU's accelerated vSMMU beside its CMDQV), so this file serves it as 'trap'.
 *
 * On every path the guest's CMD_SYNC completes on the virtual queue (MSI into guest memory or
 * CONS, done by the SmmuDevice) once every earlier command's physical submission has returned:
 * those submissions are synchronous (§3.3), so nothing the guest asked for is outstanding.
 *
 * Configuration: CMD_CFGI_STE, CMD_CFGI_STE_RANGE and CMD_CFGI_ALL re-shadow the guest's STEs
 * (§4.3.7 of the spec's guidance, viommu.md §3.5): the guest STE is read from the guest's Stream
 * table (SMMU_STRTAB_BASE is an IPA), and the device is attached to a nested HWPT made from its
 * first two double-words (translate), or to the VM's pre-allocated abort or bypass HWPT (QEMU
 * smmuv3_accel_install_ste). While the guest's SMMUEN is 0 every device follows GBPA.ABORT.
 *
 * What a guest can never do through this file: name a VMID (the kernel overwrites it), name a
 * physical StreamID (vSIDs go through the vIOMMU's vDEVICE table, a vSID without one is refused),
 * or put any STE bit outside the nesting-allowed set on the physical STE (masked here, validated
 * by the kernel).
 */

import type { CommandQueue } from '../device/cmdq.ts';
import type { CommandBackend } from '../device/smmu.ts';
import type { PhysMem } from '../mem/phys.ts';
import { coverMask, getBits, setBits } from '../spec/bits.ts';
import { CERROR_ILL, CERROR_NONE } from '../spec/cerror.ts';
import { COMMAND_WORDS, OP, commandField, commandSpec } from '../spec/commands.ts';
import { OAS_BITS, validateFeatures, type SmmuFeatures } from '../spec/features.ts';
import { REG, STRTAB_FMT, STRTAB_SPLIT, regGet } from '../spec/registers.ts';
import {
  L1STD_BYTES, L1STD_SPAN_MAX, STE, STE_BYTES, STE_CONFIG, STE_EATS, STE_F, encodeStructure, l1stdL2Ptr, l1stdSpan, readAddress, steConfig, steValid,
} from '../spec/structures.ts';
import { CONVERSION, checkConverted, convertGuestCommand } from './convert.ts';
import type { VsmmuContext } from './convert.ts';
import { errnoName } from './errno.ts';
import type { Outcome } from './errno.ts';
import { HostSmmu, Iommufd, VIOMMU_CHUNK, VmidAllocator, invalidationEntries } from './iommufd.ts';
import type { IommufdOptions, PagingDomainFactory, PhysicalQueue, SubmitResult } from './iommufd.ts';
import {
  HWPT_ARM_SMMUV3_BYTES, IOMMU_HWPT_ALLOC, IOMMU_HWPT_DATA, IOMMU_HWPT_INVALIDATE_DATA, IOMMU_IOAS_MAP, IOMMU_VEVENTQ_TYPE, IOMMU_VIOMMU_TEGRA241_CMDQV_S,
  IOMMU_VIOMMU_TYPE,
} from './uapi.ts';

export type VmPath = 'trap' | 'kernel-queue' | 'vcmdq';
/** How the trapping VMM calls HWPT_INVALIDATE: one command per call (QEMU) or up to each CMD_SYNC. */
export type TrapBatch = 'single' | 'sync';

// ---------------------------------------------------------------------------------------------
// The guest-visible SMMU
// ---------------------------------------------------------------------------------------------

/** The largest vSMMU SIDSIZE: QEMU's virtual SMMUv3 presents 16 StreamID bits. */
export const VSMMU_MAX_SIDSIZE = 16;
/** QEMU's default vSMMU OAS (IDR5.OAS = 0b100, 44 bits); the host's when that is smaller. */
export const VSMMU_DEFAULT_OAS_BITS = 44;

/**
 * The features a VM's SMMU presents, derived from the host's: stage 1 only (the host owns stage
 * 2, so no stage 2, no Hyp, no VMID wildcards), no ECMDQ, MSIs on (the guest's CMD_SYNC completes
 * by an MSI into guest memory), no ATS, PRI or DPT (QEMU's default: ATS is an opt-in), no stalls,
 * no MPAM, range invalidation, granules, ASID width, CD2L and 2-level Stream tables as the host.
 * `override` may change any of it (validated). OAS is capped at VSMMU_DEFAULT_OAS_BITS: it is the
 * guest's IPA size, which the host's stage 2 must cover (vms.ts sizes it so).
 */
export function vsmmuFeatures(host: SmmuFeatures, override: Partial<SmmuFeatures> = {}): SmmuFeatures {
  const cap = OAS_BITS.indexOf(VSMMU_DEFAULT_OAS_BITS);
  const oas = Math.min(host.oas, cap);
  const f: SmmuFeatures = {
    ...host,
    s1: true,
    s2: false,
    hyp: false,
    vmw: false,
    ats: false,
    pri: false,
    dpt: false,
    stallModel: 'no-stall',
    msi: true,
    btm: false,
    mpam: false,
    ecmdq: false,
    ecmdqLog2NumP: 0,
    ecmdqLog2NumQ: 0,
    sidSize: Math.min(host.sidSize, VSMMU_MAX_SIDSIZE),
    oas,
    // 52-bit addresses need OAS 52 at least for DS to matter; a 44-bit IPA space does not use them.
    ds: host.ds && oas === OAS_BITS.length - 1,
    ...override,
  };
  return validateFeatures(f);
}

// ---------------------------------------------------------------------------------------------
// Counters
// ---------------------------------------------------------------------------------------------

/**
 * What a path costs, counted where it happens (the benchmark's cost model divides them by
 * guestInvalidations).
 */
export interface VsmmuCounters {
  /** Guest register writes to the virtual SMMU window: each is a trap. */
  mmioTraps: number;
  /** Guest SMMU_CMDQ_PROD writes: one VM exit each (the doorbell). */
  vmExits: number;
  /** Exits that reach the VMM in user space: every trap on 'trap' and 'vcmdq'; none of the doorbells on 'kernel-queue'. */
  userExits: number;
  /** Commands the backend saw (CMD_SYNC included; illegal ones stop in the SmmuDevice and are not counted here). */
  guestCommands: number;
  guestSyncs: number;
  /** Guest invalidations sent towards the host (NH_*, NSNH_ALL, ATC_INV, CFGI_CD, CFGI_CD_ALL). */
  guestInvalidations: number;
  /** SID-based invalidations of a vSID without a vDEVICE, consumed with no effect ('trap', as QEMU). */
  skipped: number;
  /** Commands reported as CERROR_ILL on the virtual queue. */
  refused: number;
  /** Legal commands consumed with no effect (CMD_PREFETCH_*). */
  ignored: number;
  /** ioctl calls the VMM made ('trap' and 'vcmdq'): HWPT_INVALIDATE, and HWPT_ALLOC, attach, DESTROY when re-shadowing. */
  ioctls: number;
  invalidateIoctls: number;
  /** ioctl or conversion failures (EIO, ETIMEDOUT). */
  errors: number;
  /** Device STEs re-shadowed (CFGI_STE, CFGI_STE_RANGE/CFGI_ALL, SMMUEN or GBPA changes). */
  reshadows: number;
  /** Submissions to the host's main Command queue: each ends with one CMD_SYNC the host adds. */
  physicalSubmissions: number;
  /** Commands put on the physical queue, the host's CMD_SYNCs not included (steCommands included). */
  physicalCommands: number;
  /** CMD_SYNCs the host added and waited for. */
  physicalSyncs: number;
  /** CMD_CFGI_STE of physical STE updates (the §3.21.3.1 procedure's syncs). */
  steCommands: number;
  /** Command errors the host recovered on the physical queue during this VM's submissions. */
  physicalErrors: number;
}

export function zeroCounters(): VsmmuCounters {
  return {
    mmioTraps: 0, vmExits: 0, userExits: 0, guestCommands: 0, guestSyncs: 0, guestInvalidations: 0, skipped: 0, refused: 0, ignored: 0,
    ioctls: 0, invalidateIoctls: 0, errors: 0, reshadows: 0, physicalSubmissions: 0, physicalCommands: 0, physicalSyncs: 0,
    steCommands: 0, physicalErrors: 0,
  };
}

/**
 * What a physical submission reports beyond success: the command errors the host recovered while
 * it waited (the ioctl caller never learns of them, viommu.md §3.2).
 */
export interface HostSubmitter {
  submit(cmds: Uint32Array[]): { readonly ok: true; readonly recovered: number } | { readonly ok: false; readonly errno: number; readonly failedIndex: number };
}

/**
 * The host's main Command queue as the vIOMMU sees it (iommufd.ts PhysicalQueue), counting each
 * submission of at most VIOMMU_CHUNK commands plus the host's CMD_SYNC.
 */
export class CountingQueue implements PhysicalQueue {
  constructor(private readonly inner: HostSubmitter, readonly counters: VsmmuCounters) {}

  submit(cmds: Uint32Array[], withSync: true): SubmitResult {
    void withSync;
    const c = this.counters;
    c.physicalSubmissions++;
    c.physicalCommands += cmds.length;
    c.physicalSyncs++;
    const r = this.inner.submit(cmds);
    if (!r.ok) return r;
    c.physicalErrors += r.recovered;
    return { ok: true };
  }
}

// ---------------------------------------------------------------------------------------------
// Stream tables, as the SMMU locates an STE
// ---------------------------------------------------------------------------------------------

/** SMMU_STRTAB_BASE (two halves) and SMMU_STRTAB_BASE_CFG as programmed. */
export interface StreamTableRegs {
  readonly baseLo: number;
  readonly baseHi: number;
  readonly cfg: number;
}

/** Something whose 32-bit registers can be read by offset (an MmioTarget or an MmioPort's peek). */
export interface RegisterReader {
  get32(off: number): number;
}

export function streamTableRegs(r: RegisterReader): StreamTableRegs {
  return {
    baseLo: r.get32(REG.SMMU_STRTAB_BASE.offset),
    baseHi: r.get32(REG.SMMU_STRTAB_BASE.offset + 4),
    cfg: r.get32(REG.SMMU_STRTAB_BASE_CFG.offset),
  };
}

const STE_LOG2 = Math.log2(STE_BYTES);
const L1STD_LOG2 = Math.log2(L1STD_BYTES);
const MIN_TABLE_ALIGN = 64;
const SPLITS: readonly number[] = [STRTAB_SPLIT.SPLIT_4KB, STRTAB_SPLIT.SPLIT_16KB, STRTAB_SPLIT.SPLIT_64KB];

/**
 * The address of StreamID `sid`'s STE in `mem`'s address space, found the way the SMMU finds it
 * (§3.3.1, §5.1, §6.3.24-25: linear, or through the L1STD of a 2-level table; FMT 2-level only
 * with IDR0.ST_LEVEL; a SPLIT other than 6, 8, 10 behaves as 6; LOG2SIZE capped at SIDSIZE), or
 * undefined when the StreamID is out of range, its L1STD has Span 0, a Reserved Span or one that
 * does not reach it, or the STE is outside `mem` (the device model's choices, src/device/config.ts).
 */
export function locateSte(mem: PhysMem, r: StreamTableRegs, f: SmmuFeatures, sid: number): number | undefined {
  const C = REG.SMMU_STRTAB_BASE_CFG.f;
  const addr = readAddress([r.baseLo, r.baseHi], REG.SMMU_STRTAB_BASE.f.ADDR);
  const log2 = regGet(r.cfg, C.LOG2SIZE);
  if (!Number.isInteger(sid) || sid < 0 || sid >= 2 ** Math.min(log2, f.sidSize)) return undefined;
  const twoLevel = f.stLevel2 && regGet(r.cfg, C.FMT) === STRTAB_FMT.TWO_LEVEL;
  let pa: number;
  if (!twoLevel) {
    const align = 2 ** (log2 + STE_LOG2);
    pa = addr - (addr % align) + sid * STE_BYTES;
  } else {
    const raw = regGet(r.cfg, C.SPLIT);
    const split = SPLITS.includes(raw) ? raw : STRTAB_SPLIT.SPLIT_4KB;
    const align = Math.max(MIN_TABLE_ALIGN, 2 ** (log2 - split + L1STD_LOG2));
    const l1 = addr - (addr % align) + Math.floor(sid / 2 ** split) * L1STD_BYTES;
    if (!mem.contains(l1, L1STD_BYTES)) return undefined;
    const w = [mem.read32(l1), mem.read32(l1 + 4)];
    const span = l1stdSpan(w);
    if (span === 0 || span > L1STD_SPAN_MAX || span > split + 1) return undefined;
    const sub = sid % 2 ** split;
    if (sub >= 2 ** (span - 1)) return undefined;
    const l2 = l1stdL2Ptr(w);
    const l2bytes = 2 ** (STE_LOG2 + span - 1);
    pa = l2 - (l2 % l2bytes) + sub * STE_BYTES;
  }
  return mem.contains(pa, STE_BYTES) ? pa : undefined;
}

// ---------------------------------------------------------------------------------------------
// The VM's iommufd objects
// ---------------------------------------------------------------------------------------------

/** One assigned device: the StreamID the guest uses and the one the hardware sees. */
export interface VmDeviceConfig {
  readonly vsid: number;
  readonly psid: number;
}

/** Guest memory: IPA base, host PA, length. */
export interface GuestRam {
  readonly ipa: number;
  readonly hostPa: number;
  readonly bytes: number;
}

export interface VmDevice extends VmDeviceConfig {
  readonly devId: number;
  readonly vdeviceId: number;
  /** The HWPT the device is attached to now. */
  attached: number;
  /** The translate (S1) nested HWPT this device owns, destroyed when replaced. */
  s1Hwpt: number | undefined;
}

/**
 * A VMID allocator that hands out the VMID the host already gave the VM: the stage 2 domain and
 * its VMID exist in the host driver (vms.ts); the iommufd model here mirrors them.
 */
export class AssignedVmid extends VmidAllocator {
  constructor(bits: number, readonly vmid: number) {
    super(bits);
  }

  override alloc(): number | undefined {
    return this.vmid;
  }

  override free(_vmid: number): void {}
}

/**
 * The host kernel's stage 2 domain of a VM as the iommufd model sees it: its page table is the
 * host driver's (mapped when the VM was created), so map and unmap are bookkeeping; `ste` is the
 * stage 2 STE the host driver installed for the VM's devices, with EATS as asked.
 */
export function mirroredStage2(s2Ste: Uint32Array): PagingDomainFactory {
  return () => ({
    map: () => 0,
    unmap: () => {},
    ste: (ats: boolean) => {
      const s = Uint32Array.from(s2Ste);
      setBits(s, STE_F.EATS.lsb, STE_F.EATS.width, ats ? STE_EATS.FULL_ATS : STE_EATS.ABORT);
      return s;
    },
  });
}

/**
 * The STE bits of a guest STE the VMM passes to HWPT_ALLOC (QEMU STE0_MASK / STE1_MASK): V,
 * Config, S1Fmt, S1ContextPtr, S1CDMax, S1DSS, S1CIR, S1COR, S1CSH, S1STALLD, EATS, over the first
 * two double-words. Everything else the guest wrote (STRW, S2VMID, SHCFG, MEV, stage 2 fields) is
 * dropped; the kernel then refuses what is left outside its own allowed set with EIO.
 */
export const VSTE_PASS_MASK: Uint32Array = coverMask(
  [STE_F.V, STE_F.Config, STE_F.S1Fmt, STE_F.S1ContextPtr, STE_F.S1CDMax, STE_F.S1DSS, STE_F.S1CIR, STE_F.S1COR, STE_F.S1CSH, STE_F.S1STALLD, STE_F.EATS],
  HWPT_ARM_SMMUV3_BYTES / 4,
);

function wordsToLeBytes(w: ArrayLike<number>): Uint8Array {
  const b = new Uint8Array(w.length * 4);
  for (let i = 0; i < w.length; i++) {
    const v = w[i]! >>> 0;
    b[4 * i] = v & 0xff;
    b[4 * i + 1] = (v >>> 8) & 0xff;
    b[4 * i + 2] = (v >>> 16) & 0xff;
    b[4 * i + 3] = v >>> 24;
  }
  return b;
}

function must<T extends object>(what: string, r: Outcome<T>): T {
  if (!r.ok) throw new Error(`VM setup: ${what} failed with ${errnoName(r.errno)}`);
  return r as T;
}

function mustRc(what: string, rc: number): void {
  if (rc !== 0) throw new Error(`VM setup: ${what} failed with ${errnoName(rc)}`);
}

export interface VirtualIommuOptions {
  readonly devices: readonly VmDeviceConfig[];
  readonly ram: GuestRam;
  /** GBPA.ABORT of the guest SMMU at creation (its SMMUEN is 0): abort or bypass HWPT first. */
  readonly gbpaAbort: boolean;
  readonly iommufd?: IommufdOptions;
  /**
   * Allocate a TEGRA241_CMDQV vIOMMU (the 'vcmdq' path, viommu.md §4.2) rather than ARM_SMMUV3:
   * the host gives it a VINTF, the VMM maps that VINTF's page 0 and opens its TEGRA241_CMDQV
   * vEVENTQ. The vIOMMU still takes HWPT_INVALIDATE for the trapped SMMU queue.
   */
  readonly cmdqv?: boolean;
}

/** Depth of the TEGRA241_CMDQV vEVENTQ the VMM opens (QEMU's choice is not recorded; one event per VINTF error). */
export const CMDQV_VEVENTQ_DEPTH = 64;

/**
 * A VM's objects on one open /dev/iommu, made in the order a VMM makes them (VFIO cdev bind,
 * IOAS, the nest-parent stage 2, the vIOMMU, one vDEVICE per device with virt_id = vSID, the
 * abort and bypass nested HWPTs QEMU pre-allocates, then the attachment GBPA asks for).
 */
export class VirtualIommu {
  readonly fd: Iommufd;
  readonly ioasId: number;
  readonly s2HwptId: number;
  readonly viommuId: number;
  readonly vmid: number;
  readonly abortHwpt: number;
  readonly bypassHwpt: number;
  readonly devices: readonly VmDevice[];
  private readonly byVsid = new Map<number, VmDevice>();
  /** The kernel's converter context (VMID and vSID table) for the in-kernel path. */
  readonly conv: VsmmuContext;
  /** TEGRA241_CMDQV only: the VINTF the host gave the vIOMMU. */
  readonly vintf: number | undefined;
  /** TEGRA241_CMDQV only: host PA of the VINTF page 0 the VMM mapped (the guest's direct page). */
  readonly vintfPage: number | undefined;
  /** TEGRA241_CMDQV only: the fd of the vIOMMU's TEGRA241_CMDQV vEVENTQ. */
  readonly veventqFd: number | undefined;

  constructor(readonly host: HostSmmu, o: VirtualIommuOptions) {
    if (o.devices.length === 0) throw new RangeError('a VM needs at least one assigned device');
    const fd = new Iommufd(o.iommufd);
    this.fd = fd;
    const devIds = o.devices.map((d) => must(`bind of StreamID ${d.psid}`, fd.bindDevice(host, d.psid)).devId);
    const dev0 = devIds[0]!;
    this.ioasId = must('IOAS_ALLOC', fd.ioasAlloc()).ioasId;
    const rw = IOMMU_IOAS_MAP.READABLE | IOMMU_IOAS_MAP.WRITEABLE;
    must('IOAS_MAP of guest RAM', fd.ioasMap({ ioasId: this.ioasId, flags: IOMMU_IOAS_MAP.FIXED_IOVA | rw, userVa: o.ram.hostPa, length: o.ram.bytes, iova: o.ram.ipa }));
    this.s2HwptId = must('HWPT_ALLOC (nest parent)', fd.hwptAlloc({ flags: IOMMU_HWPT_ALLOC.NEST_PARENT, devId: dev0, ptId: this.ioasId, dataType: IOMMU_HWPT_DATA.NONE })).hwptId;
    for (const id of devIds) mustRc('attach to the stage 2 HWPT', fd.attach(id, this.s2HwptId));
    const v = must('VIOMMU_ALLOC', fd.viommuAlloc(
      o.cmdqv === true
        ? { type: IOMMU_VIOMMU_TYPE.TEGRA241_CMDQV, devId: dev0, hwptId: this.s2HwptId, data: new Uint8Array(IOMMU_VIOMMU_TEGRA241_CMDQV_S.size) }
        : { type: IOMMU_VIOMMU_TYPE.ARM_SMMUV3, devId: dev0, hwptId: this.s2HwptId },
    ));
    this.viommuId = v.viommuId;
    this.vmid = v.vmid;
    this.conv = fd.vsmmu(v.viommuId)!;
    if (o.cmdqv === true) {
      // The VINTF page 0 the kernel offers for mmap (its offset and length came back in the
      // driver data), and the vEVENTQ the host's CMDQV interrupt reports into (viommu.md §4.2, §4.7).
      this.vintf = v.vintf;
      this.vintfPage = must('mmap of the VINTF page 0', fd.mmap(v.mmapOffset!, v.mmapLength!)).hostPa;
      this.veventqFd = must('VEVENTQ_ALLOC (TEGRA241_CMDQV)', fd.veventqAlloc({ viommuId: v.viommuId, type: IOMMU_VEVENTQ_TYPE.TEGRA241_CMDQV, depth: CMDQV_VEVENTQ_DEPTH })).fd;
    } else {
      this.vintf = undefined;
      this.vintfPage = undefined;
      this.veventqFd = undefined;
    }
    const nested = (what: string, ste: Uint32Array): number =>
      must(what, fd.hwptAlloc({ flags: 0, devId: dev0, ptId: v.viommuId, dataType: IOMMU_HWPT_DATA.ARM_SMMUV3, data: wordsToLeBytes(ste) })).hwptId;
    this.abortHwpt = nested('HWPT_ALLOC (abort vSTE)', encodeStructure(STE, { V: 1, Config: STE_CONFIG.ABORT }).subarray(0, HWPT_ARM_SMMUV3_BYTES / 4));
    this.bypassHwpt = nested('HWPT_ALLOC (bypass vSTE)', encodeStructure(STE, { V: 1, Config: STE_CONFIG.BYPASS }).subarray(0, HWPT_ARM_SMMUV3_BYTES / 4));
    const first = o.gbpaAbort ? this.abortHwpt : this.bypassHwpt;
    this.devices = o.devices.map((d, i) => {
      const devId = devIds[i]!;
      const vdeviceId = must(`VDEVICE_ALLOC of vSID ${d.vsid}`, fd.vdeviceAlloc({ viommuId: v.viommuId, devId, virtId: d.vsid })).vdeviceId;
      mustRc('attach to the GBPA HWPT', fd.attach(devId, first));
      const dev: VmDevice = { vsid: d.vsid, psid: d.psid, devId, vdeviceId, attached: first, s1Hwpt: undefined };
      this.byVsid.set(d.vsid, dev);
      return dev;
    });
  }

  device(vsid: number): VmDevice | undefined {
    return this.byVsid.get(vsid);
  }
}

// ---------------------------------------------------------------------------------------------
// The forwarder
// ---------------------------------------------------------------------------------------------

export interface ForwarderOptions {
  readonly path: VmPath;
  /** 'trap' and 'vcmdq' (the trapped SMMU queue); default 'single' (QEMU). */
  readonly trapBatch?: TrapBatch;
  readonly vm: VirtualIommu;
  /** Guest memory (the guest's IPAs). */
  readonly guestMem: PhysMem;
  /** The virtual SMMU's registers (Stream table base and configuration, CR0ACK, GBPA). */
  readonly guestRegs: RegisterReader;
  readonly guestFeatures: SmmuFeatures;
  readonly counters?: VsmmuCounters;
}

/** What the forwarder does with a legal guest opcode. */
const KIND = { FORWARD: 1, STE: 2, STE_RANGE: 3, NOP: 4, REFUSE: 5 } as const;

const KIND_OF: Uint8Array = Uint8Array.from({ length: 256 }, (_, op) => {
  if (op === OP.CMD_CFGI_STE) return KIND.STE;
  if (op === OP.CMD_CFGI_STE_RANGE) return KIND.STE_RANGE;
  if (op === OP.CMD_PREFETCH_CONFIG || op === OP.CMD_PREFETCH_ADDR) return KIND.NOP;
  const row = CONVERSION[op];
  return row !== undefined && row.action !== 'reject' ? KIND.FORWARD : KIND.REFUSE;
});

function cmdField(op: number, name: string): { lsb: number; width: number } {
  const f = commandField(commandSpec(op), name);
  if (f === undefined) throw new Error(`commands.ts: ${commandSpec(op).name} has no ${name}`);
  return f;
}

const F_OPCODE = cmdField(OP.CMD_SYNC, 'Opcode');
/** StreamID [63:32] of CFGI_STE and CFGI_STE_RANGE (§4.3.1, §4.3.2). */
const F_STE_SID = cmdField(OP.CMD_CFGI_STE, 'StreamID');
/** Range [68:64] of CFGI_STE_RANGE: 2^(Range+1) StreamIDs (§4.3.2, §4.3.6). */
const F_RANGE = cmdField(OP.CMD_CFGI_STE_RANGE, 'Range');
/** StreamID of the SID-based invalidations (the converter translates the same field). */
const F_INV_SID = cmdField(OP.CMD_CFGI_CD, 'StreamID');

const CR0_SMMUEN = REG.SMMU_CR0.f.SMMUEN;
const GBPA_ABORT = REG.SMMU_GBPA.f.ABORT;
const STE_READ_WORDS = HWPT_ARM_SMMUV3_BYTES / 4;

/**
 * The CommandBackend of a VM's SmmuDevice. The SmmuDevice has already refused every command that
 * is illegal for the guest-visible features (CERROR_ILL, §4.1.3); this sees the legal ones.
 */
export class VsmmuForwarder implements CommandBackend {
  readonly path: VmPath;
  readonly trapBatch: TrapBatch;
  readonly counters: VsmmuCounters;
  private readonly vm: VirtualIommu;
  private readonly fd: Iommufd;
  private readonly mem: PhysMem;
  private readonly regs: RegisterReader;
  private readonly gf: SmmuFeatures;
  /** 'trap' + 'sync': the guest commands of the next HWPT_INVALIDATE, as guest words. */
  private readonly batch: Uint32Array[] = [];
  /** 'kernel-queue': converted commands waiting for the physical queue (at most VIOMMU_CHUNK). */
  private readonly chunk = new Uint32Array(VIOMMU_CHUNK * COMMAND_WORDS);
  private readonly chunkViews: Uint32Array[];
  private chunkLen = 0;
  private readonly snap = new Uint32Array(STE_READ_WORDS);
  /** Guest SMMUEN and GBPA.ABORT as last shadowed. */
  private shadowEn: boolean;
  private shadowAbort: boolean;

  constructor(o: ForwarderOptions) {
    this.path = o.path;
    this.trapBatch = o.trapBatch ?? 'single';
    this.counters = o.counters ?? zeroCounters();
    this.vm = o.vm;
    this.fd = o.vm.fd;
    this.mem = o.guestMem;
    this.regs = o.guestRegs;
    this.gf = o.guestFeatures;
    this.chunkViews = Array.from({ length: VIOMMU_CHUNK }, (_, i) => this.chunk.subarray(i * COMMAND_WORDS, (i + 1) * COMMAND_WORDS));
    this.shadowEn = this.guestEnabled();
    this.shadowAbort = this.guestAbort();
  }

  /** The VMM in user space consumes the guest queue ('trap', and the SMMU queue beside the VCMDQs). */
  private get trap(): boolean {
    return this.path !== 'kernel-queue';
  }

  // -------------------------------------------------------------------------------------------
  // CommandBackend
  // -------------------------------------------------------------------------------------------

  command(_q: CommandQueue, w: Uint32Array): number {
    const c = this.counters;
    c.guestCommands++;
    const op = getBits(w, F_OPCODE.lsb, F_OPCODE.width);
    switch (KIND_OF[op]) {
      case KIND.FORWARD:
        return this.forward(w);
      case KIND.STE: {
        const err = this.flush();
        if (err !== CERROR_NONE) return err;
        const dev = this.vm.device(getBits(w, F_STE_SID.lsb, F_STE_SID.width));
        // A StreamID with no assigned device has nothing to shadow (QEMU: no SMMUDevice).
        if (dev === undefined) return CERROR_NONE;
        return this.reshadow(dev) ? CERROR_NONE : this.refuse();
      }
      case KIND.STE_RANGE: {
        const err = this.flush();
        if (err !== CERROR_NONE) return err;
        // §4.3.2: 2^(Range+1) StreamIDs from StreamID aligned down to that size; Range 31 is all.
        const span = 2 ** (getBits(w, F_RANGE.lsb, F_RANGE.width) + 1);
        const sid = getBits(w, F_STE_SID.lsb, F_STE_SID.width);
        const start = sid - (sid % span);
        let ok = true;
        for (const dev of this.vm.devices) if (dev.vsid >= start && dev.vsid < start + span) ok = this.reshadow(dev) && ok;
        return ok ? CERROR_NONE : this.refuse();
      }
      case KIND.NOP:
        c.ignored++;
        return CERROR_NONE;
      default: {
        // The host takes no other command from a guest (viommu.md §3.2): the VMM, which knows the
        // uAPI's accepted set, reports it at once rather than making a call bound to fail.
        const err = this.flush();
        return err !== CERROR_NONE ? err : this.refuse();
      }
    }
  }

  sync(_q: CommandQueue): number {
    this.counters.guestCommands++;
    this.counters.guestSyncs++;
    return this.flush();
  }

  // -------------------------------------------------------------------------------------------
  // Invalidations
  // -------------------------------------------------------------------------------------------

  private refuse(): number {
    this.counters.refused++;
    return CERROR_ILL;
  }

  private forward(w: Uint32Array): number {
    const c = this.counters;
    if (this.path === 'kernel-queue') {
      // The in-kernel consumer: the kernel's conversion on the words themselves.
      const dst = this.chunkViews[this.chunkLen]!;
      dst.set(w);
      let rc = convertGuestCommand(dst, 0, this.vm.conv);
      if (rc === 0 && this.fd.commandCheck === 'legality') rc = checkConverted(dst, 0, this.vm.host.features);
      if (rc !== 0) {
        c.errors++;
        const err = this.flush();
        return err !== CERROR_NONE ? err : this.refuse();
      }
      c.guestInvalidations++;
      this.chunkLen++;
      if (this.chunkLen === VIOMMU_CHUNK) return this.flush();
      return CERROR_NONE;
    }
    // QEMU forwards a SID-based invalidation only for a StreamID with a vDEVICE; any other is
    // consumed: nothing of that StreamID is cached in the host (smmuv3_accel_issue_inv_cmd).
    const op = getBits(w, F_OPCODE.lsb, F_OPCODE.width);
    if (CONVERSION[op]!.action === 'translate-sid' && this.vm.device(getBits(w, F_INV_SID.lsb, F_INV_SID.width)) === undefined) {
      c.skipped++;
      return CERROR_NONE;
    }
    c.guestInvalidations++;
    if (this.trapBatch === 'sync') {
      this.batch.push(Uint32Array.from(w));
      return CERROR_NONE;
    }
    return this.invalidate([w]);
  }

  /** One HWPT_INVALIDATE ioctl on the vIOMMU (the VMM's call; entry_len 16). */
  private invalidate(cmds: readonly Uint32Array[]): number {
    const c = this.counters;
    c.ioctls++;
    c.invalidateIoctls++;
    const r = this.fd.invalidate(this.vm.viommuId, {
      dataType: IOMMU_HWPT_INVALIDATE_DATA.ARM_SMMUV3, entryLen: HWPT_ARM_SMMUV3_BYTES, entryNum: cmds.length, entries: invalidationEntries(cmds),
    });
    if (r.errno === 0) return CERROR_NONE;
    c.errors++;
    return this.refuse();
  }

  /**
   * Send what is pending: the trapping VMM's batch (one ioctl) or the kernel's chunk (one
   * submission). Called at each CMD_SYNC, before configuration changes, and when the consumer
   * goes idle (a batch never waits for a CMD_SYNC that may not come). Returns CERROR_ILL when the
   * host failed the call; the command being consumed then reports it.
   */
  flush(): number {
    if (this.trap) {
      if (this.batch.length === 0) return CERROR_NONE;
      const cmds = this.batch.splice(0, this.batch.length);
      return this.invalidate(cmds);
    }
    const n = this.chunkLen;
    if (n === 0) return CERROR_NONE;
    this.chunkLen = 0;
    const r = this.vm.host.queue.submit(this.chunkViews.slice(0, n), true);
    if (r.ok) return CERROR_NONE;
    this.counters.errors++;
    return this.refuse();
  }

  // -------------------------------------------------------------------------------------------
  // Configuration
  // -------------------------------------------------------------------------------------------

  private guestEnabled(): boolean {
    return regGet(this.regs.get32(REG.SMMU_CR0ACK.offset), CR0_SMMUEN) !== 0;
  }

  private guestAbort(): boolean {
    return regGet(this.regs.get32(REG.SMMU_GBPA.offset), GBPA_ABORT) !== 0;
  }

  /**
   * After a guest register write: when SMMUEN changed, or GBPA.ABORT changed while SMMUEN is 0,
   * every device is re-shadowed (its traffic follows the guest's STE, or GBPA). Returns the
   * number of devices whose re-shadow failed (they abort).
   */
  controlChanged(): number {
    const en = this.guestEnabled();
    const abort = this.guestAbort();
    if (en === this.shadowEn && (en || abort === this.shadowAbort)) return 0;
    this.shadowEn = en;
    this.shadowAbort = abort;
    this.flush();
    let failed = 0;
    for (const dev of this.vm.devices) if (!this.reshadow(dev)) failed++;
    return failed;
  }

  /** Every device re-shadowed from the guest's current state; false when one could not be. */
  reshadowAll(): boolean {
    let ok = true;
    for (const dev of this.vm.devices) ok = this.reshadow(dev) && ok;
    return ok;
  }

  /**
   * Make the device's physical STE follow the guest (QEMU smmuv3_accel_install_ste): SMMUEN 0:
   * the GBPA HWPT; an invalid or abort STE: the abort HWPT; bypass: the bypass HWPT; stage 1
   * translate: a new nested HWPT of the masked first two double-words, attached, the previous one
   * destroyed. A StreamID beyond the guest's Stream table, or an STE outside guest memory, keeps
   * the current attachment (QEMU: no STE found, nothing to install). Any other configuration, or
   * a vSTE the kernel refuses, is an error: the device is attached to the abort HWPT (its traffic
   * must not use a configuration the guest did not ask for) and false is returned.
   */
  private reshadow(dev: VmDevice): boolean {
    const c = this.counters;
    c.reshadows++;
    let target: number;
    let made: number | undefined;
    if (!this.guestEnabled()) {
      target = this.guestAbort() ? this.vm.abortHwpt : this.vm.bypassHwpt;
    } else {
      const pa = locateSte(this.mem, streamTableRegs(this.regs), this.gf, dev.vsid);
      if (pa === undefined) return true;
      const s = this.snap;
      this.mem.readWords(pa, s);
      const cfg = steConfig(s);
      if (!steValid(s) || cfg === STE_CONFIG.ABORT) {
        target = this.vm.abortHwpt;
      } else if (cfg === STE_CONFIG.BYPASS) {
        target = this.vm.bypassHwpt;
      } else if (cfg === STE_CONFIG.S1_TRANS) {
        for (let i = 0; i < s.length; i++) s[i] = (s[i]! & VSTE_PASS_MASK[i]!) >>> 0;
        if (this.trap) c.ioctls++;
        const r = this.fd.hwptAlloc({ flags: 0, devId: dev.devId, ptId: this.vm.viommuId, dataType: IOMMU_HWPT_DATA.ARM_SMMUV3, data: wordsToLeBytes(s) });
        if (!r.ok) return this.reshadowFailed(dev);
        target = r.hwptId;
        made = r.hwptId;
      } else {
        // Stage 2 and nested configurations do not exist on this stage-1-only SMMU (or are the host's).
        return this.reshadowFailed(dev);
      }
    }
    if (target === dev.attached && made === undefined) return true;
    if (this.trap) c.ioctls++;
    const rc = this.fd.attach(dev.devId, target);
    if (rc !== 0) {
      if (made !== undefined) {
        if (this.trap) c.ioctls++;
        this.fd.destroy(made);
      }
      return this.reshadowFailed(dev);
    }
    this.replaceS1(dev, target, made);
    return true;
  }

  private replaceS1(dev: VmDevice, target: number, made: number | undefined): void {
    const old = dev.s1Hwpt;
    dev.attached = target;
    dev.s1Hwpt = made;
    if (old !== undefined) {
      if (this.trap) this.counters.ioctls++;
      this.fd.destroy(old);
    }
  }

  private reshadowFailed(dev: VmDevice): false {
    this.counters.errors++;
    if (dev.attached !== this.vm.abortHwpt) {
      if (this.trap) this.counters.ioctls++;
      if (this.fd.attach(dev.devId, this.vm.abortHwpt) === 0) this.replaceS1(dev, this.vm.abortHwpt, undefined);
    }
    return false;
  }
}
