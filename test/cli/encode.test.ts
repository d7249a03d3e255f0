/**
 * `smmu-sim encode`, driven in-process through main(argv, io) with a fake Io, and the round trip
 * encode -> decode for every named command of §4.1.1.
 *
 * Hand-derived vectors: the range fields of §4.4.1.1 (text table) and the CMD_SYNC fields of
 * §4.7.3 / the fact sheet (shared/reference/smmuv3.md §4.7); byte 0 first, little-endian (§4.1.1).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { run } from '../helpers/cli.ts';
import { CFGI_ALL_RANGE, COMMANDS, OP, type CommandField, type CommandSpec } from '../../src/spec/commands.ts';
import { isWide } from '../../src/spec/bits.ts';

async function encodes(argv: string[], lines: readonly string[], stdin?: string): Promise<void> {
  const r = await run(['encode', ...argv], stdin);
  expect(r.err).toBe('');
  expect(r.out).toBe(lines.map((l) => `${l}\n`).join(''));
  expect(r.code).toBe(0);
}

/** The README's TLBI_NH_VA (§4.4.2.4, §4.4.1.1); see decode.test.ts for the arithmetic. */
const README_LINE = '1220710101000500016f6a45368d0000  0x0005000101712012:0x00008d36456a6f01';

describe('encode', () => {
  it('the README example: numbers, "0x…" strings and an enum name', async () => {
    await encodes(['{"name":"CMD_TLBI_NH_VA","VMID":1,"ASID":5,"Address":"0x8d36456a6000","Leaf":1,"TG":"64K","NUM":18,"SCALE":23,"TTL":3}'], [README_LINE]);
  });

  it('every value form gives the same command: number, 0x, 0b, decimal string, enum name, digit groups', async () => {
    const forms = [
      '{"name":"CMD_TLBI_NH_VA","VMID":1,"ASID":5,"Address":155264232349696,"Leaf":1,"TG":3,"NUM":18,"SCALE":23,"TTL":3}',
      '{"name":"CMD_TLBI_NH_VA","VMID":"0x1","ASID":"0x5","Address":"0x8d36_456a_6000","Leaf":"1","TG":"0b11","NUM":"0x12","SCALE":"23","TTL":"0b11"}',
      // Enum names in any case; field names by spec name in any case or by the printed short name.
      '{"name":"tlbi_nh_va","vmid":1,"asid":5,"addr":"0x8d36456a6000","leaf":1,"tg":"64k","num":18,"scale":23,"ttl":3}',
      // By opcode instead of name: a number or a "0x…" string.
      '{"opcode":18,"VMID":1,"ASID":5,"Address":"0x8d36456a6000","Leaf":1,"TG":"64K","NUM":18,"SCALE":23,"TTL":3}',
      '{"opcode":"0x12","VMID":1,"ASID":5,"Address":"0x8d36456a6000","Leaf":1,"TG":"64K","NUM":18,"SCALE":23,"TTL":3}',
      '{"name":"CMD_TLBI_NH_VA","opcode":18,"Opcode":18,"VMID":1,"ASID":5,"Address":"0x8d36456a6000","Leaf":1,"TG":"64K","NUM":18,"SCALE":23,"TTL":3}',
    ];
    await encodes(forms, forms.map(() => README_LINE));
  });

  it('CMD_SYNC with CS by name (§4.7.3): the README encode example', async () => {
    // CS [13:12] = SIG_IRQ (1) -> 0x1000 | 0x46; MSIAddress[55:2] at [119:66] is in place in dword 1.
    await encodes(['{"name":"CMD_SYNC","CS":"SIG_IRQ","MSIAddress":"0x40001230"}'], ['46100000000000003012004000000000  0x0000000000001046:0x0000000040001230']);
  });

  it('CMD_CFGI_ALL sets Range = 31 (§4.3.6); fields left out are 0', async () => {
    await encodes(['{"name":"CMD_CFGI_ALL"}', '{"name":"CFGI_ALL","StreamID":0}'], [
      '04000000000000001f00000000000000  0x0000000000000004:0x000000000000001f',
      '04000000000000001f00000000000000  0x0000000000000004:0x000000000000001f',
    ]);
  });

  it('--json prints {"hex","dwords"}', async () => {
    await encodes(['--json', '{"name":"CMD_SYNC","CS":"SIG_IRQ","MSIAddress":"0x40001230"}'], [
      '{"hex":"46100000000000003012004000000000","dwords":"0x0000000000001046:0x0000000040001230"}',
    ]);
  });

  it('reads one JSON command per line from standard input, skipping blanks and # lines', async () => {
    await encodes(
      [],
      ['46000000000000000000000000000000  0x0000000000000046:0x0000000000000000', README_LINE],
      '# two commands\n{"name":"CMD_SYNC"}\n\n  {"name":"CMD_TLBI_NH_VA","VMID":1,"ASID":5,"Address":"0x8d36456a6000","Leaf":1,"TG":"64K","NUM":18,"SCALE":23,"TTL":3}\r\n',
    );
    await encodes(['--json'], ['{"hex":"46000000000000000000000000000000","dwords":"0x0000000000000046:0x0000000000000000"}'], '{"name":"CMD_SYNC"}');
  });

  it('a bad line on standard input names its line; the lines before it are printed', async () => {
    const r = await run(['encode'], '{"name":"CMD_SYNC"}\n{"name":"CMD_SYNC","CS":4}\n');
    expect(r.code).toBe(2);
    expect(r.out).toBe('46000000000000000000000000000000  0x0000000000000046:0x0000000000000000\n');
    expect(r.err).toBe('smmu-sim encode: line 2: CMD_SYNC: CS: 0x4 does not fit in 2 bits\n');
  });

  it('a bad argument: the arguments before it are printed, as on standard input', async () => {
    const r = await run(['encode', '{"name":"CMD_SYNC"}', '{"name":"CMD_SYNC","CS":4}']);
    expect(r.code).toBe(2);
    expect(r.out).toBe('46000000000000000000000000000000  0x0000000000000046:0x0000000000000000\n');
    expect(r.err).toBe('smmu-sim encode: CMD_SYNC: CS: 0x4 does not fit in 2 bits\n');
  });
});

// ---------------------------------------------------------------------------------------------
// Round trip: encode -> decode --json for every named command
// ---------------------------------------------------------------------------------------------

/** A value a field can hold (shift applied), as a bigint. */
function fieldValue(f: CommandField): fc.Arbitrary<bigint> {
  const shift = BigInt(f.shift ?? 0);
  return fc.bigInt({ min: 0n, max: (1n << BigInt(f.width)) - 1n }).map((v) => v << shift);
}

/** How the value is written in the JSON: every form encode accepts. */
function written(f: CommandField, v: bigint): fc.Arbitrary<number | string> {
  const forms: fc.Arbitrary<number | string>[] = [fc.constant(`0x${v.toString(16)}`), fc.constant(v.toString()), fc.constant(`0b${v.toString(2)}`)];
  if (v <= BigInt(Number.MAX_SAFE_INTEGER)) forms.push(fc.constant(Number(v)));
  const name = f.values?.[Number(v)];
  if (name !== undefined) forms.push(fc.constant(name));
  return fc.oneof(...forms);
}

/** The fields a caller may set: not Opcode; CMD_CFGI_ALL's Range is fixed at 31. */
function settable(spec: CommandSpec): CommandField[] {
  return spec.fields.filter((f) => f.name !== 'Opcode' && !(spec.name === 'CMD_CFGI_ALL' && f.name === 'Range'));
}

function commandArb(spec: CommandSpec): fc.Arbitrary<{ values: Record<string, bigint>; json: Record<string, number | string> }> {
  const fields = settable(spec);
  return fc
    .tuple(...fields.map((f) => (spec.name === 'CMD_CFGI_STE_RANGE' && f.name === 'Range' ? fc.bigInt({ min: 0n, max: 30n }) : fieldValue(f))))
    .chain((vals) =>
      fc.tuple(...fields.map((f, i) => written(f, vals[i]!))).map((ws) => ({
        values: Object.fromEntries(fields.map((f, i) => [f.name, vals[i]!])),
        json: Object.fromEntries(fields.map((f, i) => [f.name, ws[i]!])),
      })),
    );
}

describe('round trip encode -> decode for every named command (§4.1.1)', () => {
  it('COMMANDS names every opcode of OP (so the loop below covers them all)', () => {
    expect(COMMANDS.map((c) => c.name).sort()).toEqual(Object.keys(OP).sort());
  });

  it.each(COMMANDS.map((c) => [c.name, c] as const))('%s', async (_name, spec) => {
    await fc.assert(
      fc.asyncProperty(commandArb(spec), async ({ values, json }) => {
        const enc = await run(['encode', '--json', JSON.stringify({ name: spec.name, ...json })]);
        expect(enc.err).toBe('');
        expect(enc.code).toBe(0);
        const { hex, dwords } = JSON.parse(enc.out) as { hex: string; dwords: string };
        expect(hex).toMatch(/^[0-9a-f]{32}$/);

        // Both hex forms decode to the same line.
        const byHex = await run(['decode', '--json', hex]);
        const byWords = await run(['decode', '--json', dwords]);
        expect(byWords.out).toBe(byHex.out);
        const d = JSON.parse(byHex.out);
        expect(d.opcode).toBe(spec.opcode);
        expect(d.name).toBe(spec.name);
        expect(d.res0).toEqual([]);
        const expected: Record<string, number | string> = { Opcode: spec.opcode };
        for (const f of spec.fields) {
          if (f.name === 'Opcode') continue;
          const v = spec.name === 'CMD_CFGI_ALL' && f.name === 'Range' ? BigInt(CFGI_ALL_RANGE) : values[f.name]!;
          expected[f.name] = isWide(f) ? `0x${v.toString(16)}` : Number(v);
        }
        expect(d.fields).toEqual(expected);

        // The decoder's fields, given back to the encoder, give the same bytes.
        const again = await run(['encode', JSON.stringify({ name: d.name, ...d.fields })]);
        expect(again.out).toBe(`${hex}  ${dwords}\n`);
      }),
      { numRuns: 40 },
    );
  });
});
