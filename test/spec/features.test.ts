import { describe, expect, it } from 'vitest';
import { FULL_FEATURES, ecmdqCount, featureProblems, parseFeatures } from '../../src/spec/features.ts';

describe('parseFeatures', () => {
  it('narrows the full SMMU by the --features syntax', () => {
    const f = parseFeatures('no-s1,no-ril,sidsize=8');
    expect(f.s1).toBe(false);
    expect(f.ril).toBe(false);
    expect(f.sidSize).toBe(8);
    // Features that need stage 1 go with it (§6.3.1): Hyp needs both stages, CD2L needs stage 1.
    expect(f.hyp).toBe(false);
    expect(f.cd2l).toBe(false);
    expect(f.s2).toBe(true);
    expect(featureProblems(f)).toEqual([]);
  });

  it('turns off what depends on a removed feature, unless asked for explicitly', () => {
    expect(parseFeatures('no-ats')).toMatchObject({ ats: false, pri: false, dpt: false });
    expect(parseFeatures('no-ecmdq')).toMatchObject({ ecmdq: false, ecmdqLog2NumP: 0, ecmdqLog2NumQ: 0 });
    expect(parseFeatures('no-st2l')).toMatchObject({ stLevel2: false, sidSize: 6 });
    expect(() => parseFeatures('no-ats,pri')).toThrow('inconsistent features: pri needs ats (IDR0.PRI is RES0 when ATS == 0, §6.3.1)');
    expect(() => parseFeatures('no-st2l,sidsize=8')).toThrow(/sidsize >= 7 needs 2-level stream tables/);
    expect(() => parseFeatures('no-s1,no-s2')).toThrow(/at least one of s1 and s2/);
  });

  it('names words it does not know and values out of range', () => {
    expect(() => parseFeatures('no-s3')).toThrow(/unknown feature 'no-s3'/);
    expect(() => parseFeatures('sidsize=33')).toThrow('feature sidsize=33: expected an integer in 0..32');
    expect(() => parseFeatures('cmdqs=x')).toThrow('feature cmdqs=x: expected an integer in 0..19');
    expect(() => parseFeatures('colour=5')).toThrow(/unknown feature setting 'colour'/);
    expect(() => parseFeatures('stall-model=maybe')).toThrow(/expected stall, no-stall or stall-forced/);
  });

  it('accepts case, spaces and empty items; the full SMMU is consistent', () => {
    expect(parseFeatures(' No-RIL , ,CMDQS=8 ')).toMatchObject({ ril: false, cmdqs: 8 });
    expect(featureProblems(FULL_FEATURES)).toEqual([]);
    expect(ecmdqCount(FULL_FEATURES)).toBe(8);
    expect(ecmdqCount(parseFeatures('no-ecmdq'))).toBe(0);
  });
});
