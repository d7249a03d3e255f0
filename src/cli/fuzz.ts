import { parse, processIo, UsageError, type Io } from './args.ts';
import { PATH_NAMES, PATHS } from '../fuzz/paths.ts';
import type { Progress } from '../fuzz/campaign.ts';

export const FUZZ_HELP = `usage: smmu-sim fuzz [--path P] [--seed S] [--runs N | --time T] [--json] [options]

Fuzz a command path of the model against the spec oracle: fast-check generates hostile drivers
(malformed commands from the command table, queue abuse, register sequences from the register
table, injected events), each run is checked step by step against a reference model of the spec
(IHI0070 G.b), and every failing case is shrunk and saved as a scenario file that
'smmu-sim replay FILE' reruns. On the VM paths (trap, kernel-queue, vcmdq) a hostile guest
issues the commands beside a bystander VM, and each run is checked for isolation and the
guest's error contract instead (failures saved as command lists; replay does not run them).

paths:
${PATH_NAMES.map((n) => `  ${n.padEnd(13)} ${PATHS[n]!.summary}${PATHS[n]!.unavailable !== undefined ? ' (not available yet)' : ''}`).join('\n')}

options:
  --path P        the path to fuzz (default native)
  --seed S        the seed (an integer; default: a random one, printed)
  --runs N        stop after N runs (default 200)
  --time T        stop after a time: 30s, 5m, 1h, 500ms (a plain number is seconds)
  --features L    fuzz this --features list only (default: the path's presets in turn;
                  native and ecmdq only)
  --out DIR       where failing cases are saved (default ./fuzz-failures)
  --strict        known model deviations (src/fuzz/known.ts) count as failures
  --json          print the summary as one JSON object
  -h, --help      this text

A progress line goes to standard error when it is a terminal. Exit code 0 when every run held,
1 when something failed, 2 for bad usage or a path that is not available yet.
`;

const TIME_RE = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** "30s", "5m", "1h", "500ms" or plain seconds, to milliseconds. */
export function parseDuration(text: string): number {
  const m = TIME_RE.exec(text.trim());
  if (m === null) throw new UsageError(`fuzz: --time '${text}' is not a duration such as 30s, 5m, 1h or 500ms`);
  const ms = Number(m[1]) * UNIT_MS[m[2] ?? 's']!;
  if (!(ms > 0)) throw new UsageError('fuzz: --time must be more than zero');
  return ms;
}

function intArg(name: string, text: string, min: number, max: number): number {
  if (!/^-?\d+$/.test(text.trim())) throw new UsageError(`fuzz: --${name} '${text}' is not an integer`);
  const n = Number(text);
  if (n < min || n > max) throw new UsageError(`fuzz: --${name} must be in ${min}..${max}`);
  return n;
}

function bar(fraction: number, width = 24): string {
  const n = Math.max(0, Math.min(width, Math.round(fraction * width)));
  return `[${'#'.repeat(n)}${'-'.repeat(width - n)}]`;
}

export function progressLine(path: string, p: Progress): string {
  const secs = (p.elapsedMs / 1000).toFixed(1);
  const frac = p.timeMs !== undefined ? p.elapsedMs / p.timeMs : p.totalRuns !== undefined ? p.runs / p.totalRuns : 0;
  const runs = p.totalRuns !== undefined ? `${p.runs}/${p.totalRuns} runs` : `${p.runs} runs`;
  const time = p.timeMs !== undefined ? `${secs}/${(p.timeMs / 1000).toFixed(0)} s` : `${secs} s`;
  return `fuzz ${path} ${bar(frac)} ${runs}, ${p.failures} failure${p.failures === 1 ? '' : 's'}, ${time}${p.shrinking ? ', shrinking' : ''}`;
}

export async function fuzzMain(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse('fuzz', argv, {
    path: { type: 'string' },
    seed: { type: 'string' },
    runs: { type: 'string' },
    time: { type: 'string' },
    features: { type: 'string' },
    out: { type: 'string' },
    strict: { type: 'boolean' },
    json: { type: 'boolean' },
  } as const);
  if (positionals.length > 0) throw new UsageError(`fuzz: unexpected argument '${positionals[0]}'`);
  const pathName = values.path ?? 'native';
  const path = PATHS[pathName];
  if (path === undefined) throw new UsageError(`fuzz: unknown path '${pathName}' (paths: ${PATH_NAMES.join(', ')})`);
  if (path.unavailable !== undefined) throw new UsageError(`fuzz: path '${pathName}' is not available yet: ${path.unavailable}`);
  if (values.runs !== undefined && values.time !== undefined) throw new UsageError('fuzz: give --runs or --time, not both');
  const runs = values.runs !== undefined ? intArg('runs', values.runs, 1, 1e9) : undefined;
  const timeMs = values.time !== undefined ? parseDuration(values.time) : undefined;
  const seed = values.seed !== undefined ? intArg('seed', values.seed, -(2 ** 31), 2 ** 31 - 1) : (Date.now() ^ (process.pid << 16)) | 0;

  let campaign: typeof import('../fuzz/campaign.ts');
  try {
    campaign = await import('../fuzz/campaign.ts');
  } catch (e) {
    const msg = (e as Error).message;
    if (/fast-check/.test(msg)) throw new UsageError('fuzz: needs the fast-check package (a development dependency): run it from a checkout after npm install');
    throw e;
  }
  try {
    campaign.campaignPlan(pathName, values.features);
  } catch (e) {
    throw new UsageError(`fuzz: ${(e as Error).message}`);
  }
  const tty = io === processIo && process.stderr.isTTY === true;
  let last = 0;
  const onProgress = tty
    ? (p: Progress) => {
        const now = Date.now();
        if (now - last < 100 && !p.shrinking) return;
        last = now;
        io.err(`\r${progressLine(pathName, p)}\u001b[K`);
      }
    : undefined;
  if (!values.json) io.err(`smmu-sim fuzz: path ${pathName}, seed ${seed}${runs !== undefined ? `, ${runs} runs` : timeMs !== undefined ? `, ${values.time}` : ''}\n`);
  let summary: Awaited<ReturnType<typeof campaign.runCampaign>>;
  try {
    summary = await campaign.runCampaign({
      path: pathName,
      seed,
      ...(runs !== undefined ? { runs } : {}),
      ...(timeMs !== undefined ? { timeMs } : {}),
      ...(values.features !== undefined ? { features: values.features } : {}),
      outDir: values.out ?? 'fuzz-failures',
      harness: { strict: values.strict === true },
      ...(onProgress !== undefined ? { onProgress } : {}),
    });
  } finally {
    if (tty) io.err('\r\u001b[K');
  }
  io.out(values.json ? `${JSON.stringify(summary)}\n` : campaign.formatSummary(summary));
  return summary.failures > 0 ? 1 : 0;
}
