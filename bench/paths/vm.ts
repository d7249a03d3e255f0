/**
 * The virtualization paths (issue 6, src/system/vms.ts) as bench paths: a guest's invalidation
 * from its first store into its queue to its observed completion, timed inside the bench worker
 * that runs the guest (vm-guest.ts), as the native path is timed.
 *
 * Each session starts one System with one VM on the path, with `guest: false`: the VM's serving
 * worker runs (the VMM, or the host kernel's in-kernel queue, with the VM's iommufd objects and
 * nested STE), but no guest driver worker. The bench worker builds the guest driver that worker
 * would have run from `vm.guestOptions`, and brings it up with the same function
 * (src/virt/guest-setup.ts resetGuest: on 'vcmdq' the guest CMDQV driver and its VcmdqIssuer).
 *
 * The VM has one assigned device, vSID = StreamID = workloads.ts STREAM_ID (the CFGI_CD and
 * ATC_INV operand), and opts in to ATS where the host SMMU has it (QEMU's accelerated vSMMU
 * presents ATS only when asked, vsmmuFeatures), so that `atc-inv` runs in the guest too.
 *
 * What a row costs is counted, not assumed: the VMM's counters (VM exits, exits to the VMM in
 * user space, ioctls, commands and CMD_SYNCs put on the physical queue) and, on 'vcmdq', what the
 * guest put on its LVCMDQ, as differences over the row (measuredEvents). `events(shape)` says
 * what each path is built to do, which a tiny run checks against the counts (test/bench).
 */
import { System } from '../../src/system/system.ts';
import type { Vm, VmConfig, VmmState } from '../../src/system/vms.ts';
import { VIOMMU_CHUNK } from '../../src/virt/iommufd.ts';
import type { TrapBatch, VmPath } from '../../src/virt/vsmmu.ts';
import { directEvents, referenceTrapEvents, type CostCounts } from '../cost-model.ts';
import type { BenchPath, RowCounts } from '../paths.ts';
import { STREAM_ID, stage1GuestIssues, type OpShape, type WorkloadName } from '../workloads.ts';
import type { VmGuestData } from './vm-guest.ts';

/** Device counters each VM row reports: the physical SMMU's (src/mem/board.ts COUNTER). */
const DEVICE_COUNTERS = ['COMMANDS_CONSUMED', 'CMD_SYNCS', 'MSI_WRITES', 'COMMAND_ERRORS', 'MMIO_WRITES', 'DEVICE_SLEEPS', 'DEVICE_WAKEUPS'] as const;

/** Workloads whose commands a guest-owned VCMDQ takes (TLBI_NH_VA, TLBI_NH_ASID, ATC_INV), all of them. */
const VCMDQ_WORKLOADS: ReadonlySet<WorkloadName> = new Set(['tlbi-va', 'tlbi-range', 'atc-inv', 'stream']);

const DIGITS = 1e4;
const per = (n: number, ops: number): number => (ops > 0 ? Math.round((n / ops) * DIGITS) / DIGITS : 0);

/** Physical CMD_SYNCs of groups of `n` forwarded commands: the kernel's chunks of VIOMMU_CHUNK (viommu.md §3.3). */
function chunkSyncs(groups: readonly number[]): number {
  return groups.reduce((s, n) => s + Math.ceil(n / VIOMMU_CHUNK), 0);
}

/**
 * The invalidations of each group that ends the batch a forwarder sends at once: with a CMD_SYNC,
 * everything since the previous one; without (a stream), at best one doorbell's worth (the
 * forwarder sends what it has when its queue runs empty, so one send may cover several).
 */
function forwardedGroups(s: OpShape): number[] {
  return s.groups.filter((n) => n > 0);
}

/** What each VM path is built to do per operation (checked against the counts on a tiny run). */
function expectedEvents(path: VmPath, trapBatch: TrapBatch, workload: WorkloadName | undefined, s: OpShape): CostCounts {
  if (path === 'vcmdq' && workload !== undefined && VCMDQ_WORKLOADS.has(workload)) return directEvents(s);
  // 'vcmdq' otherwise: the batch's first command (CFGI_CD) sends the whole batch to the trapped
  // SMMU queue, which its VMM serves as 'trap' (one command per ioctl).
  if (path === 'trap' || path === 'vcmdq') {
    if (trapBatch === 'single') return referenceTrapEvents(s);
    const g = forwardedGroups(s);
    return { vm_exits: s.doorbells, user_exits: s.doorbells, ioctls: g.length, hw_commands: s.invalidations, cmd_syncs: chunkSyncs(g) };
  }
  // The in-kernel queue: the doorbell exits to the host kernel, which converts and submits in
  // chunks of VIOMMU_CHUNK with its own CMD_SYNC; no ioctl, no user space.
  const g = forwardedGroups(s);
  return { vm_exits: s.doorbells, user_exits: 0, ioctls: 0, hw_commands: s.invalidations, cmd_syncs: chunkSyncs(g) };
}

/** The VMM's counters as one flat record: VsmmuCounters in snake case, and the CMDQV window's as cmdqv_*. */
export function flattenVmmState(s: VmmState): Record<string, number> {
  const snake = (k: string): string => k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(s.counters)) out[snake(k)] = v;
  if (s.cmdqv !== undefined) for (const [k, v] of Object.entries(s.cmdqv.counters)) out[`cmdqv_${snake(k)}`] = v;
  return out;
}

/**
 * Events per operation from the row's counts. Every trapped guest write is a VM exit (the vSMMU
 * window's and, on 'vcmdq', the trapped CMDQV window's); the exits the VMM in user space handles
 * are `user_exits` (all of them on 'trap' and 'vcmdq', none of the in-kernel queue's doorbells);
 * the hardware part is what the host put on the physical CMDQ (the VMM's or kernel's commands
 * and CMD_SYNCs) plus, on 'vcmdq', what the guest put on its LVCMDQ. A stream's drain (one
 * CMD_SYNC at the end) is counted with the row's operations.
 */
export function vmMeasuredEvents(m: RowCounts): { events: CostCounts; deviceCommands: number } {
  const v = (k: string): number => m.service[k] ?? 0;
  const g = (k: string): number => m.guest[k] ?? 0;
  const cmdqvTraps = v('cmdqv_mmio_traps');
  const hw = v('physical_commands') + g('vcmdq_commands');
  const syncs = v('physical_syncs') + g('vcmdq_syncs');
  return {
    events: {
      vm_exits: per(v('mmio_traps') + cmdqvTraps, m.ops),
      user_exits: per(v('user_exits') + cmdqvTraps, m.ops),
      ioctls: per(v('ioctls'), m.ops),
      hw_commands: per(hw, m.ops),
      cmd_syncs: per(syncs, m.ops),
    },
    deviceCommands: hw + syncs,
  };
}

interface VmPathSpec {
  readonly name: string;
  readonly path: VmPath;
  readonly trapBatch: TrapBatch;
  readonly hops: number;
  readonly summary: string;
}

function vmPath(spec: VmPathSpec): BenchPath {
  const guestModule = new URL(`./vm-guest${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url).href;
  return {
    name: spec.name,
    summary: spec.summary,
    hops: spec.hops,
    hopsFor: (w) => (spec.path === 'vcmdq' && !VCMDQ_WORKLOADS.has(w) ? 2 : spec.hops),
    available: () => ({ ok: true }),
    unsupported(c) {
      if (c.producers !== 1) return "the VM has one guest CPU: its driver is the single producer on its queues";
      if (!c.features.s1 || !c.features.s2) return 'a VM needs a host SMMU with stage 1 and stage 2 (nesting)';
      if (c.queueLog2 > c.features.cmdqs) return `the queue of 2^${c.queueLog2} entries exceeds SMMU_IDR1.CMDQS = ${c.features.cmdqs}`;
      if (spec.path === 'vcmdq' && c.sync === 'msi' && VCMDQ_WORKLOADS.has(c.workload.name)) {
        return "a VCMDQ completes CMD_SYNC with CS = SIG_NONE only, polled on VCMDQ_CONS (viommu.md §4.5): its rows are the 'cons' ones";
      }
      return undefined;
    },
    events: (shape, workload) => expectedEvents(spec.path, spec.trapBatch, workload, shape),
    measuredEvents: vmMeasuredEvents,
    adaptIssues: stage1GuestIssues,
    async start(env) {
      const vm: VmConfig = {
        path: spec.path,
        devices: [{ vsid: STREAM_ID, psid: STREAM_ID }],
        guest: false,
        features: { ats: env.features.ats },
        ...(spec.path !== 'kernel-queue' ? { trapBatch: spec.trapBatch } : {}),
      };
      const sys = await System.start({ features: env.features, policy: env.policy, vms: [vm], ...(spec.path === 'vcmdq' ? { cmdqv: true } : {}) });
      const v: Vm = sys.vms[0]!;
      return {
        guestModule,
        guestData: (): VmGuestData => ({ path: spec.path, setup: v.guestOptions, vintf: v.vintf ?? null }),
        deviceCounters() {
          const out: Record<string, number> = {};
          for (const k of DEVICE_COUNTERS) out[k.toLowerCase()] = sys.counter(k);
          return out;
        },
        serviceCounters: async () => flattenVmmState(await v.state()),
        stop: () => sys.stop(),
      };
    },
  };
}

export const TRAP = vmPath({
  name: 'trap',
  path: 'trap',
  trapBatch: 'single',
  hops: 2,
  summary: "guest CMDQ trapped by the VMM, which forwards each command in its own HWPT_INVALIDATE ioctl (QEMU's accelerated vSMMU)",
});
export const TRAP_BATCHED = vmPath({
  name: 'trap-batched',
  path: 'trap',
  trapBatch: 'sync',
  hops: 2,
  summary: 'guest CMDQ trapped by the VMM, which forwards every command up to each CMD_SYNC in one HWPT_INVALIDATE ioctl',
});
export const KERNEL_QUEUE = vmPath({
  name: 'kernel-queue',
  path: 'kernel-queue',
  trapBatch: 'single',
  hops: 2,
  summary: "guest CMDQ consumed by the host kernel's in-kernel queue: the doorbell exits to the kernel, no VMM, no ioctl",
});
export const VCMDQ = vmPath({
  name: 'vcmdq',
  path: 'vcmdq',
  trapBatch: 'single',
  hops: 1,
  summary: "guest VCMDQ consumed directly by hardware (Tegra241 CMDQV); what it does not take goes to the trapped SMMU queue",
});

/** The VM paths, in the order tables list them. */
export const VM_PATHS: readonly BenchPath[] = [TRAP, TRAP_BATCHED, KERNEL_QUEUE, VCMDQ];
