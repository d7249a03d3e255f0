/**
 * Cache mechanics: capacity, LRU and seeded-random replacement, per-cache counters, and the TLB's
 * indexed range invalidation checked against a brute-force filter (§4.4.1.1 overlap rule).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { FULL_FEATURES } from '../../src/spec/features.ts';
import { STE_CONFIG } from '../../src/spec/structures.ts';
import { KeyedCache, Policy, REGIME, TLB_KIND, Tlb, type PolicyNode } from '../../src/device/tlb.ts';
import { bed, cdFields, cdWords, cmd, G4K, linearStreamTable, PageTable, steWords, type Bed } from '../helpers/tables.ts';

function s1World(b: Bed, pages: number): PageTable {
  const st = linearStreamTable(b, 4);
  const pt = new PageTable(b.mem, b.alloc, G4K, 48, 0, 1);
  for (let p = 1; p <= pages; p++) pt.map(p * 0x1000, p * 0x10_0000, 3, { ng: 1 });
  const cd = b.alloc.alloc(64, 64);
  b.mem.writeWords(cd, cdWords(cdFields(pt, 1)));
  b.mem.writeWords(st.ste(1), steWords({ Config: STE_CONFIG.S1_TRANS, S1ContextPtr: BigInt(cd), S2VMID: 1 }));
  return pt;
}

function cachedOf(b: Bed, va: number): boolean {
  const r = b.tr.translate(1, -1, va, { read: true });
  if (!r.ok) throw new Error(r.reason);
  return r.cached;
}

describe('replacement policies', () => {
  class N implements PolicyNode<N> {
    prev: N | null = null;
    next: N | null = null;
    slot = -1;
    constructor(readonly id: number) {}
  }

  it('LRU: the least recently touched item is the victim', () => {
    const p = new Policy<N>('lru');
    const ns = [0, 1, 2].map((i) => new N(i));
    ns.forEach((n) => p.add(n));
    expect(p.victim()!.id).toBe(0);
    p.touch(ns[0]!);
    expect(p.victim()!.id).toBe(1);
    p.remove(ns[1]!);
    expect(p.victim()!.id).toBe(2);
    expect(p.size).toBe(2);
  });

  it('random: seeded, so the same seed gives the same victims', () => {
    const run = (seed: number): number[] => {
      const p = new Policy<N>('random', seed);
      for (let i = 0; i < 8; i++) p.add(new N(i));
      return Array.from({ length: 6 }, () => p.victim()!.id);
    };
    expect(run(42)).toEqual(run(42));
    expect(run(42)).not.toEqual(run(43));
    for (const id of run(7)) expect(id).toBeGreaterThanOrEqual(0);
  });

  it('KeyedCache counts hits, misses, insertions, evictions and invalidations', () => {
    const c = new KeyedCache<string>('t', 2, 'lru', 1);
    expect(c.get(1)).toBeUndefined();
    c.set(1, 'a');
    c.set(2, 'b');
    expect(c.get(1)).toBe('a');
    c.set(3, 'c'); // evicts 2 (LRU)
    expect(c.keys().sort()).toEqual([1, 3]);
    expect(c.invalidate(3)).toBe(1);
    expect(c.invalidate(3)).toBe(0);
    expect(c.counters).toEqual({ hits: 1, misses: 1, insertions: 3, evictions: 1, invalidated: 1 });
  });
});

describe('TLB capacity and counters', () => {
  it('LRU eviction: with 2 entries, touching page 1 makes page 2 the victim', () => {
    const b = bed({ translator: { tlbEntries: 2 } });
    s1World(b, 3);
    expect([cachedOf(b, 0x1000), cachedOf(b, 0x2000), cachedOf(b, 0x1000)]).toEqual([false, false, true]);
    expect(cachedOf(b, 0x3000)).toBe(false); // evicts page 2
    expect([cachedOf(b, 0x1000), cachedOf(b, 0x2000)]).toEqual([true, false]);
    expect(b.tr.counters().tlb).toEqual({ hits: 2, misses: 4, insertions: 4, evictions: 2, invalidated: 0 });
  });

  it('random eviction is reproducible from the seed', () => {
    const run = (): boolean[] => {
      const b = bed({ translator: { tlbEntries: 4, replacement: 'random', seed: 99 } });
      s1World(b, 12);
      for (let p = 1; p <= 12; p++) cachedOf(b, p * 0x1000);
      return Array.from({ length: 12 }, (_, i) => cachedOf(b, (i + 1) * 0x1000));
    };
    const a = run();
    expect(run()).toEqual(a);
  });

  it('capacity 0 disables the TLB: every translation walks', () => {
    const b = bed({ translator: { tlbEntries: 0 } });
    s1World(b, 1);
    expect([cachedOf(b, 0x1000), cachedOf(b, 0x1000)]).toEqual([false, false]);
    expect(b.tr.counters()).toMatchObject({ s1Walks: 2, tlb: { insertions: 0, hits: 0, misses: 2 } });
  });

  it('configuration cache counters and eviction (capacity 1: two StreamIDs evict each other)', () => {
    const b = bed({ translator: { cfgEntries: 1 } });
    const st = linearStreamTable(b, 4);
    for (const sid of [1, 2]) b.mem.writeWords(st.ste(sid), steWords({ Config: STE_CONFIG.BYPASS }));
    for (const sid of [1, 1, 2, 1]) b.tr.translate(sid, -1, 0, { read: true });
    expect(b.tr.counters().ste).toEqual({ hits: 1, misses: 3, insertions: 3, evictions: 2, invalidated: 0 });
    b.tr.invalidateCommand(cmd({ name: 'CMD_CFGI_STE', StreamID: 1, Leaf: 1 }));
    expect(b.tr.counters().ste.invalidated).toBe(1);
    expect(b.tr.counters().invalidationCommands).toBe(1);
  });

  it('counts translations, faults and recorded events', () => {
    const b = bed();
    s1World(b, 1);
    b.tr.translate(1, -1, 0x1000, { read: true });
    b.tr.translate(1, -1, 0x9000, { read: true });
    b.tr.translate(9, -1, 0x9000, { read: true });
    expect(b.tr.counters()).toMatchObject({ translations: 3, faults: 2, eventsRecorded: 2 }); // F_TRANSLATION and C_BAD_STREAMID
  });
});

describe('TLB range invalidation matches a brute-force overlap filter (§4.4.1.1)', () => {
  it('NH_VA over random entries of mixed sizes', () => {
    const PAGE = 0x1000;
    fc.assert(fc.property(
      fc.array(fc.record({ page: fc.integer({ min: 0, max: 4095 }), log2: fc.constantFrom(12, 13, 16, 21), level: fc.constantFrom(2, 3) }), { maxLength: 40 }),
      fc.integer({ min: 0, max: 4095 }), fc.integer({ min: 0, max: 31 }), fc.integer({ min: 0, max: 8 }), fc.constantFrom(0, 1, 3), fc.constantFrom(0, 2, 3),
      (entries, addr, num, scale, tg, ttl) => {
        const tlb = new Tlb({ entries: 1000, replacement: 'lru' });
        for (const e of entries) {
          const bp = 2 ** (e.log2 - 12);
          const page = Math.floor(e.page / bp) * bp;
          tlb.insertVa(TLB_KIND.S1, REGIME.EL1, 1, 1, 0, page, e.log2, page, e.log2, e.level, 1, page * PAGE, page * PAGE, 0xff, 0);
        }
        const all = tlb.entries();
        const start = addr;
        const pages = tg === 0 ? 1 : (num + 1) * 2 ** scale * (tg === 3 ? 16 : 1);
        const level = tg === 0 ? 0 : ttl;
        const expected = all.filter((e) => (tg === 0 || e.tg === tg) && (level === 0 || e.level === level)
          && e.page < start + pages && start < e.page + 2 ** (e.log2 - 12)).length;
        const words = tg === 0
          ? cmd({ name: 'CMD_TLBI_NH_VA', VMID: 1, ASID: 1, Address: BigInt(addr * PAGE) })
          : cmd({ name: 'CMD_TLBI_NH_VA', VMID: 1, ASID: 1, Address: BigInt(addr * PAGE), TG: tg, NUM: num, SCALE: scale, TTL: ttl === 0 && num === 0 && scale === 0 ? 3 : ttl });
        const effLevel = tg !== 0 && ttl === 0 && num === 0 && scale === 0 ? 3 : level;
        const exp2 = effLevel === level ? expected : all.filter((e) => e.tg === tg && e.level === effLevel && e.page < start + pages && start < e.page + 2 ** (e.log2 - 12)).length;
        const removed = tlb.invalidate(words, { features: FULL_FEATURES, e2h: false, vmw: 0, overInvalidate: false });
        expect(removed).toBe(exp2);
        expect(tlb.size).toBe(all.length - exp2);
      },
    ), { numRuns: 300 });
  });
});
