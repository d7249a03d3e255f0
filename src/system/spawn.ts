import { Worker, type WorkerOptions } from 'node:worker_threads';

/**
 * Start a worker whose entry sits next to the calling module.
 *
 * `callerUrl` is the caller's `import.meta.url`, `entry` the worker module's path relative to
 * it without extension. From source (vitest, tsx, the dev CLI) the caller's URL ends in `.ts`:
 * the worker then starts through ts-worker-boot.mjs, which registers tsx before importing the
 * `.ts` entry. From dist/ it starts the compiled `.js` entry with no loader at all.
 */
export function spawnWorker(callerUrl: string, entry: string, options: WorkerOptions = {}): Worker {
  const fromSource = callerUrl.endsWith('.ts');
  const target = new URL(`${entry}${fromSource ? '.ts' : '.js'}`, callerUrl);
  if (!fromSource) return new Worker(target, options);
  const boot = new URL('./ts-worker-boot.mjs', import.meta.url);
  const data = { ...(options.workerData as Record<string, unknown> | undefined), __tsEntry: target.href };
  return new Worker(boot, { ...options, workerData: data });
}
