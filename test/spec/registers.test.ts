import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { bitRange, type Field } from '../../src/spec/bits.ts';
import { CERROR_ABT, CERROR_ATC_INV_SYNC, CERROR_ILL, CERROR_NAMES, CERROR_NONE, cerrorName } from '../../src/spec/cerror.ts';
import { FULL_FEATURES, ecmdqCount, parseFeatures, type SmmuFeatures } from '../../src/spec/features.ts';
import {
  ECMDQ_SLOT_REGISTERS,
  REG,
  REGISTERS,
  SECURE_REGISTERS,
  SMMU_PAGE1,
  SMMU_PAGE_SIZE,
  SMMU_REG_WINDOW,
  controlPageBaseValue,
  controlPageRegisters,
  decodeRegister,
  ecmdqRegisterAt,
  ecmdqRegisterOffset,
  encode32,
  encode64,
  findRegister,
  isPresent,
  modelResetValue,
  regGet,
  regSet,
  res0Mask,
  type EcmdqRegister,
  type RegisterSpec,
} from '../../src/spec/registers.ts';

const withF = (text: string): SmmuFeatures => parseFeatures(text);

/** Mask of the bits a register's fields cover, as a bigint. */
function cover(r: RegisterSpec): bigint {
  let m = 0n;
  for (const f of r.fields) m |= ((1n << BigInt(f.width)) - 1n) << BigInt(f.lsb);
  return m;
}

const TABLES: readonly (readonly [string, readonly RegisterSpec[]])[] = [
  ['REGISTERS', REGISTERS],
  ['SECURE_REGISTERS', SECURE_REGISTERS],
  ['ECMDQ_SLOT_REGISTERS', ECMDQ_SLOT_REGISTERS],
];

describe('register layout (generated over every table)', () => {
  for (const [tableName, table] of TABLES) {
    describe(tableName, () => {
      it('offsets strictly increase within a page and registers do not overlap', () => {
        const byPage = new Map<RegisterSpec['page'], RegisterSpec[]>();
        for (const r of table) byPage.set(r.page, [...(byPage.get(r.page) ?? []), r]);
        for (const regs of byPage.values()) {
          for (let i = 1; i < regs.length; i++) {
            const prev = regs[i - 1]!;
            const cur = regs[i]!;
            expect(cur.offset, `${cur.name} after ${prev.name}`).toBeGreaterThanOrEqual(prev.offset + prev.width / 8);
          }
        }
      });

      it('64-bit registers are 8-aligned and 32-bit registers 4-aligned', () => {
        for (const r of table) expect(r.offset % (r.width / 8), r.name).toBe(0);
      });

      it('fields lie inside the register and do not overlap', () => {
        for (const r of table) {
          const seen = new Set<string>();
          let used = 0n;
          for (const f of r.fields) {
            expect(f.width, `${r.name}.${f.name}`).toBeGreaterThan(0);
            expect(f.lsb, `${r.name}.${f.name}`).toBeGreaterThanOrEqual(0);
            expect(f.lsb + f.width, `${r.name}.${f.name} ${bitRange(f)}`).toBeLessThanOrEqual(r.width);
            const m = ((1n << BigInt(f.width)) - 1n) << BigInt(f.lsb);
            expect(used & m, `${r.name}.${f.name} overlaps`).toBe(0n);
            used |= m;
            expect(seen.has(f.name), `${r.name}.${f.name} twice`).toBe(false);
            seen.add(f.name);
          }
        }
      });

      it('32-bit hot-path fields do not straddle the halves of a 64-bit register', () => {
        for (const r of table) {
          for (const f of r.fields) {
            if (f.width > 32) continue;
            expect(f.lsb >>> 5, `${r.name}.${f.name}`).toBe((f.lsb + f.width - 1) >>> 5);
          }
        }
      });

      it('reset values fit the register and set no bits outside defined fields', () => {
        for (const r of table) {
          for (const [what, v] of [['reset', r.reset], ['modelReset', r.modelReset]] as const) {
            if (v === undefined) continue;
            expect(typeof v, `${r.name}.${what} type`).toBe(r.width === 64 ? 'bigint' : 'number');
            const big = BigInt(v);
            expect(big >= 0n && big >> BigInt(r.width) === 0n, `${r.name}.${what} fits`).toBe(true);
            expect(big & ~cover(r), `${r.name}.${what} outside fields`).toBe(0n);
          }
          if (r.resetMask !== undefined) {
            expect(r.reset, `${r.name}: resetMask without reset`).toBeDefined();
            const mask = BigInt(r.resetMask);
            expect(mask & ~cover(r), `${r.name}.resetMask outside fields`).toBe(0n);
            expect(BigInt(r.reset!) & ~mask, `${r.name}.reset outside resetMask`).toBe(0n);
            if (r.modelReset !== undefined) expect(BigInt(r.modelReset) & mask).toBe(BigInt(r.reset!));
          }
        }
      });

      it('names are spec-style and sections cite chapter 6', () => {
        for (const r of table) {
          expect(r.name).toMatch(/^SMMU_[A-Z0-9_]+$/);
          expect(r.section).toMatch(/^§6\.[23](\.\d+)*$/);
        }
      });
    });
  }

  it('register names are unique across every table', () => {
    const names = [...REGISTERS, ...SECURE_REGISTERS, ...ECMDQ_SLOT_REGISTERS].map((r) => r.name);
    expect(new Set(names).size).toBe(names.length);
  });

  it('REGISTERS is in offset order', () => {
    for (let i = 1; i < REGISTERS.length; i++) expect(REGISTERS[i]!.offset).toBeGreaterThan(REGISTERS[i - 1]!.offset);
  });

  it('page 0 registers are in 0x0000..0x7FFF, page 1 in 0x10000..0x1FFFF, Secure in 0x8000..0xFFFF', () => {
    for (const r of REGISTERS) {
      if (r.page === 0) expect(r.offset + r.width / 8, r.name).toBeLessThanOrEqual(0x8000);
      else {
        expect(r.page, r.name).toBe(1);
        expect(r.offset, r.name).toBeGreaterThanOrEqual(SMMU_PAGE1);
        expect(r.offset + r.width / 8, r.name).toBeLessThanOrEqual(SMMU_PAGE1 + SMMU_PAGE_SIZE);
      }
    }
    expect(REGISTERS.filter((r) => r.page === 1).map((r) => r.name)).toEqual([
      'SMMU_EVENTQ_PROD',
      'SMMU_EVENTQ_CONS',
      'SMMU_PRIQ_PROD',
      'SMMU_PRIQ_CONS',
    ]);
    for (const r of SECURE_REGISTERS) {
      expect(r.page).toBe('secure');
      expect(r.access).toBe('RAZ/WI');
      expect(r.offset).toBeGreaterThanOrEqual(0x8000);
      expect(r.offset + r.width / 8).toBeLessThanOrEqual(SMMU_PAGE_SIZE);
    }
  });

  it('every REG entry is the table row of the same name, with f indexing its fields', () => {
    const all = new Map([...REGISTERS, ...ECMDQ_SLOT_REGISTERS].map((r) => [r.name, r]));
    for (const [name, r] of Object.entries(REG)) {
      expect(r.name).toBe(name);
      if (!/^SMMU_CMDQ_CONTROL_PAGE_(BASE|CFG|STATUS)$/.test(name)) expect(all.get(name)).toBe(r);
      expect(Object.keys(r.f)).toEqual(r.fields.map((x: Field) => x.name));
      for (const x of r.fields) expect((r.f as Record<string, Field>)[x.name]).toBe(x);
    }
  });

  it('a wrong field name is a compile error and undefined at run time', () => {
    // @ts-expect-error SMMU_CR0 has no field NOPE
    const nope: unknown = REG.SMMU_CR0.f.NOPE;
    expect(nope).toBeUndefined();
  });

  it('every presence condition is decided for a feature set', () => {
    const seen = new Set(REGISTERS.map((r) => r.present));
    for (const p of seen) {
      const r = REGISTERS.find((x) => x.present === p)!;
      expect(typeof isPresent(r, FULL_FEATURES)).toBe('boolean');
    }
  });
});

describe('control-page and ECMDQ registers', () => {
  it('SMMU_CMDQ_CONTROL_PAGE_*<n> are at 0x4000 + 32n (§6.2.1)', () => {
    expect(controlPageRegisters(0).map((r) => [r.name, r.offset, r.width])).toEqual([
      ['SMMU_CMDQ_CONTROL_PAGE_BASE0', 0x4000, 64],
      ['SMMU_CMDQ_CONTROL_PAGE_CFG0', 0x4008, 32],
      ['SMMU_CMDQ_CONTROL_PAGE_STATUS0', 0x400c, 32],
    ]);
    expect(controlPageRegisters(255).map((r) => [r.name, r.offset, r.n])).toEqual([
      ['SMMU_CMDQ_CONTROL_PAGE_BASE255', 0x5fe0, 255],
      ['SMMU_CMDQ_CONTROL_PAGE_CFG255', 0x5fe8, 255],
      ['SMMU_CMDQ_CONTROL_PAGE_STATUS255', 0x5fec, 255],
    ]);
    expect(() => controlPageRegisters(256)).toThrow(RangeError);
    expect(() => controlPageRegisters(-1)).toThrow(RangeError);
    expect(REGISTERS.filter((r) => r.name.startsWith('SMMU_CMDQ_CONTROL_PAGE_'))).toHaveLength(768);
  });

  it('control page p is presented at 0x20000 + 0x10000 p with CMDQGS = 64KB and PRESET = 1 (§6.3.49)', () => {
    expect(controlPageBaseValue(0)).toBe(0x0002_0003);
    expect(controlPageBaseValue(1)).toBe(0x0003_0003);
    expect(controlPageBaseValue(255)).toBe(0x0101_0003); // 0x20000 + 255 * 0x10000 = 0x1010000
    const d = decodeRegister(REG.SMMU_CMDQ_CONTROL_PAGE_BASE, BigInt(controlPageBaseValue(1)));
    expect(d).toEqual({ ADDR: 0x30000n, CMDQGS: 1, CMDQ_CONTROL_PAGE_PRESET: 1 });
  });

  it('ECMDQ slot registers sit at 0x00/0x08/0x0C of a slot (§6.2.5)', () => {
    expect(ECMDQ_SLOT_REGISTERS.map((r) => [r.name, r.offset, r.width])).toEqual([
      ['SMMU_ECMDQ_BASE', 0x00, 64],
      ['SMMU_ECMDQ_PROD', 0x08, 32],
      ['SMMU_ECMDQ_CONS', 0x0c, 32],
    ]);
  });

  it('ecmdqRegisterOffset: stride 0x10000 >> LOG2NUMQ, pages contiguous from 0x20000', () => {
    // FULL_FEATURES: 1 page of 8 queues, stride 0x2000.
    expect(ecmdqRegisterOffset(FULL_FEATURES, 0, 'BASE')).toBe(0x20000);
    expect(ecmdqRegisterOffset(FULL_FEATURES, 1, 'PROD')).toBe(0x22008);
    expect(ecmdqRegisterOffset(FULL_FEATURES, 7, 'CONS')).toBe(0x2e00c);
    expect(() => ecmdqRegisterOffset(FULL_FEATURES, 8, 'BASE')).toThrow(/ECMDQ 8 does not exist/);
    // 256 queues per page: the stride is 0x100, the "0x100 * n" of §6.3.107-109.
    const q256 = withF('ecmdq-log2numq=8');
    expect(ecmdqRegisterOffset(q256, 255, 'CONS')).toBe(0x20000 + 0xff00 + 0x0c);
    // 4 pages of 2 queues: queue 3 is page 1, slot 1.
    const p4 = withF('ecmdq-log2nump=2,ecmdq-log2numq=1');
    expect(ecmdqRegisterOffset(p4, 3, 'BASE')).toBe(0x30000 + 0x8000);
    expect(ecmdqRegisterOffset(p4, 2, 'PROD')).toBe(0x30008);
    // 256 pages of one queue each.
    const p256 = withF('ecmdq-log2nump=8,ecmdq-log2numq=0');
    expect(ecmdqRegisterOffset(p256, 255, 'PROD')).toBe(0x20000 + 255 * 0x10000 + 0x08);
    expect(() => ecmdqRegisterOffset(withF('no-ecmdq'), 0, 'BASE')).toThrow(RangeError);
  });

  it('SMMU_REG_WINDOW is 128 KiB plus one 64 KiB page per control page', () => {
    expect(SMMU_REG_WINDOW(FULL_FEATURES)).toBe(0x30000);
    expect(SMMU_REG_WINDOW(withF('no-ecmdq'))).toBe(0x20000);
    expect(SMMU_REG_WINDOW(withF('ecmdq-log2nump=8'))).toBe(0x20000 + 256 * 0x10000);
  });

  it('ecmdqRegisterAt inverts ecmdqRegisterOffset and finds nothing between slots', () => {
    const features = fc.record({ p: fc.integer({ min: 0, max: 8 }), q: fc.integer({ min: 0, max: 8 }) }).map(({ p, q }) =>
      withF(`ecmdq-log2nump=${p},ecmdq-log2numq=${q}`),
    );
    fc.assert(
      fc.property(features, fc.nat(), fc.constantFrom<EcmdqRegister>('BASE', 'PROD', 'CONS'), (f, k, which) => {
        const n = k % ecmdqCount(f);
        const at = ecmdqRegisterAt(f, ecmdqRegisterOffset(f, n, which));
        expect(at?.n).toBe(n);
        expect(at?.spec.name).toBe(`SMMU_ECMDQ_${which}`);
        // The upper half of ECMDQ_BASE is part of it.
        if (which === 'BASE') expect(ecmdqRegisterAt(f, ecmdqRegisterOffset(f, n, 'BASE') + 4)?.spec.name).toBe('SMMU_ECMDQ_BASE');
      }),
    );
    expect(ecmdqRegisterAt(FULL_FEATURES, 0x20010)).toBeUndefined();
    expect(ecmdqRegisterAt(FULL_FEATURES, 0x30000)).toBeUndefined();
    expect(ecmdqRegisterAt(FULL_FEATURES, 0x1fffc)).toBeUndefined();
    expect(ecmdqRegisterAt(withF('no-ecmdq'), 0x20000)).toBeUndefined();
  });

  it('control page n is present only below 2^LOG2NUMP (§6.3.49)', () => {
    const [base0] = controlPageRegisters(0);
    const [base1] = controlPageRegisters(1);
    expect(isPresent(base0!, FULL_FEATURES)).toBe(true);
    expect(isPresent(base1!, FULL_FEATURES)).toBe(false);
    expect(isPresent(base1!, withF('ecmdq-log2nump=1'))).toBe(true);
    expect(isPresent(base0!, withF('no-ecmdq'))).toBe(false);
  });
});

describe('hand-checked rows', () => {
  it('SMMU_CMDQ_CONS at 0x9C: ERR [30:24], RD [19:0] (§6.3.28)', () => {
    const r = REG.SMMU_CMDQ_CONS;
    expect([r.offset, r.width, r.page, r.section]).toEqual([0x9c, 32, 0, '§6.3.28']);
    expect(bitRange(r.f.ERR)).toBe('[30:24]');
    expect(bitRange(r.f.RD)).toBe('[19:0]');
    expect(r.f.ERR.values).toBe(CERROR_NAMES);
    expect(r.reset).toBeUndefined(); // ERR and RD reset to UNKNOWN
    expect(res0Mask(r)).toBe(0x80f0_0000);
  });

  it('SMMU_CMDQ_PROD at 0x98, SMMU_CMDQ_BASE at 0x90: RA [62], ADDR [55:5], LOG2SIZE [4:0] (§6.3.26-27)', () => {
    expect(REG.SMMU_CMDQ_PROD.offset).toBe(0x98);
    expect(bitRange(REG.SMMU_CMDQ_PROD.f.WR)).toBe('[19:0]');
    const b = REG.SMMU_CMDQ_BASE;
    expect([b.offset, b.width]).toEqual([0x90, 64]);
    expect([bitRange(b.f.RA), bitRange(b.f.ADDR), b.f.ADDR.shift, bitRange(b.f.LOG2SIZE)]).toEqual(['[62]', '[55:5]', 5, '[4:0]']);
    expect(bitRange(REG.SMMU_EVENTQ_BASE.f.WA)).toBe('[62]');
    expect(bitRange(REG.SMMU_PRIQ_BASE.f.WA)).toBe('[62]');
  });

  it('SMMU_GERROR bits (§6.3.19), reset 0, at 0x60; GERRORN at 0x64 (§6.3.20)', () => {
    const g = REG.SMMU_GERROR;
    expect(g.offset).toBe(0x60);
    expect(REG.SMMU_GERRORN.offset).toBe(0x64);
    expect(Object.fromEntries(g.fields.map((f) => [f.name, f.lsb]))).toEqual({
      DPT_ERR: 10,
      CMDQP_ERR: 9,
      SFM_ERR: 8,
      MSI_GERROR_ABT_ERR: 7,
      MSI_PRIQ_ABT_ERR: 6,
      MSI_EVENTQ_ABT_ERR: 5,
      MSI_CMDQ_ABT_ERR: 4,
      PRIQ_ABT_ERR: 3,
      EVENTQ_ABT_ERR: 2,
      CMDQ_ERR: 0,
    });
    expect(g.fields.every((f) => f.width === 1)).toBe(true);
    expect([g.reset, REG.SMMU_GERRORN.reset]).toEqual([0, 0]);
    expect(res0Mask(g)).toBe(0xffff_f802);
  });

  it('SMMU_IDR1.ECMDQ is bit 31 (§6.3.2); SMMU_IDR6 at 0x190: LOG2NUMP [27:24], LOG2NUMQ [19:16] (§6.3.45)', () => {
    expect(bitRange(REG.SMMU_IDR1.f.ECMDQ)).toBe('[31]');
    expect([bitRange(REG.SMMU_IDR1.f.CMDQS), bitRange(REG.SMMU_IDR1.f.SIDSIZE)]).toEqual(['[25:21]', '[5:0]']);
    const r = REG.SMMU_IDR6;
    expect([r.offset, r.present]).toEqual([0x190, 'IDR1.ECMDQ == 1']);
    expect(bitRange(r.f.CMDQ_CONTROL_PAGE_LOG2NUMP)).toBe('[27:24]');
    expect(bitRange(r.f.CMDQ_CONTROL_PAGE_LOG2NUMQ)).toBe('[19:16]');
  });

  it('SMMU_CR0 / CR0ACK at 0x20 / 0x24, reset 0 (§6.3.9, §6.3.10)', () => {
    expect([REG.SMMU_CR0.offset, REG.SMMU_CR0ACK.offset, REG.SMMU_CR0.reset, REG.SMMU_CR0ACK.reset]).toEqual([0x20, 0x24, 0, 0]);
    expect(REG.SMMU_CR0.fields.map((f) => `${f.name}${bitRange(f)}`)).toEqual([
      'DPT_WALK_EN[10]',
      'VMW[8:6]',
      'ATSCHK[4]',
      'CMDQEN[3]',
      'EVENTQEN[2]',
      'PRIQEN[1]',
      'SMMUEN[0]',
    ]);
    expect(res0Mask(REG.SMMU_CR0)).toBe(0xffff_fa20);
    expect(REG.SMMU_CR0ACK.fields.map((f) => f.name)).toEqual(REG.SMMU_CR0.fields.map((f) => f.name));
  });

  it('SMMU_CR2 resets to UNKNOWN, so it has no architected reset (§6.3.12)', () => {
    expect(REG.SMMU_CR2.reset).toBeUndefined();
    expect(modelResetValue(REG.SMMU_CR2)).toBe(0);
    expect(REG.SMMU_CR2.fields.map((f) => `${f.name}${bitRange(f)}`)).toEqual(['REC_CFG_ATS[3]', 'PTM[2]', 'RECINVSID[1]', 'E2H[0]']);
  });

  it('SMMU_IRQ_CTRL / IRQ_CTRLACK at 0x50 / 0x54, reset 0 (§6.3.16, §6.3.18)', () => {
    expect([REG.SMMU_IRQ_CTRL.offset, REG.SMMU_IRQ_CTRLACK.offset, REG.SMMU_IRQ_CTRL.reset, REG.SMMU_IRQ_CTRLACK.reset]).toEqual([0x50, 0x54, 0, 0]);
    expect(encode32(REG.SMMU_IRQ_CTRL, { EVENTQ_IRQEN: 1, PRIQ_IRQEN: 1, GERROR_IRQEN: 1 })).toBe(0x7);
  });

  it('SMMU_GBPA at 0x44: Update [31] resets to 0, the rest IMPLEMENTATION DEFINED (§6.3.14)', () => {
    const r = REG.SMMU_GBPA;
    expect([r.offset, r.reset, r.resetMask]).toEqual([0x44, 0, 0x8000_0000]);
    expect(r.fields.map((f) => `${f.name}${bitRange(f)}`)).toEqual([
      'Update[31]',
      'ABORT[20]',
      'INSTCFG[19:18]',
      'PRIVCFG[17:16]',
      'SHCFG[13:12]',
      'ALLOCCFG[11:8]',
      'MTCFG[4]',
      'MemAttr[3:0]',
    ]);
    expect(modelResetValue(r)).toBe(0x1000); // SHCFG = use incoming
  });

  it('SMMU_STRTAB_BASE ADDR [55:6], RA [62]; STRTAB_BASE_CFG FMT [17:16], SPLIT [10:6], LOG2SIZE [5:0] (§6.3.24-25)', () => {
    expect([REG.SMMU_STRTAB_BASE.offset, bitRange(REG.SMMU_STRTAB_BASE.f.ADDR), bitRange(REG.SMMU_STRTAB_BASE.f.RA)]).toEqual([0x80, '[55:6]', '[62]']);
    const c = REG.SMMU_STRTAB_BASE_CFG;
    expect([c.offset, bitRange(c.f.FMT), bitRange(c.f.SPLIT), bitRange(c.f.LOG2SIZE)]).toEqual([0x88, '[17:16]', '[10:6]', '[5:0]']);
    expect(encode32(c, { FMT: 1, SPLIT: 8, LOG2SIZE: 16 })).toBe(0x0001_0210);
  });

  it('IRQ_CFG0 ADDR [55:2], IRQ_CFG2 SH [5:4] MemAttr [3:0], PRIQ_IRQ_CFG2.LO [31] (§6.3.21, §6.3.23, §6.3.36)', () => {
    for (const r of [REG.SMMU_GERROR_IRQ_CFG0, REG.SMMU_EVENTQ_IRQ_CFG0, REG.SMMU_PRIQ_IRQ_CFG0]) {
      expect([bitRange(r.f.ADDR), r.f.ADDR.shift, r.width]).toEqual(['[55:2]', 2, 64]);
    }
    expect([REG.SMMU_GERROR_IRQ_CFG0.offset, REG.SMMU_EVENTQ_IRQ_CFG0.offset, REG.SMMU_PRIQ_IRQ_CFG0.offset]).toEqual([0x68, 0xb0, 0xd0]);
    expect(REG.SMMU_PRIQ_IRQ_CFG2.fields.map((f) => `${f.name}${bitRange(f)}`)).toEqual(['LO[31]', 'SH[5:4]', 'MemAttr[3:0]']);
  });

  it('Page 1: EVENTQ_PROD/CONS at 0x100A8/0x100AC, PRIQ_PROD/CONS at 0x100C8/0x100CC (§6.2.2, §6.3.95-98)', () => {
    expect([REG.SMMU_EVENTQ_PROD.offset, REG.SMMU_EVENTQ_CONS.offset, REG.SMMU_PRIQ_PROD.offset, REG.SMMU_PRIQ_CONS.offset]).toEqual([
      0x100a8, 0x100ac, 0x100c8, 0x100cc,
    ]);
    expect([bitRange(REG.SMMU_EVENTQ_PROD.f.OVFLG), bitRange(REG.SMMU_EVENTQ_CONS.f.OVACKFLG)]).toEqual(['[31]', '[31]']);
    // §6.3.95: EVENTQ_PROD.OVFLG resets UNKNOWN; §6.3.97: PRIQ_PROD.OVFLG resets to 0.
    expect(REG.SMMU_EVENTQ_PROD.reset).toBeUndefined();
    expect([REG.SMMU_PRIQ_PROD.reset, REG.SMMU_PRIQ_PROD.resetMask]).toEqual([0, 0x8000_0000]);
  });

  it('the Page 0 alias offsets 0xA8/0xAC/0xC8/0xCC are RAZ/WI (§6.2.1)', () => {
    for (const off of [0xa8, 0xac, 0xc8, 0xcc]) {
      const r = findRegister(off)!;
      expect([r.access, r.page, r.fields.length]).toEqual(['RAZ/WI', 0, 0]);
    }
  });

  it('SMMU_ECMDQ_PROD: EN [31], ERRACK [23]; SMMU_ECMDQ_CONS: ENACK [31], ERR_REASON [26:24], ERR [23] (§6.3.108-109)', () => {
    const p = REG.SMMU_ECMDQ_PROD;
    expect(p.fields.map((f) => `${f.name}${bitRange(f)}`)).toEqual(['EN[31]', 'ERRACK[23]', 'WR[19:0]']);
    expect([p.reset, p.resetMask]).toEqual([0, 0x8080_0000]);
    const c = REG.SMMU_ECMDQ_CONS;
    expect(c.fields.map((f) => `${f.name}${bitRange(f)}`)).toEqual(['ENACK[31]', 'ERR_REASON[26:24]', 'ERR[23]', 'RD[19:0]']);
    expect([c.reset, c.resetMask]).toEqual([0, 0x8080_0000]);
    expect(c.f.ERR_REASON.values?.[CERROR_ABT]).toBe('CERROR_ABT');
  });

  it('ID registers: CIDR0-3 = 0x0D, 0xF0, 0x05, 0xB1; PIDR4 at 0xFD0, PIDR0 at 0xFE0 (§6.3.170)', () => {
    expect([REG.SMMU_CIDR0.reset, REG.SMMU_CIDR1.reset, REG.SMMU_CIDR2.reset, REG.SMMU_CIDR3.reset]).toEqual([0x0d, 0xf0, 0x05, 0xb1]);
    expect([REG.SMMU_CIDR0.offset, REG.SMMU_CIDR3.offset, REG.SMMU_PIDR4.offset, REG.SMMU_PIDR7.offset, REG.SMMU_PIDR0.offset]).toEqual([
      0xff0, 0xffc, 0xfd0, 0xfdc, 0xfe0,
    ]);
  });

  it('CERROR codes (§7.1)', () => {
    expect([CERROR_NONE, CERROR_ILL, CERROR_ABT, CERROR_ATC_INV_SYNC]).toEqual([0, 1, 2, 3]);
    expect(CERROR_NAMES).toEqual({ 0: 'CERROR_NONE', 1: 'CERROR_ILL', 2: 'CERROR_ABT', 3: 'CERROR_ATC_INV_SYNC' });
    expect(cerrorName(0x7f)).toBe('Reserved(0x7f)');
  });

  it('presence follows the configuration notes (§6.3.21, §6.3.33, §6.3.37, §6.3.41, §6.3.46)', () => {
    expect(isPresent(REG.SMMU_PRIQ_BASE, FULL_FEATURES)).toBe(true);
    expect(isPresent(REG.SMMU_PRIQ_BASE, withF('no-pri'))).toBe(false);
    expect(isPresent(REG.SMMU_PRIQ_IRQ_CFG1, withF('no-msi,no-ecmdq'))).toBe(false);
    expect(isPresent(REG.SMMU_GERROR_IRQ_CFG0, withF('no-msi,no-ecmdq'))).toBe(false);
    expect(isPresent(REG.SMMU_GATOS_CTRL, FULL_FEATURES)).toBe(false);
    expect(isPresent(REG.SMMU_MPAMIDR, withF('no-mpam'))).toBe(false);
    expect(isPresent(REG.SMMU_DPT_BASE, FULL_FEATURES)).toBe(true);
    expect(isPresent(REG.SMMU_CMDQ_PROD, withF('no-msi,no-ecmdq,no-pri'))).toBe(true);
  });
});

describe('findRegister', () => {
  it('finds names case-insensitively, with or without SMMU_, with <n>', () => {
    expect(findRegister('SMMU_CMDQ_PROD')).toBe(REG.SMMU_CMDQ_PROD);
    expect(findRegister('cmdq_prod')).toBe(REG.SMMU_CMDQ_PROD);
    expect(findRegister(' smmu_gerror ')).toBe(REG.SMMU_GERROR);
    expect(findRegister('SMMU_CMDQ_CONTROL_PAGE_BASE<3>')?.offset).toBe(0x4060);
    expect(findRegister('cmdq_control_page_status255')?.offset).toBe(0x5fec);
    expect(findRegister('ECMDQ_CONS')).toBe(REG.SMMU_ECMDQ_CONS);
    expect(findRegister('S_INIT')?.offset).toBe(0x803c);
    expect(findRegister('NOPE')).toBeUndefined();
  });

  it('finds any byte offset inside a register', () => {
    expect(findRegister(0x84)).toBe(REG.SMMU_STRTAB_BASE);
    expect(findRegister(0x80)).toBe(REG.SMMU_STRTAB_BASE);
    expect(findRegister(0x100ac)).toBe(REG.SMMU_EVENTQ_CONS);
    expect(findRegister(0x4024)?.name).toBe('SMMU_CMDQ_CONTROL_PAGE_BASE1');
    expect(findRegister(0x8000)?.name).toBe('SMMU_S_IDR0');
    expect(findRegister(0xc00c)?.name).toBe('SMMU_S_CMDQ_CONTROL_PAGE_STATUS0');
    expect(findRegister(0x38)).toBeUndefined(); // between SMMU_S2PII and SMMU_STATUSR
    expect(findRegister(0x10000)).toBeUndefined();
    expect(findRegister(0x20000)).toBeUndefined();
  });

  it('every listed register is found by its own name and offset', () => {
    for (const r of [...REGISTERS, ...SECURE_REGISTERS]) {
      expect(findRegister(r.name)).toBe(r);
      expect(findRegister(r.offset)).toBe(r);
    }
  });
});

describe('register values', () => {
  it('encode32 / encode64 place fields and reject what does not fit', () => {
    expect(encode32(REG.SMMU_CR0, { SMMUEN: 1, CMDQEN: 1 })).toBe(0x9);
    expect(encode32(REG.SMMU_CMDQ_CONS, { ERR: CERROR_ILL, RD: 0x80 })).toBe(0x0100_0080);
    expect(() => encode32(REG.SMMU_CR0, { VMW: 8 })).toThrow(/SMMU_CR0\.VMW/);
    expect(() => encode32(REG.SMMU_CR0, { NOPE: 1 } as never)).toThrow(/SMMU_CR0 has no field NOPE/);
    expect(() => encode32(REG.SMMU_CMDQ_BASE, {})).toThrow(/64-bit/);
    expect(encode64(REG.SMMU_CMDQ_BASE, { RA: 1, ADDR: 0x8_1234_5000n, LOG2SIZE: 8 })).toBe(0x4000_0008_1234_5008n);
    expect(() => encode64(REG.SMMU_CMDQ_BASE, { ADDR: 0x1010n })).toThrow(/bits below bit 5/);
  });

  it('decodeRegister returns every field', () => {
    expect(decodeRegister(REG.SMMU_CMDQ_BASE, 0x4000_0008_1234_5008n)).toEqual({ RA: 1, ADDR: 0x8_1234_5000n, LOG2SIZE: 8 });
    expect(decodeRegister(REG.SMMU_ECMDQ_CONS, 0x8280_0010)).toEqual({ ENACK: 1, ERR_REASON: 2, ERR: 1, RD: 0x10 });
  });

  it('regGet / regSet work on the 32-bit half that holds the field', () => {
    expect(regGet(0x7f00_0000, REG.SMMU_CMDQ_CONS.f.ERR)).toBe(0x7f);
    expect(regSet(0xffff_ffff, REG.SMMU_CMDQ_CONS.f.ERR, 0)).toBe(0x80ff_ffff);
    expect(regSet(0, REG.SMMU_ECMDQ_PROD.f.EN, 1)).toBe(0x8000_0000);
    // RA is bit 62: bit 30 of the upper word.
    expect(regGet(0x4000_0000, REG.SMMU_CMDQ_BASE.f.RA)).toBe(1);
    expect(regSet(0, REG.SMMU_CMDQ_BASE.f.RA, 1)).toBe(0x4000_0000);
  });

  it('modelResetValue: architected reset, model choice, or 0', () => {
    expect(modelResetValue(REG.SMMU_CR0)).toBe(0);
    expect(modelResetValue(REG.SMMU_CMDQ_BASE)).toBe(0n);
    expect(modelResetValue(REG.SMMU_CMDQ_CONTROL_PAGE_CFG)).toBe(1);
  });
});
