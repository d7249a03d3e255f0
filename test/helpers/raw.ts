/**
 * Tests as their own driver: bring the SMMU up register by register from the main thread, write
 * raw queue entries, ring the doorbell, and wait (without blocking) for what the device does.
 */
import { REG, encode32, encode64 } from '../../src/spec/registers.ts';
import { encodeCommandWords, type CommandInput } from '../../src/spec/command-codec.ts';
import * as ring from '../../src/ring/index.ts';
import { System, type SystemConfig } from '../../src/system/system.ts';

export const CMD_BYTES = 16;

export interface RawQueues {
  readonly cmdqBase: number;
  readonly cmdqLog2: number;
  readonly evtqBase: number;
  readonly evtqLog2: number;
}

/** A system with no driver worker: the test drives. */
export function rawSystem(cfg: SystemConfig = {}): Promise<System> {
  return System.start({ trace: true, ...cfg, driver: false });
}

/**
 * Bring up the command and event queues in the order §6.3.26 prescribes: BASE, CONS/PROD, enable.
 * `start` is the initial CMDQ PROD/CONS pointer (software may start anywhere).
 */
export async function bringUp(sys: System, cmdqLog2: number, evtqLog2 = 2, start = 0): Promise<RawQueues> {
  const ram = sys.board.layout.ram.base;
  // Bases aligned to the largest queue sizes (§6.3.26: aligned to the queue's size in bytes):
  // the CMDQ at 8 MiB (2^19 × 16 B), the event queue at 16 MiB; RAM below 8 MiB is for MSIs.
  const cmdqBase = ram + 0x80_0000;
  const evtqBase = ram + 0x100_0000;
  await sys.writeReg('SMMU_CR0', 0);
  await sys.waitReg('SMMU_CR0ACK', (v) => v === 0);
  await sys.writeReg('SMMU_CMDQ_BASE', encode64(REG.SMMU_CMDQ_BASE, { ADDR: BigInt(cmdqBase), LOG2SIZE: cmdqLog2 }));
  await sys.writeReg('SMMU_CMDQ_PROD', start);
  await sys.writeReg('SMMU_CMDQ_CONS', start);
  await sys.writeReg('SMMU_EVENTQ_BASE', encode64(REG.SMMU_EVENTQ_BASE, { ADDR: BigInt(evtqBase), LOG2SIZE: evtqLog2 }));
  await sys.writeReg('SMMU_EVENTQ_PROD', 0);
  await sys.writeReg('SMMU_EVENTQ_CONS', 0);
  const cr0 = encode32(REG.SMMU_CR0, { CMDQEN: 1, EVENTQEN: 1 });
  await sys.writeReg('SMMU_CR0', cr0);
  await sys.waitReg('SMMU_CR0ACK', (v) => v === cr0);
  return { cmdqBase, cmdqLog2, evtqBase, evtqLog2 };
}

export function cmd(c: CommandInput): Uint32Array {
  return encodeCommandWords(c);
}

/** Write a command into the slot that pointer `ptr` names. */
export function put(sys: System, q: RawQueues, ptr: number, words: ArrayLike<number>): void {
  sys.mem.writeWords(q.cmdqBase + ring.idx(ptr, q.cmdqLog2) * CMD_BYTES, words);
}

/** Write commands from `prod` on; returns the new PROD (not yet written to the register). */
export function putAll(sys: System, q: RawQueues, prod: number, cmds: readonly ArrayLike<number>[]): number {
  let p = prod;
  for (const c of cmds) {
    put(sys, q, p, c);
    p = ring.inc(p, 1, q.cmdqLog2);
  }
  return p;
}

/** Ring the doorbell and wait until CONS reaches `until` (default: the new PROD). */
export async function ring_(sys: System, prod: number, until = prod): Promise<number> {
  await sys.writeReg('SMMU_CMDQ_PROD', prod);
  await sys.waitReg('SMMU_CMDQ_CONS', (v) => (v & 0xfffff) === until || isCmdqError(sys));
  // An error shows in CONS.ERR before GERROR (§7.1); reading CONS after GERROR sees both.
  return sys.readReg('SMMU_CMDQ_CONS');
}

export function isCmdqError(sys: System): boolean {
  return ((sys.readReg('SMMU_GERROR') ^ sys.readReg('SMMU_GERRORN')) & 1) !== 0;
}

/** Acknowledge every active global error (GERRORN := GERROR), as Linux's handler does. */
export async function ackErrors(sys: System): Promise<void> {
  await sys.writeReg('SMMU_GERRORN', sys.readReg('SMMU_GERROR'));
}

/** Commands the device consumed (outcome 'consumed'), decoded names with their queue pointers. */
export function consumed(sys: System): { ptr: number; name: string; words: readonly number[] }[] {
  return sys.trace().entries.filter((e) => e.outcome === 'consumed').map((e) => ({ ptr: e.ptr, name: String(e.json.name), words: e.words }));
}
