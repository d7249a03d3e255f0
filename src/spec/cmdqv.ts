/**
 * NVIDIA Tegra241 (Grace) CMDQV register map: the global config page, the VINTF register blocks,
 * the VCMDQ page 0 (control and status) and page 1 (base) registers, and the direct and per-VINTF
 * logical apertures they appear in (shared/reference/viommu.md §4.1).
 *
 * There is no public hardware specification. Every offset and field here comes from one of two
 * code sources, both written by NVIDIA engineers and read for facts only:
 *   [TEG]  Linux drivers/iommu/arm/arm-smmu-v3/tegra241-cmdqv.c (the TEGRA241_* defines);
 *   [QEMU] qemu hw/arm/tegra241-cmdqv.h (REG32/FIELD definitions of the guest model).
 * A position that [TEG] defines is taken as confirmed. A position only [QEMU] defines, or one the
 * model had to choose, is listed in the register's `unverified` member (as viommu.md marks
 * them), with the reason in `doc`. The register names are [TEG]'s without the TEGRA241_ prefix;
 * [QEMU]'s names are in `qemu`.
 *
 * Geometry (viommu.md §4.1):
 *   0x00000                     global config page (64 KiB); VINTF(v) blocks at 0x1000 + 0x100·v
 *   0x10000 + 0x80·q            VCMDQ q page 0, "direct" aperture, by global VCMDQ index
 *   0x20000 + 0x80·q            VCMDQ q page 1, direct aperture
 *   0x30000 + 0x20000·v + 0x80·l  VINTF v page 0: the page-0 registers of its logical VCMDQ l
 *   0x40000 + 0x20000·v + 0x80·l  VINTF v page 1
 * A global VCMDQ q allocated to VINTF v as logical VCMDQ l (CMDQ_ALLOC(q)) is visible at both its
 * direct slot and the logical slot: hardware aliases.
 *
 * Data and pure functions only.
 */

import { lowMask, type Field } from './bits.ts';
import { field, type NamedField } from './bits.ts';

// ---------------------------------------------------------------------------------------------
// Geometry
// ---------------------------------------------------------------------------------------------

/** Every CMDQV page is 64 KiB ([TEG] TEGRA241_CMDQV_CONFIG_SIZE). */
export const CMDQV_PAGE_SIZE = 0x1_0000;
/** The global config page ([TEG] TEGRA241_CMDQV_CONFIG_BASE). */
export const CMDQV_CONFIG_BASE = 0x0_0000;
/** Direct VCMDQ page 0 aperture ([TEG] TEGRA241_VCMDQ_PAGE0_BASE). */
export const VCMDQ_PAGE0_BASE = 0x1_0000;
/** Direct VCMDQ page 1 aperture ([TEG] TEGRA241_VCMDQ_PAGE1_BASE). */
export const VCMDQ_PAGE1_BASE = 0x2_0000;
/** VINTF 0 page 0 ([TEG] TEGRA241_VINTF_PAGE_BASE). */
export const VINTF_PAGE_BASE = 0x3_0000;
/** Each VINTF has a page 0 and a page 1: 128 KiB ([TEG] SZ_128K in TEGRA241_VINTFi_PAGE0). */
export const VINTF_PAGE_STRIDE = 0x2_0000;
/** A VINTF's page 1 follows its page 0 ([TEG] TEGRA241_VINTFi_PAGE1). */
export const VINTF_PAGE1_OFFSET = 0x1_0000;
/** Bytes per VCMDQ slot in every page-0/page-1 aperture ([TEG] 0x80*(q)). */
export const VCMDQ_STRIDE = 0x80;
/** VINTF(v) register block in the global page ([TEG] TEGRA241_VINTF(v)). */
export const VINTF_BLOCK_BASE = 0x1000;
export const VINTF_BLOCK_STRIDE = 0x100;

/**
 * Field-width limits: CMDQ_ALLOC.VINTF is 6 bits, CMDQ_ALLOC.LVCMDQ 7 bits and CMDQ_ERR_MAP 128
 * bits ([TEG]); SID_MATCH(s) at 0x40 + 4s must stay below SID_REPLACE at 0x80, so at most 16
 * slots. The real part's numbers are UNVERIFIED (viommu.md §4.1).
 */
export const CMDQV_MAX_VINTFS_LOG2 = 6;
export const CMDQV_MAX_VCMDQS_LOG2 = 7;
export const CMDQV_MAX_SIDS_LOG2 = 4;

/** CMDQV_PARAM as the model presents it: log2 counts (viommu.md §4.1). */
export interface CmdqvGeometry {
  /** PARAM.VER. */
  readonly version: number;
  /** PARAM.NUM_VINTF_LOG2. */
  readonly numVintfsLog2: number;
  /** PARAM.NUM_VCMDQ_LOG2: VCMDQs in total. */
  readonly numVcmdqsLog2: number;
  /** PARAM.NUM_SID_PER_VM_LOG2: SID_MATCH/SID_REPLACE pairs per VINTF. */
  readonly numSidsLog2: number;
}

/** Counts derived from a geometry, as the Linux driver derives them from PARAM ([TEG] probe). */
export interface CmdqvCounts {
  readonly numVintfs: number;
  readonly numVcmdqs: number;
  /** numVcmdqs / numVintfs ([TEG] num_lvcmdqs_per_vintf). */
  readonly lvcmdqsPerVintf: number;
  readonly numSids: number;
}

/** Why a geometry is impossible, or undefined. */
export function cmdqvGeometryError(g: CmdqvGeometry): string | undefined {
  const int = (n: number, lo: number, hi: number) => Number.isInteger(n) && n >= lo && n <= hi;
  if (!int(g.version, 0, 15)) return `CMDQV version ${g.version} must be an integer in 0..15 (PARAM.VER is 4 bits)`;
  if (!int(g.numVintfsLog2, 0, CMDQV_MAX_VINTFS_LOG2)) return `numVintfsLog2 ${g.numVintfsLog2} must be an integer in 0..${CMDQV_MAX_VINTFS_LOG2}`;
  if (!int(g.numVcmdqsLog2, 0, CMDQV_MAX_VCMDQS_LOG2)) return `numVcmdqsLog2 ${g.numVcmdqsLog2} must be an integer in 0..${CMDQV_MAX_VCMDQS_LOG2}`;
  if (g.numVcmdqsLog2 < g.numVintfsLog2) return `numVcmdqsLog2 ${g.numVcmdqsLog2} < numVintfsLog2 ${g.numVintfsLog2}: every VINTF needs at least one VCMDQ`;
  if (!int(g.numSidsLog2, 0, CMDQV_MAX_SIDS_LOG2)) return `numSidsLog2 ${g.numSidsLog2} must be an integer in 0..${CMDQV_MAX_SIDS_LOG2}`;
  return undefined;
}

export function cmdqvCounts(g: CmdqvGeometry): CmdqvCounts {
  const numVintfs = 1 << g.numVintfsLog2;
  const numVcmdqs = 1 << g.numVcmdqsLog2;
  return { numVintfs, numVcmdqs, lvcmdqsPerVintf: numVcmdqs / numVintfs, numSids: 1 << g.numSidsLog2 };
}

/** Bytes of register space: the global page, both direct apertures, two pages per VINTF. */
export function cmdqvWindowBytes(numVintfs: number): number {
  return VINTF_PAGE_BASE + VINTF_PAGE_STRIDE * numVintfs;
}

/** Offset of VCMDQ q's page-0 slot in the direct aperture. */
export function vcmdqPage0(q: number): number {
  return VCMDQ_PAGE0_BASE + VCMDQ_STRIDE * q;
}

/** Offset of VCMDQ q's page-1 slot in the direct aperture. */
export function vcmdqPage1(q: number): number {
  return VCMDQ_PAGE1_BASE + VCMDQ_STRIDE * q;
}

/** Offset of VINTF v's page 0 ([TEG] TEGRA241_VINTFi_PAGE0). */
export function vintfPage0(v: number): number {
  return VINTF_PAGE_BASE + VINTF_PAGE_STRIDE * v;
}

/** Offset of VINTF v's logical VCMDQ l, page 0 ([TEG] TEGRA241_VINTFi_LVCMDQ_PAGE0). */
export function lvcmdqPage0(v: number, l: number): number {
  return vintfPage0(v) + VCMDQ_STRIDE * l;
}

/** Offset of VINTF v's logical VCMDQ l, page 1 ([TEG] TEGRA241_VINTFi_LVCMDQ_PAGE1). */
export function lvcmdqPage1(v: number, l: number): number {
  return vintfPage0(v) + VINTF_PAGE1_OFFSET + VCMDQ_STRIDE * l;
}

/** Offset of the VINTF(v) block in the global page. */
export function vintfBlock(v: number): number {
  return VINTF_BLOCK_BASE + VINTF_BLOCK_STRIDE * v;
}

/** The global VCMDQ the host kernel gives VINTF v as logical VCMDQ l ([TEG]: v · per-VINTF + l). */
export function globalVcmdq(v: number, l: number, lvcmdqsPerVintf: number): number {
  return v * lvcmdqsPerVintf + l;
}

// ---------------------------------------------------------------------------------------------
// Register table
// ---------------------------------------------------------------------------------------------

/** Where a register's `offset` counts from. */
export type CmdqvBlock =
  /** From the window base (the global config page). */
  | 'global'
  /** From VINTF(v)'s block, vintfBlock(v). */
  | 'vintf'
  /** From a VCMDQ's page-0 slot (vcmdqPage0(q) or lvcmdqPage0(v, l)). */
  | 'page0'
  /** From a VCMDQ's page-1 slot. */
  | 'page1';

export interface CmdqvRegisterSpec {
  /** [TEG]'s name without the TEGRA241_ prefix. */
  readonly name: string;
  readonly block: CmdqvBlock;
  readonly offset: number;
  readonly width: 32 | 64;
  readonly access: 'RO' | 'RW';
  /** The value the model loads at reset (no source gives reset values: model choice). */
  readonly reset: number;
  readonly fields: readonly Field[];
  /** Indexed registers: the largest index count the layout allows, and the byte stride. */
  readonly count?: number;
  readonly stride?: number;
  /** viommu.md section. */
  readonly section: string;
  /** Field names (or 'offset') whose position [TEG] does not give: [QEMU]-only, or the model's. */
  readonly unverified?: readonly string[];
  /** [QEMU]'s name. */
  readonly qemu?: string;
  readonly doc?: string;
}

export interface CmdqvReg<N extends string = string, K extends string = string> extends CmdqvRegisterSpec {
  readonly name: N;
  readonly fields: readonly NamedField<K>[];
  readonly f: { readonly [P in K]: NamedField<P> };
}

/** A field of bits [hi:lo] (bits.ts `field`). */
const fd = field;

interface CmdqvRegInput<N extends string, F extends readonly Field[]> extends Omit<CmdqvRegisterSpec, 'name' | 'fields'> {
  readonly name: N;
  readonly fields: F;
}

function creg<const N extends string, const F extends readonly NamedField<string>[]>(s: CmdqvRegInput<N, F>): CmdqvReg<N, F[number]['name']> {
  const f = Object.freeze(Object.fromEntries(s.fields.map((x) => [x.name, x])));
  return Object.freeze({ ...s, fields: Object.freeze([...s.fields]), f }) as unknown as CmdqvReg<N, F[number]['name']>;
}

const S41 = 'viommu.md §4.1';

/** VCMDQ_CONS.ERR and VCMDQ_GERROR bit names, shared by GERROR and GERRORN. */
function vcmdqGerrorFields() {
  return [
    fd('CMDQ_INIT_ERR', 2, 2, { doc: 'The queue could not be enabled (model: EN written while not allocated to an enabled VINTF)' }),
    fd('CONS_DRAM_WR_ABT_ERR', 1, 1, { doc: 'Consumer-index write-back to DRAM aborted (not modelled: CONS_DRAM_EN is never acted on)' }),
    fd('CMDQ_ERR', 0, 0, { doc: 'Command error; the reason is in VCMDQ_CONS.ERR (viommu.md §4.7)' }),
  ] as const;
}

/** The VCMDQ_CONS.ERR codes ([QEMU] V_VCMDQ_CONS_INDX_ERR_CERROR_*; viommu.md §4.1). */
export const VCMDQ_ERR = Object.freeze({
  NONE: 0,
  ILL_OPCODE: 1,
  ABT: 2,
  ATC_INV_SYNC: 3,
  /** Tegra-specific: not an SMMU CERROR code. */
  ILL_ACCESS: 4,
} as const);

export const VCMDQ_ERR_NAMES: Readonly<Record<number, string>> = Object.freeze({
  [VCMDQ_ERR.NONE]: 'CERROR_NONE',
  [VCMDQ_ERR.ILL_OPCODE]: 'CERROR_ILL_OPCODE',
  [VCMDQ_ERR.ABT]: 'CERROR_ABT',
  [VCMDQ_ERR.ATC_INV_SYNC]: 'CERROR_ATC_INV_SYNC',
  [VCMDQ_ERR.ILL_ACCESS]: 'CERROR_ILL_ACCESS',
});

/** The name of a VCMDQ_CONS.ERR value; codes no source defines print as Reserved(0xNN). */
export function vcmdqErrName(code: number): string {
  return VCMDQ_ERR_NAMES[code] ?? `Reserved(0x${code.toString(16)})`;
}

/** VINTF_STATUS.STATUS values ([QEMU] V_VINTF_STATUS_*). */
export const VINTF_STATUS_CODE = Object.freeze({ NO_ERROR: 0, VCMDQ_ERROR: 1 } as const);

// Global config page ----------------------------------------------------------------------------

const CMDQV_CONFIG = creg({
  name: 'CMDQV_CONFIG', block: 'global', offset: 0x000, width: 32, access: 'RW', reset: 0, section: S41, qemu: 'CONFIG',
  doc: 'CMDQV enable; the other fields are [QEMU] names the model stores without acting on them',
  unverified: ['CMDQV_PER_CMD_OFFSET', 'CMDQ_MAX_CLK_BATCH', 'CMDQ_MAX_CMD_BATCH', 'CONS_DRAM_EN'],
  fields: [
    fd('CONS_DRAM_EN', 20, 20, { doc: 'Write CONS back to VCMDQ_CONS_INDX_BASE ([QEMU] only; not acted on)' }),
    fd('CMDQ_MAX_CMD_BATCH', 19, 12, { doc: '[QEMU] only; stored, no effect' }),
    fd('CMDQ_MAX_CLK_BATCH', 11, 4, { doc: '[QEMU] only; stored, no effect' }),
    fd('CMDQV_PER_CMD_OFFSET', 3, 1, { doc: '[QEMU] only; stored, no effect' }),
    fd('CMDQV_EN', 0, 0),
  ],
});

const CMDQV_PARAM = creg({
  name: 'CMDQV_PARAM', block: 'global', offset: 0x004, width: 32, access: 'RO', reset: 0, section: S41, qemu: 'PARAM',
  doc: 'Geometry; the model presents its configuration here (cmdqvParamValue)',
  fields: [
    fd('CMDQV_NUM_SID_PER_VM_LOG2', 15, 12, { doc: '[QEMU] name: CMDQV_NUM_SID_PER_VI_LOG2' }),
    fd('CMDQV_NUM_VINTF_LOG2', 11, 8, { doc: '[QEMU] name: CMDQV_NUM_VI_LOG2' }),
    fd('CMDQV_NUM_VCMDQ_LOG2', 7, 4, { doc: '[QEMU] name: CMDQV_NUM_CMDQ_LOG2' }),
    fd('CMDQV_VER', 3, 0),
  ],
});

const CMDQV_STATUS = creg({
  name: 'CMDQV_STATUS', block: 'global', offset: 0x008, width: 32, access: 'RO', reset: 0, section: S41, qemu: 'STATUS',
  fields: [fd('CMDQV_ENABLED', 0, 0)],
});

const CMDQV_VINTF_ERR_MAP = creg({
  name: 'CMDQV_VINTF_ERR_MAP', block: 'global', offset: 0x014, width: 32, access: 'RO', reset: 0, count: 2, stride: 4, section: S41,
  qemu: 'VI_ERR_MAP_0/1',
  doc: 'Bit v of the 64-bit map (word v >> 5) = VINTF v has an LVCMDQ in error; [TEG] reads it as two 32-bit words (not 64-bit aligned)',
  fields: [fd('MAP', 31, 0)],
});

const CMDQV_VINTF_INT_MASK = creg({
  name: 'CMDQV_VINTF_INT_MASK', block: 'global', offset: 0x01c, width: 32, access: 'RW', reset: 0, count: 2, stride: 4, section: S41,
  qemu: 'VI_INT_MASK_0/1', unverified: ['MAP'],
  doc: 'Bit v = 1 masks the CMDQV interrupt for VINTF v ([QEMU]: VI_INT_MASK_MASKED = 1); [TEG] defines only the offset',
  fields: [fd('MAP', 31, 0)],
});

const CMDQV_CMDQ_ERR_MAP = creg({
  name: 'CMDQV_CMDQ_ERR_MAP', block: 'global', offset: 0x024, width: 32, access: 'RO', reset: 0, count: 4, stride: 4, section: S41,
  qemu: 'CMDQ_ERR_MAP_0..3', doc: 'Bit q of the 128-bit map (word q >> 5) = global VCMDQ q is in error',
  fields: [fd('MAP', 31, 0)],
});

const CMDQV_CMDQ_ALLOC = creg({
  name: 'CMDQV_CMDQ_ALLOC', block: 'global', offset: 0x200, width: 32, access: 'RW', reset: 0, count: 1 << CMDQV_MAX_VCMDQS_LOG2, stride: 4,
  section: S41, qemu: 'CMDQ_ALLOC_MAP_<q>',
  doc: 'Global VCMDQ q belongs to VINTF VINTF as its logical VCMDQ LVCMDQ while CMDQ_ALLOCATED is 1',
  fields: [
    fd('CMDQ_ALLOC_VINTF', 20, 15, { doc: '[QEMU] name: VIRT_INTF_INDX' }),
    fd('CMDQ_ALLOC_LVCMDQ', 7, 1, { doc: '[QEMU] name: LVCMDQ' }),
    fd('CMDQ_ALLOCATED', 0, 0, { doc: '[QEMU] name: ALLOC' }),
  ],
});

/** The model's wired CMDQV interrupt line, in an offset no source uses (see the register's doc). */
export const CMDQV_SIM_IRQ_OFFSET = 0xff00;

const CMDQV_SIM_IRQ = creg({
  name: 'CMDQV_SIM_IRQ', block: 'global', offset: CMDQV_SIM_IRQ_OFFSET, width: 32, access: 'RO', reset: 0, section: '§4.7 (viommu.md)',
  unverified: ['offset', 'COUNT'],
  doc: "Model only: the CMDQV interrupt line as an assertion count (the board has no wired line for it yet); bumped and notified each time the CMDQV raises its interrupt. A virtual CMDQV uses the same word for the guest's line",
  fields: [fd('COUNT', 31, 0)],
});

// VINTF(v) block -------------------------------------------------------------------------------

const VINTF_CONFIG = creg({
  name: 'VINTF_CONFIG', block: 'vintf', offset: 0x00, width: 32, access: 'RW', reset: 0, section: S41, qemu: 'VINTF0_CONFIG',
  doc: 'HYP_OWN = 0: a guest-owned VINTF (restricted commands, VMID and StreamID substitution, viommu.md §4.4-4.5)',
  fields: [
    fd('HYP_OWN', 17, 17),
    fd('VMID', 16, 1),
    fd('EN', 0, 0, { doc: '[QEMU] name: ENABLE' }),
  ],
});

const VINTF_STATUS = creg({
  name: 'VINTF_STATUS', block: 'vintf', offset: 0x04, width: 32, access: 'RO', reset: 0, section: S41, qemu: 'VINTF0_STATUS',
  unverified: ['VI_NUM_LVCMDQ'],
  doc: 'STATUS 1 = an LVCMDQ of this VINTF is in error ([QEMU] V_VINTF_STATUS_VCMDQ_ERROR); VI_NUM_LVCMDQ is [QEMU]-only and the model shows the LVCMDQs allocated to the VINTF',
  fields: [
    fd('VI_NUM_LVCMDQ', 23, 16),
    fd('STATUS', 3, 1),
    fd('ENABLED', 0, 0, { doc: '[QEMU] name: ENABLE_OK' }),
  ],
});

const VINTF_SID_MATCH = creg({
  name: 'VINTF_SID_MATCH', block: 'vintf', offset: 0x40, width: 32, access: 'RW', reset: 0, count: 1 << CMDQV_MAX_SIDS_LOG2, stride: 4,
  section: '§4.4 (viommu.md)', qemu: 'VINTF0_SID_MATCH_<s>', unverified: ['VIRT_SID'],
  doc: '[TEG] writes (vSID << 1) | 1; the 20-bit width of VIRT_SID is [QEMU]\'s',
  fields: [fd('VIRT_SID', 20, 1), fd('ENABLE', 0, 0)],
});

const VINTF_SID_REPLACE = creg({
  name: 'VINTF_SID_REPLACE', block: 'vintf', offset: 0x80, width: 32, access: 'RW', reset: 0, count: 1 << CMDQV_MAX_SIDS_LOG2, stride: 4,
  section: '§4.4 (viommu.md)', qemu: 'VINTF0_SID_REPLACE_<s>', unverified: ['PHYS_SID'],
  doc: '[TEG] writes the physical StreamID; the 20-bit field is [QEMU]\'s',
  fields: [fd('PHYS_SID', 19, 0)],
});

const VINTF_LVCMDQ_ERR_MAP_64 = creg({
  name: 'VINTF_LVCMDQ_ERR_MAP_64', block: 'vintf', offset: 0xc0, width: 64, access: 'RO', reset: 0, count: 2, stride: 8, section: S41,
  qemu: 'VINTF0_LVCMDQ_ERR_MAP_0..3 (as four 32-bit words)',
  doc: 'Bit l of the 128-bit map = logical VCMDQ l of this VINTF is in error',
  fields: [fd('MAP', 63, 0)],
});

// VCMDQ page 0 ---------------------------------------------------------------------------------

const VCMDQ_CONS = creg({
  name: 'VCMDQ_CONS', block: 'page0', offset: 0x00, width: 32, access: 'RW', reset: 0, section: S41, qemu: 'VCMDQ<q>_CONS_INDX',
  unverified: ['RD'],
  doc: 'As SMMU_CMDQ_CONS (§6.3.28): RD is index and wrap; writable while the queue is disabled. RD\'s [19:0] is [QEMU]\'s (Linux uses the generic queue macros)',
  fields: [
    fd('ERR', 30, 24, { values: VCMDQ_ERR_NAMES }),
    fd('RD', 19, 0),
  ],
});

const VCMDQ_PROD = creg({
  name: 'VCMDQ_PROD', block: 'page0', offset: 0x04, width: 32, access: 'RW', reset: 0, section: S41, qemu: 'VCMDQ<q>_PROD_INDX',
  unverified: ['WR'],
  doc: 'The doorbell, as SMMU_CMDQ_PROD (§6.3.27). WR [19:0] is [QEMU]\'s',
  fields: [fd('WR', 19, 0)],
});

const VCMDQ_CONFIG = creg({
  name: 'VCMDQ_CONFIG', block: 'page0', offset: 0x08, width: 32, access: 'RW', reset: 0, section: S41, qemu: 'VCMDQ<q>_CONFIG',
  fields: [fd('EN', 0, 0, { doc: '[QEMU] name: CMDQ_EN' })],
});

const VCMDQ_STATUS = creg({
  name: 'VCMDQ_STATUS', block: 'page0', offset: 0x0c, width: 32, access: 'RO', reset: 0, section: S41, qemu: 'VCMDQ<q>_STATUS',
  fields: [fd('ENABLED', 0, 0, { doc: '[QEMU] name: CMDQ_EN_OK' })],
});

const VCMDQ_GERROR = creg({
  name: 'VCMDQ_GERROR', block: 'page0', offset: 0x10, width: 32, access: 'RO', reset: 0, section: '§4.7 (viommu.md)', qemu: 'VCMDQ<q>_GERROR',
  unverified: ['CMDQ_ERR', 'CONS_DRAM_WR_ABT_ERR', 'CMDQ_INIT_ERR'],
  doc: 'An error is active while its bit differs from VCMDQ_GERRORN (toggle semantics as SMMU_GERROR, §6.3.19). Bit names and positions are [QEMU]\'s',
  fields: vcmdqGerrorFields(),
});

const VCMDQ_GERRORN = creg({
  name: 'VCMDQ_GERRORN', block: 'page0', offset: 0x14, width: 32, access: 'RW', reset: 0, section: '§4.7 (viommu.md)', qemu: 'VCMDQ<q>_GERRORN',
  unverified: ['CMDQ_ERR', 'CONS_DRAM_WR_ABT_ERR', 'CMDQ_INIT_ERR'],
  doc: 'Software acknowledges by writing GERRORN := GERROR; acknowledging CMDQ_ERR resumes the queue',
  fields: vcmdqGerrorFields(),
});

// VCMDQ page 1 ---------------------------------------------------------------------------------

const VCMDQ_BASE = creg({
  name: 'VCMDQ_BASE', block: 'page1', offset: 0x00, width: 64, access: 'RW', reset: 0, section: S41, qemu: 'VCMDQ<q>_BASE_L/_H',
  doc: 'Queue base PA and log2(entries) of 16 bytes. The model ignores writes while the queue is enabled (as SMMU_CMDQ_BASE, §6.3.26)',
  fields: [
    fd('ADDR', 47, 5, { shift: 5 }),
    fd('LOG2SIZE', 4, 0),
  ],
});

const VCMDQ_CONS_INDX_BASE = creg({
  name: 'VCMDQ_CONS_INDX_BASE', block: 'page1', offset: 0x08, width: 64, access: 'RW', reset: 0, section: S41,
  qemu: 'VCMDQ<q>_CONS_INDX_BASE_DRAM_L/_H', unverified: ['ADDR'],
  doc: 'DRAM address for CONS write-back; stored, never written to (CONS_DRAM_EN is not modelled). ADDR [47:0] is [QEMU]\'s',
  fields: [fd('ADDR', 47, 0)],
});

/** Every CMDQV register, by name. */
export const CMDQV_REG = Object.freeze({
  CMDQV_CONFIG,
  CMDQV_PARAM,
  CMDQV_STATUS,
  CMDQV_VINTF_ERR_MAP,
  CMDQV_VINTF_INT_MASK,
  CMDQV_CMDQ_ERR_MAP,
  CMDQV_CMDQ_ALLOC,
  CMDQV_SIM_IRQ,
  VINTF_CONFIG,
  VINTF_STATUS,
  VINTF_SID_MATCH,
  VINTF_SID_REPLACE,
  VINTF_LVCMDQ_ERR_MAP_64,
  VCMDQ_CONS,
  VCMDQ_PROD,
  VCMDQ_CONFIG,
  VCMDQ_STATUS,
  VCMDQ_GERROR,
  VCMDQ_GERRORN,
  VCMDQ_BASE,
  VCMDQ_CONS_INDX_BASE,
});

export const CMDQV_REGISTERS: readonly CmdqvRegisterSpec[] = Object.freeze(Object.values(CMDQV_REG));

// ---------------------------------------------------------------------------------------------
// Values and addresses
// ---------------------------------------------------------------------------------------------

/** A field of a 32-bit register value (or of one 32-bit half of a 64-bit one). */
export function cget(v: number, f: Field): number {
  return ((v >>> (f.lsb & 31)) & lowMask(f.width)) >>> 0;
}

/** `v` with field `f` replaced by `x` (stored bits, no shift). */
export function cset(v: number, f: Field, x: number): number {
  const s = f.lsb & 31;
  const m = (lowMask(f.width) << s) >>> 0;
  return ((v & ~m) | ((x << s) & m)) >>> 0;
}

/** Mask of the bits a register's fields define in the 32-bit half `half` (0 or 1). */
export function cmdqvWritableMask(spec: CmdqvRegisterSpec, half = 0): number {
  let m = 0;
  for (const f of spec.fields) {
    for (let b = f.lsb; b < f.lsb + f.width; b++) if (b >>> 5 === half) m |= 1 << (b & 31);
  }
  return m >>> 0;
}

/** The CMDQV_PARAM value for a geometry. */
export function cmdqvParamValue(g: CmdqvGeometry): number {
  const f = CMDQV_PARAM.f;
  let v = 0;
  v = cset(v, f.CMDQV_VER, g.version);
  v = cset(v, f.CMDQV_NUM_VCMDQ_LOG2, g.numVcmdqsLog2);
  v = cset(v, f.CMDQV_NUM_VINTF_LOG2, g.numVintfsLog2);
  v = cset(v, f.CMDQV_NUM_SID_PER_VM_LOG2, g.numSidsLog2);
  return v;
}

/** The geometry a CMDQV_PARAM value announces (what a driver's probe reads). */
export function cmdqvParamDecode(v: number): CmdqvGeometry {
  const f = CMDQV_PARAM.f;
  return {
    version: cget(v, f.CMDQV_VER),
    numVcmdqsLog2: cget(v, f.CMDQV_NUM_VCMDQ_LOG2),
    numVintfsLog2: cget(v, f.CMDQV_NUM_VINTF_LOG2),
    numSidsLog2: cget(v, f.CMDQV_NUM_SID_PER_VM_LOG2),
  };
}

/** CMDQV_CMDQ_ALLOC(q) for VCMDQ → (VINTF v, LVCMDQ l), allocated or not. */
export function cmdqAllocValue(v: number, l: number, allocated: boolean): number {
  const f = CMDQV_CMDQ_ALLOC.f;
  return cset(cset(cset(0, f.CMDQ_ALLOC_VINTF, v), f.CMDQ_ALLOC_LVCMDQ, l), f.CMDQ_ALLOCATED, allocated ? 1 : 0);
}

/** SID_MATCH(s) as the host kernel writes it: (vSID << 1) | 1 ([TEG] tegra241_vintf_init_vsid). */
export function sidMatchValue(vsid: number): number {
  const f = VINTF_SID_MATCH.f;
  return cset(cset(0, f.VIRT_SID, vsid), f.ENABLE, 1);
}

/** VINTF_CONFIG for a VMID and owner. */
export function vintfConfigValue(o: { en: boolean; vmid: number; hypOwn: boolean }): number {
  const f = VINTF_CONFIG.f;
  return cset(cset(cset(0, f.EN, o.en ? 1 : 0), f.VMID, o.vmid), f.HYP_OWN, o.hypOwn ? 1 : 0);
}

/** Absolute offset of a global-page register (index for the indexed ones). */
export function cmdqvGlobalOffset(spec: CmdqvRegisterSpec, index = 0): number {
  if (spec.block !== 'global') throw new Error(`${spec.name} is not a global-page register`);
  return spec.offset + indexOffset(spec, index);
}

/** Absolute offset of a VINTF(v) register. */
export function vintfRegOffset(v: number, spec: CmdqvRegisterSpec, index = 0): number {
  if (spec.block !== 'vintf') throw new Error(`${spec.name} is not a VINTF register`);
  return vintfBlock(v) + spec.offset + indexOffset(spec, index);
}

function indexOffset(spec: CmdqvRegisterSpec, index: number): number {
  if (spec.count === undefined) {
    if (index !== 0) throw new RangeError(`${spec.name} is not indexed`);
    return 0;
  }
  if (!Number.isInteger(index) || index < 0 || index >= spec.count) throw new RangeError(`${spec.name}(${index}): index must be in 0..${spec.count - 1}`);
  return index * (spec.stride ?? 0);
}

/** A decoded window offset: which register of which unit. */
export type CmdqvLocation =
  | { readonly kind: 'global'; readonly spec: CmdqvRegisterSpec; readonly index: number; readonly half: number }
  | { readonly kind: 'vintf'; readonly vintf: number; readonly spec: CmdqvRegisterSpec; readonly index: number; readonly half: number }
  /** A page-0/page-1 register through the direct aperture: global VCMDQ `q`. */
  | { readonly kind: 'vcmdq'; readonly q: number; readonly spec: CmdqvRegisterSpec; readonly half: number }
  /** A page-0/page-1 register through VINTF `vintf`'s logical aperture: its LVCMDQ `lvcmdq`. */
  | { readonly kind: 'lvcmdq'; readonly vintf: number; readonly lvcmdq: number; readonly spec: CmdqvRegisterSpec; readonly half: number };

const GLOBAL_SPECS = CMDQV_REGISTERS.filter((r) => r.block === 'global');
const VINTF_SPECS = CMDQV_REGISTERS.filter((r) => r.block === 'vintf');
const PAGE0_SPECS = CMDQV_REGISTERS.filter((r) => r.block === 'page0');
const PAGE1_SPECS = CMDQV_REGISTERS.filter((r) => r.block === 'page1');

function findIn(specs: readonly CmdqvRegisterSpec[], rel: number): { spec: CmdqvRegisterSpec; index: number; half: number } | undefined {
  for (const s of specs) {
    const n = s.count ?? 1;
    const stride = s.stride ?? 0;
    const span = (n - 1) * stride + s.width / 8;
    if (rel < s.offset || rel >= s.offset + span) continue;
    const d = rel - s.offset;
    const index = stride === 0 ? 0 : Math.floor(d / stride);
    const inReg = stride === 0 ? d : d - index * stride;
    if (inReg >= s.width / 8) continue;
    return { spec: s, index, half: inReg >>> 2 };
  }
  return undefined;
}

/**
 * The register at a window offset for a CMDQV of `counts`, or undefined (no register: RES0).
 * Indexed registers beyond the geometry (CMDQ_ALLOC(q) with q ≥ numVcmdqs, a VINTF or a SID slot
 * that does not exist) are undefined too.
 */
export function cmdqvLocate(off: number, counts: CmdqvCounts): CmdqvLocation | undefined {
  if (!Number.isInteger(off) || off < 0 || off >= cmdqvWindowBytes(counts.numVintfs)) return undefined;
  if (off < VCMDQ_PAGE0_BASE) {
    if (off >= VINTF_BLOCK_BASE && off < VINTF_BLOCK_BASE + VINTF_BLOCK_STRIDE * counts.numVintfs) {
      const vintf = Math.floor((off - VINTF_BLOCK_BASE) / VINTF_BLOCK_STRIDE);
      const hit = findIn(VINTF_SPECS, (off - VINTF_BLOCK_BASE) % VINTF_BLOCK_STRIDE);
      if (hit === undefined) return undefined;
      if ((hit.spec === VINTF_SID_MATCH || hit.spec === VINTF_SID_REPLACE) && hit.index >= counts.numSids) return undefined;
      return { kind: 'vintf', vintf, ...hit };
    }
    const hit = findIn(GLOBAL_SPECS, off);
    if (hit === undefined) return undefined;
    if (hit.spec === CMDQV_CMDQ_ALLOC && hit.index >= counts.numVcmdqs) return undefined;
    return { kind: 'global', ...hit };
  }
  if (off < VINTF_PAGE_BASE) {
    const page1 = off >= VCMDQ_PAGE1_BASE;
    const rel = off - (page1 ? VCMDQ_PAGE1_BASE : VCMDQ_PAGE0_BASE);
    const q = Math.floor(rel / VCMDQ_STRIDE);
    if (q >= counts.numVcmdqs) return undefined;
    const hit = findIn(page1 ? PAGE1_SPECS : PAGE0_SPECS, rel % VCMDQ_STRIDE);
    return hit === undefined ? undefined : { kind: 'vcmdq', q, spec: hit.spec, half: hit.half };
  }
  const vrel = off - VINTF_PAGE_BASE;
  const vintf = Math.floor(vrel / VINTF_PAGE_STRIDE);
  const inVintf = vrel % VINTF_PAGE_STRIDE;
  const page1 = inVintf >= VINTF_PAGE1_OFFSET;
  const rel = inVintf - (page1 ? VINTF_PAGE1_OFFSET : 0);
  const lvcmdq = Math.floor(rel / VCMDQ_STRIDE);
  if (lvcmdq >= counts.lvcmdqsPerVintf) return undefined;
  const hit = findIn(page1 ? PAGE1_SPECS : PAGE0_SPECS, rel % VCMDQ_STRIDE);
  return hit === undefined ? undefined : { kind: 'lvcmdq', vintf, lvcmdq, spec: hit.spec, half: hit.half };
}

/** A readable name for a decoded location: `VINTF2_SID_MATCH5`, `VCMDQ3_PROD`, `VINTF1_LVCMDQ0_CONS`. */
export function cmdqvLocationName(loc: CmdqvLocation): string {
  const idx = (spec: CmdqvRegisterSpec, i: number) => (spec.count === undefined ? '' : String(i));
  switch (loc.kind) {
    case 'global':
      return `${loc.spec.name}${idx(loc.spec, loc.index)}`;
    case 'vintf':
      return `VINTF${loc.vintf}_${loc.spec.name.replace(/^VINTF_/, '')}${idx(loc.spec, loc.index)}`;
    case 'vcmdq':
      return `VCMDQ${loc.q}_${loc.spec.name.replace(/^VCMDQ_/, '')}`;
    case 'lvcmdq':
      return `VINTF${loc.vintf}_LVCMDQ${loc.lvcmdq}_${loc.spec.name.replace(/^VCMDQ_/, '')}`;
  }
}
