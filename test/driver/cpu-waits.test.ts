/**
 * How guest CPUs (src/driver/cmdq-mp.ts, ecmdq.ts) wait on the SMMU, one thread: the SMMU is an
 * MmioTarget the test drives by hand, or nobody at all (a device thread that is not running: asleep,
 * or waiting for a core). Counts, not times: how often a wait looked at the registers, whether it
 * returned or ran into its deadline, and what state it left.
 *
 * - A CPU refreshing the shadow cons under the exclusive lock (Linux's poll_until_not_full) reads
 *   SMMU_CMDQ_CONS without first waiting for the SMMU to apply its own doorbells: the lock must
 *   not be held across another thread's progress (the 2-producer spin stalls of the benchmark).
 * - A CMD_SYNC wait spins through its hybrid budget only while the SMMU shows it is running (its
 *   PROD has passed the CMD_SYNC, or its CONS moves); otherwise it sleeps at once, so that a
 *   device thread waiting for this CPU's core gets it (the ~0.4 ms per CMD_SYNC of the benchmark
 *   when the two shared a core).
 *
 * Register fields: §6.3.27-28 SMMU_CMDQ_PROD/CONS (WR/RD with the wrap bit above the index),
 * §6.3.108-109 SMMU_ECMDQ_PROD/CONS (EN [31], ERRACK/ERR [23]), §4.7.3 CMD_SYNC MSI completion.
 */
import { describe, expect, it } from 'vitest';
import { Board } from '../../src/mem/board.ts';
import { MmioPort, MmioTarget, type MmioWrite } from '../../src/mem/mmio.ts';
import { PhysMem } from '../../src/mem/phys.ts';
import { WaitTimeout, type WaitPolicy } from '../../src/mem/wait.ts';
import type { RegisterPort } from '../../src/driver/port.ts';
import { buildSync, consSyncCs } from '../../src/driver/cmdq.ts';
import { CpuContext, MpProducer, MpState, SMMU_RUNNING_SPIN, shadowCons, type Producer, type QueueDesc } from '../../src/driver/cmdq-mp.ts';
import { EcmdqProducer } from '../../src/driver/ecmdq.ts';
import { encodeCommandWords } from '../../src/spec/command-codec.ts';
import { FULL_FEATURES } from '../../src/spec/features.ts';
import { REG, ecmdqRegisterOffset, smmuRegWindow } from '../../src/spec/registers.ts';

const RAM = 0x4000_0000;
const KERNEL_PA = RAM + 0x100;
const QUEUE_PA = RAM + 0x1_0000;
const STATE_PA = RAM + 0x2_0000;
/** Linux's smallest multi-producer queue: 128 entries, wrap bit 7 (§3.5.1). */
const LOG2 = 7;
const CMDQ_PROD = REG.SMMU_CMDQ_PROD.offset;
const CMDQ_CONS = REG.SMMU_CMDQ_CONS.offset;
const GERROR = REG.SMMU_GERROR.offset;
/** A hybrid budget far above SMMU_RUNNING_SPIN, so the two behaviours cannot be confused. */
const SPIN = 100_000;
const POLICY: WaitPolicy = { mode: 'hybrid', spin: SPIN, timeoutMs: 20 };
const TLBI = encodeCommandWords({ name: 'CMD_TLBI_NH_ASID', VMID: 0, ASID: 1 });

/** The CPU's MmioPort, counting the polls of each register (peek32 is what a poll loop reads). */
class CountingPort implements RegisterPort {
  readonly peeks = new Map<number, number>();
  constructor(readonly inner: MmioPort) {}
  count(off: number): number {
    return this.peeks.get(off) ?? 0;
  }
  write32(off: number, v: number): void {
    this.inner.write32(off, v);
  }
  write64Parts(off: number, lo: number, hi: number): void {
    this.inner.write64Parts(off, lo, hi);
  }
  read32(off: number): number {
    return this.inner.read32(off);
  }
  peek32(off: number): number {
    this.peeks.set(off, this.count(off) + 1);
    return this.inner.peek32(off);
  }
  waitReg(off: number, ready: (v: number) => boolean, describe: () => string, policy?: WaitPolicy): number {
    return this.inner.waitReg(off, ready, describe, policy);
  }
  drainOwn(): void {
    this.inner.drainOwn();
  }
}

function rig(syncMode: 'msi' | 'cons') {
  const f = FULL_FEATURES;
  const board = Board.create({ windows: [{ name: 'smmu', bytes: smmuRegWindow(f), base: 0x0905_0000 }], ramBytes: 1 << 20 });
  const mem = new PhysMem(board);
  const mmio = new MmioPort(board, 'smmu', POLICY);
  const port = new CountingPort(mmio);
  /** The SMMU's side of the window; nothing takes writes unless the test does. */
  const smmu = new MmioTarget(board, 'smmu');
  const ctx = new CpuContext(0, mem, port, POLICY, syncMode, buildSync(consSyncCs(f.sev)), KERNEL_PA);
  /** The SMMU takes the pending register writes and publishes them, consuming nothing (§6.3.27: PROD is software's). */
  const applyWrites = (): void => {
    const w: MmioWrite = { off: 0, wide: false, dma: false, lo: 0, hi: 0 };
    while (smmu.take(w)) smmu.set32(w.off, w.lo);
    smmu.done();
  };
  return { mem, mmio, port, smmu, ctx, applyWrites };
}

function cmdq(mpState = STATE_PA): QueueDesc {
  return { name: 'CMDQ', ecmdq: -1, base: QUEUE_PA, log2: LOG2, prodOff: CMDQ_PROD, consOff: CMDQ_CONS, mpState, errack: 0 };
}

function ecmdq0(): QueueDesc {
  const f = FULL_FEATURES;
  return { name: 'ECMDQ0', ecmdq: 0, base: QUEUE_PA, log2: LOG2, prodOff: ecmdqRegisterOffset(f, 0, 'PROD'), consOff: ecmdqRegisterOffset(f, 0, 'CONS'), mpState: -1, errack: 0 };
}

/** Insert one command and a CMD_SYNC, then wait for it; the SMMU never completes it. */
function syncThatNeverCompletes(p: Producer, before?: () => void): void {
  const ptr = p.insert([TLBI], 0, 1, true);
  expect(ptr).toBe(1);
  before?.();
  expect(() => p.waitSync(ptr)).toThrow(WaitTimeout);
}

describe('the exclusive refresh of the shadow cons (poll_until_not_full)', () => {
  it('reads SMMU_CMDQ_CONS without waiting for the SMMU to apply this CPU’s doorbell, and leaves the lock', () => {
    const r = rig('cons');
    // Shadow: prod 0x80 (index 0, wrap 1), cons 0: full (§3.5.1). The SMMU has consumed 0x40
    // entries since; this CPU's last doorbell is still on the bus (no device thread runs).
    const st = new MpState(r.mem, STATE_PA, LOG2);
    st.init(0x80, 0);
    r.smmu.set32(CMDQ_CONS, 0x40);
    r.port.write32(CMDQ_PROD, 0x80);
    const cpu = new MpProducer(r.ctx, cmdq());
    const res = cpu.reserve(8);
    expect(res).toEqual({ head: 0x80, end: 0x88, owner: true });
    expect(shadowCons(st.load())).toBe(0x40);
    expect(st.lockValue()).toBe(0);
    expect(r.ctx.counters.queueFull).toBe(1);
    // The doorbell is still not applied: the CONS read did not need it.
    expect(r.mmio.isApplied()).toBe(false);
  });
});

describe('CMD_SYNC waits spin only while the SMMU runs', () => {
  it('ECMDQ, MSI: the SMMU never takes the doorbell: SMMU_RUNNING_SPIN polls, then sleeps until the deadline', () => {
    const r = rig('msi');
    const q = ecmdq0();
    const cpu = new EcmdqProducer(r.ctx, q);
    syncThatNeverCompletes(cpu);
    // One look at PROD per poll of the first part (and one for the timeout message); CONS is
    // read by its own check and by errorPending, then only a few times per 1 ms sleep slice up to
    // the 20 ms deadline.
    expect(r.port.count(q.prodOff)).toBe(SMMU_RUNNING_SPIN + 1);
    expect(r.port.count(q.consOff)).toBeGreaterThanOrEqual(2 * SMMU_RUNNING_SPIN);
    expect(r.port.count(q.consOff)).toBeLessThan(SPIN / 10);
  });

  it('ECMDQ, MSI: the SMMU has the doorbell (its PROD passed the CMD_SYNC): the whole hybrid budget is spun', () => {
    const r = rig('msi');
    const q = ecmdq0();
    const cpu = new EcmdqProducer(r.ctx, q);
    syncThatNeverCompletes(cpu, r.applyWrites);
    // PROD is read once by the first part, once for the timeout message.
    expect(r.port.count(q.prodOff)).toBe(2);
    expect(r.port.count(q.consOff)).toBeGreaterThanOrEqual(SPIN);
  });

  it('CMDQ, CONS polling: the SMMU never takes the doorbell: the wait, its drain of this CPU’s own writes included, sleeps', () => {
    const r = rig('cons');
    new MpState(r.mem, STATE_PA, LOG2).init(0, 0);
    const cpu = new MpProducer(r.ctx, cmdq());
    syncThatNeverCompletes(cpu);
    // The deadline passes in MmioPort's drain, whose message does not read PROD.
    expect(r.port.count(CMDQ_PROD)).toBe(SMMU_RUNNING_SPIN);
    // errorPending reads SMMU_GERROR once per poll: the first part, then a few per sleep slice.
    expect(r.port.count(GERROR)).toBeLessThan(SPIN / 10);
    // The drain of the doorbell write (MmioPort.waitReg) slept too: it did not spin SPIN polls.
    expect(r.mmio.polls).toBeLessThan(SPIN / 10);
    expect(r.mmio.isApplied()).toBe(false);
  });

  it('CMDQ, CONS polling: the SMMU has the doorbell: the whole hybrid budget is spun', () => {
    const r = rig('cons');
    new MpState(r.mem, STATE_PA, LOG2).init(0, 0);
    const cpu = new MpProducer(r.ctx, cmdq());
    syncThatNeverCompletes(cpu, r.applyWrites);
    expect(r.port.count(CMDQ_PROD)).toBe(2);
    expect(r.port.count(GERROR)).toBeGreaterThanOrEqual(SPIN);
  });

  it('a completed CMD_SYNC returns from the first part, without sleeping', () => {
    const r = rig('msi');
    const q = ecmdq0();
    const cpu = new EcmdqProducer(r.ctx, q);
    const ptr = cpu.insert([TLBI], 0, 1, true);
    // The SMMU consumes both and writes the MSI (MSIData 0 over the CMD_SYNC's first word, §4.7.3).
    r.applyWrites();
    r.smmu.set32(q.consOff, 2);
    r.mem.write32(QUEUE_PA + 16 * ptr, 0);
    cpu.waitSync(ptr);
    expect(r.ctx.counters.waits).toBe(0);
    expect(r.ctx.counters.syncs).toBe(1);
  });
});
