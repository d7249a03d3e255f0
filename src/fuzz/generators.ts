/**
 * fast-check generators: commands from the command table (src/spec/commands.ts), register
 * sequences from the register table (src/spec/registers.ts), and whole scenarios that abuse the
 * command queues the way a hostile or broken driver would. Nothing here lists a command or a
 * register by hand: every opcode, field, limit and writable bit comes from the tables and the
 * features, so a new table row is fuzzed without a change here.
 *
 * Field values sit at, just past and far past each field's limit (the limits come from the
 * features: SIDSIZE, SSIDSIZE, VMID16, ASID16, OAS, VAS, and from the spec's value tables),
 * mixed with interesting constants (the identifiers in use) and random values, so fast-check's
 * bias towards small values and its shrinking both work on meaningful numbers.
 */

import fc from 'fast-check';
import * as ring from '../ring/index.ts';
import { lowMask, setBitsBig, coverMask } from '../spec/bits.ts';
import { commandSpec, COMMAND_WORDS, ATC_INV_SIZE_ALL, CFGI_ALL_RANGE, CS_VALUES, DPTI_SIZE_VALUES, OP, TLBI_RANGE_FIELDS, type CommandField, type CommandSpec } from '../spec/commands.ts';
import { EVT, EVENT_WORDS, IMPDEF_EVENT_FIRST, IMPDEF_EVENT_LAST } from '../spec/events.ts';
import { ecmdqCount, OAS_BITS, type SmmuFeatures } from '../spec/features.ts';
import { checkCommand, legalityRule } from '../spec/legality.ts';
import { isPresent, REG, REGISTERS, res0Mask, type RegisterSpec } from '../spec/registers.ts';
import { DEFAULT_LAYOUT, defaultQueueBase } from './layout.ts';
import { SCENARIO_FORMAT, hex } from './scenario.ts';
import { WorldBuilder, worldActArb, worldCommandArb, worldPlanArb, worldPossible, type WorldAct, type WorldPlan } from './world-gen.ts';

// ---------------------------------------------------------------------------------------------
// Context: the SMMU being fuzzed and the identifiers in use
// ---------------------------------------------------------------------------------------------

export interface GenContext {
  readonly features: SmmuFeatures;
  /** The `--features` text the scenario records. */
  readonly featuresText: string;
  readonly ram: { readonly base: number; readonly bytes: number };
  /** Identifiers in use (the magic constants a coverage-blind fuzzer cannot guess). */
  readonly vmids: readonly number[];
  readonly asids: readonly number[];
  readonly sids: readonly number[];
  readonly ssids: readonly number[];
}

export function genContext(features: SmmuFeatures, featuresText: string, ram = { base: DEFAULT_LAYOUT.ramBase, bytes: DEFAULT_LAYOUT.ramBytes }): GenContext {
  const sidTop = Math.min(2 ** features.sidSize, 2 ** 32) - 1;
  const ssidTop = Math.max(0, 2 ** features.ssidSize - 1);
  return {
    features,
    featuresText,
    ram,
    vmids: [1, 3, 0x42, features.vmid16 ? 0xbeef : 0xef],
    asids: [1, 5, 0x77, features.asid16 ? 0xcafe : 0xfe],
    sids: [0, 1, 0x10, sidTop >>> 1, sidTop].filter((x, i, a) => a.indexOf(x) === i),
    ssids: [0, 1, ssidTop].filter((x, i, a) => a.indexOf(x) === i),
  };
}

// ---------------------------------------------------------------------------------------------
// Opcode classes, from the table and the legality check
// ---------------------------------------------------------------------------------------------

const ALL_OPS = Array.from({ length: 256 }, (_, op) => commandSpec(op));

/** Opcodes the features make relevant: architected commands that pass the opcode and relevance stages. */
export function relevantOpcodes(f: SmmuFeatures): number[] {
  const out: number[] = [];
  for (const s of ALL_OPS) {
    const v = checkCommand([s.opcode, 0, 0, 0], f);
    if (v.ok) {
      out.push(s.opcode);
      continue;
    }
    const stage = legalityRule(v.finding.rule).stage;
    if (stage !== 'opcode' && stage !== 'relevance') out.push(s.opcode);
  }
  return out;
}

const ARCHITECTED = ALL_OPS.filter((s) => s.cls !== 'reserved' && s.cls !== 'impdef').map((s) => s.opcode);
const RESERVED = ALL_OPS.filter((s) => s.cls === 'reserved').map((s) => s.opcode);
const IMPDEF = ALL_OPS.filter((s) => s.cls === 'impdef').map((s) => s.opcode);

// ---------------------------------------------------------------------------------------------
// Field values: stored bits (no shift), as bigints so wide fields work the same way
// ---------------------------------------------------------------------------------------------

const big = (n: number | bigint) => BigInt(n);

function vaBits(f: SmmuFeatures): number {
  return f.vax === 1 ? 52 : 48;
}

function oasBits(f: SmmuFeatures): number {
  return OAS_BITS[f.oas] ?? 52;
}

/** The value bits of a field: width plus shift (an address field holds address bits [top:shift]). */
function top(fl: CommandField): number {
  return fl.width + (fl.shift ?? 0);
}

/**
 * Interesting values of a field, as the *value* (address for address fields), for the command
 * `spec`: 0, 1, the limit the features set minus one, at and just past it, the field's maximum,
 * every value of small enumerated fields, and the identifiers in use.
 */
export function fieldEdges(spec: CommandSpec, fl: CommandField, ctx: GenContext): bigint[] {
  const f = ctx.features;
  const max = (1n << big(top(fl))) - (1n << big(fl.shift ?? 0));
  const out = new Set<bigint>([0n, max]);
  const around = (limit: bigint, step = 1n) => {
    for (const d of [-step, 0n, step]) if (limit + d >= 0n && limit + d <= max) out.add(limit + d);
  };
  const values = fl.values !== undefined ? Object.keys(fl.values).map((k) => BigInt(k)) : [];
  const pageOf = (n: bigint) => (n >> big(fl.shift ?? 0)) << big(fl.shift ?? 0);
  switch (fl.name) {
    case 'StreamID':
      around(1n << big(f.sidSize));
      for (const s of ctx.sids) out.add(big(s));
      break;
    case 'SubstreamID':
      around(1n << big(f.ssidSize));
      for (const s of ctx.ssids) out.add(big(s));
      break;
    case 'VMID':
      around(1n << (f.vmid16 ? 16n : 8n));
      for (const v of ctx.vmids) out.add(big(v));
      break;
    case 'ASID':
      around(1n << (f.asid16 ? 16n : 8n));
      for (const a of ctx.asids) out.add(big(a));
      break;
    case 'Address': {
      const step = 1n << big(fl.shift ?? 12);
      if (fl.width + (fl.shift ?? 0) > 56) {
        // A VA: the VA range and sign extension (§4.4.2), TBI bits.
        const vas = big(vaBits(f));
        around(1n << (vas - 1n), step);
        out.add(pageOf(max - (1n << (vas - 1n)) + step));
        out.add(pageOf(0x00ff_ffff_ffff_f000n & max));
        out.add(1n << 55n);
      } else {
        // A PA/IPA: the OAS and the RES0 bits above [51:0] (§4.1.6).
        around(1n << big(oasBits(f)), step);
        out.add(1n << 52n);
      }
      out.add(big(ctx.ram.base));
      break;
    }
    case 'MSIAddress':
      // Resolved per queue by the scenario builder; here the address-shaped edges.
      around(1n << big(oasBits(f)), 4n);
      out.add(big(ctx.ram.base + DEFAULT_LAYOUT.syncMsi));
      out.add(big(ctx.ram.base + ctx.ram.bytes));
      out.add(1n << 54n);
      break;
    case 'Size':
      if (spec.opcode === OP.CMD_ATC_INV) around(big(ATC_INV_SIZE_ALL));
      else if (spec.opcode === OP.CMD_DPTI_PA) around(big(Object.keys(DPTI_SIZE_VALUES).length));
      break;
    case 'Range':
      around(big(CFGI_ALL_RANGE));
      break;
    case 'SCALE':
      // 5 bits without IDR5.DS, 6 with; values above 39 are treated as 39 (§4.4.1.1).
      around(32n);
      around(39n);
      break;
    case 'NUM':
      out.add(1n);
      break;
    case 'MSIData':
    case 'STAG':
    case 'PRGIndex':
    case 'IMPDEF':
      out.add(1n);
      out.add(max >> 1n);
      break;
  }
  for (const v of values) out.add(v);
  if (fl.width <= 4) for (let v = 0n; v <= max; v++) out.add(v);
  return [...out].filter((v) => v >= 0n && v <= max).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** Values of a field within its limits (for commands meant to be legal). */
function legalValues(spec: CommandSpec, fl: CommandField, ctx: GenContext): bigint[] {
  const f = ctx.features;
  switch (fl.name) {
    case 'SSec':
      return [0n];
    case 'StreamID':
      return ctx.sids.map(big);
    case 'SubstreamID':
      return ctx.ssids.map(big);
    case 'SSV':
      return f.ssidSize > 0 ? [0n, 1n] : [0n];
    case 'VMID':
      return f.s2 ? ctx.vmids.map(big) : [0n];
    case 'ASID':
      return ctx.asids.map(big);
    case 'Address':
      return [0n, big(ctx.ram.base), 0x8000_0000n, 0x7f_ffff_f000n];
    case 'MSIAddress':
      return [0n, big(ctx.ram.base + DEFAULT_LAYOUT.syncMsi)];
    case 'CS':
      return Object.keys(CS_VALUES).map(BigInt).filter((v) => v !== 3n);
    case 'Resp':
      return [0n, 1n, 2n];
    case 'Size':
      return spec.opcode === OP.CMD_ATC_INV ? [0n, 12n, big(ATC_INV_SIZE_ALL)] : [0n, 1n, 4n];
    case 'Range':
      return [0n, 3n, big(CFGI_ALL_RANGE)];
    case 'NS':
    case 'MSI_NS':
    case 'Stride':
      return [0n];
    default:
      if (TLBI_RANGE_FIELDS.includes(fl.name)) return [0n]; // TG = 0: no range (§4.4.1.1)
      return fl.width <= 8 ? [0n, 1n] : [0n, 1n, big(lowMask(Math.min(fl.width, 16)))];
  }
}

/** Four words from field values (value form; shifts applied here). */
function build(spec: CommandSpec, values: ReadonlyMap<string, bigint>): number[] {
  const w = new Uint32Array(COMMAND_WORDS);
  w[0] = spec.opcode;
  for (const fl of spec.fields) {
    if (fl.name === 'Opcode') continue;
    const v = values.get(fl.name) ?? 0n;
    setBitsBig(w, fl.lsb, fl.width, v >> big(fl.shift ?? 0));
  }
  return [...w];
}

const u32 = fc.nat({ max: 0xffff_ffff });

/** A value from a list, biased to the list's ends, or a random value of the field. */
function pick(values: readonly bigint[], fl: CommandField): fc.Arbitrary<bigint> {
  const rnd = fc.bigInt({ min: 0n, max: (1n << big(fl.width)) - 1n }).map((v) => v << big(fl.shift ?? 0));
  return fc.oneof({ arbitrary: fc.constantFrom(...values), weight: 5 }, { arbitrary: rnd, weight: 1 });
}

function fieldsArb(spec: CommandSpec, choose: (fl: CommandField) => fc.Arbitrary<bigint>): fc.Arbitrary<number[]> {
  const fields = spec.fields.filter((fl) => fl.name !== 'Opcode');
  if (fields.length === 0) return fc.constant(build(spec, new Map()));
  return fc.tuple(...fields.map(choose)).map((vs) => build(spec, new Map(fields.map((fl, i) => [fl.name, vs[i]!]))));
}

// ---------------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------------

/** A command whose fields sit at their edges (any opcode, weighted towards architected ones). */
export function edgeCommand(ctx: GenContext): fc.Arbitrary<number[]> {
  const op = fc.oneof(
    { arbitrary: fc.constantFrom(...ARCHITECTED), weight: 8 },
    { arbitrary: fc.constantFrom(...RESERVED), weight: 1 },
    { arbitrary: fc.constantFrom(...IMPDEF), weight: 1 },
  );
  return op.chain((o) => {
    const spec = commandSpec(o);
    return fieldsArb(spec, (fl) => pick(fieldEdges(spec, fl, ctx), fl));
  });
}

/** A legal command: a relevant opcode with fields within their limits (checkCommand has the last word). */
export function validCommand(ctx: GenContext): fc.Arbitrary<number[]> {
  const ops = relevantOpcodes(ctx.features);
  return fc
    .constantFrom(...ops)
    .chain((o) => {
      const spec = commandSpec(o);
      return fieldsArb(spec, (fl) => fc.constantFrom(...legalValues(spec, fl, ctx)));
    })
    .filter((w) => checkCommand(w, ctx.features).ok);
}

/** A legal command with one RES0 bit set (§4.1.5: the model reports CERROR_ILL with res0Check). */
export function res0Command(ctx: GenContext): fc.Arbitrary<number[]> {
  return validCommand(ctx).chain((w) => {
    const spec = commandSpec(w[0]! & 0xff);
    const m = coverMask(spec.fields, COMMAND_WORDS);
    const free: number[] = [];
    for (let b = 8; b < 128; b++) if (((m[b >>> 5]! >>> (b & 31)) & 1) === 0) free.push(b);
    if (free.length === 0) return fc.constant(w);
    return fc.constantFrom(...free).map((b) => {
      const out = [...w];
      out[b >>> 5] = (out[b >>> 5]! | (1 << (b & 31))) >>> 0;
      return out;
    });
  });
}

/** A legal command with one field moved to an edge value, or one bit flipped. */
export function mutatedCommand(ctx: GenContext): fc.Arbitrary<number[]> {
  return validCommand(ctx).chain((w) => {
    const spec = commandSpec(w[0]! & 0xff);
    const fields = spec.fields.filter((fl) => fl.name !== 'Opcode');
    const flip = fc.nat({ max: 127 }).map((b) => {
      const out = [...w];
      out[b >>> 5] = (out[b >>> 5]! ^ (1 << (b & 31))) >>> 0;
      return out;
    });
    if (fields.length === 0) return flip;
    const edge = fc.constantFrom(...fields).chain((fl) =>
      pick(fieldEdges(spec, fl, ctx), fl).map((v) => {
        const out = Uint32Array.from(w);
        setBitsBig(out, fl.lsb, fl.width, v >> big(fl.shift ?? 0));
        return [...out];
      }),
    );
    return fc.oneof(edge, flip);
  });
}

/** Range-invalidation TLBIs with TG/NUM/SCALE/TTL/TTL128 edge combinations (§4.4.1.1). */
export function tlbiRangeCommand(ctx: GenContext): fc.Arbitrary<number[]> {
  const ops = ARCHITECTED.filter((o) => commandSpec(o).fields.some((fl) => fl.name === 'TG'));
  return fc.constantFrom(...ops).chain((o) => {
    const spec = commandSpec(o);
    return fieldsArb(spec, (fl) => {
      if (TLBI_RANGE_FIELDS.includes(fl.name)) return fc.constantFrom(...fieldEdges(spec, fl, ctx));
      return fc.constantFrom(...legalValues(spec, fl, ctx));
    });
  });
}

/** 16 random bytes. */
export function rawCommand(): fc.Arbitrary<number[]> {
  return fc.tuple(u32, u32, u32, u32);
}

/** Where a CMD_SYNC's MSI goes; the builder turns it into an address for its queue. */
export type MsiTarget =
  | { readonly t: 'zero' }
  | { readonly t: 'scratch'; readonly i: number }
  | { readonly t: 'own' }
  | { readonly t: 'ahead'; readonly j: number }
  | { readonly t: 'eventq'; readonly i: number }
  | { readonly t: 'past-end' }
  | { readonly t: 'below' }
  | { readonly t: 'beyond-oas' }
  | { readonly t: 'res0' };

export const msiTarget: fc.Arbitrary<MsiTarget> = fc.oneof(
  { arbitrary: fc.constant({ t: 'zero' } as const), weight: 2 },
  { arbitrary: fc.nat({ max: 31 }).map((i) => ({ t: 'scratch', i }) as const), weight: 4 },
  { arbitrary: fc.constant({ t: 'own' } as const), weight: 3 },
  { arbitrary: fc.integer({ min: 1, max: 8 }).map((j) => ({ t: 'ahead', j }) as const), weight: 1 },
  { arbitrary: fc.nat({ max: 63 }).map((i) => ({ t: 'eventq', i }) as const), weight: 1 },
  { arbitrary: fc.constantFrom({ t: 'past-end' } as const, { t: 'below' } as const, { t: 'beyond-oas' } as const, { t: 'res0' } as const), weight: 2 },
);

export interface SyncSpec {
  readonly cs: number;
  readonly target: MsiTarget;
  readonly data: number;
  readonly msh: number;
  readonly attr: number;
}

export const syncSpec: fc.Arbitrary<SyncSpec> = fc.record({
  cs: fc.nat({ max: 3 }),
  target: msiTarget,
  data: fc.oneof(fc.constantFrom(0, 1, 0xffff_ffff), u32),
  msh: fc.nat({ max: 3 }),
  attr: fc.nat({ max: 15 }),
});

/** A command as generated: words, or a CMD_SYNC whose MSI target depends on where it lands. */
export type GenCommand = { readonly w: readonly number[] } | { readonly sync: SyncSpec };

export function command(ctx: GenContext): fc.Arbitrary<GenCommand> {
  const words = fc.oneof(
    { arbitrary: validCommand(ctx), weight: 6 },
    { arbitrary: edgeCommand(ctx), weight: 5 },
    { arbitrary: mutatedCommand(ctx), weight: 2 },
    { arbitrary: res0Command(ctx), weight: 1 },
    { arbitrary: tlbiRangeCommand(ctx), weight: 1 },
    { arbitrary: rawCommand(), weight: 1 },
  );
  return fc.oneof({ arbitrary: words.map((w) => ({ w })), weight: 5 }, { arbitrary: syncSpec.map((sync) => ({ sync })), weight: 2 });
}

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------

const EVENT_IDS = [...Object.values(EVT), IMPDEF_EVENT_FIRST, IMPDEF_EVENT_LAST, 0x00, 0xff];

export const eventRecord: fc.Arbitrary<number[]> = fc
  .tuple(fc.constantFrom(...EVENT_IDS), fc.array(u32, { minLength: EVENT_WORDS, maxLength: EVENT_WORDS }))
  .map(([id, w]) => [((w[0]! & ~0xff) | id) >>> 0, ...w.slice(1)]);

// ---------------------------------------------------------------------------------------------
// Registers, from the register table
// ---------------------------------------------------------------------------------------------

/** Present read-only registers (and 32-bit halves of 64-bit ones). */
export function readOnlyOffsets(f: SmmuFeatures): number[] {
  const out: number[] = [];
  for (const r of REGISTERS) {
    if (r.page === 'secure' || r.page === 'ecmdq' || r.access !== 'RO' || !isPresent(r, f)) continue;
    for (let h = 0; h < r.width / 32; h++) out.push(r.offset + 4 * h);
  }
  return out;
}

/** Present read-write registers with RES0 bits, each with one of its RES0 bits (32-bit halves). */
export function res0Targets(f: SmmuFeatures): { off: number; bits: number[] }[] {
  const out: { off: number; bits: number[] }[] = [];
  const keep = new Set<RegisterSpec>([REG.SMMU_CR0, REG.SMMU_CR1, REG.SMMU_CR2, REG.SMMU_IRQ_CTRL, REG.SMMU_GERRORN, REG.SMMU_CMDQ_PROD, REG.SMMU_EVENTQ_CONS, REG.SMMU_GBPA]);
  for (const r of REGISTERS) {
    if (r.page === 'secure' || r.page === 'ecmdq' || r.access !== 'RW' || !isPresent(r, f) || !keep.has(r)) continue;
    const m = BigInt(res0Mask(r));
    for (let h = 0; h < r.width / 32; h++) {
      const bits: number[] = [];
      for (let b = 0; b < 32; b++) if (((m >> big(32 * h + b)) & 1n) === 1n) bits.push(b);
      if (bits.length > 0) out.push({ off: r.offset + 4 * h, bits });
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Scenario actions
// ---------------------------------------------------------------------------------------------

/** One thing the hostile driver does; `q` picks a configured queue (modulo their number). */
export type Act =
  | { readonly a: 'batch'; readonly q: number; readonly cmds: readonly GenCommand[]; readonly recover: boolean; readonly then?: 'disable' | { readonly back: number; readonly cmd: GenCommand } }
  | { readonly a: 'recover'; readonly q: number | 'all' }
  | { readonly a: 'jump'; readonly q: number; readonly laps: number; readonly extra: number }
  | { readonly a: 'behind'; readonly q: number; readonly k: number }
  | { readonly a: 'cons'; readonly q: number; readonly value: number }
  | { readonly a: 'base'; readonly q: number; readonly lo: number }
  | { readonly a: 'enable'; readonly q: number; readonly on: boolean }
  | { readonly a: 'errack'; readonly q: number }
  | { readonly a: 'ro'; readonly i: number; readonly value: number }
  | { readonly a: 'res0'; readonly i: number; readonly j: number }
  | { readonly a: 'cr0'; readonly toggles: readonly number[] }
  | { readonly a: 'gerrorn'; readonly mask: number; readonly back: boolean }
  | { readonly a: 'irqctrl'; readonly value: number }
  | { readonly a: 'irqcfg'; readonly which: 'GERROR' | 'EVENTQ'; readonly target: 'zero' | 'scratch' | 'past-end' | 'below'; readonly data: number }
  | { readonly a: 'inject'; readonly n: number; readonly record: readonly number[] }
  | { readonly a: 'evcons'; readonly all: boolean; readonly value: number }
  | { readonly a: 'evbase'; readonly outside: boolean }
  | { readonly a: 'evprod'; readonly value: number }
  | { readonly a: 'world'; readonly act: WorldAct };

export interface PathShape {
  /** How many ECMDQs a scenario configures (0 for the CMDQ alone). */
  readonly ecmdqs: { readonly min: number; readonly max: number };
}

export function actArb(ctx: GenContext): fc.Arbitrary<Act> {
  const f = ctx.features;
  const q = fc.nat({ max: 15 });
  const cmd = command(ctx);
  const ro = readOnlyOffsets(f);
  const r0 = res0Targets(f);
  const C = REG.SMMU_CR0.f;
  const G = REG.SMMU_GERROR.f;
  // The bits of CR0 a hostile driver toggles, and GERRORN bits that name no queue error.
  const cr0Bits = [C.CMDQEN, C.EVENTQEN, C.SMMUEN, C.PRIQEN, C.ATSCHK].map((x) => 1 << x.lsb);
  const gerrornBits = [G.EVENTQ_ABT_ERR, G.MSI_CMDQ_ABT_ERR, G.MSI_EVENTQ_ABT_ERR, G.MSI_GERROR_ABT_ERR, G.SFM_ERR, G.PRIQ_ABT_ERR, G.DPT_ERR].map((x) => 1 << x.lsb);
  const gerrornRes0 = Number(BigInt(res0Mask(REG.SMMU_GERRORN)) & 0xffff_ffffn);
  const batch = fc.record({
    a: fc.constant('batch' as const),
    q,
    cmds: fc.array(cmd, { minLength: 1, maxLength: 8 }),
    // Most drivers handle the error interrupt before their next batch.
    recover: fc.oneof({ arbitrary: fc.constant(true), weight: 3 }, { arbitrary: fc.constant(false), weight: 1 }),
    then: fc.option(fc.oneof(fc.constant('disable' as const), fc.record({ back: fc.integer({ min: 1, max: 4 }), cmd })), { freq: 4, nil: undefined }),
  }).map((b) => (b.then === undefined ? { a: b.a, q: b.q, cmds: b.cmds, recover: b.recover } : b));
  const weighted: fc.WeightedArbitrary<Act>[] = [
    { arbitrary: batch, weight: 12 },
    { arbitrary: fc.record({ a: fc.constant('recover' as const), q: fc.oneof(q, fc.constant('all' as const)) }), weight: 6 },
    { arbitrary: fc.record({ a: fc.constant('jump' as const), q, laps: fc.integer({ min: 1, max: 6 }), extra: fc.nat({ max: 3 }) }), weight: 1 },
    { arbitrary: fc.record({ a: fc.constant('behind' as const), q, k: fc.integer({ min: 1, max: 4 }) }), weight: 1 },
    { arbitrary: fc.record({ a: fc.constant('cons' as const), q, value: fc.oneof(fc.nat({ max: 8 }), u32) }), weight: 1 },
    { arbitrary: fc.record({ a: fc.constant('base' as const), q, lo: u32 }), weight: 1 },
    { arbitrary: fc.record({ a: fc.constant('enable' as const), q, on: fc.boolean() }), weight: 2 },
    { arbitrary: fc.record({ a: fc.constant('errack' as const), q }), weight: f.ecmdq ? 1 : 0 },
    { arbitrary: fc.record({ a: fc.constant('ro' as const), i: fc.nat({ max: ro.length - 1 }), value: u32 }), weight: 1 },
    { arbitrary: fc.record({ a: fc.constant('res0' as const), i: fc.nat({ max: Math.max(0, r0.length - 1) }), j: fc.nat({ max: 31 }) }), weight: 1 },
    { arbitrary: fc.record({ a: fc.constant('cr0' as const), toggles: fc.array(fc.constantFrom(...cr0Bits), { minLength: 1, maxLength: 3 }) }), weight: 1 },
    { arbitrary: fc.record({ a: fc.constant('gerrorn' as const), mask: fc.oneof(fc.constantFrom(...gerrornBits), fc.constant(gerrornRes0 & -gerrornRes0)), back: fc.boolean() }), weight: 1 },
    { arbitrary: fc.record({ a: fc.constant('irqctrl' as const), value: fc.oneof(fc.nat({ max: 7 }), u32) }), weight: 1 },
    { arbitrary: fc.record({ a: fc.constant('irqcfg' as const), which: fc.constantFrom('GERROR' as const, 'EVENTQ' as const), target: fc.constantFrom('zero' as const, 'scratch' as const, 'past-end' as const, 'below' as const), data: u32 }), weight: 1 },
    { arbitrary: fc.record({ a: fc.constant('inject' as const), n: fc.integer({ min: 1, max: 5 }), record: eventRecord }), weight: 3 },
    { arbitrary: fc.record({ a: fc.constant('evcons' as const), all: fc.boolean(), value: fc.oneof(fc.nat({ max: 8 }), u32) }), weight: 2 },
    { arbitrary: fc.record({ a: fc.constant('evbase' as const), outside: fc.boolean() }), weight: 1 },
    { arbitrary: fc.record({ a: fc.constant('evprod' as const), value: fc.oneof(fc.nat({ max: 8 }), u32) }), weight: 1 },
  ];
  return fc.oneof(...weighted.filter((w) => w.weight > 0));
}

export interface Plan {
  readonly cmdqLog2: number;
  readonly eventqLog2: number;
  readonly ecmdqs: readonly { readonly n: number; readonly log2: number }[];
  /** A translation world (about half the plans, where the features allow one). */
  readonly world?: WorldPlan;
  readonly acts: readonly Act[];
}

export function planArb(ctx: GenContext, shape: PathShape, maxActs = 20): fc.Arbitrary<Plan> {
  const count = ecmdqCount(ctx.features);
  const log2s = fc.constantFrom(0, 1, 2, 3, 4, 6, 8);
  const ecmdqs = shape.ecmdqs.max === 0 || count === 0
    ? fc.constant([] as { n: number; log2: number }[])
    : fc.uniqueArray(fc.record({ n: fc.nat({ max: count - 1 }), log2: fc.constantFrom(0, 1, 2, 3, 5) }), { minLength: Math.max(1, shape.ecmdqs.min), maxLength: Math.min(count, shape.ecmdqs.max), selector: (e) => e.n });
  const world = worldPossible(ctx.features) ? fc.option(worldPlanArb(ctx.features), { freq: 2, nil: undefined }) : fc.constant(undefined);
  return world.chain((w) => {
    const acts = w === undefined ? actArb(ctx) : fc.oneof(
      { arbitrary: actArb(ctx), weight: 3 },
      { arbitrary: worldActArb().map((act): Act => ({ a: 'world', act })), weight: 4 },
      {
        // Invalidations aimed at the world, with a CMD_SYNC now and then, recovered as a driver would.
        arbitrary: fc.record({
          a: fc.constant('batch' as const),
          q: fc.nat({ max: 15 }),
          cmds: fc.array(fc.oneof({ arbitrary: worldCommandArb(ctx.features, w).map((cw): GenCommand => ({ w: cw })), weight: 4 }, { arbitrary: syncSpec.map((sync): GenCommand => ({ sync })), weight: 1 }), { minLength: 1, maxLength: 4 }),
          recover: fc.constant(true),
        }),
        weight: 2,
      },
    );
    return fc.record({
      cmdqLog2: log2s,
      eventqLog2: fc.constantFrom(0, 1, 2, 3),
      ecmdqs,
      acts: fc.array(acts, { minLength: 1, maxLength: maxActs }),
    }).map((p): Plan => (w === undefined ? p : { ...p, world: w }));
  });
}

// ---------------------------------------------------------------------------------------------
// From a plan to scenario JSON (the file format)
// ---------------------------------------------------------------------------------------------

type Json = Record<string, unknown>;

interface BQueue {
  readonly name: string;
  readonly index: number;
  readonly base: number;
  readonly log2: number;
  cursor: number;
  enabled: boolean;
}

/** Turn a plan into scenario JSON: concrete steps, MSI targets resolved per queue. */
export function buildScenario(ctx: GenContext, plan: Plan, meta: Json = {}): Json {
  const f = ctx.features;
  const ram = ctx.ram;
  const cmdqs = f.cmdqs;
  const qs: BQueue[] = [{ name: 'cmdq', index: 0, base: defaultQueueBase('cmdq', ram.base), log2: Math.min(plan.cmdqLog2, cmdqs), cursor: 0, enabled: true }];
  for (const e of plan.ecmdqs) {
    qs.push({ name: `ecmdq${e.n}`, index: qs.length, base: defaultQueueBase('ecmdq', ram.base, e.n), log2: Math.min(e.log2, cmdqs), cursor: 0, enabled: true });
  }
  const evBase = defaultQueueBase('eventq', ram.base);
  const steps: Json[] = [];
  const C = REG.SMMU_CR0.f;
  const oas = oasBits(f);
  const slot = (q: BQueue, ptr: number) => q.base + ring.idx(ptr, q.log2) * 16;
  const msiAddress = (q: BQueue, t: MsiTarget, at: number): bigint => {
    switch (t.t) {
      case 'zero':
        return 0n;
      case 'scratch':
        return big(ram.base + DEFAULT_LAYOUT.syncMsi + 4 * ((q.index * 32 + t.i) % DEFAULT_LAYOUT.syncMsiWords));
      case 'own':
        return big(slot(q, at));
      case 'ahead':
        return big(slot(q, ring.inc(at, t.j, q.log2)));
      case 'eventq':
        return big(evBase + 4 * t.i);
      case 'past-end':
        return big(ram.base + ram.bytes);
      case 'below':
        return big(ram.base - 4);
      case 'beyond-oas':
        return (1n << big(oas)) + big(ram.base + DEFAULT_LAYOUT.syncMsi + 4 * q.index * 32);
      case 'res0':
        return (1n << 54n) + big(ram.base + DEFAULT_LAYOUT.syncMsi);
    }
  };
  const words = (q: BQueue, c: GenCommand, at: number): string => {
    if ('w' in c) return wordsHex(c.w);
    const s = c.sync;
    const w = new Uint32Array(COMMAND_WORDS);
    w[0] = OP.CMD_SYNC;
    const spec = commandSpec(OP.CMD_SYNC);
    const set = (name: string, v: bigint) => {
      const fl = spec.fields.find((x) => x.name === name)!;
      setBitsBig(w, fl.lsb, fl.width, v >> big(fl.shift ?? 0));
    };
    set('CS', big(s.cs));
    set('MSH', big(s.msh));
    set('MSIAttr', big(s.attr));
    set('MSIData', big(s.data));
    set('MSIAddress', msiAddress(q, s.target, at) & ((1n << 56n) - 1n));
    return wordsHex(w);
  };
  const pickQ = (i: number) => qs[i % qs.length]!;
  const enableWrite = (q: BQueue, on: boolean): Json =>
    q.index === 0
      ? { kind: 'write', reg: 'SMMU_CR0', [on ? 'set' : 'clear']: hex(1 << C.CMDQEN.lsb) }
      : { kind: 'doorbell', queue: q.name, en: on ? 1 : 0 };
  const ro = readOnlyOffsets(f);
  const r0 = res0Targets(f);
  // The ERRACK each ECMDQ doorbell of this builder carries (the runner keeps the same shadow).
  const errack = new Map<string, number>();
  const wb = plan.world === undefined ? undefined : new WorldBuilder(f, plan.world);
  for (const act of plan.acts) {
    switch (act.a) {
      case 'batch': {
        const q = pickQ(act.q);
        // A driver turns a queue it uses back on; the queue being off is exercised in between.
        if (!q.enabled) {
          steps.push(enableWrite(q, true));
          q.enabled = true;
        }
        const cmds: string[] = [];
        let p = q.cursor;
        // No more than the queue holds: a batch that laps itself is the 'jump' and 'behind' acts' business.
        for (const c of act.cmds.slice(0, 1 << q.log2)) {
          cmds.push(words(q, c, p));
          p = ring.inc(p, 1, q.log2);
        }
        steps.push({ kind: 'commands', queue: q.name, cmds });
        q.cursor = p;
        if (act.then === undefined) {
          steps.push({ kind: 'doorbell', queue: q.name });
          if (act.recover) steps.push({ kind: 'recover', queue: q.name });
        } else if (act.then === 'disable') {
          steps.push({ kind: 'doorbell', queue: q.name, nowait: true });
          steps.push({ ...enableWrite(q, false), note: 'disabled mid-stream' });
          q.enabled = false;
        } else {
          steps.push({ kind: 'doorbell', queue: q.name, nowait: true });
          const at = ((q.cursor & ring.ptrMask(q.log2)) - act.then.back) & ring.ptrMask(q.log2);
          steps.push({ kind: 'commands', queue: q.name, back: act.then.back, cmds: [words(q, act.then.cmd, at)], note: 'rewritten after its doorbell' });
          steps.push({ kind: 'settle' });
        }
        break;
      }
      case 'recover':
        steps.push({ kind: 'recover', queue: act.q === 'all' ? 'all' : pickQ(act.q).name });
        break;
      case 'jump': {
        const q = pickQ(act.q);
        const adv = act.laps * (1 << q.log2) + act.extra;
        q.cursor = (q.cursor + adv) & 0xf_ffff;
        steps.push({ kind: 'doorbell', queue: q.name, advance: adv, note: `PROD jumps ${act.laps} laps` });
        break;
      }
      case 'behind': {
        const q = pickQ(act.q);
        q.cursor = (q.cursor - act.k) & 0xf_ffff;
        steps.push({ kind: 'doorbell', queue: q.name, advance: -act.k, note: 'PROD behind CONS' });
        break;
      }
      case 'cons': {
        const q = pickQ(act.q);
        steps.push({ kind: 'write', reg: q.index === 0 ? 'SMMU_CMDQ_CONS' : `SMMU_ECMDQ_CONS${q.name.slice(5)}`, value: hex(act.value), note: q.enabled ? 'CONS written while enabled' : 'CONS written while disabled' });
        break;
      }
      case 'base': {
        const q = pickQ(act.q);
        steps.push({ kind: 'write', reg: q.index === 0 ? 'SMMU_CMDQ_BASE' : `SMMU_ECMDQ_BASE${q.name.slice(5)}`, value: hex(BigInt(ram.base) + BigInt(act.lo & 0xfffff)), note: q.enabled ? 'BASE rewritten while enabled' : 'BASE rewritten' });
        break;
      }
      case 'enable': {
        const q = pickQ(act.q);
        steps.push(enableWrite(q, act.on));
        q.enabled = act.on;
        break;
      }
      case 'errack': {
        // ecmdq-errack-mismatch (§3.5.6.3): PROD.ERRACK written other than CONS.ERR.
        const q = pickQ(act.q);
        if (q.index === 0) break;
        errack.set(q.name, 1 - (errack.get(q.name) ?? 0));
        steps.push({ kind: 'doorbell', queue: q.name, errack: errack.get(q.name), note: 'ERRACK toggled while no error is pending' });
        break;
      }
      case 'ro':
        steps.push({ kind: 'write', reg: hex(ro[act.i % ro.length]!), value: hex(act.value), note: 'read-only register' });
        break;
      case 'res0': {
        if (r0.length === 0) break;
        const t = r0[act.i % r0.length]!;
        steps.push({ kind: 'write', reg: hex(t.off), set: hex((1 << t.bits[act.j % t.bits.length]!) >>> 0), note: 'RES0 bit' });
        break;
      }
      case 'cr0':
        act.toggles.forEach((b, i) => steps.push({ kind: 'write', reg: 'SMMU_CR0', toggle: hex(b), ...(i < act.toggles.length - 1 ? { nowait: true } : {}), note: 'CR0 without waiting for CR0ACK' }));
        for (const b of act.toggles) if (b === 1 << C.CMDQEN.lsb) qs[0]!.enabled = !qs[0]!.enabled;
        break;
      case 'gerrorn':
        steps.push({ kind: 'write', reg: 'SMMU_GERRORN', toggle: hex(act.mask), note: 'GERRORN toggles a bit of no active error' });
        if (act.back) steps.push({ kind: 'write', reg: 'SMMU_GERRORN', toggle: hex(act.mask) });
        break;
      case 'irqctrl':
        steps.push({ kind: 'write', reg: 'SMMU_IRQ_CTRL', value: hex(act.value), note: 'IRQ_CTRL mid-stream' });
        break;
      case 'irqcfg': {
        if (!f.msi) break;
        const addr = act.target === 'zero' ? 0 : act.target === 'scratch' ? ram.base + DEFAULT_LAYOUT.irqMsi + (act.which === 'GERROR' ? 0 : 4) : act.target === 'past-end' ? ram.base + ram.bytes : ram.base - 4;
        steps.push({ kind: 'write', reg: `SMMU_${act.which}_IRQ_CFG0`, value: hex(addr) });
        steps.push({ kind: 'write', reg: `SMMU_${act.which}_IRQ_CFG1`, value: hex(act.data) });
        break;
      }
      case 'inject':
        for (let k = 0; k < act.n; k++) steps.push({ kind: 'inject', event: wordsHex(act.record.map((w, i) => (i === 1 ? (w + k) >>> 0 : w))) });
        break;
      case 'evcons':
        steps.push(act.all ? { kind: 'write', reg: 'SMMU_EVENTQ_CONS', from: 'SMMU_EVENTQ_PROD', note: 'drain events, acknowledge overflow' } : { kind: 'write', reg: 'SMMU_EVENTQ_CONS', value: hex(act.value) });
        break;
      case 'evbase':
        steps.push({ kind: 'write', reg: 'SMMU_CR0', clear: hex(1 << C.EVENTQEN.lsb) });
        steps.push({ kind: 'write', reg: 'SMMU_EVENTQ_BASE', value: hex(act.outside ? ram.base + ram.bytes : evBase), note: act.outside ? 'event queue outside RAM' : 'event queue back in RAM' });
        steps.push({ kind: 'write', reg: 'SMMU_CR0', set: hex(1 << C.EVENTQEN.lsb) });
        break;
      case 'evprod':
        steps.push({ kind: 'write', reg: 'SMMU_EVENTQ_PROD', value: hex(act.value) });
        break;
      case 'world': {
        if (wb === undefined) break;
        if (act.act.w !== 'stale') {
          steps.push(...wb.steps(act.act));
          break;
        }
        const probe = wb.stale(act.act);
        if (probe === undefined) break;
        // The invalidation goes through the CMDQ with a CMD_SYNC, as a driver's unmap would.
        const q = qs[0]!;
        if (!q.enabled) {
          steps.push(enableWrite(q, true));
          q.enabled = true;
        }
        steps.push(...probe.before);
        const cmds = [probe.cmd, [OP.CMD_SYNC, 0, 0, 0]].slice(0, 1 << q.log2);
        steps.push({ kind: 'commands', queue: q.name, cmds: cmds.map((c) => wordsHex(c)) });
        q.cursor = ring.inc(q.cursor, cmds.length, q.log2);
        steps.push({ kind: 'doorbell', queue: q.name });
        steps.push({ kind: 'recover', queue: q.name });
        steps.push(...probe.after);
        break;
      }
    }
  }
  for (const q of qs) if (!q.enabled) steps.push(enableWrite(q, true));
  steps.push({ kind: 'recover', queue: 'all', note: 'final recovery: the rest must run' });
  return {
    format: SCENARIO_FORMAT,
    ...meta,
    config: {
      features: ctx.featuresText,
      ram: { base: hex(ram.base), bytes: hex(ram.bytes) },
      queues: {
        cmdq: { log2: plan.cmdqLog2 },
        eventq: { log2: plan.eventqLog2 },
        ...(plan.ecmdqs.length > 0 ? { ecmdq: plan.ecmdqs.map((e) => ({ n: e.n, log2: e.log2 })) } : {}),
      },
      ...(wb !== undefined ? { translation: wb.config() } : {}),
    },
    steps,
  };
}

/** 32 hex digits (16 bytes) or 64 (an event record), memory order. */
export function wordsHex(w: ArrayLike<number>): string {
  let s = '';
  for (let i = 0; i < w.length; i++) {
    const x = w[i]! >>> 0;
    for (let b = 0; b < 4; b++) s += ((x >>> (8 * b)) & 0xff).toString(16).padStart(2, '0');
  }
  return s;
}
