/**
 * Linux errno values as the host kernel model returns them.
 *
 * The iommufd calls return the positive errno a user process sees in `errno` after ioctl() returns
 * -1 (the kernel itself returns the negative value). The numbers are the asm-generic ones, which
 * arm64 uses (include/uapi/asm-generic/errno-base.h, errno.h). The meaning column follows the
 * convention block at the top of include/uapi/linux/iommufd.h (viommu.md §1.3 rule 5).
 */

/** errno numbers (asm-generic, as on arm64). */
export const ERRNO = Object.freeze({
  EPERM: 1,
  ENOENT: 2,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  ENOMEM: 12,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  EINVAL: 22,
  ENOTTY: 25,
  ENOSPC: 28,
  ESPIPE: 29,
  ERANGE: 34,
  EOVERFLOW: 75,
  EOPNOTSUPP: 95,
  ETIMEDOUT: 110,
} as const);

export type ErrnoName = keyof typeof ERRNO;

export const { EPERM, ENOENT, EIO, ENXIO, E2BIG, ENOMEM, EFAULT, EBUSY, EEXIST, EINVAL, ENOTTY, ENOSPC, ESPIPE, ERANGE, EOVERFLOW, EOPNOTSUPP, ETIMEDOUT } = ERRNO;

/** What each errno means in iommufd calls (uAPI header convention block, and the calls' own uses). */
export const ERRNO_MEANING: Readonly<Record<ErrnoName, string>> = Object.freeze({
  EPERM: 'operation not permitted (mmap with PROT_EXEC)',
  ENOENT: 'an ID or IOVA provided does not exist',
  EIO: 'the hardware-format data (a vSTE, a guest command) is not acceptable',
  ENXIO: 'no mmap region at that offset and length',
  E2BIG: 'a part of the structure the kernel does not understand is non-zero',
  ENOMEM: 'out of memory',
  EFAULT: 'a user pointer cannot be accessed, or pinned pages are not physically contiguous',
  EBUSY: 'the object is in use',
  EEXIST: 'the object or slot already exists',
  EINVAL: 'everything was understood but a field is not correct',
  ENOTTY: 'the ioctl number is not supported at all',
  ENOSPC: 'no free identifier (VMID, VINTF, SID slot)',
  ESPIPE: 'an event queue read with a non-zero file offset',
  ERANGE: 'a length computation overflowed while pinning',
  EOVERFLOW: 'mathematics overflowed',
  EOPNOTSUPP: 'a known field has a value the kernel does not understand or support',
  ETIMEDOUT: 'the physical CMD_SYNC did not complete in time',
});

const BY_NUMBER: ReadonlyMap<number, ErrnoName> = new Map(Object.entries(ERRNO).map(([k, v]) => [v, k as ErrnoName]));

/** 'EINVAL' for 22; 'errno 123' for numbers the table does not name; 'OK' for 0. */
export function errnoName(n: number): string {
  if (n === 0) return 'OK';
  return BY_NUMBER.get(n) ?? `errno ${n}`;
}

/** The result of a call that creates or queries something: the values, or the errno. */
export type Outcome<T extends object = object> = ({ readonly ok: true } & T) | { readonly ok: false; readonly errno: number };

/** A failed outcome. */
export function fail(errno: number): { readonly ok: false; readonly errno: number } {
  return { ok: false, errno };
}
