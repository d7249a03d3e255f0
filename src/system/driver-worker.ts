/**
 * The guest driver's worker: a GuestDriver on the board, driven by request messages from the
 * System in the main thread. Each request runs to completion (the driver's waits block this
 * thread, never the main one) and is answered with its result or its error.
 *
 * In a VM with a CMDQV ('vcmdq', src/system/vms.ts) the worker is the guest whose kernel found a
 * Tegra241 CMDQV beside its SMMU: after the SMMU driver's reset it brings up the guest CMDQV driver
 * (src/driver/cmdqv.ts) and routes the driver's commands through it (VcmdqIssuer), as Linux's
 * arm-smmu-v3 does once tegra241-cmdqv has probed. The host's driver worker, for its part, resets
 * the physical CMDQV once (hostCmdqvReset).
 */
import { workerData } from 'node:worker_threads';
import { Board, type BoardLayout } from '../mem/board.ts';
import { serveRequests, type Method } from './rpc.ts';
import { MmioPort } from '../mem/mmio.ts';
import { GuestDriver, type DriverOptions, type IssueResult } from '../driver/driver.ts';
import { GuestCpu, shareCommandQueues } from '../driver/cpu.ts';
import { CmdqvHostDriver } from '../virt/cmdqv-host.ts';
import { resetGuest, type GuestCmdqvData, type GuestCmdqvState } from '../virt/guest-setup.ts';

export type { GuestCmdqvData } from '../virt/guest-setup.ts';

export interface DriverWorkerData {
  readonly sab: SharedArrayBuffer;
  readonly layout: BoardLayout;
  readonly options: DriverOptions;
  readonly cmdqv?: GuestCmdqvData;
}

const data = workerData as DriverWorkerData;
const board = Board.attach(data.sab, data.layout);
const driver = new GuestDriver(board, data.options);

/** The guest CMDQV driver and its issuer, once reset() made them ('vcmdq' only). */
const vcmdq: GuestCmdqvState = { cmdqv: undefined, issuer: undefined };

/**
 * The driver's reset. In a VM with a CMDQV, then the guest CMDQV driver's probe and reset
 * (tegra241_cmdqv_hw_reset over its one VINTF), and the driver's commands routed through it
 * (src/virt/guest-setup.ts, which the benchmark's VM guests use too).
 */
function reset(): void {
  resetGuest(board, driver, data.options.policy, data.cmdqv, vcmdq);
}

/**
 * A guest that writes its own LVCMDQ ring, whatever the commands (a hostile guest, or a test of
 * the VCMDQ's filter): the commands, then a CMD_SYNC (CS = SIG_NONE) unless `sync` is false, on
 * LVCMDQ `lvcmdq` (default this CPU's), and a wait for it with the §4.7 error path serviced.
 */
function vcmdqIssue(cmds: Uint32Array[], opts: { lvcmdq?: number; sync?: boolean } = {}): IssueResult {
  const cmdqv = vcmdq.cmdqv;
  if (cmdqv === undefined) throw new Error('this guest has no CMDQV (a VM on the vcmdq path, after reset)');
  const q = opts.lvcmdq === undefined ? cmdqv.queueForCpu() : cmdqv.lvcmdqs[opts.lvcmdq];
  if (q === undefined || !q.enabled) throw new Error(`LVCMDQ ${opts.lvcmdq ?? 'of this CPU'} is not enabled`);
  const res: IssueResult = { commands: cmds.length, batches: 1, doorbells: 0, polls: 0, errors: [] };
  cmdqv.issueOn(q, cmds, 0, cmds.length, opts.sync ?? true, res);
  return res;
}

/**
 * The host kernel's CMDQV reset (tegra241_cmdqv_hw_reset, part of the host SMMU's reset): once
 * per system, before any VM asks for a VINTF.
 */
function hostCmdqvReset(args: { window: string; base: number }): unknown {
  const policy = data.options.policy;
  const host = new CmdqvHostDriver(new MmioPort(board, args.window, policy), {
    policy,
    base: args.base,
    mainSync: () => {
      driver.sync();
    },
  });
  host.reset();
  return host.counts;
}

function state(): unknown {
  const { cmdqv, issuer: vcmdqIssuer } = vcmdq;
  return {
    features: driver.features, cmdq: driver.cmdq, counters: driver.counters, log: driver.log, streamTable: driver.streamTable,
    ...(cmdqv !== undefined
      ? {
          cmdqv: {
            hypOwned: cmdqv.hypOwned,
            counters: { ...cmdqv.counters },
            log: [...cmdqv.log],
            lvcmdqs: cmdqv.lvcmdqs.map((q) => ({ ...q })),
            routed: vcmdqIssuer !== undefined ? { ...vcmdqIssuer.routed } : undefined,
          },
        }
      : {}),
  };
}

/**
 * Share the command queues with `cpus` guest CPU workers: allocate the shared state, and make
 * this driver CPU number `cpus` on them (its own commands then take the lock-free path too).
 */
function shareQueues(args: { cpus: number; cmdq: 'shared' | 'ecmdq'; ecmdqLog2?: number }): unknown {
  const layout = shareCommandQueues(driver, driver.allocator, {
    cpus: args.cpus + 1,
    cmdq: args.cmdq,
    syncMode: data.options.syncMode,
    policy: data.options.policy,
    ...(args.ecmdqLog2 !== undefined ? { ecmdqLog2: args.ecmdqLog2 } : {}),
  });
  driver.setIssuer(new GuestCpu(board, layout, args.cpus, data.options.policy, driver.port, driver.mem));
  return layout;
}

const d = driver;
/** The calls a System may make: nothing else of the driver is reachable from a message. */
const METHODS: Record<string, Method> = {
  probe: () => d.probe(),
  reset,
  vcmdqIssue,
  hostCmdqvReset,
  issue: (cmds: Uint32Array[], opts: { sync?: boolean }) => d.issue(cmds, opts),
  sync: () => d.sync(),
  handleGerror: () => d.handleGerror(),
  drainEvents: () => d.drainEvents(),
  state,
  shareQueues,
  attachStage1: (...a: Parameters<GuestDriver['attachStage1']>) => d.attachStage1(...a),
  attachStage2: (...a: Parameters<GuestDriver['attachStage2']>) => d.attachStage2(...a),
  attachNested: (...a: Parameters<GuestDriver['attachNested']>) => d.attachNested(...a),
  attachBypass: (...a: Parameters<GuestDriver['attachBypass']>) => d.attachBypass(...a),
  detach: (...a: Parameters<GuestDriver['detach']>) => d.detach(...a),
  enableAts: (...a: Parameters<GuestDriver['enableAts']>) => d.enableAts(...a),
  map: (...a: Parameters<GuestDriver['map']>) => d.map(...a),
  unmap: (...a: Parameters<GuestDriver['unmap']>) => d.unmap(...a),
  iovaToPhys: (...a: Parameters<GuestDriver['iovaToPhys']>) => d.iovaToPhys(...a),
  domainInfo: (...a: Parameters<GuestDriver['domainInfo']>) => d.domainInfo(...a),
};

serveRequests(METHODS, 'the driver');
