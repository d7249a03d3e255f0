/**
 * The command legality check (IHI0070 G.b §4.1.3, §4.1.5–§4.1.7, §4.2–§4.7, §7.1).
 *
 * Boundary cases are written as literal words (word 0 = bits [31:0] … word 3 = bits [127:96]) from
 * the spec's bit positions, so that an error in the command table cannot hide behind the encoder.
 * Positions used here: Opcode [7:0], SSec [10], SSV [11], SubstreamID [31:12], StreamID and VMID
 * from [32], ASID [63:48], NUM [16:12], SCALE [25:20], TTL128 [71], TTL [73:72], TG [75:74]
 * (§4.4.1.1 text table), Address[k] at flat 64+k for address fields stored from bit 76 (VA/IPA/PA)
 * or 66 (MSIAddress), CS [13:12], Resp [77:76], ATC Size [69:64], Range [68:64].
 */

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { coverMask, getBits, setBitsBig } from '../../src/spec/bits.ts';
import type { Words } from '../../src/spec/bits.ts';
import { CERROR_ILL } from '../../src/spec/cerror.ts';
import { encodeCommandWords } from '../../src/spec/command-codec.ts';
import { COMMANDS, OP, commandSpec } from '../../src/spec/commands.ts';
import { FULL_FEATURES } from '../../src/spec/features.ts';
import type { SmmuFeatures } from '../../src/spec/features.ts';
import { LEGALITY_RULES, LEGALITY_STAGES, OK, checkCommand, legalityRule } from '../../src/spec/legality.ts';
import type { Finding, Queue, Verdict } from '../../src/spec/legality.ts';

type W = readonly number[];

const F = (over: Partial<SmmuFeatures> = {}): SmmuFeatures => Object.freeze({ ...FULL_FEATURES, ...over });

/** Every rule id some test has produced; checked against LEGALITY_RULES at the end. */
const seen = new Set<string>();

function run(w: W, f: SmmuFeatures = FULL_FEATURES, queue?: Queue): Verdict {
  return checkCommand(w, f, queue === undefined ? undefined : { queue });
}

function range(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let b = lo; b <= hi; b++) out.push(b);
  return out;
}

/** Expect the shared OK verdict: legal, nothing out of range. */
function expectOk(w: W, f: SmmuFeatures = FULL_FEATURES, queue?: Queue): void {
  const v = run(w, f, queue);
  expect(v, JSON.stringify(v)).toBe(OK);
}

interface Want {
  field?: string | undefined;
  bits?: readonly number[] | undefined;
  section?: string;
  reason?: RegExp;
}

function expectIll(w: W, f: SmmuFeatures, rule: string, want: Want = {}, queue?: Queue): Finding {
  const v = run(w, f, queue);
  if (v.ok) throw new Error(`expected CERROR_ILL (${rule}), got ok: ${JSON.stringify(v)}`);
  expect(v.error).toBe('CERROR_ILL');
  expect(v.code).toBe(CERROR_ILL);
  expect(v.code).toBe(1);
  expect(v.finding.rule).toBe(rule);
  if ('field' in want) expect(v.finding.field).toBe(want.field);
  if ('bits' in want) expect(v.finding.bits).toEqual(want.bits);
  if (want.section !== undefined) expect(v.finding.section).toBe(want.section);
  if (want.reason !== undefined) expect(v.finding.reason).toMatch(want.reason);
  expect(legalityRule(rule).outcome).toBe('CERROR_ILL');
  seen.add(rule);
  return v.finding;
}

interface WantOor extends Want {
  rule: string;
}

function expectOor(w: W, f: SmmuFeatures, want: readonly WantOor[], queue?: Queue): readonly Finding[] {
  const v = run(w, f, queue);
  if (!v.ok) throw new Error(`expected ok, got ${JSON.stringify(v.finding)}`);
  expect(v.outOfRange.map((x) => x.rule)).toEqual(want.map((x) => x.rule));
  want.forEach((x, i) => {
    const got = v.outOfRange[i]!;
    if ('field' in x) expect(got.field).toBe(x.field);
    if ('bits' in x) expect(got.bits).toEqual(x.bits);
    if (x.section !== undefined) expect(got.section).toBe(x.section);
    if (x.reason !== undefined) expect(got.reason).toMatch(x.reason);
    expect(legalityRule(x.rule).outcome).toBe('out-of-range');
    seen.add(x.rule);
  });
  return v.outOfRange;
}

/** Every opcode the §4.1.1 table names (CMD_CFGI_ALL shares 0x04). */
const NAMED = [
  0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x10, 0x11, 0x12, 0x13, 0x18, 0x1a, 0x20, 0x21, 0x22, 0x23, 0x28, 0x2a, 0x30,
  0x40, 0x41, 0x44, 0x45, 0x46, 0x50, 0x51, 0x52, 0x53, 0x58, 0x5a, 0x60, 0x70, 0x73,
];
/** Named opcodes relevant on the Non-secure queue with every feature on (not EL3, not Secure). */
const RELEVANT_FULL = NAMED.filter((op) => op !== 0x18 && op !== 0x1a && !(op >= 0x50 && op <= 0x60));

// ---------------------------------------------------------------------------------------------

describe('stage 1: opcode class (§4.1.1, §4.1.3)', () => {
  it('raises CERROR_ILL for every Reserved opcode and nothing else in the table', () => {
    for (let op = 0; op < 256; op++) {
      const isImpdef = op >= 0x80 && op <= 0x8f;
      if (NAMED.includes(op) || isImpdef) continue;
      expectIll([op, 0, 0, 0], FULL_FEATURES, 'reserved-opcode', { field: 'Opcode', bits: undefined, section: '§4.1.1' });
    }
  });

  it('holds at the edges of the Reserved ranges (literal opcodes from §4.1.1)', () => {
    for (const op of [0x00, 0x08, 0x0a, 0x0b, 0x0f, 0x14, 0x17, 0x19, 0x1b, 0x1f, 0x24, 0x27, 0x29, 0x2b, 0x2f, 0x31, 0x3f, 0x42, 0x43, 0x47, 0x4f, 0x54, 0x57, 0x59, 0x5b, 0x5f, 0x61, 0x6f, 0x71, 0x72, 0x74, 0x7f, 0x90, 0xff]) {
      expectIll([op, 0, 0, 0], FULL_FEATURES, 'reserved-opcode', { reason: new RegExp(`opcode 0x${op.toString(16)} is Reserved`) });
    }
    // Their neighbours that are named commands (on the Secure queue, where EL3 commands are valid).
    for (const op of [0x07, 0x10, 0x13, 0x18, 0x1a, 0x20, 0x23, 0x28, 0x2a, 0x30, 0x40, 0x41, 0x44, 0x46, 0x70, 0x73]) {
      expectOk([op, 0, 0, 0], FULL_FEATURES, 'secure');
    }
  });

  it('raises CERROR_ILL for the IMPLEMENTATION DEFINED opcodes 0x80-0x8F: the model implements none', () => {
    for (let op = 0x80; op <= 0x8f; op++) {
      expectIll([op, 0, 0, 0], FULL_FEATURES, 'impdef-opcode', {
        field: 'Opcode',
        section: '§4.1.1',
        reason: /IMPLEMENTATION DEFINED and this model implements no IMPLEMENTATION DEFINED commands/,
      });
    }
  });

  it('reports the opcode even with RES0 checking off and junk in every other bit', () => {
    expectIll([0xffff_ff00, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff], F({ res0Check: false }), 'reserved-opcode');
    expectIll([0x0000_0a8f, 0, 0, 1], F({ res0Check: false }), 'impdef-opcode');
  });

  it('the command table classes match the §4.1.1 opcode list used here', () => {
    for (let op = 0; op < 256; op++) {
      const cls = commandSpec(op).cls;
      const want = NAMED.includes(op) ? ['architected', 'secure', 'dpti'] : op >= 0x80 && op <= 0x8f ? ['impdef'] : ['reserved'];
      expect(want).toContain(cls);
    }
  });
});

describe('stage 2: relevance to features and queue (§7.1, §4.3–§4.7)', () => {
  const noS1 = F({ s1: false, hyp: false, cd2l: false });
  it('CMD_CFGI_CD and CMD_CFGI_CD_ALL need stage 1 (§4.3.3, §4.3.4)', () => {
    expectOk([0x05, 0, 0, 0]);
    expectIll([0x05, 0, 0, 0], noS1, 'stage1-not-implemented', { field: 'Opcode', section: '§4.3.3' });
    expectOk([0x06, 0, 0, 0]);
    expectIll([0x06, 0, 0, 0], noS1, 'stage1-not-implemented', { section: '§4.3.4' });
  });

  it('CMD_TLBI_NH_* need stage 1 (§4.4.2)', () => {
    for (const op of [0x10, 0x11, 0x12, 0x13]) {
      expectOk([op, 0, 0, 0]);
      expectIll([op, 0, 0, 0], noS1, 'stage1-not-implemented', { section: '§4.4.2' });
    }
  });

  it('CMD_TLBI_EL2_* need stage 1 and Hyp (§4.4.2.7-§4.4.2.10)', () => {
    for (const op of [0x20, 0x21, 0x22, 0x23]) {
      expectOk([op, 0, 0, 0]);
      expectIll([op, 0, 0, 0], F({ hyp: false }), 'hyp-not-implemented', { field: 'Opcode', section: `§${commandSpec(op).section}` });
      // Stage 1 is checked first: without it the table row says CERROR_ILL as well (§4.4.2).
      expectIll([op, 0, 0, 0], noS1, 'stage1-not-implemented');
    }
  });

  it('CMD_TLBI_EL3_* are valid only on the Secure queue (§4.4.2.5, §4.4.2.6)', () => {
    for (const op of [0x18, 0x1a]) {
      expectIll([op, 0, 0, 0], FULL_FEATURES, 'el3-command-not-secure-queue', { section: `§${commandSpec(op).section}`, reason: /non-secure/ });
      expectIll([op, 0, 0, 0], FULL_FEATURES, 'el3-command-not-secure-queue', { reason: /realm/ }, 'realm');
      expectOk([op, 0, 0, 0], FULL_FEATURES, 'secure');
      expectIll([op, 0, 0, 0], noS1, 'stage1-not-implemented', {}, 'secure');
    }
  });

  it('CMD_TLBI_S2_IPA and CMD_TLBI_S12_VMALL need stage 2 (§4.4.3.1, §4.4.3.2)', () => {
    for (const op of [0x28, 0x2a]) {
      expectOk([op, 0, 0, 0]);
      expectIll([op, 0, 0, 0], F({ s2: false }), 'stage2-not-implemented', { section: `§${commandSpec(op).section}` });
    }
  });

  it('CMD_TLBI_NSNH_ALL is valid with stage 1 only, stage 2 only, or both (§4.4.4.1)', () => {
    expectOk([0x30, 0, 0, 0]);
    expectOk([0x30, 0, 0, 0], noS1);
    expectOk([0x30, 0, 0, 0], F({ s2: false }));
    expectOk([0x30, 0, 0, 0], FULL_FEATURES, 'secure');
    expectOk([0x30, 0, 0, 0], FULL_FEATURES, 'realm');
  });

  it('CMD_ATC_INV needs ATS, CMD_PRI_RESP needs PRI (§4.5.1, §4.5.2)', () => {
    expectOk([0x40, 0, 0, 0]);
    expectIll([0x40, 0, 0, 0], F({ ats: false, pri: false }), 'ats-not-implemented', { section: '§4.5.1', reason: /ILLEGAL because SMMU_IDR0.ATS == 0/ });
    expectOk([0x41, 0, 0, 0]);
    expectIll([0x41, 0, 0, 0], F({ pri: false }), 'pri-not-implemented', { section: '§4.5.2' });
  });

  it('CMD_RESUME and CMD_STALL_TERM need the Stall model and are illegal on the Realm queue (§4.7.1, §4.7.2)', () => {
    for (const op of [0x44, 0x45]) {
      expectOk([op, 0, 0, 0]);
      expectOk([op, 0, 0, 0], F({ stallModel: 'stall-forced' }));
      expectIll([op, 0, 0, 0], F({ stallModel: 'no-stall' }), 'stall-not-supported', { section: `§${commandSpec(op).section}` });
      expectIll([op, 0, 0, 0], FULL_FEATURES, 'stall-command-on-realm-queue', {}, 'realm');
    }
  });

  it('CMD_CFGI_VMS_PIDM needs MPAM (§4.3.5)', () => {
    expectOk([0x07, 0, 0, 0]);
    expectIll([0x07, 0, 0, 0], F({ mpam: false }), 'mpam-not-implemented', { section: '§4.3.5' });
  });

  it('CMD_DPTI_* need DPT (§4.6)', () => {
    for (const op of [0x70, 0x73]) {
      expectOk([op, 0, 0, 0]);
      expectIll([op, 0, 0, 0], F({ dpt: false }), 'dpt-not-implemented', { section: `§${commandSpec(op).section}` });
    }
  });

  it('the Secure commands 0x50-0x60 raise CERROR_ILL on every queue the model can have (§4.4.2.11-14, §4.4.3.3-4, §4.4.4.2)', () => {
    for (const op of [0x50, 0x51, 0x52, 0x53, 0x58, 0x5a, 0x60]) {
      expectIll([op, 0, 0, 0], FULL_FEATURES, 'secure-command-not-secure-queue', { section: `§${commandSpec(op).section}` });
      expectIll([op, 0, 0, 0], FULL_FEATURES, 'secure-command-not-secure-queue', {}, 'realm');
      expectIll([op, 0, 0, 0], FULL_FEATURES, 'secure-el2-not-implemented', {}, 'secure');
    }
  });

  it('prefetch, CFGI_STE(_RANGE/ALL) and CMD_SYNC are relevant to the smallest configuration', () => {
    const min = F({
      s1: false, s2: true, hyp: false, ril: false, ats: false, pri: false, stallModel: 'no-stall', msi: false, sev: false,
      vmid16: false, asid16: false, cd2l: false, mpam: false, dpt: false, ds: false, archMinor: 0, sidSize: 0, ssidSize: 0,
    });
    for (const w of [[0x01, 0, 0, 0], [0x02, 0, 0, 0], [0x03, 0, 0, 0], [0x04, 0, 0, 0], [0x04, 0, 31, 0], [0x46, 0, 0, 0], [0x30, 0, 0, 0]]) {
      expectOk(w, min);
    }
  });

  it('relevance is checked before SSec, SSec before ILLEGAL values and RES0', () => {
    // CMD_CFGI_CD with SSec == 1 on an SMMU without stage 1.
    expectIll([0x0000_0405, 0, 0, 0], noS1, 'stage1-not-implemented');
    // CMD_CFGI_STE with SSec == 1 and RES0 bit 8.
    expectIll([0x0000_0503, 0, 0, 0], FULL_FEATURES, 'ssec-on-nonsecure-queue', { bits: [10] });
  });
});

describe('stage 3: SSec (§4.1.6)', () => {
  it('SSec == 1 is ILLEGAL on the Non-secure and Realm queues, legal on the Secure queue', () => {
    expectOk([0x0000_0003, 0, 0, 0]);
    expectIll([0x0000_0403, 0, 0, 0], FULL_FEATURES, 'ssec-on-nonsecure-queue', { field: 'SSec', bits: [10], section: '§4.1.6' });
    expectIll([0x0000_0403, 0, 0, 0], FULL_FEATURES, 'ssec-on-realm-queue', { field: 'SSec', bits: [10], section: '§4.1.6, §3.10.3' }, 'realm');
    expectOk([0x0000_0403, 0, 0, 0], FULL_FEATURES, 'secure');
  });

  it('applies to every command that has SSec, whatever res0Check says', () => {
    const withSsec = COMMANDS.filter((c) => c.fields.some((f) => f.name === 'SSec')).map((c) => c.opcode);
    expect([...new Set(withSsec)].sort((a, b) => a - b)).toEqual([0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x44, 0x45]);
    for (const op of withSsec) {
      expectIll([op | 0x400, 0, 0, 0], F({ res0Check: false }), 'ssec-on-nonsecure-queue', { bits: [10] });
    }
  });

  it('bit 10 of a command without SSec is an ordinary RES0 bit', () => {
    expectIll([0x0000_0410, 0, 0, 0], FULL_FEATURES, 'res0-bits', { bits: [10] });
    expectOk([0x0000_0410, 0, 0, 0], F({ res0Check: false }));
  });
});

describe('stage 4: ILLEGAL values', () => {
  it('CMD_SYNC CS == 0b10 is legal, CS == 0b11 causes CERROR_ILL (§4.7.3)', () => {
    expectOk([0x0000_0046, 0, 0, 0]);
    expectOk([0x0000_1046, 0, 0, 0]);
    expectOk([0x0000_2046, 0, 0, 0]);
    expectOk([0x0000_2046, 0, 0, 0], F({ sev: false })); // SIG_SEV without SEV is SIG_NONE, not illegal
    expectIll([0x0000_3046, 0, 0, 0], FULL_FEATURES, 'sync-cs-reserved', { field: 'CS', bits: [12, 13], section: '§4.7.3' });
    expectIll([0x0000_3046, 0, 0, 0], F({ res0Check: false }), 'sync-cs-reserved');
  });

  it('CMD_SYNC MSH == 0b01 is Reserved but treated as 0b00, not illegal (§4.7.3)', () => {
    expectOk([0x0040_1046, 0, 0, 0]);
  });

  it('CMD_PRI_RESP Resp == 0b10 is legal, Resp == 0b11 is ILLEGAL (§4.5.2)', () => {
    expectOk([0x41, 0, 0x0000_2000, 0]);
    expectIll([0x41, 0, 0x0000_3000, 0], FULL_FEATURES, 'pri-resp-reserved', { field: 'Resp', bits: [76, 77], section: '§4.5.2' });
  });

  // §4.4.1.1: "The parameter combination of NUM == 0, SCALE == 0 and TTL = 0b00 is Reserved."
  const comboBits = [...range(12, 16), ...range(20, 25), 72, 73, 74, 75];
  it('TG=1 NUM=0 SCALE=0 TTL=1 is legal, TTL=0 is the Reserved combination (§4.4.1.1)', () => {
    expectOk([0x12, 0, 0x0000_0500, 0]);
    expectIll([0x12, 0, 0x0000_0400, 0], FULL_FEATURES, 'tlbi-range-reserved-combination', { field: 'TG', bits: comboBits, section: '§4.4.1.1' });
    expectOk([0x0000_1012, 0, 0x0000_0400, 0]); // NUM = 1
    expectOk([0x0010_0012, 0, 0x0000_0400, 0]); // SCALE = 1
    expectOk([0x0200_0012, 0, 0x0000_0400, 0]); // SCALE = 32 (bit 25, DS)
    expectOk([0x12, 0, 0, 0]); // TG = 0: no range, no combination
  });

  it('the Reserved combination applies to every range TLBI', () => {
    const rangeTlbis = COMMANDS.filter((c) => c.fields.some((f) => f.name === 'TG')).map((c) => c.opcode);
    expect(rangeTlbis).toEqual([0x12, 0x13, 0x1a, 0x22, 0x23, 0x2a, 0x52, 0x53, 0x5a]);
    for (const op of [0x12, 0x13, 0x22, 0x23, 0x2a]) {
      expectOk([op, 0, 0x0000_0f00, 0]); // TG = 64K, TTL = 3
      expectIll([op, 0, 0x0000_0c00, 0], FULL_FEATURES, 'tlbi-range-reserved-combination'); // TG = 64K
    }
    expectIll([0x1a, 0, 0x0000_0800, 0], FULL_FEATURES, 'tlbi-range-reserved-combination', {}, 'secure');
  });

  it('TG=2 TTL=1 is legal with DS and the Reserved combination without it (§4.4.1.1 note)', () => {
    const noDs = F({ ds: false });
    expectOk([0x12, 0, 0x0000_0900, 0]);
    expectIll([0x12, 0, 0x0000_0900, 0], noDs, 'tlbi-16k-ttl1-without-ds', { field: 'TTL', bits: comboBits, section: '§4.4.1.1' });
    // TTL is only treated as 0: with a range (NUM or SCALE != 0) the command is legal.
    expectOk([0x0000_1012, 0, 0x0000_0900, 0], noDs);
    expectOk([0x0010_0012, 0, 0x0000_0900, 0], noDs);
    // Other granules and levels are unaffected.
    expectOk([0x12, 0, 0x0000_0500, 0], noDs); // 4K, TTL 1
    expectOk([0x12, 0, 0x0000_0a00, 0], noDs); // 16K, TTL 2
    expectOk([0x12, 0, 0x0000_0d00, 0], noDs); // 64K, TTL 1
  });

  it('without DS SCALE bit 25 is not part of the value: SCALE=0b100000 NUM=0 TTL=0 is the Reserved combination', () => {
    // ILLEGAL values are checked before RES0, so the combination wins over the RES0 bit 25.
    expectIll([0x0200_0012, 0, 0x0000_0400, 0], F({ ds: false }), 'tlbi-range-reserved-combination');
    expectIll([0x0200_0112, 0, 0x0000_0400, 0], FULL_FEATURES, 'res0-bits', { bits: [8] });
  });

  it('without RIL the range fields are RES0 and the combination does not apply', () => {
    expectIll([0x12, 0, 0x0000_0400, 0], F({ ril: false }), 'ril-res0', { bits: [74] });
    expectOk([0x12, 0, 0x0000_0400, 0], F({ ril: false, res0Check: false }));
  });

  it('ILLEGAL values are checked before RES0 bits', () => {
    expectIll([0x0000_3146, 0, 0, 0], FULL_FEATURES, 'sync-cs-reserved');
    expectIll([0x41, 1 << 0, 0x0000_3200, 0], FULL_FEATURES, 'pri-resp-reserved');
  });
});

describe('stage 5: RES0 (§4.1.5)', () => {
  it('a set bit outside every field is CERROR_ILL with res0Check, ignored without', () => {
    expectOk([0x30, 0, 0, 0]);
    expectIll([0x0000_0130, 0, 0, 0], FULL_FEATURES, 'res0-bits', { field: undefined, bits: [8], section: '§4.1.5' });
    expectIll([0x30, 0, 0, 0x8000_0000], FULL_FEATURES, 'res0-bits', { bits: [127] });
    expectIll([0x30, 0x0000_0001, 0x0000_0002, 0], FULL_FEATURES, 'res0-bits', { bits: [32, 65] });
    expectOk([0xffff_ff30, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff], F({ res0Check: false }));
  });

  it('every bit outside the fields of every relevant command is reported at its exact position', () => {
    for (const op of RELEVANT_FULL) {
      const spec = commandSpec(op);
      const mask = coverMask(spec.fields, 4);
      for (let b = 8; b < 128; b++) {
        if ((mask[b >>> 5]! >>> (b & 31)) & 1) continue;
        const w = [op, 0, 0, 0];
        w[b >>> 5] = (w[b >>> 5]! | (1 << (b & 31))) >>> 0;
        expectIll(w, FULL_FEATURES, 'res0-bits', { bits: [b] });
      }
    }
  });

  it('NUM, SCALE, TG, TTL, TTL128 are RES0 without RIL (§4.4.1.1)', () => {
    const noRil = F({ ril: false });
    expectOk([0x12, 0, 0x0000_0001, 0], noRil); // Leaf
    expectIll([0x12, 0, 0x0000_0500, 0], noRil, 'ril-res0', { field: undefined, bits: [72, 74], section: '§4.4.1.1' });
    expectIll([0x0000_1012, 0, 0, 0], noRil, 'ril-res0', { bits: [12] });
    expectIll([0x0200_0012, 0, 0, 0], noRil, 'ril-res0', { bits: [25] });
    expectIll([0x2a, 0, 0x0000_0080, 0], noRil, 'ril-res0', { bits: [71] });
  });

  it('NUM, SCALE, TTL, TTL128 are RES0 when TG == 0 (§4.4.1.1)', () => {
    expectIll([0x0000_1012, 0, 0, 0], FULL_FEATURES, 'range-fields-res0-tg0', { bits: [12] });
    expectIll([0x0010_0012, 0, 0, 0], FULL_FEATURES, 'range-fields-res0-tg0', { bits: [20] });
    expectIll([0x12, 0, 0x0000_0100, 0], FULL_FEATURES, 'range-fields-res0-tg0', { bits: [72] });
    expectIll([0x12, 0, 0x0000_0080, 0], FULL_FEATURES, 'range-fields-res0-tg0', { bits: [71] });
    expectOk([0x0000_1012, 0, 0, 0], F({ res0Check: false }));
  });

  it('SCALE bit 25 is RES0 without DS (§4.4.1.1)', () => {
    const noDs = F({ ds: false });
    expectOk([0x0100_0012, 0, 0x0000_0500, 0], noDs); // SCALE = 16, bit 24
    expectIll([0x0200_0012, 0, 0x0000_0500, 0], noDs, 'scale-bit25-without-ds', { field: 'SCALE', bits: [25] });
    expectOk([0x0200_0012, 0, 0x0000_0500, 0]); // SCALE = 32 with DS
  });

  it('TTL128 is RES0 when the effective TTL is 0 (§4.4.1.1)', () => {
    expectOk([0x12, 0, 0x0000_0580, 0]); // TG 4K, TTL 1, TTL128
    expectIll([0x0000_1012, 0, 0x0000_0480, 0], FULL_FEATURES, 'ttl128-res0-ttl0', { field: 'TTL128', bits: [71] });
    // 16K TTL 1 is TTL 0 without DS.
    expectOk([0x0000_1012, 0, 0x0000_0980, 0]);
    expectIll([0x0000_1012, 0, 0x0000_0980, 0], F({ ds: false }), 'ttl128-res0-ttl0', { bits: [71] });
  });

  it('VMID of CMD_TLBI_NH_* is RES0 without stage 2 (§4.4.2)', () => {
    const s1only = F({ s2: false });
    expectOk([0x10, 0, 0, 0], s1only);
    expectIll([0x10, 0x0000_0001, 0, 0], s1only, 'vmid-without-stage2', { field: 'VMID', bits: [32], section: '§4.4.2' });
    expectIll([0x11, 0x0005_0080, 0, 0], s1only, 'vmid-without-stage2', { bits: [39] });
    expectOk([0x11, 0x0005_0000, 0, 0], s1only); // ASID only
    expectOk([0x10, 0x0000_0001, 0, 0]);
    // The model has no Secure stage 2, so the same holds on the Secure queue.
    expectIll([0x10, 0x0000_0001, 0, 0], FULL_FEATURES, 'vmid-without-stage2', {}, 'secure');
  });

  it('VMID 0xFF is legal and 0x100 is RES0 without VMID16 (§4.4)', () => {
    const v8 = F({ vmid16: false });
    expectOk([0x10, 0x0000_00ff, 0, 0], v8);
    expectIll([0x10, 0x0000_0100, 0, 0], v8, 'vmid16-res0', { field: 'VMID', bits: [40], section: '§4.4' });
    expectIll([0x28, 0x0000_8000, 0, 0], v8, 'vmid16-res0', { bits: [47] });
    expectIll([0x07, 0x0000_ff00, 0, 0], v8, 'vmid16-res0', { bits: range(40, 47) });
    expectOk([0x10, 0x0000_0100, 0, 0]);
    expectOk([0x10, 0x0000_0100, 0, 0], F({ vmid16: false, res0Check: false }));
  });

  it('ASID 0xFF is legal and 0x100 is RES0 without ASID16 (§4.4)', () => {
    const a8 = F({ asid16: false });
    expectOk([0x11, 0x00ff_0000, 0, 0], a8);
    expectIll([0x11, 0x0100_0000, 0, 0], a8, 'asid16-res0', { field: 'ASID', bits: [56], section: '§4.4' });
    expectIll([0x21, 0x8000_0000, 0, 0], a8, 'asid16-res0', { bits: [63] });
    expectOk([0x11, 0x0100_0000, 0, 0]);
  });

  it('RES0 rules run in table order: bits outside fields before VMID16', () => {
    expectIll([0x0000_0110, 0x0000_0100, 0, 0], F({ vmid16: false }), 'res0-bits', { bits: [8] });
  });

  it('PA/IPA Address[55:52] are RES0 in v3.1-v3.3, [55:48] in v3.0 (§4.1.6)', () => {
    // CMD_TLBI_S2_IPA, Address[52] at flat 116 = word 3 bit 20.
    expectIll([0x2a, 0, 0, 0x0010_0000], FULL_FEATURES, 'address-res0-bits', { field: 'Address', bits: [116], section: '§4.1.6' });
    expectOk([0x2a, 0, 0, 0x0008_0000]); // Address[51]
    const v30 = F({ archMinor: 0, oas: 5, vax: 0 });
    expectIll([0x2a, 0, 0, 0x0001_0000], v30, 'address-res0-bits', { bits: [112] }); // Address[48]
    expectOk([0x2a, 0, 0, 0x0000_8000], v30); // Address[47]
    // SMMUv3.4: not RES0 (above the 52-bit IAS, so out of range instead).
    expectOor([0x2a, 0, 0, 0x0010_0000], F({ archMinor: 4 }), [{ rule: 'ipa-out-of-range' }]);
    // CMD_DPTI_PA and CMD_SYNC MSIAddress[52] (MSIAddress[k] at flat 64 + k).
    expectIll([0x73, 0, 0, 0x0010_0000], FULL_FEATURES, 'address-res0-bits', { field: 'Address', bits: [116] });
    expectIll([0x46, 0, 0, 0x0010_0000], FULL_FEATURES, 'address-res0-bits', { field: 'MSIAddress', bits: [116] });
    expectOk([0x46, 0, 0x0000_0004, 0x000f_ffff]); // MSIAddress[51:2] all set
  });

  it('CMD_PREFETCH_ADDR Stride is RES0 in SMMUv3.0 (§4.2.2)', () => {
    expectOk([0x02, 0, 0x0000_0020, 0], F({ archMinor: 1 }));
    expectIll([0x02, 0, 0x0000_0020, 0], F({ archMinor: 0 }), 'stride-res0-v3.0', { field: 'Stride', bits: [69] });
  });

  it('CMD_PREFETCH_ADDR NS is RES0 on every queue the model has (§4.2.2)', () => {
    for (const q of ['non-secure', 'realm', 'secure'] as const) {
      expectIll([0x02, 0, 0x0000_0800, 0], FULL_FEATURES, 'prefetch-ns-res0', { field: 'NS', bits: [75] }, q);
    }
  });

  it('CMD_SYNC MSI_NS is RES0 except on the Realm queue (§4.7.3)', () => {
    expectIll([0x46, 0, 0, 0x8000_0000], FULL_FEATURES, 'msi-ns-res0', { field: 'MSI_NS', bits: [127] });
    expectIll([0x46, 0, 0, 0x8000_0000], FULL_FEATURES, 'msi-ns-res0', {}, 'secure');
    expectOk([0x46, 0, 0, 0x8000_0000], FULL_FEATURES, 'realm');
  });
});

describe('stage 6: out-of-range parameters are consumed, not CERROR_ILL (§4.1.7)', () => {
  it('StreamID 2^SIDSIZE-1 is in range, 2^SIDSIZE is out of range', () => {
    const sid8 = F({ sidSize: 8 });
    expectOk([0x03, 0x0000_00ff, 0, 0], sid8);
    expectOor([0x03, 0x0000_0100, 0, 0], sid8, [{ rule: 'streamid-out-of-range', field: 'StreamID', bits: [40], section: '§4.1.7' }]);
    expectOor([0x03, 0x8000_0101, 0, 0], sid8, [{ rule: 'streamid-out-of-range', bits: [40, 63] }]);
    expectOk([0x03, 0xffff_ffff, 0, 0]); // SIDSIZE 32
    expectOor([0x03, 0x0000_0001, 0, 0], F({ sidSize: 0 }), [{ rule: 'streamid-out-of-range', bits: [32] }]);
  });

  it('checks the StreamID of every command that has one', () => {
    const sid8 = F({ sidSize: 8 });
    for (const op of [0x01, 0x02, 0x03, 0x05, 0x06, 0x40, 0x41, 0x44, 0x45]) {
      expectOor([op, 0x0000_0200, 0, 0], sid8, [{ rule: 'streamid-out-of-range', bits: [41] }]);
    }
  });

  it('CMD_CFGI_STE_RANGE checks the aligned range start; CMD_CFGI_ALL ignores the StreamID (§4.3.2, §4.3.6)', () => {
    const sid8 = F({ sidSize: 8 });
    // Range 7: StreamID[7:0] IGNORED, start 0x100 is out of range.
    expectOor([0x04, 0x0000_01ff, 7, 0], sid8, [{ rule: 'streamid-out-of-range', bits: [40], section: '§4.1.7, §4.3.2' }]);
    // Range 8: StreamID[8:0] IGNORED, start 0.
    expectOk([0x04, 0x0000_01ff, 8, 0], sid8);
    expectOk([0x04, 0xffff_ffff, 31, 0], sid8);
    expectOk([0x04, 0xffff_ffff, 31, 0], F({ sidSize: 0 }));
    expectOor([0x04, 0x8000_0000, 30, 0], F({ sidSize: 0 }), [{ rule: 'streamid-out-of-range', bits: [63] }]);
  });

  it('SSV == 1 without substreams behaves as SSV == 0 (§4.2, §4.5.1, §4.5.2)', () => {
    const noSsid = F({ ssidSize: 0 });
    expectOk([0x0000_0840, 0, 0, 0]);
    expectOor([0x0000_0840, 0, 0, 0], noSsid, [{ rule: 'ssv-without-substreams', field: 'SSV', bits: [11], section: '§4.5.1', reason: /as though SSV == 0/ }]);
    expectOor([0x0000_0841, 0, 0, 0], noSsid, [{ rule: 'ssv-without-substreams', section: '§4.5.2' }]);
    expectOor([0x0000_0801, 0, 0, 0], noSsid, [{ rule: 'ssv-without-substreams', section: '§4.2' }]);
    expectOor([0x0000_0802, 0, 0, 0], noSsid, [{ rule: 'ssv-without-substreams', section: '§4.2' }]);
    // SSV == 0: the SubstreamID is not supplied, whatever it holds.
    expectOk([0x0000_5040, 0, 0, 0], noSsid);
  });

  it('SubstreamID 2^SSIDSIZE-1 is in range, 2^SSIDSIZE is out of range', () => {
    const ssid4 = F({ ssidSize: 4 });
    expectOk([0x0000_f841, 0, 0, 0], ssid4);
    expectOor([0x0001_0841, 0, 0, 0], ssid4, [{ rule: 'substreamid-out-of-range', field: 'SubstreamID', bits: [16], section: '§4.1.7' }]);
    // CMD_CFGI_CD has no SSV: its SubstreamID is always a CD index (§4.3.3).
    expectOk([0x0000_f005, 0, 0, 0], ssid4);
    expectOor([0x0001_0005, 0, 0, 0], ssid4, [{ rule: 'substreamid-out-of-range', bits: [16], section: '§4.1.7, §4.3.3' }]);
    expectOor([0x0000_1005, 0, 0, 0], F({ ssidSize: 0 }), [{ rule: 'substreamid-out-of-range', bits: [12] }]);
  });

  it('CMD_ATC_INV Size 52 is invalidate-all, 53 is out of range (§4.5.1)', () => {
    expectOk([0x40, 0, 52, 0]);
    expectOor([0x40, 0, 53, 0], FULL_FEATURES, [{ rule: 'atc-inv-size-out-of-range', field: 'Size', bits: range(64, 69), section: '§4.5.1' }]);
    expectOor([0x40, 0, 63, 0], FULL_FEATURES, [{ rule: 'atc-inv-size-out-of-range' }]);
  });

  it('a stage 1 TLBI VA with bits [55:VAS-1] not all equal is out of range; TBI ignores [63:56] (§4.4.2)', () => {
    const va48 = F({ vax: 0 });
    expectOk([0x12, 0, 0, 0x0000_7fff], va48); // Address[46:32] set
    expectOor([0x12, 0, 0, 0x0000_8000], va48, [{ rule: 'va-out-of-range', field: 'Address', bits: range(111, 119), section: '§4.4.2' }]);
    expectOk([0x12, 0, 0, 0x00ff_8000], va48); // TTB1 half: [55:47] all ones
    expectOk([0x12, 0, 0, 0xab00_0000], va48); // a tag in the top byte only
    expectOk([0x12, 0, 0, 0x0000_8000]); // 52-bit VA
    expectOor([0x13, 0, 0, 0x0008_0000], FULL_FEATURES, [{ rule: 'va-out-of-range', bits: range(115, 119) }]);
    expectOor([0x22, 0, 0, 0x0040_0000], FULL_FEATURES, [{ rule: 'va-out-of-range' }]);
  });

  it('a CMD_TLBI_S2_IPA address at or above the IAS is out of range (§4.4.3.1)', () => {
    const pa48 = F({ oas: 5 });
    expectOk([0x2a, 0, 0, 0x0000_8000], pa48); // IPA[47]
    expectOor([0x2a, 0, 0, 0x0001_0000], pa48, [{ rule: 'ipa-out-of-range', field: 'Address', bits: [112], section: '§4.4.3.1' }]);
    expectOor([0x2a, 0, 0, 0x0010_0000], F({ archMinor: 4 }), [{ rule: 'ipa-out-of-range', bits: [116] }]);
    // RES0 bits are not also reported as out of range when the check is off.
    expectOk([0x2a, 0, 0, 0x0010_0000], F({ res0Check: false }));
  });

  it('CMD_DPTI_PA: SIZE 0b1001 is valid, 0b1010 Reserved; address bits above OAS treated as 0 (§4.6.2)', () => {
    expectOk([0x73, 0, 0x0000_0090, 0]);
    expectOor([0x73, 0, 0x0000_00a0, 0], FULL_FEATURES, [{ rule: 'dpti-size-reserved', field: 'Size', bits: range(68, 71), section: '§4.6.2' }]);
    expectOk([0x73, 0, 0, 0x0000_8000], F({ oas: 5 }));
    expectOor([0x73, 0, 0, 0x0001_0000], F({ oas: 5 }), [{ rule: 'dpti-address-beyond-oas', field: 'Address', bits: [112] }]);
  });

  it('CMD_SYNC SIG_IRQ MSIAddress above the OAS is truncated; other CS values ignore it (§4.7.3)', () => {
    const pa48 = F({ oas: 5 });
    expectOk([0x1046, 0, 0, 0x0000_8000], pa48);
    expectOor([0x1046, 0, 0, 0x0001_0000], pa48, [{ rule: 'msiaddress-beyond-oas', field: 'MSIAddress', bits: [112], section: '§4.7.3, §3.4.3' }]);
    expectOk([0x0046, 0, 0, 0x0001_0000], pa48);
    expectOk([0x2046, 0, 0, 0x0001_0000], pa48);
    expectOk([0x1046, 0, 0, 0x0001_0000], F({ oas: 5, msi: false }));
  });

  it('lists several out-of-range parameters in check order', () => {
    const small = F({ sidSize: 4, ssidSize: 0 });
    expectOor([0x0000_0840, 0x0000_0010, 60, 0], small, [
      { rule: 'streamid-out-of-range', bits: [36] },
      { rule: 'ssv-without-substreams' },
      { rule: 'atc-inv-size-out-of-range' },
    ]);
  });

  it('an ILLEGAL command still carries its out-of-range findings', () => {
    const v = run([0x0000_0403, 0x0000_0100, 0, 0], F({ sidSize: 8 }));
    expect(v.ok).toBe(false);
    if (v.ok) return;
    expect(v.finding.rule).toBe('ssec-on-nonsecure-queue');
    expect(v.outOfRange.map((x) => x.rule)).toEqual(['streamid-out-of-range']);
    // Stage 1-2 failures have none: the fields of an unknown command mean nothing.
    const r = run([0x05, 0x0000_0100, 0, 0], F({ sidSize: 8, s1: false, hyp: false }));
    expect(r.ok ? [] : r.outOfRange).toEqual([]);
  });
});

describe('API behaviour', () => {
  it('reads the command at `base` and accepts Uint32Array or plain arrays', () => {
    const buf = new Uint32Array([0xdead_beef, 1, 2, 3, 0x0000_3046, 0, 0, 0]);
    expectIll([...buf.slice(4)], FULL_FEATURES, 'sync-cs-reserved');
    const v = checkCommand(buf, FULL_FEATURES, undefined, 4);
    expect(v.ok).toBe(false);
    expect(checkCommand(buf.subarray(4), FULL_FEATURES)).toEqual(v);
    expect(checkCommand(new Uint32Array([0x46, 0, 0, 0]), FULL_FEATURES)).toBe(OK);
  });

  it('defaults to the Non-secure queue', () => {
    const w = [0x0000_0403, 0, 0, 0];
    expect(checkCommand(w, FULL_FEATURES)).toEqual(checkCommand(w, FULL_FEATURES, { queue: 'non-secure' }));
  });

  it('keeps features objects apart when they alternate', () => {
    const noS1 = F({ s1: false, hyp: false, cd2l: false });
    for (let i = 0; i < 3; i++) {
      expectOk([0x05, 0, 0, 0]);
      expectIll([0x05, 0, 0, 0], noS1, 'stage1-not-implemented');
      expectOk([0x05, 0, 0, 0], FULL_FEATURES, 'secure');
    }
  });

  it('returns frozen verdicts and findings', () => {
    const v = run([0x0000_3046, 0, 0, 0]);
    expect(Object.isFrozen(v)).toBe(true);
    expect(Object.isFrozen(OK)).toBe(true);
    if (!v.ok) {
      expect(Object.isFrozen(v.finding)).toBe(true);
      expect(Object.isFrozen(v.finding.bits)).toBe(true);
    }
  });

  it('agrees with the encoder on the literal words used above', () => {
    expect([...encodeCommandWords({ name: 'CMD_TLBI_NH_VA', TG: 1, TTL: 1 })]).toEqual([0x12, 0, 0x500, 0]);
    expect([...encodeCommandWords({ name: 'CMD_TLBI_NH_VA', TG: 2, TTL: 1, NUM: 1 })]).toEqual([0x1012, 0, 0x900, 0]);
    expect([...encodeCommandWords({ name: 'CMD_TLBI_NH_VA', SCALE: 32, TTL128: 1 })]).toEqual([0x0200_0012, 0, 0x80, 0]);
    expect([...encodeCommandWords({ name: 'CMD_SYNC', CS: 3 })]).toEqual([0x3046, 0, 0, 0]);
    expect([...encodeCommandWords({ name: 'CMD_PRI_RESP', Resp: 3 })]).toEqual([0x41, 0, 0x3000, 0]);
    expect([...encodeCommandWords({ name: 'CMD_TLBI_S2_IPA', Address: 1n << 52n })]).toEqual([0x2a, 0, 0, 0x0010_0000]);
    expect([...encodeCommandWords({ name: 'CMD_SYNC', MSIAddress: 1n << 48n })]).toEqual([0x46, 0, 0, 0x0001_0000]);
    expect([...encodeCommandWords({ name: 'CMD_ATC_INV', SSV: 1, Size: 53 })]).toEqual([0x840, 0, 53, 0]);
    expect([...encodeCommandWords({ name: 'CMD_CFGI_STE_RANGE', StreamID: 0x1ff, Range: 7 })]).toEqual([0x04, 0x1ff, 7, 0]);
    expect([...encodeCommandWords({ name: 'CMD_TLBI_NH_ASID', VMID: 0x100, ASID: 0x100 })]).toEqual([0x11, 0x0100_0100, 0, 0]);
    expect([...encodeCommandWords({ name: 'CMD_PREFETCH_ADDR', Stride: 1, NS: 1 })]).toEqual([0x02, 0, 0x820, 0]);
    expect([...encodeCommandWords({ name: 'CMD_DPTI_PA', Size: 10 })]).toEqual([0x73, 0, 0xa0, 0]);
  });
});

describe('LEGALITY_RULES', () => {
  it('has unique ids, stages in check order, and a model choice for every out-of-range rule', () => {
    const ids = LEGALITY_RULES.map((r) => r.rule);
    expect(new Set(ids).size).toBe(ids.length);
    let last = 0;
    for (const r of LEGALITY_RULES) {
      const i = LEGALITY_STAGES.indexOf(r.stage);
      expect(i).toBeGreaterThanOrEqual(last);
      last = i;
      expect(r.section).toMatch(/^§\d/);
      expect(r.summary.length).toBeGreaterThan(20);
      expect(r.outcome).toBe(r.stage === 'out-of-range' ? 'out-of-range' : 'CERROR_ILL');
      expect(r.modelChoice !== undefined).toBe(r.stage === 'out-of-range');
    }
    expect(LEGALITY_STAGES).toEqual(['opcode', 'relevance', 'ssec', 'illegal', 'res0', 'out-of-range']);
    expect(() => legalityRule('no-such-rule')).toThrow(/unknown legality rule/);
  });
});

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

const arbFeatures: fc.Arbitrary<SmmuFeatures> = fc.record({
  s1: fc.boolean(), s2: fc.boolean(), hyp: fc.boolean(), ril: fc.boolean(), ats: fc.boolean(), pri: fc.boolean(),
  stallModel: fc.constantFrom('stall-and-terminate' as const, 'no-stall' as const, 'stall-forced' as const),
  msi: fc.boolean(), sev: fc.boolean(), vmid16: fc.boolean(), asid16: fc.boolean(), coherent: fc.boolean(),
  cd2l: fc.boolean(), stLevel2: fc.boolean(), btm: fc.boolean(), vmw: fc.boolean(), httu: fc.constantFrom(0 as const, 1 as const, 2 as const),
  mpam: fc.boolean(), dpt: fc.boolean(), ds: fc.boolean(), gran4k: fc.boolean(), gran16k: fc.boolean(), gran64k: fc.boolean(),
  oas: fc.integer({ min: 0, max: 6 }), vax: fc.constantFrom(0 as const, 1 as const),
  sidSize: fc.integer({ min: 0, max: 32 }), ssidSize: fc.integer({ min: 0, max: 20 }),
  cmdqs: fc.integer({ min: 0, max: 19 }), eventqs: fc.integer({ min: 0, max: 19 }), priqs: fc.integer({ min: 0, max: 19 }),
  ecmdq: fc.boolean(), ecmdqLog2NumP: fc.integer({ min: 0, max: 8 }), ecmdqLog2NumQ: fc.integer({ min: 0, max: 8 }),
  archMinor: fc.integer({ min: 0, max: 4 }), res0Check: fc.boolean(),
});
const arbQueue = fc.constantFrom('non-secure' as const, 'secure' as const, 'realm' as const);
const arbU32 = fc.integer({ min: 0, max: 0xffff_ffff });
/** Words biased towards real opcodes and sparse bits, so deep stages are reached. */
const arbCommand = fc.tuple(
  fc.oneof(fc.constantFrom(...NAMED), fc.integer({ min: 0, max: 255 })),
  fc.oneof(arbU32, fc.constant(0), fc.integer({ min: 0, max: 0xffff })),
  fc.array(fc.oneof(arbU32, fc.constant(0), fc.integer({ min: 0, max: 0xfff }), fc.integer({ min: 0, max: 31 }).map((b) => (1 << b) >>> 0)), { minLength: 3, maxLength: 3 }),
).map(([op, hi, rest]) => [((hi << 8) | op) >>> 0, ...rest]);

function checkShape(v: Verdict): void {
  const all = v.ok ? v.outOfRange : [v.finding, ...v.outOfRange];
  if (!v.ok) {
    expect(v.code).toBe(CERROR_ILL);
    expect(legalityRule(v.finding.rule).outcome).toBe('CERROR_ILL');
  }
  for (const f of v.outOfRange) expect(legalityRule(f.rule).outcome).toBe('out-of-range');
  for (const f of all) {
    expect(f.section).toMatch(/^§\d/);
    expect(f.reason.length).toBeGreaterThan(10);
    if (f.bits !== undefined) {
      for (let i = 0; i < f.bits.length; i++) {
        expect(f.bits[i]).toBeGreaterThanOrEqual(0);
        expect(f.bits[i]).toBeLessThan(128);
        if (i > 0) expect(f.bits[i]).toBeGreaterThan(f.bits[i - 1]!);
      }
    }
  }
}

describe('properties', () => {
  it('never throws on arbitrary words, lengths, offsets, features and queues', () => {
    const arbWords = fc.array(fc.oneof(arbU32, fc.integer(), fc.double(), fc.constant(-1)), { minLength: 0, maxLength: 6 });
    fc.assert(
      fc.property(fc.oneof(arbCommand, arbWords), arbFeatures, arbQueue, fc.integer({ min: -1, max: 6 }), (w, f, queue, base) => {
        const v = checkCommand(w, f, { queue }, base);
        checkShape(v);
      }),
      { numRuns: 3000 },
    );
  });

  it('turning res0Check off never adds an error or a RES0-stage finding, and keeps out-of-range findings', () => {
    fc.assert(
      fc.property(arbCommand, arbFeatures, arbQueue, (w, f, queue) => {
        const on = checkCommand(w, { ...f, res0Check: true }, { queue });
        const off = checkCommand(w, { ...f, res0Check: false }, { queue });
        if (!off.ok) expect(legalityRule(off.finding.rule).stage).not.toBe('res0');
        if (on.ok) expect(off.ok).toBe(true);
        if (!on.ok && legalityRule(on.finding.rule).stage !== 'res0') expect(off).toEqual(on);
        expect(off.outOfRange).toEqual(on.outOfRange);
      }),
      { numRuns: 2000 },
    );
  });

  it('gives the same verdict for a command at any offset in a larger buffer', () => {
    fc.assert(
      fc.property(arbCommand, arbFeatures, fc.integer({ min: 0, max: 8 }), (w, f, base) => {
        const buf = new Uint32Array(base + 4 + 3).fill(0xffff_ffff);
        buf.set(w, base);
        expect(checkCommand(buf, f, undefined, base)).toEqual(checkCommand(w, f));
      }),
      { numRuns: 1000 },
    );
  });

  // The spec's bits that are RES0 under FULL_FEATURES (SMMUv3.3, Non-secure queue) although a field
  // covers them: PA/IPA/MSIAddress[55:52] at flat 116..119 (§4.1.6), CMD_PREFETCH_ADDR NS [75]
  // (§4.2.2), CMD_SYNC MSI_NS [127] (§4.7.3).
  const STATIC_RES0_IN_FIELDS: Readonly<Record<number, readonly number[]>> = {
    0x2a: range(116, 119),
    0x73: range(116, 119),
    0x46: [...range(116, 119), 127],
    0x02: [75],
  };

  /** Field-wise random command of a relevant opcode with every static RES0 bit clear. */
  const arbCleanCommand = fc.constantFrom(...RELEVANT_FULL).chain((op) => {
    const spec = commandSpec(op);
    const fields = spec.fields.filter((f) => f.name !== 'Opcode');
    return fc
      .tuple(
        ...fields.map((f) => {
          const max = (1n << BigInt(f.width)) - 1n;
          return fc.oneof(fc.constant(0n), fc.constant(1n), fc.constant(max), fc.constant(3n & max), fc.bigInt({ min: 0n, max }));
        }),
      )
      .map((vals) => {
        const w = new Uint32Array(4);
        fields.forEach((f, i) => setBitsBig(w, f.lsb, f.width, vals[i]!));
        w[0] = ((w[0]! & ~0xff) | op) >>> 0;
        for (const b of STATIC_RES0_IN_FIELDS[op] ?? []) w[b >>> 5] = (w[b >>> 5]! & ~(1 << (b & 31))) >>> 0;
        return { op, w: [...w] };
      });
  });

  /** An independent statement of the value rules under FULL_FEATURES, from the spec's positions. */
  function oracle(op: number, w: Words): { rule: string | undefined; oor: string[] } {
    const spec = commandSpec(op);
    const has = (n: string) => spec.fields.some((f) => f.name === n);
    let rule: string | undefined;
    const tg = getBits(w, 74, 2);
    const num = getBits(w, 12, 5);
    const scale = getBits(w, 20, 6);
    const ttl = getBits(w, 72, 2);
    const ttl128 = getBits(w, 71, 1);
    if (has('SSec') && getBits(w, 10, 1) === 1) rule = 'ssec-on-nonsecure-queue';
    else if (op === OP.CMD_SYNC && getBits(w, 12, 2) === 3) rule = 'sync-cs-reserved';
    else if (op === OP.CMD_PRI_RESP && getBits(w, 76, 2) === 3) rule = 'pri-resp-reserved';
    else if (has('TG') && tg !== 0 && num === 0 && scale === 0 && ttl === 0) rule = 'tlbi-range-reserved-combination';
    else if (has('TG') && tg === 0 && (num | scale | ttl | ttl128) !== 0) rule = 'range-fields-res0-tg0';
    else if (has('TG') && tg !== 0 && ttl === 0 && ttl128 !== 0) rule = 'ttl128-res0-ttl0';
    const oor: string[] = [];
    if (op === OP.CMD_ATC_INV && getBits(w, 64, 6) > 52) oor.push('atc-inv-size-out-of-range');
    if ([0x12, 0x13, 0x22, 0x23].includes(op)) {
      const top = getBits(w, 64 + 51, 5); // Address[55:51], VAS 52
      if (top !== 0 && top !== 31) oor.push('va-out-of-range');
    }
    if (op === OP.CMD_DPTI_PA && getBits(w, 68, 4) > 9) oor.push('dpti-size-reserved');
    return { rule, oor };
  }

  it('under FULL_FEATURES a relevant command with its RES0 bits clear is OK unless a named ILLEGAL value is present', () => {
    fc.assert(
      fc.property(arbCleanCommand, ({ op, w }) => {
        const v = checkCommand(w, FULL_FEATURES);
        const want = oracle(op, w);
        if (want.rule === undefined) {
          expect(v.ok, JSON.stringify(v)).toBe(true);
        } else {
          expect(v.ok).toBe(false);
          if (!v.ok) expect(v.finding.rule).toBe(want.rule);
        }
        expect(v.outOfRange.map((x) => x.rule)).toEqual(want.oor);
        if (v.ok && want.oor.length === 0) expect(v).toBe(OK);
      }),
      { numRuns: 5000 },
    );
  });
});

describe('coverage', () => {
  // Runs last (vitest runs a file's tests in order): every rule of the table was produced above.
  it('every rule in LEGALITY_RULES is produced by at least one boundary test', () => {
    const missing = LEGALITY_RULES.map((r) => r.rule).filter((r) => !seen.has(r));
    expect(missing).toEqual([]);
  });
});
