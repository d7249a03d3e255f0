/**
 * Translation through the running system: the SMMU device and the guest driver in their own
 * workers, DMA from the main thread (src/mem/dma.ts). The driver builds the structures (a 2-level
 * Stream table, CD tables, page tables) the way Linux does; the tests check what a user relies
 * on: the output address of every setup, that a repeated access hits the TLB, and that faults
 * reach the event queue as the §7.3 records, decoded by the driver's drainEvents().
 *
 * One System for the whole file: a 2-level Stream table of 2^12 StreamIDs (SPLIT 8, Linux's
 * choice above 256 StreamIDs), every StreamID used here beyond 256. Tests use disjoint StreamIDs,
 * ASIDs and VMIDs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { System, type Command } from '../../src/system/system.ts';
import type { DmaRequest } from '../../src/mem/dma.ts';
import type { DrainedEvent } from '../../src/driver/driver.ts';
import type { DomainInfo } from '../../src/driver/domain.ts';
import { getBits } from '../../src/spec/bits.ts';
import { REG, STRTAB_FMT, STRTAB_SPLIT, regGet } from '../../src/spec/registers.ts';
import { CD_BYTES, CD_F, L1CD_BYTES, L1CD_F, L1STD_BYTES, L1STD_F, STE_BYTES, STE_CONFIG, STE_F, STE_S1DSS, STE_S1FMT, TG0_16KB, TG0_4KB, TG0_64KB, l1cdValid, steS1ContextPtr } from '../../src/spec/structures.ts';
import { DESC_AF, DESC_VALID, cdPa, descOutput, l1stdPa, patch, readWords, restore, setLowBits, stePa, walkLeaf } from '../helpers/walk.ts';

const POLICY = { mode: 'hybrid' as const, spin: 2000, timeoutMs: 5000 };
const STRTAB_LOG2 = 12;
const KiB = 1024;
const MiB = 1024 * KiB;
const TWO32 = 0x1_0000_0000;

/** Event record words 0 and 1 (§7.3: EventID [7:0], SSV [11], SubstreamID [31:12], StreamID [63:32]). */
function dw0(id: number, sid: number, ssid?: number): [number, number] {
  return [(id | (ssid !== undefined ? (1 << 11) | (ssid << 12) : 0)) >>> 0, sid];
}

/**
 * Word 3 of a translation fault record (bits [127:96]): PnU [97], InD [98], RnW [99], S2 [103],
 * CLASS [105:104] (§7.3.13-§7.3.16; positions per the fact sheet §7.1, the figures are images).
 */
function faultW3(o: { read: boolean; exec?: boolean; priv?: boolean; s2?: boolean; cls: number }): number {
  return ((o.priv ? 1 << 1 : 0) | (o.exec ? 1 << 2 : 0) | (o.read ? 1 << 3 : 0) | (o.s2 ? 1 << 7 : 0) | (o.cls << 8)) >>> 0;
}

/** A 64-bit address as two words. */
function w64(a: number): [number, number] {
  return [a % TWO32, Math.floor(a / TWO32)];
}

/** IPA[55:12] at record bits [247:204] (§7.3.13, fact sheet §7.1) as words 6 and 7. */
function ipaWords(ipa: number): [number, number] {
  return [(ipa % TWO32) - (ipa % 4096), Math.floor(ipa / TWO32)];
}

/** CLASS (§7.3.13): what the faulting access was for. */
const CLASS_CD = 0b00;
const CLASS_TTD = 0b01;
const CLASS_IN = 0b10;

let sys: System;

async function events(): Promise<DrainedEvent[]> {
  return (await sys.driver.drainEvents()) as DrainedEvent[];
}

/** The event records drained, as [name, words]. */
async function records(): Promise<[string, number[]][]> {
  return (await events()).map((e) => [e.name, [...e.words]]);
}

/** Issue commands (the driver adds the CMD_SYNC) and expect no command error. */
async function inv(...cmds: Command[]): Promise<void> {
  expect((await sys.driver.issue(cmds)).errors).toEqual([]);
}

async function info(domain: number): Promise<DomainInfo> {
  return sys.driver.call<DomainInfo>('domainInfo', domain);
}

async function expectOk(req: DmaRequest, pa: number, tlbHit: boolean): Promise<void> {
  expect(await sys.dma(req)).toEqual({ status: 'ok', pa, tlbHit, bypass: false });
}

beforeAll(async () => {
  sys = await System.start({ policy: POLICY, strtabLog2: STRTAB_LOG2 });
});

afterAll(async () => {
  await sys?.stop();
});

describe('the Stream table the driver programs', () => {
  it('is 2-level with SPLIT 8 above 256 StreamIDs, and CR2.RECINVSID is set (§6.3.25, §6.3.12)', () => {
    const cfg = sys.readReg('SMMU_STRTAB_BASE_CFG');
    const C = REG.SMMU_STRTAB_BASE_CFG.f;
    expect([regGet(cfg, C.FMT), regGet(cfg, C.SPLIT), regGet(cfg, C.LOG2SIZE)]).toEqual([STRTAB_FMT.TWO_LEVEL, STRTAB_SPLIT.SPLIT_16KB, STRTAB_LOG2]);
    expect(regGet(sys.readReg('SMMU_CR2'), REG.SMMU_CR2.f.RECINVSID)).toBe(1);
  });
});

describe('stage 1 at each granule (§3.4, §5.4 TG0)', () => {
  const cases = [
    { g: 4096, tg0: TG0_4KB, sid: 0x101, asid: 0x11, block: 2 * MiB },
    { g: 16384, tg0: TG0_16KB, sid: 0x102, asid: 0x12, block: 32 * MiB },
    { g: 65536, tg0: TG0_64KB, sid: 0x103, asid: 0x13, block: 512 * MiB },
  ];
  // Page and block addresses aligned to every granule and block size used (512MB).
  const PAGE_VA = 0x12_3456_0000;
  const PAGE_PA = 0x8_1234_0000;
  const BLOCK_VA = 0x40_0000_0000;
  const BLOCK_PA = 0x9_0000_0000;

  it.each(cases)('$g-byte granule: a page and a block translate, and the TLB holds each whole leaf', async ({ g, tg0, sid, asid, block }) => {
    const { domain } = await sys.driver.attachStage1(sid, { asid, granule: g, ias: 48 });
    await sys.driver.map(domain, PAGE_VA, PAGE_PA, g, { read: true, write: true });
    const mb = (await sys.driver.map(domain, BLOCK_VA, BLOCK_PA, block, { read: true, write: true })) as { leaves: { size: number }[] };
    expect(mb.leaves.map((l) => l.size)).toEqual([block]);

    // The CD the SMMU reads says this granule (§5.4 TG0: 0b00 4KB, 0b01 64KB, 0b10 16KB).
    const ste = stePa(sys.mem, sys, sid)!;
    const cd = readWords(sys.mem, cdPa(sys.mem, ste, 0)!, CD_BYTES / 4);
    expect(getBits(cd, CD_F.TG0.lsb, CD_F.TG0.width)).toBe(tg0);
    expect(getBits(cd, CD_F.ASID.lsb, CD_F.ASID.width)).toBe(asid);

    // The leaves in memory: a level 3 page and a level 2 block.
    const d = await info(domain);
    const page = walkLeaf(sys.mem, d, PAGE_VA);
    expect([page.leaf, page.level, descOutput(page), 2 ** page.log2]).toEqual([true, 3, PAGE_PA, g]);
    const blk = walkLeaf(sys.mem, d, BLOCK_VA);
    expect([blk.leaf, blk.level, descOutput(blk), 2 ** blk.log2]).toEqual([true, 2, BLOCK_PA, block]);

    const last = g - 0x10;
    await expectOk({ sid, iova: PAGE_VA + last, read: true }, PAGE_PA + last, false);
    await expectOk({ sid, iova: PAGE_VA + 0x8, write: true }, PAGE_PA + 0x8, true);
    // One walk of the block; any other page of it then hits the same TLB entry.
    const off = block / 2 + 0x123;
    await expectOk({ sid, iova: BLOCK_VA + off, read: true }, BLOCK_PA + off, false);
    await expectOk({ sid, iova: BLOCK_VA + block - 4, write: true }, BLOCK_PA + block - 4, true);
    await expectOk({ sid, iova: BLOCK_VA, read: true }, BLOCK_PA, true);
    expect(await sys.driver.iovaToPhys(domain, BLOCK_VA + off)).toBe(BLOCK_PA + off);
    expect(await records()).toEqual([]);
  });
});

describe('stage 1 faults reach the event queue (§7.3.13, §7.3.16)', () => {
  const SID = 0x110;
  const RO_VA = 0x7000_0000;
  const RO_PA = 0x6_0000_0000;
  let domain = 0;

  beforeAll(async () => {
    domain = (await sys.driver.attachStage1(SID, { asid: 0x10, granule: 4096, ias: 48 })).domain;
    await sys.driver.map(domain, RO_VA, RO_PA, 4096, { read: true });
  });

  it('F_TRANSLATION: InputAddr, RnW, InD, PnU, S2 == 0, CLASS == IN', async () => {
    await events();
    const va = 0x12_3457_8abc; // not mapped
    expect(await sys.dma({ sid: SID, iova: va, read: true })).toEqual({ status: 'abort', event: 0x10, tlbHit: false, bypass: false });
    // An instruction fetch from a privileged master: InD == 1, PnU == 1.
    const va2 = 0x5_0000_0040;
    expect(await sys.dma({ sid: SID, iova: va2, read: true, exec: true, priv: true })).toMatchObject({ status: 'abort', event: 0x10 });
    // A write: RnW == 0 (and InD == 0, §7.3.13).
    expect(await sys.dma({ sid: SID, iova: va2, write: true })).toMatchObject({ status: 'abort', event: 0x10 });
    const ev = await events();
    expect(ev.map((e) => [e.name, [...e.words]])).toEqual([
      ['F_TRANSLATION', [...dw0(0x10, SID), 0, faultW3({ read: true, cls: CLASS_IN }), ...w64(va), 0, 0]],
      ['F_TRANSLATION', [...dw0(0x10, SID), 0, faultW3({ read: true, exec: true, priv: true, cls: CLASS_IN }), ...w64(va2), 0, 0]],
      ['F_TRANSLATION', [...dw0(0x10, SID), 0, faultW3({ read: false, cls: CLASS_IN }), ...w64(va2), 0, 0]],
    ]);
    // The driver's decode names the same fields.
    expect(ev[0]!.fields).toMatchObject({ EventID: 0x10, SSV: 0, StreamID: SID, RnW: 1, InD: 0, PnU: 0, S2: 0, CLASS: CLASS_IN, Stall: 0, InputAddr: BigInt(va) });
    expect(ev[1]!.fields).toMatchObject({ RnW: 1, InD: 1, PnU: 1 });
    expect(ev[2]!.fields).toMatchObject({ RnW: 0, InD: 0, PnU: 0 });
  });

  it('F_PERMISSION: a write to a read-only page; the read is allowed', async () => {
    await events();
    await expectOk({ sid: SID, iova: RO_VA + 0x10, read: true }, RO_PA + 0x10, false);
    expect(await sys.dma({ sid: SID, iova: RO_VA + 0x20, write: true })).toEqual({ status: 'abort', event: 0x13, tlbHit: false, bypass: false });
    const ev = await events();
    expect(ev.map((e) => [e.name, [...e.words]])).toEqual([['F_PERMISSION', [...dw0(0x13, SID), 0, faultW3({ read: false, cls: CLASS_IN }), ...w64(RO_VA + 0x20), 0, 0]]]);
    expect(ev[0]!.fields).toMatchObject({ RnW: 0, S2: 0, CLASS: CLASS_IN, InputAddr: BigInt(RO_VA + 0x20) });
  });

  it('a faulting walk caches nothing: map after F_TRANSLATION, set AF after F_ACCESS, no TLBI needed (§3.13)', async () => {
    await events();
    const va = 0x7100_0000;
    const pa = 0x6_1000_0000;
    expect(await sys.dma({ sid: SID, iova: va, read: true })).toMatchObject({ status: 'abort', event: 0x10 });
    // Linux maps without invalidating: an invalid descriptor is never cached.
    await sys.driver.map(domain, va, pa, 4096, { read: true, write: true });
    await expectOk({ sid: SID, iova: va + 8, write: true }, pa + 8, false);
    // AF == 0 (the driver's CDs have HA == 0, AFFD == 0): an Access fault, and no TLB entry.
    await sys.driver.map(domain, va + 0x1000, pa + 0x1000, 4096, { read: true, write: true });
    const d = walkLeaf(sys.mem, await info(domain), va + 0x1000);
    setLowBits(sys.mem, d, 0, DESC_AF);
    expect(await sys.dma({ sid: SID, iova: va + 0x1010, read: true })).toMatchObject({ status: 'abort', event: 0x12 });
    restore(sys.mem, d);
    await expectOk({ sid: SID, iova: va + 0x1010, read: true }, pa + 0x1010, false);
    expect(await records()).toEqual([
      ['F_TRANSLATION', [...dw0(0x10, SID), 0, faultW3({ read: true, cls: CLASS_IN }), ...w64(va), 0, 0]],
      ['F_ACCESS', [...dw0(0x12, SID), 0, faultW3({ read: true, cls: CLASS_IN }), ...w64(va + 0x1010), 0, 0]],
    ]);
  });

  it('C_BAD_SUBSTREAMID, not F_STREAM_DISABLED: a SubstreamID on a stream without substreams (STE.S1CDMax == 0, §7.3.9)', async () => {
    await events();
    expect(await sys.dma({ sid: SID, ssid: 3, iova: RO_VA, read: true })).toEqual({ status: 'abort', event: 0x08, tlbHit: false, bypass: false });
    // SubstreamID always valid, no SSV.
    expect(await records()).toEqual([['C_BAD_SUBSTREAMID', [0x08 | (3 << 12), SID, 0, 0, 0, 0, 0, 0]]]);
  });
});

describe('configuration errors (§7.3.3, §7.3.5, §7.3.7, §7.3.9, §7.3.11)', () => {
  it('C_BAD_STREAMID: beyond LOG2SIZE, and under an L1STD with Span == 0 (§7.3.3 1, 2a)', async () => {
    await events();
    const beyond = 2 ** STRTAB_LOG2; // 0x1000
    const noL2 = 0x500; // level 1 index 5: no level 2 array was ever made
    expect(await sys.dma({ sid: beyond, iova: 0x1000, read: true })).toEqual({ status: 'abort', event: 0x02, tlbHit: false, bypass: false });
    expect(await sys.dma({ sid: noL2, iova: 0x1000, read: true })).toMatchObject({ status: 'abort', event: 0x02 });
    // With a SubstreamID: SSV == 1 and the SubstreamID in dword 0 (§7.3.3 figure).
    expect(await sys.dma({ sid: noL2, ssid: 7, iova: 0x1000, read: true })).toMatchObject({ status: 'abort', event: 0x02 });
    expect(await records()).toEqual([
      ['C_BAD_STREAMID', [...dw0(0x02, beyond), 0, 0, 0, 0, 0, 0]],
      ['C_BAD_STREAMID', [...dw0(0x02, noL2), 0, 0, 0, 0, 0, 0]],
      ['C_BAD_STREAMID', [...dw0(0x02, noL2, 7), 0, 0, 0, 0, 0, 0]],
    ]);
  });

  it('C_BAD_STE: a StreamID of an existing level 2 array whose STE has V == 0 (§5.2)', async () => {
    await events();
    const sid = 0x1ff;
    await sys.driver.attachBypass(0x1fe); // makes sure the level 2 array of 0x100..0x1ff exists
    await events();
    expect(stePa(sys.mem, sys, sid)).toBeDefined();
    expect(await sys.dma({ sid, iova: 0x2000, write: true })).toEqual({ status: 'abort', event: 0x04, tlbHit: false, bypass: false });
    expect(await records()).toEqual([['C_BAD_STE', [...dw0(0x04, sid), 0, 0, 0, 0, 0, 0]]]);
  });
});

describe('the L1STDs of the 2-level Stream table are cached too (§4.3.1, §4.3.2)', () => {
  const SID = 0x601;
  const VA = 0x20_0000;
  const PA = 0x3_0000_0000;

  it('CMD_CFGI_STE with Leaf == 0 drops the L1STD that located the STE; so does CMD_CFGI_STE_RANGE', async () => {
    const { domain } = await sys.driver.attachStage1(SID, { asid: 0x61, granule: 4096, ias: 48 });
    await sys.driver.map(domain, VA, PA, 4096, { read: true, write: true });
    await expectOk({ sid: SID, iova: VA, read: true }, PA, false);
    await expectOk({ sid: SID, iova: VA, read: true }, PA, true);
    await events();
    const l1 = l1stdPa(sys, SID);
    const old = patch(sys.mem, l1, L1STD_BYTES / 4, [[L1STD_F.Span, 0]]);
    await expectOk({ sid: SID, iova: VA, read: true }, PA, true);
    // Leaf == 1: only the STE must go (the model keeps the L1STD, which it may, §4.3.1); the STE
    // is fetched again through the cached L1STD.
    await inv({ name: 'CMD_CFGI_STE', StreamID: SID, Leaf: 1 });
    await expectOk({ sid: SID, iova: VA, read: true }, PA, true);
    await inv({ name: 'CMD_CFGI_STE', StreamID: SID, Leaf: 0 });
    expect(await sys.dma({ sid: SID, iova: VA, read: true })).toEqual({ status: 'abort', event: 0x02, tlbHit: false, bypass: false });
    sys.mem.writeWords(l1, old);
    await inv({ name: 'CMD_CFGI_STE', StreamID: SID, Leaf: 0 });
    await expectOk({ sid: SID, iova: VA, read: true }, PA, true);
    // The L1STD cached again; a range of 256 StreamIDs around SID (Range 7) reaches it.
    patch(sys.mem, l1, L1STD_BYTES / 4, [[L1STD_F.Span, 0]]);
    await inv({ name: 'CMD_CFGI_STE_RANGE', StreamID: 0x680, Range: 7 });
    expect(await sys.dma({ sid: SID, iova: VA, read: true })).toMatchObject({ status: 'abort', event: 0x02 });
    expect(await records()).toEqual([['C_BAD_STREAMID', [0x02, SID, 0, 0, 0, 0, 0, 0]], ['C_BAD_STREAMID', [0x02, SID, 0, 0, 0, 0, 0, 0]]]);
    sys.mem.writeWords(l1, old);
    await inv({ name: 'CMD_CFGI_STE', StreamID: SID, Leaf: 0 });
    await expectOk({ sid: SID, iova: VA, read: true }, PA, true);
  });
});

describe('a 2-level CD table with SubstreamIDs (§5.2 S1Fmt, §5.3)', () => {
  const SID = 0x201;
  const VA = 0x3000_0000;
  const PA_A = 0x5_0000_0000;
  const PA_B = 0x5_1000_0000;
  beforeAll(async () => {
    // 12 SubstreamID bits: more than one 64KB leaf table of 1024 CDs, so the driver makes it 2-level.
    const a = (await sys.driver.attachStage1(SID, { ssid: 5, ssidBits: 12, asid: 0x21, granule: 4096, ias: 48 })).domain;
    const b = (await sys.driver.attachStage1(SID, { ssid: 0x801, asid: 0x22, granule: 4096, ias: 48 })).domain;
    await sys.driver.map(a, VA, PA_A, 4096, { read: true, write: true });
    await sys.driver.map(b, VA, PA_B, 4096, { read: true, write: true });
    await sys.driver.map(a, VA + 0x1000, PA_A + 0x1000, 4096, { read: true });
  });

  it('the STE points at L1CDs; only the leaf tables in use are valid', () => {
    const ste = readWords(sys.mem, stePa(sys.mem, sys, SID)!, STE_BYTES / 4);
    const f = (fl: { lsb: number; width: number }) => getBits(ste, fl.lsb, fl.width);
    expect([f(STE_F.Config), f(STE_F.S1Fmt), f(STE_F.S1CDMax), f(STE_F.S1DSS)]).toEqual([STE_CONFIG.S1_TRANS, STE_S1FMT.L2_64K, 12, STE_S1DSS.SSID0]);
    const l1 = steS1ContextPtr(ste);
    const valid = [0, 1, 2, 3].map((i) => l1cdValid(readWords(sys.mem, l1 + 8 * i, 2)));
    expect(valid).toEqual([true, false, true, false]);
  });

  it('each SubstreamID translates through its own CD and ASID, and hits the TLB the second time', async () => {
    await expectOk({ sid: SID, ssid: 5, iova: VA + 0x44, read: true }, PA_A + 0x44, false);
    await expectOk({ sid: SID, ssid: 0x801, iova: VA + 0x44, read: true }, PA_B + 0x44, false);
    await expectOk({ sid: SID, ssid: 5, iova: VA + 0x48, write: true }, PA_A + 0x48, true);
    await expectOk({ sid: SID, ssid: 0x801, iova: VA + 0x48, write: true }, PA_B + 0x48, true);
  });

  it('records the SubstreamID: F_PERMISSION with SSV, C_BAD_CD, C_BAD_SUBSTREAMID, F_STREAM_DISABLED', async () => {
    await events();
    // A write to SubstreamID 5's read-only page.
    expect(await sys.dma({ sid: SID, ssid: 5, iova: VA + 0x1010, write: true })).toMatchObject({ status: 'abort', event: 0x13 });
    // CD 6 sits in a valid leaf table but was never written: V == 0 (§5.4).
    expect(await sys.dma({ sid: SID, ssid: 6, iova: VA, read: true })).toMatchObject({ status: 'abort', event: 0x0a });
    // SubstreamID 0x401: its L1CD (index 1) has V == 0 (§5.3.1); 0x1000: at 2^S1CDMax.
    expect(await sys.dma({ sid: SID, ssid: 0x401, iova: VA, read: true })).toMatchObject({ status: 'abort', event: 0x08 });
    expect(await sys.dma({ sid: SID, ssid: 0x1000, iova: VA, read: true })).toMatchObject({ status: 'abort', event: 0x08 });
    // S1DSS == 0b10: SubstreamID 0 is reserved for traffic without one (§5.2, §7.3.7).
    expect(await sys.dma({ sid: SID, ssid: 0, iova: VA, read: true })).toMatchObject({ status: 'abort', event: 0x06 });
    expect(await records()).toEqual([
      ['F_PERMISSION', [...dw0(0x13, SID, 5), 0, faultW3({ read: false, cls: CLASS_IN }), ...w64(VA + 0x1010), 0, 0]],
      ['C_BAD_CD', [...dw0(0x0a, SID, 6), 0, 0, 0, 0, 0, 0]],
      ['C_BAD_SUBSTREAMID', [0x08 | (0x401 << 12), SID, 0, 0, 0, 0, 0, 0]],
      ['C_BAD_SUBSTREAMID', [0x08 | (0x1000 << 12), SID, 0, 0, 0, 0, 0, 0]],
      // §7.3.7: only the event number and the StreamID.
      ['F_STREAM_DISABLED', [0x06, SID, 0, 0, 0, 0, 0, 0]],
    ]);
  });

  it('CMD_CFGI_CD with Leaf == 0 drops the L1CD that located the CD (§4.3.3)', async () => {
    const ste = stePa(sys.mem, sys, SID)!;
    const l1 = steS1ContextPtr(readWords(sys.mem, ste, STE_BYTES / 4)) + 2 * L1CD_BYTES; // SubstreamID 0x801
    await expectOk({ sid: SID, ssid: 0x801, iova: VA + 0x4, read: true }, PA_B + 0x4, true);
    await events();
    const old = patch(sys.mem, l1, L1CD_BYTES / 4, [[L1CD_F.V, 0]]);
    // Leaf == 1: only the CD must go (the model keeps the L1CD, §4.3.3); refetched through it.
    await inv({ name: 'CMD_CFGI_CD', StreamID: SID, SubstreamID: 0x801, Leaf: 1 });
    await expectOk({ sid: SID, ssid: 0x801, iova: VA + 0x4, read: true }, PA_B + 0x4, true);
    await inv({ name: 'CMD_CFGI_CD', StreamID: SID, SubstreamID: 0x801, Leaf: 0 });
    expect(await sys.dma({ sid: SID, ssid: 0x801, iova: VA + 0x4, read: true })).toMatchObject({ status: 'abort', event: 0x08 });
    // SubstreamID 5, under another L1CD, is untouched.
    await expectOk({ sid: SID, ssid: 5, iova: VA + 0x4, read: true }, PA_A + 0x4, true);
    expect(await records()).toEqual([['C_BAD_SUBSTREAMID', [0x08 | (0x801 << 12), SID, 0, 0, 0, 0, 0, 0]]]);
    sys.mem.writeWords(l1, old);
    await inv({ name: 'CMD_CFGI_CD', StreamID: SID, SubstreamID: 0x801, Leaf: 0 });
    await expectOk({ sid: SID, ssid: 0x801, iova: VA + 0x4, read: true }, PA_B + 0x4, true);
  });
});

describe('stage 2 and nested translation (§3.3.2, §5.2)', () => {
  const S2_SID = 0x301;
  const NEST_SID = 0x302;
  const IPA = 0x8000_0000;
  const PA = 0x7_0000_0000;
  /** The nest parent of the nested streams (VMID 0x41), on StreamID 0x3ff. */
  let s2Domain: Promise<number>;

  beforeAll(() => {
    s2Domain = sys.driver.attachStage2(0x3ff, { vmid: 0x41, granule: 4096, ipaBits: 40 }).then((r) => r.domain);
  });

  it('stage 2 only, 64KB granule: IPA to PA, a TLB hit, and a stage 2 fault with S2 == 1 and the IPA', async () => {
    await events();
    const { domain } = await sys.driver.attachStage2(S2_SID, { vmid: 0x31, granule: 65536, ipaBits: 40 });
    await sys.driver.map(domain, IPA, PA, 65536, { read: true, write: true });
    const ste = readWords(sys.mem, stePa(sys.mem, sys, S2_SID)!, STE_BYTES / 4);
    expect(getBits(ste, STE_F.Config.lsb, STE_F.Config.width)).toBe(STE_CONFIG.S2_TRANS);
    await expectOk({ sid: S2_SID, iova: IPA + 0xfff0, read: true }, PA + 0xfff0, false);
    await expectOk({ sid: S2_SID, iova: IPA + 0x10, write: true }, PA + 0x10, true);
    const miss = IPA + 0x1_0000 + 0x88;
    expect(await sys.dma({ sid: S2_SID, iova: miss, read: true })).toEqual({ status: 'abort', event: 0x10, tlbHit: false, bypass: false });
    const ev = await events();
    expect(ev.map((e) => [e.name, [...e.words]])).toEqual([
      ['F_TRANSLATION', [...dw0(0x10, S2_SID), 0, faultW3({ read: true, s2: true, cls: CLASS_IN }), ...w64(miss), ...ipaWords(miss)]],
    ]);
    expect(ev[0]!.fields).toMatchObject({ S2: 1, CLASS: CLASS_IN, IPA: BigInt(miss - (miss % 4096)) });
  });

  it('nested: VA to IPA to PA, a TLB hit, and a stage 2 fault on the IPA stage 1 produced (S2 == 1, CLASS == IN)', async () => {
    await events();
    const s2 = await s2Domain;
    const { domain } = await sys.driver.attachNested(NEST_SID, { s2, asid: 0x41, granule: 4096, ias: 48 });
    const VA = 0x50_0000_0000;
    const IPA1 = 0x2_0000_0000;
    const PA1 = 0x6_0000_3000;
    await sys.driver.map(domain, VA, IPA1, 4096, { read: true, write: true });
    await sys.driver.map(s2, IPA1, PA1, 4096, { read: true, write: true });
    // A second page whose IPA stage 2 does not map.
    await sys.driver.map(domain, VA + 0x1000, IPA1 + 0x1000, 4096, { read: true, write: true });
    const ste = readWords(sys.mem, stePa(sys.mem, sys, NEST_SID)!, STE_BYTES / 4);
    expect(getBits(ste, STE_F.Config.lsb, STE_F.Config.width)).toBe(STE_CONFIG.NESTED);
    expect(getBits(ste, STE_F.S2VMID.lsb, STE_F.S2VMID.width)).toBe(0x41);

    await expectOk({ sid: NEST_SID, iova: VA + 0x123, read: true }, PA1 + 0x123, false);
    await expectOk({ sid: NEST_SID, iova: VA + 0x124, write: true }, PA1 + 0x124, true);
    const va2 = VA + 0x1456;
    expect(await sys.dma({ sid: NEST_SID, iova: va2, write: true })).toEqual({ status: 'abort', event: 0x10, tlbHit: false, bypass: false });
    // A VA stage 1 does not map: a stage 1 fault (S2 == 0), no IPA.
    const va3 = VA + 0x8000;
    expect(await sys.dma({ sid: NEST_SID, iova: va3, read: true })).toMatchObject({ status: 'abort', event: 0x10 });
    const ev = await events();
    expect(ev.map((e) => [e.name, [...e.words]])).toEqual([
      ['F_TRANSLATION', [...dw0(0x10, NEST_SID), 0, faultW3({ read: false, s2: true, cls: CLASS_IN }), ...w64(va2), ...ipaWords(IPA1 + 0x1456)]],
      ['F_TRANSLATION', [...dw0(0x10, NEST_SID), 0, faultW3({ read: true, cls: CLASS_IN }), ...w64(va3), 0, 0]],
    ]);
    expect(ev[0]!.fields).toMatchObject({ S2: 1, CLASS: CLASS_IN, RnW: 0, IPA: BigInt(IPA1 + 0x1000), InputAddr: BigInt(va2) });
  });

  it('nested: stage 2 faults on a stage 1 descriptor fetch (CLASS == TTD) and on the CD fetch (CLASS == CD), IPA = the structure\'s address', async () => {
    const s2 = await s2Domain;
    const sid = 0x305;
    const { domain } = await sys.driver.attachNested(sid, { s2, asid: 0x45, granule: 4096, ias: 48 });
    const VA = 0x60_0000_0000;
    const IPA1 = 0x3_0000_0000;
    await sys.driver.map(s2, IPA1, 0x6_1000_0000, 4096, { read: true, write: true });
    await sys.driver.map(domain, VA, IPA1, 4096, { read: true, write: true });
    await expectOk({ sid, iova: VA, read: true }, 0x6_1000_0000, false);
    await events();
    const s1 = await info(domain);
    const s2i = await info(s2);

    // The level 3 table holding VA + 4KB's descriptor: its IPA (== PA) is unmapped at stage 2.
    await sys.driver.map(domain, VA + 0x1000, IPA1, 4096, { read: true });
    const desc = walkLeaf(sys.mem, s1, VA + 0x1000).pa;
    const tablePage = desc - (desc % 4096);
    const tableLeaf = walkLeaf(sys.mem, s2i, tablePage);
    setLowBits(sys.mem, tableLeaf, 0, DESC_VALID);
    await inv({ name: 'CMD_TLBI_S2_IPA', VMID: 0x41, Address: tablePage });
    expect(await sys.dma({ sid, iova: VA + 0x1008, read: true })).toMatchObject({ status: 'abort', event: 0x10 });
    restore(sys.mem, tableLeaf);
    await inv({ name: 'CMD_TLBI_S2_IPA', VMID: 0x41, Address: tablePage });

    // The CD's page unmapped at stage 2.
    const cd = cdPa(sys.mem, stePa(sys.mem, sys, sid)!, 0)!;
    const cdLeaf = walkLeaf(sys.mem, s2i, cd);
    setLowBits(sys.mem, cdLeaf, 0, DESC_VALID);
    await inv({ name: 'CMD_TLBI_S2_IPA', VMID: 0x41, Address: cd }, { name: 'CMD_CFGI_CD', StreamID: sid, SubstreamID: 0, Leaf: 1 });
    expect(await sys.dma({ sid, iova: VA + 0x2010, write: true })).toMatchObject({ status: 'abort', event: 0x10 });
    restore(sys.mem, cdLeaf);
    await inv({ name: 'CMD_TLBI_S2_IPA', VMID: 0x41, Address: cd });

    const ev = await events();
    expect(ev.map((e) => [e.name, [...e.words]])).toEqual([
      ['F_TRANSLATION', [...dw0(0x10, sid), 0, faultW3({ read: true, s2: true, cls: CLASS_TTD }), ...w64(VA + 0x1008), ...ipaWords(desc)]],
      ['F_TRANSLATION', [...dw0(0x10, sid), 0, faultW3({ read: false, s2: true, cls: CLASS_CD }), ...w64(VA + 0x2010), ...ipaWords(cd)]],
    ]);
    expect(ev.map((e) => [e.fields.S2, e.fields.CLASS])).toEqual([[1, CLASS_TTD], [1, CLASS_CD]]);
    await expectOk({ sid, iova: VA + 0x1010, read: true }, 0x6_1000_0010, false);
  });
});

describe('bypass and abort STEs (§5.2 Config)', () => {
  it('bypass: the address goes out unchanged, flagged as bypass', async () => {
    await sys.driver.attachBypass(0x303);
    const ste = readWords(sys.mem, stePa(sys.mem, sys, 0x303)!, STE_BYTES / 4);
    expect(getBits(ste, STE_F.Config.lsb, STE_F.Config.width)).toBe(STE_CONFIG.BYPASS);
    expect(await sys.dma({ sid: 0x303, iova: 0x1234_5678, write: true })).toEqual({ status: 'ok', pa: 0x1234_5678, tlbHit: false, bypass: true });
  });

  it('detach: STE Config abort terminates the traffic with an abort and records no event (§7.3.7 note)', async () => {
    await events();
    const { domain } = await sys.driver.attachStage1(0x304, { asid: 0x34, granule: 4096, ias: 48 });
    await sys.driver.map(domain, 0x10_0000, 0x4_0000_0000, 4096, { read: true, write: true });
    await expectOk({ sid: 0x304, iova: 0x10_0010, read: true }, 0x4_0000_0010, false);
    await expectOk({ sid: 0x304, iova: 0x10_0010, read: true }, 0x4_0000_0010, true);
    await sys.driver.detach(0x304);
    const ste = readWords(sys.mem, stePa(sys.mem, sys, 0x304)!, STE_BYTES / 4);
    expect([getBits(ste, STE_F.V.lsb, 1), getBits(ste, STE_F.Config.lsb, STE_F.Config.width)]).toEqual([1, STE_CONFIG.ABORT]);
    expect(await sys.dma({ sid: 0x304, iova: 0x10_0010, read: true })).toEqual({ status: 'abort', tlbHit: false, bypass: false });
    expect(await records()).toEqual([]);
  });
});
