import { forEachLine, OutBuffer, parse, UsageError, type Io } from './args.ts';
import { commandDwords, commandHex, encodeCommandWords, type CommandInput } from '../spec/command-codec.ts';

export const ENCODE_HELP = `usage: smmu-sim encode [--json] JSON ...

Encode SMMUv3 commands (IHI0070 G.b §4). Each JSON argument is one command: its name (or
opcode) and its fields by their spec names, the same names 'smmu-sim decode --json' prints:
  smmu-sim encode '{"name":"CMD_TLBI_NH_VA","VMID":1,"ASID":5,"Address":"0x8d36456a6000","Leaf":1,"TG":"64K","NUM":18,"SCALE":23,"TTL":3}'
Values may be numbers, "0x…" strings (needed above 2^53), or an enumeration's name ("64K",
"SIG_IRQ"). Fields left out are 0. CMD_CFGI_ALL is CMD_CFGI_STE_RANGE with Range 31.
Without arguments, one JSON command per line is read from standard input.

Prints the 32 hex digits in memory order (byte 0 first) and the two 64-bit words:
  1220710101000500016f6a45368d0000  0x0005000101712012:0x00008d36456a6f01

options:
  --json       print {"hex": "...", "dwords": "0x…:0x…"} per command instead
  -h, --help   this text
`;

const OPCODE_TEXT = /^(0x[0-9a-f]+|[0-9]+)$/i;

/**
 * Check the JSON types before the codec sees them: a name must be a string; an opcode, like a
 * field value, a number or a string ("0x…", decimal, or for fields an enumeration's name).
 */
function commandInput(input: Record<string, unknown>, where: string): CommandInput {
  const { name, opcode } = input;
  if (name !== undefined && typeof name !== 'string') {
    throw new UsageError(`encode: ${where}"name" must be a string such as "CMD_SYNC", not ${JSON.stringify(name)}`);
  }
  for (const [key, v] of Object.entries(input)) {
    if (key === 'name' || key === 'opcode' || typeof v === 'number' || typeof v === 'string') continue;
    throw new UsageError(`encode: ${where}field ${key}: expected a number or a string, not ${JSON.stringify(v)}`);
  }
  if (typeof opcode === 'string') {
    const t = opcode.trim();
    if (!OPCODE_TEXT.test(t)) throw new UsageError(`encode: ${where}"opcode" must be a number or a "0x…" string, not ${JSON.stringify(opcode)}`);
    return { ...input, opcode: Number(t) } as CommandInput;
  }
  if (opcode !== undefined && typeof opcode !== 'number') {
    throw new UsageError(`encode: ${where}"opcode" must be a number or a "0x…" string, not ${JSON.stringify(opcode)}`);
  }
  return input as CommandInput;
}

function encodeLine(text: string, json: boolean, where: string): string {
  let input: unknown;
  try {
    input = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`encode: ${where}not valid JSON: ${(e as Error).message}`);
  }
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new UsageError(`encode: ${where}expected a JSON object such as {"name":"CMD_SYNC","CS":"SIG_IRQ"}`);
  }
  const command = commandInput(input as Record<string, unknown>, where);
  let words: Uint32Array;
  try {
    words = encodeCommandWords(command);
  } catch (e) {
    if (e instanceof RangeError) throw new UsageError(`encode: ${where}${e.message}`);
    throw e;
  }
  const hex = commandHex(words);
  const dwords = commandDwords(words);
  return json ? JSON.stringify({ hex, dwords }) : `${hex}  ${dwords}`;
}

export async function encodeMain(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse('encode', argv, { json: { type: 'boolean' } } as const);
  const out = new OutBuffer(io);
  const json = values.json === true;
  if (positionals.length > 0) {
    // As on standard input, the lines before a bad argument are printed before its error.
    try {
      for (const p of positionals) out.line(encodeLine(p, json, ''));
    } finally {
      out.flush();
    }
    return 0;
  }
  if (io.stdinIsTTY) throw new UsageError('encode: give JSON arguments or pipe one JSON command per line (see --help)');
  try {
    await forEachLine(io, (line, n) => out.line(encodeLine(line, json, `line ${n}: `)));
  } finally {
    out.flush();
  }
  return 0;
}
