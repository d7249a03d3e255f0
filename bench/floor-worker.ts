/**
 * A floor worker: one side (A, the timer; B, the echo) of the floor's round trip and ring
 * (floor.ts). The main thread only sends the test and collects the reply; everything timed
 * happens here.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { WaitPolicy } from '../src/mem/wait.ts';
import { ringConsume, ringProduce, rttPing, rttPong } from './floor.ts';
import { timerOverhead } from './timing.ts';

export interface FloorWorkerData {
  readonly sab: SharedArrayBuffer;
}

export type FloorRequest =
  | { readonly type: 'rtt'; readonly side: 'a' | 'b'; readonly policy: WaitPolicy; readonly warmup: number; readonly samples: number; readonly maxMs: number }
  | { readonly type: 'ring'; readonly side: 'a' | 'b'; readonly policy: WaitPolicy; readonly log2: number; readonly batch: number; readonly entries: number; readonly minMs: number; readonly maxMs: number }
  | { readonly type: 'timer' }
  | { readonly type: 'close' };

const { sab } = workerData as FloorWorkerData;
const i32 = new Int32Array(sab);
const u32 = new Uint32Array(sab);

parentPort!.on('message', (m: FloorRequest) => {
  if (m.type === 'close') {
    parentPort!.close();
    return;
  }
  try {
    if (m.type === 'timer') {
      parentPort!.postMessage({ ok: true, timer: timerOverhead() });
    } else if (m.type === 'rtt' && m.side === 'a') {
      const timer = timerOverhead();
      const r = rttPing(i32, m.policy, m.warmup, m.samples, m.maxMs);
      parentPort!.postMessage({ ok: true, samples: r.samples, count: r.count, timer }, [r.samples.buffer as ArrayBuffer]);
    } else if (m.type === 'rtt') {
      parentPort!.postMessage({ ok: true, answered: rttPong(i32, m.policy) });
    } else if (m.side === 'a') {
      parentPort!.postMessage({ ok: true, run: ringProduce(i32, u32, m.policy, m.log2, m.batch, m.entries, m.minMs, m.maxMs) });
    } else {
      parentPort!.postMessage({ ok: true, consumed: ringConsume(i32, u32, m.policy, m.log2) });
    }
  } catch (e) {
    parentPort!.postMessage({ ok: false, error: (e as Error).message });
  }
});
