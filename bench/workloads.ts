/**
 * The invalidation shapes the benchmark issues, as Linux's arm-smmu-v3 driver issues them
 * (issue 7 "Latency"; shared/reference/driver-and-qemu.md Part A). Each operation is a list of
 * issues; an issue is a group of commands put on the queue with one doorbell, followed by one
 * CMD_SYNC when `sync` is set (the guest waits for it before the next issue).
 *
 * Commands are encoded once, here, at the API edge (BigInt allowed); the timed loop only copies
 * the four words of each into the queue.
 */
import { encodeCommandWords, type CommandInput } from '../src/spec/command-codec.ts';
import { setBits } from '../src/spec/bits.ts';
import { commandField, commandSpec } from '../src/spec/commands.ts';
import type { SmmuFeatures } from '../src/spec/features.ts';

export type WorkloadName = 'tlbi-va' | 'tlbi-range' | 'unmap' | 'atc-inv' | 'stream';

/** One doorbell's worth of an operation. */
export interface IssueShape {
  readonly cmds: readonly Uint32Array[];
  /** Append a CMD_SYNC and wait for it (the driver's sync); false: doorbell only. */
  readonly sync: boolean;
}

export interface Workload {
  readonly name: WorkloadName;
  readonly summary: string;
  /** Whether --batch applies (batch = invalidation commands per doorbell); otherwise batch is 1. */
  readonly batched: boolean;
  /**
   * 'latency': the ratio to the floor compares p50 with the floor round trip.
   * 'throughput': it compares commands/s with the bare ring at the same entries per doorbell.
   */
  readonly basis: 'latency_p50' | 'throughput';
  /** Why these features cannot run it, or undefined. */
  unsupported(f: SmmuFeatures): string | undefined;
  /** The operation at this batch size. */
  issues(batch: number): IssueShape[];
  /** After the timed loop: a lone CMD_SYNC that drains what was issued without one. */
  readonly drain: boolean;
}

// Fixed, legal operands (checked against src/spec/legality.ts by test/bench/workloads.test.ts).
const VMID = 1;
const ASID = 5;
/** The StreamID of CFGI_CD and ATC_INV: the device the VM paths assign to their VM (vSID = StreamID). */
export const STREAM_ID = 0x10;
/** A 4 KiB page of a user mapping. */
const PAGE_VA = 0x7f12_3456_7000n;
/** A 128 KiB-aligned range of 32 pages: TG = 4K, SCALE = 0, NUM = 31 (§4.4.1.1: (NUM+1)·2^SCALE granules). */
const RANGE_VA = 0x7f12_3440_0000n;

const enc = (c: CommandInput): Uint32Array => encodeCommandWords(c);

/** CMD_TLBI_NH_VA of one page, Leaf = 1, no range (TG = 0): Linux without RIL, or one page. */
export const TLBI_VA_PAGE = enc({ name: 'CMD_TLBI_NH_VA', VMID, ASID, Address: PAGE_VA, Leaf: 1 });
/** CMD_TLBI_NH_VA of 32 pages with the range fields (SMMU_IDR3.RIL == 1, §4.4.1.1), leaf level 3. */
export const TLBI_VA_RANGE = enc({ name: 'CMD_TLBI_NH_VA', VMID, ASID, Address: RANGE_VA, Leaf: 1, TG: '4K', SCALE: 0, NUM: 31, TTL: 3 });
/** CMD_CFGI_CD of SubstreamID 0 of one stream (§4.3.3), Leaf = 1. */
export const CFGI_CD = enc({ name: 'CMD_CFGI_CD', StreamID: STREAM_ID, SubstreamID: 0, Leaf: 1 });
/** CMD_TLBI_NH_ASID (§4.4.2.2). */
export const TLBI_ASID = enc({ name: 'CMD_TLBI_NH_ASID', VMID, ASID });
/** CMD_ATC_INV of one 4 KiB page of the same stream, no SubstreamID (§4.5.1, Size 0 = 4 KiB). */
export const ATC_INV_PAGE = enc({ name: 'CMD_ATC_INV', StreamID: STREAM_ID, SSV: 0, Address: PAGE_VA, Size: 0 });

function repeat(cmd: Uint32Array, n: number): Uint32Array[] {
  return Array.from({ length: n }, () => cmd);
}

export const WORKLOADS: readonly Workload[] = [
  {
    name: 'tlbi-va',
    summary: 'batch × TLBI_NH_VA (one page each) + CMD_SYNC: an unmap of `batch` pages (batch 1: the single-page latency)',
    batched: true,
    basis: 'latency_p50',
    unsupported: (f) => (f.s1 ? undefined : 'needs stage 1 (SMMU_IDR0.S1P == 1) for TLBI_NH_VA'),
    issues: (b) => [{ cmds: repeat(TLBI_VA_PAGE, b), sync: true }],
    drain: false,
  },
  {
    name: 'tlbi-range',
    summary: 'one range TLBI_NH_VA (32 pages, TG 4K) + CMD_SYNC',
    batched: false,
    basis: 'latency_p50',
    unsupported: (f) => (!f.s1 ? 'needs stage 1 (SMMU_IDR0.S1P == 1)' : f.ril ? undefined : 'needs range invalidation (SMMU_IDR3.RIL == 1)'),
    issues: () => [{ cmds: [TLBI_VA_RANGE], sync: true }],
    drain: false,
  },
  {
    name: 'unmap',
    summary: 'CFGI_CD + TLBI_NH_ASID + CMD_SYNC: a context descriptor change and its ASID flush',
    batched: false,
    basis: 'latency_p50',
    unsupported: (f) => (f.s1 ? undefined : 'needs stage 1 (SMMU_IDR0.S1P == 1) for CFGI_CD and TLBI_NH_ASID'),
    issues: () => [{ cmds: [CFGI_CD, TLBI_ASID], sync: true }],
    drain: false,
  },
  {
    name: 'atc-inv',
    // §3.9.1: SMMU TLB invalidation must be complete before the ATS invalidation starts, so the
    // ATC_INV waits for the TLBI's CMD_SYNC (Linux's order in arm_smmu_tlb_inv_range_domain).
    summary: 'TLBI_NH_VA + CMD_SYNC, then ATC_INV + CMD_SYNC (ATS on: the TLB sync completes first, §3.9.1)',
    batched: false,
    basis: 'latency_p50',
    unsupported: (f) => (!f.s1 ? 'needs stage 1 (SMMU_IDR0.S1P == 1)' : f.ats ? undefined : 'needs ATS (SMMU_IDR0.ATS == 1) for CMD_ATC_INV'),
    issues: () => [
      { cmds: [TLBI_VA_PAGE], sync: true },
      { cmds: [ATC_INV_PAGE], sync: true },
    ],
    drain: false,
  },
  {
    name: 'stream',
    summary: 'batch × TLBI_NH_VA per doorbell, no CMD_SYNC until the end: queue throughput against the bare ring',
    batched: true,
    basis: 'throughput',
    unsupported: (f) => (f.s1 ? undefined : 'needs stage 1 (SMMU_IDR0.S1P == 1) for TLBI_NH_VA'),
    issues: (b) => [{ cmds: repeat(TLBI_VA_PAGE, b), sync: false }],
    drain: true,
  },
];

export function workloadByName(name: string): Workload | undefined {
  return WORKLOADS.find((w) => w.name === name);
}

/**
 * The same operation as a guest kernel issues it to its virtual SMMU, which implements stage 1
 * only (src/virt/vsmmu.ts vsmmuFeatures): every VMID field 0, since VMID is RES0 where stage 2
 * is not implemented (§4.4.2; a set bit is CERROR_ILL in the model's legality check), as Linux
 * leaves it for a stage 1 domain. The host (trap, in-kernel queue) or the CMDQV (VCMDQ) puts the
 * VM's VMID in. Everything else, including the shape, is unchanged; a command that appears
 * several times stays one object.
 */
export function stage1GuestIssues(issues: readonly IssueShape[]): IssueShape[] {
  const done = new Map<Uint32Array, Uint32Array>();
  const guest = (c: Uint32Array): Uint32Array => {
    let g = done.get(c);
    if (g === undefined) {
      const f = commandField(commandSpec(c[0]! & 0xff), 'VMID');
      if (f === undefined) g = c;
      else {
        g = Uint32Array.from(c);
        setBits(g, f.lsb, f.width, 0);
      }
      done.set(c, g);
    }
    return g;
  };
  return issues.map((is) => ({ cmds: is.cmds.map(guest), sync: is.sync }));
}

/** Counts of one operation, from its shape. */
export interface OpShape {
  /** Queue entries written, CMD_SYNCs included. */
  readonly commands: number;
  /** Invalidation commands (everything but the CMD_SYNCs). */
  readonly invalidations: number;
  readonly syncs: number;
  readonly doorbells: number;
  /** Entries per doorbell (the largest, for the floor ring at the same batch). */
  readonly perDoorbell: number;
  /** Invalidation commands per doorbell, for the cost model of paths that forward per group. */
  readonly groups: readonly number[];
}

/**
 * The counts of one operation as the single-producer driver issues it: groups of at most 64
 * commands share a doorbell, the last group with the CMD_SYNC (src/driver/driver.ts issue()).
 */
export function opShape(issues: readonly IssueShape[], batchEntries = 64): OpShape {
  let commands = 0;
  let invalidations = 0;
  let syncs = 0;
  let doorbells = 0;
  let perDoorbell = 0;
  const groups: number[] = [];
  for (const is of issues) {
    const n = is.cmds.length;
    invalidations += n;
    groups.push(n);
    const entries = n + (is.sync ? 1 : 0);
    commands += entries;
    if (is.sync) syncs++;
    const d = Math.max(1, Math.ceil(n / batchEntries));
    doorbells += d;
    perDoorbell = Math.max(perDoorbell, Math.min(entries, batchEntries + (is.sync ? 1 : 0)));
  }
  return { commands, invalidations, syncs, doorbells, perDoorbell, groups };
}
