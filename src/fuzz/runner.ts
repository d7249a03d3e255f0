/**
 * The harness: runs a scenario against a running model (src/system) as a hostile driver would,
 * and against the reference model of oracle.ts in lock step.
 *
 * Every step expands into primitive actions (register writes, memory writes, injected events).
 * After each register write the harness lets the device settle: every enabled command queue is
 * empty or stopped on an error, and every command the device counted is in the trace. It then
 * feeds the action and the traced commands to the reference model, which checks them, and
 * compares the register file, the interrupt lines and, at the end, all of RAM. A step marked
 * `nowait` does not settle: the device may still be consuming while the next actions land (a
 * queue disabled mid-stream, an entry rewritten after its doorbell); the model then accepts any
 * prefix, and either version of a rewritten entry.
 *
 * One System serves many runs: between runs the harness disables every queue, acknowledges every
 * error, clears the interrupt configuration and zeroes RAM. It starts a new System when the
 * features change, after a worker failure or a hang, and every `recycleAfter` runs.
 */

import { HDR } from '../mem/board.ts';
import * as ring from '../ring/index.ts';
import { CERROR_ILL } from '../spec/cerror.ts';
import { decodeCommand, encodeCommandWords } from '../spec/command-codec.ts';
import { COMMAND_BYTES } from '../spec/commands.ts';
import { ecmdqCount, type SmmuFeatures } from '../spec/features.ts';
import { SIM_EVENT_WORDS, SIM_REG } from '../spec/impdef.ts';
import { getBits, lowMask } from '../spec/bits.ts';
import { ecmdqRegisterOffset, REG, STRTAB_FMT, encode32, encode64 } from '../spec/registers.ts';
import { System, type TraceEntry } from '../system/system.ts';
import { KNOWN_DEVIATIONS } from './known.ts';
import { Observations, ReferenceSmmu, hexWords, type Action, type KnownDeviation, type Seen, type Violation } from './oracle.ts';
import { hex, worldStepStores, type QueueConfig, type RegRef, type Scenario, type Step } from './scenario.ts';
import { ReferenceCaches, type DmaOutcome } from './translation.ts';
import { World } from './world.ts';
import { decodeEvent, EVENT_WORDS } from '../spec/events.ts';

// ---------------------------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------------------------

export type RunEvent =
  | { readonly type: 'step'; readonly index: number; readonly kind: string; readonly text: string }
  | { readonly type: 'action'; readonly index: number; readonly text: string }
  | { readonly type: 'command'; readonly index: number; readonly entry: TraceEntry }
  | { readonly type: 'dma'; readonly index: number; readonly text: string; readonly result: DmaOutcome }
  | { readonly type: 'violation'; readonly violation: Violation };

export interface RunResult {
  /** No violation: the oracle and the scenario's expectation hold. */
  readonly ok: boolean;
  readonly violations: readonly Violation[];
  /** Commands the device read (consumed or refused). */
  readonly commands: number;
  readonly registerWrites: number;
  readonly seen: readonly Seen[];
  readonly errors: ReadonlyMap<string, number>;
  /** Every command traced during the run. */
  readonly trace: readonly TraceEntry[];
  /** The System had to be (or will be) restarted: a worker failed or the device hung. */
  readonly fatal: boolean;
  /** Known model deviations seen and waived (known.ts), by id. */
  readonly waived: ReadonlyMap<string, number>;
  /** DMA transactions the translation oracle judged, and those it could not (the world was overwritten). */
  readonly dma: { readonly judged: number; readonly unjudged: number };
}

export interface HarnessOptions {
  /** Device wait policy (default 'hybrid'); a scenario's config.policy wins. */
  readonly policy?: string;
  /** How long the device may take to settle after a write (default 5000 ms). */
  readonly settleMs?: number;
  /** Start a fresh System after this many runs (default 1000): keeps the trace log short. */
  readonly recycleAfter?: number;
  /** Report known model deviations (known.ts) as violations instead of waiving them. */
  readonly strict?: boolean;
  /** A run may take this long plus settleMs per step before the watchdog ends it (default 30 s). */
  readonly runTimeoutMs?: number;
}

export interface RunOptions {
  readonly onEvent?: (e: RunEvent) => void;
}

// ---------------------------------------------------------------------------------------------
// Register fields used by the harness (from the table)
// ---------------------------------------------------------------------------------------------

const R = REG;
const CMDQEN = 1 << R.SMMU_CR0.f.CMDQEN.lsb;
const CMDQ_ERR = 1 << R.SMMU_GERROR.f.CMDQ_ERR.lsb;
const CMDQP_ERR = 1 << R.SMMU_GERROR.f.CMDQP_ERR.lsb;
const EP = R.SMMU_ECMDQ_PROD.f;
const EC = R.SMMU_ECMDQ_CONS.f;
const IDX_FIELD = lowMask(R.SMMU_CMDQ_PROD.f.WR.width);
const LOG2 = R.SMMU_CMDQ_BASE.f.LOG2SIZE;
const SETTLE_MS = 5000;
/** How long a register or line may take to reach a value it is moving to (an error's GERROR toggle follows its CONS.ERR). */
const CONVERGE_MS = 150;

/** Linux's replacement for a command that raised CERROR_ILL (§7.1): a CMD_SYNC with ISH and write-back attributes. */
const FIXUP_SYNC: readonly number[] = Object.freeze([...encodeCommandWords({ name: 'CMD_SYNC', CS: 'SIG_SEV', MSH: 'ISH', MSIAttr: 0xf })]);

const hx = (n: number) => `0x${(n >>> 0).toString(16)}`;

function sleep(ms: number): Promise<void> {
  return new Promise((r) => (ms <= 0 ? setImmediate(r) : setTimeout(r, ms)));
}

/** What software knows about a command queue: where it is and where it writes next. */
interface SwQueue {
  readonly name: string;
  readonly ecmdq: number | undefined;
  readonly base: number;
  readonly log2: number;
  cursor: number;
  errack: number;
  readonly prodOff: number;
  readonly consOff: number;
}

// ---------------------------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------------------------

export class Harness {
  /** Running systems by configuration (features, RAM, policy), with their run counts. */
  private readonly pool = new Map<string, { sys: System; runs: number; restart: boolean }>();
  private readonly settleMs: number;
  private readonly recycleAfter: number;
  /** Systems started so far (for the summary). */
  systemsStarted = 0;
  /** Systems kept running at once (one per feature set a campaign cycles through). */
  private static readonly POOL = 4;

  private readonly runTimeoutMs: number;

  constructor(private readonly opts: HarnessOptions = {}) {
    this.settleMs = opts.settleMs ?? SETTLE_MS;
    this.runTimeoutMs = opts.runTimeoutMs ?? 30_000;
    this.recycleAfter = opts.recycleAfter ?? 1000;
  }

  async close(): Promise<void> {
    const all = [...this.pool.values()];
    this.pool.clear();
    await Promise.all(all.map((e) => e.sys.stop()));
  }

  private async ensure(sc: Scenario): Promise<{ sys: System; runs: number; restart: boolean }> {
    const policy = sc.config.policy ?? this.opts.policy ?? 'hybrid';
    const key = JSON.stringify([sc.config.features, sc.config.ram, policy]);
    const e = this.pool.get(key);
    if (e !== undefined) {
      const s = e.sys;
      if (!e.restart && s.error === undefined && s.deviceState === 'running' && e.runs < this.recycleAfter) {
        e.runs++;
        return e;
      }
      this.pool.delete(key);
      await s.stop();
    }
    if (this.pool.size >= Harness.POOL) {
      const [oldest, old] = this.pool.entries().next().value as [string, { sys: System }];
      this.pool.delete(oldest);
      await old.sys.stop();
    }
    const sys = await System.start({
      features: sc.features,
      policy,
      ramBase: sc.config.ram.base,
      ramBytes: sc.config.ram.bytes,
      trace: true,
      driver: false,
    });
    this.systemsStarted++;
    const fresh = { sys, runs: 1, restart: false };
    this.pool.set(key, fresh);
    return fresh;
  }

  /**
   * Put the SMMU back into a known state: queues off, errors acknowledged, interrupts
   * unconfigured, RAM zero. Only registers that are not already in that state are written, and
   * the writes are posted back to back (the bus keeps their order) with one wait at the end.
   */
  private async reset(sys: System): Promise<void> {
    const f = sys.features;
    const writes: [number, number][] = [];
    const want = (off: number, v: number) => {
      if (sys.readReg(off) !== v) writes.push([off, v]);
    };
    const want64 = (off: number) => {
      if (sys.readReg(off) !== 0 || sys.readReg(off + 4) !== 0) writes.push([off, 0], [off + 4, 0]);
    };
    want(R.SMMU_IRQ_CTRL.offset, 0);
    want(R.SMMU_CR0.offset, 0);
    for (let n = 0; n < ecmdqCount(f); n++) {
      const prod = ecmdqRegisterOffset(f, n, 'PROD');
      const cons = ecmdqRegisterOffset(f, n, 'CONS');
      want(prod, 0);
      if ((sys.readReg(cons) & ~(1 << EC.ENACK.lsb)) !== 0 || sys.readReg(prod) !== 0) writes.push([cons, 0]);
      want64(ecmdqRegisterOffset(f, n, 'BASE'));
    }
    want64(R.SMMU_CMDQ_BASE.offset);
    want(R.SMMU_CMDQ_PROD.offset, 0);
    if ((sys.readReg(R.SMMU_CMDQ_CONS.offset) & IDX_FIELD) !== 0) writes.push([R.SMMU_CMDQ_CONS.offset, 0]);
    want64(R.SMMU_EVENTQ_BASE.offset);
    want(R.SMMU_EVENTQ_PROD.offset, 0);
    want(R.SMMU_EVENTQ_CONS.offset, 0);
    if (f.msi) {
      for (const r of [R.SMMU_GERROR_IRQ_CFG0, R.SMMU_EVENTQ_IRQ_CFG0]) want64(r.offset);
      for (const r of [R.SMMU_GERROR_IRQ_CFG1, R.SMMU_GERROR_IRQ_CFG2, R.SMMU_EVENTQ_IRQ_CFG1, R.SMMU_EVENTQ_IRQ_CFG2]) want(r.offset, 0);
    }
    for (let k = 0; k < SIM_EVENT_WORDS; k++) want(SIM_REG.SIM_EVENT_DATA + 4 * k, 0);
    want64(R.SMMU_STRTAB_BASE.offset);
    want(R.SMMU_STRTAB_BASE_CFG.offset, 0);
    // Every run starts with cold caches (the model's SIM_INV_ALL, after SMMUEN is off).
    writes.push([SIM_REG.SIM_INV_ALL, 1]);
    const deadline = Date.now() + this.settleMs;
    for (const [off, v] of writes) {
      while (!sys.regs.tryWrite32(off, v)) {
        if (Date.now() > deadline) throw new Error('the MMIO FIFO stayed full during reset');
        await sleep(0);
      }
    }
    // The acknowledgement last: GERROR is final once the queues are off.
    await sys.writeReg(R.SMMU_GERRORN.offset, sys.readReg(R.SMMU_GERROR.offset));
    await sys.writeReg(R.SMMU_GERRORN.offset, sys.readReg(R.SMMU_GERROR.offset));
    const first = sys.mem.wordIndex(sys.mem.base);
    sys.mem.u32.fill(0, first, first + (sys.mem.bytes >>> 2));
  }

  /** Run one scenario. Never throws for what the device does; harness failures become 'exception' violations. */
  async run(sc: Scenario, ro: RunOptions = {}): Promise<RunResult> {
    const entry = await this.ensure(sc);
    const sys = entry.sys;
    // A watchdog over the whole run: every wait below is bounded, but a worker that stops
    // answering mid-write must not stall a campaign. The system is then replaced.
    const limit = this.runTimeoutMs + sc.steps.length * this.settleMs;
    let timer: NodeJS.Timeout | undefined;
    const watchdog = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), limit);
      timer.unref();
    });
    const body = (async (): Promise<RunResult> => {
      await this.reset(sys);
      const run = new Run(sys, sc, this.settleMs, ro.onEvent, this.opts.strict === true ? [] : KNOWN_DEVIATIONS);
      try {
        return await run.execute();
      } catch (e) {
        run.fail('exception', `the harness failed: ${(e as Error).message}`);
        return run.result(true);
      }
    })();
    let result: RunResult;
    try {
      const r = await Promise.race([body, watchdog]);
      if (r === 'timeout') {
        entry.restart = true;
        body.catch(() => undefined);
        const v = { rule: 'hang' as const, step: -1, message: `the run did not finish within ${limit} ms (a worker stopped answering)` };
        result = { ok: false, violations: [v], commands: 0, registerWrites: 0, seen: [], errors: new Map(), trace: [], fatal: true, waived: new Map(), dma: { judged: 0, unjudged: 0 } };
      } else {
        result = r;
      }
    } catch (e) {
      // The reset failed: the system is unusable.
      entry.restart = true;
      const v = { rule: 'worker-failure' as const, step: -1, message: `resetting the SMMU failed: ${(e as Error).message}` };
      result = { ok: false, violations: [v], commands: 0, registerWrites: 0, seen: [], errors: new Map(), trace: [], fatal: true, waived: new Map(), dma: { judged: 0, unjudged: 0 } };
    } finally {
      clearTimeout(timer);
    }
    if (result.fatal || sys.error !== undefined || sys.deviceState !== 'running') entry.restart = true;
    return result;
  }
}

// ---------------------------------------------------------------------------------------------
// One run
// ---------------------------------------------------------------------------------------------

interface Pending {
  readonly a: Action;
  readonly racing: boolean;
}

class Run {
  private readonly model: ReferenceSmmu;
  private readonly f: SmmuFeatures;
  private readonly sw = new Map<string, SwQueue>();
  private readonly traceStart: number;
  private traceCursor: number;
  private readonly tail0: number;
  private readonly counted0: number;
  private readonly irq0: { gerror: number; eventq: number; cmdSync: number };
  private pending: Pending[] = [];
  private windowOpen = false;
  private registerWrites = 0;
  private fatal = false;
  private stepIndex = -1;
  private readonly extra: Violation[] = [];
  private readonly world: World | undefined;
  private readonly caches: ReferenceCaches | undefined;

  constructor(private readonly sys: System, private readonly sc: Scenario, private readonly settleMs: number, private readonly onEvent: ((e: RunEvent) => void) | undefined, waivers: readonly KnownDeviation[]) {
    this.f = sc.features;
    if (sc.config.translation !== undefined) {
      this.world = new World(sc.config.translation, sc.features, sc.config.ram.base);
      this.caches = new ReferenceCaches(this.world, sc.features);
    }
    this.model = new ReferenceSmmu({ features: sc.features, ram: sc.config.ram, read: (off) => sys.readReg(off), waivers, ...(this.caches !== undefined ? { caches: this.caches } : {}) });
    this.traceStart = sys.trace().entries.length;
    this.traceCursor = this.traceStart;
    this.tail0 = Atomics.load(sys.board.i32, HDR.TRACE_TAIL);
    this.counted0 = this.counted();
    this.irq0 = this.irqLines();
    const swq = (name: string, q: QueueConfig, n: number | undefined): SwQueue => ({
      name,
      ecmdq: n,
      base: q.base,
      log2: Math.min(q.log2, this.f.cmdqs),
      cursor: 0,
      errack: 0,
      prodOff: n === undefined ? R.SMMU_CMDQ_PROD.offset : ecmdqRegisterOffset(this.f, n, 'PROD'),
      consOff: n === undefined ? R.SMMU_CMDQ_CONS.offset : ecmdqRegisterOffset(this.f, n, 'CONS'),
    });
    this.sw.set('cmdq', swq('CMDQ', sc.config.cmdq, undefined));
    for (let n = 0; n < ecmdqCount(this.f); n++) {
      const c = sc.config.ecmdq.find((e) => e.n === n) ?? { n, log2: 0, base: 0 };
      this.sw.set(`ecmdq${n}`, swq(`ECMDQ${n}`, c, n));
    }
  }

  private counted(): number {
    return (this.sys.counter('COMMANDS_CONSUMED') + this.sys.counter('COMMAND_ERRORS')) | 0;
  }

  private irqLines(): { gerror: number; eventq: number; cmdSync: number } {
    const u = this.sys.board.i32;
    return { gerror: Atomics.load(u, HDR.IRQ_GERROR), eventq: Atomics.load(u, HDR.IRQ_EVENTQ), cmdSync: Atomics.load(u, HDR.IRQ_CMD_SYNC) };
  }

  private emit(e: RunEvent): void {
    this.onEvent?.(e);
  }

  fail(rule: Violation['rule'], message: string): void {
    const v: Violation = { rule, step: this.stepIndex, message };
    this.extra.push(v);
    this.emit({ type: 'violation', violation: v });
  }

  /** A violation that ends the run: the oracle's (unless the scenario turned it off) or the harness's. */
  private get violated(): boolean {
    return (this.sc.expect.oracle && this.model.violations.length > 0) || this.extra.length > 0;
  }

  result(fatal = false): RunResult {
    const violations = [...this.model.violations, ...this.extra];
    const trace = this.sys.trace().entries.slice(this.traceStart);
    return {
      ok: violations.length === 0,
      violations,
      commands: trace.length,
      registerWrites: this.registerWrites,
      seen: this.model.seen,
      errors: this.model.errors,
      trace,
      fatal: fatal || this.fatal,
      waived: this.model.waived,
      dma: { judged: this.caches?.judged ?? 0, unjudged: this.caches?.unjudged ?? 0 },
    };
  }

  async execute(): Promise<RunResult> {
    const steps = this.sc.steps;
    if (this.world !== undefined) {
      // The tables are memory, there before software starts: they are written whatever `setup` says.
      this.stepIndex = -1;
      this.model.step = -1;
      for (const st of this.world.build()) await this.act({ t: 'mem', pa: st.pa, words: st.words }, -1, false);
    }
    if (this.sc.config.setup) {
      this.stepIndex = -1;
      this.model.step = -1;
      for (const s of this.setupSteps()) {
        await this.step(s, -1);
        if (this.violated) return this.finish();
      }
    }
    for (let i = 0; i < steps.length; i++) {
      this.stepIndex = i;
      this.model.step = i;
      await this.step(steps[i]!, i);
      if (this.violated) return this.finish();
    }
    return this.finish();
  }

  private async finish(): Promise<RunResult> {
    this.stepIndex = this.sc.steps.length;
    this.model.step = this.stepIndex;
    if (!this.violated && this.windowOpen) await this.settle();
    if (!this.violated && this.sc.expect.oracle) await this.checkMemory();
    if (!this.violated || !this.sc.expect.oracle) this.checkExpectation();
    const r = this.result();
    if (!this.sc.expect.oracle) {
      // Only the explicit expectation counts.
      const only = r.violations.filter((v) => v.rule === 'expect-mismatch' || v.rule === 'worker-failure' || v.rule === 'hang' || v.rule === 'exception');
      return { ...r, ok: only.length === 0, violations: only };
    }
    return r;
  }

  /** §6.3.26 order: BASE, then PROD and CONS, then enable. */
  private setupSteps(): Step[] {
    const c = this.sc.config;
    const reg = (name: string): RegRef => {
      const m = /^ECMDQ_(BASE|PROD|CONS)(\d+)$/.exec(name);
      if (m !== null) {
        const n = Number(m[2]);
        const which = m[1] as 'BASE' | 'PROD' | 'CONS';
        return { text: `SMMU_${name}`, offset: ecmdqRegisterOffset(this.f, n, which), width: which === 'BASE' ? 64 : 32, ecmdq: n };
      }
      const spec = (R as unknown as Record<string, { offset: number; width: 32 | 64 }>)[`SMMU_${name}`]!;
      return { text: `SMMU_${name}`, offset: spec.offset, width: spec.width };
    };
    // ADDR holds address bits [55:5]; lower bits of a configured base are not software's to give.
    const align = (a: number) => BigInt(a - (a % (1 << R.SMMU_CMDQ_BASE.f.ADDR.lsb)));
    const base = (q: QueueConfig) => encode64(R.SMMU_CMDQ_BASE, { ADDR: align(q.base), LOG2SIZE: Math.min(q.log2, lowMask(LOG2.width)) });
    const out: Step[] = [
      { kind: 'write', reg: reg('CMDQ_BASE'), value: base(c.cmdq), note: 'set-up' },
      { kind: 'write', reg: reg('CMDQ_PROD'), value: 0, note: 'set-up' },
      { kind: 'write', reg: reg('CMDQ_CONS'), value: 0, note: 'set-up' },
      { kind: 'write', reg: reg('EVENTQ_BASE'), value: encode64(R.SMMU_EVENTQ_BASE, { ADDR: align(c.eventq.base), LOG2SIZE: Math.min(c.eventq.log2, lowMask(LOG2.width)) }), note: 'set-up' },
      { kind: 'write', reg: reg('EVENTQ_PROD'), value: 0, note: 'set-up' },
      { kind: 'write', reg: reg('EVENTQ_CONS'), value: 0, note: 'set-up' },
    ];
    for (const e of c.ecmdq) {
      out.push({ kind: 'write', reg: reg(`ECMDQ_BASE${e.n}`), value: base(e), note: 'set-up' });
      out.push({ kind: 'write', reg: reg(`ECMDQ_CONS${e.n}`), value: 0, note: 'set-up' });
      out.push({ kind: 'write', reg: reg(`ECMDQ_PROD${e.n}`), value: encode32(R.SMMU_ECMDQ_PROD, { EN: 1 }), note: 'set-up' });
    }
    const w = this.world;
    if (w !== undefined) {
      // §6.3.24, §6.3.25: a linear Stream table, written before SMMUEN (they are Guarded by it).
      out.push({ kind: 'write', reg: reg('STRTAB_BASE'), value: encode64(R.SMMU_STRTAB_BASE, { ADDR: BigInt(w.strtabBase) }), note: 'set-up' });
      out.push({ kind: 'write', reg: reg('STRTAB_BASE_CFG'), value: encode32(R.SMMU_STRTAB_BASE_CFG, { FMT: STRTAB_FMT.LINEAR, LOG2SIZE: w.strtabLog2 }), note: 'set-up' });
    }
    // Posted back to back; the enable settles them all (nothing can be consumed before it).
    const posted = out.map((s) => ({ ...s, nowait: true }) as Step);
    posted.push({ kind: 'write', reg: reg('CR0'), value: encode32(R.SMMU_CR0, { CMDQEN: 1, EVENTQEN: 1, ...(w !== undefined ? { SMMUEN: 1 } : {}) }), note: 'set-up' });
    return posted;
  }

  // -------------------------------------------------------------------------------------------
  // Steps
  // -------------------------------------------------------------------------------------------

  private async step(s: Step, index: number): Promise<void> {
    this.emit({ type: 'step', index, kind: s.kind, text: stepText(s) });
    switch (s.kind) {
      case 'write': {
        const v = this.writeValue(s);
        this.trackProd(s.reg.offset, typeof v === 'bigint' ? Number(v & 0xffff_ffffn) : v);
        await this.act(regAction(s.reg, v), index, s.nowait === true);
        return;
      }
      case 'commands': {
        const q = this.sw.get(s.queue)!;
        const pm = ring.ptrMask(q.log2);
        let ptr = s.at !== undefined ? s.at : s.back !== undefined ? (((q.cursor & pm) - s.back) & pm) >>> 0 : q.cursor;
        for (const c of s.cmds) {
          await this.act({ t: 'mem', pa: q.base + ring.idx(ptr, q.log2) * COMMAND_BYTES, words: c }, index, false);
          ptr = ring.inc(ptr, 1, q.log2);
        }
        if (s.back === undefined) q.cursor = ptr;
        return;
      }
      case 'doorbell': {
        const q = this.sw.get(s.queue)!;
        let wr = q.cursor;
        if (s.prod !== undefined) wr = s.prod;
        else if (s.advance !== undefined) wr = (q.cursor + s.advance) & IDX_FIELD;
        q.cursor = wr >>> 0;
        let v = wr >>> 0;
        if (q.ecmdq !== undefined) {
          const en = s.en ?? 1;
          const errack = s.errack ?? q.errack;
          q.errack = errack;
          v = ((en << EP.EN.lsb) | (errack << EP.ERRACK.lsb) | wr) >>> 0;
        }
        await this.act({ t: 'reg', off: q.prodOff, lo: v }, index, s.nowait === true);
        return;
      }
      case 'wait': {
        if (this.windowOpen) await this.settle();
        const deadline = Date.now() + (s.timeoutMs ?? this.settleMs);
        const ok = (v: number) => (s.equals !== undefined ? ((v & s.mask) >>> 0) === s.equals : ((v & s.mask) >>> 0) !== s.notEquals);
        for (;;) {
          const v = this.sys.readReg(s.reg.offset);
          if (ok(v)) return;
          if (Date.now() > deadline) {
            this.fail('wait-timeout', `${s.reg.text} & ${hx(s.mask)} reads ${hx(v & s.mask)}, waited for ${s.equals !== undefined ? `== ${hx(s.equals)}` : `!= ${hx(s.notEquals!)}`}`);
            return;
          }
          await sleep(1);
        }
      }
      case 'inject':
        await this.act({ t: 'inject', record: s.record }, index, false);
        return;
      case 'poke':
        await this.act({ t: 'mem', pa: s.pa, words: s.words }, index, false);
        return;
      case 'recover':
        await this.recover(s.queue, index);
        return;
      case 'settle':
        if (this.windowOpen) await this.settle();
        return;
      case 'map':
      case 'unmap':
      case 'ste':
      case 'cd':
        for (const st of worldStepStores(this.world!, s)) await this.act({ t: 'mem', pa: st.pa, words: st.words }, index, false);
        return;
      case 'dma':
        await this.dma(s, index);
        return;
    }
  }

  /**
   * A DMA transaction through the SMMU: the translation oracle judges the answer (src/fuzz/
   * translation.ts), a fault's record is checked field by field, and the event queue, registers
   * and interrupt lines must show the event as the queue rules say.
   */
  private async dma(s: Extract<Step, { kind: 'dma' }>, index: number): Promise<void> {
    if (this.windowOpen) await this.settle();
    if (this.violated) return;
    const sys = this.sys;
    const model = this.model;
    const caches = this.caches!;
    const r = await sys.dma({ sid: s.sid, iova: s.iova, read: !s.write, write: s.write });
    const got: DmaOutcome = { status: r.status, ...(r.pa !== undefined ? { pa: r.pa } : {}), tlbHit: r.tlbHit, bypass: r.bypass, ...(r.event !== undefined ? { event: r.event } : {}) };
    this.emit({ type: 'dma', index, text: dmaText(s, got), result: got });
    caches.checkMemory(model.mem);
    const st = model.strtab;
    const w = this.world!;
    const wantCfg = encode32(R.SMMU_STRTAB_BASE_CFG, { FMT: STRTAB_FMT.LINEAR, LOG2SIZE: w.strtabLog2 });
    const strtabMoved = st.lo !== Number(encode64(R.SMMU_STRTAB_BASE, { ADDR: BigInt(w.strtabBase) }) & 0xffff_ffffn) || st.hi !== 0 || st.cfg !== wantCfg
      ? 'software moved the Stream table (SMMU_STRTAB_BASE or _CFG) away from the world\'s'
      : undefined;
    const smmuEn = (model.cr0 & (1 << R.SMMU_CR0.f.SMMUEN.lsb)) !== 0;
    const gbpaAbort = getBits([sys.readReg(R.SMMU_GBPA.offset)], R.SMMU_GBPA.f.ABORT.lsb, 1) === 1;
    const v = caches.dma({ sid: s.sid, iova: s.iova, write: s.write }, got, { smmuEn, gbpaAbort, ...(strtabMoved !== undefined ? { strtabMoved } : {}) });
    if (!v.ok) model.violateTranslation(`DMA ${s.write ? 'write' : 'read'} StreamID ${s.sid} IOVA ${hex(s.iova)}: ${v.message}`, 'dma-result');
    if (got.event !== undefined && model.violations.length === 0) {
      // The device detected a fault and recorded it: the queue rules say where the record lands.
      const slot = model.recordEvent(v.fault !== undefined ? [...ReferenceCaches.faultRecord(v.fault)] : new Array<number>(EVENT_WORDS).fill(0));
      if (slot !== undefined) {
        // The device writes the record before it answers on the DMA port (whose sequence word
        // is the synchronising store), so it is in memory now.
        const rec = this.readWords(slot, EVENT_WORDS);
        const diffs = v.fault !== undefined ? ReferenceCaches.faultDiffs(v.fault, rec) : [];
        if (diffs.length > 0) model.violateTranslation(`the fault record at ${hx(slot)} (${decodeEvent(rec).name}): ${diffs.join('; ')}`, 'fault-record', '§7.3.13');
        // Fields the oracle does not predict (IPA of a stage 1 fault is UNKNOWN, IMPDEF) are the device's.
        model.apply({ t: 'mem', pa: slot, words: rec });
      }
    }
    const e = s.expect;
    if (e !== undefined && model.violations.length === 0) {
      const bad: string[] = [];
      if (e.status !== undefined && e.status !== got.status) bad.push(`status ${got.status}, expected ${e.status}`);
      if (e.pa !== undefined && e.pa !== got.pa) bad.push(`pa ${got.pa === undefined ? 'none' : hex(got.pa)}, expected ${hex(e.pa)}`);
      if (e.tlb !== undefined && (e.tlb === 'hit') !== got.tlbHit) bad.push(`TLB ${got.tlbHit ? 'hit' : 'miss'}, expected ${e.tlb}`);
      if (e.event !== undefined) {
        const name = got.event === undefined ? 'none' : decodeEvent([got.event, 0, 0, 0, 0, 0, 0, 0]).name;
        if (name !== e.event) bad.push(`event ${name}, expected ${e.event}`);
      }
      if (bad.length > 0) this.fail('expect-mismatch', `dma StreamID ${s.sid} IOVA ${hex(s.iova)}: ${bad.join('; ')}`);
    }
    if (model.violations.length === 0 && this.sc.expect.oracle) await this.checkRegisters();
    for (const x of model.violations) this.emit({ type: 'violation', violation: x });
  }

  private readWords(pa: number, n: number): number[] {
    const mem = this.sys.mem;
    if (!mem.contains(pa, 4 * n)) return new Array<number>(n).fill(0);
    const i = mem.wordIndex(pa);
    return Array.from(mem.u32.subarray(i, i + n));
  }

  private writeValue(s: Extract<Step, { kind: 'write' }>): number | bigint {
    if (s.value !== undefined) return s.value;
    if (s.from !== undefined) return this.sys.readReg(s.from.offset);
    const cur = this.sys.readReg(s.reg.offset);
    return ((((cur | (s.set ?? 0)) & ~(s.clear ?? 0)) ^ (s.toggle ?? 0)) >>> 0);
  }

  /** A write to a queue's PROD moves software's cursor too (and its ERRACK, for an ECMDQ). */
  private trackProd(off: number, v: number): void {
    for (const q of this.sw.values()) {
      if (q.prodOff !== off) continue;
      q.cursor = v & IDX_FIELD;
      if (q.ecmdq !== undefined) q.errack = getBits([v], EP.ERRACK.lsb, 1);
    }
  }

  /** Linux's recovery (§7.1, §3.5.6.3): replace an illegal command with CMD_SYNC, then acknowledge. */
  private async recover(which: string, index: number): Promise<void> {
    const read = (off: number) => this.sys.readReg(off);
    const queues = which === 'all' ? [...this.sw.values()].filter((q) => q.ecmdq === undefined || this.sc.config.ecmdq.some((e) => e.n === q.ecmdq)) : [this.sw.get(which)!];
    for (const q of queues) {
      if (this.violated) return;
      if (q.ecmdq === undefined) {
        if (((read(R.SMMU_GERROR.offset) ^ read(R.SMMU_GERRORN.offset)) & CMDQ_ERR) === 0) continue;
        const cons = read(q.consOff);
        if (getBits([cons], R.SMMU_CMDQ_CONS.f.ERR.lsb, R.SMMU_CMDQ_CONS.f.ERR.width) === CERROR_ILL) {
          await this.act({ t: 'mem', pa: q.base + ring.idx(cons & IDX_FIELD, q.log2) * COMMAND_BYTES, words: FIXUP_SYNC }, index, false);
        }
        continue;
      }
      const cons = read(q.consOff);
      const prod = read(q.prodOff);
      const err = getBits([cons], EC.ERR.lsb, 1);
      if (err === getBits([prod], EP.ERRACK.lsb, 1)) continue;
      if (getBits([cons], EC.ERR_REASON.lsb, EC.ERR_REASON.width) === CERROR_ILL) {
        await this.act({ t: 'mem', pa: q.base + ring.idx(cons & IDX_FIELD, q.log2) * COMMAND_BYTES, words: FIXUP_SYNC }, index, false);
      }
      q.errack = err;
      const v = ((prod & ~(1 << EP.ERRACK.lsb)) | (err << EP.ERRACK.lsb)) >>> 0;
      await this.act({ t: 'reg', off: q.prodOff, lo: v }, index, false);
    }
    if (this.violated) return;
    const g = read(R.SMMU_GERROR.offset);
    const gn = read(R.SMMU_GERRORN.offset);
    const mine = which === 'all' ? 0xffff_ffff : which === 'cmdq' ? CMDQ_ERR : CMDQP_ERR;
    if (((g ^ gn) & mine) !== 0) await this.act({ t: 'reg', off: R.SMMU_GERRORN.offset, lo: g }, index, false);
  }

  // -------------------------------------------------------------------------------------------
  // Actions, settling and checks
  // -------------------------------------------------------------------------------------------

  private async act(a: Action, index: number, nowait: boolean): Promise<void> {
    this.emit({ type: 'action', index, text: actionText(a, this.model) });
    const sys = this.sys;
    switch (a.t) {
      case 'mem':
        if (sys.mem.contains(a.pa, 4 * a.words.length)) sys.mem.writeWords(a.pa, a.words);
        else if (this.model.inRam(a.pa, 4)) throw new Error(`memory write at ${hx(a.pa)} runs past the end of RAM`);
        if (this.windowOpen) this.pending.push({ a, racing: true });
        else this.model.apply(inRamOnly(a, this.model));
        return;
      case 'inject':
        // System.injectEvent's registers, posted back to back with one wait (the bus keeps their order).
        for (let k = 0; k < SIM_EVENT_WORDS; k++) await this.post(SIM_REG.SIM_EVENT_DATA + 4 * k, a.record[k] ?? 0);
        await sys.writeReg(SIM_REG.SIM_EVENT_GO, 1);
        this.registerWrites += SIM_EVENT_WORDS + 1;
        this.pending.push({ a, racing: false });
        await this.settle();
        return;
      case 'reg':
        this.registerWrites++;
        if (nowait) {
          const deadline = Date.now() + this.settleMs;
          while (!(a.hi !== undefined ? sys.regs.tryWrite64(a.off, (BigInt(a.hi) << 32n) | BigInt(a.lo)) : sys.regs.tryWrite32(a.off, a.lo))) {
            if (Date.now() > deadline) throw new Error('the MMIO FIFO stayed full');
            await sleep(0);
          }
          this.pending.push({ a, racing: false });
          this.windowOpen = true;
          return;
        }
        await sys.writeReg(a.off, a.hi !== undefined ? (BigInt(a.hi) << 32n) | BigInt(a.lo) : a.lo);
        this.pending.push({ a, racing: false });
        await this.settle();
    }
  }

  /** Claim a bus slot for a write without waiting for the device to apply it. */
  private async post(off: number, v: number): Promise<void> {
    const deadline = Date.now() + this.settleMs;
    while (!this.sys.regs.tryWrite32(off, v >>> 0)) {
      if (Date.now() > deadline) throw new Error('the MMIO FIFO stayed full');
      await sleep(0);
    }
  }

  /** Is every enabled command queue empty or stopped on an error, and is every counted command traced? */
  private quiet(): boolean {
    const sys = this.sys;
    const read = (off: number) => sys.readReg(off);
    if ((read(R.SMMU_CR0ACK.offset) & CMDQEN) !== 0 && ((read(R.SMMU_GERROR.offset) ^ read(R.SMMU_GERRORN.offset)) & CMDQ_ERR) === 0) {
      const qs = Math.min(getBits([read(R.SMMU_CMDQ_BASE.offset)], LOG2.lsb, LOG2.width), this.f.cmdqs);
      if (((read(R.SMMU_CMDQ_PROD.offset) ^ read(R.SMMU_CMDQ_CONS.offset)) & ring.ptrMask(qs)) !== 0) return false;
    }
    for (let n = 0; n < ecmdqCount(this.f); n++) {
      const cons = read(ecmdqRegisterOffset(this.f, n, 'CONS'));
      if (getBits([cons], EC.ENACK.lsb, 1) === 0) continue;
      const prod = read(ecmdqRegisterOffset(this.f, n, 'PROD'));
      if (getBits([cons], EC.ERR.lsb, 1) !== getBits([prod], EP.ERRACK.lsb, 1)) continue;
      const qs = Math.min(getBits([read(ecmdqRegisterOffset(this.f, n, 'BASE'))], LOG2.lsb, LOG2.width), this.f.cmdqs);
      if (((prod ^ cons) & ring.ptrMask(qs)) !== 0) return false;
    }
    // Then every command counted must be traced. The order of these reads matters: the device
    // counts a command, may publish CONS past it (a CMD_SYNC does, §4.7.3), then traces it; so
    // registers first, the count next, the trace tail last.
    const counted = this.counted();
    const tail = Atomics.load(sys.board.i32, HDR.TRACE_TAIL);
    return ((tail - this.tail0) | 0) >= ((counted - this.counted0) | 0);
  }

  private async settle(): Promise<void> {
    const sys = this.sys;
    const deadline = Date.now() + this.settleMs;
    let spins = 0;
    while (!sys.regs.isApplied() || !this.quiet()) {
      if (sys.error !== undefined || sys.deviceState !== 'running') {
        this.fatal = true;
        this.fail('worker-failure', sys.error?.message ?? `the device worker is ${sys.deviceState}`);
        return;
      }
      if (Date.now() > deadline) {
        this.fatal = true;
        this.fail('hang', `the device did not settle within ${this.settleMs} ms: ${this.queueDump()}`);
        return;
      }
      await sleep(spins++ < 50 ? 0 : 1);
    }
    const { entries, lost } = sys.trace();
    if (lost > 0) {
      this.fail('trace-lost', `${lost} trace records were lost`);
      return;
    }
    const fresh = entries.slice(this.traceCursor);
    this.traceCursor = entries.length;
    for (const e of fresh) this.emit({ type: 'command', index: this.stepIndex, entry: e });
    const obs = new Observations(fresh.map((e) => ({ queue: e.queue, ptr: e.ptr, words: e.words, outcome: e.outcome })));
    const pending = this.pending;
    this.pending = [];
    this.windowOpen = false;
    const model = this.model;
    // Racing memory writes land first: either version may be fetched, and a fetch of the new one
    // (and an MSI into that slot after it) happened after the write.
    for (const p of pending) {
      if (!p.racing) continue;
      model.expectRacing(inRamOnly(p.a, model));
      model.apply(inRamOnly(p.a, model));
    }
    const ordered = pending.filter((p) => !p.racing);
    for (let k = 0; k < ordered.length; k++) {
      model.apply(inRamOnly(ordered[k]!.a, model));
      model.consume(obs, k < ordered.length - 1);
      if (model.violations.length > 0) break;
    }
    if (model.violations.length === 0) model.finishStep(obs);
    model.settleAlts((pa) => (sys.mem.contains(pa, 4) ? sys.mem.u32[sys.mem.wordIndex(pa)]! : 0));
    if (!this.sc.expect.oracle) return; // only the explicit expectation counts
    if (model.violations.length === 0) await this.checkRegisters();
    for (const v of model.violations) this.emit({ type: 'violation', violation: v });
  }

  private queueDump(): string {
    const r = (off: number) => hx(this.sys.readReg(off));
    const parts = [`CR0ACK=${r(R.SMMU_CR0ACK.offset)}`, `GERROR=${r(R.SMMU_GERROR.offset)}`, `GERRORN=${r(R.SMMU_GERRORN.offset)}`, `CMDQ_PROD=${r(R.SMMU_CMDQ_PROD.offset)}`, `CMDQ_CONS=${r(R.SMMU_CMDQ_CONS.offset)}`];
    for (const e of this.sc.config.ecmdq) parts.push(`ECMDQ${e.n} PROD=${r(ecmdqRegisterOffset(this.f, e.n, 'PROD'))} CONS=${r(ecmdqRegisterOffset(this.f, e.n, 'CONS'))}`);
    return parts.join(' ');
  }

  /** Registers and interrupt lines; a value still moving towards the expected one gets CONVERGE_MS. */
  private async checkRegisters(): Promise<void> {
    const model = this.model;
    const read = (off: number) => this.sys.readReg(off);
    const deadline = Date.now() + CONVERGE_MS;
    for (;;) {
      const before = model.violations.length;
      model.checkRegisters(read);
      if (model.violations.length === before) {
        const now = this.irqLines();
        model.checkIrqs({ gerror: (now.gerror - this.irq0.gerror) | 0, eventq: (now.eventq - this.irq0.eventq) | 0, cmdSync: (now.cmdSync - this.irq0.cmdSync) | 0 });
      }
      if (model.violations.length === before) return;
      if (Date.now() > deadline) return;
      model.violations.splice(before);
      await sleep(1);
    }
  }

  private async checkMemory(): Promise<void> {
    const model = this.model;
    const mem = this.sys.mem;
    const deadline = Date.now() + CONVERGE_MS;
    for (;;) {
      const before = model.violations.length;
      model.checkMemory(mem.u32, (pa) => mem.wordIndex(pa));
      if (model.violations.length === before) return;
      if (Date.now() > deadline) {
        for (const v of model.violations.slice(before)) this.emit({ type: 'violation', violation: v });
        return;
      }
      model.violations.splice(before);
      await sleep(1);
    }
  }

  private checkExpectation(): void {
    const ex = this.sc.expect;
    const trace = this.sys.trace().entries.slice(this.traceStart);
    if (ex.commands !== undefined) {
      const queues = new Set([...ex.commands.map((c) => c.queue), ...trace.map((t) => t.queue)]);
      for (const q of queues) {
        const want = ex.commands.filter((c) => c.queue === q);
        const got = trace.filter((t) => t.queue === q);
        for (let i = 0; i < Math.max(want.length, got.length); i++) {
          const w = want[i];
          const g = got[i];
          if (w === undefined) {
            this.fail('expect-mismatch', `${q}: command ${i} (${g!.text}) was not expected; ${want.length} expected`);
            return;
          }
          if (g === undefined) {
            this.fail('expect-mismatch', `${q}: ${want.length} commands expected, the device read ${got.length}`);
            return;
          }
          const name = String(g.json.name);
          const nameOk = w.name === undefined || w.name === name || `CMD_${w.name}` === name;
          if (g.outcome !== w.outcome || !nameOk || (w.ptr !== undefined && w.ptr !== g.ptr)) {
            const wanted = `${w.name ?? '(any)'}${w.ptr !== undefined ? ` at ${hx(w.ptr)}` : ''} -> ${w.outcome}`;
            this.fail('expect-mismatch', `${q}: command ${i} expected ${wanted}, the device read ${name} at ${hx(g.ptr)} -> ${g.outcome}`);
            return;
          }
        }
      }
    }
    for (const r of ex.registers ?? []) {
      const lo = BigInt(this.sys.readReg(r.reg.offset));
      const v = r.reg.width === 64 ? (BigInt(this.sys.readReg(r.reg.offset + 4)) << 32n) | lo : lo;
      if ((v & r.mask) !== (r.value & r.mask)) {
        this.fail('expect-mismatch', `${r.reg.text} reads ${hex(v)}, expected ${hex(r.value & r.mask)}${r.mask !== (r.reg.width === 64 ? (1n << 64n) - 1n : 0xffff_ffffn) ? ` under mask ${hex(r.mask)}` : ''}`);
        return;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Printing
// ---------------------------------------------------------------------------------------------

function regAction(reg: RegRef, v: number | bigint): Action {
  if (typeof v === 'bigint') return { t: 'reg', off: reg.offset, lo: Number(v & 0xffff_ffffn), hi: Number((v >> 32n) & 0xffff_ffffn) };
  return { t: 'reg', off: reg.offset, lo: v >>> 0 };
}

/** Memory outside RAM is not memory: the model ignores writes there as the harness does. */
function inRamOnly(a: Action, model: ReferenceSmmu): Action {
  if (a.t !== 'mem' || model.inRam(a.pa, 4 * a.words.length)) return a;
  return { t: 'mem', pa: a.pa, words: [] };
}

export function stepText(s: Step): string {
  const note = s.note !== undefined ? `  # ${s.note}` : '';
  switch (s.kind) {
    case 'write': {
      const how = s.value !== undefined ? `= ${hex(s.value)}` : s.from !== undefined ? `= ${s.from.text}` : [s.set !== undefined ? `|= ${hx(s.set)}` : '', s.clear !== undefined ? `&= ~${hx(s.clear)}` : '', s.toggle !== undefined ? `^= ${hx(s.toggle)}` : ''].filter((x) => x !== '').join(' ');
      return `write ${s.reg.text} ${how}${s.nowait === true ? ' (no wait)' : ''}${note}`;
    }
    case 'commands': {
      const where = s.at !== undefined ? ` at ${hx(s.at)}` : s.back !== undefined ? ` ${s.back} behind the cursor` : '';
      const names = s.cmds.map((c) => decodeCommand(c).name.replace(/^CMD_/, '')).join(', ');
      return `commands ${s.queue}${where}: ${names}${note}`;
    }
    case 'doorbell': {
      const how = s.prod !== undefined ? ` PROD=${hx(s.prod)}` : s.advance !== undefined ? ` cursor${s.advance >= 0 ? '+' : ''}${s.advance}` : '';
      const e = [s.en !== undefined ? `en=${s.en}` : '', s.errack !== undefined ? `errack=${s.errack}` : ''].filter((x) => x !== '').join(' ');
      return `doorbell ${s.queue}${how}${e !== '' ? ` ${e}` : ''}${s.nowait === true ? ' (no wait)' : ''}${note}`;
    }
    case 'wait':
      return `wait ${s.reg.text} & ${hx(s.mask)} ${s.equals !== undefined ? `== ${hx(s.equals)}` : `!= ${hx(s.notEquals!)}`}${note}`;
    case 'inject':
      return `inject event 0x${(s.record[0]! & 0xff).toString(16)} ${hexWords(s.record)}${note}`;
    case 'recover':
      return `recover ${s.queue}${note}`;
    case 'poke':
      return `poke ${hx(s.pa)} ${hexWords(s.words)}${note}`;
    case 'settle':
      return `settle${note}`;
    case 'dma':
      return `dma ${s.write ? 'write' : 'read'} sid=${hx(s.sid)} iova=${hex(s.iova)}${note}`;
    case 'map':
      return `map sid=${hx(s.sid)} ${hex(s.iova)} -> ${hex(s.pa)}${note}`;
    case 'unmap':
      return `unmap sid=${hx(s.sid)} ${hex(s.iova)}${note}`;
    case 'ste':
      return `ste sid=${hx(s.sid)}${s.config !== undefined ? ` config=${s.config}` : ''}${s.vmid !== undefined ? ` vmid=${hx(s.vmid)}` : ''}${note}`;
    case 'cd':
      return `cd sid=${hx(s.sid)} asid=${hx(s.asid)}${note}`;
  }
}

function dmaText(s: Extract<Step, { kind: 'dma' }>, r: DmaOutcome): string {
  const what = r.status === 'ok' ? `ok pa=${hex(r.pa ?? 0)}${r.tlbHit ? ' tlb=hit' : ' tlb=miss'}${r.bypass ? ' bypass' : ''}` : `${r.status}${r.event !== undefined ? ` event=${decodeEvent([r.event, 0, 0, 0, 0, 0, 0, 0]).name}` : ''}`;
  return `DMA ${s.write ? 'W' : 'R'} sid=${hx(s.sid)} ${hex(s.iova)} -> ${what}`;
}

function actionText(a: Action, model: ReferenceSmmu): string {
  switch (a.t) {
    case 'reg':
      return `  write ${hx(a.off)} = ${a.hi !== undefined ? `0x${(a.hi >>> 0).toString(16)}_${(a.lo >>> 0).toString(16).padStart(8, '0')}` : hx(a.lo)}`;
    case 'mem':
      return `  store ${hx(a.pa)} (${model.inRam(a.pa, 4) ? model.regionOf(a.pa) : 'outside RAM'}) ${hexWords(a.words)}`;
    case 'inject':
      return `  inject ${hexWords(a.record)}`;
  }
}
