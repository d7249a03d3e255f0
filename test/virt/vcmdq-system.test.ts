/**
 * The 'vcmdq' path as a path of the running system (issue 6; shared/reference/viommu.md §4): one
 * System with a Tegra241 CMDQV beside the SMMU and three VMs, each in its own workers (VMM and
 * guest driver): VM 0 on 'trap', VMs 1 (A) and 2 (B) on 'vcmdq'. The guests run the unchanged
 * GuestDriver; on 'vcmdq' its driver worker has also brought up the guest CMDQV driver, so
 * TLBI_NH_ASID, TLBI_NH_VA and ATC_INV go to the guest's LVCMDQ through its mapped VINTF page 0,
 * everything else to its trapped SMMU queue.
 *
 * Observed: translations through sys.dma (tlbHit, output address, faults), the physical command
 * trace (queue, words as the SMMU executed them, outcome), the VMMs' counters, the guests' CMDQV
 * counters and logs, and the physical CMDQV registers.
 *
 * Command words are literal where a value is asserted (word 0 = bits [31:0]): VMID [47:32] = word
 * 1 [15:0], ASID [63:48] = word 1 [31:16], Address [63:12] of dword 1 in words 2-3, Leaf [64] =
 * word 2 bit 0 (§4.4.2); ATC_INV StreamID [63:32] = word 1, Size [69:64] = word 2 [5:0] (§4.5.1);
 * CFGI_ALL = CFGI_STE_RANGE with Range 31 in word 2 [4:0] (§4.3.6); CMD_SYNC CS [13:12] (§4.7.3).
 * Opcodes (§4.1.1): CFGI_ALL 0x04, ATC_INV 0x40, TLBI_NH_ALL 0x10, NH_ASID 0x11, NH_VA 0x12,
 * TLBI_EL2_ALL 0x20, CMD_SYNC 0x46.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MmioPort } from '../../src/mem/mmio.ts';
import { CMDQV_REG as C, cmdqvGlobalOffset, lvcmdqPage0, vintfRegOffset } from '../../src/spec/cmdqv.ts';
import type { CmdqvLogEntry, GuestCmdqvCounters } from '../../src/driver/cmdqv.ts';
import { cmdqvWindowConfig } from '../../src/device/cmdqv.ts';
import { DEFAULT_RAM_BASE } from '../../src/mem/board.ts';
import { FULL_FEATURES } from '../../src/spec/features.ts';
import { System, type TraceEntry } from '../../src/system/system.ts';
import { planVms, type Vm, type VmConfig, type VmmState } from '../../src/system/vms.ts';

const POLICY = { mode: 'hybrid' as const, spin: 200, timeoutMs: 5000 };
const IOVA = 0x1000_0000;
const PAGE = 4096;
const ASID = 7;
const SYNC = 0x46;
/**
 * The guest's CMD_SYNC on a VCMDQ, as Linux builds it: CS [13:12] = SIG_NONE (the only CS a CMDQV
 * takes, viommu.md §4.5), MSH [23:22] = Inner Shareable (0b11), MSIAttr [27:24] = 0xF (§4.7.3).
 */
const SYNC_NONE = [0x0fc0_0046, 0, 0, 0];
/** NH_VA Leaf with TTL 3 and TG 4 KiB (range invalidation, §4.4.1.1): what unmap of one page issues. */
const LEAF_4K = 0x100 | 0x400 | 0x200 | 1;

let sys: System;
let trap: Vm;
let A: Vm;
let B: Vm;
let cmdqv: MmioPort;

beforeAll(async () => {
  sys = await System.start({
    policy: POLICY,
    trace: true,
    cmdqv: true,
    vms: [
      { path: 'trap', devices: [{ vsid: 1, psid: 0x10 }] },
      { path: 'vcmdq', devices: [{ vsid: 1, psid: 0x20 }, { vsid: 2, psid: 0x21 }] },
      { path: 'vcmdq', devices: [{ vsid: 1, psid: 0x30 }, { vsid: 2, psid: 0x31 }] },
    ],
  });
  [trap, A, B] = [sys.vms[0]!, sys.vms[1]!, sys.vms[2]!];
  cmdqv = new MmioPort(sys.board, 'cmdqv', sys.policy);
}, 30_000);

afterAll(async () => {
  await sys?.stop();
});

interface GuestState {
  cmdqv?: { hypOwned: boolean; counters: GuestCmdqvCounters; log: CmdqvLogEntry[]; routed: { vcmdq: number; smmu: number } };
}

const guest = async (vm: Vm): Promise<NonNullable<GuestState['cmdqv']>> => ((await vm.driver.state()) as GuestState).cmdqv!;

/** The physical VCMDQ behind LVCMDQ l of a VM: v · (8 VCMDQs / 4 VINTFs) + l (viommu.md §4.1). */
const vcmdqName = (vm: Vm, l = 0): string => `VCMDQ${vm.vintf! * 2 + l}`;

const mark = (): number => sys.trace().entries.length;

/** Trace entries since `from` as [queue, words, outcome]. */
function traced(from: number): [string, number[], string][] {
  return sys.trace().entries.slice(from).map((e: TraceEntry) => [e.queue, [...e.words], e.outcome]);
}

/** Physical commands since `from`, CMD_SYNCs left out. */
function physical(from: number): [string, number[], string][] {
  return traced(from).filter(([, w]) => (w[0]! & 0xff) !== SYNC);
}

describe('planVms: the vcmdq configuration', () => {
  const host = { features: FULL_FEATURES, smmuBase: 0x0905_0000, ramBase: DEFAULT_RAM_BASE, hostRamBytes: 4 << 20 };
  const cmdqvHost = { ...host, cmdqv: { config: {}, window: cmdqvWindowConfig({}, 0x0a00_0000) } };
  const vm = (path: VmConfig['path'], psid: number, extra: Partial<VmConfig> = {}): VmConfig => ({ path, devices: [{ vsid: 1, psid }], ...extra });

  it('gives the n-th vcmdq VM VINTF n + 1 and a trapped CMDQV window after its vSMMU\'s, woken with it', () => {
    const p = planVms([vm('vcmdq', 1), vm('trap', 2), vm('vcmdq', 3, { trapBatch: 'sync' })], cmdqvHost);
    expect(p.vms.map((v) => v.cmdqv?.vintf)).toEqual([1, undefined, 2]);
    const w = p.windows.map((x) => [x.name, x.wakeWith]);
    expect(w).toEqual([['vsmmu0', undefined], ['vcmdqv0', 'vsmmu0'], ['vsmmu1', undefined], ['vsmmu2', undefined], ['vcmdqv2', 'vsmmu2']]);
    // One VINTF's worth: the global page, both direct apertures, VINTF0's two pages (viommu.md §4.1).
    expect(p.vms[0]!.cmdqv!.window.bytes).toBe(0x50000);
    expect(p.vms[0]!.cmdqv!.window.base).toBe(p.vms[0]!.window.base + p.vms[0]!.window.bytes);
  });

  it('refuses vcmdq without a CMDQV, more vcmdq VMs than user VINTFs, and the vcmdq-only settings elsewhere', () => {
    expect(() => planVms([vm('vcmdq', 1)], host)).toThrow(/VM 0: the 'vcmdq' path needs a CMDQV beside the SMMU/);
    expect(() => planVms([1, 2, 3, 4].map((sid) => vm('vcmdq', sid)), cmdqvHost)).toThrow(/VM 3: the CMDQV has 4 VINTFs, VINTF0 the host's/);
    expect(() => planVms([vm('trap', 1, { lvcmdqLog2: 4 })], cmdqvHost)).toThrow(/lvcmdqLog2 .* for the 'vcmdq' path only/);
    expect(() => planVms([vm('kernel-queue', 1, { trapBatch: 'sync' })], cmdqvHost)).toThrow(/for the 'trap' and 'vcmdq' paths only/);
    expect(() => planVms([{ path: 'vqueue' as VmConfig['path'], devices: [{ vsid: 1, psid: 1 }] }], cmdqvHost)).toThrow(/is not 'trap', 'kernel-queue' or 'vcmdq'/);
  });
});

describe('bring-up', () => {
  it('each vcmdq VM has its own guest-owned VINTF with its VMID, SID pairs and enabled LVCMDQs; the guest reads HYP_OWN 0', async () => {
    expect([trap.vintf, A.vintf, B.vintf]).toEqual([undefined, 1, 2]);
    for (const vm of [A, B]) {
      const v = vm.vintf!;
      // VINTF_CONFIG: EN [0], VMID [16:1], HYP_OWN [17] = 0 (viommu.md §4.2).
      expect(cmdqv.peek32(vintfRegOffset(v, C.VINTF_CONFIG))).toBe(((vm.vmid << 1) | 1) >>> 0);
      // SID_MATCH(s) = vSID << 1 | ENABLE, SID_REPLACE(s) = physical StreamID, one per vDEVICE (§4.4).
      expect([0, 1].map((s) => cmdqv.peek32(vintfRegOffset(v, C.VINTF_SID_MATCH, s)))).toEqual([(1 << 1) | 1, (2 << 1) | 1]);
      expect([0, 1].map((s) => cmdqv.peek32(vintfRegOffset(v, C.VINTF_SID_REPLACE, s)))).toEqual(vm.devices.map((d) => d.psid));
      // Both logical VCMDQs enabled (VCMDQ_STATUS.ENABLED), by the guest through its page 0.
      expect([0, 1].map((l) => cmdqv.peek32(lvcmdqPage0(v, l) + C.VCMDQ_STATUS.offset))).toEqual([1, 1]);
      const g = await guest(vm);
      expect(g.hypOwned).toBe(false);
      const s = await vm.state();
      expect(s.path).toBe('vcmdq');
      expect(s.cmdqv!.vintf).toBe(v);
    }
    expect((await trap.state()).cmdqv).toBeUndefined();
    expect(((await trap.driver.state()) as GuestState).cmdqv).toBeUndefined();
    // VINTF0 is the host's: enabled, HYP_OWN = 1, VMID 0, no VCMDQs.
    expect(cmdqv.peek32(vintfRegOffset(0, C.VINTF_CONFIG))).toBe((1 << 17) | 1);
    expect(cmdqv.peek32(vintfRegOffset(3, C.VINTF_CONFIG))).toBe(0);
  });
});

/** What the workload observed, with host addresses relative to the VM's RAM. */
interface Observed {
  readonly dma: unknown[];
  readonly unmap: { physical: number[][]; counters: number[]; queue: string[] };
  readonly five: { doorbells: number; physical: number[][]; counters: number[]; queue: string[]; syncs: number };
}

/**
 * The guest workload of test/virt/paths.test.ts: stage 1 on vSID 1 with two pages, DMA twice
 * each, unmap one page, then five NH_VA and one CMD_SYNC in one issue. Counters per step:
 * [vmExits, userExits, mmioTraps, ioctls, physicalCommands, physicalSyncs].
 */
async function workload(vm: Vm): Promise<Observed> {
  const psid = vm.devices[0]!.psid;
  const page0 = vm.ram.ipa + 0x10_0000;
  const page1 = page0 + PAGE;
  const rel = (r: { pa?: number }): unknown => ({ ...r, ...(r.pa !== undefined ? { pa: r.pa - vm.ram.hostPa } : {}) });
  const dma: unknown[] = [];
  const { domain } = await vm.driver.attachStage1(1, { asid: ASID, granule: PAGE, ias: 48 });
  await vm.driver.map(domain, IOVA, page0, PAGE, { read: true, write: true });
  await vm.driver.map(domain, IOVA + PAGE, page1, PAGE, { read: true, write: true });
  for (const iova of [IOVA, IOVA + PAGE]) {
    dma.push(rel(await sys.dma({ sid: psid, iova: iova + 0x10, read: true })));
    dma.push(rel(await sys.dma({ sid: psid, iova: iova + 0x20, write: true })));
  }
  const counters = (s: VmmState): number[] => {
    const c = s.counters;
    return [c.vmExits, c.userExits, c.mmioTraps + (s.cmdqv?.counters.mmioTraps ?? 0), c.ioctls, c.physicalCommands, c.physicalSyncs];
  };
  const queues = (from: number): string[] => [...new Set(traced(from).map(([q]) => q))];

  await vm.resetCounters();
  let from = mark();
  await vm.driver.unmap(domain, IOVA, PAGE);
  const unmap = { physical: physical(from).map(([, w]) => w), counters: counters(await vm.state()), queue: queues(from) };
  dma.push(rel(await sys.dma({ sid: psid, iova: IOVA, read: true })));
  dma.push(rel(await sys.dma({ sid: psid, iova: IOVA + PAGE, read: true })));

  await vm.resetCounters();
  from = mark();
  const r = await vm.driver.issue([1, 2, 3, 4, 5].map((i) => [0x12, ASID << 16, (IOVA + i * PAGE) | 1, 0]));
  expect(r.errors).toEqual([]);
  const syncs = traced(from).filter(([, w]) => (w[0]! & 0xff) === SYNC).length;
  const five = { doorbells: r.doorbells, physical: physical(from).map(([, w]) => w), counters: counters(await vm.state()), queue: queues(from), syncs };
  return { dma, unmap, five };
}

describe('the same guest workload on trap and on vcmdq', () => {
  let onTrap: Observed;
  let onVcmdq: Observed;

  beforeAll(async () => {
    onTrap = await workload(trap);
    onVcmdq = await workload(A);
  }, 20_000);

  it('has the same effect on translations: misses then hits, the unmapped page faults, the other still hits', () => {
    const expected = [
      { status: 'ok', pa: 0x10_0010, tlbHit: false, bypass: false },
      { status: 'ok', pa: 0x10_0020, tlbHit: true, bypass: false },
      { status: 'ok', pa: 0x10_1010, tlbHit: false, bypass: false },
      { status: 'ok', pa: 0x10_1020, tlbHit: true, bypass: false },
      // F_TRANSLATION (0x10, §7.3.10): the TLBI_NH_VA took the entry and the walk finds no page.
      { status: 'abort', event: 0x10, tlbHit: false, bypass: false },
      { status: 'ok', pa: 0x10_1000, tlbHit: true, bypass: false },
    ];
    expect(onTrap.dma).toEqual(expected);
    expect(onVcmdq.dma).toEqual(expected);
  });

  it('the same invalidations reach the SMMU, each with its VM\'s VMID: through the CMDQ on trap, the VM\'s VCMDQ on vcmdq', () => {
    const unmapCmd = (vmid: number) => [[0x12, ((ASID << 16) | vmid) >>> 0, (IOVA | LEAF_4K) >>> 0, 0]];
    expect(onTrap.unmap.physical).toEqual(unmapCmd(trap.vmid));
    expect(onVcmdq.unmap.physical).toEqual(unmapCmd(A.vmid));
    const five = (vmid: number) => [1, 2, 3, 4, 5].map((i) => [0x12, ((ASID << 16) | vmid) >>> 0, (IOVA + i * PAGE) | 1, 0]);
    expect(onTrap.five.physical).toEqual(five(trap.vmid));
    expect(onVcmdq.five.physical).toEqual(five(A.vmid));
    expect([onTrap.unmap.queue, onTrap.five.queue]).toEqual([['CMDQ'], ['CMDQ']]);
    expect([onVcmdq.unmap.queue, onVcmdq.five.queue]).toEqual([[vcmdqName(A)], [vcmdqName(A)]]);
  });

  it('the VMM counts exits, ioctls and physical submissions on trap, and none at all for the VCMDQ\'s commands', () => {
    // [vmExits, userExits, mmioTraps, ioctls, physicalCommands, physicalSyncs]
    expect(onTrap.unmap.counters).toEqual([1, 1, 1, 1, 1, 1]);
    expect(onTrap.five.counters).toEqual([1, 1, 1, 5, 5, 5]);
    expect(onVcmdq.unmap.counters).toEqual([0, 0, 0, 0, 0, 0]);
    expect(onVcmdq.five.counters).toEqual([0, 0, 0, 0, 0, 0]);
    // One doorbell either way; the VCMDQ's CMD_SYNC is the guest's own, one per issue.
    expect([onTrap.five.doorbells, onVcmdq.five.doorbells]).toEqual([1, 1]);
    expect([onTrap.five.syncs, onVcmdq.five.syncs]).toEqual([5, 1]);
  });
});

describe('what reaches the hardware from a vcmdq guest', () => {
  it('NH_VA, NH_ASID and ATC_INV on VCMDQ<n> carry the VM\'s VMID and the physical StreamID, whatever the guest wrote', async () => {
    await A.resetCounters();
    const before = await guest(A);
    const from = mark();
    const r = await A.driver.issue([
      [0x12, ((ASID << 16) | B.vmid) >>> 0, (IOVA + 0x40_0000) | 1, 0],
      [0x11, ((ASID << 16) | 0) >>> 0, 0, 0],
      [0x40, 2, 52, 0],
    ]);
    expect([r.errors, r.doorbells, r.batches]).toEqual([[], 1, 1]);
    expect(traced(from)).toEqual([
      [vcmdqName(A), [0x12, ((ASID << 16) | A.vmid) >>> 0, (IOVA + 0x40_0000) | 1, 0], 'consumed'],
      [vcmdqName(A), [0x11, ((ASID << 16) | A.vmid) >>> 0, 0, 0], 'consumed'],
      [vcmdqName(A), [0x40, A.devices[1]!.psid, 52, 0], 'consumed'],
      [vcmdqName(A), SYNC_NONE, 'consumed'],
    ]);
    const s = await A.state();
    expect([s.counters.vmExits, s.counters.mmioTraps, s.counters.ioctls, s.cmdqv!.counters.mmioTraps]).toEqual([0, 0, 0, 0]);
    const after = await guest(A);
    expect([after.routed.vcmdq - before.routed.vcmdq, after.routed.smmu - before.routed.smmu]).toEqual([3, 0]);
  });

  it('a command the VCMDQ does not take goes to the trapped SMMU queue and through the host\'s conversion', async () => {
    await A.resetCounters();
    const from = mark();
    // CFGI_CD of vSID 2 (§4.3.3): not in the guest's allow-list, so the SMMU queue (a trap).
    const r = await A.driver.issue([[0x05, 2, 1, 0]]);
    expect(r.errors).toEqual([]);
    expect(physical(from)).toEqual([['CMDQ', [0x05, A.devices[1]!.psid, 1, 0], 'consumed']]);
    const c = (await A.state()).counters;
    expect([c.vmExits, c.ioctls, c.physicalCommands]).toEqual([1, 1, 1]);
  });
});

describe('isolation: two VMs with VCMDQs', () => {
  const IOVA2 = 0x2000_0000;
  const ASID2 = 9;
  const pageOf = (vm: Vm): number => vm.ram.ipa + 0x18_0000;
  const sidOf = (vm: Vm): number => vm.devices[1]!.psid;
  let domainB: number;

  beforeAll(async () => {
    // vSID 2 of both VMs: the same ASID and IOVA, so only the VMID tells their TLB entries apart.
    for (const vm of [A, B]) {
      const { domain } = await vm.driver.attachStage1(2, { asid: ASID2, granule: PAGE, ias: 48 });
      await vm.driver.map(domain, IOVA2, pageOf(vm), PAGE, { read: true, write: true });
      if (vm === B) domainB = domain;
    }
  }, 20_000);

  const dma = (vm: Vm) => sys.dma({ sid: sidOf(vm), iova: IOVA2, read: true });
  const hit = (vm: Vm) => ({ status: 'ok', pa: vm.hostAddress(pageOf(vm)), tlbHit: true, bypass: false });

  async function warm(): Promise<void> {
    for (const vm of [A, B]) {
      await dma(vm);
      expect(await dma(vm)).toEqual(hit(vm));
    }
  }

  it('a foreign VMID in TLBI_NH_ASID is overwritten by VINTF_CONFIG.VMID: only A\'s entry goes', async () => {
    await warm();
    const from = mark();
    const r = await A.issueOnVcmdq([[0x11, ((ASID2 << 16) | B.vmid) >>> 0, 0, 0]]);
    expect(r.errors).toEqual([]);
    expect(physical(from)).toEqual([[vcmdqName(A), [0x11, ((ASID2 << 16) | A.vmid) >>> 0, 0, 0], 'consumed']]);
    expect((await dma(A)).tlbHit).toBe(false);
    expect(await dma(B)).toEqual(hit(B));
  });

  const hostile: [string, () => number[], string][] = [
    ['TLBI_NH_ALL naming B\'s VMID', () => [0x10, B.vmid, 0, 0], 'CERROR_ILL_OPCODE'],
    ['CFGI_ALL', () => [0x04, 0, 31, 0], 'CERROR_ILL_OPCODE'],
    ['TLBI_EL2_ALL', () => [0x20, 0, 0, 0], 'CERROR_ILL_OPCODE'],
    ['ATC_INV of B\'s physical StreamID', () => [0x40, sidOf(B), 52, 0], 'CERROR_ILL_ACCESS'],
    ['ATC_INV of a vSID A has no device for', () => [0x40, 3, 52, 0], 'CERROR_ILL_ACCESS'],
  ];

  it.each(hostile)('a raw %s on A\'s VCMDQ takes no effect, goes through §4.7 to A\'s guest, which recovers; B sees nothing', async (_n, bad, name) => {
    await warm();
    await A.resetCounters();
    await B.resetCounters();
    const gA = await guest(A);
    const gB = await guest(B);
    const from = mark();
    const words = bad();
    const r = await A.issueOnVcmdq([words, [0x11, ASID2 << 16, 0, 0]]);
    expect(r.errors.map((e) => e.name)).toEqual([name]);
    // The hardware refused it; A's guest overwrote it with a CMD_SYNC (CS = SIG_NONE) and went on.
    expect(traced(from)).toEqual([
      [vcmdqName(A), words, name],
      [vcmdqName(A), SYNC_NONE, 'consumed'],
      [vcmdqName(A), [0x11, ((ASID2 << 16) | A.vmid) >>> 0, 0, 0], 'consumed'],
      [vcmdqName(A), SYNC_NONE, 'consumed'],
    ]);
    // §4.7: host ISR → one TEGRA241_CMDQV vEVENT → A's VMM → one guest interrupt → skip and GERRORN.
    const sA = (await A.state()).cmdqv!;
    expect([sA.hostPosted, sA.counters.vevents, sA.counters.guestInterrupts]).toEqual([1, 1, 1]);
    const gA2 = await guest(A);
    expect([gA2.counters.interrupts - gA.counters.interrupts, gA2.counters.errorsRecovered - gA.counters.errorsRecovered]).toEqual([1, 1]);
    expect(gA2.log.at(-1)).toMatchObject({ kind: 'vcmdq-skip', lidx: 0, name, words });
    // Nothing reached B: no vEVENT, no interrupt, its TLB entry intact.
    const sB = (await B.state()).cmdqv!;
    expect([sB.hostPosted, sB.counters.vevents, sB.counters.guestInterrupts]).toEqual([0, 0, 0]);
    expect((await guest(B)).counters.interrupts).toBe(gB.counters.interrupts);
    expect(await dma(B)).toEqual(hit(B));
    // Recovered: the error maps are clear, GERRORN = GERROR, and the queue is running.
    expect(cmdqv.peek32(cmdqvGlobalOffset(C.CMDQV_VINTF_ERR_MAP, 0))).toBe(0);
    const p0 = lvcmdqPage0(A.vintf!, 0);
    expect(cmdqv.peek32(p0 + C.VCMDQ_GERROR.offset)).toBe(cmdqv.peek32(p0 + C.VCMDQ_GERRORN.offset));
    expect(cmdqv.peek32(p0 + C.VCMDQ_STATUS.offset)).toBe(1);
  });

  it('nothing A did ever executed with B\'s VMID or one of B\'s StreamIDs', () => {
    const mine = (w: readonly number[]) => ((w[0]! & 0xff) === 0x40 ? A.devices.some((d) => d.psid === w[1]) : (w[1]! & 0xffff) === A.vmid);
    const executed = sys.trace().entries.filter((e) => e.queue === vcmdqName(A) && e.outcome === 'consumed' && (e.words[0] & 0xff) !== SYNC);
    expect(executed.length).toBeGreaterThan(0);
    expect(executed.filter((e) => !mine(e.words))).toEqual([]);
  });

  it('afterwards B keeps working on its own VCMDQ: its unmap takes its entry, A\'s stays', async () => {
    await warm();
    const from = mark();
    await B.driver.unmap(domainB, IOVA2, PAGE);
    expect(physical(from)).toEqual([[vcmdqName(B), [0x12, ((ASID2 << 16) | B.vmid) >>> 0, (IOVA2 | LEAF_4K) >>> 0, 0], 'consumed']]);
    expect(await dma(B)).toEqual({ status: 'abort', event: 0x10, tlbHit: false, bypass: false });
    expect(await dma(A)).toEqual(hit(A));
    expect(sys.error).toBeUndefined();
  });
});
