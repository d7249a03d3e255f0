import { forEachLine, OutBuffer, parse, UsageError, type Io } from './args.ts';
import { decodeCommand, formatCommand, parseCommandHex } from '../spec/command-codec.ts';
import { checkCommand, type Verdict } from '../spec/legality.ts';
import { featureSyntax, FULL_FEATURES, parseFeatures, type SmmuFeatures } from '../spec/features.ts';
import { decodeStructureHex, STRUCTURE_KINDS, type StructureKind } from './structure-hex.ts';

export const DECODE_HELP = `usage: smmu-sim decode [options] [HEX ...]

Decode SMMUv3 commands (IHI0070 G.b §4) and check them against the architecture.

Each HEX is one 16-byte command, either as 32 hex digits in memory order (byte 0 first, as
a hexdump of the queue shows it) or as two 64-bit words 0xDWORD0:0xDWORD1. Without HEX
arguments, commands are read from standard input, one per line (blank lines and lines
starting with # are skipped).

Each command prints as one line, like a disassembler, followed by '#' and the verdict:
  TLBI_NH_VA vmid=0x1 asid=0x5 addr=0x8d36456a6000 leaf=1 tg=64K num=18 scale=23 ttl=3  # legal
Set RES0 bits show as res0=<bit positions>; an illegal command shows CERROR_ILL, the rule,
the reason and the spec section.

options:
  --json             one JSON object per line: {"opcode","name","fields","res0","legal",
                     "error","reason","rule","section","outOfRange"}; values wider than 32
                     bits are hex strings; error, reason, rule and section are null for a
                     legal command
  --features LIST    the SMMU to check against (default: every optional feature, largest
                     ID sizes). LIST is comma-separated: ${featureSyntax()}
                     e.g. --features no-s1,no-ril,sidsize=8
  --ste | --cd | --l1std | --l1cd | --event
                     decode one structure instead of commands: an STE or CD (64 bytes),
                     an L1 descriptor (8 bytes) or an event record (32 bytes), as hex digits in
                     memory order or as 0x-prefixed 64-bit words separated by ':'
  -h, --help         this text
`;

const OPTIONS = {
  json: { type: 'boolean' },
  features: { type: 'string' },
  ste: { type: 'boolean' },
  cd: { type: 'boolean' },
  l1std: { type: 'boolean' },
  l1cd: { type: 'boolean' },
  event: { type: 'boolean' },
} as const;

/** The text verdict after '#'. */
export function verdictText(v: Verdict): string {
  const oor = v.outOfRange.map((f) => `out of range: ${f.reason} (${f.section})`);
  if (v.ok) return ['legal', ...oor].join('; ');
  return [`${v.error} ${v.finding.rule}: ${v.finding.reason} (${v.finding.section})`, ...oor].join('; ');
}

/**
 * The JSON object for one command, verdict included. Written out by hand rather than through an
 * intermediate object and JSON.stringify: bulk decode prints millions of these.
 */
export function commandJsonLine(words: Uint32Array, features: SmmuFeatures): string {
  const d = decodeCommand(words);
  const v = checkCommand(words, features);
  let s = `{"opcode":${d.opcode},"name":"${d.name}","fields":{`;
  let first = true;
  for (const f of d.spec.fields) {
    const x = d.fields[f.name]!;
    s += `${first ? '' : ','}"${f.name}":${typeof x === 'bigint' ? `"0x${x.toString(16)}"` : x}`;
    first = false;
  }
  s += `},"res0":[${d.res0.join(',')}],"legal":${v.ok}`;
  // Every object has every documented key, so consumers can rely on one shape: the verdict's
  // keys are null for a legal command and outOfRange is [] when nothing is out of range.
  if (v.ok) {
    s += ',"error":null,"reason":null,"rule":null,"section":null';
  } else {
    s += `,"error":"${v.error}","reason":${JSON.stringify(v.finding.reason)},"rule":"${v.finding.rule}","section":"${v.finding.section}"`;
  }
  s += v.outOfRange.length === 0 ? ',"outOfRange":[]' : `,"outOfRange":${JSON.stringify(v.outOfRange.map((f) => ({ rule: f.rule, reason: f.reason, section: f.section })))}`;
  return `${s}}`;
}

export function commandTextLine(words: Uint32Array, features: SmmuFeatures): string {
  return `${formatCommand(decodeCommand(words))}  # ${verdictText(checkCommand(words, features))}`;
}

export async function decodeMain(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse('decode', argv, OPTIONS);
  let features = FULL_FEATURES;
  if (values.features !== undefined) {
    try {
      features = parseFeatures(values.features);
    } catch (e) {
      throw new UsageError(`decode: --features: ${(e as Error).message}`);
    }
  }
  const kinds = STRUCTURE_KINDS.filter((k) => values[k] === true);
  if (kinds.length > 1) throw new UsageError(`decode: choose one of --${kinds.join(', --')}`);
  const kind: StructureKind | undefined = kinds[0];

  const format = (text: string, where: string): string => {
    try {
      if (kind !== undefined) return decodeStructureHex(kind, text, values.json === true);
      const words = parseCommandHex(text);
      return values.json === true ? commandJsonLine(words, features) : commandTextLine(words, features);
    } catch (e) {
      if (e instanceof RangeError) throw new UsageError(`decode: ${where}${e.message}`);
      throw e;
    }
  };

  const out = new OutBuffer(io);
  if (positionals.length > 0) {
    // As on standard input, the lines before a bad argument are printed before its error.
    try {
      for (const p of positionals) out.line(format(p, ''));
    } finally {
      out.flush();
    }
    return 0;
  }
  if (io.stdinIsTTY) throw new UsageError('decode: give HEX arguments or pipe commands on standard input (see --help)');
  try {
    await forEachLine(io, (line, n) => out.line(format(line, `line ${n}: `)));
  } finally {
    out.flush();
  }
  return 0;
}
