import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, processIo, UsageError, type Io } from './args.ts';
import { resolveCost, type CostModel } from '../../bench/cost-model.ts';
import type { SyncMode } from '../../bench/guest-api.ts';
import { runBench, type BenchOptions } from '../../bench/harness.ts';
import { availablePaths, describePaths, knownPathNames } from '../../bench/paths.ts';
import { formatSummary, formatTable } from '../../bench/report.ts';
import { benchPlots } from '../../bench/svg.ts';
import { WORKLOADS, type WorkloadName } from '../../bench/workloads.ts';
import { parseWaitPolicy } from '../mem/wait.ts';
import { FULL_FEATURES, featureSyntax, parseFeatures, type SmmuFeatures } from '../spec/features.ts';

const QUICK_BATCHES = [1, 8, 64];
const FULL_BATCHES = [1, 2, 4, 8, 16, 32, 64];
/** Linux's largest batch: CMDQ_BATCH_ENTRIES (64 on arm64) commands per doorbell. */
const MAX_BATCH = 64;
const MAX_PRODUCERS = 64;
const DEFAULT_QUEUE_ENTRIES = 256;

export const BENCH_HELP = `usage: smmu-sim bench [options]

Invalidation latency and throughput, path by path, against the floor of the medium (two worker
threads on one SharedArrayBuffer with the same wait policy), measured in the same run. Every
timing is taken inside the worker that issues the commands. Progress goes to stderr (on a
terminal only), the table to stdout. Method and how to read it: docs/benchmarks.md.

options:
  --paths A,B          paths to run (default: every available one); 'list' lists them all
  --policy P[,P]       how every thread waits: spin, hybrid (default), hybrid:N, wait
  --batch N[,N]        invalidations per doorbell, 1..${MAX_BATCH} (default 1,8,64 with --quick,
                       else 1,2,4,8,16,32,64)
  --producers N[,N]    producer CPUs, 1..${MAX_PRODUCERS} (default 1); combinations a path cannot
                       run are reported as skipped, with the reason
  --sync M[,M]         how the guest waits for CMD_SYNC: msi (MSI polling, Linux's default)
                       and/or cons (SMMU_CMDQ_CONS polling); default msi,cons
  --queue N[,N]        command queue entries, a power of two (default ${DEFAULT_QUEUE_ENTRIES})
  --workloads W[,W]    ${WORKLOADS.map((w) => w.name).join(', ')} (default: all)
  --features LIST      the SMMU (default: every feature on): ${featureSyntax()}
  --quick              fewer samples: the whole default run in seconds
  --samples N          timed operations per row, exactly (the default counts stop early at a
                       time limit per row; these do not)
  --warmup N           untimed operations before each row, exactly
  --json               print one JSON document instead of the table
  --out DIR            also write DIR/results.json, DIR/summary.md and SVG plots
  --cost SPEC|FILE     cost model: exit=NS,uexit=NS,ioctl=NS,cmd=NS,sync=NS[,hw=model|measured]
                       (VM exit to the host kernel, the extra exit to the VMM in user space,
                       ioctl, command consumed by hardware, CMD_SYNC), or a JSON file with those
                       keys; unset keys keep the default calibration
  -h, --help           this text

paths:
${describePaths().map((l) => `  ${l}`).join('\n')}
`;

function list(flag: string, text: string | undefined): string[] | undefined {
  if (text === undefined) return undefined;
  const items = text.split(',').map((s) => s.trim());
  if (items.some((s) => s === '')) throw new UsageError(`bench: ${flag} '${text}': empty item in the list`);
  return items;
}

function ints(flag: string, text: string | undefined, min: number, max: number): number[] | undefined {
  const items = list(flag, text);
  if (items === undefined) return undefined;
  return items.map((s) => {
    const n = Number(s);
    if (!/^\d+$/.test(s) || n < min || n > max) throw new UsageError(`bench: ${flag} '${s}' must be an integer in ${min}..${max}`);
    return n;
  });
}

function unique<T>(xs: T[]): T[] {
  return [...new Set(xs)];
}

export type ParsedBench =
  | { readonly kind: 'list' }
  | { readonly kind: 'run'; readonly options: BenchOptions; readonly json: boolean; readonly out: string | undefined };

/** Turn the command line into options; every problem is a UsageError naming the option. */
export function parseBenchArgs(argv: string[]): ParsedBench {
  const { values, positionals } = parse('bench', argv, {
    paths: { type: 'string' },
    policy: { type: 'string' },
    batch: { type: 'string' },
    producers: { type: 'string' },
    sync: { type: 'string' },
    queue: { type: 'string' },
    workloads: { type: 'string' },
    features: { type: 'string' },
    quick: { type: 'boolean' },
    samples: { type: 'string' },
    warmup: { type: 'string' },
    json: { type: 'boolean' },
    out: { type: 'string' },
    cost: { type: 'string' },
  } as const);
  if (positionals.length > 0) throw new UsageError(`bench: unexpected argument '${positionals[0]}'`);
  if (values.paths === 'list') return { kind: 'list' };

  const known = knownPathNames();
  const paths = unique(list('--paths', values.paths) ?? availablePaths());
  for (const p of paths) {
    if (!known.includes(p)) throw new UsageError(`bench: unknown path '${p}' (known: ${known.join(', ')}; 'list' shows which are available)`);
  }

  const policies = unique(list('--policy', values.policy) ?? ['hybrid']);
  for (const p of policies) {
    try {
      parseWaitPolicy(p);
    } catch (e) {
      throw new UsageError(`bench: --policy: ${(e as Error).message}`);
    }
  }

  const quick = values.quick === true;
  const batches = unique(ints('--batch', values.batch, 1, MAX_BATCH) ?? (quick ? QUICK_BATCHES : FULL_BATCHES)).sort((a, b) => a - b);
  const producers = unique(ints('--producers', values.producers, 1, MAX_PRODUCERS) ?? [1]).sort((a, b) => a - b);

  const syncs = unique(list('--sync', values.sync) ?? ['msi', 'cons']);
  for (const s of syncs) if (s !== 'msi' && s !== 'cons') throw new UsageError(`bench: --sync '${s}' must be msi or cons`);

  let features: SmmuFeatures = FULL_FEATURES;
  if (values.features !== undefined) {
    try {
      features = parseFeatures(values.features);
    } catch (e) {
      throw new UsageError(`bench: --features: ${(e as Error).message}`);
    }
  }

  const queueEntries = unique(ints('--queue', values.queue, 2, 2 ** features.cmdqs) ?? [DEFAULT_QUEUE_ENTRIES]);
  const queues = queueEntries.map((n) => {
    if ((n & (n - 1)) !== 0) throw new UsageError(`bench: --queue ${n} must be a power of two (a queue holds 2^LOG2SIZE entries, §3.5.1)`);
    return Math.log2(n);
  });

  const names = WORKLOADS.map((w) => w.name) as string[];
  const workloads = unique(list('--workloads', values.workloads) ?? names);
  for (const w of workloads) if (!names.includes(w)) throw new UsageError(`bench: unknown workload '${w}' (workloads: ${names.join(', ')})`);

  const samples = ints('--samples', values.samples, 1, 100_000_000)?.[0];
  const warmup = ints('--warmup', values.warmup, 0, 100_000_000)?.[0];
  if (values.out === '') throw new UsageError('bench: --out needs a directory');

  let cost: CostModel;
  try {
    cost = resolveCost(values.cost);
  } catch (e) {
    throw new UsageError(`bench: --cost: ${(e as Error).message}`);
  }

  const options: BenchOptions = {
    paths,
    policies,
    batches,
    producers,
    syncs: syncs as SyncMode[],
    queues,
    workloads: workloads as WorkloadName[],
    quick,
    features,
    cost,
    ...(samples !== undefined ? { samples } : {}),
    ...(warmup !== undefined ? { warmup } : {}),
    command: ['smmu-sim bench', ...argv].join(' '),
  };
  return { kind: 'run', options, json: values.json === true, out: values.out };
}

/** The progress line: rewritten in place on a terminal, absent otherwise. */
function progressFor(io: Io): BenchOptions['progress'] {
  if (io !== processIo || process.stderr.isTTY !== true) return undefined;
  return (done, total, label) => {
    const line = label === 'done' ? '' : `smmu-sim bench [${done}/${total}] ${label}`;
    io.err(`\r\x1b[2K${line}`);
  };
}

export async function benchMain(argv: string[], io: Io): Promise<number> {
  const parsed = parseBenchArgs(argv);
  if (parsed.kind === 'list') {
    io.out(`${describePaths().join('\n')}\n`);
    return 0;
  }
  const progress = progressFor(io);
  const run = await runBench({ ...parsed.options, ...(progress !== undefined ? { progress } : {}) });
  if (parsed.out !== undefined) {
    mkdirSync(parsed.out, { recursive: true });
    const plots = benchPlots(run);
    writeFileSync(join(parsed.out, 'results.json'), `${JSON.stringify(run.doc, null, 2)}\n`);
    for (const [name, svg] of plots) writeFileSync(join(parsed.out, name), svg);
    writeFileSync(join(parsed.out, 'summary.md'), formatSummary(run.doc, [...plots.keys()]));
    io.err(`smmu-sim bench: wrote results.json, summary.md and ${plots.size} plots to ${parsed.out}\n`);
  }
  io.out(parsed.json ? `${JSON.stringify(run.doc, null, 2)}\n` : formatTable(run.doc));
  return run.doc.results.some((r) => r.error !== null) ? 1 : 0;
}
