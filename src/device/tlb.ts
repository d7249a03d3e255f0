/**
 * The SMMU's caches: the TLB (translations, tagged as §3.17 says) and the configuration cache
 * (STEs, CDs and the level 1 descriptors that locate them, §3.21.3, §16.2), with configurable
 * capacity, LRU or seeded-random replacement, and counters.
 *
 * What the TLB holds (model choices, see docs/fidelity.md "Translation caches"):
 * - Only leaf entries: no walk cache of table descriptors. The Leaf field of TLBI commands therefore
 *   never narrows what is removed (every cached entry is a last-level entry).
 * - Stage 1 entries (VA → PA) for stage-1-only streams, tagged with StreamWorld (regime), VMID
 *   (STE.S2VMID for NS-EL1 when stage 2 is implemented, else 0), ASID unless global (nG == 0), and
 *   ASET for global entries (§3.17.1: global entries match only lookups from the same ASET).
 * - Stage 2 entries (IPA → PA), tagged with VMID, from stage-2-only streams and from every stage 2
 *   translation a nested stream makes (its final IPA, its stage 1 descriptor fetches, its CD fetch).
 * - Combined entries (VA → PA) for nested streams, tagged like stage 1 entries. They span the
 *   smaller of the two stages' leaf sizes, and remember the stage 1 leaf's range, level and granule:
 *   stage 1 invalidations (NH_*, S12_VMALL, NSNH_ALL) match them by the stage 1 range, so a TLBI by a
 *   VA anywhere in a stage 1 block removes every combined entry cut from it. CMD_TLBI_S2_IPA does not
 *   touch them (§4.4.3.1: software must follow it with CMD_TLBI_NH_ALL or NH_VAA).
 *
 * Addresses are tagged in 4KB page numbers: VA[55:12] for VAs (the top byte is a sign extension
 * of bit 55 once the range check and TBI have been applied), IPA[55:12] for IPAs. Both fit a number
 * exactly (44 bits).
 *
 * Lookups and invalidations never scan the whole TLB: entries live in per-context Maps (one context
 * per {kind of address, regime, VMID, ASID or global+ASET}), keyed by (block index · 64 + log2 size)
 * numbers, and contexts are indexed by VMID and by regime. The commands the device executes most
 * (TLBI by page or small range, by ASID, by IPA) find their contexts by key and their entries by
 * key, and run without allocating; only a range wider than PROBE_LIMIT blocks scans a context.
 */

import { getBits } from '../spec/bits.ts';
import { CFGI_ALL_RANGE, OP, commandField, commandSpec } from '../spec/commands.ts';
import type { CommandField } from '../spec/commands.ts';
import type { SmmuFeatures } from '../spec/features.ts';
import { STE_S1FMT } from '../spec/structures.ts';

// ---------------------------------------------------------------------------------------------
// Replacement
// ---------------------------------------------------------------------------------------------

export type Replacement = 'lru' | 'random';

/** What a replacement policy needs of a cached item: list links and its slot in the item array. */
export interface PolicyNode<N> {
  prev: N | null;
  next: N | null;
  slot: number;
}

/**
 * Recency list (for LRU) plus a dense array (for random choice), kept for every item so a cache can
 * switch policies freely. All operations are O(1) and allocate nothing.
 */
export class Policy<N extends PolicyNode<N>> {
  private head: N | null = null;
  private tail: N | null = null;
  private readonly items: N[] = [];
  private rng: number;

  constructor(readonly kind: Replacement, seed = 1) {
    // xorshift32 must not start at 0.
    this.rng = (seed >>> 0) || 0x9e37_79b9;
  }

  get size(): number {
    return this.items.length;
  }

  add(n: N): void {
    n.prev = this.tail;
    n.next = null;
    if (this.tail !== null) this.tail.next = n;
    else this.head = n;
    this.tail = n;
    n.slot = this.items.length;
    this.items.push(n);
  }

  /** A hit: the item becomes the most recently used. */
  touch(n: N): void {
    if (this.kind !== 'lru' || this.tail === n) return;
    this.unlink(n);
    n.prev = this.tail;
    n.next = null;
    if (this.tail !== null) this.tail.next = n;
    else this.head = n;
    this.tail = n;
  }

  remove(n: N): void {
    this.unlink(n);
    const last = this.items.pop()!;
    if (last !== n) {
      this.items[n.slot] = last;
      last.slot = n.slot;
    }
    n.slot = -1;
  }

  /** The item to evict: least recently used, or a uniformly chosen one (seeded xorshift32). */
  victim(): N | undefined {
    if (this.items.length === 0) return undefined;
    if (this.kind === 'lru') return this.head ?? undefined;
    let x = this.rng;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.rng = x >>> 0;
    return this.items[this.rng % this.items.length];
  }

  /** Every item (a copy: callers may remove while iterating). */
  all(): N[] {
    return this.items.slice();
  }

  clear(): void {
    for (const n of this.items) {
      n.prev = null;
      n.next = null;
      n.slot = -1;
    }
    this.items.length = 0;
    this.head = null;
    this.tail = null;
  }

  private unlink(n: N): void {
    if (n.prev !== null) n.prev.next = n.next;
    else this.head = n.next;
    if (n.next !== null) n.next.prev = n.prev;
    else this.tail = n.prev;
    n.prev = null;
    n.next = null;
  }
}

/** Per-cache counters. `invalidated` counts entries removed by invalidation, not commands. */
export interface CacheCounters {
  hits: number;
  misses: number;
  insertions: number;
  evictions: number;
  invalidated: number;
}

export function newCounters(): CacheCounters {
  return { hits: 0, misses: 0, insertions: 0, evictions: 0, invalidated: 0 };
}

// ---------------------------------------------------------------------------------------------
// A keyed cache (configuration structures)
// ---------------------------------------------------------------------------------------------

class KeyedSlot<V> implements PolicyNode<KeyedSlot<V>> {
  prev: KeyedSlot<V> | null = null;
  next: KeyedSlot<V> | null = null;
  slot = -1;
  constructor(readonly key: number, public value: V) {}
}

/** A bounded cache from number keys to values, with a replacement policy and counters. */
export class KeyedCache<V> {
  readonly counters: CacheCounters = newCounters();
  private readonly map = new Map<number, KeyedSlot<V>>();
  private readonly policy: Policy<KeyedSlot<V>>;

  constructor(
    readonly name: string,
    readonly capacity: number,
    replacement: Replacement,
    seed: number,
    /** Called whenever a key leaves the cache (eviction, invalidation, replacement by set). */
    private readonly onRemove?: (key: number) => void,
  ) {
    this.policy = new Policy(replacement, seed);
  }

  get size(): number {
    return this.map.size;
  }

  /** Lookup, counting a hit or a miss. */
  get(key: number): V | undefined {
    const s = this.map.get(key);
    if (s === undefined) {
      this.counters.misses++;
      return undefined;
    }
    this.counters.hits++;
    this.policy.touch(s);
    return s.value;
  }

  /** Lookup without counting or touching (tests, inspection). */
  peek(key: number): V | undefined {
    return this.map.get(key)?.value;
  }

  has(key: number): boolean {
    return this.map.has(key);
  }

  set(key: number, value: V): void {
    if (this.capacity <= 0) return;
    const old = this.map.get(key);
    if (old !== undefined) {
      old.value = value;
      this.policy.touch(old);
      this.counters.insertions++;
      return;
    }
    while (this.map.size >= this.capacity) {
      const v = this.policy.victim();
      if (v === undefined) break;
      this.drop(v);
      this.counters.evictions++;
    }
    const s = new KeyedSlot(key, value);
    this.map.set(key, s);
    this.policy.add(s);
    this.counters.insertions++;
  }

  /** Invalidate one key; returns 1 when something was removed. */
  invalidate(key: number): number {
    const s = this.map.get(key);
    if (s === undefined) return 0;
    this.drop(s);
    this.counters.invalidated++;
    return 1;
  }

  /** Invalidate every key `pred` accepts. */
  invalidateWhere(pred: (key: number, value: V) => boolean): number {
    let n = 0;
    for (const s of this.policy.all()) {
      if (pred(s.key, s.value)) {
        this.drop(s);
        n++;
      }
    }
    this.counters.invalidated += n;
    return n;
  }

  invalidateAll(): number {
    const n = this.map.size;
    for (const s of this.policy.all()) this.drop(s);
    this.counters.invalidated += n;
    return n;
  }

  keys(): number[] {
    return [...this.map.keys()];
  }

  private drop(s: KeyedSlot<V>): void {
    this.map.delete(s.key);
    this.policy.remove(s);
    this.onRemove?.(s.key);
  }
}

// ---------------------------------------------------------------------------------------------
// Command fields (by name, from the command table: no bit positions here)
// ---------------------------------------------------------------------------------------------

function field(op: number, name: string): CommandField {
  const f = commandField(commandSpec(op), name);
  if (f === undefined) throw new Error(`command 0x${op.toString(16)} has no field ${name}`);
  return f;
}

/** Read a command field of at most 32 bits (stored bits, no shift). */
function num(words: ArrayLike<number>, f: CommandField): number {
  return getBits(words as Uint32Array, f.lsb, f.width);
}

/**
 * The page number an address field names: stored bits [lsb + bits - 1 : lsb], i.e. Address[bits +
 * 11 : 12] for the Address[63:12] / [55:12] fields. Exact for up to 52 bits.
 */
export function commandPage(words: ArrayLike<number>, f: CommandField, bits: number): number {
  const w = Math.min(bits, f.width);
  const lo = getBits(words as Uint32Array, f.lsb, Math.min(32, w));
  if (w <= 32) return lo;
  return lo + getBits(words as Uint32Array, f.lsb + 32, w - 32) * 0x1_0000_0000;
}

const CFGI = {
  STE_SID: field(OP.CMD_CFGI_STE, 'StreamID'),
  STE_LEAF: field(OP.CMD_CFGI_STE, 'Leaf'),
  RANGE_SID: field(OP.CMD_CFGI_STE_RANGE, 'StreamID'),
  RANGE: field(OP.CMD_CFGI_STE_RANGE, 'Range'),
  CD_SID: field(OP.CMD_CFGI_CD, 'StreamID'),
  CD_SSID: field(OP.CMD_CFGI_CD, 'SubstreamID'),
  CD_LEAF: field(OP.CMD_CFGI_CD, 'Leaf'),
  CDALL_SID: field(OP.CMD_CFGI_CD_ALL, 'StreamID'),
} as const;

/** The fields of an address-based TLBI (§4.4.1.1), per opcode. */
interface RangeFields {
  readonly vmid?: CommandField;
  readonly asid?: CommandField;
  readonly addr: CommandField;
  readonly tg: CommandField;
  readonly num: CommandField;
  readonly scale: CommandField;
  readonly ttl: CommandField;
  readonly ttl128: CommandField;
}

function rangeFields(op: number, vmid: boolean, asid: boolean): RangeFields {
  return {
    ...(vmid ? { vmid: field(op, 'VMID') } : {}),
    ...(asid ? { asid: field(op, 'ASID') } : {}),
    addr: field(op, 'Address'),
    tg: field(op, 'TG'),
    num: field(op, 'NUM'),
    scale: field(op, 'SCALE'),
    ttl: field(op, 'TTL'),
    ttl128: field(op, 'TTL128'),
  };
}

const TLBI = {
  NH_ALL_VMID: field(OP.CMD_TLBI_NH_ALL, 'VMID'),
  NH_ASID_VMID: field(OP.CMD_TLBI_NH_ASID, 'VMID'),
  NH_ASID_ASID: field(OP.CMD_TLBI_NH_ASID, 'ASID'),
  NH_VA: rangeFields(OP.CMD_TLBI_NH_VA, true, true),
  NH_VAA: rangeFields(OP.CMD_TLBI_NH_VAA, true, false),
  EL2_ASID_ASID: field(OP.CMD_TLBI_EL2_ASID, 'ASID'),
  EL2_VA: rangeFields(OP.CMD_TLBI_EL2_VA, false, true),
  EL2_VAA: rangeFields(OP.CMD_TLBI_EL2_VAA, false, false),
  S12_VMID: field(OP.CMD_TLBI_S12_VMALL, 'VMID'),
  S2_IPA: rangeFields(OP.CMD_TLBI_S2_IPA, true, false),
} as const;

// ---------------------------------------------------------------------------------------------
// TLB
// ---------------------------------------------------------------------------------------------

/** What an entry translates. */
export const TLB_KIND = Object.freeze({ S1: 0, S2: 1, NESTED: 2 } as const);

/**
 * Translation regimes the Non-secure programming interface can tag (§3.3.3 StreamWorld): NS-EL1,
 * NS-EL2 (no ASIDs) and NS-EL2-E2H (ASIDs). The model keeps EL2 and EL2-E2H apart, which §3.17.5
 * permits and which makes CMD_TLBI_EL2_VA/VAA depend on SMMU_CR2.E2H as §4.4.2.8-9 describe.
 */
export const REGIME = Object.freeze({ EL1: 0, EL2: 1, EL2_E2H: 2 } as const);

/** TLBI TG encodings (§4.4.1.1): the granule as log2 of its size. */
const TG_BITS: Readonly<Record<number, number>> = Object.freeze({ 1: 12, 2: 14, 3: 16 });
/** TLBI TG code of a granule (log2 size 12/14/16). */
export function tgCode(granuleBits: number): number {
  return granuleBits === 12 ? 1 : granuleBits === 14 ? 2 : 3;
}

const PAGE_BITS = 12;
/** Sizes are at most 2^63 bytes; a key is blockIndex · 64 + log2 size. */
const KEY_SIZES = 64;
/** VA[55] as a page number bit: the boundary between the TTB0 and TTB1 halves. */
const TTB1_PAGE = 2 ** (55 - PAGE_BITS);
/** Range invalidations probe keys while a size class has at most this many blocks in range. */
const PROBE_LIMIT = 64;
/** SCALE values above 39 are treated as 39 (§4.4.1.1). */
const SCALE_MAX = 39;
/** TTL value 0b01 for the 16KB granule is Reserved without IDR5.DS and treated as 0 (§4.4.1.1). */
const TTL_LEVEL1 = 1;
const TG_16K = 2;

export class TlbEntry implements PolicyNode<TlbEntry> {
  prev: TlbEntry | null = null;
  next: TlbEntry | null = null;
  slot = -1;
  ctx!: TlbContext;
  key = 0;
  /** Key in the context's match index when the match range is wider than the lookup range. */
  matchKey = -1;
  /** The invalidation that last queued this entry (Tlb.epoch): an entry found twice is removed once. */
  mark = 0;

  constructor(
    readonly kind: number,
    /** Lookup range: first 4KB page (VA[55:12] or IPA[55:12]) and log2 of its size in bytes. */
    readonly page: number,
    readonly log2: number,
    /** Invalidation range (the stage 1 leaf's range for combined entries). */
    readonly matchPage: number,
    readonly matchLog2: number,
    /** Leaf level and TLBI TG code of the stage that invalidations by address address. */
    readonly level: number,
    readonly tg: number,
    /** Output PA of the lookup range's first byte. */
    readonly outBase: number,
    /** IPA of the lookup range's first byte (combined entries), for stage 2 fault records. */
    readonly ipaBase: number,
    /** Stage 1 permission bits (S1, NESTED) or stage 2 permission bits (S2). See walk.ts PERM. */
    readonly perms: number,
    /** Stage 2 permission bits of a combined entry. */
    readonly s2perms: number,
  ) {}
}

/**
 * Removed keys a context's maps may keep, beyond twice its live entries, before they are rebuilt
 * (TlbContext.map).
 */
const TOMBSTONE_SLACK = 64;

/** Entries sharing tags. Addresses are looked up per size class present in the context. */
export class TlbContext {
  /**
   * Entries by block key. A removed entry leaves its key mapped to undefined (a tombstone) until
   * the map is rebuilt: V8's Map keeps a deleted key in its hash chain until the table is
   * rehashed, so deleting a key and setting it again (a TLBI of a page, then its refill) lengthens
   * one chain per round and makes every access to that key O(map size) (~6 µs at 4096 entries);
   * setting a tombstoned key again reuses its slot. `live` counts the entries.
   */
  map = new Map<number, TlbEntry | undefined>();
  live = 0;
  /** log2 sizes present (lookup ranges), ascending, with counts. */
  readonly sizes: number[] = [];
  readonly sizeCount = new Uint32Array(KEY_SIZES);
  /**
   * Combined entries whose stage 1 range is wider than their lookup range, by match key; an
   * emptied list stays as the tombstone of its key (see `map`). `matchLive` counts the entries.
   */
  matchMap: Map<number, TlbEntry[]> | null = null;
  matchLive = 0;
  readonly matchSizes: number[] = [];
  readonly matchSizeCount = new Uint32Array(KEY_SIZES);

  constructor(
    readonly key: number,
    /** true: VA-tagged (stage 1 and combined entries); false: IPA-tagged (stage 2). */
    readonly va: boolean,
    readonly regime: number,
    readonly vmid: number,
    /** The ASID, or -1 for the global entries of (regime, VMID, ASET). */
    readonly asid: number,
    readonly aset: number,
  ) {}

  get global(): boolean {
    return this.asid < 0;
  }
}

function addSize(list: number[], count: Uint32Array, log2: number): void {
  if (count[log2]!++ === 0) {
    let i = list.length;
    list.push(log2);
    while (i > 0 && list[i - 1]! > log2) {
      list[i] = list[i - 1]!;
      i--;
    }
    list[i] = log2;
  }
}

function removeSize(list: number[], count: Uint32Array, log2: number): void {
  if (--count[log2]! === 0) list.splice(list.indexOf(log2), 1);
}

/** Rebuild a context's maps without their tombstones (amortised O(1) per removal). */
function compact(ctx: TlbContext): void {
  const map = new Map<number, TlbEntry | undefined>();
  for (const [k, e] of ctx.map) if (e !== undefined) map.set(k, e);
  ctx.map = map;
  if (ctx.matchMap !== null) {
    const mm = new Map<number, TlbEntry[]>();
    for (const [k, list] of ctx.matchMap) if (list.length !== 0) mm.set(k, list);
    ctx.matchMap = mm.size !== 0 ? mm : null;
  }
}

/** 2^n for n = 0..63: block sizes in pages without Math.pow in the lookup path. */
const POW2: readonly number[] = Array.from({ length: KEY_SIZES }, (_, n) => 2 ** n);

function blockKey(page: number, log2: number): number {
  return Math.floor(page / POW2[log2 - PAGE_BITS]!) * KEY_SIZES + log2;
}

function contextKey(va: boolean, regime: number, vmid: number, asid: number, aset: number): number {
  const global = asid < 0 ? 1 : 0;
  const a = asid < 0 ? 0 : asid;
  // [37] va, [36:35] regime, [34] global, [33] aset, [32:17]… packed without bit operators (> 32 bits).
  return ((((((va ? 1 : 0) * 4 + regime) * 2 + global) * 2 + aset) * 0x1_0000 + vmid) * 0x1_0000) + a;
}

/** An address range filter for invalidation by address (§4.4.1.1). */
export interface RangeFilter {
  /** First page (4KB units) of the range. */
  readonly start: number;
  /** One past the last page. */
  readonly end: number;
  /** TLBI TG code the entries must have been inserted with; 0 = any. */
  readonly tg: number;
  /** Leaf level the entries must have; 0 = any. */
  readonly level: number;
}

type MutableRange = { -readonly [K in keyof RangeFilter]: RangeFilter[K] };

/** Entry kinds as bit masks, for the `kinds` argument of the invalidation primitives. */
const VA_KINDS = (1 << TLB_KIND.S1) | (1 << TLB_KIND.NESTED);
const S2_KINDS = 1 << TLB_KIND.S2;
const ALL_KINDS = VA_KINDS | S2_KINDS;

/** Which contexts of a set an invalidation selects (a number, not a closure: see `selects`). */
const SEL = Object.freeze({
  ALL: 0,
  VA: 1,
  IPA: 2,
  VA_ASID: 3,
  VA_ASID_OR_GLOBAL: 4,
  VA_ASID_OR_NON_GLOBAL: 5,
  ASID_OR_GLOBAL: 6,
  NON_GLOBAL: 7,
  NON_GLOBAL_ASID: 8,
} as const);

function selects(c: TlbContext, sel: number, asid: number): boolean {
  switch (sel) {
    case SEL.ALL:
      return true;
    case SEL.VA:
      return c.va;
    case SEL.IPA:
      return !c.va;
    case SEL.VA_ASID:
      return c.va && c.asid === asid;
    case SEL.VA_ASID_OR_GLOBAL:
      return c.va && (c.global || c.asid === asid);
    case SEL.VA_ASID_OR_NON_GLOBAL:
      return c.va && (c.asid === asid || !c.global);
    case SEL.ASID_OR_GLOBAL:
      return c.global || c.asid === asid;
    case SEL.NON_GLOBAL:
      return !c.global;
    case SEL.NON_GLOBAL_ASID:
      return !c.global && c.asid === asid;
    default:
      return false;
  }
}

/** CMD_TLBI_EL2_ALL's words: what an over-invalidating EL2_VA/VAA does instead. */
const EL2_ALL_WORDS: readonly number[] = Object.freeze([OP.CMD_TLBI_EL2_ALL, 0, 0, 0]);

export interface TlbOptions {
  readonly entries: number;
  readonly replacement: Replacement;
  readonly seed?: number;
}

/** What an invalidation needs of the SMMU's state. */
export interface InvalidationState {
  readonly features: SmmuFeatures;
  /** SMMU_CR2.E2H: selects NS-EL2 or NS-EL2-E2H for CMD_TLBI_EL2_VA/VAA (§4.4.2.8-9). */
  readonly e2h: boolean;
  /** SMMU_CR0.VMW: VMID LSBs ignored by invalidations (§3.17.6), 0..4. */
  readonly vmw: number;
  /** Remove more than the minimum scope (§4.4: over-invalidation is permitted). */
  readonly overInvalidate: boolean;
}

export class Tlb {
  readonly counters: CacheCounters = newCounters();
  readonly capacity: number;
  private readonly policy: Policy<TlbEntry>;
  private readonly contexts = new Map<number, TlbContext>();
  /** NS-EL1 contexts (VA and IPA) by VMID. */
  private readonly byVmid = new Map<number, Set<TlbContext>>();
  /** Contexts by regime. */
  private readonly byRegime: Set<TlbContext>[] = [new Set(), new Set(), new Set()];
  /** The entries the invalidation in progress removes (reused: no allocation per command). */
  private readonly victims: TlbEntry[] = [];
  /** Numbers the invalidations, for TlbEntry.mark. */
  private epoch = 0;
  /** The range filter of the invalidation in progress (range()). */
  private readonly scratchRange: MutableRange = { start: 0, end: 0, tg: 0, level: 0 };

  constructor(opts: TlbOptions) {
    this.capacity = Math.max(0, opts.entries);
    this.policy = new Policy(opts.replacement, opts.seed ?? 1);
  }

  get size(): number {
    return this.policy.size;
  }

  // -------------------------------------------------------------------------------------------
  // Lookup and insertion
  // -------------------------------------------------------------------------------------------

  /**
   * Look up a VA (page = VA[55:12]) for a stage 1 or nested stream. Non-global entries match by
   * ASID whatever their ASET; global entries match only the same ASET (§3.17, §3.17.1). Regimes
   * without ASIDs (NS-EL2) pass asid 0. Counts a hit or a miss.
   */
  lookupVa(kind: number, regime: number, vmid: number, asid: number, aset: number, page: number): TlbEntry | undefined {
    let e = this.probe(contextKey(true, regime, vmid, asid, 0), kind, page);
    if (e === undefined && regime !== REGIME.EL2) e = this.probe(contextKey(true, regime, vmid, -1, aset), kind, page);
    if (e === undefined) {
      this.counters.misses++;
      return undefined;
    }
    this.counters.hits++;
    this.policy.touch(e);
    return e;
  }

  /** Look up an IPA (page = IPA[55:12]) in the stage 2 entries of a VMID. Counts a hit or a miss. */
  lookupIpa(vmid: number, page: number): TlbEntry | undefined {
    const e = this.probe(contextKey(false, REGIME.EL1, vmid, 0, 0), TLB_KIND.S2, page);
    if (e === undefined) {
      this.counters.misses++;
      return undefined;
    }
    this.counters.hits++;
    this.policy.touch(e);
    return e;
  }

  private probe(ckey: number, kind: number, page: number): TlbEntry | undefined {
    const ctx = this.contexts.get(ckey);
    if (ctx === undefined) return undefined;
    const sizes = ctx.sizes;
    for (let i = 0; i < sizes.length; i++) {
      const log2 = sizes[i]!;
      const e = ctx.map.get(blockKey(page, log2));
      // An entry of another kind under the same tags is a software error (§3.17 note: stage-1-only
      // and nested streams must not share a VMID); such an entry never satisfies the lookup.
      if (e !== undefined && e.kind === kind) return e;
    }
    return undefined;
  }

  /**
   * Insert a VA-tagged entry (stage 1 or combined). `asid` is -1 for a global entry; NS-EL2 entries
   * pass 0 (no ASIDs, nG ignored: §3.17.1).
   */
  insertVa(
    kind: number, regime: number, vmid: number, asid: number, aset: number,
    page: number, log2: number, matchPage: number, matchLog2: number, level: number, tg: number,
    outBase: number, ipaBase: number, perms: number, s2perms: number,
  ): TlbEntry | undefined {
    const a = regime === REGIME.EL2 ? 0 : asid;
    const ctx = this.context(true, regime, vmid, a, a < 0 ? aset : 0);
    return this.insert(ctx, new TlbEntry(kind, page, log2, matchPage, matchLog2, level, tg, outBase, ipaBase, perms, s2perms));
  }

  /** Insert a stage 2 entry (IPA → PA) for a VMID. */
  insertIpa(vmid: number, page: number, log2: number, level: number, tg: number, outBase: number, perms: number): TlbEntry | undefined {
    const ctx = this.context(false, REGIME.EL1, vmid, 0, 0);
    return this.insert(ctx, new TlbEntry(TLB_KIND.S2, page, log2, page, log2, level, tg, outBase, outBase, perms, 0));
  }

  private insert(ctx: TlbContext, e: TlbEntry): TlbEntry | undefined {
    if (this.capacity === 0) {
      this.dropContextIfEmpty(ctx);
      return undefined;
    }
    e.ctx = ctx;
    e.key = blockKey(e.page, e.log2);
    const old = ctx.map.get(e.key);
    if (old !== undefined) this.remove(old);
    while (this.policy.size >= this.capacity) {
      const v = this.policy.victim();
      if (v === undefined) break;
      this.remove(v);
      this.counters.evictions++;
    }
    // The victim may have been the context's last entry: re-attach the context.
    this.attach(ctx);
    ctx.map.set(e.key, e);
    ctx.live++;
    addSize(ctx.sizes, ctx.sizeCount, e.log2);
    if (e.matchLog2 > e.log2) {
      e.matchKey = blockKey(e.matchPage, e.matchLog2);
      if (ctx.matchMap === null) ctx.matchMap = new Map();
      const list = ctx.matchMap.get(e.matchKey);
      if (list === undefined) ctx.matchMap.set(e.matchKey, [e]);
      else list.push(e);
      ctx.matchLive++;
      addSize(ctx.matchSizes, ctx.matchSizeCount, e.matchLog2);
    }
    this.policy.add(e);
    this.counters.insertions++;
    return e;
  }

  /** Remove one entry (no counter change). */
  private remove(e: TlbEntry): void {
    const ctx = e.ctx;
    // A tombstone, not a delete (TlbContext.map).
    ctx.map.set(e.key, undefined);
    ctx.live--;
    removeSize(ctx.sizes, ctx.sizeCount, e.log2);
    if (e.matchKey >= 0 && ctx.matchMap !== null) {
      const list = ctx.matchMap.get(e.matchKey);
      if (list !== undefined) list.splice(list.indexOf(e), 1);
      ctx.matchLive--;
      removeSize(ctx.matchSizes, ctx.matchSizeCount, e.matchLog2);
      e.matchKey = -1;
    }
    this.policy.remove(e);
    if (ctx.map.size > 2 * ctx.live + TOMBSTONE_SLACK || (ctx.matchMap !== null && ctx.matchMap.size > 2 * ctx.matchLive + TOMBSTONE_SLACK)) {
      compact(ctx);
    }
    this.dropContextIfEmpty(ctx);
  }

  private context(va: boolean, regime: number, vmid: number, asid: number, aset: number): TlbContext {
    const key = contextKey(va, regime, vmid, asid, aset);
    let ctx = this.contexts.get(key);
    if (ctx === undefined) ctx = new TlbContext(key, va, regime, vmid, asid, aset);
    return ctx;
  }

  private attach(ctx: TlbContext): void {
    if (this.contexts.has(ctx.key)) return;
    this.contexts.set(ctx.key, ctx);
    this.byRegime[ctx.regime]!.add(ctx);
    if (ctx.regime === REGIME.EL1) {
      let s = this.byVmid.get(ctx.vmid);
      if (s === undefined) this.byVmid.set(ctx.vmid, (s = new Set()));
      s.add(ctx);
    }
  }

  private dropContextIfEmpty(ctx: TlbContext): void {
    if (ctx.live !== 0 || !this.contexts.has(ctx.key)) return;
    this.contexts.delete(ctx.key);
    this.byRegime[ctx.regime]!.delete(ctx);
    if (ctx.regime === REGIME.EL1) {
      const s = this.byVmid.get(ctx.vmid);
      s?.delete(ctx);
      if (s !== undefined && s.size === 0) this.byVmid.delete(ctx.vmid);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Invalidation primitives
  // -------------------------------------------------------------------------------------------

  /** Remove every entry. */
  invalidateAll(): number {
    const n = this.policy.size;
    for (const e of this.policy.all()) this.remove(e);
    this.counters.invalidated += n;
    return n;
  }

  // An invalidation runs in two steps: collect the entries it matches into `victims` (nothing is
  // removed, so the context sets and maps can be iterated as they are), then remove them all
  // (`flush`). Neither step allocates or creates a closure: this is the device's per-command path.

  /** Queue every entry of `ctx` of one of `kinds`, or those `r` matches (by match range, TG and level). */
  private collect(ctx: TlbContext | undefined, r: RangeFilter | null, kinds: number): void {
    if (ctx === undefined) return;
    if (r === null) {
      for (const e of ctx.map.values()) if (e !== undefined && ((1 << e.kind) & kinds) !== 0) this.victims.push(e);
      return;
    }
    // Probing keys is cheap for small ranges; a wide range scans the context instead.
    let probe = true;
    for (const log2 of ctx.sizes) if (blocksIn(r, log2) > PROBE_LIMIT) probe = false;
    for (const log2 of ctx.matchSizes) if (blocksIn(r, log2) > PROBE_LIMIT) probe = false;
    if (!probe) {
      for (const e of ctx.map.values()) if (e !== undefined) this.accept(e, r, kinds);
      return;
    }
    for (const log2 of ctx.sizes) {
      const bp = POW2[log2 - PAGE_BITS]!;
      const last = Math.floor((r.end - 1) / bp);
      for (let b = Math.floor(r.start / bp); b <= last; b++) {
        const e = ctx.map.get(b * KEY_SIZES + log2);
        if (e !== undefined) this.accept(e, r, kinds);
      }
    }
    if (ctx.matchMap !== null) {
      for (const log2 of ctx.matchSizes) {
        const bp = POW2[log2 - PAGE_BITS]!;
        const last = Math.floor((r.end - 1) / bp);
        for (let b = Math.floor(r.start / bp); b <= last; b++) {
          const list = ctx.matchMap.get(b * KEY_SIZES + log2);
          if (list !== undefined) for (const e of list) this.accept(e, r, kinds);
        }
      }
    }
  }

  /** Queue `e` if `r` matches it; an entry found by both its keys is queued once. */
  private accept(e: TlbEntry, r: RangeFilter, kinds: number): void {
    if (e.mark === this.epoch) return;
    e.mark = this.epoch;
    if (((1 << e.kind) & kinds) === 0) return;
    if (r.tg !== 0 && e.tg !== r.tg) return;
    if (r.level !== 0 && e.level !== r.level) return;
    if (e.matchPage < r.end && r.start < e.matchPage + POW2[e.matchLog2 - PAGE_BITS]!) this.victims.push(e);
  }

  /** Queue the matching entries of every context of `set` that `sel` selects. */
  private collectSet(set: Iterable<TlbContext> | undefined, sel: number, asid: number, r: RangeFilter | null, kinds: number): void {
    if (set === undefined) return;
    for (const ctx of set) if (selects(ctx, sel, asid)) this.collect(ctx, r, kinds);
  }

  /** The same over the NS-EL1 contexts whose VMID matches `vmid` under the VMW wildcard (§3.17.6), or all of them. */
  private collectEl1(vmid: number, vmw: number, all: boolean, sel: number, asid: number, r: RangeFilter | null, kinds: number): void {
    if (all) return this.collectSet(this.byRegime[REGIME.EL1], sel, asid, r, kinds);
    if (vmw === 0) return this.collectSet(this.byVmid.get(vmid), sel, asid, r, kinds);
    const mask = ~((1 << vmw) - 1);
    for (const [v, set] of this.byVmid) if ((v & mask) === (vmid & mask)) this.collectSet(set, sel, asid, r, kinds);
  }

  /** Remove the queued entries; returns how many. */
  private flush(): number {
    const v = this.victims;
    const n = v.length;
    if (n === 0) return 0;
    for (let i = 0; i < n; i++) this.remove(v[i]!);
    v.length = 0;
    this.counters.invalidated += n;
    return n;
  }

  private ctxAt(va: boolean, regime: number, vmid: number, asid: number, aset: number): TlbContext | undefined {
    return this.contexts.get(contextKey(va, regime, vmid, asid, aset));
  }

  /** True when no NS-EL1 entry can match `vmid` (no VMW wildcard, and none carries it): nothing to do. */
  private vmidAbsent(vmid: number, vmw: number): boolean {
    return vmw === 0 && !this.byVmid.has(vmid);
  }

  // -------------------------------------------------------------------------------------------
  // Invalidation by command (§4.4)
  // -------------------------------------------------------------------------------------------

  /**
   * Execute one TLBI command's effect (the command is legal: the executor checked it). Returns the
   * number of entries removed; 0 for commands that are not TLB invalidations.
   */
  invalidate(words: ArrayLike<number>, st: InvalidationState): number {
    const op = (words[0] ?? 0) & 0xff;
    const f = st.features;
    // Without stage 2 no entry carries a VMID (§3.17): the commands' VMID is not matched (§4.4.2).
    const s2 = f.s2;
    const vmw = f.vmw && s2 ? st.vmw : 0;
    const over = st.overInvalidate;
    this.epoch++; // exact up to 2^53: never wraps onto an old mark
    switch (op) {
      case OP.CMD_TLBI_NSNH_ALL:
        // §4.4.4.1: all Non-secure, non-EL2 entries at all stages.
        if (over) return this.invalidateAll();
        this.collectSet(this.byRegime[REGIME.EL1], SEL.ALL, 0, null, ALL_KINDS);
        return this.flush();
      case OP.CMD_TLBI_S12_VMALL: {
        // §4.4.3.2: all NS-EL1 entries at all stages for the VMID.
        const v = s2 ? num(words, TLBI.S12_VMID) : 0;
        this.collectEl1(v, vmw, over, SEL.ALL, 0, null, ALL_KINDS);
        return this.flush();
      }
      case OP.CMD_TLBI_NH_ALL: {
        // §4.4.2.1: all stage 1 NS-EL1 entries (and combined ones) for the VMID, global included.
        const v = s2 ? num(words, TLBI.NH_ALL_VMID) : 0;
        this.collectEl1(v, vmw, over, SEL.VA, 0, null, VA_KINDS);
        return this.flush();
      }
      case OP.CMD_TLBI_NH_ASID: {
        // §4.4.2.2: non-global NS-EL1 entries by ASID and VMID; global entries survive.
        const v = s2 ? num(words, TLBI.NH_ASID_VMID) : 0;
        if (this.vmidAbsent(v, vmw)) return 0;
        const asid = num(words, TLBI.NH_ASID_ASID);
        // Exactly one context holds them: the VMID's, the ASID's, non-global (ASET 0: the ASET
        // tags only global entries).
        if (vmw === 0 && !over) this.collect(this.ctxAt(true, REGIME.EL1, v, asid, 0), null, VA_KINDS);
        else this.collectEl1(v, vmw, false, over ? SEL.VA_ASID_OR_NON_GLOBAL : SEL.VA_ASID, asid, null, VA_KINDS);
        return this.flush();
      }
      case OP.CMD_TLBI_NH_VA: {
        // §4.4.2.4: by VMID, ASID and VA, plus global entries by VMID and VA.
        const fl = TLBI.NH_VA;
        const v = s2 ? num(words, fl.vmid!) : 0;
        if (this.vmidAbsent(v, vmw)) return 0;
        const asid = num(words, fl.asid!);
        const r = over ? null : this.range(words, fl, f, true);
        if (r === undefined) return 0;
        if (vmw === 0) {
          // Three contexts at most, found by key: the ASID's, and the global ones of either ASET.
          this.collect(this.ctxAt(true, REGIME.EL1, v, asid, 0), r, VA_KINDS);
          this.collect(this.ctxAt(true, REGIME.EL1, v, -1, 0), r, VA_KINDS);
          this.collect(this.ctxAt(true, REGIME.EL1, v, -1, 1), r, VA_KINDS);
        } else {
          this.collectEl1(v, vmw, false, SEL.VA_ASID_OR_GLOBAL, asid, r, VA_KINDS);
        }
        return this.flush();
      }
      case OP.CMD_TLBI_NH_VAA: {
        // §4.4.2.3: by VA for all ASIDs in the VMID, global included.
        const fl = TLBI.NH_VAA;
        const v = s2 ? num(words, fl.vmid!) : 0;
        if (this.vmidAbsent(v, vmw)) return 0;
        const r = over ? null : this.range(words, fl, f, true);
        if (r === undefined) return 0;
        this.collectEl1(v, vmw, false, SEL.VA, 0, r, VA_KINDS);
        return this.flush();
      }
      case OP.CMD_TLBI_EL2_ALL:
        // §4.4.2.7: every NS-EL2 and NS-EL2-E2H entry, ASID-tagged or not.
        this.collectSet(this.byRegime[REGIME.EL2], SEL.ALL, 0, null, VA_KINDS);
        this.collectSet(this.byRegime[REGIME.EL2_E2H], SEL.ALL, 0, null, VA_KINDS);
        return this.flush();
      case OP.CMD_TLBI_EL2_ASID: {
        // §4.4.2.10: non-global NS-EL2-E2H entries by ASID; NS-EL2 entries need not be touched.
        const asid = num(words, TLBI.EL2_ASID_ASID);
        this.collectSet(this.byRegime[REGIME.EL2_E2H], over ? SEL.NON_GLOBAL : SEL.NON_GLOBAL_ASID, asid, null, VA_KINDS);
        return this.flush();
      }
      case OP.CMD_TLBI_EL2_VA: {
        // §4.4.2.8: E2H == 1: NS-EL2-E2H entries by ASID (or global) and VA; E2H == 0: NS-EL2
        // entries by VA, ASID ignored.
        const fl = TLBI.EL2_VA;
        const r = over ? null : this.range(words, fl, f, true);
        if (r === undefined) return 0;
        if (over) return this.invalidate(EL2_ALL_WORDS, st);
        if (st.e2h) this.collectSet(this.byRegime[REGIME.EL2_E2H], SEL.ASID_OR_GLOBAL, num(words, fl.asid!), r, VA_KINDS);
        else this.collectSet(this.byRegime[REGIME.EL2], SEL.ALL, 0, r, VA_KINDS);
        return this.flush();
      }
      case OP.CMD_TLBI_EL2_VAA: {
        // §4.4.2.9: by VA for all ASIDs, in the regime SMMU_CR2.E2H selects.
        const fl = TLBI.EL2_VAA;
        const r = over ? null : this.range(words, fl, f, true);
        if (r === undefined) return 0;
        if (over) return this.invalidate(EL2_ALL_WORDS, st);
        this.collectSet(this.byRegime[st.e2h ? REGIME.EL2_E2H : REGIME.EL2], SEL.ALL, 0, r, VA_KINDS);
        return this.flush();
      }
      case OP.CMD_TLBI_S2_IPA: {
        // §4.4.3.1: stage 2 entries by VMID and IPA. Combined stage 1+2 entries are not required to
        // be invalidated (software follows with CMD_TLBI_NH_ALL/NH_VAA); the model keeps them.
        const fl = TLBI.S2_IPA;
        const v = s2 ? num(words, fl.vmid!) : 0;
        if (this.vmidAbsent(v, vmw)) return 0;
        if (over) {
          this.collectEl1(v, vmw, false, SEL.ALL, 0, null, ALL_KINDS);
          return this.flush();
        }
        const r = this.range(words, fl, f, false);
        if (r === undefined) return 0;
        // A VMID's stage 2 entries live in one context, found by key.
        if (vmw === 0) this.collect(this.ctxAt(false, REGIME.EL1, v, 0, 0), r, S2_KINDS);
        else this.collectEl1(v, vmw, false, SEL.IPA, 0, r, S2_KINDS);
        return this.flush();
      }
      default:
        return 0;
    }
  }

  /**
   * The address range and filters of an address-based TLBI (§4.4.1.1), in a scratch filter that
   * the next call overwrites. TG == 0: the single page of Address, any granule, any level.
   * TG != 0: Address <= A < Address + (NUM+1)·2^SCALE·granule, entries of that granule, and of
   * level TTL when TTL != 0. Undefined when the command can match nothing: TTL128 == 1 asks for
   * 128-bit-descriptor entries, which the model never creates.
   */
  private range(words: ArrayLike<number>, fl: RangeFields, f: SmmuFeatures, va: boolean): RangeFilter | undefined {
    // VA commands name VA[63:12]; the TLB is tagged by VA[55:12] (TBI applied, §4.4.2 permits it).
    // IPA commands name IPA[55:12].
    const r = this.scratchRange;
    const page = commandPage(words, fl.addr, 44);
    const tg = f.ril ? num(words, fl.tg) : 0;
    r.start = page;
    if (tg === 0) {
      r.end = page + 1;
      r.tg = 0;
      r.level = 0;
      return r;
    }
    let ttl = num(words, fl.ttl);
    if (tg === TG_16K && ttl === TTL_LEVEL1 && !f.ds) ttl = 0;
    if (ttl !== 0 && num(words, fl.ttl128) !== 0) return undefined;
    const scale = Math.min(num(words, fl.scale), SCALE_MAX);
    const pages = (num(words, fl.num) + 1) * 2 ** scale * 2 ** (TG_BITS[tg]! - PAGE_BITS);
    let end = page + pages;
    // §4.4.1.1: a range from the TTB0 half need not reach into the TTB1 half (no wrap either).
    if (va && page < TTB1_PAGE) end = Math.min(end, TTB1_PAGE);
    r.end = end;
    r.tg = tg;
    r.level = ttl;
    return r;
  }

  /** Every entry, for tests and inspection. */
  entries(): TlbEntry[] {
    return this.policy.all();
  }
}

function blocksIn(r: RangeFilter, log2: number): number {
  const bp = POW2[log2 - PAGE_BITS]!;
  return Math.floor((r.end - 1) / bp) - Math.floor(r.start / bp) + 1;
}

// ---------------------------------------------------------------------------------------------
// Configuration cache
// ---------------------------------------------------------------------------------------------

/** SubstreamIDs are at most 20 bits (IDR1.SSIDSIZE <= 20): CD keys are StreamID · 2^20 + index. */
const SSID_SPAN = 2 ** 20;
/** L1CD keys: StreamID · 2^20 + S1Fmt · 2^16 + level 1 index (at most 2^14 L1CDs, §5.2). */
const L1CD_FMT_SPAN = 2 ** 16;
const S1FMT_L2_4K = STE_S1FMT.L2_4K;
const S1FMT_L2_64K = STE_S1FMT.L2_64K;

export interface ConfigCacheOptions {
  /** Capacity of each of the four structure caches (STE, CD, L1STD, L1CD). */
  readonly entries: number;
  readonly replacement: Replacement;
  readonly seed?: number;
}

/**
 * Cached configuration structures (§3.21.3): STEs by StreamID, L1STDs by level 1 index, CDs by
 * {StreamID, CD table index} and L1CDs by {StreamID, level 1 index} (§4.3.3: a CD is local to the
 * StreamID that located it). Failed fetches are never cached (§3.21.3); structures that were
 * fetched are cached whatever they contain, valid or not (§5.2.1, §5.4.1 permit it).
 */
export class ConfigCache<Ste, L1std, Cd, L1cd> {
  readonly ste: KeyedCache<Ste>;
  readonly l1std: KeyedCache<L1std>;
  readonly cd: KeyedCache<Cd>;
  readonly l1cd: KeyedCache<L1cd>;
  /** CD and L1CD keys by StreamID, so CMD_CFGI_CD_ALL and CMD_CFGI_STE touch only that StreamID. */
  private readonly cdBySid = new Map<number, Set<number>>();
  private readonly l1cdBySid = new Map<number, Set<number>>();

  constructor(opts: ConfigCacheOptions) {
    const seed = opts.seed ?? 1;
    const unindex = (idx: Map<number, Set<number>>) => (key: number): void => {
      const sid = Math.floor(key / SSID_SPAN);
      const s = idx.get(sid);
      s?.delete(key);
      if (s !== undefined && s.size === 0) idx.delete(sid);
    };
    this.ste = new KeyedCache('STE', opts.entries, opts.replacement, seed);
    this.l1std = new KeyedCache('L1STD', opts.entries, opts.replacement, seed + 1);
    this.cd = new KeyedCache('CD', opts.entries, opts.replacement, seed + 2, unindex(this.cdBySid));
    this.l1cd = new KeyedCache('L1CD', opts.entries, opts.replacement, seed + 3, unindex(this.l1cdBySid));
  }

  static cdKey(sid: number, index: number): number {
    return sid * SSID_SPAN + index;
  }

  getCd(sid: number, index: number): Cd | undefined {
    return this.cd.get(sid * SSID_SPAN + index);
  }

  setCd(sid: number, index: number, v: Cd): void {
    this.indexed(this.cd, this.cdBySid, sid, index, v);
  }

  /**
   * L1CDs are keyed by {StreamID, S1Fmt, level 1 index}: the level 1 index of a SubstreamID depends
   * on the CD table layout (S1Fmt), which CMD_CFGI_CD does not carry, so keeping the layout in the
   * key lets CMD_CFGI_CD (Leaf == 0) find exactly the L1CD that could have located the CD.
   */
  getL1cd(sid: number, s1fmt: number, l1: number): L1cd | undefined {
    return this.l1cd.get(sid * SSID_SPAN + s1fmt * L1CD_FMT_SPAN + l1);
  }

  setL1cd(sid: number, s1fmt: number, l1: number, v: L1cd): void {
    this.indexed(this.l1cd, this.l1cdBySid, sid, s1fmt * L1CD_FMT_SPAN + l1, v);
  }

  private indexed<V>(c: KeyedCache<V>, idx: Map<number, Set<number>>, sid: number, i: number, v: V): void {
    if (c.capacity <= 0) return;
    const key = sid * SSID_SPAN + i;
    c.set(key, v);
    let s = idx.get(sid);
    if (s === undefined) idx.set(sid, (s = new Set()));
    s.add(key);
  }

  /** All CDs and L1CDs cached through `sid`. */
  private dropSubstreams(sid: number): number {
    let n = 0;
    for (const k of [...(this.cdBySid.get(sid) ?? [])]) n += this.cd.invalidate(k);
    for (const k of [...(this.l1cdBySid.get(sid) ?? [])]) n += this.l1cd.invalidate(k);
    return n;
  }

  invalidateAll(): number {
    return this.ste.invalidateAll() + this.l1std.invalidateAll() + this.cd.invalidateAll() + this.l1cd.invalidateAll();
  }

  /**
   * Execute one CMD_CFGI_* (§4.3). `split` is the Stream table's effective SPLIT, or -1 for a
   * linear Stream table (no L1STDs exist then). Returns the entries removed.
   */
  invalidate(words: ArrayLike<number>, split: number, overInvalidate: boolean): number {
    const op = (words[0] ?? 0) & 0xff;
    switch (op) {
      case OP.CMD_CFGI_STE: {
        // §4.3.1: the STE, every CD and L1CD cached through it, and with Leaf == 0 the L1STD that
        // located it.
        const sid = num(words, CFGI.STE_SID);
        if (overInvalidate) return this.invalidateAll();
        let n = this.ste.invalidate(sid) + this.dropSubstreams(sid);
        if (num(words, CFGI.STE_LEAF) === 0 && split >= 0) n += this.l1std.invalidate(Math.floor(sid / 2 ** split));
        return n;
      }
      case OP.CMD_CFGI_STE_RANGE: {
        // §4.3.2 / §4.3.6: an aligned range of 2^(Range+1) StreamIDs; Range == 31 is CMD_CFGI_ALL.
        const range = num(words, CFGI.RANGE);
        if (range >= CFGI_ALL_RANGE || overInvalidate) return this.invalidateAll();
        const span = 2 ** (range + 1);
        const first = Math.floor(num(words, CFGI.RANGE_SID) / span) * span;
        const last = first + span - 1;
        const inRange = (sid: number): boolean => sid >= first && sid <= last;
        let n = 0;
        if (span <= this.ste.size) {
          for (let sid = first; sid <= last; sid++) n += this.ste.invalidate(sid);
        } else {
          n += this.ste.invalidateWhere((sid) => inRange(sid));
        }
        for (const sid of [...this.cdBySid.keys(), ...this.l1cdBySid.keys()]) if (inRange(sid)) n += this.dropSubstreams(sid);
        if (split >= 0) {
          const l1First = Math.floor(first / 2 ** split);
          const l1Last = Math.floor(last / 2 ** split);
          n += this.l1std.invalidateWhere((i) => i >= l1First && i <= l1Last);
        }
        return n;
      }
      case OP.CMD_CFGI_CD: {
        // §4.3.3: the CD at that CD table index, cached through that StreamID; Leaf == 0 also the
        // L1CD that located it (for either 2-level layout, §5.2 S1Fmt: the index is SSID[max:6]
        // or SSID[max:10]; an index that does not fit the STE's S1CDMax has no CD to locate).
        const sid = num(words, CFGI.CD_SID);
        const ssid = num(words, CFGI.CD_SSID);
        if (overInvalidate) return this.dropSubstreams(sid);
        let n = this.cd.invalidate(sid * SSID_SPAN + ssid);
        if (num(words, CFGI.CD_LEAF) === 0) {
          n += this.l1cd.invalidate(sid * SSID_SPAN + S1FMT_L2_4K * L1CD_FMT_SPAN + (ssid >>> CD_L2_4K_BITS));
          n += this.l1cd.invalidate(sid * SSID_SPAN + S1FMT_L2_64K * L1CD_FMT_SPAN + (ssid >>> CD_L2_64K_BITS));
        }
        return n;
      }
      case OP.CMD_CFGI_CD_ALL:
        // §4.3.4: every CD and L1CD cached through the StreamID.
        return this.dropSubstreams(num(words, CFGI.CDALL_SID));
      default:
        return 0;
    }
  }
}

/** SubstreamID bits indexing a level 2 CD table: S1Fmt 0b01 (4KB, 64 CDs), 0b10 (64KB, 1024 CDs) (§5.2). */
export const CD_L2_4K_BITS = 6;
export const CD_L2_64K_BITS = 10;
