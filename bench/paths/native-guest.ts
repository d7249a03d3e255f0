/**
 * The guest side of the 'native' path: the host's own driver (src/driver/driver.ts, Linux's
 * single-producer command issue) on the physical SMMU's CMDQ. It probes and resets the SMMU
 * itself, from this worker, for every configuration (sync mode, queue size).
 */
import { Board, type BoardLayout } from '../../src/mem/board.ts';
import { GuestDriver } from '../../src/driver/driver.ts';
import type { GuestConfig, GuestContext, GuestPath } from '../guest-api.ts';

export interface NativeGuestData {
  readonly sab: SharedArrayBuffer;
  readonly layout: BoardLayout;
  /** The physical range the driver allocates its stream table and queues from. */
  readonly ram: { readonly start: number; readonly end: number };
}

export function createGuestPath(ctx: GuestContext): GuestPath {
  const d = ctx.data as NativeGuestData;
  const board = Board.attach(d.sab, d.layout);
  let driver: GuestDriver | undefined;
  let errors = 0;
  const need = (): GuestDriver => {
    if (driver === undefined) throw new Error('native path: issue() before configure()');
    return driver;
  };
  return {
    configure(cfg: GuestConfig): void {
      // A new driver each time: reset() disables the SMMU, then programs the tables and queues
      // again from the start of `ram` (nothing is in flight between configurations).
      driver = new GuestDriver(board, { policy: ctx.policy, syncMode: cfg.sync, ram: d.ram, cmdqLog2: cfg.queueLog2 });
      driver.probe();
      driver.reset();
    },
    issue(cmds: readonly Uint32Array[], sync: boolean): void {
      const r = need().issue(cmds, { sync });
      if (r.errors.length !== 0) errors += r.errors.length;
    },
    counters(): Record<string, number> {
      const c = need().counters;
      return { doorbells: c.doorbells, polls: c.polls, waits: c.waits, syncs: c.syncs, command_errors: errors };
    },
    queueName: () => 'CMDQ',
  };
}
