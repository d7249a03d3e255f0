/**
 * Invalidation with exact scope, end to end (IHI0070 G.b §4.3, §4.4, §4.5.1): the SMMU device
 * and the guest driver in their workers, DMA from the main thread.
 *
 * Every test follows one pattern. A DMA transaction is translated and cached (the second access
 * reports a TLB, configuration-cache or ATC hit). The test then changes the page table, STE or CD
 * directly in memory, WITHOUT an invalidation, and the SMMU keeps answering from its cache (the
 * stale output address, still a hit). After the one invalidation command under test (issue() adds
 * the CMD_SYNC) the changed translation is fresh (the new output address from a walk, or the fault
 * the new structure causes), while every cached translation outside the command's scope still
 * answers stale.
 *
 * The spec permits over-invalidation (§4.3, §4.4). The model makes it an option, off by default, so
 * "survives" here means: outside the command's minimum scope as the spec words it, which is the
 * model's default behaviour. Where the spec says an entry is only "not required" to be invalidated
 * the test says so.
 *
 * One System for the file: a linear Stream table of 256 STEs, and StreamID 50's endpoint never
 * answers ATS invalidations (SystemConfig.translate.atcTimeoutSids).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { System, type Command } from '../../src/system/system.ts';
import type { DrainedEvent } from '../../src/driver/driver.ts';
import type { DomainInfo } from '../../src/driver/domain.ts';
import { CERROR_ATC_INV_SYNC } from '../../src/spec/cerror.ts';
import { REG, regGet, regSet } from '../../src/spec/registers.ts';
import { CD_BYTES, CD_F, STE_BYTES, STE_F, STE_STRW } from '../../src/spec/structures.ts';
import { DESC_NG, cdPa, patch, readWords, setLowBits, setOutput, stePa, walkLeaf, type TableGeometry } from '../helpers/walk.ts';

const POLICY = { mode: 'hybrid' as const, spin: 2000, timeoutMs: 5000 };
const TIMEOUT_SID = 50;
const PAGE = 0x1000;
/** CMD_TLBI_* TG (§4.4.1.1): 0 none, 1 4KB, 2 16KB, 3 64KB. */
const TG_4K = 1;
const TG_16K = 2;

let sys: System;

beforeAll(async () => {
  sys = await System.start({ policy: POLICY, trace: true, translate: { atcTimeoutSids: [TIMEOUT_SID] } });
});

afterAll(async () => {
  await sys?.stop();
});

/** Issue commands (the driver adds the CMD_SYNC) and expect no command error. */
async function inv(...cmds: Command[]): Promise<void> {
  expect((await sys.driver.issue(cmds)).errors).toEqual([]);
}

/** The last `n` commands the SMMU took from its queue: name, outcome, words. */
function traceTail(n: number): [unknown, string, number[]][] {
  return sys.trace().entries.slice(-n).map((e) => [e.json.name, e.outcome, [...e.words]]);
}

async function events(): Promise<[string, number[]][]> {
  return ((await sys.driver.drainEvents()) as DrainedEvent[]).map((e) => [e.name, [...e.words]]);
}

const geometry = new Map<number, TableGeometry>();
async function geo(domain: number): Promise<TableGeometry> {
  let g = geometry.get(domain);
  if (g === undefined) {
    g = await sys.driver.call<DomainInfo>('domainInfo', domain);
    geometry.set(domain, g);
  }
  return g;
}

// ---------------------------------------------------------------------------------------------
// Probes: one watched translation each
// ---------------------------------------------------------------------------------------------

interface Probe {
  readonly name: string;
  readonly sid: number;
  readonly ssid?: number;
  readonly ats?: boolean;
  /** The input address (VA, or IPA for a stage 2-only stream), with an offset into the page. */
  readonly iova: number;
  /** Output address now, and after the redirect. */
  readonly oldPa: number;
  readonly newPa: number;
  /** The page table whose leaf is rewritten, the address that selects it, and its new output. */
  readonly table: TableGeometry;
  readonly leafIa: number;
  readonly newOa: number;
}

/** Probes translate this offset into their page. */
const OFF = 0x2c8;
/** A redirected leaf outputs its old address plus this (aligned to every leaf size used). */
const MOVED = 0x10_0000_0000;

/**
 * Map one page (or `size` bytes) of `domain` at `ia` to `pa`; the probe redirects it to `pa + MOVED`.
 * `global`: clear the leaf's nG bit before the first walk, so the TLB entry is global (§3.17.1;
 * Linux, and so the driver, maps every stage 1 page with nG == 1).
 */
async function probe(name: string, domain: number, sid: number, ia: number, pa: number, o: { ssid?: number; ats?: boolean; global?: boolean; size?: number } = {}): Promise<Probe> {
  await sys.driver.map(domain, ia, pa, o.size ?? PAGE, { read: true, write: true });
  const table = await geo(domain);
  if (o.global === true) setLowBits(sys.mem, walkLeaf(sys.mem, table, ia), 0, DESC_NG);
  return {
    name, sid, iova: ia + OFF, oldPa: pa + OFF, newPa: pa + MOVED + OFF, table, leafIa: ia, newOa: pa + MOVED,
    ...(o.ssid !== undefined ? { ssid: o.ssid } : {}), ...(o.ats === true ? { ats: true } : {}),
  };
}

function req(p: Probe): { sid: number; ssid?: number; iova: number; read: true; ats?: boolean } {
  return { sid: p.sid, iova: p.iova, read: true, ...(p.ssid !== undefined ? { ssid: p.ssid } : {}), ...(p.ats === true ? { ats: true } : {}) };
}

async function look(p: Probe): Promise<{ name: string; pa?: number; tlbHit: boolean; status: string }> {
  const r = await sys.dma(req(p));
  return { name: p.name, status: r.status, tlbHit: r.tlbHit, ...(r.pa !== undefined ? { pa: r.pa } : {}) };
}

/** Translate each probe twice: a walk, then a hit. */
async function warm(...ps: Probe[]): Promise<void> {
  for (const p of ps) {
    expect(await look(p)).toEqual({ name: p.name, status: 'ok', pa: p.oldPa, tlbHit: false });
    expect(await look(p)).toEqual({ name: p.name, status: 'ok', pa: p.oldPa, tlbHit: true });
  }
}

/** Change each probe's leaf in memory (no invalidation). */
function redirect(...ps: Probe[]): void {
  for (const p of ps) setOutput(sys.mem, walkLeaf(sys.mem, p.table, p.leafIa), p.newOa);
}

/** Still answered from the cache: the old output address, a hit. */
async function stale(...ps: Probe[]): Promise<void> {
  for (const p of ps) expect(await look(p)).toEqual({ name: p.name, status: 'ok', pa: p.oldPa, tlbHit: true });
}

/** Walked again: the new output address, a miss. */
async function fresh(...ps: Probe[]): Promise<void> {
  for (const p of ps) expect(await look(p)).toEqual({ name: p.name, status: 'ok', pa: p.newPa, tlbHit: false });
}

/** warm + redirect + stale: the starting point of every TLB test. */
async function cachedThenChanged(...ps: Probe[]): Promise<void> {
  await warm(...ps);
  redirect(...ps);
  await stale(...ps);
}

// ---------------------------------------------------------------------------------------------
// Configuration cache (§4.3)
// ---------------------------------------------------------------------------------------------

describe('configuration structure invalidation (§4.3)', () => {
  /** StreamID → its stage 1 domain, each mapping VA at PA + sid · 64KB. */
  const VA = 0x10_0000;
  const paOf = (sid: number) => 0x2_0000_0000 + sid * 0x1_0000;
  const ok = (sid: number, ssid?: number) => sys.dma({ sid, iova: VA + 0x40, read: true, ...(ssid !== undefined ? { ssid } : {}) });

  async function s1(sid: number, asid: number, o: { ssid?: number; ssidBits?: number } = {}): Promise<void> {
    const { domain } = await sys.driver.attachStage1(sid, { asid, granule: 4096, ias: 48, ...o });
    await sys.driver.map(domain, VA, paOf(sid) + (o.ssid ?? 0) * PAGE, PAGE, { read: true, write: true });
  }

  /** Clear V of a structure (64 bytes) in memory; returns the words to put back. */
  function invalidate(pa: number, v: typeof STE_F.V): Uint32Array {
    return patch(sys.mem, pa, STE_BYTES / 4, [[v, 0]]);
  }

  it('CMD_CFGI_STE: that STE and the CDs cached through it, not another StreamID\'s (§4.3.1)', async () => {
    await s1(1, 0x101);
    await s1(2, 0x102);
    for (const sid of [1, 2]) {
      expect(await ok(sid)).toEqual({ status: 'ok', pa: paOf(sid) + 0x40, tlbHit: false, bypass: false });
      expect(await ok(sid)).toEqual({ status: 'ok', pa: paOf(sid) + 0x40, tlbHit: true, bypass: false });
    }
    await events();
    const ste1 = stePa(sys.mem, sys, 1)!;
    const ste2 = stePa(sys.mem, sys, 2)!;
    const old1 = invalidate(ste1, STE_F.V);
    const old2 = invalidate(ste2, STE_F.V);
    // Stale: both STEs are still cached as valid.
    expect(await ok(1)).toMatchObject({ status: 'ok', pa: paOf(1) + 0x40, tlbHit: true });
    expect(await ok(2)).toMatchObject({ status: 'ok', pa: paOf(2) + 0x40, tlbHit: true });
    await inv({ name: 'CMD_CFGI_STE', StreamID: 1, Leaf: 1 });
    expect(await ok(1)).toEqual({ status: 'abort', event: 0x04, tlbHit: false, bypass: false });
    expect(await ok(2)).toMatchObject({ status: 'ok', pa: paOf(2) + 0x40, tlbHit: true });
    await inv({ name: 'CMD_CFGI_STE', StreamID: 2, Leaf: 1 });
    expect(await ok(2)).toMatchObject({ status: 'abort', event: 0x04 });
    expect(await events()).toEqual([['C_BAD_STE', [0x04, 1, 0, 0, 0, 0, 0, 0]], ['C_BAD_STE', [0x04, 2, 0, 0, 0, 0, 0, 0]]]);

    // Put the STEs back; then the CD of StreamID 1 goes invalid: CMD_CFGI_STE drops it too.
    sys.mem.writeWords(ste1, old1);
    sys.mem.writeWords(ste2, old2);
    await inv({ name: 'CMD_CFGI_STE', StreamID: 1, Leaf: 1 }, { name: 'CMD_CFGI_STE', StreamID: 2, Leaf: 1 });
    expect(await ok(1)).toMatchObject({ status: 'ok', pa: paOf(1) + 0x40 });
    const cd1 = cdPa(sys.mem, ste1, 0)!;
    const oldCd = invalidate(cd1, CD_F.V);
    expect(await ok(1)).toMatchObject({ status: 'ok', tlbHit: true });
    await inv({ name: 'CMD_CFGI_STE', StreamID: 1, Leaf: 1 });
    expect(await ok(1)).toMatchObject({ status: 'abort', event: 0x0a });
    expect(await events()).toEqual([['C_BAD_CD', [0x0a, 1, 0, 0, 0, 0, 0, 0]]]);
    sys.mem.writeWords(cd1, oldCd);
    await inv({ name: 'CMD_CFGI_CD', StreamID: 1, SubstreamID: 0, Leaf: 1 });
    expect(await ok(1)).toMatchObject({ status: 'ok', pa: paOf(1) + 0x40 });
  });

  it('CMD_CFGI_STE_RANGE: an aligned range of 2^(Range+1) StreamIDs; CMD_CFGI_ALL: every one (§4.3.2, §4.3.6)', async () => {
    const sids = [8, 9, 10, 11, 12];
    for (const sid of sids) {
      await s1(sid, 0x100 + sid);
      expect(await ok(sid)).toMatchObject({ status: 'ok', tlbHit: false });
      expect(await ok(sid)).toMatchObject({ status: 'ok', tlbHit: true });
    }
    await events();
    const olds = sids.map((sid) => [stePa(sys.mem, sys, sid)!, invalidate(stePa(sys.mem, sys, sid)!, STE_F.V)] as const);
    for (const sid of sids) expect(await ok(sid)).toMatchObject({ status: 'ok', pa: paOf(sid) + 0x40, tlbHit: true });
    // StreamID 9, Range 1: the bottom two bits are IGNORED, so StreamIDs 8..11.
    await inv({ name: 'CMD_CFGI_STE_RANGE', StreamID: 9, Range: 1 });
    for (const sid of [8, 9, 10, 11]) expect(await ok(sid)).toMatchObject({ status: 'abort', event: 0x04 });
    expect(await ok(12)).toMatchObject({ status: 'ok', pa: paOf(12) + 0x40, tlbHit: true });
    await inv({ name: 'CMD_CFGI_ALL' });
    expect(await ok(12)).toMatchObject({ status: 'abort', event: 0x04 });
    expect((await events()).map(([n, w]) => [n, w[1]])).toEqual([8, 9, 10, 11, 12].map((sid) => ['C_BAD_STE', sid]));
    for (const [pa, words] of olds) sys.mem.writeWords(pa, words);
    await inv({ name: 'CMD_CFGI_ALL' });
    for (const sid of sids) expect(await ok(sid)).toMatchObject({ status: 'ok', pa: paOf(sid) + 0x40 });
  });

  it('CMD_CFGI_CD: one CD of one StreamID; CMD_CFGI_CD_ALL: every CD of that StreamID (§4.3.3, §4.3.4)', async () => {
    // StreamID 16: SubstreamIDs 1 and 2 with their own ASIDs; StreamID 17: one CD.
    await s1(16, 0x160, { ssid: 1, ssidBits: 2 });
    await s1(16, 0x161, { ssid: 2 });
    await s1(17, 0x170);
    const cases: [number, number | undefined][] = [[16, 1], [16, 2], [17, undefined]];
    const expectOk = async (sid: number, ssid: number | undefined, tlbHit: boolean) =>
      expect(await ok(sid, ssid)).toEqual({ status: 'ok', pa: paOf(sid) + (ssid ?? 0) * PAGE + 0x40, tlbHit, bypass: false });
    for (const [sid, ssid] of cases) {
      await expectOk(sid, ssid, false);
      await expectOk(sid, ssid, true);
    }
    await events();
    const ste16 = stePa(sys.mem, sys, 16)!;
    const cds = [cdPa(sys.mem, ste16, 1)!, cdPa(sys.mem, ste16, 2)!, cdPa(sys.mem, stePa(sys.mem, sys, 17)!, 0)!];
    const olds = cds.map((pa) => invalidate(pa, CD_F.V));
    for (const [sid, ssid] of cases) await expectOk(sid, ssid, true);

    await inv({ name: 'CMD_CFGI_CD', StreamID: 16, SubstreamID: 1, Leaf: 1 });
    expect(await ok(16, 1)).toMatchObject({ status: 'abort', event: 0x0a });
    await expectOk(16, 2, true);
    await expectOk(17, undefined, true);
    await inv({ name: 'CMD_CFGI_CD_ALL', StreamID: 16 });
    expect(await ok(16, 2)).toMatchObject({ status: 'abort', event: 0x0a });
    await expectOk(17, undefined, true);
    // A CD that is the stream's only one is CD 0 (§4.3.3 note).
    await inv({ name: 'CMD_CFGI_CD', StreamID: 17, SubstreamID: 0, Leaf: 1 });
    expect(await ok(17)).toMatchObject({ status: 'abort', event: 0x0a });
    // C_BAD_CD records the SubstreamID with SSV (§7.3.11).
    expect(await events()).toEqual([
      ['C_BAD_CD', [0x0a | (1 << 11) | (1 << 12), 16, 0, 0, 0, 0, 0, 0]],
      ['C_BAD_CD', [0x0a | (1 << 11) | (2 << 12), 16, 0, 0, 0, 0, 0, 0]],
      ['C_BAD_CD', [0x0a, 17, 0, 0, 0, 0, 0, 0]],
    ]);
    cds.forEach((pa, i) => sys.mem.writeWords(pa, olds[i]!));
    await inv({ name: 'CMD_CFGI_CD_ALL', StreamID: 16 }, { name: 'CMD_CFGI_CD_ALL', StreamID: 17 });
    for (const [sid, ssid] of cases) expect(await ok(sid, ssid)).toMatchObject({ status: 'ok' });
    // CD words are 64 bytes each: the patch touched only V.
    expect(readWords(sys.mem, cds[0]!, CD_BYTES / 4)).toEqual(olds[0]);
  });
});

// ---------------------------------------------------------------------------------------------
// TLB (§4.4)
// ---------------------------------------------------------------------------------------------

describe('TLB invalidation (§4.4)', () => {
  // Stage 1 domains: A and B share VMID 1 with ASIDs 0x20 and 0x21; C has A's ASID in VMID 2;
  // H is a 16KB-granule domain in VMID 1. S is a stage 2 domain (VMID 3) used by a stage 2-only
  // stream and as the nest parent of stream N; S4 another stage 2 domain (VMID 4). E is a stage 1
  // stream whose STE the test turns into an NS-EL2 one (STE.STRW == 0b10, §5.2).
  const SID = { A: 32, B: 33, C: 34, S: 35, S4: 36, N: 37, E: 38, H: 39 } as const;
  const d = { A: 0, B: 0, C: 0, S: 0, S4: 0, N: 0, E: 0, H: 0 };

  beforeAll(async () => {
    const s1 = async (sid: number, asid: number, vmid: number, granule: 4096 | 16384 = 4096) =>
      (await sys.driver.attachStage1(sid, { asid, vmid, granule, ias: 48 })).domain;
    d.A = await s1(SID.A, 0x20, 1);
    d.B = await s1(SID.B, 0x21, 1);
    d.C = await s1(SID.C, 0x20, 2);
    d.H = await s1(SID.H, 0x24, 1, 16384);
    d.S = (await sys.driver.attachStage2(SID.S, { vmid: 3, granule: 4096, ipaBits: 40 })).domain;
    d.S4 = (await sys.driver.attachStage2(SID.S4, { vmid: 4, granule: 4096, ipaBits: 40 })).domain;
    d.N = (await sys.driver.attachNested(SID.N, { s2: d.S, asid: 0x22, granule: 4096, ias: 48 })).domain;
    d.E = await s1(SID.E, 0x23, 0);
    const ste = stePa(sys.mem, sys, SID.E)!;
    patch(sys.mem, ste, STE_BYTES / 4, [[STE_F.STRW, STE_STRW.EL2]]);
    await inv({ name: 'CMD_CFGI_STE', StreamID: SID.E, Leaf: 1 });
  });

  /** Stage 1 VA → IPA in N, and IPA → PA in S. The probe redirects N's stage 1 leaf to another IPA that S maps. */
  async function nested(name: string, va: number, ipa: number, pa: number): Promise<Probe> {
    await sys.driver.map(d.S, ipa, pa, PAGE, { read: true, write: true });
    const ipa2 = ipa + 0x100_0000;
    const pa2 = pa + MOVED;
    await sys.driver.map(d.S, ipa2, pa2, PAGE, { read: true, write: true });
    await sys.driver.map(d.N, va, ipa, PAGE, { read: true, write: true });
    return { name, sid: SID.N, iova: va + OFF, oldPa: pa + OFF, newPa: pa2 + OFF, table: await geo(d.N), leafIa: va, newOa: ipa2 };
  }

  it('CMD_TLBI_NH_VA, TG == 0: one page of one ASID and VMID, and global entries of any ASID (§4.4.2.4)', async () => {
    const VA = 0x1_0000_0000;
    const PA = 0x1_0000_0000;
    const a1 = await probe('A page', d.A, SID.A, VA, PA);
    const a2 = await probe('A next page', d.A, SID.A, VA + PAGE, PA + PAGE);
    const a3 = await probe('A third page', d.A, SID.A, VA + 2 * PAGE, PA + 2 * PAGE);
    const b1 = await probe('B same VA', d.B, SID.B, VA, PA + 0x10_0000);
    const c1 = await probe('C same VA and ASID, VMID 2', d.C, SID.C, VA, PA + 0x20_0000);
    const bg = await probe('B global', d.B, SID.B, VA + 5 * PAGE, PA + 0x30_0000, { global: true });
    await cachedThenChanged(a1, a2, a3, b1, c1, bg);

    await inv({ name: 'CMD_TLBI_NH_VA', VMID: 1, ASID: 0x20, Address: VA });
    await fresh(a1);
    // What reached the SMMU: the command, then issue()'s CMD_SYNC, both consumed. Words: opcode
    // 0x12; VMID [47:32], ASID [63:48]; Address[63:12] at [127:76] (§4.4.2.4, fact sheet §4.3).
    // Read after a DMA answer: the device writes a command's trace record after executing it, so
    // the CMD_SYNC's record can trail its completion signal.
    expect(traceTail(2)).toEqual([['CMD_TLBI_NH_VA', 'consumed', [0x12, 0x0020_0001, 0, 1]], ['CMD_SYNC', 'consumed', expect.any(Array)]]);
    await stale(a2, a3, b1, c1, bg);
    // A's ASID names B's global entry: global entries match any ASID (§4.4.2.4).
    await inv({ name: 'CMD_TLBI_NH_VA', VMID: 1, ASID: 0x20, Address: VA + 5 * PAGE });
    await fresh(bg);
    // Leaf == 1 removes last-level entries (every entry the model caches is one).
    await inv({ name: 'CMD_TLBI_NH_VA', VMID: 1, ASID: 0x20, Address: VA + 2 * PAGE, Leaf: 1 });
    await fresh(a3);
    await stale(a2, b1, c1);
  });

  it('CMD_TLBI_NH_VA and NH_VAA with a range: TG, NUM, SCALE and the TTL hint (§4.4.1.1)', async () => {
    const VA = 0x2_0000_0000;
    const PA = 0x2_0000_0000;
    const pages = [];
    for (let i = 0; i < 8; i++) pages.push(await probe(`A page ${i}`, d.A, SID.A, VA + i * PAGE, PA + i * PAGE));
    const blockVa = VA + 0x20_0000;
    const block = await probe('A 2MB block', d.A, SID.A, blockVa, PA + 0x20_0000, { size: 0x20_0000 });
    expect(walkLeaf(sys.mem, block.table, blockVa).level).toBe(2);
    const h = await probe('H 16KB page', d.H, SID.H, VA, PA + 0x40_0000, { size: 0x4000 });
    await cachedThenChanged(...pages, block, h);

    // Range = (NUM + 1) · 2^SCALE · 4KB = 16KB from VA + 8KB: pages 2..5.
    await inv({ name: 'CMD_TLBI_NH_VA', VMID: 1, ASID: 0x20, Address: VA + 2 * PAGE, TG: TG_4K, NUM: 1, SCALE: 1, TTL: 3 });
    await fresh(pages[2]!, pages[3]!, pages[4]!, pages[5]!);
    await stale(pages[0]!, pages[1]!, pages[6]!, pages[7]!, block, h);

    // TTL == 3 names level 3 leaves: the level 2 block is not required to go; TTL == 2 removes it.
    await inv({ name: 'CMD_TLBI_NH_VA', VMID: 1, ASID: 0x20, Address: blockVa, TG: TG_4K, NUM: 0, SCALE: 0, TTL: 3 });
    await stale(block);
    await inv({ name: 'CMD_TLBI_NH_VA', VMID: 1, ASID: 0x20, Address: blockVa, TG: TG_4K, NUM: 0, SCALE: 0, TTL: 2 });
    await fresh(block);

    // TG == 16KB over [VA, VA + 32KB), all ASIDs of VMID 1: H's 16KB entry goes; A's pages 0 and 1
    // were inserted with the 4KB granule, which the command is not required to touch.
    await inv({ name: 'CMD_TLBI_NH_VAA', VMID: 1, Address: VA, TG: TG_16K, NUM: 1, SCALE: 0, TTL: 0 });
    await fresh(h);
    await stale(pages[0]!, pages[1]!);
    await inv({ name: 'CMD_TLBI_NH_VAA', VMID: 1, Address: VA, TG: TG_4K, NUM: 1, SCALE: 0, TTL: 0 });
    await fresh(pages[0]!, pages[1]!);
    await stale(pages[6]!, pages[7]!);
  });

  it('CMD_TLBI_NH_VAA: one VA for every ASID of the VMID, global included (§4.4.2.3)', async () => {
    const VA = 0x3_0000_0000;
    const PA = 0x3_0000_0000;
    const a = await probe('A', d.A, SID.A, VA, PA);
    const b = await probe('B same VA', d.B, SID.B, VA, PA + 0x10_0000);
    const c = await probe('C same VA, VMID 2', d.C, SID.C, VA, PA + 0x20_0000);
    const a2 = await probe('A other page', d.A, SID.A, VA + PAGE, PA + PAGE);
    const ag = await probe('A global', d.A, SID.A, VA + 3 * PAGE, PA + 3 * PAGE, { global: true });
    await cachedThenChanged(a, b, c, a2, ag);
    await inv({ name: 'CMD_TLBI_NH_VAA', VMID: 1, Address: VA });
    await fresh(a, b);
    await stale(c, a2, ag);
    await inv({ name: 'CMD_TLBI_NH_VAA', VMID: 1, Address: VA + 3 * PAGE, Leaf: 1 });
    await fresh(ag);
    await stale(c, a2);
  });

  it('CMD_TLBI_NH_ASID: the non-global entries of one ASID in one VMID (§4.4.2.2)', async () => {
    const VA = 0x4_0000_0000;
    const PA = 0x4_0000_0000;
    const a1 = await probe('A', d.A, SID.A, VA, PA);
    const a2 = await probe('A, another table', d.A, SID.A, VA + 0x4000_0000, PA + PAGE);
    const ag = await probe('A global', d.A, SID.A, VA + 2 * PAGE, PA + 2 * PAGE, { global: true });
    const b = await probe('B', d.B, SID.B, VA, PA + 0x10_0000);
    const c = await probe('C same ASID, VMID 2', d.C, SID.C, VA, PA + 0x20_0000);
    await cachedThenChanged(a1, a2, ag, b, c);
    await inv({ name: 'CMD_TLBI_NH_ASID', VMID: 1, ASID: 0x20 });
    await fresh(a1, a2);
    await stale(ag, b, c);
  });

  it('CMD_TLBI_NH_ALL: every stage 1 entry of the VMID, global included; not stage 2, not EL2 (§4.4.2.1)', async () => {
    const VA = 0x5_0000_0000;
    const PA = 0x5_0000_0000;
    const IPA = 0x15_0000_0000;
    const a = await probe('A', d.A, SID.A, VA, PA);
    const ag = await probe('A global', d.A, SID.A, VA + PAGE, PA + PAGE, { global: true });
    const b = await probe('B', d.B, SID.B, VA, PA + 0x10_0000);
    const c = await probe('C, VMID 2', d.C, SID.C, VA, PA + 0x20_0000);
    const s = await probe('S stage 2 only, VMID 3', d.S, SID.S, IPA, PA + 0x30_0000);
    const n = await nested('N nested, VMID 3', VA, IPA + 0x10_0000, PA + 0x40_0000);
    const e = await probe('E, NS-EL2', d.E, SID.E, VA, PA + 0x50_0000);
    await cachedThenChanged(a, ag, b, c, s, n, e);
    await inv({ name: 'CMD_TLBI_NH_ALL', VMID: 1 });
    await fresh(a, ag, b);
    await stale(c, s, n, e);
    // VMID 3: the nested stream's combined entry goes, the stage 2-only stream's entry stays.
    await inv({ name: 'CMD_TLBI_NH_ALL', VMID: 3 });
    await fresh(n);
    await stale(c, s, e);
    // VMID 0 tags the NS-EL1 stage 1-only streams attached without a VMID; NS-EL2 entries are not NS-EL1.
    await inv({ name: 'CMD_TLBI_NH_ALL', VMID: 0 });
    await stale(e);
  });

  it('CMD_TLBI_S2_IPA: stage 2 entries by VMID and IPA; combined entries then need CMD_TLBI_NH_* (§4.4.3.1)', async () => {
    const IPA = 0x16_0000_0000;
    const PA = 0x6_0000_0000;
    const s1 = await probe('S IPA', d.S, SID.S, IPA, PA);
    const s2 = await probe('S next IPA', d.S, SID.S, IPA + PAGE, PA + PAGE);
    const s4 = await probe('S4 same IPA, VMID 4', d.S4, SID.S4, IPA, PA + 0x10_0000);
    // N: VA → IPA3 (stage 1) → PA (stage 2, domain S). This probe redirects the stage 2 leaf.
    const VA = 0x6_0000_0000;
    const IPA3 = IPA + 0x10_0000;
    await sys.driver.map(d.N, VA, IPA3, PAGE, { read: true, write: true });
    const n: Probe = { ...(await probe('N via S', d.S, SID.N, IPA3, PA + 0x20_0000)), iova: VA + OFF };
    await cachedThenChanged(s1, s2, s4, n);

    await inv({ name: 'CMD_TLBI_S2_IPA', VMID: 3, Address: IPA });
    await fresh(s1);
    await stale(s2, s4, n);
    await inv({ name: 'CMD_TLBI_S2_IPA', VMID: 3, Address: IPA + PAGE, TG: TG_4K, NUM: 0, SCALE: 0, TTL: 3, Leaf: 1 });
    await fresh(s2);
    // §4.4.3.1: not required to touch combined stage 1+2 entries; the model keeps them.
    await inv({ name: 'CMD_TLBI_S2_IPA', VMID: 3, Address: IPA3 });
    await stale(n, s4);
    // Linux's sequence: stage 1 invalidation of the VMID next; the walk then reaches the new PA.
    await inv({ name: 'CMD_TLBI_NH_VAA', VMID: 3, Address: VA });
    await fresh(n);
    await stale(s4);
  });

  it('CMD_TLBI_S12_VMALL: every stage of one VMID (§4.4.3.2)', async () => {
    const IPA = 0x17_0000_0000;
    const PA = 0x7_0000_0000;
    const VA = 0x7_0000_0000;
    const s = await probe('S, VMID 3', d.S, SID.S, IPA, PA);
    const n = await nested('N, VMID 3', VA, IPA + 0x10_0000, PA + 0x10_0000);
    const s4 = await probe('S4, VMID 4', d.S4, SID.S4, IPA, PA + 0x20_0000);
    const a = await probe('A, VMID 1', d.A, SID.A, VA, PA + 0x30_0000);
    await cachedThenChanged(s, n, s4, a);
    await inv({ name: 'CMD_TLBI_S12_VMALL', VMID: 3 });
    await fresh(s, n);
    await stale(s4, a);
  });

  it('CMD_TLBI_NSNH_ALL: every NS-EL1 entry at every stage; NS-EL2 entries stay (§4.4.4.1)', async () => {
    const IPA = 0x18_0000_0000;
    const PA = 0x8_0000_0000;
    const VA = 0x8_0000_0000;
    const a = await probe('A', d.A, SID.A, VA, PA);
    const ag = await probe('A global', d.A, SID.A, VA + PAGE, PA + PAGE, { global: true });
    const c = await probe('C', d.C, SID.C, VA, PA + 0x10_0000);
    const s = await probe('S', d.S, SID.S, IPA, PA + 0x20_0000);
    const s4 = await probe('S4', d.S4, SID.S4, IPA, PA + 0x30_0000);
    const n = await nested('N', VA, IPA + 0x10_0000, PA + 0x40_0000);
    const e = await probe('E, NS-EL2', d.E, SID.E, VA, PA + 0x50_0000);
    await cachedThenChanged(a, ag, c, s, s4, n, e);
    await inv({ name: 'CMD_TLBI_NSNH_ALL' });
    await fresh(a, ag, c, s, s4, n);
    await stale(e);
  });

  it('CMD_TLBI_EL2_*: NS-EL2 entries (SMMU_CR2.E2H == 0) by VA, or all; never NS-EL1 ones (§4.4.2.7-§4.4.2.10)', async () => {
    const VA = 0x9_0000_0000;
    const PA = 0x9_0000_0000;
    const e1 = await probe('E page 1', d.E, SID.E, VA, PA);
    const e2 = await probe('E page 2', d.E, SID.E, VA + PAGE, PA + PAGE);
    const e3 = await probe('E page 3', d.E, SID.E, VA + 2 * PAGE, PA + 2 * PAGE);
    const a = await probe('A, NS-EL1', d.A, SID.A, VA, PA + 0x10_0000);
    await cachedThenChanged(e1, e2, e3, a);
    // §4.4.2.10: NS-EL2 entries carry no ASID and are not required to be invalidated by ASID.
    await inv({ name: 'CMD_TLBI_EL2_ASID', ASID: 0x23 });
    await stale(e1, e2, e3, a);
    // §4.4.2.8: with E2H == 0 the ASID parameter is ignored.
    await inv({ name: 'CMD_TLBI_EL2_VA', ASID: 0x77, Address: VA });
    await fresh(e1);
    await stale(e2, e3, a);
    await inv({ name: 'CMD_TLBI_EL2_VAA', Address: VA + PAGE, TG: TG_4K, NUM: 0, SCALE: 0, TTL: 3 });
    await fresh(e2);
    await stale(e3, a);
    await inv({ name: 'CMD_TLBI_EL2_ALL' });
    await fresh(e3);
    await stale(a);
  });
});

// ---------------------------------------------------------------------------------------------
// ATS (§3.9.1, §4.5.1)
// ---------------------------------------------------------------------------------------------

describe('ATC invalidation (§4.5.1, §3.9.1.4)', () => {
  const VA = 0xa_0000_0000;
  const PA = 0xa_0000_0000;
  let a = 0;
  let p = 0;

  beforeAll(async () => {
    a = (await sys.driver.attachStage1(48, { asid: 0x30, vmid: 5, granule: 4096, ias: 48 })).domain;
    await sys.driver.enableAts(48);
    // StreamID 49: two PASIDs (SubstreamIDs 1 and 2) sharing one domain.
    p = (await sys.driver.attachStage1(49, { asid: 0x31, vmid: 5, granule: 4096, ias: 48, ssid: 1, ssidBits: 2 })).domain;
    await sys.driver.attachStage1(49, { domain: p, ssid: 2 });
    await sys.driver.enableAts(49);
  });

  it('ATS translations live in the endpoint\'s ATC: a TLBI leaves them, CMD_ATC_INV removes its span only', async () => {
    const t1 = await probe('ATS page 1', a, 48, VA, PA, { ats: true });
    const t2 = await probe('ATS page 2', a, 48, VA + PAGE, PA + PAGE, { ats: true });
    const t3 = await probe('ATS page 3', a, 48, VA + 2 * PAGE, PA + 2 * PAGE, { ats: true });
    const t4 = await probe('ATS page 4', a, 48, VA + 3 * PAGE, PA + 3 * PAGE, { ats: true });
    const other = await probe('StreamID 49 PASID 1', p, 49, VA, PA + 0x10_0000, { ats: true, ssid: 1 });
    const other2: Probe = { ...other, name: 'StreamID 49 PASID 2', ssid: 2 };
    const plain: Probe = { ...t1, name: 'page 1 without ATS' };
    delete (plain as { ats?: boolean }).ats;
    await warm(t1, t2, t3, t4, other, other2);
    redirect(t1, t2, t3, t4, other);
    await stale(t1, t2, t3, t4, other, other2);
    // The TLB first (§4.5.1 note: TLBI, CMD_SYNC, then CMD_ATC_INV, CMD_SYNC).
    await inv({ name: 'CMD_TLBI_NH_ASID', VMID: 5, ASID: 0x30 }, { name: 'CMD_TLBI_NH_ASID', VMID: 5, ASID: 0x31 });
    // The TLB is fresh, the ATC is not: software must also send CMD_ATC_INV (§3.9.1).
    expect(await look(plain)).toEqual({ name: plain.name, status: 'ok', pa: t1.newPa, tlbHit: false });
    await stale(t1, other, other2);
    // 4KB · 2^0 at VA, for every PASID of StreamID 48.
    await inv({ name: 'CMD_ATC_INV', StreamID: 48, Address: VA, Size: 0 });
    await fresh(t1);
    await stale(t2, t3, t4, other, other2);
    // Size 1: 8KB, aligned to its size by the SMMU: page 4's address covers pages 3 and 4.
    await inv({ name: 'CMD_ATC_INV', StreamID: 48, Address: VA + 3 * PAGE, Size: 1 });
    await fresh(t3, t4);
    await stale(t2, other, other2);
    // SSV == 1: one PASID of StreamID 49.
    await inv({ name: 'CMD_ATC_INV', StreamID: 49, SSV: 1, SubstreamID: 1, Address: VA, Size: 0 });
    await fresh(other);
    await stale(other2, t2);
  });

  it('an endpoint that never answers: CERROR_ATC_INV_SYNC on the CMD_SYNC, which the driver retries (§3.9.1.4, §7.1)', async () => {
    const { domain } = await sys.driver.attachStage1(TIMEOUT_SID, { asid: 0x32, vmid: 5, granule: 4096, ias: 48 });
    // enableAts ends with ATC_INV + CMD_SYNC: the first of this endpoint's timeouts, recovered inside.
    await sys.driver.enableAts(TIMEOUT_SID);
    const t = await probe('timed-out endpoint', domain, TIMEOUT_SID, VA, PA, { ats: true });
    await warm(t);
    const { cmdq } = (await sys.driver.state()) as { cmdq: { prod: number; log2: number } };
    const res = await sys.driver.issue([{ name: 'CMD_ATC_INV', StreamID: TIMEOUT_SID, Size: 52 }]);
    // The endpoint never invalidated: its ATC still answers.
    redirect(t);
    await stale(t);
    // The CMD_SYNC failed once and was taken again after the driver acknowledged CMDQ_ERR (read
    // after a DMA answer, see the CMD_TLBI_NH_VA test).
    expect(traceTail(3).map(([name, outcome]) => [name, outcome])).toEqual([['CMD_ATC_INV', 'consumed'], ['CMD_SYNC', 'CERROR_ATC_INV_SYNC'], ['CMD_SYNC', 'consumed']]);
    // The CMD_SYNC right after the CMD_ATC_INV is the command in error (CONS.RD).
    const syncPtr = (cmdq.prod + 1) & ((2 << cmdq.log2) - 1);
    expect(res.errors).toEqual([{ index: syncPtr, code: CERROR_ATC_INV_SYNC, name: 'CERROR_ATC_INV_SYNC' }]);
    const { log } = await sys.driver.state();
    expect(log.at(-1)).toEqual({ kind: 'cmdq-retry', cons: syncPtr, code: CERROR_ATC_INV_SYNC, name: 'CERROR_ATC_INV_SYNC' });
    expect(sys.readReg('SMMU_GERROR') ^ sys.readReg('SMMU_GERRORN')).toBe(0);
    expect((await sys.driver.sync()).errors).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// NS-EL2-E2H (SMMU_CR2.E2H == 1): ASID-tagged EL2 entries
// ---------------------------------------------------------------------------------------------

describe('CMD_TLBI_EL2_* with SMMU_CR2.E2H == 1 (§4.4.2.8-§4.4.2.10, §6.3.12)', () => {
  const CR0 = REG.SMMU_CR0;
  const CR2 = REG.SMMU_CR2;

  /** CR2 is writable only while SMMUEN and its ACK are 0 (§6.3.12): disable, write, enable. */
  async function setE2h(on: number): Promise<void> {
    const cr0 = sys.readReg(CR0.name);
    const off = regSet(cr0, CR0.f.SMMUEN, 0);
    await sys.writeReg(CR0.name, off);
    await sys.waitReg(REG.SMMU_CR0ACK.name, (v) => v === off);
    await sys.writeReg(CR2.name, regSet(sys.readReg(CR2.name), CR2.f.E2H, on));
    await sys.writeReg(CR0.name, cr0);
    await sys.waitReg(REG.SMMU_CR0ACK.name, (v) => v === cr0);
    // STEs cache the StreamWorld E2H selected when they were fetched.
    await inv({ name: 'CMD_CFGI_ALL' }, { name: 'CMD_TLBI_EL2_ALL' });
  }

  afterAll(async () => {
    await setE2h(0);
  });

  it('EL2_ASID: non-global entries of the ASID; EL2_VA: ASID (or global) and VA; EL2_VAA: VA, any ASID', async () => {
    const sids = [40, 41];
    const doms: number[] = [];
    for (const [i, sid] of sids.entries()) {
      doms.push((await sys.driver.attachStage1(sid, { asid: 0x40 + i, granule: 4096, ias: 48 })).domain);
      patch(sys.mem, stePa(sys.mem, sys, sid)!, STE_BYTES / 4, [[STE_F.STRW, STE_STRW.EL2]]);
    }
    await setE2h(1);
    expect(regGet(sys.readReg(CR2.name), CR2.f.E2H)).toBe(1);
    const VA = 0xb_0000_0000;
    const PA = 0xb_0000_0000;
    const x1 = await probe('ASID 0x40', doms[0]!, 40, VA, PA);
    const x2 = await probe('ASID 0x40 page 2', doms[0]!, 40, VA + PAGE, PA + PAGE);
    const xg = await probe('ASID 0x40 global', doms[0]!, 40, VA + 2 * PAGE, PA + 2 * PAGE, { global: true });
    const y1 = await probe('ASID 0x41', doms[1]!, 41, VA, PA + 0x10_0000);
    const y2 = await probe('ASID 0x41 page 2', doms[1]!, 41, VA + PAGE, PA + 0x10_0000 + PAGE);
    await cachedThenChanged(x1, x2, xg, y1, y2);

    await inv({ name: 'CMD_TLBI_EL2_ASID', ASID: 0x40 });
    await fresh(x1, x2);
    await stale(xg, y1, y2);
    await inv({ name: 'CMD_TLBI_EL2_VA', ASID: 0x41, Address: VA + 2 * PAGE });
    await fresh(xg);
    await stale(y1, y2);
    await inv({ name: 'CMD_TLBI_EL2_VA', ASID: 0x40, Address: VA });
    await stale(y1);
    await inv({ name: 'CMD_TLBI_EL2_VAA', Address: VA });
    await fresh(y1);
    await stale(y2);
  });
});
