/**
 * Virtualization-path scenario files (format smmu-sim-vm-fuzz/1, src/fuzz/vm-scenario.ts) and
 * `smmu-sim replay` on them: the strict parser's messages, hand-written hostile guests on each
 * path with their exact guest errors and physical commands, every file in test/scenarios/vm/, a
 * failure the fuzzer saves replayed from its file, and the CLI.
 *
 * Command words are literal (word 0 = bits [31:0], §4.1.1): opcodes TLBI_NH_ALL 0x10,
 * TLBI_NH_ASID 0x11, TLBI_NH_VA 0x12, CFGI_STE 0x03, CFGI_CD 0x05, ATC_INV 0x40, TLBI_NSNH_ALL
 * 0x30, CMD_SYNC 0x46, Reserved 0x08; VMID [47:32] = word 1 [15:0], ASID [63:48] = word 1 [31:16]
 * (§4.4.2.1, §4.4.2.2, §4.4.2.4); Address [63:12] = word 2 [31:12] and word 3, Leaf bit 64 = word 2
 * bit 0 (§4.4.2.4); StreamID [63:32] = word 1 and Leaf bit 64 (§4.3.1, §4.3.4).
 */
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { UsageError, type Io } from '../../src/cli/args.ts';
import { parseAnyScenario, replayMain } from '../../src/cli/replay.ts';
import { PATHS } from '../../src/fuzz/paths.ts';
import { ScenarioError } from '../../src/fuzz/scenario.ts';
import { runVmCampaign, vmFailureFile, VmHarness, vmTopology, type VmRunOptions, type VmRunResult } from '../../src/fuzz/vm-harness.ts';
import { parseVmScenario, parseVmScenarioText, replayVmScenario, VM_MAX_COMMANDS, type VmScenario } from '../../src/fuzz/vm-scenario.ts';
import type { VmPath } from '../../src/system/vms.ts';

const FORMAT = 'smmu-sim-vm-fuzz/1';
const RESERVED = '08000000000000000000000000000000';

/** Parse and return the ScenarioError's message ('' when it parses). */
function parseError(json: unknown): string {
  try {
    parseVmScenario(json);
    return '';
  } catch (e) {
    if (!(e instanceof ScenarioError)) throw e;
    return e.message;
  }
}

const base = (extra: Record<string, unknown> = {}) => ({ format: FORMAT, path: 'trap', commands: [RESERVED], ...extra });

describe('parseVmScenario', () => {
  it('reads commands as memory-order hex, 4 words or fields, and the defaults', () => {
    const sc = parseVmScenario({
      format: FORMAT,
      name: 'n',
      path: 'vcmdq',
      vms: vmTopology(),
      commands: [RESERVED, [0x10, 1, 0, 0], { name: 'CMD_TLBI_NH_ASID', VMID: 2, ASID: 9 }, { name: 'CMD_TLBI_NH_VA', ASID: 9, Address: '0x10000000', Leaf: 1 }],
      found: { seed: 7 },
    });
    expect(sc).toEqual({
      format: FORMAT,
      name: 'n',
      path: 'vcmdq',
      commands: [[0x08, 0, 0, 0], [0x10, 1, 0, 0], [0x11, 0x0009_0002, 0, 0], [0x12, 0x0009_0000, 0x1000_0001, 0]],
      expect: { ok: true },
      found: { seed: 7 },
    });
  });

  it('reads the expectation and known_failure', () => {
    const sc = parseVmScenario(base({
      expect: { ok: false, rule: 'foreign-vmid', errors: [{ index: '0x0', name: 'CERROR_ILL' }, { name: 'CERROR_ILL' }], physical: [{ queue: 'vcmdq2', name: 'CMD_SYNC', outcome: 'consumed' }, {}] },
      known_failure: { rule: 'host-sync', note: 'x' },
    }));
    expect([sc.expect, sc.knownFailure]).toEqual([
      { ok: false, rule: 'foreign-vmid', errors: [{ index: 0, name: 'CERROR_ILL' }, { name: 'CERROR_ILL' }], physical: [{ queue: 'VCMDQ2', name: 'CMD_SYNC', outcome: 'consumed' }, {}] },
      { rule: 'host-sync', note: 'x' },
    ]);
  });

  it('names the key of every problem', () => {
    const cases: [unknown, string][] = [
      [[], 'a scenario is a JSON object'],
      [{ path: 'trap', commands: [] }, `missing key 'format' (expected "${FORMAT}")`],
      [base({ format: 'smmu-sim-scenario/1' }), `format: 'smmu-sim-scenario/1' is not a format this version reads (expected "${FORMAT}")`],
      [base({ command: [] }), "unknown key 'command' (allowed: format, name, description, path, vms, commands, expect, found, known_failure)"],
      [base({ path: 'trop' }), "path: 'trop' is not a virtualization path (trap, kernel-queue, vcmdq)"],
      [base({ path: undefined }), "missing key 'path' (trap, kernel-queue, vcmdq)"],
      [base({ commands: undefined }), "missing key 'commands'"],
      [base({ commands: RESERVED }), 'commands: expected a list of commands: 32 hex digits, {"name": …, fields…} or 4 words each'],
      [base({ commands: [RESERVED, RESERVED, '0800'] }), "commands[2]: bad hex command: '0800': expected 32 hex digits (16 bytes, byte 0 first), got 4"],
      [base({ commands: ['0x46'] }), "commands[0]: bad hex command: '0x46': invalid hex character 'x' at position 1 (memory-order hex has no 0x prefix; use 0xDWORD0:0xDWORD1 for words)"],
      [base({ commands: [[1, 2, 3]] }), 'commands[0]: a command given as words has 4 of them, not 3'],
      [base({ commands: [{ name: 'CMD_TLBI_NH_ASID', VMID: 0x10000 }] }), 'commands[0]: CMD_TLBI_NH_ASID: VMID: 0x10000 does not fit in 16 bits'],
      [base({ commands: Array.from({ length: VM_MAX_COMMANDS + 1 }, () => RESERVED) }), "commands: 257 commands; at most 256 (one guest queue's worth)"],
      [base({ name: 3 }), 'name: expected a string, not 3'],
      [base({ expect: { errors: [{ index: 0 }] } }), "expect.errors[0]: missing key 'name'"],
      [base({ expect: { errors: [{ name: 'ILL' }] } }), "expect.errors[0].name: 'ILL' is not a CERROR name"],
      [base({ expect: { errors: [{ name: 'CERROR_ILL', index: 2 }] } }), 'expect.errors[0].index: 2 is beyond the 1 commands and the issue\'s CMD_SYNC (index 1)'],
      [base({ expect: { errors: [{ name: 'CERROR_ILL', ptr: 2 }] } }), "expect.errors[0]: unknown key 'ptr' (allowed: index, name)"],
      [base({ expect: { physical: [{ queue: 'ring' }] } }), "expect.physical[0].queue: 'ring' is not a physical queue (CMDQ, ECMDQ<n>, VCMDQ<n>)"],
      [base({ expect: { physical: [{ outcome: 'ok' }] } }), "expect.physical[0].outcome: 'ok' is not 'consumed' or a CERROR name"],
      [base({ expect: { physical: [{ ptr: 3 }] } }), "expect.physical[0]: unknown key 'ptr' (allowed: queue, name, outcome)"],
      [base({ expect: { ok: false } }), 'expect: "ok": false needs \'rule\': the violation the run must show (worker-failure, hang, guest-issue, guest-error, foreign-vmid, foreign-streamid, bystander-tlb, host-sync)'],
      [base({ expect: { rule: 'hang' } }), 'expect.rule: only with "ok": false (the rule the run must break)'],
      [base({ expect: { ok: false, rule: 'oops' } }), "expect.rule: 'oops' is not a rule of the virtualization paths (worker-failure, hang, guest-issue, guest-error, foreign-vmid, foreign-streamid, bystander-tlb, host-sync)"],
      [base({ expect: { ok: 'no' } }), 'expect.ok: expected true or false, not "no"'],
      [base({ known_failure: { note: 'x' } }), "known_failure: missing key 'rule'"],
      [base({ known_failure: { rule: 'fetch-mismatch' } }), "known_failure.rule: 'fetch-mismatch' is not a rule of the virtualization paths (worker-failure, hang, guest-issue, guest-error, foreign-vmid, foreign-streamid, bystander-tlb, host-sync)"],
    ];
    for (const [json, msg] of cases) expect(parseError(json), msg).toBe(msg);
  });

  it('accepts only the harness topology in vms, and says why', () => {
    const fixed = 'the harness runs one fixed topology (A: vSID 1 on StreamID 0x30; B: vSIDs 1, 2 on StreamIDs 0x40, 0x41, IOVA 0x10000000 mapped (4096 bytes, ASID 9)) and cannot build another; leave \'vms\' out or give it as the fuzzer saves it';
    const t = vmTopology();
    // Hex strings are numbers too.
    expect(parseError(base({ vms: { ...t, A: { devices: [{ vsid: 1, psid: '0x30' }] } } }))).toBe('');
    expect(parseError(base({ vms: { ...t, B: { ...t.B, devices: [{ vsid: 1, psid: 80 }, t.B.devices[1]] } } }))).toBe(`vms.B.devices[0].psid: 0x50 where the harness has 0x40: ${fixed}`);
    expect(parseError(base({ vms: { ...t, A: { devices: [...t.A.devices, { vsid: 2, psid: 0x31 }] } } }))).toBe(`vms.A.devices: 2 entries where the harness has 1: ${fixed}`);
    expect(parseError(base({ vms: { A: t.A } }))).toBe(`vms: missing key 'B': ${fixed}`);
    expect(parseError(base({ vms: { ...t, C: t.A } }))).toBe("vms: unknown key 'C' (allowed: A, B)");
    expect(parseError(base({ vms: { ...t, B: { ...t.B, mapped: { ...t.B.mapped, asid: 'nine' } } } }))).toBe('vms.B.mapped.asid: expected a number or a "0x…" string, not "nine"');
  });

  it('reads back what the fuzzer saves', () => {
    const cmds = [[0x08, 0, 0, 0], [0x11, 0x0009_0002, 0, 0]];
    const file = vmFailureFile('kernel-queue', cmds, { seed: 5, rule: 'guest-error', section: '§4.1.6', message: 'm', shrinks: 3, reproduces: true });
    expect(file.commands).toEqual([RESERVED, '11000000020009000000000000000000']);
    const sc = parseVmScenarioText(JSON.stringify(file, null, 2));
    expect([sc.path, sc.commands, sc.name, sc.found]).toEqual([
      'kernel-queue', cmds, 'fuzz kernel-queue: guest-error',
      { by: 'smmu-sim fuzz', path: 'kernel-queue', seed: 5, rule: 'guest-error', section: '§4.1.6', message: 'm', shrinks: 3, reproduces: true },
    ]);
  });

  it('replay tells the two formats apart by "format"', () => {
    const err = (text: string) => {
      try {
        return parseAnyScenario(text).kind;
      } catch (e) {
        return (e as Error).message;
      }
    };
    expect(err(JSON.stringify(base()))).toBe('vm');
    expect(err(JSON.stringify({ format: 'smmu-sim-scenario/1', steps: [] }))).toBe('ring');
    expect(err(JSON.stringify({ steps: [] }))).toBe('missing key \'format\' (expected "smmu-sim-scenario/1" or "smmu-sim-vm-fuzz/1")');
    expect(err(JSON.stringify({ format: 'smmu-sim-vm-fuzz/2' }))).toBe('format: \'smmu-sim-vm-fuzz/2\' is not a format this version reads (expected "smmu-sim-scenario/1" or "smmu-sim-vm-fuzz/1")');
  });
});

// ---------------------------------------------------------------------------------------------
// On running systems: one harness per path, reused by every test of that path.
// ---------------------------------------------------------------------------------------------

const harnesses = new Map<VmPath, VmHarness>();
function harness(path: VmPath): VmHarness {
  let h = harnesses.get(path);
  if (h === undefined) harnesses.set(path, (h = new VmHarness(path)));
  return h;
}
afterAll(async () => {
  for (const h of harnesses.values()) await h.close();
});

/** [queue, name, outcome] of every physical command of a run. */
const physical = (r: VmRunResult) => r.trace.map((e) => [e.queue, e.json.name, e.outcome]);
/** Words of the physical commands other than CMD_SYNC (whose MSIAddress is the host's choice). */
const physicalWords = (r: VmRunResult) => r.trace.filter((e) => e.json.name !== 'CMD_SYNC').map((e) => [...e.words]);
const guestErrors = (r: VmRunResult) => r.guestErrors.map((e) => [e.index, e.name, e.code]);

function scenario(path: VmPath, commands: unknown[], extra: Record<string, unknown> = {}): VmScenario {
  return parseVmScenario({ format: FORMAT, path, commands, ...extra });
}

const scenarioDir = new URL('../scenarios/vm/', import.meta.url);
const files = readdirSync(scenarioDir).filter((f) => f.endsWith('.json')).sort();
const filesOf = (path: VmPath) => files.filter((f) => parseVmScenarioText(readFileSync(new URL(f, scenarioDir), 'utf8')).path === path);

/** Replay one saved file on the path's harness: it holds, or fails as its known_failure says. */
async function replayFile(file: string): Promise<void> {
  const sc = parseVmScenarioText(readFileSync(new URL(file, scenarioDir), 'utf8'));
  const r = await replayVmScenario(sc, harness(sc.path));
  if (sc.knownFailure !== undefined) {
    expect(r.ok, `${file} is marked known_failure (${sc.knownFailure.rule}) but passes: remove the marker`).toBe(false);
    expect(r.violations[0]!.rule).toBe(sc.knownFailure.rule);
  } else {
    expect(r.violations).toEqual([]);
    expect(r.ok).toBe(true);
  }
}

describe('replay on the trap path', () => {
  it('a hostile guest: refused VMID, Reserved opcode, foreign vSID, and what reaches the SMMU', async () => {
    const sc = scenario('trap', [
      // VMID is RES0 on A's stage-1-only vSMMU (§4.4.2.2): CERROR_ILL, no physical command.
      { name: 'CMD_TLBI_NH_ASID', VMID: 2, ASID: 9 },
      // B's physical StreamID is no vSID of A's: nothing to re-shadow, no error.
      { name: 'CMD_CFGI_STE', StreamID: '0x40', Leaf: 1 },
      RESERVED,
      // VMID 0 on the guest; the kernel writes A's VMID 1 (viommu.md §3.2).
      { name: 'CMD_TLBI_NH_ALL' },
      // A's vSID 1 becomes StreamID 0x30.
      { name: 'CMD_CFGI_CD', StreamID: 1, Leaf: 1 },
    ]);
    const events: string[] = [];
    const r = await replayVmScenario(sc, harness('trap'), { onEvent: (e) => events.push(e.type) });
    expect(r.violations).toEqual([]);
    expect(guestErrors(r.run)).toEqual([[0, 'CERROR_ILL', 1], [2, 'CERROR_ILL', 1]]);
    // One HWPT_INVALIDATE per command (QEMU), each ending in the kernel's CMD_SYNC.
    expect(physical(r.run)).toEqual([
      ['CMDQ', 'CMD_TLBI_NH_ALL', 'consumed'], ['CMDQ', 'CMD_SYNC', 'consumed'],
      ['CMDQ', 'CMD_CFGI_CD', 'consumed'], ['CMDQ', 'CMD_SYNC', 'consumed'],
    ]);
    expect(physicalWords(r.run)).toEqual([[0x10, 1, 0, 0], [0x05, 0x30, 1, 0]]);
    expect(events).toEqual(['setup', 'guest', 'guest', 'guest', 'guest', 'guest', 'physical', 'physical', 'physical', 'physical', 'guest-error', 'guest-error']);
  }, 60_000);

  it('checks the expectation: errors, physical commands, and "ok": false', async () => {
    const sc = scenario('trap', [RESERVED, { name: 'CMD_TLBI_NH_ALL' }], {
      expect: {
        ok: false,
        rule: 'foreign-vmid',
        errors: [{ index: 1, name: 'CERROR_ILL' }],
        physical: [{ name: 'CMD_TLBI_NH_ALL' }, { name: 'CMD_SYNC', outcome: 'CERROR_ILL' }],
      },
    });
    const r = await replayVmScenario(sc, harness('trap'));
    expect(r.ok).toBe(false);
    expect(r.expected).toEqual([]);
    expect(r.violations).toEqual([
      { rule: 'expect-mismatch', message: 'expected a foreign-vmid violation ("ok": false), the run held', section: '' },
      { rule: 'expect-mismatch', message: 'guest error 0: expected CERROR_ILL at index 1, the guest saw CERROR_ILL at index 0 (1 expected, 1 seen)', section: '' },
      { rule: 'expect-mismatch', message: 'physical command 1: expected (any queue) CMD_SYNC -> CERROR_ILL, the SMMU read CMDQ CMD_SYNC -> consumed (2 expected, 2 seen)', section: '' },
    ]);
  }, 60_000);

  for (const f of filesOf('trap')) it(`test/scenarios/vm/${f}`, () => replayFile(f), 60_000);
});

describe('replay on the kernel-queue path', () => {
  it('a hostile guest: the kernel converts, refuses, and batches up to each stop', async () => {
    const sc = scenario('kernel-queue', [
      { name: 'CMD_TLBI_NSNH_ALL' },
      // A CFGI_STE_RANGE covering B's StreamIDs 0x40-0x41 (Range 0, §4.3.2) as a vSID range: A
      // has no vSID 0x40, nothing is re-shadowed and nothing reaches the SMMU.
      { name: 'CMD_CFGI_STE_RANGE', StreamID: '0x40', Range: 0 },
      { name: 'CMD_TLBI_NH_ASID', VMID: 2, ASID: 9 },
      { name: 'CMD_TLBI_NH_VA', ASID: 9, Address: '0x10000000', Leaf: 1 },
      { name: 'CMD_TLBI_NH_ASID', ASID: 9 },
    ]);
    const r = await replayVmScenario(sc, harness('kernel-queue'));
    expect(r.violations).toEqual([]);
    expect(guestErrors(r.run)).toEqual([[2, 'CERROR_ILL', 1]]);
    // The guest queue stops at index 2 (§7.1): what the kernel consumed before goes out first.
    expect(physical(r.run)).toEqual([
      ['CMDQ', 'CMD_TLBI_NH_ALL', 'consumed'], ['CMDQ', 'CMD_SYNC', 'consumed'],
      ['CMDQ', 'CMD_TLBI_NH_VA', 'consumed'], ['CMDQ', 'CMD_TLBI_NH_ASID', 'consumed'], ['CMDQ', 'CMD_SYNC', 'consumed'],
    ]);
    // B's ASID 9 and IOVA, but A's VMID 1: B's TLB entry stays (the bystander-tlb check held).
    expect(physicalWords(r.run)).toEqual([[0x10, 1, 0, 0], [0x12, 0x0009_0001, 0x1000_0001, 0], [0x11, 0x0009_0001, 0, 0]]);
  }, 60_000);

  for (const f of filesOf('kernel-queue')) it(`test/scenarios/vm/${f}`, () => replayFile(f), 60_000);
});

describe('replay on the vcmdq path', () => {
  it('a hostile guest on its own VCMDQ: ILL_OPCODE, ILL_ACCESS, and the VINTF VMID', async () => {
    const sc = scenario('vcmdq', [
      { name: 'CMD_TLBI_NH_ALL', VMID: 2 },
      { name: 'CMD_TLBI_NH_VA', VMID: 2, ASID: 9, Address: '0x10000000', Leaf: 1 },
      { name: 'CMD_ATC_INV', StreamID: '0x40', Size: 0 },
      // CS = 0b11 is Reserved (§4.7.3); the guest's own CMD_SYNC follows at index 4.
      { name: 'CMD_SYNC', CS: 3 },
    ]);
    const r = await replayVmScenario(sc, harness('vcmdq'));
    expect(r.violations).toEqual([]);
    expect(guestErrors(r.run)).toEqual([[0, 'CERROR_ILL_OPCODE', 1], [2, 'CERROR_ILL_ACCESS', 4], [3, 'CERROR_ILL_OPCODE', 1]]);
    const q = r.run.trace[0]!.queue;
    expect(q).toMatch(/^VCMDQ\d+$/);
    expect(physical(r.run)).toEqual([
      [q, 'CMD_TLBI_NH_ALL', 'CERROR_ILL_OPCODE'], [q, 'CMD_SYNC', 'consumed'],
      [q, 'CMD_TLBI_NH_VA', 'consumed'],
      [q, 'CMD_ATC_INV', 'CERROR_ILL_ACCESS'], [q, 'CMD_SYNC', 'consumed'],
      [q, 'CMD_SYNC', 'CERROR_ILL_OPCODE'], [q, 'CMD_SYNC', 'consumed'],
      [q, 'CMD_SYNC', 'consumed'],
    ]);
    // The VCMDQ executed TLBI_NH_VA with its VINTF's VMID 1, not the 2 the guest wrote.
    expect(r.run.trace[2]!.words).toEqual([0x12, 0x0009_0001, 0x1000_0001, 0]);
  }, 60_000);

  for (const f of filesOf('vcmdq')) it(`test/scenarios/vm/${f}`, () => replayFile(f), 60_000);
});

describe('test/scenarios/vm', () => {
  it('has an example for every path, and docs/scenarios.md shows them as they are', () => {
    expect((['trap', 'kernel-queue', 'vcmdq'] as const).map((p) => filesOf(p).length > 0)).toEqual([true, true, true]);
    const md = readFileSync(new URL('../../docs/scenarios.md', import.meta.url), 'utf8');
    const blocks = [...md.matchAll(/File: `(test\/scenarios\/vm\/[a-z0-9-]+\.json)`\n+```json\n([\s\S]*?)\n```/g)];
    expect(blocks.length).toBeGreaterThanOrEqual(1);
    for (const [, path, body] of blocks) {
      const file = JSON.parse(readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8'));
      expect(JSON.parse(body!), path).toEqual(file);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// A failure the fuzzer saves, replayed from its file.
// ---------------------------------------------------------------------------------------------

/** The trap harness with one more check: no guest refusal at all (a stand-in for a model bug). */
class NoRefusals extends VmHarness {
  override async run(cmds: readonly (readonly number[])[], opts?: VmRunOptions): Promise<VmRunResult> {
    const r = await super.run(cmds, opts);
    if (r.guestErrors.length === 0) return r;
    const violations = [...r.violations, { rule: 'guest-error' as const, message: `no refusal allowed: the guest saw ${r.guestErrors.map((e) => e.name).join(', ')}`, section: '§4.1.6' }];
    return { ...r, ok: false, violations };
  }
}

describe('a saved VM-path failure', () => {
  const out = mkdtempSync(join(tmpdir(), 'smmu-vm-replay-'));

  it('round-trips: campaign → file → parse → replay reproduces it', async () => {
    const strict = new NoRefusals('trap');
    const trap = PATHS.trap!;
    const s = await runVmCampaign({ path: 'trap', seed: 3, runs: 10, maxActs: 6, maxShrinkRuns: 40, outDir: out }, trap, strict);
    // One failure: later blocks skip a rule already found (the campaign's `known`).
    expect(s.failed_cases.map((f) => [f.rule, f.message])).toEqual([['guest-error', 'no refusal allowed: the guest saw CERROR_ILL']]);
    const saved = s.failed_cases[0]!;
    expect([saved.rule, saved.reproduces]).toEqual(['guest-error', true]);
    const text = readFileSync(saved.file!, 'utf8');
    const sc = parseVmScenarioText(text);
    const json = JSON.parse(text) as { commands: string[]; found: { message: string; rule: string } };
    // The words the campaign ran, back from the file's hex.
    expect(sc.commands.map((w) => w.map((x) => x.toString(16).padStart(8, '0')))).toEqual(
      json.commands.map((h) => [0, 1, 2, 3].map((i) => h.slice(8 * i, 8 * i + 8).match(/../g)!.reverse().join(''))),
    );
    expect(sc.commands.length).toBeLessThanOrEqual(6);
    try {
      // On the same checks the file fails as it was found …
      const again = await replayVmScenario(sc, strict);
      expect(again.ok).toBe(false);
      expect(again.violations.map((v) => [v.rule, v.message])).toEqual([[json.found.rule, json.found.message]]);
      // … and the refusals it records are the path's ordinary CERROR_ILL, on the file's commands.
      expect(again.run.guestErrors.length).toBeGreaterThan(0);
      for (const e of again.run.guestErrors) expect([e.name, e.index! < sc.commands.length]).toEqual(['CERROR_ILL', true]);
    } finally {
      await strict.close();
    }
    // The model's own checks hold for it.
    const plain = await replayVmScenario(sc, harness('trap'));
    expect(plain.violations).toEqual([]);
  }, 120_000);
});

// ---------------------------------------------------------------------------------------------
// The CLI (in process, as src/cli/main.ts runs it).
// ---------------------------------------------------------------------------------------------

async function replay(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: Io = { out: (t) => void (out += t), err: (t) => void (err += t), stdin: () => (async function* () {})(), stdinIsTTY: true };
  try {
    return { code: await replayMain(argv, io), out, err };
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    return { code: 2, out, err: `${err}smmu-sim ${e.message}\n` };
  }
}

describe('smmu-sim replay on VM-path files', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'smmu-vm-cli-'));
  const write = (name: string, json: unknown) => {
    const f = join(tmp, name);
    writeFileSync(f, typeof json === 'string' ? json : JSON.stringify(json));
    return f;
  };

  it('prints the guest commands (--verbose: with their hex), the physical commands, the guest errors, and PASS', async () => {
    const r = await replay('--verbose', 'test/scenarios/vm/trap-hostile-guest.json');
    expect([r.code, r.err]).toEqual([0, '']);
    const lines = r.out.trimEnd().split('\n');
    expect(lines.slice(0, 3)).toEqual([
      "vm scenario trap: a guest names the bystander's VMID and StreamID (test/scenarios/vm/trap-hostile-guest.json)",
      'path trap; A is VMID 1, B VMID 2; A: vSID 1 on StreamID 0x30; B: vSIDs 1, 2 on StreamIDs 0x40, 0x41, IOVA 0x10000000 mapped (4096 bytes, ASID 9)',
      'guest A issues 5 commands and a CMD_SYNC:',
    ]);
    expect(lines).toContain('  [3] 08000000000000000000000000000000  RESERVED_0x08 0x0000000000000008:0x0000000000000000  # CERROR_ILL reserved-opcode: opcode 0x8 is Reserved (§4.1.1)');
    expect(lines).toContain('  [1] 10000000000000000000000000000000  TLBI_NH_ALL vmid=0x0  # legal');
    const phys = lines.indexOf('physical commands the SMMU read:');
    const errs = lines.indexOf('guest errors:');
    expect(lines.slice(phys + 1, errs).map((l) => l.replace(/\[0x[0-9a-f]+\]/, '[P]').replace(/msiaddr=0x[0-9a-f]+/, 'msiaddr=M'))).toEqual([
      '      CMDQ[P] TLBI_NH_ALL vmid=0x1  -> consumed',
      '      CMDQ[P] SYNC cs=SIG_IRQ msiaddr=M msh=ISH msiattr=0xf  -> consumed',
      '      CMDQ[P] TLBI_NH_VA vmid=0x1 asid=0x9 addr=0x10000000 leaf=1  -> consumed',
      '      CMDQ[P] SYNC cs=SIG_IRQ msiaddr=M msh=ISH msiattr=0xf  -> consumed',
    ]);
    expect(lines.slice(errs + 1, errs + 3).map((l) => l.replace(/pointer 0x[0-9a-f]+$/, 'pointer P'))).toEqual([
      '  [0] CERROR_ILL (code 1) at queue pointer P',
      '  [3] CERROR_ILL (code 1) at queue pointer P',
    ]);
    expect(lines.at(-1)).toBe('PASS: 5 guest commands, 2 guest errors, 4 physical commands; the checks and the expectation hold');
  }, 60_000);

  it('prints JSON lines with --json, and exits 1 when the expectation does not hold', async () => {
    const f = write('wrong.json', { format: FORMAT, path: 'trap', commands: [RESERVED], expect: { errors: [] } });
    const r = await replay('--json', f);
    expect([r.code, r.err]).toEqual([1, '']);
    const objs = r.out.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(objs[0]).toEqual({ path: 'trap', vmids: { A: 1, B: 2 } });
    expect(objs[1]).toMatchObject({ guest: 0, command: { opcode: 8, name: 'RESERVED_0x08', legal: false, error: 'CERROR_ILL', rule: 'reserved-opcode' } });
    expect(objs.filter((o) => 'command' in o).map((o) => Object.keys(o)[0])).toEqual(['guest']);
    expect(objs.filter((o) => 'guest_error' in o).map((o) => (o.guest_error as { index: number; name: string })).map((e) => [e.index, e.name])).toEqual([[0, 'CERROR_ILL']]);
    const violation = { rule: 'expect-mismatch', message: 'guest error 0: none more expected, the guest saw CERROR_ILL at index 0 (0 expected, 1 seen)', section: '' };
    expect(objs.at(-2)).toEqual({ violation });
    expect(objs.at(-1)).toEqual({ result: 'fail', violations: [violation], commands: 1, guest_errors: 1, physical: 0 });
  }, 60_000);

  it('exits 2 for a broken VM-path file, naming the key', async () => {
    const trop = write('trop.json', { format: FORMAT, path: 'trop', commands: [] });
    expect(await replay(trop)).toEqual({ code: 2, out: '', err: `smmu-sim replay: ${trop}: path: 'trop' is not a virtualization path (trap, kernel-queue, vcmdq)\n` });
    const hex = write('hex.json', { format: FORMAT, path: 'vcmdq', commands: [RESERVED, RESERVED, '0800'] });
    expect((await replay(hex)).err).toBe(`smmu-sim replay: ${hex}: commands[2]: bad hex command: '0800': expected 32 hex digits (16 bytes, byte 0 first), got 4\n`);
    const fmt = write('fmt.json', { format: 'smmu-sim-vm/1', path: 'trap', commands: [] });
    expect((await replay(fmt)).err).toBe(`smmu-sim replay: ${fmt}: format: 'smmu-sim-vm/1' is not a format this version reads (expected "smmu-sim-scenario/1" or "smmu-sim-vm-fuzz/1")\n`);
  });
});
