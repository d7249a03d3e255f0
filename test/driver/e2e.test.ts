/**
 * Smoke test: the guest driver and the SMMU device model in their own workers, meeting only in
 * the board's shared memory (src/system). The driver brings the SMMU up (§3.11), issues batches,
 * recovers a command error (§7.1) and drains injected events (§7.4), in both CMD_SYNC modes.
 */
import { describe, expect, it } from 'vitest';
import { System } from '../../src/system/system.ts';
import { REG } from '../../src/spec/registers.ts';
import { CERROR_ILL } from '../../src/spec/cerror.ts';
import type { DrainedEvents } from '../../src/driver/driver.ts';

const POLICY = { mode: 'hybrid' as const, spin: 2000, timeoutMs: 5000 };
/** CMDQ pointer mask for the driver's default 256-entry queue: index [7:0] and wrap bit 8. */
const PTR_256 = 0x1ff;

describe.each(['msi', 'cons'] as const)('guest driver and SMMU device, %s mode', (syncMode) => {
  it('brings the SMMU up, then issues 130 commands as 3 batches and a CMD_SYNC', async () => {
    const sys = await System.start({ syncMode, policy: POLICY });
    try {
      // CR0ACK (§6.3.10): SMMUEN | EVENTQEN | CMDQEN | ATSCHK (the default features have ATS).
      expect(sys.readReg('SMMU_CR0ACK')).toBe(0x1d);
      expect(sys.readReg('SMMU_IRQ_CTRLACK')).toBe(0x5);
      const cmds = Array.from({ length: 130 }, (_, i) => ({ name: 'CMD_TLBI_NH_ASID', ASID: i, VMID: 1 }));
      const res = await sys.driver.issue(cmds);
      expect(res).toMatchObject({ commands: 130, batches: 3, doorbells: 3, errors: [] });
      // Reset used pointers 0..5 (three commands, three syncs); 130 + 1 more: CONS = 137.
      expect(sys.readReg('SMMU_CMDQ_CONS') & PTR_256).toBe(137);
      expect(sys.counter('CMD_SYNCS')).toBe(4);
    } finally {
      await sys.stop();
    }
  });

  it('recovers a CERROR_ILL by replacing the command with a CMD_SYNC, and goes on', async () => {
    const sys = await System.start({ syncMode, policy: POLICY });
    try {
      // Opcode 0x08 is Reserved (§4.1.1): CERROR_ILL at pointer 7.
      const res = await sys.driver.issue([{ name: 'CMD_TLBI_NSNH_ALL' }, [0x08, 0, 0, 0], { name: 'CMD_TLBI_NSNH_ALL' }]);
      expect(res.errors).toEqual([{ index: 7, code: CERROR_ILL, name: 'CERROR_ILL' }]);
      const st = await sys.driver.state();
      expect(st.log).toContainEqual({ kind: 'cmdq-skip', cons: 7, code: CERROR_ILL, name: 'CERROR_ILL', words: [0x08, 0, 0, 0], replacement: [0x0fc0_2046, 0, 0, 0] });
      expect(sys.readReg('SMMU_GERROR') ^ sys.readReg('SMMU_GERRORN')).toBe(0);
      expect(sys.readReg('SMMU_CMDQ_CONS') & PTR_256).toBe(10);
      // The queue works afterwards.
      expect((await sys.driver.sync()).errors).toEqual([]);
    } finally {
      await sys.stop();
    }
  });

  it('drains events the SMMU recorded', async () => {
    const sys = await System.start({ syncMode, policy: POLICY });
    try {
      // Inject one F_TRANSLATION (0x10) for StreamID 0x42 through the model's IMPDEF hook.
      const rec = [0x10, 0x42, 0, 0, 0, 0, 0, 0];
      await sys.injectEvent(rec);
      const ev = (await sys.driver.drainEvents()) as DrainedEvents;
      expect(ev.overflow).toBe(false);
      expect(ev.map((e) => [e.id, e.name, e.fields.StreamID, [...e.words]])).toEqual([[0x10, 'F_TRANSLATION', 0x42, rec]]);
      // The CONS write is posted (the driver does not wait for it): wait until the SMMU applied it.
      expect(await sys.waitReg(REG.SMMU_EVENTQ_CONS.name, (v) => v === 1)).toBe(1);
    } finally {
      await sys.stop();
    }
  });

  it('waits for space in a full queue and never overwrites: 1000 commands through 8 entries, each once, in order', async () => {
    const sys = await System.start({ syncMode, policy: POLICY, cmdqLog2: 3, trace: true });
    try {
      const cmds = Array.from({ length: 1000 }, (_, i) => ({ name: 'CMD_TLBI_NH_ASID', ASID: i, VMID: 2 }));
      const res = await sys.driver.issue(cmds);
      expect(res.errors).toEqual([]);
      const asids = sys.trace().entries.filter((e) => e.json.name === 'CMD_TLBI_NH_ASID').map((e) => e.words[1]! >>> 16);
      expect(asids).toEqual(Array.from({ length: 1000 }, (_, i) => i));
      expect(sys.trace().lost).toBe(0);
    } finally {
      await sys.stop();
    }
  });
});
