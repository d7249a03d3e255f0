import { afterEach, describe, expect, it } from 'vitest';
import { REG, encode32, encode64, ecmdqRegisterOffset } from '../../src/spec/registers.ts';
import { FULL_FEATURES } from '../../src/spec/features.ts';
import { CERROR_ILL } from '../../src/spec/cerror.ts';
import * as ring from '../../src/ring/index.ts';
import type { System } from '../../src/system/system.ts';
import { cmd, rawSystem } from '../helpers/raw.ts';

let sys: System | undefined;
afterEach(async () => {
  await sys?.stop();
  sys = undefined;
});

const F = FULL_FEATURES; // 1 control page of 8 ECMDQs
const P = REG.SMMU_ECMDQ_PROD.f;
const C = REG.SMMU_ECMDQ_CONS.f;
const LOG2 = 4;
const off = (n: number, r: 'BASE' | 'PROD' | 'CONS') => ecmdqRegisterOffset(F, n, r);
const qbase = (s: System, n: number) => s.board.layout.ram.base + 0x20_0000 + n * 0x1000;

async function enable(s: System, n: number): Promise<void> {
  await s.writeReg(off(n, 'BASE'), encode64(REG.SMMU_ECMDQ_BASE, { ADDR: BigInt(qbase(s, n)), LOG2SIZE: LOG2 }));
  await s.writeReg(off(n, 'CONS'), 0);
  await s.writeReg(off(n, 'PROD'), encode32(REG.SMMU_ECMDQ_PROD, { EN: 1 }));
  await s.waitReg(off(n, 'CONS'), (v) => v >>> C.ENACK.lsb === 1);
}

function put(s: System, n: number, ptr: number, words: ArrayLike<number>): void {
  s.mem.writeWords(qbase(s, n) + ring.idx(ptr, LOG2) * 16, words);
}

/** Write commands and ring ECMDQ n's doorbell with EN (and ERRACK) kept; returns the new PROD. */
async function push(s: System, n: number, prod: number, cmds: Uint32Array[], errack = 0): Promise<number> {
  let p = prod;
  for (const c of cmds) {
    put(s, n, p, c);
    p = ring.inc(p, 1, LOG2);
  }
  await s.writeReg(off(n, 'PROD'), ((1 << P.EN.lsb) | (errack << P.ERRACK.lsb) | p) >>> 0);
  return p;
}

const tlbi = (asid: number) => cmd({ name: 'CMD_TLBI_NH_ASID', VMID: 3, ASID: asid });

describe('ECMDQ (IHI0070 G.b §3.5.6)', () => {
  it('presents its control page and queues at the advertised offsets', async () => {
    sys = await rawSystem();
    expect(sys.readReg('SMMU_IDR1') >>> 31).toBe(1);
    expect(sys.readReg(REG.SMMU_CMDQ_CONTROL_PAGE_BASE.offset) & 1).toBe(1); // PRESET
    expect(off(1, 'PROD') - off(0, 'PROD')).toBe(0x10000 >> F.ecmdqLog2NumQ);
  });

  it('enables with the EN/ENACK handshake and consumes each queue in order', async () => {
    sys = await rawSystem();
    await enable(sys, 0);
    await enable(sys, 5);
    const p0 = await push(sys, 0, 0, [tlbi(1), tlbi(2), cmd({ name: 'CMD_SYNC' })]);
    const p5 = await push(sys, 5, 0, [tlbi(51), tlbi(52)]);
    await sys.waitReg(off(0, 'CONS'), (v) => (v & 0xfffff) === p0);
    await sys.waitReg(off(5, 'CONS'), (v) => (v & 0xfffff) === p5);
    const t = sys.trace().entries;
    const byQueue = (q: string) => t.filter((e) => e.queue === q).map((e) => String(e.json.name) + (e.json.name === 'CMD_TLBI_NH_ASID' ? `:${(e.json.fields as Record<string, number>).ASID}` : ''));
    expect(byQueue('ECMDQ0')).toEqual(['CMD_TLBI_NH_ASID:1', 'CMD_TLBI_NH_ASID:2', 'CMD_SYNC']);
    expect(byQueue('ECMDQ5')).toEqual(['CMD_TLBI_NH_ASID:51', 'CMD_TLBI_NH_ASID:52']);
    // Disabling: ENACK follows EN to 0 and CONS is stable.
    await sys.writeReg(off(5, 'PROD'), p5);
    expect(sys.readReg(off(5, 'CONS'))).toBe(p5);
  });

  it('an error stops only its queue: ERR toggles, ERR_REASON, GERROR.CMDQP_ERR; ERRACK resumes it', async () => {
    sys = await rawSystem();
    await enable(sys, 0);
    await enable(sys, 1);
    const bad = cmd({ name: 'CMD_SYNC', CS: 3 });
    const p0 = await push(sys, 0, 0, [tlbi(1), bad, tlbi(3)]);
    await sys.waitReg('SMMU_GERROR', (v) => v !== 0);
    const cons = sys.readReg(off(0, 'CONS'));
    expect(cons & 0xfffff).toBe(1); // RD on the bad command
    expect((cons >>> C.ERR.lsb) & 1).toBe(1);
    expect((cons >>> C.ERR_REASON.lsb) & 7).toBe(CERROR_ILL);
    expect(sys.readReg('SMMU_GERROR')).toBe(1 << REG.SMMU_GERROR.f.CMDQP_ERR.lsb); // not CMDQ_ERR
    // ECMDQ 1 is unaffected.
    const p1 = await push(sys, 1, 0, [tlbi(10)]);
    await sys.waitReg(off(1, 'CONS'), (v) => (v & 0xfffff) === p1);
    // Queue 0 stays halted until ERRACK matches ERR, even after GERRORN.
    await sys.writeReg('SMMU_GERRORN', sys.readReg('SMMU_GERROR'));
    await sys.writeReg(off(0, 'PROD'), ((1 << P.EN.lsb) | p0) >>> 0);
    expect(sys.readReg(off(0, 'CONS')) & 0xfffff).toBe(1);
    // Replace the bad command and acknowledge with ERRACK := ERR.
    put(sys, 0, 1, cmd({ name: 'CMD_SYNC' }));
    await push(sys, 0, p0, [], 1);
    await sys.waitReg(off(0, 'CONS'), (v) => (v & 0xfffff) === p0);
    const names = sys.trace().entries.filter((e) => e.queue === 'ECMDQ0').map((e) => `${e.json.name}/${e.outcome}`);
    expect(names).toEqual(['CMD_TLBI_NH_ASID/consumed', 'CMD_SYNC/CERROR_ILL', 'CMD_SYNC/consumed', 'CMD_TLBI_NH_ASID/consumed']);
  });

  it('ignores BASE and CONS writes while enabled (§6.3.107, §6.3.109)', async () => {
    sys = await rawSystem();
    await enable(sys, 2);
    await sys.writeReg(off(2, 'BASE'), 0x4100_0000n | 3n);
    await sys.writeReg(off(2, 'CONS'), 5);
    expect(sys.readReg(off(2, 'BASE'))).toBe((qbase(sys, 2) | LOG2) >>> 0);
    expect(sys.readReg(off(2, 'CONS'))).toBe((1 << C.ENACK.lsb) >>> 0);
  });
});
