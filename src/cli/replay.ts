import { readFileSync } from 'node:fs';
import { parse, UsageError, type Io } from './args.ts';
import { parseScenarioText, ScenarioError, type Scenario } from '../fuzz/scenario.ts';
import { Harness, type RunEvent, type RunResult } from '../fuzz/runner.ts';
import type { Violation } from '../fuzz/oracle.ts';

export const REPLAY_HELP = `usage: smmu-sim replay [--json] [--verbose] FILE

Rerun a scenario file (docs/scenarios.md): start the model with the file's features, bring the
queues up, take the steps (register writes, commands at queue positions, doorbells, waits,
injected events, recovery), check every step against the spec oracle and the file's 'expect',
and print the trace: each step and the commands the device read, with their outcome.

options:
  --json       one JSON object per line: steps, commands, violations, and a closing result
  --verbose    also print each register write and memory store a step makes
  -h, --help   this text

Exit code 0 when the expectation holds, 1 when it does not, 2 for a file that cannot be read or
is not a valid scenario (the message names the key or step). Known model deviations are never
waived here: a scenario saved for one fails until the model is fixed.
`;

function violationText(v: Violation): string {
  const where = v.step < 0 ? 'set-up' : `step ${v.step}`;
  return `!! ${where}: ${v.rule}${v.section !== undefined ? ` (${v.section})` : ''}: ${v.message}`;
}

function eventJson(e: RunEvent): Record<string, unknown> {
  switch (e.type) {
    case 'step':
      return { step: e.index, kind: e.kind, text: e.text };
    case 'action':
      return { step: e.index, action: e.text.trim() };
    case 'command':
      return { step: e.index, command: e.entry.json, text: e.entry.text };
    case 'violation':
      return { violation: e.violation };
  }
}

export async function replayMain(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse('replay', argv, { json: { type: 'boolean' }, verbose: { type: 'boolean' } } as const);
  if (positionals.length !== 1) throw new UsageError(`replay: give exactly one scenario file${positionals.length > 1 ? `, not ${positionals.length}` : ''}`);
  const file = positionals[0]!;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`replay: ${file}: cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let sc: Scenario;
  try {
    sc = parseScenarioText(text);
  } catch (e) {
    if (e instanceof ScenarioError) throw new UsageError(`replay: ${file}: ${e.message}`);
    throw e;
  }
  const json = values.json === true;
  const verbose = values.verbose === true;
  const lines: string[] = [];
  const flush = () => {
    if (lines.length > 0) io.out(`${lines.join('\n')}\n`);
    lines.length = 0;
  };
  if (!json) {
    lines.push(`scenario ${sc.name ?? file}${sc.name !== undefined ? ` (${file})` : ''}`);
    const c = sc.config;
    const q = [`CMDQ 2^${c.cmdq.log2} at 0x${c.cmdq.base.toString(16)}`, `EVENTQ 2^${c.eventq.log2} at 0x${c.eventq.base.toString(16)}`, ...c.ecmdq.map((e) => `ECMDQ${e.n} 2^${e.log2} at 0x${e.base.toString(16)}`)];
    lines.push(`features ${c.features === '' ? 'full' : c.features}; ${c.setup ? '' : 'no set-up; '}${q.join(', ')}`);
  }
  const onEvent = (e: RunEvent) => {
    if (json) {
      if (e.type !== 'action' || verbose) lines.push(JSON.stringify(eventJson(e)));
    } else if (e.type === 'step') {
      lines.push(e.index < 0 ? `set-up ${e.text.replace(/ \(no wait\)/, '').replace(/  # set-up$/, '')}` : `[${e.index}] ${e.text}`);
    } else if (e.type === 'action') {
      if (verbose) lines.push(`    ${e.text.trim()}`);
    } else if (e.type === 'command') {
      lines.push(`      ${e.entry.text}`);
    } else {
      lines.push(violationText(e.violation));
    }
    if (lines.length >= 256) flush();
  };
  const harness = new Harness({ strict: true });
  let r: RunResult;
  try {
    r = await harness.run(sc, { onEvent });
  } finally {
    await harness.close();
  }
  const kf = sc.knownFailure;
  if (json) {
    lines.push(JSON.stringify({
      result: r.ok ? 'pass' : 'fail',
      violations: r.violations,
      commands: r.commands,
      register_writes: r.registerWrites,
      ...(kf !== undefined ? { known_failure: kf } : {}),
    }));
  } else {
    const shown = new Set<Violation>();
    // Violations found after the last step (memory, expectation) were reported through events too;
    // print any that were not.
    for (const v of r.violations) if (!shown.has(v) && !lines.some((l) => l === violationText(v))) lines.push(violationText(v));
    if (kf !== undefined) lines.push(`known failure: ${kf.rule}${kf.note !== undefined ? ` (${kf.note})` : ''}${r.ok ? ' -- but the scenario passes now: the model was fixed?' : ''}`);
    lines.push(r.ok
      ? `PASS: ${r.commands} commands, ${r.registerWrites} register writes; ${!sc.expect.oracle ? 'the expectation holds (oracle off)' : sc.expect.commands !== undefined || sc.expect.registers !== undefined ? 'the oracle and the expectation hold' : 'the oracle holds'}`
      : `FAIL: ${r.violations.length} violation${r.violations.length === 1 ? '' : 's'} (${r.commands} commands, ${r.registerWrites} register writes)`);
  }
  flush();
  return r.ok ? 0 : 1;
}
