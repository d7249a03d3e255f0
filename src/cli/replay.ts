import { readFileSync } from 'node:fs';
import { parse, UsageError, type Io } from './args.ts';
import { parseScenario, ScenarioError, SCENARIO_FORMAT, type Scenario } from '../fuzz/scenario.ts';
import { Harness, type RunEvent, type RunResult } from '../fuzz/runner.ts';
import type { Violation } from '../fuzz/oracle.ts';
import { VmHarness } from '../fuzz/vm-harness.ts';
import { parseVmScenario, replayVmScenario, VM_SCENARIO_FORMAT, vmTopologyText, type VmReplayEvent, type VmReplayResult, type VmReplayViolation, type VmScenario } from '../fuzz/vm-scenario.ts';
import { commandJsonLine, commandTextLine } from './decode.ts';
import { wordsHex } from '../fuzz/generators.ts';
import type { SmmuFeatures } from '../spec/features.ts';

export const REPLAY_HELP = `usage: smmu-sim replay [--json] [--verbose] FILE

Rerun a scenario file (docs/scenarios.md). Its "format" says which kind:

  ${SCENARIO_FORMAT}   a ring and doorbell test: start the model with the file's
      features, bring the queues up, take the steps (register writes, commands at queue
      positions, doorbells, waits, injected events, recovery), check every step against the spec
      oracle and the file's 'expect', and print the trace: each step and the commands the device
      read, with their outcome.
  ${VM_SCENARIO_FORMAT}    a virtualization-path test (what 'smmu-sim fuzz --path trap|
      kernel-queue|vcmdq' saves): start two VMs on the file's path, let guest A issue the file's
      commands beside bystander B, check isolation and the guest's error contract and the file's
      'expect', and print the guest's commands, the physical commands the SMMU read, and the
      command errors the guest saw.

options:
  --json       one JSON object per line: steps or guest commands, physical commands, violations,
               and a closing result
  --verbose    also print each register write and memory store a step makes (VM-path files:
               each guest command's 32 hex digits)
  -h, --help   this text

Exit code 0 when the checks and the expectation hold, 1 when they do not, 2 for a file that
cannot be read or is not a valid scenario (the message names the key or step). Known model
deviations are never waived here: a scenario saved for one fails until the model is fixed.
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
    case 'dma':
      return { step: e.index, dma: e.result, text: e.text };
    case 'violation':
      return { violation: e.violation };
  }
}

const FORMATS = `"${SCENARIO_FORMAT}" or "${VM_SCENARIO_FORMAT}"`;

/** Parse either format, by the file's "format" key. Throws a ScenarioError naming the problem. */
export function parseAnyScenario(text: string): { kind: 'ring'; scenario: Scenario } | { kind: 'vm'; scenario: VmScenario } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ScenarioError(`not valid JSON: ${(e as Error).message}`);
  }
  if (typeof json === 'object' && json !== null && !Array.isArray(json)) {
    const format = (json as Record<string, unknown>).format;
    if (format === VM_SCENARIO_FORMAT) return { kind: 'vm', scenario: parseVmScenario(json) };
    if (format === undefined) throw new ScenarioError(`missing key 'format' (expected ${FORMATS})`);
    if (format !== SCENARIO_FORMAT) throw new ScenarioError(`format: '${String(format)}' is not a format this version reads (expected ${FORMATS})`);
  }
  return { kind: 'ring', scenario: parseScenario(json) };
}

function vmViolationText(v: VmReplayViolation, expected: boolean): string {
  return `${expected ? '-- expected' : '!!'} ${v.rule}${v.section !== '' ? ` (${v.section})` : ''}: ${v.message}`;
}

/** Replay a VM-path file on a freshly started harness and print it (text or JSON lines). */
async function replayVm(file: string, sc: VmScenario, io: Io, json: boolean, verbose: boolean): Promise<number> {
  const events: VmReplayEvent[] = [];
  const harness = new VmHarness(sc.path);
  let r: VmReplayResult;
  try {
    r = await replayVmScenario(sc, harness, { onEvent: (e) => events.push(e) });
  } finally {
    await harness.close();
  }
  const kf = sc.knownFailure;
  const lines: string[] = [];
  let features: SmmuFeatures | undefined;
  if (json) {
    for (const e of events) {
      switch (e.type) {
        case 'setup':
          features = e.features;
          lines.push(JSON.stringify({ path: e.path, vmids: e.vmids }));
          break;
        case 'guest': {
          const w = Uint32Array.from(e.words);
          lines.push(JSON.stringify({ guest: e.index, command: JSON.parse(commandJsonLine(w, features!)), text: commandTextLine(w, features!) }));
          break;
        }
        case 'physical':
          lines.push(JSON.stringify({ physical: e.index, command: e.entry.json, text: e.entry.text }));
          break;
        case 'guest-error':
          lines.push(JSON.stringify({ guest_error: e.error }));
          break;
        case 'violation':
          lines.push(JSON.stringify(e.expected ? { expected_violation: e.violation } : { violation: e.violation }));
          break;
      }
    }
    lines.push(JSON.stringify({
      result: r.ok ? 'pass' : 'fail',
      violations: r.violations,
      commands: sc.commands.length,
      guest_errors: r.run.guestErrors.length,
      physical: r.run.trace.length,
      ...(r.expected.length > 0 ? { expected_violations: r.expected } : {}),
      ...(kf !== undefined ? { known_failure: kf } : {}),
    }));
  } else {
    lines.push(`vm scenario ${sc.name ?? file}${sc.name !== undefined ? ` (${file})` : ''}`);
    const guest = events.filter((e) => e.type === 'guest');
    const physical = events.filter((e) => e.type === 'physical');
    const errors = events.filter((e) => e.type === 'guest-error');
    for (const e of events) {
      if (e.type !== 'setup') continue;
      features = e.features;
      lines.push(`path ${e.path}; A is VMID ${e.vmids.A}, B VMID ${e.vmids.B}; ${vmTopologyText()}`);
    }
    lines.push(`guest A issues ${guest.length} command${guest.length === 1 ? '' : 's'} and a CMD_SYNC:`);
    for (const e of guest) lines.push(`  [${e.index}] ${verbose ? `${wordsHex(e.words)}  ` : ''}${commandTextLine(Uint32Array.from(e.words), features!)}`);
    lines.push(`physical commands the SMMU read: ${physical.length === 0 ? 'none' : ''}`.trimEnd());
    for (const e of physical) lines.push(`      ${e.entry.text}`);
    lines.push(`guest errors: ${errors.length === 0 ? 'none' : ''}`.trimEnd());
    for (const e of errors) lines.push(`  [${e.error.index ?? '?'}] ${e.error.name} (code ${e.error.code}) at queue pointer 0x${e.error.ptr.toString(16)}`);
    for (const e of events) if (e.type === 'violation') lines.push(vmViolationText(e.violation, e.expected));
    if (kf !== undefined) lines.push(`known failure: ${kf.rule}${kf.note !== undefined ? ` (${kf.note})` : ''}${r.ok ? ' -- but the scenario passes now: the model was fixed?' : ''}`);
    const counts = `${sc.commands.length} guest command${sc.commands.length === 1 ? '' : 's'}, ${r.run.guestErrors.length} guest error${r.run.guestErrors.length === 1 ? '' : 's'}, ${r.run.trace.length} physical command${r.run.trace.length === 1 ? '' : 's'}`;
    const x = sc.expect;
    const held = !x.ok ? `the expected ${x.rule} violation occurred` : x.errors !== undefined || x.physical !== undefined ? 'the checks and the expectation hold' : 'the checks hold';
    lines.push(r.ok ? `PASS: ${counts}; ${held}` : `FAIL: ${r.violations.length} violation${r.violations.length === 1 ? '' : 's'} (${counts})`);
  }
  io.out(`${lines.join('\n')}\n`);
  return r.ok ? 0 : 1;
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
  const json = values.json === true;
  const verbose = values.verbose === true;
  let parsed: ReturnType<typeof parseAnyScenario>;
  try {
    parsed = parseAnyScenario(text);
  } catch (e) {
    if (e instanceof ScenarioError) throw new UsageError(`replay: ${file}: ${e.message}`);
    throw e;
  }
  if (parsed.kind === 'vm') return replayVm(file, parsed.scenario, io, json, verbose);
  const sc = parsed.scenario;
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
    } else if (e.type === 'command' || e.type === 'dma') {
      lines.push(`      ${e.type === 'command' ? e.entry.text : e.text}`);
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
      ? `PASS: ${r.commands} commands, ${r.registerWrites} register writes${r.dma.judged + r.dma.unjudged > 0 ? `, ${r.dma.judged + r.dma.unjudged} DMA` : ''}; ${!sc.expect.oracle ? 'the expectation holds (oracle off)' : sc.expect.commands !== undefined || sc.expect.registers !== undefined ? 'the oracle and the expectation hold' : 'the oracle holds'}`
      : `FAIL: ${r.violations.length} violation${r.violations.length === 1 ? '' : 's'} (${r.commands} commands, ${r.registerWrites} register writes)`);
  }
  flush();
  return r.ok ? 0 : 1;
}
