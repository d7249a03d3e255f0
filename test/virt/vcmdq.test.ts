/**
 * The 'vcmdq' path end to end, in one thread (shared/reference/viommu.md §4, §8 items 5-6): the
 * SMMU with its Tegra241 CMDQV, the host kernel (its SMMU driver, the CMDQV hooks of the iommufd
 * objects, the CMDQV ISR), and two VMs, each with a VMM (a trapped vSMMU and the virtual CMDQV)
 * and a guest (GuestDriver + GuestCmdqv + VcmdqIssuer). Every register access goes over its
 * window's MMIO FIFO; each agent's wait runs the others (test/helpers/sync-port.ts), so the
 * interleaving is deterministic. The SMMU's command backend records what it executes on top of
 * the real caches: a command "takes effect" exactly when it is recorded there.
 *
 * VM A: VMID 5, vSID 0x10 → StreamID 0x42, VINTF 1. VM B: VMID 6, vSID 0x10 → StreamID 0x43, VINTF 2.
 */
import { describe, expect, it } from 'vitest';
import type { CommandQueue } from '../../src/device/cmdq.ts';
import { cmdqvExtension, cmdqvWindowConfig } from '../../src/device/cmdqv.ts';
import { SmmuDevice, type CommandBackend } from '../../src/device/smmu.ts';
import { drainTrace, TRACE_QUEUE_CMDQ, TRACE_QUEUE_VCMDQ, type TraceRecord } from '../../src/device/trace.ts';
import { GuestCmdqv, GuestCmdqvBus, MappedPage, VcmdqIssuer } from '../../src/driver/cmdqv.ts';
import { GuestDriver } from '../../src/driver/driver.ts';
import { Board, DEFAULT_RAM_BASE } from '../../src/mem/board.ts';
import { PhysMem } from '../../src/mem/phys.ts';
import type { WaitPolicy } from '../../src/mem/wait.ts';
import { CERROR_ILL, CERROR_NONE } from '../../src/spec/cerror.ts';
import {
  CMDQV_REG as C,
  VCMDQ_ERR,
  cmdqvGlobalOffset,
  lvcmdqPage0,
  lvcmdqPage1,
  vcmdqPage0,
  vcmdqPage1,
  vintfPage0,
  vintfRegOffset,
} from '../../src/spec/cmdqv.ts';
import { encodeCommandWords, type CommandInput } from '../../src/spec/command-codec.ts';
import { CS_SIG_NONE, OP } from '../../src/spec/commands.ts';
import { FULL_FEATURES } from '../../src/spec/features.ts';
import { smmuRegWindow } from '../../src/spec/registers.ts';
import { AssignedVintfHostSmmu, CmdqvHostDriver, VirtualCmdqv, virtualCmdqvWindow } from '../../src/virt/cmdqv-host.ts';
import { ENOSPC } from '../../src/virt/errno.ts';
import { RecordingQueue } from '../../src/virt/iommufd.ts';
import type { Outcome } from '../../src/virt/errno.ts';
import { HostSmmu, Iommufd, VmidAllocator, invalidationEntries } from '../../src/virt/iommufd.ts';
import {
  IOMMU_HWPT_ALLOC,
  IOMMU_HWPT_DATA,
  IOMMU_HWPT_INVALIDATE_DATA,
  IOMMU_IOAS_MAP,
  IOMMU_VEVENTQ_TYPE,
  IOMMU_VIOMMU_TEGRA241_CMDQV_S,
  IOMMU_VIOMMU_TYPE,
} from '../../src/virt/uapi.ts';
import { vsmmuFeatures } from '../../src/virt/vsmmu.ts';
import { SyncPort } from '../helpers/sync-port.ts';

const POLICY: WaitPolicy = { mode: 'spin', spin: 0, timeoutMs: 2000 };
const SMMU_BASE = 0x0905_0000;
const CMDQV_BASE = 0x0a00_0000;
const HOST_RAM = 2 << 20;
const VM_RAM = 1 << 20;
const VSID = 0x10;

const cmd = (c: CommandInput): Uint32Array => encodeCommandWords(c);
const op = (w: readonly number[]): number => w[0]! & 0xff;

function ok<T extends object>(r: Outcome<T>): T {
  if (!r.ok) throw new Error(`iommufd call failed: errno ${r.errno}`);
  return r as T;
}

/** The trapping VMM's command backend for the vSMMU: one HWPT_INVALIDATE per command, as QEMU. */
function trapBackend(fd: Iommufd, viommuId: number): CommandBackend {
  return {
    command: (_q: CommandQueue, w: Uint32Array) => {
      const o = w[0]! & 0xff;
      // The VMM re-shadows STEs on CFGI_STE*; no STE is shadowed in this rig. PREFETCH: nothing.
      if (o === OP.CMD_CFGI_STE || o === OP.CMD_CFGI_STE_RANGE || o === OP.CMD_PREFETCH_CONFIG || o === OP.CMD_PREFETCH_ADDR) return CERROR_NONE;
      const r = fd.invalidate(viommuId, { dataType: IOMMU_HWPT_INVALIDATE_DATA.ARM_SMMUV3, entryLen: 16, entryNum: 1, entries: invalidationEntries([w]) });
      return r.errno === 0 ? CERROR_NONE : CERROR_ILL;
    },
    sync: () => CERROR_NONE,
  };
}

interface Vm {
  readonly fd: Iommufd;
  readonly viommuId: number;
  readonly vmid: number;
  readonly vintf: number;
  readonly psid: number;
  readonly vsmmu: SmmuDevice;
  readonly vcmdqv: VirtualCmdqv;
  readonly driver: GuestDriver;
  readonly cmdqv: GuestCmdqv;
  readonly issuer: VcmdqIssuer;
  /** The hardware's global VCMDQ behind the guest's LVCMDQ l. */
  readonly vcmdq: (l: number) => number;
}

function rig() {
  const features = FULL_FEATURES;
  const guestFeatures = vsmmuFeatures(features);
  const vmWindows = [0, 1].flatMap((k) => {
    const base = 0x0b00_0000 + k * 0x100_0000;
    return [{ name: `vsmmu${k}`, base, bytes: smmuRegWindow(guestFeatures) }, virtualCmdqvWindow(`vcmdqv${k}`, base + 0x80_0000, `vsmmu${k}`)];
  });
  const board = Board.create({
    windows: [{ name: 'smmu', base: SMMU_BASE, bytes: smmuRegWindow(features) }, cmdqvWindowConfig({}, CMDQV_BASE), ...vmWindows],
    ramBytes: HOST_RAM + 2 * VM_RAM,
    traceRecords: 8192,
  });
  const executed: number[][] = [];
  const phys: SmmuDevice = new SmmuDevice(board, {
    features,
    policy: POLICY,
    extensions: cmdqvExtension({}),
    backend: {
      command: (_q, w) => {
        executed.push([...w]);
        phys.translator.invalidateCommand(w);
        return CERROR_NONE;
      },
      sync: () => phys.translator.syncCheck(),
    },
  });
  // The VMMs' vSMMUs get a board view without the trace ring and DMA ports (the host SMMU's, as
  // vmm-worker.ts does): the trace then shows the hardware's queues only.
  const vboard = Board.attach(board.sab, { ...board.layout, trace: { ...board.layout.trace, records: 0 }, dma: { ...board.layout.dma, ports: 0 } });
  const vms: Vm[] = [];
  let hostCmdqv: CmdqvHostDriver | undefined;
  let host: HostSmmu | undefined;
  let depth = 0;
  /** One round of every other agent: the SMMU, the VMMs, the host's CMDQV interrupt, the vEVENTQs. */
  const pump = (): void => {
    depth++;
    try {
      phys.service();
      if (depth > 1) return; // a host write made from inside a VMM's trap handler
      for (const vm of vms) vm.vsmmu.service();
      if (hostCmdqv !== undefined && host !== undefined) hostCmdqv.serviceInterrupt(host);
      for (const vm of vms) vm.vcmdqv.pollEvents();
      phys.service();
    } finally {
      depth--;
    }
  };
  const port = (w: string) => new SyncPort(board, w, pump, POLICY);

  const hostDriver = new GuestDriver(board, { window: 'smmu', port: port('smmu'), policy: POLICY, syncMode: 'cons', ram: { start: DEFAULT_RAM_BASE, end: DEFAULT_RAM_BASE + HOST_RAM } });
  hostDriver.probe();
  hostDriver.reset();
  hostCmdqv = new CmdqvHostDriver(port('cmdqv'), { policy: POLICY, base: CMDQV_BASE, mainSync: () => hostDriver.sync() });
  hostCmdqv.reset();
  const vmids = new VmidAllocator(16);
  for (let i = 1; i < 5; i++) vmids.alloc(); // the next VMIDs are 5 and 6
  host = new HostSmmu({
    features,
    vmids,
    cmdqv: hostCmdqv.hooks(),
    queue: {
      submit: (cmds) => {
        hostDriver.issue(cmds.map((c) => Uint32Array.from(c)));
        return { ok: true };
      },
    },
  });

  function makeVm(k: number, psid: number): Vm {
    const ipa = DEFAULT_RAM_BASE;
    const hostPa = DEFAULT_RAM_BASE + HOST_RAM + k * VM_RAM;
    // The VMM's iommufd objects, in QEMU's order (viommu.md §4.2-4.4).
    const fd = new Iommufd();
    const devId = ok(fd.bindDevice(host!, psid, { canwbs: true })).devId;
    const ioasId = ok(fd.ioasAlloc()).ioasId;
    ok(fd.ioasMap({ ioasId, flags: IOMMU_IOAS_MAP.FIXED_IOVA | IOMMU_IOAS_MAP.READABLE | IOMMU_IOAS_MAP.WRITEABLE, userVa: hostPa, length: VM_RAM, iova: ipa }));
    const hwptId = ok(fd.hwptAlloc({ flags: IOMMU_HWPT_ALLOC.NEST_PARENT, devId, ptId: ioasId, dataType: IOMMU_HWPT_DATA.NONE })).hwptId;
    const v = ok(fd.viommuAlloc({ type: IOMMU_VIOMMU_TYPE.TEGRA241_CMDQV, devId, hwptId, data: new Uint8Array(IOMMU_VIOMMU_TEGRA241_CMDQV_S.size) }));
    const page = ok(fd.mmap(v.mmapOffset!, v.mmapLength!));
    ok(fd.vdeviceAlloc({ viommuId: v.viommuId, devId, virtId: VSID }));
    const evq = ok(fd.veventqAlloc({ viommuId: v.viommuId, type: IOMMU_VEVENTQ_TYPE.TEGRA241_CMDQV, depth: 16 }));
    const vcmdqv = new VirtualCmdqv(board, { window: `vcmdqv${k}`, fd, viommuId: v.viommuId, veventqFd: evq.fd });
    const guestMem = new PhysMem(board, { base: ipa, hostPa, bytes: VM_RAM });
    const vsmmu = new SmmuDevice(vboard, { window: `vsmmu${k}`, features: guestFeatures, mem: guestMem, policy: POLICY, backend: trapBackend(fd, v.viommuId), extensions: () => [vcmdqv] });
    const partial = { fd, viommuId: v.viommuId, vmid: v.vmid, vintf: v.vintf!, psid, vsmmu, vcmdqv };
    vms.push(partial as Vm);
    // The guest: its SMMU driver on the trapped vSMMU, then its CMDQV driver.
    const driver = new GuestDriver(board, {
      window: `vsmmu${k}`, port: port(`vsmmu${k}`), policy: POLICY, syncMode: 'cons',
      ram: { start: ipa, end: ipa + VM_RAM }, memView: { base: ipa, hostPa, bytes: VM_RAM },
    });
    driver.probe();
    driver.reset();
    const bus = new GuestCmdqvBus(port(`vcmdqv${k}`), new MappedPage(port('cmdqv'), page.hostPa - CMDQV_BASE));
    const cmdqv = new GuestCmdqv({ bus, mem: driver.mem, alloc: driver.allocator, policy: POLICY, cmdqs: guestFeatures.cmdqs, log2: 4, mainSync: () => driver.sync() });
    cmdqv.probe();
    cmdqv.reset();
    const issuer = new VcmdqIssuer(driver, cmdqv);
    driver.setIssuer(issuer);
    const per = hostCmdqv!.counts.lvcmdqsPerVintf;
    const vm: Vm = { ...partial, driver, cmdqv, issuer, vcmdq: (l) => v.vintf! * per + l };
    vms[vms.indexOf(partial as Vm)] = vm;
    return vm;
  }

  const a = makeVm(0, 0x42);
  const b = makeVm(1, 0x43);
  const physPort = port('cmdqv');
  drainTrace(board);
  executed.length = 0;
  return {
    board, phys, a, b, executed, hostCmdqv, host, pump,
    reg: (off: number) => physPort.peek32(off),
    trace: (): TraceRecord[] => drainTrace(board).records,
  };
}

/** VMID [47:32] and StreamID [63:32] of a recorded command: word 1 (§4.1.6). */
const vmidOf = (w: readonly number[]) => w[1]! & 0xffff;
const sidOf = (w: readonly number[]) => w[1]!;

describe('vcmdq path: bring-up (viommu.md §4.2, §4.3)', () => {
  it('gives each VM a guest-owned VINTF with its VMID and SID pair, and its rings at their host PAs', () => {
    const r = rig();
    expect([r.a.vintf, r.a.vmid, r.b.vintf, r.b.vmid]).toEqual([1, 5, 2, 6]);
    // VINTF_CONFIG: EN, VMID, HYP_OWN = 0 (§4.2); the guest read HYP_OWN back as 0.
    expect(r.reg(vintfRegOffset(1, C.VINTF_CONFIG))).toBe((5 << 1) | 1);
    expect(r.reg(vintfRegOffset(2, C.VINTF_CONFIG))).toBe((6 << 1) | 1);
    expect(r.a.cmdqv.hypOwned).toBe(false);
    // SID_MATCH(0) = vSID << 1 | 1, SID_REPLACE(0) = pSID (§4.4).
    expect(r.reg(vintfRegOffset(1, C.VINTF_SID_MATCH, 0))).toBe((VSID << 1) | 1);
    expect(r.reg(vintfRegOffset(1, C.VINTF_SID_REPLACE, 0))).toBe(0x42);
    expect(r.reg(vintfRegOffset(2, C.VINTF_SID_REPLACE, 0))).toBe(0x43);
    // Both LVCMDQs of VM A: allocated, BASE = the host PA of the guest's ring, enabled by the guest.
    for (const q of r.a.cmdqv.lvcmdqs) {
      const g = r.a.vcmdq(q.lidx);
      expect(r.reg(cmdqvGlobalOffset(C.CMDQV_CMDQ_ALLOC, g))).toBe((1 << 15) | (q.lidx << 1) | 1);
      const hostPa = DEFAULT_RAM_BASE + HOST_RAM + (q.base - DEFAULT_RAM_BASE);
      expect(r.reg(vcmdqPage1(g) + C.VCMDQ_BASE.offset)).toBe((hostPa + q.log2) >>> 0);
      expect(r.reg(lvcmdqPage0(1, q.lidx) + C.VCMDQ_STATUS.offset)).toBe(1);
    }
    expect(r.a.vcmdqv.counters.hwQueueAllocs).toBe(2);
    const queues = r.a.fd.ids().map((id) => r.a.fd.describe(id)).filter((o) => o?.type === 'HW_QUEUE');
    expect(queues.map((o) => (o as { index: number }).index)).toEqual([0, 1]);
    // The guest's page is VINTF1's page 0 of the physical window, and only that.
    expect(vintfPage0(r.a.vintf)).toBe(0x50000);
  });
});

describe('vcmdq path: invalidations (viommu.md §4.4, §4.5, §8 item 6)', () => {
  it('NH_VA, NH_ASID and ATC_INV go to the LVCMDQ with no trap; the hardware applies VMID 5 and StreamID 0x42', () => {
    const r = rig();
    const trapsBefore = r.a.vcmdqv.counters.mmioTraps;
    const vsmmuBefore = r.a.vsmmu.cmdq.consumed;
    const res = r.a.driver.issue([
      cmd({ name: 'CMD_TLBI_NH_VA', VMID: 0, ASID: 3, Address: 0x1000n, Leaf: 1 }),
      cmd({ name: 'CMD_TLBI_NH_ASID', VMID: 0, ASID: 3 }),
      cmd({ name: 'CMD_ATC_INV', StreamID: VSID, Size: 52 }),
    ]);
    expect(res).toMatchObject({ commands: 3, batches: 1, doorbells: 1, errors: [] });
    expect(r.a.issuer.routed).toEqual({ vcmdq: 3, smmu: 0 });
    expect(r.a.vcmdqv.counters.mmioTraps).toBe(trapsBefore);
    expect(r.a.vsmmu.cmdq.consumed).toBe(vsmmuBefore);
    const t = r.trace();
    const q = TRACE_QUEUE_VCMDQ + r.a.vcmdq(0);
    expect(t.every((e) => e.queue === q && e.outcome === 0)).toBe(true);
    expect(t.map((e) => op(e.words))).toEqual([OP.CMD_TLBI_NH_VA, OP.CMD_TLBI_NH_ASID, OP.CMD_ATC_INV, OP.CMD_SYNC]);
    expect(vmidOf(t[0]!.words)).toBe(5);
    expect(vmidOf(t[1]!.words)).toBe(5);
    expect(sidOf(t[2]!.words)).toBe(0x42);
    expect((t[3]!.words[0]! >>> 12) & 3).toBe(CS_SIG_NONE); // CMD_SYNC CS [13:12]
    expect(r.executed).toEqual([
      [...cmd({ name: 'CMD_TLBI_NH_VA', VMID: 5, ASID: 3, Address: 0x1000n, Leaf: 1 })],
      [...cmd({ name: 'CMD_TLBI_NH_ASID', VMID: 5, ASID: 3 })],
      [...cmd({ name: 'CMD_ATC_INV', StreamID: 0x42, Size: 52 })],
    ]);
  });

  it('the guest routes what the VCMDQ does not take to its trapped SMMU queue (supports_cmd), converted by the host', () => {
    const r = rig();
    const res = r.a.driver.issue([
      cmd({ name: 'CMD_TLBI_NH_ASID', VMID: 0, ASID: 1 }),
      cmd({ name: 'CMD_CFGI_CD', StreamID: VSID, SubstreamID: 0, Leaf: 1 }),
      cmd({ name: 'CMD_TLBI_NH_VA', VMID: 0, ASID: 1, Address: 0x2000n }),
    ]);
    // arm_smmu_cmdq_batch_add: NH_ASID opens a VCMDQ batch, CFGI_CD flushes it (with a CMD_SYNC)
    // and opens an SMMU-queue batch, which then takes the NH_VA too.
    expect(res.batches).toBe(2);
    expect(r.a.issuer.routed).toEqual({ vcmdq: 1, smmu: 2 });
    const t = r.trace();
    const vq = t.filter((e) => e.queue === TRACE_QUEUE_VCMDQ + r.a.vcmdq(0)).map((e) => op(e.words));
    expect(vq).toEqual([OP.CMD_TLBI_NH_ASID, OP.CMD_SYNC]);
    // Through HWPT_INVALIDATE: the kernel's conversion put the physical StreamID and the VMID.
    const phys = t.filter((e) => e.queue === TRACE_QUEUE_CMDQ && op(e.words) !== OP.CMD_SYNC);
    expect(phys.map((e) => [op(e.words), op(e.words) === OP.CMD_CFGI_CD ? sidOf(e.words) : vmidOf(e.words)])).toEqual([
      [OP.CMD_CFGI_CD, 0x42],
      [OP.CMD_TLBI_NH_VA, 5],
    ]);
  });

  it('batches as Linux does: 64 commands without a CMD_SYNC, the rest with one; the ring wraps', () => {
    const r = rig();
    const cmds = Array.from({ length: 70 }, (_, i) => cmd({ name: 'CMD_TLBI_NH_ASID', VMID: 0, ASID: i }));
    const res = r.a.driver.issue(cmds);
    // A 16-entry ring: the 64-command batch takes 4 doorbells, the last 6 + CMD_SYNC one.
    expect(res).toMatchObject({ commands: 70, batches: 2, doorbells: 5, errors: [] });
    expect(r.executed).toEqual(cmds.map((c, i) => [...cmd({ name: 'CMD_TLBI_NH_ASID', VMID: 5, ASID: i })]));
    const syncs = r.trace().filter((e) => op(e.words) === OP.CMD_SYNC).length;
    expect(syncs).toBe(1);
  });

  const hostile: [string, Uint32Array, number][] = [
    ['TLBI_NH_ALL', cmd({ name: 'CMD_TLBI_NH_ALL', VMID: 6 }), VCMDQ_ERR.ILL_OPCODE],
    ['CFGI_ALL', cmd({ name: 'CMD_CFGI_ALL' }), VCMDQ_ERR.ILL_OPCODE],
    ['TLBI_EL2_ALL', cmd({ name: 'CMD_TLBI_EL2_ALL' }), VCMDQ_ERR.ILL_OPCODE],
    ['TLBI_S12_VMALL of VM B', cmd({ name: 'CMD_TLBI_S12_VMALL', VMID: 6 }), VCMDQ_ERR.ILL_OPCODE],
    ["ATC_INV of VM B's physical StreamID", cmd({ name: 'CMD_ATC_INV', StreamID: 0x43, Size: 52 }), VCMDQ_ERR.ILL_ACCESS],
  ];

  it.each(hostile)('a raw %s on the guest VCMDQ never takes effect; §4.7 reports it to the guest, which recovers', (_n, bad, code) => {
    const r = rig();
    const g = r.a.cmdqv;
    const q = g.lvcmdqs[0]!;
    const res = { commands: 2, batches: 1, doorbells: 0, polls: 0, errors: [] as { index: number; code: number; name: string }[] };
    // A hostile guest writes its own ring: the command, then a good one, then CMD_SYNC.
    g.issueOn(q, [bad, cmd({ name: 'CMD_TLBI_NH_ASID', VMID: 0, ASID: 7 })], 0, 2, true, res);
    // The chain of §4.7: hardware error → host ISR → TEGRA241_CMDQV vEVENT → VMM → guest IRQ → guest ISR.
    expect(res.errors).toEqual([{ index: 0, code, name: code === VCMDQ_ERR.ILL_ACCESS ? 'CERROR_ILL_ACCESS' : 'CERROR_ILL_OPCODE' }]);
    expect(r.a.vcmdqv.counters).toMatchObject({ vevents: 1, guestInterrupts: 1 });
    expect(g.counters.interrupts).toBe(1);
    expect(g.log.find((e) => e.kind === 'vcmdq-skip')).toMatchObject({ lidx: 0, cons: 0, code, words: [...bad] });
    // The bad command reached nothing; the replacement CMD_SYNC and the good command ran.
    expect(r.executed).toEqual([[...cmd({ name: 'CMD_TLBI_NH_ASID', VMID: 5, ASID: 7 })]]);
    const t = r.trace().filter((e) => e.queue === TRACE_QUEUE_VCMDQ + r.a.vcmdq(0));
    expect(t.map((e) => [op(e.words), e.outcome])).toEqual([
      [op([...bad]), code],
      [OP.CMD_SYNC, 0],
      [OP.CMD_TLBI_NH_ASID, 0],
      [OP.CMD_SYNC, 0],
    ]);
    // Acknowledged: the hardware maps are clear and the queue is running.
    expect(r.reg(cmdqvGlobalOffset(C.CMDQV_VINTF_ERR_MAP, 0))).toBe(0);
    expect(r.reg(lvcmdqPage0(1, 0) + C.VCMDQ_GERROR.offset)).toBe(r.reg(lvcmdqPage0(1, 0) + C.VCMDQ_GERRORN.offset));
    expect(r.a.driver.issue([cmd({ name: 'CMD_TLBI_NH_ASID', VMID: 0, ASID: 8 })]).errors).toEqual([]);
  });

  it('a repeated error report (the host re-posting a map) does not make the guest rewrite a command', () => {
    const r = rig();
    const g = r.a.cmdqv;
    const none = () => ({ commands: 0, batches: 0, doorbells: 0, polls: 0, errors: [] });
    g.issueOn(g.lvcmdqs[0]!, [cmd({ name: 'CMD_TLBI_EL2_ALL' })], 0, 1, true, none());
    expect(g.counters.errorsRecovered).toBe(1);
    const q = g.lvcmdqs[0]!;
    const slot = q.base + (q.cons % 16) * 16;
    const before = [0, 1, 2, 3].map((k) => g.opts.mem.read32(slot + 4 * k));
    // The host posts VINTF1's old map once more (its ISR ran for another VINTF's error).
    expect(r.host.reportVintfError(1, [1n, 0n])).toBe(0);
    r.pump();
    expect(g.serviceInterrupt()).toBe(0);
    expect(g.counters.interrupts).toBe(2);
    expect(g.counters.errorsRecovered).toBe(1);
    expect([0, 1, 2, 3].map((k) => g.opts.mem.read32(slot + 4 * k))).toEqual(before);
  });

  it('an NH_VA naming VM B\'s VMID is executed with VM A\'s VMID (the field is overwritten)', () => {
    const r = rig();
    r.a.cmdqv.issueOn(r.a.cmdqv.lvcmdqs[0]!, [cmd({ name: 'CMD_TLBI_NH_VA', VMID: 6, ASID: 1, Address: 0x5000n })], 0, 1, true, { commands: 1, batches: 1, doorbells: 0, polls: 0, errors: [] });
    expect(r.executed).toEqual([[...cmd({ name: 'CMD_TLBI_NH_VA', VMID: 5, ASID: 1, Address: 0x5000n })]]);
    expect(r.executed.some((w) => vmidOf(w) === 6)).toBe(false);
  });

  it("one VM's halted queue stops neither the other VM's queues nor its own other LVCMDQ", () => {
    const r = rig();
    const ga = r.a.cmdqv;
    const qa = ga.lvcmdqs[0]!;
    const none = () => ({ commands: 0, batches: 0, doorbells: 0, polls: 0, errors: [] });
    // VM A rings its doorbell on an illegal command and does not wait (its CPU is elsewhere).
    ga.issueOn(qa, [cmd({ name: 'CMD_TLBI_EL2_ALL' }), cmd({ name: 'CMD_TLBI_NH_ASID', VMID: 0, ASID: 2 })], 0, 2, false, none());
    r.pump();
    const consA = r.reg(lvcmdqPage0(1, 0) + C.VCMDQ_CONS.offset);
    expect(consA).toBe(((VCMDQ_ERR.ILL_OPCODE << 24) | 0) >>> 0);
    expect(r.reg(cmdqvGlobalOffset(C.CMDQV_VINTF_ERR_MAP, 0))).toBe(1 << 1);
    // The VMM already told VM A's guest (its IRQ word moved), which has not looked yet.
    expect(ga.irqPending()).toBe(true);
    // VM B works throughout, on its own VINTF, with its own VMID and StreamID.
    const rb = r.b.driver.issue([cmd({ name: 'CMD_TLBI_NH_ASID', VMID: 0, ASID: 2 }), cmd({ name: 'CMD_ATC_INV', StreamID: VSID, Size: 52 })]);
    expect(rb.errors).toEqual([]);
    // VM A's other logical VCMDQ (another CPU's) works too.
    ga.issueOn(ga.lvcmdqs[1]!, [cmd({ name: 'CMD_TLBI_NH_ASID', VMID: 0, ASID: 3 })], 0, 1, true, none());
    expect(r.executed).toEqual([
      [...cmd({ name: 'CMD_TLBI_NH_ASID', VMID: 6, ASID: 2 })],
      [...cmd({ name: 'CMD_ATC_INV', StreamID: 0x43, Size: 52 })],
      [...cmd({ name: 'CMD_TLBI_NH_ASID', VMID: 5, ASID: 3 })],
    ]);
    expect(r.reg(lvcmdqPage0(1, 0) + C.VCMDQ_CONS.offset)).toBe(consA);
    // VM A's guest takes its interrupt: skip, acknowledge, and the queue finishes its work.
    expect(ga.serviceInterrupt()).toBe(1);
    r.pump();
    expect(r.reg(lvcmdqPage0(1, 0) + C.VCMDQ_CONS.offset) & 0xfffff).toBe(2);
    expect(r.executed.at(-1)).toEqual([...cmd({ name: 'CMD_TLBI_NH_ASID', VMID: 5, ASID: 2 })]);
  });
});

describe('vcmdq path: teardown (viommu.md §4.6, §4.7 step 5)', () => {
  it('destroying the HW queues (descending) and the vIOMMU frees the VINTF and its VCMDQs', () => {
    const r = rig();
    const v = r.a;
    const ids = v.fd.ids().filter((id) => v.fd.describe(id)?.type === 'HW_QUEUE');
    expect(v.fd.destroy(ids[0]!)).not.toBe(0); // EBUSY: queue 1 depends on queue 0
    // The guest turns VINTF0 off: the VMM destroys both, in descending order.
    v.cmdqv.opts.bus.write32(vintfRegOffset(0, C.VINTF_CONFIG), 0);
    expect(v.vcmdqv.counters.hwQueueFrees).toBe(2);
    for (let l = 0; l < 2; l++) {
      expect(r.reg(cmdqvGlobalOffset(C.CMDQV_CMDQ_ALLOC, v.vcmdq(l))) & 1).toBe(0);
      expect(r.reg(vcmdqPage0(v.vcmdq(l)) + C.VCMDQ_STATUS.offset)).toBe(0);
      expect(r.reg(vcmdqPage1(v.vcmdq(l)) + C.VCMDQ_BASE.offset)).toBe(0);
      expect(r.reg(lvcmdqPage1(1, l) + C.VCMDQ_BASE.offset)).toBe(0);
    }
    // VM B's queues are untouched.
    expect(r.reg(lvcmdqPage0(2, 0) + C.VCMDQ_STATUS.offset)).toBe(1);
  });
});

describe('vcmdq path: one host-kernel model per VMM worker', () => {
  it('AssignedVintfHostSmmu gives its VM the VINTF the system assigned, and only that one', () => {
    const calls: string[] = [];
    const host = new AssignedVintfHostSmmu(
      {
        queue: new RecordingQueue(),
        cmdqv: {
          numVintfs: 4, numVcmdqs: 8, numSidsPerVintf: 16, base: CMDQV_BASE,
          vintfEnable: (v, vmid) => calls.push(`enable ${v} ${vmid}`),
          vintfDisable: (v) => calls.push(`disable ${v}`),
        },
      },
      3,
    );
    const fd = new Iommufd();
    const dev = (sid: number) => ok(fd.bindDevice(host, sid, { canwbs: true })).devId;
    const d0 = dev(1);
    const d1 = dev(2);
    const ioasId = ok(fd.ioasAlloc()).ioasId;
    const hwpt = ok(fd.hwptAlloc({ flags: IOMMU_HWPT_ALLOC.NEST_PARENT, devId: d0, ptId: ioasId, dataType: IOMMU_HWPT_DATA.NONE })).hwptId;
    const alloc = (devId: number) => fd.viommuAlloc({ type: IOMMU_VIOMMU_TYPE.TEGRA241_CMDQV, devId, hwptId: hwpt, data: new Uint8Array(IOMMU_VIOMMU_TEGRA241_CMDQV_S.size) });
    const v = ok(alloc(d0));
    expect(v.vintf).toBe(3);
    const again = alloc(d1);
    expect(again.ok ? 0 : again.errno).toBe(ENOSPC);
    expect(fd.destroy(v.viommuId)).toBe(0);
    expect(ok(alloc(d1)).vintf).toBe(3);
    expect(calls).toEqual([`enable 3 ${v.vmid}`, 'disable 3', `enable 3 ${v.vmid}`]);
    expect(() => new AssignedVintfHostSmmu({ queue: new RecordingQueue(), cmdqv: { numVintfs: 4, numVcmdqs: 8, numSidsPerVintf: 16 } }, 0)).toThrow(RangeError);
  });
});
