import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import type { Field, FieldValue, Layout } from '../../src/spec/bits.ts';
import { bitsOutside, isWide, layoutMask } from '../../src/spec/bits.ts';
import { wordsToLeBytes } from '../../src/spec/hex.ts';
import {
  EVENT_F, EVENT_LAYOUTS, EVENTS, EVT, IMPDEF_EVENT_FIRST, IMPDEF_EVENT_LAST, UNKNOWN_EVENT,
  decodeEvent, encodeEvent, eventId, eventLayout, eventLayoutByName, eventToJson, formatEvent,
  type EventLayout, type EventSpec,
} from '../../src/spec/events.ts';

/** 32 bytes from hex in memory order; `//` comments and whitespace ignored; zero-padded. */
function hex(text: string): Uint8Array {
  const digits = text.replace(/\/\/[^\n]*/g, '').replace(/\s+/g, '');
  const out = new Uint8Array(32);
  for (let i = 0; i < digits.length / 2; i++) out[i] = parseInt(digits.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function full(layout: Layout, values: Readonly<Record<string, FieldValue>>): Record<string, FieldValue> {
  const out: Record<string, FieldValue> = {};
  for (const f of layout.fields) out[f.name] = values[f.name] ?? (isWide(f) ? 0n : 0);
  return out;
}

function bits(lo: number, hi: number = lo): number[] {
  return Array.from({ length: hi - lo + 1 }, (_, i) => lo + i);
}

function res0Bits(layout: Layout): number[] {
  return bitsOutside(new Uint32Array(8).fill(0xffff_ffff), layoutMask(layout));
}

interface Vector {
  readonly section: string;
  readonly spec: EventSpec & { readonly name: string };
  readonly bytes: Uint8Array;
  readonly line?: string;
}

/**
 * One record per architected event number, bytes derived by hand from the §7.3 record
 * definitions (positions from the fact sheet where the figure is an image; see `unverified`).
 */
const VECTORS: readonly Vector[] = [
  {
    section: '7.3.2',
    spec: { name: 'F_UUT', SSV: 1, SubstreamID: 0x12345, StreamID: 0x102, Reason: 0xbeef, PnU: 1, InD: 0, RnW: 1, InputAddr: 0xffff_8000_1234_5678n },
    bytes: hex(`
      01 58 34 12 02 01 00 00   // EventID 0x01, SSV [11] -> 0x800, SubstreamID [31:12] -> 0x12345000; StreamID 0x102
      ef be 00 00 0a 00 00 00   // Reason [79:64] = 0xbeef; PnU [97] -> 0x2, RnW [99] -> 0x8 in the high word
      78 56 34 12 00 80 ff ff   // InputAddr [191:128]
    `),
    line: 'F_UUT sid=0x102 ssid=0x12345 input=0xffff800012345678 reason=0xbeef pnu=1 ind=0 rnw=1',
  },
  {
    section: '7.3.3',
    spec: { name: 'C_BAD_STREAMID', StreamID: 0x1_0000 },
    bytes: hex('02 00 00 00 00 00 01 00'),
    line: 'C_BAD_STREAMID sid=0x10000',
  },
  {
    section: '7.3.4',
    spec: { name: 'F_STE_FETCH', StreamID: 0x42, Reason: 3, GPCF: 1, FetchAddr: 0x8000_1080n },
    bytes: hex(`
      03 00 00 00 42 00 00 00   // EventID 0x03, StreamID 0x42
      03 00 01 00 00 00 00 00   // Reason [79:64] = 3, GPCF [80]
      00 00 00 00 00 00 00 00
      80 10 00 80 00 00 00 00   // FetchAddr [247:195] holds address bits [55:3]: the dword is the address
    `),
    line: 'F_STE_FETCH sid=0x42 fetch=0x80001080 reason=0x3 gpcf=1',
  },
  {
    section: '7.3.5',
    spec: { name: 'C_BAD_STE', SSV: 1, SubstreamID: 1, StreamID: 7 },
    bytes: hex('04 18 00 00 07 00 00 00'), // 0x04 | SSV 0x800 | SubstreamID 1 << 12
    line: 'C_BAD_STE sid=0x7 ssid=0x1',
  },
  {
    section: '7.3.6',
    spec: { name: 'F_BAD_ATS_TREQ', SSV: 1, SubstreamID: 0x20, StreamID: 0x300, Span: 2, PRIV: 0, X: 0, W: 1, R: 1, InputAddr: 0x7f00_0000_3000n },
    bytes: hex(`
      05 08 02 00 00 03 00 00   // EventID 0x05, SSV, SubstreamID 0x20 -> 0x20000; StreamID 0x300
      02 00 00 c0 00 00 00 00   // Span [67:64] = 2; W [94] -> 0x40000000, R [95] -> 0x80000000
      00 30 00 00 00 7f 00 00   // InputAddr[63:12] at [191:140]
    `),
    line: 'F_BAD_ATS_TREQ sid=0x300 ssid=0x20 input=0x7f0000003000 span=0x2 priv=0 x=0 w=1 r=1',
  },
  {
    // A second record so that each of PRIV, X, W, R has its own pattern across the two.
    section: '7.3.6',
    spec: { name: 'F_BAD_ATS_TREQ', StreamID: 0x301, Span: 0xf, PRIV: 1, R: 1, InputAddr: 0xffff_ffff_ffff_f000n },
    bytes: hex(`
      05 00 00 00 01 03 00 00
      0f 00 00 90 00 00 00 00   // Span=0xf [67:64]; PRIV [92] 0x10000000, R [95] 0x80000000
      00 f0 ff ff ff ff ff ff   // InputAddr[63:12] all ones
    `),
  },
  {
    section: '7.3.7',
    spec: { name: 'F_STREAM_DISABLED', StreamID: 0x10 },
    bytes: hex('06 00 00 00 10 00 00 00'),
    line: 'F_STREAM_DISABLED sid=0x10',
  },
  {
    section: '7.3.8',
    spec: { name: 'F_TRANSL_FORBIDDEN', StreamID: 0x11, RnW: 1, InputAddr: 0xfedc_b000n },
    bytes: hex(`
      07 00 00 00 11 00 00 00
      00 00 00 00 08 00 00 00   // RnW [99]
      00 b0 dc fe 00 00 00 00   // InputAddr
    `),
    line: 'F_TRANSL_FORBIDDEN sid=0x11 input=0xfedcb000 rnw=1',
  },
  {
    section: '7.3.9',
    spec: { name: 'C_BAD_SUBSTREAMID', SubstreamID: 0xfffff, StreamID: 0x12 },
    bytes: hex('08 f0 ff ff 12 00 00 00'), // no SSV: SubstreamID [31:12] always valid
    line: 'C_BAD_SUBSTREAMID sid=0x12 ssid=0xfffff',
  },
  {
    section: '7.3.10',
    spec: { name: 'F_CD_FETCH', SSV: 1, SubstreamID: 3, StreamID: 0x13, FetchAddr: 0x9000_00c0n },
    bytes: hex(`
      09 38 00 00 13 00 00 00   // EventID 0x09, SSV, SubstreamID 3; StreamID 0x13
      00 00 00 00 00 00 00 00
      00 00 00 00 00 00 00 00
      c0 00 00 90 00 00 00 00   // FetchAddr: CD 3 of the table at 0x90000000
    `),
    line: 'F_CD_FETCH sid=0x13 ssid=0x3 fetch=0x900000c0 reason=0x0 gpcf=0',
  },
  {
    section: '7.3.11',
    spec: { name: 'C_BAD_CD', StreamID: 0x14 },
    bytes: hex('0a 00 00 00 14 00 00 00'),
    line: 'C_BAD_CD sid=0x14',
  },
  {
    section: '7.3.12',
    spec: { name: 'F_WALK_EABT', SSV: 1, SubstreamID: 1, StreamID: 0x15, Reason: 1, PnU: 1, InD: 1, RnW: 1, S2: 1, CLASS: 1, InputAddr: 0x4000_0000n, FetchAddr: 0xa000_0008n },
    bytes: hex(`
      0b 18 00 00 15 00 00 00
      01 00 00 00 8e 01 00 00   // Reason = 1; high word: PnU 0x2, InD 0x4, RnW 0x8, S2 [103] 0x80, CLASS=0b01 [105:104] 0x100
      00 00 00 40 00 00 00 00   // InputAddr
      08 00 00 a0 00 00 00 00   // FetchAddr = 0xa0000008 (a stage 2 descriptor)
    `),
    line: 'F_WALK_EABT sid=0x15 ssid=0x1 input=0x40000000 fetch=0xa0000008 class=TTD reason=0x1 gpcf=0 pnu=1 ind=1 rnw=1 nsipa=0 s2=1',
  },
  {
    section: '7.3.13',
    spec: { name: 'F_TRANSLATION', SSV: 1, SubstreamID: 5, StreamID: 3, STAG: 7, Stall: 1, RnW: 1, CLASS: 2, InputAddr: 0xffff_dead_b000n },
    bytes: hex(`
      10 58 00 00 03 00 00 00   // EventID 0x10, SSV, SubstreamID 5; StreamID 3
      07 00 00 80 08 02 00 00   // STAG [79:64] = 7, Stall [95]; high word: RnW 0x8, CLASS=0b10 0x200
      00 b0 ad de ff ff 00 00   // InputAddr (a stage 1 fault: IPA UNKNOWN, written 0)
    `),
    line: 'F_TRANSLATION sid=0x3 ssid=0x5 input=0xffffdeadb000 ipa=0x0 class=IN stag=0x7 stall=1 pnu=0 ind=0 rnw=1 nsipa=0 s2=0',
  },
  {
    section: '7.3.14',
    spec: { name: 'F_ADDR_SIZE', StreamID: 0x20, PnU: 1, InD: 1, RnW: 1, S2: 1, CLASS: 0, InputAddr: 0x1000n, IPA: 0x100_0000_0000n },
    bytes: hex(`
      11 00 00 00 20 00 00 00
      00 00 00 00 8e 00 00 00   // PnU, InD, RnW, S2; CLASS=0b00 CD
      00 10 00 00 00 00 00 00   // InputAddr 0x1000
      00 00 00 00 00 01 00 00   // IPA[55:12] at [247:204]: the dword is the IPA, 0x10000000000
    `),
  },
  {
    section: '7.3.15',
    spec: { name: 'F_ACCESS', SSV: 1, SubstreamID: 0xabcde, StreamID: 0xffff_ffff, STAG: 0xffff, Stall: 1, NSIPA: 1, S2: 1, CLASS: 2, InputAddr: 0xffff_ffff_ffff_f000n, IPA: 0xff_ffff_ffff_f000n },
    bytes: hex(`
      12 e8 cd ab ff ff ff ff   // SubstreamID 0xabcde, SSV; StreamID 0xffffffff
      ff ff 00 80 c0 02 00 00   // STAG 0xffff, Stall; NSIPA [102] 0x40, S2 0x80, CLASS=0b10 0x200
      00 f0 ff ff ff ff ff ff   // InputAddr
      00 f0 ff ff ff ff ff 00   // IPA bits [55:12] all ones: bit 247 is the top of the record's defined bits
    `),
  },
  {
    section: '7.3.16',
    spec: { name: 'F_PERMISSION', StreamID: 9, STAG: 0x12, PnU: 1, S2: 1, CLASS: 1, TTRnW: 1, IMPDEF_127_112: 0xa5a5, InputAddr: 0x40_1000n, IPA: 0x8765_4000n },
    bytes: hex(`
      13 00 00 00 09 00 00 00
      12 00 00 00 82 11 a5 a5   // STAG 0x12; high word: PnU 0x2, S2 0x80, CLASS=0b01 0x100, TTRnW [108] 0x1000, IMPDEF [127:112]
      00 10 40 00 00 00 00 00   // InputAddr
      00 40 65 87 00 00 00 00   // IPA = 0x87654000 (the stage 1 descriptor address)
    `),
    line: 'F_PERMISSION sid=0x9 input=0x401000 ipa=0x87654000 class=TTD stag=0x12 stall=0 pnu=1 ind=0 rnw=0 nsipa=0 s2=1 impdef_127_112=0xa5a5 ttrnw=1',
  },
  {
    section: '7.3.17',
    spec: { name: 'F_TLB_CONFLICT', SSV: 1, SubstreamID: 2, StreamID: 0x30, Reason: 0xcafe_f00d, PnU: 1, RnW: 1, S2: 1, InputAddr: 0x2000n, IPA: 0x1_0000_0000n },
    bytes: hex(`
      20 28 00 00 30 00 00 00
      0d f0 fe ca 8a 00 00 00   // Reason [95:64] = 0xcafef00d; PnU, RnW, S2
      00 20 00 00 00 00 00 00
      00 00 00 00 01 00 00 00   // IPA 0x100000000
    `),
  },
  {
    section: '7.3.18',
    spec: { name: 'F_CFG_CONFLICT', StreamID: 0x31, Reason: 1 },
    bytes: hex(`
      21 00 00 00 31 00 00 00
      01 00 00 00 00 00 00 00   // Reason [95:64]
    `),
    line: 'F_CFG_CONFLICT sid=0x31 reason=0x1',
  },
  {
    section: '7.3.19',
    spec: { name: 'E_PAGE_REQUEST', SSV: 1, SubstreamID: 7, StreamID: 0x40, uX: 1, pW: 1, Span: 16, InputAddr: 0x5555_5555_5000n },
    bytes: hex(`
      24 78 00 00 40 00 00 00
      00 00 00 00 42 00 01 00   // high word: uX [97] 0x2, pW [102] 0x40, Span=16 [115:108] 0x10000
      00 50 55 55 55 55 00 00   // InputAddr[63:12] at [191:140]
    `),
    line: 'E_PAGE_REQUEST sid=0x40 ssid=0x7 input=0x555555555000 ux=1 uw=0 ur=0 px=0 pw=1 pr=0 span=0x10',
  },
  {
    // A second record so that each of the six flags has its own pattern across the two.
    section: '7.3.19',
    spec: { name: 'E_PAGE_REQUEST', StreamID: 0x40, uW: 1, pR: 1, Span: 0xff, InputAddr: 0xffff_ffff_ffff_f000n },
    bytes: hex(`
      24 00 00 00 40 00 00 00
      00 00 00 00 84 f0 0f 00   // high word: uW [98] 0x4, pR [103] 0x80, Span=0xff [115:108] 0xff000
      00 f0 ff ff ff ff ff ff   // InputAddr[63:12] all ones
    `),
  },
  {
    section: '7.3.20',
    spec: { name: 'F_VMS_FETCH', StreamID: 0x41, Reason: 2, GPCF: 1, FetchAddr: 0xc000_0000n },
    bytes: hex(`
      25 00 00 00 41 00 00 00
      02 00 01 00 00 00 00 00   // Reason 2, GPCF [80]
      00 00 00 00 00 00 00 00
      00 00 00 c0 00 00 00 00   // FetchAddr
    `),
  },
  {
    section: '7.3.21',
    spec: { name: 'IMPDEF_EVENT5', StreamID: 1, DW1: 0x1122_3344_5566_7788n, DW3: 0xffffn },
    bytes: hex(`
      e5 00 00 00 01 00 00 00   // 0xe0 + 5
      88 77 66 55 44 33 22 11
      00 00 00 00 00 00 00 00
      ff ff 00 00 00 00 00 00
    `),
    line: 'IMPDEF_EVENT5 sid=0x1 dw1=0x1122334455667788 dw3=0xffff',
  },
];

describe('event records: hand-derived vectors (§7.3)', () => {
  it('cover every architected event number', () => {
    const names = VECTORS.map((v) => v.spec.name);
    for (const name of Object.keys(EVT)) expect(names, name).toContain(name);
  });

  VECTORS.forEach((v, i) => {
    const { name, ...values } = v.spec;
    it(`${name} (§${v.section}) #${i}`, () => {
      const layout = eventLayoutByName(name)!;
      expect(layout.section).toBe(v.section);
      expect(wordsToLeBytes(encodeEvent(v.spec))).toEqual(v.bytes);
      const d = decodeEvent(v.bytes);
      expect(d.name).toBe(name);
      expect(d.id).toBe(layout.id);
      expect(d.layout).toBe(layout);
      expect(d.fields).toEqual(full(layout, { ...(values as Record<string, FieldValue>), EventID: layout.id! }));
      expect(d.res0).toEqual([]);
      if (v.line !== undefined) expect(formatEvent(d)).toBe(v.line);
    });
  });
});

describe('event numbers and layouts', () => {
  it('EVT holds the spec\'s numbers', () => {
    expect(EVT).toEqual({
      F_UUT: 0x01, C_BAD_STREAMID: 0x02, F_STE_FETCH: 0x03, C_BAD_STE: 0x04, F_BAD_ATS_TREQ: 0x05,
      F_STREAM_DISABLED: 0x06, F_TRANSL_FORBIDDEN: 0x07, C_BAD_SUBSTREAMID: 0x08, F_CD_FETCH: 0x09,
      C_BAD_CD: 0x0a, F_WALK_EABT: 0x0b, F_TRANSLATION: 0x10, F_ADDR_SIZE: 0x11, F_ACCESS: 0x12,
      F_PERMISSION: 0x13, F_TLB_CONFLICT: 0x20, F_CFG_CONFLICT: 0x21, E_PAGE_REQUEST: 0x24, F_VMS_FETCH: 0x25,
    });
    expect(EVT.F_TRANSLATION).toBe(0x10);
  });

  it('EVENTS has each architected number and IMPDEF_EVENT0..15 at 0xE0..0xEF, nothing else', () => {
    const ids = Object.keys(EVENTS).map(Number).sort((a, b) => a - b);
    const impdef = bits(IMPDEF_EVENT_FIRST, IMPDEF_EVENT_LAST);
    expect(ids).toEqual([...Object.values(EVT) as number[], ...impdef].sort((a, b) => a - b));
    for (const [name, id] of Object.entries(EVT)) {
      expect(EVENTS[id]!.name).toBe(name);
      expect(EVENT_LAYOUTS[name as keyof typeof EVENT_LAYOUTS]).toBe(EVENTS[id]);
    }
    for (const id of impdef) expect(EVENTS[id]!.name).toBe(`IMPDEF_EVENT${id - IMPDEF_EVENT_FIRST}`);
  });

  it('eventLayout falls back to UNKNOWN_EVENT for Reserved numbers', () => {
    for (const id of [0x00, 0x0c, 0x0f, 0x14, 0x22, 0x23, 0x26, 0xdf, 0xf0, 0xff]) expect(eventLayout(id)).toBe(UNKNOWN_EVENT);
    expect(eventLayout(0x10)).toBe(EVENT_LAYOUTS.F_TRANSLATION);
    expect(eventLayoutByName('F_NOPE')).toBeUndefined();
  });

  it('every field lies within 32 bytes, fields do not overlap, enumerations fit', () => {
    for (const layout of [...Object.values(EVENTS), UNKNOWN_EVENT]) {
      expect(layout.bytes).toBe(32);
      const owner = new Map<number, string>();
      for (const f of layout.fields) {
        expect(f.lsb + f.width, `${layout.name}.${f.name}`).toBeLessThanOrEqual(256);
        for (let b = f.lsb; b < f.lsb + f.width; b++) {
          expect(owner.get(b), `${layout.name} bit ${b}: ${f.name}`).toBeUndefined();
          owner.set(b, f.name);
        }
        for (const k of Object.keys(f.values ?? {})) expect(Number(k)).toBeLessThan(2 ** f.width);
      }
      for (const n of layout.unverified) expect((layout.f as Record<string, Field>)[n], `${layout.name}.${n}`).toBeDefined();
    }
  });

  it('RES0 bits of each record match its §7.3 definition', () => {
    const d0 = bits(8, 10); // dword 0 [10:8] of every record with SSV
    const fault = [...d0, ...bits(80, 94), 96, 100, 101, ...bits(106, 111), ...bits(192, 203), ...bits(248, 255)];
    const fetch = [...d0, ...bits(81, 194), ...bits(248, 255)];
    const expected: Record<string, number[]> = {
      F_UUT: [...d0, ...bits(80, 96), ...bits(100, 127), ...bits(192, 255)],
      C_BAD_STREAMID: [...d0, ...bits(64, 255)],
      F_STE_FETCH: fetch,
      C_BAD_STE: [...d0, ...bits(64, 255)],
      F_BAD_ATS_TREQ: [...d0, ...bits(68, 91), ...bits(96, 139), ...bits(192, 255)],
      F_STREAM_DISABLED: [...bits(8, 31), ...bits(64, 255)],
      F_TRANSL_FORBIDDEN: [...bits(8, 31), ...bits(64, 98), ...bits(100, 127), ...bits(192, 255)],
      C_BAD_SUBSTREAMID: [...bits(8, 11), ...bits(64, 255)],
      F_CD_FETCH: fetch,
      C_BAD_CD: [...d0, ...bits(64, 255)],
      F_WALK_EABT: [...d0, ...bits(81, 96), 100, 101, ...bits(106, 127), ...bits(192, 194), ...bits(248, 255)],
      F_TRANSLATION: fault,
      F_ADDR_SIZE: fault,
      F_ACCESS: fault,
      F_PERMISSION: fault.filter((b) => b !== 108),
      F_TLB_CONFLICT: [...d0, 96, 100, 101, ...bits(104, 127), ...bits(192, 203), ...bits(248, 255)],
      F_CFG_CONFLICT: [...d0, ...bits(96, 255)],
      E_PAGE_REQUEST: [...d0, ...bits(64, 96), 100, ...bits(104, 107), ...bits(116, 139), ...bits(192, 255)],
      F_VMS_FETCH: fetch,
    };
    for (const [name, res0] of Object.entries(expected)) {
      expect(res0Bits(EVENT_LAYOUTS[name as keyof typeof EVENT_LAYOUTS]), name).toEqual(res0);
    }
    expect(res0Bits(EVENTS[0xe0]!)).toEqual(d0);
    expect(res0Bits(UNKNOWN_EVENT)).toEqual(d0);
  });

  it('shared fields sit where the fact sheet and Linux put them', () => {
    expect([EVENT_F.PnU.lsb, EVENT_F.InD.lsb, EVENT_F.RnW.lsb, EVENT_F.S2.lsb, EVENT_F.CLASS.lsb, EVENT_F.TTRnW.lsb]).toEqual([97, 98, 99, 103, 104, 108]);
    expect(EVENT_F.CLASS.values).toEqual({ 0: 'CD', 1: 'TTD', 2: 'IN', 3: 'RESERVED' });
    expect(EVENT_F.FetchAddr).toMatchObject({ lsb: 195, width: 53, shift: 3 });
    expect(EVENT_F.IPA).toMatchObject({ lsb: 204, width: 44, shift: 12 });
    expect(EVENT_F.InputAddr).toMatchObject({ lsb: 128, width: 64 });
    expect(EVENT_LAYOUTS.F_TRANSLATION.linux).toBe('EVT_ID_TRANSLATION_FAULT');
    expect(EVENT_LAYOUTS.F_TRANSLATION.unverified).toContain('IPA');
    expect(EVENT_LAYOUTS.E_PAGE_REQUEST.unverified).toEqual([]);
  });
});

describe('decode, encode and format details', () => {
  it('decodes an unknown event number: common dword 0 and raw dwords', () => {
    const bytes = hex(`
      30 08 00 00 ff 00 00 00   // 0x30 is Reserved; SSV set
      01 00 00 00 00 00 00 00
      00 00 00 00 00 00 00 80
    `);
    const d = decodeEvent(bytes);
    expect(d.id).toBe(0x30);
    expect(d.name).toBe('UNKNOWN');
    expect(d.layout).toBe(UNKNOWN_EVENT);
    expect(d.fields).toEqual({ EventID: 0x30, SSV: 1, SubstreamID: 0, StreamID: 0xff, DW1: 1n, DW2: 0x8000_0000_0000_0000n, DW3: 0n });
    expect(formatEvent(d)).toBe('UNKNOWN(0x30) sid=0xff ssid=0x0 dw1=0x1 dw2=0x8000000000000000');
    expect(wordsToLeBytes(encodeEvent({ id: 0x30, SSV: 1, StreamID: 0xff, DW1: 1n, DW2: 0x8000_0000_0000_0000n }))).toEqual(bytes);
  });

  it('reports set RES0 bits and prints them', () => {
    const bytes = hex(`
      04 00 00 00 07 00 00 00   // C_BAD_STE, StreamID 7
      00 00 00 00 10 00 00 00   // bit 100 set: dwords 1-3 of C_BAD_STE are RES0
    `);
    const d = decodeEvent(bytes);
    expect(d.res0).toEqual([100]);
    expect(formatEvent(d)).toBe('C_BAD_STE sid=0x7 res0=[100]');
  });

  it('decodes at a word base or a byte offset (records in a queue)', () => {
    const queue = new Uint32Array(24);
    queue.set(encodeEvent({ name: 'F_TRANSLATION', StreamID: 3, InputAddr: 0x1000n }), 8);
    expect(eventId(queue, 8)).toBe(EVT.F_TRANSLATION);
    expect(decodeEvent(queue, 8).fields.StreamID).toBe(3);
    expect(decodeEvent(wordsToLeBytes(queue), 32).fields.InputAddr).toBe(0x1000n);
    expect(decodeEvent(queue, 16).name).toBe('UNKNOWN');
  });

  it('prints ssid only when SSV is set (and always for C_BAD_SUBSTREAMID)', () => {
    expect(formatEvent(decodeEvent(encodeEvent({ name: 'C_BAD_CD', SubstreamID: 9, StreamID: 1 })))).toBe('C_BAD_CD sid=0x1');
    expect(formatEvent(decodeEvent(encodeEvent({ name: 'C_BAD_SUBSTREAMID', SubstreamID: 0, StreamID: 1 })))).toBe('C_BAD_SUBSTREAMID sid=0x1 ssid=0x0');
  });

  it('JSON: numbers stay numbers, wide fields become 0x strings', () => {
    const j = eventToJson(decodeEvent(encodeEvent({ name: 'F_PERMISSION', StreamID: 9, InputAddr: 0x40_1000n, IPA: 0x8765_4000n, CLASS: 1 })));
    expect(j).toEqual({
      id: 0x13,
      name: 'F_PERMISSION',
      fields: {
        EventID: 0x13, SSV: 0, SubstreamID: 0, StreamID: 9, STAG: 0, Stall: 0, PnU: 0, InD: 0, RnW: 0,
        NSIPA: 0, S2: 0, CLASS: 1, IMPDEF_127_112: 0, InputAddr: '0x401000', IPA: '0x87654000', TTRnW: 0,
      },
      res0: [],
    });
    expect(JSON.parse(JSON.stringify(j))).toEqual(j);
  });

  it('encodeEvent takes the event by id as well as by name', () => {
    expect(encodeEvent({ id: 0x10, StreamID: 3 })).toEqual(encodeEvent({ name: 'F_TRANSLATION', StreamID: 3 }));
    expect(encodeEvent({ name: 'F_TRANSLATION', id: 0x10, EventID: 0x10 })).toEqual(encodeEvent({ name: 'F_TRANSLATION' }));
  });

  it('encodeEvent errors name the problem', () => {
    expect(() => encodeEvent({})).toThrow(/needs the event name or id/);
    expect(() => encodeEvent({ name: 'F_NOPE' as 'F_UUT' })).toThrow(/no event named F_NOPE/);
    expect(() => encodeEvent({ name: 'F_UUT', id: 2 })).toThrow(/F_UUT is number 0x1, not 0x2/);
    expect(() => encodeEvent({ name: 'UNKNOWN', id: 0x10 })).toThrow(/0x10 is F_TRANSLATION, not UNKNOWN/);
    expect(() => encodeEvent({ name: 'C_BAD_STE', STAG: 1 })).toThrow(/C_BAD_STE has no field STAG/);
    expect(() => encodeEvent({ name: 'F_STREAM_DISABLED', SSV: 1 })).toThrow(/F_STREAM_DISABLED has no field SSV/);
    expect(() => encodeEvent({ name: 'F_UUT', EventID: 2 })).toThrow(/EventID 2 contradicts event number 0x1/);
    expect(() => encodeEvent({ name: 'F_UUT', SubstreamID: 1 << 20 })).toThrow(/SubstreamID: 0x100000 does not fit in 20 bits/);
    expect(() => encodeEvent({ name: 'F_STE_FETCH', FetchAddr: 0x1004n })).toThrow(/FetchAddr: 0x1004 has bits below bit 3 set/);
    expect(() => encodeEvent({ name: 'F_UUT', StreamID: 'x' })).toThrow(/F_UUT.StreamID: value must be a number or bigint/);
  });
});

describe('properties', () => {
  const layouts: EventLayout[] = [...Object.values(EVENTS), UNKNOWN_EVENT];

  it('encode then decode returns every field of every record', () => {
    const arb = fc.constantFrom(...layouts).chain((layout) => fc.tuple(
      fc.constant(layout),
      fc.record(Object.fromEntries(layout.fields.filter((f) => f.name !== 'EventID').map((f) => [f.name, fieldArb(f)]))),
      layout.id === null ? fc.integer({ min: 0x26, max: 0xdf }) : fc.constant(layout.id),
    ));
    fc.assert(fc.property(arb, ([layout, values, id]) => {
      const words = encodeEvent({ id, ...values });
      const d = decodeEvent(words);
      expect(d.layout).toBe(layout);
      expect(d.fields).toEqual({ ...values, EventID: id });
      expect(d.res0).toEqual([]);
      expect(decodeEvent(wordsToLeBytes(words)).fields).toEqual(d.fields);
    }), { numRuns: 500 });
  });

  it('decode, format and JSON never throw on random bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 40 }), fc.nat({ max: 8 }), (bytes, offset) => {
      const d = decodeEvent(bytes, offset);
      expect(formatEvent(d).length).toBeGreaterThan(0);
      JSON.stringify(eventToJson(d));
    }), { numRuns: 500 });
  });
});

function fieldArb(f: Field): fc.Arbitrary<FieldValue> {
  const shift = f.shift ?? 0;
  if (isWide(f)) return fc.bigInt({ min: 0n, max: (1n << BigInt(f.width)) - 1n }).map((v) => v << BigInt(shift));
  return fc.integer({ min: 0, max: 2 ** f.width - 1 }).map((v) => v * 2 ** shift);
}
