/**
 * Talking to the benchmark's workers from the main thread: one request at a time per worker,
 * replies in order, and a worker's crash or exit turned into a rejected call that names it.
 * The main thread never blocks: it awaits messages and uses Atomics.waitAsync.
 */
import { once } from 'node:events';
import type { TransferListItem, Worker } from 'node:worker_threads';

export class WorkerLink {
  private readonly inbox: unknown[] = [];
  private readonly waiters: { resolve: (m: unknown) => void; reject: (e: Error) => void }[] = [];
  private failure: Error | undefined;
  private closing = false;

  constructor(readonly worker: Worker, readonly what: string) {
    worker.on('message', (m: unknown) => {
      const w = this.waiters.shift();
      if (w !== undefined) w.resolve(m);
      else this.inbox.push(m);
    });
    worker.on('error', (e: Error) => this.fail(new Error(`${what} crashed: ${e.message}`)));
    worker.on('exit', (code: number) => {
      if (!this.closing) this.fail(new Error(`${what} exited unexpectedly (code ${code})`));
    });
  }

  private fail(e: Error): void {
    if (this.failure !== undefined) return;
    this.failure = e;
    for (const w of this.waiters.splice(0)) w.reject(e);
  }

  /** The next message, or a rejection after `timeoutMs` or when the worker dies. */
  next<T>(timeoutMs: number): Promise<T> {
    const m = this.inbox.shift();
    if (m !== undefined) return Promise.resolve(m as T);
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(entry);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new Error(`${this.what} did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      const entry = {
        resolve: (v: unknown) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e: Error) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      this.waiters.push(entry);
    });
  }

  /** Send a request and wait for its reply; a reply `{ ok: false, error }` becomes a rejection. */
  async call<T>(msg: unknown, timeoutMs: number, transfer?: readonly TransferListItem[]): Promise<T> {
    if (this.failure !== undefined) throw this.failure;
    const reply = this.next<{ ok: boolean; error?: string }>(timeoutMs);
    this.worker.postMessage(msg, transfer as TransferListItem[] | undefined);
    const r = await reply;
    if (!r.ok) throw new Error(`${this.what}: ${r.error}`);
    return r as T;
  }

  /** Ask the worker to close; terminate it if it has not exited after `graceMs`. */
  async close(graceMs = 500): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    if (this.worker.threadId === -1) return;
    const exited = once(this.worker, 'exit');
    this.worker.postMessage({ type: 'close' });
    const grace = new Promise((r) => setTimeout(r, graceMs).unref());
    if ((await Promise.race([exited.then(() => 'exited'), grace])) !== 'exited') await this.worker.terminate();
  }
}

/** Resolve once `i32[index] >= target`, or reject when `abandon()` says so or after `timeoutMs`. */
export async function waitCount(i32: Int32Array, index: number, target: number, timeoutMs: number, abandon: () => Error | undefined): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = Atomics.load(i32, index);
    if (v >= target) return;
    const e = abandon();
    if (e !== undefined) throw e;
    if (Date.now() > deadline) throw new Error(`only ${v} of ${target} producers reached the start line within ${timeoutMs} ms`);
    const r = Atomics.waitAsync(i32, index, v, 20);
    if (r.async) await r.value;
  }
}
