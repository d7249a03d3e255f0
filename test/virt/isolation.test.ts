/**
 * Isolation between VMs (issue 6): two VMs on each path share one SMMU, one Command queue and
 * one Stream table; whatever one guest writes into its queue, its Stream table or its registers,
 * the other VM's TLB entries, configuration and memory stay as they were, and no StreamID it does
 * not own is ever named on the physical queue.
 *
 * VM A presents a lax virtual SMMU (res0Check off: it lets RES0 bits, such as the VMID of a
 * TLBI_NH_* on a stage-1-only SMMU, through to the host; §4.1.6 allows either behaviour), so its
 * hostile commands reach the host's conversion. VM B is strict. Both use vSID 1, ASID 9 and the
 * same IOVA, so only the VMID tells their TLB entries apart. The other VM's state is observed
 * through DMA (sys.dma: tlbHit, output address), the physical Command queue through the device
 * trace, and the physical STEs in host memory.
 *
 * Command words are literal (§4.4.2: VMID = word 1 [15:0], ASID = word 1 [31:16]; §4.3: StreamID
 * = word 1, Range = word 2 [4:0]).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PhysMem } from '../../src/mem/phys.ts';
import { cerrorName, CERROR_ILL } from '../../src/spec/cerror.ts';
import { checkCommand } from '../../src/spec/legality.ts';
import { REG } from '../../src/spec/registers.ts';
import { STE, STE_BYTES, STE_CONFIG, STE_STRW, decodeStructure, encodeStructure } from '../../src/spec/structures.ts';
import { locateSte, streamTableRegs, type VmPath } from '../../src/virt/vsmmu.ts';
import { System } from '../../src/system/system.ts';
import type { Vm } from '../../src/system/vms.ts';

const POLICY = { mode: 'hybrid' as const, spin: 200, timeoutMs: 5000 };
const IOVA = 0x1000_0000;
const PAGE = 4096;
const ASID = 9;
const A_PSID = 0x30;
const B_PSID = 0x40;
const B_PSID2 = 0x41;
const ILL = cerrorName(CERROR_ILL);
const STE_WORDS = STE_BYTES / 4;

describe.each(['trap', 'kernel-queue'] as VmPath[])('two VMs on the %s path', (path) => {
  let sys: System;
  let A: Vm;
  let B: Vm;
  let pageA: number;
  let pageB: number;

  beforeAll(async () => {
    sys = await System.start({
      policy: POLICY,
      trace: true,
      vms: [
        { path, devices: [{ vsid: 1, psid: A_PSID }], features: { res0Check: false } },
        { path, ...(path === 'trap' ? { trapBatch: 'sync' as const } : {}), devices: [{ vsid: 1, psid: B_PSID }, { vsid: 2, psid: B_PSID2 }] },
      ],
    });
    [A, B] = [sys.vms[0]!, sys.vms[1]!];
    pageA = A.ram.ipa + 0x10_0000;
    pageB = B.ram.ipa + 0x10_0000;
    for (const [vm, page] of [[A, pageA], [B, pageB]] as const) {
      const { domain } = await vm.driver.attachStage1(1, { asid: ASID, granule: PAGE, ias: 48 });
      await vm.driver.map(domain, IOVA, page, PAGE, { read: true, write: true });
    }
  }, 30_000);

  afterAll(async () => {
    await sys?.stop();
  });

  /** DMA from a device at IOVA. */
  const dma = (sid: number) => sys.dma({ sid, iova: IOVA, read: true });

  /** Both VMs' translations cached: the second access of each hits the TLB. */
  async function warm(): Promise<void> {
    for (const sid of [A_PSID, B_PSID]) {
      await dma(sid);
      expect((await dma(sid)).tlbHit).toBe(true);
    }
  }

  /** B's entry is still in the TLB and still says B's memory. */
  async function bUntouched(): Promise<void> {
    expect(await dma(B_PSID)).toEqual({ status: 'ok', pa: B.hostAddress(pageB), tlbHit: true, bypass: false });
  }

  /** Physical commands traced since `from`, CMD_SYNCs left out, as [words, outcome]. */
  function physical(from: number): [number[], string][] {
    return sys.trace().entries.slice(from).filter((e) => (e.words[0] & 0xff) !== 0x46).map((e) => [[...e.words], e.outcome]);
  }

  const mark = (): number => sys.trace().entries.length;

  function hostSte(psid: number): Uint32Array {
    const pa = locateSte(sys.mem, streamTableRegs({ get32: (off) => sys.readReg(off) }), sys.features, psid)!;
    const w = new Uint32Array(STE_WORDS);
    sys.mem.readWords(pa, w);
    return w;
  }

  it('the same vSID, ASID and IOVA translate into each VM\'s own memory, tagged with its own VMID', async () => {
    expect(A.ram.hostPa).not.toBe(B.ram.hostPa);
    expect(await dma(A_PSID)).toMatchObject({ status: 'ok', pa: A.hostAddress(pageA) });
    expect(await dma(B_PSID)).toMatchObject({ status: 'ok', pa: B.hostAddress(pageB) });
    expect([Number(decodeStructure(STE, hostSte(A_PSID)).fields.S2VMID), Number(decodeStructure(STE, hostSte(B_PSID)).fields.S2VMID)]).toEqual([A.vmid, B.vmid]);
  });

  it('a foreign VMID in TLBI_NH_ASID is overwritten with the VM\'s own: only its entry goes (§3.2)', async () => {
    await warm();
    const from = mark();
    const r = await A.driver.issue([[0x11, ((ASID << 16) | B.vmid) >>> 0, 0, 0]]);
    expect(r.errors).toEqual([]);
    expect(physical(from)).toEqual([[[0x11, ((ASID << 16) | A.vmid) >>> 0, 0, 0], 'consumed']]);
    expect((await dma(A_PSID)).tlbHit).toBe(false);
    await bUntouched();
  });

  it('a strict virtual SMMU refuses a non-zero VMID itself (RES0 without stage 2, §4.4.2): CERROR_ILL, nothing reaches the host', async () => {
    await warm();
    const from = mark();
    const r = await B.driver.issue([[0x11, ((ASID << 16) | A.vmid) >>> 0, 0, 0]]);
    expect(r.errors.map((e) => e.name)).toEqual([ILL]);
    expect(physical(from)).toEqual([]);
    expect((await dma(A_PSID)).tlbHit).toBe(true);
  });

  it('TLBI_NSNH_ALL and TLBI_NH_ALL (with a foreign VMID) invalidate the VM\'s VMID only', async () => {
    await warm();
    const from = mark();
    const r = await A.driver.issue([[0x30, 0, 0, 0], [0x10, B.vmid, 0, 0]]);
    expect(r.errors).toEqual([]);
    expect(physical(from)).toEqual([[[0x10, A.vmid, 0, 0], 'consumed'], [[0x10, A.vmid, 0, 0], 'consumed']]);
    expect((await dma(A_PSID)).tlbHit).toBe(false);
    await bUntouched();
  });

  it('a StreamID the VM does not own (the other VM\'s vSID, or its physical StreamID) never reaches the host', async () => {
    await warm();
    await A.resetCounters();
    const from = mark();
    const r = await A.driver.issue([[0x05, 2, 1, 0], [0x06, 2, 0, 0], [0x05, B_PSID, 1, 0], [0x06, B_PSID2, 0, 0]]);
    // trap: the VMM forwards SID-based invalidations only for its vDEVICEs (QEMU); the kernel
    // consumer's conversion refuses them (EIO), reported as CERROR_ILL at each command.
    expect(r.errors.map((e) => e.name)).toEqual(path === 'trap' ? [] : [ILL, ILL, ILL, ILL]);
    expect(physical(from)).toEqual([]);
    const c = (await A.state()).counters;
    expect([c.skipped, c.refused]).toEqual(path === 'trap' ? [4, 0] : [0, 4]);
    await bUntouched();
  });

  it('CFGI_ALL, CFGI_STE_RANGE and CFGI_STE re-shadow only the VM\'s own devices', async () => {
    await warm();
    await A.resetCounters();
    const before = [hostSte(B_PSID), hostSte(B_PSID2)];
    const from = mark();
    // CFGI_ALL; CFGI_STE_RANGE over StreamIDs 0x40-0x4f (Range 3); CFGI_STE of vSID 2 (not A's).
    const r = await A.driver.issue([[0x04, 0, 31, 0], [0x04, B_PSID, 3, 0], [0x03, 2, 1, 0]]);
    expect(r.errors).toEqual([]);
    // A's own STE did not change: re-shadowing it writes nothing.
    expect(physical(from)).toEqual([]);
    expect((await A.state()).counters.reshadows).toBe(1);
    expect([hostSte(B_PSID), hostSte(B_PSID2)]).toEqual(before);
    await bUntouched();
    expect((await dma(A_PSID)).tlbHit).toBe(true);
  });

  it('EL2, EL3, stage 2 and Secure invalidations are CERROR_ILL on the virtual queue (no Hyp, no stage 2)', async () => {
    await warm();
    const from = mark();
    const r = await A.driver.issue([[0x20, 0, 0, 0], [0x21, ASID << 16, 0, 0], [0x28, B.vmid, 0, 0], [0x2a, B.vmid, IOVA | 1, 0], [0x18, 0, 0, 0], [0x60, 0, 0, 0]]);
    expect(r.errors.map((e) => e.name)).toEqual([ILL, ILL, ILL, ILL, ILL, ILL]);
    expect(physical(from)).toEqual([]);
    await bUntouched();
    expect((await dma(A_PSID)).tlbHit).toBe(true);
  });

  describe('a hostile guest STE', () => {
    let guestMem: PhysMem;
    let at: number;
    let original: Uint32Array;

    beforeAll(() => {
      guestMem = new PhysMem(sys.board, { base: A.ram.ipa, hostPa: A.ram.hostPa, bytes: A.ram.bytes });
      at = locateSte(guestMem, streamTableRegs({ get32: (off) => A.readReg(off) }), A.features, 1)!;
      original = new Uint32Array(STE_WORDS);
      guestMem.readWords(at, original);
    });

    async function install(words: Uint32Array): Promise<string[]> {
      guestMem.writeWords(at, words);
      return (await A.driver.issue([[0x03, 1, 1, 0]])).errors.map((e) => e.name);
    }

    it('a stage 2 configuration naming the other VM\'s VMID: CERROR_ILL, and the device aborts', async () => {
      await warm();
      const s2 = hostSte(B_PSID);
      const evil = encodeStructure(STE, { ...decodeStructure(STE, s2).fields, Config: STE_CONFIG.S2_TRANS });
      expect(await install(evil)).toEqual([ILL]);
      expect(hostSte(A_PSID).slice(0, 2)).toEqual(Uint32Array.of(1, 0));
      expect(await dma(A_PSID)).toMatchObject({ status: 'abort' });
      await bUntouched();
    });

    it('STRW, S2VMID, SHCFG in a stage 1 STE never reach the physical STE: it keeps the VM\'s VMID', async () => {
      const evil = Uint32Array.from(original);
      const d = decodeStructure(STE, evil).fields;
      const withBits = encodeStructure(STE, { ...d, STRW: STE_STRW.EL2, S2VMID: B.vmid, SHCFG: 1 });
      expect(await install(withBits)).toEqual([]);
      const p = decodeStructure(STE, hostSte(A_PSID)).fields;
      expect([p.Config, p.S2VMID, p.STRW, p.SHCFG, p.MEV].map(Number)).toEqual([STE_CONFIG.NESTED, A.vmid, 0, 0, 1]);
      // The TLB entry (VMID, ASID, IOVA) survives STE changes: only the configuration was re-fetched.
      expect(await dma(A_PSID)).toEqual({ status: 'ok', pa: A.hostAddress(pageA), tlbHit: true, bypass: false });
      await bUntouched();
    });

    it('a CD table pointer at the other VM\'s host memory is an IPA outside the VM\'s stage 2: DMA aborts', async () => {
      const d = decodeStructure(STE, original).fields;
      expect(await install(encodeStructure(STE, { ...d, S1ContextPtr: B.ram.hostPa }))).toEqual([]);
      expect(await dma(A_PSID)).toMatchObject({ status: 'abort', tlbHit: false });
      await bUntouched();
      expect(await install(original)).toEqual([]);
      expect(await dma(A_PSID)).toMatchObject({ status: 'ok', pa: A.hostAddress(pageA) });
    });
  });

  it('a command a lax virtual SMMU lets through but the host finds illegal is skipped by the host\'s recovery; the guest never learns', async () => {
    await warm();
    await A.resetCounters();
    // TLBI_NH_VA with word 0 bit 8 set: RES0 (§4.4.2.4), CERROR_ILL on the host, not on lax A.
    const bad = [0x12 | (1 << 8), ASID << 16, (IOVA | 1) >>> 0, 0];
    expect([checkCommand(bad, sys.features).ok, checkCommand(bad, A.features).ok]).toEqual([false, true]);
    const from = mark();
    expect((await A.driver.issue([bad])).errors).toEqual([]);
    expect(physical(from)).toEqual([[[0x12 | (1 << 8), ((ASID << 16) | A.vmid) >>> 0, (IOVA | 1) >>> 0, 0], ILL]]);
    expect((await A.state()).counters.physicalErrors).toBe(1);
    await bUntouched();
  });

  it('afterwards both VMs and the host still work: B unmaps and faults, A keeps translating', async () => {
    const { domain } = await B.driver.attachStage1(2, { asid: ASID + 1, granule: PAGE, ias: 48 });
    await B.driver.map(domain, IOVA, pageB + PAGE, PAGE, { read: true });
    expect(await dma(B_PSID2)).toMatchObject({ status: 'ok', pa: B.hostAddress(pageB + PAGE) });
    await B.driver.unmap(domain, IOVA, PAGE);
    expect(await dma(B_PSID2)).toMatchObject({ status: 'abort', event: 0x10 });
    expect(await dma(A_PSID)).toMatchObject({ status: 'ok', pa: A.hostAddress(pageA) });
    await bUntouched();
    expect((await sys.driver.issue([[0x10, 0x99, 0, 0]])).errors).toEqual([]);
    expect(sys.error).toBeUndefined();
  });
});
