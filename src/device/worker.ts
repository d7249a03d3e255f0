/**
 * The SMMU hardware model's worker entry: attach to the board, reset, serve until asked to stop.
 * Any exception marks the board CRASHED (so software waiting on registers can tell) and then
 * propagates as the worker's 'error' event to whoever spawned it.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Board, DEVICE_STATE, HDR, type BoardLayout } from '../mem/board.ts';
import type { WaitPolicy } from '../mem/wait.ts';
import type { SmmuFeatures } from '../spec/features.ts';
import { cmdqvExtension, type CmdqvConfig } from './cmdqv.ts';
import { SmmuDevice } from './smmu.ts';
import type { TranslatorOptions } from './translate.ts';

export interface DeviceWorkerData {
  readonly sab: SharedArrayBuffer;
  readonly layout: BoardLayout;
  readonly features: SmmuFeatures;
  readonly policy: WaitPolicy;
  readonly window?: string;
  readonly translate?: TranslatorOptions;
  /** An NVIDIA Tegra241 CMDQV beside the SMMU, on its own window (which must wake with the SMMU's). */
  readonly cmdqv?: CmdqvConfig;
}

const data = workerData as DeviceWorkerData;
const board = Board.attach(data.sab, data.layout);
try {
  const dev = new SmmuDevice(board, {
    features: data.features,
    policy: data.policy,
    ...(data.window ? { window: data.window } : {}),
    ...(data.translate ? { translate: data.translate } : {}),
    ...(data.cmdqv ? { extensions: cmdqvExtension(data.cmdqv) } : {}),
  });
  Atomics.store(board.i32, HDR.DEVICE_STATE, DEVICE_STATE.RUNNING);
  parentPort?.postMessage({ ready: true });
  dev.run();
  Atomics.store(board.i32, HDR.DEVICE_STATE, DEVICE_STATE.STOPPED);
} catch (e) {
  Atomics.store(board.i32, HDR.DEVICE_STATE, DEVICE_STATE.CRASHED);
  throw e;
}
