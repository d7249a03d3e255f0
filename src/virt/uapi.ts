/**
 * The iommufd user API as bytes: ioctl numbers, the enumerations, and every argument structure the
 * model handles, as byte offsets (shared/reference/viommu.md §1.2–§1.4, §2.1; include/uapi/linux/
 * iommufd.h). Field names are the uAPI's C names, because this is Linux's interface, not the
 * architecture's.
 *
 * All structures are little-endian, as on arm64. A u32 decodes to a number, a u64 to a bigint: these
 * are API-edge structures, never read per command. The generic copy rule of the ioctl entry (§1.3:
 * `size` first, EINVAL below the minimum size, E2BIG for a non-zero tail, zero-extension of a
 * shorter struct) is `copyStructFromUser`, the same rule the kernel's copy_struct_from_user applies
 * to each entry of an invalidation array (§2.3).
 */

import { E2BIG, EFAULT, EINVAL } from './errno.ts';

// ---------------------------------------------------------------------------------------------
// ioctl numbers (§1.2)
// ---------------------------------------------------------------------------------------------

/** IOMMUFD_TYPE, the character ';' (§1.2). */
export const IOMMUFD_TYPE = 0x3b;

/** The command numbers nr of `_IO(IOMMUFD_TYPE, nr)` (§1.2; enum order of the uAPI header). */
export const IOMMUFD_CMD = Object.freeze({
  DESTROY: 0x80,
  IOAS_ALLOC: 0x81,
  IOAS_ALLOW_IOVAS: 0x82,
  IOAS_COPY: 0x83,
  IOAS_IOVA_RANGES: 0x84,
  IOAS_MAP: 0x85,
  IOAS_UNMAP: 0x86,
  OPTION: 0x87,
  VFIO_IOAS: 0x88,
  HWPT_ALLOC: 0x89,
  GET_HW_INFO: 0x8a,
  HWPT_SET_DIRTY_TRACKING: 0x8b,
  HWPT_GET_DIRTY_BITMAP: 0x8c,
  HWPT_INVALIDATE: 0x8d,
  FAULT_QUEUE_ALLOC: 0x8e,
  IOAS_MAP_FILE: 0x8f,
  VIOMMU_ALLOC: 0x90,
  VDEVICE_ALLOC: 0x91,
  IOAS_CHANGE_PROCESS: 0x92,
  VEVENTQ_ALLOC: 0x93,
  HW_QUEUE_ALLOC: 0x94,
} as const);

export type IommufdCmdName = keyof typeof IOMMUFD_CMD;

/** `_IO(type, nr)`: no direction or size bits, so the request is (type << 8) | nr (§1.2). */
export function ioctlRequest(nr: number): number {
  return ((IOMMUFD_TYPE << 8) | nr) >>> 0;
}

/** The request values, IOMMU_DESTROY = 0x3B80 … IOMMU_HW_QUEUE_ALLOC = 0x3B94. */
export const IOMMU_IOCTL: Readonly<Record<IommufdCmdName, number>> = Object.freeze(
  Object.fromEntries(Object.entries(IOMMUFD_CMD).map(([k, nr]) => [k, ioctlRequest(nr)])) as Record<IommufdCmdName, number>,
);

// ---------------------------------------------------------------------------------------------
// Enumerations (§1.4, §2.1)
// ---------------------------------------------------------------------------------------------

/** enum iommufd_hwpt_alloc_flags (§1.4). */
export const IOMMU_HWPT_ALLOC = Object.freeze({
  NEST_PARENT: 1 << 0,
  DIRTY_TRACKING: 1 << 1,
  FAULT_ID_VALID: 1 << 2,
  PASID: 1 << 3,
} as const);

/** enum iommu_hwpt_data_type (§1.4). */
export const IOMMU_HWPT_DATA = Object.freeze({ NONE: 0, VTD_S1: 1, ARM_SMMUV3: 2, AMD_GUEST: 3 } as const);

/** enum iommu_viommu_type (§1.4). DEFAULT is rejected. */
export const IOMMU_VIOMMU_TYPE = Object.freeze({ DEFAULT: 0, ARM_SMMUV3: 1, TEGRA241_CMDQV: 2 } as const);

/** enum iommu_veventq_type (§1.4). DEFAULT is rejected. */
export const IOMMU_VEVENTQ_TYPE = Object.freeze({ DEFAULT: 0, ARM_SMMUV3: 1, TEGRA241_CMDQV: 2 } as const);

/** enum iommu_hw_queue_type (§1.4). DEFAULT is rejected. */
export const IOMMU_HW_QUEUE_TYPE = Object.freeze({ DEFAULT: 0, TEGRA241_CMDQV: 1 } as const);

/** enum iommu_hwpt_invalidate_data_type (§2.1). */
export const IOMMU_HWPT_INVALIDATE_DATA = Object.freeze({ VTD_S1: 0, ARM_SMMUV3: 1 } as const);

/** enum iommufd_ioas_map_flags (uAPI header). */
export const IOMMU_IOAS_MAP = Object.freeze({ FIXED_IOVA: 1 << 0, WRITEABLE: 1 << 1, READABLE: 1 << 2 } as const);

/** iommu_vevent_header.flags (§1.4). */
export const IOMMU_VEVENTQ_FLAG_LOST_EVENTS = 1 << 0;

// ---------------------------------------------------------------------------------------------
// Structure layouts
// ---------------------------------------------------------------------------------------------

/** One field: byte offset and width (4 = __u32, 8 = __aligned_u64). */
export interface UField {
  readonly name: string;
  readonly offset: number;
  readonly bytes: 4 | 8;
}

/** A user structure: its fields (u32 names N32, u64 names N64), size and minimum size. */
export interface UStruct<N32 extends string = string, N64 extends string = string> {
  readonly name: string;
  readonly size: number;
  /**
   * offsetofend of the field the kernel's ioctl table names as "last" (§1.3 rule 3); a `size`
   * below it is EINVAL. For payload structures: the min_len of the driver's copy helper.
   */
  readonly minSize: number;
  readonly fields: readonly UField[];
  readonly f: Readonly<Record<N32 | N64, UField>>;
  /** Phantom members carrying the field-name types for encode/decode. */
  readonly _n32?: N32;
  readonly _n64?: N64;
}

function defineStruct<N32 extends string, N64 extends string>(
  name: string,
  size: number,
  last: NoInfer<N32 | N64>,
  u32: Readonly<Record<N32, number>>,
  u64: Readonly<Record<N64, number>>,
): UStruct<N32, N64> {
  const fields: UField[] = [];
  for (const [n, off] of Object.entries(u32) as [string, number][]) fields.push(Object.freeze({ name: n, offset: off, bytes: 4 }));
  for (const [n, off] of Object.entries(u64) as [string, number][]) fields.push(Object.freeze({ name: n, offset: off, bytes: 8 }));
  fields.sort((a, b) => a.offset - b.offset);
  const f = Object.fromEntries(fields.map((x) => [x.name, x])) as Record<N32 | N64, UField>;
  const lf = f[last];
  return Object.freeze({ name, size, minSize: lf.offset + lf.bytes, fields: Object.freeze(fields), f: Object.freeze(f) });
}

const NONE = {} as const;

/** struct iommu_destroy, 8 bytes. */
export const IOMMU_DESTROY_S = defineStruct('iommu_destroy', 8, 'id', { size: 0, id: 4 }, NONE);
/** struct iommu_ioas_alloc, 12 bytes. */
export const IOMMU_IOAS_ALLOC_S = defineStruct('iommu_ioas_alloc', 12, 'out_ioas_id', { size: 0, flags: 4, out_ioas_id: 8 }, NONE);
/** struct iommu_ioas_map, 40 bytes. */
export const IOMMU_IOAS_MAP_S = defineStruct(
  'iommu_ioas_map', 40, 'iova',
  { size: 0, flags: 4, ioas_id: 8, __reserved: 12 },
  { user_va: 16, length: 24, iova: 32 },
);
/** struct iommu_ioas_unmap, 24 bytes. */
export const IOMMU_IOAS_UNMAP_S = defineStruct('iommu_ioas_unmap', 24, 'length', { size: 0, ioas_id: 4 }, { iova: 8, length: 16 });
/** struct iommu_hwpt_alloc, 48 bytes (§1.4). */
export const IOMMU_HWPT_ALLOC_S = defineStruct(
  'iommu_hwpt_alloc', 48, '__reserved',
  { size: 0, flags: 4, dev_id: 8, pt_id: 12, out_hwpt_id: 16, __reserved: 20, data_type: 24, data_len: 28, fault_id: 40, __reserved2: 44 },
  { data_uptr: 32 },
);
/** struct iommu_hwpt_invalidate, 32 bytes (§2.1). */
export const IOMMU_HWPT_INVALIDATE_S = defineStruct(
  'iommu_hwpt_invalidate', 32, '__reserved',
  { size: 0, hwpt_id: 4, data_type: 16, entry_len: 20, entry_num: 24, __reserved: 28 },
  { data_uptr: 8 },
);
/** struct iommu_viommu_alloc, 40 bytes (§1.4). */
export const IOMMU_VIOMMU_ALLOC_S = defineStruct(
  'iommu_viommu_alloc', 40, 'out_viommu_id',
  { size: 0, flags: 4, type: 8, dev_id: 12, hwpt_id: 16, out_viommu_id: 20, data_len: 24, __reserved: 28 },
  { data_uptr: 32 },
);
/** struct iommu_vdevice_alloc, 24 bytes (§1.4). */
export const IOMMU_VDEVICE_ALLOC_S = defineStruct(
  'iommu_vdevice_alloc', 24, 'virt_id',
  { size: 0, viommu_id: 4, dev_id: 8, out_vdevice_id: 12 },
  { virt_id: 16 },
);
/** struct iommu_veventq_alloc, 32 bytes (§1.4). */
export const IOMMU_VEVENTQ_ALLOC_S = defineStruct(
  'iommu_veventq_alloc', 32, 'out_veventq_fd',
  { size: 0, flags: 4, viommu_id: 8, type: 12, veventq_depth: 16, out_veventq_id: 20, out_veventq_fd: 24, __reserved: 28 },
  NONE,
);
/** struct iommu_hw_queue_alloc, 40 bytes (§1.4). */
export const IOMMU_HW_QUEUE_ALLOC_S = defineStruct(
  'iommu_hw_queue_alloc', 40, 'length',
  { size: 0, flags: 4, viommu_id: 8, type: 12, index: 16, out_hw_queue_id: 20 },
  { nesting_parent_iova: 24, length: 32 },
);

/** struct iommu_hwpt_arm_smmuv3, 16 bytes: the first two double-words of the guest's vSTE (§1.4). */
export const IOMMU_HWPT_ARM_SMMUV3_S = defineStruct('iommu_hwpt_arm_smmuv3', 16, 'ste1', NONE, { ste0: 0, ste1: 8 });
/** struct iommu_viommu_arm_smmuv3_invalidate, 16 bytes: one raw command-queue entry (§2.1). */
export const IOMMU_VIOMMU_ARM_SMMUV3_INVALIDATE_S = defineStruct('iommu_viommu_arm_smmuv3_invalidate', 16, 'cmd1', NONE, { cmd0: 0, cmd1: 8 });
/** struct iommu_viommu_tegra241_cmdqv, 16 bytes: both members are outputs (§1.4). */
export const IOMMU_VIOMMU_TEGRA241_CMDQV_S = defineStruct(
  'iommu_viommu_tegra241_cmdqv', 16, 'out_vintf_mmap_length',
  NONE,
  { out_vintf_mmap_offset: 0, out_vintf_mmap_length: 8 },
);
/** struct iommufd_vevent_header, 8 bytes: flags, sequence (§1.4). */
export const IOMMU_VEVENT_HEADER_S = defineStruct('iommufd_vevent_header', 8, 'sequence', { flags: 0, sequence: 4 }, NONE);
/** struct iommu_vevent_arm_smmuv3, 32 bytes: evt[4], one event record with the vSID (§1.4). */
export const IOMMU_VEVENT_ARM_SMMUV3_S = defineStruct('iommu_vevent_arm_smmuv3', 32, 'evt3', NONE, { evt0: 0, evt1: 8, evt2: 16, evt3: 24 });
/** struct iommu_vevent_tegra241_cmdqv, 16 bytes: lvcmdq_err_map[2] (§1.4). */
export const IOMMU_VEVENT_TEGRA241_CMDQV_S = defineStruct('iommu_vevent_tegra241_cmdqv', 16, 'lvcmdq_err_map1', NONE, { lvcmdq_err_map0: 0, lvcmdq_err_map1: 8 });

/** Every structure above, by C name. */
export const USTRUCTS: readonly UStruct[] = Object.freeze([
  IOMMU_DESTROY_S, IOMMU_IOAS_ALLOC_S, IOMMU_IOAS_MAP_S, IOMMU_IOAS_UNMAP_S, IOMMU_HWPT_ALLOC_S, IOMMU_HWPT_INVALIDATE_S,
  IOMMU_VIOMMU_ALLOC_S, IOMMU_VDEVICE_ALLOC_S, IOMMU_VEVENTQ_ALLOC_S, IOMMU_HW_QUEUE_ALLOC_S, IOMMU_HWPT_ARM_SMMUV3_S,
  IOMMU_VIOMMU_ARM_SMMUV3_INVALIDATE_S, IOMMU_VIOMMU_TEGRA241_CMDQV_S, IOMMU_VEVENT_HEADER_S, IOMMU_VEVENT_ARM_SMMUV3_S,
  IOMMU_VEVENT_TEGRA241_CMDQV_S,
] as UStruct[]);

/** The size in bytes of one SMMUv3 invalidation entry, a raw command (§2.1). */
export const SMMUV3_INVALIDATE_ENTRY_BYTES = IOMMU_VIOMMU_ARM_SMMUV3_INVALIDATE_S.size;
/** The size of the vSTE payload of HWPT_ALLOC (§1.4). */
export const HWPT_ARM_SMMUV3_BYTES = IOMMU_HWPT_ARM_SMMUV3_S.size;
/** The size of a vEVENT header (§1.4). */
export const VEVENT_HEADER_BYTES = IOMMU_VEVENT_HEADER_S.size;

// ---------------------------------------------------------------------------------------------
// Encode / decode
// ---------------------------------------------------------------------------------------------

const U32_MAX = 0xffff_ffff;
const U64_MAX = (1n << 64n) - 1n;

/** Decoded values: u32 fields as numbers, u64 fields as bigints. */
export type UValues<N32 extends string, N64 extends string> = { [K in N32]: number } & { [K in N64]: bigint };

function readU32(b: Uint8Array, i: number): number {
  return ((b[i] ?? 0) | ((b[i + 1] ?? 0) << 8) | ((b[i + 2] ?? 0) << 16) | ((b[i + 3] ?? 0) << 24)) >>> 0;
}

function writeU32(b: Uint8Array, i: number, v: number): void {
  b[i] = v & 0xff;
  b[i + 1] = (v >>> 8) & 0xff;
  b[i + 2] = (v >>> 16) & 0xff;
  b[i + 3] = (v >>> 24) & 0xff;
}

/** A little-endian u64 at byte offset i, as a bigint; bytes beyond the buffer read as 0. */
export function readU64(b: Uint8Array, i: number): bigint {
  return (BigInt(readU32(b, i + 4)) << 32n) | BigInt(readU32(b, i));
}

/** Store a u64 (bigint or safe integer) little-endian at byte offset i. */
export function writeU64(b: Uint8Array, i: number, v: bigint | number): void {
  const x = BigInt.asUintN(64, BigInt(v));
  writeU32(b, i, Number(x & 0xffff_ffffn));
  writeU32(b, i + 4, Number(x >> 32n));
}

/** Decode every field of `s` from `bytes` at `offset`; bytes past the end read as 0. */
export function decodeStruct<N32 extends string, N64 extends string>(s: UStruct<N32, N64>, bytes: Uint8Array, offset = 0): UValues<N32, N64> {
  const out: Record<string, number | bigint> = {};
  for (const f of s.fields) out[f.name] = f.bytes === 4 ? readU32(bytes, offset + f.offset) : readU64(bytes, offset + f.offset);
  return out as UValues<N32, N64>;
}

/**
 * Encode a structure to `s.size` bytes. `size` defaults to s.size; unnamed fields are 0. A value
 * that does not fit its field throws a RangeError naming it (an API for people and tests).
 */
export function encodeStruct<N32 extends string, N64 extends string>(
  s: UStruct<N32, N64>,
  values: Partial<Record<N32 | N64, number | bigint>>,
): Uint8Array {
  const out = new Uint8Array(s.size);
  const v: Record<string, number | bigint | undefined> = { size: s.size, ...values };
  for (const f of s.fields) {
    const x = v[f.name];
    if (x === undefined) continue;
    const big = BigInt(x);
    if (big < 0n || big > (f.bytes === 4 ? BigInt(U32_MAX) : U64_MAX)) {
      throw new RangeError(`${s.name}.${f.name}: ${x} does not fit in ${8 * f.bytes} bits`);
    }
    if (f.bytes === 4) writeU32(out, f.offset, Number(big));
    else writeU64(out, f.offset, big);
  }
  return out;
}

/** Write one field of `s` into an existing buffer (the kernel's write-back of outputs). */
export function writeField<N32 extends string, N64 extends string>(s: UStruct<N32, N64>, bytes: Uint8Array, name: N32 | N64, value: number | bigint): void {
  const f = s.f[name];
  if (f.bytes === 4) writeU32(bytes, f.offset, Number(BigInt.asUintN(32, BigInt(value))));
  else writeU64(bytes, f.offset, BigInt(value));
}

// ---------------------------------------------------------------------------------------------
// The copy rules (§1.3, §2.3)
// ---------------------------------------------------------------------------------------------

/**
 * copy_struct_from_user (§1.3 rule 4, §2.3): copy `usize` user bytes into a `ksize` kernel struct.
 * A shorter user struct is zero-extended; a longer one is accepted only if every byte beyond ksize
 * is zero, else E2BIG. The trailing bytes are checked before the common part is copied, so a
 * dirty tail wins over a fault in the copy. `user` is the user memory from `offset`; reading
 * beyond its end is a fault (EFAULT).
 */
export function copyStructFromUser(ksize: number, user: Uint8Array, offset: number, usize: number): { errno: 0; data: Uint8Array } | { errno: number } {
  const size = Math.min(ksize, usize);
  const data = new Uint8Array(ksize);
  if (usize > ksize) {
    for (let i = ksize; i < usize; i++) {
      const b = user[offset + i];
      if (b === undefined) return { errno: EFAULT };
      if (b !== 0) return { errno: E2BIG };
    }
  }
  if (offset < 0 || offset + size > user.length) return { errno: EFAULT };
  data.set(user.subarray(offset, offset + size));
  return { errno: 0, data };
}

/**
 * The ioctl entry's argument copy (§1.3 rules 1, 3, 4): read `size` (EFAULT if the buffer cannot
 * hold it), EINVAL below `s.minSize`, then copyStructFromUser into `s.size` bytes. Also returns the
 * user's `size`, which bounds the write-back of outputs (iommufd_ucmd_respond copies
 * min(user size, struct size) bytes).
 */
export function copyIoctlArg(s: UStruct, user: Uint8Array): { errno: 0; data: Uint8Array; usize: number } | { errno: number } {
  if (user.length < 4) return { errno: EFAULT };
  const usize = readU32(user, 0);
  if (usize < s.minSize) return { errno: EINVAL };
  const r = copyStructFromUser(s.size, user, 0, usize);
  if (r.errno !== 0 || !('data' in r)) return r;
  return { errno: 0, data: r.data, usize };
}
