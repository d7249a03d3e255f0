/**
 * Hand-derived vectors, one or more per named opcode of IHI0070 G.b §4.1.1.
 *
 * Each vector was built by hand from the field positions in the spec text (§4.4.1.1 for NUM, SCALE,
 * TG, TTL, TTL128) or, where the spec's bit diagram is an image, from the fact sheet
 * (shared/reference/smmuv3.md §4.2–§4.3). `dwords` is dword 0 (bits [63:0]) then dword 1
 * (bits [127:64]); `hex` is the same 16 bytes in memory order (byte 0 first, little-endian, §4.1.1).
 * The comment on each vector shows the arithmetic.
 */
import { describe, expect, it } from 'vitest';
import { commandDwords, commandHex, decodeCommand, encodeCommand, encodeCommandWords } from '../../src/spec/command-codec.ts';
import type { CommandInput } from '../../src/spec/command-codec.ts';
import { COMMANDS } from '../../src/spec/commands.ts';
import type { FieldValue } from '../../src/spec/bits.ts';

interface Vector {
  /** What the test is called. */
  readonly title: string;
  /** Spec section the command is defined in. */
  readonly section: string;
  /** The decoded name expected. */
  readonly name: string;
  readonly input: CommandInput;
  /** Expected decoded field values that are non-zero (everything else must decode as 0). */
  readonly fields: Readonly<Record<string, FieldValue>>;
  readonly dwords: string;
  readonly hex: string;
}

const V: readonly Vector[] = [
  {
    // 0x01 | SSec<<10 (0x400) | SSV<<11 (0x800) | SubstreamID 0x12345<<12 | StreamID<<32
    title: 'PREFETCH_CONFIG with SSec, SSV and SubstreamID', section: '4.2.1', name: 'CMD_PREFETCH_CONFIG',
    input: { name: 'CMD_PREFETCH_CONFIG', StreamID: 0xdeadbeef, SubstreamID: 0x12345, SSV: 1, SSec: 1 },
    fields: { StreamID: 0xdeadbeef, SubstreamID: 0x12345, SSV: 1, SSec: 1 },
    dwords: '0xdeadbeef12345c01:0x0000000000000000',
    hex: '015c3412efbeadde0000000000000000',
  },
  {
    // dw1: Address[63:12] | NS[75]=dw1[11] (0x800) | Stride[73:69]=9<<5 (0x120) | Size[68:64]=9
    title: 'PREFETCH_ADDR with Size, Stride and NS', section: '4.2.2', name: 'CMD_PREFETCH_ADDR',
    input: { name: 'PREFETCH_ADDR', StreamID: 0x42, Address: 0xffff800012345000n, Size: 9, Stride: 9, NS: 1 },
    fields: { StreamID: 0x42, Address: 0xffff800012345000n, Size: 9, Stride: 9, NS: 1 },
    dwords: '0x0000004200000002:0xffff800012345929',
    hex: '0200000042000000295934120080ffff',
  },
  {
    title: 'CFGI_STE with Leaf', section: '4.3.1', name: 'CMD_CFGI_STE',
    input: { name: 'CMD_CFGI_STE', StreamID: 0x1000, Leaf: 1 },
    fields: { StreamID: 0x1000, Leaf: 1 },
    dwords: '0x0000100000000003:0x0000000000000001',
    hex: '03000000001000000100000000000000',
  },
  {
    // Range[68:64] = 7: 2^8 StreamIDs from 0x300 aligned
    title: 'CFGI_STE_RANGE Range=7', section: '4.3.2', name: 'CMD_CFGI_STE_RANGE',
    input: { name: 'CMD_CFGI_STE_RANGE', StreamID: 0x300, Range: 7 },
    fields: { StreamID: 0x300, Range: 7 },
    dwords: '0x0000030000000004:0x0000000000000007',
    hex: '04000000000300000700000000000000',
  },
  {
    // CMD_CFGI_ALL is CMD_CFGI_STE_RANGE with Range == 31 (0x1f)
    title: 'CFGI_ALL (0x04, Range=31)', section: '4.3.6', name: 'CMD_CFGI_ALL',
    input: { name: 'CMD_CFGI_ALL' },
    fields: { Range: 31 },
    dwords: '0x0000000000000004:0x000000000000001f',
    hex: '04000000000000001f00000000000000',
  },
  {
    // SubstreamID 0xfffff<<12 = 0xfffff000
    title: 'CFGI_CD with SubstreamID and Leaf', section: '4.3.3', name: 'CMD_CFGI_CD',
    input: { name: 'CMD_CFGI_CD', StreamID: 7, SubstreamID: 0xfffff, Leaf: 1 },
    fields: { StreamID: 7, SubstreamID: 0xfffff, Leaf: 1 },
    dwords: '0x00000007fffff005:0x0000000000000001',
    hex: '05f0ffff070000000100000000000000',
  },
  {
    title: 'CFGI_CD_ALL', section: '4.3.4', name: 'CMD_CFGI_CD_ALL',
    input: { name: 'CMD_CFGI_CD_ALL', StreamID: 0xabcdef01 },
    fields: { StreamID: 0xabcdef01 },
    dwords: '0xabcdef0100000006:0x0000000000000000',
    hex: '0600000001efcdab0000000000000000',
  },
  {
    title: 'CFGI_VMS_PIDM', section: '4.3.5', name: 'CMD_CFGI_VMS_PIDM',
    input: { name: 'CMD_CFGI_VMS_PIDM', VMID: 0x1234 },
    fields: { VMID: 0x1234 },
    dwords: '0x0000123400000007:0x0000000000000000',
    hex: '07000000341200000000000000000000',
  },
  {
    title: 'TLBI_NH_ALL', section: '4.4.2.1', name: 'CMD_TLBI_NH_ALL',
    input: { name: 'CMD_TLBI_NH_ALL', VMID: 0xffff },
    fields: { VMID: 0xffff },
    dwords: '0x0000ffff00000010:0x0000000000000000',
    hex: '10000000ffff00000000000000000000',
  },
  {
    // ASID[63:48] | VMID[47:32]
    title: 'TLBI_NH_ASID', section: '4.4.2.2', name: 'CMD_TLBI_NH_ASID',
    input: { name: 'CMD_TLBI_NH_ASID', VMID: 0x12, ASID: 0xbeef },
    fields: { VMID: 0x12, ASID: 0xbeef },
    dwords: '0xbeef001200000011:0x0000000000000000',
    hex: '110000001200efbe0000000000000000',
  },
  {
    // dw0: ASID 5<<48 | VMID 1<<32 | SCALE 23<<20 (0x01700000) | NUM 18<<12 (0x12000) | 0x12
    // dw1: Address | TG 3<<10 (0xc00) | TTL 3<<8 (0x300) | Leaf (1)
    title: 'TLBI_NH_VA range form (the formatCommand example)', section: '4.4.2.4, 4.4.1.1', name: 'CMD_TLBI_NH_VA',
    input: { name: 'TLBI_NH_VA', VMID: 1, ASID: 5, Address: 0x8d36456a6000n, Leaf: 1, TG: '64K', NUM: 18, SCALE: 23, TTL: 3 },
    fields: { VMID: 1, ASID: 5, Address: 0x8d36456a6000n, Leaf: 1, TG: 3, NUM: 18, SCALE: 23, TTL: 3 },
    dwords: '0x0005000101712012:0x00008d36456a6f01',
    hex: '1220710101000500016f6a45368d0000',
  },
  {
    // dw0: SCALE 39<<20 (0x02700000) | NUM 31<<12 (0x1f000); dw1: TG 1<<10 | TTL 2<<8 | TTL128 1<<7 = 0x680
    title: 'TLBI_NH_VA with TTL128 and a 6-bit SCALE', section: '4.4.2.4, 4.4.1.1', name: 'CMD_TLBI_NH_VA',
    input: { name: 'CMD_TLBI_NH_VA', VMID: 0x2a, ASID: 0x1234, Address: 0xffff0000dead0000n, TG: 1, NUM: 31, SCALE: 39, TTL: 2, TTL128: 1 },
    fields: { VMID: 0x2a, ASID: 0x1234, Address: 0xffff0000dead0000n, TG: 1, NUM: 31, SCALE: 39, TTL: 2, TTL128: 1 },
    dwords: '0x1234002a0271f012:0xffff0000dead0680',
    hex: '12f071022a0034128006adde0000ffff',
  },
  {
    title: 'TLBI_NH_VAA', section: '4.4.2.3', name: 'CMD_TLBI_NH_VAA',
    input: { name: 'CMD_TLBI_NH_VAA', VMID: 3, Address: 0x4000000000n, Leaf: 1 },
    fields: { VMID: 3, Address: 0x4000000000n, Leaf: 1 },
    dwords: '0x0000000300000013:0x0000004000000001',
    hex: '13000000030000000100000040000000',
  },
  {
    title: 'TLBI_EL3_ALL', section: '4.4.2.5', name: 'CMD_TLBI_EL3_ALL',
    input: { name: 'CMD_TLBI_EL3_ALL' },
    fields: {},
    dwords: '0x0000000000000018:0x0000000000000000',
    hex: '18000000000000000000000000000000',
  },
  {
    // dw0: SCALE 2<<20 | NUM 1<<12 | 0x1a; dw1: top VA page | TG 2<<10 (0x800) | TTL 3<<8 | Leaf
    title: 'TLBI_EL3_VA, highest VA page, 16K range', section: '4.4.2.6, 4.4.1.1', name: 'CMD_TLBI_EL3_VA',
    input: { name: 'CMD_TLBI_EL3_VA', Address: 0xfffffffffffff000n, Leaf: 1, TG: '16K', TTL: 3, NUM: 1, SCALE: 2 },
    fields: { Address: 0xfffffffffffff000n, Leaf: 1, TG: 2, TTL: 3, NUM: 1, SCALE: 2 },
    dwords: '0x000000000020101a:0xfffffffffffffb01',
    hex: '1a1020000000000001fbffffffffffff',
  },
  {
    title: 'TLBI_EL2_ALL', section: '4.4.2.7', name: 'CMD_TLBI_EL2_ALL',
    input: { name: 'CMD_TLBI_EL2_ALL' },
    fields: {},
    dwords: '0x0000000000000020:0x0000000000000000',
    hex: '20000000000000000000000000000000',
  },
  {
    title: 'TLBI_EL2_ASID', section: '4.4.2.10', name: 'CMD_TLBI_EL2_ASID',
    input: { name: 'CMD_TLBI_EL2_ASID', ASID: 0xffff },
    fields: { ASID: 0xffff },
    dwords: '0xffff000000000021:0x0000000000000000',
    hex: '210000000000ffff0000000000000000',
  },
  {
    title: 'TLBI_EL2_VA', section: '4.4.2.8', name: 'CMD_TLBI_EL2_VA',
    input: { name: 'CMD_TLBI_EL2_VA', ASID: 0x77, Address: 0x1000 },
    fields: { ASID: 0x77, Address: 0x1000n },
    dwords: '0x0077000000000022:0x0000000000001000',
    hex: '22000000000077000010000000000000',
  },
  {
    // dw1: 0x800000000000 | TG 3<<10 (0xc00) | TTL 1<<8 (0x100) | Leaf
    title: 'TLBI_EL2_VAA', section: '4.4.2.9', name: 'CMD_TLBI_EL2_VAA',
    input: { name: 'CMD_TLBI_EL2_VAA', Address: 0x800000000000n, Leaf: 1, TG: 3, TTL: 1 },
    fields: { Address: 0x800000000000n, Leaf: 1, TG: 3, TTL: 1 },
    dwords: '0x0000000000000023:0x0000800000000d01',
    hex: '2300000000000000010d000000800000',
  },
  {
    title: 'TLBI_S12_VMALL', section: '4.4.3.2', name: 'CMD_TLBI_S12_VMALL',
    input: { name: 'CMD_TLBI_S12_VMALL', VMID: 0x100 },
    fields: { VMID: 0x100 },
    dwords: '0x0000010000000028:0x0000000000000000',
    hex: '28000000000100000000000000000000',
  },
  {
    // IPA fields are Address[55:12] (§4.1.6): the highest IPA page is 0x00fffffffffff000
    title: 'TLBI_S2_IPA, highest IPA page', section: '4.4.3.1, 4.1.6', name: 'CMD_TLBI_S2_IPA',
    input: { name: 'CMD_TLBI_S2_IPA', VMID: 5, Address: 0x00fffffffffff000n, Leaf: 1 },
    fields: { VMID: 5, Address: 0x00fffffffffff000n, Leaf: 1 },
    dwords: '0x000000050000002a:0x00fffffffffff001',
    hex: '2a0000000500000001f0ffffffffff00',
  },
  {
    title: 'TLBI_NSNH_ALL', section: '4.4.4.1', name: 'CMD_TLBI_NSNH_ALL',
    input: { name: 'CMD_TLBI_NSNH_ALL' },
    fields: {},
    dwords: '0x0000000000000030:0x0000000000000000',
    hex: '30000000000000000000000000000000',
  },
  {
    // dw0: SubstreamID 1<<12 | SSV 0x800 | Global 1<<9 (0x200) | 0x40; dw1: Size 52 (0x34) = invalidate all
    title: 'ATC_INV Size=52 (everything), Global with SSV', section: '4.5.1', name: 'CMD_ATC_INV',
    input: { name: 'CMD_ATC_INV', StreamID: 0x10, SubstreamID: 1, SSV: 1, Global: 1, Size: 52 },
    fields: { StreamID: 0x10, SubstreamID: 1, SSV: 1, Global: 1, Size: 52 },
    dwords: '0x0000001000001a40:0x0000000000000034',
    hex: '401a0000100000003400000000000000',
  },
  {
    // dw1: PRGIndex 0x1ff | Resp 2 (Success) << 12
    title: 'PRI_RESP Success', section: '4.5.2', name: 'CMD_PRI_RESP',
    input: { name: 'CMD_PRI_RESP', StreamID: 0x20, SubstreamID: 0xabcde, SSV: 1, PRGIndex: 0x1ff, Resp: 'Success' },
    fields: { StreamID: 0x20, SubstreamID: 0xabcde, SSV: 1, PRGIndex: 0x1ff, Resp: 2 },
    dwords: '0x00000020abcde841:0x00000000000021ff',
    hex: '41e8cdab20000000ff21000000000000',
  },
  {
    // dw0: Ac 1<<12 | Ab 1<<13 = 0x3000; dw1: STAG
    title: 'RESUME retry', section: '4.7.1', name: 'CMD_RESUME',
    input: { name: 'CMD_RESUME', StreamID: 0x99, STAG: 0xfedc, Ac: 1, Ab: 1 },
    fields: { StreamID: 0x99, STAG: 0xfedc, Ac: 1, Ab: 1 },
    dwords: '0x0000009900003044:0x000000000000fedc',
    hex: '4430000099000000dcfe000000000000',
  },
  {
    title: 'STALL_TERM, Secure stream', section: '4.7.2', name: 'CMD_STALL_TERM',
    input: { name: 'CMD_STALL_TERM', StreamID: 0xffffffff, SSec: 1 },
    fields: { StreamID: 0xffffffff, SSec: 1 },
    dwords: '0xffffffff00000445:0x0000000000000000',
    hex: '45040000ffffffff0000000000000000',
  },
  {
    // dw0: MSIData<<32 | MSIAttr 0xf<<24 | MSH 3<<22 (0x00c00000) | CS 1<<12 | 0x46
    // dw1: MSIAddress[55:2] sits at dw1[55:2], so dw1 is the address itself
    title: 'SYNC SIG_IRQ with MSIAddress', section: '4.7.3', name: 'CMD_SYNC',
    input: { name: 'CMD_SYNC', CS: 'SIG_IRQ', MSH: 'ISH', MSIAttr: 0xf, MSIData: 0xcafef00d, MSIAddress: '0x1234567890' },
    fields: { CS: 1, MSH: 3, MSIAttr: 0xf, MSIData: 0xcafef00d, MSIAddress: 0x1234567890n },
    dwords: '0xcafef00d0fc01046:0x0000001234567890',
    hex: '4610c00f0df0feca9078563412000000',
  },
  {
    // CS 2<<12; MSI_NS at bit 127 (unverified position)
    title: 'SYNC SIG_SEV with MSI_NS', section: '4.7.3', name: 'CMD_SYNC',
    input: { name: 'CMD_SYNC', CS: 2, MSI_NS: 1 },
    fields: { CS: 2, MSI_NS: 1 },
    dwords: '0x0000000000002046:0x8000000000000000',
    hex: '46200000000000000000000000000080',
  },
  {
    title: 'TLBI_S_EL2_ALL', section: '4.4.2.11', name: 'CMD_TLBI_S_EL2_ALL',
    input: { name: 'CMD_TLBI_S_EL2_ALL' },
    fields: {},
    dwords: '0x0000000000000050:0x0000000000000000',
    hex: '50000000000000000000000000000000',
  },
  {
    title: 'TLBI_S_EL2_ASID', section: '4.4.2.14', name: 'CMD_TLBI_S_EL2_ASID',
    input: { name: 'CMD_TLBI_S_EL2_ASID', ASID: 1 },
    fields: { ASID: 1 },
    dwords: '0x0001000000000051:0x0000000000000000',
    hex: '51000000000001000000000000000000',
  },
  {
    title: 'TLBI_S_EL2_VA', section: '4.4.2.12', name: 'CMD_TLBI_S_EL2_VA',
    input: { name: 'CMD_TLBI_S_EL2_VA', ASID: 2, Address: 0x2000, Leaf: 1 },
    fields: { ASID: 2, Address: 0x2000n, Leaf: 1 },
    dwords: '0x0002000000000052:0x0000000000002001',
    hex: '52000000000002000120000000000000',
  },
  {
    // dw1: 0x3000 | TG 1<<10 (0x400) | TTL 3<<8 (0x300)
    title: 'TLBI_S_EL2_VAA', section: '4.4.2.13', name: 'CMD_TLBI_S_EL2_VAA',
    input: { name: 'CMD_TLBI_S_EL2_VAA', Address: 0x3000, TG: '4K', TTL: 3 },
    fields: { Address: 0x3000n, TG: 1, TTL: 3 },
    dwords: '0x0000000000000053:0x0000000000003700',
    hex: '53000000000000000037000000000000',
  },
  {
    title: 'TLBI_S_S12_VMALL', section: '4.4.3.4', name: 'CMD_TLBI_S_S12_VMALL',
    input: { name: 'CMD_TLBI_S_S12_VMALL', VMID: 0xff },
    fields: { VMID: 0xff },
    dwords: '0x000000ff00000058:0x0000000000000000',
    hex: '58000000ff0000000000000000000000',
  },
  {
    // dw1: 0x4000 | NS at bit 65 = dw1[1] (0x2, unverified position) | Leaf
    title: 'TLBI_S_S2_IPA with NS', section: '4.4.3.3', name: 'CMD_TLBI_S_S2_IPA',
    input: { name: 'CMD_TLBI_S_S2_IPA', VMID: 1, Address: 0x4000, Leaf: 1, NS: 1 },
    fields: { VMID: 1, Address: 0x4000n, Leaf: 1, NS: 1 },
    dwords: '0x000000010000005a:0x0000000000004003',
    hex: '5a000000010000000340000000000000',
  },
  {
    title: 'TLBI_SNH_ALL', section: '4.4.4.2', name: 'CMD_TLBI_SNH_ALL',
    input: { name: 'CMD_TLBI_SNH_ALL' },
    fields: {},
    dwords: '0x0000000000000060:0x0000000000000000',
    hex: '60000000000000000000000000000000',
  },
  {
    title: 'DPTI_ALL', section: '4.6.1', name: 'CMD_DPTI_ALL',
    input: { name: 'CMD_DPTI_ALL' },
    fields: {},
    dwords: '0x0000000000000070:0x0000000000000000',
    hex: '70000000000000000000000000000000',
  },
  {
    // dw1: PA 0x100000000 | SIZE 3 (2MB) at [71:68] = dw1[7:4] (0x30, unverified) | Leaf at dw1[0]
    title: 'DPTI_PA 2MB leaf', section: '4.6.2', name: 'CMD_DPTI_PA',
    input: { name: 'CMD_DPTI_PA', Address: 0x100000000n, Size: '2MB', Leaf: 1 },
    fields: { Address: 0x100000000n, Size: 3, Leaf: 1 },
    dwords: '0x0000000000000073:0x0000000100000031',
    hex: '73000000000000003100000001000000',
  },
];

function bytesOf(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

describe('hand-derived command vectors (§4.1.1–§4.7)', () => {
  it('cover every named command', () => {
    const covered = new Set(V.map((v) => v.name));
    expect(COMMANDS.map((c) => c.name).filter((n) => !covered.has(n))).toEqual([]);
  });

  it('agree between their two hex forms', () => {
    for (const v of V) {
      const [d0, d1] = v.dwords.split(':').map((x) => BigInt(x));
      const b = bytesOf(v.hex);
      let lo = 0n;
      let hi = 0n;
      for (let i = 7; i >= 0; i--) {
        lo = (lo << 8n) | BigInt(b[i]!);
        hi = (hi << 8n) | BigInt(b[8 + i]!);
      }
      expect([lo, hi], v.title).toEqual([d0, d1]);
    }
  });

  for (const v of V) {
    describe(`${v.title} (§${v.section})`, () => {
      it('encodes to the hand-derived bytes', () => {
        expect(encodeCommand(v.input)).toEqual(bytesOf(v.hex));
        const words = encodeCommandWords(v.input);
        expect(commandDwords(words)).toBe(v.dwords);
        expect(commandHex(words)).toBe(v.hex);
      });

      it('decodes to exactly the fields', () => {
        const d = decodeCommand(bytesOf(v.hex));
        expect(d.name).toBe(v.name);
        expect(d.opcode).toBe(bytesOf(v.hex)[0]);
        expect(d.res0).toEqual([]);
        const expected: Record<string, FieldValue> = {};
        for (const f of d.spec.fields) {
          const wide = f.width + (f.shift ?? 0) > 32;
          const given = f.name === 'Opcode' ? d.opcode : v.fields[f.name];
          expected[f.name] = given ?? (wide ? 0n : 0);
        }
        expect(d.fields).toEqual(expected);
      });
    });
  }

  it('CMD_CFGI_STE_RANGE with Range 31 decodes as CMD_CFGI_ALL, keeping its StreamID (§4.3.6)', () => {
    const d = decodeCommand(encodeCommand({ name: 'CMD_CFGI_STE_RANGE', StreamID: 0x55, Range: 31 }));
    expect(d.name).toBe('CMD_CFGI_ALL');
    expect(d.spec.section).toBe('4.3.6');
    expect(d.fields).toEqual({ Opcode: 4, StreamID: 0x55, SSec: 0, Range: 31 });
    expect(commandDwords(d.words)).toBe('0x0000005500000004:0x000000000000001f');
  });
});
