/**
 * `smmu-sim regs`, driven in-process through main(argv, io) with a fake Io.
 *
 * Offsets, widths and reset values are the spec's: SMMU_CR0 at 0x0020 of page 0, every field
 * resetting to 0 (§6.3.9); SMMU_CMDQ_PROD at 0x0098 (§6.3.27); SMMU_CMDQ_CONS at 0x009C, ERR [30:24]
 * and RD [19:0] resetting to UNKNOWN, RW only while CR0.CMDQEN == 0 and CR0ACK.CMDQEN == 0 (§6.3.28),
 * ERR's values from §7.1; SMMU_EVENTQ_PROD at 0x00A8 of page 1 (§6.3.95).
 */
import { describe, expect, it } from 'vitest';
import { run } from '../helpers/cli.ts';

async function lines(argv: string[]): Promise<string[]> {
  const r = await run(['regs', ...argv]);
  expect(r.err).toBe('');
  expect(r.code).toBe(0);
  expect(r.out.endsWith('\n')).toBe(true);
  return r.out.slice(0, -1).split('\n');
}

/** One listing row: offset, name, width, access, reset, section in fixed columns. */
function row(off: string, name: string, w: number, access: string, reset: string, section: string): string {
  return `${off.padEnd(12)} ${name.padEnd(34)} ${String(w).padStart(2)}  ${access.padEnd(6)} ${reset.padEnd(12)} ${section}`;
}

const CMDQ_CONS_DETAIL = [
  'SMMU_CMDQ_CONS  offset 0x0009c, 32-bit, RW, §6.3.28',
  '  guarded: RW when CR0.CMDQEN == 0 && CR0ACK.CMDQEN == 0, else RO',
  '  [30:24]   ERR  Command error reason (§7.1); meaningful while GERROR.CMDQ_ERR is active  (Linux: CMDQ_CONS_ERR)',
  '                0 = CERROR_NONE',
  '                1 = CERROR_ILL',
  '                2 = CERROR_ABT',
  '                3 = CERROR_ATC_INV_SYNC',
  '  [19:0]    RD  Read index [19:0]: bits [QS-1:0] are the index and bit QS the wrap flag, QS = the queue LOG2SIZE (capped at the IDR1 maximum); bits above QS are RES0',
];

describe('regs: the listing', () => {
  it('has the header and a row per register with offset, width, access, reset and section', async () => {
    const l = await lines([]);
    expect(l[0]).toBe('offset       register                            w  access reset        section');
    expect(l[1]).toBe('0x00000      SMMU_IDR0                          32  RO     -            §6.3.1');
    expect(l).toContain('0x00020      SMMU_CR0                           32  RW     0x0          §6.3.9');
    expect(l).toContain(row('0x00098', 'SMMU_CMDQ_PROD', 32, 'RW', '-', '§6.3.27'));
    expect(l).toContain(row('0x0009c', 'SMMU_CMDQ_CONS', 32, 'RW', '-', '§6.3.28'));
    expect(l).toContain(row('0x00090', 'SMMU_CMDQ_BASE', 64, 'RW', '-', '§6.3.26'));
    // Page 1 starts at 64KB.
    expect(l).toContain(row('0x100a8', 'SMMU_EVENTQ_PROD', 32, 'RW', '-', '§6.3.95'));
    // The 256 CMDQ_CONTROL_PAGE groups appear once, with their formula.
    expect(l).toContain(row('0x04000+32n', 'SMMU_CMDQ_CONTROL_PAGE_BASE<n>', 64, 'RO', '-', '§6.3.49'));
    expect(l.filter((x) => x.includes('CMDQ_CONTROL_PAGE_BASE'))).toHaveLength(1);
    // ECMDQ registers by their offset within a control-page slot.
    expect(l).toContain(row('slot+0x08', 'SMMU_ECMDQ_PROD', 32, 'RW', '0x0', '§6.3.108'));
    // Non-secure only without --secure.
    expect(l.some((x) => x.includes('SMMU_S_'))).toBe(false);
  });

  it('lists page 0 in offset order', async () => {
    const l = await lines([]);
    const page0 = l
      .slice(1)
      .map((x) => x.split(' ')[0]!)
      .filter((o) => /^0x0[0-3][0-9a-f]{3}$/.test(o))
      .map(Number);
    expect(page0.length).toBeGreaterThan(50);
    expect(page0).toEqual([...page0].sort((a, b) => a - b));
  });

  it('--secure adds the Secure registers (RAZ/WI in this Non-secure model)', async () => {
    const plain = await lines([]);
    const l = await lines(['--secure']);
    expect(l.slice(0, plain.length)).toEqual(plain);
    expect(l).toContain(row('0x08020', 'SMMU_S_CR0', 32, 'RAZ/WI', '0x0', '§6.3.57'));
    expect(l).toContain(row('0x0809c', 'SMMU_S_CMDQ_CONS', 32, 'RAZ/WI', '0x0', '§6.3.76'));
  });

  it('--json is one array of registers', async () => {
    const r = await run(['regs', '--json']);
    expect(r.out.indexOf('\n')).toBe(r.out.length - 1);
    const a = JSON.parse(r.out) as Record<string, unknown>[];
    expect(Array.isArray(a)).toBe(true);
    expect(a.length).toBe((await lines([])).length - 1);
    expect(a[0]).toMatchObject({ name: 'SMMU_IDR0', page: 0, offset: 0, width: 32, access: 'RO', section: '§6.3.1' });
    expect(a.find((x) => x.name === 'SMMU_CMDQ_CONS')).toEqual({
      name: 'SMMU_CMDQ_CONS',
      page: 0,
      offset: 0x9c,
      width: 32,
      access: 'RW',
      section: '§6.3.28',
      guard: 'RW when CR0.CMDQEN == 0 && CR0ACK.CMDQEN == 0, else RO',
      fields: [
        {
          name: 'ERR',
          bits: '[30:24]',
          values: { 0: 'CERROR_NONE', 1: 'CERROR_ILL', 2: 'CERROR_ABT', 3: 'CERROR_ATC_INV_SYNC' },
          doc: 'Command error reason (§7.1); meaningful while GERROR.CMDQ_ERR is active',
          linux: 'CMDQ_CONS_ERR',
        },
        {
          name: 'RD',
          bits: '[19:0]',
          doc: 'Read index [19:0]: bits [QS-1:0] are the index and bit QS the wrap flag, QS = the queue LOG2SIZE (capped at the IDR1 maximum); bits above QS are RES0',
        },
      ],
    });
    expect(a.find((x) => x.name === 'SMMU_EVENTQ_PROD')).toMatchObject({ page: 1, offset: 0x100a8 }); // offsets are from the base of page 0
    expect(a.some((x) => String(x.name).startsWith('SMMU_S_'))).toBe(false);
    const s = JSON.parse((await run(['regs', '--json', '--secure'])).out) as Record<string, unknown>[];
    expect(s.find((x) => x.name === 'SMMU_S_CR0')).toMatchObject({ offset: 0x8020, access: 'RAZ/WI', reset: '0x0', section: '§6.3.57' });
  });
});

describe('regs: one register', () => {
  it('SMMU_CMDQ_CONS: header, guard, fields high to low, enumeration values', async () => {
    expect(await lines(['SMMU_CMDQ_CONS'])).toEqual(CMDQ_CONS_DETAIL);
  });

  it('is found by offset (hex or decimal), by short name and in any case', async () => {
    for (const q of ['0x9c', '0x9C', '156', 'CMDQ_CONS', 'cmdq_cons', 'smmu_cmdq_cons']) {
      expect(await lines([q])).toEqual(CMDQ_CONS_DETAIL);
    }
  });

  it('cr0: reset value and every field', async () => {
    const l = await lines(['cr0']);
    expect(l[0]).toBe('SMMU_CR0  offset 0x00020, 32-bit, RW, §6.3.9');
    expect(l[1]).toBe('  reset 0x0');
    expect(l).toContain('  [3]       CMDQEN  Command queue processing enabled');
    expect(l).toContain('  [0]       SMMUEN  Non-secure streams checked against configuration (0: bypass per GBPA)');
    expect(l).toContain('  [2]       EVENTQEN  Event queue writes enabled  (Linux: CR0_EVTQEN)');
    // ATSCHK [4] with its two values, in field order high to low (§6.3.9).
    const at = l.indexOf('  [4]       ATSCHK  ATS Translated traffic checked against STE.EATS (IDR0.ATS == 1)');
    expect(l.slice(at, at + 3)).toEqual([
      '  [4]       ATSCHK  ATS Translated traffic checked against STE.EATS (IDR0.ATS == 1)',
      '                0 = Fast',
      '                1 = Safe',
    ]);
    expect(await lines(['0x20'])).toEqual(l);
  });

  it('an ECMDQ register by name shows its slot offset', async () => {
    const l = await lines(['ecmdq_prod']);
    expect(l[0]).toBe('SMMU_ECMDQ_PROD  ECMDQ slot offset 0x00008, 32-bit, RW, §6.3.108');
  });

  it('--json NAME is one object', async () => {
    const r = await run(['regs', '--json', 'cr0']);
    const o = JSON.parse(r.out);
    expect(o).toMatchObject({ name: 'SMMU_CR0', page: 0, offset: 0x20, width: 32, access: 'RW', reset: '0x0', section: '§6.3.9' });
    expect(o.fields.map((f: { name: string }) => f.name)).toEqual(['DPT_WALK_EN', 'VMW', 'ATSCHK', 'CMDQEN', 'EVENTQEN', 'PRIQEN', 'SMMUEN']);
    expect(o.fields.find((f: { name: string }) => f.name === 'CMDQEN')).toEqual({ name: 'CMDQEN', bits: '[3]', doc: 'Command queue processing enabled' });
    expect(JSON.parse((await run(['regs', '--json', '0x9c'])).out).name).toBe('SMMU_CMDQ_CONS');
  });
});
