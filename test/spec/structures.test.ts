import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import type { Field, FieldValue, Layout } from '../../src/spec/bits.ts';
import { bitsOutside, isWide, layoutMask } from '../../src/spec/bits.ts';
import { wordsToLeBytes } from '../../src/spec/hex.ts';
import {
  CD, CD_F, L1CD, L1STD, PRI_RECORD, STE, STE_F, STRUCTURES, STE_CONFIG,
  bytesToWords, cdASID, cdTTB0, cdTTB1, cdValid, configStage1, configStage2, decodeStructure,
  encodeStructure, formatStructure, l1cdL2Ptr, l1cdValid, l1stdL2Ptr, l1stdSpan, readAddress,
  readAddressHi, steConfig, steEATS, steS1CDMax, steS1ContextPtr, steS1DSS, steS1Fmt, steS2TTB,
  steS2VMID, steSTRW, steValid, structureToJson,
  type TypedLayout,
} from '../../src/spec/structures.ts';

/**
 * Bytes from hex written in memory order, byte 0 first. `//` comments and whitespace are
 * ignored; the result is zero-padded to `size` bytes (the dwords a vector does not write are 0).
 */
function hex(text: string, size: number): Uint8Array {
  const digits = text.replace(/\/\/[^\n]*/g, '').replace(/\s+/g, '');
  const out = new Uint8Array(size);
  for (let i = 0; i < digits.length / 2; i++) out[i] = parseInt(digits.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Every field of the layout: the given values, 0 (or 0n for wide fields) elsewhere. */
function full(layout: Layout, values: Readonly<Record<string, FieldValue>>): Record<string, FieldValue> {
  const out: Record<string, FieldValue> = {};
  for (const f of layout.fields) out[f.name] = values[f.name] ?? (isWide(f) ? 0n : 0);
  return out;
}

/** A hand-derived vector must encode to exactly its bytes and decode back to exactly its fields. */
function checkVector<N extends string>(layout: TypedLayout<N>, values: Readonly<Partial<Record<N, FieldValue>>>, bytes: Uint8Array): void {
  expect(wordsToLeBytes(encodeStructure(layout, values))).toEqual(bytes);
  const d = decodeStructure(layout, bytes);
  expect(d.fields).toEqual(full(layout, values as Record<string, FieldValue>));
  expect(d.res0).toEqual([]);
}

/** Flat bit positions lo..hi inclusive. */
function bits(lo: number, hi: number = lo): number[] {
  return Array.from({ length: hi - lo + 1 }, (_, i) => lo + i);
}

/** The bits of `layout` no field covers: its RES0 bits. */
function res0Bits(layout: Layout): number[] {
  const ones = new Uint32Array(layout.bytes / 4).fill(0xffff_ffff);
  return bitsOutside(ones, layoutMask(layout));
}

function fieldArb(f: Field): fc.Arbitrary<FieldValue> {
  const shift = f.shift ?? 0;
  if (isWide(f)) return fc.bigInt({ min: 0n, max: (1n << BigInt(f.width)) - 1n }).map((v) => v << BigInt(shift));
  return fc.integer({ min: 0, max: 2 ** f.width - 1 }).map((v) => v * 2 ** shift);
}

function recordArb(layout: Layout): fc.Arbitrary<Record<string, FieldValue>> {
  return fc.record(Object.fromEntries(layout.fields.map((f) => [f.name, fieldArb(f)])));
}

const ALL: readonly TypedLayout<string>[] = [STE, L1STD, CD, L1CD, PRI_RECORD];

// -------------------------------------------------------------------------------------------------
// STE, §5.2
// -------------------------------------------------------------------------------------------------

describe('STE hand-derived vectors (§5.2)', () => {
  it('V=0: every field zero decodes as an invalid abort STE', () => {
    const bytes = hex('', 64);
    checkVector(STE, {}, bytes);
    expect(steValid(bytes32(bytes))).toBe(false);
  });

  it('Config=0b000 abort, as Linux writes it (STRTAB_STE_0_V | CFG_ABORT)', () => {
    // dword 0: V [0] = 1, Config [3:1] = 0b000 -> 0x01.
    checkVector(STE, { V: 1, Config: STE_CONFIG.ABORT }, hex('01 00 00 00 00 00 00 00', 64));
  });

  it('Config=0b100 bypass with SHCFG=incoming, as Linux writes it', () => {
    checkVector(STE, { V: 1, Config: STE_CONFIG.BYPASS, SHCFG: 1 }, hex(`
      09 00 00 00 00 00 00 00   // dword 0: V=1 [0], Config=0b100 [3:1] -> 0b1001
      00 00 00 00 00 10 00 00   // dword 1: SHCFG=0b01 at [109:108] = dword 1 bits [45:44] -> 0x1000 in the high word
    `, 64));
  });

  it('Config=0b101 stage 1: 2-level CD table, 2^20 SSIDs, S1DSS=SSID0, ATS, stall disabled (Linux cdtable STE)', () => {
    const bytes = hex(`
      2b 00 00 81 00 00 00 a0   // dword 0: V=1, Config=0b101 -> 0xb; S1Fmt=0b10 [5:4] -> 0x20;
                                //   S1ContextPtr=0x81000000 at [55:6] (the address itself);
                                //   S1CDMax=20 at [63:59] -> high word bits [31:27] = 0xa0000000
      d6 00 00 18 00 00 00 00   // dword 1: S1DSS=0b10 [65:64] -> 0x2; S1CIR=0b01 [67:66] -> 0x4;
                                //   S1COR=0b01 [69:68] -> 0x10; S1CSH=0b11 [71:70] -> 0xc0;
                                //   S1STALLD [91] -> 0x08000000; EATS=0b01 [93:92] -> 0x10000000;
                                //   STRW=0b00 NS-EL1 [95:94]
    `, 64);
    checkVector(STE, {
      V: 1, Config: STE_CONFIG.S1_TRANS, S1Fmt: 2, S1ContextPtr: 0x8100_0000n, S1CDMax: 20,
      S1DSS: 2, S1CIR: 1, S1COR: 1, S1CSH: 3, S1STALLD: 1, EATS: 1, STRW: 0,
    }, bytes);
    const w = bytes32(bytes);
    expect(steValid(w)).toBe(true);
    expect(steConfig(w)).toBe(0b101);
    expect(steS1Fmt(w)).toBe(2);
    expect(steS1CDMax(w)).toBe(20);
    expect(steS1DSS(w)).toBe(2);
    expect(steEATS(w)).toBe(1);
    expect(steSTRW(w)).toBe(0);
    expect(steS1ContextPtr(w)).toBe(0x8100_0000);
  });

  it('Config=0b110 stage 2: 48-bit IPA, 4KB granule, VMID 5 (Linux S2 domain STE)', () => {
    const bytes = hex(`
      0d 00 00 00 00 00 00 00   // dword 0: V=1, Config=0b110 -> 0b1101
      00 00 00 00 00 10 00 00   // dword 1: SHCFG=0b01 -> high word 0x1000
      05 00 00 00 90 35 4d 04   // dword 2: S2VMID=5 [143:128]; high word: S2T0SZ=16 [165:160] -> 0x10,
                                //   S2SL0=2 [167:166] -> 0x80, S2IR0=1 -> 0x100, S2OR0=1 -> 0x400,
                                //   S2SH0=3 -> 0x3000, S2TG=0 (4KB), S2PS=0b101 [178:176] -> 0x50000,
                                //   S2AA64 [179] -> 0x80000, S2PTW [182] -> 0x400000, S2R [186] -> 0x4000000
      00 00 00 80 09 00 00 00   // dword 3: S2TTB=0x980000000 at [247:196] (address bits [55:4])
    `, 64);
    checkVector(STE, {
      V: 1, Config: STE_CONFIG.S2_TRANS, SHCFG: 1, S2VMID: 5, S2T0SZ: 16, S2SL0: 2, S2IR0: 1,
      S2OR0: 1, S2SH0: 3, S2TG: 0, S2PS: 5, S2AA64: 1, S2PTW: 1, S2R: 1, S2TTB: 0x9_8000_0000n,
    }, bytes);
    const w = bytes32(bytes);
    expect(steConfig(w)).toBe(0b110);
    expect(steS2VMID(w)).toBe(5);
    expect(steS2TTB(w)).toBe(0x9_8000_0000);
  });

  it('Config=0b111 nested: a linear single-CD S1 at an IPA on top of the stage 2 above', () => {
    checkVector(STE, {
      V: 1, Config: STE_CONFIG.NESTED, S1ContextPtr: 0x4000_0000n, S1CIR: 1, S1COR: 1, S1CSH: 3,
      S1STALLD: 1, SHCFG: 1, S2VMID: 5, S2T0SZ: 16, S2SL0: 2, S2IR0: 1, S2OR0: 1, S2SH0: 3, S2PS: 5,
      S2AA64: 1, S2PTW: 1, S2R: 1, S2TTB: 0x9_8000_0000n,
    }, hex(`
      0f 00 00 40 00 00 00 00   // dword 0: V=1, Config=0b111 -> 0xf; S1ContextPtr=0x40000000
      d4 00 00 08 00 10 00 00   // dword 1: S1CIR/S1COR/S1CSH -> 0xd4, S1STALLD -> 0x08000000; SHCFG -> 0x1000 high
      05 00 00 00 90 35 4d 04   // dword 2: as the stage 2 STE
      00 00 00 80 09 00 00 00   // dword 3: S2TTB=0x980000000
    `, 64));
  });

  it('Config=0b010 is Reserved and decodes by that name', () => {
    const bytes = hex('05 00 00 00 00 00 00 00', 64); // V=1, Config=0b010
    checkVector(STE, { V: 1, Config: 0b010 }, bytes);
    expect(formatStructure(STE, decodeStructure(STE, bytes))).toEqual(['V=1', 'Config=RESERVED (0b010)']);
  });

  it('places the far fields: PARTID, PMG, VMSPtr, S2POI0, S2POI15', () => {
    checkVector(STE, { V: 1, Config: STE_CONFIG.NESTED, PARTID: 0x1234, PMG: 7, VMSPtr: 0x1234_5000n, S2POI0: 0b1100, S2POI15: 0b1111 }, hex(`
      0f 00 00 00 00 00 00 00   // dword 0: V=1, Config=0b111
      00 00 00 00 00 00 00 00
      00 00 00 00 00 00 00 00
      00 00 00 00 00 00 00 00
      00 00 34 12 00 00 00 00   // dword 4: PARTID=0x1234 at [287:272] = dword 4 bits [31:16]
      07 50 34 12 00 00 00 00   // dword 5: PMG=7 at [327:320]; VMSPtr=0x12345000 at [375:332] (address bits [55:12])
      00 00 00 00 00 00 00 00
      0c 00 00 00 00 00 00 f0   // dword 7: S2POI0=0b1100 at [451:448]; S2POI15=0b1111 at [511:508]
    `, 64));
  });

  // Two vectors place every remaining field. Neighbouring one-bit fields alternate between them
  // (A sets the even-numbered ones, B the odd ones), so a swap of two neighbours changes a byte.
  it('places every remaining field, vector A (§5.2 field headings)', () => {
    checkVector(STE, {
      S2HWU59: 1, S2HWU61: 1, DRE: 1, CONT: 0b0011, PPAR: 1, SW_RESERVED: 0x1, S1PIE: 1, S1MPAM: 1,
      MemAttr: 0x1, MTCFG: 1, ALLOCCFG: 0b1000, NSCFG: 2, PRIVCFG: 3, INSTCFG: 2, IMPDEF_127_116: 0x001,
      IMPDEF_159_144: 0x0001, S2AA64: 1, S2AFFD: 1, S2HD: 1, S2S: 1, S2HAFT: 1, S2POE: 1, DPT_VMATCH: 1,
      S2NSW: 1, S2SL0_2: 1, S2SKL: 1, IMPDEF_271_256: 0x0001, S_S2T0SZ: 0x01, S_S2SL0: 2, S_S2TG: 1,
      MECID: 0x0001, PMG: 0x01, MPAM_NS: 1, TL0: 1, S2SW: 1, S_S2SL0_2: 1, S_S2SKL: 2,
    }, hex(`
      00 00 00 00 00 00 00 00   // dword 0
      00 75 14 05 11 81 1b 00   // dword 1 low: S2HWU59 [72] 0x100, S2HWU61 [74] 0x400, DRE [76] 0x1000,
                                //   CONT=0b0011 [80:77] 0x6000, PPAR [82] 0x40000, SW_RESERVED=1 [87:84] 0x100000,
                                //   S1PIE [88] 0x1000000, S1MPAM [90] 0x4000000;
                                // high: MemAttr=1 [99:96] 0x1, MTCFG [100] 0x10, ALLOCCFG=0b1000 [104:101] 0x100,
                                //   NSCFG=0b10 [111:110] 0x8000, PRIVCFG=0b11 [113:112] 0x30000,
                                //   INSTCFG=0b10 [115:114] 0x80000, IMPDEF [127:116]=1 0x100000
      00 00 01 00 00 00 a8 6a   // dword 2: IMPDEF [159:144]=1 0x10000; high: S2AA64 [179] 0x80000, S2AFFD [181] 0x200000,
                                //   S2HD [183] 0x800000, S2S [185] 0x2000000, S2HAFT [187] 0x8000000,
                                //   S2POE [189] 0x20000000, DPT_VMATCH=0b01 [191:190] 0x40000000
      05 00 00 00 00 00 00 20   // dword 3: S2NSW [192], S2SL0_2 [194]; S2SKL=0b01 [254:253] -> bit 61
      01 00 00 00 81 40 01 00   // dword 4: IMPDEF [271:256]=1; high: S_S2T0SZ=1 [293:288] 0x1, S_S2SL0=0b10 [295:294] 0x80,
                                //   S_S2TG=0b01 [303:302] 0x4000, MECID=1 [319:304] 0x10000
      01 05 00 00 00 00 00 00   // dword 5: PMG=1 [327:320], MPAM_NS [328] 0x100, TL0 [330] 0x400
      05 00 00 00 00 00 00 40   // dword 6: S2SW [384], S_S2SL0_2 [386]; S_S2SKL=0b10 [446:445] -> bit 62
    `, 64));
  });

  it('places every remaining field, vector B (§5.2 field headings)', () => {
    checkVector(STE, {
      S2HWU60: 1, S2HWU62: 1, CONT: 0b1100, DCP: 1, MEV: 1, SW_RESERVED: 0x8, S2FWB: 1, S1STALLD: 1,
      MemAttr: 0x8, ALLOCCFG: 0b0001, NSCFG: 1, PRIVCFG: 1, INSTCFG: 1, IMPDEF_127_116: 0x800,
      IMPDEF_159_144: 0x8000, S2ENDI: 1, S2PTW: 1, S2HA: 1, S2R: 1, S2PIE: 1, DPT_VMATCH: 2,
      S2NSA: 1, S2DS: 1, S2SKL: 2, IMPDEF_271_256: 0x8000, S_S2T0SZ: 0x20, S_S2SL0: 1, S_S2TG: 2,
      MECID: 0x8000, PMG: 0x80, AssuredOnly: 1, TL1: 1, S2SA: 1, S_S2SKL: 1,
    }, hex(`
      00 00 00 00 00 00 00 00   // dword 0
      00 8a 8b 0a 28 40 05 80   // dword 1 low: S2HWU60 [73] 0x200, S2HWU62 [75] 0x800, CONT=0b1100 [80:77] 0x18000,
                                //   DCP [81] 0x20000, MEV [83] 0x80000, SW_RESERVED=8 [87:84] 0x800000,
                                //   S2FWB [89] 0x2000000, S1STALLD [91] 0x8000000;
                                // high: MemAttr=8 0x8, ALLOCCFG=0b0001 0x20, NSCFG=0b01 0x4000, PRIVCFG=0b01 0x10000,
                                //   INSTCFG=0b01 0x40000, IMPDEF [127:116]=0x800 0x80000000
      00 00 00 80 00 00 50 95   // dword 2: IMPDEF [159:144]=0x8000; high: S2ENDI [180] 0x100000, S2PTW [182] 0x400000,
                                //   S2HA [184] 0x1000000, S2R [186] 0x4000000, S2PIE [188] 0x10000000,
                                //   DPT_VMATCH=0b10 0x80000000
      0a 00 00 00 00 00 00 40   // dword 3: S2NSA [193], S2DS [195]; S2SKL=0b10 -> bit 62
      00 80 00 00 60 80 00 80   // dword 4: IMPDEF [271:256]=0x8000; high: S_S2T0SZ=0x20 0x20, S_S2SL0=0b01 0x40,
                                //   S_S2TG=0b10 0x8000, MECID=0x8000 0x80000000
      80 0a 00 00 00 00 00 00   // dword 5: PMG=0x80, AssuredOnly [329] 0x200, TL1 [331] 0x800
      02 00 00 00 00 00 00 20   // dword 6: S2SA [385]; S_S2SKL=0b01 -> bit 61
    `, 64));
  });

  it('keeps inner and outer attributes apart: S1CIR/S1COR/S1CSH, S2IR0/S2OR0/S2SH0 (§5.2)', () => {
    checkVector(STE, { S1CIR: 3, S1COR: 2, S1CSH: 2, S2IR0: 3, S2OR0: 2, S2SH0: 2 }, hex(`
      00 00 00 00 00 00 00 00
      ac 00 00 00 00 00 00 00   // dword 1: S1CIR=0b11 [67:66] 0xc, S1COR=0b10 [69:68] 0x20, S1CSH=0b10 [71:70] 0x80
      00 00 00 00 00 2b 00 00   // dword 2 high: S2IR0=0b11 [169:168] 0x300, S2OR0=0b10 [171:170] 0x800,
                                //   S2SH0=0b10 [173:172] 0x2000
    `, 64));
  });

  it('stores address bit 55 (S2TTB [247:196] holds address bits [55:4])', () => {
    const bytes = hex(`
      00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00
      00 00 00 00 00 00 80 00   // dword 3: S2TTB=0x80000000000000 -> bit 247 = dword 3 bit 55
    `, 64);
    checkVector(STE, { S2TTB: 0x80_0000_0000_0000n }, bytes);
    expect(readAddressHi(bytes32(bytes), STE_F.S2TTB)).toBe(0x0080_0000);
  });

  it('formats one line per non-zero field, V and Config always, enums by name, addresses in hex', () => {
    const w = encodeStructure(STE, {
      V: 1, Config: STE_CONFIG.S1_TRANS, S1Fmt: 2, S1ContextPtr: 0x8100_0000, S1CDMax: 20,
      S1DSS: 2, S1CIR: 1, S1COR: 1, S1CSH: 3, S1STALLD: 1, EATS: 1,
    });
    expect(formatStructure(STE, decodeStructure(STE, w))).toEqual([
      'V=1',
      'Config=S1_TRANS (0b101)',
      'S1Fmt=L2_64K (0b10)',
      'S1ContextPtr=0x81000000',
      'S1CDMax=0x14',
      'S1DSS=SSID0 (0b10)',
      'S1CIR=WB_RA (0b01)',
      'S1COR=WB_RA (0b01)',
      'S1CSH=ISH (0b11)',
      'S1STALLD=1',
      'EATS=FULL_ATS (0b01)',
    ]);
    expect(formatStructure(STE, decodeStructure(STE, new Uint32Array(16)))).toEqual(['V=0', 'Config=ABORT (0b000)']);
  });

  it('reports and prints set RES0 bits (§5: non-specified fields are RES0)', () => {
    const w = encodeStructure(STE, { V: 1 });
    w[1]! |= 1 << (56 - 32); // bit 56: [58:56] is RES0
    w[3]! |= 1 << (105 - 96); // bit 105: [107:105] is RES0
    const d = decodeStructure(STE, w);
    expect(d.res0).toEqual([56, 105]);
    expect(formatStructure(STE, d)).toEqual(['V=1', 'Config=ABORT (0b000)', 'RES0 bits set: 56, 105']);
  });

  it('JSON keeps narrow values as numbers and wide ones as 0x strings', () => {
    const j = structureToJson(decodeStructure(STE, encodeStructure(STE, { V: 1, Config: 6, S2VMID: 5, S2TTB: 0x9_8000_0000 })));
    expect(j.fields.V).toBe(1);
    expect(j.fields.Config).toBe(6);
    expect(j.fields.S2VMID).toBe(5);
    expect(j.fields.S2TTB).toBe('0x980000000');
    expect(j.fields.S1ContextPtr).toBe('0x0');
    expect(j.res0).toEqual([]);
    expect(JSON.parse(JSON.stringify(j))).toEqual(j);
  });

  it('hot-path readers take a word base (an STE inside a larger table)', () => {
    const table = new Uint32Array(48);
    table.set(encodeStructure(STE, { V: 1, Config: 6, S2VMID: 0xbeef, S2TTB: 0xf_ffff_fff0 }), 16);
    expect(steValid(table, 0)).toBe(false);
    expect(steValid(table, 16)).toBe(true);
    expect(steConfig(table, 16)).toBe(6);
    expect(steS2VMID(table, 16)).toBe(0xbeef);
    expect(steS2TTB(table, 16)).toBe(0xf_ffff_fff0);
    expect(steValid(table, 32)).toBe(false);
    expect(decodeStructure(STE, table, 16).fields.S2VMID).toBe(0xbeef);
  });

  it('Config stage predicates follow 0b1x1 (stage 1) and 0b11x (stage 2)', () => {
    expect([0, 1, 2, 3, 4, 5, 6, 7].map(configStage1)).toEqual([false, false, false, false, false, true, false, true]);
    expect([0, 1, 2, 3, 4, 5, 6, 7].map(configStage2)).toEqual([false, false, false, false, false, false, true, true]);
  });
});

// -------------------------------------------------------------------------------------------------
// CD, §5.4
// -------------------------------------------------------------------------------------------------

describe('CD hand-derived vectors (§5.4)', () => {
  // Linux's stage 1 CD for a 48-bit VA, 4KB granule, ASID 1: T0SZ=16, TG0=4KB, IR0=OR0=WBWA,
  // SH0=ISH, EPD1, V, IPS=48 bits, AA64, R, A, ASET, TTB0, MAIR = 0xf404ff44 (io-pgtable's
  // NC, WBRWA, DEVICE, INC_OWBRWA attributes).
  const LINUX_CD = hex(`
    10 35 00 c0 05 e2 01 00   // dword 0 low: T0SZ=16 [5:0] -> 0x10, IR0=1 [9:8] -> 0x100, OR0=1 [11:10] -> 0x400,
                              //   SH0=3 [13:12] -> 0x3000, EPD1 [30], V [31] -> 0xc0003510;
                              // high: IPS=0b101 [34:32] -> 0x5, AA64 [41] -> 0x200, R [45] -> 0x2000,
                              //   A [46] -> 0x4000, ASET [47] -> 0x8000, ASID=1 [63:48] -> 0x10000
    00 40 65 87 08 00 00 00   // dword 1: TTB0=0x887654000 at [119:68] (address bits [55:4])
    00 00 00 00 00 00 00 00   // dword 2: TTB1 unused (EPD1)
    44 ff 04 f4 00 00 00 00   // dword 3: MAIR0=0xf404ff44 [223:192], MAIR1=0 [255:224]
  `, 64);
  const LINUX_CD_VALUES = {
    T0SZ: 16, TG0: 0, IR0: 1, OR0: 1, SH0: 3, EPD1: 1, V: 1, IPS: 5, AA64: 1, R: 1, A: 1, ASET: 1,
    ASID: 1, TTB0: 0x8_8765_4000n, MAIR0: 0xf404_ff44,
  } as const;

  it('encodes and decodes the CD Linux writes', () => {
    checkVector(CD, LINUX_CD_VALUES, LINUX_CD);
    const w = bytes32(LINUX_CD);
    expect(cdValid(w)).toBe(true);
    expect(cdASID(w)).toBe(1);
    expect(cdTTB0(w)).toBe(0x8_8765_4000);
    expect(cdTTB1(w)).toBe(0);
  });

  it('formats the Linux CD', () => {
    expect(formatStructure(CD, decodeStructure(CD, LINUX_CD))).toEqual([
      'T0SZ=0x10',
      'IR0=WB_RA_WA (0b01)',
      'OR0=WB_RA_WA (0b01)',
      'SH0=ISH (0b11)',
      'EPD1=1',
      'V=1',
      'IPS=48_BITS (0b101)',
      'AA64=1',
      'R=1',
      'A=1',
      'ASET=1',
      'ASID=1',
      'TTB0=0x887654000',
      'MAIR0=0xf404ff44',
    ]);
  });

  it('TTB1 half: T1SZ, TG1 (its own encoding: 0b10 = 4KB), TTB1, ASID 0xffff', () => {
    const bytes = hex(`
      00 40 90 80 00 00 ff ff   // dword 0: T1SZ=16 [21:16] -> 0x100000, TG1=0b10 [23:22] -> 0x800000,
                                //   EPD0 [14] -> 0x4000, V [31] -> 0x80904000; ASID=0xffff [63:48]
      00 00 00 00 00 00 00 00
      00 10 32 54 00 00 00 00   // dword 2: TTB1=0x54321000 at [183:132] (address bits [55:4])
    `, 64);
    checkVector(CD, { T1SZ: 16, TG1: 2, EPD0: 1, V: 1, ASID: 0xffff, TTB1: 0x5432_1000n }, bytes);
    expect(formatStructure(CD, decodeStructure(CD, bytes))).toContain('TG1=4KB (0b10)');
    expect(cdTTB1(bytes32(bytes))).toBe(0x5432_1000);
  });

  it('places PARTID, PMG, PIIU<p> at [3p+386:3p+384] and PIIP<p> at [3p+450:3p+448]', () => {
    checkVector(CD, { V: 1, PARTID: 0x22, PMG: 3, PIIU0: 0b101, PIIU15: 0b111, PIIP1: 0b011 }, hex(`
      00 00 00 80 00 00 00 00   // dword 0: V
      00 00 00 00 00 00 00 00
      00 00 00 00 00 00 00 00
      00 00 00 00 00 00 00 00
      00 00 00 00 00 00 00 00
      00 00 00 00 22 00 03 00   // dword 5: PARTID=0x22 [367:352], PMG=3 [375:368]
      05 00 00 00 00 e0 00 00   // dword 6: PIIU0=0b101 [386:384], PIIU15=0b111 [431:429] -> bits 47:45
      18 00 00 00 00 00 00 00   // dword 7: PIIP1=0b011 [453:451] -> 0x18
    `, 64));
  });

  // As for the STE, neighbouring one-bit fields alternate between the vectors of a pair.
  it('places the dword 1 and dword 2 control bits; HWU0<x> [127:126] is HWU062, HWU061 (§5.4)', () => {
    checkVector(CD, { NSCFG0: 1, E0PD0: 1, PnCH: 1, HWU059: 1, HWU061: 1, NSCFG1: 1, E0PD1: 1, DS: 1, HWU159: 1, HWU161: 1 }, hex(`
      00 00 00 00 00 00 00 00
      05 00 00 00 00 00 00 54   // dword 1: NSCFG0 [64], E0PD0 [66]; PnCH [122] bit 58, HWU059 [124] bit 60, HWU061 [126] bit 62
      05 00 00 00 00 00 00 54   // dword 2: NSCFG1 [128], E0PD1 [130]; DS [186] bit 58, HWU159 [188] bit 60, HWU161 [190] bit 62
    `, 64));
    checkVector(CD, { HAD0: 1, HAFT: 1, EPAN: 1, HWU060: 1, HWU062: 1, HAD1: 1, AIE: 1, PIE: 1, HWU160: 1, HWU162: 1 }, hex(`
      00 00 00 00 00 00 00 00
      0a 00 00 00 00 00 00 a8   // dword 1: HAD0 [65], HAFT [67]; EPAN [123] bit 59, HWU060 [125] bit 61, HWU062 [127] bit 63
      0a 00 00 00 00 00 00 a8   // dword 2: HAD1 [129], AIE [131]; PIE [187] bit 59, HWU160 [189] bit 61, HWU162 [191] bit 63
    `, 64));
  });

  it('places the dword 0 fields (§5.4)', () => {
    checkVector(CD, { ENDI: 1, IR1: 2, OR1: 3, SH1: 2, V: 1, AFFD: 1, UWXN: 1, TBI1: 1, AA64: 1, HA: 1, R: 1, ASET: 1 }, hex(`
      00 80 00 ae a8 aa 00 00   // low: ENDI [15] 0x8000, IR1=0b10 [25:24] 0x2000000, OR1=0b11 [27:26] 0xc000000,
                                //   SH1=0b10 [29:28] 0x20000000, V [31]; high: AFFD [35] 0x8, UWXN [37] 0x20,
                                //   TBI1 [39] 0x80, AA64 [41] 0x200, HA [43] 0x800, R [45] 0x2000, ASET [47] 0x8000
    `, 64));
    checkVector(CD, {
      T0SZ: 0x21, TG0: 2, IR0: 2, OR0: 3, SH0: 2, EPD0: 1, T1SZ: 0x21, TG1: 1, EPD1: 1, IPS: 0b110,
      WXN: 1, TBI0: 1, PAN: 1, HD: 1, S: 1, A: 1, ASID: 0x8001,
    }, hex(`
      a1 6e 61 40 56 55 01 80   // low: T0SZ=0x21 [5:0], TG0=0b10 [7:6] 0x80, IR0=0b10 0x200, OR0=0b11 0xc00,
                                //   SH0=0b10 0x2000, EPD0 [14] 0x4000, T1SZ=0x21 [21:16] 0x210000,
                                //   TG1=0b01 [23:22] 0x400000, EPD1 [30];
                                // high: IPS=0b110 [34:32] 0x6, WXN [36] 0x10, TBI0 [38] 0x40, PAN [40] 0x100,
                                //   HD [42] 0x400, S [44] 0x1000, A [46] 0x4000, ASID=0x8001 [63:48]
    `, 64));
  });

  it('places MAIR1, AMAIR0, AMAIR1 and the IMPLEMENTATION DEFINED word (§5.4)', () => {
    checkVector(CD, { MAIR1: 0x1122_3344, AMAIR0: 0x5566_7788, AMAIR1: 0x99aa_bbcc, IMPDEF_351_320: 0xddee_ff00 }, hex(`
      00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00
      00 00 00 00 44 33 22 11   // dword 3: MAIR0=0 [223:192], MAIR1=0x11223344 [255:224]
      88 77 66 55 cc bb aa 99   // dword 4: AMAIR0 [287:256], AMAIR1 [319:288]
      00 ff ee dd 00 00 00 00   // dword 5: IMPLEMENTATION DEFINED [351:320]
    `, 64));
  });

  it('an invalid CD formats as V=0 alone', () => {
    expect(formatStructure(CD, decodeStructure(CD, new Uint8Array(64)))).toEqual(['V=0']);
  });
});

// -------------------------------------------------------------------------------------------------
// L1STD §5.1, L1CD §5.3, PRI record chapter 8
// -------------------------------------------------------------------------------------------------

describe('L1STD, L1CD and PRI record vectors', () => {
  it('L1STD as Linux writes it: Span=9 (256 STEs), L2Ptr 16KB-aligned (§5.1)', () => {
    // Span [4:0] = 9; L2Ptr=0x88004000 at [55:6] (address bits [55:6]) -> dword 0x88004009.
    const bytes = hex('09 40 00 88 00 00 00 00', 8);
    checkVector(L1STD, { Span: 9, L2Ptr: 0x8800_4000n }, bytes);
    const w = bytes32(bytes);
    expect(l1stdSpan(w)).toBe(9);
    expect(l1stdL2Ptr(w)).toBe(0x8800_4000);
    expect(formatStructure(L1STD, decodeStructure(L1STD, bytes))).toEqual(['Span=9', 'L2Ptr=0x88004000']);
  });

  it('L1STD with address bit 55 and Span=1 (§5.1)', () => {
    const bytes = hex('01 00 00 00 00 00 f0 00', 8);
    checkVector(L1STD, { Span: 1, L2Ptr: 0xf0_0000_0000_0000n }, bytes);
    expect(l1stdL2Ptr(bytes32(bytes))).toBe(0xf0_0000_0000_0000);
    expect(readAddressHi(bytes32(bytes), L1STD.f.L2Ptr)).toBe(0x00f0_0000);
  });

  it('an all-zero L1STD still prints Span (0 = invalid)', () => {
    expect(formatStructure(L1STD, decodeStructure(L1STD, new Uint8Array(8)))).toEqual(['Span=0']);
  });

  it('L1CD: V=1, L2Ptr 64KB-aligned (§5.3)', () => {
    // V [0] = 1; L2Ptr=0x81230000 at [55:12] -> dword 0x81230001.
    const bytes = hex('01 00 23 81 00 00 00 00', 8);
    checkVector(L1CD, { V: 1, L2Ptr: 0x8123_0000n }, bytes);
    expect(l1cdValid(bytes32(bytes))).toBe(true);
    expect(l1cdL2Ptr(bytes32(bytes))).toBe(0x8123_0000);
  });

  it('L1CD bits [11:1] are RES0 (§5.3)', () => {
    const d = decodeStructure(L1CD, hex('03 00 00 00 00 00 00 01', 8));
    expect(d.fields.V).toBe(1);
    expect(d.res0).toEqual([1, 56]);
  });

  it('PRI record: a last write+read request with PASID (chapter 8; positions Linux PRIQ_*)', () => {
    checkVector(PRI_RECORD, {
      StreamID: 0x100, SubstreamID: 5, R: 1, W: 1, Last: 1, SSV: 1, PRGIndex: 0x1ff, PageAddress: 0x7fff_f000_0000n,
    }, hex(`
      00 01 00 00 05 00 00 f0   // dword 0: StreamID=0x100 [31:0]; SubstreamID=5 [51:32];
                                //   R [60], W [61], Last [62], SSV [63] -> high word 0xf0000005
      ff 01 00 f0 ff 7f 00 00   // dword 1: PRGIndex=0x1ff [72:64]; PageAddress=0x7ffff0000000 at [127:76]
    `, 16));
  });

  it('PRI record: the flags Priv [58], X [59], R [60], W [61], Last [62], SSV [63] each placed (chapter 8)', () => {
    // With the record above, every flag has a distinct pattern across the three vectors.
    checkVector(PRI_RECORD, { StreamID: 1, X: 1, Last: 1, SSV: 1, PRGIndex: 1, PageAddress: 0x1000n }, hex(`
      01 00 00 00 00 00 00 c8   // X [59], Last [62], SSV [63] -> high word 0xc8000000
      01 10 00 00 00 00 00 00   // PRGIndex=1, PageAddress=0x1000
    `, 16));
    checkVector(PRI_RECORD, {
      StreamID: 0xffff, SubstreamID: 0xfffff, Priv: 1, W: 1, SSV: 1, PRGIndex: 0x100, PageAddress: 0xffff_ffff_ffff_f000n,
    }, hex(`
      ff ff 00 00 ff ff 0f a4   // SubstreamID=0xfffff; Priv [58] 0x04000000, W [61] 0x20000000, SSV -> high 0xa40fffff
      00 f1 ff ff ff ff ff ff   // PRGIndex=0x100; PageAddress all ones above bit 12
    `, 16));
  });
});

// -------------------------------------------------------------------------------------------------
// Layout properties
// -------------------------------------------------------------------------------------------------

describe('layouts', () => {
  it('every field lies within its structure, fields do not overlap, names are unique', () => {
    for (const layout of ALL) {
      const owner = new Map<number, string>();
      const names = new Set<string>();
      for (const f of layout.fields) {
        expect(names.has(f.name), `${layout.name}.${f.name} duplicated`).toBe(false);
        names.add(f.name);
        expect(f.width).toBeGreaterThan(0);
        expect(f.lsb).toBeGreaterThanOrEqual(0);
        expect(f.lsb + f.width, `${layout.name}.${f.name}`).toBeLessThanOrEqual(layout.bytes * 8);
        expect(f.width + (f.shift ?? 0), `${layout.name}.${f.name} value fits 64 bits`).toBeLessThanOrEqual(64);
        for (let b = f.lsb; b < f.lsb + f.width; b++) {
          expect(owner.get(b), `${layout.name} bit ${b}: ${f.name} overlaps`).toBeUndefined();
          owner.set(b, f.name);
        }
      }
    }
  });

  it('enumerated values fit their fields', () => {
    for (const layout of ALL) {
      for (const f of layout.fields) {
        for (const k of Object.keys(f.values ?? {})) {
          const v = Number(k);
          expect(Number.isInteger(v) && v >= 0 && v < 2 ** f.width, `${layout.name}.${f.name} value ${k}`).toBe(true);
        }
      }
    }
  });

  it('the by-name record, always and unverified lists name real fields', () => {
    for (const layout of ALL) {
      const f = layout.f as Readonly<Record<string, Field>>;
      expect(Object.keys(f)).toEqual(layout.fields.map((x) => x.name));
      for (const x of layout.fields) expect(f[x.name]).toBe(x);
      for (const n of [...layout.always, ...layout.unverified]) expect(f[n], `${layout.name}.${n}`).toBeDefined();
    }
    expect(STRUCTURES.STE).toBe(STE);
    expect(STE_F.Config).toBe(STE.fields[1]);
    expect(CD_F.ASID.lsb).toBe(48);
    // @ts-expect-error unknown field names are compile errors
    expect(STE_F.Bogus).toBeUndefined();
    // @ts-expect-error unknown field names are compile errors for typed layouts
    expect(() => encodeStructure(CD, { Bogus: 1 })).toThrow(/CD has no field Bogus/);
  });

  it('sizes: STE and CD 64 bytes, L1STD and L1CD 8, PRI record 16', () => {
    expect([STE.bytes, CD.bytes, L1STD.bytes, L1CD.bytes, PRI_RECORD.bytes]).toEqual([64, 64, 8, 8, 16]);
  });

  it('STE RES0 bits are exactly the spec\'s Reserved ranges (§5.2)', () => {
    expect(res0Bits(STE)).toEqual([
      ...bits(56, 58), ...bits(105, 107), ...bits(248, 252), 255, ...bits(296, 301), ...bits(376, 383),
      387, ...bits(440, 444), 447,
    ]);
  });

  it('CD RES0 bits are exactly the spec\'s Reserved ranges (§5.4)', () => {
    expect(res0Bits(CD)).toEqual([...bits(120, 121), ...bits(184, 185), ...bits(376, 383), ...bits(432, 447), ...bits(496, 511)]);
  });

  it('L1STD (§5.1), L1CD (§5.3) and PRI record RES0 bits', () => {
    expect(res0Bits(L1STD)).toEqual([5, ...bits(56, 63)]);
    expect(res0Bits(L1CD)).toEqual([...bits(1, 11), ...bits(56, 63)]);
    expect(res0Bits(PRI_RECORD)).toEqual([...bits(52, 57), ...bits(73, 75)]);
  });

  it('granule encodings differ: S2TG and CD.TG0 0=4KB 1=64KB 2=16KB; CD.TG1 1=16KB 2=4KB 3=64KB', () => {
    expect(STE_F.S2TG.values).toEqual({ 0: '4KB', 1: '64KB', 2: '16KB', 3: 'RESERVED' });
    expect(CD_F.TG0.values).toEqual({ 0: '4KB', 1: '64KB', 2: '16KB', 3: 'RESERVED' });
    expect(CD_F.TG1.values).toEqual({ 0: 'RESERVED', 1: '16KB', 2: '4KB', 3: '64KB' });
  });

  it('records Linux names', () => {
    expect(STE_F.Config.linux).toBe('STRTAB_STE_0_CFG');
    expect(STE_F.S2TTB.linux).toBe('STRTAB_STE_3_S2TTB_MASK');
    expect(CD_F.T0SZ.linux).toBe('CTXDESC_CD_0_TCR_T0SZ');
    expect(L1CD.f.L2Ptr.linux).toBe('CTXDESC_L1_DESC_L2PTR_MASK');
  });
});

// -------------------------------------------------------------------------------------------------
// Properties
// -------------------------------------------------------------------------------------------------

describe('properties', () => {
  for (const layout of ALL) {
    it(`${layout.name}: encode then decode returns every field, from words and from bytes`, () => {
      fc.assert(fc.property(recordArb(layout), (values) => {
        const words = encodeStructure(layout as Layout, values);
        const fromWords = decodeStructure(layout as Layout, words);
        expect(fromWords.fields).toEqual(values);
        expect(fromWords.res0).toEqual([]);
        expect(decodeStructure(layout as Layout, wordsToLeBytes(words)).fields).toEqual(values);
      }), { numRuns: 200 });
    });
  }

  it('decode, format and JSON never throw on random bytes of any length', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 80 }), fc.nat({ max: 8 }), (bytes, offset) => {
      for (const layout of ALL) {
        const d = decodeStructure(layout as Layout, bytes, offset);
        formatStructure(layout, d);
        JSON.stringify(structureToJson(d));
      }
    }), { numRuns: 300 });
  });

  it('readAddress equals the BigInt decode for addresses below 2^53', () => {
    const fields = [STE_F.S1ContextPtr, STE_F.S2TTB, STE_F.VMSPtr, CD_F.TTB0, CD_F.TTB1, L1STD.f.L2Ptr, L1CD.f.L2Ptr];
    fc.assert(fc.property(fc.constantFrom(...fields), fc.bigInt({ min: 0n, max: (1n << 53n) - 1n }), (f, raw) => {
      const addr = (raw >> BigInt(f.shift ?? 0)) << BigInt(f.shift ?? 0);
      const words = new Uint32Array(16);
      words.set(encodeStructure({ name: 'x', bytes: 64, section: '', fields: [f] }, { [f.name]: addr }));
      expect(readAddress(words, f)).toBe(Number(addr));
      expect(readAddressHi(words, f)).toBe(Number(addr >> 32n));
    }), { numRuns: 300 });
  });

  it('bytesToWords is little-endian and zero-fills past the end', () => {
    expect(Array.from(bytesToWords(hex('01 02 03 04 05', 5), 0, 2))).toEqual([0x0403_0201, 0x05]);
    expect(Array.from(bytesToWords(hex('01 02 03 04 05 06 07 08', 8), 4))).toEqual([0x0807_0605]);
  });
});

describe('encode errors name the field', () => {
  it('rejects unknown fields and values that do not fit', () => {
    expect(() => encodeStructure(STE as Layout, { Bogus: 1 })).toThrow(/STE has no field Bogus/);
    expect(() => encodeStructure(STE, { Config: 8 })).toThrow(/Config: 0x8 does not fit in 3 bits/);
    expect(() => encodeStructure(STE, { S1ContextPtr: 0x8100_0020 })).toThrow(/S1ContextPtr: 0x81000020 has bits below bit 6 set/);
    expect(() => encodeStructure(CD, { TTB0: 1n << 56n })).toThrow(/TTB0: 0x100000000000000 does not fit in 56 bits/);
  });

  it('skips fields given as undefined', () => {
    expect(Array.from(encodeStructure(L1CD, { V: 1, L2Ptr: undefined }))).toEqual([1, 0]);
  });
});

function bytes32(bytes: Uint8Array): Uint32Array {
  return bytesToWords(bytes);
}
