/**
 * The command legality check: does a command raise CERROR_ILL, and which of its parameters are out
 * of range (IHI0070 G.b §4.1.3, §4.1.5–§4.1.7, §7.1 and each command's own section in §4.2–§4.7).
 *
 * The device calls `checkCommand` for every command it consumes, so the check works on the four
 * u32 words with per-opcode plans compiled once per (features, queue) pair: no BigInt, and no
 * object allocation when a command is legal and in range (the shared frozen `OK` verdict).
 *
 * Order of checks. A command with several problems gets the verdict of the first stage that
 * fails; within a stage the rules run in the order of LEGALITY_RULES:
 *   1. opcode     — Reserved and IMPLEMENTATION DEFINED opcodes (§4.1.1, §4.1.3).
 *   2. relevance  — commands irrelevant to the configured features or to the queue (§7.1 "Unknown
 *                   command opcode, including architecture-defined commands irrelevant to an
 *                   implementation without certain feature or Security state").
 *   3. ssec       — SSec == 1 on a Non-secure or Realm queue (§4.1.6).
 *   4. illegal    — parameter values the spec calls ILLEGAL or says cause CERROR_ILL.
 *   5. res0       — set RES0 bits, only when `features.res0Check` (§4.1.5 lets an implementation
 *                   either detect them as CERROR_ILL or ignore them entirely).
 *   6. out-of-range — CONSTRAINED UNPREDICTABLE parameters (§4.1.7): never CERROR_ILL, reported in
 *                   `outOfRange`. Computed for every command that passes stages 1–2, whatever its
 *                   final verdict, so a printer can show them next to an error.
 */

import { coverMask, getBits, lowMask } from './bits.ts';
import type { Field, Words } from './bits.ts';
import { CERROR_ILL } from './cerror.ts';
import { ATC_INV_SIZE_ALL, COMMAND_WORDS, CS_SIG_IRQ, CS_VALUES, DPTI_SIZE_VALUES, OP, RESP_VALUES, commandSpec } from './commands.ts';
import type { CommandSpec } from './commands.ts';
import { OAS_BITS } from './features.ts';
import type { SmmuFeatures } from './features.ts';

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

/** One reason a command is illegal or has an out-of-range parameter. */
export interface Finding {
  /** Stable id, a row of LEGALITY_RULES. */
  readonly rule: string;
  /** One readable sentence. */
  readonly reason: string;
  /** The spec section that states the rule, e.g. '§4.4.1.1'. */
  readonly section: string;
  /** The field concerned, by spec name. */
  readonly field?: string;
  /** Flat bit positions (0..127) concerned, ascending. RES0 findings list exactly the set bits. */
  readonly bits?: readonly number[];
}

export type Verdict =
  | { readonly ok: true; readonly outOfRange: readonly Finding[] }
  | {
      readonly ok: false;
      readonly error: 'CERROR_ILL';
      readonly code: number;
      readonly finding: Finding;
      readonly outOfRange: readonly Finding[];
    };

/** Which Command queue a command was read from (§4.1.6). The model's queues are Non-secure. */
export interface QueueContext {
  readonly queue: 'non-secure' | 'secure' | 'realm';
}

export type Queue = QueueContext['queue'];

export type LegalityStage = 'opcode' | 'relevance' | 'ssec' | 'illegal' | 'res0' | 'out-of-range';

/** The stages in the order they run. */
export const LEGALITY_STAGES: readonly LegalityStage[] = Object.freeze(['opcode', 'relevance', 'ssec', 'illegal', 'res0', 'out-of-range'] as const);

export interface LegalityRule {
  readonly rule: string;
  /** Every section the rule comes from; a finding cites the one for its command. */
  readonly section: string;
  readonly summary: string;
  readonly stage: LegalityStage;
  /** 'CERROR_ILL', or 'out-of-range' for CONSTRAINED UNPREDICTABLE parameters (consumed). */
  readonly outcome: 'CERROR_ILL' | 'out-of-range';
  /** For out-of-range rules: what the model does with the command. */
  readonly modelChoice?: string;
}

// ---------------------------------------------------------------------------------------------
// The rules, in check order
// ---------------------------------------------------------------------------------------------

const ILL = 'CERROR_ILL' as const;
const OOR = 'out-of-range' as const;

/** The model's choice for StreamID/SubstreamID parameters outside the implemented range (§4.1.7). */
const NO_EFFECT = 'consumed; the command has no effect, as no stream with that ID exists (§4.1.7 permits "the command has no effect")';

/** One row per rule, in the order the check applies them. Drives docs and tests. */
export const LEGALITY_RULES: readonly LegalityRule[] = Object.freeze([
  // 1. opcode
  { rule: 'reserved-opcode', section: '§4.1.1, §4.1.3', stage: 'opcode', outcome: ILL,
    summary: 'A Reserved command opcode raises CERROR_ILL.' },
  { rule: 'impdef-opcode', section: '§4.1.1, §4.1.3', stage: 'opcode', outcome: ILL,
    summary: 'Opcodes 0x80-0x8F are IMPLEMENTATION DEFINED; the model implements none, so they are unknown opcodes and raise CERROR_ILL.' },
  // 2. relevance
  { rule: 'el3-command-not-secure-queue', section: '§4.4.2.5, §4.4.2.6', stage: 'relevance', outcome: ILL,
    summary: 'CMD_TLBI_EL3_ALL and CMD_TLBI_EL3_VA are valid only on the Secure Command queue.' },
  { rule: 'secure-command-not-secure-queue', section: '§4.4.2.11-§4.4.2.14, §4.4.3.3, §4.4.3.4, §4.4.4.2', stage: 'relevance', outcome: ILL,
    summary: 'The Secure TLBI commands (0x50-0x60) raise CERROR_ILL on the Non-secure and Realm Command queues.' },
  { rule: 'secure-el2-not-implemented', section: '§4.4.2.11-§4.4.2.14, §4.4.3.3, §4.4.3.4, §4.4.4.2', stage: 'relevance', outcome: ILL,
    summary: 'On the Secure queue the Secure TLBI opcodes are Reserved without Secure EL2 / Secure stage 2, which the model does not implement.' },
  { rule: 'stall-command-on-realm-queue', section: '§4.7.1, §4.7.2', stage: 'relevance', outcome: ILL,
    summary: 'CMD_RESUME and CMD_STALL_TERM raise CERROR_ILL on the Realm Command queue.' },
  { rule: 'stage1-not-implemented', section: '§4.3.3, §4.3.4, §4.4.2', stage: 'relevance', outcome: ILL,
    summary: 'CMD_CFGI_CD, CMD_CFGI_CD_ALL and the stage 1 TLBI commands (NH, EL2, EL3) raise CERROR_ILL without stage 1 (SMMU_IDR0.S1P == 0).' },
  { rule: 'hyp-not-implemented', section: '§4.4.2.7-§4.4.2.10', stage: 'relevance', outcome: ILL,
    summary: 'CMD_TLBI_EL2_* raise CERROR_ILL when SMMU_IDR0.Hyp == 0.' },
  { rule: 'stage2-not-implemented', section: '§4.4.3.1, §4.4.3.2', stage: 'relevance', outcome: ILL,
    summary: 'CMD_TLBI_S2_IPA and CMD_TLBI_S12_VMALL raise CERROR_ILL without stage 2 (SMMU_IDR0.S2P == 0).' },
  { rule: 'ats-not-implemented', section: '§4.5.1', stage: 'relevance', outcome: ILL,
    summary: 'CMD_ATC_INV is ILLEGAL when SMMU_IDR0.ATS == 0.' },
  { rule: 'pri-not-implemented', section: '§4.5.2', stage: 'relevance', outcome: ILL,
    summary: 'CMD_PRI_RESP is ILLEGAL when SMMU_IDR0.PRI == 0.' },
  { rule: 'stall-not-supported', section: '§4.7.1, §4.7.2', stage: 'relevance', outcome: ILL,
    summary: 'CMD_RESUME and CMD_STALL_TERM raise CERROR_ILL when SMMU_IDR0.STALL_MODEL == 0b01 (no stall).' },
  { rule: 'mpam-not-implemented', section: '§4.3.5', stage: 'relevance', outcome: ILL,
    summary: 'CMD_CFGI_VMS_PIDM raises CERROR_ILL when SMMU_IDR3.MPAM == 0.' },
  { rule: 'dpt-not-implemented', section: '§4.6.1, §4.6.2', stage: 'relevance', outcome: ILL,
    summary: 'CMD_DPTI_ALL and CMD_DPTI_PA raise CERROR_ILL when SMMU_IDR3.DPT == 0.' },
  // 3. SSec
  { rule: 'ssec-on-nonsecure-queue', section: '§4.1.6', stage: 'ssec', outcome: ILL,
    summary: 'SSec == 1 on the Non-secure Command queue is ILLEGAL, whether or not Secure state is supported.' },
  { rule: 'ssec-on-realm-queue', section: '§4.1.6, §3.10.3', stage: 'ssec', outcome: ILL,
    summary: 'SSec == 1 on the Realm Command queue raises CERROR_ILL.' },
  // 4. ILLEGAL values
  { rule: 'sync-cs-reserved', section: '§4.7.3', stage: 'illegal', outcome: ILL,
    summary: 'CMD_SYNC with CS == 0b11 (Reserved) causes CERROR_ILL.' },
  { rule: 'pri-resp-reserved', section: '§4.5.2', stage: 'illegal', outcome: ILL,
    summary: 'CMD_PRI_RESP with Resp == 0b11 (Reserved) is ILLEGAL.' },
  { rule: 'tlbi-range-reserved-combination', section: '§4.4.1.1', stage: 'illegal', outcome: ILL,
    summary: 'With SMMU_IDR3.RIL == 1, a TLBI with TG != 0 and NUM == 0, SCALE == 0, TTL == 0 uses a Reserved combination and causes CERROR_ILL.' },
  { rule: 'tlbi-16k-ttl1-without-ds', section: '§4.4.1.1', stage: 'illegal', outcome: ILL,
    summary: 'With SMMU_IDR5.DS == 0, TG == 0b10 (16KB) and TTL == 0b01 is treated as TTL == 0b00, so with NUM == 0 and SCALE == 0 it is the Reserved combination and raises CERROR_ILL.' },
  // 5. RES0 (features.res0Check)
  { rule: 'res0-bits', section: '§4.1.5', stage: 'res0', outcome: ILL,
    summary: 'A set bit that no field of the command covers is RES0 and is detected as a malformed command.' },
  { rule: 'ril-res0', section: '§4.4.1.1', stage: 'res0', outcome: ILL,
    summary: 'NUM, SCALE, TG, TTL and TTL128 are RES0 when SMMU_IDR3.RIL == 0.' },
  { rule: 'range-fields-res0-tg0', section: '§4.4.1.1', stage: 'res0', outcome: ILL,
    summary: 'NUM, SCALE, TTL and TTL128 are RES0 when TG == 0b00.' },
  { rule: 'scale-bit25-without-ds', section: '§4.4.1.1', stage: 'res0', outcome: ILL,
    summary: 'SCALE bit 25 is RES0 when SMMU_IDR5.DS == 0 (SCALE is then 5 bits, [24:20]).' },
  { rule: 'ttl128-res0-ttl0', section: '§4.4.1.1', stage: 'res0', outcome: ILL,
    summary: 'TTL128 is RES0 when TTL == 0b00 (including a 16KB TTL == 0b01 treated as 0b00 without SMMU_IDR5.DS).' },
  { rule: 'vmid-without-stage2', section: '§4.4.2', stage: 'res0', outcome: ILL,
    summary: 'The VMID of CMD_TLBI_NH_* is RES0 when stage 2 is not supported for the queue\'s Security state.' },
  { rule: 'vmid16-res0', section: '§4.4, §3.16.1.2', stage: 'res0', outcome: ILL,
    summary: 'VMID[15:8] is RES0 when SMMU_IDR0.VMID16 == 0.' },
  { rule: 'asid16-res0', section: '§4.4, §3.16.1.2', stage: 'res0', outcome: ILL,
    summary: 'ASID[15:8] is RES0 when SMMU_IDR0.ASID16 == 0.' },
  { rule: 'address-res0-bits', section: '§4.1.6', stage: 'res0', outcome: ILL,
    summary: 'Physical and IPA address fields: Address[55:52] are RES0 in SMMUv3.1-v3.3, Address[55:48] in SMMUv3.0.' },
  { rule: 'stride-res0-v3.0', section: '§4.2.2', stage: 'res0', outcome: ILL,
    summary: 'CMD_PREFETCH_ADDR Stride is RES0 in SMMUv3.0.' },
  { rule: 'prefetch-ns-res0', section: '§4.2.2', stage: 'res0', outcome: ILL,
    summary: 'CMD_PREFETCH_ADDR NS is RES0 on the Non-secure and Realm queues, and whenever SMMU_S_IDR1.SEL2 == 0 (always, in the model).' },
  { rule: 'msi-ns-res0', section: '§4.7.3', stage: 'res0', outcome: ILL,
    summary: 'CMD_SYNC MSI_NS is RES0 on the Non-secure and Secure Command queues.' },
  // 6. out of range: consumed
  { rule: 'streamid-out-of-range', section: '§4.1.7, §4.3.2', stage: 'out-of-range', outcome: OOR,
    summary: 'A StreamID at or above 2^SMMU_IDR1.SIDSIZE (for CMD_CFGI_STE_RANGE: the aligned range start) is out of range: CONSTRAINED UNPREDICTABLE.',
    modelChoice: NO_EFFECT },
  { rule: 'ssv-without-substreams', section: '§4.2, §4.5.1, §4.5.2', stage: 'out-of-range', outcome: OOR,
    summary: 'SSV == 1 when SMMU_IDR1.SSIDSIZE == 0 is CONSTRAINED UNPREDICTABLE.',
    modelChoice: 'consumed; the command behaves as though SSV == 0 (one of the two permitted behaviours)' },
  { rule: 'substreamid-out-of-range', section: '§4.1.7, §4.3.3', stage: 'out-of-range', outcome: OOR,
    summary: 'A supplied SubstreamID at or above 2^SMMU_IDR1.SSIDSIZE is out of range: CONSTRAINED UNPREDICTABLE.',
    modelChoice: NO_EFFECT },
  { rule: 'atc-inv-size-out-of-range', section: '§4.5.1', stage: 'out-of-range', outcome: OOR,
    summary: 'CMD_ATC_INV Size > 52 is permitted, but not required, to raise CERROR_ILL, or uses an UNKNOWN span.',
    modelChoice: 'consumed, not CERROR_ILL; the span is taken as Size == 52 (invalidate all), an UNKNOWN span the spec permits' },
  { rule: 'va-out-of-range', section: '§4.4.2', stage: 'out-of-range', outcome: OOR,
    summary: 'A stage 1 TLBI address whose bits [55:VAS-1] are not all equal is out of range (TBI applied: bits [63:56] are not checked).',
    modelChoice: 'consumed; the command has no effect: no translation exists for an address outside the VA range (§4.1.7)' },
  { rule: 'ipa-out-of-range', section: '§4.4.3.1', stage: 'out-of-range', outcome: OOR,
    summary: 'A CMD_TLBI_S2_IPA address with non-zero bits at Address[IAS] and above is out of range (IAS == OAS: the model has AArch64 tables only).',
    modelChoice: 'consumed; the command has no effect: no stage 2 translation exists for an IPA at or above the IAS (§4.1.7)' },
  { rule: 'dpti-size-reserved', section: '§4.6.2', stage: 'out-of-range', outcome: OOR,
    summary: 'CMD_DPTI_PA with a Reserved SIZE encoding (0b1010-0b1111) is not required to invalidate any entries.',
    modelChoice: 'consumed; the command invalidates nothing' },
  { rule: 'dpti-address-beyond-oas', section: '§4.6.2', stage: 'out-of-range', outcome: OOR,
    summary: 'CMD_DPTI_PA address bits above SMMU_IDR5.OAS are treated as 0.',
    modelChoice: 'consumed; bits above the OAS are treated as 0, as the spec requires' },
  { rule: 'msiaddress-beyond-oas', section: '§4.7.3, §3.4.3', stage: 'out-of-range', outcome: OOR,
    summary: 'A CMD_SYNC SIG_IRQ MSIAddress with bits above SMMU_IDR5.OAS is truncated to the OAS.',
    modelChoice: 'consumed; the MSI address is truncated to the OAS, as the spec requires' },
] satisfies LegalityRule[]);

const RULES_BY_ID: ReadonlyMap<string, LegalityRule> = new Map(LEGALITY_RULES.map((r) => [r.rule, r]));

/** The row of a rule id; throws for an unknown id (a programming error). */
export function legalityRule(id: string): LegalityRule {
  const r = RULES_BY_ID.get(id);
  if (r === undefined) throw new Error(`unknown legality rule '${id}'`);
  return r;
}

// ---------------------------------------------------------------------------------------------
// Shared verdicts and small helpers
// ---------------------------------------------------------------------------------------------

const NONE: readonly Finding[] = Object.freeze([]);

/** Opcodes are bits [7:0] (§4.1.1). */
const OPCODE_MASK = 0xff;
const OPCODE_COUNT = 256;
/** CMD_SYNC CS == 0b11 is Reserved: CERROR_ILL (§4.7.3). */
const CS_RESERVED = 0b11;
/** CMD_PRI_RESP Resp == 0b11 is Reserved: ILLEGAL (§4.5.2). */
const RESP_RESERVED = 0b11;
/** TLBI TG == 0b10: 16KB granule; TTL == 0b01: level 1 (§4.4.1.1). */
const TG_16K = 0b10;
const TTL_LEVEL1 = 0b01;

/** The verdict of every legal, in-range command: shared and frozen, so the hot path allocates nothing. */
export const OK: Verdict = Object.freeze({ ok: true, outOfRange: NONE });

function finding(rule: string, reason: string, section: string, field?: string, bits?: readonly number[]): Finding {
  const f: { -readonly [K in keyof Finding]: Finding[K] } = { rule, reason, section };
  if (field !== undefined) f.field = field;
  if (bits !== undefined) f.bits = Object.freeze([...bits]);
  return Object.freeze(f);
}

function illegal(f: Finding, outOfRange: readonly Finding[] | undefined): Verdict {
  return Object.freeze({
    ok: false,
    error: 'CERROR_ILL',
    code: CERROR_ILL,
    finding: f,
    outOfRange: outOfRange === undefined ? NONE : Object.freeze(outOfRange),
  });
}

function hex(n: number): string {
  return `0x${(n >>> 0).toString(16)}`;
}

function sec(spec: CommandSpec): string {
  return `§${spec.section}`;
}

/** Flat positions of the set bits of words[base..base+3] that lie inside mask, ascending. */
function setBitsIn(words: Words, base: number, mask: Uint32Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < COMMAND_WORDS; i++) {
    let v = ((words[base + i] ?? 0) & mask[i]!) >>> 0;
    while (v !== 0) {
      const low = v & -v;
      out.push(i * 32 + 31 - Math.clz32(low));
      v = (v & ~low) >>> 0;
    }
  }
  return out;
}

/** True when any bit of words[base..base+3] inside mask is set. */
function anyIn(words: Words, base: number, mask: Uint32Array): boolean {
  return (
    (((words[base] ?? 0) & mask[0]!) | ((words[base + 1] ?? 0) & mask[1]!) | ((words[base + 2] ?? 0) & mask[2]!) | ((words[base + 3] ?? 0) & mask[3]!)) !== 0
  );
}

/** Every flat bit of a field, ascending. */
function fieldBits(...fields: Field[]): number[] {
  const out: number[] = [];
  for (const f of fields) for (let b = f.lsb; b < f.lsb + f.width; b++) out.push(b);
  return out.sort((a, b) => a - b);
}

/** Mask of the flat bits holding value bits [hi:lo] of a field (clipped to what the field stores). */
function valueBitsMask(f: Field, hi: number, lo: number): Uint32Array {
  const m = new Uint32Array(COMMAND_WORDS);
  const shift = f.shift ?? 0;
  const top = Math.min(hi, shift + f.width - 1);
  for (let k = Math.max(lo, shift); k <= top; k++) {
    const b = f.lsb + k - shift;
    m[b >>> 5]! |= 1 << (b & 31);
  }
  return m;
}

/** The flat bit holding value bit k of a field. */
function flatBit(f: Field, k: number): number {
  return f.lsb + k - (f.shift ?? 0);
}

/** Flat positions of set bits among value bits [hi:lo] of a field (hi - lo < 32). */
function setValueBits(words: Words, base: number, f: Field, hi: number, lo: number): number[] {
  const v = getBits(words, flatBit(f, lo), hi - lo + 1, base);
  const out: number[] = [];
  for (let k = 0; k <= hi - lo; k++) if (((v >>> k) & 1) !== 0) out.push(flatBit(f, lo + k));
  return out;
}

/** The highest address bit that is not RES0 in physical/IPA address fields (§4.1.6). */
function paTopBit(archMinor: number): number {
  if (archMinor <= 0) return 47; // SMMUv3.0: Address[55:48] RES0
  if (archMinor <= 3) return 51; // SMMUv3.1-v3.3: Address[55:52] RES0
  return 55;
}

function oasBits(f: SmmuFeatures): number {
  return OAS_BITS[f.oas] ?? OAS_BITS[OAS_BITS.length - 1]!;
}

/** Input VA size: 52 bits with SMMU_IDR5.VAX == 1, else 48 (§6.3.6). */
function vasBits(f: SmmuFeatures): number {
  return f.vax === 1 ? 52 : 48;
}

/** "bit 40" / "bits 40, 41" for reason texts. */
function bitList(bits: readonly number[]): string {
  return bits.length === 1 ? `bit ${bits[0]}` : `bits ${bits.join(', ')}`;
}

// ---------------------------------------------------------------------------------------------
// Per-opcode plans
// ---------------------------------------------------------------------------------------------

/** A check returning a Finding, or undefined when the command passes. Built once per plan. */
type Check = (words: Words, base: number) => Finding | undefined;

/** One RES0 rule over some bits of a command; `when` makes it depend on field values. */
interface Res0Part {
  readonly rule: string;
  readonly section: string;
  readonly field: string | undefined;
  readonly mask: Uint32Array;
  /** Sentence start; the set bits are appended. */
  readonly what: string;
  readonly when?: (words: Words, base: number) => boolean;
}

interface Plan {
  /** Precomputed verdict for stages 1–2, or undefined when the opcode is architected and relevant. */
  readonly fail: Verdict | undefined;
  /** Stages 3–4 in order. */
  readonly illegal: readonly Check[];
  /** Stage 5: the bits that may be set without a value-dependent rule (fields minus static RES0). */
  readonly allowed: Uint32Array;
  /** Stage 5, value-dependent: true when a RES0 rule that depends on field values is broken. */
  readonly dynamicRes0: ((words: Words, base: number) => boolean) | undefined;
  /** Stage 5 rules, in order, for the slow path that names the first broken one. */
  readonly res0: readonly Res0Part[];
  readonly res0Check: boolean;
  /** Stage 6. */
  readonly outOfRange: readonly Check[];
}

function field(spec: CommandSpec, name: string): Field | undefined {
  return spec.fields.find((f) => f.name === name);
}

const PLAN_CACHE = new WeakMap<SmmuFeatures, Map<Queue, (Plan | undefined)[]>>();

/** The relevance failure of an opcode (stages 1–2), or undefined. */
function relevance(op: number, spec: CommandSpec, f: SmmuFeatures, queue: Queue): Finding | undefined {
  const name = spec.name;
  const opText = hex(op);
  switch (spec.cls) {
    case 'reserved':
      return finding('reserved-opcode', `opcode ${opText} is Reserved`, '§4.1.1', 'Opcode');
    case 'impdef':
      return finding(
        'impdef-opcode',
        `opcode ${opText} is IMPLEMENTATION DEFINED and this model implements no IMPLEMENTATION DEFINED commands`,
        '§4.1.1',
        'Opcode',
      );
    case 'secure':
      if (queue !== 'secure') {
        return finding('secure-command-not-secure-queue', `${name} is a Secure command and raises CERROR_ILL on the ${queue} Command queue`, sec(spec), 'Opcode');
      }
      return finding(
        'secure-el2-not-implemented',
        `${name} is Reserved because the model implements neither Secure EL2 nor Secure stage 2 (SMMU_S_IDR1.SEL2 == 0)`,
        sec(spec),
        'Opcode',
      );
    case 'dpti':
      if (!f.dpt) return finding('dpt-not-implemented', `${name} raises CERROR_ILL because SMMU_IDR3.DPT == 0`, sec(spec), 'Opcode');
      return undefined;
    case 'architected':
      break;
  }
  const noS1 = (section: string) =>
    finding('stage1-not-implemented', `${name} raises CERROR_ILL because stage 1 is not implemented (SMMU_IDR0.S1P == 0)`, section, 'Opcode');
  switch (op) {
    case OP.CMD_CFGI_CD:
    case OP.CMD_CFGI_CD_ALL:
      return f.s1 ? undefined : noS1(sec(spec));
    case OP.CMD_CFGI_VMS_PIDM:
      return f.mpam ? undefined : finding('mpam-not-implemented', `${name} raises CERROR_ILL because SMMU_IDR3.MPAM == 0`, sec(spec), 'Opcode');
    case OP.CMD_TLBI_NH_ALL:
    case OP.CMD_TLBI_NH_ASID:
    case OP.CMD_TLBI_NH_VA:
    case OP.CMD_TLBI_NH_VAA:
      return f.s1 ? undefined : noS1('§4.4.2');
    case OP.CMD_TLBI_EL3_ALL:
    case OP.CMD_TLBI_EL3_VA:
      if (queue !== 'secure') {
        return finding('el3-command-not-secure-queue', `${name} is valid only on the Secure Command queue, not the ${queue} one`, sec(spec), 'Opcode');
      }
      return f.s1 ? undefined : noS1('§4.4.2');
    case OP.CMD_TLBI_EL2_ALL:
    case OP.CMD_TLBI_EL2_ASID:
    case OP.CMD_TLBI_EL2_VA:
    case OP.CMD_TLBI_EL2_VAA:
      if (!f.s1) return noS1('§4.4.2');
      return f.hyp ? undefined : finding('hyp-not-implemented', `${name} raises CERROR_ILL because SMMU_IDR0.Hyp == 0`, sec(spec), 'Opcode');
    case OP.CMD_TLBI_S12_VMALL:
    case OP.CMD_TLBI_S2_IPA:
      return f.s2
        ? undefined
        : finding('stage2-not-implemented', `${name} raises CERROR_ILL because stage 2 is not implemented (SMMU_IDR0.S2P == 0)`, sec(spec), 'Opcode');
    case OP.CMD_ATC_INV:
      return f.ats ? undefined : finding('ats-not-implemented', `${name} is ILLEGAL because SMMU_IDR0.ATS == 0`, sec(spec), 'Opcode');
    case OP.CMD_PRI_RESP:
      return f.pri ? undefined : finding('pri-not-implemented', `${name} is ILLEGAL because SMMU_IDR0.PRI == 0`, sec(spec), 'Opcode');
    case OP.CMD_RESUME:
    case OP.CMD_STALL_TERM:
      if (queue === 'realm') {
        return finding('stall-command-on-realm-queue', `${name} raises CERROR_ILL on the Realm Command queue`, sec(spec), 'Opcode');
      }
      return f.stallModel !== 'no-stall'
        ? undefined
        : finding('stall-not-supported', `${name} raises CERROR_ILL because the Stall model is not supported (SMMU_IDR0.STALL_MODEL == 0b01)`, sec(spec), 'Opcode');
    default:
      // CMD_PREFETCH_*, CMD_CFGI_STE, CMD_CFGI_STE_RANGE/ALL, CMD_TLBI_NSNH_ALL (valid on any
      // SMMU, §4.4.4.1) and CMD_SYNC are relevant to every configuration.
      return undefined;
  }
}

/** Stages 3–4 for one opcode. */
function illegalChecks(op: number, spec: CommandSpec, f: SmmuFeatures, queue: Queue): Check[] {
  const checks: Check[] = [];
  const name = spec.name;
  const ssec = field(spec, 'SSec');
  if (ssec !== undefined && queue !== 'secure') {
    const rule = queue === 'realm' ? 'ssec-on-realm-queue' : 'ssec-on-nonsecure-queue';
    const section = queue === 'realm' ? '§4.1.6, §3.10.3' : '§4.1.6';
    const why = `${name} has SSec == 1, which is ILLEGAL on the ${queue} Command queue`;
    const bits = fieldBits(ssec);
    checks.push((w, b) => (getBits(w, ssec.lsb, 1, b) !== 0 ? finding(rule, why, section, 'SSec', bits) : undefined));
  }
  if (op === OP.CMD_SYNC) {
    const cs = field(spec, 'CS');
    if (cs !== undefined) {
      const bits = fieldBits(cs);
      checks.push((w, b) =>
        getBits(w, cs.lsb, cs.width, b) === CS_RESERVED
          ? finding('sync-cs-reserved', `${name} has CS == 0b11, which is ${CS_VALUES[CS_RESERVED] ?? 'Reserved'} and causes CERROR_ILL`, sec(spec), 'CS', bits)
          : undefined,
      );
    }
  }
  if (op === OP.CMD_PRI_RESP) {
    const resp = field(spec, 'Resp');
    if (resp !== undefined) {
      const bits = fieldBits(resp);
      checks.push((w, b) =>
        getBits(w, resp.lsb, resp.width, b) === RESP_RESERVED
          ? finding('pri-resp-reserved', `${name} has Resp == 0b11, which is ${RESP_VALUES[RESP_RESERVED] ?? 'Reserved'}: ILLEGAL`, sec(spec), 'Resp', bits)
          : undefined,
      );
    }
  }
  const tg = field(spec, 'TG');
  const num = field(spec, 'NUM');
  const scale = field(spec, 'SCALE');
  const ttl = field(spec, 'TTL');
  // Without RIL the range fields are RES0 (stage 5), so their values have no meaning here.
  if (f.ril && tg !== undefined && num !== undefined && scale !== undefined && ttl !== undefined) {
    // Without DS, SCALE bit 25 is RES0 and not part of the value (§4.4.1.1).
    const scaleWidth = f.ds ? scale.width : scale.width - 1;
    const bits = fieldBits(tg, ttl, num, scale);
    const ds = f.ds;
    checks.push((w, b) => {
      const tgv = getBits(w, tg.lsb, tg.width, b);
      if (tgv === 0) return undefined;
      if (getBits(w, num.lsb, num.width, b) !== 0 || getBits(w, scale.lsb, scaleWidth, b) !== 0) return undefined;
      const ttlv = getBits(w, ttl.lsb, ttl.width, b);
      if (ttlv === 0) {
        return finding(
          'tlbi-range-reserved-combination',
          `${name} has TG == ${tgv} with NUM == 0, SCALE == 0 and TTL == 0, a Reserved combination that causes CERROR_ILL`,
          '§4.4.1.1',
          'TG',
          bits,
        );
      }
      if (tgv === TG_16K && ttlv === TTL_LEVEL1 && !ds) {
        return finding(
          'tlbi-16k-ttl1-without-ds',
          `${name} has TG == 0b10 (16KB) and TTL == 0b01, treated as TTL == 0b00 because SMMU_IDR5.DS == 0, so with NUM == 0 and SCALE == 0 it is the Reserved combination and causes CERROR_ILL`,
          '§4.4.1.1',
          'TTL',
          bits,
        );
      }
      return undefined;
    });
  }
  return checks;
}

/** Stage 5 rules for one opcode, in LEGALITY_RULES order. */
function res0Parts(op: number, spec: CommandSpec, f: SmmuFeatures, queue: Queue): Res0Part[] {
  const parts: Res0Part[] = [];
  const name = spec.name;
  const defined = coverMask(spec.fields, COMMAND_WORDS);
  const outside = new Uint32Array(COMMAND_WORDS);
  for (let i = 0; i < COMMAND_WORDS; i++) outside[i] = ~defined[i]! >>> 0;
  parts.push({ rule: 'res0-bits', section: '§4.1.5', field: undefined, mask: outside, what: `${name} sets RES0 bits outside its fields:` });

  const tg = field(spec, 'TG');
  const rangeFields = ['NUM', 'SCALE', 'TG', 'TTL', 'TTL128'].map((n) => field(spec, n)).filter((x): x is Field => x !== undefined);
  if (rangeFields.length > 0 && !f.ril) {
    parts.push({
      rule: 'ril-res0',
      section: '§4.4.1.1',
      field: undefined,
      mask: coverMask(rangeFields, COMMAND_WORDS),
      what: `${name}: NUM, SCALE, TG, TTL and TTL128 are RES0 because SMMU_IDR3.RIL == 0, but`,
    });
  }
  const ttl = field(spec, 'TTL');
  const ttl128 = field(spec, 'TTL128');
  if (f.ril && tg !== undefined) {
    const tg0 = rangeFields.filter((x) => x !== tg);
    parts.push({
      rule: 'range-fields-res0-tg0',
      section: '§4.4.1.1',
      field: undefined,
      mask: coverMask(tg0, COMMAND_WORDS),
      what: `${name}: NUM, SCALE, TTL and TTL128 are RES0 when TG == 0b00, but`,
      when: (w, b) => getBits(w, tg.lsb, tg.width, b) === 0,
    });
  }
  const scale = field(spec, 'SCALE');
  if (f.ril && scale !== undefined && !f.ds) {
    parts.push({
      rule: 'scale-bit25-without-ds',
      section: '§4.4.1.1',
      field: 'SCALE',
      mask: coverMask([{ name: 'SCALE[5]', lsb: scale.lsb + scale.width - 1, width: 1 }], COMMAND_WORDS),
      what: `${name}: SCALE bit 25 is RES0 because SMMU_IDR5.DS == 0, but`,
    });
  }
  if (f.ril && tg !== undefined && ttl !== undefined && ttl128 !== undefined) {
    const ds = f.ds;
    parts.push({
      rule: 'ttl128-res0-ttl0',
      section: '§4.4.1.1',
      field: 'TTL128',
      mask: coverMask([ttl128], COMMAND_WORDS),
      what: `${name}: TTL128 is RES0 when the effective TTL is 0b00, but`,
      when: (w, b) => {
        const tgv = getBits(w, tg.lsb, tg.width, b);
        if (tgv === 0) return false; // covered by range-fields-res0-tg0
        const ttlv = getBits(w, ttl.lsb, ttl.width, b);
        // 16KB with TTL == 0b01 is treated as TTL == 0b00 without DS (§4.4.1.1).
        return ttlv === 0 || (tgv === TG_16K && ttlv === TTL_LEVEL1 && !ds);
      },
    });
  }
  const vmid = field(spec, 'VMID');
  const nh = op === OP.CMD_TLBI_NH_ALL || op === OP.CMD_TLBI_NH_ASID || op === OP.CMD_TLBI_NH_VA || op === OP.CMD_TLBI_NH_VAA;
  // Stage 2 for the queue's Security state: the model has no Secure stage 2 (SMMU_S_IDR1.SEL2 == 0).
  const stage2ForQueue = queue === 'secure' ? false : f.s2;
  if (vmid !== undefined && nh && !stage2ForQueue) {
    parts.push({
      rule: 'vmid-without-stage2',
      section: '§4.4.2',
      field: 'VMID',
      mask: coverMask([vmid], COMMAND_WORDS),
      what: `${name}: VMID is RES0 because stage 2 is not supported for the ${queue} Security state, but`,
    });
  }
  if (vmid !== undefined && !f.vmid16) {
    parts.push({
      rule: 'vmid16-res0',
      section: '§4.4',
      field: 'VMID',
      mask: valueBitsMask(vmid, 15, 8),
      what: `${name}: VMID[15:8] is RES0 because SMMU_IDR0.VMID16 == 0, but`,
    });
  }
  const asid = field(spec, 'ASID');
  if (asid !== undefined && !f.asid16) {
    parts.push({
      rule: 'asid16-res0',
      section: '§4.4',
      field: 'ASID',
      mask: valueBitsMask(asid, 15, 8),
      what: `${name}: ASID[15:8] is RES0 because SMMU_IDR0.ASID16 == 0, but`,
    });
  }
  const paField = paAddressField(op, spec);
  if (paField !== undefined) {
    const top = paTopBit(f.archMinor);
    const m = valueBitsMask(paField, 55, top + 1);
    if (anyMask(m)) {
      const range = top === 47 ? '[55:48]' : '[55:52]';
      const ver = top === 47 ? 'SMMUv3.0' : 'SMMUv3.1-v3.3';
      parts.push({
        rule: 'address-res0-bits',
        section: '§4.1.6',
        field: paField.name,
        mask: m,
        what: `${name}: ${paField.name}${range} is RES0 in ${ver}, but`,
      });
    }
  }
  const stride = field(spec, 'Stride');
  if (op === OP.CMD_PREFETCH_ADDR && stride !== undefined && f.archMinor <= 0) {
    parts.push({
      rule: 'stride-res0-v3.0',
      section: '§4.2.2',
      field: 'Stride',
      mask: coverMask([stride], COMMAND_WORDS),
      what: `${name}: Stride is RES0 in SMMUv3.0, but`,
    });
  }
  const ns = field(spec, 'NS');
  if (op === OP.CMD_PREFETCH_ADDR && ns !== undefined) {
    const why = queue === 'secure' ? 'SMMU_S_IDR1.SEL2 == 0 in the model' : `the command is on the ${queue} Command queue`;
    parts.push({
      rule: 'prefetch-ns-res0',
      section: '§4.2.2',
      field: 'NS',
      mask: coverMask([ns], COMMAND_WORDS),
      what: `${name}: NS is RES0 because ${why}, but`,
    });
  }
  const msiNs = field(spec, 'MSI_NS');
  if (op === OP.CMD_SYNC && msiNs !== undefined && queue !== 'realm') {
    parts.push({
      rule: 'msi-ns-res0',
      section: '§4.7.3',
      field: 'MSI_NS',
      mask: coverMask([msiNs], COMMAND_WORDS),
      what: `${name}: MSI_NS is RES0 on the ${queue} Command queue, but`,
    });
  }
  return parts;
}

function anyMask(m: Uint32Array): boolean {
  return (m[0]! | m[1]! | m[2]! | m[3]!) !== 0;
}

/** The physical or IPA address field of an opcode (§4.1.6), if it has one. */
function paAddressField(op: number, spec: CommandSpec): Field | undefined {
  if (op === OP.CMD_TLBI_S2_IPA || op === OP.CMD_TLBI_S_S2_IPA || op === OP.CMD_DPTI_PA) return field(spec, 'Address');
  if (op === OP.CMD_SYNC) return field(spec, 'MSIAddress');
  return undefined;
}

/** Stage 6 for one opcode. */
function outOfRangeChecks(op: number, spec: CommandSpec, f: SmmuFeatures): Check[] {
  const checks: Check[] = [];
  const name = spec.name;
  const sid = field(spec, 'StreamID');
  const range = field(spec, 'Range');
  const sidSize = sid === undefined ? 0 : Math.max(0, Math.min(sid.width, Math.trunc(f.sidSize) || 0));
  if (sid !== undefined && sidSize < sid.width) {
    const limit = `2^${sidSize} (SMMU_IDR1.SIDSIZE == ${sidSize})`;
    if (op === OP.CMD_CFGI_STE_RANGE && range !== undefined) {
      // The bottom Range+1 bits are IGNORED (§4.3.2); with Range == 31 (CMD_CFGI_ALL) the whole
      // StreamID is (§4.3.6). The range is out of range when its aligned start is.
      checks.push((w, b) => {
        const ignored = getBits(w, range.lsb, range.width, b) + 1;
        const from = Math.max(ignored, sidSize);
        if (from >= sid.width) return undefined;
        const v = getBits(w, sid.lsb, sid.width, b);
        if (v >>> from === 0) return undefined;
        const bits = setValueBits(w, b, sid, sid.width - 1, from);
        return finding(
          'streamid-out-of-range',
          `${name}: the range of StreamIDs starting at ${hex(((v >>> ignored) << ignored) >>> 0)} lies at or above ${limit}`,
          '§4.1.7, §4.3.2',
          'StreamID',
          bits,
        );
      });
    } else {
      checks.push((w, b) => {
        const v = getBits(w, sid.lsb, sid.width, b);
        if (v >>> sidSize === 0) return undefined;
        return finding('streamid-out-of-range', `${name}: StreamID ${hex(v)} is at or above ${limit}`, '§4.1.7', 'StreamID', setValueBits(w, b, sid, sid.width - 1, sidSize));
      });
    }
  }
  const ssid = field(spec, 'SubstreamID');
  const ssv = field(spec, 'SSV');
  const ssidSize = ssid === undefined ? 0 : Math.max(0, Math.min(ssid.width, Math.trunc(f.ssidSize) || 0));
  if (ssid !== undefined && ssv !== undefined) {
    const section = op === OP.CMD_ATC_INV ? '§4.5.1' : op === OP.CMD_PRI_RESP ? '§4.5.2' : '§4.2';
    checks.push((w, b) => {
      if (getBits(w, ssv.lsb, 1, b) === 0) return undefined; // SubstreamID not supplied
      if (ssidSize === 0) {
        return finding(
          'ssv-without-substreams',
          `${name} has SSV == 1 but SMMU_IDR1.SSIDSIZE == 0; the model behaves as though SSV == 0`,
          section,
          'SSV',
          fieldBits(ssv),
        );
      }
      const v = getBits(w, ssid.lsb, ssid.width, b);
      if (v >>> ssidSize === 0) return undefined;
      return finding(
        'substreamid-out-of-range',
        `${name}: SubstreamID ${hex(v)} is at or above 2^${ssidSize} (SMMU_IDR1.SSIDSIZE == ${ssidSize})`,
        '§4.1.7',
        'SubstreamID',
        setValueBits(w, b, ssid, ssid.width - 1, ssidSize),
      );
    });
  } else if (ssid !== undefined && ssidSize < ssid.width) {
    // CMD_CFGI_CD: the SubstreamID is always a CD table index (§4.3.3).
    checks.push((w, b) => {
      const v = getBits(w, ssid.lsb, ssid.width, b);
      if (v >>> ssidSize === 0) return undefined;
      return finding(
        'substreamid-out-of-range',
        `${name}: SubstreamID ${hex(v)} is at or above 2^${ssidSize} (SMMU_IDR1.SSIDSIZE == ${ssidSize})`,
        '§4.1.7, §4.3.3',
        'SubstreamID',
        setValueBits(w, b, ssid, ssid.width - 1, ssidSize),
      );
    });
  }
  const size = field(spec, 'Size');
  if (op === OP.CMD_ATC_INV && size !== undefined) {
    checks.push((w, b) => {
      const v = getBits(w, size.lsb, size.width, b);
      return v > ATC_INV_SIZE_ALL
        ? finding('atc-inv-size-out-of-range', `${name}: Size ${v} is above ${ATC_INV_SIZE_ALL}; the model takes the span as Size == ${ATC_INV_SIZE_ALL} (invalidate all)`, '§4.5.1', 'Size', fieldBits(size))
        : undefined;
    });
  }
  const addr = field(spec, 'Address');
  const isVaTlbi =
    op === OP.CMD_TLBI_NH_VA ||
    op === OP.CMD_TLBI_NH_VAA ||
    op === OP.CMD_TLBI_EL2_VA ||
    op === OP.CMD_TLBI_EL2_VAA ||
    op === OP.CMD_TLBI_EL3_VA;
  if (isVaTlbi && addr !== undefined) {
    // Bits [55:VAS-1] must all be equal; TBI is applied, so [63:56] are not checked (§4.4.2).
    const vas = vasBits(f);
    const lo = vas - 1;
    const hi = 55;
    const width = hi - lo + 1;
    const all = lowMask(width);
    checks.push((w, b) => {
      const v = getBits(w, flatBit(addr, lo), width, b);
      if (v === 0 || v === all) return undefined;
      return finding(
        'va-out-of-range',
        `${name}: Address bits [55:${lo}] are not all equal, so the VA is outside the ${vas}-bit VA range`,
        '§4.4.2',
        'Address',
        fieldBits({ name: 'Address', lsb: flatBit(addr, lo), width }),
      );
    });
  }
  const paField = paAddressField(op, spec);
  const top = paTopBit(f.archMinor);
  const oas = oasBits(f);
  if (op === OP.CMD_TLBI_S2_IPA && paField !== undefined) {
    const ias = oas; // AArch64 tables only: IAS == OAS (§3.4)
    pushAboveCheck(checks, paField, top, ias, (bits) =>
      finding('ipa-out-of-range', `${name}: IPA ${bitList(bits)} set at or above IAS == ${ias} bits`, '§4.4.3.1', 'Address', bits),
    );
  }
  if (op === OP.CMD_DPTI_PA && paField !== undefined) {
    pushAboveCheck(checks, paField, top, oas, (bits) =>
      finding('dpti-address-beyond-oas', `${name}: Address ${bitList(bits)} set above OAS == ${oas} bits; they are treated as 0`, '§4.6.2', 'Address', bits),
    );
  }
  if (op === OP.CMD_DPTI_PA && size !== undefined) {
    const maxSize = Math.max(...Object.keys(DPTI_SIZE_VALUES).map(Number));
    checks.push((w, b) => {
      const v = getBits(w, size.lsb, size.width, b);
      return v > maxSize
        ? finding('dpti-size-reserved', `${name}: SIZE ${hex(v)} is Reserved; the command invalidates nothing`, '§4.6.2', 'Size', fieldBits(size))
        : undefined;
    });
  }
  if (op === OP.CMD_SYNC && paField !== undefined && f.msi) {
    const cs = field(spec, 'CS');
    if (cs !== undefined) {
      const inner: Check[] = [];
      pushAboveCheck(inner, paField, top, oas, (bits) =>
        finding('msiaddress-beyond-oas', `${name}: MSIAddress ${bitList(bits)} set above OAS == ${oas} bits; the MSI address is truncated to the OAS`, '§4.7.3, §3.4.3', 'MSIAddress', bits),
      );
      const check = inner[0];
      // Only SIG_IRQ sends an MSI; with any other CS, MSIAddress is IGNORED (§4.7.3).
      if (check !== undefined) checks.push((w, b) => (getBits(w, cs.lsb, cs.width, b) === CS_SIG_IRQ ? check(w, b) : undefined));
    }
  }
  return checks;
}

/** Add a check that value bits [top:from] of an address field are zero (top - from < 32). */
function pushAboveCheck(checks: Check[], f: Field, top: number, from: number, make: (bits: number[]) => Finding): void {
  const hi = Math.min(top, (f.shift ?? 0) + f.width - 1);
  if (from > hi) return;
  const lsb = flatBit(f, from);
  const width = hi - from + 1;
  checks.push((w, b) => (getBits(w, lsb, width, b) === 0 ? undefined : make(setValueBits(w, b, f, hi, from))));
}

function buildPlan(op: number, f: SmmuFeatures, queue: Queue): Plan {
  const spec = commandSpec(op);
  const fail = relevance(op, spec, f, queue);
  if (fail !== undefined) {
    return { fail: illegal(fail, undefined), illegal: [], allowed: new Uint32Array(COMMAND_WORDS), dynamicRes0: undefined, res0: [], res0Check: false, outOfRange: [] };
  }
  const res0 = res0Parts(op, spec, f, queue);
  const allowed = new Uint32Array(COMMAND_WORDS).fill(0xffff_ffff);
  const dynamic: Res0Part[] = [];
  for (const p of res0) {
    if (p.when !== undefined) {
      dynamic.push(p);
      continue;
    }
    for (let i = 0; i < COMMAND_WORDS; i++) allowed[i] = (allowed[i]! & ~p.mask[i]!) >>> 0;
  }
  const dynamicRes0 =
    dynamic.length === 0
      ? undefined
      : (w: Words, b: number): boolean => {
          for (let i = 0; i < dynamic.length; i++) {
            const p = dynamic[i]!;
            if (anyIn(w, b, p.mask) && p.when!(w, b)) return true;
          }
          return false;
        };
  return {
    fail: undefined,
    illegal: illegalChecks(op, spec, f, queue),
    allowed,
    dynamicRes0,
    res0,
    res0Check: f.res0Check,
    outOfRange: outOfRangeChecks(op, spec, f),
  };
}

function plansFor(f: SmmuFeatures, queue: Queue): (Plan | undefined)[] {
  let byQueue = PLAN_CACHE.get(f);
  if (byQueue === undefined) {
    byQueue = new Map();
    PLAN_CACHE.set(f, byQueue);
  }
  let plans = byQueue.get(queue);
  if (plans === undefined) {
    plans = new Array<Plan | undefined>(OPCODE_COUNT).fill(undefined);
    byQueue.set(queue, plans);
  }
  return plans;
}

// One-entry memo in front of the WeakMap: a device checks every command with the same features.
let lastFeatures: SmmuFeatures | undefined;
let lastQueue: Queue | undefined;
let lastPlans: (Plan | undefined)[] = [];

/** The first broken RES0 rule (slow path, only after the fast test found one). */
function firstRes0(plan: Plan, words: Words, base: number): Finding | undefined {
  for (const p of plan.res0) {
    if (!anyIn(words, base, p.mask)) continue;
    if (p.when !== undefined && !p.when(words, base)) continue;
    const bits = setBitsIn(words, base, p.mask);
    return finding(p.rule, `${p.what} ${bitList(bits)} ${bits.length === 1 ? 'is' : 'are'} set`, p.section, p.field, bits);
  }
  return undefined;
}

/**
 * Check one command (4 u32 words from `base`) against the features and the queue it came from.
 * Never throws. Returns the shared `OK` verdict for a legal, in-range command.
 */
export function checkCommand(words: Words, features: SmmuFeatures, ctx?: QueueContext, base = 0): Verdict {
  const queue: Queue = ctx === undefined ? 'non-secure' : ctx.queue;
  let plans: (Plan | undefined)[];
  if (features === lastFeatures && queue === lastQueue) {
    plans = lastPlans;
  } else {
    plans = plansFor(features, queue);
    lastFeatures = features;
    lastQueue = queue;
    lastPlans = plans;
  }
  const op = (words[base] ?? 0) & OPCODE_MASK;
  let plan = plans[op];
  if (plan === undefined) {
    plan = buildPlan(op, features, queue);
    plans[op] = plan;
  }
  if (plan.fail !== undefined) return plan.fail;

  // Stages 3–4.
  let bad: Finding | undefined;
  const ill = plan.illegal;
  for (let i = 0; i < ill.length && bad === undefined; i++) bad = ill[i]!(words, base);

  // Stage 5.
  if (bad === undefined && plan.res0Check) {
    const a = plan.allowed;
    const outside =
      ((words[base] ?? 0) & ~a[0]!) | ((words[base + 1] ?? 0) & ~a[1]!) | ((words[base + 2] ?? 0) & ~a[2]!) | ((words[base + 3] ?? 0) & ~a[3]!);
    if (outside !== 0 || (plan.dynamicRes0 !== undefined && plan.dynamicRes0(words, base))) bad = firstRes0(plan, words, base);
  }

  // Stage 6.
  let oor: Finding[] | undefined;
  const oc = plan.outOfRange;
  for (let i = 0; i < oc.length; i++) {
    const f = oc[i]!(words, base);
    if (f !== undefined) (oor ??= []).push(f);
  }

  if (bad !== undefined) return illegal(bad, oor);
  if (oor === undefined) return OK;
  return Object.freeze({ ok: true, outOfRange: Object.freeze(oor) });
}
