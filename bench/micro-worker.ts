/**
 * The worker half of `npm run bench:micro`: benchmark.js suites that need a second thread, run
 * inside this worker (node-platform.md §3: benchmark.js gives the same ops/s in a worker as in
 * the main thread). A worker entry: import only its types from elsewhere.
 */
import Benchmark from 'benchmark';
import { parentPort } from 'node:worker_threads';
import { Board, type BoardLayout } from '../src/mem/board.ts';
import { notifySleepers, waitFor, type WaitPolicy } from '../src/mem/wait.ts';
import { GuestDriver } from '../src/driver/driver.ts';
import { FLOOR } from './floor.ts';
import { TLBI_VA_PAGE } from './workloads.ts';

export type MicroWorkerRequest =
  | { readonly type: 'bare'; readonly sab: SharedArrayBuffer; readonly policy: WaitPolicy; readonly maxTime: number }
  | { readonly type: 'model'; readonly sab: SharedArrayBuffer; readonly layout: BoardLayout; readonly ram: { start: number; end: number }; readonly policy: WaitPolicy; readonly maxTime: number }
  | { readonly type: 'close' };

export interface MicroResult {
  name: string;
  hz: number;
  rme: number;
  samples: number;
  mean_ns: number;
}

function runOne(name: string, fn: () => void, maxTime: number): MicroResult {
  const b = new Benchmark(name, fn, { maxTime });
  b.run();
  if (b.error) throw b.error;
  return { name, hz: b.hz, rme: b.stats.rme, samples: b.stats.sample.length, mean_ns: b.stats.mean * 1e9 };
}

function bare(sab: SharedArrayBuffer, policy: WaitPolicy, maxTime: number): MicroResult {
  const i32 = new Int32Array(sab);
  let seq = 0;
  const describe = (): string => `the floor's pong of round trip ${seq}`;
  const r = runOne('bare SAB round trip, spin (floor worker echoes)', () => {
    const want = ++seq;
    Atomics.store(i32, FLOOR.PING, want);
    notifySleepers(i32, FLOOR.PING, FLOOR.PING_SLEEPERS);
    waitFor(i32, FLOOR.PONG, () => Atomics.load(i32, FLOOR.PONG) === want, policy, describe, FLOOR.PONG_SLEEPERS);
  }, maxTime);
  Atomics.store(i32, FLOOR.PING, -1);
  Atomics.notify(i32, FLOOR.PING);
  return r;
}

function model(m: Extract<MicroWorkerRequest, { type: 'model' }>): MicroResult {
  const board = Board.attach(m.sab, m.layout);
  const driver = new GuestDriver(board, { policy: m.policy, syncMode: 'msi', ram: m.ram });
  driver.probe();
  driver.reset();
  const cmds = [TLBI_VA_PAGE];
  return runOne('doorbell round trip, spin: TLBI_NH_VA + CMD_SYNC (MSI) through the model', () => {
    driver.issue(cmds, { sync: true });
  }, m.maxTime);
}

parentPort!.on('message', (m: MicroWorkerRequest) => {
  if (m.type === 'close') {
    parentPort!.close();
    return;
  }
  try {
    const result = m.type === 'bare' ? bare(m.sab, m.policy, m.maxTime) : model(m);
    parentPort!.postMessage({ ok: true, result });
  } catch (e) {
    parentPort!.postMessage({ ok: false, error: (e as Error).message });
  }
});
