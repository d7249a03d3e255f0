import { afterEach, describe, expect, it } from 'vitest';
import { REG, encode32 } from '../../src/spec/registers.ts';
import { HDR } from '../../src/mem/board.ts';
import { parseFeatures } from '../../src/spec/features.ts';
import { encodeEvent, decodeEvent } from '../../src/spec/events.ts';
import type { System } from '../../src/system/system.ts';
import { ackErrors, bringUp, cmd, putAll, rawSystem, ring_ } from '../helpers/raw.ts';

let sys: System | undefined;
afterEach(async () => {
  await sys?.stop();
  sys = undefined;
});

const hdr = (s: System, i: number) => Atomics.load(s.board.i32, i);

describe('CMD_SYNC completion signals (IHI0070 G.b §4.7.3)', () => {
  it('SIG_IRQ writes MSIData to MSIAddress (Linux: its own slot, data 0) and pulses the CMD_SYNC line', async () => {
    sys = await rawSystem();
    const q = await bringUp(sys, 4);
    const slot = q.cmdqBase + 2 * 16; // the sync will sit at index 2
    const sync = cmd({ name: 'CMD_SYNC', CS: 'SIG_IRQ', MSH: 3, MSIAttr: 0xf, MSIAddress: slot, MSIData: 0 });
    const lines = hdr(sys, HDR.IRQ_CMD_SYNC);
    const prod = putAll(sys, q, 0, [cmd({ name: 'CMD_TLBI_NH_ALL', VMID: 1 }), cmd({ name: 'CMD_TLBI_NSNH_ALL' }), sync]);
    expect(sys.mem.read32(slot)).toBe(sync[0]); // the opcode word before completion
    await ring_(sys, prod);
    // CONS passes the sync no later than the MSI is visible (§4.7.3); the MSI follows.
    await sys.waitMem(slot, (v) => v === 0); // the MSI overwrote it with MSIData
    expect(sys.mem.read32(slot + 4)).toBe(sync[1]); // one 32-bit write, no more
    expect(await sys.waitLine(HDR.IRQ_CMD_SYNC, (v) => v !== lines)).toBe(lines + 1);
    expect(sys.counter('MSI_WRITES')).toBe(1);
  });

  it('writes an arbitrary MSIData to a separate MSI target', async () => {
    sys = await rawSystem();
    const q = await bringUp(sys, 3);
    const target = sys.board.layout.ram.base + 0x40;
    const prod = putAll(sys, q, 0, [cmd({ name: 'CMD_SYNC', CS: 'SIG_IRQ', MSIAddress: target, MSIData: 0xdead_beef })]);
    await ring_(sys, prod);
    expect(await sys.waitMem(target, (v) => v !== 0)).toBe(0xdead_beef);
  });

  it('an MSI outside memory aborts: the sync still completes, GERROR.MSI_CMDQ_ABT_ERR activates', async () => {
    sys = await rawSystem();
    const q = await bringUp(sys, 3);
    const prod = putAll(sys, q, 0, [cmd({ name: 'CMD_SYNC', CS: 'SIG_IRQ', MSIAddress: 0x1000 }), cmd({ name: 'CMD_TLBI_NSNH_ALL' })]);
    const cons = await ring_(sys, prod);
    expect(cons & 0xfffff).toBe(2);
    expect(sys.readReg('SMMU_GERROR')).toBe(1 << REG.SMMU_GERROR.f.MSI_CMDQ_ABT_ERR.lsb);
    await ackErrors(sys);
    expect(sys.readReg('SMMU_GERRORN')).toBe(sys.readReg('SMMU_GERROR'));
  });

  it('SIG_SEV sends a WFE wake-up event when IDR0.SEV == 1, and acts as SIG_NONE otherwise', async () => {
    sys = await rawSystem();
    let q = await bringUp(sys, 3);
    let before = hdr(sys, HDR.SEV);
    await ring_(sys, putAll(sys, q, 0, [cmd({ name: 'CMD_SYNC', CS: 'SIG_SEV' })]));
    expect(await sys.waitLine(HDR.SEV, (v) => v !== before)).toBe(before + 1);
    await sys.stop();

    sys = await rawSystem({ features: parseFeatures('no-sev') });
    q = await bringUp(sys, 3);
    before = hdr(sys, HDR.SEV);
    const irq = hdr(sys, HDR.IRQ_CMD_SYNC);
    // A later SIG_IRQ sync proves the earlier ones completed (syncs complete in order).
    await ring_(sys, putAll(sys, q, 0, [cmd({ name: 'CMD_SYNC', CS: 'SIG_SEV' }), cmd({ name: 'CMD_SYNC', CS: 'SIG_NONE' }), cmd({ name: 'CMD_SYNC', CS: 'SIG_IRQ' })]));
    await sys.waitLine(HDR.IRQ_CMD_SYNC, (v) => v === irq + 1);
    expect(hdr(sys, HDR.SEV)).toBe(before); // neither SIG_SEV (no IDR0.SEV) nor SIG_NONE signalled
    expect(sys.counter('CMD_SYNCS')).toBe(3);
  });

  it('without IDR0.MSI, SIG_IRQ writes no MSI but still pulses the wired line', async () => {
    sys = await rawSystem({ features: parseFeatures('no-msi,no-ecmdq') });
    const q = await bringUp(sys, 3);
    const target = sys.board.layout.ram.base + 0x80;
    sys.mem.write32(target, 7);
    await ring_(sys, putAll(sys, q, 0, [cmd({ name: 'CMD_SYNC', CS: 'SIG_IRQ', MSIAddress: target, MSIData: 1 })]));
    await sys.waitLine(HDR.IRQ_CMD_SYNC, (v) => v === 1);
    expect(sys.mem.read32(target)).toBe(7);
    expect(sys.counter('MSI_WRITES')).toBe(0);
  });
});

describe('event queue (§7.2, §7.4)', () => {
  const record = (sid: number) => encodeEvent({ name: 'C_BAD_STREAMID', StreamID: sid });
  const P = REG.SMMU_EVENTQ_PROD.f;

  it('writes records at EVENTQ_PROD with wrap, and interrupts on empty -> non-empty', async () => {
    sys = await rawSystem();
    const q = await bringUp(sys, 3, 1); // two-entry event queue
    await sys.writeReg('SMMU_IRQ_CTRL', encode32(REG.SMMU_IRQ_CTRL, { EVENTQ_IRQEN: 1 }));
    await sys.injectEvent(record(0x11));
    await sys.injectEvent(record(0x22));
    expect(sys.readReg('SMMU_EVENTQ_PROD')).toBe(0b10); // index 0, wrap 1
    expect(hdr(sys, HDR.IRQ_EVENTQ)).toBe(1); // only the first made the queue non-empty
    const first = new Uint32Array(8);
    sys.mem.readWords(q.evtqBase, first);
    expect(decodeEvent(first).fields.StreamID).toBe(0x11);
    expect([...first]).toEqual([...record(0x11)]);
    sys.mem.readWords(q.evtqBase + 32, first);
    expect(decodeEvent(first).fields.StreamID).toBe(0x22);
    // Consume both; the next record wraps to index 0 and interrupts again.
    await sys.writeReg('SMMU_EVENTQ_CONS', 0b10);
    await sys.injectEvent(record(0x33));
    expect(sys.readReg('SMMU_EVENTQ_PROD')).toBe(0b11);
    sys.mem.readWords(q.evtqBase, first);
    expect(decodeEvent(first).fields.StreamID).toBe(0x33);
    expect(hdr(sys, HDR.IRQ_EVENTQ)).toBe(2);
  });

  it('overflows: records are discarded, OVFLG toggles once until acknowledged by OVACKFLG', async () => {
    sys = await rawSystem();
    await bringUp(sys, 3, 1);
    for (const sid of [1, 2, 3, 4]) await sys.injectEvent(record(sid));
    const prod = sys.readReg('SMMU_EVENTQ_PROD');
    expect(prod >>> P.OVFLG.lsb).toBe(1);
    expect(prod & 0b11).toBe(0b10);
    expect(sys.counter('EVENTS_WRITTEN')).toBe(2);
    expect(sys.counter('EVENTS_DROPPED')).toBe(2);
    // Software drains and acknowledges the overflow; new records flow, the flag stays as acked.
    await sys.writeReg('SMMU_EVENTQ_CONS', (1 << REG.SMMU_EVENTQ_CONS.f.OVACKFLG.lsb) | 0b10);
    await sys.injectEvent(record(5));
    expect(sys.readReg('SMMU_EVENTQ_PROD')).toBe(((1 << P.OVFLG.lsb) | 0b11) >>> 0);
    // A second overflow toggles the flag back to 0.
    for (const sid of [6, 7]) await sys.injectEvent(record(sid));
    expect(sys.readReg('SMMU_EVENTQ_PROD') >>> P.OVFLG.lsb).toBe(0);
  });

  it('discards records without overflow while EVENTQEN == 0', async () => {
    sys = await rawSystem();
    await sys.injectEvent(record(9));
    expect(sys.readReg('SMMU_EVENTQ_PROD')).toBe(0);
    expect(sys.counter('EVENTS_DROPPED')).toBe(1);
  });

  it('activates GERROR.EVENTQ_ABT_ERR when the queue lies outside memory', async () => {
    sys = await rawSystem();
    await sys.writeReg('SMMU_EVENTQ_BASE', 0x2000_0000n | 2n);
    await sys.writeReg('SMMU_CR0', encode32(REG.SMMU_CR0, { EVENTQEN: 1 }));
    await sys.injectEvent(record(1));
    expect(sys.readReg('SMMU_GERROR')).toBe(1 << REG.SMMU_GERROR.f.EVENTQ_ABT_ERR.lsb);
  });
});
