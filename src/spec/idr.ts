/**
 * The ID registers the model presents (SMMU_IDR0-IDR6, SMMU_IIDR, SMMU_AIDR, the ID_REGS block),
 * derived from SmmuFeatures, and the reverse: what a driver's probe derives from them.
 * Every field position comes from the register table in registers.ts (IHI0070 G.b §6.3.1-§6.3.8,
 * §6.3.45, §6.3.170).
 *
 * Fields SmmuFeatures does not describe take fixed model values: no ATOS/VATOS, no DORMHINT, no
 * presets, no attribute overrides, TERM_MODEL 0, little-endian AArch64 tables only (TTF = VMSAv8-64,
 * TTENDIAN = LE), no D128, IDR2 = IDR4 = 0. Version-mandatory IDR3 capabilities that the model
 * does not implement (FWB, XNX, HAD, E0PD, PTWNNC, ...) are reported as 0; only BBML, which names no
 * capability, follows the version rule (§6.3.4: 0b01 or 0b10 from SMMUv3.2).
 */

import type { FieldValue } from './bits.ts';
import type { RegisterSpec } from './registers.ts';
import type { SmmuFeatures, StallModel } from './features.ts';
import { FULL_FEATURES, featureProblems, stallModelCode } from './features.ts';
import {
  BBML,
  REG,
  ST_LEVEL,
  STALL_MODEL,
  TTENDIAN,
  TTF,
  decodeRegister,
  encode32,
} from './registers.ts';

/** The values of the identification registers, as u32 numbers. */
export interface IdrValues {
  readonly IDR0: number;
  readonly IDR1: number;
  readonly IDR2: number;
  readonly IDR3: number;
  readonly IDR4: number;
  readonly IDR5: number;
  readonly IDR6: number;
  readonly IIDR: number;
  readonly AIDR: number;
}

/**
 * SMMU_IIDR the model presents (§6.3.7): Implementer 0x43B is Arm's JEP106 code (continuation 0x4,
 * identity 0x3B). ProductID 0 is a placeholder that names no real product, so drivers apply no
 * product-keyed errata workarounds.
 */
export const MODEL_IIDR = Object.freeze({ ProductID: 0x000, Variant: 0x0, Revision: 0x0, Implementer: 0x43b });

/** JEP106 parts of MODEL_IIDR.Implementer (§6.3.7: [11:8] continuation code, [6:0] identity code). */
const JEP106_CONTINUATION_SHIFT = 8;
const JEP106_IDENTITY_MASK = 0x7f;

/** IDR5.STALL_MAX the model presents when stalls are possible (model choice; RES0 without stall). */
export const MODEL_STALL_MAX = 128;

/** Minor revision from which IDR3.BBML must be 0b01 or 0b10 (§6.3.4: SMMUv3.2). */
const BBML_MANDATORY_FROM_MINOR = 2;

/** Largest IDR0.HTTU and IDR5.VAX values SmmuFeatures can describe. */
const FEATURES_HTTU_MAX = 2;
const FEATURES_VAX_MAX = 1;

const b = (x: boolean): number => (x ? 1 : 0);

/** Encode the ID registers for a feature set. Fields the spec makes RES0 under a dependency are 0. */
export function idrFromFeatures(f: SmmuFeatures): IdrValues {
  const IDR0 = encode32(REG.SMMU_IDR0, {
    ST_LEVEL: f.stLevel2 ? ST_LEVEL.TWO_LEVEL : ST_LEVEL.LINEAR,
    STALL_MODEL: stallModelCode(f.stallModel),
    TTENDIAN: TTENDIAN.LE,
    CD2L: b(f.cd2l),
    VMID16: b(f.vmid16),
    // §6.3.1: VMW is RES0 when S2P == 0; Hyp is RES0 when S1P == 0 or S2P == 0; PRI is RES0 when ATS == 0.
    VMW: b(f.vmw && f.s2),
    PRI: b(f.pri && f.ats),
    SEV: b(f.sev),
    MSI: b(f.msi),
    ASID16: b(f.asid16),
    ATS: b(f.ats),
    Hyp: b(f.hyp && f.s1 && f.s2),
    HTTU: f.httu,
    BTM: b(f.btm),
    COHACC: b(f.coherent),
    TTF: TTF.VMSAV8_64,
    S1P: b(f.s1),
    S2P: b(f.s2),
  });
  const IDR1 = encode32(REG.SMMU_IDR1, {
    ECMDQ: b(f.ecmdq),
    CMDQS: f.cmdqs,
    EVENTQS: f.eventqs,
    PRIQS: f.priqs,
    SSIDSIZE: f.ssidSize,
    SIDSIZE: f.sidSize,
  });
  const IDR3 = encode32(REG.SMMU_IDR3, {
    DPT: b(f.dpt),
    MPAM: b(f.mpam),
    RIL: b(f.ril),
    BBML: f.archMinor >= BBML_MANDATORY_FROM_MINOR ? BBML.LEVEL1 : BBML.LEVEL0,
  });
  const IDR5 = encode32(REG.SMMU_IDR5, {
    // §6.3.6: STALL_MAX is RES0 when STALL_MODEL == 0b01 (no Secure interface in this model).
    STALL_MAX: f.stallModel === 'no-stall' ? 0 : MODEL_STALL_MAX,
    VAX: f.vax,
    // §6.3.6: DS is RES0 when GRAN4K == 0 and GRAN16K == 0.
    DS: b(f.ds && (f.gran4k || f.gran16k)),
    GRAN64K: b(f.gran64k),
    GRAN16K: b(f.gran16k),
    GRAN4K: b(f.gran4k),
    OAS: f.oas,
  });
  // §6.3.45: IDR6 is RES0 when IDR1.ECMDQ == 0.
  const IDR6 = f.ecmdq
    ? encode32(REG.SMMU_IDR6, {
        CMDQ_CONTROL_PAGE_LOG2NUMP: f.ecmdqLog2NumP,
        CMDQ_CONTROL_PAGE_LOG2NUMQ: f.ecmdqLog2NumQ,
      })
    : 0;
  return {
    IDR0,
    IDR1,
    IDR2: 0,
    IDR3,
    IDR4: 0,
    IDR5,
    IDR6,
    IIDR: encode32(REG.SMMU_IIDR, MODEL_IIDR),
    AIDR: encode32(REG.SMMU_AIDR, { ArchMajorRev: 0, ArchMinorRev: f.archMinor }),
  };
}

const STALL_BY_CODE: Readonly<Record<number, StallModel>> = {
  [STALL_MODEL.STALL_AND_TERMINATE]: 'stall-and-terminate',
  [STALL_MODEL.NO_STALL]: 'no-stall',
  [STALL_MODEL.STALL_FORCED]: 'stall-forced',
};

function fields(spec: Parameters<typeof decodeRegister>[0], v: number): Record<string, number> {
  return decodeRegister(spec, v) as Record<string, FieldValue> as Record<string, number>;
}

/**
 * What a driver's probe derives from the ID registers. Members no ID register holds (res0Check)
 * take FULL_FEATURES' values. Encodings SmmuFeatures cannot express are narrowed: HTTU 0b11 reads
 * as 2, VAX 0b10 (56-bit) as 1, ST_LEVEL 0b1x (Reserved) as linear only; a Reserved STALL_MODEL
 * (0b11) throws. Without ECMDQ the control-page geometry is 0/0.
 */
export function featuresFromIdr(v: IdrValues): SmmuFeatures {
  const i0 = fields(REG.SMMU_IDR0, v.IDR0);
  const i1 = fields(REG.SMMU_IDR1, v.IDR1);
  const i3 = fields(REG.SMMU_IDR3, v.IDR3);
  const i5 = fields(REG.SMMU_IDR5, v.IDR5);
  const i6 = fields(REG.SMMU_IDR6, v.IDR6);
  const aidr = fields(REG.SMMU_AIDR, v.AIDR);
  const stallModel = STALL_BY_CODE[i0.STALL_MODEL!];
  if (stallModel === undefined) throw new RangeError(`SMMU_IDR0.STALL_MODEL = ${i0.STALL_MODEL} is Reserved (§6.3.1)`);
  const ecmdq = i1.ECMDQ === 1;
  const on = (x: number | undefined): boolean => x === 1;
  return {
    s1: on(i0.S1P),
    s2: on(i0.S2P),
    hyp: on(i0.Hyp),
    ril: on(i3.RIL),
    ats: on(i0.ATS),
    pri: on(i0.PRI),
    stallModel,
    msi: on(i0.MSI),
    sev: on(i0.SEV),
    vmid16: on(i0.VMID16),
    asid16: on(i0.ASID16),
    coherent: on(i0.COHACC),
    cd2l: on(i0.CD2L),
    stLevel2: i0.ST_LEVEL === ST_LEVEL.TWO_LEVEL,
    btm: on(i0.BTM),
    vmw: on(i0.VMW),
    httu: Math.min(i0.HTTU!, FEATURES_HTTU_MAX) as SmmuFeatures['httu'],
    mpam: on(i3.MPAM),
    dpt: on(i3.DPT),
    ds: on(i5.DS),
    gran4k: on(i5.GRAN4K),
    gran16k: on(i5.GRAN16K),
    gran64k: on(i5.GRAN64K),
    oas: i5.OAS!,
    vax: Math.min(i5.VAX!, FEATURES_VAX_MAX) as SmmuFeatures['vax'],
    sidSize: i1.SIDSIZE!,
    ssidSize: i1.SSIDSIZE!,
    cmdqs: i1.CMDQS!,
    eventqs: i1.EVENTQS!,
    priqs: i1.PRIQS!,
    ecmdq,
    ecmdqLog2NumP: ecmdq ? i6.CMDQ_CONTROL_PAGE_LOG2NUMP! : 0,
    ecmdqLog2NumQ: ecmdq ? i6.CMDQ_CONTROL_PAGE_LOG2NUMQ! : 0,
    archMinor: aidr.ArchMinorRev!,
    res0Check: FULL_FEATURES.res0Check,
  };
}

/**
 * The rules the ID register pages (§6.3.1-§6.3.6, §6.3.45) put on field combinations that `f`
 * breaks (features.ts `featureProblems`, which validateFeatures enforces). When the list is
 * empty, featuresFromIdr(idrFromFeatures(f)) equals f (with FULL_FEATURES.res0Check).
 */
export function idrConsistencyProblems(f: SmmuFeatures): string[] {
  return featureProblems(f);
}

/**
 * The ID_REGS block the model presents (§6.3.170), consistent with MODEL_IIDR: PART = ProductID,
 * DES = the JEP106 code, REVISION = Variant, REVAND = Revision, CMOD 0, SIZE 0, CoreSight
 * component class 0xF in CIDR1.
 */
export function idRegisterValues(): Readonly<Record<
  | 'SMMU_PIDR0' | 'SMMU_PIDR1' | 'SMMU_PIDR2' | 'SMMU_PIDR3' | 'SMMU_PIDR4' | 'SMMU_PIDR5' | 'SMMU_PIDR6' | 'SMMU_PIDR7'
  | 'SMMU_CIDR0' | 'SMMU_CIDR1' | 'SMMU_CIDR2' | 'SMMU_CIDR3',
  number
>> {
  const part = MODEL_IIDR.ProductID;
  const identity = MODEL_IIDR.Implementer & JEP106_IDENTITY_MASK;
  const continuation = MODEL_IIDR.Implementer >>> JEP106_CONTINUATION_SHIFT;
  const partLo = REG.SMMU_PIDR0.f.PART_0.width;
  const desLo = REG.SMMU_PIDR1.f.DES_0.width;
  const fixed = (r: RegisterSpec): number => {
    if (typeof r.reset !== 'number' || r.resetMask !== undefined) throw new Error(`${r.name} has no fixed value`);
    return r.reset;
  };
  return Object.freeze({
    SMMU_PIDR0: encode32(REG.SMMU_PIDR0, { PART_0: part & ((1 << partLo) - 1) }),
    SMMU_PIDR1: encode32(REG.SMMU_PIDR1, { DES_0: identity & ((1 << desLo) - 1), PART_1: part >>> partLo }),
    SMMU_PIDR2: encode32(REG.SMMU_PIDR2, { REVISION: MODEL_IIDR.Variant, JEDEC: 1, DES_1: identity >>> desLo }),
    SMMU_PIDR3: encode32(REG.SMMU_PIDR3, { REVAND: MODEL_IIDR.Revision, CMOD: 0 }),
    SMMU_PIDR4: encode32(REG.SMMU_PIDR4, { SIZE: 0, DES_2: continuation }),
    SMMU_PIDR5: fixed(REG.SMMU_PIDR5),
    SMMU_PIDR6: fixed(REG.SMMU_PIDR6),
    SMMU_PIDR7: fixed(REG.SMMU_PIDR7),
    SMMU_CIDR0: fixed(REG.SMMU_CIDR0),
    SMMU_CIDR1: fixed(REG.SMMU_CIDR1),
    SMMU_CIDR2: fixed(REG.SMMU_CIDR2),
    SMMU_CIDR3: fixed(REG.SMMU_CIDR3),
  });
}
