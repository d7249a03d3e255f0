/**
 * The SMMUv3 in-memory structures as bit layouts (IHI0070 G.b chapter 5 and chapter 8):
 * L1STD (§5.1), STE (§5.2), L1CD (§5.3), CD (§5.4) and the PRI queue record (chapter 8).
 *
 * All of them are little-endian (chapter 5 introduction; chapter 8 introduction). Positions are flat
 * bit numbers over the whole structure, exactly as the spec's field headings print them
 * ("S2TTB, bits [247:196]"); `fld(name, hi, lo)` takes them in that order so each row reads like
 * the spec. Every bit no field names is RES0 (chapter 5 introduction): decode reports such bits in
 * `res0`.
 *
 * Address fields carry a `shift`: the field holds address bits [hi-lo+shift : shift] and the value
 * read or written is the address itself. The spec (G.b, v3.4) sizes them up to bit 55; Linux masks
 * at bit 51 (the `linux` member gives its name, not its width).
 *
 * Two kinds of API:
 * - Whole-structure encode/decode/format (BigInt for wide fields; for people, tests and the CLI).
 * - Hot-path readers on u32 words (steConfig, steS1ContextPtr, cdASID, …) for the device's
 *   per-transaction walk: plain numbers, no BigInt.
 */

import type { Decoded, Field, FieldExtra, FieldValue, Layout, NamedField, Words } from './bits.ts';
import { decodeLayout, encodeLayout, field, formatValue, getBits, isWide } from './bits.ts';

// ---------------------------------------------------------------------------------------------
// Typed layouts
// ---------------------------------------------------------------------------------------------

/** A field whose name is a literal type. */
export type { NamedField, FieldExtra };

/** Everything a field row states besides its name and position. */

/**
 * A layout whose field names the type checker knows: `STE.f.Config` is a Field and `STE.f.Bogus`
 * does not compile.
 */
export type TypedLayout<N extends string> = Layout & {
  readonly fields: readonly NamedField<N>[];
  /** Every field by its spec name. */
  readonly f: Readonly<{ [K in N]: NamedField<K> }>;
  /** Fields formatStructure prints even when zero (validity and mode: V, Config, Span). */
  readonly always: readonly N[];
  /** Fields whose positions could not be checked against spec text (bit diagram is an image). */
  readonly unverified: readonly N[];
};

/** The field names of a typed layout. */
export type FieldName<L> = L extends TypedLayout<infer N> ? N : never;

/** A decoded structure with its fields typed by name. */
export interface StructureDecoded<N extends string = string> extends Decoded {
  readonly fields: Record<N, FieldValue>;
}

/** One field row: name and position as the spec prints them, `[hi:lo]` (bits.ts `field`). */
export function fld<N extends string>(name: N, hi: number, lo: number, extra: FieldExtra = {}): NamedField<N> {
  return field(name, hi, lo, extra);
}

/** The sixteen indices of the spec's per-index field families (S2POI<p>, PIIU<p>, PIIP<p>). */
export type Index16 = '0' | '1' | '2' | '3' | '4' | '5' | '6' | '7' | '8' | '9' | '10' | '11' | '12' | '13' | '14' | '15';
const INDEX16_COUNT = 16;

/**
 * A field family `<prefix><p>`, p = 0..15, each `width` bits with field p at flat bit
 * `lsb0 + width * p` (e.g. S2POI<p> at [4p+451:4p+448]).
 */
export function fieldFamily<P extends string>(prefix: P, lsb0: number, width: number, extra: FieldExtra = {}): NamedField<`${P}${Index16}`>[] {
  const out: NamedField<`${P}${Index16}`>[] = [];
  for (let p = 0; p < INDEX16_COUNT; p++) {
    const lo = lsb0 + width * p;
    out.push(fld(`${prefix}${p}` as `${P}${Index16}`, lo + width - 1, lo, extra));
  }
  return out;
}

/** Build a frozen typed layout from its field rows. */
export function defineLayout<N extends string>(
  name: string,
  bytes: number,
  section: string,
  fields: readonly NamedField<N>[],
  opts: { readonly always?: readonly N[]; readonly unverified?: readonly N[] } = {},
): TypedLayout<N> {
  const f: Partial<Record<N, NamedField<N>>> = {};
  for (const x of fields) f[x.name] = x;
  return Object.freeze({
    name,
    bytes,
    section,
    fields: Object.freeze(fields.slice()),
    f: Object.freeze(f) as { [K in N]: NamedField<K> },
    always: Object.freeze((opts.always ?? []).slice()),
    unverified: Object.freeze((opts.unverified ?? []).slice()),
  });
}

// ---------------------------------------------------------------------------------------------
// Shared enumerations
// ---------------------------------------------------------------------------------------------

/** Output/intermediate address size encodings: STE.S2PS (§5.2), CD.IPS (§5.4), as bits. */
export const ADDRESS_SIZE_BITS: readonly number[] = Object.freeze([32, 36, 40, 42, 44, 48, 52, 56]);

/**
 * STE.S2PS / CD.IPS values. 0b110 is Reserved (behaves as 0b101) in v3.0; 0b111 is Reserved before
 * v3.4 (behaves as 0b110 in v3.1–v3.3) (§5.2 S2PS, §5.4 IPS).
 */
const PS_VALUES: Readonly<Record<number, string>> = Object.freeze(
  Object.fromEntries(ADDRESS_SIZE_BITS.map((b, i) => [i, `${b}_BITS`])),
);

/** Memory region cacheability of table walks: STE.S2IR0/S2OR0 (§5.2), CD.IRx/ORx (§5.4). */
const WALK_CACHE_VALUES: Readonly<Record<number, string>> = Object.freeze({
  0: 'NC',
  1: 'WB_RA_WA',
  2: 'WT_RA',
  3: 'WB_RA_NOWA',
});

/** Shareability: STE.S1CSH, STE.S2SH0 (§5.2), CD.SHx (§5.4). 0b01 is Reserved (behaves as NSH). */
const SH_VALUES: Readonly<Record<number, string>> = Object.freeze({ 0: 'NSH', 1: 'RESERVED', 2: 'OSH', 3: 'ISH' });

/** Translation granule of STE.S2TG and STE.S_S2TG (§5.2) and CD.TG0 (§5.4). */
export const TG0_4KB = 0b00;
export const TG0_64KB = 0b01;
export const TG0_16KB = 0b10;
const TG0_VALUES: Readonly<Record<number, string>> = Object.freeze({
  [TG0_4KB]: '4KB',
  [TG0_64KB]: '64KB',
  [TG0_16KB]: '16KB',
  3: 'RESERVED',
});

/** CD.TG1 (§5.4): a different encoding from TG0, as in TCR_ELx.TG1. 0b00 is Reserved. */
export const TG1_16KB = 0b01;
export const TG1_4KB = 0b10;
export const TG1_64KB = 0b11;
const TG1_VALUES: Readonly<Record<number, string>> = Object.freeze({
  0: 'RESERVED',
  [TG1_16KB]: '16KB',
  [TG1_4KB]: '4KB',
  [TG1_64KB]: '64KB',
});

// ---------------------------------------------------------------------------------------------
// STE enumerations (§5.2)
// ---------------------------------------------------------------------------------------------

/**
 * STE.Config (§5.2). 0b0xx other than 0b000 is Reserved and behaves as 0b000 (abort, no event).
 * Config[0] set with Config[2] set means stage 1 translates; Config[1] likewise for stage 2.
 */
export const STE_CONFIG = Object.freeze({
  ABORT: 0b000,
  BYPASS: 0b100,
  S1_TRANS: 0b101,
  S2_TRANS: 0b110,
  NESTED: 0b111,
} as const);
const CONFIG_VALUES: Readonly<Record<number, string>> = Object.freeze({
  [STE_CONFIG.ABORT]: 'ABORT',
  0b001: 'RESERVED',
  0b010: 'RESERVED',
  0b011: 'RESERVED',
  [STE_CONFIG.BYPASS]: 'BYPASS',
  [STE_CONFIG.S1_TRANS]: 'S1_TRANS',
  [STE_CONFIG.S2_TRANS]: 'S2_TRANS',
  [STE_CONFIG.NESTED]: 'NESTED',
});

/** STE.S1Fmt (§5.2). 0b11 is Reserved (behaves as 0b00). */
export const STE_S1FMT = Object.freeze({ LINEAR: 0b00, L2_4K: 0b01, L2_64K: 0b10 } as const);
const S1FMT_VALUES: Readonly<Record<number, string>> = Object.freeze({
  [STE_S1FMT.LINEAR]: 'LINEAR',
  [STE_S1FMT.L2_4K]: 'L2_4K',
  [STE_S1FMT.L2_64K]: 'L2_64K',
  3: 'RESERVED',
});

/** STE.S1DSS (§5.2). 0b11 is Reserved (behaves as 0b00). */
export const STE_S1DSS = Object.freeze({ TERMINATE: 0b00, BYPASS: 0b01, SSID0: 0b10 } as const);
const S1DSS_VALUES: Readonly<Record<number, string>> = Object.freeze({
  [STE_S1DSS.TERMINATE]: 'TERMINATE',
  [STE_S1DSS.BYPASS]: 'BYPASS',
  [STE_S1DSS.SSID0]: 'SSID0',
  3: 'RESERVED',
});

/** STE.S1CIR / S1COR (§5.2): CD fetch cacheability. */
const CD_FETCH_CACHE_VALUES: Readonly<Record<number, string>> = Object.freeze({
  0: 'NC',
  1: 'WB_RA',
  2: 'WT_RA',
  3: 'WB_NORA',
});

/** STE.EATS (§5.2). */
export const STE_EATS = Object.freeze({ ABORT: 0b00, FULL_ATS: 0b01, SPLIT_STAGE: 0b10, FULL_ATS_DPT: 0b11 } as const);
const EATS_VALUES: Readonly<Record<number, string>> = Object.freeze({
  [STE_EATS.ABORT]: 'ABORT',
  [STE_EATS.FULL_ATS]: 'FULL_ATS',
  [STE_EATS.SPLIT_STAGE]: 'SPLIT_STAGE',
  [STE_EATS.FULL_ATS_DPT]: 'FULL_ATS_DPT',
});

/**
 * STE.STRW (§5.2). For a Non-secure STE: 0b00 NS-EL1, 0b10 NS-EL2 (or NS-EL2-E2H when
 * SMMU_CR2.E2H == 1), 0bx1 Reserved and ILLEGAL. 0b01 is EL3 only in the Secure Stream table.
 */
export const STE_STRW = Object.freeze({ EL1: 0b00, EL3: 0b01, EL2: 0b10 } as const);
const STRW_VALUES: Readonly<Record<number, string>> = Object.freeze({
  [STE_STRW.EL1]: 'EL1',
  [STE_STRW.EL3]: 'EL3',
  [STE_STRW.EL2]: 'EL2',
  3: 'RESERVED',
});

/** STE.SHCFG (§5.2). */
export const STE_SHCFG = Object.freeze({ NSH: 0b00, INCOMING: 0b01, OSH: 0b10, ISH: 0b11 } as const);
const SHCFG_VALUES: Readonly<Record<number, string>> = Object.freeze({ 0: 'NSH', 1: 'INCOMING', 2: 'OSH', 3: 'ISH' });

/** STE.NSCFG for a Secure stream (§5.2); IGNORED in the Non-secure Stream table. */
const NSCFG_VALUES: Readonly<Record<number, string>> = Object.freeze({ 0: 'INCOMING', 1: 'RESERVED', 2: 'SECURE', 3: 'NON_SECURE' });
/** STE.PRIVCFG (§5.2). */
const PRIVCFG_VALUES: Readonly<Record<number, string>> = Object.freeze({ 0: 'INCOMING', 1: 'RESERVED', 2: 'UNPRIVILEGED', 3: 'PRIVILEGED' });
/** STE.INSTCFG (§5.2). */
const INSTCFG_VALUES: Readonly<Record<number, string>> = Object.freeze({ 0: 'INCOMING', 1: 'RESERVED', 2: 'DATA', 3: 'INSTRUCTION' });
/** STE.DPT_VMATCH (§5.2). */
const DPT_VMATCH_VALUES: Readonly<Record<number, string>> = Object.freeze({
  0: 'VMID_OR_AC10',
  1: 'VMID_OR_AC01_AC10',
  2: 'NO_VMID_MATCH',
  3: 'RESERVED',
});

/** STE.S2POI<p> stage 2 permission overlay interpretations (§5.2). 0b0001, 0b0101 give C_BAD_STE. */
const S2POI_VALUES: Readonly<Record<number, string>> = Object.freeze({
  0b0000: 'NoAccess',
  0b0001: 'RESERVED',
  0b0010: 'MRO',
  0b0011: 'MRO-TL1',
  0b0100: 'WO',
  0b0101: 'RESERVED',
  0b0110: 'MRO-TL0',
  0b0111: 'MRO-TL01',
  0b1000: 'RO',
  0b1001: 'RO+uX',
  0b1010: 'RO+pX',
  0b1011: 'RO+puX',
  0b1100: 'RW',
  0b1101: 'RW+uX',
  0b1110: 'RW+pX',
  0b1111: 'RW+puX',
});

// ---------------------------------------------------------------------------------------------
// STE (§5.2)
// ---------------------------------------------------------------------------------------------

/** Size of a Stream Table Entry (§5.2). */
export const STE_BYTES = 64;

/** Stream Table Entry, 64 bytes (§5.2). Every field of the spec's list, in bit order. */
export const STE = defineLayout('STE', STE_BYTES, '5.2', [
  fld('V', 0, 0, { linux: 'STRTAB_STE_0_V', doc: 'STE valid; V == 0 terminates with C_BAD_STE' }),
  fld('Config', 3, 1, { values: CONFIG_VALUES, linux: 'STRTAB_STE_0_CFG', doc: 'Stream configuration: 0b1x1 stage 1 translates, 0b11x stage 2 translates' }),
  fld('S1Fmt', 5, 4, { values: S1FMT_VALUES, linux: 'STRTAB_STE_0_S1FMT', doc: 'CD table format when S1CDMax != 0' }),
  fld('S1ContextPtr', 55, 6, { shift: 6, linux: 'STRTAB_STE_0_S1CTXPTR_MASK', doc: 'CD or L1CD table address (an IPA when stage 2 translates)' }),
  fld('S1CDMax', 63, 59, { linux: 'STRTAB_STE_0_S1CDMAX', doc: 'log2 of the number of CDs; 0 = substreams disabled' }),
  fld('S1DSS', 65, 64, { values: S1DSS_VALUES, linux: 'STRTAB_STE_1_S1DSS', doc: 'Default substream: behaviour of traffic without a SubstreamID' }),
  fld('S1CIR', 67, 66, { values: CD_FETCH_CACHE_VALUES, linux: 'STRTAB_STE_1_S1CIR', doc: 'CD fetch inner cacheability' }),
  fld('S1COR', 69, 68, { values: CD_FETCH_CACHE_VALUES, linux: 'STRTAB_STE_1_S1COR', doc: 'CD fetch outer cacheability' }),
  fld('S1CSH', 71, 70, { values: SH_VALUES, linux: 'STRTAB_STE_1_S1CSH', doc: 'CD fetch shareability' }),
  fld('S2HWU59', 72, 72, { doc: 'Stage 2 descriptor bit [59] has IMPLEMENTATION DEFINED hardware use (PBHA)' }),
  fld('S2HWU60', 73, 73, { doc: 'As S2HWU59, descriptor bit [60]' }),
  fld('S2HWU61', 74, 74, { doc: 'As S2HWU59, descriptor bit [61]' }),
  fld('S2HWU62', 75, 75, { doc: 'As S2HWU59, descriptor bit [62]' }),
  fld('DRE', 76, 76, { doc: 'Destructive Read Enable' }),
  fld('CONT', 80, 77, { doc: 'Contiguous hint: 2^CONT identical STEs' }),
  fld('DCP', 81, 81, { doc: 'Directed Cache Prefetch' }),
  fld('PPAR', 82, 82, { doc: 'PRI auto-responses on overflow carry a PASID' }),
  fld('MEV', 83, 83, { linux: 'STRTAB_STE_1_MEV', doc: 'Merge events arising from terminated transactions' }),
  fld('SW_RESERVED', 87, 84, { doc: 'Reserved for software; IGNORED by the SMMU' }),
  fld('S1PIE', 88, 88, { doc: 'CDs may enable stage 1 permission indirection' }),
  fld('S2FWB', 89, 89, { linux: 'STRTAB_STE_1_S2FWB', doc: 'Stage 2 forced write-back attribute control (as HCR_EL2.FWB)' }),
  fld('S1MPAM', 90, 90, { doc: 'PARTID/PMG from the CD rather than the STE' }),
  fld('S1STALLD', 91, 91, { linux: 'STRTAB_STE_1_S1STALLD', doc: 'Stage 1 stall disable' }),
  fld('EATS', 93, 92, { values: EATS_VALUES, linux: 'STRTAB_STE_1_EATS', doc: 'PCIe ATS: 0b00 abort, 0b01 full, 0b10 split-stage, 0b11 full with DPT' }),
  fld('STRW', 95, 94, { values: STRW_VALUES, linux: 'STRTAB_STE_1_STRW', doc: 'StreamWorld: 0b00 NS-EL1, 0b10 NS-EL2/NS-EL2-E2H (by SMMU_CR2.E2H)' }),
  fld('MemAttr', 99, 96, { doc: 'Memory type override when MTCFG == 1 (stage 2 MemAttr encoding)' }),
  fld('MTCFG', 100, 100, { doc: 'Replace the incoming memory type with MemAttr' }),
  fld('ALLOCCFG', 104, 101, { doc: 'Allocation hints override: 0b0xxx incoming, 0b1RWT override' }),
  fld('SHCFG', 109, 108, { values: SHCFG_VALUES, linux: 'STRTAB_STE_1_SHCFG', doc: 'Shareability override' }),
  fld('NSCFG', 111, 110, { values: NSCFG_VALUES, doc: 'NS attribute override (Secure and Realm streams only)' }),
  fld('PRIVCFG', 113, 112, { values: PRIVCFG_VALUES, doc: 'Privilege attribute override' }),
  fld('INSTCFG', 115, 114, { values: INSTCFG_VALUES, doc: 'Instruction/data attribute override' }),
  fld('IMPDEF_127_116', 127, 116, { doc: 'IMPLEMENTATION DEFINED, bits [127:116]' }),
  fld('S2VMID', 143, 128, { linux: 'STRTAB_STE_2_S2VMID', doc: 'VMID tagging translations of this stream' }),
  fld('IMPDEF_159_144', 159, 144, { doc: 'IMPLEMENTATION DEFINED, bits [159:144]' }),
  fld('S2T0SZ', 165, 160, { linux: 'STRTAB_STE_2_VTCR_S2T0SZ', doc: 'Stage 2 input (IPA) size, as VTCR_EL2.T0SZ' }),
  fld('S2SL0', 167, 166, { linux: 'STRTAB_STE_2_VTCR_S2SL0', doc: 'Stage 2 starting level, as VTCR_EL2.SL0' }),
  fld('S2IR0', 169, 168, { values: WALK_CACHE_VALUES, linux: 'STRTAB_STE_2_VTCR_S2IR0', doc: 'Stage 2 walk inner cacheability' }),
  fld('S2OR0', 171, 170, { values: WALK_CACHE_VALUES, linux: 'STRTAB_STE_2_VTCR_S2OR0', doc: 'Stage 2 walk outer cacheability' }),
  fld('S2SH0', 173, 172, { values: SH_VALUES, linux: 'STRTAB_STE_2_VTCR_S2SH0', doc: 'Stage 2 walk shareability' }),
  fld('S2TG', 175, 174, { values: TG0_VALUES, linux: 'STRTAB_STE_2_VTCR_S2TG', doc: 'Stage 2 granule: 0b00 4KB, 0b01 64KB, 0b10 16KB' }),
  fld('S2PS', 178, 176, { values: PS_VALUES, linux: 'STRTAB_STE_2_VTCR_S2PS', doc: 'Stage 2 output address size' }),
  fld('S2AA64', 179, 179, { linux: 'STRTAB_STE_2_S2AA64', doc: '1: VMSAv8-64 tables; 0: VMSAv8-32 LPAE (or VMSAv9-128 when IDR5.D128)' }),
  fld('S2ENDI', 180, 180, { linux: 'STRTAB_STE_2_S2ENDI', doc: 'Stage 2 table endianness: 1 big-endian' }),
  fld('S2AFFD', 181, 181, { doc: 'Stage 2 Access flag fault disable' }),
  fld('S2PTW', 182, 182, { linux: 'STRTAB_STE_2_S2PTW', doc: 'Protected table walk: stage 1 walks to Device memory fault' }),
  fld('S2HD', 183, 183, { doc: 'Stage 2 hardware update of dirty state' }),
  fld('S2HA', 184, 184, { doc: 'Stage 2 hardware update of the Access flag' }),
  fld('S2S', 185, 185, { linux: 'STRTAB_STE_2_S2S', doc: 'Stage 2 faults stall' }),
  fld('S2R', 186, 186, { linux: 'STRTAB_STE_2_S2R', doc: 'Stage 2 faults are recorded' }),
  fld('S2HAFT', 187, 187, { doc: 'Stage 2 hardware Access flag update in table descriptors' }),
  fld('S2PIE', 188, 188, { doc: 'Stage 2 permission indirection' }),
  fld('S2POE', 189, 189, { doc: 'Stage 2 permission overlay' }),
  fld('DPT_VMATCH', 191, 190, { values: DPT_VMATCH_VALUES, doc: 'VMID matching requirement for DPT checks' }),
  fld('S2NSW', 192, 192, { doc: 'Secure STE: NS of stage 2 walks through S2TTB' }),
  fld('S2NSA', 193, 193, { doc: 'Secure STE: NS output of stage 2 Non-secure IPA translations' }),
  fld('S2SL0_2', 194, 194, { doc: 'Bit [2] of S2SL0 (with S2DS and 4KB granule)' }),
  fld('S2DS', 195, 195, { doc: '52-bit addresses with 4KB/16KB stage 2 granules' }),
  fld('S2TTB', 247, 196, { shift: 4, linux: 'STRTAB_STE_3_S2TTB_MASK', doc: 'Stage 2 translation table base, address bits [55:4]' }),
  fld('S2SKL', 254, 253, { doc: 'Stage 2 skip level (VMSAv9-128 only)' }),
  fld('IMPDEF_271_256', 271, 256, { doc: 'IMPLEMENTATION DEFINED, bits [271:256]' }),
  fld('PARTID', 287, 272, { doc: 'MPAM PARTID for this stream' }),
  fld('S_S2T0SZ', 293, 288, { doc: 'Secure stage 2 input size' }),
  fld('S_S2SL0', 295, 294, { doc: 'Secure stage 2 starting level' }),
  fld('S_S2TG', 303, 302, { values: TG0_VALUES, doc: 'Secure stage 2 granule (encoded as S2TG)' }),
  fld('MECID', 319, 304, { doc: 'Realm STE: MECID' }),
  fld('PMG', 327, 320, { doc: 'MPAM PMG for this stream' }),
  fld('MPAM_NS', 328, 328, { doc: 'Accesses use the Non-secure PARTID space' }),
  fld('AssuredOnly', 329, 329, { doc: 'Stage 2 AssuredOnly checks' }),
  fld('TL0', 330, 330, { doc: 'Stage 2 TopLevel 0 check' }),
  fld('TL1', 331, 331, { doc: 'Stage 2 TopLevel 1 check' }),
  fld('VMSPtr', 375, 332, { shift: 12, doc: 'Virtual Machine Structure address, bits [55:12] (§5.6)' }),
  fld('S2SW', 384, 384, { doc: 'Secure STE: NS of stage 2 walks through S_S2TTB' }),
  fld('S2SA', 385, 385, { doc: 'Secure STE: NS output of stage 2 Secure IPA translations' }),
  fld('S_S2SL0_2', 386, 386, { doc: 'Bit [2] of S_S2SL0' }),
  fld('S_S2TTB', 439, 388, { shift: 4, doc: 'Secure stage 2 translation table base, address bits [55:4]' }),
  fld('S_S2SKL', 446, 445, { doc: 'Secure stage 2 skip level (VMSAv9-128 only)' }),
  ...fieldFamily('S2POI', 448, 4, { values: S2POI_VALUES, doc: 'Stage 2 permission overlay interpretation, indexed by POIndex' }),
], { always: ['V', 'Config'] });

/** The STE's fields by spec name, for hot-path reads: `getBits(words, STE_F.Config.lsb, …)`. */
export const STE_F = STE.f;

// ---------------------------------------------------------------------------------------------
// L1STD (§5.1)
// ---------------------------------------------------------------------------------------------

/** Size of a Level 1 Stream Table Descriptor (§5.1). */
export const L1STD_BYTES = 8;

/**
 * Span values 1..11 are valid: the level 2 array holds 2^(Span-1) STEs. 0 marks the descriptor
 * invalid; 12..31 are Reserved and behave as 0 (§5.1).
 */
export const L1STD_SPAN_MAX = 11;

/** Level 1 Stream Table Descriptor, 8 bytes (§5.1). */
export const L1STD = defineLayout('L1STD', L1STD_BYTES, '5.1', [
  fld('Span', 4, 0, { linux: 'STRTAB_L1_DESC_SPAN', doc: 'Level 2 array holds 2^(Span-1) STEs; 0 invalid; 12..31 Reserved (as 0)' }),
  fld('L2Ptr', 55, 6, { shift: 6, linux: 'STRTAB_L1_DESC_L2PTR_MASK', doc: 'Level 2 array address; bits [5+Span-1:0] treated as 0' }),
], { always: ['Span'] });

export const L1STD_F = L1STD.f;

// ---------------------------------------------------------------------------------------------
// L1CD (§5.3)
// ---------------------------------------------------------------------------------------------

/** Size of a Level 1 Context Descriptor (§5.3). */
export const L1CD_BYTES = 8;

/** Level 1 Context Descriptor, 8 bytes (§5.3). */
export const L1CD = defineLayout('L1CD', L1CD_BYTES, '5.3', [
  fld('V', 0, 0, { linux: 'CTXDESC_L1_DESC_V', doc: 'L2Ptr valid; V == 0 terminates with C_BAD_SUBSTREAMID' }),
  fld('L2Ptr', 55, 12, { shift: 12, linux: 'CTXDESC_L1_DESC_L2PTR_MASK', doc: 'Level 2 CD table address (an IPA when stage 2 translates)' }),
], { always: ['V'] });

export const L1CD_F = L1CD.f;

// ---------------------------------------------------------------------------------------------
// CD (§5.4)
// ---------------------------------------------------------------------------------------------

/** Size of a Context Descriptor (§5.4). */
export const CD_BYTES = 64;

/** CD.PIIU<p> / PIIP<p> base permission interpretations (§5.4); other values give C_BAD_CD. */
const PII_VALUES: Readonly<Record<number, string>> = Object.freeze({
  0b000: 'NoAccess',
  0b001: 'R',
  0b010: 'X',
  0b011: 'RX',
  0b100: 'RESERVED',
  0b101: 'RW',
  0b110: 'RESERVED',
  0b111: 'RWX',
});

/** Context Descriptor, 64 bytes (§5.4). Every field of the spec's list, in bit order. */
export const CD = defineLayout('CD', CD_BYTES, '5.4', [
  fld('T0SZ', 5, 0, { linux: 'CTXDESC_CD_0_TCR_T0SZ', doc: 'Size of the VA region covered by TTB0, as TCR_ELx.T0SZ' }),
  fld('TG0', 7, 6, { values: TG0_VALUES, linux: 'CTXDESC_CD_0_TCR_TG0', doc: 'TTB0 granule: 0b00 4KB, 0b01 64KB, 0b10 16KB' }),
  fld('IR0', 9, 8, { values: WALK_CACHE_VALUES, linux: 'CTXDESC_CD_0_TCR_IRGN0', doc: 'TTB0 walk inner cacheability' }),
  fld('OR0', 11, 10, { values: WALK_CACHE_VALUES, linux: 'CTXDESC_CD_0_TCR_ORGN0', doc: 'TTB0 walk outer cacheability' }),
  fld('SH0', 13, 12, { values: SH_VALUES, linux: 'CTXDESC_CD_0_TCR_SH0', doc: 'TTB0 walk shareability' }),
  fld('EPD0', 14, 14, { linux: 'CTXDESC_CD_0_TCR_EPD0', doc: 'TTB0 walks disabled' }),
  fld('ENDI', 15, 15, { linux: 'CTXDESC_CD_0_ENDI', doc: 'Table endianness: 1 big-endian' }),
  fld('T1SZ', 21, 16, { doc: 'Size of the VA region covered by TTB1' }),
  fld('TG1', 23, 22, { values: TG1_VALUES, doc: 'TTB1 granule: 0b01 16KB, 0b10 4KB, 0b11 64KB (not the TG0 encoding)' }),
  fld('IR1', 25, 24, { values: WALK_CACHE_VALUES, doc: 'TTB1 walk inner cacheability' }),
  fld('OR1', 27, 26, { values: WALK_CACHE_VALUES, doc: 'TTB1 walk outer cacheability' }),
  fld('SH1', 29, 28, { values: SH_VALUES, doc: 'TTB1 walk shareability' }),
  fld('EPD1', 30, 30, { linux: 'CTXDESC_CD_0_TCR_EPD1', doc: 'TTB1 walks disabled' }),
  fld('V', 31, 31, { linux: 'CTXDESC_CD_0_V', doc: 'CD valid; V == 0 terminates with C_BAD_CD' }),
  fld('IPS', 34, 32, { values: PS_VALUES, linux: 'CTXDESC_CD_0_TCR_IPS', doc: 'Stage 1 output (IPA) size, as TCR_ELx.PS' }),
  fld('AFFD', 35, 35, { doc: 'Access flag fault disable' }),
  fld('WXN', 36, 36, { doc: 'Write implies execute-never' }),
  fld('UWXN', 37, 37, { doc: 'Unprivileged write implies privileged execute-never (VMSAv8-32)' }),
  fld('TBI0', 38, 38, { linux: 'CTXDESC_CD_0_TCR_TBI0', doc: 'Top byte ignore, TTB0 region' }),
  fld('TBI1', 39, 39, { doc: 'Top byte ignore, TTB1 region' }),
  fld('PAN', 40, 40, { doc: 'Privileged access never' }),
  fld('AA64', 41, 41, { linux: 'CTXDESC_CD_0_AA64', doc: '1: VMSAv8-64 tables; 0: VMSAv8-32 LPAE (or VMSAv9-128 when IDR5.D128)' }),
  fld('HD', 42, 42, { linux: 'CTXDESC_CD_0_TCR_HD', doc: 'Hardware update of dirty state' }),
  fld('HA', 43, 43, { linux: 'CTXDESC_CD_0_TCR_HA', doc: 'Hardware update of the Access flag' }),
  fld('S', 44, 44, { linux: 'CTXDESC_CD_0_S', doc: 'Stage 1 faults stall (§5.5)' }),
  fld('R', 45, 45, { linux: 'CTXDESC_CD_0_R', doc: 'Stage 1 faults are recorded (§5.5)' }),
  fld('A', 46, 46, { linux: 'CTXDESC_CD_0_A', doc: 'Terminated transactions abort rather than RAZ/WI (§5.5)' }),
  fld('ASET', 47, 47, { linux: 'CTXDESC_CD_0_ASET', doc: 'ASID in the non-shared set (not invalidated by broadcast TLBI by ASID)' }),
  fld('ASID', 63, 48, { linux: 'CTXDESC_CD_0_ASID', doc: 'Address space identifier' }),
  fld('NSCFG0', 64, 64, { doc: 'Secure STE: NS of the starting-level TTB0 access' }),
  fld('HAD0', 65, 65, { doc: 'Hierarchical attribute disable, TTB0 (DisCH0 when SMMU_IDR5.D128 == 1)' }),
  fld('E0PD0', 66, 66, { doc: 'Unprivileged access to the TTB0 region faults' }),
  fld('HAFT', 67, 67, { doc: 'Hardware Access flag update in table descriptors' }),
  fld('TTB0', 119, 68, { shift: 4, linux: 'CTXDESC_CD_1_TTB0_MASK', doc: 'TTB0 translation table base, address bits [55:4]' }),
  fld('PnCH', 122, 122, { doc: 'Stage 1 Protected attribute enable' }),
  fld('EPAN', 123, 123, { doc: 'Enhanced PAN' }),
  fld('HWU059', 124, 124, { doc: 'TTB0 descriptor bit [59] has hardware use (PBHA)' }),
  fld('HWU060', 125, 125, { doc: 'TTB0 descriptor bit [60] has hardware use' }),
  fld('HWU061', 126, 126, { doc: 'TTB0 descriptor bit [61] has hardware use (SKL0[0] when SMMU_IDR5.D128 == 1)' }),
  fld('HWU062', 127, 127, { doc: 'TTB0 descriptor bit [62] has hardware use (SKL0[1] when SMMU_IDR5.D128 == 1)' }),
  fld('NSCFG1', 128, 128, { doc: 'Secure STE: NS of the starting-level TTB1 access' }),
  fld('HAD1', 129, 129, { doc: 'Hierarchical attribute disable, TTB1 (DisCH1 when SMMU_IDR5.D128 == 1)' }),
  fld('E0PD1', 130, 130, { doc: 'Unprivileged access to the TTB1 region faults' }),
  fld('AIE', 131, 131, { doc: 'Stage 1 attribute index extension (AttrIndx[3])' }),
  fld('TTB1', 183, 132, { shift: 4, doc: 'TTB1 translation table base, address bits [55:4]' }),
  fld('DS', 186, 186, { doc: '52-bit addresses with 4KB/16KB granules' }),
  fld('PIE', 187, 187, { doc: 'Stage 1 permission indirection' }),
  fld('HWU159', 188, 188, { doc: 'TTB1 descriptor bit [59] has hardware use (PBHA)' }),
  fld('HWU160', 189, 189, { doc: 'TTB1 descriptor bit [60] has hardware use' }),
  fld('HWU161', 190, 190, { doc: 'TTB1 descriptor bit [61] has hardware use (SKL1[0] when SMMU_IDR5.D128 == 1)' }),
  fld('HWU162', 191, 191, { doc: 'TTB1 descriptor bit [62] has hardware use (SKL1[1] when SMMU_IDR5.D128 == 1)' }),
  fld('MAIR0', 223, 192, { doc: 'MAIR bits [31:0] (Linux writes the whole 64-bit MAIR into dword 3)' }),
  fld('MAIR1', 255, 224, { doc: 'MAIR bits [63:32]' }),
  fld('AMAIR0', 287, 256, { doc: 'AMAIR bits [31:0], IMPLEMENTATION DEFINED content' }),
  fld('AMAIR1', 319, 288, { doc: 'AMAIR bits [63:32]' }),
  fld('IMPDEF_351_320', 351, 320, { doc: 'IMPLEMENTATION DEFINED, bits [351:320]' }),
  fld('PARTID', 367, 352, { doc: 'MPAM PARTID (virtual when nested, STE.S1MPAM == 1)' }),
  fld('PMG', 375, 368, { doc: 'MPAM PMG' }),
  ...fieldFamily('PIIU', 384, 3, { values: PII_VALUES, doc: 'Stage 1 unprivileged base permission interpretation, indexed by PIIndex' }),
  ...fieldFamily('PIIP', 448, 3, { values: PII_VALUES, doc: 'Stage 1 privileged base permission interpretation, indexed by PIIndex' }),
], { always: ['V'] });

export const CD_F = CD.f;

// ---------------------------------------------------------------------------------------------
// PRI queue record (chapter 8)
// ---------------------------------------------------------------------------------------------

/** Size of a PRI queue record (chapter 8). */
export const PRI_RECORD_BYTES = 16;

/**
 * PRI queue record, 16 bytes (chapter 8). The spec's bit diagram is an image: the field list is
 * the spec's, the positions are Linux's (PRIQ_*), so every position is unverified.
 */
export const PRI_RECORD = defineLayout('PRI_RECORD', PRI_RECORD_BYTES, '8', [
  fld('StreamID', 31, 0, { linux: 'PRIQ_0_SID', doc: 'Requester; StreamID[15:0] == PCIe RequesterID' }),
  fld('SubstreamID', 51, 32, { linux: 'PRIQ_0_SSID', doc: 'PASID; UNKNOWN when SSV == 0' }),
  fld('Priv', 58, 58, { linux: 'PRIQ_0_PERM_PRIV', doc: 'Privileged access requested' }),
  fld('X', 59, 59, { linux: 'PRIQ_0_PERM_EXEC', doc: 'Execute requested' }),
  fld('R', 60, 60, { linux: 'PRIQ_0_PERM_READ', doc: 'Read requested' }),
  fld('W', 61, 61, { linux: 'PRIQ_0_PERM_WRITE', doc: 'Write requested' }),
  fld('Last', 62, 62, { linux: 'PRIQ_0_PRG_LAST', doc: 'Last request of its Page Request Group' }),
  fld('SSV', 63, 63, { linux: 'PRIQ_0_SSID_V', doc: 'The request had a PASID TLP prefix' }),
  fld('PRGIndex', 72, 64, { linux: 'PRIQ_1_PRG_IDX', doc: 'Page Request Group index' }),
  fld('PageAddress', 127, 76, { shift: 12, linux: 'PRIQ_1_ADDR_MASK', doc: 'Page address[63:12]' }),
], { unverified: ['StreamID', 'SubstreamID', 'Priv', 'X', 'R', 'W', 'Last', 'SSV', 'PRGIndex', 'PageAddress'] });

export const PRI_F = PRI_RECORD.f;

/** Every structure layout of this module, by name. */
export const STRUCTURES = Object.freeze({ STE, L1STD, CD, L1CD, PRI_RECORD });

// ---------------------------------------------------------------------------------------------
// Bytes and words
// ---------------------------------------------------------------------------------------------

/**
 * Little-endian bytes to u32 words, independent of host byte order. `count` words are produced
 * (default: all whole words from `byteOffset`); bytes beyond the input read as 0.
 */
export function bytesToWords(bytes: Uint8Array, byteOffset = 0, count = Math.floor(Math.max(0, bytes.length - byteOffset) / 4)): Uint32Array {
  const out = new Uint32Array(count);
  for (let i = 0; i < count; i++) {
    const b = byteOffset + 4 * i;
    out[i] = ((bytes[b] ?? 0) | ((bytes[b + 1] ?? 0) << 8) | ((bytes[b + 2] ?? 0) << 16) | ((bytes[b + 3] ?? 0) << 24)) >>> 0;
  }
  return out;
}

/** Words of a structure, from words (with `base` a word index) or bytes (`base` a byte offset). */
function structureWords(layout: Layout, data: Words | Uint8Array, base: number): { words: Words; base: number } {
  if (data instanceof Uint8Array) return { words: bytesToWords(data, base, layout.bytes / 4), base: 0 };
  return { words: data, base };
}

// ---------------------------------------------------------------------------------------------
// Whole-structure encode / decode / format (API edge: BigInt for wide fields)
// ---------------------------------------------------------------------------------------------

/**
 * Decode every field of `layout` from u32 words (`base` = index of the structure's first word) or
 * from little-endian bytes (`base` = byte offset). Never throws: missing words read as 0.
 */
export function decodeStructure<N extends string>(layout: TypedLayout<N>, data: Words | Uint8Array, base?: number): StructureDecoded<N>;
export function decodeStructure(layout: Layout, data: Words | Uint8Array, base?: number): StructureDecoded;
export function decodeStructure(layout: Layout, data: Words | Uint8Array, base = 0): StructureDecoded {
  const src = structureWords(layout, data, base);
  return decodeLayout(layout, src.words, src.base);
}

/**
 * Encode named field values into fresh words of the layout's size; unnamed fields are 0. Unknown
 * names and values that do not fit throw a RangeError naming the field.
 */
export function encodeStructure<N extends string>(layout: TypedLayout<N>, values: Readonly<Partial<Record<N, FieldValue>>>): Uint32Array;
/** Untyped layouts (no `f` record) take any names and are checked at run time. */
export function encodeStructure(layout: Layout & { readonly f?: never }, values: Readonly<Record<string, FieldValue | undefined>>): Uint32Array;
export function encodeStructure(layout: Layout, values: Readonly<Record<string, FieldValue | undefined>>): Uint32Array {
  const defined: Record<string, FieldValue> = {};
  for (const [k, v] of Object.entries(values)) if (v !== undefined) defined[k] = v;
  return encodeLayout(layout, defined);
}

function isZero(v: FieldValue): boolean {
  return typeof v === 'bigint' ? v === 0n : v === 0;
}

/** Hex for addresses (shifted or wide fields), whatever their size. */
function isAddressLike(f: Field): boolean {
  return (f.shift ?? 0) > 0 || isWide(f);
}

/** One field value the way formatStructure prints it: enums by name, addresses in hex. */
export function formatFieldValue(f: Field, v: FieldValue): string {
  if (f.values !== undefined) {
    const name = f.values[Number(v)] ?? 'UNKNOWN';
    return `${name} (0b${v.toString(2).padStart(f.width, '0')})`;
  }
  if (isAddressLike(f)) return `0x${v.toString(16)}`;
  return formatValue(v);
}

/**
 * One line per non-zero field (plus the layout's always-printed fields such as V and Config), in
 * bit order, e.g. `Config=S1_TRANS (0b101)`, `S1ContextPtr=0x81000000`; a last line lists set
 * RES0 bits if any.
 */
export function formatStructure(layout: Layout & { readonly always?: readonly string[] }, decoded: Decoded): string[] {
  const always = new Set<string>(layout.always ?? []);
  const lines: string[] = [];
  for (const f of layout.fields) {
    const v = decoded.fields[f.name];
    if (v === undefined) continue;
    if (isZero(v) && !always.has(f.name)) continue;
    lines.push(`${f.name}=${formatFieldValue(f, v)}`);
  }
  if (decoded.res0.length > 0) lines.push(`RES0 bits set: ${decoded.res0.join(', ')}`);
  return lines;
}

/** JSON-safe values: numbers stay numbers, bigints (fields wider than 32 bits) become "0x…". */
export type JsonFieldValue = number | string;

/** A JSON-safe decoded structure. */
export function structureToJson(decoded: Decoded): { fields: Record<string, JsonFieldValue>; res0: number[] } {
  const fields: Record<string, JsonFieldValue> = {};
  for (const [k, v] of Object.entries(decoded.fields)) fields[k] = typeof v === 'bigint' ? `0x${v.toString(16)}` : v;
  return { fields, res0: decoded.res0.slice() };
}

// ---------------------------------------------------------------------------------------------
// Hot-path readers: u32 words, plain numbers, no BigInt
// ---------------------------------------------------------------------------------------------

/**
 * An address field's value (shift applied) as a number, without BigInt. Exact while the address
 * is below 2^53, which every address within a 52-bit OAS is; callers check the OAS range on the
 * result. `base` is the index of the structure's first word.
 */
export function readAddress(words: Words, f: Field, base = 0): number {
  let v = 0;
  let done = 0;
  let scale = 2 ** (f.shift ?? 0);
  while (done < f.width) {
    const chunk = Math.min(32 - ((f.lsb + done) & 31), f.width - done);
    v += getBits(words, f.lsb + done, chunk, base) * scale;
    scale *= 2 ** chunk;
    done += chunk;
  }
  return v;
}

/**
 * Bits [63:32] of an address field's value (shift applied), exact for any address: the OAS range
 * check of addresses above 2^53 reads these rather than the rounded readAddress result.
 */
export function readAddressHi(words: Words, f: Field, base = 0): number {
  const shift = f.shift ?? 0;
  const loValueBits = 32 - shift;
  if (f.width <= loValueBits) return 0;
  return getBits(words, f.lsb + loValueBits, Math.min(32, f.width - loValueBits), base);
}

/** STE.V (§5.2). */
export function steValid(words: Words, base = 0): boolean {
  return getBits(words, STE_F.V.lsb, STE_F.V.width, base) !== 0;
}

/** STE.Config (§5.2), 0..7; see STE_CONFIG. */
export function steConfig(words: Words, base = 0): number {
  return getBits(words, STE_F.Config.lsb, STE_F.Config.width, base);
}

/** Config 0b1x1: stage 1 translates (§5.2 Config). */
export function configStage1(config: number): boolean {
  return (config & STE_CONFIG.S1_TRANS) === STE_CONFIG.S1_TRANS;
}

/** Config 0b11x: stage 2 translates (§5.2 Config). */
export function configStage2(config: number): boolean {
  return (config & STE_CONFIG.S2_TRANS) === STE_CONFIG.S2_TRANS;
}

/** STE.S1Fmt (§5.2). */
export function steS1Fmt(words: Words, base = 0): number {
  return getBits(words, STE_F.S1Fmt.lsb, STE_F.S1Fmt.width, base);
}

/** STE.S1CDMax (§5.2). */
export function steS1CDMax(words: Words, base = 0): number {
  return getBits(words, STE_F.S1CDMax.lsb, STE_F.S1CDMax.width, base);
}

/** STE.S1DSS (§5.2). */
export function steS1DSS(words: Words, base = 0): number {
  return getBits(words, STE_F.S1DSS.lsb, STE_F.S1DSS.width, base);
}

/** STE.S1ContextPtr (§5.2) as an address. */
export function steS1ContextPtr(words: Words, base = 0): number {
  return readAddress(words, STE_F.S1ContextPtr, base);
}

/** STE.EATS (§5.2). */
export function steEATS(words: Words, base = 0): number {
  return getBits(words, STE_F.EATS.lsb, STE_F.EATS.width, base);
}

/** STE.STRW (§5.2). */
export function steSTRW(words: Words, base = 0): number {
  return getBits(words, STE_F.STRW.lsb, STE_F.STRW.width, base);
}

/** STE.S2VMID (§5.2). */
export function steS2VMID(words: Words, base = 0): number {
  return getBits(words, STE_F.S2VMID.lsb, STE_F.S2VMID.width, base);
}

/** STE.S2TTB (§5.2) as an address. */
export function steS2TTB(words: Words, base = 0): number {
  return readAddress(words, STE_F.S2TTB, base);
}

/** L1STD.Span (§5.1). */
export function l1stdSpan(words: Words, base = 0): number {
  return getBits(words, L1STD_F.Span.lsb, L1STD_F.Span.width, base);
}

/** L1STD.L2Ptr (§5.1) as an address (before the Span alignment is applied). */
export function l1stdL2Ptr(words: Words, base = 0): number {
  return readAddress(words, L1STD_F.L2Ptr, base);
}

/** L1CD.V (§5.3). */
export function l1cdValid(words: Words, base = 0): boolean {
  return getBits(words, L1CD_F.V.lsb, L1CD_F.V.width, base) !== 0;
}

/** L1CD.L2Ptr (§5.3) as an address. */
export function l1cdL2Ptr(words: Words, base = 0): number {
  return readAddress(words, L1CD_F.L2Ptr, base);
}

/** CD.V (§5.4). */
export function cdValid(words: Words, base = 0): boolean {
  return getBits(words, CD_F.V.lsb, CD_F.V.width, base) !== 0;
}

/** CD.ASID (§5.4). */
export function cdASID(words: Words, base = 0): number {
  return getBits(words, CD_F.ASID.lsb, CD_F.ASID.width, base);
}

/** CD.TTB0 (§5.4) as an address. */
export function cdTTB0(words: Words, base = 0): number {
  return readAddress(words, CD_F.TTB0, base);
}

/** CD.TTB1 (§5.4) as an address. */
export function cdTTB1(words: Words, base = 0): number {
  return readAddress(words, CD_F.TTB1, base);
}
