/**
 * The scenario file: one replayable run of the model, written by the fuzzer for every failure it
 * shrinks and by people for their own ring and doorbell tests (docs/scenarios.md).
 *
 * A scenario is JSON with a `format` key. It names the SMMU (a `--features` string), where RAM and
 * the queues are, the steps software takes (register writes, commands written at queue positions,
 * doorbells, waits, injected events, Linux-style recovery) and what must come of them. Every step
 * is checked against the reference model of oracle.ts as it runs; `expect` adds explicit outcomes.
 *
 * Parsing is strict: an unknown key, step kind, register or a bad hex string is a ScenarioError
 * that names the place (`steps[3].reg: no register named 'SMMU_CMDQ_PRD'`).
 */

import { encodeCommandWords, parseCommandHex, type CommandInput } from '../spec/command-codec.ts';
import { encodeEvent, EVENT_WORDS, type EventSpec } from '../spec/events.ts';
import { FULL_FEATURES, parseFeatures, type SmmuFeatures } from '../spec/features.ts';
import { ecmdqCount } from '../spec/features.ts';
import { ecmdqRegisterOffset, findRegister, smmuRegWindow, type RegisterSpec } from '../spec/registers.ts';
import { COMMAND_WORDS } from '../spec/commands.ts';
import { DEFAULT_LAYOUT, defaultQueueBase, type QueueKind } from './layout.ts';
import { STREAM_KINDS, World, WORLD_LAYOUT, type StreamKind, type WorldSpec, type WorldStreamSpec } from './world.ts';

/** The value of every scenario's `format` key; bumped when a file of the old format would mean something else. */
export const SCENARIO_FORMAT = 'smmu-sim-scenario/1';

/** A problem with a scenario file: one line naming the place and the problem. */
export class ScenarioError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ScenarioError';
  }
}

// ---------------------------------------------------------------------------------------------
// Types (the parsed form: numbers resolved, registers resolved to offsets)
// ---------------------------------------------------------------------------------------------

/** 'cmdq' or 'ecmdq<n>'. */
export type QueueName = string;

export interface QueueConfig {
  /** log2 of the entries software configures (BASE.LOG2SIZE). */
  readonly log2: number;
  /** Physical address of the queue (BASE.ADDR). */
  readonly base: number;
}

export interface EcmdqConfig extends QueueConfig {
  readonly n: number;
}

export interface ScenarioConfig {
  /** A `--features` list ('' for every feature). */
  readonly features: string;
  /** Wait policy for the device ('hybrid' unless given). */
  readonly policy?: string;
  readonly ram: { readonly base: number; readonly bytes: number };
  /** Bring the queues up (BASE, PROD/CONS, enable) before the steps. */
  readonly setup: boolean;
  readonly cmdq: QueueConfig;
  readonly eventq: QueueConfig;
  readonly ecmdq: readonly EcmdqConfig[];
  /** A translation world (src/fuzz/world.ts): Stream table, CDs and page tables in RAM. */
  readonly translation?: WorldSpec;
}

/** A register named in a step: resolved to its offset in the SMMU window. */
export interface RegRef {
  /** As written in the file. */
  readonly text: string;
  readonly offset: number;
  /** 64 for a 64-bit register written whole. */
  readonly width: 32 | 64;
  /** The table row, when the offset is a register (ECMDQ rows carry their n). */
  readonly spec?: RegisterSpec;
  readonly ecmdq?: number;
}

export type Step =
  | {
      readonly kind: 'write';
      readonly reg: RegRef;
      /** Absolute value (bigint for 64-bit registers). */
      readonly value?: number | bigint;
      /** Bits to set, clear or toggle in the register's current value (32-bit registers). */
      readonly set?: number;
      readonly clear?: number;
      readonly toggle?: number;
      /** Copy the current value of another register. */
      readonly from?: RegRef;
      readonly nowait?: boolean;
      readonly note?: string;
    }
  | {
      readonly kind: 'commands';
      readonly queue: QueueName;
      readonly cmds: readonly (readonly number[])[];
      /** Absolute queue pointer (index and wrap) of the first command; the cursor moves past the last. */
      readonly at?: number;
      /** Write `back` entries behind the cursor without moving it (an entry rewritten after its doorbell). */
      readonly back?: number;
      readonly note?: string;
    }
  | {
      readonly kind: 'doorbell';
      readonly queue: QueueName;
      /** Absolute PROD.WR value; default: the cursor (after `advance`). */
      readonly prod?: number;
      /** Move the cursor by this many entries first (may be negative or span several laps). */
      readonly advance?: number;
      /** ECMDQ only: PROD.EN and PROD.ERRACK (default: 1 and software's last ERRACK). */
      readonly en?: number;
      readonly errack?: number;
      readonly nowait?: boolean;
      readonly note?: string;
    }
  | {
      readonly kind: 'wait';
      readonly reg: RegRef;
      readonly mask: number;
      readonly equals?: number;
      readonly notEquals?: number;
      readonly timeoutMs?: number;
      readonly note?: string;
    }
  | { readonly kind: 'inject'; readonly record: readonly number[]; readonly note?: string }
  | { readonly kind: 'recover'; readonly queue: QueueName | 'all'; readonly note?: string }
  | { readonly kind: 'poke'; readonly pa: number; readonly words: readonly number[]; readonly note?: string }
  | { readonly kind: 'settle'; readonly note?: string }
  | { readonly kind: 'dma'; readonly sid: number; readonly iova: number; readonly write: boolean; readonly expect?: DmaExpect; readonly note?: string }
  | { readonly kind: 'map'; readonly sid: number; readonly iova: number; readonly pa: number; readonly note?: string }
  | { readonly kind: 'unmap'; readonly sid: number; readonly iova: number; readonly note?: string }
  | { readonly kind: 'ste'; readonly sid: number; readonly config?: StreamKind; readonly vmid?: number; readonly note?: string }
  | { readonly kind: 'cd'; readonly sid: number; readonly asid: number; readonly note?: string };

/** What a `dma` step may state about its answer, besides the oracle's prediction. */
export interface DmaExpect {
  readonly status?: 'ok' | 'abort' | 'raz-wi';
  readonly pa?: number;
  readonly tlb?: 'hit' | 'miss';
  /** An event name, or 'none'. */
  readonly event?: string;
}

export type StepKind = Step['kind'];
export const STEP_KINDS: readonly StepKind[] = ['write', 'commands', 'doorbell', 'wait', 'inject', 'recover', 'poke', 'settle', 'dma', 'map', 'unmap', 'ste', 'cd'];
/** Steps that need `config.translation`. */
const WORLD_STEPS: readonly StepKind[] = ['dma', 'map', 'unmap', 'ste', 'cd'];

export interface ExpectedCommand {
  readonly queue: string;
  readonly ptr?: number;
  readonly name?: string;
  readonly outcome: string;
}

export interface ExpectedRegister {
  readonly reg: RegRef;
  readonly value: bigint;
  readonly mask: bigint;
}

export interface Expectation {
  /** Per queue, in order: every command the device reads, and what became of it. */
  readonly commands?: readonly ExpectedCommand[];
  readonly registers?: readonly ExpectedRegister[];
  /** Run the reference model's checks (default true). */
  readonly oracle: boolean;
}

export interface Scenario {
  readonly format: string;
  readonly name?: string;
  readonly description?: string;
  readonly config: ScenarioConfig;
  readonly features: SmmuFeatures;
  readonly steps: readonly Step[];
  readonly expect: Expectation;
  /** A saved failure the model still has: the oracle rule it breaks (the test suite checks it still does). */
  readonly knownFailure?: { readonly rule: string; readonly note?: string };
  /** Free-form provenance written by the fuzzer (seed, path, violation). Kept as is. */
  readonly found?: unknown;
  /** The JSON the scenario was parsed from (for re-serialisation of unknown-free files). */
  readonly source?: unknown;
}

// ---------------------------------------------------------------------------------------------
// Parsing helpers
// ---------------------------------------------------------------------------------------------

/** A JSON object, as the parsers of this file and vm-scenario.ts take them apart. */
export type Json = Record<string, unknown>;

export function fail(where: string, what: string): never {
  throw new ScenarioError(where === '' ? what : `${where}: ${what}`);
}

export function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function onlyKeys(o: Json, where: string, allowed: readonly string[]): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) fail(where, `unknown key '${k}' (allowed: ${allowed.join(', ')})`);
  }
}

/** How scenario files write numbers: 0x…, 0b… or decimal, `_` between digits allowed. */
export const NUM_RE = /^(0x[0-9a-f_]+|0b[01_]+|[0-9_]+)$/i;

/** A non-negative integer from a number or a "0x…"/"0b…"/decimal string, as a bigint. */
function bigOf(v: unknown, where: string): bigint {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) fail(where, `${v} is not a non-negative integer`);
    return BigInt(v);
  }
  if (typeof v === 'string') {
    const t = v.trim();
    if (!NUM_RE.test(t)) fail(where, `'${v}' is not a number (0x…, 0b… or decimal)`);
    return BigInt(t.replace(/_/g, ''));
  }
  return fail(where, `expected a number or a "0x…" string, not ${JSON.stringify(v)}`);
}

function u32Of(v: unknown, where: string): number {
  const b = bigOf(v, where);
  if (b > 0xffff_ffffn) fail(where, `0x${b.toString(16)} does not fit in 32 bits`);
  return Number(b);
}

function intOf(v: unknown, where: string, lo: number, hi: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) fail(where, `expected an integer in ${lo}..${hi}, not ${JSON.stringify(v)}`);
  return v;
}

function addrOf(v: unknown, where: string): number {
  const b = bigOf(v, where);
  if (b >= 1n << 56n) fail(where, `address 0x${b.toString(16)} is wider than 56 bits`);
  return Number(b);
}

export function strOf(v: unknown, where: string): string {
  if (typeof v !== 'string') fail(where, `expected a string, not ${JSON.stringify(v)}`);
  return v;
}

function boolOf(v: unknown, where: string): boolean {
  if (typeof v !== 'boolean') fail(where, `expected true or false, not ${JSON.stringify(v)}`);
  return v;
}

const ECMDQ_REG_RE = /^(?:SMMU_)?ECMDQ_(BASE|PROD|CONS)\s*<?\s*(\d+)\s*>?$/i;

/** Resolve a register name or offset for the given features. */
export function resolveReg(v: unknown, features: SmmuFeatures, where: string): RegRef {
  const window = smmuRegWindow(features);
  if (typeof v === 'number' || (typeof v === 'string' && NUM_RE.test(v.trim()))) {
    const off = Number(bigOf(v, where));
    if (off % 4 !== 0) fail(where, `register offset 0x${off.toString(16)} is not 4-byte aligned`);
    if (off >= window) fail(where, `register offset 0x${off.toString(16)} is outside the SMMU window (0x${window.toString(16)} bytes)`);
    const text = typeof v === 'number' ? `0x${off.toString(16)}` : v;
    const e = ecmdqAt(features, off);
    if (e !== undefined) return { text, offset: off, width: 32, ...e };
    const spec = findRegister(off);
    if (spec !== undefined && spec.page !== 'secure' && spec.offset === off) return { text, offset: off, width: spec.width, spec };
    return { text, offset: off, width: 32 };
  }
  const name = strOf(v, where).trim();
  const m = ECMDQ_REG_RE.exec(name);
  if (m !== null) {
    const n = Number(m[2]);
    const count = ecmdqCount(features);
    if (n >= count) fail(where, `${name}: ECMDQ ${n} does not exist (the features give ${count})`);
    const which = m[1]!.toUpperCase() as 'BASE' | 'PROD' | 'CONS';
    const off = ecmdqRegisterOffset(features, n, which);
    const e = ecmdqAt(features, off)!;
    return { text: name, offset: off, width: which === 'BASE' ? 64 : 32, ...e };
  }
  const spec = findRegister(name);
  if (spec === undefined) fail(where, `no register named '${name}'`);
  if (spec.page === 'ecmdq') fail(where, `${name} needs its queue number, e.g. ${spec.name}0`);
  return { text: name, offset: spec.offset, width: spec.width, spec };
}

function ecmdqAt(features: SmmuFeatures, off: number): { spec: RegisterSpec; ecmdq: number } | undefined {
  if (!features.ecmdq) return undefined;
  for (let n = 0; n < ecmdqCount(features); n++) {
    for (const which of ['BASE', 'PROD', 'CONS'] as const) {
      const o = ecmdqRegisterOffset(features, n, which);
      if (o === off) return { spec: findRegister(`SMMU_ECMDQ_${which}`)!, ecmdq: n };
    }
  }
  return undefined;
}

/** A command as 4 words: hex (memory order or 0xDW0:0xDW1), encode-style fields, or 4 numbers. */
export function parseCommand(v: unknown, where: string): number[] {
  if (typeof v === 'string') {
    try {
      return [...parseCommandHex(v)];
    } catch (e) {
      return fail(where, `bad hex command: ${(e as Error).message}`);
    }
  }
  if (Array.isArray(v)) {
    if (v.length !== COMMAND_WORDS) fail(where, `a command given as words has ${COMMAND_WORDS} of them, not ${v.length}`);
    return v.map((x, i) => u32Of(x, `${where}[${i}]`));
  }
  if (isObject(v)) {
    try {
      return [...encodeCommandWords(v as CommandInput)];
    } catch (e) {
      return fail(where, (e as Error).message);
    }
  }
  return fail(where, `expected a command: 32 hex digits, {"name": …, fields…} or 4 words, not ${JSON.stringify(v)}`);
}

/** An event record as 8 words: 64 hex digits (memory order), {"name": …, fields…} or 8 words. */
export function parseEventRecord(v: unknown, where: string): number[] {
  if (typeof v === 'string') {
    const t = v.replace(/\s+/g, '');
    if (!/^[0-9a-f]*$/i.test(t)) fail(where, `bad hex event record '${v}': only hex digits (memory order, byte 0 first) are allowed`);
    if (t.length !== EVENT_WORDS * 8) fail(where, `bad hex event record: expected ${EVENT_WORDS * 8} hex digits, got ${t.length}`);
    const out: number[] = [];
    for (let w = 0; w < EVENT_WORDS; w++) {
      let x = 0;
      for (let b = 3; b >= 0; b--) x = x * 256 + parseInt(t.slice(8 * w + 2 * b, 8 * w + 2 * b + 2), 16);
      out.push(x >>> 0);
    }
    return out;
  }
  if (Array.isArray(v)) {
    if (v.length !== EVENT_WORDS) fail(where, `an event record given as words has ${EVENT_WORDS} of them, not ${v.length}`);
    return v.map((x, i) => u32Of(x, `${where}[${i}]`));
  }
  if (isObject(v)) {
    // Field values as the command fields take them: numbers or "0x…" strings.
    const spec: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      if (k === 'name') spec[k] = strOf(x, `${where}.name`);
      else if (k === 'id') spec[k] = intOf(x, `${where}.id`, 0, 255);
      else spec[k] = bigOf(x, `${where}.${k}`);
    }
    try {
      return [...encodeEvent(spec as EventSpec)];
    } catch (e) {
      return fail(where, (e as Error).message);
    }
  }
  return fail(where, `expected an event record: 64 hex digits, {"name": …, fields…} or 8 words, not ${JSON.stringify(v)}`);
}

function queueOf(v: unknown, features: SmmuFeatures, where: string, allowAll = false): QueueName {
  const q = strOf(v, where).trim().toLowerCase();
  if (q === 'cmdq' || (allowAll && q === 'all')) return q;
  const m = /^ecmdq(\d+)$/.exec(q);
  if (m !== null) {
    const n = Number(m[1]);
    if (n >= ecmdqCount(features)) fail(where, `queue '${v as string}': ECMDQ ${n} does not exist (the features give ${ecmdqCount(features)})`);
    return q;
  }
  return fail(where, `unknown queue '${v as string}' (queues: cmdq, ecmdq<n>${allowAll ? ', all' : ''})`);
}

// ---------------------------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------------------------

const CONFIG_KEYS = ['features', 'policy', 'ram', 'setup', 'queues', 'translation'] as const;
const QUEUE_KEYS = ['cmdq', 'eventq', 'ecmdq'] as const;

function parseQueue(v: unknown, where: string, kind: QueueKind, ram: { base: number; bytes: number }, maxLog2: number, n = 0): QueueConfig {
  if (v === undefined) return { log2: DEFAULT_LAYOUT.log2[kind], base: defaultQueueBase(kind, ram.base, n) };
  if (!isObject(v)) fail(where, `expected {"log2": …, "base": …}`);
  onlyKeys(v, where, kind === 'ecmdq' ? ['n', 'log2', 'base'] : ['log2', 'base']);
  const log2 = v.log2 === undefined ? DEFAULT_LAYOUT.log2[kind] : intOf(v.log2, `${where}.log2`, 0, 31);
  if (log2 > maxLog2 && v.base === undefined) fail(`${where}.log2`, `${log2} is above the queue's default room (2^${maxLog2} entries); give a base`);
  const base = v.base === undefined ? defaultQueueBase(kind, ram.base, n) : addrOf(v.base, `${where}.base`);
  return { log2, base };
}

function parseConfig(v: unknown): { config: ScenarioConfig; features: SmmuFeatures } {
  const where = 'config';
  if (v === undefined) v = {};
  if (!isObject(v)) fail(where, 'expected an object');
  onlyKeys(v, where, CONFIG_KEYS);
  const featuresText = v.features === undefined ? '' : strOf(v.features, `${where}.features`);
  let features: SmmuFeatures;
  try {
    features = featuresText.trim() === '' ? FULL_FEATURES : parseFeatures(featuresText);
  } catch (e) {
    return fail(`${where}.features`, (e as Error).message);
  }
  const policy = v.policy === undefined ? undefined : strOf(v.policy, `${where}.policy`);
  let ram: { base: number; bytes: number } = { base: DEFAULT_LAYOUT.ramBase, bytes: DEFAULT_LAYOUT.ramBytes };
  if (v.ram !== undefined) {
    if (!isObject(v.ram)) fail(`${where}.ram`, 'expected {"base": …, "bytes": …}');
    onlyKeys(v.ram, `${where}.ram`, ['base', 'bytes']);
    const base = v.ram.base === undefined ? ram.base : addrOf(v.ram.base, `${where}.ram.base`);
    const bytes = v.ram.bytes === undefined ? ram.bytes : addrOf(v.ram.bytes, `${where}.ram.bytes`);
    if (base % 0x10000 !== 0 || bytes % 0x10000 !== 0 || bytes === 0) fail(`${where}.ram`, 'base and bytes must be non-zero multiples of 64 KiB');
    if (bytes < DEFAULT_LAYOUT.minRamBytes) fail(`${where}.ram.bytes`, `at least 0x${DEFAULT_LAYOUT.minRamBytes.toString(16)} bytes: the default queue layout needs them`);
    ram = { base, bytes };
  }
  const setup = v.setup === undefined ? true : boolOf(v.setup, `${where}.setup`);
  const qs = v.queues === undefined ? {} : v.queues;
  if (!isObject(qs)) fail(`${where}.queues`, 'expected an object');
  onlyKeys(qs, `${where}.queues`, QUEUE_KEYS);
  const cmdq = parseQueue(qs.cmdq, `${where}.queues.cmdq`, 'cmdq', ram, DEFAULT_LAYOUT.maxLog2.cmdq);
  const eventq = parseQueue(qs.eventq, `${where}.queues.eventq`, 'eventq', ram, DEFAULT_LAYOUT.maxLog2.eventq);
  const ecmdq: EcmdqConfig[] = [];
  if (qs.ecmdq !== undefined) {
    if (!Array.isArray(qs.ecmdq)) fail(`${where}.queues.ecmdq`, 'expected a list of {"n": …, "log2": …}');
    const count = ecmdqCount(features);
    qs.ecmdq.forEach((e, i) => {
      const w = `${where}.queues.ecmdq[${i}]`;
      if (!isObject(e)) fail(w, 'expected {"n": …, "log2": …}');
      const n = intOf(e.n, `${w}.n`, 0, 65535);
      if (n >= count) fail(`${w}.n`, `ECMDQ ${n} does not exist (the features give ${count})`);
      if (ecmdq.some((x) => x.n === n)) fail(`${w}.n`, `ECMDQ ${n} is listed twice`);
      if (e.base === undefined && n >= DEFAULT_LAYOUT.ecmdqSlots) fail(`${w}`, `ECMDQ ${n} has no default base; give one`);
      ecmdq.push({ n, ...parseQueue(e, w, 'ecmdq', ram, DEFAULT_LAYOUT.maxLog2.ecmdq, n) });
    });
  }
  const translation = v.translation === undefined ? undefined : parseWorld(v.translation, `${where}.translation`, features, ram.base);
  return {
    config: { features: featuresText, ...(policy !== undefined ? { policy } : {}), ram, setup, cmdq, eventq, ecmdq, ...(translation !== undefined ? { translation } : {}) },
    features,
  };
}

function streamKindOf(v: unknown, where: string): StreamKind {
  const k = strOf(v, where);
  if (!(STREAM_KINDS as readonly string[]).includes(k)) fail(where, `'${k}' is not a stream configuration (${STREAM_KINDS.join(', ')})`);
  return k as StreamKind;
}

/** `config.translation`: {"strtab": {"log2": n}, "streams": [...]}; checked by building it. */
function parseWorld(v: unknown, where: string, f: SmmuFeatures, ramBase: number): WorldSpec {
  if (!isObject(v)) fail(where, 'expected {"strtab": {"log2": …}, "streams": […]}');
  onlyKeys(v, where, ['strtab', 'streams']);
  let strtabLog2 = 6;
  if (v.strtab !== undefined) {
    if (!isObject(v.strtab)) fail(`${where}.strtab`, 'expected {"log2": …}');
    onlyKeys(v.strtab, `${where}.strtab`, ['log2']);
    if (v.strtab.log2 !== undefined) strtabLog2 = intOf(v.strtab.log2, `${where}.strtab.log2`, 0, WORLD_LAYOUT.maxStrtabLog2);
  }
  if (!Array.isArray(v.streams) || v.streams.length === 0) fail(`${where}.streams`, 'expected a non-empty list of streams');
  const streams: WorldStreamSpec[] = v.streams.map((x, i) => {
    const w = `${where}.streams[${i}]`;
    if (!isObject(x)) fail(w, 'expected {"sid": …, "config": …}');
    onlyKeys(x, w, ['sid', 'config', 'vmid', 'asid', 'record', 'pages']);
    if (x.sid === undefined) fail(w, "missing key 'sid'");
    if (x.config === undefined) fail(w, `missing key 'config' (${STREAM_KINDS.join(', ')})`);
    const pages: [number, number][] = [];
    if (x.pages !== undefined) {
      if (!Array.isArray(x.pages)) fail(`${w}.pages`, 'expected a list of {"iova": …, "pa": …, "count": …}');
      x.pages.forEach((p, j) => {
        const pw = `${w}.pages[${j}]`;
        if (!isObject(p)) fail(pw, 'expected {"iova": …, "pa": …, "count": …}');
        onlyKeys(p, pw, ['iova', 'pa', 'count']);
        if (p.iova === undefined || p.pa === undefined) fail(pw, "a page needs 'iova' and 'pa'");
        const iova = addrOf(p.iova, `${pw}.iova`);
        const pa = addrOf(p.pa, `${pw}.pa`);
        const count = p.count === undefined ? 1 : intOf(p.count, `${pw}.count`, 1, 512);
        for (let k = 0; k < count; k++) pages.push([iova + k * 0x1000, pa + k * 0x1000]);
      });
    }
    return {
      sid: u32Of(x.sid, `${w}.sid`),
      kind: streamKindOf(x.config, `${w}.config`),
      vmid: x.vmid === undefined ? 0 : u32Of(x.vmid, `${w}.vmid`),
      asid: x.asid === undefined ? 0 : u32Of(x.asid, `${w}.asid`),
      record: x.record === undefined ? true : boolOf(x.record, `${w}.record`),
      pages,
    };
  });
  const spec: WorldSpec = { strtabLog2, streams };
  try {
    new World(spec, f, ramBase).build();
  } catch (e) {
    fail(where, (e as Error).message);
  }
  return spec;
}

// ---------------------------------------------------------------------------------------------
// Steps
// ---------------------------------------------------------------------------------------------

const STEP_KEYS: Record<StepKind, readonly string[]> = {
  write: ['kind', 'reg', 'value', 'set', 'clear', 'toggle', 'from', 'nowait', 'note'],
  commands: ['kind', 'queue', 'cmds', 'cmd', 'at', 'back', 'note'],
  doorbell: ['kind', 'queue', 'prod', 'advance', 'en', 'errack', 'nowait', 'note'],
  wait: ['kind', 'reg', 'mask', 'equals', 'notEquals', 'timeoutMs', 'note'],
  inject: ['kind', 'event', 'note'],
  recover: ['kind', 'queue', 'note'],
  poke: ['kind', 'pa', 'words', 'note'],
  settle: ['kind', 'note'],
  dma: ['kind', 'sid', 'iova', 'write', 'expect', 'note'],
  map: ['kind', 'sid', 'iova', 'pa', 'note'],
  unmap: ['kind', 'sid', 'iova', 'note'],
  ste: ['kind', 'sid', 'config', 'vmid', 'note'],
  cd: ['kind', 'sid', 'asid', 'note'],
};

function noteOf(o: Json, where: string): { note?: string } {
  return o.note === undefined ? {} : { note: strOf(o.note, `${where}.note`) };
}

function parseStep(v: unknown, where: string, f: SmmuFeatures): Step {
  if (!isObject(v)) fail(where, 'expected a step object with a "kind"');
  if (v.kind === undefined) fail(where, `missing key 'kind' (kinds: ${STEP_KINDS.join(', ')})`);
  const kind = strOf(v.kind, `${where}.kind`) as StepKind;
  if (!STEP_KINDS.includes(kind)) fail(where, `unknown step kind '${kind}' (kinds: ${STEP_KINDS.join(', ')})`);
  onlyKeys(v, where, STEP_KEYS[kind]);
  const note = noteOf(v, where);
  const nowait = v.nowait === undefined ? {} : { nowait: boolOf(v.nowait, `${where}.nowait`) };
  switch (kind) {
    case 'write': {
      if (v.reg === undefined) fail(where, "missing key 'reg'");
      const reg = resolveReg(v.reg, f, `${where}.reg`);
      const given = ['value', 'set', 'clear', 'toggle', 'from'].filter((k) => v[k] !== undefined);
      if (given.length === 0) fail(where, "a write needs 'value', 'set', 'clear', 'toggle' or 'from'");
      if (v.value !== undefined && given.length > 1) fail(where, `'value' cannot be combined with ${given.filter((k) => k !== 'value').join(', ')}`);
      if (v.from !== undefined && given.length > 1) fail(where, `'from' cannot be combined with ${given.filter((k) => k !== 'from').join(', ')}`);
      const out: { -readonly [K in keyof Extract<Step, { kind: 'write' }>]?: unknown } = { kind, reg, ...nowait, ...note };
      if (v.value !== undefined) {
        const b = bigOf(v.value, `${where}.value`);
        if (reg.width === 32 && b > 0xffff_ffffn) fail(`${where}.value`, `0x${b.toString(16)} does not fit the 32-bit ${reg.text}`);
        if (b >= 1n << 64n) fail(`${where}.value`, 'does not fit in 64 bits');
        out.value = reg.width === 64 ? b : Number(b);
      }
      for (const k of ['set', 'clear', 'toggle'] as const) {
        if (v[k] === undefined) continue;
        if (reg.width !== 32) fail(where, `'${k}' works on 32-bit registers; write ${reg.text} with 'value'`);
        out[k] = u32Of(v[k], `${where}.${k}`);
      }
      if (v.from !== undefined) {
        const from = resolveReg(v.from, f, `${where}.from`);
        if (from.width !== 32 || reg.width !== 32) fail(where, "'from' copies 32-bit registers only");
        out.from = from;
      }
      return out as Step;
    }
    case 'commands': {
      if (v.queue === undefined) fail(where, "missing key 'queue'");
      const queue = queueOf(v.queue, f, `${where}.queue`);
      if ((v.cmds === undefined) === (v.cmd === undefined)) fail(where, "give exactly one of 'cmds' (a list) and 'cmd'");
      const list = v.cmd !== undefined ? [v.cmd] : v.cmds;
      if (!Array.isArray(list) || list.length === 0) fail(`${where}.cmds`, 'expected a non-empty list of commands');
      const cmds = list.map((c, i) => parseCommand(c, v.cmd !== undefined ? `${where}.cmd` : `${where}.cmds[${i}]`));
      if (v.at !== undefined && v.back !== undefined) fail(where, "'at' and 'back' cannot be combined");
      const out: Step = {
        kind,
        queue,
        cmds,
        ...(v.at !== undefined ? { at: intOf(v.at, `${where}.at`, 0, 0xfffff) } : {}),
        ...(v.back !== undefined ? { back: intOf(v.back, `${where}.back`, 1, 0xfffff) } : {}),
        ...note,
      };
      return out;
    }
    case 'doorbell': {
      if (v.queue === undefined) fail(where, "missing key 'queue'");
      const queue = queueOf(v.queue, f, `${where}.queue`);
      if (v.prod !== undefined && v.advance !== undefined) fail(where, "'prod' and 'advance' cannot be combined");
      const isE = queue !== 'cmdq';
      if (!isE && (v.en !== undefined || v.errack !== undefined)) fail(where, "'en' and 'errack' are ECMDQ PROD fields");
      if (v.advance !== undefined && (typeof v.advance !== 'number' || !Number.isInteger(v.advance) || Math.abs(v.advance) > 0xfffff)) {
        fail(`${where}.advance`, `expected an integer in -0xfffff..0xfffff, not ${JSON.stringify(v.advance)}`);
      }
      return {
        kind,
        queue,
        ...(v.prod !== undefined ? { prod: intOf(typeof v.prod === 'string' ? Number(bigOf(v.prod, `${where}.prod`)) : v.prod, `${where}.prod`, 0, 0xfffff) } : {}),
        ...(v.advance !== undefined ? { advance: v.advance as number } : {}),
        ...(v.en !== undefined ? { en: intOf(v.en, `${where}.en`, 0, 1) } : {}),
        ...(v.errack !== undefined ? { errack: intOf(v.errack, `${where}.errack`, 0, 1) } : {}),
        ...nowait,
        ...note,
      };
    }
    case 'wait': {
      if (v.reg === undefined) fail(where, "missing key 'reg'");
      const reg = resolveReg(v.reg, f, `${where}.reg`);
      if (reg.width !== 32) fail(`${where}.reg`, 'waits read 32-bit registers; name the half by offset');
      if ((v.equals === undefined) === (v.notEquals === undefined)) fail(where, "give exactly one of 'equals' and 'notEquals'");
      return {
        kind,
        reg,
        mask: v.mask === undefined ? 0xffff_ffff : u32Of(v.mask, `${where}.mask`),
        ...(v.equals !== undefined ? { equals: u32Of(v.equals, `${where}.equals`) } : {}),
        ...(v.notEquals !== undefined ? { notEquals: u32Of(v.notEquals, `${where}.notEquals`) } : {}),
        ...(v.timeoutMs !== undefined ? { timeoutMs: intOf(v.timeoutMs, `${where}.timeoutMs`, 1, 600_000) } : {}),
        ...note,
      };
    }
    case 'inject':
      if (v.event === undefined) fail(where, "missing key 'event'");
      return { kind, record: parseEventRecord(v.event, `${where}.event`), ...note };
    case 'recover':
      return { kind, queue: v.queue === undefined ? 'all' : queueOf(v.queue, f, `${where}.queue`, true), ...note };
    case 'poke': {
      if (v.pa === undefined || v.words === undefined) fail(where, "a poke needs 'pa' and 'words'");
      const pa = addrOf(v.pa, `${where}.pa`);
      if (pa % 4 !== 0) fail(`${where}.pa`, 'must be 4-byte aligned');
      if (!Array.isArray(v.words) || v.words.length === 0) fail(`${where}.words`, 'expected a non-empty list of 32-bit words');
      return { kind, pa, words: v.words.map((w, i) => u32Of(w, `${where}.words[${i}]`)), ...note };
    }
    case 'settle':
      return { kind, ...note };
    case 'dma': {
      if (v.sid === undefined || v.iova === undefined) fail(where, "a dma step needs 'sid' and 'iova'");
      let expect: DmaExpect | undefined;
      if (v.expect !== undefined) {
        const x = v.expect;
        const w = `${where}.expect`;
        if (!isObject(x)) fail(w, 'expected {"status": …, "pa": …, "tlb": …, "event": …}');
        onlyKeys(x, w, ['status', 'pa', 'tlb', 'event']);
        const status = x.status === undefined ? undefined : strOf(x.status, `${w}.status`);
        if (status !== undefined && !['ok', 'abort', 'raz-wi'].includes(status)) fail(`${w}.status`, `'${status}' is not ok, abort or raz-wi`);
        const tlb = x.tlb === undefined ? undefined : strOf(x.tlb, `${w}.tlb`);
        if (tlb !== undefined && tlb !== 'hit' && tlb !== 'miss') fail(`${w}.tlb`, `'${tlb}' is not hit or miss`);
        expect = {
          ...(status !== undefined ? { status: status as DmaExpect['status'] } : {}),
          ...(x.pa !== undefined ? { pa: addrOf(x.pa, `${w}.pa`) } : {}),
          ...(tlb !== undefined ? { tlb: tlb as 'hit' | 'miss' } : {}),
          ...(x.event !== undefined ? { event: strOf(x.event, `${w}.event`) } : {}),
        };
      }
      return {
        kind,
        sid: u32Of(v.sid, `${where}.sid`),
        iova: addrOf(v.iova, `${where}.iova`),
        write: v.write === undefined ? false : boolOf(v.write, `${where}.write`),
        ...(expect !== undefined ? { expect } : {}),
        ...note,
      };
    }
    case 'map':
      if (v.sid === undefined || v.iova === undefined || v.pa === undefined) fail(where, "a map step needs 'sid', 'iova' and 'pa'");
      return { kind, sid: u32Of(v.sid, `${where}.sid`), iova: addrOf(v.iova, `${where}.iova`), pa: addrOf(v.pa, `${where}.pa`), ...note };
    case 'unmap':
      if (v.sid === undefined || v.iova === undefined) fail(where, "an unmap step needs 'sid' and 'iova'");
      return { kind, sid: u32Of(v.sid, `${where}.sid`), iova: addrOf(v.iova, `${where}.iova`), ...note };
    case 'ste':
      if (v.sid === undefined) fail(where, "missing key 'sid'");
      if (v.config === undefined && v.vmid === undefined) fail(where, "an ste step changes 'config', 'vmid' or both");
      return {
        kind,
        sid: u32Of(v.sid, `${where}.sid`),
        ...(v.config !== undefined ? { config: streamKindOf(v.config, `${where}.config`) } : {}),
        ...(v.vmid !== undefined ? { vmid: u32Of(v.vmid, `${where}.vmid`) } : {}),
        ...note,
      };
    case 'cd':
      if (v.sid === undefined || v.asid === undefined) fail(where, "a cd step needs 'sid' and 'asid'");
      return { kind, sid: u32Of(v.sid, `${where}.sid`), asid: u32Of(v.asid, `${where}.asid`), ...note };
  }
}

/** The stores a world step makes (and the check that it is possible), on the run's World. */
export function worldStepStores(world: World, s: Step): { pa: number; words: readonly number[] }[] {
  switch (s.kind) {
    case 'map':
      return world.map(s.sid, s.iova, s.pa);
    case 'unmap':
      return world.unmap(s.sid, s.iova);
    case 'ste':
      return world.setSte(s.sid, { ...(s.config !== undefined ? { kind: s.config } : {}), ...(s.vmid !== undefined ? { vmid: s.vmid } : {}) });
    case 'cd':
      return world.setCd(s.sid, s.asid);
    default:
      return [];
  }
}

// ---------------------------------------------------------------------------------------------
// Expectation
// ---------------------------------------------------------------------------------------------

function parseExpect(v: unknown, f: SmmuFeatures): Expectation {
  const where = 'expect';
  if (v === undefined) return { oracle: true };
  if (!isObject(v)) fail(where, 'expected an object');
  onlyKeys(v, where, ['commands', 'registers', 'oracle']);
  const oracle = v.oracle === undefined ? true : boolOf(v.oracle, `${where}.oracle`);
  let commands: ExpectedCommand[] | undefined;
  if (v.commands !== undefined) {
    if (!Array.isArray(v.commands)) fail(`${where}.commands`, 'expected a list');
    commands = v.commands.map((c, i) => {
      const w = `${where}.commands[${i}]`;
      if (!isObject(c)) fail(w, 'expected {"queue": …, "outcome": …}');
      onlyKeys(c, w, ['queue', 'ptr', 'name', 'outcome']);
      if (c.outcome === undefined) fail(w, "missing key 'outcome'");
      const outcome = strOf(c.outcome, `${w}.outcome`);
      if (!/^(consumed|CERROR_[A-Z_]+)$/.test(outcome)) fail(`${w}.outcome`, `'${outcome}' is not 'consumed' or a CERROR name`);
      const q = c.queue === undefined ? 'cmdq' : queueOf(c.queue, f, `${w}.queue`);
      return {
        queue: q.toUpperCase(),
        outcome,
        ...(c.ptr !== undefined ? { ptr: u32Of(c.ptr, `${w}.ptr`) } : {}),
        ...(c.name !== undefined ? { name: strOf(c.name, `${w}.name`) } : {}),
      };
    });
  }
  let registers: ExpectedRegister[] | undefined;
  if (v.registers !== undefined) {
    if (!isObject(v.registers)) fail(`${where}.registers`, 'expected {"REGISTER": value or {"value": …, "mask": …}}');
    registers = Object.entries(v.registers).map(([name, x]) => {
      const w = `${where}.registers.${name}`;
      const reg = resolveReg(name, f, w);
      const all = reg.width === 64 ? (1n << 64n) - 1n : 0xffff_ffffn;
      if (isObject(x)) {
        onlyKeys(x, w, ['value', 'mask']);
        if (x.value === undefined) fail(w, "missing key 'value'");
        return { reg, value: bigOf(x.value, `${w}.value`), mask: x.mask === undefined ? all : bigOf(x.mask, `${w}.mask`) };
      }
      return { reg, value: bigOf(x, w), mask: all };
    });
  }
  return { oracle, ...(commands !== undefined ? { commands } : {}), ...(registers !== undefined ? { registers } : {}) };
}

// ---------------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------------

const TOP_KEYS = ['format', 'name', 'description', 'config', 'steps', 'expect', 'known_failure', 'found'] as const;

/** Parse a scenario from its JSON value. Throws a ScenarioError naming the first problem. */
export function parseScenario(json: unknown): Scenario {
  if (!isObject(json)) fail('', 'a scenario is a JSON object');
  onlyKeys(json, '', TOP_KEYS);
  if (json.format === undefined) fail('', `missing key 'format' (expected "${SCENARIO_FORMAT}")`);
  if (json.format !== SCENARIO_FORMAT) fail('format', `'${String(json.format)}' is not a format this version reads (expected "${SCENARIO_FORMAT}")`);
  const { config, features } = parseConfig(json.config);
  if (json.steps === undefined) fail('', "missing key 'steps'");
  if (!Array.isArray(json.steps)) fail('steps', 'expected a list of steps');
  const steps = json.steps.map((s, i) => parseStep(s, `steps[${i}]`, features));
  // World steps need the world, and each must be possible where it stands (a dry run).
  const world = config.translation === undefined ? undefined : new World(config.translation, features, config.ram.base);
  world?.build();
  steps.forEach((s, i) => {
    if (!WORLD_STEPS.includes(s.kind)) return;
    if (world === undefined) fail(`steps[${i}]`, `a '${s.kind}' step needs config.translation (the streams and their tables)`);
    try {
      if (s.kind === 'dma') {
        world.stream(s.sid);
        if (s.iova >= 2 ** 56) fail('', `iova 0x${s.iova.toString(16)} is wider than 56 bits`);
      } else worldStepStores(world, s);
    } catch (e) {
      fail(`steps[${i}]`, (e as Error).message);
    }
  });
  const expect = parseExpect(json.expect, features);
  let knownFailure: Scenario['knownFailure'];
  if (json.known_failure !== undefined) {
    const k = json.known_failure;
    if (!isObject(k)) fail('known_failure', 'expected {"rule": …, "note": …}');
    onlyKeys(k, 'known_failure', ['rule', 'note']);
    knownFailure = { rule: strOf(k.rule, 'known_failure.rule'), ...(k.note !== undefined ? { note: strOf(k.note, 'known_failure.note') } : {}) };
  }
  return {
    format: SCENARIO_FORMAT,
    ...(json.name !== undefined ? { name: strOf(json.name, 'name') } : {}),
    ...(json.description !== undefined ? { description: strOf(json.description, 'description') } : {}),
    config,
    features,
    steps,
    expect,
    ...(knownFailure !== undefined ? { knownFailure } : {}),
    ...(json.found !== undefined ? { found: json.found } : {}),
    source: json,
  };
}

/** Parse scenario text (JSON). Throws a ScenarioError, also for JSON syntax errors. */
export function parseScenarioText(text: string): Scenario {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ScenarioError(`not valid JSON: ${(e as Error).message}`);
  }
  return parseScenario(json);
}

// ---------------------------------------------------------------------------------------------
// Writing (the fuzzer builds scenarios as JSON values directly)
// ---------------------------------------------------------------------------------------------

export function hex(n: number | bigint): string {
  return `0x${n.toString(16)}`;
}

/** Stable, readable JSON: one step per line. */
export function formatScenarioJson(json: Json): string {
  const steps = Array.isArray(json.steps) ? (json.steps as unknown[]) : undefined;
  const expectCmds = isObject(json.expect) && Array.isArray(json.expect.commands) ? (json.expect.commands as unknown[]) : undefined;
  const marker = '\u0000STEPS\u0000';
  const marker2 = '\u0000CMDS\u0000';
  const copy: Json = { ...json };
  if (steps !== undefined) copy.steps = marker;
  if (expectCmds !== undefined) copy.expect = { ...(json.expect as Json), commands: marker2 };
  let text = JSON.stringify(copy, null, 2);
  const lines = (xs: unknown[], indent: string) => (xs.length === 0 ? '[]' : `[\n${xs.map((s) => `${indent}  ${JSON.stringify(s)}`).join(',\n')}\n${indent}]`);
  if (steps !== undefined) text = text.replace(JSON.stringify(marker), lines(steps, '  '));
  if (expectCmds !== undefined) text = text.replace(JSON.stringify(marker2), lines(expectCmds, '    '));
  return `${text}\n`;
}
