/**
 * The guest driver against FakeSmmu: a small synchronous stand-in for the SMMU that plays the
 * register interface (RegisterPort) in the test's own thread and consumes commands from the real
 * physical memory of a board. It applies CR0/IRQ_CTRL writes to their ACK registers at once,
 * completes GBPA updates at once, and consumes commands either on the doorbell ("eager") or a
 * few per poll of a register wait ("lazy", to make the driver wait for queue space). Command
 * errors follow §7.1: CONS stays on the command, CONS.ERR takes the code, GERROR.CMDQ_ERR
 * toggles, consumption stops until GERRORN is written.
 *
 * Register values in expectations are hand-derived from the field positions of §6.3 (cited per
 * test); command words from §4.7.3 (CMD_SYNC), §4.3.6 (CMD_CFGI_ALL: 0x04, Range [68:64] = 31).
 */
import { describe, expect, it } from 'vitest';
import { Board, HDR, PAGE_64K } from '../../src/mem/board.ts';
import { PhysMem } from '../../src/mem/phys.ts';
import { WaitTimeout, type WaitPolicy } from '../../src/mem/wait.ts';
import * as ring from '../../src/ring/index.ts';
import { GuestDriver, type DriverOptions, type RegisterPort } from '../../src/driver/driver.ts';
import { fieldGet } from '../../src/spec/bits.ts';
import { CERROR_ABT, CERROR_ATC_INV_SYNC, CERROR_ILL } from '../../src/spec/cerror.ts';
import { decodeCommand, encodeCommandWords } from '../../src/spec/command-codec.ts';
import { CS_SIG_IRQ, OP } from '../../src/spec/commands.ts';
import { FULL_FEATURES, type SmmuFeatures } from '../../src/spec/features.ts';
import { idrFromFeatures } from '../../src/spec/idr.ts';
import { REG, findRegister, modelResetValue, regGet, regSet } from '../../src/spec/registers.ts';

const RAM_BASE = 0x4000_0000;
const hex = (v: number): string => `0x${(v >>> 0).toString(16).padStart(8, '0')}`;
const O = {
  CR0: REG.SMMU_CR0.offset,
  CR0ACK: REG.SMMU_CR0ACK.offset,
  GBPA: REG.SMMU_GBPA.offset,
  IRQ_CTRL: REG.SMMU_IRQ_CTRL.offset,
  IRQ_CTRLACK: REG.SMMU_IRQ_CTRLACK.offset,
  GERROR: REG.SMMU_GERROR.offset,
  GERRORN: REG.SMMU_GERRORN.offset,
  CMDQ_BASE: REG.SMMU_CMDQ_BASE.offset,
  CMDQ_PROD: REG.SMMU_CMDQ_PROD.offset,
  CMDQ_CONS: REG.SMMU_CMDQ_CONS.offset,
  EVENTQ_PROD: REG.SMMU_EVENTQ_PROD.offset,
};
const GERROR_BIT = {
  CMDQ_ERR: 1 << REG.SMMU_GERROR.f.CMDQ_ERR.lsb,
  MSI_CMDQ_ABT_ERR: 1 << REG.SMMU_GERROR.f.MSI_CMDQ_ABT_ERR.lsb,
  SFM_ERR: 1 << REG.SMMU_GERROR.f.SFM_ERR.lsb,
};

/** Returns a CERROR code for the command at queue pointer `ptr`, or 0 to consume it. */
type Fault = (words: readonly number[], ptr: number) => number;

class FakeSmmu implements RegisterPort {
  readonly regs = new Map<number, number>();
  /** Every register write, in order, as "NAME = value". */
  readonly writes: string[] = [];
  /** Every read32, by register name. */
  readonly reads: string[] = [];
  /** Every command consumed, as the four words fetched. */
  readonly consumed: number[][] = [];
  /** Doorbells that moved PROD more than a queue ahead of CONS (overwriting unconsumed entries). */
  readonly overruns: string[] = [];
  eager = true;
  perTick = 1;
  ackCr0 = true;
  /** 'write': perform CMD_SYNC MSIs; 'drop': lose them silently; 'abort': report MSI_CMDQ_ABT_ERR. */
  msi: 'write' | 'drop' | 'abort' = 'write';
  fault: Fault = () => 0;

  constructor(readonly board: Board, readonly mem: PhysMem, f: SmmuFeatures) {
    const idr = idrFromFeatures(f);
    this.set(REG.SMMU_IDR0.offset, idr.IDR0);
    this.set(REG.SMMU_IDR1.offset, idr.IDR1);
    this.set(REG.SMMU_IDR2.offset, idr.IDR2);
    this.set(REG.SMMU_IDR3.offset, idr.IDR3);
    this.set(REG.SMMU_IDR4.offset, idr.IDR4);
    this.set(REG.SMMU_IDR5.offset, idr.IDR5);
    this.set(REG.SMMU_IDR6.offset, idr.IDR6);
    this.set(REG.SMMU_IIDR.offset, idr.IIDR);
    this.set(REG.SMMU_AIDR.offset, idr.AIDR);
    this.set(O.GBPA, Number(modelResetValue(REG.SMMU_GBPA)));
  }

  get(off: number): number {
    return this.regs.get(off) ?? 0;
  }
  set(off: number, v: number): void {
    this.regs.set(off, v >>> 0);
  }
  private name(off: number): string {
    return findRegister(off)?.name ?? hex(off);
  }

  write32(off: number, value: number): void {
    const v = value >>> 0;
    this.writes.push(`${this.name(off)} = ${hex(v)}`);
    switch (off) {
      case O.CR0:
        this.set(O.CR0, v);
        if (this.ackCr0) this.set(O.CR0ACK, v);
        break;
      case O.IRQ_CTRL:
        this.set(O.IRQ_CTRL, v);
        this.set(O.IRQ_CTRLACK, v);
        break;
      case O.GBPA:
        // §6.3.14.1 (SMMUv3.2+): a write without Update is IGNORED; the update completes at once.
        if (regGet(v, REG.SMMU_GBPA.f.Update) !== 0) this.set(O.GBPA, regSet(v, REG.SMMU_GBPA.f.Update, 0));
        break;
      case O.CMDQ_PROD: {
        const log2 = this.cmdqLog2();
        if (ring.used(v, this.get(O.CMDQ_CONS), log2) > ring.entries(log2)) this.overruns.push(`PROD ${hex(v)} CONS ${hex(this.get(O.CMDQ_CONS))}`);
        this.set(O.CMDQ_PROD, v);
        if (this.eager) this.consume(Number.POSITIVE_INFINITY);
        break;
      }
      case O.GERRORN:
        this.set(O.GERRORN, v);
        if (this.eager) this.consume(Number.POSITIVE_INFINITY);
        break;
      default:
        this.set(off, v);
    }
  }

  write64Parts(off: number, lo: number, hi: number): void {
    this.writes.push(`${this.name(off)} = 0x${(hi >>> 0).toString(16).padStart(8, '0')}${(lo >>> 0).toString(16).padStart(8, '0')}`);
    this.set(off, lo);
    this.set(off + 4, hi);
  }

  read32(off: number): number {
    this.reads.push(this.name(off));
    return this.get(off);
  }
  peek32(off: number): number {
    return this.get(off);
  }
  waitReg(off: number, ready: (v: number) => boolean, describe: () => string, _policy?: WaitPolicy): number {
    for (let polls = 0; polls < 256; polls++) {
      if (ready(this.get(off))) return polls;
      if (!this.eager) this.consume(this.perTick);
    }
    throw new WaitTimeout(describe(), 0);
  }
  drainOwn(): void {}

  cmdqLog2(): number {
    return regGet(this.get(O.CMDQ_BASE), REG.SMMU_CMDQ_BASE.f.LOG2SIZE);
  }

  /** Consume up to `limit` commands, as §4.1 and §7.1 describe. */
  consume(limit: number): void {
    if (regGet(this.get(O.CR0ACK), REG.SMMU_CR0.f.CMDQEN) === 0) return;
    if (((this.get(O.GERROR) ^ this.get(O.GERRORN)) & GERROR_BIT.CMDQ_ERR) !== 0) return;
    const log2 = this.cmdqLog2();
    const base = Number(fieldGet(Uint32Array.of(this.get(O.CMDQ_BASE), this.get(O.CMDQ_BASE + 4)), REG.SMMU_CMDQ_BASE.f.ADDR));
    const prod = this.get(O.CMDQ_PROD);
    let cons = this.get(O.CMDQ_CONS) & ring.ptrMask(log2);
    for (let n = 0; n < limit && !ring.isEmpty(prod, cons, log2); n++) {
      const words: number[] = [];
      this.mem.readWords(base + ring.idx(cons, log2) * 16, words, 4);
      const code = this.fault(words, cons);
      if (code !== 0) {
        // §7.1: CONS.ERR before GERROR; CONS stays on the command.
        this.set(O.CMDQ_CONS, regSet(cons, REG.SMMU_CMDQ_CONS.f.ERR, code));
        this.set(O.GERROR, this.get(O.GERROR) ^ GERROR_BIT.CMDQ_ERR);
        this.board.raiseIrq(HDR.IRQ_GERROR);
        return;
      }
      this.consumed.push(words);
      cons = ring.inc(cons, 1, log2);
      this.set(O.CMDQ_CONS, cons);
      const d = decodeCommand(words);
      if (d.opcode === OP.CMD_SYNC && d.fields.CS === CS_SIG_IRQ && d.fields.MSIAddress !== 0n) {
        if (this.msi === 'write') this.mem.storeNotify32(Number(d.fields.MSIAddress), Number(d.fields.MSIData));
        if (this.msi === 'abort') this.set(O.GERROR, this.get(O.GERROR) ^ GERROR_BIT.MSI_CMDQ_ABT_ERR);
      }
    }
  }
}

const POLICY: WaitPolicy = { mode: 'hybrid', spin: 100, timeoutMs: 200 };

function setup(o: Partial<DriverOptions> & { features?: SmmuFeatures; eager?: boolean } = {}) {
  const board = Board.create({ windows: [{ name: 'smmu', bytes: 2 * PAGE_64K, base: 0x0905_0000 }], ramBytes: 1 << 20 });
  const mem = new PhysMem(board);
  const dev = new FakeSmmu(board, mem, o.features ?? FULL_FEATURES);
  if (o.eager !== undefined) dev.eager = o.eager;
  const drv = new GuestDriver(board, {
    policy: POLICY,
    syncMode: 'cons',
    ram: { start: RAM_BASE, end: RAM_BASE + (1 << 20) },
    ...o,
    port: dev,
  });
  return { board, mem, dev, drv };
}

const tlbi = (asid: number): Uint32Array => encodeCommandWords({ name: 'CMD_TLBI_NH_ASID', ASID: asid, VMID: 7 });
const SEV_SYNC = [0x0fc0_2046, 0, 0, 0];
const CFGI_ALL = [0x04, 0, 0x1f, 0];
const EL2_ALL = [0x20, 0, 0, 0];
const NSNH_ALL = [0x30, 0, 0, 0];
const msiSync = (pa: number): number[] => [0x0fc0_1046, 0, pa, 0];
const words = (c: Uint32Array): number[] => [...c];

describe('probe (§6.3.1-§6.3.8, §6.3.45)', () => {
  it('derives the features the ID registers describe', () => {
    const { drv, dev } = setup();
    expect(drv.probe()).toEqual(FULL_FEATURES);
    expect(drv.features).toEqual(FULL_FEATURES);
    expect(dev.reads).toEqual(['SMMU_IDR1', 'SMMU_IDR0', 'SMMU_IDR2', 'SMMU_IDR3', 'SMMU_IDR4', 'SMMU_IDR5', 'SMMU_IDR6', 'SMMU_IIDR', 'SMMU_AIDR']);
  });

  it('does not read SMMU_IDR6 when IDR1.ECMDQ == 0 (it is RES0 then)', () => {
    const f = { ...FULL_FEATURES, ecmdq: false, ecmdqLog2NumQ: 0 };
    const { drv, dev } = setup({ features: f });
    expect(drv.probe()).toEqual(f);
    expect(dev.reads).not.toContain('SMMU_IDR6');
  });
});

describe('reset (§3.11, fact sheet §11)', () => {
  it('programs the SMMU in Linux order with values from the register fields', () => {
    const { drv, dev } = setup();
    drv.reset();
    expect(dev.writes).toEqual([
      'SMMU_CR0 = 0x00000000',
      // CR1 (§6.3.11): TABLE_SH ISH 3<<10, TABLE_OC WB 1<<8, TABLE_IC WB 1<<6, QUEUE_SH 3<<4, QUEUE_OC 1<<2, QUEUE_IC 1.
      'SMMU_CR1 = 0x00000d75',
      // CR2 (§6.3.12): RECINVSID (bit 1); no PTM without BTM.
      'SMMU_CR2 = 0x00000002',
      // STRTAB_BASE (§6.3.24): RA bit 62 | 256 STEs * 64 B at RAM start.
      'SMMU_STRTAB_BASE = 0x4000000040000000',
      // STRTAB_BASE_CFG (§6.3.25): FMT linear 0, LOG2SIZE 8.
      'SMMU_STRTAB_BASE_CFG = 0x00000008',
      // CMDQ_BASE (§6.3.26): RA | 0x4000_4000 (4 KiB aligned) | LOG2SIZE 8.
      'SMMU_CMDQ_BASE = 0x4000000040004008',
      'SMMU_CMDQ_PROD = 0x00000000',
      'SMMU_CMDQ_CONS = 0x00000000',
      'SMMU_CR0 = 0x00000008',
      // CFGI_ALL + SYNC, TLBI_EL2_ALL + SYNC (Hyp), TLBI_NSNH_ALL + SYNC: one doorbell each.
      'SMMU_CMDQ_PROD = 0x00000002',
      'SMMU_CMDQ_PROD = 0x00000004',
      'SMMU_CMDQ_PROD = 0x00000006',
      // EVENTQ_BASE (§6.3.29): WA bit 62 | 0x4000_5000 | LOG2SIZE 7.
      'SMMU_EVENTQ_BASE = 0x4000000040005007',
      'SMMU_EVENTQ_PROD = 0x00000000',
      'SMMU_EVENTQ_CONS = 0x00000000',
      'SMMU_CR0 = 0x0000000c',
      // ATSCHK (bit 4) with ATS.
      'SMMU_CR0 = 0x0000001c',
      'SMMU_IRQ_CTRL = 0x00000000',
      'SMMU_GERROR_IRQ_CFG0 = 0x0000000000000000',
      'SMMU_EVENTQ_IRQ_CFG0 = 0x0000000000000000',
      'SMMU_PRIQ_IRQ_CFG0 = 0x0000000000000000',
      // IRQ_CTRL (§6.3.16): EVENTQ_IRQEN bit 2 | GERROR_IRQEN bit 0.
      'SMMU_IRQ_CTRL = 0x00000005',
      'SMMU_CR0 = 0x0000001d',
    ]);
    expect(dev.consumed).toEqual([CFGI_ALL, SEV_SYNC, EL2_ALL, SEV_SYNC, NSNH_ALL, SEV_SYNC]);
    expect(drv.cmdq).toEqual({ base: 0x4000_4000, log2: 8, prod: 6 });
    expect(drv.tables).toEqual({ strtab: { base: RAM_BASE, log2: 8 }, eventq: { base: 0x4000_5000, log2: 7, cons: 0 } });
  });

  it('skips TLBI_EL2_ALL without Hyp, ATSCHK without ATS, PRIQ_IRQ_CFG0 without PRI; SIG_NONE without SEV', () => {
    const f = { ...FULL_FEATURES, hyp: false, ats: false, pri: false, sev: false };
    const { drv, dev } = setup({ features: f });
    drv.reset();
    expect(dev.consumed).toEqual([CFGI_ALL, [0x0fc0_0046, 0, 0, 0], NSNH_ALL, [0x0fc0_0046, 0, 0, 0]]);
    expect(dev.writes).not.toContain('SMMU_CR0 = 0x0000001c');
    expect(dev.writes).not.toContain('SMMU_PRIQ_IRQ_CFG0 = 0x0000000000000000');
    expect(dev.writes.at(-1)).toBe('SMMU_CR0 = 0x0000000d');
  });

  it('in MSI mode aims each CMD_SYNC MSI at its own slot (§4.7.3; Linux MSIPOLL)', () => {
    const { drv, dev, mem } = setup({ syncMode: 'msi' });
    drv.reset();
    // Syncs at pointers 1, 3, 5 of the queue at 0x4000_4000: slots at +0x10, +0x30, +0x50.
    expect(dev.consumed).toEqual([CFGI_ALL, msiSync(0x4000_4010), EL2_ALL, msiSync(0x4000_4030), NSNH_ALL, msiSync(0x4000_4050)]);
    // The SMMU's MSI wrote MSIData 0 over each sync's first word.
    expect(mem.read32(0x4000_4010)).toBe(0);
    expect(mem.read32(0x4000_4014)).toBe(0);
    expect(mem.read32(0x4000_4018)).toBe(0x4000_4010);
  });

  it('sets GBPA.ABORT with the Update protocol first when SMMUEN is set (§6.3.14.1)', () => {
    const { drv, dev } = setup();
    dev.set(O.CR0, 1);
    dev.set(O.CR0ACK, 1);
    drv.reset();
    // GBPA reset 0x0000_1000 (SHCFG use incoming) | ABORT bit 20 | Update bit 31.
    expect(dev.writes.slice(0, 2)).toEqual(['SMMU_GBPA = 0x80101000', 'SMMU_CR0 = 0x00000000']);
    expect(dev.get(O.GBPA)).toBe(0x0010_1000);
  });

  it('names the register, the value written and the value read when an ACK never comes', () => {
    const { drv, dev } = setup();
    dev.ackCr0 = false;
    expect(() => drv.reset()).toThrow(
      new WaitTimeout('SMMU_CR0ACK to read 0x00000008 after writing SMMU_CR0 = 0x00000008; SMMU_CR0ACK reads 0x00000000', 0),
    );
  });

  it("refuses 'msi' mode on an SMMU without MSIs", () => {
    const { drv } = setup({ syncMode: 'msi', features: { ...FULL_FEATURES, msi: false, ecmdq: false } });
    expect(() => drv.reset()).toThrow("syncMode 'msi' needs SMMU_IDR0.MSI == 1, but this SMMU has no MSIs: use syncMode 'cons'");
  });

  it('refuses queue sizes above the IDR1 maxima', () => {
    const { drv } = setup({ cmdqLog2: 6, features: { ...FULL_FEATURES, cmdqs: 5 } });
    expect(() => drv.reset()).toThrow('cmdqLog2 6 must be an integer in 0..5');
  });
});

describe('issue: batches of 64, one doorbell each, the CMD_SYNC last (fact sheet A1 Batching)', () => {
  function newWrites(dev: FakeSmmu, from: number): string[] {
    return dev.writes.slice(from);
  }

  it('130 commands: 64 without a sync, 64 without, 2 with the sync', () => {
    const { drv, dev } = setup();
    drv.reset();
    const w0 = dev.writes.length;
    const c0 = dev.consumed.length;
    const cmds = Array.from({ length: 130 }, (_, i) => tlbi(i));
    const res = drv.issue(cmds);
    expect(res).toEqual({ commands: 130, batches: 3, doorbells: 3, polls: 0, errors: [] });
    // PROD starts at 6 after reset: 6 + 64 = 0x46, + 64 = 0x86, + 2 + sync = 0x89.
    expect(newWrites(dev, w0)).toEqual(['SMMU_CMDQ_PROD = 0x00000046', 'SMMU_CMDQ_PROD = 0x00000086', 'SMMU_CMDQ_PROD = 0x00000089']);
    expect(dev.consumed.slice(c0)).toEqual([...cmds.map(words), SEV_SYNC]);
    expect(drv.counters.doorbells).toBe(3 + 3);
    expect(drv.counters.syncs).toBe(3 + 1);
  });

  it('64 commands are one batch with the sync (65 entries); 65 are two', () => {
    const { drv, dev } = setup();
    drv.reset();
    let w0 = dev.writes.length;
    expect(drv.issue(Array.from({ length: 64 }, (_, i) => tlbi(i)))).toMatchObject({ batches: 1, doorbells: 1 });
    expect(newWrites(dev, w0)).toEqual(['SMMU_CMDQ_PROD = 0x00000047']);
    w0 = dev.writes.length;
    expect(drv.issue(Array.from({ length: 65 }, (_, i) => tlbi(i)))).toMatchObject({ batches: 2, doorbells: 2 });
    expect(newWrites(dev, w0)).toEqual(['SMMU_CMDQ_PROD = 0x00000087', 'SMMU_CMDQ_PROD = 0x00000089']);
  });

  it('without sync: no CMD_SYNC and no wait', () => {
    const { drv, dev } = setup();
    drv.reset();
    const c0 = dev.consumed.length;
    const cmds = Array.from({ length: 128 }, (_, i) => tlbi(i));
    expect(drv.issue(cmds, { sync: false })).toEqual({ commands: 128, batches: 2, doorbells: 2, polls: 0, errors: [] });
    expect(dev.consumed.slice(c0)).toEqual(cmds.map(words));
    expect(drv.issue([], { sync: false })).toEqual({ commands: 0, batches: 0, doorbells: 0, polls: 0, errors: [] });
  });

  it('sync() is a lone CMD_SYNC', () => {
    const { drv, dev } = setup();
    drv.reset();
    const w0 = dev.writes.length;
    expect(drv.sync()).toEqual({ commands: 0, batches: 1, doorbells: 1, polls: 0, errors: [] });
    expect(newWrites(dev, w0)).toEqual(['SMMU_CMDQ_PROD = 0x00000007']);
    expect(dev.consumed.at(-1)).toEqual(SEV_SYNC);
  });

  it('wraps the queue: PROD carries into the wrap bit (§3.5.1)', () => {
    const { drv, dev } = setup({ cmdqLog2: 7 });
    drv.reset();
    const c0 = dev.consumed.length;
    const cmds = Array.from({ length: 200 }, (_, i) => tlbi(i));
    drv.issue(cmds);
    // 6 + 201 = 207 entries: wrap bit (bit 7) set once and cleared again at 256: pointer 207 & 0xff = 0xcf.
    expect(drv.cmdq.prod).toBe(0xcf);
    expect(dev.consumed.slice(c0)).toEqual([...cmds.map(words), SEV_SYNC]);
  });

  it('splits a batch larger than a tiny queue into queue-sized pieces, each with a doorbell', () => {
    const { drv, dev } = setup({ cmdqLog2: 2 });
    drv.reset();
    const w0 = dev.writes.length;
    const c0 = dev.consumed.length;
    const cmds = Array.from({ length: 10 }, (_, i) => tlbi(i));
    expect(drv.issue(cmds)).toEqual({ commands: 10, batches: 1, doorbells: 3, polls: 0, errors: [] });
    // log2 2: pointers mod 8. 6 + 4 = 10 -> 2, + 4 -> 6, + 3 -> 9 -> 1.
    expect(newWrites(dev, w0)).toEqual(['SMMU_CMDQ_PROD = 0x00000002', 'SMMU_CMDQ_PROD = 0x00000006', 'SMMU_CMDQ_PROD = 0x00000001']);
    expect(dev.consumed.slice(c0)).toEqual([...cmds.map(words), SEV_SYNC]);
  });

  it('waits for space and never overwrites unconsumed entries when the SMMU is slow', () => {
    const { drv, dev } = setup({ cmdqLog2: 7, eager: false });
    dev.perTick = 3;
    drv.reset();
    const c0 = dev.consumed.length;
    const cmds = Array.from({ length: 300 }, (_, i) => tlbi(i));
    const res = drv.issue(cmds);
    expect(res.batches).toBe(5);
    expect(res.doorbells).toBe(5);
    expect(res.polls).toBeGreaterThan(0);
    expect(dev.overruns).toEqual([]);
    expect(dev.consumed.slice(c0)).toEqual([...cmds.map(words), SEV_SYNC]);
  });

  it('refuses commands that are not four words', () => {
    const { drv } = setup();
    drv.reset();
    expect(() => drv.issue([new Uint32Array(3)])).toThrow('command 0 has 3 words, not 4');
  });
});

describe('command errors (§7.1; Linux arm_smmu_cmdq_skip_err)', () => {
  const BAD = [0x0000_ab00, 0x11, 0x22, 0x33]; // opcode 0x00: the fake calls it illegal

  it('CERROR_ILL: the slot at CONS.RD becomes a CMD_SYNC, GERRORN := GERROR, waiting goes on', () => {
    const { drv, dev, mem } = setup({ syncMode: 'msi' });
    drv.reset();
    dev.fault = (w) => ((w[0]! & 0xff) === 0 ? CERROR_ILL : 0);
    const c0 = dev.consumed.length;
    const a = tlbi(1);
    const b = tlbi(2);
    const res = drv.issue([a, Uint32Array.from(BAD), b]);
    // The bad command is at pointer 7 (PROD was 6).
    expect(res.errors).toEqual([{ index: 7, code: CERROR_ILL, name: 'CERROR_ILL' }]);
    expect(drv.log).toEqual([
      { kind: 'gerror', active: 1, errors: ['CMDQ_ERR'] },
      { kind: 'cmdq-skip', cons: 7, code: CERROR_ILL, name: 'CERROR_ILL', words: BAD, replacement: SEV_SYNC },
    ]);
    expect(dev.writes).toContain('SMMU_GERRORN = 0x00000001');
    expect(dev.consumed.slice(c0)).toEqual([words(a), SEV_SYNC, words(b), msiSync(0x4000_4000 + 9 * 16)]);
    expect([mem.read32(0x4000_4070), mem.read32(0x4000_4074)]).toEqual([0x0fc0_2046, 0]);
    expect(drv.counters.errorsRecovered).toBe(1);
  });

  it('CERROR_ABT: nothing is rewritten, the acknowledged SMMU refetches the same command', () => {
    const { drv, dev } = setup();
    drv.reset();
    let aborted = false;
    dev.fault = (_w, ptr) => (ptr === 7 && !aborted ? ((aborted = true), CERROR_ABT) : 0);
    const c0 = dev.consumed.length;
    const cmds = [tlbi(1), tlbi(2), tlbi(3)];
    const res = drv.issue(cmds);
    expect(res.errors).toEqual([{ index: 7, code: CERROR_ABT, name: 'CERROR_ABT' }]);
    expect(drv.log).toEqual([
      { kind: 'gerror', active: 1, errors: ['CMDQ_ERR'] },
      { kind: 'cmdq-retry', cons: 7, code: CERROR_ABT, name: 'CERROR_ABT' },
    ]);
    expect(dev.consumed.slice(c0)).toEqual([...cmds.map(words), SEV_SYNC]);
  });

  it('CERROR_ATC_INV_SYNC: the CMD_SYNC is retried', () => {
    const { drv, dev } = setup();
    drv.reset();
    let failed = false;
    dev.fault = (w) => ((w[0]! & 0xff) === OP.CMD_SYNC && !failed ? ((failed = true), CERROR_ATC_INV_SYNC) : 0);
    const c0 = dev.consumed.length;
    const res = drv.issue([tlbi(1)]);
    expect(res.errors).toEqual([{ index: 7, code: CERROR_ATC_INV_SYNC, name: 'CERROR_ATC_INV_SYNC' }]);
    expect(dev.consumed.slice(c0)).toEqual([words(tlbi(1)), SEV_SYNC]);
  });

  it('MSI mode: when the CMD_SYNC itself is replaced, the driver waits on CONS instead', () => {
    const { drv, dev } = setup({ syncMode: 'msi' });
    drv.reset();
    let failed = false;
    dev.fault = (w) => ((w[0]! & 0xff) === OP.CMD_SYNC && !failed ? ((failed = true), CERROR_ILL) : 0);
    const c0 = dev.consumed.length;
    const res = drv.issue([tlbi(1)]);
    expect(res.errors).toEqual([{ index: 7, code: CERROR_ILL, name: 'CERROR_ILL' }]);
    expect(drv.log.at(-1)).toEqual({ kind: 'msi-fallback', sync: 7, reason: 'the CMD_SYNC was replaced after CERROR_ILL' });
    expect(dev.consumed.slice(c0)).toEqual([words(tlbi(1)), SEV_SYNC]);
  });

  it('MSI mode: an aborted CMD_SYNC MSI (GERROR.MSI_CMDQ_ABT_ERR) falls back to CONS', () => {
    const { drv, dev } = setup({ syncMode: 'msi' });
    drv.reset();
    dev.msi = 'abort';
    const res = drv.issue([tlbi(1)]);
    expect(res.errors).toEqual([]);
    expect(drv.log).toEqual([
      { kind: 'gerror', active: GERROR_BIT.MSI_CMDQ_ABT_ERR, errors: ['MSI_CMDQ_ABT_ERR'] },
      { kind: 'msi-fallback', sync: 7, reason: 'GERROR.MSI_CMDQ_ABT_ERR: a CMD_SYNC MSI write aborted' },
    ]);
    expect(dev.get(O.GERRORN)).toBe(GERROR_BIT.MSI_CMDQ_ABT_ERR);
  });

  it('SFM_ERR: the driver disables the SMMU and refuses to issue', () => {
    const { drv, dev } = setup();
    drv.reset();
    dev.set(O.GERROR, GERROR_BIT.SFM_ERR);
    const w0 = dev.writes.length;
    expect(drv.handleGerror()).toEqual({ active: GERROR_BIT.SFM_ERR });
    expect(dev.writes.slice(w0)).toEqual(['SMMU_CR0 = 0x00000000', 'SMMU_GERRORN = 0x00000100']);
    expect(drv.log).toEqual([{ kind: 'gerror', active: 0x100, errors: ['SFM_ERR'] }, { kind: 'service-failure', gerror: 0x100 }]);
    expect(() => drv.sync()).toThrow('the SMMU entered Service Failure Mode and the driver disabled it; reset() first');
  });

  it('handleGerror with nothing active writes nothing', () => {
    const { drv, dev } = setup();
    drv.reset();
    const w0 = dev.writes.length;
    expect(drv.handleGerror()).toEqual({ active: 0 });
    expect(dev.writes.length).toBe(w0);
  });
});

describe('wait timeouts name PROD, CONS (with ERR) and GERROR/GERRORN', () => {
  it('cons mode: the CMD_SYNC never consumed', () => {
    const { drv, dev } = setup({ eager: false });
    drv.reset();
    dev.perTick = 0;
    expect(() => drv.issue([tlbi(1)])).toThrow(
      new WaitTimeout(
        'SMMU_CMDQ_CONS to pass the CMD_SYNC at command queue pointer 0x00000007: SMMU_CMDQ_PROD 0x00000008 (driver prod 0x00000008), ' +
          'SMMU_CMDQ_CONS 0x00000006 (RD 0x00000006, ERR 0 CERROR_NONE), SMMU_GERROR 0x00000000, SMMU_GERRORN 0x00000000 (active 0x00000000)',
        0,
      ),
    );
  });

  it('a CONS.ERR without GERROR.CMDQ_ERR (an SMMU bug) shows in the message', () => {
    const { drv, dev } = setup();
    drv.reset();
    dev.eager = false;
    dev.perTick = 0;
    dev.set(O.CMDQ_CONS, regSet(6, REG.SMMU_CMDQ_CONS.f.ERR, CERROR_ILL));
    expect(() => drv.issue([tlbi(1)])).toThrow('SMMU_CMDQ_CONS 0x01000006 (RD 0x00000006, ERR 1 CERROR_ILL)');
  });

  it('MSI mode: the MSI never written (a real timed wait on the slot)', () => {
    const { drv, dev } = setup({ syncMode: 'msi', policy: { mode: 'wait', spin: 0, timeoutMs: 30 } });
    drv.reset();
    dev.msi = 'drop';
    expect(() => drv.issue([tlbi(1)])).toThrow(
      new WaitTimeout(
        'the CMD_SYNC at command queue pointer 0x00000007 to write 0 over its slot at PA 0x40004070 (the slot reads 0x0fc01046): ' +
          'SMMU_CMDQ_PROD 0x00000008 (driver prod 0x00000008), SMMU_CMDQ_CONS 0x00000008 (RD 0x00000008, ERR 0 CERROR_NONE), ' +
          'SMMU_GERROR 0x00000000, SMMU_GERRORN 0x00000000 (active 0x00000000)',
        30,
      ),
    );
  });
});

describe('event queue (§7.4)', () => {
  const EVQ = 0x4000_5000;
  function putRecord(mem: PhysMem, index: number, id: number): number[] {
    const rec = [id, 0x1234_0000 + index, 0, 0, 0xdead_0000 + index, 0, 0, 0];
    mem.writeWords(EVQ + index * 32, rec);
    return rec;
  }

  it('drains CONS..PROD, then acknowledges an overflow with OVACKFLG = OVFLG', () => {
    const { drv, dev, mem } = setup();
    drv.reset();
    const recs = [putRecord(mem, 0, 0x10), putRecord(mem, 1, 0x11), putRecord(mem, 2, 0x04)];
    dev.set(O.EVENTQ_PROD, 3);
    const got = drv.drainEvents();
    expect(got.overflow).toBe(false);
    // Decoded with src/spec/events.ts: StreamID is record bits [63:32] (§7.3).
    expect(got.map((e) => ({ id: e.id, name: e.name, sid: e.fields.StreamID, words: [...e.words] }))).toEqual([
      { id: 0x10, name: 'F_TRANSLATION', sid: 0x1234_0000, words: recs[0] },
      { id: 0x11, name: 'F_ADDR_SIZE', sid: 0x1234_0001, words: recs[1] },
      { id: 0x04, name: 'C_BAD_STE', sid: 0x1234_0002, words: recs[2] },
    ]);
    expect(dev.writes.at(-1)).toBe('SMMU_EVENTQ_CONS = 0x00000003');

    putRecord(mem, 3, 0x20);
    putRecord(mem, 4, 0x21);
    dev.set(O.EVENTQ_PROD, 0x8000_0005);
    const more = drv.drainEvents();
    expect(more.overflow).toBe(true);
    expect(more.map((e) => e.id)).toEqual([0x20, 0x21]);
    expect(dev.writes.at(-1)).toBe('SMMU_EVENTQ_CONS = 0x80000005');
    expect(drv.log.at(-1)).toEqual({ kind: 'eventq-overflow', prod: 0x8000_0005, cons: 3 });

    const w0 = dev.writes.length;
    const none = drv.drainEvents();
    expect(none.length).toBe(0);
    expect(none.overflow).toBe(false);
    expect(dev.writes.length).toBe(w0);
  });

  it('serviceInterrupts drains only when the EVENTQ line was asserted, and handles GERROR', () => {
    const { drv, dev, mem, board } = setup();
    drv.reset();
    putRecord(mem, 0, 0x10);
    dev.set(O.EVENTQ_PROD, 1);
    const quiet = drv.serviceInterrupts();
    expect(quiet.gerror).toBeUndefined();
    expect([quiet.events.length, quiet.events.overflow]).toEqual([0, false]);
    board.raiseIrq(HDR.IRQ_EVENTQ);
    const r = drv.serviceInterrupts();
    expect(r.gerror).toBeUndefined();
    expect(r.events.map((e) => e.id)).toEqual([0x10]);
    dev.set(O.GERROR, GERROR_BIT.CMDQ_ERR);
    dev.set(O.CMDQ_CONS, regSet(6, REG.SMMU_CMDQ_CONS.f.ERR, CERROR_ABT));
    board.raiseIrq(HDR.IRQ_GERROR);
    expect(drv.serviceInterrupts().gerror).toEqual({ active: 1, cmdq: { code: CERROR_ABT, name: 'CERROR_ABT', cons: 6 } });
    expect(dev.get(O.GERRORN)).toBe(1);
  });
});
