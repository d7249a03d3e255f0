import { parseArgs, type ParseArgsConfig } from 'node:util';

/** A problem with what the user typed: printed as one line, exit code 2, never a stack trace. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Where a subcommand writes: injectable so tests can capture output without a process. */
export interface Io {
  out(text: string): void;
  err(text: string): void;
  /** Standard input as text chunks (undefined when a subcommand must not read it). */
  stdin(): AsyncIterable<string>;
  readonly stdinIsTTY: boolean;
}

export const processIo: Io = {
  out: (t) => void process.stdout.write(t),
  err: (t) => void process.stderr.write(t),
  stdin: () => {
    process.stdin.setEncoding('utf8');
    return process.stdin as AsyncIterable<string>;
  },
  get stdinIsTTY() {
    return process.stdin.isTTY === true;
  },
};

/**
 * parseArgs with errors turned into UsageErrors that name the subcommand, e.g.
 * "decode: unknown option '--jsn'".
 */
export function parse<T extends NonNullable<ParseArgsConfig['options']>>(
  command: string,
  argv: string[],
  options: T,
): { values: { [K in keyof T]?: T[K]['type'] extends 'boolean' ? boolean : T[K]['multiple'] extends true ? string[] : string }; positionals: string[] } {
  try {
    const r = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
    return r as never;
  } catch (e) {
    const msg = (e as Error).message.replace(/\. To specify a positional argument.*$/s, '').replace(/^(Unknown option|Option)/, (m) => m.toLowerCase());
    throw new UsageError(`${command}: ${msg}`);
  }
}

/**
 * Read standard input as batches of whole lines, streaming: one await per chunk of input, not
 * per line, so bulk decode of millions of lines spends its time decoding.
 */
export async function* lineBatches(io: Io): AsyncGenerator<string[]> {
  let rest = '';
  for await (const chunk of io.stdin()) {
    const parts = (rest + chunk).split('\n');
    rest = parts.pop() ?? '';
    if (parts.length > 0) yield parts;
  }
  if (rest !== '') yield [rest];
}

/** Run `each(line, lineNumber)` over every non-blank, non-comment line of standard input. */
export async function forEachLine(io: Io, each: (line: string, n: number) => void): Promise<void> {
  let n = 0;
  for await (const batch of lineBatches(io)) {
    for (const raw of batch) {
      n++;
      const line = raw.trim();
      if (line === '' || line.startsWith('#')) continue;
      each(line, n);
    }
  }
}

/** Buffered writer: bulk output in large chunks instead of one write per line. */
export class OutBuffer {
  private parts: string[] = [];
  private size = 0;

  constructor(private readonly io: Io, private readonly limit = 1 << 16) {}

  line(s: string): void {
    this.parts.push(s, '\n');
    this.size += s.length + 1;
    if (this.size >= this.limit) this.flush();
  }

  flush(): void {
    if (this.parts.length === 0) return;
    this.io.out(this.parts.join(''));
    this.parts = [];
    this.size = 0;
  }
}
