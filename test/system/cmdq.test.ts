import { afterEach, describe, expect, it } from 'vitest';
import { REG } from '../../src/spec/registers.ts';
import { HDR } from '../../src/mem/board.ts';
import { CERROR_ABT, CERROR_ILL } from '../../src/spec/cerror.ts';
import * as ring from '../../src/ring/index.ts';
import type { System } from '../../src/system/system.ts';
import { ackErrors, bringUp, cmd, consumed, isCmdqError, put, putAll, rawSystem, ring_ } from '../helpers/raw.ts';

const ERR = REG.SMMU_CMDQ_CONS.f.ERR;
const errOf = (cons: number) => (cons >>> ERR.lsb) & 0x7f;

let sys: System | undefined;
afterEach(async () => {
  await sys?.stop();
  sys = undefined;
});

/** n distinct, legal commands: TLBI_NH_ASID with ASID = i, so the trace shows which ran. */
function tlbis(n: number, from = 0): Uint32Array[] {
  return Array.from({ length: n }, (_, i) => cmd({ name: 'CMD_TLBI_NH_ASID', VMID: 1, ASID: (from + i) & 0xffff }));
}
const asidOf = (w: readonly number[]) => w[1]! >>> 16;

describe('CMDQ ring semantics (IHI0070 G.b §3.5.1, §6.3.27-28)', () => {
  // The smallest queue (one entry, wrap is bit 0), small ones, and the largest (2^19 entries).
  // Each run starts 40 entries before the end of a lap so that the largest queue wraps too.
  for (const log2 of [0, 1, 4, 19]) {
    it(`consumes in order across the wrap of a 2^${log2}-entry queue, flipping the wrap bit`, async () => {
      sys = await rawSystem();
      const n = ring.entries(log2);
      const start = ring.inc(0, Math.max(0, n - 40), log2);
      const q = await bringUp(sys, log2, 2, start);
      let prod = start;
      let sent = 0;
      const wraps = new Set<number>();
      while (sent < 100) {
        const batch = Math.min(32, 100 - sent, ring.space(prod, sys.readReg('SMMU_CMDQ_CONS'), log2));
        prod = putAll(sys, q, prod, tlbis(batch, sent));
        sent += batch;
        const cons = await ring_(sys, prod);
        expect(cons & ring.ptrMask(log2)).toBe(prod);
        wraps.add(ring.wrap(cons, log2));
      }
      expect(consumed(sys).map((c) => asidOf(c.words))).toEqual(Array.from({ length: 100 }, (_, i) => i));
      expect(wraps).toEqual(new Set([0, 1]));
      expect(isCmdqError(sys)).toBe(false);
    });
  }

  it('consumes a full queue (PROD index == CONS index, wrap differs), sends SEV when it drains, and nothing when empty', async () => {
    sys = await rawSystem();
    const q = await bringUp(sys, 3);
    const prod = putAll(sys, q, 0, tlbis(8));
    expect(ring.isFull(prod, 0, 3)).toBe(true);
    const sev = Atomics.load(sys.board.i32, HDR.SEV);
    expect(await ring_(sys, prod)).toBe(0x8); // index 0, wrap 1
    // IDR0.SEV: a WFE wake-up when a queue that was full becomes non-full (§4.1).
    expect(await sys.waitLine(HDR.SEV, (v) => v !== sev)).toBe(sev + 1);
    // An empty doorbell (PROD == CONS) consumes nothing.
    await sys.writeReg('SMMU_CMDQ_PROD', prod);
    expect(consumed(sys)).toHaveLength(8);
    expect(sys.readReg('SMMU_CMDQ_CONS')).toBe(0x8);
  });

  it('takes a PROD that jumps several laps ahead as its index and wrap only', async () => {
    sys = await rawSystem();
    const q = await bringUp(sys, 2);
    putAll(sys, q, 0, tlbis(3));
    // 0x13 = 0b1_0011 with LOG2SIZE 2: bit 4 is RES0 above the wrap bit, wrap (bit 2) = 0,
    // index 3. The device uses index and wrap: three entries.
    await sys.writeReg('SMMU_CMDQ_PROD', 0x13);
    await sys.waitReg('SMMU_CMDQ_CONS', (v) => (v & 0x7) === 3);
    expect(consumed(sys).map((c) => asidOf(c.words))).toEqual([0, 1, 2]);
    expect(sys.readReg('SMMU_CMDQ_PROD')).toBe(0x13); // PROD reads back as written
  });
});

describe('command errors (§7.1)', () => {
  it('CERROR_ILL: stops on the bad command, ERR set, GERROR toggled; nothing after it runs until GERRORN', async () => {
    sys = await rawSystem();
    const q = await bringUp(sys, 4);
    const bad = cmd({ name: 'CMD_SYNC', CS: 3 });
    const prod = putAll(sys, q, 0, [...tlbis(2), bad, ...tlbis(2, 100)]);
    const cons = await ring_(sys, prod);
    expect(cons & 0xfffff).toBe(2); // RD on the bad command
    expect(errOf(cons)).toBe(CERROR_ILL);
    expect(sys.readReg('SMMU_GERROR') & 1).toBe(1);
    expect(sys.readReg('SMMU_GERRORN') & 1).toBe(0);
    expect(consumed(sys).map((c) => asidOf(c.words))).toEqual([0, 1]);
    expect(sys.trace().entries.at(-1)!.outcome).toBe('CERROR_ILL');

    // More doorbells while the error is active consume nothing.
    await sys.writeReg('SMMU_CMDQ_PROD', prod);
    expect(sys.readReg('SMMU_CMDQ_CONS') & 0xfffff).toBe(2);

    // Linux's recovery: overwrite the bad slot with a CMD_SYNC, then acknowledge.
    put(sys, q, 2, cmd({ name: 'CMD_SYNC' }));
    await ackErrors(sys);
    await sys.waitReg('SMMU_CMDQ_CONS', (v) => (v & 0xfffff) === prod);
    const names = consumed(sys).map((c) => c.name);
    expect(names).toEqual(['CMD_TLBI_NH_ASID', 'CMD_TLBI_NH_ASID', 'CMD_SYNC', 'CMD_TLBI_NH_ASID', 'CMD_TLBI_NH_ASID']);
    expect(consumed(sys).slice(3).map((c) => asidOf(c.words))).toEqual([100, 101]); // each exactly once
  });

  it('lets software move PROD back as far as CONS while the error is active, discarding commands', async () => {
    sys = await rawSystem();
    const q = await bringUp(sys, 4);
    const prod = putAll(sys, q, 0, [...tlbis(1), cmd({ name: 'CMD_SYNC', CS: 3 }), ...tlbis(3, 50)]);
    await ring_(sys, prod);
    expect(sys.readReg('SMMU_CMDQ_CONS') & 0xfffff).toBe(1);
    await sys.writeReg('SMMU_CMDQ_PROD', 1); // discard the bad command and everything after it
    await ackErrors(sys);
    const next = putAll(sys, q, 1, tlbis(1, 77));
    await ring_(sys, next);
    expect(consumed(sys).map((c) => asidOf(c.words))).toEqual([0, 77]);
  });

  it('resumes after GERRORN even without a new PROD write, and CMDQEN does not acknowledge', async () => {
    sys = await rawSystem();
    const q = await bringUp(sys, 3);
    const prod = putAll(sys, q, 0, [cmd({ name: 'CMD_SYNC', CS: 3 }), ...tlbis(1)]);
    await ring_(sys, prod);
    put(sys, q, 0, cmd({ name: 'CMD_SYNC' }));
    // Toggling CMDQEN off and on leaves the error active (§6.3.28).
    await sys.writeReg('SMMU_CR0', REG.SMMU_CR0.f.EVENTQEN ? 1 << REG.SMMU_CR0.f.EVENTQEN.lsb : 0);
    await sys.writeReg('SMMU_CR0', (1 << REG.SMMU_CR0.f.CMDQEN.lsb) | (1 << REG.SMMU_CR0.f.EVENTQEN.lsb));
    expect(isCmdqError(sys)).toBe(true);
    expect(sys.readReg('SMMU_CMDQ_CONS') & 0xfffff).toBe(0);
    await ackErrors(sys);
    await sys.waitReg('SMMU_CMDQ_CONS', (v) => (v & 0xf) === prod);
    expect(consumed(sys).map((c) => c.name)).toEqual(['CMD_SYNC', 'CMD_TLBI_NH_ASID']);
  });

  it('CERROR_ABT: a queue outside physical memory aborts the fetch; CONS stays; GERROR toggles once', async () => {
    sys = await rawSystem();
    await sys.writeReg('SMMU_CMDQ_BASE', 0x1000_0000n | 4n); // below RAM at 0x4000_0000
    await sys.writeReg('SMMU_CMDQ_PROD', 0);
    await sys.writeReg('SMMU_CMDQ_CONS', 0);
    await sys.writeReg('SMMU_CR0', 1 << REG.SMMU_CR0.f.CMDQEN.lsb);
    await sys.writeReg('SMMU_CMDQ_PROD', 2);
    // GERROR becomes active only after CONS.ERR holds the code (§7.1), so wait for GERROR.
    await sys.waitReg('SMMU_GERROR', (v) => v !== 0);
    const cons = sys.readReg('SMMU_CMDQ_CONS');
    expect(errOf(cons)).toBe(CERROR_ABT);
    expect(cons & 0xfffff).toBe(0);
    expect(sys.readReg('SMMU_GERROR')).toBe(1);
    // A second doorbell while active does not toggle GERROR again.
    await sys.writeReg('SMMU_CMDQ_PROD', 3);
    expect(sys.readReg('SMMU_GERROR')).toBe(1);
    expect(sys.counter('COMMANDS_CONSUMED')).toBe(0);
  });
});
