/**
 * The cost model: project a path's per-invalidation event counts onto real hardware.
 *
 * A simulated path cannot take a VM exit or make an ioctl, and the simulated SMMU consumes a
 * command at JavaScript speed. What each path does per invalidation can be counted exactly,
 * though: VM exits, the exits among them that go on to the VMM in user space, ioctls, commands
 * consumed by the hardware SMMU, CMD_SYNCs. The projection is
 *
 *   projected_ns = vm_exits·exit + user_exits·uexit + ioctls·ioctl + hw_commands·cmd + cmd_syncs·sync
 *
 * with costs in ns per event that the user sets (--cost exit=…,uexit=…,ioctl=…,cmd=…,sync=… or a
 * JSON file). The VM paths count their events while they run (their VMM's counters, bench/paths/
 * vm.ts); the native paths put the guest's commands on a hardware queue, so theirs follow from
 * the operation's shape (directEvents). With `hw=measured`, the hardware part (hw_commands·cmd + cmd_syncs·sync) is replaced by
 * the path's measured p50 on this machine (for paths whose hardware part is the simulated SMMU).
 *
 * The default calibration is chosen so that the one published end-to-end figure holds: direct
 * VCMDQ invalidation takes 70–90 % less time than the trapped path on NVIDIA Grace
 * (shared/reference/viommu.md §7, Tegra241 CMDQV cover letter v14, 29 Aug 2024). Only that ratio
 * is calibrated; each absolute cost is an assumption (docs/benchmarks.md "Calibration").
 */
import { readFileSync } from 'node:fs';
import type { OpShape } from './workloads.ts';

/** Events per operation. CMD_SYNCs are counted in cmd_syncs only, never in hw_commands. */
export interface CostCounts {
  /** Guest writes to a trapped register page: each a VM exit, whoever then handles it. */
  vm_exits: number;
  /** The VM exits that the host kernel hands on to the VMM in user space (KVM_EXIT_MMIO). */
  user_exits: number;
  ioctls: number;
  /** Commands other than CMD_SYNC consumed by the hardware SMMU. */
  hw_commands: number;
  /** CMD_SYNCs the hardware SMMU completes. */
  cmd_syncs: number;
}

export type HardwarePart = 'model' | 'measured';

/** ns per event. */
export interface CostModel {
  /** A VM exit handled in the host kernel, and the return to the guest. */
  exit: number;
  /** On top of `exit`: the exit handed on to the VMM in user space, and back into the guest. */
  uexit: number;
  ioctl: number;
  cmd: number;
  sync: number;
  /** 'model': hardware time from cmd and sync; 'measured': the path's measured p50 instead. */
  hw: HardwarePart;
  /** 'default', or where the user's values came from. */
  source: string;
}

/**
 * The default calibration (ns). Assumptions, not measurements:
 * - exit 1000: a guest MMIO write to a trapped page (a stage 2 fault KVM/arm64 handles in the
 *   host kernel), and the return to the guest;
 * - uexit 1000: the same exit handed on to the VMM in user space (KVM_EXIT_MMIO, the VMM's
 *   emulation, KVM_RUN again) on top of `exit`: a trapped doorbell costs exit + uexit = 2000;
 * - ioctl 1500: one IOMMU_HWPT_INVALIDATE: syscall, the copy of the user array, the conversion
 *   in arm_vsmmu_cache_invalidate (viommu.md §3.3), without the hardware wait;
 * - cmd 20: the SMMU consuming one invalidation command;
 * - sync 800: one CMD_SYNC from its fetch to the completion the CPU observes (an MSI write or a
 *   CONS update read back). viommu.md §7: no published CMD_SYNC latency exists.
 * Under these, every workload's direct-VCMDQ projection is 70–90 % below the trapped one
 * (calibrationCheck; test/bench/cost-model.test.ts).
 */
export const DEFAULT_COSTS: CostModel = Object.freeze({ exit: 1000, uexit: 1000, ioctl: 1500, cmd: 20, sync: 800, hw: 'model', source: 'default' });

/** The published range the default calibration must reproduce (viommu.md §7). */
export const GRACE_REDUCTION = Object.freeze({ min: 0.7, max: 0.9 });

const KEYS = ['exit', 'uexit', 'ioctl', 'cmd', 'sync'] as const;
type CostKey = (typeof KEYS)[number];

function checkCost(key: string, v: unknown, where: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
    throw new Error(`cost ${key} in ${where} must be a number of ns ≥ 0, not ${JSON.stringify(v)}`);
  }
  return v;
}

function checkHw(v: unknown, where: string): HardwarePart {
  if (v !== 'model' && v !== 'measured') throw new Error(`cost hw in ${where} must be 'model' or 'measured', not ${JSON.stringify(v)}`);
  return v;
}

/** Parse `exit=1000,uexit=1000,ioctl=1500,cmd=20,sync=800,hw=model`; any subset overrides the defaults. */
export function parseCostSpec(text: string, base: CostModel = DEFAULT_COSTS): CostModel {
  const out: CostModel = { ...base, source: `--cost ${text}` };
  for (const part of text.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) throw new Error(`cost '${part}': expected key=value with key one of ${KEYS.join(', ')}, hw`);
    const key = part.slice(0, eq).trim();
    const raw = part.slice(eq + 1).trim();
    if (key === 'hw') {
      out.hw = checkHw(raw, '--cost');
    } else if ((KEYS as readonly string[]).includes(key)) {
      const v = raw === '' ? Number.NaN : Number(raw);
      out[key as CostKey] = checkCost(key, v, '--cost');
    } else {
      throw new Error(`cost '${key}' is not one of ${KEYS.join(', ')}, hw`);
    }
  }
  return out;
}

/** A JSON cost file: `{"exit": 1000, "uexit": 1000, "ioctl": 1500, "cmd": 20, "sync": 800, "hw": "model"}`; any subset. */
export function parseCostJson(text: string, where: string, base: CostModel = DEFAULT_COSTS): CostModel {
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch (e) {
    throw new Error(`cost file ${where} is not JSON: ${(e as Error).message}`);
  }
  if (typeof j !== 'object' || j === null || Array.isArray(j)) throw new Error(`cost file ${where} must hold one JSON object`);
  const out: CostModel = { ...base, source: where };
  for (const [k, v] of Object.entries(j)) {
    if (k === 'hw') out.hw = checkHw(v, where);
    else if ((KEYS as readonly string[]).includes(k)) out[k as CostKey] = checkCost(k, v, where);
    else throw new Error(`cost file ${where}: unknown key '${k}' (keys: ${KEYS.join(', ')}, hw)`);
  }
  return out;
}

/** `--cost` as given: key=value pairs, or the path of a JSON file. */
export function resolveCost(arg: string | undefined): CostModel {
  if (arg === undefined) return DEFAULT_COSTS;
  if (arg.includes('=')) return parseCostSpec(arg);
  let text: string;
  try {
    text = readFileSync(arg, 'utf8');
  } catch (e) {
    throw new Error(`cost file ${arg}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return parseCostJson(text, arg);
}

export interface Projection {
  /** Projected ns per operation. */
  ns_per_op: number;
  breakdown: { vm_exits_ns: number; user_exits_ns: number; ioctls_ns: number; hw_commands_ns: number; cmd_syncs_ns: number; measured_ns: number };
}

/** counts × costs; with hw = 'measured', the hardware part is `measuredNs` instead. */
export function project(c: CostCounts, cost: CostModel, measuredNs?: number): Projection {
  const measured = cost.hw === 'measured' && measuredNs !== undefined && Number.isFinite(measuredNs);
  const b = {
    vm_exits_ns: c.vm_exits * cost.exit,
    user_exits_ns: c.user_exits * cost.uexit,
    ioctls_ns: c.ioctls * cost.ioctl,
    hw_commands_ns: measured ? 0 : c.hw_commands * cost.cmd,
    cmd_syncs_ns: measured ? 0 : c.cmd_syncs * cost.sync,
    measured_ns: measured ? measuredNs : 0,
  };
  const total = b.vm_exits_ns + b.user_exits_ns + b.ioctls_ns + b.hw_commands_ns + b.cmd_syncs_ns + b.measured_ns;
  return { ns_per_op: Math.round(total * 10) / 10, breakdown: b };
}

/** Events of a path that puts the guest's commands straight on a hardware queue (native, ECMDQ, VCMDQ). */
export function directEvents(s: OpShape): CostCounts {
  return { vm_exits: 0, user_exits: 0, ioctls: 0, hw_commands: s.invalidations, cmd_syncs: s.syncs };
}

/**
 * Reference events of the trapped path as QEMU's accelerated vSMMU and the kernel do it
 * (viommu.md §3.3–§3.4): each guest doorbell (SMMU_CMDQ_PROD write) is one VM exit, which goes
 * on to the VMM in user space; the VMM
 * forwards each invalidation command in its own IOMMU_HWPT_INVALIDATE ioctl (entry_num = 1); the
 * kernel puts it on the physical CMDQ with its own CMD_SYNC and waits; the guest's CMD_SYNC is
 * completed by the VMM (never reaches hardware). The guest polls its CMD_SYNC MSI in memory, so
 * completion costs no exit. The 'trap' bench path expects exactly these and reports what its VMM
 * counted (bench/paths/vm.ts); the calibration check uses these.
 */
export function referenceTrapEvents(s: OpShape): CostCounts {
  return { vm_exits: s.doorbells, user_exits: s.doorbells, ioctls: s.invalidations, hw_commands: s.invalidations, cmd_syncs: s.invalidations };
}

/** Reference events of direct VCMDQ invalidation (viommu.md §4, §8.5): no exit, no ioctl. */
export function referenceVcmdqEvents(s: OpShape): CostCounts {
  return directEvents(s);
}

export interface CalibrationRow {
  workload: string;
  trap_ns: number;
  vcmdq_ns: number;
  /** 1 − vcmdq/trap. */
  reduction: number;
  in_published_range: boolean;
}

/** The projected trap-versus-VCMDQ reduction per operation shape under `cost` (hw = model). */
export function calibrationCheck(shapes: readonly { name: string; shape: OpShape }[], cost: CostModel = DEFAULT_COSTS): CalibrationRow[] {
  const model: CostModel = { ...cost, hw: 'model' };
  return shapes.map(({ name, shape }) => {
    const trap = project(referenceTrapEvents(shape), model).ns_per_op;
    const vcmdq = project(referenceVcmdqEvents(shape), model).ns_per_op;
    const reduction = trap > 0 ? 1 - vcmdq / trap : 0;
    return {
      workload: name,
      trap_ns: trap,
      vcmdq_ns: vcmdq,
      reduction: Math.round(reduction * 1e4) / 1e4,
      in_published_range: reduction >= GRACE_REDUCTION.min && reduction <= GRACE_REDUCTION.max,
    };
  });
}

/** The trap-versus-VCMDQ check on a run's own rows: each side projected from its measured counts. */
export interface MeasuredCalibrationRow {
  policy: string;
  workload: string;
  batch: number;
  queue_log2: number;
  /** The sync mode of each row (a VCMDQ's guest always polls CONS, viommu.md §4.5). */
  trap_sync: string;
  vcmdq_sync: string;
  trap_events: CostCounts;
  vcmdq_events: CostCounts;
  /** Projected ns per operation (hardware part from cmd and sync). */
  trap_ns: number;
  vcmdq_ns: number;
  /** 1 − vcmdq_ns / trap_ns. */
  reduction: number;
  in_published_range: boolean;
  /** The simulation's own p50s, uncalibrated, and 1 − vcmdq/trap of them. */
  trap_raw_p50_ns: number | null;
  vcmdq_raw_p50_ns: number | null;
  raw_reduction: number | null;
}

/** One trap row against one VCMDQ row of the same operation, under `cost` (hw = model). */
export function measuredCalibrationRow(
  key: { policy: string; workload: string; batch: number; queue_log2: number },
  trap: { sync: string; events: CostCounts; p50: number | null },
  vcmdq: { sync: string; events: CostCounts; p50: number | null },
  cost: CostModel = DEFAULT_COSTS,
): MeasuredCalibrationRow {
  const model: CostModel = { ...cost, hw: 'model' };
  const t = project(trap.events, model).ns_per_op;
  const v = project(vcmdq.events, model).ns_per_op;
  const reduction = t > 0 ? 1 - v / t : 0;
  const r4 = (x: number): number => Math.round(x * 1e4) / 1e4;
  return {
    ...key,
    trap_sync: trap.sync,
    vcmdq_sync: vcmdq.sync,
    trap_events: trap.events,
    vcmdq_events: vcmdq.events,
    trap_ns: t,
    vcmdq_ns: v,
    reduction: r4(reduction),
    in_published_range: reduction >= GRACE_REDUCTION.min && reduction <= GRACE_REDUCTION.max,
    trap_raw_p50_ns: trap.p50,
    vcmdq_raw_p50_ns: vcmdq.p50,
    raw_reduction: trap.p50 !== null && vcmdq.p50 !== null && trap.p50 > 0 ? r4(1 - vcmdq.p50 / trap.p50) : null,
  };
}
