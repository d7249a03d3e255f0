/**
 * `smmu-sim decode`, driven in-process through main(argv, io) with a fake Io.
 *
 * Every command vector is written out by hand from the field positions: the range fields NUM
 * [16:12], SCALE [25:20], Leaf [64], TTL [73:72], TG [75:74] and Address[63:12] at [127:76] from the
 * text table of §4.4.1.1 and §4.1.6; the other positions from the fact sheet
 * (shared/reference/smmuv3.md §4.2–§4.7) where the spec's figure is an image. A command is 16
 * bytes little-endian (§4.1.1): the memory form is byte 0 first, the word form is
 * 0x<bits 63:0>:0x<bits 127:64>.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { run } from '../helpers/cli.ts';
import { CD, STE } from '../../src/spec/structures.ts';
import { isWide, type Field } from '../../src/spec/bits.ts';

/** Decode succeeds with exactly these stdout lines and nothing on stderr. */
async function decodes(argv: string[], lines: readonly string[], stdin?: string | readonly string[]): Promise<void> {
  const r = await run(['decode', ...argv], stdin);
  expect(r.err).toBe('');
  expect(r.out).toBe(lines.map((l) => `${l}\n`).join(''));
  expect(r.code).toBe(0);
}

/** The README's TLBI_NH_VA: a range invalidation as Linux builds it (§4.4.2.4, §4.4.1.1). */
const README_HEX = '1220710101000500016f6a45368d0000';
// word0 = 0x01712012: opcode 0x12, NUM = (0x01712012 >> 12) & 0x1f = 18, SCALE = (>> 20) & 0x3f = 23;
// word1 = 0x00050001: VMID [47:32] = 1, ASID [63:48] = 5; word2 = 0x456a6f01: Leaf [64] = 1,
// TTL [73:72] = 0x6f & 3 = 3, TG [75:74] = (0x6f >> 2) & 3 = 3 (64K); Address = word3:word2[31:12]
// << 12 = 0x8d36456a6000.
const README_WORDS = '0x0005000101712012:0x00008d36456a6f01';
const README_TEXT = 'TLBI_NH_VA vmid=0x1 asid=0x5 addr=0x8d36456a6000 leaf=1 tg=64K num=18 scale=23 ttl=3  # legal';

const JSON_KEYS = ['opcode', 'name', 'fields', 'res0', 'legal', 'error', 'reason', 'rule', 'section', 'outOfRange'];

describe('decode: commands (text)', () => {
  it('decodes the README TLBI_NH_VA in memory order and as two 64-bit words', async () => {
    await decodes([README_HEX], [README_TEXT]);
    await decodes([README_WORDS], [README_TEXT]);
    // Upper-case digits, whitespace between digit groups, and words without 0x or leading zeros.
    await decodes(['1220710101000500 016F6A45368D0000'], [README_TEXT]);
    await decodes(['5000101712012:8D36456A6F01'], [README_TEXT]);
  });

  it.each([
    {
      // §4.7.3: CS [13:12] = 1 (0x1000), MSH [23:22] = 3 (0xc00000), MSIAttr [27:24] = 0xf; word0 =
      // 0x0fc01046. MSIAddress[55:2] at [119:66] puts the address in place in dword 1.
      what: 'CMD_SYNC, Linux MSI form',
      hex: '4610c00f000000003012004000000000',
      words: '0x000000000fc01046:0x0000000040001230',
      text: 'SYNC cs=SIG_IRQ msiaddr=0x40001230 msh=ISH msiattr=0xf  # legal',
    },
    {
      // §4.3.1: StreamID [63:32] = 0x1234, Leaf [64] = 1.
      what: 'CMD_CFGI_STE',
      hex: '03000000341200000100000000000000',
      words: '0x0000123400000003:0x1',
      text: 'CFGI_STE sid=0x1234 leaf=1  # legal',
    },
    {
      // §4.3.6: CMD_CFGI_ALL is CMD_CFGI_STE_RANGE (0x04) with Range [68:64] = 31.
      what: 'CMD_CFGI_ALL',
      hex: '04000000000000001f00000000000000',
      words: '0x4:0x1f',
      text: 'CFGI_ALL sid=0x0 range=31  # legal',
    },
    {
      // §4.3.2: Range = 3, StreamID 0x10.
      what: 'CMD_CFGI_STE_RANGE',
      hex: '04000000100000000300000000000000',
      words: '0x0000001000000004:0x3',
      text: 'CFGI_STE_RANGE sid=0x10 range=3  # legal',
    },
    {
      // §4.4.2.2: VMID [47:32] = 1, ASID [63:48] = 7.
      what: 'CMD_TLBI_NH_ASID',
      hex: '11000000010007000000000000000000',
      words: '0x0007000100000011:0',
      text: 'TLBI_NH_ASID vmid=0x1 asid=0x7  # legal',
    },
    {
      // §4.4.2.1: VMID 0 is printed (0 is a VMID).
      what: 'CMD_TLBI_NH_ALL with VMID 0',
      hex: '10000000000000000000000000000000',
      words: '0x10:0x0',
      text: 'TLBI_NH_ALL vmid=0x0  # legal',
    },
    {
      // §4.5.1: SSV [11] (0x800), SubstreamID [31:12] = 5 (0x5000), StreamID 3, Address [127:76]
      // in place in dword 1, Size [69:64] = 0.
      what: 'CMD_ATC_INV with a SubstreamID',
      hex: '40580000030000000050341200000000',
      words: '0x0000000300005840:0x12345000',
      text: 'ATC_INV sid=0x3 ssid=0x5 ssv=1 addr=0x12345000 size=0  # legal',
    },
    {
      // §4.5.2: SSV, SubstreamID 1, PRGIndex [72:64] = 0x1ff, Resp [77:76] = 0b10 Success (0x2000).
      what: 'CMD_PRI_RESP',
      hex: '4118000003000000ff21000000000000',
      words: '0x0000000300001841:0x21ff',
      text: 'PRI_RESP sid=0x3 ssid=0x1 ssv=1 prgi=0x1ff resp=Success  # legal',
    },
  ])('$what', async ({ hex, words, text }) => {
    await decodes([hex], [text]);
    await decodes([words], [text]);
  });

  it('decodes several arguments in order, one line each', async () => {
    await decodes([README_HEX, '0x46:0', '0x10:0'], [README_TEXT, 'SYNC cs=SIG_NONE  # legal', 'TLBI_NH_ALL vmid=0x0  # legal']);
  });

  it('a bad argument: the arguments before it are printed, as on standard input', async () => {
    const r = await run(['decode', '0x46:0', 'zz', '0x10:0']);
    expect(r.code).toBe(2);
    expect(r.out).toBe('SYNC cs=SIG_NONE  # legal\n');
    expect(r.err).toBe("smmu-sim decode: 'zz': invalid hex character 'z' at position 0\n");
  });

  it('a Reserved opcode prints its raw dwords and CERROR_ILL (§4.1.1, §4.1.3)', async () => {
    await decodes(
      ['08000000000000000000000000000000'],
      ['RESERVED_0x08 0x0000000000000008:0x0000000000000000  # CERROR_ILL reserved-opcode: opcode 0x8 is Reserved (§4.1.1)'],
    );
    // Bits above the opcode of a Reserved command are shown raw, not as a res0 list.
    await decodes(
      ['0xdead000000000008:0x1'],
      ['RESERVED_0x08 0xdead000000000008:0x0000000000000001  # CERROR_ILL reserved-opcode: opcode 0x8 is Reserved (§4.1.1)'],
    );
  });

  it('an IMPLEMENTATION DEFINED opcode is CERROR_ILL in this model (§4.1.1)', async () => {
    await decodes(
      ['0x80:0x1234'],
      [
        'IMPDEF_0x80 0x0000000000000080:0x0000000000001234  # CERROR_ILL impdef-opcode: opcode 0x80 is IMPLEMENTATION DEFINED and this model implements no IMPLEMENTATION DEFINED commands (§4.1.1)',
      ],
    );
  });

  it('CMD_SYNC with CS == 0b11 is CERROR_ILL with its rule and section (§4.7.3)', async () => {
    const line = 'SYNC cs=Reserved  # CERROR_ILL sync-cs-reserved: CMD_SYNC has CS == 0b11, which is Reserved and causes CERROR_ILL (§4.7.3)';
    await decodes(['0x3046:0'], [line]);
    await decodes(['46300000000000000000000000000000'], [line]);
  });

  it('SSec == 1 on the Non-secure queue is ILLEGAL (§4.1.6)', async () => {
    // SSec [10] = 0x400.
    await decodes(
      ['0x0000000300000403:0x1'],
      ['CFGI_STE sid=0x3 ssec=1 leaf=1  # CERROR_ILL ssec-on-nonsecure-queue: CMD_CFGI_STE has SSec == 1, which is ILLEGAL on the non-secure Command queue (§4.1.6)'],
    );
  });

  it('set RES0 bits are listed by position and, by default, are CERROR_ILL (§4.1.5)', async () => {
    // CMD_TLBI_NH_ALL has only VMID: bit 8 of dword 0 and bit 36 of dword 1 (flat 100) are RES0.
    await decodes(
      ['0x110:0x1000000000'],
      ['TLBI_NH_ALL vmid=0x0 res0=8,100  # CERROR_ILL res0-bits: CMD_TLBI_NH_ALL sets RES0 bits outside its fields: bits 8, 100 are set (§4.1.5)'],
    );
    // §4.1.5 also lets an implementation ignore them: no-res0check.
    await decodes(['--features', 'no-res0check', '0x110:0x1000000000'], ['TLBI_NH_ALL vmid=0x0 res0=8,100  # legal']);
    // One bit: singular.
    await decodes(
      ['0x104:0x1f'],
      ['CFGI_ALL sid=0x0 range=31 res0=8  # CERROR_ILL res0-bits: CMD_CFGI_STE_RANGE sets RES0 bits outside its fields: bit 8 is set (§4.1.5)'],
    );
  });

  it('an out-of-range parameter is reported after the verdict, without CERROR_ILL (§4.5.1, §4.1.7)', async () => {
    // CMD_ATC_INV Size [69:64] = 53 > 52.
    await decodes(
      ['0x0000000300000040:0x35'],
      ['ATC_INV sid=0x3 addr=0x0 size=53  # legal; out of range: CMD_ATC_INV: Size 53 is above 52; the model takes the span as Size == 52 (invalidate all) (§4.5.1)'],
    );
    // An illegal command still shows its out-of-range findings after the error.
    await decodes(
      ['--features', 'sidsize=8', '0x0000010000000403:0x1'],
      [
        'CFGI_STE sid=0x100 ssec=1 leaf=1  # CERROR_ILL ssec-on-nonsecure-queue: CMD_CFGI_STE has SSec == 1, which is ILLEGAL on the non-secure Command queue (§4.1.6); out of range: CMD_CFGI_STE: StreamID 0x100 is at or above 2^8 (SMMU_IDR1.SIDSIZE == 8) (§4.1.7)',
      ],
    );
  });
});

describe('decode --features', () => {
  it('no-ril makes the README range TLBI illegal (§4.4.1.1)', async () => {
    // NUM 18 = 0b10010 -> bits 13, 16; SCALE 23 = 0b10111 -> 20, 21, 22, 24; TTL 3 -> 72, 73; TG 3 -> 74, 75.
    await decodes(
      ['--features', 'no-ril', README_HEX],
      [
        'TLBI_NH_VA vmid=0x1 asid=0x5 addr=0x8d36456a6000 leaf=1 tg=64K num=18 scale=23 ttl=3  # CERROR_ILL ril-res0: CMD_TLBI_NH_VA: NUM, SCALE, TG, TTL and TTL128 are RES0 because SMMU_IDR3.RIL == 0, but bits 13, 16, 20, 21, 22, 24, 72, 73, 74, 75 are set (§4.4.1.1)',
      ],
    );
  });

  it('no-s1,no-ril,sidsize=8: stage 1 commands are irrelevant, StreamIDs above 2^8 out of range', async () => {
    await decodes(
      ['--features', 'no-s1,no-ril,sidsize=8', README_HEX, '0x0000010000000003:0x1', '0x0000000100000003:0x1', '0x0000000100000028:0', '0x5:0'],
      [
        'TLBI_NH_VA vmid=0x1 asid=0x5 addr=0x8d36456a6000 leaf=1 tg=64K num=18 scale=23 ttl=3  # CERROR_ILL stage1-not-implemented: CMD_TLBI_NH_VA raises CERROR_ILL because stage 1 is not implemented (SMMU_IDR0.S1P == 0) (§4.4.2)',
        'CFGI_STE sid=0x100 leaf=1  # legal; out of range: CMD_CFGI_STE: StreamID 0x100 is at or above 2^8 (SMMU_IDR1.SIDSIZE == 8) (§4.1.7)',
        'CFGI_STE sid=0x1 leaf=1  # legal',
        'TLBI_S12_VMALL vmid=0x1  # legal',
        'CFGI_CD sid=0x0  # CERROR_ILL stage1-not-implemented: CMD_CFGI_CD raises CERROR_ILL because stage 1 is not implemented (SMMU_IDR0.S1P == 0) (§4.3.3)',
      ],
    );
  });

  it('no-ats makes CMD_ATC_INV ILLEGAL (§4.5.1)', async () => {
    await decodes(
      ['--features', 'no-ats', '0x0000000300005840:0x12345000'],
      ['ATC_INV sid=0x3 ssid=0x5 ssv=1 addr=0x12345000 size=0  # CERROR_ILL ats-not-implemented: CMD_ATC_INV is ILLEGAL because SMMU_IDR0.ATS == 0 (§4.5.1)'],
    );
  });
});

describe('decode --json', () => {
  it('prints exactly the documented keys, in order, for a legal command', async () => {
    const r = await run(['decode', '--json', README_HEX]);
    expect(r.code).toBe(0);
    expect(r.err).toBe('');
    // Fields wider than 32 bits (Address) are hex strings; the rest are numbers.
    expect(r.out).toBe(
      '{"opcode":18,"name":"CMD_TLBI_NH_VA","fields":{"Opcode":18,"VMID":1,"ASID":5,"Address":"0x8d36456a6000","Leaf":1,"TG":3,"NUM":18,"SCALE":23,"TTL":3,"TTL128":0},' +
        '"res0":[],"legal":true,"error":null,"reason":null,"rule":null,"section":null,"outOfRange":[]}\n',
    );
    expect(Object.keys(JSON.parse(r.out))).toEqual(JSON_KEYS);
  });

  it('the README example: --json --features no-ril', async () => {
    const r = await run(['decode', '--json', '--features', 'no-ril', README_HEX]);
    expect(r.code).toBe(0);
    const o = JSON.parse(r.out);
    expect(Object.keys(o)).toEqual(JSON_KEYS);
    expect(o).toEqual({
      opcode: 18,
      name: 'CMD_TLBI_NH_VA',
      fields: { Opcode: 18, VMID: 1, ASID: 5, Address: '0x8d36456a6000', Leaf: 1, TG: 3, NUM: 18, SCALE: 23, TTL: 3, TTL128: 0 },
      res0: [],
      legal: false,
      error: 'CERROR_ILL',
      reason: 'CMD_TLBI_NH_VA: NUM, SCALE, TG, TTL and TTL128 are RES0 because SMMU_IDR3.RIL == 0, but bits 13, 16, 20, 21, 22, 24, 72, 73, 74, 75 are set',
      rule: 'ril-res0',
      section: '§4.4.1.1',
      outOfRange: [],
    });
  });

  it('RES0 positions, out-of-range findings and wide fields of an illegal CMD_SYNC (§4.7.3, §4.1.5)', async () => {
    // MSIAddress (54 bits, shift 2) is wide: a string even when 0. Bits [126:120] are RES0;
    // bit 127 is MSI_NS.
    const r = await run(['decode', '--json', '0x0000000000001046:0xff00000000000000']);
    expect(r.out).toBe(
      '{"opcode":70,"name":"CMD_SYNC","fields":{"Opcode":70,"CS":1,"MSIAddress":"0x0","MSIData":0,"MSH":0,"MSIAttr":0,"MSI_NS":1},' +
        '"res0":[120,121,122,123,124,125,126],"legal":false,"error":"CERROR_ILL",' +
        '"reason":"CMD_SYNC sets RES0 bits outside its fields: bits 120, 121, 122, 123, 124, 125, 126 are set","rule":"res0-bits","section":"§4.1.5","outOfRange":[]}\n',
    );
  });

  it('out-of-range findings are objects {rule, reason, section}', async () => {
    const r = await run(['decode', '--json', '0x0000000300000040:0x35']);
    const o = JSON.parse(r.out);
    expect(Object.keys(o)).toEqual(JSON_KEYS);
    expect(o.legal).toBe(true);
    expect(o.error).toBeNull();
    expect(o.outOfRange).toEqual([
      {
        rule: 'atc-inv-size-out-of-range',
        reason: 'CMD_ATC_INV: Size 53 is above 52; the model takes the span as Size == 52 (invalidate all)',
        section: '§4.5.1',
      },
    ]);
  });

  it('a Reserved opcode: only Opcode as a field, every set bit above it as RES0', async () => {
    const r = await run(['decode', '--json', '0xdead000000000008:0x1']);
    expect(JSON.parse(r.out)).toEqual({
      opcode: 8,
      name: 'RESERVED_0x08',
      fields: { Opcode: 8 },
      // 0xdead << 48: bits 48, 50, 51, 53, 55, 57..60, 62, 63; dword 1 bit 0 is flat 64.
      res0: [48, 50, 51, 53, 55, 57, 58, 59, 60, 62, 63, 64],
      legal: false,
      error: 'CERROR_ILL',
      reason: 'opcode 0x8 is Reserved',
      rule: 'reserved-opcode',
      section: '§4.1.1',
      outOfRange: [],
    });
  });

  it('every random command gives one JSON object with exactly the documented keys', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 16, maxLength: 16 }), async (bytes) => {
        const hex = Buffer.from(bytes).toString('hex');
        const r = await run(['decode', '--json', hex]);
        expect(r.code).toBe(0);
        expect(r.out.endsWith('\n')).toBe(true);
        expect(r.out.indexOf('\n')).toBe(r.out.length - 1);
        const o = JSON.parse(r.out);
        expect(Object.keys(o)).toEqual(JSON_KEYS);
        expect(o.opcode).toBe(bytes[0]);
        expect(typeof o.legal).toBe('boolean');
        if (o.legal) expect([o.error, o.reason, o.rule, o.section]).toEqual([null, null, null, null]);
        else expect(o.error).toBe('CERROR_ILL');
      }),
      { numRuns: 200 },
    );
  });
});

describe('decode from standard input', () => {
  it('skips blank lines and # comments, trims whitespace and CRLF', async () => {
    const stdin = `# a queue dump\n\n${README_HEX}\r\n   \n  0x46:0  \n# end\n0x3046:0`;
    await decodes(
      [],
      [
        README_TEXT,
        'SYNC cs=SIG_NONE  # legal',
        'SYNC cs=Reserved  # CERROR_ILL sync-cs-reserved: CMD_SYNC has CS == 0b11, which is Reserved and causes CERROR_ILL (§4.7.3)',
      ],
      stdin,
    );
  });

  it('lines split across input chunks anywhere decode the same', async () => {
    const text = `${README_HEX}\n\n# c\n0x46:0\n0x10:0\n`;
    const expected = `${README_TEXT}\nSYNC cs=SIG_NONE  # legal\nTLBI_NH_ALL vmid=0x0  # legal\n`;
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(fc.integer({ min: 1, max: text.length - 1 }), { maxLength: 6 }), async (cuts) => {
        const at = [0, ...cuts.sort((a, b) => a - b), text.length];
        const chunks = at.slice(1).map((end, i) => text.slice(at[i], end));
        const r = await run(['decode'], chunks);
        expect(r.out).toBe(expected);
        expect(r.code).toBe(0);
      }),
      { numRuns: 50 },
    );
  });

  it('--json applies to standard input too', async () => {
    const r = await run(['decode', '--json'], `${README_HEX}\n0x46:0\n`);
    const lines = r.out.split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[2]).toBe('');
    expect(JSON.parse(lines[0]!).name).toBe('CMD_TLBI_NH_VA');
    expect(JSON.parse(lines[1]!).name).toBe('CMD_SYNC');
  });

  it('a bad line names its line number; the lines before it are printed', async () => {
    const r = await run(['decode'], `0x46:0\n\n# x\n12345\n0x10:0\n`);
    expect(r.code).toBe(2);
    expect(r.out).toBe('SYNC cs=SIG_NONE  # legal\n');
    expect(r.err).toBe("smmu-sim decode: line 4: '12345': expected 32 hex digits (16 bytes, byte 0 first), got 5\n");
  });

  it('empty standard input prints nothing and succeeds', async () => {
    await decodes([], [], '');
  });
});

describe('decode structures', () => {
  const Z16 = '0'.repeat(16);

  /** Every field of a layout at 0 (wide fields as "0x0"), as structureToJson prints them. */
  function zeroFields(fields: readonly Field[]): Record<string, number | string> {
    return Object.fromEntries(fields.map((f) => [f.name, isWide(f) ? '0x0' : 0]));
  }

  // A stage 1 STE as Linux writes one (§5.2): dword 0 = V [0] | Config [3:1] = 0b101 (0xa) |
  // S1ContextPtr [55:6] = 0x81000000 in place -> 0x000000008100000b. dword 1 = S1DSS [65:64] = 0b10 |
  // S1CIR [67:66] = 0b01 (0x4) | S1COR [69:68] = 0b01 (0x10) | S1CSH [71:70] = 0b11 (0xc0) |
  // S1STALLD [91] (0x08000000) | SHCFG [109:108] = 0b01 (1 << 44) -> 0x00001000080000d6.
  const STE_HEX = `0b00008100000000d600000800100000${Z16.repeat(6)}`;
  const STE_WORDS = '0x000000008100000b:0x00001000080000d6:0:0:0:0:0:0';
  const STE_TEXT = [
    'STE',
    '  V=1',
    '  Config=S1_TRANS (0b101)',
    '  S1ContextPtr=0x81000000',
    '  S1DSS=SSID0 (0b10)',
    '  S1CIR=WB_RA (0b01)',
    '  S1COR=WB_RA (0b01)',
    '  S1CSH=ISH (0b11)',
    '  S1STALLD=1',
    '  SHCFG=INCOMING (0b01)',
  ];

  it('--ste: text, both hex forms', async () => {
    await decodes(['--ste', STE_HEX], STE_TEXT);
    await decodes(['--ste', STE_WORDS], STE_TEXT);
  });

  it('--ste: set RES0 bits are listed (§5.2: bits [107:105] are RES0)', async () => {
    // Bit 105 = dword 1 bit 41 = byte 13 bit 1.
    await decodes(['--ste', `0b00008100000000d600000800120000${Z16.repeat(6)}`], [...STE_TEXT, '  RES0 bits set: 105']);
  });

  it('--ste --json: every field, wide ones as hex strings', async () => {
    const r = await run(['decode', '--ste', '--json', STE_WORDS]);
    expect(r.code).toBe(0);
    expect(r.out.split('\n')).toHaveLength(2);
    expect(JSON.parse(r.out)).toEqual({
      structure: 'STE',
      fields: { ...zeroFields(STE.fields), V: 1, Config: 5, S1ContextPtr: '0x81000000', S1DSS: 2, S1CIR: 1, S1COR: 1, S1CSH: 3, S1STALLD: 1, SHCFG: 1 },
      res0: [],
    });
  });

  // A CD as Linux writes one (§5.4): T0SZ [5:0] = 16, IR0 [9:8] = OR0 [11:10] = 0b01, SH0 [13:12] =
  // 0b11, EPD1 [30], V [31] -> word 0 = 0xc0003510; IPS [34:32] = 0b101, AA64 [41], R [45], A [46],
  // ASET [47], ASID [63:48] = 5 -> word 1 = 0x0005e205; TTB0 [119:68] = 0x80004000 in place in
  // dword 1; MAIR0 [223:192] = 0x0004ff44.
  const CD_HEX = `103500c005e205000040008000000000${Z16}44ff040000000000${Z16.repeat(4)}`;
  const CD_WORDS = '0x0005e205c0003510:0x80004000:0:0x0004ff44:0:0:0:0';
  const CD_TEXT = [
    'CD',
    '  T0SZ=0x10',
    '  IR0=WB_RA_WA (0b01)',
    '  OR0=WB_RA_WA (0b01)',
    '  SH0=ISH (0b11)',
    '  EPD1=1',
    '  V=1',
    '  IPS=48_BITS (0b101)',
    '  AA64=1',
    '  R=1',
    '  A=1',
    '  ASET=1',
    '  ASID=5',
    '  TTB0=0x80004000',
    '  MAIR0=0x4ff44',
  ];

  it('--cd: text and JSON', async () => {
    await decodes(['--cd', CD_HEX], CD_TEXT);
    await decodes(['--cd', CD_WORDS], CD_TEXT);
    const r = await run(['decode', '--cd', '--json', CD_HEX]);
    expect(JSON.parse(r.out)).toEqual({
      structure: 'CD',
      fields: {
        ...zeroFields(CD.fields),
        T0SZ: 16, IR0: 1, OR0: 1, SH0: 3, EPD1: 1, V: 1, IPS: 5, AA64: 1, R: 1, A: 1, ASET: 1, ASID: 5, TTB0: '0x80004000', MAIR0: 0x4ff44,
      },
      res0: [],
    });
  });

  it('--l1std: Span [4:0] = 9, L2Ptr [55:6] = 0x81230000 (§5.1); one dword, with or without 0x', async () => {
    const text = ['L1STD', '  Span=9', '  L2Ptr=0x81230000'];
    await decodes(['--l1std', '0900238100000000'], text);
    await decodes(['--l1std', '0x81230009'], text);
    await decodes(['--l1std', '0x0000000081230009'], text);
    const r = await run(['decode', '--l1std', '--json', '0x81230009']);
    expect(r.out).toBe('{"structure":"L1STD","fields":{"Span":9,"L2Ptr":"0x81230000"},"res0":[]}\n');
  });

  it('--l1cd: V [0], L2Ptr [55:12] = 0x82345000 (§5.3)', async () => {
    const text = ['L1CD', '  V=1', '  L2Ptr=0x82345000'];
    await decodes(['--l1cd', '0150348200000000'], text);
    await decodes(['--l1cd', '0x82345001'], text);
    const r = await run(['decode', '--l1cd', '--json', '0150348200000000']);
    expect(r.out).toBe('{"structure":"L1CD","fields":{"V":1,"L2Ptr":"0x82345000"},"res0":[]}\n');
  });

  // F_TRANSLATION (§7.3.13): EventID 0x10, SSV [11], SubstreamID [31:12] = 5, StreamID [63:32] = 3
  // -> dword 0 = 0x0000000300005810; STAG [79:64] = 7, Stall [95], RnW [99], CLASS [105:104] = 0b10
  // (IN) -> dword 1 = 0x0000020880000007; InputAddr [191:128] = 0xffffdeadb000.
  const EVT_HEX = `10580000030000000700008008020000 00b0addeffff0000${Z16}`;
  const EVT_WORDS = '0x0000000300005810:0x0000020880000007:0x0000ffffdeadb000:0';
  const EVT_TEXT = 'F_TRANSLATION sid=0x3 ssid=0x5 input=0xffffdeadb000 ipa=0x0 class=IN stag=0x7 stall=1 pnu=0 ind=0 rnw=1 nsipa=0 s2=0';

  it('--event: text and JSON', async () => {
    await decodes(['--event', EVT_HEX], [EVT_TEXT]);
    await decodes(['--event', EVT_WORDS], [EVT_TEXT]);
    const r = await run(['decode', '--event', '--json', EVT_WORDS]);
    expect(r.out).toBe(
      '{"id":16,"name":"F_TRANSLATION","fields":{"EventID":16,"SSV":1,"SubstreamID":5,"StreamID":3,"STAG":7,"Stall":1,"PnU":0,"InD":0,"RnW":1,"NSIPA":0,"S2":0,"CLASS":2,"IMPDEF_127_112":0,"InputAddr":"0xffffdeadb000","IPA":"0x0"},"res0":[]}\n',
    );
  });

  it('structures from standard input, one per line', async () => {
    await decodes(['--l1std'], ['L1STD', '  Span=9', '  L2Ptr=0x81230000', 'L1STD', '  Span=0'], '# l1\n0x81230009\n\n0x0\n');
  });
});
