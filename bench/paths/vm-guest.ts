/**
 * The guest side of the VM paths ('trap', 'trap-batched', 'kernel-queue', 'vcmdq'): the guest
 * kernel of the VM, run in this bench worker instead of a guest driver worker (the VM was started
 * with `guest: false`, src/system/vms.ts). It is the same guest: a GuestDriver built from the
 * options the VM's guest driver worker would have had (Vm.guestOptions: the vSMMU window, the
 * guest's memory view and RAM), brought up by resetGuest (src/virt/guest-setup.ts), which on
 * 'vcmdq' also brings up the guest CMDQV driver and routes the driver's commands through its
 * VcmdqIssuer, exactly as driver-worker.ts does. The guest does not know which path serves it.
 *
 * Each configuration (sync mode, queue size) gets a new driver, as on 'native': its reset
 * disables the virtual SMMU and programs it again from the start of guest RAM; on 'vcmdq' the
 * guest CMDQV driver is made again with LVCMDQs of the row's queue size, its VMM freeing the old
 * hardware queues and allocating new ones as the guest rewrites VCMDQ_BASE.
 */
import { Board } from '../../src/mem/board.ts';
import { GuestDriver, type DriverOptions, type IssueResult } from '../../src/driver/driver.ts';
import type { DriverWorkerData } from '../../src/system/driver-worker.ts';
import { resetGuest, type GuestCmdqvState } from '../../src/virt/guest-setup.ts';
import type { VmPath } from '../../src/virt/vsmmu.ts';
import type { GuestConfig, GuestContext, GuestPath } from '../guest-api.ts';

export interface VmGuestData {
  readonly path: VmPath;
  /** Vm.guestOptions: board, DriverOptions, and on 'vcmdq' the guest CMDQV's windows. */
  readonly setup: DriverWorkerData;
  /** 'vcmdq': the VM's VINTF of the physical CMDQV (for the queue's name), else null. */
  readonly vintf: number | null;
}

/** Routed command counts at one counters() call, for the queue name of the run between the last two. */
interface Routed {
  vcmdq: number;
  smmu: number;
}

export function createGuestPath(ctx: GuestContext): GuestPath {
  const d = ctx.data as VmGuestData;
  const board = Board.attach(d.setup.sab, d.setup.layout);
  let driver: GuestDriver | undefined;
  const vcmdq: GuestCmdqvState = { cmdqv: undefined, issuer: undefined };
  let errors = 0;
  /** A lone CMD_SYNC's result on the LVCMDQ (the drain of a stream). */
  const drain: IssueResult = { commands: 0, batches: 0, doorbells: 0, polls: 0, errors: [] };
  let before: Routed = { vcmdq: 0, smmu: 0 };
  let after: Routed = { vcmdq: 0, smmu: 0 };
  const need = (): GuestDriver => {
    if (driver === undefined) throw new Error(`${d.path} path: issue() before configure()`);
    return driver;
  };
  return {
    configure(cfg: GuestConfig): void {
      const options: DriverOptions = { ...d.setup.options, syncMode: cfg.sync, cmdqLog2: cfg.queueLog2 };
      driver = new GuestDriver(board, options);
      driver.probe();
      vcmdq.cmdqv = undefined;
      vcmdq.issuer = undefined;
      const c = d.setup.cmdqv === undefined ? undefined : { ...d.setup.cmdqv, lvcmdqLog2: cfg.queueLog2 };
      resetGuest(board, driver, options.policy, c, vcmdq);
    },
    issue(cmds: readonly Uint32Array[], sync: boolean): void {
      const drv = need();
      const cq = vcmdq.cmdqv;
      if (cmds.length === 0 && sync && cq !== undefined) {
        // A lone CMD_SYNC drains the queue the commands went to: this CPU's LVCMDQ (a stream of
        // TLBI_NH_VA), not the SMMU queue an empty batch would otherwise pick.
        const q = cq.queueForCpu();
        if (q === undefined) throw new Error('vcmdq path: no enabled LVCMDQ for this CPU');
        drain.errors.length = 0;
        cq.issueOn(q, cmds, 0, 0, true, drain);
        errors += drain.errors.length;
        return;
      }
      const r = drv.issue(cmds, { sync });
      if (r.errors.length !== 0) errors += r.errors.length;
    },
    counters(): Record<string, number> {
      const c = need().counters;
      const q = vcmdq.cmdqv?.counters;
      const routed = vcmdq.issuer?.routed;
      before = after;
      after = { vcmdq: routed?.vcmdq ?? 0, smmu: routed?.smmu ?? 0 };
      return {
        doorbells: c.doorbells + (q?.doorbells ?? 0),
        polls: c.polls + (q?.polls ?? 0),
        waits: c.waits + (q?.waits ?? 0),
        syncs: c.syncs + (q?.syncs ?? 0),
        command_errors: errors,
        // What went to the LVCMDQ (CMD_SYNCs apart), and the commands routed to each queue.
        vcmdq_commands: q?.commands ?? 0,
        vcmdq_syncs: q?.syncs ?? 0,
        vcmdq_doorbells: q?.doorbells ?? 0,
        routed_vcmdq: after.vcmdq,
        routed_smmu: after.smmu,
      };
    },
    queueName(): string {
      const smmu = d.path === 'kernel-queue' ? 'vSMMU CMDQ (in-kernel)' : 'vSMMU CMDQ (trapped)';
      if (vcmdq.cmdqv === undefined) return smmu;
      // The queues the run's commands were routed to (between the harness's two counters() calls).
      const lq = `LVCMDQ${vcmdq.cmdqv.queueForCpu()?.lidx ?? '?'} of VINTF${d.vintf ?? '?'}`;
      const toV = after.vcmdq - before.vcmdq;
      const toS = after.smmu - before.smmu;
      return toV > 0 && toS > 0 ? `${lq} + ${smmu}` : toS > 0 ? smmu : lq;
    },
  };
}
