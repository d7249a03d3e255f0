/**
 * The path registry: every way an invalidation can travel from a guest's first write to its
 * observed completion, and how the benchmark runs each.
 *
 * A path has two halves:
 * - main thread (BenchPath.start): build what the path needs (a System, a VMM worker …) for one
 *   wait policy and return a session that hands each producer's bench worker its data;
 * - guest worker (the session's `guestModule`, see guest-api.ts): a GuestPath whose `issue` the
 *   harness times inside the worker.
 *
 * To add a path: write bench/paths/<name>.ts exporting a BenchPath and
 * bench/paths/<name>-guest.ts exporting createGuestPath, append the BenchPath to PATHS below and
 * remove its entry from PLANNED_PATHS (the four VM paths share bench/paths/vm.ts and
 * vm-guest.ts). Nothing else in the harness changes: the CLI, the table, the JSON, the plots and
 * the cost projection take every path from here.
 */
import { System } from '../src/system/system.ts';
import type { WaitPolicy } from '../src/mem/wait.ts';
import type { CounterName } from '../src/mem/board.ts';
import type { SmmuFeatures } from '../src/spec/features.ts';
import { directEvents, type CostCounts } from './cost-model.ts';
import type { GuestConfig, SyncMode } from './guest-api.ts';
import type { NativeGuestData } from './paths/native-guest.ts';
import type { CpuPrepared } from './paths/cpu-guest.ts';
import type { CpuQueuesLayout } from '../src/driver/cpu.ts';
import { MP_MIN_LOG2 } from '../src/driver/cmdq-mp.ts';
import { ecmdqCount } from '../src/spec/features.ts';
import type { IssueShape, OpShape, Workload, WorkloadName } from './workloads.ts';
import { VM_PATHS } from './paths/vm.ts';

export type Availability = { readonly ok: true } | { readonly ok: false; readonly reason: string };

/** What a row counted while it ran, as differences over the row (warm-up and timed operations). */
export interface RowCounts {
  /** Operations issued: warm-up and timed, all producers (a stream's drain is not one). */
  readonly ops: number;
  /** PathSession.serviceCounters. */
  readonly service: Readonly<Record<string, number>>;
  /** The producers' own counters (GuestPath.counters), summed. */
  readonly guest: Readonly<Record<string, number>>;
}

/** One row's settings, for `unsupported`. */
export interface Combination {
  readonly workload: Workload;
  readonly batch: number;
  readonly producers: number;
  readonly sync: SyncMode;
  readonly queueLog2: number;
  readonly features: SmmuFeatures;
}

export interface PathEnv {
  readonly policy: WaitPolicy;
  readonly features: SmmuFeatures;
}

export interface PathSession {
  /** URL of the module the bench worker imports (exports createGuestPath, guest-api.ts). */
  readonly guestModule: string;
  /** The data producer `i` of `n` gets when its worker starts (structured-cloned into it). */
  guestData(i: number, n: number): unknown;
  /**
   * Optional main-thread step before each group of rows with the same settings: build what the
   * `producers` share (e.g. a System whose driver reset the SMMU and shared its queues). The
   * result reaches every producer's GuestPath.configure.
   */
  configure?(cfg: GuestConfig, producers: number): Promise<unknown>;
  /** Cumulative device-side counters, when the path can read its SMMU's (published as deltas). */
  deviceCounters?(): Record<string, number>;
  /**
   * Cumulative counters of the path's serving side, when it has one (a VM's VMM or in-kernel
   * queue: VM exits, ioctls, physical commands and CMD_SYNCs …), read before and after each row
   * and published as `vmm` deltas; BenchPath.measuredEvents turns them into the row's events.
   */
  serviceCounters?(): Promise<Record<string, number>>;
  stop(): Promise<void>;
}

export interface BenchPath {
  readonly name: string;
  readonly summary: string;
  /**
   * Worker hand-offs per invalidation: how many times the request crosses from one thread to
   * another and back (native: guest worker → device worker → guest worker = 1).
   */
  readonly hops: number;
  available(): Availability;
  /** Why this path cannot run a combination (never fabricate a number for it), or undefined. */
  unsupported(c: Combination): string | undefined;
  /**
   * Hops for one workload, where they differ from `hops` (vcmdq: a batch its VCMDQ does not take
   * goes to its trapped SMMU queue).
   */
  hopsFor?(workload: WorkloadName): number;
  /**
   * Cost-model events of one operation of this shape (cost-model.ts): what the path does by
   * construction. For a path with measuredEvents, what it is expected to count.
   */
  events(shape: OpShape, workload?: WorkloadName): CostCounts;
  /**
   * The row's events per operation from what was counted while it ran, and the commands the
   * physical SMMU must have consumed meanwhile (CMD_SYNCs included). Where present, the row
   * publishes and projects these instead of events(shape).
   */
  measuredEvents?(m: RowCounts): { readonly events: CostCounts; readonly deviceCommands: number };
  /** The commands of one operation as this path's producer issues them (default: as given). */
  adaptIssues?(issues: readonly IssueShape[]): IssueShape[];
  start(env: PathEnv): Promise<PathSession>;
}

/**
 * URL of a module next to `callerUrl`, with the extension the caller runs with (.ts from source,
 * .js from dist/), as spawnWorker picks worker entries.
 */
export function siblingModule(callerUrl: string, rel: string): string {
  return new URL(`${rel}${callerUrl.endsWith('.ts') ? '.ts' : '.js'}`, callerUrl).href;
}

/** Device counters each native row reports (src/mem/board.ts COUNTER). */
const DEVICE_COUNTERS: readonly CounterName[] = ['COMMANDS_CONSUMED', 'CMD_SYNCS', 'MSI_WRITES', 'COMMAND_ERRORS', 'MMIO_WRITES', 'DEVICE_SLEEPS', 'DEVICE_WAKEUPS'];

/** The host driver on the physical SMMU's CMDQ, one producer. */
export const NATIVE: BenchPath = {
  name: 'native',
  summary: "the host driver (Linux's single-producer issue) on the physical SMMU's CMDQ",
  hops: 1,
  available: () => ({ ok: true }),
  unsupported(c) {
    if (c.producers !== 1) {
      return 'native is the single-producer driver, one CPU on the CMDQ; native-mp (lock-free CMDQ) and native-ecmdq take more producers';
    }
    if (c.sync === 'msi' && !c.features.msi) return 'MSI polling needs SMMU_IDR0.MSI == 1';
    if (c.queueLog2 > c.features.cmdqs) return `the queue of 2^${c.queueLog2} entries exceeds SMMU_IDR1.CMDQS = ${c.features.cmdqs}`;
    return undefined;
  },
  events: directEvents,
  async start(env) {
    // The SMMU runs in the System's device worker; the bench worker is the driver, so the
    // System starts none (driver: false) and the bench worker probes and resets the SMMU.
    const sys = await System.start({ features: env.features, policy: env.policy, driver: false });
    const ram = { start: sys.board.layout.ram.base, end: sys.board.layout.ram.base + sys.board.layout.ram.bytes };
    return {
      guestModule: siblingModule(import.meta.url, './paths/native-guest'),
      guestData: (): NativeGuestData => ({ sab: sys.board.sab, layout: sys.board.layout, ram }),
      deviceCounters() {
        const out: Record<string, number> = {};
        for (const k of DEVICE_COUNTERS) out[k.toLowerCase()] = sys.counter(k);
        return out;
      },
      stop: () => sys.stop(),
    };
  },
};

/**
 * Host CPUs as guest CPU workers (src/driver/cpu.ts) on queues the System's driver shared after
 * its reset: 'shared' is SMMU_CMDQ with Linux's lock-free multi-producer insertion, 'ecmdq' one
 * ECMDQ per CPU. The driver becomes CPU number `producers` on the same queues (it issues nothing
 * during the run); with at least as many CPUs as ECMDQs, CPUs share an ECMDQ by the
 * multi-producer algorithm (`counters.shared_queue` counts them).
 */
function cpuPath(name: string, cmdq: 'shared' | 'ecmdq', summary: string): BenchPath {
  return {
    name,
    summary,
    hops: 1,
    available: () => ({ ok: true }),
    unsupported(c) {
      if (cmdq === 'ecmdq' && (!c.features.ecmdq || ecmdqCount(c.features) === 0)) return 'the SMMU has no ECMDQs (SMMU_IDR1.ECMDQ == 0)';
      if (c.sync === 'msi' && !c.features.msi) return 'MSI polling needs SMMU_IDR0.MSI == 1';
      if (c.queueLog2 < MP_MIN_LOG2) return `the multi-producer queues need at least 2^${MP_MIN_LOG2} entries (Linux refuses 64 or fewer)`;
      if (c.queueLog2 > c.features.cmdqs) return `the queue of 2^${c.queueLog2} entries exceeds SMMU_IDR1.CMDQS = ${c.features.cmdqs}`;
      return undefined;
    },
    events: directEvents,
    async start(env) {
      let sys: System | undefined;
      return {
        guestModule: siblingModule(import.meta.url, './paths/cpu-guest'),
        guestData: () => undefined,
        // The driver's sync mode and queue size are fixed when it starts: a System per group.
        async configure(cfg, producers): Promise<CpuPrepared> {
          await sys?.stop();
          sys = undefined;
          const s = await System.start({
            features: env.features,
            policy: env.policy,
            syncMode: cfg.sync,
            ...(cmdq === 'shared' ? { cmdqLog2: cfg.queueLog2 } : {}),
          });
          sys = s;
          const queues = await s.driver.call<CpuQueuesLayout>('shareQueues', { cpus: producers, cmdq, ...(cmdq === 'ecmdq' ? { ecmdqLog2: cfg.queueLog2 } : {}) });
          if (queues.mode !== (cmdq === 'shared' ? 'shared' : 'ecmdq')) throw new Error(`the CPUs fell back to the shared CMDQ: ${queues.fallback ?? 'no reason given'}`);
          return { sab: s.board.sab, layout: s.board.layout, queues };
        },
        deviceCounters() {
          if (sys === undefined) return {};
          const out: Record<string, number> = {};
          for (const k of DEVICE_COUNTERS) out[k.toLowerCase()] = sys.counter(k);
          return out;
        },
        stop: async () => {
          await sys?.stop();
        },
      };
    },
  };
}

export const NATIVE_MP = cpuPath('native-mp', 'shared', "host CPUs on the physical SMMU's CMDQ with Linux's lock-free multi-producer insertion");
export const NATIVE_ECMDQ = cpuPath('native-ecmdq', 'ecmdq', 'host CPUs each on their own ECMDQ (SMMUv3.3)');

/** Every path that can run, in the order tables list them: the host's, then the VM paths (paths/vm.ts). */
export const PATHS: readonly BenchPath[] = [NATIVE, NATIVE_MP, NATIVE_ECMDQ, ...VM_PATHS];

/**
 * Paths the benchmark knows will come, and what each still needs: none at the moment (the VM
 * paths joined as bench/paths/vm.ts). A name here is accepted by --paths and reported as skipped.
 */
export const PLANNED_PATHS: readonly { readonly name: string; readonly summary: string; readonly needs: string }[] = [];

/** Every name --paths accepts: real paths, then planned ones. */
export function knownPathNames(): string[] {
  const names = PATHS.map((p) => p.name);
  for (const p of PLANNED_PATHS) if (!names.includes(p.name)) names.push(p.name);
  return names;
}

export function findPath(name: string): BenchPath | undefined {
  return PATHS.find((p) => p.name === name);
}

/** Availability by name: a real path's own answer, a planned path's missing piece. */
export function pathAvailability(name: string): Availability | undefined {
  const p = findPath(name);
  if (p !== undefined) return p.available();
  const planned = PLANNED_PATHS.find((x) => x.name === name);
  return planned === undefined ? undefined : { ok: false, reason: `not a bench path yet: needs ${planned.needs}` };
}

/** The names of the paths that can run now. */
export function availablePaths(): string[] {
  return PATHS.filter((p) => p.available().ok).map((p) => p.name);
}

/** One line per known path, for `--paths list` and the help text. */
export function describePaths(): string[] {
  const names = knownPathNames();
  const width = Math.max(...names.map((n) => n.length));
  return names.map((n) => {
    const p = findPath(n);
    const a = pathAvailability(n)!;
    const summary = p?.summary ?? PLANNED_PATHS.find((x) => x.name === n)!.summary;
    return `${n.padEnd(width)}  ${a.ok ? `available, ${p!.hops} hop${p!.hops === 1 ? '' : 's'}` : 'unavailable'}: ${summary}${a.ok ? '' : ` (${a.reason})`}`;
  });
}
