/**
 * The oracle's reference caches: what the SMMU may have cached of a scenario's translation world
 * (src/fuzz/world.ts), what each consumed CMD_CFGI_* and CMD_TLBI_* must remove, and so what a
 * DMA transaction must come back with. Written from IHI0070 G.b §4.3 and §4.4 and the model
 * choices docs/fidelity.md lists, independent of src/device.
 *
 * Every cache slot (an STE or CD by StreamID, a TLB entry by its tags and page) holds the set of
 * contents the SMMU may have there: nothing, or a snapshot of the structure or translation as it
 * was when fetched. A lookup must come from one of them; a miss fetches what memory holds now
 * and caches it. The set has one member while the outcome is determined, and grows where the
 * architecture permits several (a TLBI whose granule or level hint does not match the entry, an
 * out-of-range parameter, a prefetch, an SMMUEN transition); a DMA's result then narrows it to
 * what the device was seen to do.
 *
 * What the model promises beyond the architecture (docs/fidelity.md "Translation caches"), and
 * the oracle therefore holds it to: it caches every STE, CD and translation it fetches and keeps
 * them until a command removes them (no capacity eviction in a world this small), invalidations
 * remove exactly their scope, and faults are never cached. A DMA answer says whether the
 * translation came from the TLB, so a stale hit and an over-invalidation are both visible.
 */

import { getBits } from '../spec/bits.ts';
import { commandField, commandSpec, OP, CFGI_ALL_RANGE, type CommandSpec } from '../spec/commands.ts';
import { EVENT_CLASS, EVT, encodeEvent, decodeEvent } from '../spec/events.ts';
import { OAS_BITS, type SmmuFeatures } from '../spec/features.ts';
import type { StreamKind, StreamTruth, World } from './world.ts';

const PAGE_BITS = 12;
const PAGE = 1 << PAGE_BITS;
/** VA[55:12] and IPA[55:12]: the page numbers TLB entries are tagged with (44 bits). */
const PAGE_NUMBER_BITS = 44;
/** §4.4.1.1: TG 0b01 names the 4KB granule; the world's entries were all inserted with it. */
const TG_4K = 0b01;
/** §4.4.1.1: TTL 0b11 is level 3, where every world entry comes from. */
const TTL_LEVEL3 = 0b11;
/** §4.4.1.1: SCALE values above 39 are treated as 39, "but software must not rely on" it. */
const SCALE_MAX = 39;

// ---------------------------------------------------------------------------------------------
// Cache contents
// ---------------------------------------------------------------------------------------------

/** What a cached STE decides for the world: its kind, VMID and whether stage 2 faults are recorded. */
interface SteSnap {
  readonly kind: StreamKind;
  readonly vmid: number;
  readonly record: boolean;
}

/** What a cached CD decides: ASID and whether stage 1 faults are recorded. */
interface CdSnap {
  readonly asid: number;
  readonly record: boolean;
}

/** A cached translation: the output page. */
interface TlbSnap {
  readonly pa: number;
}

/** A TLB entry's tags (§3.17): stage 1 entries by VMID and ASID, stage 2 by VMID, both by page. */
interface TlbTag {
  readonly stage: 1 | 2;
  readonly vmid: number;
  readonly asid: number;
  readonly page: number;
}

/** The possible contents of one slot; null is "not cached". */
type Poss<T> = (T | null)[];

function key(x: unknown): string {
  return x === null ? 'null' : JSON.stringify(x);
}

function union<T>(a: Poss<T>, b: Poss<T>): Poss<T> {
  const out = [...a];
  for (const x of b) if (!out.some((y) => key(y) === key(x))) out.push(x);
  return out;
}

/** A command field's value by its spec name (its low 32 bits; 0 when the command has no such field). */
function fieldNum(words: readonly number[], spec: CommandSpec, name: string): number {
  const fl = commandField(spec, name);
  return fl === undefined ? 0 : getBits(words, fl.lsb, Math.min(32, fl.width));
}

function tlbKey(t: TlbTag): string {
  return `${t.stage}|${t.vmid}|${t.asid}|${t.page}`;
}

// ---------------------------------------------------------------------------------------------
// DMA
// ---------------------------------------------------------------------------------------------

export interface DmaQuery {
  readonly sid: number;
  readonly iova: number;
  readonly write: boolean;
}

/** A DMA answer, as the device gave it or as the oracle predicts it. */
export interface DmaOutcome {
  readonly status: 'ok' | 'abort' | 'raz-wi';
  readonly pa?: number;
  readonly tlbHit: boolean;
  readonly bypass: boolean;
  /** The event number recorded, if any. */
  readonly event?: number;
}

/** The fault record a DMA must produce: the fields the oracle checks (§7.3.13). */
export interface ExpectedFault {
  readonly name: 'F_TRANSLATION' | 'F_ADDR_SIZE';
  readonly fields: Readonly<Record<string, number>>;
}

interface Branch {
  readonly outcome: DmaOutcome;
  readonly fault?: ExpectedFault;
  readonly ste?: SteSnap;
  readonly cd?: CdSnap;
  /** The TLB slot the lookup used and what it holds afterwards (null: nothing, after a fault). */
  readonly tlb?: { readonly tag: TlbTag; readonly snap: TlbSnap | null };
  readonly why: string;
}

export interface DmaVerdict {
  readonly ok: boolean;
  /** What was expected, when not ok. */
  readonly message?: string;
  /** The fault record the device must have recorded (when ok and the outcome carries an event). */
  readonly fault?: ExpectedFault;
  /** False when the world was disturbed (its tables overwritten) and nothing could be judged. */
  readonly judged: boolean;
}

function outcomeText(o: DmaOutcome): string {
  if (o.status !== 'ok') return `${o.status}${o.event !== undefined ? ` (event 0x${o.event.toString(16)})` : ' (no event)'}`;
  return `ok pa=0x${(o.pa ?? 0).toString(16)}${o.tlbHit ? ' (TLB hit)' : ''}${o.bypass ? ' (bypass)' : ''}`;
}

function sameOutcome(a: DmaOutcome, b: DmaOutcome): boolean {
  return a.status === b.status && (a.status !== 'ok' || a.pa === b.pa) && a.tlbHit === b.tlbHit && a.bypass === b.bypass && a.event === b.event;
}

// ---------------------------------------------------------------------------------------------
// The reference caches
// ---------------------------------------------------------------------------------------------

export class ReferenceCaches {
  private readonly ste = new Map<number, Poss<SteSnap>>();
  private readonly cd = new Map<number, Poss<CdSnap>>();
  private readonly tlb = new Map<string, { tag: TlbTag; poss: Poss<TlbSnap> }>();
  /** Why the world cannot be judged any more (its memory was overwritten), once it cannot. */
  disturbed: string | undefined;
  /** DMA transactions judged and not judged. */
  judged = 0;
  unjudged = 0;

  /** Output (and, AArch64 only, input to stage 2) address size in bits (§3.4, fidelity: IAS = OAS). */
  private readonly oas: number;

  constructor(readonly world: World, readonly f: SmmuFeatures) {
    this.oas = OAS_BITS[f.oas] ?? 48;
  }

  /** A fault's record: the fields the oracle checks (§7.3.13, §7.3.14; IPA only for stage 2). */
  private fault(name: ExpectedFault['name'], q: DmaQuery, s2: boolean): ExpectedFault {
    const offset = q.iova % PAGE;
    return {
      name,
      fields: { StreamID: q.sid, SSV: 0, S2: s2 ? 1 : 0, CLASS: EVENT_CLASS.IN, RnW: q.write ? 0 : 1, InD: 0, PnU: 0, Stall: 0, InputAddr: q.iova, ...(s2 ? { IPA: q.iova - offset } : {}) },
    };
  }

  private faultBranch(name: ExpectedFault['name'], q: DmaQuery, s2: boolean, record: boolean, ste: SteSnap, cd: CdSnap | undefined, why: string, tag?: TlbTag): Branch {
    return {
      ...(tag !== undefined ? { tlb: { tag, snap: null } } : {}),
      outcome: { status: 'abort', tlbHit: false, bypass: false, ...(record ? { event: EVT[name] } : {}) },
      ...(record ? { fault: this.fault(name, q, s2) } : {}),
      ste,
      ...(cd !== undefined ? { cd } : {}),
      why,
    };
  }

  /** The VMID a stream's translations are tagged with (§5.2 S2VMID: none without stage 2). */
  private vmidTag(s: SteSnap): number {
    return this.f.s2 ? s.vmid : 0;
  }

  private steNow(t: StreamTruth): SteSnap {
    return { kind: t.kind, vmid: t.vmid, record: t.record };
  }

  private cdNow(t: StreamTruth): CdSnap {
    return { asid: t.asid, record: t.record };
  }

  /** Every cache emptied (the model's SIM_INV_ALL, src/spec/impdef.ts). */
  invalidateAll(): void {
    this.ste.clear();
    this.cd.clear();
    this.tlb.clear();
  }

  /** Every slot may also be empty now: an SMMUEN transition, an out-of-range parameter. */
  forgetAll(what: 'config' | 'tlb' | 'all'): void {
    if (what !== 'tlb') {
      for (const [k, p] of this.ste) this.ste.set(k, union(p, [null]));
      for (const [k, p] of this.cd) this.cd.set(k, union(p, [null]));
    }
    if (what !== 'config') for (const e of this.tlb.values()) e.poss = union(e.poss, [null]);
  }

  // -------------------------------------------------------------------------------------------
  // Commands (§4.2-§4.4)
  // -------------------------------------------------------------------------------------------

  /**
   * A command the device consumed. `outOfRange` lists the legality rules of its CONSTRAINED
   * UNPREDICTABLE parameters (§4.1.7): the command then may have had its effect or none, on what
   * it names or on something else of its kind.
   */
  command(words: readonly number[], outOfRange: readonly string[]): void {
    const op = words[0]! & 0xff;
    const spec = commandSpec(op);
    const num = (name: string): number => fieldNum(words, spec, name);
    const sidsOf = (pred: (sid: number) => boolean) => [...this.world.truth.keys()].filter(pred);
    const isCfgi = op === OP.CMD_CFGI_STE || op === OP.CMD_CFGI_STE_RANGE || op === OP.CMD_CFGI_CD || op === OP.CMD_CFGI_CD_ALL;
    if (outOfRange.length > 0) {
      if (isCfgi) this.forgetAll('config');
      else if (spec.name.startsWith('CMD_TLBI_')) this.forgetAll('tlb');
      else if (op === OP.CMD_PREFETCH_CONFIG || op === OP.CMD_PREFETCH_ADDR) this.prefetch(sidsOf(() => true), op === OP.CMD_PREFETCH_ADDR);
      return;
    }
    switch (op) {
      case OP.CMD_CFGI_STE: {
        // §4.3.1: the STE and every CD cached through it.
        const sid = num('StreamID');
        this.dropConfig([sid]);
        return;
      }
      case OP.CMD_CFGI_STE_RANGE: {
        // §4.3.2: an aligned block of 2^(Range+1) StreamIDs; Range 31 is CMD_CFGI_ALL (§4.3.6).
        const range = num('Range');
        if (range >= CFGI_ALL_RANGE) {
          this.dropConfig([...this.ste.keys(), ...this.cd.keys()]);
          return;
        }
        const span = 2 ** (range + 1);
        const first = Math.floor(num('StreamID') / span) * span;
        this.dropConfig([...new Set([...this.ste.keys(), ...this.cd.keys()])].filter((s) => s >= first && s < first + span));
        return;
      }
      case OP.CMD_CFGI_CD: {
        // §4.3.3: the CD fetched from index SubstreamID; a world STE has one CD, at index 0.
        if (num('SubstreamID') === 0) this.cd.delete(num('StreamID'));
        return;
      }
      case OP.CMD_CFGI_CD_ALL:
        this.cd.delete(num('StreamID')); // §4.3.4
        return;
      case OP.CMD_PREFETCH_CONFIG:
      case OP.CMD_PREFETCH_ADDR:
        // §4.2: a prefetch may or may not fill the caches from memory as it is now.
        this.prefetch([num('StreamID')], op === OP.CMD_PREFETCH_ADDR);
        return;
    }
    this.tlbi(op, spec.name, words);
  }

  private dropConfig(sids: readonly number[]): void {
    for (const s of sids) {
      this.ste.delete(s);
      this.cd.delete(s);
    }
  }

  /**
   * A prefetch may load the structures (and, for PREFETCH_ADDR, translations) as memory holds
   * them now. For PREFETCH_ADDR every mapped page of the stream is taken as possibly prefetched,
   * a superset of the command's Address/Size/Stride span.
   */
  private prefetch(sids: readonly number[], addr: boolean): void {
    for (const sid of sids) {
      const t = this.world.truth.get(sid);
      if (t === undefined) continue;
      const stes = this.ste.get(sid) ?? [null];
      if (stes.includes(null)) this.ste.set(sid, union(stes, [this.steNow(t)]));
      const steOptions = (this.ste.get(sid) ?? [null]).map((s) => s ?? this.steNow(t));
      if (steOptions.some((s) => s.kind === 's1')) {
        const cds = this.cd.get(sid) ?? [null];
        if (cds.includes(null)) this.cd.set(sid, union(cds, [this.cdNow(t)]));
      }
      if (!addr) continue;
      const cdOptions = (this.cd.get(sid) ?? [null]).map((c) => c ?? this.cdNow(t));
      for (const s of steOptions) {
        if (s.kind !== 's1' && s.kind !== 's2') continue;
        for (const [page, pa] of t.pages) {
          const tags = s.kind === 's1' ? cdOptions.map((c) => ({ stage: 1 as const, vmid: this.vmidTag(s), asid: c.asid, page })) : [{ stage: 2 as const, vmid: s.vmid, asid: 0, page }];
          for (const tag of tags) this.addTlb(tag, [{ pa }]);
        }
      }
    }
  }

  private addTlb(tag: TlbTag, poss: Poss<TlbSnap>): void {
    const k = tlbKey(tag);
    const e = this.tlb.get(k);
    if (e === undefined) this.tlb.set(k, { tag, poss: union([null], poss) });
    else e.poss = union(e.poss, poss);
  }

  /** TLB invalidation (§4.4): the entries in scope go; those the spec only may remove may go. */
  private tlbi(op: number, name: string, words: readonly number[]): void {
    const spec = commandSpec(op);
    const num = (n: string): number => fieldNum(words, spec, n);
    const f = this.f;
    // §4.4.2: without stage 2 the NH_* VMID is RES0; a non-zero value may invalidate for an
    // UNKNOWN VMID or not at all. Entries are then untagged (VMID 0).
    const vmidParam = num('VMID');
    const vmidUnsure = !f.s2 && vmidParam !== 0;
    const vmidMatch = (e: TlbTag) => (!f.s2 ? true : e.vmid === vmidParam);
    let scope: ((e: TlbTag) => 'yes' | 'maybe' | 'no') | undefined;
    const both = (m: 'yes' | 'maybe' | 'no', unsure: boolean): 'yes' | 'maybe' | 'no' => (m === 'yes' && unsure ? 'maybe' : m);
    switch (name) {
      case 'CMD_TLBI_NH_ALL':
        scope = (e) => (e.stage === 1 && vmidMatch(e) ? both('yes', vmidUnsure) : 'no');
        break;
      case 'CMD_TLBI_NH_ASID':
        scope = (e) => (e.stage === 1 && vmidMatch(e) && e.asid === num('ASID') ? both('yes', vmidUnsure) : 'no');
        break;
      case 'CMD_TLBI_NH_VA':
      case 'CMD_TLBI_NH_VAA': {
        const r = this.range(words, 1);
        const asid = name === 'CMD_TLBI_NH_VA' ? num('ASID') : undefined;
        scope = (e) => (e.stage === 1 && vmidMatch(e) && (asid === undefined || e.asid === asid) ? both(r(e.page), vmidUnsure) : 'no');
        break;
      }
      case 'CMD_TLBI_S12_VMALL':
        scope = (e) => (e.vmid === vmidParam ? 'yes' : 'no');
        break;
      case 'CMD_TLBI_S2_IPA': {
        const r = this.range(words, 2);
        scope = (e) => (e.stage === 2 && e.vmid === vmidParam ? r(e.page) : 'no');
        break;
      }
      case 'CMD_TLBI_NSNH_ALL':
        scope = () => 'yes';
        break;
      default:
        // EL2, EL3, Secure and the rest: the world's streams are NS-EL1, out of their scope.
        return;
    }
    for (const [k, e] of this.tlb) {
      const m = scope(e.tag);
      if (m === 'yes') this.tlb.delete(k);
      else if (m === 'maybe') e.poss = union(e.poss, [null]);
    }
  }

  /**
   * Which pages an address-based TLBI covers (§4.4.1.1): the page of Address when TG == 0, else
   * the range Address .. Address + (NUM+1) × 2^SCALE granules. A granule other than the world's
   * 4KB, or a level hint other than 3, leaves it to the implementation ('maybe').
   */
  private range(words: readonly number[], stage: 1 | 2): (page: number) => 'yes' | 'maybe' | 'no' {
    const spec = commandSpec(words[0]! & 0xff);
    const num = (n: string) => fieldNum(words, spec, n);
    const a = commandField(spec, 'Address')!;
    // Address[55:12], and for a VA the top byte [63:56].
    const page = getBits(words, a.lsb, 32) + getBits(words, a.lsb + 32, PAGE_NUMBER_BITS - 32) * 0x1_0000_0000;
    const top = getBits(words, a.lsb + PAGE_NUMBER_BITS, 8);
    // §4.4.2: "TBI is permitted but not required to apply": a top byte that is not the sign
    // extension of bit 55 may be ignored or make the address out of range.
    const sign = Math.floor(page / 2 ** (PAGE_NUMBER_BITS - 1)) & 1;
    const topUnsure = stage === 1 && top !== (sign === 1 ? 0xff : 0);
    const tg = this.f.ril ? num('TG') : 0;
    let start = page;
    let end = page + 1;
    let hint: 'yes' | 'maybe' = 'yes';
    if (tg !== 0) {
      const scale = num('SCALE');
      const granuleBits = tg === TG_4K ? PAGE_BITS : tg === 0b10 ? 14 : 16;
      const pages = (num('NUM') + 1) * 2 ** (Math.min(scale, SCALE_MAX) + granuleBits - PAGE_BITS);
      start = page;
      end = page + pages;
      const ttl = num('TTL');
      // "Only required to invalidate entries inserted with a matching granule / from the level in
      // TTL", and with TTL128 == 1 only entries of 128-bit descriptors (the world's are 64-bit).
      if (tg !== TG_4K || (ttl !== 0 && (ttl !== TTL_LEVEL3 || num('TTL128') !== 0)) || scale > SCALE_MAX) hint = 'maybe';
    }
    return (p) => (p >= start && p < end ? (topUnsure ? 'maybe' : hint) : 'no');
  }

  // -------------------------------------------------------------------------------------------
  // DMA
  // -------------------------------------------------------------------------------------------

  /** Every outcome the SMMU may give a transaction now, with the cache contents each leaves. */
  private branches(q: DmaQuery): Branch[] {
    const t = this.world.truth.get(q.sid);
    if (t === undefined) throw new Error(`StreamID ${q.sid} is not a stream of the world`);
    const out: Branch[] = [];
    for (const cachedSte of this.ste.get(q.sid) ?? [null]) {
      const ste = cachedSte ?? this.steNow(t);
      const steWhy = cachedSte === null ? 'the STE fetched from memory' : 'the cached STE';
      switch (ste.kind) {
        case 'abort':
          // §5.2 Config 0b000: the transaction is aborted and no event is recorded.
          out.push({ outcome: { status: 'abort', tlbHit: false, bypass: false }, ste, why: `${steWhy} aborts` });
          continue;
        case 'bypass':
          // §3.4: an input address beyond the OAS is a stage 1 Address Size fault, always recorded.
          if (q.iova >= 2 ** this.oas) out.push(this.faultBranch('F_ADDR_SIZE', q, false, true, ste, undefined, `${steWhy} bypasses, and the address is beyond the ${this.oas}-bit OAS`));
          else out.push({ outcome: { status: 'ok', pa: q.iova, tlbHit: false, bypass: true }, ste, why: `${steWhy} bypasses` });
          continue;
        case 's2':
          // §3.4: with stage 1 bypassed the input is checked against the IAS (stage 1 Address
          // Size fault), then against the stage 2 input range (stage 2 Translation fault).
          if (q.iova >= 2 ** this.oas) out.push(this.faultBranch('F_ADDR_SIZE', q, false, true, ste, undefined, `${steWhy}: the address is beyond the ${this.oas}-bit IAS`));
          else if (q.iova >= 2 ** t.ia) out.push(this.faultBranch('F_TRANSLATION', q, true, ste.record, ste, undefined, `${steWhy}: the address is beyond the ${t.ia}-bit stage 2 input range`));
          else out.push(...this.lookup(q, t, ste, undefined, { stage: 2, vmid: ste.vmid, asid: 0, page: Math.floor(q.iova / PAGE) }, steWhy));
          continue;
        case 's1':
          for (const cachedCd of this.cd.get(q.sid) ?? [null]) {
            const cd = cachedCd ?? this.cdNow(t);
            const why = `${steWhy}, ${cachedCd === null ? 'the CD fetched from memory' : 'the cached CD'} (ASID ${cd.asid})`;
            if (q.iova >= 2 ** t.ia) {
              // §3.4.1: outside the TTB0 range (T0SZ) and TTB1 walks disabled: a Translation fault.
              out.push(this.faultBranch('F_TRANSLATION', q, false, cd.record, ste, cd, `${why}: the address is outside the ${t.ia}-bit TTB0 range`));
              continue;
            }
            out.push(...this.lookup(q, t, ste, cd, { stage: 1, vmid: this.vmidTag(ste), asid: cd.asid, page: Math.floor(q.iova / PAGE) }, why));
          }
      }
    }
    return out;
  }

  private lookup(q: DmaQuery, t: StreamTruth, ste: SteSnap, cd: CdSnap | undefined, tag: TlbTag, why: string): Branch[] {
    const out: Branch[] = [];
    const offset = q.iova % PAGE;
    const e = this.tlb.get(tlbKey(tag));
    for (const snap of e?.poss ?? [null]) {
      if (snap !== null) {
        out.push({ outcome: { status: 'ok', pa: snap.pa + offset, tlbHit: true, bypass: false }, ste, ...(cd !== undefined ? { cd } : {}), tlb: { tag, snap }, why: `${why}, a TLB hit` });
        continue;
      }
      // A walk of the tables as memory holds them now. A stream keeps its tables (of one stage)
      // when its STE changes kind, so a stale STE of that stage still reaches them.
      const pa = t.pages.get(tag.page);
      if (pa !== undefined) {
        out.push({ outcome: { status: 'ok', pa: pa + offset, tlbHit: false, bypass: false }, ste, ...(cd !== undefined ? { cd } : {}), tlb: { tag, snap: { pa } }, why: `${why}, a walk` });
        continue;
      }
      // §7.3.13: no valid descriptor; the fault is recorded when CD.R (stage 1) or STE.S2R (stage 2).
      const s2 = tag.stage === 2;
      // A fault also shows the slot held nothing (faults are not cached).
      out.push(this.faultBranch('F_TRANSLATION', q, s2, s2 ? ste.record : cd!.record, ste, cd, `${why}, a walk that finds no valid descriptor`, tag));
    }
    return out;
  }

  /**
   * Judge the device's answer to a transaction and move the caches to what it shows. `smmuEn`
   * false: the SMMU bypasses or aborts by GBPA (§6.3.14) and the caches are not consulted.
   */
  dma(q: DmaQuery, got: DmaOutcome, smmu: { readonly smmuEn: boolean; readonly gbpaAbort: boolean; readonly strtabMoved?: string }): DmaVerdict {
    if (smmu.strtabMoved !== undefined && this.disturbed === undefined) this.disturbed = smmu.strtabMoved;
    if (this.disturbed !== undefined) {
      this.unjudged++;
      return { ok: true, judged: false };
    }
    this.judged++;
    if (!smmu.smmuEn) {
      // §3.4: bypass by GBPA still aborts an address beyond the OAS, recording nothing.
      const want: DmaOutcome = smmu.gbpaAbort || q.iova >= 2 ** this.oas ? { status: 'abort', tlbHit: false, bypass: false } : { status: 'ok', pa: q.iova, tlbHit: false, bypass: true };
      return sameOutcome(want, got) ? { ok: true, judged: true } : { ok: false, judged: true, message: `SMMUEN == 0: expected ${outcomeText(want)} by GBPA, the device answered ${outcomeText(got)}` };
    }
    const all = this.branches(q);
    const match = all.filter((b) => sameOutcome(b.outcome, got));
    if (match.length === 0) {
      const want = all.map((b) => `${outcomeText(b.outcome)} (${b.why})`).join(' or ');
      return { ok: false, judged: true, message: `expected ${want}; the device answered ${outcomeText(got)}` };
    }
    // The caches now hold what the matching branches leave, per slot.
    const steAfter = union<SteSnap>([], match.map((b) => b.ste ?? null));
    this.ste.set(q.sid, steAfter);
    if (match.some((b) => b.cd !== undefined)) {
      const before = this.cd.get(q.sid) ?? [null];
      this.cd.set(q.sid, union<CdSnap>(match.some((b) => b.cd === undefined) ? before : [], match.flatMap((b) => (b.cd !== undefined ? [b.cd] : []))));
    }
    const tagged = match.filter((b) => b.tlb !== undefined);
    for (const b of tagged) {
      const k = tlbKey(b.tlb!.tag);
      const others = match.filter((x) => x.tlb === undefined || tlbKey(x.tlb.tag) !== k);
      const before = this.tlb.get(k)?.poss ?? [null];
      const snaps: Poss<TlbSnap> = tagged.filter((x) => tlbKey(x.tlb!.tag) === k).map((x) => x.tlb!.snap);
      this.tlb.set(k, { tag: b.tlb!.tag, poss: union<TlbSnap>(others.length > 0 ? before : [], snaps) });
    }
    const fault = match.find((b) => b.fault !== undefined)?.fault;
    return { ok: true, judged: true, ...(fault !== undefined ? { fault } : {}) };
  }

  /**
   * Notice software (or an MSI, or an event record) overwriting the world's tables: RAM words the
   * reference model knows that differ from what the world wrote. From then on the run's DMA
   * results are not judged (the fuzzer's random stores can land anywhere).
   */
  checkMemory(mem: ReadonlyMap<number, number>): void {
    if (this.disturbed !== undefined) return;
    for (const [pa, v] of mem) {
      if (this.world.inRegion(pa) && (this.world.words.get(pa) ?? 0) !== v) {
        this.disturbed = `RAM at 0x${pa.toString(16)}, in the translation world's tables, was overwritten with 0x${v.toString(16)}`;
        return;
      }
    }
  }

  /** Differences between a fault record the device wrote and the one expected, or []. */
  static faultDiffs(expect: ExpectedFault, record: readonly number[]): string[] {
    const d = decodeEvent(record);
    const out: string[] = [];
    if (d.name !== expect.name) return [`event ${d.name}, expected ${expect.name}`];
    for (const [name, want] of Object.entries(expect.fields)) {
      const got = d.fields[name];
      if (got === undefined || BigInt(got) !== BigInt(want)) out.push(`${name} = ${got === undefined ? '(absent)' : `0x${got.toString(16)}`}, expected 0x${want.toString(16)}`);
    }
    return out;
  }

  /** The record with only the checked fields (the rest zero): what a scenario file shows. */
  static faultRecord(expect: ExpectedFault): Uint32Array {
    return encodeEvent({ name: expect.name, ...expect.fields });
  }
}
