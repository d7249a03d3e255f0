/**
 * Address Translation Caches of ATS endpoints (IHI0070 G.b §3.9.1, §4.5.1): the translations a PCIe
 * endpoint keeps after its ATS Translation Requests, and CMD_ATC_INV, the invalidation the SMMU
 * sends on software's behalf.
 *
 * Each StreamID (endpoint) has its own ATC with `entries` slots and its own replacement order.
 * Entries are tagged by SubstreamID (PASID) or "none", and hold a range of untranslated addresses
 * (VA[63:12] page numbers: endpoints see whole 64-bit addresses), the translated base (a PA, or an
 * IPA for split-stage ATS, STE.EATS == 0b10) and the permissions the Translation Completion granted.
 *
 * CMD_ATC_INV (§4.5.1): the span 4096 · 2^Size aligned to its size (Size >= 52: everything). With
 * SSV == 1 it invalidates that PASID's entries; with SSV == 0 it is a PCIe Invalidate Request
 * without a PASID prefix, which invalidates matching entries of every PASID of the endpoint (PCIe
 * ATS semantics; Linux's arm-smmu-v3 driver documents the same). The Global flag only widens the
 * scope to global translations, which an SMMU never returns for a PASID request (§3.9.1), so it
 * changes nothing here. The command is IGNORED while SMMUEN == 0.
 *
 * Invalidation completion timeouts (§3.9.1.4) are simulated: a timed-out CMD_ATC_INV invalidates
 * nothing (the endpoint never answered), and the next CMD_SYNC must fail with CERROR_ATC_INV_SYNC,
 * which syncCheck() reports once.
 */

import { getBits } from '../spec/bits.ts';
import { CERROR_ATC_INV_SYNC, CERROR_NONE } from '../spec/cerror.ts';
import { ATC_INV_SIZE_ALL, OP, commandField, commandSpec } from '../spec/commands.ts';
import type { CommandField } from '../spec/commands.ts';
import type { SmmuFeatures } from '../spec/features.ts';
import type { CacheCounters, PolicyNode, Replacement } from './tlb.ts';
import { Policy, commandPage, newCounters } from './tlb.ts';

function field(name: string): CommandField {
  const f = commandField(commandSpec(OP.CMD_ATC_INV), name);
  if (f === undefined) throw new Error(`CMD_ATC_INV has no field ${name}`);
  return f;
}

const F = {
  StreamID: field('StreamID'),
  SubstreamID: field('SubstreamID'),
  SSV: field('SSV'),
  Address: field('Address'),
  Size: field('Size'),
} as const;

const PAGE_BITS = 12;
/** Address[63:12]: 52 bits of page number. */
const VA_PAGE_BITS = 52;
const KEY_SIZES = 64;

export class AtcEntry implements PolicyNode<AtcEntry> {
  prev: AtcEntry | null = null;
  next: AtcEntry | null = null;
  slot = -1;
  key = 0;

  constructor(
    readonly ssid: number,
    /** First page (VA[63:12]) and log2 size in bytes of the untranslated range. */
    readonly page: number,
    readonly log2: number,
    /** Translated address of the range's first byte: a PA, or an IPA when `split`. */
    readonly outBase: number,
    /** PERM bits the Translation Completion granted. */
    readonly perms: number,
    readonly split: boolean,
  ) {}
}

/** One endpoint's ATC. */
class EndpointAtc {
  readonly policy: Policy<AtcEntry>;
  /** Entries by PASID (-1: requests without a PASID), each keyed by block index · 64 + log2. */
  readonly byPasid = new Map<number, Map<number, AtcEntry>>();
  readonly sizes = new Uint32Array(KEY_SIZES);

  constructor(replacement: Replacement, seed: number) {
    this.policy = new Policy(replacement, seed);
  }
}

export interface AtcOptions {
  /** Capacity of each endpoint's ATC. */
  readonly entries: number;
  readonly replacement: Replacement;
  readonly seed?: number;
  /** Every Nth CMD_ATC_INV times out (0 or absent: never). */
  readonly timeoutEvery?: number;
  /** Endpoints that never answer an invalidation (every CMD_ATC_INV to them times out). */
  readonly timeoutSids?: readonly number[];
}

export interface AtcCounters extends CacheCounters {
  /** CMD_ATC_INV commands sent (not IGNORED). */
  commands: number;
  /** Of those, the ones that timed out. */
  timeouts: number;
}

export class Atc {
  readonly counters: AtcCounters = { ...newCounters(), commands: 0, timeouts: 0 };
  private readonly endpoints = new Map<number, EndpointAtc>();
  private readonly timeoutSids: ReadonlySet<number>;
  private pending = false;
  private seed: number;

  constructor(readonly opts: AtcOptions) {
    this.seed = opts.seed ?? 1;
    this.timeoutSids = new Set(opts.timeoutSids ?? []);
  }

  /** The endpoint's cached translation covering `page` (VA[63:12]), counting a hit or a miss. */
  lookup(sid: number, ssid: number, page: number): AtcEntry | undefined {
    const ep = this.endpoints.get(sid);
    const m = ep?.byPasid.get(ssid);
    if (ep !== undefined && m !== undefined) {
      for (let log2 = PAGE_BITS; log2 < KEY_SIZES; log2++) {
        if (ep.sizes[log2] === 0) continue;
        const e = m.get(Math.floor(page / 2 ** (log2 - PAGE_BITS)) * KEY_SIZES + log2);
        if (e !== undefined) {
          this.counters.hits++;
          ep.policy.touch(e);
          return e;
        }
      }
    }
    this.counters.misses++;
    return undefined;
  }

  /**
   * Cache a Translation Completion (§3.9.1) covering the aligned 2^log2-byte range that holds
   * `page`; `outBase` is the translated address of that range's first byte. Returns the entry
   * (a transient one, not cached, when the capacity is 0).
   */
  insert(sid: number, ssid: number, page: number, log2: number, outBase: number, perms: number, split: boolean): AtcEntry {
    const bp = 2 ** (log2 - PAGE_BITS);
    const e = new AtcEntry(ssid, Math.floor(page / bp) * bp, log2, outBase, perms, split);
    e.key = Math.floor(page / bp) * KEY_SIZES + log2;
    if (this.opts.entries <= 0) return e;
    let ep = this.endpoints.get(sid);
    if (ep === undefined) {
      ep = new EndpointAtc(this.opts.replacement, this.seed++);
      this.endpoints.set(sid, ep);
    }
    const old = ep.byPasid.get(ssid)?.get(e.key);
    if (old !== undefined) this.remove(ep, old);
    while (ep.policy.size >= this.opts.entries) {
      const v = ep.policy.victim();
      if (v === undefined) break;
      this.remove(ep, v);
      this.counters.evictions++;
    }
    let m = ep.byPasid.get(ssid);
    if (m === undefined) ep.byPasid.set(ssid, (m = new Map()));
    m.set(e.key, e);
    ep.sizes[log2]!++;
    ep.policy.add(e);
    this.counters.insertions++;
    return e;
  }

  private remove(ep: EndpointAtc, e: AtcEntry): void {
    const m = ep.byPasid.get(e.ssid);
    m?.delete(e.key);
    if (m !== undefined && m.size === 0) ep.byPasid.delete(e.ssid);
    ep.sizes[e.log2]!--;
    ep.policy.remove(e);
  }

  /**
   * Execute CMD_ATC_INV (the command is legal). IGNORED while `smmuEn` is false (§4.5.1). Returns
   * the entries removed (0 when the invalidation timed out).
   */
  invalidate(words: ArrayLike<number>, f: SmmuFeatures, smmuEn: boolean, overInvalidate = false): number {
    if ((words[0]! & 0xff) !== OP.CMD_ATC_INV || !smmuEn) return 0;
    const sid = getBits(words as Uint32Array, F.StreamID.lsb, F.StreamID.width);
    this.counters.commands++;
    const every = this.opts.timeoutEvery ?? 0;
    if (this.timeoutSids.has(sid) || (every > 0 && this.counters.commands % every === 0)) {
      this.counters.timeouts++;
      this.pending = true;
      return 0;
    }
    const ep = this.endpoints.get(sid);
    if (ep === undefined) return 0;
    // SSV with SSIDSIZE == 0 behaves as SSV == 0 (§4.5.1, one of the two permitted behaviours).
    const ssv = f.ssidSize > 0 && getBits(words as Uint32Array, F.SSV.lsb, F.SSV.width) === 1;
    const ssid = getBits(words as Uint32Array, F.SubstreamID.lsb, F.SubstreamID.width);
    const size = getBits(words as Uint32Array, F.Size.lsb, F.Size.width);
    let start = 0;
    let end = Infinity;
    // Size values above 52 are taken as 52 (the legality table's model choice, §4.5.1).
    if (size < ATC_INV_SIZE_ALL && !overInvalidate) {
      const pages = 2 ** size;
      start = Math.floor(commandPage(words, F.Address, VA_PAGE_BITS) / pages) * pages;
      end = start + pages;
    }
    const victims: AtcEntry[] = [];
    for (const [pasid, m] of ep.byPasid) {
      if (ssv && !overInvalidate && pasid !== ssid) continue;
      for (const e of m.values()) {
        if (e.page < end && start < e.page + 2 ** (e.log2 - PAGE_BITS)) victims.push(e);
      }
    }
    for (const e of victims) this.remove(ep, e);
    this.counters.invalidated += victims.length;
    return victims.length;
  }

  /**
   * What a CMD_SYNC finds about the CMD_ATC_INVs before it (§3.9.1.4, §4.7.3): CERROR_ATC_INV_SYNC
   * once after any of them timed out, CERROR_NONE otherwise. The error is reported to one CMD_SYNC;
   * the re-issued CMD_SYNC then completes (the timed-out invalidations will never complete).
   */
  syncCheck(): number {
    if (!this.pending) return CERROR_NONE;
    this.pending = false;
    return CERROR_ATC_INV_SYNC;
  }

  /** Remove every entry of every endpoint (not counted as invalidation: a reset). */
  clear(): void {
    this.endpoints.clear();
  }

  get size(): number {
    let n = 0;
    for (const ep of this.endpoints.values()) n += ep.policy.size;
    return n;
  }

  /** Every entry of one endpoint, for tests and inspection. */
  entries(sid: number): AtcEntry[] {
    return this.endpoints.get(sid)?.policy.all() ?? [];
  }
}
