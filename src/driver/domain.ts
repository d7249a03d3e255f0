/**
 * Translation domains and their attachment to streams: what Linux's arm-smmu-v3 driver does
 * between the IOMMU core and the SMMU (read for behaviour only; every line here is ours).
 *
 * A domain is one page table (pgtable.ts) with its TLB tag: an ASID (and VMID) for stage 1, a
 * VMID for stage 2. Attaching a stream writes its CD (stage 1) and its STE (tables.ts, §3.21.3.1);
 * unmapping invalidates the TLBs and ATCs (invalidate.ts), each batch followed by a CMD_SYNC.
 *
 * Order of operations, as Linux's:
 * - attach stage 1: CD first (CFGI_CD + SYNC per step), then the STE (CFGI_STE + SYNC per step);
 *   a CD that replaced a live one is followed by CMD_TLBI_NH_ASID of the old ASID.
 * - unmap: clear descriptors; a removed table is flushed at once (non-leaf range TLBI + SYNC,
 *   then ATC_INV + SYNC) before its memory is reused; the leaf ranges gathered are invalidated
 *   at the end (leaf range TLBI + SYNC, then ATC_INV + SYNC). A stage 2 domain that is the parent
 *   of nested streams also gets CMD_TLBI_NH_ALL for its VMID (§4.4.3.1: TLBI_S2_IPA need not
 *   reach combined stage 1 and 2 entries).
 * - enable ATS: STE.EATS = 0b01, then ATC_INV of everything (Size 52) + SYNC, as Linux does
 *   before it enables ATS at the endpoint.
 */

import type { PhysMem } from '../mem/phys.ts';
import type { SmmuFeatures } from '../spec/features.ts';
import { ADDRESS_SIZE_BITS, cdASID, cdValid, STE_S1DSS, STE_STRW } from '../spec/structures.ts';
import { atcInv, tlbiContext, tlbiNhAll, tlbiRange, type TlbiScope } from './invalidate.ts';
import { IoPgtable, type Gather, type Granule, type MapProt, type MapResult, type Stage1Fields, type Stage2Fields, type TableAllocator } from './pgtable.ts';
import { CdTable, cdStage1, steAbort, steBypass, steNested, steStage1, steStage2, type CommandSink, type StreamTable, type WriteReport } from './tables.ts';

/** What a DomainManager needs from its driver. */
export interface DomainHost {
  readonly mem: PhysMem;
  /** Table memory (the driver's TablePool). */
  readonly alloc: TableAllocator;
  readonly features: SmmuFeatures;
  /** SMMU_IDR1.ATTR_TYPES_OVR (§6.3.2): STE.SHCFG is writable. */
  readonly attrTypesOvr: boolean;
  readonly streamTable: StreamTable;
  readonly sink: CommandSink;
}

export interface Stage1DomainOptions {
  readonly asid: number;
  readonly granule: Granule;
  /** VA bits (CD.T0SZ = 64 - ias). */
  readonly ias: number;
  /** IPA/PA bits of the output (CD.IPS). */
  readonly oas: number;
  /** STE.S2VMID of a stage 1-only stream, and the VMID of its TLBIs (default 0, as Linux). */
  readonly vmid?: number;
}

export interface AttachStage1Options extends Partial<Stage1DomainOptions> {
  /** The CD index (SubstreamID); default 0, the CD of traffic without a SubstreamID. */
  readonly ssid?: number;
  /** Attach an existing stage 1 domain instead of creating one (asid … vmid must then be absent). */
  readonly domain?: number;
  /** log2 of the master's SubstreamIDs, for its first CD table (default 0, or SMMU_IDR1.SSIDSIZE when `ssid` is given). */
  readonly ssidBits?: number;
  /** The master may stall (CD.S, STE.S2S); default: only when the SMMU forces stalls. */
  readonly stall?: boolean;
}

export interface AttachStage2Options {
  readonly vmid?: number;
  readonly granule?: Granule;
  /** IPA bits (STE.S2T0SZ = 64 - ipaBits). */
  readonly ipaBits?: number;
  readonly domain?: number;
  readonly stall?: boolean;
}

export interface AttachNestedOptions extends Partial<Stage1DomainOptions> {
  /** The stage 2 domain (nest parent): its VMID tags the stream, its tables translate IPAs. */
  readonly s2: number;
  readonly ssid?: number;
  readonly domain?: number;
  readonly ssidBits?: number;
  readonly stall?: boolean;
}

export interface AttachResult {
  readonly domain: number;
  readonly sid: number;
  readonly ssid?: number;
  readonly cd?: WriteReport;
  readonly ste: WriteReport;
  /** Commands issued (CMD_SYNCs not counted). */
  readonly commands: number;
}

export interface DomainUnmapResult {
  unmapped: number;
  gathers: Gather[];
  walks: Gather[];
  stopped?: { iova: number; reason: string };
  /** Commands issued (CMD_SYNCs not counted). */
  commands: number;
  /** Some range was invalidated context-wide instead (maxTlbiOps). */
  fallback: boolean;
}

export interface DomainInfo {
  readonly id: number;
  readonly stage: 1 | 2;
  readonly asid?: number;
  readonly vmid: number;
  readonly granule: Granule;
  readonly ias: number;
  readonly oas: number;
  readonly startLevel: number;
  readonly levels: number;
  readonly pgd: number;
  readonly pageSizes: readonly number[];
  readonly fields: Stage1Fields | Stage2Fields;
  /** The nest parent of a nested stage 1 domain. */
  readonly parent?: number;
  /** Attachments as "sid" or "sid:ssid". */
  readonly attached: string[];
}

interface Domain {
  readonly id: number;
  readonly stage: 1 | 2;
  readonly pgtable: IoPgtable;
  readonly asid?: number;
  readonly vmid: number;
  readonly parent?: Domain;
  /** Nested stage 1 domains whose parent this is. */
  readonly children: Set<Domain>;
  /** sid → SubstreamIDs attached (stage 1), or sid → [] (stage 2, nest parent of a nested stream). */
  readonly attached: Map<number, Set<number>>;
}

type Mode = 'abort' | 'bypass' | 's1' | 's2' | 'nested';

interface Master {
  readonly sid: number;
  mode: Mode;
  cdTable?: CdTable;
  /** The nest parent whose IPA space holds cdTable. */
  cdParent?: Domain;
  readonly cds: Map<number, Domain>;
  s2?: Domain;
  ats: boolean;
  stall: boolean;
}

/** VMID 0 tags stage 1-only streams (§5.2 S2VMID); Linux never gives it to a stage 2 domain. */
const VMID_S1_ONLY = 0;
const ID_BITS_16 = 16;
const ID_BITS_8 = 8;
const MAX_IAS = 48;
const MAX_IAS_64K = 52;
const MAX_OAS = 48;
const MAX_OAS_64K = 52;

function key(sid: number, ssid?: number): string {
  return ssid === undefined ? `${sid}` : `${sid}:${ssid}`;
}

/** Counts the commands going through a sink (CMD_SYNCs excluded). */
class CountingSink implements CommandSink {
  count = 0;
  constructor(private readonly inner: CommandSink) {}
  issue(cmds: readonly Uint32Array[], opts?: { sync?: boolean }): unknown {
    this.count += cmds.length;
    return this.inner.issue(cmds, opts);
  }
}

export class DomainManager {
  private readonly host: DomainHost;
  private readonly sink: CountingSink;
  private readonly domains = new Map<number, Domain>();
  private readonly masters = new Map<number, Master>();
  private nextId = 1;

  constructor(host: DomainHost) {
    this.host = host;
    this.sink = new CountingSink(host.sink);
  }

  // -- domains ----------------------------------------------------------------------------------

  private get f(): SmmuFeatures {
    return this.host.features;
  }

  private checkGranule(g: Granule): void {
    const ok = g === 4096 ? this.f.gran4k : g === 16384 ? this.f.gran16k : g === 65536 ? this.f.gran64k : false;
    if (!ok) throw new RangeError(`the SMMU does not support the ${g / 1024}KB granule (SMMU_IDR5.GRAN*)`);
  }

  private checkId(what: 'ASID' | 'VMID', v: number): void {
    const bits = (what === 'ASID' ? this.f.asid16 : this.f.vmid16) ? ID_BITS_16 : ID_BITS_8;
    if (!Number.isInteger(v) || v < 0 || v >= 2 ** bits) throw new RangeError(`${what} ${v} does not fit the SMMU's ${bits}-bit ${what}s (SMMU_IDR0.${what}16)`);
  }

  /** The SMMU's output size in bits (SMMU_IDR5.OAS), capped at 48 unless the granule is 64KB. */
  private smmuOas(g: Granule): number {
    const bits = ADDRESS_SIZE_BITS[this.f.oas] ?? MAX_OAS;
    return Math.min(bits, g === 65536 ? MAX_OAS_64K : MAX_OAS);
  }

  private newDomain(stage: 1 | 2, g: Granule, ias: number, oas: number, tag: { asid?: number; vmid: number }, parent?: Domain): Domain {
    this.checkGranule(g);
    const id = this.nextId++;
    // Nested stage 1 tables are read through stage 2: map each table page at IPA == PA.
    const alloc: TableAllocator = parent === undefined ? this.host.alloc : this.identityAlloc(parent);
    let dom: Domain | undefined;
    const pgtable = new IoPgtable(this.host.mem, alloc, { stage, granule: g, ias, oas, coherentWalk: this.f.coherent }, {
      flushWalk: (gather) => {
        if (dom !== undefined) this.invalidate(dom, gather);
      },
    });
    dom = { id, stage, pgtable, vmid: tag.vmid, children: new Set(), attached: new Map(), ...(tag.asid !== undefined ? { asid: tag.asid } : {}), ...(parent !== undefined ? { parent } : {}) };
    this.domains.set(id, dom);
    if (parent !== undefined) parent.children.add(dom);
    return dom;
  }

  private domain(id: number, stage?: 1 | 2): Domain {
    const d = this.domains.get(id);
    if (d === undefined) throw new RangeError(`no domain ${id}`);
    if (stage !== undefined && d.stage !== stage) throw new RangeError(`domain ${id} is a stage ${d.stage} domain, not stage ${stage}`);
    return d;
  }

  private stage1Domain(o: Partial<Stage1DomainOptions> & { domain?: number }, vmid: number, parent?: Domain): Domain {
    if (o.domain !== undefined) {
      if (o.asid !== undefined || o.granule !== undefined || o.ias !== undefined || o.oas !== undefined || o.vmid !== undefined) {
        throw new RangeError('attach to an existing domain takes no asid, granule, ias, oas or vmid');
      }
      const d = this.domain(o.domain, 1);
      if (d.parent !== parent) throw new RangeError(`domain ${d.id} ${d.parent === undefined ? 'is not nested' : `is nested in domain ${d.parent.id}`}`);
      return d;
    }
    if (o.asid === undefined || o.granule === undefined || o.ias === undefined) throw new RangeError('a new stage 1 domain needs asid, granule and ias');
    this.checkId('ASID', o.asid);
    this.checkId('VMID', vmid);
    for (const d of this.domains.values()) {
      if (d.stage === 1 && d.asid === o.asid && d.vmid === vmid) throw new RangeError(`ASID ${o.asid} (VMID ${vmid}) already belongs to domain ${d.id}`);
    }
    const maxIas = o.granule === 65536 && this.f.vax === 1 ? MAX_IAS_64K : MAX_IAS;
    if (o.ias > maxIas) throw new RangeError(`a ${o.ias}-bit VA needs SMMU_IDR5.VAX and the 64KB granule (at most ${maxIas} bits here)`);
    const oas = o.oas ?? (parent !== undefined ? parent.pgtable.ias : this.smmuOas(o.granule));
    return this.newDomain(1, o.granule, o.ias, oas, { asid: o.asid, vmid }, parent);
  }

  /** Map [pa, pa + bytes) at IPA == PA in a stage 2 domain, in its granule, where not yet mapped. */
  private mapIdentity(s2: Domain, pa: number, bytes: number): void {
    const g = s2.pgtable.granule;
    const start = Math.floor(pa / g) * g;
    for (let a = start; a < pa + bytes; a += g) {
      const have = s2.pgtable.iovaToPhys(a);
      if (have === a) continue;
      if (have !== undefined) throw new RangeError(`stage 2 domain ${s2.id} maps IPA 0x${a.toString(16)} elsewhere; nested tables need IPA == PA there`);
      s2.pgtable.map(a, a, g, { read: true, write: true, cache: true, noexec: true });
    }
  }

  // -- masters ----------------------------------------------------------------------------------

  private master(sid: number): Master {
    let m = this.masters.get(sid);
    if (m === undefined) {
      this.host.streamTable.steAddress(sid); // range check
      m = { sid, mode: 'abort', cds: new Map(), ats: false, stall: this.f.stallModel === 'stall-forced' };
      this.masters.set(sid, m);
    }
    return m;
  }

  /** A master's stall choice, within what SMMU_IDR0.STALL_MODEL allows for CD.S (§5.4 CdIllegal). */
  private applyStall(m: Master, stall: boolean | undefined): void {
    if (stall === undefined) return;
    if (stall && this.f.stallModel === 'no-stall') throw new RangeError('the SMMU cannot stall (SMMU_IDR0.STALL_MODEL == 0b01): CD.S == 1 would be ILLEGAL');
    if (!stall && this.f.stallModel === 'stall-forced') throw new RangeError('the SMMU forces stalls (SMMU_IDR0.STALL_MODEL == 0b10): CD.S == 0 would be ILLEGAL');
    m.stall = stall;
  }

  /** STE.S1STALLD: when stalls are configurable (STALL_MODEL 0b00) and this master must not stall (§5.2). */
  private stallDisable(m: Master): boolean {
    return this.f.stallModel === 'stall-and-terminate' && !m.stall;
  }

  /** Forget the master's CD table (its STE no longer points at it): CDs detached, pages reused. */
  private dropCdTable(m: Master): void {
    for (const [ssid, d] of m.cds) d.attached.get(m.sid)?.delete(ssid);
    for (const d of new Set(m.cds.values())) if (d.attached.get(m.sid)?.size === 0) d.attached.delete(m.sid);
    m.cds.clear();
    m.cdTable?.destroy();
    delete m.cdTable;
    delete m.cdParent;
  }

  private leaveS2(m: Master): void {
    if (m.s2 !== undefined) {
      m.s2.attached.delete(m.sid);
      delete m.s2;
    }
  }

  /** ATC_INV for a master after its translation changed (everything, or one SubstreamID). */
  private atcInvMaster(m: Master, ssid?: number): void {
    if (!m.ats) return;
    this.sink.issue([atcInv(m.sid, ssid !== undefined && ssid > 0 ? ssid : undefined, 0, 0)], { sync: true });
  }

  /**
   * The CD table for an attach: the master's own when it is in the same address space (PA, or the
   * same nest parent's IPA space) and `ssid` fits, else a fresh one. A fresh table is unreachable
   * until the STE points at it, so its CDs need no CMD_CFGI_CD (§3.21.3.1, last note).
   */
  private prepareTable(m: Master, ssid: number, ssidBits: number | undefined, parent?: Domain): { table: CdTable; fresh: boolean } {
    if (m.cdTable !== undefined && m.cdParent === parent) {
      if (ssid >= 2 ** m.cdTable.ssidBits) {
        throw new RangeError(`SubstreamID ${ssid} does not fit StreamID ${m.sid}'s CD table (S1CDMax ${m.cdTable.ssidBits}); detach it first or give ssidBits at its first attach`);
      }
      return { table: m.cdTable, fresh: false };
    }
    const bits = ssidBits ?? (ssid > 0 ? this.f.ssidSize : 0);
    if (!Number.isInteger(bits) || bits < 0 || bits > this.f.ssidSize) throw new RangeError(`ssidBits ${bits} is outside 0..SMMU_IDR1.SSIDSIZE (${this.f.ssidSize})`);
    if (!Number.isInteger(ssid) || ssid < 0 || ssid >= 2 ** bits) throw new RangeError(`SubstreamID ${ssid} needs more than ${bits} SubstreamID bits`);
    const alloc: TableAllocator = parent === undefined ? this.host.alloc : this.identityAlloc(parent);
    return { table: new CdTable(this.host.mem, alloc, { ssidBits: bits, cd2l: this.f.cd2l }), fresh: true };
  }

  /** Run `f`; if it throws, give back the fresh CD table made for it. */
  private guarded<T>(fresh: CdTable | undefined, f: () => T): T {
    try {
      return f();
    } catch (e) {
      fresh?.destroy();
      throw e;
    }
  }

  /** An allocator whose pages are also mapped at IPA == PA in stage 2 domain `s2` (nested tables). */
  private identityAlloc(s2: Domain): TableAllocator {
    return {
      alloc: (bytes, align, what) => {
        const pa = this.host.alloc.alloc(bytes, align, what);
        this.mapIdentity(s2, pa, bytes);
        return pa;
      },
      free: (pa, bytes) => this.host.alloc.free?.(pa, bytes),
    };
  }

  /**
   * Write CD `ssid` of `table` for domain `d`. A live CD it replaces is followed by
   * CMD_TLBI_NH_ASID of the old ASID (§4.3.3: "software must also invalidate TLBs using the old ASID").
   */
  private writeCd(m: Master, table: CdTable, fresh: boolean, ssid: number, d: Domain): WriteReport {
    const old = table.readCd(ssid);
    const target = cdStage1({ s1: d.pgtable.stage1Fields, asid: d.asid ?? 0, stall: m.stall });
    const rep = table.writeCd(ssid, target, this.sink, fresh ? [] : [m.sid]);
    if (cdValid(old) && rep.kind !== 'none') {
      const prev = m.cds.get(ssid);
      this.sink.issue(tlbiContext({ regime: 'nh', asid: cdASID(old), vmid: prev?.vmid ?? d.vmid }), { sync: true });
    }
    return rep;
  }

  private attachCd(m: Master, ssid: number, d: Domain): void {
    const prev = m.cds.get(ssid);
    if (prev !== undefined && prev !== d) {
      prev.attached.get(m.sid)?.delete(ssid);
      if (prev.attached.get(m.sid)?.size === 0) prev.attached.delete(m.sid);
    }
    m.cds.set(ssid, d);
    let set = d.attached.get(m.sid);
    if (set === undefined) d.attached.set(m.sid, (set = new Set()));
    set.add(ssid);
  }

  private stage1Ste(m: Master, table: CdTable, vmid: number): Uint32Array {
    return steStage1({ cd: table.ref, s1dss: STE_S1DSS.SSID0, vmid, strw: STE_STRW.EL1, stallDisable: this.stallDisable(m), ats: m.ats, attrTypesOvr: this.host.attrTypesOvr });
  }

  private stage2Ste(m: Master, s2: Domain): Uint32Array {
    return steStage2({ s2: s2.pgtable.stage2Fields, vmid: s2.vmid, ats: m.ats, stall: m.stall, attrTypesOvr: this.host.attrTypesOvr });
  }

  private nestedSte(m: Master, s2: Domain, table: CdTable): Uint32Array {
    return steNested({ s2: s2.pgtable.stage2Fields, vmid: s2.vmid, ats: m.ats, stall: m.stall, cd: table.ref, s1dss: STE_S1DSS.SSID0, stallDisable: this.stallDisable(m), attrTypesOvr: this.host.attrTypesOvr });
  }

  private writeSte(m: Master, target: Uint32Array): WriteReport {
    return this.host.streamTable.writeSte(m.sid, target, this.sink);
  }

  private begin(): number {
    return this.sink.count;
  }

  // -- attach -----------------------------------------------------------------------------------

  /** Stage 1 translation for StreamID `sid` (and SubstreamID `ssid`) through a stage 1 domain. */
  attachStage1(sid: number, o: AttachStage1Options): AttachResult {
    if (!this.f.s1) throw new Error('the SMMU has no stage 1 (SMMU_IDR0.S1P == 0)');
    const c0 = this.begin();
    const m = this.master(sid);
    this.applyStall(m, o.stall);
    const ssid = o.ssid ?? 0;
    const { table, fresh } = this.prepareTable(m, ssid, o.ssidBits);
    const d = this.guarded(fresh ? table : undefined, () => this.stage1Domain(o, o.vmid ?? VMID_S1_ONLY));
    if (!fresh) {
      // One STE.S2VMID tags every CD of the stream (§5.2).
      for (const [s, other] of m.cds) {
        if (s !== ssid && other.vmid !== d.vmid) throw new RangeError(`StreamID ${sid} already translates with VMID ${other.vmid} (SubstreamID ${s}); domain ${d.id} has VMID ${d.vmid}`);
      }
    }
    const cd = this.writeCd(m, table, fresh, ssid, d);
    const ste = this.writeSte(m, this.stage1Ste(m, table, d.vmid));
    if (fresh) this.dropCdTable(m);
    this.leaveS2(m);
    m.cdTable = table;
    m.mode = 's1';
    this.attachCd(m, ssid, d);
    this.atcInvMaster(m, ssid);
    return { domain: d.id, sid, ...(o.ssid !== undefined ? { ssid } : {}), cd, ste, commands: this.sink.count - c0 };
  }

  /** Stage 2 translation for StreamID `sid`. */
  attachStage2(sid: number, o: AttachStage2Options): AttachResult {
    if (!this.f.s2) throw new Error('the SMMU has no stage 2 (SMMU_IDR0.S2P == 0)');
    const c0 = this.begin();
    const m = this.master(sid);
    this.applyStall(m, o.stall);
    const d = this.stage2Domain(o);
    if (m.ats && m.stall) throw new RangeError('STE.EATS == 0b01 with STE.S2S == 1 is ILLEGAL (§5.2 EATS)');
    const ste = this.writeSte(m, this.stage2Ste(m, d));
    this.dropCdTable(m);
    this.leaveS2(m);
    m.s2 = d;
    d.attached.set(sid, new Set());
    m.mode = 's2';
    this.atcInvMaster(m);
    return { domain: d.id, sid, ste, commands: this.sink.count - c0 };
  }

  private stage2Domain(o: AttachStage2Options): Domain {
    if (o.domain !== undefined) {
      if (o.vmid !== undefined || o.granule !== undefined || o.ipaBits !== undefined) throw new RangeError('attach to an existing domain takes no vmid, granule or ipaBits');
      return this.domain(o.domain, 2);
    }
    if (o.vmid === undefined || o.granule === undefined || o.ipaBits === undefined) throw new RangeError('a new stage 2 domain needs vmid, granule and ipaBits');
    this.checkId('VMID', o.vmid);
    if (o.vmid === VMID_S1_ONLY) throw new RangeError('VMID 0 tags stage 1-only streams; a stage 2 domain needs another (Linux reserves it the same way)');
    for (const d of this.domains.values()) if (d.stage === 2 && d.vmid === o.vmid) throw new RangeError(`VMID ${o.vmid} already belongs to domain ${d.id}`);
    return this.newDomain(2, o.granule, o.ipaBits, this.smmuOas(o.granule), { vmid: o.vmid });
  }

  /**
   * Stage 1 nested in a stage 2 domain (`o.s2`, the nest parent): the stage 1 tables and the CD
   * table are guest memory, read through stage 2, so every page of them is mapped in the parent at
   * IPA == PA as it is allocated. The stage 1 output (IPAs) must be mapped in the parent by the caller.
   */
  attachNested(sid: number, o: AttachNestedOptions): AttachResult {
    if (!this.f.s1 || !this.f.s2) throw new Error('nesting needs stage 1 and stage 2 (SMMU_IDR0.S1P, S2P)');
    const c0 = this.begin();
    const parent = this.domain(o.s2, 2);
    const m = this.master(sid);
    this.applyStall(m, o.stall);
    if (m.ats && m.stall) throw new RangeError('STE.EATS == 0b01 with STE.S2S == 1 is ILLEGAL (§5.2 EATS)');
    const ssid = o.ssid ?? 0;
    if (o.vmid !== undefined && o.vmid !== parent.vmid) throw new RangeError(`a nested stream is tagged with its parent's VMID ${parent.vmid}, not ${o.vmid}`);
    const { table, fresh } = this.prepareTable(m, ssid, o.ssidBits, parent);
    const d = this.guarded(fresh ? table : undefined, () => this.stage1Domain({ ...o, vmid: undefined }, parent.vmid, parent));
    const cd = this.writeCd(m, table, fresh, ssid, d);
    const ste = this.writeSte(m, this.nestedSte(m, parent, table));
    if (fresh) this.dropCdTable(m);
    if (m.s2 !== parent) this.leaveS2(m);
    m.cdTable = table;
    m.cdParent = parent;
    m.s2 = parent;
    parent.attached.set(sid, new Set());
    m.mode = 'nested';
    this.attachCd(m, ssid, d);
    this.atcInvMaster(m, ssid);
    return { domain: d.id, sid, ...(o.ssid !== undefined ? { ssid } : {}), cd, ste, commands: this.sink.count - c0 };
  }

  /** Bypass for StreamID `sid` (Linux's identity domain). */
  attachBypass(sid: number): AttachResult {
    const c0 = this.begin();
    const m = this.master(sid);
    const ste = this.writeSte(m, steBypass({ attrTypesOvr: this.host.attrTypesOvr }));
    this.dropCdTable(m);
    this.leaveS2(m);
    m.mode = 'bypass';
    this.atcInvMaster(m);
    m.ats = false;
    return { domain: 0, sid, ste, commands: this.sink.count - c0 };
  }

  /**
   * Detach: without `ssid`, the whole stream aborts (Linux's blocked domain: STE Config abort);
   * with `ssid`, only that CD is made invalid, then its ASID is invalidated.
   */
  detach(sid: number, ssid?: number): { ste?: WriteReport; cd?: WriteReport; commands: number } {
    const c0 = this.begin();
    const m = this.master(sid);
    if (ssid !== undefined) {
      const d = m.cds.get(ssid);
      if (d === undefined || m.cdTable === undefined) throw new RangeError(`StreamID ${sid} has no CD at SubstreamID ${ssid}`);
      const old = m.cdTable.readCd(ssid);
      const cd = m.cdTable.writeCd(ssid, new Uint32Array(old.length), this.sink, [sid]);
      this.sink.issue(tlbiContext({ regime: 'nh', asid: cdASID(old), vmid: d.vmid }), { sync: true });
      this.atcInvMaster(m, ssid);
      m.cds.delete(ssid);
      d.attached.get(sid)?.delete(ssid);
      if (d.attached.get(sid)?.size === 0) d.attached.delete(sid);
      return { cd, commands: this.sink.count - c0 };
    }
    const ste = this.writeSte(m, steAbort());
    this.dropCdTable(m);
    this.leaveS2(m);
    m.mode = 'abort';
    this.atcInvMaster(m);
    m.ats = false;
    return { ste, commands: this.sink.count - c0 };
  }

  /**
   * Enable ATS for a translating stream: STE.EATS = 0b01 (full ATS), then ATC_INV of everything
   * for the stream + CMD_SYNC before the endpoint may use its ATC (Linux arm_smmu_enable_ats).
   */
  enableAts(sid: number): { ste: WriteReport; commands: number } {
    if (!this.f.ats) throw new Error('the SMMU has no ATS (SMMU_IDR0.ATS == 0)');
    const c0 = this.begin();
    const m = this.master(sid);
    if (m.mode !== 's1' && m.mode !== 's2' && m.mode !== 'nested') throw new RangeError(`StreamID ${sid} does not translate (${m.mode}): STE.EATS would be IGNORED`);
    if (m.stall && m.mode !== 's1') throw new RangeError('STE.EATS == 0b01 with STE.S2S == 1 is ILLEGAL (§5.2 EATS)');
    m.ats = true;
    const target = m.mode === 's1' ? this.stage1Ste(m, m.cdTable!, [...m.cds.values()][0]?.vmid ?? VMID_S1_ONLY) : m.mode === 's2' ? this.stage2Ste(m, m.s2!) : this.nestedSte(m, m.s2!, m.cdTable!);
    const ste = this.writeSte(m, target);
    this.atcInvMaster(m);
    return { ste, commands: this.sink.count - c0 };
  }

  // -- map / unmap ------------------------------------------------------------------------------

  map(domainId: number, iova: number, pa: number, size: number, prot: MapProt): MapResult {
    return this.domain(domainId).pgtable.map(iova, pa, size, prot);
  }

  unmap(domainId: number, iova: number, size: number): DomainUnmapResult {
    const d = this.domain(domainId);
    const c0 = this.begin();
    this.fallback = false;
    const r = d.pgtable.unmap(iova, size);
    for (const g of r.gathers) this.invalidate(d, g);
    const out: DomainUnmapResult = { unmapped: r.unmapped, gathers: r.gathers, walks: r.walks, commands: this.sink.count - c0, fallback: this.fallback };
    if (r.stopped !== undefined) out.stopped = r.stopped;
    return out;
  }

  iovaToPhys(domainId: number, iova: number): number | undefined {
    return this.domain(domainId).pgtable.iovaToPhys(iova);
  }

  private fallback = false;

  private scope(d: Domain): TlbiScope {
    return d.stage === 1 ? { regime: 'nh', asid: d.asid ?? 0, vmid: d.vmid } : { regime: 's2', vmid: d.vmid };
  }

  /** TLB (and ATC) invalidation of a gathered range of domain `d` (Linux arm_smmu_tlb_inv_range_domain). */
  private invalidate(d: Domain, g: Gather): void {
    const t = tlbiRange(this.scope(d), g.iova, g.size, g.granule, g.leaf, { ril: this.f.ril, pageSize: d.pgtable.granule, ds: this.f.ds });
    if (t.fallback) this.fallback = true;
    this.sink.issue(t.cmds, { sync: true });
    if (d.stage === 2 && d.children.size > 0) this.sink.issue([tlbiNhAll(d.vmid)], { sync: true });
    const atc: Uint32Array[] = [];
    for (const [sid, ssids] of d.attached) {
      const m = this.masters.get(sid);
      if (m === undefined || !m.ats) continue;
      if (d.stage === 1) {
        for (const ssid of ssids) atc.push(atcInv(sid, ssid > 0 ? ssid : undefined, g.iova, g.size));
      } else if (m.mode === 's2') {
        atc.push(atcInv(sid, undefined, g.iova, g.size));
      } else {
        // A nested stream's ATC holds VA → PA translations: any stage 2 change may affect any VA.
        atc.push(atcInv(sid, undefined, 0, 0));
      }
    }
    if (atc.length > 0) this.sink.issue(atc, { sync: true });
  }

  // -- inspection -------------------------------------------------------------------------------

  domainInfo(domainId: number): DomainInfo {
    const d = this.domain(domainId);
    const p = d.pgtable;
    const attached: string[] = [];
    for (const [sid, ssids] of d.attached) {
      if (ssids.size === 0) attached.push(key(sid));
      for (const s of ssids) attached.push(key(sid, s));
    }
    return {
      id: d.id,
      stage: d.stage,
      ...(d.asid !== undefined ? { asid: d.asid } : {}),
      vmid: d.vmid,
      granule: p.granule,
      ias: p.ias,
      oas: p.oas,
      startLevel: p.startLevel,
      levels: p.levels,
      pgd: p.pgd,
      pageSizes: p.pageSizes,
      fields: d.stage === 1 ? p.stage1Fields : p.stage2Fields,
      ...(d.parent !== undefined ? { parent: d.parent.id } : {}),
      attached,
    };
  }

  /** Forget every domain and master and give their tables back (after a reset made every STE invalid). */
  dropAll(): void {
    for (const m of this.masters.values()) m.cdTable?.destroy();
    for (const d of this.domains.values()) d.pgtable.destroy();
    this.masters.clear();
    this.domains.clear();
  }
}
