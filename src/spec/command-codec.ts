/**
 * Encode, decode, print and parse SMMUv3 commands (IHI0070 G.b §4.1), driven by the table in
 * commands.ts.
 *
 * decodeCommand never throws for any 16 bytes: a Reserved opcode decodes as RESERVED_0xNN, set bits
 * that no field of the command covers are reported by flat position in `res0` (§4.1.5 lets an
 * implementation either ignore them or raise CERROR_ILL; that choice belongs to the legality check).
 * encodeCommand is for people and throws a RangeError naming the command and the field.
 */

import { bitsOutside, coverMask, fieldFitError, getBits, getBitsBig, isWide, setBits, setBitsBig } from './bits.ts';
import type { FieldValue, Words } from './bits.ts';
import {
  CFGI_ALL_RANGE,
  COMMAND_BYTES,
  COMMAND_WORDS,
  OP,
  cfgiAllSpec,
  commandByName,
  commandSpec,
} from './commands.ts';
import type { CommandClass, CommandField, CommandSpec } from './commands.ts';

/** A decoded command: every field of its table entry by spec name, plus the set RES0 bits. */
export interface DecodedCommand {
  readonly opcode: number;
  /** 'CMD_TLBI_NH_VA'; 'CMD_CFGI_ALL' for 0x04 with Range == 31 (§4.3.6). */
  readonly name: string;
  readonly cls: CommandClass;
  readonly spec: CommandSpec;
  readonly fields: Record<string, FieldValue>;
  /** Flat positions (0..127) of set bits that are RES0 in this command, ascending. */
  readonly res0: number[];
  /** The command as four u32 words, word 0 = bits [31:0]. */
  readonly words: readonly [number, number, number, number];
}

// ---------------------------------------------------------------------------------------------
// Precomputed decode plans: one per table entry, so decode does no lookups by name.
// ---------------------------------------------------------------------------------------------

interface Plan {
  readonly spec: CommandSpec;
  readonly mask: Uint32Array;
  readonly names: readonly string[];
  readonly lsb: readonly number[];
  readonly width: readonly number[];
  readonly shift: readonly number[];
  readonly wide: readonly boolean[];
}

function makePlan(spec: CommandSpec): Plan {
  return {
    spec,
    mask: coverMask(spec.fields, COMMAND_WORDS),
    names: spec.fields.map((f) => f.name),
    lsb: spec.fields.map((f) => f.lsb),
    width: spec.fields.map((f) => f.width),
    shift: spec.fields.map((f) => f.shift ?? 0),
    wide: spec.fields.map((f) => isWide(f)),
  };
}

const OPCODES = 256;
const PLANS: readonly Plan[] = Array.from({ length: OPCODES }, (_, op) => makePlan(commandSpec(op)));
const CFGI_ALL_PLAN = makePlan(cfgiAllSpec());
/** CMD_CFGI_STE_RANGE's Range field, read to tell CMD_CFGI_ALL apart (§4.3.6). */
const RANGE_FIELD = cfgiAllSpec().fields.find((f) => f.name === 'Range')!;

function readWord(b: Uint8Array, i: number): number {
  return (b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24)) >>> 0;
}

/**
 * Decode one command from 16 bytes (byte 0 first, little-endian, §4.1.1) or from 4 u32 words.
 * `offset` counts elements of the input: bytes for a Uint8Array, words otherwise. Throws a
 * RangeError only when fewer than 16 bytes / 4 words are available.
 */
export function decodeCommand(input: Uint8Array | Words, offset = 0): DecodedCommand {
  let w0: number, w1: number, w2: number, w3: number;
  if (input instanceof Uint8Array) {
    if (!(offset >= 0) || input.length - offset < COMMAND_BYTES) {
      throw new RangeError(`decodeCommand: need ${COMMAND_BYTES} bytes at offset ${offset}, have ${Math.max(0, input.length - offset)}`);
    }
    w0 = readWord(input, offset);
    w1 = readWord(input, offset + 4);
    w2 = readWord(input, offset + 8);
    w3 = readWord(input, offset + 12);
  } else {
    if (!(offset >= 0) || input.length - offset < COMMAND_WORDS) {
      throw new RangeError(`decodeCommand: need ${COMMAND_WORDS} words at offset ${offset}, have ${Math.max(0, input.length - offset)}`);
    }
    w0 = (input[offset] ?? 0) >>> 0;
    w1 = (input[offset + 1] ?? 0) >>> 0;
    w2 = (input[offset + 2] ?? 0) >>> 0;
    w3 = (input[offset + 3] ?? 0) >>> 0;
  }
  const words: [number, number, number, number] = [w0, w1, w2, w3];
  const opcode = w0 & 0xff;
  let plan = PLANS[opcode]!;
  if (opcode === OP.CMD_CFGI_STE_RANGE && getBits(words, RANGE_FIELD.lsb, RANGE_FIELD.width) === CFGI_ALL_RANGE) {
    plan = CFGI_ALL_PLAN;
  }
  const fields: Record<string, FieldValue> = {};
  const n = plan.names.length;
  for (let i = 0; i < n; i++) {
    const shift = plan.shift[i]!;
    if (plan.wide[i]) {
      fields[plan.names[i]!] = getBitsBig(words, plan.lsb[i]!, plan.width[i]!) << BigInt(shift);
    } else {
      fields[plan.names[i]!] = (getBits(words, plan.lsb[i]!, plan.width[i]!) << shift) >>> 0;
    }
  }
  const spec = plan.spec;
  return { opcode, name: spec.name, cls: spec.cls, spec, fields, res0: bitsOutside(words, plan.mask), words };
}

// ---------------------------------------------------------------------------------------------
// Encode
// ---------------------------------------------------------------------------------------------

/** What encodeCommand takes: a command by name and/or opcode, and field values by spec name. */
export interface CommandInput {
  readonly name?: string;
  readonly opcode?: number;
  readonly [field: string]: FieldValue | string | undefined;
}

const HEX_RE = /^0x[0-9a-f]+$/i;
const BIN_RE = /^0b[01]+$/i;
const DEC_RE = /^[0-9]+$/;

function resolveSpec(input: CommandInput): CommandSpec {
  const { name, opcode } = input;
  let byName: CommandSpec | undefined;
  if (name !== undefined) {
    byName = commandByName(name);
    if (byName === undefined) throw new RangeError(`unknown command '${name}'`);
  }
  if (opcode !== undefined) {
    if (typeof opcode !== 'number' || !Number.isInteger(opcode) || opcode < 0 || opcode >= OPCODES) {
      throw new RangeError(`${byName?.name ?? 'command'}: opcode ${String(opcode)} is not an integer in 0..255`);
    }
    if (byName !== undefined && byName.opcode !== opcode) {
      throw new RangeError(`${byName.name}: opcode 0x${opcode.toString(16)} given, but ${byName.name} is opcode 0x${byName.opcode.toString(16)}`);
    }
  }
  if (byName !== undefined) return byName;
  if (opcode === undefined) throw new RangeError('command needs a name or an opcode');
  return commandSpec(opcode);
}

/** Find a field by spec name, then case-insensitively, then by its printed short name. */
function findField(spec: CommandSpec, key: string): CommandField | undefined {
  const exact = spec.fields.find((f) => f.name === key);
  if (exact !== undefined) return exact;
  const low = key.toLowerCase();
  return spec.fields.find((f) => f.name.toLowerCase() === low) ?? spec.fields.find((f) => f.short === low);
}

/** Turn a user value into a bigint, naming the command and field on failure. */
function toBig(spec: CommandSpec, f: CommandField, raw: FieldValue | string): bigint {
  if (typeof raw === 'bigint') return raw;
  if (typeof raw === 'number') {
    if (!Number.isSafeInteger(raw)) throw new RangeError(`${spec.name}: ${f.name}: ${raw} is not a safe integer`);
    return BigInt(raw);
  }
  if (typeof raw !== 'string') throw new RangeError(`${spec.name}: ${f.name}: unsupported value type ${typeof raw}`);
  const trimmed = raw.trim();
  if (f.values !== undefined) {
    const low = trimmed.toLowerCase();
    for (const [k, v] of Object.entries(f.values)) if (v.toLowerCase() === low) return BigInt(k);
  }
  // Digit-group underscores ("0xffff_0000_0000") are allowed in numbers.
  const text = trimmed.replace(/_/g, '');
  if (HEX_RE.test(text)) return BigInt(text);
  if (BIN_RE.test(text)) return BigInt(text);
  if (DEC_RE.test(text)) return BigInt(text);
  const names = f.values !== undefined ? ` or one of ${Object.values(f.values).join(', ')}` : '';
  throw new RangeError(`${spec.name}: ${f.name}: '${raw}' is not a number (0x…, 0b… or decimal)${names}`);
}

function encodeInto(input: CommandInput, words: Uint32Array): CommandSpec {
  const spec = resolveSpec(input);
  const isCfgiAll = spec === cfgiAllSpec();
  if (isCfgiAll) setBits(words, RANGE_FIELD.lsb, RANGE_FIELD.width, CFGI_ALL_RANGE);
  for (const key of Object.keys(input)) {
    if (key === 'name' || key === 'opcode') continue;
    const raw = input[key];
    if (raw === undefined) continue;
    const f = findField(spec, key);
    if (f === undefined) {
      throw new RangeError(`${spec.name} has no field ${key} (fields: ${spec.fields.map((x) => x.name).join(', ')})`);
    }
    const v = toBig(spec, f, raw);
    const err = fieldFitError(f, v);
    if (err !== undefined) throw new RangeError(`${spec.name}: ${err}`);
    if (f.name === 'Opcode' && Number(v) !== spec.opcode) {
      throw new RangeError(`${spec.name}: Opcode 0x${v.toString(16)} given, but ${spec.name} is opcode 0x${spec.opcode.toString(16)}`);
    }
    if (isCfgiAll && f === RANGE_FIELD && Number(v) !== CFGI_ALL_RANGE) {
      throw new RangeError(`${spec.name}: Range must be ${CFGI_ALL_RANGE} (CMD_CFGI_ALL is CMD_CFGI_STE_RANGE with Range 31, §4.3.6)`);
    }
    const shift = BigInt(f.shift ?? 0);
    if (f.width <= 32) setBits(words, f.lsb, f.width, Number(v >> shift));
    else setBitsBig(words, f.lsb, f.width, v >> shift);
  }
  setBits(words, 0, 8, spec.opcode);
  return spec;
}

/**
 * Encode a command to 4 u32 words. Values may be numbers, bigints, or strings ("0x…", "0b…",
 * decimal, or an enum name such as "64K" or "SIG_IRQ"). CMD_CFGI_ALL sets Range = 31.
 */
export function encodeCommandWords(input: CommandInput): Uint32Array {
  const words = new Uint32Array(COMMAND_WORDS);
  encodeInto(input, words);
  return words;
}

/** Encode a command to its 16 bytes in memory order (little-endian, §4.1.1). */
export function encodeCommand(input: CommandInput): Uint8Array {
  return wordsToBytes(encodeCommandWords(input));
}

/** The 16 little-endian bytes of 4 u32 words. */
export function wordsToBytes(words: Words): Uint8Array {
  const out = new Uint8Array(COMMAND_BYTES);
  for (let i = 0; i < COMMAND_WORDS; i++) {
    const w = (words[i] ?? 0) >>> 0;
    out[4 * i] = w & 0xff;
    out[4 * i + 1] = (w >>> 8) & 0xff;
    out[4 * i + 2] = (w >>> 16) & 0xff;
    out[4 * i + 3] = w >>> 24;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Hex forms
// ---------------------------------------------------------------------------------------------

const DWORD_RE = /^(0x)?[0-9a-f]{1,16}$/i;
const HEX_DIGITS = COMMAND_BYTES * 2;

/**
 * Parse a command written as 32 hex digits in memory order (byte 0 first; whitespace between
 * digits is allowed) or as two 64-bit words "0xW0:0xW1" (dword 0, bits [63:0], first).
 */
export function parseCommandHex(text: string): Uint32Array {
  const fast = fastHex32(text);
  if (fast !== undefined) return fast;
  const t = text.trim();
  if (t === '') throw new RangeError('empty command: expected 32 hex digits (byte 0 first) or 0xDWORD0:0xDWORD1');
  const words = new Uint32Array(COMMAND_WORDS);
  if (t.includes(':')) {
    const parts = t.split(':');
    if (parts.length !== 2) throw new RangeError(`'${t}': expected exactly two 64-bit words 0xDWORD0:0xDWORD1, found ${parts.length} parts`);
    for (let d = 0; d < 2; d++) {
      const p = parts[d]!.trim();
      if (!DWORD_RE.test(p)) throw new RangeError(`'${t}': dword ${d} '${p}' is not a hex number of 1 to 16 digits`);
      const v = BigInt(p.toLowerCase().startsWith('0x') ? p : `0x${p}`);
      words[2 * d] = Number(v & 0xffff_ffffn);
      words[2 * d + 1] = Number(v >> 32n);
    }
    return words;
  }
  const digits = t.replace(/\s+/g, '');
  const bad = /[^0-9a-f]/i.exec(digits);
  if (bad !== null) {
    const hint = digits.toLowerCase().startsWith('0x') ? ' (memory-order hex has no 0x prefix; use 0xDWORD0:0xDWORD1 for words)' : '';
    throw new RangeError(`'${t}': invalid hex character '${bad[0]}' at position ${bad.index}${hint}`);
  }
  if (digits.length !== HEX_DIGITS) {
    throw new RangeError(`'${t}': expected ${HEX_DIGITS} hex digits (16 bytes, byte 0 first), got ${digits.length}`);
  }
  for (let i = 0; i < COMMAND_BYTES; i++) {
    const byte = parseInt(digits.slice(2 * i, 2 * i + 2), 16);
    words[i >>> 2] = (words[i >>> 2]! | (byte << (8 * (i & 3)))) >>> 0;
  }
  return words;
}

/** Value of one hex digit's char code, or -1. */
function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  const l = c | 0x20;
  return l >= 97 && l <= 102 ? l - 87 : -1;
}

/**
 * The bulk-decode fast path: exactly 32 hex digits, nothing else. Returns undefined for any
 * other text, which then takes the general (and error-reporting) path.
 */
function fastHex32(t: string): Uint32Array | undefined {
  if (t.length !== HEX_DIGITS) return undefined;
  const words = new Uint32Array(COMMAND_WORDS);
  for (let i = 0; i < COMMAND_BYTES; i++) {
    const hi = hexDigit(t.charCodeAt(2 * i));
    const lo = hexDigit(t.charCodeAt(2 * i + 1));
    if (hi < 0 || lo < 0) return undefined;
    words[i >>> 2] = (words[i >>> 2]! | (((hi << 4) | lo) << (8 * (i & 3)))) >>> 0;
  }
  return words;
}

function hex8(n: number): string {
  return (n >>> 0).toString(16).padStart(8, '0');
}

/** 32 hex digits in memory order: byte 0 first. */
export function commandHex(words: Words): string {
  const b = wordsToBytes(words);
  let s = '';
  for (const x of b) s += x.toString(16).padStart(2, '0');
  return s;
}

/** The two 64-bit dwords, "0x<bits 63:0>:0x<bits 127:64>", each 16 digits. */
export function commandDwords(words: Words): string {
  return `0x${hex8(words[1] ?? 0)}${hex8(words[0] ?? 0)}:0x${hex8(words[3] ?? 0)}${hex8(words[2] ?? 0)}`;
}

// ---------------------------------------------------------------------------------------------
// Printing
// ---------------------------------------------------------------------------------------------

function isZero(v: FieldValue): boolean {
  return typeof v === 'bigint' ? v === 0n : v === 0;
}

function formatField(f: CommandField, v: FieldValue): string {
  switch (f.fmt) {
    case 'hex':
      return `0x${v.toString(16)}`;
    case 'enum': {
      const name = f.values?.[Number(v)];
      return name ?? v.toString();
    }
    case 'dec':
    case 'flag':
      return v.toString();
  }
}

/** The printed command name: the spec name without its CMD_ prefix. */
export function shortCommandName(name: string): string {
  return name.startsWith('CMD_') ? name.slice(4) : name;
}

/**
 * One line, like a disassembler: `TLBI_NH_VA vmid=0x1 asid=0x5 addr=0x8d36456a6000 leaf=1 tg=64K
 * num=18 scale=23 ttl=3`. Fields in table order, non-zero ones plus those marked `always`. Reserved
 * and IMPLEMENTATION DEFINED commands print their raw dwords. Set RES0 bits are listed at the end.
 */
export function formatCommand(d: DecodedCommand): string {
  const parts: string[] = [shortCommandName(d.name)];
  if (d.cls === 'reserved' || d.cls === 'impdef') {
    parts.push(commandDwords(d.words));
  } else {
    for (const f of d.spec.fields) {
      if (f.name === 'Opcode') continue;
      const v = d.fields[f.name];
      if (v === undefined || (isZero(v) && f.always !== true)) continue;
      parts.push(`${f.short}=${formatField(f, v)}`);
    }
  }
  if (d.cls !== 'reserved' && d.res0.length > 0) parts.push(`res0=${d.res0.join(',')}`);
  return parts.join(' ');
}

/** A JSON value for a command: fields by spec name; fields wider than 32 bits as "0x…" strings. */
export interface CommandJson {
  opcode: number;
  name: string;
  fields: Record<string, number | string>;
  res0: number[];
}

export function commandToJson(d: DecodedCommand): CommandJson {
  const fields: Record<string, number | string> = {};
  for (const f of d.spec.fields) {
    const v = d.fields[f.name];
    if (v === undefined) continue;
    fields[f.name] = isWide(f) ? `0x${v.toString(16)}` : Number(v);
  }
  return { opcode: d.opcode, name: d.name, fields, res0: [...d.res0] };
}
