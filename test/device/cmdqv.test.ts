/**
 * The Tegra241 CMDQV hardware model (src/device/cmdqv.ts) driven by raw register writes, with the
 * SMMU device in this thread: every write goes over the window's MMIO FIFO and the test runs the
 * device's service loop after it, so each step is deterministic. The SMMU's command backend
 * records what it executes: a command "takes effect" exactly when it reaches that record.
 * Offsets and fields: shared/reference/viommu.md §4.1; behaviour: §4.4, §4.5, §4.7.
 */
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Board } from '../../src/mem/board.ts';
import { MmioPort } from '../../src/mem/mmio.ts';
import { PhysMem } from '../../src/mem/phys.ts';
import { DEFAULT_WAIT } from '../../src/mem/wait.ts';
import * as ring from '../../src/ring/index.ts';
import { encodeCommandWords, type CommandInput } from '../../src/spec/command-codec.ts';
import { CS_SIG_IRQ, CS_SIG_NONE } from '../../src/spec/commands.ts';
import { FULL_FEATURES } from '../../src/spec/features.ts';
import { smmuRegWindow } from '../../src/spec/registers.ts';
import {
  CMDQV_REG as C,
  CMDQV_REGISTERS,
  CMDQV_SIM_IRQ_OFFSET,
  VCMDQ_ERR,
  cmdqAllocValue,
  cmdqvCounts,
  cmdqvGlobalOffset,
  cmdqvLocate,
  cmdqvLocationName,
  cmdqvParamDecode,
  cmdqvParamValue,
  cmdqvWindowBytes,
  lvcmdqPage0,
  lvcmdqPage1,
  sidMatchValue,
  vcmdqErrName,
  vcmdqPage0,
  vcmdqPage1,
  vintfConfigValue,
  vintfRegOffset,
} from '../../src/spec/cmdqv.ts';
import { cmdqvExtension, cmdqvGeometry, cmdqvWindowConfig, type CmdqvConfig } from '../../src/device/cmdqv.ts';
import { SmmuDevice } from '../../src/device/smmu.ts';
import { drainTrace, TRACE_QUEUE_VCMDQ } from '../../src/device/trace.ts';
import type { DeviceWorkerData } from '../../src/device/worker.ts';
import { spawnWorker } from '../../src/system/spawn.ts';

const CMDQV_BASE = 0x0a00_0000;
const LOG2 = 4;

function cmd(c: CommandInput): Uint32Array {
  return encodeCommandWords(c);
}
const sync = (cs = CS_SIG_NONE) => cmd({ name: 'CMD_SYNC', CS: cs });

/** A board with the SMMU and a CMDQV, the device in this thread, and a recording backend. */
function rig(cfg: CmdqvConfig = {}) {
  const features = FULL_FEATURES;
  const board = Board.create({
    windows: [{ name: 'smmu', base: 0x0905_0000, bytes: smmuRegWindow(features) }, cmdqvWindowConfig(cfg, CMDQV_BASE)],
    ramBytes: 1 << 20,
    traceRecords: 1024,
  });
  const executed: number[][] = [];
  const dev = new SmmuDevice(board, {
    features,
    policy: DEFAULT_WAIT,
    extensions: cmdqvExtension(cfg),
    backend: {
      command: (_q, w) => {
        executed.push([...w]);
        return 0;
      },
      sync: () => 0,
    },
  });
  const port = new MmioPort(board, 'cmdqv');
  const mem = new PhysMem(board);
  const counts = cmdqvCounts(cmdqvGeometry(cfg));
  const w32 = (off: number, v: number) => {
    port.write32(off, v);
    dev.service();
  };
  const w64 = (off: number, v: number) => {
    port.write64Parts(off, v % 2 ** 32, Math.floor(v / 2 ** 32));
    dev.service();
  };
  const r32 = (off: number) => port.peek32(off);
  const qbase = (q: number) => board.layout.ram.base + 0x1_0000 + q * 0x1000;
  let irqSeen = 0;
  const h = {
    board, dev, port, mem, counts, executed, w32, w64, r32, qbase,
    /** The host's bring-up: CMDQV on, every global VCMDQ assigned (not allocated) as the kernel does. */
    cmdqvOn() {
      w32(C.CMDQV_CONFIG.offset, 1);
      for (let q = 0; q < counts.numVcmdqs; q++) {
        w32(cmdqvGlobalOffset(C.CMDQV_CMDQ_ALLOC, q), cmdqAllocValue(Math.floor(q / counts.lvcmdqsPerVintf), q % counts.lvcmdqsPerVintf, false));
      }
    },
    /** A VINTF for a guest (HYP_OWN = 0) or the host. */
    vintf(v: number, vmid: number, hypOwn = false) {
      w32(vintfRegOffset(v, C.VINTF_CONFIG), vintfConfigValue({ en: false, vmid, hypOwn }));
      w32(vintfRegOffset(v, C.VINTF_CONFIG), vintfConfigValue({ en: true, vmid, hypOwn }));
    },
    sid(v: number, slot: number, vsid: number, psid: number) {
      w32(vintfRegOffset(v, C.VINTF_SID_REPLACE, slot), psid);
      w32(vintfRegOffset(v, C.VINTF_SID_MATCH, slot), sidMatchValue(vsid));
    },
    /** Allocate logical VCMDQ l of VINTF v (global q = v·per + l) and program its BASE (the host's lvcmdqInit). */
    lvcmdq(v: number, l: number) {
      const q = v * counts.lvcmdqsPerVintf + l;
      w32(cmdqvGlobalOffset(C.CMDQV_CMDQ_ALLOC, q), cmdqAllocValue(v, l, true));
      w64(lvcmdqPage1(v, l) + C.VCMDQ_BASE.offset, qbase(q) + LOG2);
      return q;
    },
    /** The guest's view: enable through its VINTF page 0 and wait for STATUS.ENABLED. */
    enable(v: number, l: number) {
      w32(lvcmdqPage0(v, l) + C.VCMDQ_CONFIG.offset, 1);
      return r32(lvcmdqPage0(v, l) + C.VCMDQ_STATUS.offset);
    },
    /** Write commands into global VCMDQ q's ring from `prod` and ring the doorbell via VINTF v's page 0. */
    push(v: number, l: number, prod: number, cmds: ArrayLike<number>[]): number {
      const q = v * counts.lvcmdqsPerVintf + l;
      let p = prod;
      for (const c of cmds) {
        mem.writeWords(qbase(q) + ring.idx(p, LOG2) * 16, c);
        p = ring.inc(p, 1, LOG2);
      }
      w32(lvcmdqPage0(v, l) + C.VCMDQ_PROD.offset, p);
      return p;
    },
    cons(v: number, l: number) {
      return r32(lvcmdqPage0(v, l) + C.VCMDQ_CONS.offset);
    },
    irqs() {
      const n = r32(CMDQV_SIM_IRQ_OFFSET);
      const d = n - irqSeen;
      irqSeen = n;
      return d;
    },
    trace() {
      return drainTrace(board).records;
    },
  };
  return h;
}

describe('CMDQV register map (viommu.md §4.1)', () => {
  it('places the pages, VINTF blocks and slots at the [TEG] offsets', () => {
    // §4.1: direct page 0 at 0x10000 + 0x80·q, page 1 at 0x20000 + 0x80·q; VINTF i page 0 at
    // 0x30000 + 0x20000·i (+0x80·l), page 1 0x10000 above; VINTF(v) block at 0x1000 + 0x100·v.
    expect(vcmdqPage0(5)).toBe(0x10280);
    expect(vcmdqPage1(5)).toBe(0x20280);
    expect(lvcmdqPage0(2, 1)).toBe(0x70080);
    expect(lvcmdqPage1(2, 1)).toBe(0x80080);
    expect(vintfRegOffset(3, C.VINTF_SID_MATCH, 5)).toBe(0x1354);
    expect(vintfRegOffset(3, C.VINTF_SID_REPLACE, 5)).toBe(0x1394);
    expect(vintfRegOffset(1, C.VINTF_LVCMDQ_ERR_MAP_64, 1)).toBe(0x11c8);
    expect(cmdqvGlobalOffset(C.CMDQV_CMDQ_ALLOC, 127)).toBe(0x3fc);
    expect(cmdqvGlobalOffset(C.CMDQV_CMDQ_ERR_MAP, 3)).toBe(0x30);
    expect(cmdqvGlobalOffset(C.CMDQV_VINTF_ERR_MAP, 1)).toBe(0x18);
    expect(cmdqvWindowBytes(1)).toBe(0x50000); // QEMU's guest window (TEGRA241_CMDQV_IO_LEN)
    expect(C.VCMDQ_CONS.f.ERR).toMatchObject({ lsb: 24, width: 7 });
    expect(C.VINTF_CONFIG.f.VMID).toMatchObject({ lsb: 1, width: 16 });
    expect(C.VINTF_CONFIG.f.HYP_OWN).toMatchObject({ lsb: 17, width: 1 });
    expect(C.CMDQV_CMDQ_ALLOC.f.CMDQ_ALLOC_VINTF).toMatchObject({ lsb: 15, width: 6 });
    expect(C.VCMDQ_BASE.f.ADDR).toMatchObject({ lsb: 5, width: 43 });
    expect(VCMDQ_ERR.ILL_ACCESS).toBe(4);
    expect(vcmdqErrName(4)).toBe('CERROR_ILL_ACCESS');
    expect(vcmdqErrName(9)).toBe('Reserved(0x9)');
  });

  it('marks what [TEG] does not confirm: every unverified entry names a field or the offset', () => {
    for (const r of CMDQV_REGISTERS) {
      for (const u of r.unverified ?? []) expect(u === 'offset' || r.fields.some((f) => f.name === u), `${r.name}: ${u}`).toBe(true);
    }
    const unverified = Object.fromEntries(CMDQV_REGISTERS.filter((r) => r.unverified !== undefined).map((r) => [r.name, r.unverified]));
    expect(unverified).toEqual({
      CMDQV_CONFIG: ['CMDQV_PER_CMD_OFFSET', 'CMDQ_MAX_CLK_BATCH', 'CMDQ_MAX_CMD_BATCH', 'CONS_DRAM_EN'],
      CMDQV_VINTF_INT_MASK: ['MAP'],
      CMDQV_SIM_IRQ: ['offset', 'COUNT'],
      VINTF_STATUS: ['VI_NUM_LVCMDQ'],
      VINTF_SID_MATCH: ['VIRT_SID'],
      VINTF_SID_REPLACE: ['PHYS_SID'],
      VCMDQ_CONS: ['RD'],
      VCMDQ_PROD: ['WR'],
      VCMDQ_GERROR: ['CMDQ_ERR', 'CONS_DRAM_WR_ABT_ERR', 'CMDQ_INIT_ERR'],
      VCMDQ_GERRORN: ['CMDQ_ERR', 'CONS_DRAM_WR_ABT_ERR', 'CMDQ_INIT_ERR'],
      VCMDQ_CONS_INDX_BASE: ['ADDR'],
    });
  });

  it('encodes PARAM and the host kernel values bit-exactly', () => {
    // VER [3:0] = 1, NUM_VCMDQ_LOG2 [7:4] = 3, NUM_VINTF_LOG2 [11:8] = 2, NUM_SID_PER_VM_LOG2 [15:12] = 4.
    expect(cmdqvParamValue({ version: 1, numVcmdqsLog2: 3, numVintfsLog2: 2, numSidsLog2: 4 })).toBe(0x4231);
    expect(cmdqvParamDecode(0x4231)).toEqual({ version: 1, numVcmdqsLog2: 3, numVintfsLog2: 2, numSidsLog2: 4 });
    // [TEG] tegra241_vintf_init_vsid: SID_MATCH = vSID << 1 | 1.
    expect(sidMatchValue(0x10)).toBe(0x21);
    // VINTF_CONFIG EN [0], VMID [16:1], HYP_OWN [17].
    expect(vintfConfigValue({ en: true, vmid: 5, hypOwn: false })).toBe(0xb);
    expect(vintfConfigValue({ en: true, vmid: 0, hypOwn: true })).toBe(0x20001);
    // CMDQ_ALLOC: ALLOCATED [0], LVCMDQ [7:1], VINTF [20:15].
    expect(cmdqAllocValue(3, 1, true)).toBe((3 << 15) | (1 << 1) | 1);
  });

  it('decodes every offset it encodes', () => {
    const counts = cmdqvCounts(cmdqvGeometry({}));
    fc.assert(
      fc.property(fc.integer({ min: 0, max: counts.numVintfs - 1 }), fc.integer({ min: 0, max: counts.lvcmdqsPerVintf - 1 }), (v, l) => {
        const a = cmdqvLocate(lvcmdqPage0(v, l) + C.VCMDQ_PROD.offset, counts);
        expect(a).toMatchObject({ kind: 'lvcmdq', vintf: v, lvcmdq: l, spec: C.VCMDQ_PROD });
        const b = cmdqvLocate(lvcmdqPage1(v, l) + C.VCMDQ_BASE.offset + 4, counts);
        expect(b).toMatchObject({ kind: 'lvcmdq', vintf: v, lvcmdq: l, spec: C.VCMDQ_BASE, half: 1 });
        const q = v * counts.lvcmdqsPerVintf + l;
        expect(cmdqvLocate(vcmdqPage0(q) + C.VCMDQ_GERRORN.offset, counts)).toMatchObject({ kind: 'vcmdq', q, spec: C.VCMDQ_GERRORN });
        expect(cmdqvLocate(cmdqvGlobalOffset(C.CMDQV_CMDQ_ALLOC, q), counts)).toMatchObject({ kind: 'global', index: q });
      }),
    );
    expect(cmdqvLocationName(cmdqvLocate(0x1354, counts)!)).toBe('VINTF3_SID_MATCH5');
    expect(cmdqvLocate(cmdqvGlobalOffset(C.CMDQV_CMDQ_ALLOC, counts.numVcmdqs), counts)).toBeUndefined();
    expect(cmdqvLocate(lvcmdqPage0(0, counts.lvcmdqsPerVintf), counts)).toBeUndefined();
    expect(cmdqvLocate(vcmdqPage0(0) + 0x18, counts)).toBeUndefined();
  });
});

describe('CMDQV device: bring-up (viommu.md §4.2, §4.3)', () => {
  it('presents PARAM, follows CMDQV_CONFIG.EN and VINTF_CONFIG.EN in the STATUS registers', () => {
    const h = rig();
    expect(h.r32(C.CMDQV_PARAM.offset)).toBe(0x4231);
    expect(h.r32(C.CMDQV_STATUS.offset)).toBe(0);
    h.cmdqvOn();
    expect(h.r32(C.CMDQV_STATUS.offset)).toBe(1);
    h.vintf(1, 5);
    expect(h.r32(vintfRegOffset(1, C.VINTF_CONFIG))).toBe(0xb);
    expect(h.r32(vintfRegOffset(1, C.VINTF_STATUS))).toBe(1);
    h.w32(C.CMDQV_PARAM.offset, 0);
    expect(h.r32(C.CMDQV_PARAM.offset)).toBe(0x4231);
    expect(h.board.counter('MMIO_RO_WRITES')).toBe(1);
  });

  it('aliases an allocated VCMDQ at its direct and logical slots; an unallocated logical slot drops writes', () => {
    const h = rig();
    h.cmdqvOn();
    h.vintf(1, 5);
    // Not allocated yet: the write through VINTF1's page 0 goes nowhere and reads 0.
    h.w32(lvcmdqPage0(1, 0) + C.VCMDQ_PROD.offset, 3);
    expect(h.r32(lvcmdqPage0(1, 0) + C.VCMDQ_PROD.offset)).toBe(0);
    expect(h.r32(vcmdqPage0(2) + C.VCMDQ_PROD.offset)).toBe(0);
    const q = h.lvcmdq(1, 0);
    expect(q).toBe(2);
    expect(h.r32(vintfRegOffset(1, C.VINTF_STATUS)) >>> 16).toBe(1); // VI_NUM_LVCMDQ
    h.w32(lvcmdqPage0(1, 0) + C.VCMDQ_PROD.offset, 3);
    expect(h.r32(vcmdqPage0(2) + C.VCMDQ_PROD.offset)).toBe(3);
    expect(h.r32(vcmdqPage1(2) + C.VCMDQ_BASE.offset)).toBe((h.qbase(2) + LOG2) >>> 0);
    expect(h.r32(lvcmdqPage1(1, 0) + C.VCMDQ_BASE.offset)).toBe((h.qbase(2) + LOG2) >>> 0);
    // Unallocating hides the logical slot again; the direct slot keeps its values.
    h.w32(cmdqvGlobalOffset(C.CMDQV_CMDQ_ALLOC, 2), cmdqAllocValue(1, 0, false));
    expect(h.r32(lvcmdqPage0(1, 0) + C.VCMDQ_PROD.offset)).toBe(0);
    expect(h.r32(vcmdqPage0(2) + C.VCMDQ_PROD.offset)).toBe(3);
  });

  it('enables a VCMDQ only while it is allocated to an enabled VINTF of an enabled CMDQV; else CMDQ_INIT_ERR', () => {
    const h = rig();
    h.cmdqvOn();
    // Direct aperture, not allocated: EN has no effect and GERROR.CMDQ_INIT_ERR toggles.
    h.w32(vcmdqPage0(2) + C.VCMDQ_CONFIG.offset, 1);
    expect(h.r32(vcmdqPage0(2) + C.VCMDQ_STATUS.offset)).toBe(0);
    expect(h.r32(vcmdqPage0(2) + C.VCMDQ_GERROR.offset)).toBe(1 << C.VCMDQ_GERROR.f.CMDQ_INIT_ERR.lsb);
    h.w32(vcmdqPage0(2) + C.VCMDQ_GERRORN.offset, h.r32(vcmdqPage0(2) + C.VCMDQ_GERROR.offset));
    h.w32(vcmdqPage0(2) + C.VCMDQ_CONFIG.offset, 0);
    h.lvcmdq(1, 0);
    expect(h.enable(1, 0)).toBe(0); // VINTF1 not enabled yet
    h.w32(vcmdqPage0(2) + C.VCMDQ_GERRORN.offset, h.r32(vcmdqPage0(2) + C.VCMDQ_GERROR.offset));
    h.vintf(1, 5);
    expect(h.enable(1, 0)).toBe(1);
    // Disabling the VINTF stops its queues.
    h.w32(vintfRegOffset(1, C.VINTF_CONFIG), 0);
    expect(h.r32(lvcmdqPage0(1, 0) + C.VCMDQ_STATUS.offset)).toBe(0);
  });

  it('guards BASE while enabled and CONS while enabled, as SMMU_CMDQ_BASE/CONS (§6.3.26, §6.3.28)', () => {
    const h = rig();
    h.cmdqvOn();
    h.vintf(1, 5);
    h.lvcmdq(1, 0);
    h.w32(lvcmdqPage0(1, 0) + C.VCMDQ_CONS.offset, 2);
    expect(h.cons(1, 0)).toBe(2);
    h.w32(lvcmdqPage0(1, 0) + C.VCMDQ_PROD.offset, 2);
    h.enable(1, 0);
    h.w64(lvcmdqPage1(1, 0) + C.VCMDQ_BASE.offset, h.qbase(5) + 3);
    h.w32(lvcmdqPage0(1, 0) + C.VCMDQ_CONS.offset, 0);
    expect(h.r32(lvcmdqPage1(1, 0) + C.VCMDQ_BASE.offset)).toBe((h.qbase(2) + LOG2) >>> 0);
    expect(h.cons(1, 0)).toBe(2);
  });
});

describe('CMDQV device: a guest-owned VINTF (viommu.md §4.4, §4.5)', () => {
  function guest(cfg: CmdqvConfig = {}) {
    const h = rig(cfg);
    h.cmdqvOn();
    h.vintf(1, 5);
    h.sid(1, 0, 0x10, 0x42);
    h.lvcmdq(1, 0);
    h.lvcmdq(1, 1);
    h.enable(1, 0);
    h.enable(1, 1);
    // VINTF2 for another VM: VMID 7, its own queue.
    h.vintf(2, 7);
    h.sid(2, 0, 0x10, 0x77);
    h.lvcmdq(2, 0);
    h.enable(2, 0);
    h.trace();
    h.irqs();
    return h;
  }

  it('executes NH_VA, NH_ASID and ATC_INV with the VINTF VMID and the replaced StreamID', () => {
    const h = guest();
    const p = h.push(1, 0, 0, [
      cmd({ name: 'CMD_TLBI_NH_VA', VMID: 0, ASID: 3, Address: 0x1000n, Leaf: 1 }),
      cmd({ name: 'CMD_TLBI_NH_ASID', VMID: 9, ASID: 4 }),
      cmd({ name: 'CMD_ATC_INV', StreamID: 0x10, Size: 52 }),
      sync(),
    ]);
    expect(h.cons(1, 0)).toBe(p);
    expect(h.executed).toEqual([
      [...cmd({ name: 'CMD_TLBI_NH_VA', VMID: 5, ASID: 3, Address: 0x1000n, Leaf: 1 })],
      [...cmd({ name: 'CMD_TLBI_NH_ASID', VMID: 5, ASID: 4 })],
      [...cmd({ name: 'CMD_ATC_INV', StreamID: 0x42, Size: 52 })],
    ]);
    const t = h.trace();
    expect(t.map((r) => r.queue)).toEqual([TRACE_QUEUE_VCMDQ + 2, TRACE_QUEUE_VCMDQ + 2, TRACE_QUEUE_VCMDQ + 2, TRACE_QUEUE_VCMDQ + 2]);
    expect(t.map((r) => r.outcome)).toEqual([0, 0, 0, 0]);
    expect(t[0]!.words[1]! & 0xffff).toBe(5); // VMID [47:32] as executed
    expect(t[2]!.words[1]).toBe(0x42); // StreamID [63:32] as executed
    expect(h.irqs()).toBe(0);
  });

  const refused: [string, Uint32Array, number][] = [
    ['TLBI_NH_ALL', cmd({ name: 'CMD_TLBI_NH_ALL', VMID: 7 }), VCMDQ_ERR.ILL_OPCODE],
    ['CFGI_ALL', cmd({ name: 'CMD_CFGI_ALL' }), VCMDQ_ERR.ILL_OPCODE],
    ['TLBI_EL2_ALL', cmd({ name: 'CMD_TLBI_EL2_ALL' }), VCMDQ_ERR.ILL_OPCODE],
    ['TLBI_S12_VMALL', cmd({ name: 'CMD_TLBI_S12_VMALL', VMID: 7 }), VCMDQ_ERR.ILL_OPCODE],
    ['TLBI_NSNH_ALL', cmd({ name: 'CMD_TLBI_NSNH_ALL' }), VCMDQ_ERR.ILL_OPCODE],
    ['CFGI_STE', cmd({ name: 'CMD_CFGI_STE', StreamID: 0x10 }), VCMDQ_ERR.ILL_OPCODE],
    ['CFGI_CD (switch off)', cmd({ name: 'CMD_CFGI_CD', StreamID: 0x10 }), VCMDQ_ERR.ILL_OPCODE],
    ['TLBI_NH_VAA (switch off)', cmd({ name: 'CMD_TLBI_NH_VAA', VMID: 5 }), VCMDQ_ERR.ILL_OPCODE],
    ['CMD_SYNC CS=SIG_IRQ', sync(CS_SIG_IRQ), VCMDQ_ERR.ILL_OPCODE],
    ['ATC_INV of a StreamID with no SID_MATCH', cmd({ name: 'CMD_ATC_INV', StreamID: 0x11, Size: 52 }), VCMDQ_ERR.ILL_ACCESS],
    ['ATC_INV of the other VM\'s physical StreamID', cmd({ name: 'CMD_ATC_INV', StreamID: 0x77, Size: 52 }), VCMDQ_ERR.ILL_ACCESS],
  ];

  it.each(refused)('%s never takes effect and takes the §4.7 error path; recovery resumes the queue', (_name, bad, code) => {
    const h = guest();
    const good = cmd({ name: 'CMD_TLBI_NH_ASID', VMID: 0, ASID: 1 });
    const p = h.push(1, 0, 0, [good, bad, good, sync()]);
    // §4.7 step 1: the queue stops on the command, CONS.ERR holds the code.
    const cons = h.cons(1, 0);
    expect(cons & 0xfffff).toBe(1);
    expect(cons >>> 24).toBe(code);
    expect(h.executed.length).toBe(1);
    // GERROR.CMDQ_ERR toggled; LVCMDQ 0 of VINTF1, VCMDQ 2 and VINTF 1 flagged; one interrupt.
    const p0 = lvcmdqPage0(1, 0);
    expect(h.r32(p0 + C.VCMDQ_GERROR.offset)).toBe(1);
    expect(h.r32(p0 + C.VCMDQ_GERRORN.offset)).toBe(0);
    expect(h.r32(vintfRegOffset(1, C.VINTF_LVCMDQ_ERR_MAP_64, 0))).toBe(0b1);
    expect(h.r32(cmdqvGlobalOffset(C.CMDQV_CMDQ_ERR_MAP, 0))).toBe(1 << 2);
    expect(h.r32(cmdqvGlobalOffset(C.CMDQV_VINTF_ERR_MAP, 0))).toBe(1 << 1);
    expect((h.r32(vintfRegOffset(1, C.VINTF_STATUS)) >>> 1) & 7).toBe(1);
    expect(h.irqs()).toBe(1);
    // Nothing more runs on this queue until the acknowledgement, even after another doorbell.
    h.w32(p0 + C.VCMDQ_PROD.offset, p);
    expect(h.cons(1, 0) & 0xfffff).toBe(1);
    // The other VINTF's queue and this VINTF's other queue are unaffected.
    const p2 = h.push(2, 0, 0, [cmd({ name: 'CMD_TLBI_NH_ASID', VMID: 0, ASID: 9 }), sync()]);
    expect(h.cons(2, 0)).toBe(p2);
    const p1 = h.push(1, 1, 0, [cmd({ name: 'CMD_TLBI_NH_ASID', VMID: 0, ASID: 8 }), sync()]);
    expect(h.cons(1, 1)).toBe(p1);
    expect(h.executed.slice(1)).toEqual([[...cmd({ name: 'CMD_TLBI_NH_ASID', VMID: 7, ASID: 9 })], [...cmd({ name: 'CMD_TLBI_NH_ASID', VMID: 5, ASID: 8 })]]);
    // §4.7 step 4: replace the bad command with CMD_SYNC CS=NONE, GERRORN := GERROR.
    h.mem.writeWords(h.qbase(2) + 16, sync());
    h.w32(p0 + C.VCMDQ_GERRORN.offset, h.r32(p0 + C.VCMDQ_GERROR.offset));
    expect(h.cons(1, 0)).toBe(((code << 24) | p) >>> 0); // ERR keeps the last code
    expect(h.executed.length).toBe(4);
    expect(h.r32(vintfRegOffset(1, C.VINTF_LVCMDQ_ERR_MAP_64, 0))).toBe(0);
    expect(h.r32(cmdqvGlobalOffset(C.CMDQV_CMDQ_ERR_MAP, 0))).toBe(0);
    expect(h.r32(cmdqvGlobalOffset(C.CMDQV_VINTF_ERR_MAP, 0))).toBe(0);
    expect((h.r32(vintfRegOffset(1, C.VINTF_STATUS)) >>> 1) & 7).toBe(0);
    const outcomes = h.trace().filter((r) => r.queue === TRACE_QUEUE_VCMDQ + 2).map((r) => r.outcome);
    expect(outcomes).toEqual([0, code, 0, 0, 0]);
  });

  it('honours VINTF_INT_MASK: the maps are set, the interrupt is not raised', () => {
    const h = guest();
    h.w32(cmdqvGlobalOffset(C.CMDQV_VINTF_INT_MASK, 0), 1 << 1);
    h.push(1, 0, 0, [cmd({ name: 'CMD_TLBI_EL2_ALL' })]);
    expect(h.r32(cmdqvGlobalOffset(C.CMDQV_VINTF_ERR_MAP, 0))).toBe(1 << 1);
    expect(h.irqs()).toBe(0);
    // VINTF2 is not masked.
    h.push(2, 0, 0, [cmd({ name: 'CMD_TLBI_EL2_ALL' })]);
    expect(h.r32(cmdqvGlobalOffset(C.CMDQV_VINTF_ERR_MAP, 0))).toBe(0b110);
    expect(h.irqs()).toBe(1);
  });

  it('the documented switch: NH_ALL, NH_VAA and CFGI_CD accepted with the VMID and StreamID substituted', () => {
    const h = guest({ guestCommands: { nhAll: true, nhVaa: true, cfgiCd: true } });
    const p = h.push(1, 0, 0, [
      cmd({ name: 'CMD_TLBI_NH_ALL', VMID: 7 }),
      cmd({ name: 'CMD_TLBI_NH_VAA', VMID: 7, Address: 0x2000n }),
      cmd({ name: 'CMD_CFGI_CD', StreamID: 0x10, SubstreamID: 3, Leaf: 1 }),
      cmd({ name: 'CMD_CFGI_CD_ALL', StreamID: 0x10 }),
      sync(),
    ]);
    expect(h.cons(1, 0)).toBe(p);
    expect(h.executed).toEqual([
      [...cmd({ name: 'CMD_TLBI_NH_ALL', VMID: 5 })],
      [...cmd({ name: 'CMD_TLBI_NH_VAA', VMID: 5, Address: 0x2000n })],
      [...cmd({ name: 'CMD_CFGI_CD', StreamID: 0x42, SubstreamID: 3, Leaf: 1 })],
      [...cmd({ name: 'CMD_CFGI_CD_ALL', StreamID: 0x42 })],
    ]);
  });

  it("a foreign VMID field: overwritten by default, CERROR_ILL_ACCESS with foreignVmid 'ill-access'", () => {
    const a = guest();
    a.push(1, 0, 0, [cmd({ name: 'CMD_TLBI_NH_VA', VMID: 7, ASID: 1, Address: 0x3000n }), sync()]);
    expect(a.executed).toEqual([[...cmd({ name: 'CMD_TLBI_NH_VA', VMID: 5, ASID: 1, Address: 0x3000n })]]);
    const b = guest({ foreignVmid: 'ill-access' });
    b.push(1, 0, 0, [cmd({ name: 'CMD_TLBI_NH_VA', VMID: 0, ASID: 1 }), cmd({ name: 'CMD_TLBI_NH_VA', VMID: 5, ASID: 1 }), cmd({ name: 'CMD_TLBI_NH_VA', VMID: 7, ASID: 1 })]);
    expect(b.cons(1, 0)).toBe(((VCMDQ_ERR.ILL_ACCESS << 24) | 2) >>> 0);
    expect(b.executed.length).toBe(2);
  });

  it('a host-owned VINTF (HYP_OWN = 1) carries every command unchanged but still needs CS = SIG_NONE', () => {
    const h = rig();
    h.cmdqvOn();
    h.vintf(0, 0, true);
    h.lvcmdq(0, 0);
    h.enable(0, 0);
    const cmds = [cmd({ name: 'CMD_TLBI_EL2_ALL' }), cmd({ name: 'CMD_CFGI_STE', StreamID: 0x99, Leaf: 1 }), cmd({ name: 'CMD_TLBI_NH_ASID', VMID: 3, ASID: 1 })];
    const p = h.push(0, 0, 0, [...cmds, sync()]);
    expect(h.cons(0, 0)).toBe(p);
    expect(h.executed).toEqual(cmds.map((c) => [...c]));
    h.push(0, 0, p, [sync(CS_SIG_IRQ)]);
    expect(h.cons(0, 0) >>> 24).toBe(VCMDQ_ERR.ILL_OPCODE);
  });

  it('fetch aborts and SMMU-illegal commands use the same path (CERROR_ABT, CERROR_ILL)', () => {
    const h = guest();
    // A reserved field set in NH_ASID: the SMMU's own legality check (§4.1.7) refuses it.
    const bad = cmd({ name: 'CMD_TLBI_NH_ASID', VMID: 0, ASID: 1 });
    bad[0] = (bad[0]! | (1 << 20)) >>> 0;
    h.push(1, 0, 0, [bad]);
    expect(h.cons(1, 0) >>> 24).toBe(VCMDQ_ERR.ILL_OPCODE);
    expect(h.executed.length).toBe(0);
    // A queue whose BASE is outside RAM: the fetch aborts.
    h.w32(lvcmdqPage0(2, 0) + C.VCMDQ_CONFIG.offset, 0);
    h.w64(lvcmdqPage1(2, 0) + C.VCMDQ_BASE.offset, 0x1000_0000 + LOG2);
    h.enable(2, 0);
    h.w32(lvcmdqPage0(2, 0) + C.VCMDQ_PROD.offset, 1);
    expect(h.cons(2, 0) >>> 24).toBe(VCMDQ_ERR.ABT);
    expect(h.r32(cmdqvGlobalOffset(C.CMDQV_VINTF_ERR_MAP, 0))).toBe(0b110);
  });
});

describe('CMDQV in the device worker (src/device/worker.ts)', () => {
  it('serves the CMDQV window with the SMMU: a guest-owned VCMDQ runs with the VINTF VMID', async () => {
    const cfg: CmdqvConfig = {};
    const features = FULL_FEATURES;
    const board = Board.create({
      windows: [{ name: 'smmu', base: 0x0905_0000, bytes: smmuRegWindow(features) }, cmdqvWindowConfig(cfg, CMDQV_BASE)],
      ramBytes: 1 << 20,
      traceRecords: 64,
    });
    const policy = { mode: 'wait' as const, spin: 0, timeoutMs: 2000 };
    const data: DeviceWorkerData = { sab: board.sab, layout: board.layout, features, policy, cmdqv: cfg };
    const w = spawnWorker(import.meta.url, '../../src/device/worker', { workerData: data });
    try {
      await once(w, 'message');
      const port = new MmioPort(board, 'cmdqv', policy);
      const mem = new PhysMem(board);
      // The main thread never blocks: claim FIFO slots without waiting, then wait asynchronously.
      const until = async (ok: () => boolean, what: string) => {
        const t0 = Date.now();
        while (!ok()) {
          if (Date.now() - t0 > 5000) throw new Error(`timed out waiting for ${what}`);
          await new Promise((r) => setTimeout(r, 1));
        }
      };
      const w32 = async (off: number, v: number) => {
        while (!port.tryWrite32(off, v)) await new Promise((r) => setImmediate(r));
        await until(() => port.isApplied(), `the write to 0x${off.toString(16)}`);
      };
      const w64 = async (off: number, v: number) => {
        while (!port.tryWrite64(off, v)) await new Promise((r) => setImmediate(r));
        await until(() => port.isApplied(), `the write to 0x${off.toString(16)}`);
      };
      await w32(C.CMDQV_CONFIG.offset, 1);
      await w32(vintfRegOffset(1, C.VINTF_CONFIG), vintfConfigValue({ en: true, vmid: 9, hypOwn: false }));
      await w32(cmdqvGlobalOffset(C.CMDQV_CMDQ_ALLOC, 2), cmdqAllocValue(1, 0, true));
      const qb = board.layout.ram.base + 0x1_0000;
      await w64(lvcmdqPage1(1, 0) + C.VCMDQ_BASE.offset, qb + LOG2);
      await w32(lvcmdqPage0(1, 0) + C.VCMDQ_CONFIG.offset, 1);
      expect(port.peek32(lvcmdqPage0(1, 0) + C.VCMDQ_STATUS.offset)).toBe(1);
      mem.writeWords(qb, cmd({ name: 'CMD_TLBI_NH_ASID', VMID: 0, ASID: 4 }));
      mem.writeWords(qb + 16, sync());
      await w32(lvcmdqPage0(1, 0) + C.VCMDQ_PROD.offset, 2);
      await until(() => port.peek32(lvcmdqPage0(1, 0) + C.VCMDQ_CONS.offset) === 2, 'VCMDQ_CONS to reach 2');
      const t = drainTrace(board).records;
      expect(t.map((r) => r.queue)).toEqual([TRACE_QUEUE_VCMDQ + 2, TRACE_QUEUE_VCMDQ + 2]);
      expect(t[0]!.words[1]! & 0xffff).toBe(9);
    } finally {
      board.requestStop();
      await Promise.race([once(w, 'exit'), new Promise((r) => setTimeout(r, 500))]);
      await w.terminate();
    }
  });
});
