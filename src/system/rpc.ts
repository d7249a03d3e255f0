/**
 * The request/reply protocol between the System (main thread) and its request-driven workers
 * (guest driver, guest CPUs, VMMs), both ends: a worker serves named methods, one request at a
 * time and each to completion; the main thread awaits a worker's ready message before using it.
 */
import { once } from 'node:events';
import { parentPort, type Worker } from 'node:worker_threads';

export interface WorkerRequest {
  readonly id: number;
  readonly method: string;
  readonly args: unknown[];
}

export type WorkerReply =
  | { readonly id: number; readonly ok: true; readonly result: unknown }
  | { readonly id: number; readonly ok: false; readonly error: { name: string; message: string } };

export type Method = (...args: never[]) => unknown;

/**
 * Serve `methods` on this worker's parent port: each request runs to completion (its waits block
 * this thread, never the main one) and is answered with its result or its error; 'close' ends
 * the worker. `who` names the worker in the error for an unknown method.
 */
export function serveRequests(methods: Readonly<Record<string, Method>>, who: string): void {
  const port = parentPort;
  if (port === null) throw new Error(`${who} must run in a worker thread`);
  port.on('message', (req: WorkerRequest | 'close') => {
    if (req === 'close') {
      port.close();
      return;
    }
    let reply: WorkerReply;
    try {
      const m = Object.hasOwn(methods, req.method) ? methods[req.method] : undefined;
      if (m === undefined) throw new Error(`${who} has no method '${req.method}'`);
      reply = { id: req.id, ok: true, result: (m as (...a: unknown[]) => unknown)(...req.args) };
    } catch (e) {
      const err = e as Error;
      reply = { id: req.id, ok: false, error: { name: err.name, message: err.message } };
    }
    port.postMessage(reply);
  });
}

/** Wait for a worker's first message, or turn its failure to start into a clear error. */
export async function workerReady(w: Worker, what: string, timeoutMs = 10_000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} worker did not start within ${timeoutMs / 1000} s`)), timeoutMs);
    timer.unref();
  });
  const failed = once(w, 'error').then(([e]) => {
    throw new Error(`${what} worker failed to start: ${(e as Error).message}`);
  });
  const exited = once(w, 'exit').then(([code]) => {
    throw new Error(`${what} worker exited during start (code ${code})`);
  });
  try {
    await Promise.race([once(w, 'message'), failed, exited, timeout]);
  } finally {
    clearTimeout(timer);
    failed.catch(() => undefined);
    exited.catch(() => undefined);
  }
}
