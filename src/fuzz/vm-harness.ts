/**
 * The virtualization paths (trap, kernel-queue, vcmdq) under the fuzzer. Unlike the native and
 * ECMDQ paths, the guest's queue is not the physical one: the VMM (or the CMDQV) converts what
 * the guest writes, so the ring oracle of oracle.ts does not apply. What matters on these paths is
 * isolation and the error contract the guest sees, and that is what this harness checks.
 *
 * One System holds two VMs on the path: A, whose guest issues the generated commands (legal,
 * edge, RES0, mutated, range TLBIs, raw blobs; VMIDs and StreamIDs of both VMs among the
 * interesting constants), and B, a bystander with one page mapped and its translation cached in
 * the physical TLB. Per run:
 *   - no worker failed (System.error) and nothing hung (a watchdog bounds the run);
 *   - A's issue() completes; every command error it reports is a refusal (CERROR_ILL, §4.1.6; on
 *     a VCMDQ its ILL_OPCODE or ILL_ACCESS), recovered by the guest driver (§7.1), never a
 *     timeout or another error;
 *   - no command the SMMU executed (consumed) on A's behalf names B's VMID or one of B's physical
 *     StreamIDs (a CFGI_STE_RANGE counts when its range covers one, §4.3.2);
 *   - B's DMA still hits the TLB at the same output address (§3.2: nothing A may issue can
 *     invalidate another VMID's entries);
 *   - the host's own CMD_SYNC still completes without error (§4.7.3).
 * A failing case is shrunk (fast-check) and saved as a JSON file of format `smmu-sim-vm-fuzz/1`
 * holding the path, the topology, the command list and the violation (vmFailureFile);
 * `smmu-sim replay` reruns it (vm-scenario.ts).
 */

import fc from 'fast-check';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cerrorName, CERROR_ILL } from '../spec/cerror.ts';
import { VCMDQ_ERR, VCMDQ_ERR_NAMES } from '../spec/cmdqv.ts';
import { commandSpec } from '../spec/commands.ts';
import { getBits } from '../spec/bits.ts';
import { System, type TraceEntry } from '../system/system.ts';
import * as ring from '../ring/index.ts';
import type { Vm, VmPath } from '../system/vms.ts';
import type { CampaignOptions, CampaignSummary, FailedCase } from './campaign.ts';
import { edgeCommand, genContext, mutatedCommand, rawCommand, res0Command, tlbiRangeCommand, validCommand, wordsHex, type GenContext } from './generators.ts';
import type { FuzzPath } from './paths.ts';

/** The vSID each VM's first device has, and the physical StreamIDs (A: one device, B: two). */
const VSID = 1;
const A_PSID = 0x30;
const B_PSIDS = [0x40, 0x41] as const;
const IOVA = 0x1000_0000;
const PAGE = 4096;
const ASID = 9;
/**
 * The refusals a guest may see. On its trapped or forwarded SMMU queue: CERROR_ILL (§4.1.6; the
 * VMM reports every command it refuses so). On a VCMDQ the CMDQV's own VCMDQ_CONS.ERR codes
 * (viommu.md §4.1): ILL_OPCODE (code 1, CERROR_ILL's value) for a command the VCMDQ does not take,
 * ILL_ACCESS (Tegra-specific) for a VMID or StreamID outside the VINTF; the guest skips both.
 */
const REFUSALS: Readonly<Record<VmPath, readonly string[]>> = Object.freeze({
  trap: [cerrorName(CERROR_ILL)],
  'kernel-queue': [cerrorName(CERROR_ILL)],
  vcmdq: [VCMDQ_ERR_NAMES[VCMDQ_ERR.ILL_OPCODE]!, VCMDQ_ERR_NAMES[VCMDQ_ERR.ILL_ACCESS]!],
});
/** CMD_SYNC opcode (§4.1.1) and its CS field [13:12] (§4.7.3). */
const OP_SYNC = 0x46;
const SYNC_CS_LSB = 12;
/** CMD_CFGI_STE_RANGE (§4.3.2): Range 31 is CMD_CFGI_ALL (§4.3.6). */
const OP_CFGI_STE_RANGE = 0x04;
const CFGI_ALL_RANGE = 31;

export type VmViolationRule = 'worker-failure' | 'hang' | 'guest-issue' | 'guest-error' | 'foreign-vmid' | 'foreign-streamid' | 'bystander-tlb' | 'host-sync';

/** Every rule VmHarness.run checks, in the order docs/scenarios.md lists them. */
export const VM_VIOLATION_RULES: readonly VmViolationRule[] = Object.freeze([
  'worker-failure', 'hang', 'guest-issue', 'guest-error', 'foreign-vmid', 'foreign-streamid', 'bystander-tlb', 'host-sync',
]);

/** The harness's one topology, as a saved file's `vms` key describes it (a fresh copy per call). */
export function vmTopology(): { A: { devices: { vsid: number; psid: number }[] }; B: { devices: { vsid: number; psid: number }[]; mapped: { iova: number; bytes: number; asid: number } } } {
  return {
    A: { devices: [{ vsid: VSID, psid: A_PSID }] },
    B: { devices: B_PSIDS.map((psid, i) => ({ vsid: VSID + i, psid })), mapped: { iova: IOVA, bytes: PAGE, asid: ASID } },
  };
}

/** One command error the guest saw (its driver recovered it, §7.1). */
export interface VmGuestError {
  /**
   * The command's position in the list run() was given (the list's length: the CMD_SYNC the
   * issue appends). Only with run(…, { positions: true }), which reads the guest queue's PROD first.
   */
  readonly index?: number;
  /** The guest queue pointer (index and wrap) the error stopped at: its CONS.RD (§7.1). */
  readonly ptr: number;
  /** CONS.ERR: a CERROR code (§7.1), or on a VCMDQ its VCMDQ_CONS.ERR code. */
  readonly code: number;
  readonly name: string;
}

export interface VmViolation {
  readonly rule: VmViolationRule;
  readonly message: string;
  /** The spec section the check rests on. */
  readonly section: string;
}

export interface VmRunResult {
  readonly ok: boolean;
  readonly violations: readonly VmViolation[];
  readonly commands: number;
  /** Command errors the guest saw, by name. */
  readonly errors: ReadonlyMap<string, number>;
  /** Physical commands A caused (CMD_SYNCs included). */
  readonly physical: number;
  readonly fatal: boolean;
  /** The command errors the guest saw, in the order its driver recovered them. */
  readonly guestErrors: readonly VmGuestError[];
  /**
   * Every command the SMMU read during A's issue (the System's trace: physical queue, pointer,
   * words, outcome), in the order it read them; empty when a worker failed.
   */
  readonly trace: readonly TraceEntry[];
}

export interface VmRunOptions {
  /** Give each guest error its position in the list (VmGuestError.index): one more driver call per run. */
  readonly positions?: boolean;
}

export interface VmHarnessOptions {
  /** Bound on one run (issue, checks), default 20 s. */
  readonly runTimeoutMs?: number;
}

const POLICY = { mode: 'hybrid' as const, spin: 200, timeoutMs: 5000 };

/** The guest path a fuzz path name means, or undefined for the native paths. */
export function vmPathOf(name: string): VmPath | undefined {
  return name === 'trap' || name === 'kernel-queue' || name === 'vcmdq' ? name : undefined;
}

/** Whether a physical command names B's VMID or one of its StreamIDs; the reason, or undefined. */
export function foreignReference(words: readonly number[], vmid: number, psids: readonly number[]): { rule: 'foreign-vmid' | 'foreign-streamid'; what: string } | undefined {
  const op = words[0]! & 0xff;
  const spec = commandSpec(op);
  let sid: number | undefined;
  let range: number | undefined;
  for (const fl of spec.fields) {
    if (fl.name === 'VMID' && getBits(words, fl.lsb, fl.width) === vmid) return { rule: 'foreign-vmid', what: `VMID ${vmid}` };
    if (fl.name === 'StreamID') sid = getBits(words, fl.lsb, fl.width) >>> 0;
    if (fl.name === 'Range') range = getBits(words, fl.lsb, fl.width);
  }
  if (sid === undefined) return undefined;
  for (const p of psids) {
    // CMD_CFGI_STE_RANGE covers 2^(Range+1) StreamIDs aligned to that size; Range 31 all (§4.3.2, §4.3.6).
    const covered = op === OP_CFGI_STE_RANGE && range !== undefined ? range === CFGI_ALL_RANGE || Math.floor(sid / 2 ** (range + 1)) === Math.floor(p / 2 ** (range + 1)) : sid === p;
    if (covered) return { rule: 'foreign-streamid', what: `StreamID 0x${p.toString(16)}` };
  }
  return undefined;
}

/** Generated guest commands, with the identifiers of both VMs among the constants. */
export function guestCommands(ctx: GenContext, maxCommands: number): fc.Arbitrary<number[][]> {
  const sync = fc.nat({ max: 3 }).map((cs) => [(OP_SYNC | (cs << SYNC_CS_LSB)) >>> 0, 0, 0, 0]);
  const one = fc.oneof(
    { arbitrary: validCommand(ctx), weight: 6 },
    { arbitrary: edgeCommand(ctx), weight: 5 },
    { arbitrary: mutatedCommand(ctx), weight: 2 },
    { arbitrary: res0Command(ctx), weight: 1 },
    { arbitrary: tlbiRangeCommand(ctx), weight: 1 },
    { arbitrary: rawCommand(), weight: 1 },
    { arbitrary: sync, weight: 1 },
  );
  return fc.array(one, { minLength: 1, maxLength: maxCommands });
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`hang: ${what} took more than ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/** Runs guest command lists on path `path` against a System of two VMs. */
export class VmHarness {
  private sys: System | undefined;
  private a: Vm | undefined;
  private b: Vm | undefined;
  private pageB = 0;
  systemsStarted = 0;

  constructor(readonly path: VmPath, private readonly opts: VmHarnessOptions = {}) {}

  /** The generation context: the features A's guest sees, both VMs' VMIDs and StreamIDs. */
  async context(): Promise<GenContext> {
    const { a, b } = await this.ready();
    const base = genContext(a.features, '');
    return {
      ...base,
      ram: { base: a.ram.ipa, bytes: a.ram.bytes },
      vmids: [...new Set([a.vmid, b.vmid, ...base.vmids])],
      asids: [...new Set([ASID, ...base.asids])],
      sids: [...new Set([VSID, 2, A_PSID, ...B_PSIDS, ...base.sids])],
    };
  }

  private async ready(): Promise<{ sys: System; a: Vm; b: Vm }> {
    if (this.sys !== undefined && this.sys.error === undefined && this.a !== undefined && this.b !== undefined) return { sys: this.sys, a: this.a, b: this.b };
    await this.close();
    const sys = await System.start({
      policy: POLICY,
      trace: true,
      ...(this.path === 'vcmdq' ? { cmdqv: true } : {}),
      vms: [
        { path: this.path, devices: [{ vsid: VSID, psid: A_PSID }] },
        { path: this.path, devices: B_PSIDS.map((psid, i) => ({ vsid: VSID + i, psid })) },
      ],
    });
    this.systemsStarted++;
    const [a, b] = [sys.vms[0]!, sys.vms[1]!];
    this.pageB = b.ram.ipa + 0x10_0000;
    const { domain } = await b.driver.attachStage1(VSID, { asid: ASID, granule: PAGE, ias: 48 });
    await b.driver.map(domain, IOVA, this.pageB, PAGE, { read: true, write: true });
    await sys.dma({ sid: B_PSIDS[0], iova: IOVA, read: true });
    [this.sys, this.a, this.b] = [sys, a, b];
    return { sys, a, b };
  }

  /** Once the system is up: the features A's guest driver sees (its vSMMU's) and both VMs' VMIDs. */
  async guestInfo(): Promise<{ features: Vm['features']; vmids: { A: number; B: number } }> {
    const { a, b } = await this.ready();
    return { features: a.features, vmids: { A: a.vmid, B: b.vmid } };
  }

  /**
   * Where A's next command goes: its driver's PROD (index and wrap) and log2 of its queue, on the
   * queue run() issues to: the trapped or forwarded SMMU command queue, or on 'vcmdq' the guest
   * CPU's LVCMDQ (LVCMDQ 0, issueOnVcmdq's default).
   */
  private async guestQueue(a: Vm, limit: number): Promise<{ prod: number; log2: number }> {
    const st = (await withTimeout(a.driver.state(), limit, "the guest driver's state")) as unknown as {
      cmdq: { prod: number; log2: number };
      cmdqv?: { lvcmdqs: readonly { prod: number; log2: number }[] };
    };
    const q = this.path === 'vcmdq' ? st.cmdqv?.lvcmdqs[0] : st.cmdq;
    if (q === undefined) throw new Error("the guest's LVCMDQ 0 is not set up");
    return { prod: q.prod, log2: q.log2 };
  }

  async run(cmds: readonly (readonly number[])[], opts: VmRunOptions = {}): Promise<VmRunResult> {
    const violations: VmViolation[] = [];
    const errors = new Map<string, number>();
    const guestErrors: VmGuestError[] = [];
    let trace: TraceEntry[] = [];
    let physical = 0;
    let fatal = false;
    const v = (rule: VmViolationRule, message: string, section: string) => violations.push({ rule, message, section });
    const { sys, a, b } = await this.ready();
    const limit = this.opts.runTimeoutMs ?? 20_000;
    const from = sys.trace().entries.length;
    try {
      // B's entry is cached before A starts (the first access fills the TLB).
      const before = await withTimeout(sys.dma({ sid: B_PSIDS[0], iova: IOVA, read: true }), limit, 'B\'s DMA');
      if (before.status !== 'ok') throw new Error(`the bystander's translation did not set up: ${JSON.stringify(before)}`);
      const start = opts.positions === true ? await this.guestQueue(a, limit) : undefined;
      let r;
      try {
        r = await withTimeout(this.path === 'vcmdq' ? a.issueOnVcmdq(cmds) : a.driver.issue(cmds), limit, "the guest's issue()");
      } catch (e) {
        const m = (e as Error).message;
        v(/^hang/.test(m) ? 'hang' : 'guest-issue', `the guest's issue() did not complete: ${m}`, '§7.1');
      }
      if (r !== undefined) {
        for (const e of r.errors) {
          // The issue's entries are contiguous from PROD (the commands, then its CMD_SYNC, §3.5.1):
          // the distance from PROD modulo the pointer range (index and wrap) is the list position.
          const index = start === undefined ? undefined : ring.used(e.index, start.prod, start.log2);
          guestErrors.push({ ...(index !== undefined ? { index } : {}), ptr: e.index, code: e.code, name: e.name });
          errors.set(e.name, (errors.get(e.name) ?? 0) + 1);
          if (!REFUSALS[this.path].includes(e.name)) {
            v('guest-error', `the guest saw ${e.name} (code ${e.code}) at queue pointer 0x${e.index.toString(16)}${index !== undefined ? ` (command ${index})` : ''}; only ${REFUSALS[this.path].join(' or ')} expected`, '§4.1.6');
          }
        }
        if (r.errors.length > cmds.length) v('guest-error', `${r.errors.length} command errors for ${cmds.length} commands`, '§7.1');
      }
      if (sys.error === undefined) {
        const entries: TraceEntry[] = sys.trace().entries.slice(from);
        physical = entries.length;
        trace = entries;
        for (const e of entries) {
          // A refused command has no effect (§4.1.6): only what the SMMU executed can reach B.
          if (e.outcome !== 'consumed') continue;
          const f = foreignReference(e.words, b.vmid, B_PSIDS);
          if (f !== undefined) v(f.rule, `the physical ${e.queue} executed ${e.text} (${wordsHex(e.words)}), naming the bystander's ${f.what}`, '§3.2');
        }
        const after = await withTimeout(sys.dma({ sid: B_PSIDS[0], iova: IOVA, read: true }), limit, "B's DMA");
        const want = b.hostAddress(this.pageB);
        if (after.status !== 'ok' || after.pa !== want || !after.tlbHit) {
          v('bystander-tlb', `the bystander's DMA after the run: ${JSON.stringify(after)}; expected a TLB hit at 0x${want.toString(16)}`, '§3.2');
        }
        const h = await withTimeout(sys.driver.sync(), limit, "the host's CMD_SYNC");
        if (h.errors.length > 0) v('host-sync', `the host's CMD_SYNC saw ${h.errors.map((e) => e.name).join(', ')}`, '§4.7.3');
      }
    } catch (e) {
      const m = (e as Error).message;
      v(/^hang/.test(m) ? 'hang' : 'worker-failure', m, '§7.1');
    }
    if (sys.error !== undefined) {
      v('worker-failure', `a worker failed: ${sys.error.message}`, '');
      fatal = true;
    }
    if (violations.some((x) => x.rule === 'hang' || x.rule === 'worker-failure' || x.rule === 'bystander-tlb')) fatal = true;
    if (fatal) await this.close();
    return { ok: violations.length === 0, violations, commands: cmds.length, errors, physical, fatal, guestErrors, trace };
  }

  async close(): Promise<void> {
    const s = this.sys;
    [this.sys, this.a, this.b] = [undefined, undefined, undefined];
    if (s !== undefined) await s.stop().catch(() => undefined);
  }
}

class VmFailure extends Error {
  constructor(readonly result: VmRunResult) {
    super(`${result.violations[0]?.rule}: ${result.violations[0]?.message}`);
  }
}

/** The format of a saved VM-path failure (vm-scenario.ts reads it). */
export const VM_SCENARIO_FORMAT = 'smmu-sim-vm-fuzz/1';

/** What a saved VM-path failure records besides its command list. */
export interface VmFailureFound {
  readonly seed: number;
  readonly rule: string;
  readonly section: string;
  readonly message: string;
  readonly shrinks: number;
  readonly reproduces: boolean;
}

/**
 * The JSON a campaign saves for one shrunk failure: format `smmu-sim-vm-fuzz/1`, the path, the
 * harness's topology, the command list in memory-order hex (wordsHex) and the violation in
 * `found`. parseVmScenario reads it back; `smmu-sim replay` reruns it.
 */
export function vmFailureFile(path: VmPath, cmds: readonly (readonly number[])[], found: VmFailureFound): Record<string, unknown> {
  return {
    format: VM_SCENARIO_FORMAT,
    name: `fuzz ${path}: ${found.rule}`,
    description: found.message !== '' ? found.message : 'the property failed',
    path,
    vms: vmTopology(),
    commands: cmds.map((w) => wordsHex(w)),
    found: { by: 'smmu-sim fuzz', path, seed: found.seed, rule: found.rule, section: found.section, message: found.message, shrinks: found.shrinks, reproduces: found.reproduces },
  };
}

/**
 * A campaign on a virtualization path: runs, shrinking, saved failures, a summary like the others.
 * `given` (default: a new VmHarness on the path) lets a test run the campaign on a harness with
 * checks of its own; the campaign closes it at the end.
 */
export async function runVmCampaign(opts: CampaignOptions, path: FuzzPath, given?: VmHarness): Promise<CampaignSummary> {
  const vmPath = vmPathOf(path.name);
  if (vmPath === undefined) throw new Error(`path '${path.name}' is not a virtualization path`);
  const harness = given ?? new VmHarness(vmPath);
  if (harness.path !== vmPath) throw new Error(`runVmCampaign: the harness runs path '${harness.path}', not '${vmPath}'`);
  const start = Date.now();
  const deadline = opts.timeMs !== undefined ? start + opts.timeMs : undefined;
  const total = opts.runs ?? (opts.timeMs === undefined ? 200 : undefined);
  const blockRuns = opts.blockRuns ?? 100;
  const maxShrink = opts.maxShrinkRuns ?? 100;
  const errors = new Map<string, number>();
  const cov = new Map<string, Map<string, number>>();
  let runs = 0;
  let shrinkRuns = 0;
  let commands = 0;
  const failed: FailedCase[] = [];
  const known = new Set<string>();
  const progress = (shrinking: boolean) =>
    opts.onProgress?.({ runs, totalRuns: total, elapsedMs: Date.now() - start, timeMs: opts.timeMs, failures: failed.length, shrinking });
  let block = 0;
  try {
    const ctx = await harness.context();
    for (;;) {
      const left = total === undefined ? blockRuns : Math.min(blockRuns, total - runs);
      if (left <= 0) break;
      if (deadline !== undefined && Date.now() >= deadline) break;
      const seed = (opts.seed + block * 0x9e37) | 0;
      block++;
      let target: string | undefined;
      let shrinks = 0;
      const prop = fc.asyncProperty(guestCommands(ctx, opts.maxActs ?? 20), async (cmds) => {
        if (target !== undefined && shrinks >= maxShrink) return true;
        const r = await harness.run(cmds);
        if (target === undefined) {
          runs++;
          commands += r.commands;
          for (const [k, n] of r.errors) errors.set(k, (errors.get(k) ?? 0) + n);
          for (const w of cmds) {
            const name = commandSpec(w[0]! & 0xff).name;
            let m = cov.get(name);
            if (m === undefined) cov.set(name, (m = new Map()));
            m.set('issued', (m.get('issued') ?? 0) + 1);
          }
          progress(false);
        } else {
          shrinks++;
          shrinkRuns++;
        }
        if (r.ok) return true;
        const sig = r.violations[0]!.rule;
        if (target === undefined) {
          if (known.has(sig)) return true;
          target = sig;
          throw new VmFailure(r);
        }
        if (sig !== target) return true;
        throw new VmFailure(r);
      });
      const details = await fc.check(prop, {
        seed,
        numRuns: left,
        endOnFailure: false,
        ...(deadline !== undefined ? { plugins: [fc.interruptAfterTimeLimit(Math.max(1, deadline - Date.now())) as fc.Plugin<[number[][]]>] } : {}),
      });
      if (details.failed && details.counterexample !== null && details.counterexample !== undefined) {
        const cmds = details.counterexample[0];
        const err = details.errorInstance;
        const v = err instanceof VmFailure ? err.result.violations[0] : undefined;
        const rule = v?.rule ?? target ?? 'unknown';
        known.add(rule);
        // Confirm on the same harness (a fresh System when the failure was fatal).
        const again = await harness.run(cmds);
        const reproduces = !again.ok && again.violations[0]!.rule === rule;
        const scenario = vmFailureFile(vmPath, cmds, { seed, rule, section: v?.section ?? '', message: v?.message ?? '', shrinks: details.numShrinks, reproduces });
        let file: string | undefined;
        if (opts.outDir !== undefined) {
          mkdirSync(opts.outDir, { recursive: true });
          file = join(opts.outDir, `${path.name}-${(seed >>> 0).toString(16)}-${failed.length + 1}-${rule}.json`);
          writeFileSync(file, `${JSON.stringify(scenario, null, 2)}\n`);
        }
        failed.push({ rule, message: v?.message ?? '', step: -1, ...(v?.section ? { section: v.section } : {}), features: 'full', seed, ...(file !== undefined ? { file } : {}), reproduces, shrinks: details.numShrinks, scenario });
        progress(false);
      }
    }
  } finally {
    await harness.close();
  }
  const oc: Record<string, Record<string, number>> = {};
  let pairs = 0;
  for (const name of [...cov.keys()].sort()) {
    oc[name] = Object.fromEntries(cov.get(name)!);
    pairs += cov.get(name)!.size;
  }
  return {
    path: path.name,
    seed: opts.seed,
    features: ['full'],
    runs,
    shrink_runs: shrinkRuns,
    commands,
    register_writes: 0,
    failures: failed.length,
    failed_cases: failed.map(({ scenario: _s, ...rest }) => rest),
    errors_by_kind: Object.fromEntries([...errors].sort()),
    known_deviations: {},
    coverage: { opcode_outcome: oc, opcodes_seen: cov.size, opcodes_total: 256 + 1, pairs_seen: pairs, legality_rules: {} },
    duration_ms: Date.now() - start,
    systems_started: harness.systemsStarted,
    dma: { judged: 0, unjudged: 0 },
  };
}
