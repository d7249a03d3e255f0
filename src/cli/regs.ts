import { OutBuffer, parse, UsageError, type Io } from './args.ts';
import { bitRange, type Field } from '../spec/bits.ts';
import { ECMDQ_SLOT_REGISTERS, findRegister, REGISTERS, SECURE_REGISTERS, type RegisterSpec } from '../spec/registers.ts';

export const REGS_HELP = `usage: smmu-sim regs [options] [NAME|OFFSET]

The SMMUv3 register map (IHI0070 G.b §6.2, §6.3). Without an argument, every Non-secure
register of page 0 and page 1 with its offset, width, access and architected reset value ('-' where the spec gives none); the 256
CMDQ_CONTROL_PAGE_*<n> groups are shown once with their formula. With a NAME (SMMU_CR0,
cr0, CMDQ_PROD …) or an OFFSET (0x9c), one register and every field: bits, name, values.

options:
  --json       print JSON instead: an array of registers, or one register
  --secure     also list the Secure registers (RAZ/WI to this Non-secure model)
  -h, --help   this text
`;

function hex(n: number | bigint, digits = 0): string {
  return `0x${n.toString(16).padStart(digits, '0')}`;
}

function regJson(r: RegisterSpec): Record<string, unknown> {
  return {
    name: r.name,
    page: r.page,
    offset: r.offset,
    width: r.width,
    access: r.access,
    ...(r.reset !== undefined ? { reset: hex(r.reset) } : {}),
    section: r.section,
    ...(r.present ? { present: r.present } : {}),
    ...(r.guard ? { guard: r.guard } : {}),
    ...(r.doc ? { doc: r.doc } : {}),
    fields: r.fields.map((f: Field) => ({
      name: f.name,
      bits: bitRange(f),
      ...(f.values ? { values: f.values } : {}),
      ...(f.doc ? { doc: f.doc } : {}),
      ...(f.linux ? { linux: f.linux } : {}),
    })),
  };
}

/** Control-page registers repeat 256 times: the listing shows n = 0 with its formula. */
function isRepeat(r: RegisterSpec): boolean {
  return r.n !== undefined && r.n > 0;
}

function row(r: RegisterSpec): string {
  const name = r.n === 0 ? r.name.replace(/0$/, '<n>') : r.name;
  const off = r.page === 'ecmdq' ? `slot+${hex(r.offset, 2)}` : r.n === 0 ? `${hex(r.offset, 5)}+32n` : hex(r.offset, 5);
  const reset = r.reset === undefined ? '-' : hex(r.reset);
  return `${off.padEnd(12)} ${name.padEnd(34)} ${String(r.width).padStart(2)}  ${r.access.padEnd(6)} ${reset.padEnd(12)} ${r.section}`;
}

function detail(r: RegisterSpec): string[] {
  const out = [
    `${r.name}  ${r.page === 'ecmdq' ? 'ECMDQ slot offset' : 'offset'} ${hex(r.offset, 5)}, ${r.width}-bit, ${r.access}, ${r.section}`,
  ];
  if (r.reset !== undefined) out.push(`  reset ${hex(r.reset)}${r.resetMask !== undefined ? ` (bits ${hex(r.resetMask)})` : ''}`);
  if (r.present) out.push(`  present when ${r.present}`);
  if (r.guard) out.push(`  guarded: ${r.guard}`);
  if (r.doc) out.push(`  ${r.doc}`);
  for (const f of [...r.fields].sort((a, b) => b.lsb - a.lsb)) {
    out.push(`  ${bitRange(f).padEnd(9)} ${f.name}${f.doc ? `  ${f.doc}` : ''}${f.linux ? `  (Linux: ${f.linux})` : ''}`);
    for (const [v, name] of Object.entries(f.values ?? {})) out.push(`  ${''.padEnd(9)}   ${v.padStart(3)} = ${name}`);
  }
  return out;
}

export async function regsMain(argv: string[], io: Io): Promise<number> {
  const { values, positionals } = parse('regs', argv, { json: { type: 'boolean' }, secure: { type: 'boolean' } } as const);
  if (positionals.length > 1) throw new UsageError('regs: give at most one register name or offset');
  const out = new OutBuffer(io);
  const q = positionals[0];
  if (q !== undefined) {
    let r: RegisterSpec | undefined;
    if (/^(0x[0-9a-f]+|\d+)$/i.test(q)) r = findRegister(Number(q));
    else r = findRegister(q) ?? ECMDQ_SLOT_REGISTERS.find((x) => x.name.toLowerCase() === q.toLowerCase().replace(/^(smmu_)?/, 'smmu_'));
    if (r === undefined) throw new UsageError(`regs: no register '${q}' (try 'smmu-sim regs' for the list)`);
    if (values.json) out.line(JSON.stringify(regJson(r)));
    else for (const l of detail(r)) out.line(l);
    out.flush();
    return 0;
  }
  const list = [...REGISTERS.filter((r) => !isRepeat(r)), ...ECMDQ_SLOT_REGISTERS, ...(values.secure ? SECURE_REGISTERS.filter((r) => !isRepeat(r)) : [])];
  if (values.json) {
    out.line(JSON.stringify(list.map(regJson)));
  } else {
    out.line(`${'offset'.padEnd(12)} ${'register'.padEnd(34)} ${'w'.padStart(2)}  ${'access'.padEnd(6)} ${'reset'.padEnd(12)} section`);
    for (const r of list) out.line(row(r));
  }
  out.flush();
  return 0;
}
