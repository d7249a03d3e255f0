/**
 * A guest CPU's worker, driven by request messages as driver-worker.ts is (same request and
 * reply shapes): a GuestCpu attached to the board and to the shared state the driver made when
 * it shared its queues (no probe, no reset). Methods: issue, sync, run, recover, state.
 * Each request runs to completion in this thread (waits block here, never in the main thread).
 */
import { workerData } from 'node:worker_threads';
import { Board, type BoardLayout } from '../mem/board.ts';
import type { WaitPolicy } from '../mem/wait.ts';
import { MmioPort } from '../mem/mmio.ts';
import { PhysMem, type MemView } from '../mem/phys.ts';
import { GuestCpu, type CpuQueuesLayout, type RunOptions } from '../driver/cpu.ts';
import { serveRequests, type Method } from './rpc.ts';

export interface CpuWorkerData {
  readonly role: 'cpu';
  readonly sab: SharedArrayBuffer;
  readonly layout: BoardLayout;
  readonly queues: CpuQueuesLayout;
  readonly cpu: number;
  readonly policy: WaitPolicy;
  /** The register window this CPU's SMMU is at (default 'smmu'; a VM's virtual SMMU otherwise). */
  readonly window?: string;
  /** The CPU's view of physical memory (a VM's guest memory); default all of RAM. */
  readonly memView?: MemView;
}

const data = workerData as CpuWorkerData;
const board = Board.attach(data.sab, data.layout);

const cpu = new GuestCpu(
  board,
  data.queues,
  data.cpu,
  data.policy,
  new MmioPort(board, data.window ?? 'smmu', data.policy),
  new PhysMem(board, data.memView),
);
const methods: Record<string, Method> = {
  issue: (cmds: Uint32Array[], opts: { sync?: boolean }) => cpu.issue(cmds, opts),
  sync: () => cpu.sync(),
  run: (opts: RunOptions) => cpu.run(opts),
  recover: () => cpu.recover(),
  state: () => cpu.state(),
};

serveRequests(methods, `the CPU ${data.cpu} worker`);
