import { describe, expect, it } from 'vitest';
import { formatScenarioJson, parseScenario, parseScenarioText, resolveReg, SCENARIO_FORMAT, ScenarioError } from '../../src/fuzz/scenario.ts';
import { FULL_FEATURES, parseFeatures } from '../../src/spec/features.ts';
import { ecmdqRegisterOffset, REG } from '../../src/spec/registers.ts';

const F = SCENARIO_FORMAT;

function problem(json: unknown): string {
  try {
    parseScenario(json);
  } catch (e) {
    expect(e).toBeInstanceOf(ScenarioError);
    return (e as Error).message;
  }
  throw new Error('the scenario parsed');
}

describe('scenario files: parsing', () => {
  it('fills in the default layout and resolves commands, registers and events', () => {
    const sc = parseScenario({
      format: F,
      steps: [
        { kind: 'commands', queue: 'cmdq', cmds: [{ name: 'CMD_TLBI_NH_ASID', VMID: 1, ASID: 5 }, '46000000000000000000000000000000', [0x30, 0, 0, 0]] },
        { kind: 'doorbell', queue: 'cmdq' },
        { kind: 'write', reg: 'cr0', clear: '0x8' },
        { kind: 'write', reg: 'SMMU_ECMDQ_PROD3', value: '0x80000001' },
        { kind: 'inject', event: { name: 'F_TRANSLATION', StreamID: '0x7' } },
        { kind: 'wait', reg: 'SMMU_CMDQ_CONS', mask: '0xfffff', equals: 3 },
      ],
    });
    expect(sc.config.ram).toEqual({ base: 0x4000_0000, bytes: 0x40_0000 });
    expect(sc.config.cmdq).toEqual({ log2: 4, base: 0x4010_0000 });
    expect(sc.config.eventq).toEqual({ log2: 2, base: 0x4020_0000 });
    expect(sc.config.setup).toBe(true);
    const c = sc.steps[0]!;
    expect(c.kind === 'commands' && c.cmds).toEqual([
      [0x11, 0x0005_0001, 0, 0], // §4.4.2.2: VMID [47:32], ASID [63:48]
      [0x46, 0, 0, 0],
      [0x30, 0, 0, 0],
    ]);
    const w = sc.steps[2]!;
    expect(w.kind === 'write' && [w.reg.offset, w.clear]).toEqual([REG.SMMU_CR0.offset, 8]);
    const e = sc.steps[3]!;
    expect(e.kind === 'write' && [e.reg.offset, e.reg.ecmdq, e.value]).toEqual([ecmdqRegisterOffset(FULL_FEATURES, 3, 'PROD'), 3, 0x8000_0001]);
    const ev = sc.steps[4]!;
    // §7.3: EventID [7:0], StreamID [63:32].
    expect(ev.kind === 'inject' && ev.record).toEqual([0x10, 7, 0, 0, 0, 0, 0, 0]);
    expect(sc.expect).toEqual({ oracle: true });
  });

  it('takes 64-bit registers as bigints and names registers by offset', () => {
    const sc = parseScenario({ format: F, steps: [{ kind: 'write', reg: 'SMMU_CMDQ_BASE', value: '0x4010000000000004' }, { kind: 'write', reg: '0x94', value: 1 }] });
    const [a, b] = sc.steps;
    expect(a!.kind === 'write' && [a!.reg.width, a!.value]).toEqual([64, 0x4010_0000_0000_0004n]);
    expect(b!.kind === 'write' && [b!.reg.offset, b!.reg.width, b!.reg.spec]).toEqual([0x94, 32, undefined]);
  });

  it('parses the expectation, with masks', () => {
    const sc = parseScenario({
      format: F,
      steps: [],
      expect: { commands: [{ outcome: 'consumed', ptr: 0 }, { queue: 'ecmdq1', outcome: 'CERROR_ILL', name: 'CMD_SYNC' }], registers: { SMMU_GERROR: 1, SMMU_CMDQ_CONS: { value: 3, mask: '0xfffff' } } },
    });
    expect(sc.expect.commands).toEqual([{ queue: 'CMDQ', outcome: 'consumed', ptr: 0 }, { queue: 'ECMDQ1', outcome: 'CERROR_ILL', name: 'CMD_SYNC' }]);
    expect(sc.expect.registers!.map((r) => [r.reg.offset, r.value, r.mask])).toEqual([
      [REG.SMMU_GERROR.offset, 1n, 0xffff_ffffn],
      [REG.SMMU_CMDQ_CONS.offset, 3n, 0xf_ffffn],
    ]);
  });

  it('names the problem of a broken file', () => {
    expect(problem({ steps: [] })).toBe(`missing key 'format' (expected "${F}")`);
    expect(problem({ format: 'smmu-sim-scenario/0', steps: [] })).toBe(`format: 'smmu-sim-scenario/0' is not a format this version reads (expected "${F}")`);
    expect(problem({ format: F })).toBe("missing key 'steps'");
    expect(problem({ format: F, steps: [], extra: 1 })).toBe("unknown key 'extra' (allowed: format, name, description, config, steps, expect, known_failure, found)");
    expect(problem({ format: F, steps: [{ kind: 'wirte', reg: 'SMMU_CR0', value: 0 }] })).toBe(
      "steps[0]: unknown step kind 'wirte' (kinds: write, commands, doorbell, wait, inject, recover, poke, settle, dma, map, unmap, ste, cd)",
    );
    expect(problem({ format: F, steps: [{ reg: 'SMMU_CR0' }] })).toBe("steps[0]: missing key 'kind' (kinds: write, commands, doorbell, wait, inject, recover, poke, settle, dma, map, unmap, ste, cd)");
    expect(problem({ format: F, steps: [{ kind: 'commands', queue: 'cmdq', cmds: ['46zz0000000000000000000000000000'] }] })).toBe(
      "steps[0].cmds[0]: bad hex command: '46zz0000000000000000000000000000': invalid hex character 'z' at position 2",
    );
    expect(problem({ format: F, steps: [{ kind: 'write', reg: 'SMMU_CMDQ_PRD', value: 0 }] })).toBe("steps[0].reg: no register named 'SMMU_CMDQ_PRD'");
    expect(problem({ format: F, steps: [{ kind: 'write', reg: 'SMMU_CR0' }] })).toBe("steps[0]: a write needs 'value', 'set', 'clear', 'toggle' or 'from'");
    expect(problem({ format: F, steps: [{ kind: 'write', reg: 'SMMU_CR0', value: '0x100000000' }] })).toBe('steps[0].value: 0x100000000 does not fit the 32-bit SMMU_CR0');
    expect(problem({ format: F, steps: [{ kind: 'doorbell', queue: 'ecmdq8' }] })).toBe("steps[0].queue: queue 'ecmdq8': ECMDQ 8 does not exist (the features give 8)");
    expect(problem({ format: F, steps: [{ kind: 'doorbell', queue: 'cmdq', errack: 1 }] })).toBe("steps[0]: 'en' and 'errack' are ECMDQ PROD fields");
    expect(problem({ format: F, steps: [{ kind: 'inject', event: 'abcd' }] })).toBe('steps[0].event: bad hex event record: expected 64 hex digits, got 4');
    expect(problem({ format: F, steps: [{ kind: 'commands', queue: 'cmdq', cmds: [{ name: 'CMD_SYNC', CS: 4 }] }] })).toBe('steps[0].cmds[0]: CMD_SYNC: CS: 0x4 does not fit in 2 bits');
    expect(problem({ format: F, config: { features: 'no-s3' }, steps: [] })).toMatch(/^config\.features: unknown feature 'no-s3'/);
    expect(problem({ format: F, config: { queues: { ecmdq: [{ n: 0 }] }, features: 'no-ecmdq' }, steps: [] })).toBe('config.queues.ecmdq[0].n: ECMDQ 0 does not exist (the features give 0)');
    expect(problem({ format: F, steps: [], expect: { commands: [{ outcome: 'eaten' }] } })).toBe("expect.commands[0].outcome: 'eaten' is not 'consumed' or a CERROR name");
    expect(() => parseScenarioText('{"format":')).toThrow(/^not valid JSON: /);
  });

  it('resolves ECMDQ registers per the features and refuses ones that do not exist', () => {
    const small = parseFeatures('ecmdq-log2numq=1');
    expect(resolveReg('ECMDQ_CONS<1>', small, 'r')).toMatchObject({ offset: ecmdqRegisterOffset(small, 1, 'CONS'), ecmdq: 1, width: 32 });
    expect(() => resolveReg('SMMU_ECMDQ_CONS2', small, 'r')).toThrow('r: SMMU_ECMDQ_CONS2: ECMDQ 2 does not exist (the features give 2)');
    expect(() => resolveReg('SMMU_ECMDQ_CONS', small, 'r')).toThrow('r: SMMU_ECMDQ_CONS needs its queue number, e.g. SMMU_ECMDQ_CONS0');
    expect(() => resolveReg('0x22', small, 'r')).toThrow('r: register offset 0x22 is not 4-byte aligned');
  });

  it('writes files with one step per line that parse back to the same scenario', () => {
    const json = { format: F, name: 'x', steps: [{ kind: 'doorbell', queue: 'cmdq' }, { kind: 'recover', queue: 'all' }], expect: { commands: [{ outcome: 'consumed' }] } };
    const text = formatScenarioJson(json);
    expect(text).toContain('\n    {"kind":"doorbell","queue":"cmdq"},\n    {"kind":"recover","queue":"all"}\n  ]');
    expect(text).toContain('"commands": [\n      {"outcome":"consumed"}\n    ]');
    expect(JSON.parse(text)).toEqual(json);
  });
});
