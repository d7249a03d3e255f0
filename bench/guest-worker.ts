/**
 * A bench worker (a worker entry: import only its types from elsewhere): one producer of a path. It loads the path's guest module, and times every
 * operation itself (timing.ts), into a preallocated array that it hands back whole at the end
 * of a run. The main thread sends one message per run and never sits in the timed path.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { WaitPolicy } from '../src/mem/wait.ts';
import { BARRIER, type GuestConfig, type GuestModule, type GuestPath } from './guest-api.ts';
import { now, timeLoop, timerOverhead } from './timing.ts';

export interface GuestWorkerData {
  /** URL of the path's guest module. */
  readonly module: string;
  readonly data: unknown;
  readonly policy: WaitPolicy;
  readonly producer: number;
  readonly producers: number;
  /** Int32 words: BARRIER.READY (producers at the start line), BARRIER.GO (1: start). */
  readonly barrier: SharedArrayBuffer;
}

export interface RunRequest {
  readonly type: 'run';
  readonly issues: readonly { readonly cmds: readonly Uint32Array[]; readonly sync: boolean }[];
  /** Issue a lone CMD_SYNC after the timed loop, inside the timed interval. */
  readonly drain: boolean;
  readonly warmup: number;
  readonly samples: number;
  readonly maxMs: number;
}

export type GuestRequest = { readonly type: 'configure'; readonly cfg: GuestConfig; readonly prepared: unknown } | RunRequest | { readonly type: 'close' };

export interface RunReply {
  readonly ok: true;
  /** Untimed operations made. */
  readonly warmedUp: number;
  readonly samples: Float64Array;
  readonly count: number;
  readonly startNs: bigint;
  readonly endNs: bigint;
  /** Counter differences across warm-up and timed operations. */
  readonly counters: Record<string, number>;
  readonly timer: { p50: number; p99: number };
  readonly queue: string | null;
}

const wd = workerData as GuestWorkerData;
const barrier = new Int32Array(wd.barrier);
let guest: GuestPath | undefined;

function diff(after: Record<string, number>, before: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) out[k] = v - (before[k] ?? 0);
  return out;
}

/** Tell the main thread this producer is at the start line, then wait for everyone. */
function startLine(): void {
  Atomics.add(barrier, BARRIER.READY, 1);
  Atomics.notify(barrier, BARRIER.READY);
  while (Atomics.load(barrier, BARRIER.GO) === 0) Atomics.wait(barrier, BARRIER.GO, 0, 50);
}

function run(g: GuestPath, m: RunRequest): RunReply {
  const issues = m.issues;
  const n = issues.length;
  const op = n === 1
    ? ((): (() => void) => {
        const a = issues[0]!;
        return () => g.issue(a.cmds, a.sync);
      })()
    : () => {
        for (let k = 0; k < n; k++) g.issue(issues[k]!.cmds, issues[k]!.sync);
      };
  const timer = timerOverhead();
  const before = g.counters();
  const r = timeLoop(op, m.warmup, m.samples, m.maxMs, startLine);
  let endNs = r.endNs;
  if (m.drain) {
    g.issue([], true);
    endNs = now();
  }
  const counters = diff(g.counters(), before);
  return { ok: true, warmedUp: r.warmedUp, samples: r.samples, count: r.count, startNs: r.startNs, endNs, counters, timer, queue: g.queueName?.() ?? null };
}

try {
  const mod = (await import(wd.module)) as GuestModule;
  guest = await mod.createGuestPath({ data: wd.data, policy: wd.policy, producer: wd.producer, producers: wd.producers });
  parentPort!.postMessage({ ok: true, ready: true });
} catch (e) {
  parentPort!.postMessage({ ok: false, error: `the path's guest module failed to start: ${(e as Error).message}` });
}

parentPort!.on('message', (m: GuestRequest) => {
  if (m.type === 'close') {
    guest?.close?.();
    parentPort!.close();
    return;
  }
  try {
    if (guest === undefined) throw new Error('the guest did not start');
    if (m.type === 'configure') {
      guest.configure(m.cfg, m.prepared);
      parentPort!.postMessage({ ok: true });
    } else {
      const r = run(guest, m);
      parentPort!.postMessage(r, [r.samples.buffer as ArrayBuffer]);
    }
  } catch (e) {
    parentPort!.postMessage({ ok: false, error: (e as Error).message });
  }
});
