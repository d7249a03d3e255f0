/**
 * How a guest's command reaches the SMMU on the 'trap' and 'kernel-queue' paths (src/virt/vsmmu.ts,
 * vmm-worker.ts, src/system/vms.ts; shared/reference/viommu.md §2-§3).
 *
 * Part 1 drives the forwarder (the virtual SMMU's command backend) directly, with a recording
 * physical queue: exact physical commands, submissions and ioctl counts per path and batching
 * mode, the refusals, and the re-shadowed STEs field by field.
 *
 * Part 2 runs the same guest driver code and workload in three VMs of one System (trap with one
 * command per ioctl, trap batched up to each CMD_SYNC, the in-kernel queue) and checks the
 * observable effect on translations (sys.dma), the physical commands in the device trace, and
 * the per-path counters the cost model uses.
 *
 * Command words are literal where an expected value is asserted (word 0 = bits [31:0]): TLBI
 * VMID [47:32] = word 1 [15:0], ASID [63:48] = word 1 [31:16] (§4.4.2); CFGI StreamID [63:32] =
 * word 1, SubstreamID [31:12] of word 0, Leaf [64] = word 2 bit 0 (§4.3.1-§4.3.4).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CommandQueue } from '../../src/device/cmdq.ts';
import { Board } from '../../src/mem/board.ts';
import { PhysMem } from '../../src/mem/phys.ts';
import { CERROR_ILL, CERROR_NONE } from '../../src/spec/cerror.ts';
import { encodeCommandWords } from '../../src/spec/command-codec.ts';
import { FULL_FEATURES } from '../../src/spec/features.ts';
import { REG } from '../../src/spec/registers.ts';
import { STE, STE_BYTES, STE_CONFIG, STE_S1DSS, STE_STRW, decodeStructure, encodeStructure, type FieldName } from '../../src/spec/structures.ts';
import { HostSmmu } from '../../src/virt/iommufd.ts';
import {
  AssignedVmid, CountingQueue, VirtualIommu, VsmmuForwarder, mirroredStage2, vsmmuFeatures, zeroCounters,
  type TrapBatch, type VmPath, type VsmmuCounters,
} from '../../src/virt/vsmmu.ts';
import { System } from '../../src/system/system.ts';
import type { Vm } from '../../src/system/vms.ts';

// ---------------------------------------------------------------------------------------------
// Part 1: the forwarder
// ---------------------------------------------------------------------------------------------

const VMID = 5;
const IPA = 0x4000_0000;
const GUEST_BYTES = 0x4_0000;
/** The guest's linear Stream table (IPA) and the CD table its STEs point at. */
const STRTAB = IPA + 0x1_0000;
const CDTAB = IPA + 0x2_0000;
const Q = {} as CommandQueue;
const F = REG.SMMU_CR0.f;

/** The host driver's stage 2 STE of the VM (§5.2; tables.ts steStage2 fields). */
const S2_STE = encodeStructure(STE, {
  V: 1, Config: STE_CONFIG.S2_TRANS, S2VMID: VMID, S2T0SZ: 20, S2SL0: 2, S2TG: 0, S2PS: 5, S2AA64: 1, S2PTW: 1, S2R: 1, S2TTB: 0x4080_0000,
});

interface Rig {
  readonly fwd: VsmmuForwarder;
  readonly vm: VirtualIommu;
  /** Physical submissions, each a list of 4-word commands (the host adds one CMD_SYNC to each). */
  readonly subs: number[][][];
  /** Physical STEs installed: [StreamID, 16 words]. */
  readonly stes: [number, number[]][];
  readonly mem: PhysMem;
  readonly regs: Map<number, number>;
  readonly c: VsmmuCounters;
}

function rig(path: VmPath, trapBatch?: TrapBatch, o: { enabled?: boolean } = {}): Rig {
  const board = Board.create({ windows: [], ramBytes: 0x10_0000 });
  const mem = new PhysMem(board, { base: IPA, hostPa: board.layout.ram.base + 0x8_0000, bytes: GUEST_BYTES });
  const subs: number[][][] = [];
  const stes: [number, number[]][] = [];
  const c = zeroCounters();
  const queue = new CountingQueue({ submit: (cmds) => (subs.push(cmds.map((x) => [...x])), { ok: true, recovered: 0 }) }, c);
  const host = new HostSmmu({
    features: FULL_FEATURES, queue, vmids: new AssignedVmid(16, VMID), pagingDomain: mirroredStage2(S2_STE),
    installSte: (sid, ste) => stes.push([sid, [...ste]]),
  });
  const vm = new VirtualIommu(host, { devices: [{ vsid: 1, psid: 0x100 }, { vsid: 2, psid: 0x101 }, { vsid: 3, psid: 0x102 }], ram: { ipa: IPA, hostPa: 0x4408_0000, bytes: GUEST_BYTES }, gbpaAbort: false });
  // The guest's SMMU: a linear table of 2^6 STEs at STRTAB (§6.3.24-25), SMMUEN as asked.
  const regs = new Map<number, number>([
    [REG.SMMU_STRTAB_BASE.offset, STRTAB],
    [REG.SMMU_STRTAB_BASE_CFG.offset, 6],
    [REG.SMMU_CR0ACK.offset, o.enabled === false ? 0 : 1 << F.SMMUEN.lsb],
  ]);
  const fwd = new VsmmuForwarder({
    path, ...(trapBatch !== undefined ? { trapBatch } : {}), vm, guestMem: mem, guestRegs: { get32: (off) => regs.get(off) ?? 0 },
    guestFeatures: vsmmuFeatures(FULL_FEATURES), counters: c,
  });
  stes.length = 0;
  return { fwd, vm, subs, stes, mem, regs, c };
}

const w = (c: Parameters<typeof encodeCommandWords>[0]): Uint32Array => encodeCommandWords(c);
const SYNC = w({ name: 'CMD_SYNC' });
/** NH_ASID ASID 7 with the guest's VMID field 0, and its conversion (VMID 5). */
const NH_ASID = w({ name: 'CMD_TLBI_NH_ASID', ASID: 7 });
const NH_ASID_P = [0x11, 0x0007_0005, 0, 0];
/** NH_VA ASID 7, Address 0x1234_5000, Leaf (§4.4.2.4): Address [63:12] of dword 1. */
const NH_VA = w({ name: 'CMD_TLBI_NH_VA', ASID: 7, Address: 0x1234_5000, Leaf: 1 });
const NH_VA_P = [0x12, 0x0007_0005, 0x1234_5001, 0];

function counts(c: VsmmuCounters): Partial<VsmmuCounters> {
  const { ioctls, invalidateIoctls, physicalSubmissions, physicalCommands, physicalSyncs, guestInvalidations, guestCommands, guestSyncs, refused, skipped, ignored, reshadows } = c;
  return { ioctls, invalidateIoctls, physicalSubmissions, physicalCommands, physicalSyncs, guestInvalidations, guestCommands, guestSyncs, refused, skipped, ignored, reshadows };
}

describe('the guest-visible SMMU (vsmmuFeatures)', () => {
  it('is stage 1 only, MSI, no ECMDQ, ATS, PRI or stalls, with the host granules, RIL and a 44-bit OAS', () => {
    const f = vsmmuFeatures(FULL_FEATURES);
    expect([f.s1, f.s2, f.hyp, f.vmw, f.msi, f.ecmdq, f.ats, f.pri, f.dpt, f.mpam, f.stallModel]).toEqual([true, false, false, false, true, false, false, false, false, false, 'no-stall']);
    expect([f.ril, f.gran4k, f.gran16k, f.gran64k, f.cd2l, f.stLevel2, f.sidSize, f.oas, f.ds]).toEqual([true, true, true, true, true, true, 16, 4, false]);
    expect(vsmmuFeatures({ ...FULL_FEATURES, ril: false, oas: 2 }).ril).toBe(false);
    expect(vsmmuFeatures({ ...FULL_FEATURES, oas: 2 }).oas).toBe(2);
    expect(() => vsmmuFeatures(FULL_FEATURES, { hyp: true })).toThrow(/hyp needs s1 and s2/);
  });
});

describe('trap, one command per HWPT_INVALIDATE (QEMU)', () => {
  it('each invalidation is one ioctl and one physical submission; the guest CMD_SYNC sends nothing', () => {
    const r = rig('trap');
    expect(r.fwd.command(Q, NH_ASID)).toBe(CERROR_NONE);
    expect(r.fwd.command(Q, NH_VA)).toBe(CERROR_NONE);
    expect(r.subs).toEqual([[NH_ASID_P], [NH_VA_P]]);
    expect(r.fwd.sync(Q)).toBe(CERROR_NONE);
    expect(r.subs.length).toBe(2);
    expect(counts(r.c)).toEqual({
      ioctls: 2, invalidateIoctls: 2, physicalSubmissions: 2, physicalCommands: 2, physicalSyncs: 2, guestInvalidations: 2,
      guestCommands: 3, guestSyncs: 1, refused: 0, skipped: 0, ignored: 0, reshadows: 0,
    });
  });

  it('NSNH_ALL becomes NH_ALL of the VM; a foreign VMID in NH_* is overwritten; ASID, Address and Leaf are kept (§3.2)', () => {
    const r = rig('trap');
    r.fwd.command(Q, w({ name: 'CMD_TLBI_NSNH_ALL' }));
    r.fwd.command(Q, Uint32Array.of(0x12, 0x0007_0063, 0x1234_5001, 0)); // VMID 0x63 in the guest's words
    expect(r.subs).toEqual([[[0x10, VMID, 0, 0]], [NH_VA_P]]);
  });

  it('CFGI_CD and CFGI_CD_ALL go out with the physical StreamID; a vSID without a device is consumed with no effect', () => {
    const r = rig('trap');
    expect(r.fwd.command(Q, w({ name: 'CMD_CFGI_CD', StreamID: 2, SubstreamID: 3, Leaf: 1 }))).toBe(CERROR_NONE);
    expect(r.fwd.command(Q, w({ name: 'CMD_CFGI_CD_ALL', StreamID: 3 }))).toBe(CERROR_NONE);
    expect(r.fwd.command(Q, w({ name: 'CMD_CFGI_CD', StreamID: 9, Leaf: 1 }))).toBe(CERROR_NONE);
    expect(r.fwd.command(Q, w({ name: 'CMD_CFGI_CD_ALL', StreamID: 0x100 }))).toBe(CERROR_NONE);
    expect(r.subs).toEqual([[[0x3005, 0x101, 1, 0]], [[0x06, 0x102, 0, 0]]]);
    expect([r.c.skipped, r.c.ioctls, r.c.guestInvalidations]).toEqual([2, 2, 2]);
  });

  it('an opcode the host never takes from a guest is CERROR_ILL at that command, with no ioctl', () => {
    for (const name of ['CMD_TLBI_EL2_ALL', 'CMD_TLBI_S12_VMALL', 'CMD_TLBI_S2_IPA', 'CMD_CFGI_VMS_PIDM', 'CMD_RESUME', 'CMD_PRI_RESP'] as const) {
      const r = rig('trap');
      expect(r.fwd.command(Q, w({ name }))).toBe(CERROR_ILL);
      expect([r.subs.length, r.c.ioctls, r.c.refused]).toEqual([0, 0, 1]);
    }
  });

  it('CMD_PREFETCH_CONFIG and CMD_PREFETCH_ADDR are consumed with no effect', () => {
    const r = rig('trap');
    expect(r.fwd.command(Q, w({ name: 'CMD_PREFETCH_CONFIG', StreamID: 1 }))).toBe(CERROR_NONE);
    expect(r.fwd.command(Q, w({ name: 'CMD_PREFETCH_ADDR', StreamID: 1 }))).toBe(CERROR_NONE);
    expect([r.subs.length, r.c.ignored, r.c.ioctls]).toEqual([0, 2, 0]);
  });
});

describe('trap, batched up to each CMD_SYNC', () => {
  it('everything up to the CMD_SYNC is one ioctl; the kernel splits it into chunks of 63 (§3.3)', () => {
    const r = rig('trap', 'sync');
    for (let i = 0; i < 70; i++) expect(r.fwd.command(Q, NH_ASID)).toBe(CERROR_NONE);
    expect(r.subs.length).toBe(0);
    expect(r.fwd.sync(Q)).toBe(CERROR_NONE);
    expect(r.subs.map((s) => s.length)).toEqual([63, 7]);
    expect(r.subs.flat().every((c) => c.join() === NH_ASID_P.join())).toBe(true);
    expect([r.c.ioctls, r.c.physicalSubmissions, r.c.physicalSyncs, r.c.physicalCommands]).toEqual([1, 2, 2, 70]);
  });

  it('a refused command first sends the batch before it, then stops the queue with CERROR_ILL', () => {
    const r = rig('trap', 'sync');
    r.fwd.command(Q, NH_ASID);
    expect(r.fwd.command(Q, w({ name: 'CMD_TLBI_EL2_ALL' }))).toBe(CERROR_ILL);
    expect(r.subs).toEqual([[NH_ASID_P]]);
    expect([r.c.ioctls, r.c.refused]).toEqual([1, 1]);
  });

  it('a consumer that goes idle without a CMD_SYNC sends what it batched (flush)', () => {
    const r = rig('trap', 'sync');
    r.fwd.command(Q, NH_VA);
    r.fwd.flush();
    expect(r.subs).toEqual([[NH_VA_P]]);
  });
});

describe('kernel-queue: the host kernel consumes the guest queue', () => {
  it('converts in place and submits up to the CMD_SYNC as one batch, 63 per chunk, with no ioctl', () => {
    const r = rig('kernel-queue');
    for (let i = 0; i < 64; i++) r.fwd.command(Q, NH_VA);
    // The 63rd command completed a chunk: it went out at once, with the host's CMD_SYNC.
    expect(r.subs.map((s) => s.length)).toEqual([63]);
    r.fwd.command(Q, w({ name: 'CMD_CFGI_CD', StreamID: 1, SubstreamID: 0, Leaf: 1 }));
    expect(r.fwd.sync(Q)).toBe(CERROR_NONE);
    expect(r.subs.map((s) => s.length)).toEqual([63, 2]);
    expect(r.subs[1]).toEqual([NH_VA_P, [0x05, 0x100, 1, 0]]);
    expect(counts(r.c)).toEqual({
      ioctls: 0, invalidateIoctls: 0, physicalSubmissions: 2, physicalCommands: 65, physicalSyncs: 2, guestInvalidations: 65,
      guestCommands: 66, guestSyncs: 1, refused: 0, skipped: 0, ignored: 0, reshadows: 0,
    });
  });

  it('a vSID without a vDEVICE is the kernel\'s EIO: what came before is submitted, then CERROR_ILL', () => {
    const r = rig('kernel-queue');
    r.fwd.command(Q, NH_ASID);
    expect(r.fwd.command(Q, w({ name: 'CMD_CFGI_CD', StreamID: 0x101, Leaf: 1 }))).toBe(CERROR_ILL);
    expect(r.subs).toEqual([[NH_ASID_P]]);
    expect([r.c.refused, r.c.errors, r.c.guestInvalidations]).toEqual([1, 1, 1]);
  });
});

// ---------------------------------------------------------------------------------------------
// Re-shadowing
// ---------------------------------------------------------------------------------------------

/** A guest STE for vSID `sid` in the guest's linear table (§5.2). */
function writeGuestSte(r: Rig, sid: number, values: Partial<Record<FieldName<typeof STE>, number | bigint>>): void {
  r.mem.writeWords(STRTAB + sid * STE_BYTES, encodeStructure(STE, values));
}

const S1_GUEST = { V: 1, Config: STE_CONFIG.S1_TRANS, S1ContextPtr: CDTAB, S1CDMax: 0, S1DSS: STE_S1DSS.SSID0, S1CIR: 1, S1COR: 1, S1CSH: 3 };

describe('CFGI_STE, CFGI_STE_RANGE and CFGI_ALL re-shadow the guest STE (§4.3.7 guidance, QEMU install_ste)', () => {
  it('a stage 1 STE becomes the nested STE: guest stage 1 fields, the host stage 2, MEV; the guest\'s STRW, S2VMID and SHCFG never reach it', () => {
    for (const path of ['trap', 'kernel-queue'] as const) {
      const r = rig(path);
      writeGuestSte(r, 2, { ...S1_GUEST, STRW: STE_STRW.EL2, S2VMID: 0x77, SHCFG: 1, MEV: 0 });
      expect(r.fwd.command(Q, w({ name: 'CMD_CFGI_STE', StreamID: 2, Leaf: 1 }))).toBe(CERROR_NONE);
      expect(r.stes.length).toBe(1);
      const [sid, ste] = r.stes[0]!;
      const d = decodeStructure(STE, ste).fields;
      expect(sid).toBe(0x101);
      expect([d.V, d.Config, d.S1ContextPtr, d.S1DSS, d.S1CIR, d.S1COR, d.S1CSH, d.MEV].map(Number)).toEqual([1, STE_CONFIG.NESTED, CDTAB, 2, 1, 1, 3, 1]);
      expect([d.STRW, d.S2VMID, d.SHCFG, d.S2T0SZ, d.S2TTB, d.S2PS].map(Number)).toEqual([0, VMID, 0, 20, 0x4080_0000, 5]);
      // trap: HWPT_ALLOC and the attach are ioctls; the kernel consumer makes no ioctl.
      expect([r.c.reshadows, r.c.ioctls]).toEqual([1, path === 'trap' ? 2 : 0]);
      // Re-shadowing again replaces the nested HWPT and destroys the old one.
      r.fwd.command(Q, w({ name: 'CMD_CFGI_STE', StreamID: 2, Leaf: 1 }));
      expect(r.c.ioctls).toBe(path === 'trap' ? 5 : 0);
      expect(r.vm.device(2)!.s1Hwpt).toBeDefined();
    }
  });

  it('an invalid or abort STE aborts, a bypass STE is the stage 2 STE; a StreamID without a device changes nothing', () => {
    const r = rig('trap');
    writeGuestSte(r, 1, { V: 1, Config: STE_CONFIG.BYPASS });
    writeGuestSte(r, 2, { V: 0 });
    r.fwd.command(Q, w({ name: 'CMD_CFGI_STE', StreamID: 1, Leaf: 1 }));
    r.fwd.command(Q, w({ name: 'CMD_CFGI_STE', StreamID: 2, Leaf: 1 }));
    r.fwd.command(Q, w({ name: 'CMD_CFGI_STE', StreamID: 9, Leaf: 1 }));
    // Device 1 already followed GBPA (bypass): nothing to write. Device 2 aborts.
    expect(r.stes).toEqual([[0x101, [...encodeStructure(STE, { V: 1, Config: STE_CONFIG.ABORT })]]]);
    expect(r.vm.device(2)!.attached).toBe(r.vm.abortHwpt);
    expect(r.vm.device(1)!.attached).toBe(r.vm.bypassHwpt);
  });

  it('CFGI_STE_RANGE covers 2^(Range+1) StreamIDs from the aligned StreamID; CFGI_ALL covers every device', () => {
    const r = rig('kernel-queue');
    for (const sid of [1, 2, 3]) writeGuestSte(r, sid, S1_GUEST);
    // Range 0 at StreamID 3: StreamIDs 2 and 3 (§4.3.2).
    r.fwd.command(Q, w({ name: 'CMD_CFGI_STE_RANGE', StreamID: 3, Range: 0 }));
    expect(r.stes.map(([s]) => s)).toEqual([0x101, 0x102]);
    r.fwd.command(Q, w({ name: 'CMD_CFGI_ALL' }));
    expect(r.stes.map(([s]) => s)).toEqual([0x101, 0x102, 0x100, 0x101, 0x102]);
    expect(r.c.reshadows).toBe(5);
  });

  it('a configuration the vSMMU does not have, or a vSTE the kernel refuses, is CERROR_ILL and the device aborts', () => {
    const r = rig('trap');
    writeGuestSte(r, 1, { ...S1_GUEST });
    r.fwd.command(Q, w({ name: 'CMD_CFGI_STE', StreamID: 1, Leaf: 1 }));
    writeGuestSte(r, 1, { V: 1, Config: STE_CONFIG.S2_TRANS });
    expect(r.fwd.command(Q, w({ name: 'CMD_CFGI_STE', StreamID: 1, Leaf: 1 }))).toBe(CERROR_ILL);
    expect(r.vm.device(1)!.attached).toBe(r.vm.abortHwpt);
    // S1ContextPtr bit 53: inside the spec's field, outside the kernel's [51:6] (EIO).
    writeGuestSte(r, 1, { ...S1_GUEST, S1ContextPtr: (1n << 53n) + BigInt(CDTAB) });
    expect(r.fwd.command(Q, w({ name: 'CMD_CFGI_STE', StreamID: 1, Leaf: 1 }))).toBe(CERROR_ILL);
    expect([r.c.refused, r.c.errors]).toEqual([2, 2]);
    expect(r.stes.at(-1)).toEqual([0x100, [...encodeStructure(STE, { V: 1, Config: STE_CONFIG.ABORT })]]);
  });

  it('while the guest SMMUEN is 0 every device follows GBPA.ABORT; SMMUEN rising re-shadows them all', () => {
    const r = rig('trap', undefined, { enabled: false });
    writeGuestSte(r, 3, S1_GUEST);
    r.fwd.command(Q, w({ name: 'CMD_CFGI_ALL' }));
    expect(r.stes).toEqual([]);
    r.regs.set(REG.SMMU_GBPA.offset, 1 << REG.SMMU_GBPA.f.ABORT.lsb);
    expect(r.fwd.controlChanged()).toBe(0);
    expect(r.stes.map(([s, ste]) => [s, ste.slice(0, 2)])).toEqual([[0x100, [1, 0]], [0x101, [1, 0]], [0x102, [1, 0]]]);
    r.stes.length = 0;
    r.regs.set(REG.SMMU_CR0ACK.offset, 1 << F.SMMUEN.lsb);
    r.fwd.controlChanged();
    // Devices 1 and 2 have invalid guest STEs (still abort); device 3 translates.
    expect(r.stes.map(([s, ste]) => [s, Number(decodeStructure(STE, ste).fields.Config)])).toEqual([[0x102, STE_CONFIG.NESTED]]);
  });
});

// ---------------------------------------------------------------------------------------------
// Part 2: three VMs, the same guest driver and workload
// ---------------------------------------------------------------------------------------------

const POLICY = { mode: 'hybrid' as const, spin: 200, timeoutMs: 5000 };
const IOVA = 0x1000_0000;
const PAGE = 4096;

let sys: System;

beforeAll(async () => {
  sys = await System.start({
    policy: POLICY,
    trace: true,
    vms: [
      { path: 'trap', devices: [{ vsid: 1, psid: 0x10 }] },
      { path: 'trap', trapBatch: 'sync', devices: [{ vsid: 1, psid: 0x11 }] },
      { path: 'kernel-queue', devices: [{ vsid: 1, psid: 0x12 }] },
    ],
  });
}, 30_000);

afterAll(async () => {
  await sys?.stop();
});

/** Physical commands traced since `from` (CMD_SYNCs left out), as words. */
function physical(from: number): number[][] {
  return sys.trace().entries.slice(from).filter((e) => (e.words[0] & 0xff) !== 0x46).map((e) => [...e.words]);
}

const PER_PATH: { name: string; vm: number; ioctls5: number; syncs5: number; userExits: number }[] = [
  { name: 'trap, one command per ioctl', vm: 0, ioctls5: 5, syncs5: 5, userExits: 1 },
  { name: 'trap, batched to the CMD_SYNC', vm: 1, ioctls5: 1, syncs5: 1, userExits: 1 },
  { name: 'kernel-queue', vm: 2, ioctls5: 0, syncs5: 1, userExits: 0 },
];

describe.each(PER_PATH)('$name: the guest driver, unchanged, on its virtual SMMU', ({ vm: k, ioctls5, syncs5, userExits }) => {
  let vm: Vm;
  let psid: number;
  let domain: number;
  const page0 = IPA + 0x10_0000;
  const page1 = IPA + 0x10_1000;

  it('probes the guest-visible features and brings its SMMU up (SMMUEN, CMDQEN, EVENTQEN)', async () => {
    vm = sys.vms[k]!;
    psid = vm.devices[0]!.psid;
    const st = (await vm.driver.state()).features!;
    expect([st.s1, st.s2, st.ecmdq, st.msi, st.sidSize]).toEqual([true, false, false, true, 16]);
    const ack = vm.readReg(REG.SMMU_CR0ACK.offset);
    expect(ack & ((1 << F.SMMUEN.lsb) | (1 << F.CMDQEN.lsb) | (1 << F.EVENTQEN.lsb))).toBe((1 << F.SMMUEN.lsb) | (1 << F.CMDQEN.lsb) | (1 << F.EVENTQEN.lsb));
    // After the guest's reset, with every guest STE invalid, its device aborts.
    expect(await sys.dma({ sid: psid, iova: IOVA, read: true })).toMatchObject({ status: 'abort' });
  });

  it('stage 1 on a vSID: DMA from the device translates guest stage 1 then host stage 2, and hits the TLB the second time', async () => {
    ({ domain } = await vm.driver.attachStage1(1, { asid: 7, granule: PAGE, ias: 48 }));
    await vm.driver.map(domain, IOVA, page0, PAGE, { read: true, write: true });
    await vm.driver.map(domain, IOVA + PAGE, page1, PAGE, { read: true, write: true });
    for (const [iova, ipa] of [[IOVA, page0], [IOVA + PAGE, page1]] as const) {
      expect(await sys.dma({ sid: psid, iova: iova + 0x10, read: true })).toEqual({ status: 'ok', pa: vm.hostAddress(ipa) + 0x10, tlbHit: false, bypass: false });
      expect(await sys.dma({ sid: psid, iova: iova + 0x20, write: true })).toEqual({ status: 'ok', pa: vm.hostAddress(ipa) + 0x20, tlbHit: true, bypass: false });
    }
  });

  it('unmapping one page: one TLBI_NH_VA with the VM\'s VMID reaches the SMMU; that page faults, the other still hits', async () => {
    await vm.resetCounters();
    const from = sys.trace().entries.length;
    await vm.driver.unmap(domain, IOVA, PAGE);
    // TLBI_NH_VA, ASID 7, VMID of the VM, Address IOVA, Leaf, TTL 3 and TG 4KB with RIL (§4.4.2.4).
    expect(physical(from)).toEqual([[0x12, (7 << 16) | vm.vmid, (IOVA | 0x100 | 0x400 | 0x200 | 1) >>> 0, 0].map((x) => x >>> 0)]);
    expect(await sys.dma({ sid: psid, iova: IOVA, read: true })).toEqual({ status: 'abort', event: 0x10, tlbHit: false, bypass: false });
    expect(await sys.dma({ sid: psid, iova: IOVA + PAGE, read: true })).toEqual({ status: 'ok', pa: vm.hostAddress(page1), tlbHit: true, bypass: false });
    const c = (await vm.state()).counters;
    expect([c.vmExits, c.userExits, c.guestInvalidations, c.ioctls, c.physicalCommands, c.physicalSyncs]).toEqual([1, userExits, 1, k === 2 ? 0 : 1, 1, 1]);
  });

  it('five invalidations and one CMD_SYNC in one doorbell: the ioctls and physical CMD_SYNCs of the path', async () => {
    await vm.resetCounters();
    const from = sys.trace().entries.length;
    const cmds = [1, 2, 3, 4, 5].map((i) => [0x12, 7 << 16, (IOVA + i * PAGE) | 1, 0]);
    const r = await vm.driver.issue(cmds);
    expect([r.doorbells, r.errors]).toEqual([1, []]);
    expect(physical(from)).toEqual(cmds.map((c) => [0x12, ((7 << 16) | vm.vmid) >>> 0, c[2]!, 0]));
    const c = (await vm.state()).counters;
    expect([c.vmExits, c.guestCommands, c.guestSyncs, c.guestInvalidations, c.ioctls, c.physicalCommands, c.physicalSyncs]).toEqual([1, 6, 1, 5, ioctls5, 5, syncs5]);
    expect((await vm.state()).device.CMD_SYNCS).toBe(1);
  });

  it('detaching the vSID (guest STE abort, CFGI_STE): the device aborts', async () => {
    await vm.driver.detach(1);
    expect(await sys.dma({ sid: psid, iova: IOVA + PAGE, read: true })).toMatchObject({ status: 'abort' });
    const s = await vm.state();
    expect(s.devices[0]!.attached).toBe(s.abortHwpt);
  });
});
