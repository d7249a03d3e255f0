/**
 * Invalidation commands (src/driver/invalidate.ts) and the sequences a domain's unmap issues
 * (src/driver/domain.ts), then the whole guest path (GuestDriver: reset with a 2-level stream
 * table, attach, map, unmap, ATS) against the SMMU model run in this thread.
 *
 * Range encoding (§4.4.1.1): NUM [16:12], SCALE [25:20], Leaf [64], TTL [73:72], TG [75:74]
 * (1 = 4KB, 2 = 16KB, 3 = 64KB); Range = (NUM + 1) * 2^SCALE * granule; NUM = SCALE = TTL = 0 with
 * TG != 0 is Reserved. VMID [47:32], ASID [63:48], Address[63:12] at [127:76] (§4.1.6).
 * CMD_ATC_INV (§4.5.1): span 4KB * 2^Size at an address aligned to it; Size 52 = everything.
 */
import { describe, expect, it } from 'vitest';
import { Board } from '../../src/mem/board.ts';
import { MmioPort } from '../../src/mem/mmio.ts';
import { PhysAllocator, PhysMem } from '../../src/mem/phys.ts';
import { WaitTimeout, type WaitPolicy } from '../../src/mem/wait.ts';
import { SmmuDevice } from '../../src/device/smmu.ts';
import { GuestDriver, type RegisterPort } from '../../src/driver/driver.ts';
import { DomainManager } from '../../src/driver/domain.ts';
import { atcInv, atcSpan, cfgiCd, cfgiSte, maxTlbiOps, tlbiContext, tlbiNhAll, tlbiRange, ttlFor, type TlbiScope } from '../../src/driver/invalidate.ts';
import { TablePool } from '../../src/driver/pgtable.ts';
import { StreamTable, type CommandSink } from '../../src/driver/tables.ts';
import { decodeCommand, formatCommand } from '../../src/spec/command-codec.ts';
import { checkCommand } from '../../src/spec/legality.ts';
import { FULL_FEATURES, type SmmuFeatures } from '../../src/spec/features.ts';
import { REG, smmuRegWindow } from '../../src/spec/registers.ts';
import { STE, decodeStructure } from '../../src/spec/structures.ts';

const KIB = 1024;
const MIB = 1 << 20;
const RAM = 0x4000_0000;
const NH: TlbiScope = { regime: 'nh', asid: 5, vmid: 0 };
const RIL4K = { ril: true, pageSize: 4 * KIB };

const fmt = (c: Uint32Array): string => formatCommand(decodeCommand(c));
/** Every command must be legal on the full-featured SMMU (no CERROR_ILL, nothing out of range). */
function legal(cmds: readonly Uint32Array[], f: SmmuFeatures = FULL_FEATURES): string[] {
  return cmds.map((c) => {
    const v = checkCommand(c, f);
    expect(v.ok ? [] : [v.finding.reason]).toEqual([]);
    expect(v.outOfRange).toEqual([]);
    return fmt(c);
  });
}

describe('range TLBI with RIL (Linux __arm_smmu_tlb_inv_range)', () => {
  it('35 4KB pages: (SCALE 0, NUM 2) then (SCALE 5, NUM 0), exact words', () => {
    const r = tlbiRange(NH, 0x1_0000, 35 * 4 * KIB, 4 * KIB, true, RIL4K);
    expect(r.fallback).toBe(false);
    // word 0: opcode 0x12 | NUM << 12 | SCALE << 20; word 1: ASID 5 << 16; word 2: Address[31:12]
    // | TG 1 << 10 | TTL 3 << 8 | Leaf.
    expect(r.cmds.map((c) => [...c])).toEqual([
      [0x0000_2012, 0x0005_0000, 0x0001_0701, 0],
      [0x0050_0012, 0x0005_0000, 0x0001_3701, 0],
    ]);
    expect(legal(r.cmds)).toEqual([
      'TLBI_NH_VA vmid=0x0 asid=0x5 addr=0x10000 leaf=1 tg=4K num=2 ttl=3',
      'TLBI_NH_VA vmid=0x0 asid=0x5 addr=0x13000 leaf=1 tg=4K scale=5 ttl=3',
    ]);
  });

  it('1000 pages: 232 (SCALE 3, NUM 28) then 768 (SCALE 8, NUM 2)', () => {
    const r = tlbiRange(NH, 0, 1000 * 4 * KIB, 4 * KIB, true, RIL4K);
    expect(r.cmds.map((c) => decodeCommand(c).fields)).toMatchObject([
      { NUM: 28, SCALE: 3, Address: 0n },
      { NUM: 2, SCALE: 8, Address: 232n * 4096n },
    ]);
  });

  it('TTL names the level of the leaf: 4KB → 3, 2MB → 2, 1GB → 1; 16KB/32MB and 64KB/512MB', () => {
    expect([ttlFor(4 * KIB, 4 * KIB), ttlFor(2 * MIB, 4 * KIB), ttlFor(1024 * MIB, 4 * KIB)]).toEqual([3, 2, 1]);
    expect([ttlFor(16 * KIB, 16 * KIB), ttlFor(32 * MIB, 16 * KIB)]).toEqual([3, 2]);
    expect([ttlFor(64 * KIB, 64 * KIB), ttlFor(512 * MIB, 64 * KIB)]).toEqual([3, 2]);
    // Two 2MB blocks = 1024 pages: SCALE 10, NUM 0, TTL 2.
    expect(legal(tlbiRange(NH, 0x4000_0000, 4 * MIB, 2 * MIB, true, RIL4K).cmds)).toEqual(['TLBI_NH_VA vmid=0x0 asid=0x5 addr=0x40000000 leaf=1 tg=4K scale=10 ttl=2']);
    // One 32MB block of a 16KB table: 2048 pages, SCALE 11, TG 16KB.
    expect(legal(tlbiRange(NH, 0x200_0000, 32 * MIB, 32 * MIB, true, { ril: true, pageSize: 16 * KIB }).cmds)).toEqual([
      'TLBI_NH_VA vmid=0x0 asid=0x5 addr=0x2000000 leaf=1 tg=16K scale=11 ttl=2',
    ]);
    expect(legal(tlbiRange(NH, 0x1_0000, 64 * KIB, 64 * KIB, true, { ril: true, pageSize: 64 * KIB }).cmds)).toEqual([
      'TLBI_NH_VA vmid=0x0 asid=0x5 addr=0x10000 leaf=1 tg=64K ttl=3',
    ]);
  });

  it('non-leaf (a table went): TTL 0, and a count of 1 mod 32 grows by a page (no Reserved NUM=SCALE=TTL=0)', () => {
    // 1 page → 2: SCALE 1 (the lowest set bit of 2), NUM 0.
    expect(legal(tlbiRange(NH, 0x1000, 4 * KIB, 4 * KIB, false, RIL4K).cmds)).toEqual(['TLBI_NH_VA vmid=0x0 asid=0x5 addr=0x1000 tg=4K scale=1']);
    // 33 pages → 34: one command, SCALE 1, NUM 16.
    expect(legal(tlbiRange(NH, 0, 33 * 4 * KIB, 4 * KIB, false, RIL4K).cmds)).toEqual(['TLBI_NH_VA vmid=0x0 asid=0x5 addr=0x0 tg=4K num=16 scale=1']);
    // A 2MB table: 512 pages, SCALE 9.
    expect(legal(tlbiRange(NH, 0x20_0000, 2 * MIB, 4 * KIB, false, RIL4K).cmds)).toEqual(['TLBI_NH_VA vmid=0x0 asid=0x5 addr=0x200000 tg=4K scale=9']);
  });

  it('stage 2 (TLBI_S2_IPA, VMID), EL2 (TLBI_EL2_VA, ASID), nested stage 1 (TLBI_NH_VA, ASID and VMID)', () => {
    expect(legal(tlbiRange({ regime: 's2', vmid: 3 }, 0x8000_0000, 8 * KIB, 4 * KIB, true, RIL4K).cmds)).toEqual(['TLBI_S2_IPA vmid=0x3 addr=0x80000000 leaf=1 tg=4K scale=1 ttl=3']);
    expect(legal(tlbiRange({ regime: 'el2', asid: 4 }, 0x8000, 4 * KIB, 4 * KIB, true, RIL4K).cmds)).toEqual(['TLBI_EL2_VA asid=0x4 addr=0x8000 leaf=1 tg=4K ttl=3']);
    expect(legal(tlbiRange({ regime: 'nh', asid: 4, vmid: 2 }, 0x8000, 4 * KIB, 4 * KIB, true, RIL4K).cmds)).toEqual(['TLBI_NH_VA vmid=0x2 asid=0x4 addr=0x8000 leaf=1 tg=4K ttl=3']);
  });

  it('size 0 means the whole context', () => {
    const r = tlbiRange({ regime: 's2', vmid: 3 }, 0, 0, 4 * KIB, true, RIL4K);
    expect([r.fallback, legal(r.cmds)]).toEqual([true, ['TLBI_S12_VMALL vmid=0x3']]);
    expect(legal([...tlbiContext(NH), ...tlbiContext({ regime: 'el2', asid: 4 }), tlbiNhAll(3)])).toEqual(['TLBI_NH_ASID vmid=0x0 asid=0x5', 'TLBI_EL2_ASID asid=0x4', 'TLBI_NH_ALL vmid=0x3']);
  });
});

describe('TLBI without RIL, and the CMDQ_MAX_TLBI_OPS fallback', () => {
  const NORIL = { ril: false, pageSize: 4 * KIB };
  it('one single-address command per leaf, TG = NUM = SCALE = TTL = 0', () => {
    const noRil = { ...FULL_FEATURES, ril: false };
    expect(legal(tlbiRange(NH, 0x1_0000, 3 * 4 * KIB, 4 * KIB, true, NORIL).cmds, noRil)).toEqual([
      'TLBI_NH_VA vmid=0x0 asid=0x5 addr=0x10000 leaf=1',
      'TLBI_NH_VA vmid=0x0 asid=0x5 addr=0x11000 leaf=1',
      'TLBI_NH_VA vmid=0x0 asid=0x5 addr=0x12000 leaf=1',
    ]);
    expect(tlbiRange(NH, 0, 4 * MIB, 2 * MIB, true, { ...NORIL, fallback: false }).cmds.map(fmt)).toEqual([
      'TLBI_NH_VA vmid=0x0 asid=0x5 addr=0x0 leaf=1',
      'TLBI_NH_VA vmid=0x0 asid=0x5 addr=0x200000 leaf=1',
    ]);
  });

  it('511 pages: 511 commands; 512 pages (a table of 4KB pages): one TLBI_NH_ASID', () => {
    expect(maxTlbiOps(4 * KIB)).toBe(512);
    expect(tlbiRange(NH, 0, 511 * 4 * KIB, 4 * KIB, true, NORIL).cmds).toHaveLength(511);
    const r = tlbiRange(NH, 0, 512 * 4 * KIB, 4 * KIB, true, NORIL);
    expect([r.fallback, r.cmds.map(fmt)]).toEqual([true, ['TLBI_NH_ASID vmid=0x0 asid=0x5']]);
    // With 64KB pages the limit is 8192 pages (512MB).
    expect(maxTlbiOps(64 * KIB)).toBe(8192);
    expect(tlbiRange({ regime: 's2', vmid: 1 }, 0, 512 * MIB, 64 * KIB, true, { ril: false, pageSize: 64 * KIB }).cmds.map(fmt)).toEqual(['TLBI_S12_VMALL vmid=0x1']);
  });
});

describe('configuration and ATC commands', () => {
  it('CMD_CFGI_STE / CMD_CFGI_CD with Leaf', () => {
    expect(legal([cfgiSte(0x1234), cfgiSte(0x1234, false), cfgiCd(3, 0x45), cfgiCd(3, 0x45, false)])).toEqual([
      'CFGI_STE sid=0x1234 leaf=1',
      'CFGI_STE sid=0x1234',
      'CFGI_CD sid=0x3 ssid=0x45 leaf=1',
      'CFGI_CD sid=0x3 ssid=0x45',
    ]);
    // CMD_CFGI_STE (§4.3.1): opcode 0x03, StreamID [63:32], Leaf [64].
    expect([...cfgiSte(0x1234)]).toEqual([0x03, 0x1234, 1, 0]);
  });

  it('ATC span: the smallest aligned power of two of 4KB pages covering the range', () => {
    expect(atcSpan(0x8000, 0x4000)).toEqual({ address: 0x8000, size: 2 }); // pages 8..11
    expect(atcSpan(0x7000, 0x4000)).toEqual({ address: 0, size: 4 }); // pages 7..10 → 0..15
    expect(atcSpan(0x5000, 0x1000)).toEqual({ address: 0x5000, size: 0 });
    // Pages 0xfffff and 0x100000 differ first in bit 20: a 2^21-page span from 0.
    expect(atcSpan(0xffff_f000, 0x2000)).toEqual({ address: 0, size: 21 });
    expect(atcSpan(0, 0)).toEqual({ address: 0, size: 52 });
  });

  it('CMD_ATC_INV without a SubstreamID (SSV 0) or with one', () => {
    expect(legal([atcInv(3, undefined, 0x7000, 0x4000), atcInv(3, 0x45, 0x8000, 0x4000), atcInv(3, undefined, 0, 0)])).toEqual([
      'ATC_INV sid=0x3 addr=0x0 size=4',
      'ATC_INV sid=0x3 ssid=0x45 ssv=1 addr=0x8000 size=2',
      'ATC_INV sid=0x3 addr=0x0 size=52',
    ]);
  });
});

// ---------------------------------------------------------------------------------------------
// Domain unmap sequences, against a recording sink
// ---------------------------------------------------------------------------------------------

class Recorder implements CommandSink {
  readonly flat: string[] = [];
  constructor(private readonly f: SmmuFeatures) {}
  issue(cmds: readonly Uint32Array[], opts?: { sync?: boolean }): void {
    this.flat.push(...legal(cmds, this.f));
    if (opts?.sync ?? true) this.flat.push('SYNC');
  }
}

function dm(f: SmmuFeatures = FULL_FEATURES) {
  const board = Board.create({ windows: [{ name: 'smmu', bytes: smmuRegWindow(f), base: 0x0905_0000 }], ramBytes: 4 * MIB });
  const mem = new PhysMem(board);
  const pool = new TablePool(mem, new PhysAllocator(mem, RAM, RAM + 4 * MIB));
  const st = new StreamTable(mem, pool, { format: 'linear', log2Size: 8 });
  const sink = new Recorder(f);
  const m = new DomainManager({ mem, alloc: pool, features: f, attrTypesOvr: false, streamTable: st, sink });
  return { m, sink, st };
}

describe('domain unmap: TLBI then ATC_INV, each batch with a CMD_SYNC', () => {
  it('35 pages of a stage 1 domain, with ATS enabled on its stream', () => {
    const { m, sink } = dm();
    const d = m.attachStage1(3, { asid: 5, granule: 4096, ias: 48, oas: 48 }).domain;
    expect(m.enableAts(3).ste.kind).toBe('hitless');
    m.map(d, 0x1_0000, 0x8000_0000, 35 * 4 * KIB, { read: true, write: true, cache: true });
    sink.flat.length = 0;
    const r = m.unmap(d, 0x1_0000, 35 * 4 * KIB);
    expect(r).toMatchObject({ unmapped: 35 * 4 * KIB, gathers: [{ iova: 0x1_0000, size: 35 * 4 * KIB, granule: 4 * KIB, leaf: true }], walks: [], commands: 3, fallback: false });
    expect(sink.flat).toEqual([
      'TLBI_NH_VA vmid=0x0 asid=0x5 addr=0x10000 leaf=1 tg=4K num=2 ttl=3',
      'TLBI_NH_VA vmid=0x0 asid=0x5 addr=0x13000 leaf=1 tg=4K scale=5 ttl=3',
      'SYNC',
      // Pages 0x10..0x32: the span 0x00..0x3f (Size 6).
      'ATC_INV sid=0x3 addr=0x0 size=6',
      'SYNC',
    ]);
  });

  it('a removed table is flushed at once (non-leaf), before the leaves gathered after it', () => {
    const { m, sink } = dm();
    const d = m.attachStage1(3, { asid: 5, granule: 4096, ias: 48, oas: 48 }).domain;
    m.map(d, 0x20_0000, 0x8030_1000, 2 * MIB + 4 * KIB, { read: true, write: true });
    sink.flat.length = 0;
    const r = m.unmap(d, 0x20_0000, 2 * MIB + 4 * KIB);
    expect(r.walks).toEqual([{ iova: 0x20_0000, size: 2 * MIB, granule: 4 * KIB, leaf: false }]);
    expect(sink.flat).toEqual(['TLBI_NH_VA vmid=0x0 asid=0x5 addr=0x200000 tg=4K scale=9', 'SYNC', 'TLBI_NH_VA vmid=0x0 asid=0x5 addr=0x400000 leaf=1 tg=4K ttl=3', 'SYNC']);
  });

  it('a stage 2 nest parent: TLBI_S2_IPA, then TLBI_NH_ALL for its VMID (§4.4.3.1)', () => {
    const { m, sink } = dm();
    const p = m.attachStage2(4, { vmid: 2, granule: 4096, ipaBits: 40 }).domain;
    m.attachNested(3, { s2: p, asid: 9, granule: 4096, ias: 48 });
    m.map(p, 0x8000_0000, 0x8000_0000, 2 * MIB, { read: true, write: true, cache: true });
    sink.flat.length = 0;
    m.unmap(p, 0x8000_0000, 2 * MIB);
    expect(sink.flat).toEqual(['TLBI_S2_IPA vmid=0x2 addr=0x80000000 leaf=1 tg=4K scale=9 ttl=2', 'SYNC', 'TLBI_NH_ALL vmid=0x2', 'SYNC']);
  });

  it('without RIL: one command per page, and the VMID-wide fallback', () => {
    const f = { ...FULL_FEATURES, ril: false };
    const { m, sink } = dm(f);
    const d = m.attachStage2(4, { vmid: 2, granule: 4096, ipaBits: 40 }).domain;
    m.map(d, 0, 0x8000_0000, 2 * MIB, { read: true, write: true, cache: true });
    m.map(d, 4 * MIB, 0x9000_0000, 8 * KIB, { read: true });
    sink.flat.length = 0;
    expect(m.unmap(d, 4 * MIB, 8 * KIB).fallback).toBe(false);
    expect(m.unmap(d, 0, 2 * MIB).fallback).toBe(true);
    expect(sink.flat).toEqual(['TLBI_S2_IPA vmid=0x2 addr=0x400000 leaf=1', 'TLBI_S2_IPA vmid=0x2 addr=0x401000 leaf=1', 'SYNC', 'TLBI_S12_VMALL vmid=0x2', 'SYNC']);
  });
});

// ---------------------------------------------------------------------------------------------
// The whole path against the SMMU model, in this thread
// ---------------------------------------------------------------------------------------------

/**
 * The driver's RegisterPort over the real MMIO FIFO, with the SMMU model serviced in this thread
 * before every access: the driver's waits become polls of a device that runs when polled.
 */
class PumpedPort implements RegisterPort {
  constructor(private readonly port: MmioPort, private readonly dev: SmmuDevice) {}
  write32(off: number, v: number): void {
    this.port.write32(off, v);
    this.dev.service();
  }
  write64Parts(off: number, lo: number, hi: number): void {
    this.port.write64Parts(off, lo, hi);
    this.dev.service();
  }
  read32(off: number): number {
    this.dev.service();
    return this.port.read32(off);
  }
  peek32(off: number): number {
    this.dev.service();
    return this.port.peek32(off);
  }
  waitReg(off: number, ready: (v: number) => boolean, describe: () => string): number {
    for (let polls = 1; polls <= 1000; polls++) {
      this.dev.service();
      if (ready(this.port.peek32(off))) return polls;
    }
    throw new WaitTimeout(describe(), 0);
  }
  drainOwn(): void {
    this.dev.service();
    this.port.drainOwn();
  }
}

describe('GuestDriver against the SMMU model', () => {
  const POLICY: WaitPolicy = { mode: 'hybrid', spin: 100, timeoutMs: 2000 };
  function system(f: SmmuFeatures, strtabLog2?: number) {
    const board = Board.create({ windows: [{ name: 'smmu', bytes: smmuRegWindow(f), base: 0x0905_0000 }], ramBytes: 4 * MIB });
    const dev = new SmmuDevice(board, { features: f, policy: POLICY });
    const port = new PumpedPort(new MmioPort(board, 'smmu', POLICY), dev);
    const drv = new GuestDriver(board, { policy: POLICY, syncMode: 'cons', ram: { start: RAM, end: RAM + 4 * MIB }, port, ...(strtabLog2 !== undefined ? { strtabLog2 } : {}) });
    drv.reset();
    return { board, dev, drv, mem: drv.mem };
  }

  it('reset: a 2-level stream table when ST_LEVEL allows it and more than 8 StreamID bits are covered', () => {
    const { drv, dev } = system(FULL_FEATURES, 16);
    // SMMU_STRTAB_BASE_CFG (§6.3.25): FMT 2-level [17:16], SPLIT 8 [10:6], LOG2SIZE 16.
    expect(drv.port.read32(REG.SMMU_STRTAB_BASE_CFG.offset)).toBe(0x0001_0210);
    expect(drv.port.read32(REG.SMMU_STRTAB_BASE.offset)).toBe(RAM);
    void dev;
    expect(drv.streamTable).toEqual({ format: '2-level', log2Size: 16, split: 8, base: RAM, level2: {} });
    const { drv: lin } = system({ ...FULL_FEATURES, stLevel2: false, sidSize: 6 });
    expect(lin.port.read32(REG.SMMU_STRTAB_BASE_CFG.offset)).toBe(6);
    expect(lin.streamTable?.format).toBe('linear');
  });

  it('attach, map, enable ATS, unmap, detach: every command consumed without error', () => {
    const { drv, mem } = system(FULL_FEATURES, 16);
    const doorbells0 = drv.counters.doorbells;
    const a = drv.attachStage1(0x1234, { asid: 5, granule: 4096, ias: 48, oas: 48 });
    // The level 2 array came first: CFGI_STE (Leaf 0) + SYNC, then the STE with two CFGI_STE + SYNC.
    expect(a.commands).toBe(3);
    // RAM: level 1 table (2KB), command queue (4KB at +0x1000), event queue (4KB at +0x2000), the
    // domain's start table (+0x3000), its CD table (+0x4000), then the 16KB level 2 array.
    expect(drv.streamTable?.level2).toEqual({ 0x12: RAM + 0x8000 });
    const ste = new Uint32Array(16);
    mem.readWords(RAM + 0x8000 + 0x34 * 64, ste);
    expect(decodeStructure(STE, ste).fields).toMatchObject({ V: 1, Config: 0b101, S1DSS: 2 });
    drv.map(a.domain, 0x1_0000, 0x8000_0000, 35 * 4 * KIB, { read: true, write: true, cache: true });
    expect(drv.iovaToPhys(a.domain, 0x1_0123)).toBe(0x8000_0123);
    expect(drv.enableAts(0x1234).commands).toBe(2);
    const u = drv.unmap(a.domain, 0x1_0000, 35 * 4 * KIB);
    expect(u).toMatchObject({ unmapped: 35 * 4 * KIB, commands: 3, fallback: false });
    expect(drv.detach(0x1234).commands).toBe(3); // Config, clear the rest, ATC_INV
    const s2 = drv.attachStage2(0x1235, { vmid: 7, granule: 65536, ipaBits: 48 });
    drv.map(s2.domain, 0, 0x8000_0000, 512 * MIB, { read: true, write: true });
    expect(drv.unmap(s2.domain, 0, 512 * MIB).commands).toBe(1);
    expect(drv.log).toEqual([]);
    expect(drv.counters.doorbells).toBeGreaterThan(doorbells0);
    expect(drv.domainInfo(s2.domain)).toMatchObject({ stage: 2, vmid: 7, granule: 65536, startLevel: 1, fields: { S2TG: 1, S2SL0: 0b10, S2T0SZ: 16 } });
  });

  it('reset forgets domains and empties the stream table', () => {
    const { drv } = system(FULL_FEATURES, 16);
    drv.attachBypass(0x300);
    expect(Object.keys(drv.streamTable!.level2)).toEqual(['3']);
    drv.reset();
    expect(drv.streamTable!.level2).toEqual({});
    expect(() => drv.domainInfo(1)).toThrow('no domain 1');
  });
});
