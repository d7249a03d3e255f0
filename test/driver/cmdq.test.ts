/**
 * The driver's device-free pieces: the CMD_SYNC words it inserts, the MSI address it aims at the
 * sync's own slot, the command-error actions and the event-queue CONS/OVACKFLG arithmetic.
 * Hand-derived vectors cite IHI0070 G.b §4.7.3 (CMD_SYNC: Opcode [7:0], CS [13:12], MSH [23:22],
 * MSIAttr [27:24], MSIData [63:32], MSIAddress[55:2] at [119:66]), §7.1, §7.4, §6.3.95/96.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { decodeCommand, encodeCommandWords } from '../../src/spec/command-codec.ts';
import { CERROR_ABT, CERROR_ATC_INV_SYNC, CERROR_ILL, CERROR_NONE } from '../../src/spec/cerror.ts';
import { CS_SIG_IRQ, CS_SIG_NONE, CS_SIG_SEV } from '../../src/spec/commands.ts';
import {
  CMDQ_BATCH_ENTRIES,
  MSI_SYNC_TEMPLATE,
  SYNC_MSH_ISH,
  SYNC_MSIADDRESS,
  SYNC_MSIATTR_OIWB,
  buildSync,
  cmdqErrorAction,
  consSyncCs,
  putFieldNumber,
  writeMsiSync,
} from '../../src/driver/cmdq.ts';
import { planEventDrain } from '../../src/driver/events.ts';

const hexWords = (w: ArrayLike<number>): string[] => Array.from(w, (x) => `0x${(x >>> 0).toString(16).padStart(8, '0')}`);

describe('CMD_SYNC forms (§4.7.3)', () => {
  it('uses Linux constants: MSH = ISH (0b11), MSIAttr = OIWB (0b1111), batches of 64', () => {
    expect(SYNC_MSH_ISH).toBe(3);
    expect(SYNC_MSIATTR_OIWB).toBe(0xf);
    expect(CMDQ_BATCH_ENTRIES).toBe(64);
  });

  it('cons mode with SEV: 0x46 | SIG_SEV<<12 (0x2000) | ISH<<22 (0xc00000) | 0xf<<24', () => {
    expect(hexWords(buildSync(consSyncCs(true)))).toEqual(['0x0fc02046', '0x00000000', '0x00000000', '0x00000000']);
  });

  it('cons mode without SEV: CS = SIG_NONE', () => {
    expect(consSyncCs(false)).toBe(CS_SIG_NONE);
    expect(consSyncCs(true)).toBe(CS_SIG_SEV);
    expect(hexWords(buildSync(consSyncCs(false)))).toEqual(['0x0fc00046', '0x00000000', '0x00000000', '0x00000000']);
  });

  it('MSI mode: CS = SIG_IRQ (0x1000), MSIData 0, MSIAddress = the slot PA in words 2..3', () => {
    expect(hexWords(MSI_SYNC_TEMPLATE)).toEqual(['0x0fc01046', '0x00000000', '0x00000000', '0x00000000']);
    const u32 = new Uint32Array(12).fill(0xdeadbeef);
    // Slot PA 0x4000_4230: bits [31:2] land in word 2 bits [31:2] (flat bit 66 = PA bit 2),
    // PA bits [55:32] in word 3 bits [23:0].
    writeMsiSync(u32, 4, 0x4000_4230);
    expect(hexWords(u32.subarray(4, 8))).toEqual(['0x0fc01046', '0x00000000', '0x40004230', '0x00000000']);
    expect(u32[3]).toBe(0xdeadbeef);
    expect(u32[8]).toBe(0xdeadbeef);
    const d = decodeCommand(u32, 4);
    expect(d.name).toBe('CMD_SYNC');
    expect(d.fields.CS).toBe(CS_SIG_IRQ);
    expect(d.fields.MSIAddress).toBe(0x4000_4230n);
  });

  it('MSI mode above 4 GiB: PA 0x000f_ffff_ffff_fff0 puts 0xfffff in word 3', () => {
    const u32 = new Uint32Array(4);
    writeMsiSync(u32, 0, 0x000f_ffff_ffff_fff0);
    expect(hexWords(u32)).toEqual(['0x0fc01046', '0x00000000', '0xfffffff0', '0x000fffff']);
  });

  it('writes the same words as the codec for any 4-byte-aligned PA below 2^53 (no BigInt path)', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 1n, max: (1n << 51n) - 1n }), (q) => {
        const pa = Number(q * 4n);
        const u32 = new Uint32Array(4);
        writeMsiSync(u32, 0, pa);
        const ref = encodeCommandWords({ name: 'CMD_SYNC', CS: 'SIG_IRQ', MSH: 3, MSIAttr: 0xf, MSIData: 0, MSIAddress: q * 4n });
        expect([...u32]).toEqual([...ref]);
      }),
    );
  });

  it('putFieldNumber leaves bits outside the field alone', () => {
    const w = new Uint32Array([0xffff_ffff, 0xffff_ffff, 0x0000_0003, 0xff00_0000]);
    putFieldNumber(w, SYNC_MSIADDRESS, 0x1234_5678_9abc);
    // word 2: PA[31:2] | the two bits below the field kept; word 3: PA[55:32] | bits [31:24] kept.
    expect(hexWords(w)).toEqual(['0xffffffff', '0xffffffff', '0x56789abf', '0xff001234']);
  });
});

describe('command error actions (§7.1, Linux arm_smmu_cmdq_skip_err)', () => {
  it('replaces ILL and unknown codes, retries ABT and ATC_INV_SYNC, ignores NONE', () => {
    expect(cmdqErrorAction(CERROR_ILL)).toBe('replace');
    expect(cmdqErrorAction(0x04)).toBe('replace');
    expect(cmdqErrorAction(0x7f)).toBe('replace');
    expect(cmdqErrorAction(CERROR_ABT)).toBe('retry');
    expect(cmdqErrorAction(CERROR_ATC_INV_SYNC)).toBe('retry');
    expect(cmdqErrorAction(CERROR_NONE)).toBe('none');
  });
});

describe('event queue drain arithmetic (§7.4, §6.3.95, §6.3.96)', () => {
  it('reads from CONS to PROD and writes RD = PROD with OVACKFLG unchanged', () => {
    // log2 3: index [2:0], wrap bit 3. PROD 0b0_101 (5), CONS 0b0_010 (2): 3 records.
    expect(planEventDrain(5, 2, 0, 3)).toEqual({ count: 3, nextCons: 5, ovflg: 0, overflow: false, consValue: 5, write: true });
  });

  it('crosses the wrap: PROD wrap 1 index 1 (0b1_001 = 9), CONS index 6 wrap 0: 3 records', () => {
    expect(planEventDrain(0b1001, 6, 0, 3)).toEqual({ count: 3, nextCons: 9, ovflg: 0, overflow: false, consValue: 9, write: true });
  });

  it('a full queue (indices equal, wraps differ) holds 2^log2 records', () => {
    expect(planEventDrain(0b1_010, 0b0_010, 0, 3).count).toBe(8);
  });

  it('acknowledges a toggled OVFLG by writing OVACKFLG (bit 31) = OVFLG', () => {
    const prod = (0x8000_0000 | 0b1_000) >>> 0; // OVFLG = 1, wrap 1, index 0
    expect(planEventDrain(prod, 0b0_000, 0, 3)).toEqual({ count: 8, nextCons: 8, ovflg: 1, overflow: true, consValue: 0x8000_0008, write: true });
    // Acknowledged already (OVACKFLG 1 == OVFLG 1), nothing new: no write.
    expect(planEventDrain(prod, 0b1_000, 1, 3)).toEqual({ count: 0, nextCons: 8, ovflg: 1, overflow: false, consValue: 0x8000_0008, write: false });
    // The next overflow toggles OVFLG back to 0: that is an overflow too, acknowledged with 0.
    expect(planEventDrain(0b1_011, 0b1_000, 1, 3)).toEqual({ count: 3, nextCons: 11, ovflg: 0, overflow: true, consValue: 11, write: true });
  });

  it('refuses a PROD more than a whole queue ahead of CONS (an SMMU bug, not a state)', () => {
    expect(() => planEventDrain(0b0_011, 0b1_000, 0, 3)).toThrow('SMMU_EVENTQ_PROD 0x00000003 is 11 records ahead of the driver\'s CONS 0x00000008, more than the 8 the queue holds');
  });

  it('an overflow with no new records still writes CONS, to acknowledge it', () => {
    expect(planEventDrain(0x8000_0004, 4, 0, 3)).toEqual({ count: 0, nextCons: 4, ovflg: 1, overflow: true, consValue: 0x8000_0004, write: true });
  });
});
