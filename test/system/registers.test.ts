import { afterEach, describe, expect, it } from 'vitest';
import { REG, encode32, encode64 } from '../../src/spec/registers.ts';
import { idrFromFeatures } from '../../src/spec/idr.ts';
import { FULL_FEATURES, parseFeatures } from '../../src/spec/features.ts';
import type { System } from '../../src/system/system.ts';
import { rawSystem } from '../helpers/raw.ts';

let sys: System | undefined;
afterEach(async () => {
  await sys?.stop();
  sys = undefined;
});

const bit = (f: { lsb: number }) => 1 << f.lsb;

describe('register file (IHI0070 G.b §6.2, §6.3)', () => {
  it('presents the ID registers its features describe, and reset values', async () => {
    const features = parseFeatures('no-ril,no-ecmdq,sidsize=16,ssidsize=8');
    sys = await rawSystem({ features });
    const idr = idrFromFeatures(features);
    expect(sys.readReg('SMMU_IDR0')).toBe(idr.IDR0);
    expect(sys.readReg('SMMU_IDR1')).toBe(idr.IDR1);
    expect(sys.readReg('SMMU_IDR3')).toBe(idr.IDR3);
    expect(sys.readReg('SMMU_IDR5')).toBe(idr.IDR5);
    expect(sys.readReg('SMMU_IDR6')).toBe(0); // RES0 without ECMDQ (§6.3.45)
    expect(sys.readReg('SMMU_CR0')).toBe(0);
    expect(sys.readReg('SMMU_CR0ACK')).toBe(0);
    expect(sys.readReg('SMMU_GERROR')).toBe(0);
    expect(sys.readReg('SMMU_GBPA') >>> 31).toBe(0); // Update resets to 0 (§6.3.14)
  });

  it('acknowledges CR0 fields in CR0ACK, reflecting only implemented ones (§6.3.9-10)', async () => {
    sys = await rawSystem({ features: parseFeatures('no-pri,no-ecmdq') });
    const c = REG.SMMU_CR0.f;
    await sys.writeReg('SMMU_CR0', bit(c.SMMUEN) | bit(c.PRIQEN) | bit(c.EVENTQEN) | (1 << 5) | (1 << 20));
    const ack = await sys.waitReg('SMMU_CR0ACK', (v) => v !== 0);
    // PRIQEN is RES0 without PRI; bits 5 and 20 are RES0: none of them are reflected.
    expect(ack).toBe(bit(c.SMMUEN) | bit(c.EVENTQEN));
    expect(sys.readReg('SMMU_CR0')).toBe(bit(c.SMMUEN) | bit(c.EVENTQEN));
  });

  it('ignores writes to read-only registers and counts them', async () => {
    sys = await rawSystem();
    const idr0 = sys.readReg('SMMU_IDR0');
    await sys.writeReg('SMMU_IDR0', 0);
    await sys.writeReg('SMMU_CR0ACK', 0xffff_ffff);
    await sys.writeReg('SMMU_GERROR', 1);
    expect(sys.readReg('SMMU_IDR0')).toBe(idr0);
    expect(sys.readReg('SMMU_CR0ACK')).toBe(0);
    expect(sys.readReg('SMMU_GERROR')).toBe(0);
    expect(sys.counter('MMIO_RO_WRITES')).toBe(3);
  });

  it('treats unknown offsets as RAZ/WI and counts them; Secure registers are RAZ/WI', async () => {
    sys = await rawSystem();
    await sys.writeReg(0x0f00, 0x1234); // page 0, no register
    await sys.writeReg(0x1_0100, 0x5678); // page 1, no register
    await sys.writeReg(0x8020, 1); // SMMU_S_CR0
    expect(sys.readReg(0x0f00)).toBe(0);
    expect(sys.readReg(0x1_0100)).toBe(0);
    expect(sys.readReg(0x8020)).toBe(0);
    expect(sys.counter('MMIO_UNKNOWN_WRITES')).toBe(2);
  });

  it('performs a GBPA update only when Update is set, and clears Update when done (§6.3.14)', async () => {
    sys = await rawSystem();
    const g = REG.SMMU_GBPA.f;
    const before = sys.readReg('SMMU_GBPA');
    await sys.writeReg('SMMU_GBPA', bit(g.ABORT)); // no Update: IGNORED
    expect(sys.readReg('SMMU_GBPA')).toBe(before);
    await sys.writeReg('SMMU_GBPA', bit(g.Update) | bit(g.ABORT));
    const v = await sys.waitReg('SMMU_GBPA', (x) => x >>> 31 === 0);
    expect(v).toBe(bit(g.ABORT));
  });

  it('IGNOREs writes to Guarded registers while their enable is set (§6.3.26, SMMUv3.2+)', async () => {
    sys = await rawSystem();
    const base = encode64(REG.SMMU_CMDQ_BASE, { ADDR: 0x4010_0000n, LOG2SIZE: 4 });
    await sys.writeReg('SMMU_CMDQ_BASE', base);
    await sys.writeReg('SMMU_CR0', encode32(REG.SMMU_CR0, { CMDQEN: 1 }));
    await sys.writeReg('SMMU_CMDQ_BASE', 0x4020_0000n | 5n);
    await sys.writeReg('SMMU_CMDQ_CONS', 3);
    expect(BigInt(sys.readReg(REG.SMMU_CMDQ_BASE.offset)) | (BigInt(sys.readReg(REG.SMMU_CMDQ_BASE.offset + 4)) << 32n)).toBe(base);
    expect(sys.readReg('SMMU_CMDQ_CONS')).toBe(0);
    // CR2 is Guarded by SMMUEN.
    await sys.writeReg('SMMU_CR0', encode32(REG.SMMU_CR0, { CMDQEN: 1, SMMUEN: 1 }));
    await sys.writeReg('SMMU_CR2', bit(REG.SMMU_CR2.f.RECINVSID));
    expect(sys.readReg('SMMU_CR2')).toBe(0);
  });

  it('keeps RES0 bits of RW registers at zero', async () => {
    sys = await rawSystem();
    await sys.writeReg('SMMU_STRTAB_BASE_CFG', 0xffff_ffff);
    const f = REG.SMMU_STRTAB_BASE_CFG.f;
    const defined = ((0b11 << f.FMT.lsb) | (0x1f << f.SPLIT.lsb) | 0x3f) >>> 0;
    expect(sys.readReg('SMMU_STRTAB_BASE_CFG')).toBe(defined);
    await sys.writeReg('SMMU_GERRORN', 0xffff_ffff);
    // GERRORN stores only implemented GERROR bits (§6.3.20): FULL_FEATURES implements 0,2-10.
    expect(sys.readReg('SMMU_GERRORN')).toBe(FULL_FEATURES.ecmdq ? 0x7fd : 0x5fd);
  });

  it('applies a 64-bit write as one access and counts a misplaced one', async () => {
    sys = await rawSystem();
    await sys.writeReg('SMMU_STRTAB_BASE', 0x0000_0000_4123_4540n);
    expect(sys.readReg(REG.SMMU_STRTAB_BASE.offset)).toBe(0x4123_4540);
    expect(sys.counter('MMIO_BAD_WIDTH')).toBe(0);
    await sys.writeReg(REG.SMMU_CR1.offset, 0x0000_0000_0000_0000n); // 64-bit access to CR1/CR2
    expect(sys.counter('MMIO_BAD_WIDTH')).toBe(1);
  });
});
