/**
 * A guest CPU's worker, driven by request messages as driver-worker.ts is (same request and
 * reply shapes). Two roles:
 *
 * - 'cpu': a GuestCpu attached to the board and to the shared state the resetting CPU made
 *   (no probe, no reset). Methods: issue, sync, run, recover, state.
 * - 'boot': the CPU that resets the SMMU, for a system whose CPUs are all cpu-workers: a
 *   GuestDriver whose RAM is the given range minus `reserveBytes` at its top, from which the
 *   shared state is allocated. Methods: boot({ cpus, cmdq, ecmdqLog2? }) probes, resets and
 *   returns the CpuQueuesLayout; handleGerror, drainEvents, state as the driver worker has them.
 *
 * Each request runs to completion in this thread (waits block here, never in the main thread).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Board, type BoardLayout } from '../mem/board.ts';
import { PhysAllocator } from '../mem/phys.ts';
import type { WaitPolicy } from '../mem/wait.ts';
import { GuestDriver, type DriverOptions } from '../driver/driver.ts';
import { GuestCpu, shareCommandQueues, type CpuQueuesLayout, type RunOptions } from '../driver/cpu.ts';
import type { DriverReply, DriverRequest } from './driver-worker.ts';

export interface CpuWorkerData {
  readonly role: 'cpu';
  readonly sab: SharedArrayBuffer;
  readonly layout: BoardLayout;
  readonly queues: CpuQueuesLayout;
  readonly cpu: number;
  readonly policy: WaitPolicy;
}

export interface BootWorkerData {
  readonly role: 'boot';
  readonly sab: SharedArrayBuffer;
  readonly layout: BoardLayout;
  /** The driver's options; the top `reserveBytes` of `options.ram` hold the CPUs' shared state. */
  readonly options: DriverOptions;
  readonly reserveBytes: number;
}

export interface BootArgs {
  readonly cpus: number;
  readonly cmdq: 'shared' | 'ecmdq';
  readonly ecmdqLog2?: number;
}

const data = workerData as CpuWorkerData | BootWorkerData;
const board = Board.attach(data.sab, data.layout);

type Handler = (...args: unknown[]) => unknown;
let methods: Record<string, Handler>;

if (data.role === 'cpu') {
  const cpu = new GuestCpu(board, data.queues, data.cpu, data.policy);
  methods = {
    issue: (cmds, opts) => cpu.issue(cmds as Uint32Array[], opts as { sync?: boolean }),
    sync: () => cpu.sync(),
    run: (opts) => cpu.run(opts as RunOptions),
    recover: () => cpu.recover(),
    state: () => cpu.state(),
  };
} else {
  const { start, end } = data.options.ram;
  const top = end - data.reserveBytes;
  if (!(top > start)) throw new Error(`reserveBytes ${data.reserveBytes} leaves the driver no RAM in [0x${start.toString(16)}, 0x${end.toString(16)})`);
  const driver = new GuestDriver(board, { ...data.options, ram: { start, end: top } });
  const shared = new PhysAllocator(driver.mem, top, end);
  methods = {
    boot: (args) => {
      const a = args as BootArgs;
      driver.probe();
      driver.reset();
      return shareCommandQueues(driver, shared, {
        cpus: a.cpus,
        cmdq: a.cmdq,
        syncMode: data.options.syncMode,
        policy: data.options.policy,
        ...(a.ecmdqLog2 !== undefined ? { ecmdqLog2: a.ecmdqLog2 } : {}),
      });
    },
    handleGerror: () => driver.handleGerror(),
    drainEvents: () => driver.drainEvents(),
    state: () => ({ features: driver.features, cmdq: driver.cmdq, counters: driver.counters, log: driver.log }),
  };
}

parentPort!.on('message', (req: DriverRequest | 'close') => {
  if (req === 'close') {
    parentPort!.close();
    return;
  }
  let reply: DriverReply;
  try {
    const m = Object.hasOwn(methods, req.method) ? methods[req.method] : undefined;
    if (m === undefined) throw new Error(`the ${data.role === 'cpu' ? `CPU ${data.cpu}` : 'boot CPU'} worker has no method '${req.method}'`);
    reply = { id: req.id, ok: true, result: m(...req.args) };
  } catch (e) {
    const err = e as Error;
    reply = { id: req.id, ok: false, error: { name: err.name, message: err.message } };
  }
  parentPort!.postMessage(reply);
});
