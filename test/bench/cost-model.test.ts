import { describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DEFAULT_COSTS,
  GRACE_REDUCTION,
  calibrationCheck,
  directEvents,
  parseCostJson,
  parseCostSpec,
  project,
  referenceTrapEvents,
  resolveCost,
} from '../../bench/cost-model.ts';
import { opShape, workloadByName, WORKLOADS } from '../../bench/workloads.ts';

const shapeOf = (name: string, batch = 1) => opShape(workloadByName(name)!.issues(batch));

describe('cost model: parsing', () => {
  it('takes any subset of exit, uexit, ioctl, cmd, sync and hw, keeping the defaults for the rest', () => {
    const c = parseCostSpec('exit=5000,sync=1200.5');
    expect(c).toEqual({ exit: 5000, uexit: DEFAULT_COSTS.uexit, ioctl: DEFAULT_COSTS.ioctl, cmd: DEFAULT_COSTS.cmd, sync: 1200.5, hw: 'model', source: '--cost exit=5000,sync=1200.5' });
    expect(parseCostSpec('uexit=0').uexit).toBe(0);
    expect(parseCostSpec('hw=measured').hw).toBe('measured');
  });

  it('refuses unknown keys, negative or missing values, and a bad hw', () => {
    expect(() => parseCostSpec('exits=1')).toThrow("cost 'exits' is not one of exit, uexit, ioctl, cmd, sync, hw");
    expect(() => parseCostSpec('exit=-1')).toThrow('cost exit in --cost must be a number of ns ≥ 0, not -1');
    expect(() => parseCostSpec('exit=')).toThrow('cost exit in --cost must be a number of ns ≥ 0, not null');
    expect(() => parseCostSpec('exit')).toThrow("cost 'exit': expected key=value");
    expect(() => parseCostSpec('hw=fast')).toThrow("cost hw in --cost must be 'model' or 'measured', not \"fast\"");
  });

  it('reads a JSON file by path, and names the file in its errors', () => {
    const dir = mkdtempSync(join(tmpdir(), 'smmu-cost-'));
    try {
      const good = join(dir, 'c.json');
      writeFileSync(good, '{"exit": 3000, "ioctl": 0, "hw": "measured"}');
      expect(resolveCost(good)).toEqual({ exit: 3000, uexit: DEFAULT_COSTS.uexit, ioctl: 0, cmd: DEFAULT_COSTS.cmd, sync: DEFAULT_COSTS.sync, hw: 'measured', source: good });
      const bad = join(dir, 'bad.json');
      writeFileSync(bad, '{"exit": "fast"}');
      expect(() => resolveCost(bad)).toThrow(`cost exit in ${bad} must be a number of ns ≥ 0, not "fast"`);
      expect(() => parseCostJson('[1]', 'x.json')).toThrow('cost file x.json must hold one JSON object');
      expect(() => parseCostJson('{"vmexit": 1}', 'x.json')).toThrow("cost file x.json: unknown key 'vmexit'");
      expect(() => resolveCost(join(dir, 'missing.json'))).toThrow(`cost file ${join(dir, 'missing.json')}: ENOENT`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(resolveCost(undefined)).toBe(DEFAULT_COSTS);
  });
});

describe('cost model: projection', () => {
  it('is counts × costs, with every part shown', () => {
    const p = project({ vm_exits: 2, user_exits: 1, ioctls: 3, hw_commands: 4, cmd_syncs: 5 }, { exit: 1000, uexit: 7000, ioctl: 100, cmd: 10, sync: 1, hw: 'model', source: 't' });
    expect(p).toEqual({ ns_per_op: 9345, breakdown: { vm_exits_ns: 2000, user_exits_ns: 7000, ioctls_ns: 300, hw_commands_ns: 40, cmd_syncs_ns: 5, measured_ns: 0 } });
  });

  it("with hw=measured replaces the hardware part by the measured time, and keeps exits and ioctls", () => {
    const p = project({ vm_exits: 1, user_exits: 1, ioctls: 1, hw_commands: 4, cmd_syncs: 5 }, { exit: 1000, uexit: 500, ioctl: 100, cmd: 10, sync: 1, hw: 'measured', source: 't' }, 777.5);
    expect(p).toEqual({ ns_per_op: 2377.5, breakdown: { vm_exits_ns: 1000, user_exits_ns: 500, ioctls_ns: 100, hw_commands_ns: 0, cmd_syncs_ns: 0, measured_ns: 777.5 } });
  });

  it('counts the CMD_SYNC apart from the commands: TLBI_NH_VA + CMD_SYNC is 1 command and 1 sync directly', () => {
    expect(directEvents(shapeOf('tlbi-va'))).toEqual({ vm_exits: 0, user_exits: 0, ioctls: 0, hw_commands: 1, cmd_syncs: 1 });
    expect(directEvents(shapeOf('unmap'))).toEqual({ vm_exits: 0, user_exits: 0, ioctls: 0, hw_commands: 2, cmd_syncs: 1 });
  });

  it("models the trapped path as QEMU does it: an exit to user space per doorbell, an ioctl and a kernel CMD_SYNC per command (viommu.md §3.3-§3.4)", () => {
    expect(referenceTrapEvents(shapeOf('tlbi-va'))).toEqual({ vm_exits: 1, user_exits: 1, ioctls: 1, hw_commands: 1, cmd_syncs: 1 });
    expect(referenceTrapEvents(shapeOf('unmap'))).toEqual({ vm_exits: 1, user_exits: 1, ioctls: 2, hw_commands: 2, cmd_syncs: 2 });
    // ATC_INV waits for the TLBI's CMD_SYNC (§3.9.1): two doorbells, so two exits.
    expect(referenceTrapEvents(shapeOf('atc-inv'))).toEqual({ vm_exits: 2, user_exits: 2, ioctls: 2, hw_commands: 2, cmd_syncs: 2 });
  });
});

describe('cost model: the default calibration', () => {
  const single = WORKLOADS.filter((w) => w.basis === 'latency_p50').map((w) => ({ name: w.name, shape: opShape(w.issues(1)) }));

  it('projects direct VCMDQ invalidation 70-90 % below the trapped path for every single-invalidation shape (Grace, viommu.md §7)', () => {
    const rows = calibrationCheck(single);
    expect(rows.map((r) => r.workload)).toEqual(['tlbi-va', 'tlbi-range', 'unmap', 'atc-inv']);
    for (const r of rows) {
      expect(r.reduction, r.workload).toBeGreaterThanOrEqual(GRACE_REDUCTION.min);
      expect(r.reduction, r.workload).toBeLessThanOrEqual(GRACE_REDUCTION.max);
      expect(r.in_published_range).toBe(true);
    }
    // By hand from the defaults: trap = 1000 + 1000 + 1500 + 20 + 800 (exit, uexit, ioctl, cmd, sync), direct = 20 + 800.
    expect(rows[0]).toEqual({ workload: 'tlbi-va', trap_ns: 4320, vcmdq_ns: 820, reduction: 0.8102, in_published_range: true });
    // unmap: trap = 1000 + 1000 + 2·1500 + 2·20 + 2·800 = 6640, direct = 2·20 + 800 = 840.
    expect(rows[2]).toEqual({ workload: 'unmap', trap_ns: 6640, vcmdq_ns: 840, reduction: 0.8735, in_published_range: true });
  });

  it('says so when user costs leave the published range', () => {
    const rows = calibrationCheck(single, parseCostSpec('exit=0,uexit=0,ioctl=0'));
    expect(rows.every((r) => !r.in_published_range)).toBe(true);
    // Without exits and ioctls only the kernel's extra CMD_SYNC per command is left:
    // unmap trap = 2·20 + 2·800 = 1640 against 840; one command: nothing left at all.
    expect(rows.map((r) => r.reduction)).toEqual([0, 0, 0.4878, 0]);
  });
});
