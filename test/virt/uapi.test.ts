/**
 * The iommufd user structures as bytes (viommu.md §1.2–§1.4, §2.1) and the generic ioctl rules of
 * §1.3, including the selftest's cmd_length checks (§5.2 iommufd.cmd_length) through the
 * byte-level ioctl entry.
 */

import { describe, expect, it } from 'vitest';
import { E2BIG, EFAULT, EINVAL, ENOENT, ENOTTY, EOPNOTSUPP, EIO } from '../../src/virt/errno.ts';
import { errnoName } from '../../src/virt/errno.ts';
import { HostSmmu, Iommufd, RecordingQueue, UserSpace, invalidationEntries } from '../../src/virt/iommufd.ts';
import {
  IOMMU_DESTROY_S, IOMMU_HWPT_ALLOC, IOMMU_HWPT_ALLOC_S, IOMMU_HWPT_ARM_SMMUV3_S, IOMMU_HWPT_DATA, IOMMU_HWPT_INVALIDATE_DATA,
  IOMMU_HWPT_INVALIDATE_S, IOMMU_HW_QUEUE_ALLOC_S, IOMMU_IOAS_ALLOC_S, IOMMU_IOAS_MAP, IOMMU_IOAS_MAP_S, IOMMU_IOAS_UNMAP_S, IOMMU_IOCTL,
  IOMMU_VDEVICE_ALLOC_S, IOMMU_VEVENTQ_ALLOC_S, IOMMU_VEVENT_ARM_SMMUV3_S, IOMMU_VEVENT_HEADER_S, IOMMU_VIOMMU_ALLOC_S,
  IOMMU_VIOMMU_ARM_SMMUV3_INVALIDATE_S, IOMMU_VIOMMU_TEGRA241_CMDQV_S, IOMMU_VIOMMU_TYPE, copyIoctlArg, copyStructFromUser, decodeStruct,
  encodeStruct,
} from '../../src/virt/uapi.ts';
import type { UStruct } from '../../src/virt/uapi.ts';

function layout(s: UStruct): [string, number, number][] {
  return s.fields.map((f) => [f.name, f.offset, f.bytes]);
}

describe('ioctl numbers (§1.2)', () => {
  it('are _IO(\';\', nr): 0x3B00 | nr', () => {
    expect(IOMMU_IOCTL).toMatchObject({
      DESTROY: 0x3b80, IOAS_ALLOC: 0x3b81, IOAS_MAP: 0x3b85, IOAS_UNMAP: 0x3b86, HWPT_ALLOC: 0x3b89, GET_HW_INFO: 0x3b8a,
      HWPT_INVALIDATE: 0x3b8d, FAULT_QUEUE_ALLOC: 0x3b8e, IOAS_MAP_FILE: 0x3b8f, VIOMMU_ALLOC: 0x3b90, VDEVICE_ALLOC: 0x3b91,
      IOAS_CHANGE_PROCESS: 0x3b92, VEVENTQ_ALLOC: 0x3b93, HW_QUEUE_ALLOC: 0x3b94,
    });
  });
});

describe('structure layouts (§1.4, §2.1)', () => {
  it('iommu_hwpt_alloc: 48 bytes, minimum 24', () => {
    expect(IOMMU_HWPT_ALLOC_S.size).toBe(48);
    expect(IOMMU_HWPT_ALLOC_S.minSize).toBe(24);
    expect(layout(IOMMU_HWPT_ALLOC_S)).toEqual([
      ['size', 0, 4], ['flags', 4, 4], ['dev_id', 8, 4], ['pt_id', 12, 4], ['out_hwpt_id', 16, 4], ['__reserved', 20, 4],
      ['data_type', 24, 4], ['data_len', 28, 4], ['data_uptr', 32, 8], ['fault_id', 40, 4], ['__reserved2', 44, 4],
    ]);
  });

  it('iommu_hwpt_invalidate: 32 bytes, minimum 32', () => {
    expect([IOMMU_HWPT_INVALIDATE_S.size, IOMMU_HWPT_INVALIDATE_S.minSize]).toEqual([32, 32]);
    expect(layout(IOMMU_HWPT_INVALIDATE_S)).toEqual([
      ['size', 0, 4], ['hwpt_id', 4, 4], ['data_uptr', 8, 8], ['data_type', 16, 4], ['entry_len', 20, 4], ['entry_num', 24, 4], ['__reserved', 28, 4],
    ]);
  });

  it('iommu_viommu_alloc: 40 bytes, minimum 24', () => {
    expect([IOMMU_VIOMMU_ALLOC_S.size, IOMMU_VIOMMU_ALLOC_S.minSize]).toEqual([40, 24]);
    expect(layout(IOMMU_VIOMMU_ALLOC_S)).toEqual([
      ['size', 0, 4], ['flags', 4, 4], ['type', 8, 4], ['dev_id', 12, 4], ['hwpt_id', 16, 4], ['out_viommu_id', 20, 4],
      ['data_len', 24, 4], ['__reserved', 28, 4], ['data_uptr', 32, 8],
    ]);
  });

  it('iommu_vdevice_alloc: 24 bytes, minimum 24', () => {
    expect([IOMMU_VDEVICE_ALLOC_S.size, IOMMU_VDEVICE_ALLOC_S.minSize]).toEqual([24, 24]);
    expect(layout(IOMMU_VDEVICE_ALLOC_S)).toEqual([['size', 0, 4], ['viommu_id', 4, 4], ['dev_id', 8, 4], ['out_vdevice_id', 12, 4], ['virt_id', 16, 8]]);
  });

  it('iommu_veventq_alloc: 32 bytes, minimum 28', () => {
    expect([IOMMU_VEVENTQ_ALLOC_S.size, IOMMU_VEVENTQ_ALLOC_S.minSize]).toEqual([32, 28]);
    expect(layout(IOMMU_VEVENTQ_ALLOC_S)).toEqual([
      ['size', 0, 4], ['flags', 4, 4], ['viommu_id', 8, 4], ['type', 12, 4], ['veventq_depth', 16, 4], ['out_veventq_id', 20, 4],
      ['out_veventq_fd', 24, 4], ['__reserved', 28, 4],
    ]);
  });

  it('iommu_hw_queue_alloc: 40 bytes, minimum 40', () => {
    expect([IOMMU_HW_QUEUE_ALLOC_S.size, IOMMU_HW_QUEUE_ALLOC_S.minSize]).toEqual([40, 40]);
    expect(layout(IOMMU_HW_QUEUE_ALLOC_S)).toEqual([
      ['size', 0, 4], ['flags', 4, 4], ['viommu_id', 8, 4], ['type', 12, 4], ['index', 16, 4], ['out_hw_queue_id', 20, 4],
      ['nesting_parent_iova', 24, 8], ['length', 32, 8],
    ]);
  });

  it('the payloads: vSTE, invalidation entry, Tegra data, vEVENT header and record', () => {
    expect([IOMMU_HWPT_ARM_SMMUV3_S.size, IOMMU_VIOMMU_ARM_SMMUV3_INVALIDATE_S.size, IOMMU_VIOMMU_TEGRA241_CMDQV_S.size]).toEqual([16, 16, 16]);
    expect(layout(IOMMU_VEVENT_HEADER_S)).toEqual([['flags', 0, 4], ['sequence', 4, 4]]);
    expect(IOMMU_VEVENT_ARM_SMMUV3_S.size).toBe(32);
    expect([IOMMU_DESTROY_S.size, IOMMU_IOAS_ALLOC_S.size, IOMMU_IOAS_MAP_S.size, IOMMU_IOAS_UNMAP_S.size]).toEqual([8, 12, 40, 24]);
  });
});

describe('encode and decode', () => {
  it('encode writes size and little-endian fields; decode reads them back', () => {
    const b = encodeStruct(IOMMU_HWPT_INVALIDATE_S, { hwpt_id: 7, data_uptr: 0x1122_3344_5566_7788n, data_type: 1, entry_len: 16, entry_num: 3 });
    expect([...b]).toEqual([
      32, 0, 0, 0, 7, 0, 0, 0, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,
      1, 0, 0, 0, 16, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0,
    ]);
    expect(decodeStruct(IOMMU_HWPT_INVALIDATE_S, b)).toEqual({
      size: 32, hwpt_id: 7, data_uptr: 0x1122_3344_5566_7788n, data_type: 1, entry_len: 16, entry_num: 3, __reserved: 0,
    });
  });

  it('encode refuses a value that does not fit, naming the field', () => {
    expect(() => encodeStruct(IOMMU_VDEVICE_ALLOC_S, { viommu_id: 2 ** 32 })).toThrow('iommu_vdevice_alloc.viommu_id');
    expect(() => encodeStruct(IOMMU_VDEVICE_ALLOC_S, { virt_id: 1n << 64n })).toThrow('virt_id');
  });
});

describe('copy_struct_from_user (§1.3 rule 4, §2.3)', () => {
  it('zero-extends a shorter struct', () => {
    const r = copyStructFromUser(16, Uint8Array.of(1, 2, 3), 0, 3);
    expect(r).toEqual({ errno: 0, data: Uint8Array.of(1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0) });
  });

  it('accepts a longer struct with a zero tail and refuses a dirty one with E2BIG', () => {
    const u = new Uint8Array(20).fill(5);
    u.fill(0, 16);
    expect(copyStructFromUser(16, u, 0, 20)).toMatchObject({ errno: 0 });
    u[19] = 1;
    expect(copyStructFromUser(16, u, 0, 20)).toEqual({ errno: E2BIG });
  });

  it('faults (EFAULT) beyond the user buffer, and checks the tail before the copy', () => {
    expect(copyStructFromUser(16, new Uint8Array(8), 0, 16)).toEqual({ errno: EFAULT });
    const dirtyButShort = Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9);
    expect(copyStructFromUser(16, dirtyButShort, 0, 18)).toEqual({ errno: E2BIG });
  });

  it('copyIoctlArg: EFAULT without a size word, EINVAL below the minimum', () => {
    expect(copyIoctlArg(IOMMU_DESTROY_S as UStruct, new Uint8Array(3))).toEqual({ errno: EFAULT });
    expect(copyIoctlArg(IOMMU_DESTROY_S as UStruct, Uint8Array.of(7, 0, 0, 0, 1, 0, 0, 0))).toEqual({ errno: EINVAL });
  });
});

describe('the byte-level ioctl entry', () => {
  function ctx(): { fd: Iommufd; mem: UserSpace; devId: number; queue: RecordingQueue } {
    const queue = new RecordingQueue();
    const host = new HostSmmu({ queue });
    const fd = new Iommufd();
    const d = fd.bindDevice(host, 0x100);
    if (!d.ok) throw new Error('bind');
    return { fd, mem: new UserSpace(), devId: d.devId, queue };
  }

  /** A struct with its size field set to `size` and `tail` extra bytes. */
  function sized(s: UStruct, size: number, values: Record<string, number | bigint> = {}, extra = 0): Uint8Array {
    const b = new Uint8Array(Math.max(size, 4));
    b.set(encodeStruct(s, values).subarray(0, Math.min(s.size, b.length)));
    b[0] = size & 0xff;
    b[1] = size >>> 8;
    if (size > s.size) b[s.size] = extra;
    return b;
  }

  const lengthCases: [string, UStruct, number][] = [
    ['DESTROY', IOMMU_DESTROY_S as UStruct, IOMMU_IOCTL.DESTROY],
    ['IOAS_ALLOC', IOMMU_IOAS_ALLOC_S as UStruct, IOMMU_IOCTL.IOAS_ALLOC],
    ['IOAS_MAP', IOMMU_IOAS_MAP_S as UStruct, IOMMU_IOCTL.IOAS_MAP],
    ['IOAS_UNMAP', IOMMU_IOAS_UNMAP_S as UStruct, IOMMU_IOCTL.IOAS_UNMAP],
    ['HWPT_ALLOC', IOMMU_HWPT_ALLOC_S as UStruct, IOMMU_IOCTL.HWPT_ALLOC],
    ['HWPT_INVALIDATE', IOMMU_HWPT_INVALIDATE_S as UStruct, IOMMU_IOCTL.HWPT_INVALIDATE],
    ['VIOMMU_ALLOC', IOMMU_VIOMMU_ALLOC_S as UStruct, IOMMU_IOCTL.VIOMMU_ALLOC],
    ['VDEVICE_ALLOC', IOMMU_VDEVICE_ALLOC_S as UStruct, IOMMU_IOCTL.VDEVICE_ALLOC],
    ['VEVENTQ_ALLOC', IOMMU_VEVENTQ_ALLOC_S as UStruct, IOMMU_IOCTL.VEVENTQ_ALLOC],
    ['HW_QUEUE_ALLOC', IOMMU_HW_QUEUE_ALLOC_S as UStruct, IOMMU_IOCTL.HW_QUEUE_ALLOC],
  ];

  for (const [name, s, req] of lengthCases) {
    it(`${name} cmd_length (§5.2): min−1 EINVAL, dirty tail E2BIG, clean tail as sizeof`, () => {
      const { fd } = ctx();
      expect(fd.ioctl(req, sized(s, s.minSize - 1))).toBe(EINVAL);
      expect(fd.ioctl(req, sized(s, s.size + 1, {}, 0xaa))).toBe(E2BIG);
      const a = ctx().fd.ioctl(req, sized(s, s.size));
      const b = ctx().fd.ioctl(req, sized(s, s.size + 1, {}, 0));
      expect(errnoName(b)).toBe(errnoName(a));
    });
  }

  it('unknown and unmodelled requests are ENOTTY; a request of another type is ENOTTY', () => {
    const { fd } = ctx();
    expect(fd.ioctl(IOMMU_IOCTL.GET_HW_INFO, sized(IOMMU_DESTROY_S as UStruct, 8))).toBe(ENOTTY);
    expect(fd.ioctl(0x3b7f, sized(IOMMU_DESTROY_S as UStruct, 8))).toBe(ENOTTY);
    expect(fd.ioctl(0x3c80, sized(IOMMU_DESTROY_S as UStruct, 8))).toBe(ENOTTY);
  });

  it('a whole setup through ioctl: IOAS, map, nest parent, vIOMMU, vDEVICE, nested HWPT, invalidate', () => {
    const { fd, mem, devId, queue } = ctx();
    const ioas = encodeStruct(IOMMU_IOAS_ALLOC_S, {});
    expect(fd.ioctl(IOMMU_IOCTL.IOAS_ALLOC, ioas)).toBe(0);
    const ioasId = decodeStruct(IOMMU_IOAS_ALLOC_S, ioas).out_ioas_id;
    expect(ioasId).toBe(2);

    const map = encodeStruct(IOMMU_IOAS_MAP_S, { flags: IOMMU_IOAS_MAP.FIXED_IOVA | IOMMU_IOAS_MAP.READABLE, ioas_id: ioasId, user_va: 0x4000_0000, length: 0x10000, iova: 0x8000_0000 });
    expect(fd.ioctl(IOMMU_IOCTL.IOAS_MAP, map)).toBe(0);
    expect(decodeStruct(IOMMU_IOAS_MAP_S, map).iova).toBe(0x8000_0000n);

    const hw = encodeStruct(IOMMU_HWPT_ALLOC_S, { flags: IOMMU_HWPT_ALLOC.NEST_PARENT, dev_id: devId, pt_id: ioasId });
    expect(fd.ioctl(IOMMU_IOCTL.HWPT_ALLOC, hw)).toBe(0);
    const parent = decodeStruct(IOMMU_HWPT_ALLOC_S, hw).out_hwpt_id;

    const va = encodeStruct(IOMMU_VIOMMU_ALLOC_S, { type: IOMMU_VIOMMU_TYPE.ARM_SMMUV3, dev_id: devId, hwpt_id: parent });
    expect(fd.ioctl(IOMMU_IOCTL.VIOMMU_ALLOC, va)).toBe(0);
    const viommuId = decodeStruct(IOMMU_VIOMMU_ALLOC_S, va).out_viommu_id;

    const vd = encodeStruct(IOMMU_VDEVICE_ALLOC_S, { viommu_id: viommuId, dev_id: devId, virt_id: 0x99n });
    expect(fd.ioctl(IOMMU_IOCTL.VDEVICE_ALLOC, vd)).toBe(0);

    // vSTE: V, Config S1_TRANS (0b101 at [3:1]), S1ContextPtr 0x8000_1000.
    const vste = new Uint8Array(16);
    new DataView(vste.buffer).setUint32(0, 0x8000_1000 | (0b101 << 1) | 1, true);
    const nested = encodeStruct(IOMMU_HWPT_ALLOC_S, { dev_id: devId, pt_id: viommuId, data_type: IOMMU_HWPT_DATA.ARM_SMMUV3, data_len: 16, data_uptr: mem.place(vste) });
    expect(fd.ioctl(IOMMU_IOCTL.HWPT_ALLOC, nested, mem)).toBe(0);
    expect(fd.typeOf(decodeStruct(IOMMU_HWPT_ALLOC_S, nested).out_hwpt_id)).toBe('HWPT_NESTED');

    // Two entries, the second a CMD_SYNC: EIO, entry_num written back as 1.
    const entries = invalidationEntries([[0x11, 0x0001_0000, 0, 0], [0x46, 0, 0, 0]]);
    const inv = encodeStruct(IOMMU_HWPT_INVALIDATE_S, { hwpt_id: viommuId, data_uptr: mem.place(entries), data_type: IOMMU_HWPT_INVALIDATE_DATA.ARM_SMMUV3, entry_len: 16, entry_num: 2 });
    expect(fd.ioctl(IOMMU_IOCTL.HWPT_INVALIDATE, inv, mem)).toBe(EIO);
    expect(decodeStruct(IOMMU_HWPT_INVALIDATE_S, inv).entry_num).toBe(1);
    // Linux counting: the converted first entry never reached the queue (§3.3).
    expect(queue.submissions).toEqual([]);

    // An unmapped pointer faults; __reserved is EOPNOTSUPP with entry_num 0 written back.
    const bad = encodeStruct(IOMMU_HWPT_INVALIDATE_S, { hwpt_id: viommuId, data_uptr: 0xdead_0000n, data_type: 1, entry_len: 16, entry_num: 1 });
    expect(fd.ioctl(IOMMU_IOCTL.HWPT_INVALIDATE, bad, mem)).toBe(EFAULT);
    const rsv = encodeStruct(IOMMU_HWPT_INVALIDATE_S, { hwpt_id: viommuId, entry_num: 5, __reserved: 1 });
    expect(fd.ioctl(IOMMU_IOCTL.HWPT_INVALIDATE, rsv)).toBe(EOPNOTSUPP);
    expect(decodeStruct(IOMMU_HWPT_INVALIDATE_S, rsv).entry_num).toBe(0);

    const del = encodeStruct(IOMMU_DESTROY_S, { id: 999 });
    expect(fd.ioctl(IOMMU_IOCTL.DESTROY, del)).toBe(ENOENT);
  });

  it('outputs are written back only up to the user size', () => {
    const { fd } = ctx();
    // IOAS_ALLOC with size 12 + 4 clean bytes: the 4 extra bytes stay as given.
    const b = new Uint8Array(16);
    b[0] = 16;
    expect(fd.ioctl(IOMMU_IOCTL.IOAS_ALLOC, b)).toBe(0);
    expect([...b]).toEqual([16, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
  });
});
