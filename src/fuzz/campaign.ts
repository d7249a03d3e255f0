/**
 * A fuzzing campaign: fast-check generates scenarios for one path, the harness runs each against
 * the model and the oracle, failures are shrunk (fast-check's shrinking, kept on the same kind of
 * violation) and saved as scenario files that `smmu-sim replay` reruns. A campaign runs in blocks
 * of runs, each with its own derived seed and, unless the features are given, the next feature
 * preset of the path; a failure ends its block and the campaign goes on looking for other kinds.
 */

import fc from 'fast-check';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseFeatures, FULL_FEATURES } from '../spec/features.ts';
import { buildScenario, genContext, planArb } from './generators.ts';
import { PATHS, type FuzzPath } from './paths.ts';
import { Harness, type HarnessOptions, type RunResult } from './runner.ts';
import { formatScenarioJson, parseScenario } from './scenario.ts';
import { runVmCampaign } from './vm-harness.ts';
import type { Violation } from './oracle.ts';

export interface CampaignOptions {
  readonly path: string;
  readonly seed: number;
  /** Stop after this many runs (shrinking runs not counted). */
  readonly runs?: number;
  /** Stop after this many milliseconds. */
  readonly timeMs?: number;
  /** One feature list instead of the path's presets. */
  readonly features?: string;
  /** Where failures are saved; undefined: not saved. */
  readonly outDir?: string;
  /** Actions per scenario (default 20). */
  readonly maxActs?: number;
  /** Runs per block (default 100). */
  readonly blockRuns?: number;
  /** Runs spent shrinking one failure at most (default 400). */
  readonly maxShrinkRuns?: number;
  readonly harness?: HarnessOptions;
  readonly onProgress?: (p: Progress) => void;
}

export interface Progress {
  readonly runs: number;
  readonly totalRuns: number | undefined;
  readonly elapsedMs: number;
  readonly timeMs: number | undefined;
  readonly failures: number;
  readonly shrinking: boolean;
}

export interface FailedCase {
  readonly rule: string;
  readonly message: string;
  readonly step: number;
  readonly section?: string;
  readonly features: string;
  readonly seed: number;
  /** Where the shrunk scenario was saved. */
  readonly file?: string;
  /** Whether the saved scenario fails the same way on a freshly started system. */
  readonly reproduces: boolean;
  readonly shrinks: number;
  readonly scenario: Record<string, unknown>;
}

export interface CampaignSummary {
  readonly path: string;
  readonly seed: number;
  readonly features: readonly string[];
  readonly runs: number;
  readonly shrink_runs: number;
  readonly commands: number;
  readonly register_writes: number;
  readonly failures: number;
  readonly failed_cases: readonly Omit<FailedCase, 'scenario'>[];
  readonly errors_by_kind: Record<string, number>;
  /** Known model deviations (known.ts) seen and waived, by id: how many checks each waived. */
  readonly known_deviations: Record<string, number>;
  readonly coverage: Coverage;
  readonly duration_ms: number;
  readonly systems_started: number;
  /** DMA transactions of translation worlds the oracle judged, and those it could not (the world was overwritten). */
  readonly dma: { readonly judged: number; readonly unjudged: number };
}

export interface Coverage {
  /** Opcode name -> outcome -> count. */
  readonly opcode_outcome: Record<string, Record<string, number>>;
  readonly opcodes_seen: number;
  /** 256 opcodes, plus CMD_CFGI_ALL (0x04 with Range 31). */
  readonly opcodes_total: number;
  readonly pairs_seen: number;
  /** Legality rules (src/spec/legality.ts) hit: CERROR_ILL reasons and out-of-range findings. */
  readonly legality_rules: Record<string, number>;
}

/** Thrown by the property so fast-check shrinks the run. */
class FuzzFailure extends Error {
  constructor(readonly result: RunResult) {
    super(`${result.violations[0]?.rule}: ${result.violations[0]?.message}`);
  }
}

/** Failures of one kind: the rule, and the check or the register it concerns (ECMDQ numbers dropped). */
export function violationSignature(v: Violation | undefined): string {
  if (v === undefined) return 'none';
  const what = v.check ?? v.subject?.replace(/\d+$/, '');
  return what === undefined ? v.rule : `${v.rule}:${what}`;
}

class Stats {
  runs = 0;
  shrinkRuns = 0;
  commands = 0;
  registerWrites = 0;
  dmaJudged = 0;
  dmaUnjudged = 0;
  readonly errors = new Map<string, number>();
  readonly waived = new Map<string, number>();
  readonly cov = new Map<string, Map<string, number>>();
  readonly rules = new Map<string, number>();

  add(r: RunResult): void {
    this.runs++;
    this.commands += r.commands;
    this.registerWrites += r.registerWrites;
    this.dmaJudged += r.dma.judged;
    this.dmaUnjudged += r.dma.unjudged;
    for (const [k, n] of r.errors) this.errors.set(k, (this.errors.get(k) ?? 0) + n);
    for (const [k, n] of r.waived) this.waived.set(k, (this.waived.get(k) ?? 0) + n);
    for (const s of r.seen) {
      let m = this.cov.get(s.name);
      if (m === undefined) this.cov.set(s.name, (m = new Map()));
      m.set(s.outcome, (m.get(s.outcome) ?? 0) + 1);
      for (const rule of s.rules) this.rules.set(rule, (this.rules.get(rule) ?? 0) + 1);
    }
  }

  coverage(): Coverage {
    const oc: Record<string, Record<string, number>> = {};
    let pairs = 0;
    for (const name of [...this.cov.keys()].sort()) {
      oc[name] = Object.fromEntries([...this.cov.get(name)!].sort());
      pairs += this.cov.get(name)!.size;
    }
    return {
      opcode_outcome: oc,
      opcodes_seen: [...this.cov.keys()].filter((n) => n !== '(fetch abort)').length,
      opcodes_total: 256 + 1,
      pairs_seen: pairs,
      legality_rules: Object.fromEntries([...this.rules].sort()),
    };
  }
}

/** Look up a path, or say why it cannot be fuzzed. */
export function resolvePath(name: string): FuzzPath {
  const p = PATHS[name];
  if (p === undefined) throw new Error(`unknown path '${name}' (paths: ${Object.keys(PATHS).join(', ')})`);
  if (p.unavailable !== undefined) throw new Error(`path '${name}' is not available yet: ${p.unavailable}`);
  return p;
}

/** The path and the feature lists a campaign would use; throws a one-line Error for bad ones. */
export function campaignPlan(pathName: string, features?: string): { path: FuzzPath; presets: readonly string[] } {
  const path = resolvePath(pathName);
  if (path.vm !== undefined && features !== undefined) throw new Error(`path '${path.name}' runs with the default features only (--features is for native and ecmdq)`);
  const presets = features !== undefined ? [features] : path.presets;
  for (const p of presets) {
    const f = p.trim() === '' ? FULL_FEATURES : parseFeatures(p);
    const why = path.needs?.(f);
    if (why !== undefined) throw new Error(`path '${path.name}' cannot run with features '${p}': ${why}`);
  }
  return { path, presets };
}

export async function runCampaign(opts: CampaignOptions): Promise<CampaignSummary> {
  const { path, presets } = campaignPlan(opts.path, opts.features);
  if (path.vm !== undefined) return runVmCampaign(opts, path);
  const start = Date.now();
  const deadline = opts.timeMs !== undefined ? start + opts.timeMs : undefined;
  const total = opts.runs ?? (opts.timeMs === undefined ? 200 : undefined);
  const blockRuns = opts.blockRuns ?? 100;
  const maxShrink = opts.maxShrinkRuns ?? 400;
  const harness = new Harness(opts.harness);
  const stats = new Stats();
  const failed: FailedCase[] = [];
  const known = new Set<string>();
  const progress = (shrinking: boolean) =>
    opts.onProgress?.({ runs: stats.runs, totalRuns: total, elapsedMs: Date.now() - start, timeMs: opts.timeMs, failures: failed.length, shrinking });
  let block = 0;
  try {
    for (;;) {
      const left = total === undefined ? blockRuns : Math.min(blockRuns, total - stats.runs);
      if (left <= 0) break;
      const remainingMs = deadline === undefined ? undefined : deadline - Date.now();
      if (remainingMs !== undefined && remainingMs <= 0) break;
      const preset = presets[block % presets.length]!;
      const features = preset.trim() === '' ? FULL_FEATURES : parseFeatures(preset);
      const ctx = genContext(features, preset);
      const seed = (opts.seed + block * 0x9e37) | 0;
      block++;
      const arb = planArb(ctx, path.shape, opts.maxActs ?? 20).map((plan) => buildScenario(ctx, plan, { name: `fuzz ${path.name}` }));
      let target: string | undefined;
      let shrinkRuns = 0;
      const prop = fc.asyncProperty(arb, async (json) => {
        if (target !== undefined && shrinkRuns >= maxShrink) return true;
        const r = await harness.run(parseScenario(json));
        if (target === undefined) {
          stats.add(r);
          progress(false);
        } else {
          shrinkRuns++;
          stats.shrinkRuns++;
          if (stats.shrinkRuns % 10 === 0) progress(true);
        }
        if (r.ok) return true;
        const sig = violationSignature(r.violations[0]);
        if (target === undefined) {
          if (known.has(sig)) return true; // a kind already saved: keep looking for others
          target = sig;
          throw new FuzzFailure(r);
        }
        if (sig !== target) return true; // shrink towards the same kind of failure only
        throw new FuzzFailure(r);
      });
      const params: fc.Parameters<[Record<string, unknown>]> = {
        seed,
        numRuns: left,
        endOnFailure: false,
        ...(deadline !== undefined ? { plugins: [fc.interruptAfterTimeLimit(Math.max(1, deadline - Date.now())) as fc.Plugin<[Record<string, unknown>]>] } : {}),
      };
      const details = await fc.check(prop, params);
      if (details.failed && details.counterexample !== null && details.counterexample !== undefined) {
        const json = details.counterexample[0];
        const err = details.errorInstance;
        const result = err instanceof FuzzFailure ? err.result : undefined;
        const v = result?.violations[0];
        known.add(target ?? violationSignature(v));
        failed.push(await saveFailure(opts, path.name, preset, seed, json, v, details.numShrinks, failed.length + 1));
        progress(false);
      }
      if (deadline !== undefined && Date.now() >= deadline) break;
    }
  } finally {
    await harness.close();
  }
  return {
    path: path.name,
    seed: opts.seed,
    features: presets.map((p) => (p === '' ? 'full' : p)),
    runs: stats.runs,
    shrink_runs: stats.shrinkRuns,
    commands: stats.commands,
    register_writes: stats.registerWrites,
    failures: failed.length,
    failed_cases: failed.map(({ scenario: _s, ...rest }) => rest),
    errors_by_kind: Object.fromEntries([...stats.errors].sort()),
    known_deviations: Object.fromEntries([...stats.waived].sort()),
    coverage: stats.coverage(),
    duration_ms: Date.now() - start,
    systems_started: harness.systemsStarted,
    dma: { judged: stats.dmaJudged, unjudged: stats.dmaUnjudged },
  };
}

async function saveFailure(opts: CampaignOptions, path: string, preset: string, seed: number, json: Record<string, unknown>, v: Violation | undefined, shrinks: number, n: number): Promise<FailedCase> {
  const rule = v?.rule ?? 'unknown';
  const scenario: Record<string, unknown> = {
    ...json,
    name: `fuzz ${path}: ${rule}`,
    description: v?.message ?? 'the property failed',
    found: { by: 'smmu-sim fuzz', path, seed, features: preset, rule, step: v?.step ?? -1, section: v?.section ?? '', message: v?.message ?? '', shrinks },
  };
  // Confirm on a freshly started system that the file alone reproduces it; steps after the one
  // that failed cannot matter, so try without them first.
  const fresh = new Harness({ ...opts.harness, strict: opts.harness?.strict ?? false });
  let reproduces = false;
  try {
    const fails = async (sc: Record<string, unknown>) => {
      const r = await fresh.run(parseScenario(sc));
      return !r.ok && violationSignature(r.violations[0]) === violationSignature(v);
    };
    const steps = Array.isArray(json.steps) ? (json.steps as unknown[]) : [];
    if (v !== undefined && v.step >= 0 && v.step + 1 < steps.length) {
      const shorter = { ...scenario, steps: steps.slice(0, v.step + 1) };
      if (await fails(shorter)) {
        scenario.steps = shorter.steps;
        reproduces = true;
      }
    }
    if (!reproduces) reproduces = await fails(scenario);
  } finally {
    await fresh.close();
  }
  (scenario.found as Record<string, unknown>).reproduces_on_fresh_system = reproduces;
  let file: string | undefined;
  if (opts.outDir !== undefined) {
    mkdirSync(opts.outDir, { recursive: true });
    file = join(opts.outDir, `${path}-${(seed >>> 0).toString(16)}-${n}-${rule}.json`);
    writeFileSync(file, formatScenarioJson(scenario));
  }
  return {
    rule,
    message: v?.message ?? '',
    step: v?.step ?? -1,
    ...(v?.section !== undefined ? { section: v.section } : {}),
    features: preset === '' ? 'full' : preset,
    seed,
    ...(file !== undefined ? { file } : {}),
    reproduces,
    shrinks,
    scenario,
  };
}

/** The summary as text lines. */
export function formatSummary(s: CampaignSummary): string {
  const lines: string[] = [];
  lines.push(`smmu-sim fuzz: path ${s.path}, seed ${s.seed}, features ${s.features.map((f) => (f.length > 40 ? `${f.slice(0, 37)}...` : f)).join(' | ')}`);
  lines.push(`  runs            ${s.runs}${s.shrink_runs > 0 ? ` (+${s.shrink_runs} shrinking)` : ''} in ${(s.duration_ms / 1000).toFixed(1)} s, ${s.systems_started} systems`);
  lines.push(`  commands        ${s.commands}`);
  lines.push(`  register writes ${s.register_writes}`);
  if (s.dma.judged + s.dma.unjudged > 0) lines.push(`  DMA             ${s.dma.judged} judged by the translation oracle${s.dma.unjudged > 0 ? `, ${s.dma.unjudged} not (world overwritten)` : ''}`);
  lines.push(`  failures        ${s.failures}`);
  for (const f of s.failed_cases) {
    lines.push(`    ${f.rule} (step ${f.step}${f.section !== undefined ? `, ${f.section}` : ''}): ${f.message}`);
    lines.push(`      ${f.file ?? '(not saved)'}${f.reproduces ? '' : '  [does not reproduce on a fresh system]'}`);
  }
  const kd = Object.entries(s.known_deviations);
  if (kd.length > 0) lines.push(`  known model deviations waived (see --strict): ${kd.map(([k, n]) => `${k} ${n}`).join(', ')}`);
  lines.push('  errors by kind:');
  const kinds = Object.entries(s.errors_by_kind);
  if (kinds.length === 0) lines.push('    (none)');
  const w = Math.max(0, ...kinds.map(([k]) => k.length));
  for (const [k, n] of kinds) lines.push(`    ${k.padEnd(w)}  ${n}`);
  const c = s.coverage;
  lines.push(`  coverage: ${c.opcodes_seen}/${c.opcodes_total} opcodes, ${c.pairs_seen} opcode x outcome pairs, ${Object.keys(c.legality_rules).length} legality rules hit`);
  const named = Object.entries(c.opcode_outcome).filter(([n]) => !n.startsWith('RESERVED_') && !n.startsWith('CMD_IMPDEF_'));
  const nw = Math.max(0, ...named.map(([n]) => n.length));
  for (const [name, m] of named) lines.push(`    ${name.padEnd(nw)}  ${Object.entries(m).map(([o, n]) => `${o} ${n}`).join('  ')}`);
  const res = Object.entries(c.opcode_outcome).filter(([n]) => n.startsWith('RESERVED_') || n.startsWith('CMD_IMPDEF_'));
  if (res.length > 0) {
    const sum = (pre: string) => res.filter(([n]) => n.startsWith(pre)).reduce((a, [, m]) => a + Object.values(m).reduce((x, y) => x + y, 0), 0);
    lines.push(`    reserved opcodes: ${res.filter(([n]) => n.startsWith('RESERVED_')).length} distinct, ${sum('RESERVED_')} commands; IMPLEMENTATION DEFINED: ${res.filter(([n]) => n.startsWith('CMD_IMPDEF_')).length} distinct, ${sum('CMD_IMPDEF_')} commands`);
  }
  return `${lines.join('\n')}\n`;
}
