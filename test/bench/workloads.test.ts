import { describe, expect, it } from 'vitest';
import { ATC_INV_PAGE, CFGI_CD, TLBI_ASID, TLBI_VA_PAGE, TLBI_VA_RANGE, WORKLOADS, opShape, stage1GuestIssues, workloadByName } from '../../bench/workloads.ts';
import { vsmmuFeatures } from '../../src/virt/vsmmu.ts';
import { decodeCommand } from '../../src/spec/command-codec.ts';
import { FULL_FEATURES, parseFeatures } from '../../src/spec/features.ts';
import { checkCommand } from '../../src/spec/legality.ts';
import { OP } from '../../src/spec/commands.ts';

describe('benchmark workloads', () => {
  it('issue only commands that are legal and in range on the default SMMU (§4.1.3, §4.1.7)', () => {
    for (const w of WORKLOADS) {
      for (const is of w.issues(8)) {
        for (const c of is.cmds) {
          const v = checkCommand(c, FULL_FEATURES);
          expect(v.ok, `${w.name}: ${decodeCommand(c).name}`).toBe(true);
        }
      }
    }
  });

  it('use the opcodes and operands their names say', () => {
    expect(TLBI_VA_PAGE[0]! & 0xff).toBe(OP.CMD_TLBI_NH_VA);
    expect(TLBI_VA_RANGE[0]! & 0xff).toBe(OP.CMD_TLBI_NH_VA);
    expect(CFGI_CD[0]! & 0xff).toBe(OP.CMD_CFGI_CD);
    expect(TLBI_ASID[0]! & 0xff).toBe(OP.CMD_TLBI_NH_ASID);
    expect(ATC_INV_PAGE[0]! & 0xff).toBe(OP.CMD_ATC_INV);
    // §4.4.1.1: the range command covers (NUM+1)·2^SCALE granules of TG.
    // TG 1 = 4K (§4.4.1.1 TG encoding), NUM 31, SCALE 0: 32 pages; TTL 3: leaf level 3.
    expect(decodeCommand(TLBI_VA_RANGE).fields).toEqual({ Opcode: 0x12, VMID: 1, ASID: 5, Address: 0x7f12_3440_0000n, Leaf: 1, TG: 1, NUM: 31, SCALE: 0, TTL: 3, TTL128: 0 });
    // The single-page TLBI has no range fields (TG = 0).
    expect(decodeCommand(TLBI_VA_PAGE).fields).toEqual({ Opcode: 0x12, VMID: 1, ASID: 5, Address: 0x7f12_3456_7000n, Leaf: 1, TG: 0, NUM: 0, SCALE: 0, TTL: 0, TTL128: 0 });
    expect(decodeCommand(ATC_INV_PAGE).fields).toMatchObject({ StreamID: 0x10, SSV: 0, Size: 0, Address: 0x7f12_3456_7000n });
  });

  it('count commands, syncs and doorbells per operation as the single-producer driver issues them', () => {
    const s = (name: string, b = 1) => opShape(workloadByName(name)!.issues(b));
    expect(s('tlbi-va')).toEqual({ commands: 2, invalidations: 1, syncs: 1, doorbells: 1, perDoorbell: 2, groups: [1] });
    expect(s('tlbi-va', 64)).toEqual({ commands: 65, invalidations: 64, syncs: 1, doorbells: 1, perDoorbell: 65, groups: [64] });
    expect(s('unmap')).toEqual({ commands: 3, invalidations: 2, syncs: 1, doorbells: 1, perDoorbell: 3, groups: [2] });
    expect(s('atc-inv')).toEqual({ commands: 4, invalidations: 2, syncs: 2, doorbells: 2, perDoorbell: 2, groups: [1, 1] });
    expect(s('stream', 8)).toEqual({ commands: 8, invalidations: 8, syncs: 0, doorbells: 1, perDoorbell: 8, groups: [8] });
  });

  it('say why an SMMU without a feature cannot run them', () => {
    expect(workloadByName('atc-inv')!.unsupported(parseFeatures('no-ats'))).toBe('needs ATS (SMMU_IDR0.ATS == 1) for CMD_ATC_INV');
    expect(workloadByName('tlbi-range')!.unsupported(parseFeatures('no-ril'))).toBe('needs range invalidation (SMMU_IDR3.RIL == 1)');
    expect(workloadByName('tlbi-va')!.unsupported(FULL_FEATURES)).toBeUndefined();
  });

  it("as a VM's guest issues them: VMID 0 (RES0 without stage 2, §4.4.2), every other bit kept, legal on the guest's SMMU", () => {
    // The bench VMs' guest SMMU: stage 1 only, with ATS opted in (bench/paths/vm.ts).
    const guest = vsmmuFeatures(FULL_FEATURES, { ats: true });
    // VMID [47:32] is word 1 [15:0] of the TLBIs (§4.4.2): VMID 1 on the host, 0 in the guest.
    expect(TLBI_VA_PAGE[1]! & 0xffff).toBe(1);
    for (const w of WORKLOADS) {
      const host = w.issues(8);
      const g = stage1GuestIssues(host);
      expect(opShape(g)).toEqual(opShape(host));
      for (let i = 0; i < host.length; i++) {
        expect(g[i]!.sync).toBe(host[i]!.sync);
        for (let k = 0; k < host[i]!.cmds.length; k++) {
          const h = host[i]!.cmds[k]!;
          const c = g[i]!.cmds[k]!;
          const op = h[0]! & 0xff;
          const hasVmid = op === OP.CMD_TLBI_NH_VA || op === OP.CMD_TLBI_NH_ASID;
          expect([...c], `${w.name} ${k}`).toEqual(hasVmid ? [h[0], (h[1]! & 0xffff_0000) >>> 0, h[2], h[3]] : [...h]);
          expect(checkCommand(c, guest).ok, `${w.name}: ${decodeCommand(c).name}`).toBe(true);
          // The host's commands name VMID 1, which a stage-1-only SMMU refuses.
          if (hasVmid) expect(checkCommand(h, guest)).toMatchObject({ ok: false, error: 'CERROR_ILL' });
        }
      }
      // One object per distinct command, as in the host's operation.
      expect(new Set(g.flatMap((x) => x.cmds)).size).toBe(new Set(host.flatMap((x) => x.cmds)).size);
    }
  });
});
