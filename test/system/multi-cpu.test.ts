/**
 * Many guest CPUs, one SMMU, all real threads: the SMMU device worker, the guest driver worker
 * that probes and resets the SMMU and allocates the CPUs' shared state (System.start({ cpus })),
 * and N CPU workers inserting tagged commands (GuestCpu.run) into one shared SMMU_CMDQ of 2^7
 * entries with the lock-free multi-producer algorithm. N = 4 is more CPUs than the machine's 2
 * cores.
 *
 * The device trace is the oracle (every command the SMMU consumed or refused, in order):
 * - every command is consumed exactly once (§4.1: a queue entry is consumed once);
 * - each CPU's commands are consumed in its own order, and a CPU's CMD_SYNC directly follows
 *   its batch (Linux: one CPU's list is contiguous in the queue);
 * - when a CPU's CMD_SYNC wait returns, every command it inserted before it has been consumed
 *   (§4.7.3): it is among the trace records written by then (HDR.TRACE_TAIL at that moment);
 * - a command error is fixed by exactly one CPU (§7.1): the refused command is followed by a
 *   CMD_SYNC at the same queue pointer.
 * The same for ECMDQs (§3.5.6): each CPU on its own queue (or sharing one when CPUs outnumber
 * them), and an error that halts one ECMDQ while the others go on, recovered through ERRACK.
 * Batch sizes come from a seeded generator (SMMU_SIM_SEED replays one); the seed is printed when
 * a test fails.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it, onTestFailed } from 'vitest';
import { System, type CpuHandle, type TraceEntry } from '../../src/system/system.ts';
import { illegalCommand, workloadTag, type CpuQueuesLayout, type CpuState, type RunOptions, type RunResult } from '../../src/driver/cpu.ts';
import type { WaitPolicy } from '../../src/mem/wait.ts';
import type { SmmuFeatures } from '../../src/spec/features.ts';
import { FULL_FEATURES, validateFeatures } from '../../src/spec/features.ts';
import { encodeCommandWords } from '../../src/spec/command-codec.ts';
import { ecmdqRegisterOffset } from '../../src/spec/registers.ts';
import { CERROR_ILL } from '../../src/spec/cerror.ts';

const POLICY: WaitPolicy = { mode: 'hybrid', spin: 2000, timeoutMs: 5000 };
/** SMMU_GERROR.CMDQP_ERR, bit 9 (§6.3.19). */
const CMDQP_ERR = 1 << 9;
/** CMD_SYNC with CS = SIG_SEV, MSH = ISH, MSIAttr = OIWB (§4.7.3): what replaces a command in error. */
const SEV_SYNC = [0x0fc0_2046, 0, 0, 0];
const hex = (v: number): string => `0x${(v >>> 0).toString(16)}`;

interface Cpus {
  readonly sys: System;
  readonly layout: CpuQueuesLayout;
  readonly cpus: CpuHandle[];
  stop(): Promise<void>;
}

/**
 * The SMMU device worker, the guest driver worker (which probes, resets, allocates the shared
 * state and is itself the last CPU on the queues) and `cpus` CPU workers: System.start({ cpus }).
 */
async function startCpus(o: {
  cpus: number;
  cmdq: 'shared' | 'ecmdq';
  syncMode: 'msi' | 'cons';
  cmdqLog2?: number;
  ecmdqLog2?: number;
  features?: SmmuFeatures;
}): Promise<Cpus> {
  const sys = await System.start({
    trace: true,
    policy: POLICY,
    features: o.features ?? FULL_FEATURES,
    syncMode: o.syncMode,
    cpus: o.cpus,
    cmdq: o.cmdq,
    ...(o.cmdqLog2 !== undefined ? { cmdqLog2: o.cmdqLog2 } : {}),
    ...(o.ecmdqLog2 !== undefined ? { ecmdqLog2: o.ecmdqLog2 } : {}),
  });
  return { sys, layout: sys.queues!, cpus: sys.cpus, stop: () => sys.stop() };
}

/** A small seeded generator (mulberry32), so that a failing run can be replayed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b_79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

function seedFromEnv(): number {
  const s = Number(process.env.SMMU_SIM_SEED ?? NaN);
  return Number.isInteger(s) ? s : Math.floor(Math.random() * 2 ** 31);
}

/**
 * Check the trace against the CPUs' runs (the properties in the file header), for the commands of
 * `queue` ('CMDQ', or an ECMDQ's name per CPU). Returns the trace index of each (cpu, seq).
 */
function checkTrace(entries: readonly TraceEntry[], runs: readonly RunResult[], queueOf: (cpu: number) => string): void {
  const at = new Map<string, number>();
  const refused = new Map<string, number>();
  entries.forEach((e, i) => {
    const t = workloadTag(e.words);
    if (t === undefined) return;
    const key = `${t.cpu}:${t.seq}`;
    expect(e.queue, `command ${key} went to ${e.queue}`).toBe(queueOf(t.cpu));
    if (e.outcome === 'consumed') {
      expect(at.has(key), `command ${key} consumed twice`).toBe(false);
      at.set(key, i);
    } else {
      expect(t.illegal, `legal command ${key} refused with ${e.outcome}`).toBe(true);
      expect(refused.has(key), `illegal command ${key} refused twice`).toBe(false);
      refused.set(key, i);
      // Exactly one CPU fixed it: the SMMU's next fetch from that queue, at the same pointer,
      // finds the CMD_SYNC written over it (§7.1; Linux's skip_err).
      const next = entries.slice(i + 1).find((x) => x.queue === e.queue);
      expect(next?.ptr, `after the refused ${key}`).toBe(e.ptr);
      expect(next?.json.name).toBe('CMD_SYNC');
      expect(next?.outcome).toBe('consumed');
    }
  });
  for (const r of runs) {
    let last = -1;
    for (let s = r.firstSeq; s < r.firstSeq + r.commands; s++) {
      const key = `${r.cpu}:${s}`;
      const i = at.get(key) ?? refused.get(key);
      expect(i, `command ${key} was never consumed`).toBeDefined();
      expect(i!, `CPU ${r.cpu}'s command ${s} consumed out of order`).toBeGreaterThan(last);
      last = i!;
    }
    for (const y of r.syncs) {
      const key = `${r.cpu}:${y.lastSeq}`;
      const i = at.get(key) ?? refused.get(key)!;
      // The CMD_SYNC directly follows the batch in its queue, at the pointer the CPU wrote it to
      // (past the CMD_SYNC written over the last command, if that one was illegal).
      const q = entries[i]!.queue;
      const next = entries.slice(i + 1).find((x) => x.queue === q && x.ptr !== entries[i]!.ptr);
      expect(next?.json.name, `after ${key}`).toBe('CMD_SYNC');
      expect(next?.ptr).toBe(y.ptr);
      // Completion seen by the CPU implies the commands before it were consumed.
      expect(i, `CPU ${r.cpu}'s CMD_SYNC after ${y.lastSeq} completed before that command was consumed`).toBeLessThan(y.traceTail);
    }
  }
}

/** Random batch sizes 1..80 (above 64, one call is a batch without a CMD_SYNC and a remainder with one). */
function batches(next: () => number, n: number): number[] {
  return Array.from({ length: n }, () => 1 + Math.floor(next() * 80));
}

describe.each([
  { cpus: 1, syncMode: 'msi' as const },
  { cpus: 2, syncMode: 'cons' as const },
  { cpus: 4, syncMode: 'msi' as const },
])('$cpus CPU(s) on one shared CMDQ of 2^7 entries, $syncMode', ({ cpus, syncMode }) => {
  it('every command is consumed once, in each CPU\'s order, before that CPU\'s CMD_SYNC completes', async () => {
    const seed = seedFromEnv();
    onTestFailed(() => console.error(`multi-cpu seed: SMMU_SIM_SEED=${seed}`));
    const next = rng(seed);
    const c = await startCpus({ cpus, cmdq: 'shared', syncMode, cmdqLog2: 7 });
    try {
      expect(c.layout).toMatchObject({ mode: 'shared', cpus: cpus + 1, syncMode, queues: [{ name: 'CMDQ', log2: 7 }] });
      const M = 240;
      // Phase 1: each call ends with a CMD_SYNC.
      const runs = await Promise.all(c.cpus.map((h) => h.call<RunResult>('run', { commands: M, batch: batches(next, 16), record: true } satisfies RunOptions)));
      // Phase 2: no CMD_SYNC until the end, so the 2^7-entry queue fills up and producers must
      // wait for room: nothing but poll_until_not_full moves the shadow cons then.
      const runs2 = await Promise.all(c.cpus.map((h) => h.call<RunResult>('run', { commands: M, batch: batches(next, 16), sync: false } satisfies RunOptions)));
      await Promise.all(c.cpus.map((h) => h.call('sync')));
      const { entries, lost } = c.sys.trace();
      expect(lost).toBe(0);
      checkTrace(entries, [...runs, ...runs2], () => 'CMDQ');
      const states = await Promise.all(c.cpus.map((h) => h.call<CpuState>('state')));
      const sum = (k: keyof CpuState['counters']): number => states.reduce((a, s) => a + s.counters[k], 0);
      expect(sum('commands')).toBe(2 * M * cpus);
      expect(sum('queueFull')).toBeGreaterThan(0);
      // Every insertion either owned its doorbell or was gathered by an owner; no errors.
      expect(sum('doorbells')).toBe(sum('timesOwner'));
      expect(sum('errorsRecovered')).toBe(0);
      expect(c.sys.readReg('SMMU_GERROR') ^ c.sys.readReg('SMMU_GERRORN')).toBe(0);
      console.log(`${cpus} CPUs ${syncMode}: ${JSON.stringify(Object.fromEntries((['cmpxchgRetries', 'queueFull', 'timesOwner', 'doorbells', 'waits', 'syncs'] as const).map((k) => [k, sum(k)])))}`);
    } finally {
      await c.stop();
    }
  });
});

describe.each(['msi', 'cons'] as const)('command errors with 4 CPUs on one CMDQ, %s', (syncMode) => {
  it('each illegal command is fixed by exactly one CPU, and every other command is consumed once', async () => {
    const seed = seedFromEnv();
    onTestFailed(() => console.error(`multi-cpu seed: SMMU_SIM_SEED=${seed}`));
    const next = rng(seed);
    const c = await startCpus({ cpus: 4, cmdq: 'shared', syncMode, cmdqLog2: 7 });
    try {
      const M = 200;
      const illegal = [[], [17, 90], [], [3, 150, 151]];
      const runs = await Promise.all(
        c.cpus.map((h, i) => h.call<RunResult>('run', { commands: M, batch: batches(next, 12), record: true, illegal: illegal[i]! } satisfies RunOptions)),
      );
      const { entries, lost } = c.sys.trace();
      expect(lost).toBe(0);
      checkTrace(entries, runs, () => 'CMDQ');
      const bad = illegal.flatMap((seqs, cpu) => seqs.map((s) => `${cpu}:${s}`)).sort();
      const refused = entries.filter((e) => e.outcome !== 'consumed').map((e) => {
        expect(e.outcome).toBe('CERROR_ILL');
        const t = workloadTag(e.words)!;
        return `${t.cpu}:${t.seq}`;
      });
      expect(refused.sort()).toEqual(bad);
      const states = await Promise.all(c.cpus.map((h) => h.call<CpuState>('state')));
      const skips = states.flatMap((s) => s.log.filter((l) => l.kind === 'cmdq-skip'));
      expect(skips).toHaveLength(bad.length);
      expect(skips.map((l) => (l.kind === 'cmdq-skip' ? `${l.words[1]}:${l.words[2]}` : '')).sort()).toEqual(bad);
      expect(skips.every((l) => l.kind === 'cmdq-skip' && l.code === CERROR_ILL && l.queue === 'CMDQ')).toBe(true);
      expect(states.reduce((a, s) => a + s.counters.errorsRecovered, 0)).toBe(bad.length);
      expect(runs.reduce((a, r) => a + r.errors.length, 0)).toBe(bad.length);
      expect(c.sys.readReg('SMMU_GERROR') ^ c.sys.readReg('SMMU_GERRORN')).toBe(0);
    } finally {
      await c.stop();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// ECMDQs
// ---------------------------------------------------------------------------------------------

/** The device implements ECMDQs once its register side exists (the lead adds it to src/device). */
const deviceHasEcmdq = /SMMU_ECMDQ_PROD/.test(readFileSync(new URL('../../src/device/smmu.ts', import.meta.url), 'utf8'));

describe.skipIf(!deviceHasEcmdq)('ECMDQs end to end', () => {
  it.each([
    { cpus: 4, log2NumQ: 3, syncMode: 'msi' as const },
    { cpus: 3, log2NumQ: 1, syncMode: 'cons' as const },
  ])('$cpus CPUs on 2^$log2NumQ ECMDQs ($syncMode): each CPU\'s commands in order on its own queue', async ({ cpus, log2NumQ, syncMode }) => {
    const seed = seedFromEnv();
    onTestFailed(() => console.error(`ecmdq seed: SMMU_SIM_SEED=${seed}`));
    const next = rng(seed);
    const c = await startCpus({ cpus, cmdq: 'ecmdq', syncMode, ecmdqLog2: 7, features: validateFeatures({ ...FULL_FEATURES, ecmdqLog2NumQ: log2NumQ }) });
    try {
      const layout: CpuQueuesLayout = c.layout;
      expect(layout.mode).toBe('ecmdq');
      const queueOf = (cpu: number): string => `ECMDQ${layout.cpuQueue[cpu]}`;
      const runs = await Promise.all(c.cpus.map((h) => h.call<RunResult>('run', { commands: 200, batch: batches(next, 12), record: true })));
      const runs2 = await Promise.all(c.cpus.map((h) => h.call<RunResult>('run', { commands: 200, batch: batches(next, 12), sync: false })));
      await Promise.all(c.cpus.map((h) => h.call('sync')));
      const { entries, lost } = c.sys.trace();
      expect(lost).toBe(0);
      checkTrace(entries, [...runs, ...runs2], queueOf);
      expect(runs.map((r) => r.queue)).toEqual(Array.from({ length: cpus }, (_, i) => queueOf(i)));
      const states = await Promise.all(c.cpus.map((h) => h.call<CpuState>('state')));
      expect(states.reduce((a, s) => a + s.counters.queueFull, 0)).toBeGreaterThan(0);
      expect(c.sys.readReg('SMMU_GERROR') ^ c.sys.readReg('SMMU_GERRORN')).toBe(0);
    } finally {
      await c.stop();
    }
  });

  it('an error on one ECMDQ stops only that queue; the others go on; it recovers through ERRACK', async () => {
    const f = FULL_FEATURES;
    const c = await startCpus({ cpus: 4, cmdq: 'ecmdq', syncMode: 'msi', ecmdqLog2: 7, features: f });
    try {
      const cons1 = ecmdqRegisterOffset(f, 1, 'CONS');
      const prod1 = ecmdqRegisterOffset(f, 1, 'PROD');
      const ok = (seq: number): Uint32Array => encodeCommandWords({ name: 'CMD_TLBI_NH_VA', ASID: 1, Address: BigInt(seq) << 12n });
      const bad = [...illegalCommand(1, 1)]; // Reserved opcode 0x08 (§4.1.1), tagged (cpu 1, seq 1)
      await c.cpus[1]!.call('issue', [ok(0), Uint32Array.from(bad), ok(2)], { sync: false });
      // ECMDQ1 halts at pointer 1 with ERR toggled and ERR_REASON = CERROR_ILL; CMDQP_ERR active.
      await c.sys.waitReg(cons1, (v) => ((v >>> 23) & 1) === 1);
      expect(hex(c.sys.readReg(cons1))).toBe('0x81800001');
      // GERROR.CMDQP_ERR follows the ERR toggle (§3.5.6.3: seeing it implies seeing ERR, not the
      // other way round), so wait for it rather than read it.
      await c.sys.waitReg('SMMU_GERROR', (g) => ((g ^ c.sys.readReg('SMMU_GERRORN')) & CMDQP_ERR) !== 0);
      // The other CPUs' queues keep going (GERROR.CMDQP_ERR does not stop them, §3.5.6.3).
      const others = await Promise.all([0, 2, 3].map((i) => c.cpus[i]!.call<RunResult>('run', { commands: 150, batch: 20, record: true })));
      expect(hex(c.sys.readReg(cons1))).toBe('0x81800001');
      // CPU 1 recovers: CMD_SYNC over the command, PROD.ERRACK := CONS.ERR, GERRORN.CMDQP_ERR.
      expect(await c.cpus[1]!.call('recover')).toBe(true);
      await c.cpus[1]!.call('sync');
      expect(hex(c.sys.readReg(prod1))).toBe('0x80800004');
      // ENACK, ERR = 1 = ERRACK, RD 4; ERR_REASON [26:24] is UNKNOWN with no error active (§6.3.109).
      expect(hex(c.sys.readReg(cons1) & ~0x0700_0000)).toBe('0x80800004');
      expect(c.sys.readReg('SMMU_GERROR') ^ c.sys.readReg('SMMU_GERRORN')).toBe(0);
      const more = await c.cpus[1]!.call<RunResult>('run', { commands: 50, batch: 10, record: true });
      const { entries } = c.sys.trace();
      const e1 = entries.filter((e) => e.queue === 'ECMDQ1');
      expect(e1.slice(0, 4).map((e) => [e.ptr, e.json.name, e.outcome])).toEqual([
        [0, 'CMD_TLBI_NH_VA', 'consumed'],
        [1, 'RESERVED_0x08', 'CERROR_ILL'],
        [1, 'CMD_SYNC', 'consumed'],
        [2, 'CMD_TLBI_NH_VA', 'consumed'],
      ]);
      checkTrace(
        entries.filter((e) => !(e.queue === 'ECMDQ1' && e.ptr < 3)),
        [...others, more],
        (cpu) => `ECMDQ${cpu}`,
      );
      const st = await c.cpus[1]!.call<CpuState>('state');
      expect(st.log).toEqual([{ kind: 'cmdq-skip', queue: 'ECMDQ1', cons: 1, code: CERROR_ILL, name: 'CERROR_ILL', words: bad, replacement: SEV_SYNC }]);
    } finally {
      await c.stop();
    }
  });
});
