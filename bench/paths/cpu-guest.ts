/**
 * The guest side of the 'native-mp' and 'native-ecmdq' paths: one GuestCpu (src/driver/cpu.ts)
 * per producer, on the queues the System's driver shared after it reset the SMMU: SMMU_CMDQ
 * with Linux's lock-free multi-producer insertion, or one ECMDQ per CPU.
 */
import { Board, type BoardLayout } from '../../src/mem/board.ts';
import { GuestCpu, type CpuQueuesLayout } from '../../src/driver/cpu.ts';
import type { GuestConfig, GuestContext, GuestPath } from '../guest-api.ts';

/** What the session's configure step hands every producer. */
export interface CpuPrepared {
  readonly sab: SharedArrayBuffer;
  readonly layout: BoardLayout;
  readonly queues: CpuQueuesLayout;
}

export function createGuestPath(ctx: GuestContext): GuestPath {
  let cpu: GuestCpu | undefined;
  let errors = 0;
  const need = (): GuestCpu => {
    if (cpu === undefined) throw new Error('CPU path: issue() before configure()');
    return cpu;
  };
  return {
    configure(_cfg: GuestConfig, prepared: unknown): void {
      const p = prepared as CpuPrepared;
      cpu = new GuestCpu(Board.attach(p.sab, p.layout), p.queues, ctx.producer, ctx.policy);
    },
    issue(cmds: readonly Uint32Array[], sync: boolean): void {
      const r = need().issue(cmds, { sync });
      if (r.errors.length !== 0) errors += r.errors.length;
    },
    counters(): Record<string, number> {
      const c = need().counters;
      return {
        doorbells: c.doorbells,
        polls: c.pollIterations,
        waits: c.waits,
        syncs: c.syncs,
        cmpxchg_retries: c.cmpxchgRetries,
        times_owner: c.timesOwner,
        queue_full: c.queueFull,
        command_errors: errors,
      };
    },
    queueName(): string {
      // A queue with multi-producer state is shared with other CPUs (the lock-free algorithm runs).
      const q = need().queue;
      return q.mpState >= 0 ? `${q.name} (shared)` : q.name;
    },
  };
}
