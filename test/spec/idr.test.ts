import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { FULL_FEATURES, parseFeatures, validateFeatures, type SmmuFeatures, type StallModel } from '../../src/spec/features.ts';
import {
  MODEL_IIDR,
  MODEL_STALL_MAX,
  featuresFromIdr,
  idRegisterValues,
  idrConsistencyProblems,
  idrFromFeatures,
  type IdrValues,
} from '../../src/spec/idr.ts';

/*
 * idrFromFeatures(FULL_FEATURES), by hand from the field tables of §6.3.1-§6.3.8 and §6.3.45:
 *
 * SMMU_IDR0 (§6.3.1)
 *   ST_LEVEL    [28:27] = 0b01 (2-level)      0x0800_0000
 *   STALL_MODEL [25:24] = 0b00 (stall+term)   0
 *   TTENDIAN    [22:21] = 0b10 (LE)           0x0040_0000
 *   CD2L [19], VMID16 [18], VMW [17], PRI [16] 0x000F_0000
 *   SEV [14], MSI [13], ASID16 [12]           0x0000_7000
 *   ATS [10], Hyp [9]                         0x0000_0600
 *   HTTU [7:6] = 0b10                         0x0000_0080
 *   BTM [5] = 0 (FULL_FEATURES.btm is false)  0
 *   COHACC [4]                                0x0000_0010
 *   TTF [3:2] = 0b10 (VMSAv8-64)              0x0000_0008
 *   S1P [1], S2P [0]                          0x0000_0003
 *                                      total  0x084F_769B
 * SMMU_IDR1 (§6.3.2)
 *   ECMDQ [31]                                0x8000_0000
 *   CMDQS [25:21] = 19                        19 << 21 = 0x0260_0000
 *   EVENTQS [20:16] = 19                      19 << 16 = 0x0013_0000
 *   PRIQS [15:11] = 19                        19 << 11 = 0x0000_9800
 *   SSIDSIZE [10:6] = 20                      20 << 6  = 0x0000_0500
 *   SIDSIZE [5:0] = 32                        0x0000_0020
 *                                      total  0x8273_9D20
 * SMMU_IDR3 (§6.3.4): DPT [15] 0x8000, BBML [12:11] = 0b01 (v3.3) 0x0800, RIL [10] 0x0400,
 *   MPAM [7] 0x0080                    total  0x0000_8C80
 * SMMU_IDR5 (§6.3.6): STALL_MAX [31:16] = 128 0x0080_0000, VAX [11:10] = 0b01 0x0400,
 *   DS [7] 0x80, GRAN64K [6] 0x40, GRAN16K [5] 0x20, GRAN4K [4] 0x10, OAS [2:0] = 0b110 6
 *                                      total  0x0080_04F6
 * SMMU_IDR6 (§6.3.45): LOG2NUMP [27:24] = 0, LOG2NUMQ [19:16] = 3   0x0003_0000
 * SMMU_IIDR (§6.3.7): Implementer [11:0] = 0x43B (Arm), ProductID/Variant/Revision 0   0x0000_043B
 * SMMU_AIDR (§6.3.8): ArchMajorRev 0, ArchMinorRev [3:0] = 3 (SMMUv3.3)               0x0000_0003
 */
const FULL_IDR: IdrValues = {
  IDR0: 0x084f_769b,
  IDR1: 0x8273_9d20,
  IDR2: 0,
  IDR3: 0x0000_8c80,
  IDR4: 0,
  IDR5: 0x0080_04f6,
  IDR6: 0x0003_0000,
  IIDR: 0x0000_043b,
  AIDR: 0x0000_0003,
};

const NARROW_TEXT =
  'no-s1,no-hyp,no-cd2l,no-ats,no-pri,no-dpt,no-msi,no-sev,no-ecmdq,no-mpam,no-ril,no-ds,no-gran16k,httu=0,' +
  'stall-model=no-stall,sidsize=16,ssidsize=0,cmdqs=8,eventqs=7,priqs=0,oas=5,vax=0,arch=1,no-vmid16,no-coherent,' +
  'ecmdq-log2numq=0';

/*
 * The narrowed set: stage 2 only, no ATS/PRI/MSI/ECMDQ, SMMUv3.1.
 * SMMU_IDR0: ST_LEVEL 0b01 0x0800_0000 | STALL_MODEL 0b01 (no stall) 1 << 24 = 0x0100_0000 |
 *   TTENDIAN LE 0x0040_0000 | VMW [17] 0x0002_0000 (vmw kept, S2P == 1) | ASID16 [12] 0x1000
 *   (asid16 kept: §6.3.1 makes it irrelevant, not RES0, without S1P) | TTF 0x8 | S2P 0x1
 *                                      = 0x0942_1009
 * SMMU_IDR1: CMDQS 8 << 21 = 0x0100_0000 | EVENTQS 7 << 16 = 0x0007_0000 | SIDSIZE 16 = 0x10
 *                                      = 0x0107_0010
 * SMMU_IDR3: nothing; BBML is 0 before SMMUv3.2 (§6.3.4)            = 0
 * SMMU_IDR5: STALL_MAX RES0 with STALL_MODEL 0b01 (§6.3.6) | GRAN64K 0x40 | GRAN4K 0x10 | OAS 0b101 (48 bits)
 *                                      = 0x0000_0055
 * SMMU_IDR6: RES0 without ECMDQ (§6.3.45) = 0; SMMU_AIDR: ArchMinorRev 1 = 0x1
 */
const NARROW_IDR: IdrValues = {
  IDR0: 0x0942_1009,
  IDR1: 0x0107_0010,
  IDR2: 0,
  IDR3: 0,
  IDR4: 0,
  IDR5: 0x0000_0055,
  IDR6: 0,
  IIDR: 0x0000_043b,
  AIDR: 0x0000_0001,
};

/** Repair an arbitrary record into features that validateFeatures and the ID register rules accept. */
function consistent(raw: SmmuFeatures): SmmuFeatures {
  const f = { ...raw } as { -readonly [K in keyof SmmuFeatures]: SmmuFeatures[K] };
  if (!f.s1 && !f.s2) f.s1 = true;
  if (!f.ats) {
    f.pri = false;
    f.dpt = false;
  }
  if (!(f.s1 && f.s2)) f.hyp = false;
  if (!f.s2) f.vmw = false;
  if (!f.s1) f.cd2l = false;
  if (f.sidSize >= 7) f.stLevel2 = true;
  if (f.ecmdq) {
    f.msi = true;
    f.coherent = true;
  } else {
    f.ecmdqLog2NumP = 0;
    f.ecmdqLog2NumQ = 0;
  }
  if (!f.gran4k && !f.gran16k && !f.gran64k) f.gran4k = true;
  if (!f.gran4k && !f.gran16k) f.ds = false;
  if (f.archMinor === 0) {
    // SMMUv3.0: VAX is RES0 (so DS, which needs a 52-bit VA, is 0) and OAS 52 is Reserved.
    f.vax = 0;
    f.ds = false;
    if (f.oas === 6) f.oas = 5;
  }
  if (f.ds) f.vax = 1;
  if (f.vax === 1 && !f.gran64k && !f.ds) f.gran64k = true;
  if (f.oas === 6 && !f.gran64k && !f.ds) f.gran64k = true;
  f.res0Check = FULL_FEATURES.res0Check;
  return f;
}

const stallModels: StallModel[] = ['stall-and-terminate', 'no-stall', 'stall-forced'];

const anyFeatures: fc.Arbitrary<SmmuFeatures> = fc
  .record({
    s1: fc.boolean(),
    s2: fc.boolean(),
    hyp: fc.boolean(),
    ril: fc.boolean(),
    ats: fc.boolean(),
    pri: fc.boolean(),
    stallModel: fc.constantFrom(...stallModels),
    msi: fc.boolean(),
    sev: fc.boolean(),
    vmid16: fc.boolean(),
    asid16: fc.boolean(),
    coherent: fc.boolean(),
    cd2l: fc.boolean(),
    stLevel2: fc.boolean(),
    btm: fc.boolean(),
    vmw: fc.boolean(),
    httu: fc.constantFrom(0 as const, 1 as const, 2 as const),
    mpam: fc.boolean(),
    dpt: fc.boolean(),
    ds: fc.boolean(),
    gran4k: fc.boolean(),
    gran16k: fc.boolean(),
    gran64k: fc.boolean(),
    oas: fc.integer({ min: 0, max: 6 }),
    vax: fc.constantFrom(0 as const, 1 as const),
    sidSize: fc.integer({ min: 0, max: 32 }),
    ssidSize: fc.integer({ min: 0, max: 20 }),
    cmdqs: fc.integer({ min: 0, max: 19 }),
    eventqs: fc.integer({ min: 0, max: 19 }),
    priqs: fc.integer({ min: 0, max: 19 }),
    ecmdq: fc.boolean(),
    ecmdqLog2NumP: fc.integer({ min: 0, max: 8 }),
    ecmdqLog2NumQ: fc.integer({ min: 0, max: 8 }),
    archMinor: fc.integer({ min: 0, max: 4 }),
    res0Check: fc.boolean(),
  })
  .map(consistent);

const hex = (v: IdrValues): Record<string, string> =>
  Object.fromEntries(Object.entries(v).map(([k, x]) => [k, `0x${(x as number).toString(16).padStart(8, '0')}`]));

describe('idrFromFeatures', () => {
  it('FULL_FEATURES gives the hand-derived values (§6.3.1-§6.3.8, §6.3.45)', () => {
    expect(hex(idrFromFeatures(FULL_FEATURES))).toEqual(hex(FULL_IDR));
  });

  it('a narrowed feature set gives the hand-derived values', () => {
    expect(hex(idrFromFeatures(parseFeatures(NARROW_TEXT)))).toEqual(hex(NARROW_IDR));
  });

  it('RES0-by-dependency fields read as 0 (§6.3.1, §6.3.6, §6.3.45)', () => {
    // VMW without stage 2; Hyp without both stages.
    // Objects built by hand: parseFeatures would drop the dependent features itself.
    const s1only = idrFromFeatures({ ...FULL_FEATURES, s2: false });
    expect((s1only.IDR0 >>> 17) & 1).toBe(0);
    expect((s1only.IDR0 >>> 9) & 1).toBe(0);
    // DS without a 4K or 16K granule.
    const only64k = idrFromFeatures({ ...FULL_FEATURES, gran4k: false, gran16k: false });
    expect((only64k.IDR5 >>> 7) & 1).toBe(0);
    // IDR6 without ECMDQ, whatever the geometry.
    expect(idrFromFeatures({ ...FULL_FEATURES, ecmdq: false, ecmdqLog2NumP: 2 }).IDR6).toBe(0);
    // STALL_MAX only when stalls exist.
    expect(idrFromFeatures(parseFeatures('stall-model=stall-forced')).IDR5 >>> 16).toBe(MODEL_STALL_MAX);
  });

  it('every value is a u32', () => {
    fc.assert(
      fc.property(anyFeatures, (f) => {
        for (const v of Object.values(idrFromFeatures(f))) {
          expect(Number.isInteger(v) && v >= 0 && v <= 0xffff_ffff).toBe(true);
        }
      }),
    );
  });
});

describe('featuresFromIdr', () => {
  it('FULL_IDR probes as FULL_FEATURES', () => {
    expect(featuresFromIdr(FULL_IDR)).toEqual(FULL_FEATURES);
  });

  it('NARROW_IDR probes as the narrowed set', () => {
    expect(featuresFromIdr(NARROW_IDR)).toEqual(parseFeatures(NARROW_TEXT));
  });

  it('round-trips every consistent feature set', () => {
    fc.assert(
      fc.property(anyFeatures, (f) => {
        expect(() => validateFeatures(f)).not.toThrow();
        expect(idrConsistencyProblems(f)).toEqual([]);
        expect(featuresFromIdr(idrFromFeatures(f))).toEqual(f);
      }),
      { numRuns: 500 },
    );
  });

  it('encoding what a probe derived gives the same registers again', () => {
    const loose = fc
      .tuple(anyFeatures, fc.boolean(), fc.boolean(), fc.boolean())
      .map(([f, vmw, hyp, pri]) => ({ ...f, vmw, hyp: hyp && f.s1, pri: pri && f.ats }));
    fc.assert(
      fc.property(loose, (f) => {
        const v = idrFromFeatures(f);
        expect(idrFromFeatures(featuresFromIdr(v))).toEqual(v);
      }),
    );
  });

  it('narrows encodings SmmuFeatures cannot hold and rejects a Reserved STALL_MODEL', () => {
    const httu3 = { ...FULL_IDR, IDR0: FULL_IDR.IDR0 | (0b11 << 6) };
    expect(featuresFromIdr(httu3).httu).toBe(2);
    const vax56 = { ...FULL_IDR, IDR5: (FULL_IDR.IDR5 & ~(0b11 << 10)) | (0b10 << 10) };
    expect(featuresFromIdr(vax56).vax).toBe(1);
    const stLevelReserved = { ...FULL_IDR, IDR0: FULL_IDR.IDR0 | (0b11 << 27) };
    expect(featuresFromIdr(stLevelReserved).stLevel2).toBe(false);
    const stallReserved = { ...FULL_IDR, IDR0: FULL_IDR.IDR0 | (0b11 << 24) };
    expect(() => featuresFromIdr(stallReserved)).toThrow(/STALL_MODEL = 3 is Reserved/);
  });
});

describe('idrConsistencyProblems', () => {
  it('FULL_FEATURES is consistent', () => {
    expect(idrConsistencyProblems(FULL_FEATURES)).toEqual([]);
  });

  it('names each broken rule with its section', () => {
    expect(idrConsistencyProblems({ ...FULL_FEATURES, s2: false, hyp: false })).toEqual(['vmw needs s2 (§6.3.1)']);
    expect(idrConsistencyProblems({ ...FULL_FEATURES, ats: false, pri: false })).toEqual(['dpt needs ats (§6.3.4)']);
    expect(idrConsistencyProblems({ ...FULL_FEATURES, vax: 0 })).toEqual(['ds needs gran4k or gran16k, and vax=1 (§6.3.6)']);
    expect(idrConsistencyProblems({ ...FULL_FEATURES, archMinor: 0, ds: false })).toEqual([
      'SMMUv3.0 (arch=0) has no 52-bit OAS or VA (§6.3.6)',
    ]);
    expect(idrConsistencyProblems({ ...FULL_FEATURES, ecmdq: false })).toEqual([
      'ECMDQ geometry must be 0 without ecmdq (IDR6 is RES0, §6.3.45)',
    ]);
    // parseFeatures turns dependent features off with the feature they depend on.
    expect(idrConsistencyProblems(parseFeatures('no-s2'))).toEqual([]);
    expect(idrConsistencyProblems(parseFeatures('no-ats'))).toEqual([]);
    expect(idrConsistencyProblems(parseFeatures('no-ecmdq'))).toEqual([]);
  });
});

describe('idRegisterValues', () => {
  it('matches MODEL_IIDR and the CoreSight preamble (§6.3.170)', () => {
    // Arm JEP106: continuation 0x4 -> PIDR4.DES_2; identity 0x3B -> PIDR1.DES_0 = 0xB, PIDR2.DES_1 = 0x3;
    // PIDR2.JEDEC [3] = 1. ProductID 0 -> PART_0 = PART_1 = 0.
    expect(MODEL_IIDR.Implementer).toBe(0x43b);
    expect(idRegisterValues()).toEqual({
      SMMU_PIDR0: 0x00,
      SMMU_PIDR1: 0xb0,
      SMMU_PIDR2: 0x0b,
      SMMU_PIDR3: 0x00,
      SMMU_PIDR4: 0x04,
      SMMU_PIDR5: 0,
      SMMU_PIDR6: 0,
      SMMU_PIDR7: 0,
      SMMU_CIDR0: 0x0d,
      SMMU_CIDR1: 0xf0,
      SMMU_CIDR2: 0x05,
      SMMU_CIDR3: 0xb1,
    });
  });
});
