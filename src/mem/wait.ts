/**
 * Waiting on a shared word: spin, then sleep in Atomics.wait, always with a deadline.
 *
 * The machines this runs on have 2 cores. A thread that spins forever while another spinning
 * thread needs the core starves it, so every wait in the model is "spin up to `spin` loads, then
 * Atomics.wait in slices", and every wait ends at a deadline with an error that says what it
 * was waiting for (the caller builds the message: PROD, CONS, CONS.ERR, GERROR …).
 *
 * Atomics.wait blocks the thread. Only workers may call these functions; the main thread must
 * use messages or Atomics.waitAsync (a blocked main thread never sees a worker's 'error' event).
 */

export type WaitMode = 'spin' | 'hybrid' | 'wait';

export interface WaitPolicy {
  /** spin: poll only; hybrid: poll `spin` times, then sleep; wait: sleep at once. */
  readonly mode: WaitMode;
  /** Polls before the first sleep in hybrid mode (~6.5 ns each on the reference machine). */
  readonly spin: number;
  /** Give up after this many milliseconds. */
  readonly timeoutMs: number;
  /**
   * Longest single sleep (default 50 ms). A sleeper whose condition can also become true
   * through a word it does not sleep on (a driver waiting for a CMD_SYNC MSI notices a command
   * error in GERROR) uses a short slice.
   */
  readonly sliceMs?: number;
}

/** Hybrid, ~20 k polls (~130 µs) before sleeping: node-platform.md §1.6's recommendation. */
export const DEFAULT_WAIT: WaitPolicy = Object.freeze({ mode: 'hybrid', spin: 20_000, timeoutMs: 1_000 });

/** The default longest Atomics.wait slice: a sleeper re-checks its deadline at least this often. */
const SLICE_MS = 50;

/** Raised when a wait reaches its deadline. `detail` is what the caller says it waited for. */
export class WaitTimeout extends Error {
  constructor(detail: string, readonly waitedMs: number) {
    super(`timed out after ${waitedMs} ms waiting for ${detail}`);
    this.name = 'WaitTimeout';
  }
}

/**
 * Wait until `ready()` is true. `i32[index]` is the word whose change makes `ready` true (the
 * writer Atomics.notify()s it); `ready` is re-evaluated after every poll and every wake-up.
 * Returns the number of polls made (the benchmark counters use it). Throws WaitTimeout with
 * `describe()` as the detail when the deadline passes. `sleepers`, when given, is the index of a
 * counter the writer reads to decide whether it must Atomics.notify (see `notifySleepers`).
 */
export function waitFor(
  i32: Int32Array,
  index: number,
  ready: () => boolean,
  policy: WaitPolicy,
  describe: () => string,
  sleepers = -1,
): number {
  let polls = 0;
  if (policy.mode !== 'wait') {
    const limit = policy.mode === 'spin' ? Number.POSITIVE_INFINITY : policy.spin;
    // Spinning with no deadline check per iteration would make a spin-mode timeout unreachable:
    // check the clock every 4096 polls (a few tens of µs).
    const start = policy.mode === 'spin' ? performance.now() : 0;
    while (polls < limit) {
      if (ready()) return polls;
      polls++;
      if (policy.mode === 'spin' && (polls & 4095) === 0 && performance.now() - start > policy.timeoutMs) {
        throw new WaitTimeout(describe(), policy.timeoutMs);
      }
    }
  }
  const start = performance.now();
  for (;;) {
    const seen = Atomics.load(i32, index);
    if (ready()) return polls;
    polls++;
    const left = policy.timeoutMs - (performance.now() - start);
    if (left <= 0) throw new WaitTimeout(describe(), policy.timeoutMs);
    // A writer notifies only when someone sleeps (notify is not free): announce the sleep in
    // `sleepers` first, then re-check, so a store between our check and our wait is not missed
    // (Atomics.wait itself returns at once when the word no longer holds `seen`).
    if (sleepers >= 0) Atomics.add(i32, sleepers, 1);
    try {
      if (!ready()) Atomics.wait(i32, index, seen, Math.min(left, policy.sliceMs ?? SLICE_MS));
    } finally {
      if (sleepers >= 0) Atomics.sub(i32, sleepers, 1);
    }
  }
}

/** Parse a policy word from the CLI or a config: spin | hybrid | wait, optionally `hybrid:2000`. */
export function parseWaitPolicy(text: string, base: WaitPolicy = DEFAULT_WAIT): WaitPolicy {
  const [mode, spin] = text.split(':');
  if (mode !== 'spin' && mode !== 'hybrid' && mode !== 'wait') {
    throw new Error(`wait policy '${text}': expected spin, hybrid, hybrid:<polls> or wait`);
  }
  let n = base.spin;
  if (spin !== undefined) {
    n = Number(spin);
    if (!/^\d+$/.test(spin) || n < 1) throw new Error(`wait policy '${text}': the spin count must be a positive integer`);
  }
  return { ...base, mode, spin: n };
}

/** Wake the sleepers of `i32[index]` if the counter at `sleepers` says there are any. */
export function notifySleepers(i32: Int32Array, index: number, sleepers: number): void {
  if (Atomics.load(i32, sleepers) !== 0) Atomics.notify(i32, index);
}
