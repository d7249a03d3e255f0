/**
 * HWPT_INVALIDATE on an SMMUv3 vIOMMU (viommu.md §2.2–§2.5, §3.2–§3.3): the core's checks, the
 * array copy rules, entry_num on the Nth bad entry, chunks of 63 commands plus the queue's
 * CMD_SYNC, both entry_num counting modes, and isolation between two VMs on one SMMU.
 *
 * Command words are literal (word 0 = bits [31:0]); VMID is word 1 [15:0], ASID word 1 [31:16],
 * StreamID word 1 (IHI0070 G.b §4.1.6; viommu.md §3.1).
 */

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { E2BIG, EFAULT, EINVAL, EIO, ENOENT, ENOMEM, EOPNOTSUPP, ETIMEDOUT } from '../../src/virt/errno.ts';
import {
  HostSmmu, Iommufd, KMALLOC_MAX_SIZE, RecordingQueue, VIOMMU_CHUNK, invalidationEntries,
} from '../../src/virt/iommufd.ts';
import type { IommufdOptions, InvalidateResult } from '../../src/virt/iommufd.ts';
import { IOMMU_HWPT_ALLOC, IOMMU_HWPT_DATA, IOMMU_HWPT_INVALIDATE_DATA, IOMMU_VIOMMU_TYPE } from '../../src/virt/uapi.ts';

const ARM = IOMMU_HWPT_INVALIDATE_DATA.ARM_SMMUV3;

interface Vm {
  readonly fd: Iommufd;
  readonly viommuId: number;
  readonly vmid: number;
  readonly parentId: number;
  readonly nestedId: number;
  readonly devIds: number[];
}

function ok<T extends { ok: boolean }>(r: T): Extract<T, { ok: true }> {
  if (!r.ok) throw new Error(`unexpected failure ${JSON.stringify(r)}`);
  return r as Extract<T, { ok: true }>;
}

/** A VM: devices (pSID, vSID), a nest parent, a vIOMMU, vDEVICEs and one nested HWPT. */
function vm(host: HostSmmu, devices: [number, number][], opts: IommufdOptions = {}): Vm {
  const fd = new Iommufd(opts);
  const devIds = devices.map(([psid]) => ok(fd.bindDevice(host, psid)).devId);
  const ioasId = ok(fd.ioasAlloc()).ioasId;
  const parentId = ok(fd.hwptAlloc({ flags: IOMMU_HWPT_ALLOC.NEST_PARENT, devId: devIds[0]!, ptId: ioasId, dataType: IOMMU_HWPT_DATA.NONE })).hwptId;
  const v = ok(fd.viommuAlloc({ type: IOMMU_VIOMMU_TYPE.ARM_SMMUV3, devId: devIds[0]!, hwptId: parentId }));
  devices.forEach(([, vsid], i) => ok(fd.vdeviceAlloc({ viommuId: v.viommuId, devId: devIds[i]!, virtId: vsid })));
  const vste = Uint8Array.of(0x0b, 0x10, 0, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0); // V, S1_TRANS, S1ContextPtr 0x8000_1000
  const nestedId = ok(fd.hwptAlloc({ flags: 0, devId: devIds[0]!, ptId: v.viommuId, dataType: IOMMU_HWPT_DATA.ARM_SMMUV3, data: vste })).hwptId;
  return { fd, viommuId: v.viommuId, vmid: v.vmid, parentId, nestedId, devIds };
}

function setup(opts: IommufdOptions = {}): { q: RecordingQueue; host: HostSmmu; a: Vm } {
  const q = new RecordingQueue();
  const host = new HostSmmu({ queue: q });
  return { q, host, a: vm(host, [[0x100, 0x1], [0x101, 0x2]], opts) };
}

/** NH_ASID of ASID `asid`: a convertible command whose output is easy to predict. */
const nhAsid = (asid: number, guestVmid = 0): number[] => [0x11, ((asid << 16) | guestVmid) >>> 0, 0, 0];
const SYNC = [0x46, 0, 0, 0];

function inv(v: Vm, cmds: number[][]): InvalidateResult {
  return v.fd.invalidate(v.viommuId, { dataType: ARM, entryLen: 16, entryNum: cmds.length, entries: invalidationEntries(cmds) });
}

const words = (subs: Uint32Array[][]): number[][][] => subs.map((s) => s.map((c) => [...c]));

describe('the core checks, in order (§2.2, §2.5)', () => {
  it('__reserved ≠ 0: EOPNOTSUPP, entry_num 0', () => {
    const { a } = setup();
    expect(a.fd.hwptInvalidate({ hwptId: a.viommuId, dataType: ARM, entryLen: 16, entryNum: 1, entries: invalidationEntries([SYNC]), reserved: 1 }))
      .toEqual({ errno: EOPNOTSUPP, entryNum: 0 });
  });

  it('entries announced with a NULL pointer or entry_len 0: EINVAL, entry_num 0', () => {
    const { a } = setup();
    expect(a.fd.invalidate(a.viommuId, { dataType: ARM, entryLen: 16, entryNum: 1, entries: null })).toEqual({ errno: EINVAL, entryNum: 0 });
    expect(a.fd.invalidate(a.viommuId, { dataType: ARM, entryLen: 0, entryNum: 1, entries: new Uint8Array(16) })).toEqual({ errno: EINVAL, entryNum: 0 });
  });

  it('an unknown id: ENOENT; the paging parent: EINVAL; the nested HWPT: EOPNOTSUPP (all entry_num 0)', () => {
    const { a } = setup();
    const e = invalidationEntries([nhAsid(1)]);
    expect(a.fd.invalidate(999, { dataType: ARM, entryLen: 16, entryNum: 1, entries: e })).toEqual({ errno: ENOENT, entryNum: 0 });
    expect(a.fd.invalidate(a.parentId, { dataType: ARM, entryLen: 16, entryNum: 1, entries: e })).toEqual({ errno: EINVAL, entryNum: 0 });
    expect(a.fd.invalidate(a.nestedId, { dataType: ARM, entryLen: 16, entryNum: 1, entries: e })).toEqual({ errno: EOPNOTSUPP, entryNum: 0 });
    expect(a.fd.invalidate(a.devIds[0]!, { dataType: ARM, entryLen: 16, entryNum: 1, entries: e })).toEqual({ errno: EINVAL, entryNum: 0 });
  });

  it('an unknown data type: EINVAL, entry_num 0', () => {
    const { a, q } = setup();
    expect(a.fd.invalidate(a.viommuId, { dataType: IOMMU_HWPT_INVALIDATE_DATA.VTD_S1, entryLen: 16, entryNum: 1, entries: invalidationEntries([nhAsid(1)]) }))
      .toEqual({ errno: EINVAL, entryNum: 0 });
    expect(a.fd.invalidate(a.viommuId, { dataType: 0xdadbeef, entryLen: 16, entryNum: 1, entries: invalidationEntries([nhAsid(1)]) }))
      .toEqual({ errno: EINVAL, entryNum: 0 });
    expect(q.submissions).toEqual([]);
  });

  it('entry_num 0 on an SMMUv3 vIOMMU: EINVAL (the full-array copy refuses it, §2.2 code reading)', () => {
    const { a } = setup();
    expect(a.fd.invalidate(a.viommuId, { dataType: ARM, entryLen: 16, entryNum: 0, entries: null })).toEqual({ errno: EINVAL, entryNum: 0 });
    expect(a.fd.invalidate(a.viommuId, { dataType: ARM, entryLen: 0, entryNum: 0, entries: null })).toEqual({ errno: EINVAL, entryNum: 0 });
  });

  it('an array larger than KMALLOC_MAX_SIZE: ENOMEM, entry_num 0', () => {
    const { a } = setup();
    expect(a.fd.invalidate(a.viommuId, { dataType: ARM, entryLen: 16, entryNum: KMALLOC_MAX_SIZE / 16 + 1, entries: new Uint8Array(16) }))
      .toEqual({ errno: ENOMEM, entryNum: 0 });
  });

  it('a user buffer shorter than entry_num × entry_len: EFAULT, entry_num 0', () => {
    const { a } = setup();
    expect(a.fd.invalidate(a.viommuId, { dataType: ARM, entryLen: 16, entryNum: 2, entries: invalidationEntries([nhAsid(1)]) }))
      .toEqual({ errno: EFAULT, entryNum: 0 });
    expect(a.fd.invalidate(a.viommuId, { dataType: ARM, entryLen: 24, entryNum: 2, entries: new Uint8Array(40) }))
      .toEqual({ errno: EFAULT, entryNum: 0 });
  });
});

describe('entry_len (§2.3)', () => {
  it('8: each entry is zero-extended, so dword 1 is 0', () => {
    const { a, q } = setup();
    // Two 8-byte entries: TLBI_NH_VA ASID 5, TLBI_NH_ALL.
    const e = Uint8Array.of(0x12, 0, 0, 0, 0x07, 0, 0x05, 0, 0x10, 0, 0, 0, 0, 0, 0, 0);
    expect(a.fd.invalidate(a.viommuId, { dataType: ARM, entryLen: 8, entryNum: 2, entries: e })).toEqual({ errno: 0, entryNum: 2 });
    expect(words(q.submissions)).toEqual([[[0x12, 0x0005_0000 | a.vmid, 0, 0], [0x10, a.vmid, 0, 0]]]);
  });

  it('1: a single opcode byte is a whole command', () => {
    const { a, q } = setup();
    expect(a.fd.invalidate(a.viommuId, { dataType: ARM, entryLen: 1, entryNum: 2, entries: Uint8Array.of(0x30, 0x11) })).toEqual({ errno: 0, entryNum: 2 });
    expect(words(q.submissions)).toEqual([[[0x10, a.vmid, 0, 0], [0x11, a.vmid, 0, 0]]]);
  });

  it('24 with zero tails is accepted; a non-zero byte in any tail is E2BIG before anything is converted', () => {
    const { a, q } = setup();
    const e = new Uint8Array(72);
    e.set(invalidationEntries([nhAsid(1)]), 0);
    e.set(invalidationEntries([nhAsid(2)]), 24);
    e.set(invalidationEntries([nhAsid(3)]), 48);
    expect(a.fd.invalidate(a.viommuId, { dataType: ARM, entryLen: 24, entryNum: 3, entries: e })).toEqual({ errno: 0, entryNum: 3 });
    expect(q.commands.map((c) => c[1])).toEqual([0x0001_0000 | a.vmid, 0x0002_0000 | a.vmid, 0x0003_0000 | a.vmid]);
    e[48 + 16 + 7] = 1; // the tail of the third entry
    expect(a.fd.invalidate(a.viommuId, { dataType: ARM, entryLen: 24, entryNum: 3, entries: e })).toEqual({ errno: E2BIG, entryNum: 0 });
    expect(q.submissions).toHaveLength(1);
  });
});

describe('stop at the first failing entry (§2.4, §3.3)', () => {
  it('the 2nd of 2 entries is CMD_SYNC: EIO, entry_num 1, and (Linux) the 1st never reaches the queue', () => {
    const { a, q } = setup();
    expect(inv(a, [nhAsid(1), SYNC])).toEqual({ errno: EIO, entryNum: 1 });
    expect(q.submissions).toEqual([]);
  });

  it('the same in contract counting: the 1st entry is issued before EIO is reported', () => {
    const { a, q } = setup({ counting: 'contract' });
    expect(inv(a, [nhAsid(1), SYNC])).toEqual({ errno: EIO, entryNum: 1 });
    expect(words(q.submissions)).toEqual([[[0x11, 0x0001_0000 | a.vmid, 0, 0]]]);
  });

  it('the first entry bad: entry_num 0', () => {
    const { a, q } = setup({ counting: 'contract' });
    expect(inv(a, [[0x04, 0, 31, 0], nhAsid(1)])).toEqual({ errno: EIO, entryNum: 0 });
    expect(q.submissions).toEqual([]);
  });

  it('an unknown vSID in the Nth entry: EIO, entry_num N−1', () => {
    const { a } = setup();
    expect(inv(a, [nhAsid(1), [0x40, 0x1, 0, 0], [0x05, 0x2, 0, 0], [0x06, 0x77, 0, 0]])).toEqual({ errno: EIO, entryNum: 3 });
  });
});

describe('chunks of 63 plus the queue\'s CMD_SYNC (§3.3)', () => {
  const many = (n: number): number[][] => Array.from({ length: n }, (_, i) => nhAsid(i + 1));

  it('63 entries: one submission; 64: two (63 + 1); 130: three (63, 63, 4)', () => {
    for (const [n, sizes] of [[63, [63]], [64, [63, 1]], [126, [63, 63]], [130, [63, 63, 4]]] as const) {
      const { a, q } = setup();
      expect(inv(a, many(n))).toEqual({ errno: 0, entryNum: n });
      expect(q.submissions.map((s) => s.length)).toEqual(sizes);
      expect(q.commands.map((c) => c[1]! >>> 16)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
      expect(q.commands.every((c) => (c[1]! & 0xffff) === a.vmid)).toBe(true);
    }
    expect(VIOMMU_CHUNK).toBe(63);
  });

  it('130 entries, the 71st (index 70) refused: Linux issues chunk 1 only and reports 70', () => {
    const { a, q } = setup();
    const c = many(130);
    c[70] = SYNC;
    expect(inv(a, c)).toEqual({ errno: EIO, entryNum: 70 });
    expect(q.submissions.map((s) => s.length)).toEqual([63]);
  });

  it('the same in contract counting: entries 63..69 are issued first, then 70 is reported', () => {
    const { a, q } = setup({ counting: 'contract' });
    const c = many(130);
    c[70] = SYNC;
    expect(inv(a, c)).toEqual({ errno: EIO, entryNum: 70 });
    expect(q.submissions.map((s) => s.length)).toEqual([63, 7]);
    expect(q.commands.map((x) => x[1]! >>> 16)).toEqual(Array.from({ length: 70 }, (_, i) => i + 1));
  });

  it('the 2nd submission times out: Linux reports 125 (every entry of the chunk but its last)', () => {
    const { a, q } = setup();
    q.failAt = { submission: 1, errno: ETIMEDOUT, failedIndex: 10 };
    expect(inv(a, many(130))).toEqual({ errno: ETIMEDOUT, entryNum: 125 });
    expect(q.submissions.map((s) => s.length)).toEqual([63, 63]);
  });

  it('the same in contract counting: 63 + the 10 the queue completed', () => {
    const { a, q } = setup({ counting: 'contract' });
    q.failAt = { submission: 1, errno: ETIMEDOUT, failedIndex: 10 };
    expect(inv(a, many(130))).toEqual({ errno: ETIMEDOUT, entryNum: 73 });
  });

  it('a timeout of the only chunk of 1: entry_num 0', () => {
    const { a, q } = setup();
    q.failAt = { submission: 0, errno: ETIMEDOUT, failedIndex: 1 };
    expect(inv(a, [nhAsid(1)])).toEqual({ errno: ETIMEDOUT, entryNum: 0 });
  });

  it('the guest\'s words are copied before conversion: changing them afterwards changes nothing', () => {
    const { a, q } = setup();
    const e = invalidationEntries([nhAsid(9, 0x55)]);
    expect(a.fd.invalidate(a.viommuId, { dataType: ARM, entryLen: 16, entryNum: 1, entries: e })).toEqual({ errno: 0, entryNum: 1 });
    expect([...e.subarray(4, 8)]).toEqual([0x55, 0, 9, 0]);
    expect(words(q.submissions)).toEqual([[[0x11, 0x0009_0000 | a.vmid, 0, 0]]]);
  });
});

describe('the legality policy (commandCheck: legality)', () => {
  it('refuses SSec = 1 and RES0 bits with EIO; the kernel policy passes them on', () => {
    const ssec = [0x0000_0411, 0x0001_0000, 0, 0];
    const res0 = [0x11, 0x0001_0000, 0x8, 0]; // bit 67 is RES0 in TLBI_NH_ASID
    const strict = setup({ commandCheck: 'legality' });
    expect(inv(strict.a, [nhAsid(1), ssec])).toEqual({ errno: EIO, entryNum: 1 });
    expect(inv(strict.a, [res0])).toEqual({ errno: EIO, entryNum: 0 });
    const kernel = setup();
    expect(inv(kernel.a, [ssec, res0])).toEqual({ errno: 0, entryNum: 2 });
    expect(words(kernel.q.submissions)).toEqual([[[0x411, 0x0001_0000 | kernel.a.vmid, 0, 0], [0x11, 0x0001_0000 | kernel.a.vmid, 0x8, 0]]]);
  });
});

describe('isolation: two VMs on one SMMU', () => {
  function two(): { q: RecordingQueue; a: Vm; b: Vm } {
    const q = new RecordingQueue();
    const host = new HostSmmu({ queue: q });
    // Both guests use vSID 1; the physical streams differ.
    const a = vm(host, [[0x100, 0x1], [0x101, 0x2]]);
    const b = vm(host, [[0x200, 0x1], [0x201, 0x7]]);
    return { q, a, b };
  }

  it('the VMs get distinct VMIDs from the shared allocator', () => {
    const { a, b } = two();
    expect([a.vmid, b.vmid]).toEqual([1, 2]);
  });

  it('a VMID written by the guest is overwritten with its own', () => {
    const { q, a, b } = two();
    expect(inv(a, [nhAsid(3, b.vmid), [0x10, b.vmid, 0, 0], [0x12, (0x0003_0000 | b.vmid) >>> 0, 0x1000_0000, 0]])).toEqual({ errno: 0, entryNum: 3 });
    expect(words(q.submissions)).toEqual([[
      [0x11, 0x0003_0000 | a.vmid, 0, 0],
      [0x10, a.vmid, 0, 0],
      [0x12, 0x0003_0000 | a.vmid, 0x1000_0000, 0],
    ]]);
  });

  it('the same vSID names each VM\'s own stream; another VM\'s vSID is EIO', () => {
    const { q, a, b } = two();
    expect(inv(a, [[0x40, 0x1, 0x34, 0]])).toEqual({ errno: 0, entryNum: 1 });
    expect(inv(b, [[0x40, 0x1, 0x34, 0]])).toEqual({ errno: 0, entryNum: 1 });
    expect(q.commands.map((c) => c[1])).toEqual([0x100, 0x200]);
    expect(inv(a, [[0x40, 0x7, 0x34, 0]])).toEqual({ errno: EIO, entryNum: 0 });
    expect(inv(a, [[0x05, 0x200, 0, 0]])).toEqual({ errno: EIO, entryNum: 0 });
  });

  it('global, EL2, EL3, stage-2 and CFGI_ALL commands never reach the queue', () => {
    const { q, a, b } = two();
    const hostile = [[0x04, 0, 31, 0], [0x03, 0x1, 0, 0], [0x28, b.vmid, 0, 0], [0x2a, b.vmid, 0x1000, 0], [0x20, 0, 0, 0], [0x18, 0, 0, 0], [0x60, 0, 0, 0], [0x46, 0, 0, 0]];
    for (const h of hostile) expect(inv(a, [h])).toEqual({ errno: EIO, entryNum: 0 });
    expect(inv(a, [[0x30, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff]])).toEqual({ errno: 0, entryNum: 1 });
    expect(words(q.submissions)).toEqual([[[0x10, a.vmid, 0, 0]]]);
  });

  it('property: any raw entries from VM A reach the queue only with A\'s VMID or A\'s StreamIDs', () => {
    const { q, a } = two();
    const cmd = fc.tuple(
      fc.oneof(fc.constantFrom(0x05, 0x06, 0x10, 0x11, 0x12, 0x13, 0x30, 0x40, 0x03, 0x04, 0x28, 0x46), fc.integer({ min: 0, max: 255 })),
      fc.integer({ min: 0, max: 0xffff_ff }),
      fc.oneof(fc.constantFrom(0x1, 0x2, 0x7, 0x100, 0x200), fc.integer({ min: 0, max: 0xffff_ffff })),
      fc.integer({ min: 0, max: 0xffff_ffff }),
      fc.integer({ min: 0, max: 0xffff_ffff }),
    ).map(([op, hi, w1, w2, w3]) => [((hi << 8) | op) >>> 0, w1, w2, w3]);
    fc.assert(
      fc.property(fc.array(cmd, { minLength: 1, maxLength: 80 }), (cmds) => {
        q.submissions.length = 0;
        const r = inv(a, cmds);
        expect(r.entryNum).toBeLessThanOrEqual(cmds.length);
        for (const c of q.commands) {
          const op = c[0]! & 0xff;
          if (op >= 0x10 && op <= 0x13) expect(c[1]! & 0xffff).toBe(a.vmid);
          else if (op === 0x40 || op === 0x05 || op === 0x06) expect([0x100, 0x101]).toContain(c[1]);
          else throw new Error(`opcode 0x${op.toString(16)} reached the queue`);
        }
        expect(q.commands.length).toBeLessThanOrEqual(r.entryNum);
      }),
      { numRuns: 300 },
    );
  });
});
