/**
 * The iommufd object layer (viommu.md §1, §4.6, §5): ids, references, destroy ordering, the
 * allocation calls with their errnos in the kernel's order, vSTE validation and the nested STE,
 * attach, vDEVICE rules, vEVENTQ semantics and Tegra241 HW queues.
 *
 * STE bit positions (IHI0070 G.b §5.2, text): V [0], Config [3:1], S1Fmt [5:4], S1ContextPtr
 * [55:6], S1CDMax [63:59], S1DSS [65:64], S1CIR [67:66], S1COR [69:68], S1CSH [71:70], MEV [83],
 * S1STALLD [91], EATS [93:92], STRW [95:94], S2VMID [143:128]. Event record (§7.3): EventID [7:0],
 * StreamID [63:32], Stall [95], S2 [103].
 */

import { describe, expect, it } from 'vitest';
import { FULL_FEATURES } from '../../src/spec/features.ts';
import {
  E2BIG, EBUSY, EEXIST, EFAULT, EINVAL, EIO, ENOENT, ENOSPC, ENXIO, EOPNOTSUPP, EOVERFLOW, EPERM, ESPIPE, errnoName,
} from '../../src/virt/errno.ts';
import {
  HostSmmu, Iommufd, PAGE_SIZE, RecordingQueue, VSTE_ALLOWED, VmidAllocator, abortSte, composeNestedSte, parseVevents, validateVste,
} from '../../src/virt/iommufd.ts';
import type { CmdqvHooks, CmdqvParams, HostSmmuOptions, PagingDomainOps, ValidatedVste } from '../../src/virt/iommufd.ts';
import {
  IOMMU_HWPT_ALLOC, IOMMU_HWPT_DATA, IOMMU_HW_QUEUE_TYPE, IOMMU_IOAS_MAP, IOMMU_VEVENTQ_FLAG_LOST_EVENTS, IOMMU_VEVENTQ_TYPE,
  IOMMU_VIOMMU_TYPE, readU64,
} from '../../src/virt/uapi.ts';

const { NEST_PARENT, FAULT_ID_VALID, PASID, DIRTY_TRACKING } = IOMMU_HWPT_ALLOC;
const FIXED = IOMMU_IOAS_MAP.FIXED_IOVA | IOMMU_IOAS_MAP.READABLE | IOMMU_IOAS_MAP.WRITEABLE;

function ok<T extends { ok: boolean }>(r: T): Extract<T, { ok: true }> {
  if (!r.ok) throw new Error(`unexpected failure ${JSON.stringify(r)} (${'errno' in r ? errnoName(r.errno as number) : ''})`);
  return r as Extract<T, { ok: true }>;
}

/** 16 vSTE bytes from 4 words (word 0 = bits [31:0]). */
function vsteBytes(w: readonly number[]): Uint8Array {
  const b = new Uint8Array(16);
  const dv = new DataView(b.buffer);
  w.forEach((x, i) => dv.setUint32(4 * i, x >>> 0, true));
  return b;
}

/** V = 1, Config S1_TRANS (0b101 << 1), S1ContextPtr 0x8000_1000. */
const S1_VSTE = [0x8000_100b, 0, 0, 0];
const BYPASS_VSTE = [0x9, 0, 0, 0]; // V, Config 0b100
const ABORT_VSTE = [0x1, 0, 0, 0]; // V, Config 0b000

interface Fx {
  q: RecordingQueue;
  host: HostSmmu;
  fd: Iommufd;
  devId: number;
  ioasId: number;
  parentId: number;
  viommuId: number;
  installed: [number, number[]][];
}

function host(o: Partial<HostSmmuOptions> = {}, installed: [number, number[]][] = []): HostSmmu {
  return new HostSmmu({ queue: new RecordingQueue(), installSte: (sid, ste) => installed.push([sid, [...ste]]), ...o });
}

function fixture(o: Partial<HostSmmuOptions> = {}): Fx {
  const installed: [number, number[]][] = [];
  const h = host(o, installed);
  const fd = new Iommufd();
  const devId = ok(fd.bindDevice(h, 0x100)).devId;
  const ioasId = ok(fd.ioasAlloc()).ioasId;
  const parentId = ok(fd.hwptAlloc({ flags: NEST_PARENT, devId, ptId: ioasId, dataType: IOMMU_HWPT_DATA.NONE })).hwptId;
  const viommuId = ok(fd.viommuAlloc({ type: IOMMU_VIOMMU_TYPE.ARM_SMMUV3, devId, hwptId: parentId })).viommuId;
  return { q: h.queue as RecordingQueue, host: h, fd, devId, ioasId, parentId, viommuId, installed };
}

function nested(f: Fx, w: readonly number[] = S1_VSTE): number {
  return ok(f.fd.hwptAlloc({ flags: 0, devId: f.devId, ptId: f.viommuId, dataType: IOMMU_HWPT_DATA.ARM_SMMUV3, data: vsteBytes(w) })).hwptId;
}

describe('ids and references', () => {
  it('ids come from one space, lowest free first, from 1', () => {
    const f = fixture();
    expect([f.devId, f.ioasId, f.parentId, f.viommuId]).toEqual([1, 2, 3, 4]);
    const ioas2 = ok(f.fd.ioasAlloc()).ioasId;
    expect(ioas2).toBe(5);
    expect(f.fd.destroy(f.ioasId)).toBe(EBUSY);
    expect(f.fd.destroy(ioas2)).toBe(0);
    const q = ok(f.fd.veventqAlloc({ viommuId: f.viommuId, type: IOMMU_VEVENTQ_TYPE.ARM_SMMUV3, depth: 2 }));
    expect(q.veventqId).toBe(5);
  });

  it('the nest parent owns a VMID from the host allocator; the vIOMMU copies it; destroy returns it', () => {
    const f = fixture();
    expect(f.fd.describe(f.parentId)).toMatchObject({ type: 'HWPT_PAGING', nestParent: true, stage: 2, vmid: 1 });
    expect(f.fd.describe(f.viommuId)).toMatchObject({ type: 'VIOMMU', vmid: 1, hwpt: f.parentId, users: 1 });
    expect(f.fd.vsmmu(f.viommuId)?.vmid).toBe(1);
    const second = ok(f.fd.hwptAlloc({ flags: NEST_PARENT, devId: f.devId, ptId: f.ioasId, dataType: 0 })).hwptId;
    expect(f.fd.describe(second)).toMatchObject({ vmid: 2 });
    const plain = ok(f.fd.hwptAlloc({ flags: 0, devId: f.devId, ptId: f.ioasId, dataType: 0 })).hwptId;
    expect(f.fd.describe(plain)).toMatchObject({ nestParent: false, stage: 1, vmid: undefined });
    expect(f.host.vmids.inUse).toEqual([1, 2]);
    expect(f.fd.destroy(second)).toBe(0);
    expect(f.host.vmids.inUse).toEqual([1]);
  });

  it('VMIDs run out with ENOSPC; VMID 0 is never handed out', () => {
    const a = new VmidAllocator(2);
    expect([a.alloc(), a.alloc(), a.alloc(), a.alloc()]).toEqual([1, 2, 3, undefined]);
    const f = fixture({ vmids: new VmidAllocator(1) });
    expect(f.fd.hwptAlloc({ flags: NEST_PARENT, devId: f.devId, ptId: f.ioasId, dataType: 0 })).toEqual({ ok: false, errno: ENOSPC });
    expect(new VmidAllocator(FULL_FEATURES.vmid16 ? 16 : 8).last).toBe(0xffff);
  });

  it('destroy ordering (§5): children first, EBUSY otherwise, ENOENT for unknown ids', () => {
    const f = fixture();
    const n = nested(f);
    const vd = ok(f.fd.vdeviceAlloc({ viommuId: f.viommuId, devId: f.devId, virtId: 0x99 })).vdeviceId;
    const q = ok(f.fd.veventqAlloc({ viommuId: f.viommuId, type: IOMMU_VEVENTQ_TYPE.ARM_SMMUV3, depth: 4 }));
    expect(f.fd.attach(f.devId, n)).toBe(0);

    expect(f.fd.destroy(999)).toBe(ENOENT);
    expect(f.fd.destroy(f.devId)).toBe(EBUSY); // the VFIO binding holds it
    expect(f.fd.destroy(f.ioasId)).toBe(EBUSY);
    expect(f.fd.destroy(f.parentId)).toBe(EBUSY);
    expect(f.fd.destroy(f.viommuId)).toBe(EBUSY);
    expect(f.fd.destroy(n)).toBe(EBUSY); // attached
    expect(f.fd.describe(f.viommuId)).toMatchObject({ users: 4 }); // nested, vdevice, veventq + itself
    expect(f.fd.destroy(q.veventqId)).toBe(EBUSY); // the fd is open
    expect(f.fd.closeFd(q.fd)).toBe(0);
    expect(f.fd.destroy(q.veventqId)).toBe(0);
    expect(f.fd.detach(f.devId)).toBe(0);
    expect(f.fd.destroy(n)).toBe(0);
    expect(f.fd.destroy(f.viommuId)).toBe(EBUSY); // the vDEVICE still holds it
    expect(f.fd.destroy(vd)).toBe(0);
    expect(f.fd.destroy(f.viommuId)).toBe(0);
    expect(f.fd.destroy(f.ioasId)).toBe(EBUSY);
    expect(f.fd.destroy(f.parentId)).toBe(0);
    expect(f.fd.destroy(f.ioasId)).toBe(0);
    expect(f.fd.ids()).toEqual([f.devId]);
    expect(f.host.vmids.inUse).toEqual([]);
  });

  it('close() tears everything down and returns VMIDs and streams to the host', () => {
    const f = fixture();
    nested(f);
    ok(f.fd.vdeviceAlloc({ viommuId: f.viommuId, devId: f.devId, virtId: 0x99 }));
    ok(f.fd.veventqAlloc({ viommuId: f.viommuId, type: IOMMU_VEVENTQ_TYPE.ARM_SMMUV3, depth: 4 }));
    f.fd.close();
    expect(f.fd.ids()).toEqual([]);
    expect(f.host.vmids.inUse).toEqual([]);
    expect(new Iommufd().bindDevice(f.host, 0x100)).toMatchObject({ ok: true });
  });

  it('a stream binds once (EBUSY) until unbound', () => {
    const f = fixture();
    const other = new Iommufd();
    expect(other.bindDevice(f.host, 0x100)).toEqual({ ok: false, errno: EBUSY });
    expect(f.fd.unbindDevice(f.devId)).toBe(0);
    expect(other.bindDevice(f.host, 0x100)).toMatchObject({ ok: true });
  });
});

describe('IOAS map and unmap', () => {
  function ioas(): { fd: Iommufd; id: number; log: string[]; devId: number } {
    const log: string[] = [];
    const dom = (): PagingDomainOps => ({
      map: (iova, pa, len) => (log.push(`map ${iova.toString(16)} ${pa.toString(16)} ${len.toString(16)}`), 0),
      unmap: (iova, len) => void log.push(`unmap ${iova.toString(16)} ${len.toString(16)}`),
    });
    const h = host({ pagingDomain: dom });
    const fd = new Iommufd();
    const devId = ok(fd.bindDevice(h, 0x1)).devId;
    return { fd, id: ok(fd.ioasAlloc()).ioasId, log, devId };
  }

  it('checks flags, ids, alignment and overlap', () => {
    const { fd, id } = ioas();
    expect(fd.ioasAlloc(1)).toEqual({ ok: false, errno: EOPNOTSUPP });
    expect(fd.ioasMap({ ioasId: id, flags: 1 << 3, userVa: 0, length: PAGE_SIZE })).toEqual({ ok: false, errno: EOPNOTSUPP });
    expect(fd.ioasMap({ ioasId: id, flags: FIXED, userVa: 0, length: PAGE_SIZE, reserved: 1 })).toEqual({ ok: false, errno: EOPNOTSUPP });
    expect(fd.ioasMap({ ioasId: 99, flags: FIXED, userVa: 0, length: PAGE_SIZE })).toEqual({ ok: false, errno: ENOENT });
    expect(fd.ioasMap({ ioasId: id, flags: FIXED, userVa: 0, length: 0 })).toEqual({ ok: false, errno: EINVAL });
    expect(fd.ioasMap({ ioasId: id, flags: FIXED, userVa: 0x100, length: PAGE_SIZE, iova: 0 })).toEqual({ ok: false, errno: EINVAL });
    expect(fd.ioasMap({ ioasId: id, flags: FIXED, userVa: 0, length: PAGE_SIZE, iova: 0x800 })).toEqual({ ok: false, errno: EINVAL });
    expect(fd.ioasMap({ ioasId: id, flags: FIXED, userVa: 0, length: 2 * PAGE_SIZE, iova: 2n ** 64n - 4096n })).toEqual({ ok: false, errno: EOVERFLOW });
    expect(fd.ioasMap({ ioasId: id, flags: FIXED, userVa: 0x4000_0000, length: 0x4000, iova: 0x1000 })).toEqual({ ok: true, iova: 0x1000n });
    expect(fd.ioasMap({ ioasId: id, flags: FIXED, userVa: 0x4010_0000, length: 0x1000, iova: 0x4000 })).toEqual({ ok: false, errno: EEXIST });
  });

  it('without FIXED_IOVA the lowest free IOVA is used', () => {
    const { fd, id } = ioas();
    ok(fd.ioasMap({ ioasId: id, flags: FIXED, userVa: 0x4000_0000, length: 0x2000, iova: 0x1000 }));
    expect(fd.ioasMap({ ioasId: id, flags: 0, userVa: 0x4100_0000, length: 0x1000 })).toEqual({ ok: true, iova: 0n });
    expect(fd.ioasMap({ ioasId: id, flags: 0, userVa: 0x4200_0000, length: 0x1000 })).toEqual({ ok: true, iova: 0x3000n });
  });

  it('unmap: whole areas only (ENOENT), nothing mapped (ENOENT), everything with 0..U64_MAX', () => {
    const { fd, id } = ioas();
    ok(fd.ioasMap({ ioasId: id, flags: FIXED, userVa: 0x4000_0000, length: 0x2000, iova: 0x10000 }));
    ok(fd.ioasMap({ ioasId: id, flags: FIXED, userVa: 0x4100_0000, length: 0x1000, iova: 0x20000 }));
    expect(fd.ioasUnmap(id, 0x10000, 0x1000)).toEqual({ ok: false, errno: ENOENT });
    expect(fd.ioasUnmap(id, 0x30000, 0x1000)).toEqual({ ok: false, errno: ENOENT });
    expect(fd.ioasUnmap(id, 0x10000, 0)).toEqual({ ok: false, errno: EINVAL });
    expect(fd.ioasUnmap(99, 0, 1)).toEqual({ ok: false, errno: ENOENT });
    expect(fd.ioasUnmap(id, 0, 2n ** 64n - 1n)).toEqual({ ok: true, unmapped: 0x3000n });
    expect(fd.describe(id)).toMatchObject({ areas: [] });
  });

  it('a HWPT_PAGING is filled with the IOAS at creation and follows later maps and unmaps', () => {
    const { fd, id, log, devId } = ioas();
    ok(fd.ioasMap({ ioasId: id, flags: FIXED, userVa: 0x4000_0000, length: 0x2000, iova: 0x10000 }));
    const h = ok(fd.hwptAlloc({ flags: NEST_PARENT, devId, ptId: id, dataType: 0 })).hwptId;
    ok(fd.ioasMap({ ioasId: id, flags: FIXED, userVa: 0x4100_0000, length: 0x1000, iova: 0x20000 }));
    ok(fd.ioasUnmap(id, 0x10000, 0x2000));
    expect(fd.destroy(h)).toBe(0);
    expect(log).toEqual(['map 10000 40000000 2000', 'map 20000 41000000 1000', 'unmap 10000 2000', 'unmap 20000 1000']);
  });
});

describe('HWPT_ALLOC (§1.4, §5.2 alloc_hwpt_nested)', () => {
  it('core checks: __reserved, data pairing, dev_id, pt_id', () => {
    const f = fixture();
    const b = { devId: f.devId, ptId: f.ioasId };
    expect(f.fd.hwptAlloc({ ...b, flags: 0, dataType: 0, reserved: 1 })).toEqual({ ok: false, errno: EOPNOTSUPP });
    expect(f.fd.hwptAlloc({ ...b, flags: 0, dataType: 0, dataLen: 16 })).toEqual({ ok: false, errno: EINVAL });
    expect(f.fd.hwptAlloc({ ...b, flags: 0, dataType: IOMMU_HWPT_DATA.ARM_SMMUV3, dataLen: 0 })).toEqual({ ok: false, errno: EINVAL });
    expect(f.fd.hwptAlloc({ ...b, devId: f.ioasId, flags: 0, dataType: 0 })).toEqual({ ok: false, errno: ENOENT });
    expect(f.fd.hwptAlloc({ ...b, ptId: 99, flags: 0, dataType: 0 })).toEqual({ ok: false, errno: EINVAL });
    expect(f.fd.hwptAlloc({ ...b, ptId: f.devId, flags: 0, dataType: 0 })).toEqual({ ok: false, errno: EINVAL });
  });

  it('paging: flags the SMMUv3 driver takes, and the ones it does not', () => {
    const f = fixture();
    const b = { devId: f.devId, ptId: f.ioasId, dataType: 0 };
    expect(f.fd.hwptAlloc({ ...b, flags: NEST_PARENT | FAULT_ID_VALID })).toEqual({ ok: false, errno: EOPNOTSUPP });
    expect(f.fd.hwptAlloc({ ...b, flags: 1 << 31 })).toEqual({ ok: false, errno: EOPNOTSUPP });
    expect(f.fd.hwptAlloc({ ...b, flags: NEST_PARENT | PASID })).toEqual({ ok: false, errno: EOPNOTSUPP });
    expect(f.fd.hwptAlloc({ ...b, flags: PASID })).toMatchObject({ ok: true });
    expect(f.fd.hwptAlloc({ ...b, flags: DIRTY_TRACKING })).toMatchObject({ ok: true });
    expect(f.fd.hwptAlloc({ ...b, dataType: IOMMU_HWPT_DATA.ARM_SMMUV3, flags: 0, data: new Uint8Array(16) })).toEqual({ ok: false, errno: EOPNOTSUPP });
    const noHttu = fixture({ features: { ...FULL_FEATURES, httu: 1 } });
    expect(noHttu.fd.hwptAlloc({ devId: noHttu.devId, ptId: noHttu.ioasId, dataType: 0, flags: DIRTY_TRACKING })).toEqual({ ok: false, errno: EOPNOTSUPP });
    const s2only = host({ features: { ...FULL_FEATURES, s1: false, hyp: false, cd2l: false } });
    const fd = new Iommufd();
    const d = ok(fd.bindDevice(s2only, 5)).devId;
    const io = ok(fd.ioasAlloc()).ioasId;
    expect(fd.hwptAlloc({ devId: d, ptId: io, dataType: 0, flags: NEST_PARENT })).toEqual({ ok: false, errno: EOPNOTSUPP });
  });

  it('FAULT_ID_VALID: no fault object exists, ENOENT, and nothing is left behind', () => {
    const f = fixture();
    const before = f.fd.ids();
    expect(f.fd.hwptAlloc({ devId: f.devId, ptId: f.ioasId, dataType: 0, flags: FAULT_ID_VALID, faultId: 0xffff_ffff })).toEqual({ ok: false, errno: ENOENT });
    expect(f.fd.hwptAlloc({ devId: f.devId, ptId: f.viommuId, dataType: IOMMU_HWPT_DATA.ARM_SMMUV3, data: vsteBytes(S1_VSTE), flags: FAULT_ID_VALID })).toEqual({ ok: false, errno: ENOENT });
    expect(f.fd.ids()).toEqual(before);
    expect(f.fd.describe(f.viommuId)).toMatchObject({ users: 1 });
  });

  it('nested: on a HWPT_PAGING EOPNOTSUPP, on a nested HWPT EINVAL, on a vIOMMU from the vSTE', () => {
    const f = fixture();
    const d = { devId: f.devId, dataType: IOMMU_HWPT_DATA.ARM_SMMUV3, flags: 0 };
    expect(f.fd.hwptAlloc({ ...d, ptId: f.parentId, data: vsteBytes(S1_VSTE) })).toEqual({ ok: false, errno: EOPNOTSUPP });
    const n = nested(f);
    expect(f.fd.hwptAlloc({ ...d, ptId: n, data: vsteBytes(S1_VSTE) })).toEqual({ ok: false, errno: EINVAL });
    expect(f.fd.describe(n)).toMatchObject({ type: 'HWPT_NESTED', viommu: f.viommuId, ste: S1_VSTE, config: 0b101, enableAts: false });
  });

  it('nested on a vIOMMU: flags, data type, length, pointer, tail', () => {
    const f = fixture();
    const b = { devId: f.devId, ptId: f.viommuId };
    const A = IOMMU_HWPT_DATA.ARM_SMMUV3;
    expect(f.fd.hwptAlloc({ ...b, flags: PASID, dataType: A, data: vsteBytes(S1_VSTE) })).toEqual({ ok: false, errno: EOPNOTSUPP });
    expect(f.fd.hwptAlloc({ ...b, flags: NEST_PARENT, dataType: A, data: vsteBytes(S1_VSTE) })).toEqual({ ok: false, errno: EOPNOTSUPP });
    expect(f.fd.hwptAlloc({ ...b, flags: 0, dataType: 0 })).toEqual({ ok: false, errno: EOPNOTSUPP });
    expect(f.fd.hwptAlloc({ ...b, flags: 0, dataType: IOMMU_HWPT_DATA.VTD_S1, data: vsteBytes(S1_VSTE) })).toEqual({ ok: false, errno: EINVAL });
    expect(f.fd.hwptAlloc({ ...b, flags: 0, dataType: A, data: vsteBytes(S1_VSTE), dataLen: 15 })).toEqual({ ok: false, errno: EINVAL });
    expect(f.fd.hwptAlloc({ ...b, flags: 0, dataType: A, data: null, dataLen: 16 })).toEqual({ ok: false, errno: EFAULT });
    const long = new Uint8Array(17);
    long.set(vsteBytes(S1_VSTE));
    expect(f.fd.hwptAlloc({ ...b, flags: 0, dataType: A, data: long })).toMatchObject({ ok: true });
    long[16] = 1;
    expect(f.fd.hwptAlloc({ ...b, flags: 0, dataType: A, data: long })).toEqual({ ok: false, errno: E2BIG });
    const other = host();
    const d2 = ok(f.fd.bindDevice(other, 0x100)).devId;
    expect(f.fd.hwptAlloc({ ...b, devId: d2, flags: 0, dataType: A, data: vsteBytes(S1_VSTE) })).toEqual({ ok: false, errno: EINVAL });
  });
});

describe('vSTE validation (§1.4) and the nested STE', () => {
  it('the allowed masks are Linux\'s NESTING_ALLOWED: 0xf80fffffffffffff and 0x380000ff', () => {
    expect([...VSTE_ALLOWED]).toEqual([0xffff_ffff, 0xf80f_ffff, 0x3800_00ff, 0]);
  });

  it('V = 0 zeroes the vSTE whatever else is set', () => {
    expect(validateVste([0xffff_fffe, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff])).toEqual({ ok: true, ste: Uint32Array.of(0, 0, 0, 0), config: 0, enableAts: false });
  });

  it('Config must be abort, bypass or S1 translate', () => {
    for (let cfg = 0; cfg < 8; cfg++) {
      const r = validateVste([1 | (cfg << 1), 0, 0, 0]);
      expect(r.ok, `Config ${cfg}`).toBe(cfg === 0 || cfg === 4 || cfg === 5);
      if (!r.ok) expect(r.errno).toBe(EIO);
    }
  });

  it('any bit outside the mask is EIO: S1ContextPtr[55:52], RES0 [58:56], STRW, MEV, SHCFG, word 3', () => {
    for (const [name, w] of [
      ['S1ContextPtr[52]', [0xb, 0x0010_0000, 0, 0]],
      ['bit 56', [0xb, 0x0100_0000, 0, 0]],
      ['STRW', [0xb, 0, 0x8000_0000, 0]],
      ['MEV', [0xb, 0, 0x0008_0000, 0]],
      ['S1MPAM', [0xb, 0, 0x0400_0000, 0]],
      ['SHCFG', [0xb, 0, 0, 0x1000]],
    ] as [string, number[]][]) {
      expect(validateVste(w), name).toEqual({ ok: false, errno: EIO });
    }
  });

  it('EATS: abort or full ATS only; kept out of the stored vSTE; ATS wanted only for S1 translate', () => {
    expect(validateVste([0xb, 0, 0x2000_0000, 0])).toEqual({ ok: false, errno: EIO }); // EATS 0b10
    expect(validateVste([0xb, 0, 0x3000_0000, 0])).toEqual({ ok: false, errno: EIO });
    const r = validateVste([0xf800_0000 | 0x8000_100b, 0x000f_ffff, 0x1800_00ff, 0]);
    expect(r).toEqual({ ok: true, ste: Uint32Array.of(0xf800_0000 | 0x8000_100b, 0x000f_ffff, 0x0800_00ff, 0), config: 5, enableAts: true });
    expect(validateVste([0x9, 0, 0x1000_0000, 0])).toMatchObject({ ok: true, enableAts: false });
  });

  it('composeNestedSte: Config nested, guest dwords OR-ed over the stage-2 STE, MEV set', () => {
    // A stage-2 STE: V, Config S2_TRANS (0b110), S2VMID 7 (word 4), S2TTB word 6.
    const s2 = new Uint32Array(16);
    s2[0] = 0xd;
    s2[4] = 7;
    s2[6] = 0x8123_4000;
    const v = ok(validateVste([0x8000_100b, 0x0800_0000, 0x0800_0015, 0])) as unknown as ValidatedVste;
    const out = composeNestedSte(v, s2);
    expect([...out.subarray(0, 8)]).toEqual([0x8000_100f, 0x0800_0000, 0x0808_0015, 0, 7, 0, 0x8123_4000, 0]);
    const by = ok(validateVste(BYPASS_VSTE)) as unknown as ValidatedVste;
    expect([...composeNestedSte(by, s2)]).toEqual([...s2]);
    const ab = ok(validateVste(ABORT_VSTE)) as unknown as ValidatedVste;
    expect([...composeNestedSte(ab, s2)]).toEqual([...abortSte()]);
    expect(abortSte()[0]).toBe(1);
  });
});

describe('attach', () => {
  function withS2(): Fx {
    const s2 = new Uint32Array(16);
    s2[0] = 0xd;
    return fixture({ pagingDomain: () => ({ map: () => 0, unmap: () => undefined, ste: (ats) => { const s = Uint32Array.from(s2); if (ats) s[2] = 0x1000_0000; return s; } }) });
  }

  it('a translating nested HWPT needs a vDEVICE (ENOENT); abort and bypass do not (§1.4, §5.2)', () => {
    const f = withS2();
    expect(f.fd.attach(f.devId, nested(f))).toBe(ENOENT);
    expect(f.fd.attach(f.devId, nested(f, BYPASS_VSTE))).toBe(0);
    expect(f.fd.attach(f.devId, nested(f, ABORT_VSTE))).toBe(0);
    expect(f.fd.attach(f.devId, nested(f, [0, 0, 0, 0]))).toBe(0);
    expect(f.installed.map(([sid, s]) => [sid, s[0]])).toEqual([[0x100, 0xd], [0x100, 0x1], [0x100, 0x1]]);
  });

  it('with a vDEVICE the nested STE is installed; replacing moves the reference; detach installs abort', () => {
    const f = withS2();
    ok(f.fd.vdeviceAlloc({ viommuId: f.viommuId, devId: f.devId, virtId: 0x99 }));
    const n = nested(f);
    const b = nested(f, BYPASS_VSTE);
    expect(f.fd.attach(f.devId, n)).toBe(0);
    expect(f.installed.at(-1)).toEqual([0x100, [0x8000_100f, 0, 0x0008_0000, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]]);
    expect(f.fd.describe(n)).toMatchObject({ users: 2 });
    expect(f.fd.attach(f.devId, b)).toBe(0);
    expect(f.fd.describe(n)).toMatchObject({ users: 1 });
    expect(f.fd.describe(b)).toMatchObject({ users: 2 });
    expect(f.fd.destroy(b)).toBe(EBUSY);
    expect(f.fd.detach(f.devId)).toBe(0);
    expect(f.installed.at(-1)).toEqual([0x100, [...abortSte()]]);
    expect(f.fd.destroy(b)).toBe(0);
  });

  it('ATS follows the guest\'s EATS for S1 translate on an ATS device', () => {
    const f = withS2();
    const fd = f.fd;
    const dev = ok(fd.bindDevice(f.host, 0x300, { ats: true })).devId;
    ok(fd.vdeviceAlloc({ viommuId: f.viommuId, devId: dev, virtId: 3 }));
    const withAts = ok(fd.hwptAlloc({ flags: 0, devId: dev, ptId: f.viommuId, dataType: IOMMU_HWPT_DATA.ARM_SMMUV3, data: vsteBytes([0x8000_100b, 0, 0x1000_0000, 0]) })).hwptId;
    expect(fd.attach(dev, withAts)).toBe(0);
    expect(f.installed.at(-1)![1][2]).toBe(0x1008_0000);
    expect(fd.attach(dev, nested(f))).toBe(0);
    expect(f.installed.at(-1)![1][2]).toBe(0x0008_0000);
  });

  it('unknown ids, non-HWPT ids and a HWPT of another SMMU', () => {
    const f = fixture();
    expect(f.fd.attach(99, f.parentId)).toBe(ENOENT);
    expect(f.fd.attach(f.devId, 99)).toBe(ENOENT);
    expect(f.fd.attach(f.devId, f.ioasId)).toBe(EINVAL);
    expect(f.fd.attach(f.devId, f.viommuId)).toBe(EINVAL);
    const d2 = ok(f.fd.bindDevice(host(), 0x100)).devId;
    expect(f.fd.attach(d2, f.parentId)).toBe(EINVAL);
    expect(f.fd.attach(f.devId, f.parentId)).toBe(0);
    expect(f.fd.destroy(f.parentId)).toBe(EBUSY);
  });
});

describe('VIOMMU_ALLOC (§1.4, §5.2 viommu_negative_tests)', () => {
  it('checks in order: flags/type, device, SMMU support, hwpt, nest parent', () => {
    const f = fixture();
    const b = { devId: f.devId, hwptId: f.parentId, type: IOMMU_VIOMMU_TYPE.ARM_SMMUV3 };
    expect(f.fd.viommuAlloc({ ...b, flags: 1 })).toEqual({ ok: false, errno: EOPNOTSUPP });
    expect(f.fd.viommuAlloc({ ...b, type: IOMMU_VIOMMU_TYPE.DEFAULT })).toEqual({ ok: false, errno: EOPNOTSUPP });
    expect(f.fd.viommuAlloc({ ...b, type: 0xdead })).toEqual({ ok: false, errno: EOPNOTSUPP });
    expect(f.fd.viommuAlloc({ ...b, type: IOMMU_VIOMMU_TYPE.TEGRA241_CMDQV })).toEqual({ ok: false, errno: EOPNOTSUPP });
    expect(f.fd.viommuAlloc({ ...b, devId: 99 })).toEqual({ ok: false, errno: ENOENT });
    expect(f.fd.viommuAlloc({ ...b, hwptId: 0 })).toEqual({ ok: false, errno: ENOENT });
    expect(f.fd.viommuAlloc({ ...b, hwptId: f.ioasId })).toEqual({ ok: false, errno: ENOENT });
    const plain = ok(f.fd.hwptAlloc({ flags: 0, devId: f.devId, ptId: f.ioasId, dataType: 0 })).hwptId;
    expect(f.fd.viommuAlloc({ ...b, hwptId: plain })).toEqual({ ok: false, errno: EINVAL });
    expect(f.fd.viommuAlloc(b)).toMatchObject({ ok: true, vmid: 1 });
  });

  it('an SMMU that cannot nest, forces syncs, or cannot stop non-coherent DMA hosts no vIOMMU', () => {
    for (const o of [{ features: { ...FULL_FEATURES, s2: false, vmw: false, hyp: false } }, { cmdqForceSync: true }] as Partial<HostSmmuOptions>[]) {
      const h = host(o);
      const fd = new Iommufd();
      const d = ok(fd.bindDevice(h, 1)).devId;
      expect(fd.viommuAlloc({ devId: d, hwptId: 99, type: IOMMU_VIOMMU_TYPE.ARM_SMMUV3 })).toEqual({ ok: false, errno: EOPNOTSUPP });
    }
    const f = fixture();
    const nc = ok(f.fd.bindDevice(f.host, 0x500, { canwbs: false })).devId;
    expect(f.fd.viommuAlloc({ devId: nc, hwptId: f.parentId, type: IOMMU_VIOMMU_TYPE.ARM_SMMUV3 })).toEqual({ ok: false, errno: EOPNOTSUPP });
    const fwb = fixture({ s2fwb: true });
    const nc2 = ok(fwb.fd.bindDevice(fwb.host, 0x500, { canwbs: false })).devId;
    expect(fwb.fd.viommuAlloc({ devId: nc2, hwptId: fwb.parentId, type: IOMMU_VIOMMU_TYPE.ARM_SMMUV3 })).toMatchObject({ ok: true });
  });

  it('a parent of another SMMU is EINVAL', () => {
    const f = fixture();
    const g = fixture();
    const d = ok(f.fd.bindDevice(g.host, 0x777)).devId;
    expect(f.fd.viommuAlloc({ devId: d, hwptId: f.parentId, type: IOMMU_VIOMMU_TYPE.ARM_SMMUV3 })).toEqual({ ok: false, errno: EINVAL });
  });
});

describe('VDEVICE_ALLOC (§1.4, §5.2 vdevice_alloc, vdevice_tombstone)', () => {
  it('one per device, virt_id unique per vIOMMU, ids checked', () => {
    const f = fixture();
    const d2 = ok(f.fd.bindDevice(f.host, 0x101)).devId;
    expect(f.fd.vdeviceAlloc({ viommuId: 99, devId: f.devId, virtId: 0x99 })).toEqual({ ok: false, errno: ENOENT });
    expect(f.fd.vdeviceAlloc({ viommuId: f.viommuId, devId: 99, virtId: 0x99 })).toEqual({ ok: false, errno: ENOENT });
    expect(f.fd.vdeviceAlloc({ viommuId: f.viommuId, devId: f.devId, virtId: 2n ** 64n })).toEqual({ ok: false, errno: EINVAL });
    const v1 = ok(f.fd.vdeviceAlloc({ viommuId: f.viommuId, devId: f.devId, virtId: 0x99 })).vdeviceId;
    expect(f.fd.vdeviceAlloc({ viommuId: f.viommuId, devId: f.devId, virtId: 0x98 })).toEqual({ ok: false, errno: EEXIST });
    expect(f.fd.vdeviceAlloc({ viommuId: f.viommuId, devId: d2, virtId: 0x99 })).toEqual({ ok: false, errno: EEXIST });
    expect(f.fd.describe(v1)).toMatchObject({ type: 'VDEVICE', virtId: 0x99n, streamId: 0x100 });
    expect(f.fd.vsmmu(f.viommuId)?.vsidToPsid(0x99)).toBe(0x100);
    expect(f.fd.destroy(v1)).toBe(0);
    expect(f.fd.vsmmu(f.viommuId)?.vsidToPsid(0x99)).toBe(undefined);
    expect(f.fd.vdeviceAlloc({ viommuId: f.viommuId, devId: f.devId, virtId: 0x88 })).toMatchObject({ ok: true });
    const g = host();
    const d3 = ok(f.fd.bindDevice(g, 0x102)).devId;
    expect(f.fd.vdeviceAlloc({ viommuId: f.viommuId, devId: d3, virtId: 0x1 })).toEqual({ ok: false, errno: EINVAL });
  });

  it('a virt_id above 2^32 is stored but no 32-bit command vSID can name it', () => {
    const f = fixture();
    ok(f.fd.vdeviceAlloc({ viommuId: f.viommuId, devId: f.devId, virtId: 0x1_0000_0099n }));
    expect(f.fd.vsmmu(f.viommuId)?.vsidToPsid(0x99)).toBe(undefined);
  });

  it('tombstone: unbinding the device destroys its vDEVICE; DESTROY of that id is ENOENT and the id stays reserved', () => {
    const f = fixture();
    const vd = ok(f.fd.vdeviceAlloc({ viommuId: f.viommuId, devId: f.devId, virtId: 0x99 })).vdeviceId;
    expect(f.fd.unbindDevice(f.devId)).toBe(0);
    expect(f.fd.destroy(vd)).toBe(ENOENT);
    expect(f.fd.describe(f.viommuId)).toMatchObject({ users: 1 });
    expect(ok(f.fd.ioasAlloc()).ioasId).toBe(1); // the device's id is free again
    expect(ok(f.fd.ioasAlloc()).ioasId).toBe(6); // the tombstone (5) is skipped
  });
});

describe('VEVENTQ (§1.4, §5.2 vdevice_alloc)', () => {
  /** A 32-byte event record: EventID, StreamID, and optional Stall / S2 bits (§7.3). */
  function evt(id: number, sid: number, o: { s2?: boolean; stall?: boolean; marker?: number } = {}): Uint32Array {
    const e = new Uint32Array(8);
    e[0] = id;
    e[1] = sid;
    e[2] = o.stall === true ? 0x8000_0000 : 0;
    e[3] = o.s2 === true ? 0x80 : 0;
    e[4] = o.marker ?? 0xabcd;
    return e;
  }

  function evFx(): Fx & { vd: number; ev: { veventqId: number; fd: number } } {
    const f = fixture();
    const vd = ok(f.fd.vdeviceAlloc({ viommuId: f.viommuId, devId: f.devId, virtId: 0x99 })).vdeviceId;
    expect(f.fd.attach(f.devId, nested(f))).toBe(0);
    const ev = ok(f.fd.veventqAlloc({ viommuId: f.viommuId, type: IOMMU_VEVENTQ_TYPE.ARM_SMMUV3, depth: 2 }));
    return { ...f, vd, ev };
  }

  it('alloc checks: flags, __reserved, type DEFAULT, depth 0, viommu, one per type', () => {
    const f = fixture();
    const b = { viommuId: f.viommuId, type: IOMMU_VEVENTQ_TYPE.ARM_SMMUV3, depth: 2 };
    expect(f.fd.veventqAlloc({ ...b, flags: 1 })).toEqual({ ok: false, errno: EOPNOTSUPP });
    expect(f.fd.veventqAlloc({ ...b, reserved: 1 })).toEqual({ ok: false, errno: EOPNOTSUPP });
    expect(f.fd.veventqAlloc({ ...b, type: 0 })).toEqual({ ok: false, errno: EOPNOTSUPP });
    expect(f.fd.veventqAlloc({ ...b, depth: 0 })).toEqual({ ok: false, errno: EINVAL });
    expect(f.fd.veventqAlloc({ ...b, viommuId: 99 })).toEqual({ ok: false, errno: ENOENT });
    expect(f.fd.veventqAlloc(b)).toMatchObject({ ok: true, fd: 3 });
    expect(f.fd.veventqAlloc(b)).toEqual({ ok: false, errno: EEXIST });
    expect(f.fd.veventqAlloc({ ...b, type: IOMMU_VEVENTQ_TYPE.TEGRA241_CMDQV })).toMatchObject({ ok: true, fd: 4 });
  });

  it('a stage-1 fault of the device reaches the guest with its vSID, sequence 0', () => {
    const f = evFx();
    expect(f.host.handleEvent(evt(0x10, 0x100))).toBe(0);
    const r = f.fd.veventqRead(f.ev.fd, 4096);
    expect(r.errno).toBe(0);
    expect(r.data.length).toBe(40);
    expect([...r.data.subarray(0, 8)]).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    expect(readU64(r.data, 8)).toBe(0x0000_0099_0000_0010n);
    expect(readU64(r.data, 24)).toBe(0xabcdn);
  });

  it('the host keeps what is not the guest\'s: unknown stream, other event numbers, S2 faults, stalls, no vEVENTQ', () => {
    const f = evFx();
    expect(f.host.handleEvent(evt(0x10, 0x555))).toBe(EINVAL);
    expect(f.host.handleEvent(evt(0x02, 0x100))).toBe(EOPNOTSUPP); // C_BAD_STREAMID
    expect(f.host.handleEvent(evt(0x10, 0x100, { s2: true }))).toBe(EOPNOTSUPP);
    expect(f.host.handleEvent(evt(0x10, 0x100, { stall: true }))).toBe(EOPNOTSUPP);
    for (const id of [0x04, 0x06, 0x08, 0x0a, 0x10, 0x11, 0x12, 0x13]) expect(f.host.handleEvent(evt(id, 0x100)), `0x${id.toString(16)}`).toBe(0);
    const g = fixture();
    ok(g.fd.vdeviceAlloc({ viommuId: g.viommuId, devId: g.devId, virtId: 1 }));
    expect(g.fd.attach(g.devId, nested(g))).toBe(0);
    expect(g.host.handleEvent(evt(0x10, 0x100))).toBe(EOPNOTSUPP); // no vEVENTQ
    expect(g.fd.detach(g.devId)).toBe(0);
    ok(g.fd.veventqAlloc({ viommuId: g.viommuId, type: IOMMU_VEVENTQ_TYPE.ARM_SMMUV3, depth: 1 }));
    expect(g.host.handleEvent(evt(0x10, 0x100))).toBe(EOPNOTSUPP); // not attached: no vmaster
  });

  it('depth 2, three events: the third is a LOST_EVENTS header with its own sequence; the next event reads cleanly', () => {
    const f = evFx();
    for (const m of [1, 2, 3]) expect(f.host.handleEvent(evt(0x10, 0x100, { marker: m }))).toBe(0);
    const r1 = parseVevents(f.fd.veventqRead(f.ev.fd, 4096).data, 32);
    expect(r1.map((e) => [e.flags, e.sequence, e.payload[16] ?? -1])).toEqual([[0, 0, 1], [0, 1, 2], [IOMMU_VEVENTQ_FLAG_LOST_EVENTS, 2, -1]]);
    expect(f.host.handleEvent(evt(0x10, 0x100, { marker: 4 }))).toBe(0);
    const r2 = parseVevents(f.fd.veventqRead(f.ev.fd, 4096).data, 32);
    expect(r2.map((e) => [e.flags, e.sequence, e.payload[16]])).toEqual([[0, 3, 4]]);
  });

  it('the lost-events header moves to the tail on each loss and is dropped from the tail by a new event', () => {
    const f = evFx();
    for (const m of [1, 2, 3, 4]) f.host.handleEvent(evt(0x10, 0x100, { marker: m }));
    // Read one record only (header + payload = 40 bytes).
    const one = parseVevents(f.fd.veventqRead(f.ev.fd, 40).data, 32);
    expect(one.map((e) => e.sequence)).toEqual([0]);
    f.host.handleEvent(evt(0x10, 0x100, { marker: 5 })); // room for one: the tail header goes, seq 4 is a gap
    const rest = parseVevents(f.fd.veventqRead(f.ev.fd, 4096).data, 32);
    expect(rest.map((e) => [e.flags, e.sequence])).toEqual([[0, 1], [0, 4]]);
  });

  it('reads return whole records only; a non-zero offset is ESPIPE; an unknown fd EINVAL', () => {
    const f = evFx();
    f.host.handleEvent(evt(0x10, 0x100));
    expect(f.fd.veventqRead(f.ev.fd, 7)).toEqual({ errno: 0, data: new Uint8Array(0) });
    expect(f.fd.veventqRead(f.ev.fd, 39)).toEqual({ errno: 0, data: new Uint8Array(0) });
    expect(f.fd.veventqRead(f.ev.fd, 40, 8)).toEqual({ errno: ESPIPE, data: new Uint8Array(0) });
    expect(f.fd.veventqRead(99, 40).errno).toBe(EINVAL);
    expect(f.fd.veventqRead(f.ev.fd, 40).data.length).toBe(40);
  });

  it('sequence numbers wrap at INT_MAX', () => {
    const f = evFx();
    const vq = f.fd as unknown as { objects: Map<number, { sequence: number }> };
    vq.objects.get(f.ev.veventqId)!.sequence = 0x7fff_ffff;
    f.host.handleEvent(evt(0x10, 0x100));
    f.host.handleEvent(evt(0x10, 0x100));
    expect(parseVevents(f.fd.veventqRead(f.ev.fd, 4096).data, 32).map((e) => e.sequence)).toEqual([0x7fff_ffff, 0]);
  });
});

describe('Tegra241 CMDQV: vIOMMU, vDEVICE and HW queues (§4.2–§4.6, §5.2 hw_queue)', () => {
  const CMDQV: CmdqvParams = { numVintfs: 4, numVcmdqs: 8, numSidsPerVintf: 2, base: 0x0900_0000 };

  function tegra(cmdqs = 8): Fx & { log: string[]; data: Uint8Array; vintf: number } {
    const log: string[] = [];
    const hooks: CmdqvHooks = {
      vintfEnable: (v, vmid) => void log.push(`vintf ${v} vmid ${vmid}`),
      vintfDisable: (v) => void log.push(`vintf ${v} off`),
      sidMap: (v, s, vs, ps) => void log.push(`sid ${v}.${s} ${vs.toString(16)}->${ps.toString(16)}`),
      sidUnmap: (v, s) => void log.push(`sid ${v}.${s} off`),
      lvcmdqInit: (v, l, pa, n) => void log.push(`lvcmdq ${v}.${l} ${pa.toString(16)} log2 ${n}`),
      lvcmdqDeinit: (v, l) => void log.push(`lvcmdq ${v}.${l} off`),
    };
    const installed: [number, number[]][] = [];
    const h = host({ cmdqv: { ...CMDQV, ...hooks }, features: { ...FULL_FEATURES, cmdqs: cmdqs } }, installed);
    const fd = new Iommufd();
    const devId = ok(fd.bindDevice(h, 0x100)).devId;
    const ioasId = ok(fd.ioasAlloc()).ioasId;
    ok(fd.ioasMap({ ioasId, flags: FIXED, userVa: 0x4000_0000, length: 0x10000, iova: 0x8000_0000 }));
    const parentId = ok(fd.hwptAlloc({ flags: NEST_PARENT, devId, ptId: ioasId, dataType: 0 })).hwptId;
    const data = new Uint8Array(16);
    const v = ok(fd.viommuAlloc({ type: IOMMU_VIOMMU_TYPE.TEGRA241_CMDQV, devId, hwptId: parentId, data }));
    return { q: h.queue as RecordingQueue, host: h, fd, devId, ioasId, parentId, viommuId: v.viommuId, installed, log, data, vintf: v.vintf! };
  }

  it('VIOMMU_ALLOC takes VINTF 1 (VINTF0 is the host\'s), enables it with the VMID and writes offset and length', () => {
    const t = tegra();
    expect(t.vintf).toBe(1);
    expect(readU64(t.data, 0)).toBe(BigInt(PAGE_SIZE));
    expect(readU64(t.data, 8)).toBe(0x10000n);
    expect(t.log).toEqual(['vintf 1 vmid 1']);
    expect(t.fd.describe(t.viommuId)).toMatchObject({ vtype: 2, vintf: 1 });
  });

  it('the data is required (EINVAL), may be longer with a zero tail (E2BIG otherwise), and VINTFs run out (ENOSPC)', () => {
    const t = tegra();
    const b = { type: IOMMU_VIOMMU_TYPE.TEGRA241_CMDQV, devId: t.devId, hwptId: t.parentId };
    expect(t.fd.viommuAlloc(b)).toEqual({ ok: false, errno: EINVAL });
    expect(t.fd.viommuAlloc({ ...b, data: new Uint8Array(8) })).toEqual({ ok: false, errno: EINVAL });
    expect(t.fd.viommuAlloc({ ...b, data: null, dataLen: 16 })).toEqual({ ok: false, errno: EFAULT });
    expect(t.fd.viommuAlloc({ ...b, data: Uint8Array.of(...new Uint8Array(16), 1) })).toEqual({ ok: false, errno: E2BIG });
    const d2 = new Uint8Array(20);
    expect(t.fd.viommuAlloc({ ...b, data: d2 })).toMatchObject({ ok: true, vintf: 2, mmapOffset: PAGE_SIZE + 0x10000 });
    expect(t.fd.viommuAlloc({ ...b, data: new Uint8Array(16) })).toMatchObject({ ok: true, vintf: 3 });
    expect(t.fd.viommuAlloc({ ...b, data: new Uint8Array(16) })).toEqual({ ok: false, errno: ENOSPC });
  });

  it('mmap of the VINTF page 0: exact offset and length, not executable, shared; it holds the vIOMMU', () => {
    const t = tegra();
    expect(t.fd.mmap(PAGE_SIZE * 2, 0x10000)).toEqual({ ok: false, errno: ENXIO });
    expect(t.fd.mmap(PAGE_SIZE, 0x8000)).toEqual({ ok: false, errno: ENXIO });
    expect(t.fd.mmap(PAGE_SIZE, 0x20000)).toEqual({ ok: false, errno: ENXIO });
    expect(t.fd.mmap(PAGE_SIZE, 0x10000, { exec: true })).toEqual({ ok: false, errno: EPERM });
    expect(t.fd.mmap(PAGE_SIZE, 0x10000, { shared: false })).toEqual({ ok: false, errno: EINVAL });
    const m = ok(t.fd.mmap(PAGE_SIZE, 0x10000));
    expect(m.hostPa).toBe(0x0900_0000 + 0x30000 + 0x20000);
    expect(t.fd.destroy(t.viommuId)).toBe(EBUSY);
    expect(t.fd.munmap(m.mapping)).toBe(0);
    expect(t.fd.destroy(t.viommuId)).toBe(0);
    expect(t.log.at(-1)).toBe('vintf 1 off');
  });

  it('vDEVICE programs a SID_MATCH/SID_REPLACE pair; vSID above UINT_MAX is EINVAL; pairs run out (ENOSPC)', () => {
    const t = tegra();
    const d2 = ok(t.fd.bindDevice(t.host, 0x101)).devId;
    const d3 = ok(t.fd.bindDevice(t.host, 0x102)).devId;
    expect(t.fd.vdeviceAlloc({ viommuId: t.viommuId, devId: t.devId, virtId: 0x1_0000_0000n })).toEqual({ ok: false, errno: EINVAL });
    const v1 = ok(t.fd.vdeviceAlloc({ viommuId: t.viommuId, devId: t.devId, virtId: 0x99 })).vdeviceId;
    ok(t.fd.vdeviceAlloc({ viommuId: t.viommuId, devId: d2, virtId: 0x98 }));
    expect(t.fd.vdeviceAlloc({ viommuId: t.viommuId, devId: d3, virtId: 0x97 })).toEqual({ ok: false, errno: ENOSPC });
    expect(t.fd.destroy(v1)).toBe(0);
    expect(t.fd.vdeviceAlloc({ viommuId: t.viommuId, devId: d3, virtId: 0x97 })).toMatchObject({ ok: true });
    expect(t.log.slice(1)).toEqual(['sid 1.0 99->100', 'sid 1.1 98->101', 'sid 1.0 off', 'sid 1.0 97->102']);
  });

  it('HW_QUEUE_ALLOC core checks, in order', () => {
    const t = tegra();
    const b = { viommuId: t.viommuId, type: IOMMU_HW_QUEUE_TYPE.TEGRA241_CMDQV, index: 0, iova: 0x8000_0000, length: PAGE_SIZE };
    expect(t.fd.hwQueueAlloc({ ...b, type: IOMMU_HW_QUEUE_TYPE.DEFAULT })).toEqual({ ok: false, errno: EOPNOTSUPP });
    expect(t.fd.hwQueueAlloc({ ...b, flags: 1 })).toEqual({ ok: false, errno: EOPNOTSUPP });
    expect(t.fd.hwQueueAlloc({ ...b, length: 0 })).toEqual({ ok: false, errno: EINVAL });
    expect(t.fd.hwQueueAlloc({ ...b, iova: 2n ** 64n - 1n })).toEqual({ ok: false, errno: EOVERFLOW });
    expect(t.fd.hwQueueAlloc({ ...b, viommuId: 99 })).toEqual({ ok: false, errno: ENOENT });
    expect(t.fd.hwQueueAlloc({ ...b, type: 0xdeadbeef })).toEqual({ ok: false, errno: EOPNOTSUPP });
    expect(t.fd.hwQueueAlloc({ ...b, iova: 0x9000_0000 })).toEqual({ ok: false, errno: ENOENT });
    const arm = fixture();
    expect(arm.fd.hwQueueAlloc({ ...b, viommuId: arm.viommuId })).toEqual({ ok: false, errno: EOPNOTSUPP });
  });

  it('ascending allocation (EIO), index range (EINVAL), duplicates (EEXIST), length and alignment (EINVAL)', () => {
    const t = tegra();
    const b = { viommuId: t.viommuId, type: IOMMU_HW_QUEUE_TYPE.TEGRA241_CMDQV, iova: 0x8000_0000, length: PAGE_SIZE };
    expect(t.fd.hwQueueAlloc({ ...b, index: 1 })).toEqual({ ok: false, errno: EIO });
    expect(t.fd.hwQueueAlloc({ ...b, index: 2 })).toEqual({ ok: false, errno: EINVAL }); // 8 VCMDQs / 4 VINTFs
    expect(t.fd.hwQueueAlloc({ ...b, index: 0, length: 3 * 1024 })).toEqual({ ok: false, errno: EINVAL });
    expect(t.fd.hwQueueAlloc({ ...b, index: 0, length: 16 })).toEqual({ ok: false, errno: EINVAL });
    expect(t.fd.hwQueueAlloc({ ...b, index: 0, length: 8192 })).toEqual({ ok: false, errno: EINVAL }); // > 2^(8+4)
    expect(t.fd.hwQueueAlloc({ ...b, index: 0, iova: 0x8000_0800, length: PAGE_SIZE })).toEqual({ ok: false, errno: EINVAL });
    expect(t.fd.describe(t.ioasId)).toMatchObject({ areas: [{ locks: 0 }] });
    const q0 = ok(t.fd.hwQueueAlloc({ ...b, index: 0 }));
    expect(q0.basePa).toBe(0x4000_0000);
    expect(t.fd.hwQueueAlloc({ ...b, index: 0 })).toEqual({ ok: false, errno: EEXIST });
    expect(t.log.at(-1)).toBe('lvcmdq 1.0 40000000 log2 8');
  });

  it('pinning: unmap of pinned pages is EBUSY; a half-page queue at a half-page offset works; destroy runs descending', () => {
    const t = tegra();
    ok(t.fd.ioasMap({ ioasId: t.ioasId, flags: FIXED, userVa: 0x4100_0000, length: PAGE_SIZE, iova: 0x9000_0000 }));
    const b = { viommuId: t.viommuId, type: IOMMU_HW_QUEUE_TYPE.TEGRA241_CMDQV };
    const q0 = ok(t.fd.hwQueueAlloc({ ...b, index: 0, iova: 0x8000_0000, length: PAGE_SIZE }));
    const q1 = ok(t.fd.hwQueueAlloc({ ...b, index: 1, iova: 0x8000_1800, length: PAGE_SIZE / 2 }));
    expect(q1.basePa).toBe(0x4000_1800);
    expect(t.fd.ioasUnmap(t.ioasId, 0x8000_0000, 0x10000)).toEqual({ ok: false, errno: EBUSY });
    expect(t.fd.ioasUnmap(t.ioasId, 0x9000_0000, PAGE_SIZE)).toEqual({ ok: true, unmapped: BigInt(PAGE_SIZE) });
    expect(t.fd.destroy(q0.hwQueueId)).toBe(EBUSY);
    expect(t.fd.destroy(t.viommuId)).toBe(EBUSY);
    expect(t.fd.destroy(q1.hwQueueId)).toBe(0);
    expect(t.fd.destroy(q0.hwQueueId)).toBe(0);
    expect(t.fd.ioasUnmap(t.ioasId, 0x8000_0000, 0x10000)).toEqual({ ok: true, unmapped: 0x10000n });
    expect(t.log.slice(-4)).toEqual(['lvcmdq 1.0 40000000 log2 8', 'lvcmdq 1.1 40001800 log2 7', 'lvcmdq 1.1 off', 'lvcmdq 1.0 off']);
  });

  it('queue pages must be host-contiguous (EFAULT) and their host PA within [47:5] (EINVAL)', () => {
    const t = tegra(12);
    ok(t.fd.ioasMap({ ioasId: t.ioasId, flags: FIXED, userVa: 0x4200_0000, length: PAGE_SIZE, iova: 0x8001_0000 }));
    const b = { viommuId: t.viommuId, type: IOMMU_HW_QUEUE_TYPE.TEGRA241_CMDQV, index: 0 };
    expect(t.fd.hwQueueAlloc({ ...b, iova: 0x8000_f000, length: 2 * PAGE_SIZE })).toEqual({ ok: false, errno: EFAULT });
    ok(t.fd.ioasMap({ ioasId: t.ioasId, flags: FIXED, userVa: 2 ** 48, length: PAGE_SIZE, iova: 0xa000_0000 }));
    expect(t.fd.hwQueueAlloc({ ...b, iova: 0xa000_0000, length: PAGE_SIZE })).toEqual({ ok: false, errno: EINVAL });
    expect(t.fd.describe(t.ioasId)).toMatchObject({ areas: [{ locks: 0 }, { locks: 0 }, { locks: 0 }] });
  });

  it('reportVintfError posts the 128-bit LVCMDQ error map as a TEGRA241_CMDQV vEVENT', () => {
    const t = tegra();
    const q = ok(t.fd.veventqAlloc({ viommuId: t.viommuId, type: IOMMU_VEVENTQ_TYPE.TEGRA241_CMDQV, depth: 4 }));
    expect(t.host.reportVintfError(1, [0x2n, 0n])).toBe(0);
    expect(t.host.reportVintfError(2, [0x1n, 0n])).toBe(ENOENT);
    const r = parseVevents(t.fd.veventqRead(q.fd, 4096).data, 16);
    expect(r).toHaveLength(1);
    expect(readU64(r[0]!.payload, 0)).toBe(2n);
  });

  it('the Tegra vIOMMU invalidates through the main queue like the ARM_SMMUV3 one', () => {
    const t = tegra();
    ok(t.fd.vdeviceAlloc({ viommuId: t.viommuId, devId: t.devId, virtId: 0x5 }));
    const e = new Uint8Array(16);
    e.set([0x40, 0, 0, 0, 0x5, 0, 0, 0]);
    expect(t.fd.invalidate(t.viommuId, { dataType: 1, entryLen: 16, entryNum: 1, entries: e })).toEqual({ errno: 0, entryNum: 1 });
    expect(t.q.commands.map((c) => [...c])).toEqual([[0x40, 0x100, 0, 0]]);
  });
});
