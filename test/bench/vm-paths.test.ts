/**
 * The virtualization paths in the benchmark (bench/paths/vm.ts, vm-guest.ts): what each is built
 * to count per operation, how measured counts become cost-model events, which rows each path
 * skips and why, the VM started without its guest driver worker (src/system/vms.ts `guest:
 * false`), and one tiny run of every VM path whose rows must be well formed, with the counts
 * their VMMs and guests reported equal to what the paths are built to do. No timing is asserted.
 *
 * Event counts by hand (viommu.md §3.3-§3.4, §4): 'trap' (QEMU) sends each invalidation in its
 * own HWPT_INVALIDATE, which the kernel issues with its own CMD_SYNC; 'trap-batched' sends
 * everything up to the guest's CMD_SYNC in one call, which the kernel issues in chunks of 63
 * (VIOMMU_CHUNK) each with a CMD_SYNC; 'kernel-queue' does the same chunking without the VMM
 * (its doorbell exits to the kernel only); 'vcmdq' puts TLBI_NH_VA, TLBI_NH_ASID and ATC_INV on
 * the guest's VCMDQ with no exit, while a batch that starts with CFGI_CD goes whole to its
 * trapped SMMU queue (served as 'trap').
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_COSTS, measuredCalibrationRow } from '../../bench/cost-model.ts';
import { planRows, runBench, type BenchDocument, type BenchResult } from '../../bench/harness.ts';
import { findPath } from '../../bench/paths.ts';
import { vmMeasuredEvents } from '../../bench/paths/vm.ts';
import { formatTable } from '../../bench/report.ts';
import { opShape, workloadByName, type WorkloadName } from '../../bench/workloads.ts';
import { FULL_FEATURES, parseFeatures } from '../../src/spec/features.ts';
import { REG } from '../../src/spec/registers.ts';
import { System } from '../../src/system/system.ts';

const VM_NAMES = ['trap', 'trap-batched', 'kernel-queue', 'vcmdq'];
const shapeOf = (w: WorkloadName, batch = 1) => opShape(workloadByName(w)!.issues(batch));
const events = (path: string, w: WorkloadName, batch = 1) => findPath(path)!.events(shapeOf(w, batch), w);
/** [vm_exits, user_exits, ioctls, hw_commands, cmd_syncs] */
const ev = (vm_exits: number, user_exits: number, ioctls: number, hw_commands: number, cmd_syncs: number) => ({ vm_exits, user_exits, ioctls, hw_commands, cmd_syncs });

describe('VM paths: what each is built to do per operation', () => {
  it('trap: one exit to the VMM per doorbell, one ioctl, command and kernel CMD_SYNC per invalidation', () => {
    expect(events('trap', 'tlbi-va')).toEqual(ev(1, 1, 1, 1, 1));
    expect(events('trap', 'tlbi-va', 8)).toEqual(ev(1, 1, 8, 8, 8));
    expect(events('trap', 'unmap')).toEqual(ev(1, 1, 2, 2, 2));
    expect(events('trap', 'atc-inv')).toEqual(ev(2, 2, 2, 2, 2));
    expect(events('trap', 'stream', 8)).toEqual(ev(1, 1, 8, 8, 8));
  });

  it('trap-batched and kernel-queue: one call (or none) per guest CMD_SYNC, a kernel CMD_SYNC per 63 commands', () => {
    expect(events('trap-batched', 'tlbi-va', 8)).toEqual(ev(1, 1, 1, 8, 1));
    expect(events('trap-batched', 'tlbi-va', 64)).toEqual(ev(1, 1, 1, 64, 2));
    expect(events('trap-batched', 'unmap')).toEqual(ev(1, 1, 1, 2, 1));
    expect(events('kernel-queue', 'tlbi-va', 64)).toEqual(ev(1, 0, 0, 64, 2));
    expect(events('kernel-queue', 'atc-inv')).toEqual(ev(2, 0, 0, 2, 2));
  });

  it('vcmdq: no exit for what its VCMDQ takes; a batch starting with CFGI_CD goes to the trapped queue', () => {
    expect(events('vcmdq', 'tlbi-va', 8)).toEqual(ev(0, 0, 0, 8, 1));
    expect(events('vcmdq', 'atc-inv')).toEqual(ev(0, 0, 0, 2, 2));
    expect(events('vcmdq', 'stream', 8)).toEqual(ev(0, 0, 0, 8, 0));
    expect(events('vcmdq', 'unmap')).toEqual(ev(1, 1, 2, 2, 2));
  });

  it('hops: 2 through a VMM or the kernel, 1 straight to a VCMDQ, 2 for what vcmdq sends to its trapped queue', () => {
    for (const n of ['trap', 'trap-batched', 'kernel-queue']) expect(findPath(n)!.hops).toBe(2);
    const v = findPath('vcmdq')!;
    expect(v.hops).toBe(1);
    expect((['tlbi-va', 'tlbi-range', 'atc-inv', 'stream', 'unmap'] as const).map((w) => v.hopsFor!(w))).toEqual([1, 1, 1, 1, 2]);
  });
});

describe('VM paths: events from the counts of a row', () => {
  it('every trapped write is an exit, the VMM\'s are user exits, hardware is the physical queue plus the LVCMDQ', () => {
    const m = vmMeasuredEvents({
      ops: 4,
      service: { mmio_traps: 4, user_exits: 4, cmdqv_mmio_traps: 2, ioctls: 8, physical_commands: 8, physical_syncs: 8, vm_exits: 4 },
      guest: { vcmdq_commands: 6, vcmdq_syncs: 3 },
    });
    // exits (4 + 2) / 4, user exits (4 + 2) / 4, ioctls 8 / 4, commands (8 + 6) / 4, syncs (8 + 3) / 4.
    expect(m).toEqual({ events: ev(1.5, 1.5, 2, 3.5, 2.75), deviceCommands: 8 + 6 + 8 + 3 });
    // Rounded to 4 decimals: one extra exit (a stream's drain) over 3 operations.
    expect(vmMeasuredEvents({ ops: 3, service: { mmio_traps: 4 }, guest: {} }).events.vm_exits).toBe(1.3333);
  });

  it('projects trap and vcmdq from their counts: tlbi-va 4320 against 820 ns under the defaults, 81.0 % less', () => {
    const r = measuredCalibrationRow({ policy: 'hybrid', workload: 'tlbi-va', batch: 1, queue_log2: 8 }, { sync: 'msi', events: ev(1, 1, 1, 1, 1), p50: 4000 }, { sync: 'cons', events: ev(0, 0, 0, 1, 1), p50: 1000 }, DEFAULT_COSTS);
    expect([r.trap_ns, r.vcmdq_ns, r.reduction, r.in_published_range, r.raw_reduction]).toEqual([4320, 820, 0.8102, true, 0.75]);
  });
});

describe('VM paths: rows each can run', () => {
  const base = { paths: VM_NAMES, policies: ['hybrid'], batches: [1], producers: [1, 2], syncs: ['msi', 'cons'] as ('msi' | 'cons')[], queues: [8], quick: true, cost: DEFAULT_COSTS };
  const skips = (features = FULL_FEATURES, workloads: WorkloadName[] = ['tlbi-va', 'unmap']) =>
    planRows({ ...base, workloads, features }).map((r) => `${r.pathName} ${r.workload.name} p${r.producers} ${r.sync}: ${r.skip ?? 'runs'}`);

  it('one producer only; on vcmdq the VCMDQ rows are the CONS-polled ones; the rest runs', () => {
    const rows = skips().filter((r) => r.includes(' p1 '));
    expect(rows).toEqual([
      'trap tlbi-va p1 msi: runs', 'trap unmap p1 msi: runs', 'trap tlbi-va p1 cons: runs', 'trap unmap p1 cons: runs',
      'trap-batched tlbi-va p1 msi: runs', 'trap-batched unmap p1 msi: runs', 'trap-batched tlbi-va p1 cons: runs', 'trap-batched unmap p1 cons: runs',
      'kernel-queue tlbi-va p1 msi: runs', 'kernel-queue unmap p1 msi: runs', 'kernel-queue tlbi-va p1 cons: runs', 'kernel-queue unmap p1 cons: runs',
      "vcmdq tlbi-va p1 msi: a VCMDQ completes CMD_SYNC with CS = SIG_NONE only, polled on VCMDQ_CONS (viommu.md §4.5): its rows are the 'cons' ones",
      'vcmdq unmap p1 msi: runs', 'vcmdq tlbi-va p1 cons: runs', 'vcmdq unmap p1 cons: runs',
    ]);
    for (const r of skips().filter((x) => x.includes(' p2 '))) expect(r).toMatch(/: the VM has one guest CPU: its driver is the single producer on its queues$/);
  });

  it('needs nesting on the host, and ATS for atc-inv', () => {
    for (const r of skips(parseFeatures('no-s2'))) expect(r).toMatch(/(: a VM needs a host SMMU with stage 1 and stage 2 \(nesting\)|one guest CPU)/);
    for (const r of skips(parseFeatures('no-ats'), ['atc-inv'])) expect(r).toMatch(/: needs ATS \(SMMU_IDR0.ATS == 1\) for CMD_ATC_INV$/);
  });
});

describe('a VM without its guest driver worker (VmConfig.guest = false)', () => {
  it('starts its VMM but no guest: the virtual SMMU stays at reset, guestOptions holds the guest driver\'s options', async () => {
    const sys = await System.start({ policy: 'hybrid:200', cmdqv: true, vms: [{ path: 'vcmdq', devices: [{ vsid: 0x10, psid: 0x10 }], guest: false }] });
    try {
      const vm = sys.vms[0]!;
      expect(vm.guest).toBe(false);
      expect(() => vm.driver).toThrow('VM 0 has no guest driver worker (started with guest: false; its guest runs elsewhere, from vm.guestOptions)');
      // SMMU_CR0 at its reset value 0: nobody enabled the queues or translation (§6.3.9).
      expect(vm.readReg(REG.SMMU_CR0.offset)).toBe(0);
      const g = vm.guestOptions;
      expect(g.sab).toBe(sys.board.sab);
      expect(g.options).toMatchObject({ window: 'vsmmu0', syncMode: 'msi', ram: { start: vm.ram.ipa, end: vm.ram.ipa + vm.ram.bytes }, memView: { base: vm.ram.ipa, hostPa: vm.ram.hostPa, bytes: vm.ram.bytes } });
      expect(g.cmdqv).toMatchObject({ window: 'vcmdqv0', physWindow: 'cmdqv' });
      expect((await vm.state()).counters.mmioTraps).toBe(0);
    } finally {
      await sys.stop();
    }
  }, 30_000);
});

// ---------------------------------------------------------------------------------------------
// One tiny run of every VM path
// ---------------------------------------------------------------------------------------------

const SAMPLES = 60;
const WARMUP = 10;
const WORKLOADS: WorkloadName[] = ['tlbi-va', 'unmap', 'atc-inv', 'stream'];
let doc: BenchDocument;

beforeAll(async () => {
  const run = await runBench({
    paths: VM_NAMES, policies: ['hybrid:200'], batches: [1, 8], producers: [1], syncs: ['cons'], queues: [8], workloads: WORKLOADS,
    quick: true, features: FULL_FEATURES, cost: DEFAULT_COSTS, samples: SAMPLES, warmup: WARMUP,
  });
  doc = run.doc;
}, 180_000);


const opsOf = (r: BenchResult): number => r.warmup + r.samples;

describe('a tiny run of the VM paths', () => {
  it('runs every row, each well formed, the fixed keys first', () => {
    // 4 paths × (tlbi-va ×2 batches, unmap, atc-inv, stream ×2 batches).
    expect(doc.results.map((r) => `${r.path} ${r.workload} ${r.batch}`)).toEqual(
      VM_NAMES.flatMap((p) => ['tlbi-va 1', 'tlbi-va 8', 'unmap 1', 'atc-inv 1', 'stream 1', 'stream 8'].map((w) => `${p} ${w}`)),
    );
    const fixed = ['path', 'workload', 'policy', 'batch', 'producers', 'hops', 'latency_ns', 'throughput_cmds_per_s', 'floor', 'ratio_to_floor'];
    for (const r of doc.results) {
      const what = `${r.path} ${r.workload} ${r.batch}`;
      expect([r.skipped, r.error], what).toEqual([null, null]);
      expect(Object.keys(r).slice(0, fixed.length)).toEqual(fixed);
      for (const k of ['p50', 'p90', 'p99', 'p999', 'max', 'mean'] as const) expect(r.latency_ns[k]! > 0, `${what} ${k}`).toBe(true);
      expect(r.throughput_cmds_per_s! > 0 && r.projected!.ns_per_op > 0).toBe(true);
      expect(r.hops).toBe(r.path === 'vcmdq' && r.workload !== 'unmap' ? 1 : 2);
      expect(r.events_source).toBe('measured');
      expect(r.counters!.command_errors).toBe(0);
      expect(r.device!.command_errors).toBe(0);
    }
  });

  it('counts what each path is built to do; a stream\'s drain adds one exit on the trapped paths', () => {
    for (const r of doc.results) {
      const what = `${r.path} ${r.workload} ${r.batch}`;
      const want = findPath(r.path)!.events(shapeOf(r.workload as WorkloadName, r.batch), r.workload as WorkloadName);
      if (r.workload !== 'stream') {
        expect(r.events_per_op, what).toEqual(want);
        continue;
      }
      // One doorbell per operation; the drain's lone CMD_SYNC is one more doorbell. Where the
      // VMM or the kernel batches, what one flush covers depends on timing: only bounds.
      const ops = opsOf(r);
      const exit = r.path === 'vcmdq' ? 0 : Math.round(((ops + 1) / ops) * 1e4) / 1e4;
      expect([r.events_per_op!.vm_exits, r.events_per_op!.hw_commands], what).toEqual([exit, r.batch]);
      if (r.path === 'trap') expect(r.events_per_op, what).toEqual(ev(exit, exit, r.batch, r.batch, r.batch));
      if (r.path === 'vcmdq') expect(r.events_per_op, what).toEqual(ev(0, 0, 0, r.batch, Math.round((1 / ops) * 1e4) / 1e4));
      if (r.path === 'trap-batched' || r.path === 'kernel-queue') expect(r.events_per_op!.cmd_syncs, what).toBeLessThanOrEqual(r.batch);
    }
  });

  it('saw the physical SMMU consume exactly what the VMM and the guest\'s VCMDQ put on it', () => {
    for (const r of doc.results) {
      const what = `${r.path} ${r.workload} ${r.batch}`;
      const v = r.vmm!;
      const c = r.counters!;
      expect(r.device!.commands_consumed, what).toBe(r.expected_device_commands);
      expect(r.expected_device_commands, what).toBe(v.physical_commands! + v.physical_syncs! + c.vcmdq_commands! + c.vcmdq_syncs!);
      const ops = opsOf(r);
      const shape = shapeOf(r.workload as WorkloadName, r.batch);
      const direct = r.path === 'vcmdq' && r.workload !== 'unmap';
      // Every guest invalidation went to exactly one place: the VMM / kernel, or the LVCMDQ.
      expect(direct ? c.vcmdq_commands : v.guest_invalidations, what).toBe(ops * shape.invalidations);
      expect(direct ? v.guest_commands : c.vcmdq_commands, what).toBe(0);
      expect([v.refused, v.errors, v.physical_errors], what).toEqual([0, 0, 0]);
      expect(r.producer_queues, what).toEqual([direct ? 'LVCMDQ0 of VINTF1' : r.path === 'kernel-queue' ? 'vSMMU CMDQ (in-kernel)' : 'vSMMU CMDQ (trapped)']);
    }
  });

  it('publishes the VMM counters with the documented keys, and the CMDQV window\'s on vcmdq', () => {
    const keys = ['mmio_traps', 'vm_exits', 'user_exits', 'ioctls', 'invalidate_ioctls', 'guest_commands', 'guest_syncs', 'guest_invalidations', 'physical_submissions', 'physical_commands', 'physical_syncs', 'refused', 'errors', 'physical_errors'];
    for (const r of doc.results) {
      expect(Object.keys(r.vmm!)).toEqual(expect.arrayContaining(keys));
      expect(Object.keys(r.vmm!).some((k) => k.startsWith('cmdqv_'))).toBe(r.path === 'vcmdq');
      expect(Object.keys(r.counters!)).toEqual(expect.arrayContaining(['doorbells', 'polls', 'waits', 'syncs', 'command_errors', 'vcmdq_commands', 'vcmdq_syncs']));
    }
  });

  it('compares vcmdq with trap from the measured counts: tlbi-va 81.0 % less under the default costs', () => {
    const m = doc.calibration_measured.map((r) => [r.workload, r.batch, r.trap_sync, r.vcmdq_sync, r.trap_ns, r.vcmdq_ns, r.reduction, r.in_published_range]);
    expect(m).toEqual([
      // trap 1000 + 1000 + 1500 + 20 + 800; vcmdq 20 + 800.
      ['tlbi-va', 1, 'cons', 'cons', 4320, 820, 0.8102, true],
      // trap 2000 + 8·(1500 + 20 + 800); vcmdq 8·20 + 800.
      ['tlbi-va', 8, 'cons', 'cons', 20560, 960, 0.9533, false],
      // unmap goes to vcmdq's trapped queue (its batch starts with CFGI_CD): no difference.
      ['unmap', 1, 'cons', 'cons', 6640, 6640, 0, false],
      // trap 2·(2000 + 1500 + 20 + 800); vcmdq 2·(20 + 800).
      ['atc-inv', 1, 'cons', 'cons', 8640, 1640, 0.8102, true],
    ]);
    expect(formatTable(doc)).toContain("measured: vcmdq vs trap projected from this run's counts: hybrid:200 tlbi-va cons 4.32 µs -> 820 ns: 81.0% less (raw p50 ");
  });

  it('says under the table when a path has more threads per invalidation than the machine has CPUs', () => {
    const note = formatTable(doc).split('\n').filter((l) => l.startsWith('note: '));
    // trap, trap-batched, kernel-queue and vcmdq's unmap: guest, VMM or kernel, SMMU.
    expect(note).toEqual(doc.machine.cpus < 3
      ? [`note: trap, trap-batched, kernel-queue, vcmdq (unmap): up to 3 threads per invalidation on ${doc.machine.cpus} CPUs with a spinning wait policy, so a spinning thread holds the core another needs (docs/benchmarks.md, Caveats; --policy wait shows the hand-offs themselves)`]
      : []);
  });
});
