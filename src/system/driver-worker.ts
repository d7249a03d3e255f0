/**
 * The guest driver's worker: a GuestDriver on the board, driven by request messages from the
 * System in the main thread. Each request runs to completion (the driver's waits block this
 * thread, never the main one) and is answered with its result or its error.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Board, type BoardLayout } from '../mem/board.ts';
import { GuestDriver, type DriverOptions } from '../driver/driver.ts';

export interface DriverWorkerData {
  readonly sab: SharedArrayBuffer;
  readonly layout: BoardLayout;
  readonly options: DriverOptions;
}

export interface DriverRequest {
  readonly id: number;
  readonly method: string;
  readonly args: unknown[];
}

export type DriverReply =
  | { readonly id: number; readonly ok: true; readonly result: unknown }
  | { readonly id: number; readonly ok: false; readonly error: { name: string; message: string } };

const data = workerData as DriverWorkerData;
const board = Board.attach(data.sab, data.layout);
const driver = new GuestDriver(board, data.options);

/** The methods a System may call: nothing else of the driver is reachable from a message. */
const METHODS = new Set(['probe', 'reset', 'issue', 'sync', 'handleGerror', 'drainEvents', 'state']);

function state(): unknown {
  return { features: driver.features, cmdq: driver.cmdq, counters: driver.counters, log: driver.log };
}

parentPort!.on('message', (req: DriverRequest | 'close') => {
  if (req === 'close') {
    parentPort!.close();
    return;
  }
  let reply: DriverReply;
  try {
    if (!METHODS.has(req.method)) throw new Error(`the driver has no method '${req.method}'`);
    const result = req.method === 'state' ? state() : (driver as unknown as Record<string, (...a: unknown[]) => unknown>)[req.method]!(...req.args);
    reply = { id: req.id, ok: true, result };
  } catch (e) {
    const err = e as Error;
    reply = { id: req.id, ok: false, error: { name: err.name, message: err.message } };
  }
  parentPort!.postMessage(reply);
});
