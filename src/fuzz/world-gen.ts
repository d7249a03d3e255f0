/**
 * Generators for translation worlds (src/fuzz/world.ts): a few streams with small page tables,
 * then DMA probes, table changes made behind the SMMU's back (remap, unmap, a CD's ASID, an
 * STE's configuration or VMID) and invalidation commands aimed at the world's identifiers, among
 * the hostile acts of generators.ts. The oracle (src/fuzz/translation.ts) then decides whether
 * each DMA may see the old or must see the new tables.
 */

import fc from 'fast-check';
import { encodeCommandWords } from '../spec/command-codec.ts';
import { CFGI_ALL_RANGE } from '../spec/commands.ts';
import type { SmmuFeatures } from '../spec/features.ts';
import { hex } from './scenario.ts';
import { WORLD_LAYOUT, worldS2Ia, WORLD_S1_IA, type StreamKind } from './world.ts';

type Json = Record<string, unknown>;

const PAGE = 0x1000;
/** Input pages a stage 1 stream maps: a run of 8, and one at the top of the 39-bit range. */
const S1_PAGES = [...Array.from({ length: 8 }, (_, k) => 0x1000_0000 + k * PAGE), 0x4000_0000, 2 ** WORLD_S1_IA - PAGE];
/** Stage 2 input pages (IPAs): below 2^32, so a 32-bit IPA range holds them. */
const S2_PAGES = [...Array.from({ length: 8 }, (_, k) => 0x2000_0000 + k * PAGE), 0x4000_0000, 0xffff_f000];
/** Output pages: one per use, never in RAM (the model does not touch them). */
const PA_BASE = 0x8000_0000;
const STREAM_IDS = [1, 2, 3, 5, 8, 0x11, 0x2a, 0x3f];
const VMIDS = [1, 2, 3, 7];
const ASIDS = [1, 5, 7, 9, 0x21, 0x42];

export interface WorldStreamPlan {
  readonly sid: number;
  readonly kind: StreamKind;
  readonly vmid: number;
  readonly asid: number;
  readonly record: boolean;
  /** Indices into the stage's input pages. */
  readonly pages: readonly number[];
}

export interface WorldPlan {
  readonly streams: readonly WorldStreamPlan[];
}

/** What a world act does; stream and page numbers are reduced modulo what exists when built. */
export type WorldAct =
  | { readonly w: 'dma'; readonly s: number; readonly p: number; readonly write: boolean; readonly offset: number }
  | { readonly w: 'remap'; readonly s: number; readonly p: number }
  | { readonly w: 'unmap'; readonly s: number; readonly p: number }
  | { readonly w: 'cd'; readonly s: number; readonly asid: number }
  | { readonly w: 'ste'; readonly s: number; readonly to: 'bypass' | 'abort' | 'back' | 'vmid'; readonly vmid: number }
  /** Probe a page, remap it, invalidate with a command aimed at it (`pick` chooses which), probe again. */
  | { readonly w: 'stale'; readonly s: number; readonly p: number; readonly pick: number };

/** The kinds of stream these features can have. */
function kinds(f: SmmuFeatures): StreamKind[] {
  return [...(f.s1 ? ['s1' as const, 's1' as const] : []), ...(f.s2 ? ['s2' as const, 's2' as const] : []), 'bypass', 'abort'];
}

/** A command from encode-style fields (`smmu-sim encode`), as four words. */
function enc(c: Record<string, unknown>): number[] {
  return [...encodeCommandWords(c as Parameters<typeof encodeCommandWords>[0])];
}

/** Whether a world can be built on these features (it needs 4KB tables and a stage). */
export function worldPossible(f: SmmuFeatures): boolean {
  return f.gran4k && (f.s1 || f.s2) && f.sidSize >= 6;
}

export function worldPlanArb(f: SmmuFeatures): fc.Arbitrary<WorldPlan> {
  const stream = fc.record({
    kind: fc.constantFrom(...kinds(f)),
    vmid: fc.constantFrom(...VMIDS),
    asid: fc.constantFrom(...ASIDS),
    record: fc.oneof({ arbitrary: fc.constant(true), weight: 4 }, { arbitrary: fc.constant(false), weight: 1 }),
    pages: fc.uniqueArray(fc.nat({ max: S1_PAGES.length - 1 }), { minLength: 1, maxLength: 6 }),
  });
  return fc.uniqueArray(fc.tuple(fc.constantFrom(...STREAM_IDS), stream), { minLength: 1, maxLength: 4, selector: (x) => x[0] }).map((xs) => {
    // §5.2: STEs sharing an S2VMID must agree on stage 2, so stage 2 streams get VMIDs of their
    // own; stage 1 streams sharing a VMID get distinct ASIDs (the TLB tags are VMID and ASID).
    const usedS2 = new Set<number>();
    const usedS1 = new Set<string>();
    const streams: WorldStreamPlan[] = [];
    for (const [sid, s] of xs) {
      let { vmid, asid } = s;
      if (s.kind === 's2') {
        while (usedS2.has(vmid)) vmid = (vmid % 0xff) + 1;
        usedS2.add(vmid);
      }
      if (s.kind === 's1') {
        while (usedS1.has(`${vmid}:${asid}`)) asid = (asid % 0xff) + 1;
        usedS1.add(`${vmid}:${asid}`);
      }
      const noTables = s.kind === 'bypass' || s.kind === 'abort';
      streams.push({ sid, kind: s.kind, vmid, asid, record: s.record, pages: noTables ? [] : s.pages });
    }
    return { streams };
  });
}

export function worldActArb(): fc.Arbitrary<WorldAct> {
  const s = fc.nat({ max: 7 });
  const p = fc.nat({ max: S1_PAGES.length - 1 });
  return fc.oneof(
    { arbitrary: fc.record({ w: fc.constant('dma' as const), s, p, write: fc.boolean(), offset: fc.constantFrom(0, 8, 0xff8) }), weight: 8 },
    { arbitrary: fc.record({ w: fc.constant('remap' as const), s, p }), weight: 3 },
    { arbitrary: fc.record({ w: fc.constant('unmap' as const), s, p }), weight: 1 },
    { arbitrary: fc.record({ w: fc.constant('cd' as const), s, asid: fc.constantFrom(...ASIDS) }), weight: 1 },
    { arbitrary: fc.record({ w: fc.constant('ste' as const), s, to: fc.constantFrom('bypass' as const, 'abort' as const, 'back' as const, 'vmid' as const), vmid: fc.constantFrom(...VMIDS) }), weight: 1 },
    { arbitrary: fc.record({ w: fc.constant('stale' as const), s, p, pick: fc.nat({ max: 15 }) }), weight: 4 },
  );
}

/** Invalidation and prefetch commands naming the world's StreamIDs, VMIDs, ASIDs and pages. */
export function worldCommandArb(f: SmmuFeatures, plan: WorldPlan): fc.Arbitrary<number[]> {
  const sids = plan.streams.map((s) => s.sid);
  const vmids = [...new Set(plan.streams.map((s) => s.vmid)), 0];
  const asids = [...new Set(plan.streams.map((s) => s.asid))];
  const addrs = [...S1_PAGES, ...S2_PAGES];
  const sid = fc.constantFrom(...sids);
  const vmid = f.s2 ? fc.constantFrom(...vmids) : fc.constant(0);
  const asid = fc.constantFrom(...asids);
  const addr = fc.constantFrom(...addrs);
  // Range fields (§4.4.1.1) when RIL: TG 0 (none), 4KB, or another granule; small NUM and SCALE.
  const range = f.ril
    ? fc.oneof(
      { arbitrary: fc.constant({}), weight: 3 },
      { arbitrary: fc.record({ TG: fc.constantFrom(1, 1, 2), NUM: fc.nat({ max: 7 }), SCALE: fc.nat({ max: 3 }), TTL: fc.constantFrom(0, 3, 3, 2) }), weight: 2 },
    )
    : fc.constant({});
  const s1 = f.s1
    ? [
      sid.map((StreamID) => enc({ name: 'CMD_CFGI_CD', StreamID, SubstreamID: 0, Leaf: 1 })),
      sid.map((StreamID) => enc({ name: 'CMD_CFGI_CD_ALL', StreamID })),
      vmid.map((VMID) => enc({ name: 'CMD_TLBI_NH_ALL', VMID })),
      fc.tuple(vmid, asid).map(([VMID, ASID]) => enc({ name: 'CMD_TLBI_NH_ASID', VMID, ASID })),
      fc.tuple(vmid, asid, addr, range).map(([VMID, ASID, Address, r]) => enc({ name: 'CMD_TLBI_NH_VA', VMID, ASID, Address, Leaf: 1, ...r })),
      fc.tuple(vmid, addr, range).map(([VMID, Address, r]) => enc({ name: 'CMD_TLBI_NH_VAA', VMID, Address, ...r })),
    ]
    : [];
  const s2 = f.s2
    ? [
      vmid.map((VMID) => enc({ name: 'CMD_TLBI_S12_VMALL', VMID })),
      fc.tuple(vmid, addr, range).map(([VMID, Address, r]) => enc({ name: 'CMD_TLBI_S2_IPA', VMID, Address, Leaf: 1, ...r })),
    ]
    : [];
  return fc.oneof(
    sid.map((StreamID) => enc({ name: 'CMD_CFGI_STE', StreamID, Leaf: 1 })),
    fc.tuple(sid, fc.nat({ max: 4 })).map(([StreamID, Range]) => enc({ name: 'CMD_CFGI_STE_RANGE', StreamID, Range })),
    fc.constant(enc({ name: 'CMD_CFGI_STE_RANGE', StreamID: 0, Range: CFGI_ALL_RANGE })),
    fc.constant(enc({ name: 'CMD_TLBI_NSNH_ALL' })),
    sid.map((StreamID) => enc({ name: 'CMD_PREFETCH_CONFIG', StreamID })),
    ...s1,
    ...s2,
  );
}

/** Where the builder is: each stream's kind, ASID, VMID and the page it maps next. */
interface StreamState {
  readonly sid: number;
  readonly stage: 1 | 2 | undefined;
  kind: StreamKind;
  vmid: number;
  asid: number;
}

/** Turns world acts into scenario steps, keeping the world consistent (§5.2 VMID and ASID rules). */
export class WorldBuilder {
  private readonly streams: StreamState[];
  private nextPa = PA_BASE + 0x100_0000;

  constructor(readonly f: SmmuFeatures, readonly plan: WorldPlan) {
    this.streams = plan.streams.map((s) => ({ sid: s.sid, stage: s.kind === 's1' ? 1 : s.kind === 's2' ? 2 : undefined, kind: s.kind, vmid: s.vmid, asid: s.asid }));
  }

  /** config.translation of the scenario. */
  config(): Json {
    return {
      strtab: { log2: Math.min(6, WORLD_LAYOUT.maxStrtabLog2) },
      streams: this.plan.streams.map((s, i) => ({
        sid: s.sid,
        config: s.kind,
        vmid: s.vmid,
        asid: s.asid,
        ...(s.record ? {} : { record: false }),
        pages: s.pages.map((p, j) => ({ iova: hex(this.pageOf(s.kind === 's2' ? 2 : 1, p)), pa: hex(PA_BASE + (i * 16 + j) * PAGE) })),
      })),
    };
  }

  private pageOf(stage: 1 | 2, p: number): number {
    const pages = stage === 2 ? S2_PAGES.filter((x) => x < 2 ** worldS2Ia(this.f)) : S1_PAGES;
    return pages[p % pages.length]!;
  }

  /**
   * A stale-translation probe: the steps before the invalidation (a DMA that caches the page, a
   * remap behind the SMMU's back), the invalidation aimed at that page's tags, and the DMA after.
   * Undefined for a stream without tables.
   */
  stale(a: Extract<WorldAct, { w: 'stale' }>): { before: Json[]; cmd: number[]; after: Json[] } | undefined {
    const s = this.streams[a.s % this.streams.length]!;
    if (s.stage === undefined) return undefined;
    const iova = this.pageOf(s.stage, a.p);
    this.nextPa += PAGE;
    const dma = { kind: 'dma', sid: s.sid, iova: hex(iova) };
    const VMID = this.f.s2 ? s.vmid : 0;
    const s1 = [
      { name: 'CMD_TLBI_NH_VA', VMID, ASID: s.asid, Address: iova, Leaf: 1 },
      { name: 'CMD_TLBI_NH_VAA', VMID, Address: iova },
      { name: 'CMD_TLBI_NH_ASID', VMID, ASID: s.asid },
      { name: 'CMD_TLBI_NH_ALL', VMID },
      // A neighbour's page or another ASID: the stale entry must survive these.
      { name: 'CMD_TLBI_NH_VA', VMID, ASID: s.asid, Address: iova + PAGE, Leaf: 1 },
      { name: 'CMD_TLBI_NH_ASID', VMID, ASID: (s.asid + 1) & 0xff },
      ...(this.f.ril ? [{ name: 'CMD_TLBI_NH_VA', VMID, ASID: s.asid, Address: iova - PAGE, Leaf: 1, TG: 1, NUM: 1, SCALE: 0, TTL: 3 }] : []),
    ];
    const s2 = [
      { name: 'CMD_TLBI_S2_IPA', VMID: s.vmid, Address: iova, Leaf: 1 },
      { name: 'CMD_TLBI_S2_IPA', VMID: s.vmid, Address: iova + PAGE, Leaf: 1 },
      ...(this.f.ril ? [{ name: 'CMD_TLBI_S2_IPA', VMID: s.vmid, Address: iova - PAGE, Leaf: 1, TG: 1, NUM: 1, SCALE: 0, TTL: 3 }] : []),
    ];
    const common = [
      ...(this.f.s2 ? [{ name: 'CMD_TLBI_S12_VMALL', VMID: s.vmid }, { name: 'CMD_TLBI_S12_VMALL', VMID: (s.vmid % 7) + 1 }] : []),
      { name: 'CMD_TLBI_NSNH_ALL' },
      { name: 'CMD_CFGI_STE', StreamID: s.sid, Leaf: 1 },
    ];
    const menu = [...(s.stage === 1 ? s1 : s2), ...common];
    return {
      before: [dma, { kind: 'map', sid: s.sid, iova: hex(iova), pa: hex(this.nextPa) }],
      cmd: enc(menu[a.pick % menu.length]!),
      after: [dma],
    };
  }

  /** The steps of one act, or none when it does not apply to the world as it is. */
  steps(a: WorldAct): Json[] {
    const s = this.streams[a.s % this.streams.length]!;
    switch (a.w) {
      case 'stale':
        return []; // buildScenario puts its command through a queue (WorldBuilder.stale)
      case 'dma': {
        const iova = s.stage === undefined ? S1_PAGES[a.p % S1_PAGES.length]! : this.pageOf(s.stage, a.p);
        return [{ kind: 'dma', sid: s.sid, iova: hex(iova + a.offset), ...(a.write ? { write: true } : {}) }];
      }
      case 'remap':
        if (s.stage === undefined) return [];
        this.nextPa += PAGE;
        return [{ kind: 'map', sid: s.sid, iova: hex(this.pageOf(s.stage, a.p)), pa: hex(this.nextPa) }];
      case 'unmap':
        if (s.stage === undefined) return [];
        return [{ kind: 'unmap', sid: s.sid, iova: hex(this.pageOf(s.stage, a.p)) }];
      case 'cd':
        if (s.kind !== 's1' || this.collides(s, s.vmid, a.asid)) return [];
        s.asid = a.asid;
        return [{ kind: 'cd', sid: s.sid, asid: a.asid }];
      case 'ste': {
        if (a.to === 'vmid') {
          if (this.collides(s, a.vmid, s.asid)) return [];
          s.vmid = a.vmid;
          return [{ kind: 'ste', sid: s.sid, vmid: a.vmid }];
        }
        const to: StreamKind = a.to === 'back' ? (s.stage === 1 ? 's1' : s.stage === 2 ? 's2' : 'bypass') : a.to;
        if (to === s.kind) return [];
        s.kind = to;
        return [{ kind: 'ste', sid: s.sid, config: to }];
      }
    }
  }

  /** Would stream `s` with this VMID and ASID share tags with another translating stream? */
  private collides(s: StreamState, vmid: number, asid: number): boolean {
    return this.streams.some((o) => o !== s && o.stage !== undefined && o.stage === s.stage && o.vmid === vmid && (s.stage === 2 || o.asid === asid));
  }
}
