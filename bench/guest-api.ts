/**
 * The contract between the benchmark harness and a path's guest side.
 *
 * Each producer of a run is one bench worker (guest-worker.ts). The worker imports the path's
 * guest module (BenchPath session `guestModule`) and calls its `createGuestPath` with the data
 * the path's session prepared on the main thread. The harness then drives the returned
 * GuestPath from inside the worker: it calls `issue` in its timed loop and reads `counters`
 * before and after. Nothing crosses threads per operation.
 */
import type { WaitPolicy } from '../src/mem/wait.ts';

/** Words of the start barrier the producers of one run share (Int32 indices). */
export const BARRIER = { READY: 0, GO: 1, WORDS: 2 } as const;

export type SyncMode = 'msi' | 'cons';

/** Settings that change between groups of rows: the guest (re)initialises for them. */
export interface GuestConfig {
  /** How the guest waits for a CMD_SYNC: MSI polling (Linux's default) or SMMU_CMDQ_CONS polling. */
  readonly sync: SyncMode;
  /** log2 of the command queue's entries. */
  readonly queueLog2: number;
}

export interface GuestContext {
  /** What the path's session made for this producer (structured-cloned from the main thread). */
  readonly data: unknown;
  readonly policy: WaitPolicy;
  /** 0-based index of this producer, and how many there are. */
  readonly producer: number;
  readonly producers: number;
}

export interface GuestPath {
  /**
   * Bring the queue up for these settings (called before each group of rows). `prepared` is
   * what the path's session `configure` returned on the main thread for this group (a board and
   * a queue layout shared by every producer), or undefined when the session has no such step.
   */
  configure(cfg: GuestConfig, prepared: unknown): void;
  /**
   * Put `cmds` on the queue (a doorbell per at most 64) and, when `sync`, a CMD_SYNC after them,
   * and wait for that CMD_SYNC. Command errors are recovered and counted in `command_errors`.
   */
  issue(cmds: readonly Uint32Array[], sync: boolean): void;
  /**
   * Cumulative counters of this producer (doorbells, polls, waits, syncs, command_errors, and
   * for multi-producer queues cmpxchg retries and owner hand-offs): the harness publishes the
   * difference across each run.
   */
  counters(): Record<string, number>;
  /** The queue this producer issues to, as the row reports it (e.g. 'CMDQ', 'ECMDQ3 (shared)'). */
  queueName?(): string;
  close?(): void;
}

/** What a path's guest module exports. */
export interface GuestModule {
  createGuestPath(ctx: GuestContext): GuestPath | Promise<GuestPath>;
}
