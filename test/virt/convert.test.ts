/**
 * The host kernel's conversion of guest SMMUv3 commands (viommu.md §3.2), opcode by opcode.
 *
 * Vectors are literal words (word 0 = bits [31:0] … word 3 = bits [127:96]). Positions used,
 * from IHI0070 G.b §4.1.6 and the fact sheet (smmuv3.md §4.2–4.3, viommu.md §3.1): Opcode [7:0],
 * SSec [10], SSV [11], SubstreamID [31:12], VMID [47:32] = word 1 bits [15:0], ASID [63:48] =
 * word 1 bits [31:16], StreamID [63:32] = word 1, NUM [16:12], SCALE [24:20], Leaf [64], TTL
 * [73:72], TG [75:74], Address [127:76].
 */

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { FULL_FEATURES } from '../../src/spec/features.ts';
import { CONVERSION, checkConverted, convertGuestCommand } from '../../src/virt/convert.ts';
import type { VsmmuContext } from '../../src/virt/convert.ts';
import { EIO } from '../../src/virt/errno.ts';

/** The accepted opcodes, written out from §3.2 rather than taken from the table under test. */
const SET_VMID = [0x10, 0x11, 0x12, 0x13];
const NSNH_ALL = 0x30;
const SID_OPS = [0x05, 0x06, 0x40];

const VMID = 0x42;
const ctx: VsmmuContext = {
  vmid: VMID,
  vsidToPsid: (vsid) => (vsid === 0x99 ? 0x1234 : vsid === 0x1 ? 0x100 : undefined),
};

function conv(w: readonly number[], c: VsmmuContext = ctx): { rc: number; out: number[] } {
  const words = Uint32Array.from(w);
  const rc = convertGuestCommand(words, 0, c);
  return { rc, out: [...words] };
}

describe('the conversion table (§3.2)', () => {
  it('has one row per opcode, in order', () => {
    expect(CONVERSION).toHaveLength(256);
    CONVERSION.forEach((r, i) => expect(r.opcode).toBe(i));
  });

  it('accepts exactly NH_ALL, NH_ASID, NH_VA, NH_VAA, NSNH_ALL, ATC_INV, CFGI_CD, CFGI_CD_ALL', () => {
    const accepted = CONVERSION.filter((r) => r.action !== 'reject').map((r) => [r.opcode, r.name, r.action]);
    expect(accepted).toEqual([
      [0x05, 'CMD_CFGI_CD', 'translate-sid'],
      [0x06, 'CMD_CFGI_CD_ALL', 'translate-sid'],
      [0x10, 'CMD_TLBI_NH_ALL', 'set-vmid'],
      [0x11, 'CMD_TLBI_NH_ASID', 'set-vmid'],
      [0x12, 'CMD_TLBI_NH_VA', 'set-vmid'],
      [0x13, 'CMD_TLBI_NH_VAA', 'set-vmid'],
      [0x30, 'CMD_TLBI_NSNH_ALL', 'nsnh-to-nh-all'],
      [0x40, 'CMD_ATC_INV', 'translate-sid'],
    ]);
  });

  it('names the reason for the refused commands a reader asks about first', () => {
    expect(CONVERSION[0x46]).toMatchObject({ name: 'CMD_SYNC', action: 'reject' });
    expect(CONVERSION[0x46]!.why).toMatch(/CMD_SYNC/);
    expect(CONVERSION[0x03]).toMatchObject({ name: 'CMD_CFGI_STE', action: 'reject' });
    expect(CONVERSION[0x04]).toMatchObject({ name: 'CMD_CFGI_STE_RANGE', action: 'reject' });
    expect(CONVERSION[0x08]).toMatchObject({ name: 'RESERVED_0x08', action: 'reject', why: 'Reserved opcode' });
    expect(CONVERSION[0x80]).toMatchObject({ name: 'CMD_IMPDEF_0x80', action: 'reject', why: 'IMPLEMENTATION DEFINED opcode' });
    expect(CONVERSION[0x50]).toMatchObject({ name: 'CMD_TLBI_S_EL2_ALL', action: 'reject', why: 'Secure invalidation' });
  });
});

describe('every opcode, with every other bit set (§3.2)', () => {
  // All-ones apart from the opcode: the worst case for pass-through and replacement.
  const guest = (op: number): number[] => [(0xffff_ff00 | op) >>> 0, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff];

  for (let op = 0; op < 256; op++) {
    const hex = `0x${op.toString(16).padStart(2, '0')}`;
    if (SET_VMID.includes(op)) {
      it(`${hex}: VMID replaced, ASID and every other bit kept`, () => {
        expect(conv(guest(op))).toEqual({ rc: 0, out: [(0xffff_ff00 | op) >>> 0, (0xffff_0000 | VMID) >>> 0, 0xffff_ffff, 0xffff_ffff] });
      });
    } else if (op === NSNH_ALL) {
      it(`${hex}: becomes TLBI_NH_ALL with the VMID, everything else cleared`, () => {
        expect(conv(guest(op))).toEqual({ rc: 0, out: [0x10, VMID, 0, 0] });
      });
    } else if (SID_OPS.includes(op)) {
      it(`${hex}: vSID 0xffffffff has no vDEVICE: EIO, words untouched`, () => {
        expect(conv(guest(op))).toEqual({ rc: EIO, out: guest(op) });
      });
      it(`${hex}: vSID 0x99 becomes StreamID 0x1234, every other bit kept`, () => {
        const w = guest(op);
        w[1] = 0x99;
        expect(conv(w)).toEqual({ rc: 0, out: [(0xffff_ff00 | op) >>> 0, 0x1234, 0xffff_ffff, 0xffff_ffff] });
      });
    } else {
      it(`${hex}: EIO, words untouched`, () => {
        expect(conv(guest(op))).toEqual({ rc: EIO, out: guest(op) });
        expect(conv([op, 0, 0, 0])).toEqual({ rc: EIO, out: [op, 0, 0, 0] });
      });
    }
  }
});

describe('exact vectors', () => {
  it('TLBI_NH_VA: guest VMID 7 becomes 0x42; ASID 0xbeef, NUM 5, SCALE 10, Leaf, TTL 1, TG 4K, address kept', () => {
    // w0: opcode 0x12 | NUM 5 << 12 | SCALE 10 << 20; w1: ASID 0xbeef << 16 | VMID 7;
    // w2: Leaf (bit 64) | TTL 1 (bits 73:72 → w2 bit 8) | TG 1 (bits 75:74 → w2 bit 10) | Address[19:12] at w2[31:24];
    // w3: Address[51:20].
    const w = [0x00a0_5012, 0xbeef_0007, 0x5500_0501, 0x0000_8d36];
    expect(conv(w)).toEqual({ rc: 0, out: [0x00a0_5012, 0xbeef_0042, 0x5500_0501, 0x0000_8d36] });
  });

  it('TLBI_NH_ASID with VMID 0 (the host kernel’s stage-1 VMID) still gets the vIOMMU VMID', () => {
    expect(conv([0x11, 0x0001_0000, 0, 0])).toEqual({ rc: 0, out: [0x11, 0x0001_0042, 0, 0] });
  });

  it('TLBI_NSNH_ALL with RES0 garbage becomes a clean TLBI_NH_ALL', () => {
    expect(conv([0xdead_be30, 0x1234_5678, 0x9abc_def0, 0x0fed_cba9])).toEqual({ rc: 0, out: [0x10, 0x42, 0, 0] });
  });

  it('ATC_INV: Global, SSV, SubstreamID 0x12, Size 52 and address kept, vSID 0x99 → StreamID 0x1234', () => {
    // w0: 0x40 | Global (bit 9) | SSV (bit 11) | SubstreamID 0x12 << 12; w2: Size 52 (bits 69:64) | Address[19:12] at w2[31:24].
    const w = [0x0001_2a40, 0x99, 0x1000_0034, 0x0000_0001];
    expect(conv(w)).toEqual({ rc: 0, out: [0x0001_2a40, 0x1234, 0x1000_0034, 0x0000_0001] });
  });

  it('CFGI_CD: SubstreamID and Leaf kept, vSID 1 → StreamID 0x100', () => {
    expect(conv([0x0000_7005, 0x1, 0x1, 0])).toEqual({ rc: 0, out: [0x0000_7005, 0x100, 0x1, 0] });
  });

  it('CFGI_CD_ALL with an unknown vSID is EIO (not ENOENT)', () => {
    expect(conv([0x06, 0x2, 0, 0])).toEqual({ rc: EIO, out: [0x06, 0x2, 0, 0] });
  });

  it('converts in place at a word offset, leaving the neighbours alone', () => {
    const buf = Uint32Array.from([1, 2, 3, 4, 0x12, 0x0005_0009, 0, 0, 5, 6, 7, 8]);
    expect(convertGuestCommand(buf, 4, ctx)).toBe(0);
    expect([...buf]).toEqual([1, 2, 3, 4, 0x12, 0x0005_0042, 0, 0, 5, 6, 7, 8]);
  });
});

describe('hostile guests', () => {
  it('SSec = 1 passes through, as in the kernel (§3.2); the legality policy refuses it (§4.1.6)', () => {
    const w = [0x0000_0411, 0x0003_0001, 0, 0]; // TLBI_NH_ASID with SSec (bit 10)
    const r = conv(w);
    expect(r).toEqual({ rc: 0, out: [0x0000_0411, 0x0003_0042, 0, 0] });
    expect(checkConverted(Uint32Array.from(r.out), 0, FULL_FEATURES)).toBe(EIO);
    expect(checkConverted(Uint32Array.from([0x11, 0x0003_0042, 0, 0]), 0, FULL_FEATURES)).toBe(0);
  });

  it('CFGI_CD with SSec = 1 keeps SSec after the StreamID is replaced', () => {
    expect(conv([0x0000_0405, 0x99, 0, 0])).toEqual({ rc: 0, out: [0x0000_0405, 0x1234, 0, 0] });
  });

  it('global, EL2, EL3, stage-2 and configuration-wide commands are all EIO', () => {
    const hostile: [string, number[]][] = [
      ['CFGI_ALL', [0x04, 0, 31, 0]],
      ['CFGI_STE for another stream', [0x03, 0x200, 0, 0]],
      ['TLBI_S12_VMALL of VMID 2', [0x28, 0x2, 0, 0]],
      ['TLBI_S2_IPA of VMID 2', [0x2a, 0x2, 0x1000, 0]],
      ['TLBI_EL2_ALL', [0x20, 0, 0, 0]],
      ['TLBI_EL2_ASID', [0x21, 0x0001_0000, 0, 0]],
      ['TLBI_EL3_ALL', [0x18, 0, 0, 0]],
      ['TLBI_SNH_ALL', [0x60, 0, 0, 0]],
      ['CFGI_VMS_PIDM', [0x07, 0x2, 0, 0]],
      ['PRI_RESP', [0x41, 0x99, 0x2000, 0]],
      ['RESUME', [0x44, 0x99, 0, 0]],
      ['CMD_SYNC', [0x46, 0, 0, 0]],
      ['DPTI_ALL', [0x70, 0, 0, 0]],
    ];
    for (const [name, w] of hostile) expect(conv(w).rc, name).toBe(EIO);
  });

  it('property: whatever the 16 bytes, a converted command carries only the vIOMMU VMID or one of its StreamIDs', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 0xffff_ffff }), { minLength: 4, maxLength: 4 }), fc.boolean(), (w, forceOp) => {
        const words = [...w];
        if (forceOp) words[0] = ((words[0]! & 0xffff_ff00) | [0x10, 0x11, 0x12, 0x13, 0x30, 0x40, 0x05, 0x06][words[0]! & 7]!) >>> 0;
        const { rc, out } = conv(words);
        if (rc !== 0) {
          expect(rc).toBe(EIO);
          expect(out).toEqual(words);
          return;
        }
        const op = out[0]! & 0xff;
        expect([0x10, 0x11, 0x12, 0x13, 0x40, 0x05, 0x06]).toContain(op);
        if (op >= 0x10 && op <= 0x13) expect(out[1]! & 0xffff).toBe(VMID);
        else expect([0x100, 0x1234]).toContain(out[1]);
        // Nothing but the VMID / StreamID changes, unless NSNH_ALL was rebuilt.
        if ((words[0]! & 0xff) !== 0x30) {
          expect(out[0]).toBe(words[0]);
          expect(out[2]).toBe(words[2]);
          expect(out[3]).toBe(words[3]);
          if (op >= 0x10 && op <= 0x13) expect(out[1]! >>> 16).toBe(words[1]! >>> 16);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
