/**
 * The fuzzer's oracle: a small reference model of the SMMU's programming interface, written from
 * the spec (IHI0070 G.b) and the model choices docs/fidelity.md documents, independent of
 * src/device. It is fed the same primitive actions the device gets (register writes, memory
 * writes, injected events) and, after each action, the commands the device traced. It predicts
 * per command consumed or CERROR_x with `checkCommand` (src/spec/legality.ts), replays the
 * queue, error, event and interrupt rules itself, and reports every difference as a Violation.
 *
 * Where the architecture permits several outcomes (CONSTRAINED UNPREDICTABLE, UNKNOWN, racing
 * software), the case is named in CU_CASES and the model accepts the outcomes listed there:
 * either the one outcome the model documents, or every permitted one, resolved by what the
 * device was seen to do (the trace shows which version of a rewritten entry was fetched).
 */

import * as ring from '../ring/index.ts';
import { CERROR_ABT } from '../spec/cerror.ts';
import { decodeCommand } from '../spec/command-codec.ts';
import { commandSpec, COMMAND_BYTES, COMMAND_WORDS, CS_SIG_IRQ, CS_SIG_SEV, OP, commandField } from '../spec/commands.ts';
import { EVENT_BYTES, EVENT_WORDS } from '../spec/events.ts';
import { ecmdqCount, OAS_BITS, type SmmuFeatures } from '../spec/features.ts';
import { SIM_EVENT_WORDS, SIM_REG } from '../spec/impdef.ts';
import { checkCommand } from '../spec/legality.ts';
import { getBits, lowMask, mask32, type Field } from '../spec/bits.ts';
import { ecmdqRegisterOffset, isPresent, REG, REGISTERS, res0Mask, type RegisterSpec } from '../spec/registers.ts';
import type { ReferenceCaches } from './translation.ts';

// ---------------------------------------------------------------------------------------------
// What the oracle checks, and the cases it names
// ---------------------------------------------------------------------------------------------

export type ViolationRule =
  | 'worker-failure'
  | 'hang'
  | 'trace-lost'
  | 'fetch-mismatch'
  | 'outcome-mismatch'
  | 'missing-consumption'
  | 'extra-consumption'
  | 'register-mismatch'
  | 'gerror-mismatch'
  | 'event-mismatch'
  | 'irq-mismatch'
  | 'memory-write'
  | 'translation-mismatch'
  | 'wait-timeout'
  | 'expect-mismatch'
  | 'exception';

export interface Violation {
  readonly rule: ViolationRule;
  /** What the check was about: a register name, a queue, a RAM address; with `check`, the failure's kind. */
  readonly subject?: string;
  /** A finer name of the broken check (e.g. 'index-raz'), when the rule has several. */
  readonly check?: string;
  /** Index of the scenario step during which it was seen (-1: set-up, steps.length: the end). */
  readonly step: number;
  readonly message: string;
  /** The spec section the broken expectation comes from. */
  readonly section?: string;
}

/** Every check, with the section that makes it a requirement. Drives docs/scenarios.md. */
export const ORACLE_RULES: readonly { readonly rule: ViolationRule; readonly section: string; readonly summary: string }[] = Object.freeze([
  { rule: 'worker-failure', section: '-', summary: 'A worker crashed, exited or the device reported itself crashed.' },
  { rule: 'hang', section: '§3.5.1, §6.3.28', summary: 'The device did not finish consuming (CONS never reached PROD, no error) within the settle time.' },
  { rule: 'trace-lost', section: '-', summary: 'The command trace overflowed, so the run cannot be judged.' },
  { rule: 'fetch-mismatch', section: '§3.5.1, §4.1', summary: 'The device read a command from another queue position, or words that were never written there (a torn or stale fetch).' },
  { rule: 'outcome-mismatch', section: '§4.1.3, §7.1', summary: 'A command was consumed that checkCommand says raises CERROR_x, or the reverse, or with another code.' },
  { rule: 'missing-consumption', section: '§3.5.1, §7.1', summary: 'A command the queue state says must be consumed was not.' },
  { rule: 'extra-consumption', section: '§7.1, §3.5.6.3', summary: 'A command was read after an error, beyond PROD, or while the queue was disabled.' },
  { rule: 'register-mismatch', section: '§6.3', summary: 'A register reads other than the spec and the model choices say (RO registers changed, RES0/RAZ bits set, Guarded writes taken, ACKs).' },
  { rule: 'gerror-mismatch', section: '§7.1, §7.5', summary: 'SMMU_GERROR differs: an error not activated, activated twice, or activated without cause.' },
  { rule: 'event-mismatch', section: '§7.2, §7.4', summary: 'The event queue PROD/OVFLG differ: an event lost without overflow, written while not writable, or overflow flagged wrongly.' },
  { rule: 'irq-mismatch', section: '§3.18, §4.7.3', summary: 'A wired interrupt line pulsed a different number of times than the rules say.' },
  { rule: 'memory-write', section: '§4.7.3, §7.2, §3.18', summary: 'RAM changed where no command, event or MSI may write, or an MSI carried the wrong data.' },
  { rule: 'translation-mismatch', section: '§3.17, §4.3, §4.4, §7.3.13', summary: 'A DMA came back other than the translation caches permit: a translation or configuration an invalidation removed was still used, one it did not remove was lost, a walk found other than the tables hold, or the fault record differs.' },
  { rule: 'wait-timeout', section: '-', summary: "A scenario's wait step timed out." },
  { rule: 'expect-mismatch', section: '-', summary: "The scenario's explicit expectation (commands, registers) does not hold." },
  { rule: 'exception', section: '-', summary: 'The harness itself failed (a bug in the fuzzer, or a system call rejected).' },
] as const);

/**
 * The CONSTRAINED UNPREDICTABLE, UNKNOWN and racing cases the oracle meets, what the spec
 * permits, and what it accepts. Out-of-range command parameters are LEGALITY_RULES rows
 * (src/spec/legality.ts) and are not repeated here.
 */
export const CU_CASES: readonly { readonly id: string; readonly section: string; readonly permitted: string; readonly accepted: string }[] = Object.freeze([
  { id: 'prod-bits-above-wrap', section: '§6.3.27', permitted: 'bits [19:QS+1] of a PROD written non-zero "might be stored but has no other effect"',
    accepted: 'stored and read back (fidelity: PROD bits above the wrap bit); only index and wrap drive consumption' },
  { id: 'queue-indices-inconsistent', section: '§3.5.1', permitted: 'consume entries at UNKNOWN locations, or consume nothing while inconsistent',
    accepted: 'the model walks the ring from CONS to PROD modulo 2^(QS+1) (PROD behind CONS consumes up to 2^(QS+1)-1 entries)' },
  { id: 'guarded-register-write', section: '§6.3.26, §6.3.28, §6.3.29, §6.3.107, §6.3.109', permitted: 'v3.2+: a write while the guard is closed is IGNORED',
    accepted: 'IGNORED (fidelity: Guarded registers)' },
  { id: 'cmdq-cons-err-write', section: '§6.3.28', permitted: 'a CONS write while CMDQEN == 0 may take or ignore ERR', accepted: 'ignored (fidelity)' },
  { id: 'cmdq-cons-err-inactive', section: '§6.3.28', permitted: 'ERR is UNKNOWN while CMDQ_ERR is not active', accepted: 'keeps the last reason code (fidelity)' },
  { id: 'index-after-log2size-change', section: '§6.3.27, §6.3.28, §6.3.95', permitted: 'after LOG2SIZE grows, index bits above the old wrap bit are UNKNOWN',
    accepted: 'whatever the device shows, adopted when the queue is enabled' },
  { id: 'cr0-without-ack', section: '§6.3.9, §6.3.10', permitted: 'software must wait for CR0ACK; the SMMU completes updates in finite time',
    accepted: 'CR0ACK equals CR0 as soon as the write is applied (fidelity)' },
  { id: 'gerrorn-toggle-inactive', section: '§6.3.20', permitted: 'toggling GERRORN bits of inactive errors: whether the SMMU activates the error is CONSTRAINED UNPREDICTABLE',
    accepted: 'GERRORN reads as written and GERROR does not change; a CMDQ_ERR made active this way does not stop the queue (the model); an EVENTQ_ABT_ERR made active this way may or may not stop event recording (either, as the device shows)' },
  { id: 'ecmdq-errack-mismatch', section: '§3.5.6.3', permitted: 'enabling, or writing PROD, with ERRACK != ERR is CONSTRAINED UNPREDICTABLE',
    accepted: 'the queue stays halted until they match (fidelity)' },
  { id: 'entry-rewritten-after-doorbell', section: '§3.5.2, §7.1', permitted: 'an entry software changes after PROD published it holds UNKNOWN data for the SMMU',
    accepted: 'each 32-bit word from the old or the new version (software stores words; the 16-byte entry is not single-copy atomic); the outcome follows the words fetched, checked and executed on the one snapshot' },
  { id: 'queue-disabled-mid-stream', section: '§6.3.9.3, §3.5.6.2', permitted: 'consumption stops at some point; CONS shows the entry after the last consumed',
    accepted: 'any prefix of the predicted consumption' },
  { id: 'msiaddress-beyond-oas', section: '§4.7.3, §3.4.3', permitted: 'MSIAddress is truncated to the OAS (the zero check covers the whole field)',
    accepted: 'the truncated address (legality rule msiaddress-beyond-oas)' },
  { id: 'eventq-unwritable-and-full', section: '§7.2.1, §7.4', permitted: 'an event discarded while EVENTQ_ABT_ERR is active and the queue is also full: the text does not say whether that is an overflow',
    accepted: 'either: OVFLG toggled (if no overflow is pending) or not, as the device shows' },
  { id: 'msi-order-across-queues', section: '§3.5.6.1', permitted: 'no ordering between queues', accepted: 'a word two queues write by MSI may end with either value' },
  { id: 'tlbi-granule-or-level-mismatch', section: '§4.4.1.1', permitted: 'with TG != 0, the SMMU is only required to invalidate entries inserted with granule TG and, with TTL != 0, from level TTL; SCALE > 39 is treated as 39 but software must not rely on it',
    accepted: 'entries in the range that the hints do not describe may or may not go, as the device shows' },
  { id: 'tlbi-va-top-byte', section: '§4.4.2', permitted: 'TBI is permitted but not required to apply to the Address of a CMD_TLBI_NH_*/EL2_*', accepted: 'with a top byte other than the sign extension of bit 55, entries the rest of the address covers may or may not go' },
  { id: 'tlbi-vmid-without-stage2', section: '§4.4.2', permitted: 'without stage 2 a non-zero VMID of CMD_TLBI_NH_* may invalidate for an UNKNOWN VMID, or not at all', accepted: 'entries in the rest of the scope may or may not go' },
  { id: 'invalidation-out-of-range', section: '§4.1.7', permitted: 'a command with an out-of-range parameter may have no effect or operate on another value', accepted: 'every cached entry of the kind the command invalidates may or may not go' },
  { id: 'prefetch', section: '§4.2', permitted: 'CMD_PREFETCH_CONFIG and CMD_PREFETCH_ADDR may or may not fill the caches', accepted: 'the structures and translations of the stream as memory holds them may now be cached' },
  { id: 'smmuen-transition', section: '§6.3.9', permitted: 'the architecture does not promise cached structures survive SMMUEN being cleared and set again', accepted: 'every cached entry may or may not be there afterwards' },
] as const);

// ---------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------

/** One primitive action, as the harness performs it on the device. */
export type Action =
  | { readonly t: 'reg'; readonly off: number; readonly lo: number; readonly hi?: number }
  | { readonly t: 'mem'; readonly pa: number; readonly words: readonly number[] }
  | { readonly t: 'inject'; readonly record: readonly number[] };

/** One command as the device traced it. */
export interface Observed {
  readonly queue: string;
  readonly ptr: number;
  readonly words: readonly number[];
  readonly outcome: string;
}

/** Per queue name, the traced commands not yet matched, with a cursor. */
export class Observations {
  private readonly byQueue = new Map<string, Observed[]>();
  private readonly pos = new Map<string, number>();

  constructor(entries: readonly Observed[]) {
    for (const e of entries) {
      let l = this.byQueue.get(e.queue);
      if (l === undefined) this.byQueue.set(e.queue, (l = []));
      l.push(e);
    }
  }

  next(queue: string): Observed | undefined {
    const p = this.pos.get(queue) ?? 0;
    const e = this.byQueue.get(queue)?.[p];
    if (e !== undefined) this.pos.set(queue, p + 1);
    return e;
  }

  /** Entries left for each queue. */
  leftovers(): [string, Observed[]][] {
    const out: [string, Observed[]][] = [];
    for (const [q, l] of this.byQueue) {
      const p = this.pos.get(q) ?? 0;
      if (p < l.length) out.push([q, l.slice(p)]);
    }
    return out;
  }
}

/** A command the model saw through, for the summary. */
export interface Seen {
  readonly queue: string;
  readonly ptr: number;
  readonly name: string;
  readonly outcome: string;
  /** The legality rule of a CERROR_ILL, or the out-of-range rules of a consumed command. */
  readonly rules: readonly string[];
}

export interface ExpectedReg {
  readonly off: number;
  readonly name: string;
  readonly value: number;
  readonly mask: number;
  readonly rule: ViolationRule;
  readonly section: string;
  readonly check?: string;
}

// ---------------------------------------------------------------------------------------------
// Field constants, from the register and command tables
// ---------------------------------------------------------------------------------------------

const CR0 = REG.SMMU_CR0.f;
const IRQC = REG.SMMU_IRQ_CTRL.f;
const GE = REG.SMMU_GERROR.f;
const EP = REG.SMMU_ECMDQ_PROD.f;
const EC = REG.SMMU_ECMDQ_CONS.f;
const CC = REG.SMMU_CMDQ_CONS.f;
const QB = REG.SMMU_CMDQ_BASE.f;
const EVP = REG.SMMU_EVENTQ_PROD.f;
const EVC = REG.SMMU_EVENTQ_CONS.f;
/** PROD/CONS index fields are 20 bits: a 19-bit index and its wrap bit (§6.3.27). */
const IDX_FIELD = lowMask(REG.SMMU_CMDQ_PROD.f.WR.width);
const MAX_QS = REG.SMMU_CMDQ_PROD.f.WR.width - 1;

const SYNC = commandSpec(OP.CMD_SYNC);
const F_CS = commandField(SYNC, 'CS')!;
const F_MSIDATA = commandField(SYNC, 'MSIData')!;
const F_MSIADDR = commandField(SYNC, 'MSIAddress')!;

function maskOf(...fs: Field[]): number {
  let m = 0;
  for (const f of fs) m |= mask32(f);
  return m >>> 0;
}

function bit(f: Field): number {
  return mask32(f);
}

const hx = (n: number) => `0x${(n >>> 0).toString(16)}`;
const TWO32 = 2 ** 32;
/** Queue and IRQ addresses are ADDR[55:x]: bits of the high word that hold address bits. */
const ADDR_HI_BITS = QB.ADDR.lsb + QB.ADDR.width - 32;
/** §6.3.26: a queue's base is effectively aligned to the larger of its size in bytes and 32. */
const QUEUE_MIN_ALIGN = 32;

/** The words of a 64-bit register's ADDR field [55:lsb] as an address number. */
function addrOf(lo: number, hi: number, lsb: number): number {
  return (hi & lowMask(ADDR_HI_BITS)) * TWO32 + ((lo & ~lowMask(lsb)) >>> 0);
}

// ---------------------------------------------------------------------------------------------
// Queue state
// ---------------------------------------------------------------------------------------------

class CmdQueue {
  baseLo = 0;
  baseHi = 0;
  /** PROD.WR as written (20 bits, stored bits above the wrap included: §6.3.27). */
  prod = 0;
  /** CONS.RD (20 bits). */
  cons = 0;
  /** CMDQ: CONS.ERR; ECMDQ: ERR_REASON. */
  err = 0;
  enabled = false;
  base = 0;
  log2 = 0;
  /** No command is consumed: CMDQ_ERR active, or ECMDQ ERR != ERRACK. */
  halted = false;
  /** CONS bits above the wrap may be UNKNOWN (LOG2SIZE grew after CONS was set, §6.3.28). */
  consUnknown = false;
  /** While consUnknown: the index bits still known (those up to the old wrap bit). */
  knownBits = IDX_FIELD;
  // ECMDQ only (§6.3.108, §6.3.109)
  en = 0;
  enack = 0;
  errBit = 0;
  errack = 0;

  constructor(readonly name: string, readonly ecmdq: number | undefined) {}

  get runnable(): boolean {
    return this.enabled && !this.halted && !ring.isEmpty(this.prod, this.cons, this.log2);
  }

  /** LOG2SIZE of the BASE register, capped at IDR1.CMDQS (§6.3.26). */
  qs(maxLog2: number): number {
    return Math.min(getBits([this.baseLo], QB.LOG2SIZE.lsb, QB.LOG2SIZE.width), maxLog2);
  }

  latch(maxLog2: number): void {
    this.log2 = this.qs(maxLog2);
    const bytes = Math.max(COMMAND_BYTES << this.log2, QUEUE_MIN_ALIGN);
    const addr = addrOf(this.baseLo, this.baseHi, QB.ADDR.lsb);
    this.base = addr - (addr % bytes);
    this.enabled = true;
  }
}

class EventQueueModel {
  baseLo = 0;
  baseHi = 0;
  prod = 0;
  ovflg = 0;
  cons = 0;
  ovack = 0;
  enabled = false;
  base = 0;
  log2 = 0;
  prodUnknown = false;
  knownBits = IDX_FIELD;
}

/**
 * A queue's LOG2SIZE changed from `before` to `after` (effective sizes) while it was disabled: the
 * SMMU-owned index reads as its truncation when the size shrank, and its bits above the old wrap
 * bit are UNKNOWN when it grew (§6.3.28, §6.3.95, §6.3.109; index-after-log2size-change).
 */
function resized(index: number, unknown: boolean, known: number, before: number, after: number): { index: number; unknown: boolean; known: number } {
  if (after < before) return { index: index & ring.ptrMask(after), unknown, known };
  if (after > before) return { index, unknown: true, known: (unknown ? known : IDX_FIELD) & ring.ptrMask(before) };
  return { index, unknown, known };
}

export interface ModelInit {
  readonly features: SmmuFeatures;
  readonly ram: { readonly base: number; readonly bytes: number };
  /** Read a register of the device as it is now (the starting state, and UNKNOWN values to adopt). */
  readonly read: (off: number) => number;
  /** Known model deviations to waive (default none: strict). */
  readonly waivers?: readonly KnownDeviation[];
  /** The scenario's translation world, when it has one: the reference caches to keep. */
  readonly caches?: ReferenceCaches;
}

/**
 * A difference between the device and the spec that is known and reported, waived so fuzzing
 * goes on: either violations it `matches` are dropped, or the model `mimics` the device at the
 * point named (and counts each time that changed the prediction).
 */
export interface KnownDeviation {
  readonly id: string;
  readonly summary: string;
  readonly section: string;
  readonly matches?: (v: Violation) => boolean;
  readonly mimics?: 'msi-address-untruncated' | 'eventq-writable-while-abort-active';
}

const EMPTY_WORDS: readonly number[] = Object.freeze([0, 0, 0, 0]);

/**
 * The reference model. `apply` takes one action; `consume` then matches what the device traced
 * against what the queues must do. Violations accumulate in `violations`.
 */
export class ReferenceSmmu {
  readonly f: SmmuFeatures;
  readonly ram: { readonly base: number; readonly bytes: number };
  private readonly read: (off: number) => number;
  readonly cmdq = new CmdQueue('CMDQ', undefined);
  readonly ecmdqs: CmdQueue[];
  readonly evt = new EventQueueModel();
  cr0 = 0;
  irqCtrl = 0;
  /** GERROR bits software made active by toggling GERRORN while the error was inactive. */
  private wrongToggles = 0;
  gerror = 0;
  gerrorn = 0;
  /** IRQ_CFG register words by offset (GERROR and EVENTQ, §6.3.21-23, §6.3.30-32). */
  private readonly cfg = new Map<number, number>();
  private readonly simData = new Array<number>(SIM_EVENT_WORDS).fill(0);
  /** SMMU_STRTAB_BASE (two words) and SMMU_STRTAB_BASE_CFG, Guarded by SMMUEN (§6.3.24, §6.3.25). */
  readonly strtab = { lo: 0, hi: 0, cfg: 0 };
  readonly caches: ReferenceCaches | undefined;
  /** RAM words the model knows (everything else is 0): pa -> value. */
  readonly mem = new Map<number, number>();
  /** Queue slots software rewrote while the device may have been reading: pa -> versions. */
  private readonly alts = new Map<number, number[][]>();
  /** Words of slots software rewrote while the device could read them: every value they may end with. */
  private readonly racy = new Map<number, Set<number>>();
  /** MSI targets written by more than one queue, with every value written. */
  private readonly msiByQueue = new Map<number, { queues: Set<string>; values: Set<number> }>();
  /** Wired interrupt pulses and WFE events the device must have sent. */
  readonly irq = { gerror: 0, eventq: 0, cmdSync: 0 };
  sev = 0;
  readonly violations: Violation[] = [];
  /** Known model deviations seen and waived, by id. */
  readonly waived = new Map<string, number>();
  private readonly waivers: readonly KnownDeviation[];
  readonly seen: Seen[] = [];
  readonly errors = new Map<string, number>();
  step = -1;
  /** Offsets of registers the model predicts exactly, and of registers software wrote. */
  private readonly written = new Set<number>();
  private readonly roSnapshot = new Map<number, number>();

  private readonly cr0Impl: number;
  private readonly irqImpl: number;
  private readonly gerrorImpl: number;

  constructor(init: ModelInit) {
    this.f = init.features;
    this.ram = init.ram;
    this.read = init.read;
    this.waivers = init.waivers ?? [];
    this.caches = init.caches;
    const f = this.f;
    // Fields that exist only with a feature are RES0 otherwise (§6.3.9, §6.3.16, §6.3.19).
    this.cr0Impl = maskOf(CR0.SMMUEN, CR0.CMDQEN, CR0.EVENTQEN) | (f.pri ? bit(CR0.PRIQEN) : 0) | (f.ats ? bit(CR0.ATSCHK) : 0)
      | (f.vmw ? mask32(CR0.VMW) : 0) | (f.dpt ? bit(CR0.DPT_WALK_EN) : 0);
    this.irqImpl = maskOf(IRQC.GERROR_IRQEN, IRQC.EVENTQ_IRQEN) | (f.pri ? bit(IRQC.PRIQ_IRQEN) : 0);
    this.gerrorImpl = (maskOf(GE.CMDQ_ERR, GE.EVENTQ_ABT_ERR, GE.SFM_ERR) | (f.pri ? bit(GE.PRIQ_ABT_ERR) : 0)
      | (f.msi ? maskOf(GE.MSI_CMDQ_ABT_ERR, GE.MSI_EVENTQ_ABT_ERR, GE.MSI_GERROR_ABT_ERR) : 0)
      | (f.msi && f.pri ? bit(GE.MSI_PRIQ_ABT_ERR) : 0) | (f.ecmdq ? bit(GE.CMDQP_ERR) : 0) | (f.dpt ? bit(GE.DPT_ERR) : 0)) >>> 0;
    this.ecmdqs = Array.from({ length: ecmdqCount(f) }, (_, n) => new CmdQueue(`ECMDQ${n}`, n));
    this.loadFrom(init.read);
  }

  // -------------------------------------------------------------------------------------------
  // Starting state: the device's registers after the harness's reset
  // -------------------------------------------------------------------------------------------

  private loadFrom(read: (off: number) => number): void {
    const R = REG;
    this.cr0 = (read(R.SMMU_CR0.offset) & this.cr0Impl) >>> 0;
    this.irqCtrl = read(R.SMMU_IRQ_CTRL.offset) & this.irqImpl;
    this.gerror = (read(R.SMMU_GERROR.offset) & this.gerrorImpl) >>> 0;
    this.gerrorn = (read(R.SMMU_GERRORN.offset) & this.gerrorImpl) >>> 0;
    const q = this.cmdq;
    q.baseLo = read(R.SMMU_CMDQ_BASE.offset);
    q.baseHi = read(R.SMMU_CMDQ_BASE.offset + 4);
    q.prod = read(R.SMMU_CMDQ_PROD.offset) & IDX_FIELD;
    const cons = read(R.SMMU_CMDQ_CONS.offset);
    q.cons = cons & IDX_FIELD;
    q.err = getBits([cons], CC.ERR.lsb, CC.ERR.width);
    q.halted = this.active(bit(GE.CMDQ_ERR));
    if ((this.cr0 & bit(CR0.CMDQEN)) !== 0) q.latch(this.f.cmdqs);
    for (const e of this.ecmdqs) {
      const off = (w: 'BASE' | 'PROD' | 'CONS') => ecmdqRegisterOffset(this.f, e.ecmdq!, w);
      e.baseLo = read(off('BASE'));
      e.baseHi = read(off('BASE') + 4);
      const p = read(off('PROD'));
      const c = read(off('CONS'));
      e.prod = p & IDX_FIELD;
      e.en = getBits([p], EP.EN.lsb, 1);
      e.errack = getBits([p], EP.ERRACK.lsb, 1);
      e.cons = c & IDX_FIELD;
      e.enack = getBits([c], EC.ENACK.lsb, 1);
      e.errBit = getBits([c], EC.ERR.lsb, 1);
      e.err = getBits([c], EC.ERR_REASON.lsb, EC.ERR_REASON.width);
      e.halted = e.errBit !== e.errack;
      if (e.en === 1 && e.enack === 1) e.latch(this.f.cmdqs);
    }
    const ev = this.evt;
    ev.baseLo = read(R.SMMU_EVENTQ_BASE.offset);
    ev.baseHi = read(R.SMMU_EVENTQ_BASE.offset + 4);
    const p = read(R.SMMU_EVENTQ_PROD.offset);
    ev.prod = p & IDX_FIELD;
    ev.ovflg = getBits([p], EVP.OVFLG.lsb, 1);
    const c = read(R.SMMU_EVENTQ_CONS.offset);
    ev.cons = c & IDX_FIELD;
    ev.ovack = getBits([c], EVC.OVACKFLG.lsb, 1);
    if ((this.cr0 & bit(CR0.EVENTQEN)) !== 0) this.latchEvt();
    for (const r of this.irqCfgRegs()) {
      for (let h = 0; h < r.width / 32; h++) this.cfg.set(r.offset + 4 * h, read(r.offset + 4 * h));
    }
    for (let k = 0; k < SIM_EVENT_WORDS; k++) this.simData[k] = read(SIM_REG.SIM_EVENT_DATA + 4 * k);
    this.strtab.lo = read(R.SMMU_STRTAB_BASE.offset);
    this.strtab.hi = read(R.SMMU_STRTAB_BASE.offset + 4);
    this.strtab.cfg = read(R.SMMU_STRTAB_BASE_CFG.offset);
    // Read-only registers must never change, except those the model predicts.
    const predicted = new Set([R.SMMU_CR0ACK.offset, R.SMMU_IRQ_CTRLACK.offset, R.SMMU_GERROR.offset]);
    for (const r of this.presentRegisters()) {
      if (r.access !== 'RO' || predicted.has(r.offset)) continue;
      for (let h = 0; h < r.width / 32; h++) this.roSnapshot.set(r.offset + 4 * h, read(r.offset + 4 * h));
    }
  }

  private presentRegisters(): RegisterSpec[] {
    const out: RegisterSpec[] = [];
    for (const r of REGISTERS) {
      if (r.page === 'secure' || r.page === 'ecmdq') continue;
      if (isPresent(r, this.f)) out.push(r);
    }
    return out;
  }

  private irqCfgRegs(): RegisterSpec[] {
    if (!this.f.msi) return [];
    const R = REG;
    return [R.SMMU_GERROR_IRQ_CFG0, R.SMMU_GERROR_IRQ_CFG1, R.SMMU_GERROR_IRQ_CFG2, R.SMMU_EVENTQ_IRQ_CFG0, R.SMMU_EVENTQ_IRQ_CFG1, R.SMMU_EVENTQ_IRQ_CFG2];
  }

  // -------------------------------------------------------------------------------------------
  // Helpers
  // -------------------------------------------------------------------------------------------

  private active(mask: number): boolean {
    return ((this.gerror ^ this.gerrorn) & mask) !== 0;
  }

  inRam(pa: number, len: number): boolean {
    return pa >= this.ram.base && pa + len <= this.ram.base + this.ram.bytes;
  }

  /** Record a violation; false when a known model deviation waived it. */
  private violate(rule: ViolationRule, message: string, section?: string, subject?: string, check?: string): boolean {
    const v: Violation = {
      rule,
      step: this.step,
      message,
      ...(section !== undefined ? { section } : {}),
      ...(subject !== undefined ? { subject } : {}),
      ...(check !== undefined ? { check } : {}),
    };
    const known = this.waivers.find((k) => k.matches?.(v) === true);
    if (known !== undefined) {
      this.waived.set(known.id, (this.waived.get(known.id) ?? 0) + 1);
      return false;
    }
    this.violations.push(v);
    return true;
  }

  private count(kind: string): void {
    this.errors.set(kind, (this.errors.get(kind) ?? 0) + 1);
  }

  private memWord(pa: number): number {
    return this.mem.get(pa) ?? 0;
  }

  private queueOf(name: string): CmdQueue | undefined {
    if (name === 'CMDQ') return this.cmdq;
    const m = /^ECMDQ(\d+)$/.exec(name);
    return m === null ? undefined : this.ecmdqs[Number(m[1])];
  }

  /** Every command queue in the order the model serves them (any order gives the same per-queue result). */
  queues(): CmdQueue[] {
    return [this.cmdq, ...this.ecmdqs];
  }

  // -------------------------------------------------------------------------------------------
  // Actions
  // -------------------------------------------------------------------------------------------

  /** Apply one action (racing memory writes were announced with expectRacing first). */
  apply(a: Action): void {
    switch (a.t) {
      case 'mem':
        for (let k = 0; k < a.words.length; k++) this.mem.set(a.pa + 4 * k, a.words[k]! >>> 0);
        return;
      case 'inject':
        // The harness writes the record into SIM_EVENT_DATA0-7, then SIM_EVENT_GO.
        for (let k = 0; k < SIM_EVENT_WORDS; k++) this.simData[k] = (a.record[k] ?? 0) >>> 0;
        this.inject(a.record);
        return;
      case 'reg':
        if (a.hi !== undefined) {
          this.write32(a.off, a.lo);
          this.write32(a.off + 4, a.hi);
        } else {
          this.write32(a.off, a.lo);
        }
    }
  }

  /** The 16-byte command slots a write of `n` words at `pa` touches. */
  private slotsOf(pa: number, n: number): number[] {
    const out: number[] = [];
    for (let k = 0; k < n; k++) {
      const a = pa + 4 * k;
      const slot = a - ((a - this.ram.base) % COMMAND_BYTES);
      if (!out.includes(slot)) out.push(slot);
    }
    return out;
  }

  /** Record the slot's current version as a possible fetch (before a racing rewrite). */
  private addAlt(slot: number): void {
    if (this.alts.has(slot)) return;
    this.alts.set(slot, [this.slotWords(slot)]);
  }

  /**
   * Before a window of actions is replayed: a memory write that races the device makes both the
   * slot's current version and the new one acceptable fetches (entry-rewritten-after-doorbell).
   */
  expectRacing(a: Action): void {
    if (a.t !== 'mem') return;
    for (const s of this.slotsOf(a.pa, a.words.length)) {
      this.addAlt(s);
      const versions = this.alts.get(s)!;
      const next = this.slotWords(s);
      for (let k = 0; k < a.words.length; k++) {
        const pa = a.pa + 4 * k;
        if (pa >= s && pa < s + COMMAND_BYTES) next[(pa - s) >>> 2] = a.words[k]! >>> 0;
      }
      if (!versions.some((v) => sameWords(v, next))) versions.push(next);
      for (const v of versions) {
        for (let k = 0; k < COMMAND_WORDS; k++) {
          let set = this.racy.get(s + 4 * k);
          if (set === undefined) this.racy.set(s + 4 * k, (set = new Set()));
          set.add(v[k]! >>> 0);
        }
      }
    }
  }

  /**
   * The racing window is over. A slot software rewrote while the device could read it ends with
   * one of several contents (the rewrite before or after a fetch and an MSI into the slot): the
   * model adopts what RAM holds if every word is one the race allows, else reports it.
   */
  settleAlts(readWord: (pa: number) => number): void {
    for (const slot of this.alts.keys()) {
      for (let k = 0; k < COMMAND_WORDS; k++) {
        const pa = slot + 4 * k;
        const got = readWord(pa) >>> 0;
        if (got === this.memWord(pa)) continue;
        if (this.racy.get(pa)?.has(got) === true) {
          this.mem.set(pa, got);
          continue;
        }
        this.violate('memory-write', `RAM at ${hx(pa)} (${this.regionOf(pa)}) holds ${hx(got)} after a racing rewrite; expected ${hx(this.memWord(pa))}`, '§3.5.2, §4.7.3');
        break;
      }
    }
    this.alts.clear();
  }

  private slotWords(slot: number): number[] {
    return [this.memWord(slot), this.memWord(slot + 4), this.memWord(slot + 8), this.memWord(slot + 12)];
  }

  private write32(off: number, v: number): void {
    v >>>= 0;
    this.written.add(off);
    const R = REG;
    const f = this.f;
    const q = this.cmdq;
    switch (off) {
      case R.SMMU_CMDQ_PROD.offset:
        // §6.3.27: bits [31:20] RES0; [19:QS+1] stored, no effect (prod-bits-above-wrap).
        q.prod = v & IDX_FIELD;
        return;
      case R.SMMU_CMDQ_CONS.offset:
        // Guarded by CMDQEN (§6.3.28); ERR ignored (cmdq-cons-err-write).
        if (this.enabledOrAck(CR0.CMDQEN)) return;
        // §6.3.28: RD bits [19:QS+1] are RAZ.
        q.cons = v & ring.ptrMask(q.qs(f.cmdqs));
        q.consUnknown = false;
        return;
      case R.SMMU_CMDQ_BASE.offset:
      case R.SMMU_CMDQ_BASE.offset + 4: {
        if (this.enabledOrAck(CR0.CMDQEN)) return; // guarded-register-write
        const before = q.qs(f.cmdqs);
        if (off === R.SMMU_CMDQ_BASE.offset) q.baseLo = (v & mask32lo(R.SMMU_CMDQ_BASE)) >>> 0;
        else q.baseHi = (v & mask32hi(R.SMMU_CMDQ_BASE)) >>> 0;
        ({ index: q.cons, unknown: q.consUnknown, known: q.knownBits } = resized(q.cons, q.consUnknown, q.knownBits, before, q.qs(f.cmdqs)));
        return;
      }
      case R.SMMU_CR0.offset:
        this.writeCr0((v & this.cr0Impl) >>> 0);
        return;
      case R.SMMU_IRQ_CTRL.offset:
        this.irqCtrl = (v & this.irqImpl) >>> 0;
        return;
      case R.SMMU_GERRORN.offset: {
        const wasActive = this.gerror ^ this.gerrorn;
        const now = (v & this.gerrorImpl) >>> 0;
        // gerrorn-toggle-inactive: a bit toggled while its error was inactive shows the error
        // active; whether the SMMU treats it as activated is CONSTRAINED UNPREDICTABLE (§6.3.20).
        this.wrongToggles = ((this.wrongToggles | ((this.gerrorn ^ now) & ~wasActive)) & (this.gerror ^ now)) >>> 0;
        this.gerrorn = now;
        // §7.1: acknowledging CMDQ_ERR resumes the CMDQ at CONS.RD.
        if (q.halted && !this.active(bit(GE.CMDQ_ERR))) q.halted = false;
        return;
      }
      case R.SMMU_EVENTQ_BASE.offset:
      case R.SMMU_EVENTQ_BASE.offset + 4: {
        if (this.enabledOrAck(CR0.EVENTQEN)) return;
        const ev = this.evt;
        const before = Math.min(this.evtQs(), f.eventqs);
        if (off === R.SMMU_EVENTQ_BASE.offset) ev.baseLo = (v & mask32lo(R.SMMU_EVENTQ_BASE)) >>> 0;
        else ev.baseHi = (v & mask32hi(R.SMMU_EVENTQ_BASE)) >>> 0;
        ({ index: ev.prod, unknown: ev.prodUnknown, known: ev.knownBits } = resized(ev.prod, ev.prodUnknown, ev.knownBits, before, Math.min(this.evtQs(), f.eventqs)));
        return;
      }
      case R.SMMU_EVENTQ_PROD.offset:
        // §6.3.95: RW only while the event queue is disabled.
        if (this.enabledOrAck(CR0.EVENTQEN)) return;
        // §6.3.95: WR bits [19:QS+1] are RAZ.
        this.evt.prod = v & ring.ptrMask(Math.min(this.evtQs(), f.eventqs));
        this.evt.ovflg = getBits([v], EVP.OVFLG.lsb, 1);
        this.evt.prodUnknown = false;
        return;
      case R.SMMU_EVENTQ_CONS.offset:
        this.evt.cons = v & IDX_FIELD;
        this.evt.ovack = getBits([v], EVC.OVACKFLG.lsb, 1);
        return;
      case SIM_REG.SIM_EVENT_GO:
        this.inject([...this.simData]);
        return;
      case SIM_REG.SIM_INV_ALL:
        this.caches?.invalidateAll();
        return;
      case R.SMMU_STRTAB_BASE.offset:
      case R.SMMU_STRTAB_BASE.offset + 4:
      case R.SMMU_STRTAB_BASE_CFG.offset:
        // Guarded by SMMUEN (§6.3.24, §6.3.25): IGNORED while translation is on.
        if (this.enabledOrAck(CR0.SMMUEN)) return;
        if (off === R.SMMU_STRTAB_BASE.offset) this.strtab.lo = (v & mask32lo(R.SMMU_STRTAB_BASE)) >>> 0;
        else if (off === R.SMMU_STRTAB_BASE.offset + 4) this.strtab.hi = (v & mask32hi(R.SMMU_STRTAB_BASE)) >>> 0;
        else this.strtab.cfg = (v & mask32lo(R.SMMU_STRTAB_BASE_CFG)) >>> 0;
        return;
    }
    if (off >= SIM_REG.SIM_EVENT_DATA && off < SIM_REG.SIM_EVENT_DATA + 4 * SIM_EVENT_WORDS) {
      this.simData[(off - SIM_REG.SIM_EVENT_DATA) >>> 2] = v;
      return;
    }
    if (f.msi && this.cfg.has(off)) {
      const gerr = off >= R.SMMU_GERROR_IRQ_CFG0.offset && off < R.SMMU_GERROR_IRQ_CFG2.offset + 4;
      // Guarded by the matching IRQEN (§6.3.21-23, §6.3.30-32).
      if ((this.irqCtrl & bit(gerr ? IRQC.GERROR_IRQEN : IRQC.EVENTQ_IRQEN)) !== 0) return;
      const spec = this.irqCfgRegs().find((r) => off >= r.offset && off < r.offset + r.width / 8)!;
      this.cfg.set(off, (v & (off === spec.offset ? mask32lo(spec) : mask32hi(spec))) >>> 0);
      return;
    }
    for (const e of this.ecmdqs) this.writeEcmdq(e, off, v);
  }

  private evtQs(): number {
    return Math.min(getBits([this.evt.baseLo], QB.LOG2SIZE.lsb, QB.LOG2SIZE.width), MAX_QS);
  }

  private enabledOrAck(field: Field): boolean {
    // CR0ACK follows CR0 at once in the model (cr0-without-ack), so one value answers both.
    return (this.cr0 & bit(field)) !== 0;
  }

  private writeCr0(now: number): void {
    const old = this.cr0;
    this.cr0 = now;
    const rose = now & ~old;
    const fell = old & ~now;
    const q = this.cmdq;
    if (rose & bit(CR0.CMDQEN)) {
      if (q.consUnknown) q.cons = this.read(REG.SMMU_CMDQ_CONS.offset) & IDX_FIELD; // index-after-log2size-change
      q.latch(this.f.cmdqs);
    }
    // §6.3.9.3: disabling stops consumption; CONS shows the next entry; the error stays.
    if (fell & bit(CR0.CMDQEN)) q.enabled = false;
    if (rose & bit(CR0.EVENTQEN)) {
      if (this.evt.prodUnknown) this.evt.prod = this.read(REG.SMMU_EVENTQ_PROD.offset) & IDX_FIELD;
      this.latchEvt();
    }
    if (fell & bit(CR0.EVENTQEN)) this.evt.enabled = false;
    // smmuen-transition: nothing promises cached structures survive SMMUEN going off and on.
    if ((rose | fell) & bit(CR0.SMMUEN)) this.caches?.forgetAll('all');
  }

  private latchEvt(): void {
    const ev = this.evt;
    ev.log2 = Math.min(getBits([ev.baseLo], QB.LOG2SIZE.lsb, QB.LOG2SIZE.width), this.f.eventqs);
    const bytes = Math.max(EVENT_BYTES << ev.log2, QUEUE_MIN_ALIGN);
    const addr = addrOf(ev.baseLo, ev.baseHi, QB.ADDR.lsb);
    ev.base = addr - (addr % bytes);
    ev.enabled = true;
  }

  private writeEcmdq(e: CmdQueue, off: number, v: number): void {
    const n = e.ecmdq!;
    const baseOff = ecmdqRegisterOffset(this.f, n, 'BASE');
    const prodOff = ecmdqRegisterOffset(this.f, n, 'PROD');
    const consOff = ecmdqRegisterOffset(this.f, n, 'CONS');
    const disabled = e.en === 0 && e.enack === 0;
    if (off === baseOff || off === baseOff + 4) {
      if (!disabled) return; // §6.3.107, guarded-register-write
      const before = e.qs(this.f.cmdqs);
      if (off === baseOff) e.baseLo = (v & mask32lo(REG.SMMU_ECMDQ_BASE)) >>> 0;
      else e.baseHi = (v & mask32hi(REG.SMMU_ECMDQ_BASE)) >>> 0;
      ({ index: e.cons, unknown: e.consUnknown, known: e.knownBits } = resized(e.cons, e.consUnknown, e.knownBits, before, e.qs(this.f.cmdqs)));
    } else if (off === consOff) {
      // §6.3.109: RW only while disabled; RD and ERR take the written value (fidelity).
      if (!disabled) return;
      e.cons = v & ring.ptrMask(e.qs(this.f.cmdqs)); // RD bits [19:QS+1] RAZ
      e.errBit = getBits([v], EC.ERR.lsb, 1);
      e.consUnknown = false;
    } else if (off === prodOff) {
      // §6.3.108: the model completes EN transitions at once, so PROD is always RW.
      const en = getBits([v], EP.EN.lsb, 1);
      e.errack = getBits([v], EP.ERRACK.lsb, 1);
      e.prod = v & IDX_FIELD;
      if (en === 1 && e.en === 0) {
        if (e.consUnknown) e.cons = this.read(consOff) & IDX_FIELD;
        e.latch(this.f.cmdqs);
      } else if (en === 0 && e.en === 1) {
        e.enabled = false; // §3.5.6.2: ENACK = 0 once consumption has stopped
      }
      e.en = en;
      e.enack = en;
      // §3.5.6.3 (ecmdq-errack-mismatch): consume only while ERRACK == ERR.
      e.halted = e.errack !== e.errBit;
    }
  }

  // -------------------------------------------------------------------------------------------
  // Errors and interrupts (§7.5, §3.18)
  // -------------------------------------------------------------------------------------------

  /** Activate a global error unless it is already active, and interrupt (§7.2, §7.5). */
  private activate(field: Field): void {
    const m = bit(field);
    if ((m & this.gerrorImpl) === 0 || this.active(m)) return;
    this.gerror = (this.gerror ^ m) >>> 0;
    this.wrongToggles = (this.wrongToggles & ~m) >>> 0;
    this.count(`GERROR:${field.name}`);
    if ((this.irqCtrl & bit(IRQC.GERROR_IRQEN)) === 0) return;
    if (!this.interrupt(REG.SMMU_GERROR_IRQ_CFG0.offset, REG.SMMU_GERROR_IRQ_CFG1.offset, 'gerror') && this.f.msi) {
      // A GERROR MSI that aborts activates MSI_GERROR_ABT_ERR and sends nothing more (§7.5).
      const g = bit(GE.MSI_GERROR_ABT_ERR);
      if (!this.active(g)) {
        this.gerror = (this.gerror ^ g) >>> 0;
        this.count('GERROR:MSI_GERROR_ABT_ERR');
      }
    }
  }

  /** §3.18: an MSI of CFG1 to CFG0.ADDR when MSIs exist and ADDR != 0, else the wired line. False if the MSI aborted. */
  private interrupt(cfg0: number, cfg1: number, line: 'gerror' | 'eventq'): boolean {
    const addr = this.f.msi ? addrOf(this.cfg.get(cfg0) ?? 0, this.cfg.get(cfg0 + 4) ?? 0, REG.SMMU_GERROR_IRQ_CFG0.f.ADDR.lsb) : 0;
    if (addr === 0) {
      this.irq[line]++;
      return true;
    }
    if (!this.inRam(addr, 4)) return false;
    this.mem.set(addr, this.cfg.get(cfg1) ?? 0);
    return true;
  }

  // -------------------------------------------------------------------------------------------
  // Events (§7.2, §7.4)
  // -------------------------------------------------------------------------------------------

  /**
   * Record an event the device detected (an injected one, or a DMA fault): the queue rules of
   * §7.2 and §7.4. Returns the address the record goes to, or undefined when it is not written.
   */
  recordEvent(record: readonly number[]): number | undefined {
    return this.inject(record);
  }

  private inject(record: readonly number[]): number | undefined {
    const ev = this.evt;
    if (!ev.enabled) {
      this.count('EVENTQ:discarded-disabled'); // §7.4: no overflow while EVENTQEN == 0
      return undefined;
    }
    if (this.active(bit(GE.EVENTQ_ABT_ERR))) {
      // §7.2.1: not writable while EVENTQ_ABT_ERR is active. If software made it look active
      // (gerrorn-toggle-inactive) either outcome is permitted: take the one the device shows.
      const dev = this.read(REG.SMMU_EVENTQ_PROD.offset);
      const moved = ((dev ^ ev.prod) & ring.ptrMask(ev.log2)) !== 0 || getBits([dev], EVP.OVFLG.lsb, 1) !== ev.ovflg;
      let writtenAnyway = (this.wrongToggles & bit(GE.EVENTQ_ABT_ERR)) !== 0 && moved;
      const mimic = this.waivers.find((k) => k.mimics === 'eventq-writable-while-abort-active');
      if (!writtenAnyway && mimic !== undefined) {
        writtenAnyway = true;
        this.waived.set(mimic.id, (this.waived.get(mimic.id) ?? 0) + 1);
      }
      if (!writtenAnyway) {
        // eventq-unwritable-and-full: with the queue also full, whether the discard is an
        // overflow is not said; take what the device shows.
        if (ring.isFull(ev.prod, ev.cons, ev.log2) && ev.ovflg === ev.ovack && getBits([dev], EVP.OVFLG.lsb, 1) !== ev.ovflg) {
          ev.ovflg ^= 1;
          this.count('EVENTQ:overflow');
          return undefined;
        }
        this.count('EVENTQ:discarded-abort-active');
        return undefined;
      }
    }
    if (ring.isFull(ev.prod, ev.cons, ev.log2)) {
      // §7.4: toggle OVFLG only if the overflow condition is not already present.
      if (ev.ovflg === ev.ovack) ev.ovflg ^= 1;
      this.count('EVENTQ:overflow');
      return undefined;
    }
    const pa = ev.base + ring.idx(ev.prod, ev.log2) * EVENT_BYTES;
    if (!this.inRam(pa, EVENT_BYTES)) {
      // §7.2.2: a synchronous abort: PROD does not move.
      this.activate(GE.EVENTQ_ABT_ERR);
      return undefined;
    }
    const wasEmpty = ring.isEmpty(ev.prod, ev.cons, ev.log2);
    for (let k = 0; k < EVENT_WORDS; k++) this.mem.set(pa + 4 * k, (record[k] ?? 0) >>> 0);
    ev.prod = ring.inc(ev.prod, 1, ev.log2);
    ev.prodUnknown = false;
    this.count('EVENTQ:written');
    // §3.18.2: the interrupt fires when the queue goes from empty to non-empty.
    if (wasEmpty && (this.irqCtrl & bit(IRQC.EVENTQ_IRQEN)) !== 0) {
      if (!this.interrupt(REG.SMMU_EVENTQ_IRQ_CFG0.offset, REG.SMMU_EVENTQ_IRQ_CFG1.offset, 'eventq')) this.activate(GE.MSI_EVENTQ_ABT_ERR);
    }
    return pa;
  }

  /** A translation check failed (src/fuzz/translation.ts). */
  violateTranslation(message: string, check: string, section = '§3.17, §4.4'): void {
    this.violate('translation-mismatch', message, section, 'DMA', check);
  }

  // -------------------------------------------------------------------------------------------
  // Consumption
  // -------------------------------------------------------------------------------------------

  /**
   * Let every runnable queue consume, matching the device's traced commands. `prefix`: the
   * device may have stopped anywhere (a racing disable); otherwise it must have consumed all.
   */
  consume(obs: Observations, prefix: boolean): void {
    for (const q of this.queues()) {
      this.consumeQueue(q, obs, prefix);
      if (this.violations.length > 0) return;
    }
  }

  /** After the last consume of a settled step: nothing traced may be left over. */
  finishStep(obs: Observations): void {
    for (const [name, rest] of obs.leftovers()) {
      const q = this.queueOf(name);
      const e = rest[0]!;
      const why = q === undefined ? 'a queue the model does not know' : !q.enabled ? 'the queue is disabled' : q.halted ? 'the queue is halted by an error' : 'the queue is empty';
      this.violate('extra-consumption', `${name}[${hx(e.ptr)}] ${describe(e.words)} -> ${e.outcome} was read, but ${why} (${rest.length} extra)`, '§7.1');
      return;
    }
  }

  private consumeQueue(q: CmdQueue, obs: Observations, prefix: boolean): void {
    while (q.runnable) {
      const ptr = q.cons;
      const o = obs.next(q.name);
      if (o === undefined) {
        if (!prefix) {
          this.violate('missing-consumption', `${q.name}: the entry at ${hx(ring.inc(ptr, 0, q.log2))} (CONS ${hx(ptr)}, PROD ${hx(q.prod)}) was not consumed`, '§3.5.1');
        }
        return;
      }
      const pm = ring.ptrMask(q.log2);
      if (((o.ptr ^ ptr) & pm) !== 0) {
        this.violate('fetch-mismatch', `${q.name}: the device read the entry at ${hx(o.ptr & pm)}, the next one is ${hx(ptr & pm)}`, '§3.5.1');
        return;
      }
      const slot = q.base + ring.idx(ptr, q.log2) * COMMAND_BYTES;
      const next = ring.inc(ptr, 1, q.log2);
      if (!this.inRam(slot, COMMAND_BYTES)) {
        // §7.1 CERROR_ABT: the fetch aborted; CONS stays on the entry.
        this.note(q, ptr, EMPTY_WORDS, 'CERROR_ABT', ['fetch-abort']);
        if (o.outcome !== 'CERROR_ABT') {
          this.violate('outcome-mismatch', `${q.name}[${hx(ptr)}]: the entry at ${hx(slot)} is outside RAM, so the fetch aborts (CERROR_ABT); the device reported ${o.outcome}`, '§7.1');
          return;
        }
        this.stop(q, CERROR_ABT);
        return;
      }
      const versions = this.alts.get(slot) ?? [this.slotWords(slot)];
      // A racing rewrite may be seen word by word: software's 32-bit stores are single-copy
      // atomic, the 16-byte entry is not (entry-rewritten-after-doorbell).
      const words = versions.length === 1 ? (sameWords(versions[0]!, o.words) ? versions[0] : undefined) : mixOf(versions, o.words);
      if (words === undefined) {
        const exp = versions.map((v) => hexWords(v)).join(' or ');
        this.violate('fetch-mismatch', `${q.name}[${hx(ptr)}]: the device read ${hexWords(o.words)}, but the slot at ${hx(slot)} holds ${exp}`, '§3.5.2');
        return;
      }
      const verdict = checkCommand(words, this.f);
      const predicted = verdict.ok ? 'consumed' : verdict.error;
      this.note(q, ptr, words, predicted, verdict.ok ? verdict.outOfRange.map((x) => x.rule) : [verdict.finding.rule]);
      if (o.outcome !== predicted) {
        const why = verdict.ok ? 'it is legal' : `${verdict.finding.rule}: ${verdict.finding.reason} (${verdict.finding.section})`;
        this.violate('outcome-mismatch', `${q.name}[${hx(ptr)}] ${describe(words)}: expected ${predicted} (${why}), the device reported ${o.outcome}`, verdict.ok ? '§4.1' : verdict.finding.section);
        return;
      }
      if (!verdict.ok) {
        this.stop(q, verdict.code);
        return;
      }
      this.execute(q, words);
      this.caches?.command(words, verdict.outOfRange.map((x) => x.rule));
      q.cons = next;
      q.consUnknown = false;
    }
  }

  private note(q: CmdQueue, ptr: number, words: readonly number[], outcome: string, rules: readonly string[]): void {
    const name = outcome === 'CERROR_ABT' && words === EMPTY_WORDS ? '(fetch abort)' : decodeCommand(words).name;
    this.seen.push({ queue: q.name, ptr, name, outcome, rules });
    if (outcome !== 'consumed') this.count(outcome === 'CERROR_ILL' ? `CERROR_ILL:${rules[0] ?? '?'}` : outcome);
  }

  /** §7.1 / §3.5.6.3: the queue stops on the command; the error is reported. */
  private stop(q: CmdQueue, code: number): void {
    if (q.ecmdq === undefined) {
      q.err = code;
      q.halted = true;
      this.activate(GE.CMDQ_ERR);
      return;
    }
    q.errBit ^= 1;
    q.err = code & lowMask(EC.ERR_REASON.width);
    q.halted = q.errBit !== q.errack;
    this.activate(GE.CMDQP_ERR);
  }

  /** The effects of a consumed command the oracle can see: CMD_SYNC completion signals (§4.7.3). */
  private execute(q: CmdQueue, w: readonly number[]): void {
    if ((w[0]! & 0xff) !== OP.CMD_SYNC) return;
    const cs = getBits(w, F_CS.lsb, F_CS.width);
    if (cs === CS_SIG_SEV) {
      if (this.f.sev) this.sev++;
      return;
    }
    if (cs !== CS_SIG_IRQ) return;
    this.irq.cmdSync++; // the wired CMD_SYNC interrupt pulses whatever MSIAddress is
    if (!this.f.msi) return;
    // MSIAddress[55:2] at [119:66]: bits [31:2] and [55:32] of the address.
    const lo = (getBits(w, F_MSIADDR.lsb, 30) << 2) >>> 0;
    const hi = getBits(w, F_MSIADDR.lsb + 30, F_MSIADDR.width - 30);
    if ((lo | hi) === 0) return; // the zero check covers the whole field (§4.7.3)
    // msiaddress-beyond-oas: truncated to the OAS.
    const oas = OAS_BITS[this.f.oas] ?? 52;
    let addr = (hi & lowMask(oas - 32)) * TWO32 + lo;
    const untruncated = hi * TWO32 + lo;
    if (addr !== untruncated) {
      const mimic = this.waivers.find((k) => k.mimics === 'msi-address-untruncated');
      if (mimic !== undefined) {
        addr = untruncated;
        this.waived.set(mimic.id, (this.waived.get(mimic.id) ?? 0) + 1);
      }
    }
    if (!this.inRam(addr, 4)) {
      this.activate(GE.MSI_CMDQ_ABT_ERR);
      return;
    }
    const data = getBits(w, F_MSIDATA.lsb, F_MSIDATA.width);
    this.mem.set(addr, data);
    this.racy.get(addr)?.add(data);
    // An MSI into a slot software is rewriting: the rewrite may land before or after it, so
    // each version may now also be seen with the MSI's word.
    const slot = addr - ((addr - this.ram.base) % COMMAND_BYTES);
    const versions = this.alts.get(slot);
    if (versions !== undefined) {
      for (const v of [...versions]) {
        const w = [...v];
        w[(addr - slot) >>> 2] = data;
        if (!versions.some((x) => sameWords(x, w))) versions.push(w);
      }
    }
    let m = this.msiByQueue.get(addr);
    if (m === undefined) this.msiByQueue.set(addr, (m = { queues: new Set(), values: new Set() }));
    m.queues.add(q.name);
    m.values.add(data);
  }

  // -------------------------------------------------------------------------------------------
  // What the registers must show
  // -------------------------------------------------------------------------------------------

  /** Every register value the model predicts, with the bits that matter. */
  expectedRegisters(): ExpectedReg[] {
    const R = REG;
    const out: ExpectedReg[] = [];
    const add = (off: number, name: string, value: number, mask = 0xffff_ffff, rule: ViolationRule = 'register-mismatch', section = '§6.3', check?: string) =>
      out.push({ off, name, value: value >>> 0, mask: mask >>> 0, rule, section, ...(check !== undefined ? { check } : {}) });
    add(R.SMMU_CR0.offset, 'SMMU_CR0', this.cr0, 0xffff_ffff, 'register-mismatch', '§6.3.9');
    add(R.SMMU_CR0ACK.offset, 'SMMU_CR0ACK', this.cr0, 0xffff_ffff, 'register-mismatch', '§6.3.10');
    add(R.SMMU_IRQ_CTRL.offset, 'SMMU_IRQ_CTRL', this.irqCtrl, 0xffff_ffff, 'register-mismatch', '§6.3.16');
    add(R.SMMU_IRQ_CTRLACK.offset, 'SMMU_IRQ_CTRLACK', this.irqCtrl, 0xffff_ffff, 'register-mismatch', '§6.3.18');
    add(R.SMMU_GERROR.offset, 'SMMU_GERROR', this.gerror, 0xffff_ffff, 'gerror-mismatch', '§6.3.19, §7.1');
    add(R.SMMU_GERRORN.offset, 'SMMU_GERRORN', this.gerrorn, 0xffff_ffff, 'gerror-mismatch', '§6.3.20');
    this.queueRegs(this.cmdq, R.SMMU_CMDQ_BASE.offset, R.SMMU_CMDQ_PROD.offset, R.SMMU_CMDQ_CONS.offset, add);
    for (const e of this.ecmdqs) {
      this.queueRegs(e, ecmdqRegisterOffset(this.f, e.ecmdq!, 'BASE'), ecmdqRegisterOffset(this.f, e.ecmdq!, 'PROD'), ecmdqRegisterOffset(this.f, e.ecmdq!, 'CONS'), add);
    }
    const ev = this.evt;
    add(R.SMMU_EVENTQ_BASE.offset, 'SMMU_EVENTQ_BASE', ev.baseLo);
    add(R.SMMU_EVENTQ_BASE.offset + 4, 'SMMU_EVENTQ_BASE[63:32]', ev.baseHi);
    const eqs = this.evtQs();
    const epm = ring.ptrMask(eqs);
    // §6.3.95: WR bits [19:QS+1] are RAZ (UNKNOWN after LOG2SIZE grew).
    const evRaz = IDX_FIELD & ~epm;
    const evUnknown = ev.prodUnknown ? IDX_FIELD & ~ev.knownBits : 0;
    add(R.SMMU_EVENTQ_PROD.offset, 'SMMU_EVENTQ_PROD', ((ev.ovflg << EVP.OVFLG.lsb) | (ev.prod & epm)) >>> 0, ~evRaz & ~evUnknown, 'event-mismatch', '§6.3.95, §7.4');
    if (!ev.prodUnknown) add(R.SMMU_EVENTQ_PROD.offset, 'SMMU_EVENTQ_PROD WR bits above the wrap bit (RAZ)', 0, evRaz, 'register-mismatch', '§6.3.95', 'index-raz');
    add(R.SMMU_EVENTQ_CONS.offset, 'SMMU_EVENTQ_CONS', ((ev.ovack << EVC.OVACKFLG.lsb) | ev.cons) >>> 0, 0xffff_ffff, 'register-mismatch', '§6.3.96');
    for (const [off, v] of this.cfg) add(off, nameAt(this.f, off), v);
    for (let k = 0; k < SIM_EVENT_WORDS; k++) add(SIM_REG.SIM_EVENT_DATA + 4 * k, `SIM_EVENT_DATA${k}`, this.simData[k]!);
    add(R.SMMU_STRTAB_BASE.offset, 'SMMU_STRTAB_BASE', this.strtab.lo, 0xffff_ffff, 'register-mismatch', '§6.3.24');
    add(R.SMMU_STRTAB_BASE.offset + 4, 'SMMU_STRTAB_BASE[63:32]', this.strtab.hi, 0xffff_ffff, 'register-mismatch', '§6.3.24');
    add(R.SMMU_STRTAB_BASE_CFG.offset, 'SMMU_STRTAB_BASE_CFG', this.strtab.cfg, 0xffff_ffff, 'register-mismatch', '§6.3.25');
    for (const [off, v] of this.roSnapshot) add(off, `${nameAt(this.f, off)} (read-only)`, v);
    // Registers software wrote that the model does not predict: RES0 bits read 0, and
    // offsets that hold nothing read as zero (RAZ/WI, §6.2).
    const predicted = new Set(out.map((x) => x.off));
    for (const off of this.written) {
      if (predicted.has(off)) continue;
      const r = registerAt(this.f, off);
      if (r === undefined) {
        add(off, `offset ${hx(off)} (RAZ/WI)`, 0);
      } else {
        const half = (off - r.offset) >>> 2;
        const res0 = BigInt(res0Mask(r)) >> BigInt(32 * half);
        add(off, `${r.name}${r.width === 64 ? (half === 0 ? '[31:0]' : '[63:32]') : ''} RES0 bits`, 0, Number(res0 & 0xffff_ffffn));
      }
    }
    return out;
  }

  private queueRegs(q: CmdQueue, baseOff: number, prodOff: number, consOff: number, add: (off: number, name: string, value: number, mask?: number, rule?: ViolationRule, section?: string, check?: string) => void): void {
    const e = q.ecmdq !== undefined;
    const sfx = e ? `${q.ecmdq}` : '';
    const base = e ? 'SMMU_ECMDQ_BASE' : 'SMMU_CMDQ_BASE';
    add(baseOff, `${base}${sfx}`, q.baseLo, 0xffff_ffff, 'register-mismatch', e ? '§6.3.107' : '§6.3.26');
    add(baseOff + 4, `${base}${sfx}[63:32]`, q.baseHi, 0xffff_ffff, 'register-mismatch', e ? '§6.3.107' : '§6.3.26');
    const prod = e ? ((q.en << EP.EN.lsb) | (q.errack << EP.ERRACK.lsb) | q.prod) >>> 0 : q.prod;
    add(prodOff, e ? `SMMU_ECMDQ_PROD${sfx}` : 'SMMU_CMDQ_PROD', prod, 0xffff_ffff, 'register-mismatch', e ? '§6.3.108' : '§6.3.27');
    const qs = q.enabled ? q.log2 : q.qs(this.f.cmdqs);
    const pm = ring.ptrMask(qs);
    // §6.3.28: RD bits [19:QS+1] are RAZ (UNKNOWN right after LOG2SIZE grew).
    const raz = IDX_FIELD & ~pm;
    const cons = e
      ? ((q.enack << EC.ENACK.lsb) | (q.err << EC.ERR_REASON.lsb) | (q.errBit << EC.ERR.lsb) | (q.cons & pm)) >>> 0
      : ((q.err << CC.ERR.lsb) | (q.cons & pm)) >>> 0;
    const consName = e ? `SMMU_ECMDQ_CONS${sfx}` : 'SMMU_CMDQ_CONS';
    const unknown = q.consUnknown ? IDX_FIELD & ~q.knownBits : 0;
    add(consOff, consName, cons, ~raz & ~unknown, 'register-mismatch', e ? '§6.3.109, §3.5.6.3' : '§6.3.28, §7.1');
    if (!q.consUnknown) add(consOff, `${consName} RD bits above the wrap bit (RAZ)`, 0, raz, 'register-mismatch', e ? '§6.3.109' : '§6.3.28', 'index-raz');
  }

  /** Compare the device's registers with the model; returns the first mismatch as a violation. */
  checkRegisters(read: (off: number) => number): void {
    for (const x of this.expectedRegisters()) {
      const got = read(x.off) >>> 0;
      if (((got ^ x.value) & x.mask) === 0) continue;
      const diff = ((got ^ x.value) & x.mask) >>> 0;
      const msg = `${x.name} reads ${hx(got)}, expected ${hx(x.value)}${x.mask !== 0xffff_ffff ? ` in bits ${hx(x.mask)}` : ''} (differs in ${hx(diff)})`;
      if (this.violate(x.rule, msg, x.section, x.name.split(' ')[0], x.check)) return;
    }
  }

  /** Compare wired interrupt pulses since the run began. */
  checkIrqs(got: { gerror: number; eventq: number; cmdSync: number }): void {
    for (const k of ['gerror', 'eventq', 'cmdSync'] as const) {
      if (got[k] !== this.irq[k]) {
        const section = k === 'cmdSync' ? '§4.7.3' : '§3.18';
        this.violate('irq-mismatch', `the ${k} wired interrupt pulsed ${got[k]} times, expected ${this.irq[k]}`, section);
        return;
      }
    }
  }

  /**
   * Compare RAM: every word the model knows must hold its value (an MSI target two queues wrote
   * may hold either value), every other word must still be zero.
   */
  checkMemory(u32: Uint32Array, wordIndex: (pa: number) => number): void {
    const base = this.ram.base;
    const first = wordIndex(base);
    const bad = (pa: number, got: number, want: number | undefined): boolean => {
      if (want === undefined ? got === 0 : got === want) return false;
      const multi = this.msiByQueue.get(pa);
      if (multi !== undefined && multi.queues.size > 1 && multi.values.has(got)) return false; // msi-order-across-queues
      if (this.racy.get(pa)?.has(got) === true) return false; // entry-rewritten-after-doorbell: the write and an MSI raced
      const what = want === undefined ? 'nothing may write there' : `expected ${hx(want)}`;
      this.violate('memory-write', `RAM at ${hx(pa)} (${this.regionOf(pa)}) holds ${hx(got)}; ${what}`, '§4.7.3, §7.2');
      return true;
    };
    // Words the model knows, then every other word (which must be zero); zero words are skipped fast.
    for (const [pa, want] of this.mem) {
      if (!this.inRam(pa, 4)) continue;
      if (bad(pa, u32[first + ((pa - base) >>> 2)]!, want)) return;
    }
    const end = first + (this.ram.bytes >>> 2);
    for (let i = first; i < end; i++) {
      if (u32[i] === 0) continue;
      const pa = base + 4 * (i - first);
      if (this.mem.has(pa)) continue;
      if (bad(pa, u32[i]!, undefined)) return;
    }
  }

  regionOf(pa: number): string {
    const inQ = (q: CmdQueue) => q.enabled && pa >= q.base && pa < q.base + (COMMAND_BYTES << q.log2);
    for (const q of this.queues()) if (inQ(q)) return `${q.name} slot ${(pa - q.base) >>> 4}`;
    const ev = this.evt;
    if (ev.enabled && pa >= ev.base && pa < ev.base + (EVENT_BYTES << ev.log2)) return `event queue record ${(pa - ev.base) >>> 5}`;
    return `RAM + ${hx(pa - this.ram.base)}`;
  }

  /** Where software should put a fixed-up command for `queue` (used by recover's prediction). */
  slotOf(queue: string): number | undefined {
    const q = this.queueOf(queue);
    if (q === undefined || !q.enabled) return undefined;
    return q.base + ring.idx(q.cons, q.log2) * COMMAND_BYTES;
  }
}

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

/** `got` when each of its words is the same word of some version, else undefined. */
function mixOf(versions: readonly (readonly number[])[], got: readonly number[]): readonly number[] | undefined {
  for (let k = 0; k < COMMAND_WORDS; k++) if (!versions.some((v) => v[k]! >>> 0 === got[k]! >>> 0)) return undefined;
  return got;
}

export function sameWords(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i]! >>> 0 !== b[i]! >>> 0) return false;
  return true;
}

export function hexWords(w: readonly number[]): string {
  return w.map((x) => (x >>> 0).toString(16).padStart(8, '0')).join('_');
}

function describe(words: readonly number[]): string {
  return `${decodeCommand(words.length === COMMAND_WORDS ? words : EMPTY_WORDS).name} ${hexWords(words)}`;
}

/** Writable bits of a 64-bit register's low and high words (its fields). */
function mask32lo(spec: RegisterSpec): number {
  return Number(BigInt.asUintN(32, ~BigInt(res0Mask(spec))));
}

function mask32hi(spec: RegisterSpec): number {
  return Number(BigInt.asUintN(32, ~(BigInt(res0Mask(spec)) >> 32n)));
}

/** The present register at an offset (ECMDQ slots included), or undefined. */
function registerAt(f: SmmuFeatures, off: number): RegisterSpec | undefined {
  for (const r of REGISTERS) {
    if (r.page === 'secure' || r.page === 'ecmdq') continue;
    if (off >= r.offset && off < r.offset + r.width / 8) return isPresent(r, f) ? r : undefined;
  }
  for (let n = 0; n < ecmdqCount(f); n++) {
    for (const w of ['BASE', 'PROD', 'CONS'] as const) {
      const o = ecmdqRegisterOffset(f, n, w);
      const spec = w === 'BASE' ? REG.SMMU_ECMDQ_BASE : w === 'PROD' ? REG.SMMU_ECMDQ_PROD : REG.SMMU_ECMDQ_CONS;
      if (off >= o && off < o + spec.width / 8) return spec;
    }
  }
  return undefined;
}

function nameAt(f: SmmuFeatures, off: number): string {
  const r = registerAt(f, off);
  if (r === undefined) return `offset ${hx(off)}`;
  return r.width === 64 && off !== r.offset ? `${r.name}[63:32]` : r.name;
}

