import { processIo, UsageError, type Io } from './args.ts';
import { decodeMain, DECODE_HELP } from './decode.ts';
import { encodeMain, ENCODE_HELP } from './encode.ts';
import { regsMain, REGS_HELP } from './regs.ts';
import { demoMain, DEMO_HELP } from './demo.ts';
import { benchMain, BENCH_HELP } from './bench.ts';
import { fuzzMain, FUZZ_HELP } from './fuzz.ts';
import { replayMain, REPLAY_HELP } from './replay.ts';

interface Subcommand {
  readonly summary: string;
  readonly help: string;
  run(argv: string[], io: Io): Promise<number>;
}

const COMMANDS: Record<string, Subcommand> = {
  bench: { summary: 'invalidation latency and throughput, path by path, against the floor of the medium', help: BENCH_HELP, run: benchMain },
  decode: { summary: 'decode commands (or an STE, CD or event record) from hex', help: DECODE_HELP, run: decodeMain },
  encode: { summary: 'encode commands from JSON field values', help: ENCODE_HELP, run: encodeMain },
  regs: { summary: 'the register map and its fields', help: REGS_HELP, run: regsMain },
  demo: { summary: 'boot the model, run commands through it and show what happens', help: DEMO_HELP, run: demoMain },
  fuzz: { summary: 'fuzz the command queues against the spec oracle; failures saved as scenarios', help: FUZZ_HELP, run: fuzzMain },
  replay: { summary: 'rerun a scenario file and print its trace', help: REPLAY_HELP, run: replayMain },
};

export function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((k) => k.length));
  const rows = Object.entries(COMMANDS).map(([k, c]) => `  ${k.padEnd(width)}  ${c.summary}`);
  return [
    'smmu-sim: a binary-accurate model of the Arm SMMUv3 programming interface (IHI0070 G.b)',
    '',
    'usage: smmu-sim <command> [options]',
    '',
    'commands:',
    ...rows,
    '',
    "Run 'smmu-sim <command> --help' for a command's options.",
    '',
  ].join('\n');
}

/**
 * Entry point: returns the exit code: 0 ok, 1 a check the command runs failed (a fuzz failure, a
 * replayed scenario whose expectation does not hold, an internal error), 2 bad usage. Decoding an
 * illegal command is not a failure: the verdict is the output.
 */
export async function main(argv: string[], io: Io = processIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    // No command is a usage error: the usage goes where errors go.
    io.err(usage());
    return 2;
  }
  if (name === '--help' || name === '-h' || name === 'help') {
    io.out(usage());
    return 0;
  }
  const cmd = COMMANDS[name];
  if (cmd === undefined) {
    io.err(`smmu-sim: unknown command '${name}' (commands: ${Object.keys(COMMANDS).join(', ')})\n`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    io.out(cmd.help);
    return 0;
  }
  try {
    return await cmd.run(rest, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`smmu-sim ${e.message}\n`);
      return 2;
    }
    // An internal failure: say what happened in one line; the stack only when asked for.
    const err = e as Error;
    io.err(`smmu-sim ${name}: internal error: ${err.message}\n`);
    if (process.env.SMMU_SIM_DEBUG) io.err(`${err.stack}\n`);
    return 1;
  }
}
