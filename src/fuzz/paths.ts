/**
 * The command paths the fuzzer can drive. A path names where commands enter the SMMU: the
 * native Command queue, the Enhanced Command queues, and, with a guest in a VM (checked by
 * vm-harness.ts), a guest's queue trapped by its VMM, the host kernel's queue behind iommufd and
 * a virtual CMDQ. Each available path says how
 * many queues a scenario configures and which feature sets it cycles through. No fast-check
 * here, so the CLI can refuse a path before loading the fuzzing machinery.
 */

import type { SmmuFeatures } from '../spec/features.ts';
import type { PathShape } from './generators.ts';

export interface FuzzPath {
  readonly name: string;
  readonly summary: string;
  /** Undefined when the path exists; otherwise why it cannot be fuzzed yet. */
  readonly unavailable?: string;
  readonly shape: PathShape;
  /** Feature lists (`--features` syntax) a campaign cycles through unless --features is given. */
  readonly presets: readonly string[];
  /** A reason the features cannot serve the path, or undefined. */
  readonly needs?: (f: SmmuFeatures) => string | undefined;
  /**
   * Set on the virtualization paths: a guest's commands on this VM path go through its VMM (or
   * its CMDQV), checked for isolation and the guest's error contract (vm-harness.ts) instead of
   * the ring oracle. They run with the default features only.
   */
  readonly vm?: 'trap' | 'kernel-queue' | 'vcmdq';
}

/**
 * Reduced SMMUs worth fuzzing: small identifiers and queues, a 32-bit OAS (MSIAddress
 * truncation), no range invalidation, no ATS/PRI; and one without MSIs or stage 2, with RES0
 * checks off (the other behaviour §4.1.5 permits).
 */
export const FEATURE_PRESETS = Object.freeze({
  full: '',
  small: 'no-ril,sidsize=8,ssidsize=0,no-vmid16,no-asid16,oas=0,no-ds,vax=0,no-ats,no-hyp,no-mpam,cmdqs=5,eventqs=2,no-sev,ecmdq-log2numq=1',
  plain: 'no-msi,no-s2,no-res0check,sidsize=16,ssidsize=5,stall-model=no-stall,no-pri',
});

export const PATHS: Readonly<Record<string, FuzzPath>> = Object.freeze({
  native: {
    name: 'native',
    summary: 'the Command queue (SMMU_CMDQ_*), written directly by a hostile driver',
    shape: { ecmdqs: { min: 0, max: 0 } },
    presets: [FEATURE_PRESETS.full, FEATURE_PRESETS.small, FEATURE_PRESETS.plain],
  },
  ecmdq: {
    name: 'ecmdq',
    summary: 'Enhanced Command queues (SMMUv3.3, SMMU_ECMDQ_*) beside the Command queue',
    shape: { ecmdqs: { min: 1, max: 3 } },
    presets: [FEATURE_PRESETS.full, FEATURE_PRESETS.small],
    needs: (f) => (f.ecmdq ? undefined : 'the features have no ECMDQs (IDR1.ECMDQ == 0)'),
  },
  trap: {
    name: 'trap',
    summary: "a guest's Command queue trapped and emulated by the VMM",
    vm: 'trap',
    shape: { ecmdqs: { min: 0, max: 0 } },
    presets: [FEATURE_PRESETS.full],
  },
  'kernel-queue': {
    name: 'kernel-queue',
    summary: "the host kernel's shared Command queue (iommufd invalidation forwarding)",
    vm: 'kernel-queue',
    shape: { ecmdqs: { min: 0, max: 0 } },
    presets: [FEATURE_PRESETS.full],
  },
  vcmdq: {
    name: 'vcmdq',
    summary: 'a virtual Command queue assigned to a guest (Tegra241 CMDQV)',
    vm: 'vcmdq',
    shape: { ecmdqs: { min: 0, max: 0 } },
    presets: [FEATURE_PRESETS.full],
  },
});

export const PATH_NAMES: readonly string[] = Object.keys(PATHS);

/** The paths that can be fuzzed today. */
export function availablePaths(): FuzzPath[] {
  return Object.values(PATHS).filter((p) => p.unavailable === undefined);
}
