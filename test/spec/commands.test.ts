/**
 * The command table (IHI0070 G.b §4.1.1) and the codec: properties, RES0 reporting, hex forms,
 * printing and errors. Per-opcode byte vectors live in command-vectors.test.ts.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { FieldValue } from '../../src/spec/bits.ts';
import {
  commandDwords,
  commandHex,
  commandToJson,
  decodeCommand,
  encodeCommand,
  encodeCommandWords,
  formatCommand,
  parseCommandHex,
} from '../../src/spec/command-codec.ts';
import type { CommandInput } from '../../src/spec/command-codec.ts';
import { COMMANDS, OP, commandByName, commandSpec } from '../../src/spec/commands.ts';
import type { CommandSpec } from '../../src/spec/commands.ts';

const isWideField = (f: { width: number; shift?: number }): boolean => f.width + (f.shift ?? 0) > 32;

/** §4.1.1's opcode table, transcribed: every named opcode. */
const SPEC_TABLE: Readonly<Record<number, string>> = {
  0x01: 'CMD_PREFETCH_CONFIG', 0x02: 'CMD_PREFETCH_ADDR', 0x03: 'CMD_CFGI_STE', 0x04: 'CMD_CFGI_STE_RANGE',
  0x05: 'CMD_CFGI_CD', 0x06: 'CMD_CFGI_CD_ALL', 0x07: 'CMD_CFGI_VMS_PIDM',
  0x10: 'CMD_TLBI_NH_ALL', 0x11: 'CMD_TLBI_NH_ASID', 0x12: 'CMD_TLBI_NH_VA', 0x13: 'CMD_TLBI_NH_VAA',
  0x18: 'CMD_TLBI_EL3_ALL', 0x1a: 'CMD_TLBI_EL3_VA',
  0x20: 'CMD_TLBI_EL2_ALL', 0x21: 'CMD_TLBI_EL2_ASID', 0x22: 'CMD_TLBI_EL2_VA', 0x23: 'CMD_TLBI_EL2_VAA',
  0x28: 'CMD_TLBI_S12_VMALL', 0x2a: 'CMD_TLBI_S2_IPA', 0x30: 'CMD_TLBI_NSNH_ALL',
  0x40: 'CMD_ATC_INV', 0x41: 'CMD_PRI_RESP', 0x44: 'CMD_RESUME', 0x45: 'CMD_STALL_TERM', 0x46: 'CMD_SYNC',
  0x50: 'CMD_TLBI_S_EL2_ALL', 0x51: 'CMD_TLBI_S_EL2_ASID', 0x52: 'CMD_TLBI_S_EL2_VA', 0x53: 'CMD_TLBI_S_EL2_VAA',
  0x58: 'CMD_TLBI_S_S12_VMALL', 0x5a: 'CMD_TLBI_S_S2_IPA', 0x60: 'CMD_TLBI_SNH_ALL',
  0x70: 'CMD_DPTI_ALL', 0x73: 'CMD_DPTI_PA',
};

describe('opcode table (§4.1.1)', () => {
  it('covers all 256 opcodes with the right name and class', () => {
    for (let op = 0; op < 256; op++) {
      const s = commandSpec(op);
      const hex = op.toString(16).toUpperCase().padStart(2, '0');
      expect(s.opcode, `0x${hex}`).toBe(op);
      const named = SPEC_TABLE[op];
      if (named !== undefined) {
        expect(s.name).toBe(named);
        const cls = op >= 0x50 && op <= 0x60 ? 'secure' : op === 0x70 || op === 0x73 ? 'dpti' : 'architected';
        expect(s.cls, named).toBe(cls);
      } else if (op >= 0x80 && op <= 0x8f) {
        expect([s.name, s.cls]).toEqual([`CMD_IMPDEF_0x${hex}`, 'impdef']);
      } else {
        expect([s.name, s.cls]).toEqual([`RESERVED_0x${hex}`, 'reserved']);
      }
    }
  });

  it('OP names every named opcode, plus CMD_CFGI_ALL = 0x04', () => {
    const expected: Record<string, number> = { CMD_CFGI_ALL: 0x04 };
    for (const [op, name] of Object.entries(SPEC_TABLE)) expected[name] = Number(op);
    expect({ ...OP }).toEqual(expected);
    // COMMANDS is in opcode order, CMD_CFGI_ALL right after CMD_CFGI_STE_RANGE.
    const order: [string, number][] = [];
    for (const [op, name] of Object.entries(SPEC_TABLE)) {
      order.push([name, Number(op)]);
      if (name === 'CMD_CFGI_STE_RANGE') order.push(['CMD_CFGI_ALL', 0x04]);
    }
    expect(COMMANDS.map((c) => [c.name, c.opcode])).toEqual(order);
  });

  it('every layout is 16 bytes, starts with Opcode [7:0], has no overlapping fields and stays inside 128 bits', () => {
    const specs: CommandSpec[] = [...COMMANDS];
    for (let op = 0; op < 256; op++) specs.push(commandSpec(op));
    for (const s of specs) {
      expect(s.bytes).toBe(16);
      expect(s.fields[0]).toMatchObject({ name: 'Opcode', lsb: 0, width: 8 });
      const seen = new Set<number>();
      for (const f of s.fields) {
        expect(f.lsb + f.width, `${s.name}.${f.name}`).toBeLessThanOrEqual(128);
        for (let b = f.lsb; b < f.lsb + f.width; b++) {
          expect(seen.has(b), `${s.name}.${f.name} bit ${b}`).toBe(false);
          seen.add(b);
        }
      }
      const names = s.fields.map((f) => f.name);
      expect(new Set(names).size, s.name).toBe(names.length);
      expect(new Set(s.fields.map((f) => f.short)).size, s.name).toBe(names.length);
      for (const u of s.unverified ?? []) expect(names, `${s.name} unverified ${u}`).toContain(u);
    }
  });

  it('uses the spec positions of the range-invalidation fields in every address-based TLBI (§4.4.1.1)', () => {
    const tlbiVa = COMMANDS.filter((c) => c.name.startsWith('CMD_TLBI_') && c.fields.some((f) => f.name === 'Address'));
    expect(tlbiVa.map((c) => c.name)).toEqual([
      'CMD_TLBI_NH_VA', 'CMD_TLBI_NH_VAA', 'CMD_TLBI_EL3_VA', 'CMD_TLBI_EL2_VA', 'CMD_TLBI_EL2_VAA',
      'CMD_TLBI_S2_IPA', 'CMD_TLBI_S_EL2_VA', 'CMD_TLBI_S_EL2_VAA', 'CMD_TLBI_S_S2_IPA',
    ]);
    for (const c of tlbiVa) {
      const pos = Object.fromEntries(c.fields.map((f) => [f.name, [f.lsb + f.width - 1, f.lsb]]));
      expect(pos, c.name).toMatchObject({ SCALE: [25, 20], NUM: [16, 12], TG: [75, 74], TTL: [73, 72], TTL128: [71, 71] });
    }
  });

  it('finds commands by name with or without CMD_, in any case', () => {
    expect(commandByName('tlbi_nh_va')?.opcode).toBe(0x12);
    expect(commandByName('CMD_SYNC')?.opcode).toBe(0x46);
    expect(commandByName(' cmd_sync ')?.name).toBe('CMD_SYNC');
    const all = commandByName('CFGI_ALL');
    expect([all?.name, all?.opcode]).toEqual(['CMD_CFGI_ALL', 0x04]);
    expect(commandByName('cfgi_ste_range')?.name).toBe('CMD_CFGI_STE_RANGE');
    expect(commandByName('reserved_0x08')?.cls).toBe('reserved');
    expect(commandByName('IMPDEF_0x8F')?.cls).toBe('impdef');
    expect(commandByName('TLBI_NOPE')).toBeUndefined();
  });
});

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

/** Random values for every field of a command (Range of CMD_CFGI_ALL fixed at 31). */
function arbValues(spec: CommandSpec): fc.Arbitrary<Record<string, FieldValue>> {
  const parts: Record<string, fc.Arbitrary<FieldValue>> = {};
  for (const f of spec.fields) {
    if (f.name === 'Opcode') continue;
    if (spec.name === 'CMD_CFGI_ALL' && f.name === 'Range') continue;
    // CMD_CFGI_STE_RANGE with Range 31 is CMD_CFGI_ALL: keep the name stable here.
    const max = spec.name === 'CMD_CFGI_STE_RANGE' && f.name === 'Range' ? 30n : (1n << BigInt(f.width)) - 1n;
    const shift = BigInt(f.shift ?? 0);
    const big = fc.bigInt({ min: 0n, max }).map((v) => v << shift);
    parts[f.name] = isWideField(f) ? big : big.map((v) => Number(v));
  }
  return fc.record(parts);
}

const wordsOf = (b: Uint8Array): number[] => Array.from(new Uint32Array(b.slice().buffer));

describe('codec properties', () => {
  for (const spec of COMMANDS) {
    it(`${spec.name}: random fields encode, decode back to the same values, with no RES0 bits`, () => {
      fc.assert(
        fc.property(arbValues(spec), (values) => {
          const bytes = encodeCommand({ name: spec.name, ...values });
          const d = decodeCommand(bytes);
          expect(d.name).toBe(spec.name);
          expect(d.res0).toEqual([]);
          const expected: Record<string, FieldValue> = { Opcode: spec.opcode, ...values };
          if (spec.name === 'CMD_CFGI_ALL') expected.Range = 31;
          expect(d.fields).toEqual(expected);
          // Same result through the opcode instead of the name.
          expect(encodeCommand({ opcode: spec.opcode, ...expected })).toEqual(bytes);
        }),
        { numRuns: 200 },
      );
    });
  }

  const anyOpcodeBytes = fc.uint8Array({ minLength: 16, maxLength: 16 });
  const namedOpcodeBytes = fc
    .tuple(fc.constantFrom(...COMMANDS.map((c) => c.opcode)), fc.uint8Array({ minLength: 15, maxLength: 15 }))
    .map(([op, rest]) => Uint8Array.from([op, ...rest]));

  for (const [label, arb] of [['any opcode', anyOpcodeBytes], ['named opcodes', namedOpcodeBytes]] as const) {
    it(`decodes arbitrary 16 bytes (${label}) without throwing; re-encoding clears exactly the RES0 bits`, () => {
      fc.assert(
        fc.property(arb, (bytes) => {
          const d = decodeCommand(bytes);
          const input = wordsOf(bytes);
          expect([...d.words]).toEqual(input);
          expect(d.opcode).toBe(bytes[0]);
          const again = encodeCommandWords({ opcode: d.opcode, ...d.fields });
          const cleared: number[] = [];
          for (let i = 0; i < 4; i++) {
            // Re-encoding never sets a bit the input did not have …
            expect((again[i]! & ~input[i]!) >>> 0).toBe(0);
            // … and drops exactly the bits decode reported as RES0.
            const diff = (input[i]! ^ again[i]!) >>> 0;
            for (let b = 0; b < 32; b++) if ((diff >>> b) & 1) cleared.push(32 * i + b);
          }
          expect(cleared).toEqual(d.res0);
          // Decoding the re-encoded command gives the same name and fields.
          const d2 = decodeCommand(again);
          expect([d2.name, d2.fields, d2.res0]).toEqual([d.name, d.fields, []]);
        }),
        { numRuns: 3000 },
      );
    });
  }

  it('decodes from words and from a byte or word offset', () => {
    const bytes = encodeCommand({ name: 'CMD_TLBI_NH_ASID', VMID: 3, ASID: 4 });
    const padded = new Uint8Array(40);
    padded.set(bytes, 20);
    expect(decodeCommand(padded, 20).fields).toEqual({ Opcode: 0x11, VMID: 3, ASID: 4 });
    const words = new Uint32Array(8);
    words.set(wordsOf(bytes), 4);
    expect(decodeCommand(words, 4).fields).toEqual({ Opcode: 0x11, VMID: 3, ASID: 4 });
    expect(decodeCommand(wordsOf(bytes)).name).toBe('CMD_TLBI_NH_ASID');
  });

  it('throws only when fewer than 16 bytes / 4 words are given', () => {
    expect(() => decodeCommand(new Uint8Array(15))).toThrow(new RangeError('decodeCommand: need 16 bytes at offset 0, have 15'));
    expect(() => decodeCommand(new Uint8Array(32), 20)).toThrow(new RangeError('decodeCommand: need 16 bytes at offset 20, have 12'));
    expect(() => decodeCommand([1, 2, 3])).toThrow(new RangeError('decodeCommand: need 4 words at offset 0, have 3'));
  });
});

// ---------------------------------------------------------------------------------------------
// RES0 reporting
// ---------------------------------------------------------------------------------------------

/** Words with the given flat bits set on top of `base`. */
function withBits(base: Uint32Array, bits: number[]): Uint32Array {
  const w = base.slice();
  for (const b of bits) w[b >>> 5] = (w[b >>> 5]! | (1 << (b & 31))) >>> 0;
  return w;
}

describe('RES0 bits are reported by exact flat position (§4.1.5)', () => {
  it('CMD_SYNC: bits 8–11, 14–21, 28–31 of dword 0, [65:64] and [126:120] of dword 1', () => {
    const base = encodeCommandWords({ name: 'CMD_SYNC', CS: 1, MSIAddress: 0x1000 });
    const d = decodeCommand(withBits(base, [8, 11, 14, 21, 28, 31, 64, 65, 120, 126]));
    expect(d.name).toBe('CMD_SYNC');
    expect(d.res0).toEqual([8, 11, 14, 21, 28, 31, 64, 65, 120, 126]);
    // Fields are unaffected by RES0 bits.
    expect(d.fields).toMatchObject({ CS: 1, MSIAddress: 0x1000n, MSI_NS: 0 });
  });

  it('CMD_TLBI_NH_VA: the gaps between NUM and SCALE, above SCALE, and between Leaf and TTL128', () => {
    const base = encodeCommandWords({ name: 'CMD_TLBI_NH_VA', VMID: 1, ASID: 2, Address: 0x1000 });
    const gaps = [8, 9, 10, 11, 17, 18, 19, 26, 27, 28, 29, 30, 31, 65, 66, 67, 68, 69, 70];
    expect(decodeCommand(withBits(base, gaps)).res0).toEqual(gaps);
    // The covered bits just beside each gap are not RES0.
    expect(decodeCommand(withBits(base, [12, 16, 20, 25, 32, 63, 64, 71, 72, 75, 76, 127])).res0).toEqual([]);
  });

  it('CMD_TLBI_EL2_VA: VMID [47:32] is RES0 (the command has no VMID)', () => {
    const base = encodeCommandWords({ name: 'CMD_TLBI_EL2_VA', ASID: 1 });
    expect(decodeCommand(withBits(base, [32, 47, 48])).res0).toEqual([32, 47]);
  });

  it('CMD_TLBI_S2_IPA: address bits [63:56] are RES0 (IPA is Address[55:12], §4.1.6)', () => {
    const base = encodeCommandWords({ name: 'CMD_TLBI_S2_IPA', VMID: 1 });
    expect(decodeCommand(withBits(base, [119, 120, 127])).res0).toEqual([120, 127]);
  });

  it('CMD_CFGI_STE: everything in dword 1 except Leaf', () => {
    const base = encodeCommandWords({ name: 'CMD_CFGI_STE', StreamID: 9 });
    expect(decodeCommand(withBits(base, [64, 65, 100, 127, 9])).res0).toEqual([9, 65, 100, 127]);
  });

  it('a Reserved opcode reports every set bit above the opcode; an IMPLEMENTATION DEFINED one none', () => {
    expect(decodeCommand(withBits(new Uint32Array([0x08, 0, 0, 0]), [8, 63, 100])).res0).toEqual([8, 63, 100]);
    const impdef = decodeCommand(new Uint32Array([0xffffff85, 0xffffffff, 0xffffffff, 0xffffffff]));
    expect([impdef.name, impdef.cls, impdef.res0]).toEqual(['CMD_IMPDEF_0x85', 'impdef', []]);
  });
});

// ---------------------------------------------------------------------------------------------
// Hex forms
// ---------------------------------------------------------------------------------------------

describe('parseCommandHex / commandHex / commandDwords', () => {
  const example = '1220710101000500016f6a45368d0000';
  const exampleDwords = '0x0005000101712012:0x00008d36456a6f01';
  const exampleWords = [0x01712012, 0x00050001, 0x456a6f01, 0x00008d36];

  it('reads 32 hex digits in memory order, byte 0 first', () => {
    expect([...parseCommandHex(example)]).toEqual(exampleWords);
    expect([...parseCommandHex(example.toUpperCase())]).toEqual(exampleWords);
    expect([...parseCommandHex('12 20 71 01 01 00 05 00  01 6f 6a 45 36 8d 00 00\n')]).toEqual(exampleWords);
  });

  it('reads two 64-bit dwords, dword 0 first', () => {
    expect([...parseCommandHex(exampleDwords)]).toEqual(exampleWords);
    expect([...parseCommandHex('5000101712012:8d36456a6f01')]).toEqual(exampleWords);
    expect([...parseCommandHex('0x46:0x0')]).toEqual([0x46, 0, 0, 0]);
    expect([...parseCommandHex('0x0 : 0xFFFFFFFFFFFFFFFF')]).toEqual([0, 0, 0xffffffff, 0xffffffff]);
  });

  it('prints both forms', () => {
    expect(commandHex(exampleWords)).toBe(example);
    expect(commandDwords(exampleWords)).toBe(exampleDwords);
    expect(commandDwords([0x46, 0, 0, 0])).toBe('0x0000000000000046:0x0000000000000000');
  });

  it('round-trips any command through both forms', () => {
    fc.assert(
      fc.property(fc.array(fc.nat({ max: 0xffffffff }), { minLength: 4, maxLength: 4 }), (w) => {
        expect([...parseCommandHex(commandHex(w))]).toEqual(w);
        expect([...parseCommandHex(commandDwords(w))]).toEqual(w);
      }),
    );
  });

  it('names the problem in its errors', () => {
    const err = (text: string): string => {
      try {
        parseCommandHex(text);
      } catch (e) {
        expect(e).toBeInstanceOf(RangeError);
        return (e as Error).message;
      }
      return 'no error';
    };
    expect(err('  ')).toBe('empty command: expected 32 hex digits (byte 0 first) or 0xDWORD0:0xDWORD1');
    expect(err('46')).toBe("'46': expected 32 hex digits (16 bytes, byte 0 first), got 2");
    expect(err(`${example}00`)).toBe(`'${example}00': expected 32 hex digits (16 bytes, byte 0 first), got 34`);
    expect(err(`${example.slice(0, 31)}g`)).toBe(`'${example.slice(0, 31)}g': invalid hex character 'g' at position 31`);
    expect(err(`0x${example.slice(2)}`)).toBe(
      `'0x${example.slice(2)}': invalid hex character 'x' at position 1 (memory-order hex has no 0x prefix; use 0xDWORD0:0xDWORD1 for words)`,
    );
    expect(err('0x1:0x2:0x3')).toBe("'0x1:0x2:0x3': expected exactly two 64-bit words 0xDWORD0:0xDWORD1, found 3 parts");
    expect(err('0x1:0x12345678901234567')).toBe("'0x1:0x12345678901234567': dword 1 '0x12345678901234567' is not a hex number of 1 to 16 digits");
    expect(err(':0x1')).toBe("':0x1': dword 0 '' is not a hex number of 1 to 16 digits");
    expect(err('0xg:0x1')).toBe("'0xg:0x1': dword 0 '0xg' is not a hex number of 1 to 16 digits");
  });
});

// ---------------------------------------------------------------------------------------------
// Encode errors
// ---------------------------------------------------------------------------------------------

describe('encodeCommand errors name the command and the field', () => {
  const cases: [CommandInput, string][] = [
    [{ name: 'CMD_NOPE' }, "unknown command 'CMD_NOPE'"],
    [{}, 'command needs a name or an opcode'],
    [{ opcode: 256 }, 'command: opcode 256 is not an integer in 0..255'],
    [{ name: 'CMD_SYNC', opcode: 0x12 }, 'CMD_SYNC: opcode 0x12 given, but CMD_SYNC is opcode 0x46'],
    [{ name: 'CMD_SYNC', Opcode: 0x12 }, 'CMD_SYNC: Opcode 0x12 given, but CMD_SYNC is opcode 0x46'],
    [{ name: 'CMD_SYNC', VMID: 1 }, 'CMD_SYNC has no field VMID (fields: Opcode, CS, MSIAddress, MSIData, MSH, MSIAttr, MSI_NS)'],
    [{ name: 'CMD_TLBI_NH_ASID', VMID: 0x10000 }, 'CMD_TLBI_NH_ASID: VMID: 0x10000 does not fit in 16 bits'],
    [{ name: 'CMD_CFGI_STE', StreamID: -1 }, 'CMD_CFGI_STE: StreamID: -1 is negative'],
    [{ name: 'CMD_CFGI_STE', StreamID: 1.5 }, 'CMD_CFGI_STE: StreamID: 1.5 is not a safe integer'],
    [{ name: 'CMD_TLBI_NH_VA', Address: 0x1234n }, 'CMD_TLBI_NH_VA: Address: 0x1234 has bits below bit 12 set (the field holds [63:12])'],
    [{ name: 'CMD_TLBI_S2_IPA', Address: 1n << 56n }, 'CMD_TLBI_S2_IPA: Address: 0x100000000000000 does not fit in 56 bits'],
    [{ name: 'CMD_SYNC', MSIAddress: '0x1002' }, 'CMD_SYNC: MSIAddress: 0x1002 has bits below bit 2 set (the field holds [55:2])'],
    [{ name: 'CMD_TLBI_NH_VA', TG: 'huge' }, "CMD_TLBI_NH_VA: TG: 'huge' is not a number (0x…, 0b… or decimal) or one of none, 4K, 16K, 64K"],
    [{ name: 'CMD_ATC_INV', Size: 'big' }, "CMD_ATC_INV: Size: 'big' is not a number (0x…, 0b… or decimal)"],
    [{ name: 'CMD_CFGI_ALL', Range: 3 }, 'CMD_CFGI_ALL: Range must be 31 (CMD_CFGI_ALL is CMD_CFGI_STE_RANGE with Range 31, §4.3.6)'],
    [{ name: 'CMD_TLBI_NH_VA', SCALE: 64 }, 'CMD_TLBI_NH_VA: SCALE: 0x40 does not fit in 6 bits'],
  ];
  for (const [input, message] of cases) {
    it(message, () => {
      expect(() => encodeCommand(input)).toThrow(new RangeError(message));
    });
  }

  it('accepts numbers, bigints, hex/binary/decimal strings, enum names and printed field names', () => {
    const a = encodeCommand({ name: 'tlbi_nh_va', vmid: '0x1', asid: 5n, addr: '0x8d36_456a_6000', leaf: '1', tg: '64k', num: '0b10010', scale: '23', ttl: 3 });
    const b = encodeCommand({ name: 'CMD_TLBI_NH_VA', VMID: 1, ASID: 5, Address: 0x8d36456a6000n, Leaf: 1, TG: 3, NUM: 18, SCALE: 23, TTL: 3 });
    expect(a).toEqual(b);
    // undefined values are skipped
    expect(encodeCommand({ name: 'CMD_SYNC', MSIData: undefined })).toEqual(encodeCommand({ name: 'CMD_SYNC' }));
  });
});

// ---------------------------------------------------------------------------------------------
// Printing
// ---------------------------------------------------------------------------------------------

describe('formatCommand / commandToJson', () => {
  it('prints the range TLBI like a disassembler', () => {
    const d = decodeCommand(parseCommandHex('0x0005000101712012:0x00008d36456a6f01'));
    expect(formatCommand(d)).toBe('TLBI_NH_VA vmid=0x1 asid=0x5 addr=0x8d36456a6000 leaf=1 tg=64K num=18 scale=23 ttl=3');
  });

  it('prints fields that are always shown even when zero, and hides other zero fields', () => {
    expect(formatCommand(decodeCommand(encodeCommand({ name: 'CMD_SYNC' })))).toBe('SYNC cs=SIG_NONE');
    expect(formatCommand(decodeCommand(encodeCommand({ name: 'CMD_TLBI_NH_ASID' })))).toBe('TLBI_NH_ASID vmid=0x0 asid=0x0');
    expect(formatCommand(decodeCommand(encodeCommand({ name: 'CMD_CFGI_ALL' })))).toBe('CFGI_ALL sid=0x0 range=31');
    expect(formatCommand(decodeCommand(encodeCommand({ name: 'CMD_TLBI_NSNH_ALL' })))).toBe('TLBI_NSNH_ALL');
    expect(
      formatCommand(decodeCommand(encodeCommand({ name: 'CMD_SYNC', CS: 1, MSH: 3, MSIAttr: 0xf, MSIAddress: 0x80001000n }))),
    ).toBe('SYNC cs=SIG_IRQ msiaddr=0x80001000 msh=ISH msiattr=0xf');
    expect(
      formatCommand(decodeCommand(encodeCommand({ name: 'CMD_PRI_RESP', StreamID: 3, SSV: 1, SubstreamID: 2, PRGIndex: 7, Resp: 1 }))),
    ).toBe('PRI_RESP sid=0x3 ssid=0x2 ssv=1 prgi=0x7 resp=InvalidRequest');
  });

  it('prints Reserved and IMPLEMENTATION DEFINED commands as raw dwords, and lists set RES0 bits', () => {
    expect(formatCommand(decodeCommand(new Uint32Array([0x1ff, 0, 0x10, 0])))).toBe('RESERVED_0xFF 0x00000000000001ff:0x0000000000000010');
    expect(formatCommand(decodeCommand(new Uint32Array([0x1234_5680, 0, 0, 0x8000_0000])))).toBe('IMPDEF_0x80 0x0000000012345680:0x8000000000000000');
    expect(formatCommand(decodeCommand(new Uint32Array([0x111, 0, 0x1, 0])))).toBe('TLBI_NH_ASID vmid=0x0 asid=0x0 res0=8,64');
  });

  it('gives JSON with every field by spec name, wide fields as hex strings', () => {
    const d = decodeCommand(parseCommandHex('0xcafef00d0fc01046:0x0000001234567890'));
    expect(commandToJson(d)).toEqual({
      opcode: 0x46,
      name: 'CMD_SYNC',
      fields: { Opcode: 0x46, CS: 1, MSIAddress: '0x1234567890', MSIData: 0xcafef00d, MSH: 3, MSIAttr: 15, MSI_NS: 0 },
      res0: [],
    });
    const withRes0 = decodeCommand(new Uint32Array([0x112, 0, 0, 0]));
    expect(commandToJson(withRes0)).toEqual({
      opcode: 0x12,
      name: 'CMD_TLBI_NH_VA',
      fields: { Opcode: 0x12, VMID: 0, ASID: 0, Address: '0x0', Leaf: 0, TG: 0, NUM: 0, SCALE: 0, TTL: 0, TTL128: 0 },
      res0: [8],
    });
    expect(JSON.parse(JSON.stringify(commandToJson(d)))).toEqual(commandToJson(d));
  });
});
