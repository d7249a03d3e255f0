/**
 * The virtualization-path scenario file, format `smmu-sim-vm-fuzz/1` (docs/scenarios.md, "The
 * virtualization paths"): one list of commands that guest A issues on a VM path (trap,
 * kernel-queue, vcmdq) beside bystander B, as vm-harness.ts runs it. The fuzzer saves one for
 * every failure it shrinks (vmFailureFile); people write them as regression tests of a path, with
 * an `expect` block naming the command errors the guest must see and the physical commands the
 * SMMU must read.
 *
 * Parsing is strict, as for ring scenarios (scenario.ts): an unknown key, a bad command or a
 * topology the harness cannot build is a ScenarioError naming the key (`commands[2]: bad hex
 * command: …`, `path: 'trop' is not a virtualization path (trap, kernel-queue, vcmdq)`).
 */

import type { SmmuFeatures } from '../spec/features.ts';
import type { TraceEntry } from '../system/system.ts';
import type { VmPath } from '../system/vms.ts';
import { fail, hex, isObject, NUM_RE, onlyKeys, parseCommand, ScenarioError, strOf, type Json } from './scenario.ts';
import {
  VM_SCENARIO_FORMAT,
  VM_VIOLATION_RULES,
  vmTopology,
  type VmGuestError,
  type VmHarness,
  type VmRunResult,
  type VmViolation,
  type VmViolationRule,
} from './vm-harness.ts';

export { VM_SCENARIO_FORMAT } from './vm-harness.ts';

/** The paths a file may name, in the order messages list them. */
export const VM_PATHS: readonly VmPath[] = Object.freeze(['trap', 'kernel-queue', 'vcmdq']);

/**
 * At most this many commands. A guest error's position in the list is read from its queue pointer
 * relative to the guest's PROD before the issue, modulo the pointer range (index and wrap, twice
 * the entries, §3.5.1): a list within one queue of the guest driver (2^8 entries on both the
 * guest's SMMU command queue and its LVCMDQ) keeps that unambiguous.
 */
export const VM_MAX_COMMANDS = 256;

/** An expected guest command error: its position in `commands` (optional) and its name. */
export interface ExpectedGuestError {
  readonly index?: number;
  readonly name: string;
}

/** An expected physical command: the queue it was read from, its decoded name, its outcome. */
export interface ExpectedPhysical {
  /** 'CMDQ', 'ECMDQ<n>' or 'VCMDQ<n>', as the trace names them. */
  readonly queue?: string;
  readonly name?: string;
  /** 'consumed' or a CERROR name (a VCMDQ's CERROR_ILL_OPCODE, CERROR_ILL_ACCESS …). */
  readonly outcome?: string;
}

export interface VmExpectation {
  /** Every command error the guest sees, in order. */
  readonly errors?: readonly ExpectedGuestError[];
  /** Every command the SMMU reads during the guest's issue, in order. */
  readonly physical?: readonly ExpectedPhysical[];
  /** false: the run must break rule `rule` (and no other); default true: it must hold. */
  readonly ok: boolean;
  readonly rule?: VmViolationRule;
}

export interface VmScenario {
  readonly format: typeof VM_SCENARIO_FORMAT;
  readonly name?: string;
  readonly description?: string;
  readonly path: VmPath;
  /** Guest A's commands, four u32 words each (word 0 = bits [31:0]). */
  readonly commands: readonly (readonly number[])[];
  readonly expect: VmExpectation;
  /** A model bug not fixed yet: the rule the file still breaks (the test suite checks it does). */
  readonly knownFailure?: { readonly rule: VmViolationRule; readonly note?: string };
  /** Written by the fuzzer (seed, violation, shrinks). Kept as is. */
  readonly found?: unknown;
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

/** A non-negative safe integer from a number or a "0x…"/"0b…"/decimal string. */
function numOf(v: unknown, where: string): number {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) fail(where, `${v} is not a non-negative integer`);
    return v;
  }
  if (typeof v === 'string' && NUM_RE.test(v.trim())) {
    const n = Number(BigInt(v.trim().replace(/_/g, '')));
    if (!Number.isSafeInteger(n)) fail(where, `'${v}' is too large`);
    return n;
  }
  return fail(where, `expected a number or a "0x…" string, not ${JSON.stringify(v)}`);
}

/** The harness's topology in one sentence (for messages and replay's header). */
export function vmTopologyText(): string {
  const t = vmTopology();
  const devs = (ds: readonly { vsid: number; psid: number }[]) =>
    `vSID${ds.length > 1 ? 's' : ''} ${ds.map((d) => d.vsid).join(', ')} on StreamID${ds.length > 1 ? 's' : ''} ${ds.map((d) => hex(d.psid)).join(', ')}`;
  return `A: ${devs(t.A.devices)}; B: ${devs(t.B.devices)}, IOVA ${hex(t.B.mapped.iova)} mapped (${t.B.mapped.bytes} bytes, ASID ${t.B.mapped.asid})`;
}

function notTheTopology(where: string, what: string): never {
  return fail(where, `${what}: the harness runs one fixed topology (${vmTopologyText()}) and cannot build another; leave 'vms' out or give it as the fuzzer saves it`);
}

/** `vms`, when present, must describe the harness's topology exactly: same keys, lists, values. */
function checkTopology(v: unknown, want: unknown, where: string): void {
  if (typeof want === 'number') {
    const n = numOf(v, where);
    if (n !== want) notTheTopology(where, `${hex(n)} where the harness has ${hex(want)}`);
    return;
  }
  if (Array.isArray(want)) {
    if (!Array.isArray(v)) fail(where, `expected a list, not ${JSON.stringify(v)}`);
    if (v.length !== want.length) notTheTopology(where, `${v.length} entr${v.length === 1 ? 'y' : 'ies'} where the harness has ${want.length}`);
    want.forEach((w, i) => checkTopology(v[i], w, `${where}[${i}]`));
    return;
  }
  const keys = Object.keys(want as Json);
  if (!isObject(v)) fail(where, `expected an object with ${keys.join(', ')}`);
  onlyKeys(v, where, keys);
  for (const k of keys) {
    if (v[k] === undefined) notTheTopology(where, `missing key '${k}'`);
    checkTopology(v[k], (want as Json)[k], `${where}.${k}`);
  }
}

function pathOf(v: unknown): VmPath {
  if (v === undefined) fail('', `missing key 'path' (${VM_PATHS.join(', ')})`);
  const p = strOf(v, 'path');
  if (!(VM_PATHS as readonly string[]).includes(p)) fail('path', `'${p}' is not a virtualization path (${VM_PATHS.join(', ')})`);
  return p as VmPath;
}

function ruleOf(v: unknown, where: string): VmViolationRule {
  const r = strOf(v, where);
  if (!(VM_VIOLATION_RULES as readonly string[]).includes(r)) fail(where, `'${r}' is not a rule of the virtualization paths (${VM_VIOLATION_RULES.join(', ')})`);
  return r as VmViolationRule;
}

const OUTCOME_RE = /^(consumed|CERROR_[A-Z_]+)$/;
const ERROR_RE = /^CERROR_[A-Z_]+$/;
const PHYS_QUEUE_RE = /^(cmdq|ecmdq\d+|vcmdq\d+)$/i;

function parseExpect(v: unknown, commands: number): VmExpectation {
  const where = 'expect';
  if (v === undefined) return { ok: true };
  if (!isObject(v)) fail(where, 'expected an object');
  onlyKeys(v, where, ['errors', 'physical', 'ok', 'rule']);
  let ok = true;
  if (v.ok !== undefined) {
    if (typeof v.ok !== 'boolean') fail(`${where}.ok`, `expected true or false, not ${JSON.stringify(v.ok)}`);
    ok = v.ok;
  }
  if (!ok && v.rule === undefined) fail(where, `"ok": false needs 'rule': the violation the run must show (${VM_VIOLATION_RULES.join(', ')})`);
  if (ok && v.rule !== undefined) fail(`${where}.rule`, `only with "ok": false (the rule the run must break)`);
  const rule = v.rule === undefined ? undefined : ruleOf(v.rule, `${where}.rule`);
  let errors: ExpectedGuestError[] | undefined;
  if (v.errors !== undefined) {
    if (!Array.isArray(v.errors)) fail(`${where}.errors`, 'expected a list of {"index": …, "name": …}');
    errors = v.errors.map((e, i) => {
      const w = `${where}.errors[${i}]`;
      if (!isObject(e)) fail(w, 'expected {"index": …, "name": …}');
      onlyKeys(e, w, ['index', 'name']);
      if (e.name === undefined) fail(w, "missing key 'name'");
      const name = strOf(e.name, `${w}.name`);
      if (!ERROR_RE.test(name)) fail(`${w}.name`, `'${name}' is not a CERROR name`);
      let index: number | undefined;
      if (e.index !== undefined) {
        index = numOf(e.index, `${w}.index`);
        // The issue's own CMD_SYNC follows the list: position `commands`.
        if (index > commands) fail(`${w}.index`, `${index} is beyond the ${commands} commands and the issue's CMD_SYNC (index ${commands})`);
      }
      return { ...(index !== undefined ? { index } : {}), name };
    });
  }
  let physical: ExpectedPhysical[] | undefined;
  if (v.physical !== undefined) {
    if (!Array.isArray(v.physical)) fail(`${where}.physical`, 'expected a list of {"queue": …, "name": …, "outcome": …}');
    physical = v.physical.map((c, i) => {
      const w = `${where}.physical[${i}]`;
      if (!isObject(c)) fail(w, 'expected {"queue": …, "name": …, "outcome": …}');
      onlyKeys(c, w, ['queue', 'name', 'outcome']);
      let queue: string | undefined;
      if (c.queue !== undefined) {
        queue = strOf(c.queue, `${w}.queue`).trim();
        if (!PHYS_QUEUE_RE.test(queue)) fail(`${w}.queue`, `'${queue}' is not a physical queue (CMDQ, ECMDQ<n>, VCMDQ<n>)`);
        queue = queue.toUpperCase();
      }
      let outcome: string | undefined;
      if (c.outcome !== undefined) {
        outcome = strOf(c.outcome, `${w}.outcome`);
        if (!OUTCOME_RE.test(outcome)) fail(`${w}.outcome`, `'${outcome}' is not 'consumed' or a CERROR name`);
      }
      return {
        ...(queue !== undefined ? { queue } : {}),
        ...(c.name !== undefined ? { name: strOf(c.name, `${w}.name`) } : {}),
        ...(outcome !== undefined ? { outcome } : {}),
      };
    });
  }
  return { ok, ...(rule !== undefined ? { rule } : {}), ...(errors !== undefined ? { errors } : {}), ...(physical !== undefined ? { physical } : {}) };
}

const TOP_KEYS = ['format', 'name', 'description', 'path', 'vms', 'commands', 'expect', 'found', 'known_failure'] as const;

/** Parse a VM-path scenario from its JSON value. Throws a ScenarioError naming the first problem. */
export function parseVmScenario(json: unknown): VmScenario {
  if (!isObject(json)) fail('', 'a scenario is a JSON object');
  onlyKeys(json, '', TOP_KEYS);
  if (json.format === undefined) fail('', `missing key 'format' (expected "${VM_SCENARIO_FORMAT}")`);
  if (json.format !== VM_SCENARIO_FORMAT) fail('format', `'${String(json.format)}' is not a format this version reads (expected "${VM_SCENARIO_FORMAT}")`);
  const path = pathOf(json.path);
  if (json.vms !== undefined) checkTopology(json.vms, vmTopology(), 'vms');
  if (json.commands === undefined) fail('', "missing key 'commands'");
  if (!Array.isArray(json.commands)) fail('commands', 'expected a list of commands: 32 hex digits, {"name": …, fields…} or 4 words each');
  if (json.commands.length > VM_MAX_COMMANDS) fail('commands', `${json.commands.length} commands; at most ${VM_MAX_COMMANDS} (one guest queue's worth)`);
  const commands = json.commands.map((c, i) => parseCommand(c, `commands[${i}]`));
  const expect = parseExpect(json.expect, commands.length);
  let knownFailure: VmScenario['knownFailure'];
  if (json.known_failure !== undefined) {
    const k = json.known_failure;
    if (!isObject(k)) fail('known_failure', 'expected {"rule": …, "note": …}');
    onlyKeys(k, 'known_failure', ['rule', 'note']);
    if (k.rule === undefined) fail('known_failure', "missing key 'rule'");
    knownFailure = { rule: ruleOf(k.rule, 'known_failure.rule'), ...(k.note !== undefined ? { note: strOf(k.note, 'known_failure.note') } : {}) };
  }
  return {
    format: VM_SCENARIO_FORMAT,
    ...(json.name !== undefined ? { name: strOf(json.name, 'name') } : {}),
    ...(json.description !== undefined ? { description: strOf(json.description, 'description') } : {}),
    path,
    commands,
    expect,
    ...(knownFailure !== undefined ? { knownFailure } : {}),
    ...(json.found !== undefined ? { found: json.found } : {}),
  };
}

/** Parse VM-path scenario text (JSON). Throws a ScenarioError, also for JSON syntax errors. */
export function parseVmScenarioText(text: string): VmScenario {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ScenarioError(`not valid JSON: ${(e as Error).message}`);
  }
  return parseVmScenario(json);
}

// ---------------------------------------------------------------------------------------------
// Replay
// ---------------------------------------------------------------------------------------------

/** A violation of a replay: one of the harness's rules, or the file's expectation. */
export interface VmReplayViolation {
  readonly rule: VmViolationRule | 'expect-mismatch';
  readonly message: string;
  /** The spec section the check rests on ('' for the expectation). */
  readonly section: string;
}

export type VmReplayEvent =
  | { readonly type: 'setup'; readonly path: VmPath; readonly features: SmmuFeatures; readonly vmids: { readonly A: number; readonly B: number } }
  /** A guest command, before the issue. */
  | { readonly type: 'guest'; readonly index: number; readonly words: readonly number[] }
  /** A command the SMMU read during the issue (k-th of the run). */
  | { readonly type: 'physical'; readonly index: number; readonly entry: TraceEntry }
  | { readonly type: 'guest-error'; readonly error: VmGuestError }
  | { readonly type: 'violation'; readonly violation: VmReplayViolation; readonly expected: boolean };

export interface VmReplayResult {
  /** The checks hold and so does the expectation (an `"ok": false` file: its rule broke, nothing else). */
  readonly ok: boolean;
  /** What made the replay fail. */
  readonly violations: readonly VmReplayViolation[];
  /** `"ok": false` files: the violations of the expected rule. */
  readonly expected: readonly VmViolation[];
  readonly run: VmRunResult;
}

function physicalText(e: ExpectedPhysical): string {
  return `${e.queue ?? '(any queue)'} ${e.name ?? '(any)'} -> ${e.outcome ?? '(any)'}`;
}

function errorText(e: { index?: number; name: string }): string {
  return `${e.name}${e.index !== undefined ? ` at index ${e.index}` : ''}`;
}

/** The first difference between the expected and the seen lists, as one expect-mismatch. */
function compareLists<E, S>(what: string, want: readonly E[], seen: readonly S[], matches: (w: E, s: S) => boolean, wantText: (w: E) => string, seenText: (s: S) => string): VmReplayViolation | undefined {
  const n = Math.max(want.length, seen.length);
  for (let i = 0; i < n; i++) {
    const w = want[i];
    const s = seen[i];
    if (w !== undefined && s !== undefined && matches(w, s)) continue;
    const count = `${want.length} expected, ${seen.length} seen`;
    const message = w === undefined
      ? `${what} ${i}: none more expected, ${seenText(s!)} (${count})`
      : s === undefined
        ? `${what} ${i}: expected ${wantText(w)}, none more seen (${count})`
        : `${what} ${i}: expected ${wantText(w)}, ${seenText(s)} (${count})`;
    return { rule: 'expect-mismatch', message, section: '' };
  }
  return undefined;
}

/**
 * Run one scenario on `harness` (whose path must be the file's): guest A issues the commands,
 * the harness checks isolation and the error contract, then the file's expectation is compared.
 * Events report the guest's commands, every physical command the SMMU read during the issue,
 * each guest error and each violation, in that order.
 */
export async function replayVmScenario(sc: VmScenario, harness: VmHarness, opts: { onEvent?: (e: VmReplayEvent) => void } = {}): Promise<VmReplayResult> {
  if (harness.path !== sc.path) throw new Error(`replayVmScenario: the scenario's path is '${sc.path}', the harness runs '${harness.path}'`);
  const emit = opts.onEvent ?? (() => undefined);
  const info = await harness.guestInfo();
  emit({ type: 'setup', path: sc.path, features: info.features, vmids: info.vmids });
  sc.commands.forEach((words, index) => emit({ type: 'guest', index, words }));
  const run = await harness.run(sc.commands, { positions: true });
  run.trace.forEach((entry, index) => emit({ type: 'physical', index, entry }));
  for (const error of run.guestErrors) emit({ type: 'guest-error', error });

  const x = sc.expect;
  const expected = x.ok ? [] : run.violations.filter((v) => v.rule === x.rule);
  const violations: VmReplayViolation[] = run.violations.filter((v) => !expected.includes(v));
  if (!x.ok && expected.length === 0) {
    violations.push({ rule: 'expect-mismatch', message: `expected a ${x.rule} violation ("ok": false), ${run.ok ? 'the run held' : `the run broke ${[...new Set(run.violations.map((v) => v.rule))].join(', ')} instead`}`, section: '' });
  }
  if (x.errors !== undefined) {
    const m = compareLists(
      'guest error', x.errors, run.guestErrors,
      (w, s) => w.name === s.name && (w.index === undefined || w.index === s.index),
      errorText,
      (s) => `the guest saw ${errorText(s)}`,
    );
    if (m !== undefined) violations.push(m);
  }
  if (x.physical !== undefined) {
    const name = (e: TraceEntry) => String(e.json.name);
    const m = compareLists(
      'physical command', x.physical, run.trace,
      (w, s) => (w.queue === undefined || w.queue === s.queue) && (w.name === undefined || w.name === name(s)) && (w.outcome === undefined || w.outcome === s.outcome),
      physicalText,
      (s) => `the SMMU read ${s.queue} ${name(s)} -> ${s.outcome}`,
    );
    if (m !== undefined) violations.push(m);
  }
  for (const v of expected) emit({ type: 'violation', violation: v, expected: true });
  for (const v of violations) emit({ type: 'violation', violation: v, expected: false });
  return { ok: violations.length === 0, violations, expected, run };
}
