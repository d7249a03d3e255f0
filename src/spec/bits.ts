/**
 * Bit fields over little-endian u32 words: the one mechanism every table in src/spec uses.
 *
 * Every architected structure (command, STE, CD, event record, register) is a run of 32-bit
 * little-endian words. A field is named by its flat bit position as the spec prints it
 * ("[79:64]" is word 2, bits 15:0). Hot paths read fields of at most 32 bits as numbers with
 * plain shifts; fields wider than 32 bits (addresses, 64-bit payloads) are BigInt only at the API
 * edge (encode/decode of whole structures, pretty-printers), never in a consumer loop.
 */

/** A field value: a number for fields of at most 32 bits (after `shift`), a bigint beyond. */
export type FieldValue = number | bigint;

/** Anything indexable as u32 words: a Uint32Array view, a plain array of numbers. */
export interface Words {
  readonly length: number;
  [index: number]: number;
}

/** One field of an architected structure. */
export interface Field {
  /** The spec's name for the field (IHI0070 G.b), e.g. `StreamID`, `MSIAddress`. */
  readonly name: string;
  /** Flat bit position of the field's least significant stored bit. */
  readonly lsb: number;
  /** Number of stored bits. */
  readonly width: number;
  /**
   * The stored bits are value bits [shift + width - 1 : shift]. Address fields are stored from
   * bit 12 (or 2, 4, 5, 6) up, but the spec talks about the address itself: `Address[63:12]`.
   */
  readonly shift?: number;
  /** Enumerated encodings, value to the spec's name. */
  readonly values?: Readonly<Record<number, string>>;
  /** The name Linux's arm-smmu-v3 driver uses where it differs, for grep-ability. */
  readonly linux?: string;
  /** One line of meaning. */
  readonly doc?: string;
}

/** A field whose name is known to the type system (tables give typed access by name). */
export type NamedField<N extends string> = Field & { readonly name: N };

/** Everything of a Field beyond its name and position. */
export type FieldExtra = Omit<Field, 'name' | 'lsb' | 'width'>;

/**
 * One table row as the spec prints it: `field('ERR', 30, 24)` is bits [30:24]; a single bit
 * needs only `hi`. Every register, structure and command table builds its rows with this.
 */
export function field<const N extends string>(name: N, hi: number, lo: number = hi, extra: FieldExtra = {}): NamedField<N> {
  return Object.freeze({ name, lsb: lo, width: hi - lo + 1, ...extra });
}

/** An address field ADDR[hi:lo]: its value is the address itself, with the low `lo` bits zero. */
export function addressField<const N extends string>(name: N, hi: number, lo: number, extra: FieldExtra = {}): NamedField<N> {
  return field(name, hi, lo, { shift: lo, ...extra });
}

/** A fixed-size structure described by its fields. */
export interface Layout {
  readonly name: string;
  /** Size in bytes: a multiple of 4. */
  readonly bytes: number;
  /** The spec section that defines the layout. */
  readonly section: string;
  readonly fields: readonly Field[];
}

/** True when a field's value needs a bigint (more than 32 value bits). */
export function isWide(f: Field): boolean {
  return f.width + (f.shift ?? 0) > 32;
}

/** Mask of the low `width` bits, width 0..32, as an unsigned number. */
export function lowMask(width: number): number {
  return width >= 32 ? 0xffff_ffff : (1 << width) - 1 >>> 0;
}

/**
 * Read `width` (≤ 32) bits starting at flat bit `lsb` of `words[base..]`. The field may straddle
 * one word boundary. Returns an unsigned number.
 */
export function getBits(words: Words, lsb: number, width: number, base = 0): number {
  const w = base + (lsb >>> 5);
  const s = lsb & 31;
  let v = (words[w] ?? 0) >>> s;
  if (s + width > 32) v |= (words[w + 1] ?? 0) << (32 - s);
  return (v & lowMask(width)) >>> 0;
}

/** Write `width` (≤ 32) bits of `value` at flat bit `lsb`; other bits are kept. */
export function setBits(words: Words, lsb: number, width: number, value: number, base = 0): void {
  const w = base + (lsb >>> 5);
  const s = lsb & 31;
  const m = lowMask(width);
  const v = (value & m) >>> 0;
  const loMask = (m << s) >>> 0;
  words[w] = ((((words[w] ?? 0) & ~loMask) | (v << s)) >>> 0);
  if (s + width > 32) {
    const hiBits = s + width - 32;
    const hiMask = lowMask(hiBits);
    words[w + 1] = ((((words[w + 1] ?? 0) & ~hiMask) | (v >>> (32 - s))) >>> 0);
  }
}

/** Read any width of bits as a bigint (API edge only). */
export function getBitsBig(words: Words, lsb: number, width: number, base = 0): bigint {
  let out = 0n;
  let done = 0;
  while (done < width) {
    const chunk = Math.min(32 - ((lsb + done) & 31), width - done);
    out |= BigInt(getBits(words, lsb + done, chunk, base)) << BigInt(done);
    done += chunk;
  }
  return out;
}

/** Write any width of bits from a bigint (API edge only). Bits above `width` are dropped. */
export function setBitsBig(words: Words, lsb: number, width: number, value: bigint, base = 0): void {
  let done = 0;
  while (done < width) {
    const chunk = Math.min(32 - ((lsb + done) & 31), width - done);
    setBits(words, lsb + done, chunk, Number((value >> BigInt(done)) & BigInt(lowMask(chunk))), base);
    done += chunk;
  }
}

/** Read a field's value (shift applied). A number up to 32 value bits, a bigint beyond. */
export function fieldGet(words: Words, f: Field, base = 0): FieldValue {
  const shift = f.shift ?? 0;
  if (!isWide(f)) return (getBits(words, f.lsb, f.width, base) << shift) >>> 0;
  return getBitsBig(words, f.lsb, f.width, base) << BigInt(shift);
}

/**
 * Largest value a field can hold (shift applied): for address fields the highest aligned address.
 */
export function fieldMax(f: Field): FieldValue {
  const shift = f.shift ?? 0;
  if (!isWide(f)) return (lowMask(f.width) << shift) >>> 0;
  return ((1n << BigInt(f.width)) - 1n) << BigInt(shift);
}

/**
 * Why a value does not fit a field, or undefined when it does. Values must be non-negative
 * integers, below 2^(width+shift), with the low `shift` bits clear.
 */
export function fieldFitError(f: Field, value: FieldValue): string | undefined {
  const shift = BigInt(f.shift ?? 0);
  let v: bigint;
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) return `${f.name}: ${value} is not a safe integer`;
    v = BigInt(value);
  } else {
    v = value;
  }
  if (v < 0n) return `${f.name}: ${value} is negative`;
  if (v >> (BigInt(f.width) + shift) !== 0n) {
    return `${f.name}: 0x${v.toString(16)} does not fit in ${f.width + Number(shift)} bits`;
  }
  if ((v & ((1n << shift) - 1n)) !== 0n) {
    return `${f.name}: 0x${v.toString(16)} has bits below bit ${shift} set (the field holds [${f.width + Number(shift) - 1}:${shift}])`;
  }
  return undefined;
}

/** Write a field's value (shift applied). Throws a RangeError naming the field if it does not fit. */
export function fieldSet(words: Words, f: Field, value: FieldValue, base = 0): void {
  const err = fieldFitError(f, value);
  if (err !== undefined) throw new RangeError(err);
  const shift = f.shift ?? 0;
  if (!isWide(f) && typeof value === 'number') {
    setBits(words, f.lsb, f.width, value >>> shift, base);
  } else {
    setBitsBig(words, f.lsb, f.width, BigInt(value) >> BigInt(shift), base);
  }
}

/** Per-word mask of the bits a set of fields covers. */
export function coverMask(fields: readonly Field[], words: number): Uint32Array {
  const m = new Uint32Array(words);
  for (const f of fields) {
    for (let b = f.lsb; b < f.lsb + f.width; b++) m[b >>> 5]! |= 1 << (b & 31);
  }
  return m;
}

/** Flat positions of every set bit outside `mask`, ascending. */
export function bitsOutside(words: Words, mask: Uint32Array, base = 0): number[] {
  const out: number[] = [];
  for (let i = 0; i < mask.length; i++) {
    let extra = ((words[base + i] ?? 0) & ~mask[i]!) >>> 0;
    while (extra !== 0) {
      const bit = 31 - Math.clz32(extra & -extra);
      out.push(i * 32 + bit);
      extra = (extra & (extra - 1)) >>> 0;
    }
  }
  return out;
}

/** The spec's notation for a field's stored bits: `[79:64]`, or `[11]` for one bit. */
export function bitRange(f: Field): string {
  const hi = f.lsb + f.width - 1;
  return hi === f.lsb ? `[${hi}]` : `[${hi}:${f.lsb}]`;
}

/** A decoded structure: every field by its spec name, plus the set bits no field covers. */
export interface Decoded {
  readonly fields: Record<string, FieldValue>;
  /** Flat bit positions of set bits that are RES0 in this layout. */
  readonly res0: number[];
}

const maskCache = new WeakMap<Layout, Uint32Array>();

/** The bits a layout defines, per word (cached). */
export function layoutMask(layout: Layout): Uint32Array {
  let m = maskCache.get(layout);
  if (m === undefined) {
    m = coverMask(layout.fields, layout.bytes / 4);
    maskCache.set(layout, m);
  }
  return m;
}

/** Decode every field of a layout from words; never throws. */
export function decodeLayout(layout: Layout, words: Words, base = 0): Decoded {
  const fields: Record<string, FieldValue> = {};
  for (const f of layout.fields) fields[f.name] = fieldGet(words, f, base);
  return { fields, res0: bitsOutside(words, layoutMask(layout), base) };
}

/**
 * Encode named field values into a fresh word array of the layout's size. Unknown names and
 * values that do not fit throw a RangeError that names the field: this is an API for people.
 */
export function encodeLayout(layout: Layout, values: Readonly<Record<string, FieldValue>>): Uint32Array {
  const words = new Uint32Array(layout.bytes / 4);
  for (const [name, value] of Object.entries(values)) {
    const f = layout.fields.find((x) => x.name === name);
    if (f === undefined) {
      throw new RangeError(`${layout.name} has no field ${name} (fields: ${layout.fields.map((x) => x.name).join(', ')})`);
    }
    fieldSet(words, f, value);
  }
  return words;
}

/** Field lookup by name; throws if the table has no such field (a programming error). */
export function fieldOf(layout: Layout, name: string): Field {
  const f = layout.fields.find((x) => x.name === name);
  if (f === undefined) throw new Error(`${layout.name}: no field ${name}`);
  return f;
}

/** Format a value the way the CLI and docs print it: decimal below 10, hex otherwise. */
export function formatValue(v: FieldValue): string {
  if (typeof v === 'bigint') return v < 10n ? v.toString() : `0x${v.toString(16)}`;
  return v < 10 ? String(v) : `0x${v.toString(16)}`;
}

/**
 * Mask of a field within the 32-bit word that holds it (bit `lsb & 31` up). For registers and
 * hot paths; the field must not straddle a word boundary.
 */
export function mask32(f: Field): number {
  if ((f.lsb & 31) + f.width > 32) throw new Error(`${f.name} straddles a word boundary`);
  return (lowMask(f.width) << (f.lsb & 31)) >>> 0;
}

/** Index of the 32-bit word that holds a field (0 for bits 31:0, 1 for 63:32, …). */
export function wordOf(f: Field): number {
  return f.lsb >>> 5;
}

/**
 * A field's value (shift applied) as a number, without BigInt, for address fields in hot paths.
 * Exact below 2^53; above, the low bits round away, which never matters for deciding whether an
 * address lies in RAM (no RAM lies that high).
 */
export function fieldGetNumber(words: Words, f: Field, base = 0): number {
  const loWidth = Math.min(32, f.width);
  let v = getBits(words, f.lsb, loWidth, base);
  if (f.width > 32) v += getBits(words, f.lsb + 32, f.width - 32, base) * 0x1_0000_0000;
  return v * 2 ** (f.shift ?? 0);
}
