/**
 * The host kernel's iommufd, as a pure object model (shared/reference/viommu.md §1–§5; Linux
 * drivers/iommu/iommufd and arm-smmu-v3-iommufd.c, tegra241-cmdqv.c, read for facts only).
 *
 * One `Iommufd` is one open /dev/iommu: its objects share one id space, hold references on one
 * another, and refuse destruction while referenced (EBUSY), as the kernel's refcounts do. One
 * `HostSmmu` is one physical SMMU with its VMID allocator, its main Command queue, and optionally
 * an NVIDIA Tegra241 CMDQV. Several `Iommufd`s (several VMMs) may share one HostSmmu.
 *
 * The object layer owns no queue: the vIOMMU invalidate call converts and validates the guest's
 * commands (convert.ts) and hands the physical commands, at most 63 at a time, to the host's
 * injected `PhysicalQueue`, which appends one CMD_SYNC and waits for it (§3.3). Tests use a
 * recording fake; the system uses the host driver. Everything here is synchronous.
 *
 * Modelled host-kernel behaviour, in the order the kernel checks, is documented per call. Choices
 * the sources leave open are listed in docs/fidelity.md ("Host kernel (src/virt)").
 *
 * Addresses: the model has no host virtual memory. IOMMU_IOAS_MAP's user_va is taken as the host
 * physical address of the VMM's memory (board RAM), so pinning a range yields host PAs directly.
 */

import { coverMask, getBits, setBits } from '../spec/bits.ts';
import type { Field } from '../spec/bits.ts';
import { COMMAND_BYTES, COMMAND_WORDS } from '../spec/commands.ts';
import { EVENT_F, EVENT_WORDS, EVT } from '../spec/events.ts';
import { FULL_FEATURES } from '../spec/features.ts';
import type { SmmuFeatures } from '../spec/features.ts';
import { STE_BYTES, STE_CONFIG, STE_EATS, STE_F } from '../spec/structures.ts';
import { checkConverted, convertGuestCommand } from './convert.ts';
import type { VsmmuContext } from './convert.ts';
import {
  EBUSY, EEXIST, EFAULT, EINVAL, EIO, ENOENT, ENOMEM, ENOSPC, ENOTTY, ENXIO, EOPNOTSUPP, EOVERFLOW, EPERM, ERANGE, ESPIPE, fail,
} from './errno.ts';
import type { Outcome } from './errno.ts';
import {
  HWPT_ARM_SMMUV3_BYTES, IOMMU_DESTROY_S, IOMMU_HWPT_ALLOC, IOMMU_HWPT_ALLOC_S, IOMMU_HWPT_DATA, IOMMU_HWPT_INVALIDATE_DATA,
  IOMMU_HWPT_INVALIDATE_S, IOMMU_HW_QUEUE_ALLOC_S, IOMMU_HW_QUEUE_TYPE, IOMMU_IOAS_ALLOC_S, IOMMU_IOAS_MAP, IOMMU_IOAS_MAP_S,
  IOMMU_IOAS_UNMAP_S, IOMMU_VDEVICE_ALLOC_S, IOMMU_VEVENTQ_ALLOC_S, IOMMU_VEVENTQ_FLAG_LOST_EVENTS, IOMMU_VEVENTQ_TYPE,
  IOMMU_VIOMMU_ALLOC_S, IOMMU_VIOMMU_TEGRA241_CMDQV_S, IOMMU_VIOMMU_TYPE, IOMMUFD_CMD, IOMMUFD_TYPE, SMMUV3_INVALIDATE_ENTRY_BYTES,
  VEVENT_HEADER_BYTES, copyIoctlArg, copyStructFromUser, decodeStruct, writeField, writeU64,
} from './uapi.ts';
import type { UStruct } from './uapi.ts';

// ---------------------------------------------------------------------------------------------
// Constants
// ---------------------------------------------------------------------------------------------

/** The host kernel's page size: arm64 with 4 KiB pages. */
export const PAGE_SIZE = 4096;
/** CMDQ_BATCH_ENTRIES = BITS_PER_LONG = 64 on arm64 (§3.3). */
export const CMDQ_BATCH_ENTRIES = 64;
/** Commands per physical submission: CMDQ_BATCH_ENTRIES − 1, the last slot is the kernel's CMD_SYNC (§3.3). */
export const VIOMMU_CHUNK = CMDQ_BATCH_ENTRIES - 1;
/**
 * The largest kcalloc: KMALLOC_MAX_SIZE with 4 KiB pages and MAX_PAGE_ORDER 10 (4 MiB). A larger
 * invalidation array fails its kernel copy with ENOMEM (§2.5 "kcalloc failure").
 */
export const KMALLOC_MAX_SIZE = 4 << 20;
/** Object ids are allocated from 1 (xa_alloc with XA_FLAGS_ALLOC1, xa_limit_31b). */
export const FIRST_OBJECT_ID = 1;
export const MAX_OBJECT_ID = 0x7fff_ffff;
/** Event queue sequence numbers run 0..INT_MAX and wrap (§1.4). */
export const VEVENT_SEQUENCE_MASK = 0x7fff_ffff;
/** The first file descriptor a process gets after stdin, stdout, stderr. */
export const FIRST_FD = 3;
/** The Tegra241 VINTF page-0 mmap length (§4.2). */
export const VINTF_MMAP_LENGTH = 0x1_0000;
/** VINTF i page 0 sits at 0x30000 + 0x20000·i in the CMDQV aperture (§4.1). */
export const VINTF_PAGE0_BASE = 0x3_0000;
export const VINTF_PAGE0_STRIDE = 0x2_0000;
/** VCMDQ_BASE.ADDR is bits [47:5] (§4.1, §4.6): the host PA of a guest queue must fit. */
export const VCMDQ_ADDR_LO = 5;
export const VCMDQ_ADDR_HI = 47;
/** Smallest guest queue length in bytes (§4.6). */
export const HW_QUEUE_MIN_BYTES = 32;
/** log2 of the command size (CMDQ_ENT_SZ_SHIFT). */
const CMDQ_ENT_SZ_SHIFT = Math.log2(COMMAND_BYTES);
const U32_MAX = 0xffff_ffff;
const U64_MAX = (1n << 64n) - 1n;

/** IOMMUFD_OBJ_* (§1.1). */
export const IOMMUFD_OBJ = Object.freeze({
  ANY: 0,
  DEVICE: 1,
  HWPT_PAGING: 2,
  HWPT_NESTED: 3,
  IOAS: 4,
  ACCESS: 5,
  FAULT: 6,
  VIOMMU: 7,
  VDEVICE: 8,
  VEVENTQ: 9,
  HW_QUEUE: 10,
} as const);
export type ObjType = (typeof IOMMUFD_OBJ)[keyof typeof IOMMUFD_OBJ];

/** The SMMU event numbers Linux forwards to a guest through the vEVENTQ (§1.4; arm_smmu_handle_event). */
export const FORWARDED_EVENT_IDS: readonly number[] = Object.freeze([
  EVT.C_BAD_STE, EVT.F_STREAM_DISABLED, EVT.C_BAD_SUBSTREAMID, EVT.C_BAD_CD,
  EVT.F_TRANSLATION, EVT.F_ADDR_SIZE, EVT.F_ACCESS, EVT.F_PERMISSION,
]);

type U64 = number | bigint;

// ---------------------------------------------------------------------------------------------
// Injected host pieces
// ---------------------------------------------------------------------------------------------

export type SubmitResult = { readonly ok: true } | { readonly ok: false; readonly errno: number; readonly failedIndex: number };

/**
 * The host's main Command queue as the vIOMMU sees it (§3.3). `cmds` are 4-word commands, at most
 * VIOMMU_CHUNK of them; the queue appends one CMD_SYNC (withSync is always true here) and returns
 * once it completed. On failure, `failedIndex` is the index in `cmds` of the first command not
 * known to have completed (cmds.length when only the CMD_SYNC failed). The arrays are views into
 * the call's own buffer, valid during the call only: copy them to keep them.
 */
export interface PhysicalQueue {
  submit(cmds: Uint32Array[], withSync: true): SubmitResult;
}

/** A PhysicalQueue that records every submission (copies) and can be told to fail one. */
export class RecordingQueue implements PhysicalQueue {
  /** Every submission, commands copied, in order. */
  readonly submissions: Uint32Array[][] = [];
  /** Fail the submission with this 0-based number. */
  failAt: { readonly submission: number; readonly errno: number; readonly failedIndex: number } | undefined;

  submit(cmds: Uint32Array[], withSync: true): SubmitResult {
    void withSync;
    const n = this.submissions.length;
    this.submissions.push(cmds.map((c) => Uint32Array.from(c)));
    const f = this.failAt;
    if (f !== undefined && f.submission === n) return { ok: false, errno: f.errno, failedIndex: f.failedIndex };
    return { ok: true };
  }

  /** All submitted commands, flattened. */
  get commands(): Uint32Array[] {
    return this.submissions.flat();
  }
}

/**
 * A VMID allocator: the lowest free VMID in [1, 2^bits − 1]. VMID 0 is the kernel's for stage-1
 * domains (Linux ida_alloc_range(vmid_map, 1, (1 << vmid_bits) − 1)).
 */
export class VmidAllocator {
  private readonly used = new Set<number>();
  readonly first = 1;
  readonly last: number;

  constructor(readonly bits: number) {
    this.last = 2 ** bits - 1;
  }

  /** The lowest free VMID, or undefined when all are taken (the caller's ENOSPC). */
  alloc(): number | undefined {
    for (let v = this.first; v <= this.last; v++) {
      if (!this.used.has(v)) {
        this.used.add(v);
        return v;
      }
    }
    return undefined;
  }

  free(vmid: number): void {
    this.used.delete(vmid);
  }

  get inUse(): readonly number[] {
    return [...this.used].sort((a, b) => a - b);
  }
}

/**
 * A kernel-managed page table (an iommu_domain) behind a HWPT_PAGING. The object layer calls map
 * and unmap as the IOAS changes, as iopt does for every domain of an IOAS. Optional: without a
 * factory the HWPT is bookkeeping only.
 */
export interface PagingDomainOps {
  /** Map [iova, iova+length) to host PA `pa`; 0 or an errno. */
  map(iova: number, pa: number, length: number, prot: number): number;
  unmap(iova: number, length: number): void;
  /**
   * The 16-word STE of a stream attached directly to this domain (for a stage-2 domain: Config
   * S2_TRANS with S2VMID, S2TTB and the VTCR fields; EATS set when `ats`). Nested STEs are built on
   * top of it (composeNestedSte).
   */
  ste?(ats: boolean): Uint32Array;
  /** Called when the HWPT is destroyed. */
  free?(): void;
}

export interface PagingDomainInfo {
  /** 2 for a nest parent (the VM's stage 2), 1 otherwise. */
  readonly stage: 1 | 2;
  /** The stage-2 VMID (stage 2 only). */
  readonly vmid: number | undefined;
}

export type PagingDomainFactory = (info: PagingDomainInfo) => PagingDomainOps;

/** CMDQV geometry, as CMDQV_PARAM gives it (§4.1). */
export interface CmdqvParams {
  /** Number of VINTFs; VINTF0 is the host kernel's (§4.2). */
  readonly numVintfs: number;
  /** Number of VCMDQs in total; each VINTF gets numVcmdqs / numVintfs logical queues (§4.1). */
  readonly numVcmdqs: number;
  /** SID_MATCH/SID_REPLACE pairs per VINTF (§4.4). */
  readonly numSidsPerVintf: number;
  /** Host PA of the CMDQV aperture (for the VINTF page-0 address). */
  readonly base?: number;
}

/** What the kernel programs into the CMDQV; the vcmdq path implements these on its hardware model. */
export interface CmdqvHooks {
  /** VINTF enabled for a guest: EN = 1, HYP_OWN = 0, VMID (§4.2). */
  vintfEnable?(vintf: number, vmid: number): void;
  vintfDisable?(vintf: number): void;
  /** SID_REPLACE(slot) = psid, SID_MATCH(slot) = (vsid << 1) | 1 (§4.4). */
  sidMap?(vintf: number, slot: number, vsid: number, psid: number): void;
  /** Both registers zeroed (§4.4). */
  sidUnmap?(vintf: number, slot: number): void;
  /** LVCMDQ lidx allocated and its BASE programmed with the host PA; not enabled (§4.3 step 3). */
  lvcmdqInit?(vintf: number, lidx: number, basePa: number, log2size: number): void;
  lvcmdqDeinit?(vintf: number, lidx: number): void;
}

export interface HostSmmuOptions {
  readonly name?: string;
  /** The physical SMMU's features (IDR fields). Default FULL_FEATURES. */
  readonly features?: SmmuFeatures;
  readonly queue: PhysicalQueue;
  /** Default: a fresh allocator of 16 or 8 bits by features.vmid16. */
  readonly vmids?: VmidAllocator;
  /** IDR3.FWB; the model presents 0 (docs/fidelity.md), so default false. */
  readonly s2fwb?: boolean;
  /** ARM_SMMU_OPT_CMDQ_FORCE_SYNC: vIOMMUs are refused (§1.4). */
  readonly cmdqForceSync?: boolean;
  readonly cmdqv?: CmdqvParams & CmdqvHooks;
  /** Writes a physical STE for a StreamID (and invalidates it); called on attach and detach. */
  readonly installSte?: (streamId: number, ste: Uint32Array) => void;
  readonly pagingDomain?: PagingDomainFactory;
}

/** One physical SMMU as the host kernel drives it. */
export class HostSmmu {
  readonly name: string;
  readonly features: SmmuFeatures;
  readonly queue: PhysicalQueue;
  readonly vmids: VmidAllocator;
  readonly s2fwb: boolean;
  readonly cmdqForceSync: boolean;
  readonly cmdqv: (CmdqvParams & CmdqvHooks) | undefined;
  readonly installSte: ((streamId: number, ste: Uint32Array) => void) | undefined;
  readonly pagingDomain: PagingDomainFactory | undefined;
  /** Bound streams: StreamID → the device object that owns it. */
  private readonly streams = new Map<number, DeviceObj>();
  /** VINTFs in use by guests: index → the vIOMMU (VINTF0 is the kernel's and never listed). */
  private readonly vintfs = new Map<number, ViommuObj>();

  constructor(o: HostSmmuOptions) {
    this.name = o.name ?? 'smmu0';
    this.features = o.features ?? FULL_FEATURES;
    this.queue = o.queue;
    this.vmids = o.vmids ?? new VmidAllocator(this.features.vmid16 ? 16 : 8);
    this.s2fwb = o.s2fwb ?? false;
    this.cmdqForceSync = o.cmdqForceSync ?? false;
    this.cmdqv = o.cmdqv;
    this.installSte = o.installSte;
    this.pagingDomain = o.pagingDomain;
  }

  /** ARM_SMMU_FEAT_NESTING: both stages implemented. */
  get nesting(): boolean {
    return this.features.s1 && this.features.s2;
  }

  /** LVCMDQs per VINTF (§4.1). */
  get lvcmdqsPerVintf(): number {
    const c = this.cmdqv;
    return c === undefined ? 0 : Math.floor(c.numVcmdqs / c.numVintfs);
  }

  /** @internal */
  claimStream(sid: number, dev: DeviceObj): boolean {
    if (this.streams.has(sid)) return false;
    this.streams.set(sid, dev);
    return true;
  }

  /** @internal */
  releaseStream(sid: number): void {
    this.streams.delete(sid);
  }

  /** @internal The lowest free user VINTF, 1..numVintfs−1 (VINTF0 is the kernel's, §4.2). */
  freeVintfIndex(): number | undefined {
    const c = this.cmdqv;
    if (c === undefined) return undefined;
    for (let i = 1; i < c.numVintfs; i++) if (!this.vintfs.has(i)) return i;
    return undefined;
  }

  /** @internal */
  claimVintf(i: number, v: ViommuObj): void {
    this.vintfs.set(i, v);
  }

  /** @internal */
  freeVintf(i: number): void {
    this.vintfs.delete(i);
  }

  /**
   * The host's event-queue handler for one record (Linux arm_smmu_handle_event, §1.4): forward
   * the listed event numbers of a stream attached to a translating nested domain with a vDEVICE,
   * not stalled, not a stage-2 fault, to that vIOMMU's vEVENTQ with the StreamID rewritten to the
   * vSID. Returns 0 when forwarded; EINVAL when no device owns the StreamID; EOPNOTSUPP when the
   * event is the host's (other numbers, S2 faults, stalls, no vDEVICE) or no vEVENTQ takes it.
   */
  handleEvent(evt: Uint32Array, base = 0): number {
    const id = getBits(evt, EVENT_F.EventID.lsb, EVENT_F.EventID.width, base);
    if (!FORWARDED_EVENT_IDS.includes(id)) return EOPNOTSUPP;
    const dev = this.streams.get(getBits(evt, EVENT_F.StreamID.lsb, EVENT_F.StreamID.width, base));
    if (dev === undefined) return EINVAL;
    // Stalled faults go to the IOPF path, which the model does not implement (§5 FAULT queues).
    if (getBits(evt, EVENT_F.Stall.lsb, EVENT_F.Stall.width, base) !== 0) return EOPNOTSUPP;
    const vmaster = dev.vmaster;
    if (vmaster === undefined || getBits(evt, EVENT_F.S2.lsb, EVENT_F.S2.width, base) !== 0) return EOPNOTSUPP;
    const rec = new Uint32Array(EVENT_WORDS);
    rec.set(evt.subarray(base, base + EVENT_WORDS));
    setBits(rec, EVENT_F.StreamID.lsb, EVENT_F.StreamID.width, vmaster.vsid32);
    return dev.ctx.reportEvent(vmaster.viommu.id, IOMMU_VEVENTQ_TYPE.ARM_SMMUV3, wordsToBytes(rec));
  }

  /**
   * The CMDQV interrupt for a guest-owned VINTF (§4.7 step 2): post its two LVCMDQ_ERR_MAP_64
   * words as one TEGRA241_CMDQV vEVENT. 0, or ENOENT when no vIOMMU owns the VINTF, or the
   * reportEvent errno.
   */
  reportVintfError(vintf: number, errMap: readonly [bigint, bigint]): number {
    const v = this.vintfs.get(vintf);
    if (v === undefined) return ENOENT;
    const b = new Uint8Array(16);
    writeU64(b, 0, errMap[0]);
    writeU64(b, 8, errMap[1]);
    return v.ctx.reportEvent(v.id, IOMMU_VEVENTQ_TYPE.TEGRA241_CMDQV, b);
  }
}

// ---------------------------------------------------------------------------------------------
// vSTE validation and nested STE composition (§1.4; arm_smmu_validate_vste, make_nested_domain_ste)
// ---------------------------------------------------------------------------------------------

/**
 * S1ContextPtr as Linux masks it for nesting: [51:6] (STRTAB_STE_0_S1CTXPTR_MASK). The spec's
 * field is [55:6] (§5.2); bits [55:52] of a guest vSTE are EIO, as in the kernel.
 */
const NESTED_S1CTXPTR: Field = { name: 'S1ContextPtr[51:6]', lsb: STE_F.S1ContextPtr.lsb, width: 52 - STE_F.S1ContextPtr.lsb };

/** The vSTE bits a guest may set (STRTAB_STE_0/1_NESTING_ALLOWED), over the first 4 words (§1.4). */
export const VSTE_ALLOWED: Uint32Array = coverMask(
  [STE_F.V, STE_F.Config, STE_F.S1Fmt, NESTED_S1CTXPTR, STE_F.S1CDMax, STE_F.S1DSS, STE_F.S1CIR, STE_F.S1COR, STE_F.S1CSH, STE_F.S1STALLD, STE_F.EATS],
  HWPT_ARM_SMMUV3_BYTES / 4,
);

export interface ValidatedVste {
  /** The vSTE as kept by the nested domain: EATS cleared (the host sets it at attach). */
  readonly ste: Uint32Array;
  /** Config as requested (ABORT for a vSTE with V = 0). */
  readonly config: number;
  /** The guest asked for ATS: Config S1_TRANS with EATS = full ATS. */
  readonly enableAts: boolean;
}

/**
 * Validate a guest's vSTE, the first two double-words of its STE (4 u32 words), as the host kernel
 * does: V = 0 gives an all-zero (abort) vSTE; any bit outside VSTE_ALLOWED, a Config other than
 * abort, bypass or S1-translate, or an EATS other than abort or full ATS is EIO.
 */
export function validateVste(words: ArrayLike<number>): Outcome<ValidatedVste> {
  const ste = Uint32Array.from({ length: VSTE_ALLOWED.length }, (_, i) => (words[i] ?? 0) >>> 0);
  if (getBits(ste, STE_F.V.lsb, STE_F.V.width) === 0) {
    ste.fill(0);
    return { ok: true, ste, config: STE_CONFIG.ABORT, enableAts: false };
  }
  for (let i = 0; i < ste.length; i++) if ((ste[i]! & ~VSTE_ALLOWED[i]!) !== 0) return fail(EIO);
  const config = getBits(ste, STE_F.Config.lsb, STE_F.Config.width);
  if (config !== STE_CONFIG.ABORT && config !== STE_CONFIG.BYPASS && config !== STE_CONFIG.S1_TRANS) return fail(EIO);
  const eats = getBits(ste, STE_F.EATS.lsb, STE_F.EATS.width);
  setBits(ste, STE_F.EATS.lsb, STE_F.EATS.width, 0);
  if (eats !== STE_EATS.ABORT && eats !== STE_EATS.FULL_ATS) return fail(EIO);
  return { ok: true, ste, config, enableAts: config === STE_CONFIG.S1_TRANS && eats === STE_EATS.FULL_ATS };
}

/** An abort STE: V = 1, Config = abort (Linux arm_smmu_make_abort_ste). */
export function abortSte(): Uint32Array {
  const s = new Uint32Array(STE_BYTES / 4);
  setBits(s, STE_F.V.lsb, STE_F.V.width, 1);
  setBits(s, STE_F.Config.lsb, STE_F.Config.width, STE_CONFIG.ABORT);
  return s;
}

/**
 * The physical STE for a stream attached to a nested domain (Linux
 * arm_smmu_make_nested_domain_ste): S1-translate builds on the stage-2 STE with Config = nested,
 * the guest's dword 0 (Config excepted) and dword 1 OR-ed in, and MEV set so that a guest cannot
 * flood the host event queue; bypass is the stage-2 STE; abort and invalid are an abort STE.
 */
export function composeNestedSte(vste: ValidatedVste, s2Ste: Uint32Array): Uint32Array {
  const cfg = getBits(vste.ste, STE_F.V.lsb, STE_F.V.width) === 0 ? STE_CONFIG.ABORT : vste.config;
  if (cfg === STE_CONFIG.BYPASS) return Uint32Array.from(s2Ste);
  if (cfg !== STE_CONFIG.S1_TRANS) return abortSte();
  const out = Uint32Array.from(s2Ste);
  out[0] = 0;
  out[1] = 0;
  setBits(out, STE_F.V.lsb, STE_F.V.width, 1);
  setBits(out, STE_F.Config.lsb, STE_F.Config.width, STE_CONFIG.NESTED);
  const guest = Uint32Array.from(vste.ste);
  setBits(guest, STE_F.Config.lsb, STE_F.Config.width, 0);
  for (let i = 0; i < guest.length; i++) out[i] = (out[i]! | guest[i]!) >>> 0;
  setBits(out, STE_F.MEV.lsb, STE_F.MEV.width, 1);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Objects
// ---------------------------------------------------------------------------------------------

interface ObjBase {
  id: number;
  readonly type: ObjType;
  /** References: 1 for existence, +1 per holder. DESTROY needs exactly 1. */
  users: number;
  readonly ctx: Iommufd;
}

interface DeviceObj extends ObjBase {
  readonly type: typeof IOMMUFD_OBJ.DEVICE;
  readonly host: HostSmmu;
  readonly streamId: number;
  readonly canwbs: boolean;
  readonly ats: boolean;
  attached: HwptPagingObj | HwptNestedObj | undefined;
  vdev: VdeviceObj | undefined;
  /** Set while attached to a translating nested domain with a vDEVICE: events go to the guest. */
  vmaster: VdeviceObj | undefined;
}

interface Area {
  readonly iova: number;
  readonly length: number;
  readonly pa: number;
  readonly prot: number;
  /** Pins by HW queues (iopt_area num_locks): unmap is EBUSY while non-zero. */
  locks: number;
}

interface IoasObj extends ObjBase {
  readonly type: typeof IOMMUFD_OBJ.IOAS;
  /** Sorted by iova, non-overlapping. */
  readonly areas: Area[];
  readonly hwpts: Set<HwptPagingObj>;
}

interface HwptPagingObj extends ObjBase {
  readonly type: typeof IOMMUFD_OBJ.HWPT_PAGING;
  readonly host: HostSmmu;
  readonly ioas: IoasObj;
  readonly nestParent: boolean;
  readonly stage: 1 | 2;
  readonly vmid: number | undefined;
  readonly domain: PagingDomainOps | undefined;
}

interface HwptNestedObj extends ObjBase {
  readonly type: typeof IOMMUFD_OBJ.HWPT_NESTED;
  readonly viommu: ViommuObj;
  readonly vste: ValidatedVste;
}

interface CmdqvState {
  readonly vintf: number;
  readonly lvcmdqs: (HwQueueObj | undefined)[];
  readonly sidSlots: (VdeviceObj | undefined)[];
  readonly mmapOffset: number;
  readonly mmapLength: number;
  readonly page0: number;
}

interface ViommuObj extends ObjBase {
  readonly type: typeof IOMMUFD_OBJ.VIOMMU;
  readonly vtype: number;
  readonly host: HostSmmu;
  readonly hwpt: HwptPagingObj;
  readonly vmid: number;
  /** virt_id → vDEVICE. */
  readonly vdevs: Map<bigint, VdeviceObj>;
  /** The converter's view: 32-bit vSID → physical StreamID. */
  readonly vsids: Map<number, number>;
  readonly veventqs: Map<number, VeventqObj>;
  readonly cmdqv: CmdqvState | undefined;
  readonly conv: VsmmuContext;
}

interface VdeviceObj extends ObjBase {
  readonly type: typeof IOMMUFD_OBJ.VDEVICE;
  readonly viommu: ViommuObj;
  readonly dev: DeviceObj;
  readonly virtId: bigint;
  /** virt_id as the 32-bit StreamID field of an event record carries it (FIELD_PREP truncates). */
  readonly vsid32: number;
  sidSlot: number | undefined;
}

interface Vevent {
  flags: number;
  sequence: number;
  readonly data: Uint8Array;
  /** The queue's preallocated lost-events header (or a copy of it handed to a reader). */
  readonly lost: boolean;
}

interface VeventqObj extends ObjBase {
  readonly type: typeof IOMMUFD_OBJ.VEVENTQ;
  readonly viommu: ViommuObj;
  readonly vtype: number;
  readonly depth: number;
  numEvents: number;
  sequence: number;
  readonly list: Vevent[];
  readonly lostHeader: Vevent;
  fd: number | undefined;
}

interface HwQueueObj extends ObjBase {
  readonly type: typeof IOMMUFD_OBJ.HW_QUEUE;
  readonly viommu: ViommuObj;
  readonly qtype: number;
  readonly index: number;
  readonly iova: bigint;
  readonly length: bigint;
  readonly basePa: number;
  readonly pinned: Area[];
  readonly prev: HwQueueObj | undefined;
}

type Obj = DeviceObj | IoasObj | HwptPagingObj | HwptNestedObj | ViommuObj | VdeviceObj | VeventqObj | HwQueueObj;

/** What `describe(id)` reports about an object (for tests, traces and the paths). */
export type ObjectInfo =
  | { type: 'DEVICE'; id: number; users: number; streamId: number; attached: number | undefined; vdevice: number | undefined }
  | { type: 'IOAS'; id: number; users: number; areas: { iova: number; length: number; pa: number; locks: number }[] }
  | { type: 'HWPT_PAGING'; id: number; users: number; ioas: number; nestParent: boolean; stage: 1 | 2; vmid: number | undefined }
  | { type: 'HWPT_NESTED'; id: number; users: number; viommu: number; ste: number[]; config: number; enableAts: boolean }
  | { type: 'VIOMMU'; id: number; users: number; vtype: number; hwpt: number; vmid: number; vintf: number | undefined }
  | { type: 'VDEVICE'; id: number; users: number; viommu: number; device: number; virtId: bigint; streamId: number; sidSlot: number | undefined }
  | { type: 'VEVENTQ'; id: number; users: number; viommu: number; vtype: number; depth: number; numEvents: number; fd: number | undefined }
  | { type: 'HW_QUEUE'; id: number; users: number; viommu: number; index: number; basePa: number; length: bigint };

// ---------------------------------------------------------------------------------------------
// Call arguments
// ---------------------------------------------------------------------------------------------

export interface IommufdOptions {
  /**
   * entry_num counting of the SMMUv3 invalidate (§3.3). 'linux' (default) copies the driver: a
   * conversion failure at k reports k although the converted, unflushed entries of the current
   * chunk were never issued; a failed submission of a chunk ending at e−1 reports e−1. 'contract'
   * keeps the uAPI's promise: the pending entries are issued before the failing one is reported,
   * and a failed submission reports the entries the queue completed.
   */
  readonly counting?: 'linux' | 'contract';
  /**
   * 'kernel' (default): the converted command goes to the queue whatever its other bits, as in
   * Linux (§3.2). 'legality': a converted command that would raise CERROR_ILL on the host's
   * Non-secure queue (SSec = 1, RES0 bits, …) is EIO instead (not the kernel's behaviour).
   */
  readonly commandCheck?: 'kernel' | 'legality';
}

export interface BindOptions {
  /** The device is fully cache coherent, including PCI No-Snoop (arm_smmu_master_canwbs). */
  readonly canwbs?: boolean;
  /** The device supports PCIe ATS. */
  readonly ats?: boolean;
}

export interface IoasMapArgs {
  readonly ioasId: number;
  readonly flags: number;
  /** The VMM's memory: a host physical address in the model (see the file comment). */
  readonly userVa: U64;
  readonly length: U64;
  /** Used with IOMMU_IOAS_MAP.FIXED_IOVA. */
  readonly iova?: U64;
  readonly reserved?: number;
}

export interface HwptAllocArgs {
  readonly flags: number;
  readonly devId: number;
  readonly ptId: number;
  readonly dataType: number;
  /** The user memory at data_uptr; null is a NULL pointer. */
  readonly data?: Uint8Array | null;
  /** Default: data.length, or 0. */
  readonly dataLen?: number;
  readonly faultId?: number;
  readonly reserved?: number;
}

export interface ViommuAllocArgs {
  readonly flags?: number;
  readonly type: number;
  readonly devId: number;
  readonly hwptId: number;
  /** The user memory at data_uptr (TEGRA241_CMDQV: receives the mmap offset and length). */
  readonly data?: Uint8Array | null;
  readonly dataLen?: number;
}

export interface VdeviceAllocArgs {
  readonly viommuId: number;
  readonly devId: number;
  readonly virtId: U64;
}

export interface VeventqAllocArgs {
  readonly flags?: number;
  readonly viommuId: number;
  readonly type: number;
  readonly depth: number;
  readonly reserved?: number;
}

export interface HwQueueAllocArgs {
  readonly flags?: number;
  readonly viommuId: number;
  readonly type: number;
  readonly index: number;
  /** Guest PA of the queue (nesting_parent_iova). */
  readonly iova: U64;
  readonly length: U64;
}

export interface InvalidateArgs {
  readonly dataType: number;
  readonly entryLen: number;
  readonly entryNum: number;
  /** The user memory at data_uptr: entryNum entries of entryLen bytes. null is a NULL pointer. */
  readonly entries: Uint8Array | null;
}

export interface HwptInvalidateArgs extends InvalidateArgs {
  readonly hwptId: number;
  readonly reserved?: number;
}

/** HWPT_INVALIDATE's result: entry_num is written back even on error (§2.2 step 5). */
export interface InvalidateResult {
  readonly errno: number;
  readonly entryNum: number;
}

/** User memory for the byte-level ioctl entry: data_uptr pointers resolve through it. */
export interface UserMemory {
  /** The bytes from `uptr` to the end of the region holding it (writable), or null (a fault). */
  view(uptr: bigint): Uint8Array | null;
}

/** A trivial user address space for tests: buffers placed at distinct addresses. */
export class UserSpace implements UserMemory {
  private readonly regions: { base: bigint; bytes: Uint8Array }[] = [];
  private next = 0x10_0000n;

  /** Place `bytes` (kept by reference) and return its address. */
  place(bytes: Uint8Array): bigint {
    const base = this.next;
    this.regions.push({ base, bytes });
    this.next += BigInt(Math.max(bytes.length, 1) + 0xfff) & ~0xfffn;
    this.next += 0x1000n;
    return base;
  }

  view(uptr: bigint): Uint8Array | null {
    for (const r of this.regions) {
      if (uptr >= r.base && uptr < r.base + BigInt(r.bytes.length)) return r.bytes.subarray(Number(uptr - r.base));
    }
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

function big(x: U64): bigint {
  return typeof x === 'bigint' ? x : BigInt(x);
}

function isPow2(n: bigint): boolean {
  return n > 0n && (n & (n - 1n)) === 0n;
}

function wordsToBytes(w: Uint32Array): Uint8Array {
  const b = new Uint8Array(w.length * 4);
  for (let i = 0; i < w.length; i++) {
    const v = w[i]!;
    b[4 * i] = v & 0xff;
    b[4 * i + 1] = (v >>> 8) & 0xff;
    b[4 * i + 2] = (v >>> 16) & 0xff;
    b[4 * i + 3] = v >>> 24;
  }
  return b;
}

function readWordLE(b: Uint8Array, i: number): number {
  return ((b[i] ?? 0) | ((b[i + 1] ?? 0) << 8) | ((b[i + 2] ?? 0) << 16) | ((b[i + 3] ?? 0) << 24)) >>> 0;
}

/** The bytes of an invalidation array: each 4-word command as its 16 little-endian bytes (§2.1). */
export function invalidationEntries(cmds: readonly ArrayLike<number>[]): Uint8Array {
  const out = new Uint8Array(cmds.length * SMMUV3_INVALIDATE_ENTRY_BYTES);
  cmds.forEach((c, i) => {
    for (let w = 0; w < COMMAND_WORDS; w++) {
      const v = (c[w] ?? 0) >>> 0;
      const o = i * SMMUV3_INVALIDATE_ENTRY_BYTES + 4 * w;
      out[o] = v & 0xff;
      out[o + 1] = (v >>> 8) & 0xff;
      out[o + 2] = (v >>> 16) & 0xff;
      out[o + 3] = v >>> 24;
    }
  });
  return out;
}

const TYPE_NAME: Readonly<Record<number, ObjectInfo['type']>> = {
  [IOMMUFD_OBJ.DEVICE]: 'DEVICE',
  [IOMMUFD_OBJ.IOAS]: 'IOAS',
  [IOMMUFD_OBJ.HWPT_PAGING]: 'HWPT_PAGING',
  [IOMMUFD_OBJ.HWPT_NESTED]: 'HWPT_NESTED',
  [IOMMUFD_OBJ.VIOMMU]: 'VIOMMU',
  [IOMMUFD_OBJ.VDEVICE]: 'VDEVICE',
  [IOMMUFD_OBJ.VEVENTQ]: 'VEVENTQ',
  [IOMMUFD_OBJ.HW_QUEUE]: 'HW_QUEUE',
};

// ---------------------------------------------------------------------------------------------
// The context
// ---------------------------------------------------------------------------------------------

/** One open /dev/iommu. */
export class Iommufd {
  private readonly objects = new Map<number, Obj>();
  /** Ids of objects destroyed behind the user's back (a vDEVICE whose device went away). */
  private readonly tombstones = new Set<number>();
  private readonly fds = new Map<number, VeventqObj>();
  private readonly mmaps = new Map<number, { readonly viommu: ViommuObj; readonly length: number; readonly pa: number }>();
  private readonly mappings = new Map<number, ViommuObj>();
  private nextMapping = 1;
  readonly counting: 'linux' | 'contract';
  readonly commandCheck: 'kernel' | 'legality';

  constructor(opts: IommufdOptions = {}) {
    this.counting = opts.counting ?? 'linux';
    this.commandCheck = opts.commandCheck ?? 'kernel';
  }

  // -------------------------------------------------------------------------------------------
  // ids and lookups
  // -------------------------------------------------------------------------------------------

  /** The lowest free id ≥ 1; tombstones stay reserved (xa_alloc). */
  private allocId(): number {
    for (let id = FIRST_OBJECT_ID; id <= MAX_OBJECT_ID; id++) {
      if (!this.objects.has(id) && !this.tombstones.has(id)) return id;
    }
    throw new RangeError('iommufd: object ids exhausted');
  }

  private add<T extends Obj>(o: Omit<T, 'id'>): T {
    const obj = { ...o, id: this.allocId() } as T;
    this.objects.set(obj.id, obj);
    return obj;
  }

  /** iommufd_get_object with a type: ENOENT when missing or of another type. */
  private get<K extends Obj['type']>(id: number, type: K): Extract<Obj, { type: K }> | undefined {
    const o = this.objects.get(id);
    return o !== undefined && o.type === type ? (o as Extract<Obj, { type: K }>) : undefined;
  }

  /** Every live object id, ascending. */
  ids(): number[] {
    return [...this.objects.keys()].sort((a, b) => a - b);
  }

  /** What an object is and holds, or undefined. */
  describe(id: number): ObjectInfo | undefined {
    const o = this.objects.get(id);
    if (o === undefined) return undefined;
    const base = { id: o.id, users: o.users };
    switch (o.type) {
      case IOMMUFD_OBJ.DEVICE:
        return { type: 'DEVICE', ...base, streamId: o.streamId, attached: o.attached?.id, vdevice: o.vdev?.id };
      case IOMMUFD_OBJ.IOAS:
        return { type: 'IOAS', ...base, areas: o.areas.map((a) => ({ iova: a.iova, length: a.length, pa: a.pa, locks: a.locks })) };
      case IOMMUFD_OBJ.HWPT_PAGING:
        return { type: 'HWPT_PAGING', ...base, ioas: o.ioas.id, nestParent: o.nestParent, stage: o.stage, vmid: o.vmid };
      case IOMMUFD_OBJ.HWPT_NESTED:
        return { type: 'HWPT_NESTED', ...base, viommu: o.viommu.id, ste: [...o.vste.ste], config: o.vste.config, enableAts: o.vste.enableAts };
      case IOMMUFD_OBJ.VIOMMU:
        return { type: 'VIOMMU', ...base, vtype: o.vtype, hwpt: o.hwpt.id, vmid: o.vmid, vintf: o.cmdqv?.vintf };
      case IOMMUFD_OBJ.VDEVICE:
        return { type: 'VDEVICE', ...base, viommu: o.viommu.id, device: o.dev.id, virtId: o.virtId, streamId: o.dev.streamId, sidSlot: o.sidSlot };
      case IOMMUFD_OBJ.VEVENTQ:
        return { type: 'VEVENTQ', ...base, viommu: o.viommu.id, vtype: o.vtype, depth: o.depth, numEvents: o.numEvents, fd: o.fd };
      case IOMMUFD_OBJ.HW_QUEUE:
        return { type: 'HW_QUEUE', ...base, viommu: o.viommu.id, index: o.index, basePa: o.basePa, length: o.length };
    }
  }

  /** The type name of an object, or undefined. */
  typeOf(id: number): ObjectInfo['type'] | undefined {
    const o = this.objects.get(id);
    return o === undefined ? undefined : TYPE_NAME[o.type];
  }

  /** The converter context of a vIOMMU (VMID and vSID table), for paths that convert themselves. */
  vsmmu(viommuId: number): VsmmuContext | undefined {
    return this.get(viommuId, IOMMUFD_OBJ.VIOMMU)?.conv;
  }

  // -------------------------------------------------------------------------------------------
  // Devices (VFIO cdev bind, outside iommufd's ioctls)
  // -------------------------------------------------------------------------------------------

  /**
   * Bind a device behind `host` with one StreamID (iommufd_device_bind). EBUSY when the stream is
   * already bound (a VFIO device opens once). The binding holds a reference, so DESTROY of a device
   * id is EBUSY: unbind instead.
   */
  bindDevice(host: HostSmmu, streamId: number, o: BindOptions = {}): Outcome<{ devId: number }> {
    const dev = this.add<DeviceObj>({
      type: IOMMUFD_OBJ.DEVICE, users: 2, ctx: this, host, streamId: streamId >>> 0,
      canwbs: o.canwbs ?? true, ats: o.ats ?? false, attached: undefined, vdev: undefined, vmaster: undefined,
    });
    if (!host.claimStream(dev.streamId, dev)) {
      this.objects.delete(dev.id);
      return fail(EBUSY);
    }
    return { ok: true, devId: dev.id };
  }

  /**
   * Unbind (iommufd_device_unbind): detach, and destroy the device's vDEVICE, leaving its id a
   * tombstone (a later DESTROY of it is ENOENT, §5 vdevice_tombstone).
   */
  unbindDevice(devId: number): number {
    const dev = this.get(devId, IOMMUFD_OBJ.DEVICE);
    if (dev === undefined) return ENOENT;
    const vdev = dev.vdev;
    if (vdev !== undefined) {
      this.destroyVdevice(vdev);
      this.objects.delete(vdev.id);
      this.tombstones.add(vdev.id);
    }
    if (dev.attached !== undefined) this.detach(devId);
    dev.host.releaseStream(dev.streamId);
    this.objects.delete(dev.id);
    return 0;
  }

  /**
   * Attach a device to a HWPT (VFIO_DEVICE_ATTACH_IOMMUFD_PT with a HWPT id; replaces an earlier
   * attachment). ENOENT for an unknown device; EINVAL for an id that is not a HWPT or a HWPT of
   * another SMMU; ENOENT for a translating nested HWPT when the device has no vDEVICE on its vIOMMU
   * (abort and bypass vSTEs attach without one, §1.4). Installs the physical STE through the host.
   */
  attach(devId: number, hwptId: number): number {
    const dev = this.get(devId, IOMMUFD_OBJ.DEVICE);
    if (dev === undefined) return ENOENT;
    const h = this.objects.get(hwptId);
    if (h === undefined) return ENOENT;
    let ste: Uint32Array | undefined;
    let vmaster: VdeviceObj | undefined;
    if (h.type === IOMMUFD_OBJ.HWPT_PAGING) {
      if (h.host !== dev.host) return EINVAL;
      ste = h.domain?.ste?.(dev.ats);
    } else if (h.type === IOMMUFD_OBJ.HWPT_NESTED) {
      if (h.viommu.host !== dev.host) return EINVAL;
      const vd = dev.vdev !== undefined && dev.vdev.viommu === h.viommu ? dev.vdev : undefined;
      const cfg = h.vste.config;
      if (vd === undefined && cfg !== STE_CONFIG.ABORT && cfg !== STE_CONFIG.BYPASS) return ENOENT;
      vmaster = vd;
      const ats = dev.ats && (cfg !== STE_CONFIG.S1_TRANS || h.vste.enableAts);
      const s2 = h.viommu.hwpt.domain?.ste?.(ats);
      // Without a stage-2 STE from the domain only the abort case can be built.
      ste = s2 !== undefined ? composeNestedSte(h.vste, s2) : cfg === STE_CONFIG.ABORT ? abortSte() : undefined;
    } else {
      return EINVAL;
    }
    if (dev.attached !== undefined) dev.attached.users--;
    h.users++;
    dev.attached = h;
    dev.vmaster = vmaster;
    if (ste !== undefined) dev.host.installSte?.(dev.streamId, ste);
    return 0;
  }

  /** Detach a device: its stream gets an abort STE (the blocked domain). */
  detach(devId: number): number {
    const dev = this.get(devId, IOMMUFD_OBJ.DEVICE);
    if (dev === undefined) return ENOENT;
    if (dev.attached === undefined) return 0;
    dev.attached.users--;
    dev.attached = undefined;
    dev.vmaster = undefined;
    dev.host.installSte?.(dev.streamId, abortSte());
    return 0;
  }

  // -------------------------------------------------------------------------------------------
  // IOAS
  // -------------------------------------------------------------------------------------------

  /** IOMMU_IOAS_ALLOC: flags must be 0 (EOPNOTSUPP). */
  ioasAlloc(flags = 0): Outcome<{ ioasId: number }> {
    if (flags !== 0) return fail(EOPNOTSUPP);
    const ioas = this.add<IoasObj>({ type: IOMMUFD_OBJ.IOAS, users: 1, ctx: this, areas: [], hwpts: new Set() });
    return { ok: true, ioasId: ioas.id };
  }

  /**
   * IOMMU_IOAS_MAP. EOPNOTSUPP for unknown flags or __reserved; ENOENT for an unknown IOAS;
   * EINVAL for a zero or unaligned length, iova or user_va (the model aligns everything to
   * PAGE_SIZE); EOVERFLOW when iova + length − 1 overflows; EEXIST over an existing mapping.
   * Without FIXED_IOVA the lowest free page-aligned IOVA is chosen. Every HWPT_PAGING of the IOAS
   * maps the range.
   */
  ioasMap(a: IoasMapArgs): Outcome<{ iova: bigint }> {
    const known = IOMMU_IOAS_MAP.FIXED_IOVA | IOMMU_IOAS_MAP.WRITEABLE | IOMMU_IOAS_MAP.READABLE;
    if ((a.flags & ~known) !== 0 || (a.reserved ?? 0) !== 0) return fail(EOPNOTSUPP);
    const ioas = this.get(a.ioasId, IOMMUFD_OBJ.IOAS);
    if (ioas === undefined) return fail(ENOENT);
    const length = big(a.length);
    const uva = big(a.userVa);
    const page = BigInt(PAGE_SIZE);
    if (length === 0n || length % page !== 0n || uva % page !== 0n) return fail(EINVAL);
    let iova: bigint;
    if ((a.flags & IOMMU_IOAS_MAP.FIXED_IOVA) !== 0) {
      iova = big(a.iova ?? 0);
      if (iova % page !== 0n) return fail(EINVAL);
      if (iova + length - 1n > U64_MAX) return fail(EOVERFLOW);
      if (ioas.areas.some((x) => BigInt(x.iova) <= iova + length - 1n && iova <= BigInt(x.iova + x.length - 1))) return fail(EEXIST);
    } else {
      let cand = 0n;
      for (const x of ioas.areas) {
        if (cand + length <= BigInt(x.iova)) break;
        cand = BigInt(x.iova + x.length);
      }
      iova = cand;
    }
    if (iova + length > BigInt(Number.MAX_SAFE_INTEGER) || uva + length > BigInt(Number.MAX_SAFE_INTEGER)) return fail(EOVERFLOW);
    const area: Area = { iova: Number(iova), length: Number(length), pa: Number(uva), prot: a.flags & (IOMMU_IOAS_MAP.READABLE | IOMMU_IOAS_MAP.WRITEABLE), locks: 0 };
    const done: HwptPagingObj[] = [];
    for (const h of ioas.hwpts) {
      const rc = h.domain?.map(area.iova, area.pa, area.length, area.prot) ?? 0;
      if (rc !== 0) {
        for (const d of done) d.domain?.unmap(area.iova, area.length);
        return fail(rc);
      }
      done.push(h);
    }
    ioas.areas.push(area);
    ioas.areas.sort((x, y) => x.iova - y.iova);
    return { ok: true, iova };
  }

  /**
   * IOMMU_IOAS_UNMAP (iopt_unmap_iova_range): iova 0 with length U64_MAX unmaps everything.
   * Areas are removed one by one in IOVA order: an area pinned by a HW queue is EBUSY, an area
   * that reaches outside the range is ENOENT, and nothing mapped in the range is ENOENT. Returns the
   * bytes unmapped.
   */
  ioasUnmap(ioasId: number, iova: U64, length: U64): Outcome<{ unmapped: bigint }> {
    const ioas = this.get(ioasId, IOMMUFD_OBJ.IOAS);
    if (ioas === undefined) return fail(ENOENT);
    let start = big(iova);
    let last: bigint;
    const len = big(length);
    if (start === 0n && len === U64_MAX) {
      last = U64_MAX;
    } else {
      if (len === 0n) return fail(EINVAL);
      last = start + len - 1n;
      if (last > U64_MAX) return fail(EOVERFLOW);
    }
    let unmapped = 0n;
    for (;;) {
      const a = ioas.areas.find((x) => BigInt(x.iova) <= last && start <= BigInt(x.iova + x.length - 1));
      if (a === undefined) break;
      if (a.locks !== 0) return fail(EBUSY);
      if (BigInt(a.iova) < start || BigInt(a.iova + a.length - 1) > last) return fail(ENOENT);
      for (const h of ioas.hwpts) h.domain?.unmap(a.iova, a.length);
      ioas.areas.splice(ioas.areas.indexOf(a), 1);
      unmapped += BigInt(a.length);
      start = BigInt(a.iova + a.length);
      if (start > last) break;
    }
    if (unmapped === 0n) return fail(ENOENT);
    return { ok: true, unmapped };
  }

  // -------------------------------------------------------------------------------------------
  // HWPT_ALLOC (§1.4)
  // -------------------------------------------------------------------------------------------

  /**
   * IOMMU_HWPT_ALLOC, in the kernel's order: __reserved (EOPNOTSUPP); data_type/data_len pairing
   * (EINVAL); dev_id (ENOENT); pt_id not found (EINVAL). Then by pt_id's type:
   * - IOAS: a HWPT_PAGING. Unknown flags, DIRTY_TRACKING without dirty-bit HTTU, FAULT_ID_VALID
   *   with NEST_PARENT, any data, or a flag combination the SMMUv3 driver does not take
   *   (NEST_PARENT|PASID …) are EOPNOTSUPP; NEST_PARENT needs nesting (EOPNOTSUPP) and a VMID
   *   (ENOSPC). A nest parent is the VM's stage 2 and owns the VMID.
   * - HWPT_PAGING: EOPNOTSUPP (the SMMUv3 driver nests only through a vIOMMU).
   * - VIOMMU: a HWPT_NESTED from the guest's vSTE: device behind another SMMU (EINVAL); flags other
   *   than FAULT_ID_VALID (EOPNOTSUPP); no data (EOPNOTSUPP); data_type not ARM_SMMUV3 or data_len
   *   below 16 (EINVAL); a non-zero tail beyond 16 bytes (E2BIG); NULL data (EFAULT); bad vSTE (EIO).
   * - anything else: EINVAL.
   * FAULT_ID_VALID then needs a FAULT object, which the model does not implement: ENOENT.
   */
  hwptAlloc(a: HwptAllocArgs): Outcome<{ hwptId: number }> {
    const dataLen = a.dataLen ?? a.data?.length ?? 0;
    if ((a.reserved ?? 0) !== 0) return fail(EOPNOTSUPP);
    if ((a.dataType === IOMMU_HWPT_DATA.NONE) !== (dataLen === 0)) return fail(EINVAL);
    const dev = this.get(a.devId, IOMMUFD_OBJ.DEVICE);
    if (dev === undefined) return fail(ENOENT);
    const pt = this.objects.get(a.ptId);
    if (pt === undefined) return fail(EINVAL);
    const F = IOMMU_HWPT_ALLOC;
    let made: HwptPagingObj | HwptNestedObj;
    if (pt.type === IOMMUFD_OBJ.IOAS) {
      const r = this.hwptPagingAlloc(pt, dev, a.flags, dataLen !== 0);
      if (!r.ok) return r;
      made = r.hwpt;
    } else if (pt.type === IOMMUFD_OBJ.HWPT_PAGING) {
      return fail(EOPNOTSUPP);
    } else if (pt.type === IOMMUFD_OBJ.VIOMMU) {
      if (pt.host !== dev.host) return fail(EINVAL);
      if ((a.flags & ~(F.FAULT_ID_VALID | F.PASID)) !== 0) return fail(EOPNOTSUPP);
      if (dataLen === 0) return fail(EOPNOTSUPP);
      // arm_vsmmu_alloc_domain_nested: no flag survives the core's FAULT_ID_VALID strip.
      if ((a.flags & ~F.FAULT_ID_VALID) !== 0) return fail(EOPNOTSUPP);
      if (a.dataType !== IOMMU_HWPT_DATA.ARM_SMMUV3 || dataLen < HWPT_ARM_SMMUV3_BYTES) return fail(EINVAL);
      if (a.data === null || a.data === undefined) return fail(EFAULT);
      const c = copyStructFromUser(HWPT_ARM_SMMUV3_BYTES, a.data, 0, dataLen);
      if (!('data' in c)) return fail(c.errno);
      const words = Uint32Array.from({ length: HWPT_ARM_SMMUV3_BYTES / 4 }, (_, i) => readWordLE(c.data, 4 * i));
      const v = validateVste(words);
      if (!v.ok) return v;
      pt.users++;
      made = this.add<HwptNestedObj>({ type: IOMMUFD_OBJ.HWPT_NESTED, users: 1, ctx: this, viommu: pt, vste: { ste: v.ste, config: v.config, enableAts: v.enableAts } });
    } else {
      return fail(EINVAL);
    }
    if ((a.flags & F.FAULT_ID_VALID) !== 0) {
      this.destroyObject(made);
      return fail(ENOENT);
    }
    return { ok: true, hwptId: made.id };
  }

  private hwptPagingAlloc(ioas: IoasObj, dev: DeviceObj, flags: number, hasData: boolean): Outcome<{ hwpt: HwptPagingObj }> {
    const F = IOMMU_HWPT_ALLOC;
    const host = dev.host;
    if ((flags & ~(F.NEST_PARENT | F.DIRTY_TRACKING | F.FAULT_ID_VALID | F.PASID)) !== 0) return fail(EOPNOTSUPP);
    // IOMMU_CAP_DIRTY_TRACKING: hardware dirty-bit updates on a coherent SMMU.
    if ((flags & F.DIRTY_TRACKING) !== 0 && !(host.features.httu === 2 && host.features.coherent)) return fail(EOPNOTSUPP);
    if ((flags & F.FAULT_ID_VALID) !== 0 && (flags & F.NEST_PARENT) !== 0) return fail(EOPNOTSUPP);
    if (hasData) return fail(EOPNOTSUPP);
    const drv = flags & ~F.FAULT_ID_VALID;
    let stage: 1 | 2;
    switch (drv) {
      case 0:
        stage = host.features.s1 ? 1 : 2;
        break;
      case F.NEST_PARENT:
        if (!host.nesting) return fail(EOPNOTSUPP);
        stage = 2;
        break;
      case F.DIRTY_TRACKING:
      case F.DIRTY_TRACKING | F.PASID:
      case F.PASID:
        if (!host.features.s1) return fail(EOPNOTSUPP);
        stage = 1;
        break;
      default:
        return fail(EOPNOTSUPP);
    }
    let vmid: number | undefined;
    if (stage === 2) {
      vmid = host.vmids.alloc();
      if (vmid === undefined) return fail(ENOSPC);
    }
    const domain = host.pagingDomain?.({ stage, vmid });
    for (const area of ioas.areas) {
      const rc = domain?.map(area.iova, area.pa, area.length, area.prot) ?? 0;
      if (rc !== 0) {
        for (const x of ioas.areas) {
          if (x === area) break;
          domain?.unmap(x.iova, x.length);
        }
        domain?.free?.();
        if (vmid !== undefined) host.vmids.free(vmid);
        return fail(rc);
      }
    }
    ioas.users++;
    const hwpt = this.add<HwptPagingObj>({
      type: IOMMUFD_OBJ.HWPT_PAGING, users: 1, ctx: this, host, ioas, nestParent: (flags & F.NEST_PARENT) !== 0, stage, vmid, domain,
    });
    ioas.hwpts.add(hwpt);
    return { ok: true, hwpt };
  }

  // -------------------------------------------------------------------------------------------
  // VIOMMU_ALLOC (§1.4)
  // -------------------------------------------------------------------------------------------

  /**
   * IOMMU_VIOMMU_ALLOC: flags or type DEFAULT (EOPNOTSUPP); dev_id (ENOENT); the SMMU cannot host a
   * vIOMMU of this type — no nesting, CMDQ_FORCE_SYNC, neither a CANWBS device nor S2FWB, or
   * TEGRA241_CMDQV without a CMDQV (EOPNOTSUPP); hwpt_id not a HWPT_PAGING (ENOENT); not a nest
   * parent (EINVAL); parent of another SMMU (EINVAL). The vIOMMU copies the parent's VMID.
   * TEGRA241_CMDQV also needs its 16-byte data (EINVAL without; E2BIG dirty tail; EFAULT), takes a
   * free VINTF (ENOSPC), enables it for the guest and writes back the mmap offset and length.
   */
  viommuAlloc(a: ViommuAllocArgs): Outcome<{ viommuId: number; vmid: number; vintf: number | undefined; mmapOffset: number | undefined; mmapLength: number | undefined }> {
    const T = IOMMU_VIOMMU_TYPE;
    if ((a.flags ?? 0) !== 0 || a.type === T.DEFAULT) return fail(EOPNOTSUPP);
    const dev = this.get(a.devId, IOMMUFD_OBJ.DEVICE);
    if (dev === undefined) return fail(ENOENT);
    const host = dev.host;
    const supported =
      host.nesting && !host.cmdqForceSync && (dev.canwbs || host.s2fwb) &&
      (a.type === T.ARM_SMMUV3 || (a.type === T.TEGRA241_CMDQV && host.cmdqv !== undefined));
    if (!supported) return fail(EOPNOTSUPP);
    const hwpt = this.get(a.hwptId, IOMMUFD_OBJ.HWPT_PAGING);
    if (hwpt === undefined) return fail(ENOENT);
    if (!hwpt.nestParent) return fail(EINVAL);
    if (hwpt.host !== host || hwpt.vmid === undefined) return fail(EINVAL);
    const vmid = hwpt.vmid;
    let vintf: number | undefined;
    let mmapOffset: number | undefined;
    if (a.type === T.TEGRA241_CMDQV) {
      // tegra241_cmdqv_init_vintf_user: the data is required and copied like any driver struct.
      const S = IOMMU_VIOMMU_TEGRA241_CMDQV_S;
      const dataLen = a.dataLen ?? a.data?.length ?? 0;
      if (dataLen === 0 || dataLen < S.minSize) return fail(EINVAL);
      if (a.data === null || a.data === undefined) return fail(EFAULT);
      const cp = copyStructFromUser(S.size, a.data, 0, dataLen);
      if (!('data' in cp)) return fail(cp.errno);
      vintf = host.freeVintfIndex();
      if (vintf === undefined) return fail(ENOSPC);
      mmapOffset = this.allocMmapOffset(VINTF_MMAP_LENGTH);
      const out = new Uint8Array(S.size);
      writeField(S, out, 'out_vintf_mmap_offset', mmapOffset);
      writeField(S, out, 'out_vintf_mmap_length', VINTF_MMAP_LENGTH);
      a.data.set(out.subarray(0, Math.min(S.size, dataLen, a.data.length)));
    }
    const c = host.cmdqv;
    const cmdqv: CmdqvState | undefined =
      vintf === undefined || mmapOffset === undefined || c === undefined
        ? undefined
        : {
            vintf,
            lvcmdqs: new Array<HwQueueObj | undefined>(host.lvcmdqsPerVintf).fill(undefined),
            sidSlots: new Array<VdeviceObj | undefined>(c.numSidsPerVintf).fill(undefined),
            mmapOffset,
            mmapLength: VINTF_MMAP_LENGTH,
            page0: (c.base ?? 0) + VINTF_PAGE0_BASE + VINTF_PAGE0_STRIDE * vintf,
          };
    hwpt.users++;
    const obj: ViommuObj = this.add<ViommuObj>({
      type: IOMMUFD_OBJ.VIOMMU, users: 1, ctx: this, vtype: a.type, host, hwpt, vmid,
      vdevs: new Map(), vsids: new Map(), veventqs: new Map(), cmdqv,
      conv: { vmid, vsidToPsid: (vsid: number) => obj.vsids.get(vsid) },
    });
    if (cmdqv !== undefined) {
      host.claimVintf(cmdqv.vintf, obj);
      this.mmaps.set(cmdqv.mmapOffset, { viommu: obj, length: cmdqv.mmapLength, pa: cmdqv.page0 });
      c?.vintfEnable?.(cmdqv.vintf, vmid);
    }
    return { ok: true, viommuId: obj.id, vmid, vintf, mmapOffset, mmapLength: cmdqv?.mmapLength };
  }

  /** The lowest free mmap offset ≥ PAGE_SIZE with room for `length` (mtree_alloc_range). */
  private allocMmapOffset(length: number): number {
    const taken = [...this.mmaps.entries()].map(([o, m]) => [o, o + m.length] as const).sort((x, y) => x[0] - y[0]);
    let cand = PAGE_SIZE;
    for (const [s, e] of taken) {
      if (cand + length <= s) break;
      cand = Math.max(cand, e);
    }
    return cand;
  }

  /**
   * mmap of a vIOMMU region on the iommufd (iommufd_fops_mmap): PROT_EXEC is EPERM; a private
   * mapping is EINVAL; an offset and length that are not exactly a region's are ENXIO. The mapping
   * holds the vIOMMU (DESTROY is EBUSY until munmap).
   */
  mmap(offset: number, length: number, o: { shared?: boolean; exec?: boolean } = {}): Outcome<{ mapping: number; hostPa: number }> {
    if (o.exec === true) return fail(EPERM);
    if (o.shared === false) return fail(EINVAL);
    const m = this.mmaps.get(offset);
    if (m === undefined || m.length !== length) return fail(ENXIO);
    m.viommu.users++;
    const mapping = this.nextMapping++;
    this.mappings.set(mapping, m.viommu);
    return { ok: true, mapping, hostPa: m.pa };
  }

  munmap(mapping: number): number {
    const v = this.mappings.get(mapping);
    if (v === undefined) return EINVAL;
    v.users--;
    this.mappings.delete(mapping);
    return 0;
  }

  // -------------------------------------------------------------------------------------------
  // VDEVICE_ALLOC (§1.4)
  // -------------------------------------------------------------------------------------------

  /**
   * IOMMU_VDEVICE_ALLOC: virt_id beyond ULONG_MAX (EINVAL); viommu_id, dev_id (ENOENT); device
   * behind another SMMU (EINVAL); the device already has a vDEVICE (EEXIST); virt_id already used
   * in this vIOMMU (EEXIST). TEGRA241_CMDQV: virt_id beyond UINT_MAX (EINVAL), no free
   * SID_MATCH/SID_REPLACE pair (ENOSPC). The vDEVICE holds its vIOMMU.
   */
  vdeviceAlloc(a: VdeviceAllocArgs): Outcome<{ vdeviceId: number }> {
    const virtId = big(a.virtId);
    if (virtId < 0n || virtId > U64_MAX) return fail(EINVAL);
    const viommu = this.get(a.viommuId, IOMMUFD_OBJ.VIOMMU);
    if (viommu === undefined) return fail(ENOENT);
    const dev = this.get(a.devId, IOMMUFD_OBJ.DEVICE);
    if (dev === undefined) return fail(ENOENT);
    if (viommu.host !== dev.host) return fail(EINVAL);
    if (dev.vdev !== undefined) return fail(EEXIST);
    if (viommu.vdevs.has(virtId)) return fail(EEXIST);
    let slot: number | undefined;
    const cq = viommu.cmdqv;
    if (cq !== undefined) {
      if (virtId > BigInt(U32_MAX)) return fail(EINVAL);
      slot = cq.sidSlots.findIndex((s) => s === undefined);
      if (slot < 0) return fail(ENOSPC);
    }
    const vdev = this.add<VdeviceObj>({ type: IOMMUFD_OBJ.VDEVICE, users: 1, ctx: this, viommu, dev, virtId, vsid32: Number(BigInt.asUintN(32, virtId)), sidSlot: slot });
    viommu.users++;
    viommu.vdevs.set(virtId, vdev);
    if (virtId <= BigInt(U32_MAX)) viommu.vsids.set(Number(virtId), dev.streamId);
    dev.vdev = vdev;
    if (cq !== undefined && slot !== undefined) {
      cq.sidSlots[slot] = vdev;
      viommu.host.cmdqv?.sidMap?.(cq.vintf, slot, Number(virtId), dev.streamId);
    }
    return { ok: true, vdeviceId: vdev.id };
  }

  // -------------------------------------------------------------------------------------------
  // VEVENTQ (§1.4)
  // -------------------------------------------------------------------------------------------

  /**
   * IOMMU_VEVENTQ_ALLOC: flags, __reserved or type DEFAULT (EOPNOTSUPP); depth 0 (EINVAL);
   * viommu_id (ENOENT); a queue of that type exists (EEXIST). Returns the id and the fd; the open
   * fd holds the queue (DESTROY is EBUSY until closeFd).
   */
  veventqAlloc(a: VeventqAllocArgs): Outcome<{ veventqId: number; fd: number }> {
    if ((a.flags ?? 0) !== 0 || (a.reserved ?? 0) !== 0 || a.type === IOMMU_VEVENTQ_TYPE.DEFAULT) return fail(EOPNOTSUPP);
    if (a.depth === 0) return fail(EINVAL);
    const viommu = this.get(a.viommuId, IOMMUFD_OBJ.VIOMMU);
    if (viommu === undefined) return fail(ENOENT);
    if (viommu.veventqs.has(a.type)) return fail(EEXIST);
    let fd = FIRST_FD;
    while (this.fds.has(fd)) fd++;
    const q = this.add<VeventqObj>({
      type: IOMMUFD_OBJ.VEVENTQ, users: 2, ctx: this, viommu, vtype: a.type, depth: a.depth >>> 0, numEvents: 0, sequence: 0,
      list: [], lostHeader: { flags: IOMMU_VEVENTQ_FLAG_LOST_EVENTS, sequence: 0, data: new Uint8Array(0), lost: true }, fd,
    });
    viommu.users++;
    viommu.veventqs.set(a.type, q);
    this.fds.set(fd, q);
    return { ok: true, veventqId: q.id, fd };
  }

  /** close() of a vEVENTQ fd: drops the file's reference. EINVAL for an unknown fd. */
  closeFd(fd: number): number {
    const q = this.fds.get(fd);
    if (q === undefined) return EINVAL;
    this.fds.delete(fd);
    q.fd = undefined;
    q.users--;
    return 0;
  }

  /**
   * iommufd_viommu_report_event: queue one event of `type` on the vIOMMU's vEVENTQ. EOPNOTSUPP when
   * no queue of that type exists. When the queue already holds `depth` events the event is lost:
   * the queue's lost-events header (header only, flags LOST_EVENTS) moves to the tail with a new
   * sequence number. A new event removes a lost-events header that sits at the tail (the gap in
   * sequence numbers then tells the loss).
   */
  reportEvent(viommuId: number, type: number, data: Uint8Array): number {
    const viommu = this.get(viommuId, IOMMUFD_OBJ.VIOMMU);
    if (viommu === undefined) return ENOENT;
    const q = viommu.veventqs.get(type);
    if (q === undefined) return EOPNOTSUPP;
    let ev: Vevent;
    if (q.numEvents === q.depth) {
      ev = q.lostHeader;
    } else {
      ev = { flags: 0, sequence: 0, data: Uint8Array.from(data), lost: false };
      q.numEvents++;
    }
    if (q.list[q.list.length - 1] === q.lostHeader) q.list.pop();
    q.list.push(ev);
    ev.sequence = q.sequence;
    q.sequence = (q.sequence + 1) & VEVENT_SEQUENCE_MASK;
    return 0;
  }

  /**
   * read() of a vEVENTQ fd: whole records (8-byte header, then the payload), as many as fit in
   * `count` bytes; a record never splits. A non-zero file offset is ESPIPE; an unknown fd EINVAL.
   */
  veventqRead(fd: number, count: number, offset = 0): { errno: number; data: Uint8Array } {
    const q = this.fds.get(fd);
    if (q === undefined) return { errno: EINVAL, data: new Uint8Array(0) };
    if (offset !== 0) return { errno: ESPIPE, data: new Uint8Array(0) };
    const parts: Uint8Array[] = [];
    let done = 0;
    for (;;) {
      const head = q.list[0];
      if (head === undefined) break;
      q.list.shift();
      const cur: Vevent = head === q.lostHeader ? { ...head } : head;
      const need = VEVENT_HEADER_BYTES + (cur.lost ? 0 : cur.data.length);
      if (done >= count || VEVENT_HEADER_BYTES > count - done || need > count - done) {
        // iommufd_veventq_deliver_restore: a lost-events copy goes back only into an empty list.
        if (cur.lost) {
          if (q.list.length === 0) q.list.unshift(q.lostHeader);
        } else {
          q.list.unshift(cur);
        }
        break;
      }
      const rec = new Uint8Array(need);
      rec[0] = cur.flags & 0xff;
      rec[1] = (cur.flags >>> 8) & 0xff;
      rec[2] = (cur.flags >>> 16) & 0xff;
      rec[3] = (cur.flags >>> 24) & 0xff;
      rec[4] = cur.sequence & 0xff;
      rec[5] = (cur.sequence >>> 8) & 0xff;
      rec[6] = (cur.sequence >>> 16) & 0xff;
      rec[7] = (cur.sequence >>> 24) & 0xff;
      if (!cur.lost) {
        rec.set(cur.data, VEVENT_HEADER_BYTES);
        q.numEvents--;
      }
      parts.push(rec);
      done += need;
    }
    const out = new Uint8Array(done);
    let o = 0;
    for (const p of parts) {
      out.set(p, o);
      o += p.length;
    }
    return { errno: 0, data: out };
  }

  // -------------------------------------------------------------------------------------------
  // HW_QUEUE_ALLOC (§1.4, §4.6)
  // -------------------------------------------------------------------------------------------

  /**
   * IOMMU_HW_QUEUE_ALLOC, in the kernel's order: flags or type DEFAULT (EOPNOTSUPP); length 0
   * (EINVAL); iova + length − 1 overflows (EOVERFLOW); viommu_id (ENOENT); the vIOMMU has no HW
   * queues of this type — an ARM_SMMUV3 vIOMMU has none (EOPNOTSUPP). Then the core pins the pages
   * through the parent's IOAS: a hole is ENOENT, host pages that are not contiguous EFAULT. Then
   * the Tegra241 driver: index ≥ LVCMDQs per VINTF (EINVAL); index taken (EEXIST); index − 1 not
   * allocated (EIO, ascending order); length not a power of two in [32, 2^(CMDQS+4)] (EINVAL);
   * host PA outside [47:5] or not aligned to the length (EINVAL). A queue holds its predecessor, so
   * destruction runs in descending index order (EBUSY otherwise).
   */
  hwQueueAlloc(a: HwQueueAllocArgs): Outcome<{ hwQueueId: number; basePa: number }> {
    if ((a.flags ?? 0) !== 0 || a.type === IOMMU_HW_QUEUE_TYPE.DEFAULT) return fail(EOPNOTSUPP);
    const length = big(a.length);
    const iova = big(a.iova);
    if (length === 0n) return fail(EINVAL);
    if (iova + length - 1n > U64_MAX) return fail(EOVERFLOW);
    const viommu = this.get(a.viommuId, IOMMUFD_OBJ.VIOMMU);
    if (viommu === undefined) return fail(ENOENT);
    const cq = viommu.cmdqv;
    if (cq === undefined || a.type !== IOMMU_HW_QUEUE_TYPE.TEGRA241_CMDQV) return fail(EOPNOTSUPP);
    const pin = this.pin(viommu.hwpt.ioas, iova, length);
    if (!pin.ok) return pin;
    const unpin = (): void => {
      for (const x of pin.areas) x.locks--;
    };
    const host = viommu.host;
    if (a.index < 0 || a.index >= host.lvcmdqsPerVintf) return unpin(), fail(EINVAL);
    if (cq.lvcmdqs[a.index] !== undefined) return unpin(), fail(EEXIST);
    const prev = a.index > 0 ? cq.lvcmdqs[a.index - 1] : undefined;
    if (a.index > 0 && prev === undefined) return unpin(), fail(EIO);
    const maxBytes = 1n << BigInt(host.features.cmdqs + CMDQ_ENT_SZ_SHIFT);
    if (!isPow2(length) || length < BigInt(HW_QUEUE_MIN_BYTES) || length > maxBytes) return unpin(), fail(EINVAL);
    const pa = BigInt(pin.basePa);
    const addrMask = ((1n << BigInt(VCMDQ_ADDR_HI + 1)) - 1n) & ~((1n << BigInt(VCMDQ_ADDR_LO)) - 1n);
    if ((pa & ~addrMask) !== 0n || (pa & (length - 1n)) !== 0n) return unpin(), fail(EINVAL);
    if (prev !== undefined) prev.users++;
    viommu.users++;
    viommu.hwpt.ioas.users++;
    const q = this.add<HwQueueObj>({
      type: IOMMUFD_OBJ.HW_QUEUE, users: 1, ctx: this, viommu, qtype: a.type, index: a.index, iova, length,
      basePa: pin.basePa, pinned: pin.areas, prev,
    });
    cq.lvcmdqs[a.index] = q;
    const log2size = Math.log2(Number(length)) - CMDQ_ENT_SZ_SHIFT;
    host.cmdqv?.lvcmdqInit?.(cq.vintf, a.index, pin.basePa, log2size);
    return { ok: true, hwQueueId: q.id, basePa: pin.basePa };
  }

  /**
   * Pin [iova, iova+length) through an IOAS (iommufd_hw_queue_alloc_phys): page-aligned range,
   * every page mapped (ENOENT), host pages contiguous (EFAULT). Locks every area it touches.
   */
  private pin(ioas: IoasObj, iova: bigint, length: bigint): Outcome<{ basePa: number; areas: Area[] }> {
    const page = BigInt(PAGE_SIZE);
    const aligned = iova - (iova % page);
    const offset = iova - aligned;
    const span = offset + length + page - 1n;
    if (span > U64_MAX) return fail(ERANGE);
    const end = aligned + (span / page) * page; // exclusive
    const areas: Area[] = [];
    let cur = aligned;
    let expectPa: bigint | undefined;
    let basePa: bigint | undefined;
    let contiguous = true;
    while (cur < end) {
      const a = ioas.areas.find((x) => BigInt(x.iova) <= cur && cur < BigInt(x.iova + x.length));
      if (a === undefined) return fail(ENOENT);
      const paHere = BigInt(a.pa) + (cur - BigInt(a.iova));
      if (basePa === undefined) basePa = paHere + offset;
      if (expectPa !== undefined && paHere !== expectPa) contiguous = false;
      const stop = BigInt(a.iova + a.length) < end ? BigInt(a.iova + a.length) : end;
      expectPa = paHere + (stop - cur);
      areas.push(a);
      cur = stop;
    }
    if (!contiguous) return fail(EFAULT);
    for (const a of areas) a.locks++;
    return { ok: true, basePa: Number(basePa ?? 0n), areas };
  }

  // -------------------------------------------------------------------------------------------
  // DESTROY
  // -------------------------------------------------------------------------------------------

  /**
   * IOMMU_DESTROY: ENOENT for an unknown id or a tombstone; EBUSY while anything holds the object
   * (children, attached devices, dependent queues, open fds, mmaps, the VFIO binding of a device).
   */
  destroy(id: number): number {
    const o = this.objects.get(id);
    if (o === undefined) return ENOENT;
    if (o.users !== 1) return EBUSY;
    this.destroyObject(o);
    return 0;
  }

  private destroyObject(o: Obj): void {
    switch (o.type) {
      case IOMMUFD_OBJ.DEVICE:
        break;
      case IOMMUFD_OBJ.IOAS:
        o.areas.length = 0;
        break;
      case IOMMUFD_OBJ.HWPT_PAGING:
        o.ioas.hwpts.delete(o);
        for (const a of o.ioas.areas) o.domain?.unmap(a.iova, a.length);
        o.domain?.free?.();
        if (o.vmid !== undefined) o.host.vmids.free(o.vmid);
        o.ioas.users--;
        break;
      case IOMMUFD_OBJ.HWPT_NESTED:
        o.viommu.users--;
        break;
      case IOMMUFD_OBJ.VIOMMU:
        if (o.cmdqv !== undefined) {
          this.mmaps.delete(o.cmdqv.mmapOffset);
          o.host.cmdqv?.vintfDisable?.(o.cmdqv.vintf);
          o.host.freeVintf(o.cmdqv.vintf);
        }
        o.hwpt.users--;
        break;
      case IOMMUFD_OBJ.VDEVICE:
        this.destroyVdevice(o);
        break;
      case IOMMUFD_OBJ.VEVENTQ:
        o.viommu.veventqs.delete(o.vtype);
        o.viommu.users--;
        break;
      case IOMMUFD_OBJ.HW_QUEUE: {
        const cq = o.viommu.cmdqv;
        if (cq !== undefined) {
          o.viommu.host.cmdqv?.lvcmdqDeinit?.(cq.vintf, o.index);
          cq.lvcmdqs[o.index] = undefined;
        }
        if (o.prev !== undefined) o.prev.users--;
        for (const a of o.pinned) a.locks--;
        o.viommu.hwpt.ioas.users--;
        o.viommu.users--;
        break;
      }
    }
    this.objects.delete(o.id);
  }

  private destroyVdevice(v: VdeviceObj): void {
    const vi = v.viommu;
    const cq = vi.cmdqv;
    if (cq !== undefined && v.sidSlot !== undefined) {
      vi.host.cmdqv?.sidUnmap?.(cq.vintf, v.sidSlot);
      cq.sidSlots[v.sidSlot] = undefined;
    }
    vi.vdevs.delete(v.virtId);
    if (v.virtId <= BigInt(U32_MAX)) vi.vsids.delete(Number(v.virtId));
    vi.users--;
    v.dev.vdev = undefined;
    if (v.dev.vmaster === v) v.dev.vmaster = undefined;
  }

  /**
   * close() of the iommufd: every object goes, whatever its references (viommu_auto_destroy):
   * devices are unbound, VMIDs, VINTFs and streams returned to the host.
   */
  close(): void {
    for (const fd of [...this.fds.keys()]) this.closeFd(fd);
    for (const m of [...this.mappings.keys()]) this.munmap(m);
    const order: ObjType[] = [
      IOMMUFD_OBJ.HW_QUEUE, IOMMUFD_OBJ.VEVENTQ, IOMMUFD_OBJ.VDEVICE, IOMMUFD_OBJ.DEVICE, IOMMUFD_OBJ.HWPT_NESTED,
      IOMMUFD_OBJ.VIOMMU, IOMMUFD_OBJ.HWPT_PAGING, IOMMUFD_OBJ.IOAS,
    ];
    for (const t of order) {
      const list = [...this.objects.values()].filter((o) => o.type === t).sort((x, y) => y.id - x.id);
      for (const o of list) {
        if (!this.objects.has(o.id)) continue;
        if (o.type === IOMMUFD_OBJ.DEVICE) this.unbindDevice(o.id);
        else this.destroyObject(o);
      }
    }
    this.tombstones.clear();
  }

  // -------------------------------------------------------------------------------------------
  // HWPT_INVALIDATE (§2, §3)
  // -------------------------------------------------------------------------------------------

  /** HWPT_INVALIDATE on a vIOMMU id with __reserved = 0: the form the VMM paths use. */
  invalidate(viommuId: number, a: InvalidateArgs): InvalidateResult {
    return this.hwptInvalidate({ ...a, hwptId: viommuId });
  }

  /**
   * IOMMU_HWPT_INVALIDATE (§2.2), then the SMMUv3 vIOMMU's cache_invalidate (§2.3, §3.2, §3.3):
   * 1. __reserved ≠ 0: EOPNOTSUPP. 2. entries announced but no pointer or entry_len 0: EINVAL.
   * 3. hwpt_id unknown: ENOENT. 4. a HWPT_NESTED: EOPNOTSUPP (the SMMUv3 nested domain has no
   * cache_invalidate_user); neither nested nor vIOMMU: EINVAL. Then the driver: the array copy
   * (ENOMEM beyond KMALLOC_MAX_SIZE; data_type not ARM_SMMUV3 or entry_num 0: EINVAL; a shorter
   * entry is zero-extended, a longer one must have a zero tail (E2BIG); unreadable memory EFAULT),
   * then conversion entry by entry (EIO at the first refused entry) and submission in chunks of
   * VIOMMU_CHUNK commands, each followed by the queue's CMD_SYNC. entry_num is returned in every
   * case; see IommufdOptions.counting for its value after a failure.
   */
  hwptInvalidate(a: HwptInvalidateArgs): InvalidateResult {
    if ((a.reserved ?? 0) !== 0) return { errno: EOPNOTSUPP, entryNum: 0 };
    if (a.entryNum !== 0 && (a.entries === null || a.entryLen === 0)) return { errno: EINVAL, entryNum: 0 };
    const o = this.objects.get(a.hwptId);
    if (o === undefined) return { errno: ENOENT, entryNum: 0 };
    if (o.type === IOMMUFD_OBJ.HWPT_NESTED) return { errno: EOPNOTSUPP, entryNum: 0 };
    if (o.type !== IOMMUFD_OBJ.VIOMMU) return { errno: EINVAL, entryNum: 0 };
    return this.vsmmuCacheInvalidate(o, a);
  }

  private vsmmuCacheInvalidate(v: ViommuObj, a: InvalidateArgs): InvalidateResult {
    const n = a.entryNum >>> 0;
    const E = SMMUV3_INVALIDATE_ENTRY_BYTES;
    if (n * E > KMALLOC_MAX_SIZE) return { errno: ENOMEM, entryNum: 0 };
    // iommu_copy_struct_from_full_user_array.
    if (a.dataType !== IOMMU_HWPT_INVALIDATE_DATA.ARM_SMMUV3) return { errno: EINVAL, entryNum: 0 };
    if (n === 0) return { errno: EINVAL, entryNum: 0 };
    const user = a.entries ?? new Uint8Array(0);
    if (a.entryLen === E && user.length < n * E) return { errno: EFAULT, entryNum: 0 };
    const cmds = new Uint32Array(n * COMMAND_WORDS);
    for (let i = 0; i < n; i++) {
      const c = copyStructFromUser(E, user, i * a.entryLen, a.entryLen);
      if (!('data' in c)) return { errno: c.errno, entryNum: 0 };
      for (let w = 0; w < COMMAND_WORDS; w++) cmds[i * COMMAND_WORDS + w] = readWordLE(c.data, 4 * w);
    }
    const strict = this.commandCheck === 'legality';
    const contract = this.counting === 'contract';
    const queue = v.host.queue;
    const submit = (from: number, to: number): SubmitResult => {
      const list: Uint32Array[] = [];
      for (let i = from; i < to; i++) list.push(cmds.subarray(i * COMMAND_WORDS, (i + 1) * COMMAND_WORDS));
      return queue.submit(list, true);
    };
    let cur = 0;
    let last = 0;
    while (cur !== n) {
      let rc = convertGuestCommand(cmds, cur * COMMAND_WORDS, v.conv);
      if (rc === 0 && strict) rc = checkConverted(cmds, cur * COMMAND_WORDS, v.host.features);
      if (rc !== 0) {
        if (contract && cur > last) {
          const r = submit(last, cur);
          if (!r.ok) return { errno: r.errno, entryNum: last + Math.min(r.failedIndex, cur - last) };
        }
        return { errno: rc, entryNum: cur };
      }
      cur++;
      if (cur !== n && cur - last !== VIOMMU_CHUNK) continue;
      const r = submit(last, cur);
      if (!r.ok) {
        // Linux steps back one entry: every entry of the failed chunk but its last counts (§3.3).
        return { errno: r.errno, entryNum: contract ? last + Math.min(r.failedIndex, cur - last) : cur - 1 };
      }
      last = cur;
    }
    return { errno: 0, entryNum: n };
  }

  // -------------------------------------------------------------------------------------------
  // The byte-level ioctl entry (§1.3)
  // -------------------------------------------------------------------------------------------

  /**
   * ioctl(iommufd, request, arg) with the argument structure as bytes: the generic rules of §1.3
   * (EFAULT without a readable size, ENOTTY for another request, EINVAL below the minimum size,
   * E2BIG for a non-zero tail beyond the known structure), then the call; outputs are written back
   * into `arg` (min(user size, structure size) bytes), for HWPT_INVALIDATE even on error. Pointers
   * (data_uptr) resolve through `mem`. Returns the errno (0 on success). Requests the model does not
   * implement (IOAS_COPY, GET_HW_INFO, dirty tracking, FAULT_QUEUE_ALLOC, …) are ENOTTY.
   */
  ioctl(request: number, arg: Uint8Array, mem?: UserMemory): number {
    const nr = request & 0xff;
    const s = IOCTL_STRUCT.get(nr);
    if (s === undefined || request >>> 0 !== (((IOMMUFD_TYPE << 8) | nr) >>> 0)) return ENOTTY;
    const c = copyIoctlArg(s, arg);
    if (!('data' in c)) return c.errno;
    const respond = (data: Uint8Array): void => arg.set(data.subarray(0, Math.min(c.usize, s.size, arg.length)));
    const view = (uptr: bigint): Uint8Array | null => (uptr === 0n ? null : mem?.view(uptr) ?? new Uint8Array(0));
    const d = c.data;
    switch (nr) {
      case IOMMUFD_CMD.DESTROY:
        return this.destroy(decodeStruct(IOMMU_DESTROY_S, d).id);
      case IOMMUFD_CMD.IOAS_ALLOC: {
        const r = this.ioasAlloc(decodeStruct(IOMMU_IOAS_ALLOC_S, d).flags);
        if (!r.ok) return r.errno;
        writeField(IOMMU_IOAS_ALLOC_S, d, 'out_ioas_id', r.ioasId);
        respond(d);
        return 0;
      }
      case IOMMUFD_CMD.IOAS_MAP: {
        const x = decodeStruct(IOMMU_IOAS_MAP_S, d);
        const r = this.ioasMap({ ioasId: x.ioas_id, flags: x.flags, userVa: x.user_va, length: x.length, iova: x.iova, reserved: x.__reserved });
        if (!r.ok) return r.errno;
        writeField(IOMMU_IOAS_MAP_S, d, 'iova', r.iova);
        respond(d);
        return 0;
      }
      case IOMMUFD_CMD.IOAS_UNMAP: {
        const x = decodeStruct(IOMMU_IOAS_UNMAP_S, d);
        const r = this.ioasUnmap(x.ioas_id, x.iova, x.length);
        if (!r.ok) return r.errno;
        writeField(IOMMU_IOAS_UNMAP_S, d, 'length', r.unmapped);
        respond(d);
        return 0;
      }
      case IOMMUFD_CMD.HWPT_ALLOC: {
        const x = decodeStruct(IOMMU_HWPT_ALLOC_S, d);
        const r = this.hwptAlloc({
          flags: x.flags, devId: x.dev_id, ptId: x.pt_id, dataType: x.data_type, dataLen: x.data_len,
          data: view(x.data_uptr), faultId: x.fault_id, reserved: x.__reserved,
        });
        if (!r.ok) return r.errno;
        writeField(IOMMU_HWPT_ALLOC_S, d, 'out_hwpt_id', r.hwptId);
        respond(d);
        return 0;
      }
      case IOMMUFD_CMD.HWPT_INVALIDATE: {
        const x = decodeStruct(IOMMU_HWPT_INVALIDATE_S, d);
        const r = this.hwptInvalidate({
          hwptId: x.hwpt_id, dataType: x.data_type, entryLen: x.entry_len, entryNum: x.entry_num,
          entries: view(x.data_uptr), reserved: x.__reserved,
        });
        writeField(IOMMU_HWPT_INVALIDATE_S, d, 'entry_num', r.entryNum);
        respond(d);
        return r.errno;
      }
      case IOMMUFD_CMD.VIOMMU_ALLOC: {
        const x = decodeStruct(IOMMU_VIOMMU_ALLOC_S, d);
        const r = this.viommuAlloc({ flags: x.flags, type: x.type, devId: x.dev_id, hwptId: x.hwpt_id, dataLen: x.data_len, data: view(x.data_uptr) });
        if (!r.ok) return r.errno;
        writeField(IOMMU_VIOMMU_ALLOC_S, d, 'out_viommu_id', r.viommuId);
        respond(d);
        return 0;
      }
      case IOMMUFD_CMD.VDEVICE_ALLOC: {
        const x = decodeStruct(IOMMU_VDEVICE_ALLOC_S, d);
        const r = this.vdeviceAlloc({ viommuId: x.viommu_id, devId: x.dev_id, virtId: x.virt_id });
        if (!r.ok) return r.errno;
        writeField(IOMMU_VDEVICE_ALLOC_S, d, 'out_vdevice_id', r.vdeviceId);
        respond(d);
        return 0;
      }
      case IOMMUFD_CMD.VEVENTQ_ALLOC: {
        const x = decodeStruct(IOMMU_VEVENTQ_ALLOC_S, d);
        const r = this.veventqAlloc({ flags: x.flags, viommuId: x.viommu_id, type: x.type, depth: x.veventq_depth, reserved: x.__reserved });
        if (!r.ok) return r.errno;
        writeField(IOMMU_VEVENTQ_ALLOC_S, d, 'out_veventq_id', r.veventqId);
        writeField(IOMMU_VEVENTQ_ALLOC_S, d, 'out_veventq_fd', r.fd);
        respond(d);
        return 0;
      }
      case IOMMUFD_CMD.HW_QUEUE_ALLOC: {
        const x = decodeStruct(IOMMU_HW_QUEUE_ALLOC_S, d);
        const r = this.hwQueueAlloc({ flags: x.flags, viommuId: x.viommu_id, type: x.type, index: x.index, iova: x.nesting_parent_iova, length: x.length });
        if (!r.ok) return r.errno;
        writeField(IOMMU_HW_QUEUE_ALLOC_S, d, 'out_hw_queue_id', r.hwQueueId);
        respond(d);
        return 0;
      }
      default:
        return ENOTTY;
    }
  }
}

/** The argument structure of each ioctl the model implements, by command number. */
const IOCTL_STRUCT: ReadonlyMap<number, UStruct> = new Map<number, UStruct>([
  [IOMMUFD_CMD.DESTROY, IOMMU_DESTROY_S as UStruct],
  [IOMMUFD_CMD.IOAS_ALLOC, IOMMU_IOAS_ALLOC_S as UStruct],
  [IOMMUFD_CMD.IOAS_MAP, IOMMU_IOAS_MAP_S as UStruct],
  [IOMMUFD_CMD.IOAS_UNMAP, IOMMU_IOAS_UNMAP_S as UStruct],
  [IOMMUFD_CMD.HWPT_ALLOC, IOMMU_HWPT_ALLOC_S as UStruct],
  [IOMMUFD_CMD.HWPT_INVALIDATE, IOMMU_HWPT_INVALIDATE_S as UStruct],
  [IOMMUFD_CMD.VIOMMU_ALLOC, IOMMU_VIOMMU_ALLOC_S as UStruct],
  [IOMMUFD_CMD.VDEVICE_ALLOC, IOMMU_VDEVICE_ALLOC_S as UStruct],
  [IOMMUFD_CMD.VEVENTQ_ALLOC, IOMMU_VEVENTQ_ALLOC_S as UStruct],
  [IOMMUFD_CMD.HW_QUEUE_ALLOC, IOMMU_HW_QUEUE_ALLOC_S as UStruct],
]);

/** Parse the records returned by veventqRead: header fields and payload per record. */
export function parseVevents(data: Uint8Array, payloadBytes: number): { flags: number; sequence: number; payload: Uint8Array }[] {
  const out: { flags: number; sequence: number; payload: Uint8Array }[] = [];
  let o = 0;
  while (o + VEVENT_HEADER_BYTES <= data.length) {
    const flags = readWordLE(data, o);
    const sequence = readWordLE(data, o + 4);
    o += VEVENT_HEADER_BYTES;
    if ((flags & IOMMU_VEVENTQ_FLAG_LOST_EVENTS) !== 0) {
      out.push({ flags, sequence, payload: new Uint8Array(0) });
      continue;
    }
    out.push({ flags, sequence, payload: data.slice(o, o + payloadBytes) });
    o += payloadBytes;
  }
  return out;
}

