/**
 * The guest driver's worker: a GuestDriver on the board, driven by request messages from the
 * System in the main thread. Each request runs to completion (the driver's waits block this
 * thread, never the main one) and is answered with its result or its error.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Board, type BoardLayout } from '../mem/board.ts';
import { GuestDriver, type DriverOptions } from '../driver/driver.ts';
import { GuestCpu, shareCommandQueues } from '../driver/cpu.ts';

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

function state(): unknown {
  return { features: driver.features, cmdq: driver.cmdq, counters: driver.counters, log: driver.log, streamTable: driver.streamTable };
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

type Method = (...args: never[]) => unknown;
const d = driver;
/** The calls a System may make: nothing else of the driver is reachable from a message. */
const METHODS: Record<string, Method> = {
  probe: () => d.probe(),
  reset: () => d.reset(),
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

parentPort!.on('message', (req: DriverRequest | 'close') => {
  if (req === 'close') {
    parentPort!.close();
    return;
  }
  let reply: DriverReply;
  try {
    const m = Object.hasOwn(METHODS, req.method) ? METHODS[req.method] : undefined;
    if (m === undefined) throw new Error(`the driver has no method '${req.method}'`);
    const result = (m as (...a: unknown[]) => unknown)(...req.args);
    reply = { id: req.id, ok: true, result };
  } catch (e) {
    const err = e as Error;
    reply = { id: req.id, ok: false, error: { name: err.name, message: err.message } };
  }
  parentPort!.postMessage(reply);
});
