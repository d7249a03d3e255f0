/**
 * A translation world for scenarios: a linear Stream table, one Context Descriptor per stage 1
 * stream and VMSAv8-64 page tables (4KB granule, pages only), all written into RAM by the harness
 * as ordinary memory stores, described declaratively so the oracle knows what the tables say
 * without walking them.
 *
 * Streams are stage 1 (Config S1_TRANS, one CD: ASID, TTB0 with a 39-bit VA range), stage 2
 * (S2_TRANS: VMID, a 39-bit IPA range, or 32 bits when the OAS is 32 bits), bypass or abort.
 * Scenario steps change the tables in memory afterwards (`map`, `unmap`, `ste`, `cd`) without
 * any invalidation: what the SMMU still has cached is then stale until a CMD_CFGI_* or
 * CMD_TLBI_* removes it, which is what the oracle checks with `dma` steps.
 *
 * The world lives in RAM from RAM + 0x34_0000 (after the ECMDQ regions, src/fuzz/layout.ts): the
 * Stream table, then the CDs, then a pool of 4KB table pages.
 */

import { DESC_BYTES, s1LeafWords, s2LeafWords, tableDescWords, levelShift } from '../spec/descriptors.ts';
import { OAS_BITS, type SmmuFeatures } from '../spec/features.ts';
import { CD, CD_BYTES, STE, STE_BYTES, STE_CONFIG, STE_S1FMT, STE_STRW, TG0_4KB, encodeStructure } from '../spec/structures.ts';

/** Where the world lives, relative to the start of RAM. */
export const WORLD_LAYOUT = Object.freeze({
  strtab: 0x34_0000,
  /** Room for 2^8 STEs. */
  maxStrtabLog2: 8,
  cds: 0x34_4000,
  tables: 0x34_8000,
  tablesEnd: 0x40_0000,
});

/** The translation granule of every world table: 4KB (§5.4 TG0, §5.2 S2TG). */
export const WORLD_GRANULE_BITS = 12;
const PAGE = 1 << WORLD_GRANULE_BITS;
/** Stage 1 VA range: T0SZ = 25, a walk from level 1, as a 39-bit Linux process. */
export const WORLD_S1_IA = 39;
/** The last level: every mapping is a page (level 3 descriptor). */
const LEAF_LEVEL = 3;
/** Both stages start their walks at level 1 (S2SL0 = 0b01 for 4KB, §5.2). */
const START_LEVEL = 1;
const S2SL0_LEVEL1_4K = 0b01;
/** STE.S2TG 4KB (§5.2). */
const S2TG_4KB = 0b00;

export type StreamKind = 's1' | 's2' | 'bypass' | 'abort';
export const STREAM_KINDS: readonly StreamKind[] = ['s1', 's2', 'bypass', 'abort'];

const KIND_CONFIG: Readonly<Record<StreamKind, number>> = Object.freeze({
  s1: STE_CONFIG.S1_TRANS,
  s2: STE_CONFIG.S2_TRANS,
  bypass: STE_CONFIG.BYPASS,
  abort: STE_CONFIG.ABORT,
});

/** One stream as the scenario file gives it. */
export interface WorldStreamSpec {
  readonly sid: number;
  readonly kind: StreamKind;
  /** STE.S2VMID: the VMID of a stage 2 stream, the tag of a stage 1 stream's TLB entries (§5.2). */
  readonly vmid: number;
  /** CD.ASID of a stage 1 stream. */
  readonly asid: number;
  /** CD.R (stage 1) or STE.S2R (stage 2): record faults in the event queue. */
  readonly record: boolean;
  /** Input page address → output address, both 4KB aligned. */
  readonly pages: readonly (readonly [number, number])[];
}

export interface WorldSpec {
  readonly strtabLog2: number;
  readonly streams: readonly WorldStreamSpec[];
}

/** What the tables in memory say about one stream now. */
export interface StreamTruth {
  readonly sid: number;
  kind: StreamKind;
  vmid: number;
  asid: number;
  record: boolean;
  /** Input page number → output page address. */
  readonly pages: Map<number, number>;
  /** The stage its tables are for, once it has had a translating kind. */
  stage: 1 | 2 | undefined;
  /** The stage's input address size in bits. */
  ia: number;
}

function stageOf(kind: StreamKind): 1 | 2 | undefined {
  return kind === 's1' ? 1 : kind === 's2' ? 2 : undefined;
}

/** A store the harness makes: 32-bit words at a physical address. */
export interface WorldStore {
  readonly pa: number;
  readonly words: readonly number[];
}

/** The stage 2 input size the world uses: 39 bits, or 32 when the SMMU's OAS (hence IAS) is 32 bits. */
export function worldS2Ia(f: SmmuFeatures): number {
  return (OAS_BITS[f.oas] ?? 48) >= 40 ? 39 : 32;
}

/** Problems that keep a world from being built on these features and this RAM, or []. */
export function worldProblems(w: WorldSpec, f: SmmuFeatures): string[] {
  const out: string[] = [];
  if (w.strtabLog2 > f.sidSize) out.push(`strtab log2 ${w.strtabLog2} is above SIDSIZE ${f.sidSize}`);
  if (w.strtabLog2 > WORLD_LAYOUT.maxStrtabLog2) out.push(`strtab log2 ${w.strtabLog2} is above ${WORLD_LAYOUT.maxStrtabLog2}`);
  const seen = new Set<number>();
  w.streams.forEach((s, i) => {
    if (s.sid >= 2 ** w.strtabLog2) out.push(`streams[${i}]: StreamID ${s.sid} is beyond the Stream table (2^${w.strtabLog2} entries)`);
    if (seen.has(s.sid)) out.push(`streams[${i}]: StreamID ${s.sid} is listed twice`);
    seen.add(s.sid);
    if (s.kind === 's1' && !f.s1) out.push(`streams[${i}]: a stage 1 stream needs IDR0.S1P (the features have no stage 1)`);
    if (s.kind === 's2' && !f.s2) out.push(`streams[${i}]: a stage 2 stream needs IDR0.S2P (the features have no stage 2)`);
    if (s.vmid >= 2 ** (f.vmid16 ? 16 : 8)) out.push(`streams[${i}]: VMID ${s.vmid} does not fit ${f.vmid16 ? 16 : 8} bits`);
    if (s.asid >= 2 ** (f.asid16 ? 16 : 8)) out.push(`streams[${i}]: ASID ${s.asid} does not fit ${f.asid16 ? 16 : 8} bits`);
    const ia = s.kind === 's2' ? worldS2Ia(f) : WORLD_S1_IA;
    const oas = OAS_BITS[f.oas] ?? 48;
    for (const [iova, pa] of s.pages) {
      if (iova % PAGE !== 0 || pa % PAGE !== 0) out.push(`streams[${i}]: page 0x${iova.toString(16)} -> 0x${pa.toString(16)} is not 4KB aligned`);
      if (iova >= 2 ** ia) out.push(`streams[${i}]: input address 0x${iova.toString(16)} is beyond the ${ia}-bit input range`);
      if (pa >= 2 ** Math.min(oas, 48)) out.push(`streams[${i}]: output address 0x${pa.toString(16)} is beyond the ${Math.min(oas, 48)}-bit output range`);
    }
  });
  if (!f.gran4k) out.push('the world uses 4KB granule tables and the features have no 4KB granule');
  return out;
}

/**
 * The world in memory: builds the initial stores, then the stores each mutation makes, and
 * keeps the truth (what the tables say) and every word it wrote (to notice other writers).
 */
export class World {
  readonly ramBase: number;
  readonly strtabBase: number;
  readonly strtabLog2: number;
  readonly truth = new Map<number, StreamTruth>();
  /** Every RAM word the world wrote (zero words included), pa → value. */
  readonly words = new Map<number, number>();
  /** Table pages by (stream, level, index path). */
  private readonly tables = new Map<string, number>();
  private readonly roots = new Map<number, number>();
  private nextTable: number;
  private readonly tablesEnd: number;

  constructor(readonly spec: WorldSpec, readonly f: SmmuFeatures, ramBase: number) {
    const problems = worldProblems(spec, f);
    if (problems.length > 0) throw new Error(problems[0]);
    this.ramBase = ramBase;
    this.strtabBase = ramBase + WORLD_LAYOUT.strtab;
    this.strtabLog2 = spec.strtabLog2;
    this.nextTable = ramBase + WORLD_LAYOUT.tables;
    this.tablesEnd = ramBase + WORLD_LAYOUT.tablesEnd;
    for (const s of spec.streams) {
      this.truth.set(s.sid, {
        sid: s.sid,
        kind: s.kind,
        vmid: s.vmid,
        asid: s.asid,
        record: s.record,
        pages: new Map(),
        stage: stageOf(s.kind),
        ia: s.kind === 's2' ? worldS2Ia(f) : WORLD_S1_IA,
      });
    }
  }

  /** Where the world lives in RAM: [lo, hi). */
  region(): { lo: number; hi: number } {
    return { lo: this.ramBase + WORLD_LAYOUT.strtab, hi: this.ramBase + WORLD_LAYOUT.tablesEnd };
  }

  inRegion(pa: number): boolean {
    const r = this.region();
    return pa >= r.lo && pa < r.hi;
  }

  /** The stores that build the world: every STE, CD and the page tables with the initial pages. */
  build(): WorldStore[] {
    const out: WorldStore[] = [];
    for (const s of this.spec.streams) {
      out.push(...this.steStores(s.sid));
      if (s.kind === 's1') out.push(this.cdStore(s.sid));
      if (s.pages.length > 0 && stageOf(s.kind) === undefined) throw new Error(`StreamID ${s.sid} is ${s.kind}: it has no page tables to map pages in`);
      for (const [iova, pa] of s.pages) out.push(...this.map(s.sid, iova, pa));
    }
    return out;
  }

  stream(sid: number): StreamTruth {
    const t = this.truth.get(sid);
    if (t === undefined) throw new Error(`StreamID ${sid} is not a stream of the world`);
    return t;
  }

  steAddress(sid: number): number {
    return this.strtabBase + sid * STE_BYTES;
  }

  cdAddress(sid: number): number {
    return this.ramBase + WORLD_LAYOUT.cds + this.indexOf(sid) * CD_BYTES;
  }

  private indexOf(sid: number): number {
    return this.spec.streams.findIndex((s) => s.sid === sid);
  }

  /** The STE as the truth says, as stores (§5.2). */
  steStores(sid: number): WorldStore[] {
    const t = this.stream(sid);
    const f = this.f;
    const common = { V: 1, Config: KIND_CONFIG[t.kind], STRW: STE_STRW.EL1 };
    let words: Uint32Array;
    if (t.kind === 's2') {
      words = encodeStructure(STE, {
        ...common,
        S2VMID: t.vmid,
        S2T0SZ: 64 - t.ia,
        S2SL0: S2SL0_LEVEL1_4K,
        S2TG: S2TG_4KB,
        S2PS: Math.min(f.oas, 5),
        S2AA64: 1,
        S2R: t.record ? 1 : 0,
        S2TTB: BigInt(this.root(sid)),
      });
    } else {
      // A stage 1 STE tags its translations with S2VMID when stage 2 is implemented (§5.2 S2VMID).
      words = encodeStructure(STE, {
        ...common,
        ...(t.kind === 's1' ? { S1Fmt: STE_S1FMT.LINEAR, S1CDMax: 0, S1ContextPtr: BigInt(this.cdAddress(sid)) } : {}),
        ...(f.s2 ? { S2VMID: t.vmid } : {}),
      });
    }
    return [this.store(this.steAddress(sid), [...words])];
  }

  /** The CD of a stage 1 stream as the truth says (§5.4): 39-bit TTB0, TTB1 walks disabled. */
  cdStore(sid: number): WorldStore {
    const t = this.stream(sid);
    const words = encodeStructure(CD, {
      V: 1,
      AA64: 1,
      A: 1,
      R: t.record ? 1 : 0,
      T0SZ: 64 - WORLD_S1_IA,
      TG0: TG0_4KB,
      EPD1: 1,
      IPS: Math.min(this.f.oas, 5),
      ASID: t.asid,
      TTB0: BigInt(this.root(sid)),
    });
    return this.store(this.cdAddress(sid), [...words]);
  }

  /** Map the page at `iova` to `pa` (a new or rewritten leaf descriptor, tables allocated as needed). */
  map(sid: number, iova: number, pa: number): WorldStore[] {
    const t = this.stream(sid);
    if (t.stage === undefined) throw new Error(`StreamID ${sid} is ${t.kind}: it has no page tables`);
    if (iova % PAGE !== 0 || pa % PAGE !== 0) throw new Error(`map 0x${iova.toString(16)} -> 0x${pa.toString(16)}: not 4KB aligned`);
    if (iova >= 2 ** t.ia) throw new Error(`map 0x${iova.toString(16)}: beyond the stream's ${t.ia}-bit input range`);
    const out: WorldStore[] = [];
    const d = this.leafAddress(sid, iova, out);
    // The descriptor format follows the tables' stage, whatever the STE says now.
    const w = t.stage === 1 ? s1LeafWords(pa, WORLD_GRANULE_BITS, LEAF_LEVEL) : s2LeafWords(pa, WORLD_GRANULE_BITS, LEAF_LEVEL);
    out.push(this.store(d, [w.lo, w.hi]));
    t.pages.set(iova / PAGE, pa);
    return out;
  }

  /** Make the page at `iova` invalid (an invalid leaf descriptor). */
  unmap(sid: number, iova: number): WorldStore[] {
    const t = this.stream(sid);
    if (t.stage === undefined) throw new Error(`StreamID ${sid} is ${t.kind}: it has no page tables`);
    const out: WorldStore[] = [];
    const d = this.leafAddress(sid, iova - (iova % PAGE), out);
    out.push(this.store(d, [0, 0]));
    t.pages.delete(Math.floor(iova / PAGE));
    return out;
  }

  /** Rewrite a stream's STE: another kind (its tables are kept) or another VMID. */
  setSte(sid: number, change: { kind?: StreamKind; vmid?: number }): WorldStore[] {
    const t = this.stream(sid);
    const out: WorldStore[] = [];
    if (change.kind !== undefined && change.kind !== t.kind) {
      const stage = stageOf(change.kind);
      // Tables are per stage: a stream whose tables are stage 1 cannot become stage 2 (and back).
      if (stage !== undefined && t.stage !== undefined && stage !== t.stage) throw new Error(`StreamID ${sid}: its tables are for stage ${t.stage}, it cannot become ${change.kind}`);
      if (change.kind === 's1' && !this.f.s1) throw new Error(`StreamID ${sid}: the features have no stage 1`);
      if (change.kind === 's2' && !this.f.s2) throw new Error(`StreamID ${sid}: the features have no stage 2`);
      t.kind = change.kind;
      if (stage !== undefined && t.stage === undefined) {
        t.stage = stage;
        t.ia = stage === 2 ? worldS2Ia(this.f) : WORLD_S1_IA;
      }
      if (t.kind === 's1') out.push(this.cdStore(sid));
    }
    if (change.vmid !== undefined) t.vmid = change.vmid;
    out.push(...this.steStores(sid));
    return out;
  }

  /** Rewrite a stage 1 stream's CD with another ASID. */
  setCd(sid: number, asid: number): WorldStore[] {
    const t = this.stream(sid);
    if (t.kind !== 's1') throw new Error(`StreamID ${sid} is ${t.kind}: it has no CD`);
    t.asid = asid;
    return [this.cdStore(sid)];
  }

  private root(sid: number): number {
    let r = this.roots.get(sid);
    if (r === undefined) {
      r = this.allocTable();
      this.roots.set(sid, r);
    }
    return r;
  }

  private allocTable(): number {
    if (this.nextTable + PAGE > this.tablesEnd) {
      throw new Error(`the world's page tables need more than ${(WORLD_LAYOUT.tablesEnd - WORLD_LAYOUT.tables) / PAGE} table pages`);
    }
    const t = this.nextTable;
    this.nextTable += PAGE;
    return t;
  }

  /** The level 3 descriptor's address for `iova`, with the table descriptors to reach it stored. */
  private leafAddress(sid: number, iova: number, out: WorldStore[]): number {
    let table = this.root(sid);
    const t = this.stream(sid);
    for (let level = START_LEVEL; level < LEAF_LEVEL; level++) {
      const index = this.index(iova, level, t.ia);
      const key = `${sid}:${level}:${table}:${index}`;
      let next = this.tables.get(key);
      if (next === undefined) {
        next = this.allocTable();
        this.tables.set(key, next);
        const w = tableDescWords(next, WORLD_GRANULE_BITS);
        out.push(this.store(table + index * DESC_BYTES, [w.lo, w.hi]));
      }
      table = next;
    }
    return table + this.index(iova, LEAF_LEVEL, t.ia) * DESC_BYTES;
  }

  private index(addr: number, level: number, ia: number): number {
    const lsb = levelShift(WORLD_GRANULE_BITS, level);
    const top = level === START_LEVEL ? ia : levelShift(WORLD_GRANULE_BITS, level - 1);
    return Math.floor(addr / 2 ** lsb) % 2 ** (top - lsb);
  }

  private store(pa: number, words: readonly number[]): WorldStore {
    words.forEach((w, k) => this.words.set(pa + 4 * k, w >>> 0));
    return { pa, words };
  }
}
