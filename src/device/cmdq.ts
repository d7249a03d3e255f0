import * as ring from '../ring/index.ts';
import { CERROR_ABT, CERROR_NONE } from '../spec/cerror.ts';
import { COMMAND_BYTES, COMMAND_WORDS, OP } from '../spec/commands.ts';
import type { PhysMem } from '../mem/phys.ts';

/**
 * What a command queue needs from the rest of the SMMU: execute one command, publish CONS, and
 * raise the queue's error. The CMDQ and (later) each ECMDQ are CommandQueues over one executor.
 */
export interface CommandExecutor {
  /**
   * Execute one command snapshot. Returns CERROR_NONE, or the error code that stops the queue
   * with CONS.RD left on this command (§7.1). `q.cons` still points at the command. A CMD_SYNC
   * only checks here that it can complete; its completion is `completeSync`.
   */
  execute(q: CommandQueue, words: Uint32Array, next: number): number;
  /**
   * Signal a consumed CMD_SYNC's completion. `q.cons` has passed it and its trace record is
   * written; this publishes CONS first, then signals (§4.7.3: observing the completion implies
   * observing the CONS that passed the sync).
   */
  completeSync(q: CommandQueue, words: Uint32Array): void;
  /** Make `q.cons` (and the queue's ERR field) visible to software. */
  publishCons(q: CommandQueue): void;
  /**
   * `q` stopped on an error (`q.err` holds the code, `q.cons` the failing command): publish the
   * code with CONS, then activate the global error, in that order (§7.1, §3.5.6.3).
   */
  raiseError(q: CommandQueue, code: number): void;
  /** Record a consumed (or refused) command in the trace. */
  traced(q: CommandQueue, ptr: number, words: Uint32Array, outcome: number): void;
  /** `q` was full and has room again: with IDR0.SEV the SMMU sends a WFE wake-up (§4.1, §3.5.6 for ECMDQs). */
  notFull(q: CommandQueue): void;
}

/**
 * One command queue's consumer state (§3.5, §4.1). The device owns every field; software sees
 * them only through the PROD/CONS/BASE registers.
 */
export class CommandQueue {
  /** Effective base: ADDR aligned to max(queue bytes, 32) (§6.3.26). */
  base = 0;
  /** Effective LOG2SIZE: the written value capped at IDR1.CMDQS (§6.3.26). */
  log2 = 0;
  /** PROD as software last wrote it (index and wrap). */
  prod = 0;
  /** The next entry to consume (index and wrap). */
  cons = 0;
  enabled = false;
  /** A command error is active: nothing is consumed until software acknowledges it (§7.1). */
  errActive = false;
  /** The last error code (CONS.ERR / ERR_REASON). */
  err = CERROR_NONE;
  /** Commands consumed over the queue's life. */
  consumed = 0;

  private readonly snap = new Uint32Array(COMMAND_WORDS);

  constructor(
    /** 0 for the CMDQ, 1 + n for ECMDQ n (the trace's queue id). */
    readonly id: number,
    readonly name: string,
    private readonly mem: PhysMem,
    private readonly exec: CommandExecutor,
  ) {}

  /** Make `cons` (and the error fields) visible in this queue's CONS register. */
  publish(): void {
    this.exec.publishCons(this);
  }

  /** (Re)load geometry from a BASE value's fields, capping LOG2SIZE at `maxLog2`. */
  configure(addr: number, log2size: number, maxLog2: number): void {
    this.log2 = Math.min(log2size, maxLog2);
    const bytes = Math.max(COMMAND_BYTES << this.log2, 32);
    this.base = addr - (addr % bytes);
  }

  /** Whether a consume() call could make progress. */
  get runnable(): boolean {
    return this.enabled && !this.errActive && !ring.isEmpty(this.prod, this.cons, this.log2);
  }

  /**
   * Consume up to `budget` commands. Each entry is read once into a snapshot (the single-fetch
   * rule: a driver rewriting an entry it already published gets one of the two versions, never
   * a check of one and an execution of the other). Stops at the first error. Returns the number
   * of commands consumed.
   */
  consume(budget: number): number {
    if (!this.enabled || this.errActive) return 0;
    const mem = this.mem;
    const snap = this.snap;
    const u32 = mem.u32;
    const wasFull = ring.isFull(this.prod, this.cons, this.log2);
    let n = 0;
    while (n < budget && !ring.isEmpty(this.prod, this.cons, this.log2)) {
      const ptr = this.cons;
      const pa = this.base + ring.idx(ptr, this.log2) * COMMAND_BYTES;
      if (!mem.contains(pa, COMMAND_BYTES)) {
        // §7.1 CERROR_ABT: an abort on command fetch. CONS stays on the command.
        snap.fill(0);
        this.exec.traced(this, ptr, snap, CERROR_ABT);
        this.stop(CERROR_ABT);
        break;
      }
      const wi = mem.wordIndex(pa);
      snap[0] = u32[wi]!;
      snap[1] = u32[wi + 1]!;
      snap[2] = u32[wi + 2]!;
      snap[3] = u32[wi + 3]!;
      const next = ring.inc(ptr, 1, this.log2);
      const code = this.exec.execute(this, snap, next);
      this.exec.traced(this, ptr, snap, code);
      if (code !== CERROR_NONE) {
        this.stop(code);
        break;
      }
      this.cons = next;
      this.consumed++;
      n++;
      if ((snap[0]! & 0xff) === OP.CMD_SYNC) this.exec.completeSync(this, snap);
    }
    if (n > 0) {
      this.exec.publishCons(this);
      if (wasFull) this.exec.notFull(this);
    }
    return n;
  }

  private stop(code: number): void {
    this.err = code;
    this.errActive = true;
    this.exec.raiseError(this, code);
  }
}
