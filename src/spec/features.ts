/**
 * SmmuFeatures: the one description of what a modelled SMMU implements.
 *
 * The legality check (which commands are relevant, which fields are RES0), the ID registers the
 * device presents (IDR0–IDR6, see idr.ts) and the driver's probe all derive from this object, so a
 * feature switch means the same thing everywhere. Each member names the ID register field it
 * becomes (IHI0070 G.b §6.3.1–§6.3.6, §6.3.45).
 */

export type StallModel = 'stall-and-terminate' | 'no-stall' | 'stall-forced';

export interface SmmuFeatures {
  /** IDR0.S1P: stage 1 translation. */
  readonly s1: boolean;
  /** IDR0.S2P: stage 2 translation. */
  readonly s2: boolean;
  /** IDR0.Hyp: EL2 stage-1 contexts and the TLBI_EL2_* commands. */
  readonly hyp: boolean;
  /** IDR3.RIL: range invalidation (NUM, SCALE, TG, TTL in TLBI commands). */
  readonly ril: boolean;
  /** IDR0.ATS: PCIe ATS and CMD_ATC_INV. */
  readonly ats: boolean;
  /** IDR0.PRI: Page Request Interface, the PRI queue and CMD_PRI_RESP (needs ats). */
  readonly pri: boolean;
  /** IDR0.STALL_MODEL. */
  readonly stallModel: StallModel;
  /** IDR0.MSI: MSIs, including the CMD_SYNC MSI write. */
  readonly msi: boolean;
  /** IDR0.SEV: WFE wake-up events (CMD_SYNC CS=SIG_SEV). */
  readonly sev: boolean;
  /** IDR0.VMID16: 16-bit VMIDs (else VMID[15:8] is RES0). */
  readonly vmid16: boolean;
  /** IDR0.ASID16: 16-bit ASIDs (else ASID[15:8] is RES0). */
  readonly asid16: boolean;
  /** IDR0.COHACC: coherent access to tables, queues and MSIs. */
  readonly coherent: boolean;
  /** IDR0.CD2L: 2-level context descriptor tables. */
  readonly cd2l: boolean;
  /** IDR0.ST_LEVEL = 0b01: 2-level stream tables. */
  readonly stLevel2: boolean;
  /** IDR0.BTM: broadcast TLB maintenance. */
  readonly btm: boolean;
  /** IDR0.VMW: VMID wildcards. */
  readonly vmw: boolean;
  /** IDR0.HTTU: 0 none, 1 access flag, 2 access and dirty. */
  readonly httu: 0 | 1 | 2;
  /** IDR3.MPAM: MPAM and CMD_CFGI_VMS_PIDM. */
  readonly mpam: boolean;
  /** IDR3.DPT: Device Permission Table and the CMD_DPTI_* commands. */
  readonly dpt: boolean;
  /** IDR5.DS: 52-bit addresses with 4K/16K granules; widens TLBI SCALE to 6 bits. */
  readonly ds: boolean;
  /** IDR5.GRAN4K / GRAN16K / GRAN64K. */
  readonly gran4k: boolean;
  readonly gran16k: boolean;
  readonly gran64k: boolean;
  /** IDR5.OAS encoding: 0=32, 1=36, 2=40, 3=42, 4=44, 5=48, 6=52 bits. */
  readonly oas: number;
  /** IDR5.VAX: 0 = 48-bit VA, 1 = 52-bit VA. */
  readonly vax: 0 | 1;
  /** IDR1.SIDSIZE: StreamID bits, 0..32. */
  readonly sidSize: number;
  /** IDR1.SSIDSIZE: SubstreamID bits, 0..20. */
  readonly ssidSize: number;
  /** IDR1.CMDQS: log2 of the largest command queue, 0..19. */
  readonly cmdqs: number;
  /** IDR1.EVENTQS: log2 of the largest event queue, 0..19. */
  readonly eventqs: number;
  /** IDR1.PRIQS: log2 of the largest PRI queue, 0..19. */
  readonly priqs: number;
  /** IDR1.ECMDQ: Enhanced Command Queues (SMMUv3.3). */
  readonly ecmdq: boolean;
  /** IDR6.CMDQ_CONTROL_PAGE_LOG2NUMP: log2 of the number of ECMDQ control pages, 0..8. */
  readonly ecmdqLog2NumP: number;
  /** IDR6.CMDQ_CONTROL_PAGE_LOG2NUMQ: log2 of the ECMDQs per control page, 0..8. */
  readonly ecmdqLog2NumQ: number;
  /** AIDR.ArchMinorRev: 0..4 for SMMUv3.0..v3.4. */
  readonly archMinor: number;
  /**
   * Report set RES0 bits in commands as CERROR_ILL. The spec lets an implementation either ignore
   * them or raise CERROR_ILL (§4.1.6); the model checks by default so that mistakes show.
   */
  readonly res0Check: boolean;
}

/** Every optional feature on and the largest ID sizes: the default for decode and legality. */
export const FULL_FEATURES: SmmuFeatures = Object.freeze({
  s1: true,
  s2: true,
  hyp: true,
  ril: true,
  ats: true,
  pri: true,
  stallModel: 'stall-and-terminate',
  msi: true,
  sev: true,
  vmid16: true,
  asid16: true,
  coherent: true,
  cd2l: true,
  stLevel2: true,
  btm: false,
  vmw: true,
  httu: 2,
  mpam: true,
  dpt: true,
  ds: true,
  gran4k: true,
  gran16k: true,
  gran64k: true,
  oas: 6,
  vax: 1,
  sidSize: 32,
  ssidSize: 20,
  cmdqs: 19,
  eventqs: 19,
  priqs: 19,
  ecmdq: true,
  ecmdqLog2NumP: 0,
  ecmdqLog2NumQ: 3,
  archMinor: 3,
  res0Check: true,
} satisfies SmmuFeatures);

/** Boolean switches and the words the `--features` syntax uses for them. */
const SWITCHES = {
  s1: 's1',
  s2: 's2',
  hyp: 'hyp',
  ril: 'ril',
  ats: 'ats',
  pri: 'pri',
  msi: 'msi',
  sev: 'sev',
  vmid16: 'vmid16',
  asid16: 'asid16',
  coherent: 'coherent',
  cd2l: 'cd2l',
  stLevel2: 'st2l',
  btm: 'btm',
  vmw: 'vmw',
  mpam: 'mpam',
  dpt: 'dpt',
  ds: 'ds',
  gran4k: 'gran4k',
  gran16k: 'gran16k',
  gran64k: 'gran64k',
  ecmdq: 'ecmdq',
  res0Check: 'res0check',
} as const satisfies Partial<Record<keyof SmmuFeatures, string>>;

/** Numeric settings: word, member, inclusive range. */
const NUMBERS = [
  ['sidsize', 'sidSize', 0, 32],
  ['ssidsize', 'ssidSize', 0, 20],
  ['cmdqs', 'cmdqs', 0, 19],
  ['eventqs', 'eventqs', 0, 19],
  ['priqs', 'priqs', 0, 19],
  ['oas', 'oas', 0, 6],
  ['vax', 'vax', 0, 1],
  ['httu', 'httu', 0, 2],
  ['ecmdq-log2nump', 'ecmdqLog2NumP', 0, 8],
  ['ecmdq-log2numq', 'ecmdqLog2NumQ', 0, 8],
  ['arch', 'archMinor', 0, 4],
] as const;

const STALL_WORDS: Record<string, StallModel> = {
  stall: 'stall-and-terminate',
  'no-stall': 'no-stall',
  'stall-forced': 'stall-forced',
};

/** The words `parseFeatures` accepts, for help texts. */
export function featureSyntax(): string {
  const sw = Object.values(SWITCHES).join('|');
  const nums = NUMBERS.map(([w, , lo, hi]) => `${w}=${lo}..${hi}`).join(', ');
  return `[no-](${sw}), ${nums}, stall-model=(stall|no-stall|stall-forced)`;
}

/**
 * Architectural dependencies between features (§6.3.1, §6.3.2, §6.3.4, §6.3.6): a feature whose ID
 * field is RES0 unless another feature is present. `needs` says when `member` may be on.
 */
const DEPENDENCIES: readonly { readonly member: keyof SmmuFeatures; readonly needs: (f: SmmuFeatures) => boolean; readonly why: string }[] = [
  { member: 'hyp', needs: (f) => f.s1 && f.s2, why: 'hyp needs s1 and s2 (IDR0.Hyp is RES0 otherwise, §6.3.1)' },
  { member: 'vmw', needs: (f) => f.s2, why: 'vmw needs s2 (§6.3.1)' },
  { member: 'cd2l', needs: (f) => f.s1, why: 'cd2l needs s1 (§6.3.1)' },
  { member: 'pri', needs: (f) => f.ats, why: 'pri needs ats (IDR0.PRI is RES0 when ATS == 0, §6.3.1)' },
  { member: 'dpt', needs: (f) => f.ats, why: 'dpt needs ats (§6.3.4)' },
  { member: 'ds', needs: (f) => (f.gran4k || f.gran16k) && f.vax >= 1, why: 'ds needs gran4k or gran16k, and vax=1 (§6.3.6)' },
  { member: 'ecmdq', needs: (f) => f.msi && f.coherent, why: 'ecmdq needs msi and coherent (§6.3.2)' },
];

/**
 * Parse a comma-separated feature list such as `no-s1,no-ril,sidsize=8` on top of `base`.
 * Turning a feature off also turns off the features that architecturally depend on it (no-s1
 * removes hyp and cd2l) unless the same list asks for them explicitly, which is then an error.
 * Throws an Error naming the first word it does not understand.
 */
export function parseFeatures(text: string, base: SmmuFeatures = FULL_FEATURES): SmmuFeatures {
  const out: Record<string, unknown> = { ...base };
  const explicit = new Set<string>();
  for (const raw of text.split(',')) {
    const word = raw.trim().toLowerCase();
    if (word === '') continue;
    const eq = word.indexOf('=');
    if (eq >= 0) {
      const key = word.slice(0, eq);
      const val = word.slice(eq + 1);
      if (key === 'stall-model') {
        const m = STALL_WORDS[val];
        if (m === undefined) throw new Error(`feature stall-model=${val}: expected stall, no-stall or stall-forced`);
        out.stallModel = m;
        continue;
      }
      const spec = NUMBERS.find(([w]) => w === key);
      if (spec === undefined) throw new Error(`unknown feature setting '${key}' (known: ${featureSyntax()})`);
      const n = /^\d+$/.test(val) ? Number(val) : Number.NaN;
      if (!Number.isInteger(n) || n < spec[2] || n > spec[3]) {
        throw new Error(`feature ${key}=${val}: expected an integer in ${spec[2]}..${spec[3]}`);
      }
      out[spec[1]] = n;
      explicit.add(spec[1]);
      continue;
    }
    const on = !word.startsWith('no-');
    const name = on ? word : word.slice(3);
    const member = (Object.keys(SWITCHES) as (keyof typeof SWITCHES)[]).find((k) => SWITCHES[k] === name);
    if (member === undefined) throw new Error(`unknown feature '${word}' (known: ${featureSyntax()})`);
    out[member] = on;
    explicit.add(member);
  }
  const f = out as unknown as Record<keyof SmmuFeatures, unknown> & SmmuFeatures;
  for (const d of DEPENDENCIES) {
    if (f[d.member] === true && !d.needs(f) && !explicit.has(d.member)) (out as Record<string, unknown>)[d.member] = false;
  }
  if (!f.ecmdq && !explicit.has('ecmdqLog2NumP')) out.ecmdqLog2NumP = 0;
  if (!f.ecmdq && !explicit.has('ecmdqLog2NumQ')) out.ecmdqLog2NumQ = 0;
  if (f.sidSize >= 7 && !f.stLevel2 && !explicit.has('sidSize')) out.sidSize = 6;
  return validateFeatures(out as unknown as SmmuFeatures);
}

/** Every architectural inconsistency in a features object (empty when consistent). */
export function featureProblems(f: SmmuFeatures): string[] {
  const problems: string[] = [];
  if (!f.s1 && !f.s2) problems.push('at least one of s1 and s2 must be implemented (IDR0.S1P/S2P)');
  for (const d of DEPENDENCIES) if (f[d.member] === true && !d.needs(f)) problems.push(d.why);
  if (f.sidSize >= 7 && !f.stLevel2) problems.push('sidsize >= 7 needs 2-level stream tables (IDR1.SIDSIZE, §6.3.2)');
  if (!f.gran4k && !f.gran16k && !f.gran64k) problems.push('at least one translation granule is needed');
  if (f.vax >= 1 && !(f.gran64k || (f.ds && (f.gran4k || f.gran16k)))) problems.push('vax=1 needs gran64k, or ds with gran4k or gran16k (§6.3.6)');
  if (f.oas === 6 && !(f.gran64k || f.ds)) problems.push('oas=6 (52 bits) needs gran64k or ds (§6.3.6)');
  if (f.archMinor === 0 && (f.oas === 6 || f.vax !== 0)) problems.push('SMMUv3.0 (arch=0) has no 52-bit OAS or VA (§6.3.6)');
  if (!f.ecmdq && (f.ecmdqLog2NumP !== 0 || f.ecmdqLog2NumQ !== 0)) problems.push('ECMDQ geometry must be 0 without ecmdq (IDR6 is RES0, §6.3.45)');
  return problems;
}

/** Return the features, or throw an Error listing every architectural inconsistency. */
export function validateFeatures(f: SmmuFeatures): SmmuFeatures {
  const problems = featureProblems(f);
  if (problems.length > 0) throw new Error(`inconsistent features: ${problems.join('; ')}`);
  return f;
}

/** Number of ECMDQs the features describe (0 without ECMDQ). */
export function ecmdqCount(f: SmmuFeatures): number {
  return f.ecmdq ? 1 << (f.ecmdqLog2NumP + f.ecmdqLog2NumQ) : 0;
}

/** IDR0.STALL_MODEL encoding of a stall model. */
export function stallModelCode(m: StallModel): number {
  return m === 'stall-and-terminate' ? 0 : m === 'no-stall' ? 1 : 2;
}

/** OAS encodings to bits (IDR5.OAS, §6.3.6). */
export const OAS_BITS: readonly number[] = [32, 36, 40, 42, 44, 48, 52];
