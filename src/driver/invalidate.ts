/**
 * The invalidation commands a driver issues after changing translation tables or configuration
 * structures, in the shapes Linux's arm-smmu-v3 driver builds them (read for behaviour only).
 *
 * Pure functions: each returns command words (four u32 per command, built from the command table
 * in src/spec) without a CMD_SYNC; a caller puts each returned batch on the queue with one
 * CMD_SYNC after it (GuestDriver.issue(batch, { sync: true })).
 *
 * - TLB by address (§4.4.2.4 CMD_TLBI_NH_VA, §4.4.2.8 CMD_TLBI_EL2_VA, §4.4.3.1 CMD_TLBI_S2_IPA),
 *   with range invalidation (§4.4.1.1) when SMMU_IDR3.RIL == 1: Range = (NUM + 1) * 2^SCALE * TG.
 * - TLB by context: CMD_TLBI_NH_ASID (§4.4.2.2), CMD_TLBI_EL2_ASID (§4.4.2.10),
 *   CMD_TLBI_S12_VMALL (§4.4.3.2); CMD_TLBI_NH_ALL (§4.4.2.1) after stage 2 changes under nesting.
 * - Configuration: CMD_CFGI_STE (§4.3.1), CMD_CFGI_CD (§4.3.3).
 * - ATS: CMD_ATC_INV (§4.5.1) with the smallest aligned power-of-two span covering the range.
 */

import { encodeCommandWords } from '../spec/command-codec.ts';
import { ATC_INV_SIZE_ALL } from '../spec/commands.ts';

/** Whose TLB entries a command names. */
export type TlbiScope =
  /** Stage 1 of an NS-EL1 stream (alone, or nested under stage 2 with that VMID): TLBI_NH_*. */
  | { readonly regime: 'nh'; readonly asid: number; readonly vmid: number }
  /** Stage 1 of an EL2 stream with SMMU_CR2.E2H == 1: TLBI_EL2_*. */
  | { readonly regime: 'el2'; readonly asid: number }
  /** Stage 2: TLBI_S2_IPA, TLBI_S12_VMALL. */
  | { readonly regime: 's2'; readonly vmid: number };

export interface RangeOptions {
  /** SMMU_IDR3.RIL: range invalidation and the TTL hint (§4.4.1.1). */
  readonly ril: boolean;
  /**
   * The domain's smallest leaf size (4KB, 16KB or 64KB): the TG of range commands and the unit of
   * NUM/SCALE (Linux: __ffs of the domain's pgsize_bitmap).
   */
  readonly pageSize: number;
  /** SMMU_IDR5.DS: SCALE is 6 bits wide, else 5 (§4.4.1.1). */
  readonly ds?: boolean;
  /** Replace a long run of single-address commands by one context-wide command (default true). */
  readonly fallback?: boolean;
}

/** TLBI TG encodings (§4.4.1.1): 1 = 4KB, 2 = 16KB, 3 = 64KB; 0 = no range, no TTL. */
const TG_BY_SHIFT: Readonly<Record<number, number>> = Object.freeze({ 12: 1, 14: 2, 16: 3 });
/** NUM is 5 bits: a command covers at most 32 * 2^SCALE granules (§4.4.1.1). */
const NUM_MAX = 31;
const NUM_COUNT = NUM_MAX + 1;
/** Largest SCALE: 5 bits (31) without IDR5.DS; 6 bits with it, values above 39 treated as 39. */
const SCALE_MAX = 31;
const SCALE_MAX_DS = 39;
/** The TTL formula's descriptor-size term: log2(8 bytes). */
const DESC_LOG2 = 3;
/** Levels are 0..3; TTL names the level of the leaf (§4.4.1.1). */
const LEVELS = 4;
/** ATS invalidations are in 4KB units (§4.5.1: span = 4KB * 2^Size). */
const ATC_GRAIN_SHIFT = 12;
const ATC_GRAIN = 2 ** ATC_GRAIN_SHIFT;

function log2(n: number): number {
  return Math.log2(n);
}

/**
 * Linux's CMDQ_MAX_TLBI_OPS, 1 << (PAGE_SHIFT - 3): the number of single-granule commands above
 * which one context-wide invalidation is issued instead (512 with 4KB pages: one table's worth).
 * Mainline Linux applies it on its SVA path only, and only without RIL; the model applies it to
 * every domain invalidation without RIL, with the domain's smallest page as PAGE_SIZE.
 */
export function maxTlbiOps(pageSize: number): number {
  return pageSize >> DESC_LOG2;
}

/** The single-address opcode of a scope. */
function vaOpcode(scope: TlbiScope): string {
  return scope.regime === 'nh' ? 'CMD_TLBI_NH_VA' : scope.regime === 'el2' ? 'CMD_TLBI_EL2_VA' : 'CMD_TLBI_S2_IPA';
}

/** Identifier fields of a scope, by the commands' field names. */
function ids(scope: TlbiScope): Record<string, number> {
  if (scope.regime === 'nh') return { ASID: scope.asid, VMID: scope.vmid };
  if (scope.regime === 'el2') return { ASID: scope.asid };
  return { VMID: scope.vmid };
}

/**
 * Invalidate everything a context may have cached: CMD_TLBI_NH_ASID (ASID, VMID),
 * CMD_TLBI_EL2_ASID (ASID) or CMD_TLBI_S12_VMALL (VMID) (Linux's arm_smmu_tlb_inv_context).
 */
export function tlbiContext(scope: TlbiScope): Uint32Array[] {
  if (scope.regime === 'nh') return [encodeCommandWords({ name: 'CMD_TLBI_NH_ASID', ASID: scope.asid, VMID: scope.vmid })];
  if (scope.regime === 'el2') return [encodeCommandWords({ name: 'CMD_TLBI_EL2_ASID', ASID: scope.asid })];
  return [encodeCommandWords({ name: 'CMD_TLBI_S12_VMALL', VMID: scope.vmid })];
}

/**
 * TTL of a leaf of `granule` bytes in a table of `pageSize` pages: the level holding it,
 * 4 - (log2(granule) - 3) / (log2(pageSize) - 3) (4KB pages: 4KB → 3, 2MB → 2, 1GB → 1).
 */
export function ttlFor(granule: number, pageSize: number): number {
  return LEVELS - (log2(granule) - DESC_LOG2) / (log2(pageSize) - DESC_LOG2);
}

export interface TlbiRangeResult {
  readonly cmds: Uint32Array[];
  /** The range was replaced by a context-wide invalidation. */
  readonly fallback: boolean;
}

/**
 * The commands that invalidate [iova, iova + size) (Linux's __arm_smmu_tlb_inv_range).
 *
 * With RIL: TG = the domain's page size; Leaf gets a TTL for `granule` (the leaf size); a non-leaf
 * range (a table was removed) has TTL 0 and, when its page count is 1 modulo 32, covers one page
 * more so that no command has the Reserved NUM = SCALE = TTL = 0 (§4.4.1.1). Then per command:
 * SCALE = the lowest set bit of the remaining page count, NUM + 1 = the next five bits, and the
 * command covers (NUM + 1) << SCALE pages (35 pages: (SCALE 0, NUM 2), then (SCALE 5, NUM 0)).
 *
 * Without RIL: one command per `granule` (TG = NUM = SCALE = TTL = 0), unless that is
 * maxTlbiOps(pageSize) commands or more: then one context-wide command (tlbiContext).
 *
 * size 0 means "everything": the context-wide command.
 */
export function tlbiRange(scope: TlbiScope, iova: number, size: number, granule: number, leaf: boolean, o: RangeOptions): TlbiRangeResult {
  if (size === 0) return { cmds: tlbiContext(scope), fallback: true };
  const tgShift = log2(o.pageSize);
  const tg = TG_BY_SHIFT[tgShift];
  if (tg === undefined) throw new RangeError(`page size ${o.pageSize} is not 4KB, 16KB or 64KB`);
  if (iova % o.pageSize !== 0 || size % o.pageSize !== 0) {
    throw new RangeError(`TLBI range [0x${iova.toString(16)}, +0x${size.toString(16)}) is not page-aligned (${o.pageSize})`);
  }
  const op = vaOpcode(scope);
  const base = ids(scope);
  const cmds: Uint32Array[] = [];
  const end = iova + size;
  if (!o.ril) {
    if ((o.fallback ?? true) && size >= maxTlbiOps(o.pageSize) * o.pageSize) return { cmds: tlbiContext(scope), fallback: true };
    for (let a = iova; a < end; a += granule) cmds.push(encodeCommandWords({ name: op, ...base, Address: a, Leaf: leaf ? 1 : 0 }));
    return { cmds, fallback: false };
  }
  let pages = size / o.pageSize;
  const ttl = leaf ? ttlFor(granule, o.pageSize) : 0;
  if (!leaf && pages % NUM_COUNT === 1) pages++;
  const scaleMax = o.ds === true ? SCALE_MAX_DS : SCALE_MAX;
  let a = iova;
  while (a < end && pages > 0) {
    let scale = 0;
    while (Math.floor(pages / 2 ** scale) % 2 === 0) scale++;
    if (scale > scaleMax) return { cmds: tlbiContext(scope), fallback: true };
    const num = Math.floor(pages / 2 ** scale) % NUM_COUNT;
    cmds.push(encodeCommandWords({ name: op, ...base, Address: a, Leaf: leaf ? 1 : 0, TG: tg, TTL: ttl, NUM: num - 1, SCALE: scale }));
    const covered = num * 2 ** scale;
    pages -= covered;
    a += covered * o.pageSize;
  }
  return { cmds, fallback: false };
}

/** CMD_CFGI_STE (§4.3.1). Leaf = 1: only the STE; Leaf = 0: also the L1STD that locates it. */
export function cfgiSte(sid: number, leaf = true): Uint32Array {
  return encodeCommandWords({ name: 'CMD_CFGI_STE', StreamID: sid, Leaf: leaf ? 1 : 0 });
}

/** CMD_CFGI_CD (§4.3.3). Leaf = 0 also invalidates the L1CD that locates the CD. */
export function cfgiCd(sid: number, ssid: number, leaf = true): Uint32Array {
  return encodeCommandWords({ name: 'CMD_CFGI_CD', StreamID: sid, SubstreamID: ssid, Leaf: leaf ? 1 : 0 });
}

/** CMD_TLBI_NH_ALL (§4.4.2.1): every stage 1 entry of a VMID, including combined S1+S2 ones. */
export function tlbiNhAll(vmid: number): Uint32Array {
  return encodeCommandWords({ name: 'CMD_TLBI_NH_ALL', VMID: vmid });
}

/**
 * The smallest naturally aligned power-of-two span of 4KB pages covering [iova, iova + size)
 * (Linux's arm_smmu_atc_inv_to_cmd): Size = the position of the highest bit in which the first
 * and last page numbers differ; Address = the first page rounded down to the span. size 0 means
 * everything: Size = 52 (§4.5.1, a 2^64-byte span).
 */
export function atcSpan(iova: number, size: number): { address: number; size: number } {
  if (size === 0) return { address: 0, size: ATC_INV_SIZE_ALL };
  const first = Math.floor(iova / ATC_GRAIN);
  const last = Math.floor((iova + size - 1) / ATC_GRAIN);
  // Highest differing bit of first ^ last, without 32-bit truncation (page numbers reach 2^52).
  let log2Span = 0;
  for (let a = first, b = last; a !== b; a = Math.floor(a / 2), b = Math.floor(b / 2)) log2Span++;
  const span = 2 ** log2Span;
  return { address: Math.floor(first / span) * span * ATC_GRAIN, size: log2Span };
}

/**
 * CMD_ATC_INV (§4.5.1) for one StreamID. Without `ssid` SSV = 0: entries of every PASID in the
 * span go (Linux's IOMMU_NO_PASID: the only way to reach entries made without a PASID).
 */
export function atcInv(sid: number, ssid: number | undefined, iova: number, size: number): Uint32Array {
  const span = atcSpan(iova, size);
  return encodeCommandWords({
    name: 'CMD_ATC_INV',
    StreamID: sid,
    SSV: ssid === undefined ? 0 : 1,
    SubstreamID: ssid ?? 0,
    Address: span.address,
    Size: span.size,
  });
}
