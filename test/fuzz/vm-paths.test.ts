/**
 * The virtualization paths under the fuzzer (src/fuzz/vm-harness.ts): a short, bounded campaign
 * of each with a fixed seed, and the isolation check's reading of physical commands.
 *
 * Command words are literal (word 0 = bits [31:0]): VMID [47:32] = word 1 [15:0], ASID [63:48] =
 * word 1 [31:16] (§4.4.2); StreamID [63:32] = word 1, Range [68:64] = word 2 [4:0] (§4.3.1,
 * §4.3.2); Range 31 is CMD_CFGI_ALL (§4.3.6). Opcodes (§4.1.1): CFGI_STE 0x03, CFGI_STE_RANGE
 * 0x04, TLBI_NH_ALL 0x10, TLBI_NH_ASID 0x11, TLBI_S12_VMALL 0x28, CMD_SYNC 0x46.
 */
import { describe, expect, it } from 'vitest';
import { campaignPlan, runCampaign } from '../../src/fuzz/campaign.ts';
import { foreignReference, vmPathOf } from '../../src/fuzz/vm-harness.ts';

const B_VMID = 2;
const B_PSIDS = [0x40, 0x41];

describe('foreignReference: physical commands naming the bystander', () => {
  it('finds its VMID in a VMID field only', () => {
    expect(foreignReference([0x10, B_VMID, 0, 0], B_VMID, B_PSIDS)).toEqual({ rule: 'foreign-vmid', what: 'VMID 2' });
    expect(foreignReference([0x11, (9 << 16) | B_VMID, 0, 0], B_VMID, B_PSIDS)).toEqual({ rule: 'foreign-vmid', what: 'VMID 2' });
    expect(foreignReference([0x28, B_VMID, 0, 0], B_VMID, B_PSIDS)).toEqual({ rule: 'foreign-vmid', what: 'VMID 2' });
    expect(foreignReference([0x10, 1, 0, 0], B_VMID, B_PSIDS)).toBeUndefined();
    // ASID 2 with VMID 1 is not B's.
    expect(foreignReference([0x11, (B_VMID << 16) | 1, 0, 0], B_VMID, B_PSIDS)).toBeUndefined();
    // CMD_SYNC has no VMID field: the same bits mean nothing.
    expect(foreignReference([0x46, B_VMID, 0, 0], B_VMID, B_PSIDS)).toBeUndefined();
  });

  it('finds its StreamIDs, and CFGI_STE_RANGE ranges (and CFGI_ALL) that cover one', () => {
    expect(foreignReference([0x03, 0x41, 1, 0], B_VMID, B_PSIDS)).toEqual({ rule: 'foreign-streamid', what: 'StreamID 0x41' });
    expect(foreignReference([0x03, 0x30, 1, 0], B_VMID, B_PSIDS)).toBeUndefined();
    // Range 0: StreamIDs 0x40-0x41; Range 3: 0x30-0x3f (not B's) vs 0x40-0x4f; Range 31: all.
    expect(foreignReference([0x04, 0x41, 0, 0], B_VMID, B_PSIDS)).toEqual({ rule: 'foreign-streamid', what: 'StreamID 0x40' });
    expect(foreignReference([0x04, 0x30, 3, 0], B_VMID, B_PSIDS)).toBeUndefined();
    expect(foreignReference([0x04, 0x4f, 3, 0], B_VMID, B_PSIDS)).toEqual({ rule: 'foreign-streamid', what: 'StreamID 0x40' });
    expect(foreignReference([0x04, 0x1, 31, 0], B_VMID, B_PSIDS)).toEqual({ rule: 'foreign-streamid', what: 'StreamID 0x40' });
  });
});

describe('bounded fuzz of the VM paths', () => {
  it('names the VM paths and refuses --features on them', () => {
    expect(['native', 'ecmdq', 'trap', 'kernel-queue', 'vcmdq'].map(vmPathOf)).toEqual([undefined, undefined, 'trap', 'kernel-queue', 'vcmdq']);
    expect(() => campaignPlan('vcmdq', 'no-s1')).toThrow("path 'vcmdq' runs with the default features only (--features is for native and ecmdq)");
    expect(campaignPlan('trap').presets).toEqual(['']);
  });

  // The guest refusals each path reports: its vSMMU's CERROR_ILL, or the VCMDQ's ILL_OPCODE.
  for (const [path, seed, runs, refusal] of [['trap', 20_261_122, 40, 'CERROR_ILL'], ['kernel-queue', 5, 40, 'CERROR_ILL'], ['vcmdq', 11, 12, 'CERROR_ILL_OPCODE']] as const) {
    it(`${path}: ${runs} runs of a hostile guest beside a bystander hold`, async () => {
      const s = await runCampaign({ path, seed, runs, maxActs: 12 });
      expect(s.failed_cases.map((f) => `${f.rule}: ${f.message}`)).toEqual([]);
      expect([s.path, s.runs, s.failures, s.systems_started, s.features]).toEqual([path, runs, 0, 1, ['full']]);
      // The runs did something: legal commands and refused ones.
      expect(s.commands).toBeGreaterThan(runs);
      expect(s.errors_by_kind[refusal] ?? 0).toBeGreaterThan(0);
      expect(s.coverage.opcodes_seen).toBeGreaterThan(10);
    }, 30_000);
  }
});
