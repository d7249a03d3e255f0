/** Run the `smmu-sim` CLI in-process with captured output and standard input given as text. */
import { main } from '../../src/cli/main.ts';
import type { Io } from '../../src/cli/args.ts';

export interface Run {
  readonly code: number;
  readonly out: string;
  readonly err: string;
}

/** Run `smmu-sim argv…` with `stdin` fed as the given chunks (a string is one chunk). */
export async function run(argv: string[], stdin: string | readonly string[] = [], stdinIsTTY = false): Promise<Run> {
  let out = '';
  let err = '';
  const chunks = typeof stdin === 'string' ? [stdin] : stdin;
  const io: Io = {
    out: (t) => void (out += t),
    err: (t) => void (err += t),
    stdin: async function* () {
      for (const c of chunks) yield c;
    },
    stdinIsTTY,
  };
  const code = await main(argv, io);
  return { code, out, err };
}
