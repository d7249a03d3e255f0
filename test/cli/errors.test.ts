/**
 * Bad input to `smmu-sim`: exit code 2, nothing on standard output, and exactly one line on
 * standard error that names the problem (never a stack trace). And --help for every subcommand.
 */
import { describe, expect, it } from 'vitest';
import { usage } from '../../src/cli/main.ts';
import { run } from '../helpers/cli.ts';
import { DECODE_HELP } from '../../src/cli/decode.ts';
import { ENCODE_HELP } from '../../src/cli/encode.ts';
import { REGS_HELP } from '../../src/cli/regs.ts';
import { DEMO_HELP } from '../../src/cli/demo.ts';

/** Exit 2, no output, one stderr line exactly `message`. */
async function fails(argv: string[], message: string, stdin = '', stdinIsTTY = false): Promise<void> {
  const r = await run(argv, stdin, stdinIsTTY);
  expect(r.err).toBe(`${message}\n`);
  expect(r.out).toBe('');
  expect(r.code).toBe(2);
}

function jsonError(text: string): string {
  try {
    JSON.parse(text);
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error(`${text} is valid JSON`);
}

const FEATURE_WORDS =
  '[no-](s1|s2|hyp|ril|ats|pri|msi|sev|vmid16|asid16|coherent|cd2l|st2l|btm|vmw|mpam|dpt|ds|gran4k|gran16k|gran64k|ecmdq|res0check), ' +
  'sidsize=0..32, ssidsize=0..20, cmdqs=0..19, eventqs=0..19, priqs=0..19, oas=0..6, vax=0..1, httu=0..2, ' +
  'ecmdq-log2nump=0..8, ecmdq-log2numq=0..8, arch=0..4, stall-model=(stall|no-stall|stall-forced)';

describe('bad input: exit 2 and one stderr line', () => {
  it.each([
    // Subcommands and options.
    [['nosuch'], "smmu-sim: unknown command 'nosuch' (commands: bench, decode, encode, regs, demo, fuzz, replay)"],
    [['decode', '--jsn', '0x46:0'], "smmu-sim decode: unknown option '--jsn'"],
    [['decode', '--json=1', '0x46:0'], "smmu-sim decode: option '--json' does not take an argument"],
    [['decode', '--features'], "smmu-sim decode: option '--features <value>' argument missing"],
    [['encode', '-x', '{}'], "smmu-sim encode: unknown option '-x'"],
    [['regs', '--bogus'], "smmu-sim regs: unknown option '--bogus'"],
    [['demo', '--fast'], "smmu-sim demo: unknown option '--fast'"],
    // Hex: wrong length, bad character, 0x on the memory form, wrong word count, too-long word.
    [['decode', '1234'], "smmu-sim decode: '1234': expected 32 hex digits (16 bytes, byte 0 first), got 4"],
    [['decode', '1220710101000500016f6a45368d000'], "smmu-sim decode: '1220710101000500016f6a45368d000': expected 32 hex digits (16 bytes, byte 0 first), got 31"],
    [['decode', '1220710101000500016f6a45368d00zz'], "smmu-sim decode: '1220710101000500016f6a45368d00zz': invalid hex character 'z' at position 30"],
    [
      ['decode', '0x1220710101000500016f6a45368d0000'],
      "smmu-sim decode: '0x1220710101000500016f6a45368d0000': invalid hex character 'x' at position 1 (memory-order hex has no 0x prefix; use 0xDWORD0:0xDWORD1 for words)",
    ],
    [['decode', '0x46:0:0'], "smmu-sim decode: '0x46:0:0': expected exactly two 64-bit words 0xDWORD0:0xDWORD1, found 3 parts"],
    [['decode', '0x46:0x12345678901234567'], "smmu-sim decode: '0x46:0x12345678901234567': dword 1 '0x12345678901234567' is not a hex number of 1 to 16 digits"],
    [['decode', '--ste', '00'], "smmu-sim decode: '00': STE needs 128 hex digits (byte 0 first) or 8 64-bit words 0xW0:…:0xW7; got 2 digits"],
    // --features.
    [['decode', '--features', 'no-bogus', '0x46:0'], `smmu-sim decode: --features: unknown feature 'no-bogus' (known: ${FEATURE_WORDS})`],
    [['decode', '--features', 'sidsize=33', '0x46:0'], 'smmu-sim decode: --features: feature sidsize=33: expected an integer in 0..32'],
    [['decode', '--features', 'no-s1,no-s2', '0x46:0'], 'smmu-sim decode: --features: inconsistent features: at least one of s1 and s2 must be implemented (IDR0.S1P/S2P)'],
    // Two structure kinds at once.
    [['decode', '--ste', '--cd', '00'], 'smmu-sim decode: choose one of --ste, --cd'],
    [['decode', '--l1std', '--l1cd', '--event', '00'], 'smmu-sim decode: choose one of --l1std, --l1cd, --event'],
    // encode: JSON, command names, fields, values.
    // The parser's own message, whose wording varies between Node versions.
    [['encode', '{bad'], `smmu-sim encode: not valid JSON: ${jsonError('{bad')}`],
    [['encode', '[1]'], 'smmu-sim encode: expected a JSON object such as {"name":"CMD_SYNC","CS":"SIG_IRQ"}'],
    [['encode', '{}'], 'smmu-sim encode: command needs a name or an opcode'],
    [['encode', '{"name":"CMD_FOO"}'], "smmu-sim encode: unknown command 'CMD_FOO'"],
    [['encode', '{"name":5}'], 'smmu-sim encode: "name" must be a string such as "CMD_SYNC", not 5'],
    [['encode', '{"opcode":"x"}'], 'smmu-sim encode: "opcode" must be a number or a "0x…" string, not "x"'],
    [['encode', '{"opcode":256}'], 'smmu-sim encode: command: opcode 256 is not an integer in 0..255'],
    [['encode', '{"name":"CMD_SYNC","opcode":18}'], 'smmu-sim encode: CMD_SYNC: opcode 0x12 given, but CMD_SYNC is opcode 0x46'],
    [['encode', '{"name":"CMD_SYNC","Foo":1}'], 'smmu-sim encode: CMD_SYNC has no field Foo (fields: Opcode, CS, MSIAddress, MSIData, MSH, MSIAttr, MSI_NS)'],
    [['encode', '{"name":"CMD_SYNC","CS":4}'], 'smmu-sim encode: CMD_SYNC: CS: 0x4 does not fit in 2 bits'],
    [['encode', '{"name":"CMD_SYNC","CS":null}'], 'smmu-sim encode: field CS: expected a number or a string, not null'],
    [['encode', '{"name":"CMD_SYNC","CS":1.5}'], 'smmu-sim encode: CMD_SYNC: CS: 1.5 is not a safe integer'],
    [['encode', '{"name":"CMD_TLBI_NH_ALL","VMID":-1}'], 'smmu-sim encode: CMD_TLBI_NH_ALL: VMID: -1 is negative'],
    [
      ['encode', '{"name":"CMD_SYNC","CS":"SIG_FOO"}'],
      "smmu-sim encode: CMD_SYNC: CS: 'SIG_FOO' is not a number (0x…, 0b… or decimal) or one of SIG_NONE, SIG_IRQ, SIG_SEV, Reserved",
    ],
    [['encode', '{"name":"CMD_TLBI_NH_VA","Address":"0x10000000000000000"}'], 'smmu-sim encode: CMD_TLBI_NH_VA: Address: 0x10000000000000000 does not fit in 64 bits'],
    [['encode', '{"name":"CMD_TLBI_NH_VA","Address":"0x1001"}'], 'smmu-sim encode: CMD_TLBI_NH_VA: Address: 0x1001 has bits below bit 12 set (the field holds [63:12])'],
    [
      ['encode', '{"name":"CMD_CFGI_ALL","Range":3}'],
      'smmu-sim encode: CMD_CFGI_ALL: Range must be 31 (CMD_CFGI_ALL is CMD_CFGI_STE_RANGE with Range 31, §4.3.6)',
    ],
    // regs.
    [['regs', 'nosuch'], "smmu-sim regs: no register 'nosuch' (try 'smmu-sim regs' for the list)"],
    [['regs', '0x10000'], "smmu-sim regs: no register '0x10000' (try 'smmu-sim regs' for the list)"],
    [['regs', 'cr0', 'cr1'], 'smmu-sim regs: give at most one register name or offset'],
  ] as const)('%j', async (argv, message) => {
    await fails([...argv], message);
  });

  it('standard input that is a terminal, with no arguments, is a usage error', async () => {
    await fails(['decode'], 'smmu-sim decode: give HEX arguments or pipe commands on standard input (see --help)', '', true);
    await fails(['decode', '--json'], 'smmu-sim decode: give HEX arguments or pipe commands on standard input (see --help)', '', true);
    await fails(['encode'], 'smmu-sim encode: give JSON arguments or pipe one JSON command per line (see --help)', '', true);
  });

  it('bad JSON on standard input names its line', async () => {
    await fails(['encode'], `smmu-sim encode: line 3: not valid JSON: ${jsonError('{')}`, '\n# c\n{\n');
  });

  it('no message carries a stack trace, even for arbitrary garbage', async () => {
    for (const argv of [['decode', ':'], ['decode', '::::'], ['decode', ' '], ['encode', '"x"'], ['encode', 'null'], ['encode', '{"name":{}}'], ['regs', '-1'], ['decode', '--event', '0x1:0x2']]) {
      const r = await run(argv);
      expect(r.code).toBe(2);
      expect(r.err.split('\n')).toHaveLength(2);
      expect(r.err).toMatch(/^smmu-sim (decode|encode|regs): /);
      expect(r.err).not.toMatch(/\n\s+at /);
    }
  });
});

describe('--help', () => {
  it('main: --help, -h and help print the usage and exit 0', async () => {
    for (const argv of [['--help'], ['-h'], ['help']]) {
      const r = await run(argv);
      expect(r.code).toBe(0);
      expect(r.err).toBe('');
      expect(r.out).toBe(usage());
    }
    const text = usage();
    expect(text).toContain('usage: smmu-sim <command> [options]');
    for (const c of ['decode', 'encode', 'regs', 'demo']) expect(text).toMatch(new RegExp(`^  ${c} +\\S`, 'm'));
  });

  it('main with no arguments prints the usage to stderr and exits 2', async () => {
    const r = await run([]);
    expect(r.code).toBe(2);
    expect(r.out).toBe('');
    expect(r.err).toBe(usage());
  });

  it.each([
    ['decode', DECODE_HELP, ['--json', '--features LIST', '--ste', '--cd', '--l1std', '--l1cd', '--event', '--help', 'usage: smmu-sim decode']],
    ['encode', ENCODE_HELP, ['--json', '--help', 'usage: smmu-sim encode']],
    ['regs', REGS_HELP, ['--json', '--secure', '--help', 'usage: smmu-sim regs']],
    ['demo', DEMO_HELP, ['--policy P', '--help', 'usage: smmu-sim demo']],
  ] as const)('%s --help and -h print its options and exit 0', async (cmd, help, words) => {
    for (const flag of ['--help', '-h']) {
      // The help flag wins wherever it stands, even next to input that would be an error.
      for (const argv of [[cmd, flag], [cmd, '--json', flag, 'zz']]) {
        const r = await run(argv);
        expect(r.code).toBe(0);
        expect(r.err).toBe('');
        expect(r.out).toBe(help);
      }
    }
    for (const w of words) expect(help).toContain(w);
  });
});
