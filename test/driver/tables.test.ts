/**
 * Stream tables, CD tables, STE/CD builders and the §3.21.3.1 writers (src/driver/tables.ts), and
 * the command sequences of attach/detach (src/driver/domain.ts), against a recording CommandSink
 * (as Linux's KUnit tests check its STE/CD writer against a fake that records syncs).
 *
 * Expected words are derived by hand from the STE field positions of §5.2 (V [0], Config [3:1],
 * S1Fmt [5:4], S1ContextPtr [55:6], S1CDMax [63:59], S1DSS [65:64], S1CIR [67:66], S1COR [69:68],
 * S1CSH [71:70], MEV [83], S1STALLD [91], EATS [93:92], STRW [95:94], SHCFG [109:108],
 * S2VMID [143:128], S2T0SZ [165:160], S2SL0 [167:166], S2IR0 [169:168], S2OR0 [171:170],
 * S2SH0 [173:172], S2TG [175:174], S2PS [178:176], S2AA64 [179], S2PTW [182], S2R [186],
 * S2TTB [247:196]) and the CD's of §5.4 (T0SZ [5:0], TG0 [7:6], IR0 [9:8], OR0 [11:10],
 * SH0 [13:12], EPD1 [30], V [31], IPS [34:32], AA64 [41], R [45], A [46], ASET [47],
 * ASID [63:48], TTB0 [119:68], MAIR [255:192]); L1STD (§5.1: Span [4:0], L2Ptr [55:6]) and
 * L1CD (§5.3: V [0], L2Ptr [55:12]).
 */
import { describe, expect, it } from 'vitest';
import { Board, PAGE_64K } from '../../src/mem/board.ts';
import { PhysAllocator, PhysMem } from '../../src/mem/phys.ts';
import { TablePool, type Stage1Fields, type Stage2Fields } from '../../src/driver/pgtable.ts';
import {
  CdTable,
  StreamTable,
  cdStage1,
  cdUsedMask,
  steAbort,
  steBypass,
  steNested,
  steStage1,
  steStage2,
  steUsedMask,
  writeEntry,
  type CommandSink,
} from '../../src/driver/tables.ts';
import { DomainManager } from '../../src/driver/domain.ts';
import { decodeCommand, formatCommand } from '../../src/spec/command-codec.ts';
import { checkCommand } from '../../src/spec/legality.ts';
import { FULL_FEATURES, type SmmuFeatures } from '../../src/spec/features.ts';
import { REG, encode32 } from '../../src/spec/registers.ts';
import { CD, STE, decodeStructure } from '../../src/spec/structures.ts';

const RAM = 0x4000_0000;
const MIB = 1 << 20;

/** One issue() call: the commands as disassembled, and the STE/CD words at that moment. */
interface Issued {
  cmds: string[];
  sync: boolean;
  snap?: number[];
}

class RecordingSink implements CommandSink {
  readonly log: Issued[] = [];
  watch: (() => number[]) | undefined;
  constructor(private readonly features: SmmuFeatures = FULL_FEATURES) {}
  issue(cmds: readonly Uint32Array[], opts?: { sync?: boolean }): void {
    for (const c of cmds) {
      const v = checkCommand(c, this.features);
      if (!v.ok) throw new Error(`illegal command ${formatCommand(decodeCommand(c))}: ${v.finding.reason}`);
    }
    const e: Issued = { cmds: cmds.map((c) => formatCommand(decodeCommand(c))), sync: opts?.sync ?? true };
    if (this.watch !== undefined) e.snap = this.watch();
    this.log.push(e);
  }
  /** The commands, one string per command, with "SYNC" after each synced batch. */
  get flat(): string[] {
    return this.log.flatMap((e) => (e.sync ? [...e.cmds, 'SYNC'] : e.cmds));
  }
  clear(): void {
    this.log.length = 0;
  }
}

function setup(ramBytes = 2 * MIB) {
  const board = Board.create({ windows: [{ name: 'smmu', bytes: 2 * PAGE_64K, base: 0x0905_0000 }], ramBytes });
  const mem = new PhysMem(board);
  const pool = new TablePool(mem, new PhysAllocator(mem, RAM, RAM + ramBytes));
  const sink = new RecordingSink();
  return { mem, pool, sink };
}

const words = (w: Uint32Array): number[] => [...w];
const hexw = (w: ArrayLike<number>): string[] => Array.from(w, (x) => `0x${(x >>> 0).toString(16).padStart(8, '0')}`);

const CD_REF = { ptr: 0x4000_4000, s1fmt: 0, s1cdmax: 0 };
const S2: Stage2Fields = { S2TTB: 0x4000_6000, S2T0SZ: 24, S2SL0: 1, S2IR0: 1, S2OR0: 1, S2SH0: 3, S2TG: 0, S2PS: 5 };
const S1: Stage1Fields = { TTB0: 0x4000_8000, T0SZ: 16, TG0: 0, IR0: 1, OR0: 1, SH0: 3, IPS: 5, MAIR0: 0xf404ff44, MAIR1: 0 };

describe('STE builders (§5.2; Linux arm_smmu_make_*_ste)', () => {
  it('abort and bypass', () => {
    expect(hexw(steAbort()).slice(0, 4)).toEqual(['0x00000001', '0x00000000', '0x00000000', '0x00000000']);
    expect(words(steBypass()).slice(0, 4)).toEqual([0x9, 0, 0, 0]);
    // With SMMU_IDR1.ATTR_TYPES_OVR: SHCFG = 0b01 (use incoming) at [109:108] → word 3 bit 12.
    expect(words(steBypass({ attrTypesOvr: true })).slice(0, 4)).toEqual([0x9, 0, 0, 0x1000]);
  });

  it('stage 1: CD table pointer, S1DSS SSID0, WB-RA CD fetches, ISH, S1STALLD, EATS', () => {
    const ste = steStage1({ cd: CD_REF, stallDisable: true, ats: true });
    // word 0: V | Config 0b101 << 1 | S1ContextPtr bits [31:6]; word 2: S1DSS 2 | S1CIR 1 << 2 |
    // S1COR 1 << 4 | S1CSH 3 << 6 | S1STALLD 1 << 27 | EATS 1 << 28.
    expect(hexw(ste)).toEqual(hexw([0x4000_400b, 0, 0x1800_00d6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    expect(decodeStructure(STE, ste).fields).toMatchObject({ V: 1, Config: 0b101, S1ContextPtr: 0x4000_4000n, S1DSS: 2, S1CIR: 1, S1COR: 1, S1CSH: 3, S1STALLD: 1, EATS: 1, STRW: 0, S2VMID: 0 });
  });

  it('stage 1 with substreams: S1Fmt 2-level 64KB, S1CDMax 20, VMID', () => {
    const ste = steStage1({ cd: { ptr: 0x1_2340_0000, s1fmt: 2, s1cdmax: 20 }, vmid: 9 });
    // word 1: S1ContextPtr[55:32] = 1 | S1CDMax 20 << 27; word 4: S2VMID.
    expect(hexw(ste.slice(0, 5))).toEqual(hexw([0x2340_002b, 0xa000_0001, 0xd6, 0, 9]));
  });

  it('stage 2: VMID, the VTCR fields, S2AA64, S2PTW, S2R, S2TTB', () => {
    const ste = steStage2({ s2: S2, vmid: 3 });
    // word 5: S2T0SZ 24 | S2SL0 1 << 6 | S2IR0 1 << 8 | S2OR0 1 << 10 | S2SH0 3 << 12 | S2PS 5 << 16 |
    // S2AA64 1 << 19 | S2PTW 1 << 22 | S2R 1 << 26; word 6: S2TTB bits [31:4].
    expect(hexw(ste)).toEqual(hexw([0xd, 0, 0, 0, 3, 0x044d_3558, 0x4000_6000, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    expect(decodeStructure(STE, ste).fields).toMatchObject({ Config: 0b110, S2VMID: 3, S2T0SZ: 24, S2SL0: 1, S2PS: 5, S2AA64: 1, S2PTW: 1, S2R: 1, S2S: 0, S2TTB: 0x4000_6000n });
  });

  it('nested: Config 0b111, the stage 2 fields, the stage 1 CD fields and MEV', () => {
    const ste = steNested({ s2: S2, vmid: 3, cd: CD_REF, stallDisable: true });
    // word 2 adds MEV 1 << 19 to the stage 1 CD fetch fields and S1STALLD.
    expect(hexw(ste.slice(0, 8))).toEqual(hexw([0x4000_400f, 0, 0x0808_00d6, 0, 3, 0x044d_3558, 0x4000_6000, 0]));
  });
});

describe('CD builder (§5.4; Linux arm_smmu_make_s1_cd)', () => {
  it('TCR fields, EPD1, V, IPS, AA64, R, A, ASET, ASID, TTB0, MAIR', () => {
    const cd = cdStage1({ s1: S1, asid: 5 });
    // word 0: T0SZ 16 | IR0 1 << 8 | OR0 1 << 10 | SH0 3 << 12 | EPD1 1 << 30 | V 1 << 31;
    // word 1: IPS 5 | AA64 1 << 9 | R 1 << 13 | A 1 << 14 | ASET 1 << 15 | ASID 5 << 16;
    // word 2: TTB0 bits [31:4]; word 6: MAIR[31:0].
    expect(hexw(cd)).toEqual(hexw([0xc000_3510, 0x0005_e205, 0x4000_8000, 0, 0, 0, 0xf404_ff44, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    expect(decodeStructure(CD, cd).fields).toMatchObject({ T0SZ: 16, TG0: 0, EPD1: 1, V: 1, IPS: 5, AA64: 1, S: 0, R: 1, A: 1, ASET: 1, ASID: 5, TTB0: 0x4000_8000n, MAIR0: 0xf404ff44 });
    expect(decodeStructure(CD, cdStage1({ s1: S1, asid: 5, stall: true })).fields.S).toBe(1);
  });
});

describe('used bits (§5.2 IGNORED rules; §13.5)', () => {
  it('an invalid STE uses only V; abort V, Config, CONT; bypass the attribute overrides', () => {
    expect(hexw(steUsedMask(new Uint32Array(16)).slice(0, 4))).toEqual(hexw([1, 0, 0, 0]));
    // CONT [80:77] → word 2 bits 16:13.
    expect(hexw(steUsedMask(steAbort()).slice(0, 4))).toEqual(hexw([0xf, 0, 0x0001_e000, 0]));
    // + MemAttr [99:96], MTCFG [100], ALLOCCFG [104:101], SHCFG, NSCFG, PRIVCFG, INSTCFG [115:108].
    expect(hexw(steUsedMask(steBypass()).slice(0, 5))).toEqual(hexw([0xf, 0, 0x0001_e000, 0x000f_f1ff, 0]));
  });

  it('stage 1 ignores stage 2 fields but S2VMID (NS-EL1) and S2S; stage 2 ignores S1 fields and STRW', () => {
    const s1 = steUsedMask(steStage1({ cd: CD_REF }));
    expect(s1[4]).toBe(0xffff_ffff); // S2VMID and IMPDEF [159:144]
    expect(s1[5]).toBe(0xc200_0000); // S2S [185] and DPT_VMATCH [191:190], not the VTCR fields
    expect(s1[6]).toBe(0);
    expect((s1[3]! >>> 12) & 3).toBe(0); // SHCFG ignored (S1DSS != bypass)
    const s2 = steUsedMask(steStage2({ s2: S2, vmid: 3 }));
    expect(hexw([s2[0]!, s2[1]!])).toEqual(hexw([0xf, 0])); // no S1Fmt, S1ContextPtr, S1CDMax
    expect(s2[2]! >>> 30).toBe(0); // STRW ignored
  });

  it('a valid CD uses every bit, an invalid one only V', () => {
    expect(hexw(cdUsedMask(new Uint32Array(16)).slice(0, 2))).toEqual(hexw([0x8000_0000, 0]));
    expect(cdUsedMask(cdStage1({ s1: S1, asid: 1 })).every((w) => w === 0xffff_ffff)).toBe(true);
  });
});

describe('STE writer (§3.21.3.1; Linux arm_smmu_write_entry) on a linear stream table', () => {
  function ste() {
    const t = setup();
    const st = new StreamTable(t.mem, t.pool, { format: 'linear', log2Size: 4 });
    const read = (): number[] => words(st.readSte(3));
    t.sink.watch = read;
    return { ...t, st, read };
  }

  it('invalid → stage 1: every word but word 0, sync, then word 0 with V, sync', () => {
    const { st, sink } = ste();
    const r = st.writeSte(3, steStage1({ cd: CD_REF, stallDisable: true }), sink);
    expect(r).toEqual({ kind: 'hitless', steps: [[2], [0]] });
    expect(sink.log.map((e) => [e.cmds, e.sync])).toEqual([
      [['CFGI_STE sid=0x3 leaf=1'], true],
      [['CFGI_STE sid=0x3 leaf=1'], true],
    ]);
    // At the first invalidation the STE was still invalid, its word 2 already filled.
    expect(hexw(sink.log[0]!.snap!.slice(0, 3))).toEqual(hexw([0, 0, 0x0800_00d6]));
    expect(hexw(sink.log[1]!.snap!.slice(0, 3))).toEqual(hexw([0x4000_400b, 0, 0x0800_00d6]));
  });

  it('stage 1 → bypass: Config first (the S1 fields become IGNORED), then clear them', () => {
    const { st, sink } = ste();
    st.writeSte(3, steStage1({ cd: CD_REF, stallDisable: true }), sink);
    sink.clear();
    expect(st.writeSte(3, steBypass(), sink)).toEqual({ kind: 'hitless', steps: [[0], [2]] });
    expect(hexw(sink.log[0]!.snap!.slice(0, 3))).toEqual(hexw([0x9, 0, 0x0800_00d6]));
    expect(sink.flat).toEqual(['CFGI_STE sid=0x3 leaf=1', 'SYNC', 'CFGI_STE sid=0x3 leaf=1', 'SYNC']);
  });

  it('bypass (SHCFG incoming) → stage 1: S1 fields, then Config, then SHCFG cleared', () => {
    const { st, sink } = ste();
    st.writeSte(3, steBypass({ attrTypesOvr: true }), sink);
    sink.clear();
    expect(st.writeSte(3, steStage1({ cd: CD_REF, attrTypesOvr: true }), sink)).toEqual({ kind: 'hitless', steps: [[2], [0], [3]] });
    expect(hexw(sink.log[1]!.snap!.slice(0, 4))).toEqual(hexw([0x4000_400b, 0, 0xd6, 0x1000]));
  });

  it('stage 1 → stage 2 with a new VMID: two used words change → V = 0 first (breaking)', () => {
    const { st, sink } = ste();
    st.writeSte(3, steStage1({ cd: CD_REF }), sink);
    sink.clear();
    expect(st.writeSte(3, steStage2({ s2: S2, vmid: 3 }), sink)).toEqual({ kind: 'breaking', steps: [[0], [2, 4, 5, 6], [0]] });
    expect(sink.log[0]!.snap![0]).toBe(0);
    expect(hexw(sink.log[2]!.snap!.slice(0, 7))).toEqual(hexw([0xd, 0, 0, 0, 3, 0x044d_3558, 0x4000_6000]));
  });

  it('enabling ATS changes one word: a single write and sync', () => {
    const { st, sink } = ste();
    st.writeSte(3, steStage1({ cd: CD_REF }), sink);
    sink.clear();
    expect(st.writeSte(3, steStage1({ cd: CD_REF, ats: true }), sink)).toEqual({ kind: 'hitless', steps: [[2]] });
    expect(st.writeSte(3, steStage1({ cd: CD_REF, ats: true }), sink)).toEqual({ kind: 'none', steps: [] });
    expect(sink.flat).toEqual(['CFGI_STE sid=0x3 leaf=1', 'SYNC']);
  });

  it('32-bit store units break where Linux, with 64-bit stores, updates hitlessly', () => {
    const { st, sink } = ste();
    st.writeSte(3, steStage1({ cd: CD_REF }), sink);
    const bigger = steStage1({ cd: { ptr: 0x4001_0000, s1fmt: 2, s1cdmax: 20 } });
    // S1ContextPtr (word 0) and S1CDMax (word 1) both change: one qword, two words.
    const copy = setup();
    const st2 = new StreamTable(copy.mem, copy.pool, { format: 'linear', log2Size: 4 });
    st2.writeSte(3, steStage1({ cd: CD_REF }), copy.sink);
    expect(st.writeSte(3, bigger, sink).kind).toBe('breaking');
    expect(st2.writeSte(3, bigger, copy.sink, 2)).toEqual({ kind: 'hitless', steps: [[0, 1]] });
  });

  it('refuses a target that sets bits its own configuration ignores', () => {
    const { mem, sink } = setup();
    const bad = steBypass();
    bad[5] = 0x18; // S2T0SZ in a bypass STE
    expect(() => writeEntry(mem, RAM, bad, (w) => steUsedMask(w), () => sink.issue([]))).toThrow('target word 5 sets bits 0x18 its own configuration does not use');
  });
});

describe('CD writer (§3.21.3.1, §3.21.3 ASID example)', () => {
  function cd() {
    const t = setup();
    const table = new CdTable(t.mem, t.pool, { ssidBits: 4, cd2l: true });
    t.sink.watch = () => words(table.readCd(2));
    return { ...t, table };
  }

  it('invalid → valid: words 1.. first, then word 0 with V; CMD_CFGI_CD per StreamID', () => {
    const { table, sink } = cd();
    expect(table.writeCd(2, cdStage1({ s1: S1, asid: 5 }), sink, [7, 9])).toEqual({ kind: 'hitless', steps: [[1, 2, 6], [0]] });
    expect(sink.log[0]!.cmds).toEqual(['CFGI_CD sid=0x7 ssid=0x2 leaf=1', 'CFGI_CD sid=0x9 ssid=0x2 leaf=1']);
    expect(sink.log[0]!.snap![0]).toBe(0);
    expect(sink.log).toHaveLength(2);
  });

  it('an ASID change alone is one word: written in place (§3.21.3)', () => {
    const { table, sink } = cd();
    table.writeCd(2, cdStage1({ s1: S1, asid: 5 }), sink, [7]);
    sink.clear();
    expect(table.writeCd(2, cdStage1({ s1: S1, asid: 6 }), sink, [7])).toEqual({ kind: 'hitless', steps: [[1]] });
    expect(sink.flat).toEqual(['CFGI_CD sid=0x7 ssid=0x2 leaf=1', 'SYNC']);
  });

  it('ASID and TTB0 together: V = 0, the rest, V = 1', () => {
    const { table, sink } = cd();
    table.writeCd(2, cdStage1({ s1: S1, asid: 5 }), sink, [7]);
    sink.clear();
    expect(table.writeCd(2, cdStage1({ s1: { ...S1, TTB0: 0x4001_0000 }, asid: 6 }), sink, [7])).toEqual({ kind: 'breaking', steps: [[0], [1, 2], [0]] });
    expect(sink.log[0]!.snap![0]).toBe(0);
  });

  it('removal: V = 0 first, then the other words cleared', () => {
    const { table, sink } = cd();
    table.writeCd(2, cdStage1({ s1: S1, asid: 5 }), sink, [7]);
    sink.clear();
    expect(table.writeCd(2, new Uint32Array(16), sink, [7])).toEqual({ kind: 'hitless', steps: [[0], [1, 2, 6]] });
  });
});

describe('2-level stream table (SPLIT 8, §5.1, §6.3.25)', () => {
  it('level 2 arrays on demand: L1STD Span 9, then the non-leaf CMD_CFGI_STE', () => {
    const { mem, pool, sink } = setup();
    const st = new StreamTable(mem, pool, { format: '2-level', log2Size: 16 });
    // 256 L1STDs: 2KB at RAM. SMMU_STRTAB_BASE_CFG: FMT 1 [17:16], SPLIT 8 [10:6], LOG2SIZE 16.
    expect(st.base).toBe(RAM);
    expect(encode32(REG.SMMU_STRTAB_BASE_CFG, st.cfg)).toBe(0x0001_0210);
    expect(st.steAddress(0x1234)).toBeUndefined();
    const pa = st.ensureSte(0x1234, sink);
    // The 16KB level 2 array at the next 16KB boundary; STE 0x34 of it.
    expect(pa).toBe(0x4000_4000 + 0x34 * 64);
    // L1STD 0x12 at RAM + 0x90: Span 9 | L2Ptr.
    expect([mem.read32(RAM + 0x90), mem.read32(RAM + 0x94)]).toEqual([0x4000_4009, 0]);
    expect(sink.flat).toEqual(['CFGI_STE sid=0x1234', 'SYNC']);
    sink.clear();
    expect(st.ensureSte(0x12ff, sink)).toBe(0x4000_4000 + 0xff * 64);
    expect(sink.log).toEqual([]);
    expect(() => st.steAddress(0x1_0000)).toThrow('StreamID 65536 is outside the stream table (LOG2SIZE 16)');
    st.clear();
    expect(mem.read32(RAM + 0x90)).toBe(0);
    expect(pool.pooled).toEqual({ 16384: 1 });
  });

  it('a linear table: FMT 0, SPLIT 0, aligned to its size', () => {
    const { mem, pool } = setup();
    pool.alloc(64, 64);
    const st = new StreamTable(mem, pool, { format: 'linear', log2Size: 8 });
    expect(st.base).toBe(RAM + 0x4000);
    expect(encode32(REG.SMMU_STRTAB_BASE_CFG, st.cfg)).toBe(0x8);
  });
});

describe('CD tables (§5.2 S1Fmt, §5.3)', () => {
  it('up to 1024 SubstreamIDs: linear; more with CD2L: L1CDs and 64KB leaf tables', () => {
    const { mem, pool, sink } = setup(4 * MIB);
    const lin = new CdTable(mem, pool, { ssidBits: 10, cd2l: true });
    expect(lin.ref).toEqual({ ptr: RAM, s1fmt: 0, s1cdmax: 10 });
    const two = new CdTable(mem, pool, { ssidBits: 20, cd2l: true });
    // After the 64KB linear table: an 8KB L1CD table (1024 entries).
    expect(two.ref).toEqual({ ptr: RAM + 0x1_0000, s1fmt: 2, s1cdmax: 20 });
    const pa = two.ensureCd(0x1_2345, sink, [4]);
    // L1 index 0x48; leaf table at the next 64KB boundary (RAM + 0x2_0000); CD 0x345 of it.
    expect(pa).toBe(RAM + 0x2_0000 + 0x345 * 64);
    expect([mem.read32(RAM + 0x1_0000 + 0x48 * 8), mem.read32(RAM + 0x1_0000 + 0x48 * 8 + 4)]).toEqual([0x4002_0001, 0]);
    expect(sink.flat).toEqual(['CFGI_CD sid=0x4 ssid=0x12345', 'SYNC']);
    // Without CD2L the table stays linear whatever its size.
    expect(new CdTable(mem, pool, { ssidBits: 11, cd2l: false }).ref.s1fmt).toBe(0);
  });
});

describe('attach and detach command sequences (domain.ts)', () => {
  function dm(features: SmmuFeatures = FULL_FEATURES, attrTypesOvr = false) {
    const t = setup(4 * MIB);
    const st = new StreamTable(t.mem, t.pool, { format: 'linear', log2Size: 8 });
    const sink = new RecordingSink(features);
    const m = new DomainManager({ mem: t.mem, alloc: t.pool, features, attrTypesOvr, streamTable: st, sink });
    return { ...t, sink, st, m };
  }
  const STE3 = 'CFGI_STE sid=0x3 leaf=1';

  it('stage 1: a fresh CD table needs no CFGI_CD; the STE goes in with two syncs', () => {
    const { m, sink, st } = dm();
    const r = m.attachStage1(3, { asid: 5, granule: 4096, ias: 48, oas: 48 });
    expect(r).toMatchObject({ domain: 1, sid: 3, cd: { kind: 'hitless', steps: [[1, 2, 6], [0]] }, ste: { kind: 'hitless' }, commands: 2 });
    expect(sink.flat).toEqual([STE3, 'SYNC', STE3, 'SYNC']);
    const ste = decodeStructure(STE, st.readSte(3)).fields;
    // FULL_FEATURES: STALL_MODEL 0b00 → S1STALLD for a master that does not stall.
    expect(ste).toMatchObject({ V: 1, Config: 0b101, S1DSS: 2, S1STALLD: 1, S1CDMax: 0 });
    expect(m.domainInfo(1)).toMatchObject({ stage: 1, asid: 5, vmid: 0, attached: ['3:0'] });
  });

  it('a new domain on a live CD: the CD is rewritten (V = 0 first), then the old ASID is invalidated', () => {
    const { m, sink } = dm();
    m.attachStage1(3, { asid: 5, granule: 4096, ias: 48, oas: 48 });
    sink.clear();
    const r = m.attachStage1(3, { asid: 6, granule: 4096, ias: 48, oas: 48 });
    expect(r.cd?.kind).toBe('breaking');
    expect(r.ste.kind).toBe('none');
    const CD3 = 'CFGI_CD sid=0x3 leaf=1';
    expect(sink.flat).toEqual([CD3, 'SYNC', CD3, 'SYNC', CD3, 'SYNC', 'TLBI_NH_ASID vmid=0x0 asid=0x5', 'SYNC']);
    expect(m.domainInfo(1).attached).toEqual([]);
    expect(m.domainInfo(2).attached).toEqual(['3:0']);
  });

  it('stage 1 → stage 2 → bypass → detach', () => {
    const { m, sink, pool } = dm(FULL_FEATURES, true);
    m.attachStage1(3, { asid: 5, granule: 4096, ias: 48, oas: 48 });
    sink.clear();
    const s2 = m.attachStage2(3, { vmid: 1, granule: 4096, ipaBits: 40 });
    // New VMID in word 4 and Config in word 0: breaking. The CD table goes back to the pool.
    expect(s2.ste).toEqual({ kind: 'breaking', steps: [[0], [2, 3, 4, 5, 6], [0]] });
    expect(pool.pooled).toEqual({ 64: 1 });
    sink.clear();
    // Both use SHCFG = incoming (word 3): Config first, then the stage 2 words cleared.
    expect(m.attachBypass(3).ste).toEqual({ kind: 'hitless', steps: [[0], [4, 5, 6]] });
    sink.clear();
    // Bypass → abort: Config only (SHCFG, which abort ignores, cleared after).
    expect(m.detach(3)).toEqual({ ste: { kind: 'hitless', steps: [[0], [3]] }, commands: 2 });
    expect(sink.flat).toEqual([STE3, 'SYNC', STE3, 'SYNC']);
  });

  it('a PASID: a CD table of SSIDSIZE bits, 2-level; detach of the SubstreamID alone', () => {
    const { m, sink, st } = dm();
    const r = m.attachStage1(3, { ssid: 0x45, asid: 7, granule: 4096, ias: 48, oas: 48 });
    expect(r.ssid).toBe(0x45);
    expect(decodeStructure(STE, st.readSte(3)).fields).toMatchObject({ S1Fmt: 2, S1CDMax: 20 });
    sink.clear();
    expect(m.detach(3, 0x45)).toEqual({ cd: { kind: 'hitless', steps: [[0], [1, 2, 6]] }, commands: 3 });
    const CD = 'CFGI_CD sid=0x3 ssid=0x45 leaf=1';
    expect(sink.flat).toEqual([CD, 'SYNC', CD, 'SYNC', 'TLBI_NH_ASID vmid=0x0 asid=0x7', 'SYNC']);
  });

  it('nested: the stage 1 tables and the CD table are mapped at IPA == PA in the parent', () => {
    const { m, st, mem } = dm();
    const p = m.attachStage2(4, { vmid: 2, granule: 4096, ipaBits: 40 });
    const n = m.attachNested(3, { s2: p.domain, asid: 9, granule: 4096, ias: 48 });
    const info = m.domainInfo(n.domain);
    expect(info).toMatchObject({ stage: 1, asid: 9, vmid: 2, parent: p.domain, oas: 40 });
    const ste = decodeStructure(STE, st.readSte(3)).fields;
    expect(ste).toMatchObject({ Config: 0b111, S2VMID: 2, MEV: 1 });
    const cdPtr = Number(ste.S1ContextPtr);
    expect(m.iovaToPhys(p.domain, cdPtr)).toBe(cdPtr);
    expect(m.iovaToPhys(p.domain, info.pgd)).toBe(info.pgd);
    m.map(n.domain, 0x1000, 0x8000_0000, 0x1000, { read: true, write: true });
    // The new stage 1 level 1-3 tables were mapped in the parent as they were allocated.
    let table = info.pgd;
    for (let level = 0; level < 3; level++) {
      table = (mem.read32(table) & ~0xfff) >>> 0;
      expect(m.iovaToPhys(p.domain, table)).toBe(table);
    }
    expect(m.iovaToPhys(n.domain, 0x1234)).toBe(0x8000_0234);
  });

  it('STALL_MODEL: forced stalls set CD.S and never S1STALLD (§5.4 CdIllegal, §5.2 S1STALLD)', () => {
    const { m, st, mem } = dm({ ...FULL_FEATURES, stallModel: 'stall-forced' });
    m.attachStage1(3, { asid: 1, granule: 4096, ias: 48, oas: 48 });
    const ste = decodeStructure(STE, st.readSte(3)).fields;
    expect(ste.S1STALLD).toBe(0);
    expect(decodeStructure(CD, mem.readBytes(Number(ste.S1ContextPtr), 64)).fields.S).toBe(1);
    expect(() => m.attachStage1(4, { asid: 2, granule: 4096, ias: 48, oas: 48, stall: false })).toThrow('the SMMU forces stalls (SMMU_IDR0.STALL_MODEL == 0b10): CD.S == 0 would be ILLEGAL');
  });

  it('refuses what the SMMU or Linux would refuse', () => {
    const { m } = dm();
    m.attachStage1(3, { asid: 5, granule: 4096, ias: 48, oas: 48 });
    expect(() => m.attachStage1(4, { asid: 5, granule: 4096, ias: 48, oas: 48 })).toThrow('ASID 5 (VMID 0) already belongs to domain 1');
    expect(() => m.attachStage2(4, { vmid: 0, granule: 4096, ipaBits: 40 })).toThrow(/VMID 0 tags stage 1-only streams/);
    expect(() => m.attachStage1(3, { ssid: 1, asid: 6, granule: 4096, ias: 48, oas: 48 })).toThrow(/SubstreamID 1 does not fit StreamID 3's CD table \(S1CDMax 0\)/);
    expect(() => m.enableAts(5)).toThrow('StreamID 5 does not translate (abort): STE.EATS would be IGNORED');
    const noStall = dm({ ...FULL_FEATURES, stallModel: 'no-stall' });
    expect(() => noStall.m.attachStage1(3, { asid: 1, granule: 4096, ias: 48, oas: 48, stall: true })).toThrow('the SMMU cannot stall (SMMU_IDR0.STALL_MODEL == 0b01): CD.S == 1 would be ILLEGAL');
    const no16k = dm({ ...FULL_FEATURES, gran16k: false });
    expect(() => no16k.m.attachStage1(3, { asid: 1, granule: 16384, ias: 48, oas: 48 })).toThrow('the SMMU does not support the 16KB granule (SMMU_IDR5.GRAN*)');
  });
});
