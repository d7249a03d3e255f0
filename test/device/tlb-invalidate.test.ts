/**
 * Tlb.invalidate (src/device/tlb.ts) against a brute-force oracle: for random TLB contents and
 * random TLBI commands, the entries removed are exactly those the command's scope covers, judged
 * entry by entry from the tags each entry was inserted with. The TLB finds them by key (the
 * contexts of a VMID and ASID, the blocks of a range) and removes them without scanning; the
 * oracle scans everything and knows nothing of contexts, keys, tombstones or fast paths.
 *
 * Scope rules (IHI0070 G.b): §4.4.1.1 range fields (TG == 0: the single page of Address; else
 * (NUM+1)·2^SCALE granules from Address, SCALE above 39 as 39, the granule's entries only, of
 * level TTL when TTL != 0, nothing for TTL != 0 with TTL128 == 1, TTL 0b01 with the 16KB granule
 * and no IDR5.DS as 0, a TTB0 range not reaching into the TTB1 half); §4.4.2.1-4 NH_ALL, NH_ASID
 * (global entries survive), NH_VAA, NH_VA (its ASID's entries and global ones); §4.4.2.7-10 the
 * EL2 forms, E2H selecting NS-EL2-E2H; §4.4.3.1-2 S2_IPA (stage 2 entries only), S12_VMALL;
 * §4.4.4.1 NSNH_ALL (NS-EL1 only); §3.17.6 VMW (VMID LSBs ignored); without stage 2 the VMID is
 * not matched (§4.4.2). Combined (nested) entries are matched by their stage 1 range, and
 * CMD_TLBI_S2_IPA leaves them (the model's documented choice, tlb.ts header).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { REGIME, TLB_KIND, Tlb, TlbContext, type InvalidationState, type TlbEntry } from '../../src/device/tlb.ts';
import { encodeCommandWords } from '../../src/spec/command-codec.ts';
import { FULL_FEATURES, type SmmuFeatures } from '../../src/spec/features.ts';

const PAGE_BITS = 12;
/** VA[55] as a page number: the TTB0/TTB1 boundary (§4.4.1.1). */
const TTB1_PAGE = 2 ** (55 - PAGE_BITS);
/** Granule log2 of each TLBI TG code (§4.4.1.1: 0b01 4KB, 0b10 16KB, 0b11 64KB). */
const GRANULE: Readonly<Record<number, number>> = { 1: 12, 2: 14, 3: 16 };

/** How an entry was inserted: all the oracle knows. */
interface Tags {
  readonly kind: number;
  readonly regime: number;
  readonly vmid: number;
  /** -1: global (nG == 0). */
  readonly asid: number;
  readonly aset: number;
  readonly matchPage: number;
  readonly matchLog2: number;
  readonly tg: number;
  readonly level: number;
}

interface Cmd {
  readonly name: string;
  readonly vmid: number;
  readonly asid: number;
  readonly page: number;
  readonly tg: number;
  readonly num: number;
  readonly scale: number;
  readonly ttl: number;
  readonly ttl128: number;
}

const OPS = [
  'CMD_TLBI_NH_ALL', 'CMD_TLBI_NH_ASID', 'CMD_TLBI_NH_VA', 'CMD_TLBI_NH_VAA', 'CMD_TLBI_EL2_ALL', 'CMD_TLBI_EL2_ASID',
  'CMD_TLBI_EL2_VA', 'CMD_TLBI_EL2_VAA', 'CMD_TLBI_S12_VMALL', 'CMD_TLBI_S2_IPA', 'CMD_TLBI_NSNH_ALL',
] as const;
const HAS_VMID = new Set(['CMD_TLBI_NH_ALL', 'CMD_TLBI_NH_ASID', 'CMD_TLBI_NH_VA', 'CMD_TLBI_NH_VAA', 'CMD_TLBI_S12_VMALL', 'CMD_TLBI_S2_IPA']);
const HAS_ASID = new Set(['CMD_TLBI_NH_ASID', 'CMD_TLBI_NH_VA', 'CMD_TLBI_EL2_ASID', 'CMD_TLBI_EL2_VA']);
const HAS_RANGE = new Set(['CMD_TLBI_NH_VA', 'CMD_TLBI_NH_VAA', 'CMD_TLBI_EL2_VA', 'CMD_TLBI_EL2_VAA', 'CMD_TLBI_S2_IPA']);

function words(c: Cmd): Uint32Array {
  return encodeCommandWords({
    name: c.name,
    ...(HAS_VMID.has(c.name) ? { VMID: c.vmid } : {}),
    ...(HAS_ASID.has(c.name) ? { ASID: c.asid } : {}),
    ...(HAS_RANGE.has(c.name)
      ? { Address: BigInt(c.page) << BigInt(PAGE_BITS), TG: c.tg, NUM: c.num, SCALE: c.scale, TTL: c.ttl, TTL128: c.ttl128, Leaf: 1 }
      : {}),
  });
}

/** §4.4.1.1: the pages [start, end) and filters of an address-based TLBI, or undefined (matches nothing). */
function scope(c: Cmd, f: SmmuFeatures, va: boolean): { start: number; end: number; tg: number; level: number } | undefined {
  const tg = f.ril ? c.tg : 0;
  if (tg === 0) return { start: c.page, end: c.page + 1, tg: 0, level: 0 };
  let ttl = c.ttl;
  if (tg === 2 && ttl === 1 && !f.ds) ttl = 0;
  if (ttl !== 0 && c.ttl128 !== 0) return undefined;
  let end = c.page + (c.num + 1) * 2 ** Math.min(c.scale, 39) * 2 ** (GRANULE[tg]! - PAGE_BITS);
  if (va && c.page < TTB1_PAGE) end = Math.min(end, TTB1_PAGE);
  return { start: c.page, end, tg, level: ttl };
}

/** Whether command `c` removes the entry tagged `t`, from the rules in the file header. */
function removes(t: Tags, c: Cmd, st: InvalidationState): boolean {
  const f = st.features;
  const over = st.overInvalidate;
  const va = t.kind !== TLB_KIND.S2;
  const vmw = f.vmw && f.s2 ? st.vmw : 0;
  const cmdVmid = f.s2 ? c.vmid : 0;
  const mask = ~((1 << vmw) - 1);
  const el1 = t.regime === REGIME.EL1;
  const vmidHit = el1 && (t.vmid & mask) === (cmdVmid & mask);
  const inRange = (isVa: boolean): boolean => {
    if (over) return true;
    const r = scope(c, f, isVa);
    if (r === undefined) return false;
    if (r.tg !== 0 && t.tg !== r.tg) return false;
    if (r.level !== 0 && t.level !== r.level) return false;
    return t.matchPage < r.end && r.start < t.matchPage + 2 ** (t.matchLog2 - PAGE_BITS);
  };
  const global = t.asid < 0;
  const el2All = t.regime !== REGIME.EL1 && va;
  switch (c.name) {
    case 'CMD_TLBI_NSNH_ALL':
      return over || el1;
    case 'CMD_TLBI_S12_VMALL':
      return el1 && (over || vmidHit);
    case 'CMD_TLBI_NH_ALL':
      return el1 && va && (over || vmidHit);
    case 'CMD_TLBI_NH_ASID':
      return vmidHit && va && (t.asid === c.asid || (over && !global));
    case 'CMD_TLBI_NH_VA':
      if (!over && scope(c, f, true) === undefined) return false;
      return vmidHit && va && (global || t.asid === c.asid) && inRange(true);
    case 'CMD_TLBI_NH_VAA':
      if (!over && scope(c, f, true) === undefined) return false;
      return vmidHit && va && inRange(true);
    case 'CMD_TLBI_EL2_ALL':
      return el2All;
    case 'CMD_TLBI_EL2_ASID':
      return t.regime === REGIME.EL2_E2H && !global && (t.asid === c.asid || over);
    case 'CMD_TLBI_EL2_VA':
      if (!over && scope(c, f, true) === undefined) return false;
      if (over) return el2All;
      if (st.e2h) return t.regime === REGIME.EL2_E2H && (global || t.asid === c.asid) && inRange(true);
      return t.regime === REGIME.EL2 && inRange(true);
    case 'CMD_TLBI_EL2_VAA':
      if (!over && scope(c, f, true) === undefined) return false;
      if (over) return el2All;
      return t.regime === (st.e2h ? REGIME.EL2_E2H : REGIME.EL2) && inRange(true);
    case 'CMD_TLBI_S2_IPA':
      if (over) return vmidHit;
      return vmidHit && !va && inRange(false);
    default:
      throw new Error(`no rule for ${c.name}`);
  }
}

/** Pages near 0 (where ranges overlap) and just below the TTB1 boundary. */
const pageArb = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 80 }) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 4000 }) },
  { weight: 1, arbitrary: fc.integer({ min: TTB1_PAGE - 200, max: TTB1_PAGE + 200 }) },
);
/** Leaf sizes (log2 bytes) with a TG code and level, consistent or not (the TLB does not care). */
const sizeArb = fc.constantFrom(12, 12, 12, 13, 14, 16, 21, 25);

const insertArb = fc.record({
  kind: fc.constantFrom(TLB_KIND.S1, TLB_KIND.S1, TLB_KIND.NESTED, TLB_KIND.S2),
  regime: fc.constantFrom(REGIME.EL1, REGIME.EL1, REGIME.EL2, REGIME.EL2_E2H),
  vmid: fc.integer({ min: 0, max: 5 }),
  asid: fc.integer({ min: -1, max: 3 }),
  aset: fc.integer({ min: 0, max: 1 }),
  page: pageArb,
  log2: sizeArb,
  extra: fc.integer({ min: 0, max: 9 }),
  tg: fc.integer({ min: 1, max: 3 }),
  level: fc.integer({ min: 1, max: 3 }),
});

const cmdArb = fc.record({
  // Every command, the ones with keyed fast paths (tlb.ts) more often.
  name: fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...OPS) },
    { weight: 2, arbitrary: fc.constantFrom('CMD_TLBI_NH_VA', 'CMD_TLBI_NH_ASID', 'CMD_TLBI_S2_IPA') },
  ),
  vmid: fc.integer({ min: 0, max: 6 }),
  asid: fc.integer({ min: 0, max: 4 }),
  page: pageArb,
  tg: fc.integer({ min: 0, max: 3 }),
  num: fc.integer({ min: 0, max: 31 }),
  // Mostly small ranges (probed by key); now and then a wide one (the context is scanned).
  scale: fc.oneof(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 4, max: 45 })),
  ttl: fc.integer({ min: 0, max: 3 }),
  ttl128: fc.integer({ min: 0, max: 1 }),
});

const stateArb = fc.record({
  features: fc.constantFrom<SmmuFeatures>(FULL_FEATURES, { ...FULL_FEATURES, ril: false }, { ...FULL_FEATURES, s2: false }, { ...FULL_FEATURES, ds: false }, { ...FULL_FEATURES, vmw: false }),
  e2h: fc.boolean(),
  vmw: fc.constantFrom(0, 0, 1, 2, 4),
  overInvalidate: fc.constantFrom(false, false, false, true),
});

interface InsertSpec {
  readonly kind: number;
  readonly regime: number;
  readonly vmid: number;
  readonly asid: number;
  readonly aset: number;
  readonly page: number;
  readonly log2: number;
  /** A combined entry's stage 1 leaf is 2^extra times its lookup block. */
  readonly extra: number;
  readonly tg: number;
  readonly level: number;
}

type Step = { readonly insert: InsertSpec } | { readonly cmd: Cmd; readonly st: InvalidationState };

/**
 * Insert as the translator does (translate.ts): blocks aligned to their size; a combined entry's
 * lookup block inside its stage 1 block (matchLog2 = log2 + extra); NS-EL2 entries without ASIDs.
 */
function insert(tlb: Tlb, tags: Map<TlbEntry, Tags>, x: InsertSpec): void {
  const block = (page: number, log2: number): number => Math.floor(page / 2 ** (log2 - PAGE_BITS)) * 2 ** (log2 - PAGE_BITS);
  let e: TlbEntry | undefined;
  let t: Tags;
  if (x.kind === TLB_KIND.S2) {
    const p = block(x.page, x.log2);
    e = tlb.insertIpa(x.vmid, p, x.log2, x.level, x.tg, p * 4096, 3);
    t = { kind: x.kind, regime: REGIME.EL1, vmid: x.vmid, asid: 0, aset: 0, matchPage: p, matchLog2: x.log2, tg: x.tg, level: x.level };
  } else {
    const matchLog2 = x.kind === TLB_KIND.NESTED ? x.log2 + x.extra : x.log2;
    const matchPage = block(x.page, matchLog2);
    const page = block(x.page, x.log2);
    const asid = x.regime === REGIME.EL2 ? 0 : x.asid;
    e = tlb.insertVa(x.kind, x.regime, x.vmid, asid, x.aset, page, x.log2, matchPage, matchLog2, x.level, x.tg, page * 4096, page * 4096, 3, 3);
    t = { kind: x.kind, regime: x.regime, vmid: x.vmid, asid, aset: asid < 0 ? x.aset : 0, matchPage, matchLog2, tg: x.tg, level: x.level };
  }
  if (e !== undefined) tags.set(e, t);
}

describe('Tlb.invalidate removes exactly the entries in the command’s scope (§4.4)', () => {
  it('matches a brute-force scan for random contents, commands and SMMU state', () => {
    const stepArb = fc.oneof(
      { weight: 3, arbitrary: insertArb.map((insert) => ({ insert })) },
      { weight: 1, arbitrary: fc.tuple(cmdArb, stateArb).map(([cmd, st]) => ({ cmd, st })) },
    );
    fc.assert(
      fc.property(fc.array(insertArb, { minLength: 1, maxLength: 120 }), fc.array(stepArb, { minLength: 1, maxLength: 120 }), (initial, steps) => {
        const tlb = new Tlb({ entries: 100_000, replacement: 'lru' });
        const tags = new Map<TlbEntry, Tags>();
        for (const x of initial) insert(tlb, tags, x);
        for (const step of steps as Step[]) {
          if ('insert' in step) {
            insert(tlb, tags, step.insert);
            continue;
          }
          const before = tlb.entries();
          const want = before.filter((e) => removes(tags.get(e)!, step.cmd, step.st));
          const n = tlb.invalidate(words(step.cmd), step.st);
          const after = new Set(tlb.entries());
          const gone = before.filter((e) => !after.has(e));
          expect(new Set(gone)).toEqual(new Set(want));
          expect(n).toBe(want.length);
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('a page invalidated and refilled thousands of times: lookups stay exact, removed keys stay bounded', () => {
    // One context of 300 4KB pages; page 7 and the last page go and come back 5000 times each. A
    // removed key is kept as a tombstone (TlbContext.map) and the map is rebuilt before tombstones
    // outnumber twice the live entries plus 64.
    const tlb = new Tlb({ entries: 4096, replacement: 'lru' });
    const st: InvalidationState = { features: FULL_FEATURES, e2h: false, vmw: 0, overInvalidate: false };
    const fill = (page: number): TlbEntry => tlb.insertVa(TLB_KIND.S1, REGIME.EL1, 1, 5, 0, page, 12, page, 12, 3, 1, page * 4096, page * 4096, 3, 0)!;
    for (let p = 0; p < 300; p++) fill(p);
    const ctx: TlbContext = tlb.entries()[0]!.ctx;
    const tlbi = (page: number): number =>
      tlb.invalidate(encodeCommandWords({ name: 'CMD_TLBI_NH_VA', VMID: 1, ASID: 5, Address: BigInt(page) << 12n, Leaf: 1 }), st);
    for (let i = 0; i < 5000; i++) {
      expect(tlbi(7)).toBe(1);
      expect(tlb.lookupVa(TLB_KIND.S1, REGIME.EL1, 1, 5, 0, 7)).toBeUndefined();
      fill(7);
      expect(tlbi(299)).toBe(1);
      fill(299);
    }
    expect(tlb.size).toBe(300);
    expect(ctx.live).toBe(300);
    expect(ctx.map.size).toBeLessThanOrEqual(2 * ctx.live + 64);
    for (let p = 0; p < 300; p++) expect(tlb.lookupVa(TLB_KIND.S1, REGIME.EL1, 1, 5, 0, p)?.page).toBe(p);
    // Now every page goes, one command each: the context empties and leaves the TLB.
    for (let p = 0; p < 300; p++) expect(tlbi(p)).toBe(1);
    expect(tlb.size).toBe(0);
    expect(ctx.live).toBe(0);
    expect(tlb.lookupVa(TLB_KIND.S1, REGIME.EL1, 1, 5, 0, 7)).toBeUndefined();
    fill(7);
    expect(tlb.lookupVa(TLB_KIND.S1, REGIME.EL1, 1, 5, 0, 7)?.page).toBe(7);
  });

  it('combined entries keep being found by their stage 1 range after most of their keys are gone', () => {
    // 300 combined entries: a 4KB lookup block at the start of each 16KB stage 1 block. NH_VA of
    // the last page of a stage 1 block (outside the lookup block) removes its entry (§4.4.2.4 by
    // the stage 1 range, tlb.ts header). 290 of them go, leaving their match keys as tombstones
    // until the match index is rebuilt; the other 10 must still be found by both keys.
    const tlb = new Tlb({ entries: 4096, replacement: 'lru' });
    const st: InvalidationState = { features: FULL_FEATURES, e2h: false, vmw: 0, overInvalidate: false };
    const tlbi = (page: number): number =>
      tlb.invalidate(encodeCommandWords({ name: 'CMD_TLBI_NH_VA', VMID: 2, ASID: 3, Address: BigInt(page) << 12n, Leaf: 1 }), st);
    for (let b = 0; b < 300; b++) tlb.insertVa(TLB_KIND.NESTED, REGIME.EL1, 2, 3, 0, 4 * b, 12, 4 * b, 14, 3, 2, 0, 0, 3, 3);
    const ctx: TlbContext = tlb.entries()[0]!.ctx;
    expect(ctx.matchLive).toBe(300);
    for (let b = 10; b < 300; b++) expect(tlbi(4 * b + 3)).toBe(1);
    expect(ctx.matchLive).toBe(10);
    expect(ctx.matchMap === null ? 0 : ctx.matchMap.size).toBeLessThanOrEqual(2 * ctx.matchLive + 64);
    expect(tlb.size).toBe(10);
    for (let b = 0; b < 10; b++) expect(tlb.lookupVa(TLB_KIND.NESTED, REGIME.EL1, 2, 3, 0, 4 * b)?.matchPage).toBe(4 * b);
    // Found by the stage 1 range (a page the lookup block does not cover), then gone.
    for (let b = 0; b < 10; b++) expect(tlbi(4 * b + 2)).toBe(1);
    expect(tlb.size).toBe(0);
  });
});
