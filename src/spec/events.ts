/**
 * Event queue records (IHI0070 G.b §7.3): one layout per architected event number.
 *
 * A record is 32 bytes, little-endian; the event number is bits [7:0] and every bit a record's
 * definition does not name is RES0 (§7.3). Most records share dword 0 (EventID, SSV,
 * SubstreamID, StreamID) and reuse the same field positions for the transaction attributes
 * (PnU [97], InD [98], RnW [99]), InputAddr [191:128] and the address in dword 3, so the shared
 * fields are defined once in EVENT_F and each record lists which of them it has.
 *
 * Many record bit diagrams in the machine-readable spec are images. Where a position could not be
 * read from spec text it comes from the fact sheet (shared/reference/smmuv3.md §7, which
 * cross-checks Linux EVTQ_*, QEMU, EDK2 and gem5) and the field is listed in the layout's
 * `unverified` member. GPCF at bit 80 of F_STE_FETCH, F_CD_FETCH, F_VMS_FETCH and F_WALK_EABT is
 * stated in text by §3.25.
 */

import type { Field, FieldValue, Words } from './bits.ts';
import { fieldSet, getBits } from './bits.ts';
import type { Index16, NamedField, StructureDecoded, TypedLayout } from './structures.ts';
import { bytesToWords, decodeStructure, defineLayout, fld } from './structures.ts';

/** Size of an event record (§7.3). */
export const EVENT_BYTES = 32;
/** Size of an event record in u32 words. */
export const EVENT_WORDS = EVENT_BYTES / 4;

/** Architected event numbers (§7.3.2–§7.3.20). */
export const EVT = Object.freeze({
  F_UUT: 0x01,
  C_BAD_STREAMID: 0x02,
  F_STE_FETCH: 0x03,
  C_BAD_STE: 0x04,
  F_BAD_ATS_TREQ: 0x05,
  F_STREAM_DISABLED: 0x06,
  F_TRANSL_FORBIDDEN: 0x07,
  C_BAD_SUBSTREAMID: 0x08,
  F_CD_FETCH: 0x09,
  C_BAD_CD: 0x0a,
  F_WALK_EABT: 0x0b,
  F_TRANSLATION: 0x10,
  F_ADDR_SIZE: 0x11,
  F_ACCESS: 0x12,
  F_PERMISSION: 0x13,
  F_TLB_CONFLICT: 0x20,
  F_CFG_CONFLICT: 0x21,
  E_PAGE_REQUEST: 0x24,
  F_VMS_FETCH: 0x25,
} as const);

/** IMPDEF_EVENTn occupy event numbers 0xE0 + n, n = 0..15 (§7.3.21). */
export const IMPDEF_EVENT_FIRST = 0xe0;
export const IMPDEF_EVENT_LAST = 0xef;

export type ArchitectedEventName = keyof typeof EVT;
export type EventName = ArchitectedEventName | `IMPDEF_EVENT${Index16}`;

/** Linux's names for the event numbers it defines (EVT_ID_*). */
const LINUX_EVENT_NAMES: Readonly<Partial<Record<ArchitectedEventName, string>>> = Object.freeze({
  C_BAD_STREAMID: 'EVT_ID_BAD_STREAMID_CONFIG',
  F_STE_FETCH: 'EVT_ID_STE_FETCH_FAULT',
  C_BAD_STE: 'EVT_ID_BAD_STE_CONFIG',
  F_STREAM_DISABLED: 'EVT_ID_STREAM_DISABLED_FAULT',
  C_BAD_SUBSTREAMID: 'EVT_ID_BAD_SUBSTREAMID_CONFIG',
  F_CD_FETCH: 'EVT_ID_CD_FETCH_FAULT',
  C_BAD_CD: 'EVT_ID_BAD_CD_CONFIG',
  F_TRANSLATION: 'EVT_ID_TRANSLATION_FAULT',
  F_ADDR_SIZE: 'EVT_ID_ADDR_SIZE_FAULT',
  F_ACCESS: 'EVT_ID_ACCESS_FAULT',
  F_PERMISSION: 'EVT_ID_PERMISSION_FAULT',
  F_VMS_FETCH: 'EVT_ID_VMS_FETCH_FAULT',
});

/** CLASS: what the faulting access was for (§7.3). */
export const EVENT_CLASS = Object.freeze({ CD: 0b00, TTD: 0b01, IN: 0b10 } as const);
const CLASS_VALUES: Readonly<Record<number, string>> = Object.freeze({
  [EVENT_CLASS.CD]: 'CD',
  [EVENT_CLASS.TTD]: 'TTD',
  [EVENT_CLASS.IN]: 'IN',
  3: 'RESERVED',
});

// ---------------------------------------------------------------------------------------------
// Shared fields
// ---------------------------------------------------------------------------------------------

/**
 * The fields several records share, at the positions every record that has them uses (§7.3).
 * Hot-path writers set them with setBits on u32 words. Keys are the field names except where one
 * name has two placements: Reason16 [79:64] / Reason32 [95:64] (both named Reason), InputAddr
 * [191:128] / InputAddrPage [191:140] (both named InputAddr), and IMPDEF (IMPDEF_127_112).
 */
export const EVENT_F = Object.freeze({
  EventID: fld('EventID', 7, 0, { linux: 'EVTQ_0_ID', doc: 'Event number' }),
  SSV: fld('SSV', 11, 11, { linux: 'EVTQ_0_SSV', doc: 'SubstreamID valid' }),
  SubstreamID: fld('SubstreamID', 31, 12, { linux: 'EVTQ_0_SSID', doc: 'SubstreamID of the transaction (UNKNOWN when SSV == 0)' }),
  StreamID: fld('StreamID', 63, 32, { linux: 'EVTQ_0_SID', doc: 'StreamID of the transaction' }),
  STAG: fld('STAG', 79, 64, { linux: 'EVTQ_1_STAG', doc: 'Stall tag, for CMD_RESUME / CMD_STALL_TERM' }),
  Reason16: fld('Reason', 79, 64, { doc: 'IMPLEMENTATION DEFINED cause' }),
  Reason32: fld('Reason', 95, 64, { doc: 'IMPLEMENTATION DEFINED cause' }),
  GPCF: fld('GPCF', 80, 80, { doc: 'The abort arose from a Granule Protection Check fault (§3.25.3)' }),
  Stall: fld('Stall', 95, 95, { linux: 'EVTQ_1_STALL', doc: 'The transaction is stalled' }),
  PnU: fld('PnU', 97, 97, { linux: 'EVTQ_1_PnU', doc: '1: privileged' }),
  InD: fld('InD', 98, 98, { linux: 'EVTQ_1_InD', doc: '1: instruction' }),
  RnW: fld('RnW', 99, 99, { linux: 'EVTQ_1_RnW', doc: '1: read, 0: write' }),
  NSIPA: fld('NSIPA', 102, 102, { doc: 'Secure stream, stage 2 fault: the IPA was Non-secure' }),
  S2: fld('S2', 103, 103, { linux: 'EVTQ_1_S2', doc: '1: stage 2 fault' }),
  CLASS: fld('CLASS', 105, 104, { values: CLASS_VALUES, linux: 'EVTQ_1_CLASS', doc: 'Access class: CD fetch, stage 1 table walk, or input address' }),
  TTRnW: fld('TTRnW', 108, 108, { linux: 'EVTQ_1_TT_READ', doc: 'CLASS == TTD: 1 descriptor read, 0 descriptor write caused the fault' }),
  IMPDEF: fld('IMPDEF_127_112', 127, 112, { doc: 'IMPLEMENTATION DEFINED' }),
  InputAddr: fld('InputAddr', 191, 128, { linux: 'EVTQ_2_ADDR', doc: 'Input address of the transaction, all 64 bits' }),
  InputAddrPage: fld('InputAddr', 191, 140, { shift: 12, doc: 'Input address bits [63:12]' }),
  FetchAddr: fld('FetchAddr', 247, 195, { shift: 3, linux: 'EVTQ_3_FETCH_ADDR', doc: 'Physical address of the aborted structure or descriptor fetch, bits [55:3]' }),
  IPA: fld('IPA', 247, 204, { shift: 12, linux: 'EVTQ_3_IPA', doc: 'Stage 2 faults: IPA bits [55:12] (CD or descriptor address for CLASS CD/TTD)' }),
});

const EF = EVENT_F;

/** dword 0 of most records: event number, SSV, SubstreamID, StreamID (§7.3). */
const COMMON = [EF.EventID, EF.SSV, EF.SubstreamID, EF.StreamID] as const;

// ---------------------------------------------------------------------------------------------
// Layouts
// ---------------------------------------------------------------------------------------------

/** An event record layout. */
export type EventLayout<N extends string = string> = TypedLayout<N> & {
  /** Event number; null for the layout of unrecognised numbers. */
  readonly id: number | null;
  /** Linux's EVT_ID_* name where it defines one. */
  readonly linux?: string;
};

/** The EventID field of one record: it names its own number, so a decoded record prints itself. */
function eventIdField(id: number, name: string): NamedField<'EventID'> {
  return fld('EventID', EF.EventID.lsb + EF.EventID.width - 1, EF.EventID.lsb, { linux: EF.EventID.linux, doc: EF.EventID.doc, values: Object.freeze({ [id]: name }) });
}

function archLayout<N extends string>(
  name: ArchitectedEventName,
  section: string,
  fields: readonly NamedField<N>[],
  unverified: readonly N[] = [],
): EventLayout<N | 'EventID'> {
  const id = EVT[name];
  const eventId = eventIdField(id, name);
  const rest = fields.filter((f) => f.name !== 'EventID');
  const layout = defineLayout<N | 'EventID'>(name, EVENT_BYTES, section, [eventId, ...rest], { unverified });
  const linux = LINUX_EVENT_NAMES[name];
  return Object.freeze({ ...layout, id, ...(linux !== undefined ? { linux } : {}) });
}

/** dword 0 of records whose figure is an image, or whose dword 0 rows lost their labels in text. */
const DW0_UNVERIFIED = ['SSV', 'SubstreamID', 'StreamID'] as const;

/** The fault-record fields of F_TRANSLATION, F_ADDR_SIZE, F_ACCESS and F_PERMISSION. */
const FAULT = [
  ...COMMON, EF.STAG, EF.Stall, EF.PnU, EF.InD, EF.RnW, EF.NSIPA, EF.S2, EF.CLASS, EF.IMPDEF, EF.InputAddr, EF.IPA,
] as const;
/** Positions of the fault records come from Linux EVTQ_* and EDK2: the §7.3.13-16 figures are images. */
const FAULT_UNVERIFIED = [...DW0_UNVERIFIED, 'STAG', 'Stall', 'PnU', 'InD', 'RnW', 'NSIPA', 'S2', 'CLASS', 'IMPDEF_127_112', 'InputAddr', 'IPA'] as const;

/** Every architected event record, by name. */
export const EVENT_LAYOUTS = Object.freeze({
  /** §7.3.2: figure in text. InD/PnU are the incoming attributes, not the post-STE ones. */
  F_UUT: archLayout('F_UUT', '7.3.2', [...COMMON, EF.Reason16, EF.PnU, EF.InD, EF.RnW, EF.InputAddr]),
  /** §7.3.3: dword 0 only. */
  C_BAD_STREAMID: archLayout('C_BAD_STREAMID', '7.3.3', [...COMMON]),
  /**
   * §7.3.4: the figure's text gives FetchAddr [247:195] and GPCF [80]; its dword 0 and Reason
   * labels are lost, so those follow F_VMS_FETCH (§7.3.20) and EDK2.
   */
  F_STE_FETCH: archLayout('F_STE_FETCH', '7.3.4', [...COMMON, EF.Reason16, EF.GPCF, EF.FetchAddr], [...DW0_UNVERIFIED, 'Reason']),
  /** §7.3.5: dword 0 only. */
  C_BAD_STE: archLayout('C_BAD_STE', '7.3.5', [...COMMON]),
  /**
   * §7.3.6: figure is an image; positions from EDK2. R/W/X/PRIV are the permissions the ATS
   * Translation Request asked for; Span is the number of STUs requested.
   */
  F_BAD_ATS_TREQ: archLayout('F_BAD_ATS_TREQ', '7.3.6', [
    ...COMMON,
    fld('Span', 67, 64, { doc: 'Number of STUs requested' }),
    fld('PRIV', 92, 92, { doc: 'Privileged access requested' }),
    fld('X', 93, 93, { doc: 'Execute requested' }),
    fld('W', 94, 94, { doc: 'Write requested (== !NW)' }),
    fld('R', 95, 95, { doc: 'Read requested (always 1 for PCIe ATS)' }),
    EF.InputAddrPage,
  ], [...DW0_UNVERIFIED, 'Span', 'PRIV', 'X', 'W', 'R', 'InputAddr']),
  /** §7.3.7: figure in text: only the event number and StreamID; bits [31:8] are RES0. */
  F_STREAM_DISABLED: archLayout('F_STREAM_DISABLED', '7.3.7', [EF.EventID, EF.StreamID]),
  /**
   * §7.3.8: the figure's text gives RnW [99] and no SubstreamID in dword 0; the StreamID and
   * InputAddr rows lost their labels (EDK2 places them as in the other records).
   */
  F_TRANSL_FORBIDDEN: archLayout('F_TRANSL_FORBIDDEN', '7.3.8', [EF.EventID, EF.StreamID, EF.RnW, EF.InputAddr], ['StreamID', 'InputAddr']),
  /** §7.3.9: figure in text; SubstreamID always valid (no SSV, bits [11:8] RES0). */
  C_BAD_SUBSTREAMID: archLayout('C_BAD_SUBSTREAMID', '7.3.9', [EF.EventID, EF.SubstreamID, EF.StreamID]),
  /** §7.3.10: figure is an image; laid out as F_STE_FETCH (EDK2; GPCF from §3.25). */
  F_CD_FETCH: archLayout('F_CD_FETCH', '7.3.10', [...COMMON, EF.Reason16, EF.GPCF, EF.FetchAddr], [...DW0_UNVERIFIED, 'Reason', 'FetchAddr']),
  /** §7.3.11: dword 0 only. */
  C_BAD_CD: archLayout('C_BAD_CD', '7.3.11', [...COMMON]),
  /** §7.3.12: figure is an image; positions from Linux and EDK2 (GPCF from §3.25). */
  F_WALK_EABT: archLayout('F_WALK_EABT', '7.3.12', [
    ...COMMON, EF.Reason16, EF.GPCF, EF.PnU, EF.InD, EF.RnW, EF.NSIPA, EF.S2, EF.CLASS, EF.InputAddr, EF.FetchAddr,
  ], [...DW0_UNVERIFIED, 'Reason', 'PnU', 'InD', 'RnW', 'NSIPA', 'S2', 'CLASS', 'InputAddr', 'FetchAddr']),
  /** §7.3.13. */
  F_TRANSLATION: archLayout('F_TRANSLATION', '7.3.13', [...FAULT], FAULT_UNVERIFIED),
  /** §7.3.14. */
  F_ADDR_SIZE: archLayout('F_ADDR_SIZE', '7.3.14', [...FAULT], FAULT_UNVERIFIED),
  /** §7.3.15. */
  F_ACCESS: archLayout('F_ACCESS', '7.3.15', [...FAULT], FAULT_UNVERIFIED),
  /**
   * §7.3.16: as the other fault records plus TTRnW. The v3.4 Overlay, AssuredOnly and DirtyBit
   * fields are not modelled: their positions are only in the figure (an image).
   */
  F_PERMISSION: archLayout('F_PERMISSION', '7.3.16', [...FAULT, EF.TTRnW], [...FAULT_UNVERIFIED, 'TTRnW']),
  /** §7.3.17: figure is an image (only IPA ending at bit 247 is in text); positions from EDK2. */
  F_TLB_CONFLICT: archLayout('F_TLB_CONFLICT', '7.3.17', [
    ...COMMON, EF.Reason32, EF.PnU, EF.InD, EF.RnW, EF.NSIPA, EF.S2, EF.InputAddr, EF.IPA,
  ], [...DW0_UNVERIFIED, 'Reason', 'PnU', 'InD', 'RnW', 'NSIPA', 'S2', 'InputAddr', 'IPA']),
  /** §7.3.18: figure in text. */
  F_CFG_CONFLICT: archLayout('F_CFG_CONFLICT', '7.3.18', [...COMMON, EF.Reason32]),
  /** §7.3.19: figure in text. Span is in 4KB units; the flags are the anticipated accesses. */
  E_PAGE_REQUEST: archLayout('E_PAGE_REQUEST', '7.3.19', [
    ...COMMON,
    fld('uX', 97, 97, { doc: 'Unprivileged execute anticipated' }),
    fld('uW', 98, 98, { doc: 'Unprivileged write anticipated' }),
    fld('uR', 99, 99, { doc: 'Unprivileged read anticipated' }),
    fld('pX', 101, 101, { doc: 'Privileged execute anticipated' }),
    fld('pW', 102, 102, { doc: 'Privileged write anticipated' }),
    fld('pR', 103, 103, { doc: 'Privileged read anticipated' }),
    fld('Span', 115, 108, { doc: 'Size of the anticipated access span, in 4KB units' }),
    EF.InputAddrPage,
  ]),
  /** §7.3.20: figure in text. */
  F_VMS_FETCH: archLayout('F_VMS_FETCH', '7.3.20', [...COMMON, EF.Reason16, EF.GPCF, EF.FetchAddr]),
});

/** Raw dwords 1–3 of records whose content the spec does not define. */
const RAW_DWORDS = [
  fld('DW1', 127, 64, { doc: 'dword 1, undefined content' }),
  fld('DW2', 191, 128, { doc: 'dword 2, undefined content' }),
  fld('DW3', 255, 192, { doc: 'dword 3, undefined content' }),
] as const;

function impdefLayout(n: number): EventLayout {
  const id = IMPDEF_EVENT_FIRST + n;
  const name = `IMPDEF_EVENT${n}`;
  const eventId = eventIdField(id, name);
  const layout = defineLayout<string>(name, EVENT_BYTES, '7.3.21', [eventId, EF.SSV, EF.SubstreamID, EF.StreamID, ...RAW_DWORDS], {
    unverified: ['SSV', 'SubstreamID', 'StreamID'],
  });
  return Object.freeze({ ...layout, id });
}

/**
 * Records with an event number the spec does not define (§7.3.21: "All other event numbers are
 * Reserved"): dword 0 read as the common one and the other dwords raw.
 */
export const UNKNOWN_EVENT: EventLayout = Object.freeze({
  ...defineLayout<string>('UNKNOWN', EVENT_BYTES, '7.3', [EF.EventID, EF.SSV, EF.SubstreamID, EF.StreamID, ...RAW_DWORDS]),
  id: null,
});

/** Every defined event record layout by event number, including IMPDEF_EVENT0..15. */
export const EVENTS: Readonly<Record<number, EventLayout>> = (() => {
  const out: Record<number, EventLayout> = {};
  for (const layout of Object.values(EVENT_LAYOUTS) as EventLayout[]) out[layout.id!] = layout;
  for (let n = 0; n <= IMPDEF_EVENT_LAST - IMPDEF_EVENT_FIRST; n++) out[IMPDEF_EVENT_FIRST + n] = impdefLayout(n);
  return Object.freeze(out);
})();

const BY_NAME: ReadonlyMap<string, EventLayout> = new Map(Object.values(EVENTS).map((l) => [l.name, l]));

/** The layout of an event number: UNKNOWN_EVENT when the spec does not define it. */
export function eventLayout(id: number): EventLayout {
  return EVENTS[id] ?? UNKNOWN_EVENT;
}

/** The layout of an event name (EVT key or IMPDEF_EVENTn), or undefined. */
export function eventLayoutByName(name: string): EventLayout | undefined {
  return BY_NAME.get(name);
}

/** The event number of a record (hot path: one word read). */
export function eventId(words: Words, base = 0): number {
  return getBits(words, EF.EventID.lsb, EF.EventID.width, base);
}

// ---------------------------------------------------------------------------------------------
// Decode / encode / format
// ---------------------------------------------------------------------------------------------

/** A decoded event record. */
export interface DecodedEvent extends StructureDecoded {
  /** The event number, bits [7:0]. */
  readonly id: number;
  /** The spec's name, IMPDEF_EVENTn, or UNKNOWN. */
  readonly name: string;
  readonly layout: EventLayout;
}

/**
 * Decode a 32-byte record from u32 words (`base` = index of its first word) or little-endian bytes
 * (`base` = byte offset). Never throws: missing words read as 0, unknown numbers decode as
 * UNKNOWN_EVENT.
 */
export function decodeEvent(data: Words | Uint8Array, base = 0): DecodedEvent {
  const words = data instanceof Uint8Array ? bytesToWords(data, base, EVENT_WORDS) : data;
  const b = data instanceof Uint8Array ? 0 : base;
  const id = eventId(words, b);
  const layout = eventLayout(id);
  const d = decodeStructure(layout, words, b);
  return { id, name: layout.name, layout, fields: d.fields, res0: d.res0 };
}

/** What encodeEvent takes: the event by `name` or `id`, and field values by spec name. */
export type EventSpec = {
  readonly name?: EventName | 'UNKNOWN';
  readonly id?: number;
} & { readonly [field: string]: FieldValue | string | undefined };

/**
 * Encode a record into 8 fresh words. The event number comes from `name` or `id` (both given
 * must agree); EventID need not be given. Unknown names, fields the record does not have and
 * values that do not fit throw a RangeError.
 */
export function encodeEvent(spec: EventSpec): Uint32Array {
  const { name, id, ...values } = spec;
  let layout: EventLayout;
  let number: number;
  if (name !== undefined && name !== 'UNKNOWN') {
    const l = eventLayoutByName(name);
    if (l === undefined) throw new RangeError(`no event named ${name}`);
    layout = l;
    number = l.id!;
    if (id !== undefined && id !== number) {
      throw new RangeError(`event ${name} is number 0x${number.toString(16)}, not 0x${id.toString(16)}`);
    }
  } else if (id !== undefined) {
    layout = eventLayout(id);
    number = id;
    if (name === 'UNKNOWN' && layout !== UNKNOWN_EVENT) {
      throw new RangeError(`event number 0x${id.toString(16)} is ${layout.name}, not UNKNOWN`);
    }
  } else {
    throw new RangeError('encodeEvent needs the event name or id');
  }
  const words = new Uint32Array(EVENT_WORDS);
  fieldSet(words, EF.EventID, number);
  for (const [k, v] of Object.entries(values)) {
    if (v === undefined) continue;
    if (typeof v === 'string') throw new RangeError(`${layout.name}.${k}: value must be a number or bigint, got '${v}'`);
    const f = layout.f[k as keyof typeof layout.f] as Field | undefined;
    if (f === undefined) {
      throw new RangeError(`${layout.name} has no field ${k} (fields: ${layout.fields.map((x) => x.name).join(', ')})`);
    }
    if (k === 'EventID' && v !== number && v !== BigInt(number)) {
      throw new RangeError(`${layout.name}: EventID ${String(v)} contradicts event number 0x${number.toString(16)}`);
    }
    fieldSet(words, f, v);
  }
  return words;
}

/** Short labels formatEvent prints, in the order it prints them first. */
const LABELS: Readonly<Record<string, string>> = Object.freeze({
  StreamID: 'sid',
  SubstreamID: 'ssid',
  InputAddr: 'input',
  IPA: 'ipa',
  FetchAddr: 'fetch',
  CLASS: 'class',
});
const LEADING = Object.keys(LABELS);

/** Fields formatEvent leaves out: the number (it prints the name) and SSV (it gates ssid). */
const SKIPPED = new Set(['EventID', 'SSV']);
/** Fields formatEvent prints only when non-zero. */
const QUIET = new Set(['IMPDEF_127_112', 'DW1', 'DW2', 'DW3']);

function formatEventValue(f: Field, v: FieldValue): string {
  if (f.values !== undefined) return f.values[Number(v)] ?? `0x${v.toString(16)}`;
  if (f.width === 1) return v.toString();
  return `0x${v.toString(16)}`;
}

/**
 * One line: the event name, then sid, ssid (only when valid), addresses, class, then the other
 * fields in bit order, e.g. `F_TRANSLATION sid=0x3 ssid=0x5 input=0xffffdeadb000 ipa=0x0
 * class=IN stag=0x7 stall=1 pnu=0 ind=0 rnw=1 nsipa=0 s2=0`. Set RES0 bits are listed last.
 */
export function formatEvent(decoded: DecodedEvent): string {
  const { layout, fields } = decoded;
  const head = layout.id === null ? `UNKNOWN(0x${decoded.id.toString(16).padStart(2, '0')})` : decoded.name;
  const parts = [head];
  const order: Field[] = [];
  for (const name of LEADING) {
    const f = layout.f[name as keyof typeof layout.f] as Field | undefined;
    if (f !== undefined) order.push(f);
  }
  for (const f of layout.fields) if (!(f.name in LABELS)) order.push(f);
  const ssvKnown = 'SSV' in layout.f;
  for (const f of order) {
    if (SKIPPED.has(f.name)) continue;
    const v = fields[f.name];
    if (v === undefined) continue;
    if (QUIET.has(f.name) && (v === 0 || v === 0n)) continue;
    if (f.name === 'SubstreamID' && ssvKnown && fields.SSV === 0) continue;
    parts.push(`${LABELS[f.name] ?? f.name.toLowerCase()}=${formatEventValue(f, v)}`);
  }
  if (decoded.res0.length > 0) parts.push(`res0=[${decoded.res0.join(',')}]`);
  return parts.join(' ');
}

/** A JSON-safe decoded event: bigints (fields wider than 32 bits) become "0x…" strings. */
export function eventToJson(decoded: DecodedEvent): { id: number; name: string; fields: Record<string, number | string>; res0: number[] } {
  const fields: Record<string, number | string> = {};
  for (const [k, v] of Object.entries(decoded.fields)) fields[k] = typeof v === 'bigint' ? `0x${v.toString(16)}` : v;
  return { id: decoded.id, name: decoded.name, fields, res0: decoded.res0.slice() };
}
