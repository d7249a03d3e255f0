/**
 * The SMMUv3 register map: every Non-secure register of Page 0 and Page 1, the Command queue
 * control page registers and the ECMDQ registers inside a control page (IHI0070 G.b §6.2, §6.3).
 * The device, the driver and the CLI take every offset, field position and reset value from here.
 *
 * Model choices (each one is a CONSTRAINED UNPREDICTABLE or IMPLEMENTATION DEFINED point):
 * - Page 0 offsets 0xA8/0xAC/0xC8/0xCC (the optional aliases of the Page 1 queue index
 *   registers, §6.2.1) are RAZ/WI: the registers live only in Page 1 (§6.2.2).
 * - Undefined locations of Page 0 and Page 1 are RAZ/WI (Page 1 takes the "same behavior as RES0"
 *   option of §6.2, it does not alias Page 0); the IMPLEMENTATION DEFINED ranges 0xE00-0xEFF and
 *   0x1000-0x3FFF hold nothing.
 * - The model has no Secure programming interface (SMMU_S_IDR1.SECURE_IMPL == 0, so the SMMU_S_*
 *   registers are RES0, §6.2); SECURE_REGISTERS lists them so that they can be shown and treated
 *   as RAZ/WI.
 * - Command queue control pages (§6.2.5) start at offset 0x20000 from Page 0, one 64 KiB page each,
 *   contiguous and ascending in n as §6.3.49 requires; SMMU_CMDQ_CONTROL_PAGE_BASE<n>.ADDR presents
 *   0x20000 + n * 0x10000.
 * - The ECMDQs of a control page are spaced evenly through its 64 KiB (§6.2.5), so slot q of a page
 *   with 2^LOG2NUMQ queues is at q * (0x10000 >> LOG2NUMQ). §6.3.107-109 print "0x100 * n", which
 *   is the same thing only when a page holds 256 queues.
 */

import type { Field, FieldValue, NamedField } from './bits.ts';
import { addressField, field, fieldFitError, fieldGet, fieldSet, lowMask } from './bits.ts';
import { CERROR_NAMES } from './cerror.ts';
import type { SmmuFeatures } from './features.ts';
import { ecmdqCount } from './features.ts';

// ---------------------------------------------------------------------------------------------
// Shape
// ---------------------------------------------------------------------------------------------

export type Access = 'RO' | 'RW' | 'WO' | 'RAZ/WI';

/** Where a register lives: Page 0, Page 1, an ECMDQ slot of a control page, or the Secure block. */
export type RegisterPage = 0 | 1 | 'ecmdq' | 'secure';

/**
 * The condition under which a register is present (its "Configuration" text in §6.3.x). When the
 * condition is false, direct accesses are RES0. See `isPresent`.
 */
export type Presence =
  | 'IDR0.PRI == 1'
  | 'IDR0.MSI == 1'
  | 'IDR0.MSI == 1 && IDR0.PRI == 1'
  | 'IDR0.ATOS == 1'
  | 'IDR0.VATOS == 1'
  | 'IDR1.ECMDQ == 1'
  | 'IDR1.ECMDQ == 1 && n < 2^IDR6.CMDQ_CONTROL_PAGE_LOG2NUMP'
  | 'IDR3.MPAM == 1'
  | 'IDR3.DPT == 1'
  | 'IDR3.S2PI == 1';

export interface RegisterSpec {
  /** The spec's name, e.g. `SMMU_CMDQ_PROD`; indexed registers carry their index: `SMMU_CMDQ_CONTROL_PAGE_BASE3`. */
  readonly name: string;
  readonly page: RegisterPage;
  /** Absolute offset from the SMMU base for pages 0, 1 and 'secure'; offset within the ECMDQ slot for 'ecmdq'. */
  readonly offset: number;
  readonly width: 32 | 64;
  readonly access: Access;
  /**
   * Architected reset value, when the spec gives one (number for 32-bit, bigint for 64-bit
   * registers). Omitted when every field resets to an UNKNOWN or IMPLEMENTATION DEFINED value.
   */
  readonly reset?: number | bigint;
  /** When only some fields have an architected reset: the bits `reset` speaks for. Omitted: all bits. */
  readonly resetMask?: number | bigint;
  /**
   * The value this model loads at reset where the spec leaves bits UNKNOWN or IMPLEMENTATION
   * DEFINED. Omitted: `reset` with every other bit 0. See `modelResetValue`.
   */
  readonly modelReset?: number | bigint;
  /** Fields, lsb within the register (bit 32 is bit 0 of the word at offset + 4). */
  readonly fields: readonly Field[];
  /** The spec section that defines the register, e.g. `§6.3.28`. */
  readonly section: string;
  readonly present?: Presence;
  /** When the access differs from `access` (Guarded registers, §6.2). */
  readonly guard?: string;
  readonly doc?: string;
  /** The name Linux's arm-smmu-v3 driver uses, where it is not ARM_ + the spec name without SMMU_. */
  readonly linux?: string;
  /** For the <n> registers: the index n. */
  readonly n?: number;
}

export type { NamedField };

/** A register with typed access to its fields by name: `REG.SMMU_CR0.f.CMDQEN`. */
export interface Reg<N extends string = string, K extends string = string> extends RegisterSpec {
  readonly name: N;
  readonly fields: readonly NamedField<K>[];
  readonly f: { readonly [P in K]: NamedField<P> };
}

/** Register table rows: bits [hi:lo] in the spec's order, and ADDR[hi:lo] address fields. */
const fd = field;
const addr = addressField;

interface RegInput<N extends string, F extends readonly Field[]> extends Omit<RegisterSpec, 'name' | 'fields'> {
  readonly name: N;
  readonly fields: F;
}

function reg<const N extends string, const F extends readonly NamedField<string>[]>(
  s: RegInput<N, F>,
): Reg<N, F[number]['name']> {
  const f = Object.freeze(Object.fromEntries(s.fields.map((x) => [x.name, x])));
  return Object.freeze({ ...s, fields: Object.freeze([...s.fields]), f }) as unknown as Reg<N, F[number]['name']>;
}

// ---------------------------------------------------------------------------------------------
// Geometry
// ---------------------------------------------------------------------------------------------

/** Every SMMU register page is 64 KiB (§6.1). */
export const SMMU_PAGE_SIZE = 0x10000;
/** Page 1 starts 64 KiB above Page 0 (§6.2.2). */
export const SMMU_PAGE1 = 0x10000;
/** Page 0 + Page 1: the minimum register footprint (§6.1). */
export const SMMU_BASE_WINDOW = 0x20000;
/** Model choice: Command queue control page p is at this offset + p * SMMU_PAGE_SIZE (§6.3.49). */
export const ECMDQ_CONTROL_PAGE_BASE = 0x20000;
/** SMMU_CMDQ_CONTROL_PAGE_{BASE,CFG,STATUS}<n> are at 0x4000 + 32n (§6.2.1). */
export const CONTROL_PAGE_REG_BASE = 0x4000;
export const CONTROL_PAGE_REG_STRIDE = 32;
/** n = 0..255 (§6.3.49-51); likewise at most 256 ECMDQs per page (§6.2.5). */
export const CONTROL_PAGE_MAX = 256;
/** SMMU_CMDQ_CONTROL_PAGE_BASE<n>.CMDQGS: the only defined encoding, 64KB (§6.3.49). */
export const CMDQGS_64KB = 0b01;
/** Each ECMDQ uses 16 bytes of its slot (§3.5.6.1). */
export const ECMDQ_SLOT_BYTES = 16;

// ---------------------------------------------------------------------------------------------
// Encodings used by more than one field
// ---------------------------------------------------------------------------------------------

/** SMMU_IDR0.ST_LEVEL (§6.3.1). */
export const ST_LEVEL = { LINEAR: 0b00, TWO_LEVEL: 0b01 } as const;
/** SMMU_IDR0.STALL_MODEL (§6.3.1). */
export const STALL_MODEL = { STALL_AND_TERMINATE: 0b00, NO_STALL: 0b01, STALL_FORCED: 0b10 } as const;
/** SMMU_IDR0.TTENDIAN (§6.3.1). */
export const TTENDIAN = { MIXED: 0b00, LE: 0b10, BE: 0b11 } as const;
/** SMMU_IDR0.TTF (§6.3.1). */
export const TTF = { VMSAV8_32_LPAE: 0b01, VMSAV8_64: 0b10, BOTH: 0b11 } as const;
/** SMMU_IDR3.BBML (§6.3.4). */
export const BBML = { LEVEL0: 0b00, LEVEL1: 0b01, LEVEL2: 0b10 } as const;
/** SMMU_STRTAB_BASE_CFG.FMT (§6.3.25). */
export const STRTAB_FMT = { LINEAR: 0b00, TWO_LEVEL: 0b01 } as const;
/** SMMU_STRTAB_BASE_CFG.SPLIT: the three defined split points (§6.3.25). */
export const STRTAB_SPLIT = { SPLIT_4KB: 6, SPLIT_16KB: 8, SPLIT_64KB: 10 } as const;
/** SMMU_GBPA.SHCFG (§6.3.14). */
export const SHCFG = { NSH: 0b00, USE_INCOMING: 0b01, OSH: 0b10, ISH: 0b11 } as const;

const SH_VALUES = {
  0b00: 'Non-shareable',
  0b01: 'Reserved, treated as 0b00',
  0b10: 'Outer Shareable',
  0b11: 'Inner Shareable',
} as const;
const CACHE_VALUES = {
  0b00: 'Non-cacheable',
  0b01: 'Write-Back Cacheable',
  0b10: 'Write-Through Cacheable',
  0b11: 'Reserved, treated as 0b00',
} as const;
const OAS_VALUES = {
  0b000: '32 bits',
  0b001: '36 bits',
  0b010: '40 bits',
  0b011: '42 bits',
  0b100: '44 bits',
  0b101: '48 bits',
  0b110: '52 bits',
  0b111: '56 bits',
} as const;

const WR_DOC =
  'Write index [19:0]: bits [QS-1:0] are the index and bit QS the wrap flag, QS = the queue LOG2SIZE (capped at the IDR1 maximum); bits above QS are RES0';
const RD_DOC =
  'Read index [19:0]: bits [QS-1:0] are the index and bit QS the wrap flag, QS = the queue LOG2SIZE (capped at the IDR1 maximum); bits above QS are RES0';

// ---------------------------------------------------------------------------------------------
// Field groups shared by several registers
// ---------------------------------------------------------------------------------------------

/** SMMU_CR0 and SMMU_CR0ACK share their layout (§6.3.9, §6.3.10). */
function cr0Fields() {
  return [
    fd('DPT_WALK_EN', 10, 10, { doc: 'Non-secure DPT walks enabled (IDR3.DPT == 1, else RES0)' }),
    fd('VMW', 8, 6, {
      doc: 'VMID wildcard for TLB invalidation (IDR0.VMW == 1, else RES0); other values behave as 0b000',
      values: {
        0b000: 'exact',
        0b001: 'VMID[N:1]',
        0b010: 'VMID[N:2]',
        0b011: 'VMID[N:3]',
        0b100: 'VMID[N:4]',
      },
    }),
    fd('ATSCHK', 4, 4, { doc: 'ATS Translated traffic checked against STE.EATS (IDR0.ATS == 1)', values: { 0: 'Fast', 1: 'Safe' } }),
    fd('CMDQEN', 3, 3, { doc: 'Command queue processing enabled' }),
    fd('EVENTQEN', 2, 2, { doc: 'Event queue writes enabled', linux: 'CR0_EVTQEN' }),
    fd('PRIQEN', 1, 1, { doc: 'PRI queue writes enabled (IDR0.PRI == 1)' }),
    fd('SMMUEN', 0, 0, { doc: 'Non-secure streams checked against configuration (0: bypass per GBPA)' }),
  ] as const;
}

/** SMMU_IRQ_CTRL and SMMU_IRQ_CTRLACK (§6.3.16, §6.3.18). */
function irqCtrlFields() {
  return [
    fd('EVENTQ_IRQEN', 2, 2, { linux: 'IRQ_CTRL_EVTQ_IRQEN' }),
    fd('PRIQ_IRQEN', 1, 1, { doc: 'IDR0.PRI == 1, else RES0' }),
    fd('GERROR_IRQEN', 0, 0),
  ] as const;
}

/** SMMU_GERROR and SMMU_GERRORN (§6.3.19, §6.3.20): an error is active while the bits differ. */
function gerrorFields() {
  return [
    fd('DPT_ERR', 10, 10, { doc: 'DPT lookup fault recorded in SMMU_DPT_CFG_FAR (IDR3.DPT == 1)' }),
    fd('CMDQP_ERR', 9, 9, { doc: 'An ECMDQ reported an error in its SMMU_ECMDQ_CONS.ERR (IDR1.ECMDQ == 1)' }),
    fd('SFM_ERR', 8, 8, { doc: 'Service Failure Mode entered' }),
    fd('MSI_GERROR_ABT_ERR', 7, 7, { doc: 'GERROR MSI write aborted (IDR0.MSI == 1)' }),
    fd('MSI_PRIQ_ABT_ERR', 6, 6, { doc: 'PRI queue MSI write aborted (IDR0.MSI == 1 && IDR0.PRI == 1)' }),
    fd('MSI_EVENTQ_ABT_ERR', 5, 5, { doc: 'Event queue MSI write aborted (IDR0.MSI == 1)', linux: 'GERROR_MSI_EVTQ_ABT_ERR' }),
    fd('MSI_CMDQ_ABT_ERR', 4, 4, { doc: 'CMD_SYNC MSI write aborted (IDR0.MSI == 1)' }),
    fd('PRIQ_ABT_ERR', 3, 3, { doc: 'PRI queue access aborted (IDR0.PRI == 1)' }),
    fd('EVENTQ_ABT_ERR', 2, 2, { doc: 'Event queue access aborted', linux: 'GERROR_EVTQ_ABT_ERR' }),
    fd('CMDQ_ERR', 0, 0, { doc: 'Command queue error; the reason is in SMMU_CMDQ_CONS.ERR (§7.1)' }),
  ] as const;
}

/** SMMU_*_IRQ_CFG0 (§6.3.21, §6.3.30, §6.3.34). */
function irqCfg0Fields() {
  return [addr('ADDR', 55, 2, { doc: 'MSI target physical address [55:2]; 0 means no MSI is sent' })] as const;
}
/** SMMU_*_IRQ_CFG1 (§6.3.22, §6.3.31, §6.3.35). */
function irqCfg1Fields() {
  return [fd('DATA', 31, 0, { doc: 'MSI payload' })] as const;
}
/** SMMU_*_IRQ_CFG2 (§6.3.23, §6.3.32); SMMU_PRIQ_IRQ_CFG2 adds LO (§6.3.36). */
function irqCfg2Fields() {
  return [
    fd('SH', 5, 4, { doc: 'MSI Shareability; IGNORED (effectively OSH) for Device MemAttr', values: SH_VALUES }),
    fd('MemAttr', 3, 0, { doc: 'MSI memory type, encoded as STE.MemAttr' }),
  ] as const;
}

/** SMMU_CMDQ_BASE and SMMU_ECMDQ_BASE<n> (§6.3.26, §6.3.107). */
function cmdqBaseFields() {
  return [
    fd('RA', 62, 62, { doc: 'Read-Allocate hint', linux: 'Q_BASE_RWA' }),
    addr('ADDR', 55, 5, { doc: 'Queue base PA [55:5]; effectively aligned to max(queue size in bytes, 32)', linux: 'Q_BASE_ADDR_MASK' }),
    fd('LOG2SIZE', 4, 0, { doc: 'Queue size as log2(entries); uses are capped at IDR1.CMDQS', linux: 'Q_BASE_LOG2SIZE' }),
  ] as const;
}
/** SMMU_EVENTQ_BASE and SMMU_PRIQ_BASE (§6.3.29, §6.3.33). */
function outQueueBaseFields(max: string) {
  return [
    fd('WA', 62, 62, { doc: 'Write-Allocate hint', linux: 'Q_BASE_RWA' }),
    addr('ADDR', 55, 5, { doc: 'Queue base PA [55:5]; effectively aligned to max(queue size in bytes, 32)', linux: 'Q_BASE_ADDR_MASK' }),
    fd('LOG2SIZE', 4, 0, { doc: `Queue size as log2(entries); uses are capped at ${max}`, linux: 'Q_BASE_LOG2SIZE' }),
  ] as const;
}

// ---------------------------------------------------------------------------------------------
// Page 0 (§6.2.1)
// ---------------------------------------------------------------------------------------------

const PAGE0_DEFS = [
  reg({
    name: 'SMMU_IDR0', page: 0, offset: 0x0000, width: 32, access: 'RO', section: '§6.3.1',
    doc: 'Features of the Non-secure programming interface',
    fields: [
      fd('RME_IMPL', 30),
      fd('ST_LEVEL', 28, 27, { linux: 'IDR0_ST_LVL', values: { [ST_LEVEL.LINEAR]: 'Linear', [ST_LEVEL.TWO_LEVEL]: '2-level and Linear' } }),
      fd('TERM_MODEL', 26, 26, { doc: '1: terminated transactions always abort (CD.A must be 1)' }),
      fd('STALL_MODEL', 25, 24, {
        values: {
          [STALL_MODEL.STALL_AND_TERMINATE]: 'Stall and Terminate',
          [STALL_MODEL.NO_STALL]: 'Stall not supported',
          [STALL_MODEL.STALL_FORCED]: 'Stall forced',
        },
      }),
      fd('ATSRECERR', 23, 23, { doc: 'Extra ATS/PRI configuration events (RES0 when ATS == 0)' }),
      fd('TTENDIAN', 22, 21, { values: { [TTENDIAN.MIXED]: 'Mixed-endian', 0b01: 'Reserved', [TTENDIAN.LE]: 'Little-endian', [TTENDIAN.BE]: 'Big-endian' } }),
      fd('VATOS', 20),
      fd('CD2L', 19, 19, { doc: '2-level CD tables' }),
      fd('VMID16', 18),
      fd('VMW', 17, 17, { doc: 'VMID wildcards for TLB invalidation (RES0 when S2P == 0)' }),
      fd('PRI', 16, 16, { doc: 'Page Request Interface (RES0 when ATS == 0)' }),
      fd('ATOS', 15),
      fd('SEV', 14, 14, { doc: 'WFE wake-up events' }),
      fd('MSI', 13),
      fd('ASID16', 12),
      fd('NS1ATS', 11, 11, { doc: '1: split-stage ATS not supported' }),
      fd('ATS', 10),
      fd('Hyp', 9, 9, { doc: 'EL2 stage 1 contexts (RES0 when S1P == 0 or S2P == 0)', linux: 'IDR0_HYP' }),
      fd('DORMHINT', 8),
      fd('HTTU', 7, 6, {
        values: { 0b00: 'None', 0b01: 'Access flag', 0b10: 'Access flag and Dirty state', 0b11: 'Access flag, Dirty state and table Access flag' },
      }),
      fd('BTM', 5, 5, { doc: 'Broadcast TLB maintenance' }),
      fd('COHACC', 4, 4, { doc: 'Coherent access to tables, queues and MSIs' }),
      fd('TTF', 3, 2, { values: { 0b00: 'Reserved', [TTF.VMSAV8_32_LPAE]: 'VMSAv8-32 LPAE', [TTF.VMSAV8_64]: 'VMSAv8-64', [TTF.BOTH]: 'VMSAv8-32 LPAE and VMSAv8-64' } }),
      fd('S1P', 1),
      fd('S2P', 0),
    ],
  }),
  reg({
    name: 'SMMU_IDR1', page: 0, offset: 0x0004, width: 32, access: 'RO', section: '§6.3.2',
    fields: [
      fd('ECMDQ', 31, 31, { doc: 'Enhanced Command queues; details in SMMU_IDR6' }),
      fd('TABLES_PRESET', 30),
      fd('QUEUES_PRESET', 29),
      fd('REL', 28, 28, { doc: 'Preset base registers are offsets from Page 0' }),
      fd('ATTR_TYPES_OVR', 27),
      fd('ATTR_PERMS_OVR', 26),
      fd('CMDQS', 25, 21, { doc: 'log2 of the maximum Command queue entries, at most 19' }),
      fd('EVENTQS', 20, 16, { doc: 'log2 of the maximum Event queue entries, at most 19', linux: 'IDR1_EVTQS' }),
      fd('PRIQS', 15, 11, { doc: 'log2 of the maximum PRI queue entries, at most 19' }),
      fd('SSIDSIZE', 10, 6, { doc: 'SubstreamID bits, 0..20' }),
      fd('SIDSIZE', 5, 0, { doc: 'StreamID bits, 0..32' }),
    ],
  }),
  reg({
    name: 'SMMU_IDR2', page: 0, offset: 0x0008, width: 32, access: 'RO', section: '§6.3.3',
    fields: [fd('BA_VATOS', 9, 0, { doc: 'VATOS page at 0x20000 + BA_VATOS * 0x10000 (IDR0.VATOS == 1)' })],
  }),
  reg({
    name: 'SMMU_IDR3', page: 0, offset: 0x000c, width: 32, access: 'RO', section: '§6.3.4',
    fields: [
      fd('AIE', 23),
      fd('MTEPERM', 22),
      fd('THE', 21),
      fd('S2PO', 20),
      fd('S2PI', 19),
      fd('S1PI', 18),
      fd('EPAN', 17),
      fd('PASIDTT', 16),
      fd('DPT', 15, 15, { doc: 'Device Permission Table and STE.EATS == 0b11' }),
      fd('PTWNNC', 14),
      fd('E0PD', 13),
      fd('BBML', 12, 11, { values: { [BBML.LEVEL0]: 'Level 0', [BBML.LEVEL1]: 'Level 1', [BBML.LEVEL2]: 'Level 2' } }),
      fd('RIL', 10, 10, { doc: 'Range-based invalidation and level hint' }),
      fd('STT', 9),
      fd('FWB', 8),
      fd('MPAM', 7),
      fd('PPS', 5),
      fd('XNX', 4),
      fd('PBHA', 3),
      fd('HAD', 2),
    ],
  }),
  reg({
    name: 'SMMU_IDR4', page: 0, offset: 0x0010, width: 32, access: 'RO', section: '§6.3.5',
    fields: [fd('IMPLEMENTATION_DEFINED', 31, 0)],
  }),
  reg({
    name: 'SMMU_IDR5', page: 0, offset: 0x0014, width: 32, access: 'RO', section: '§6.3.6',
    fields: [
      fd('STALL_MAX', 31, 16, { doc: 'Maximum outstanding stalled transactions' }),
      fd('VAX', 11, 10, { values: { 0b00: '48-bit VA', 0b01: '52-bit VA', 0b10: '56-bit VA' } }),
      fd('D128', 8),
      fd('DS', 7, 7, { doc: '52-bit addresses with 4KB and 16KB granules (FEAT_LPA2)' }),
      fd('GRAN64K', 6),
      fd('GRAN16K', 5),
      fd('GRAN4K', 4),
      fd('OAS', 2, 0, { values: OAS_VALUES }),
    ],
  }),
  reg({
    name: 'SMMU_IIDR', page: 0, offset: 0x0018, width: 32, access: 'RO', section: '§6.3.7',
    fields: [
      fd('ProductID', 31, 20),
      fd('Variant', 19, 16),
      fd('Revision', 15, 12),
      fd('Implementer', 11, 0, { doc: 'JEP106: [11:8] continuation code, [6:0] identity code; 0x43B for Arm' }),
    ],
  }),
  reg({
    name: 'SMMU_AIDR', page: 0, offset: 0x001c, width: 32, access: 'RO', section: '§6.3.8',
    fields: [
      fd('ArchMajorRev', 7, 4, { values: { 0: 'SMMUv3.x' } }),
      fd('ArchMinorRev', 3, 0, { values: { 0: 'SMMUv3.0', 1: 'SMMUv3.1', 2: 'SMMUv3.2', 3: 'SMMUv3.3', 4: 'SMMUv3.4' } }),
    ],
  }),
  reg({
    name: 'SMMU_CR0', page: 0, offset: 0x0020, width: 32, access: 'RW', section: '§6.3.9', reset: 0,
    doc: 'Each field is Updated when the matching SMMU_CR0ACK field equals the value written',
    fields: cr0Fields(),
  }),
  reg({
    name: 'SMMU_CR0ACK', page: 0, offset: 0x0024, width: 32, access: 'RO', section: '§6.3.10', reset: 0,
    fields: cr0Fields(),
  }),
  reg({
    name: 'SMMU_CR1', page: 0, offset: 0x0028, width: 32, access: 'RW', section: '§6.3.11',
    guard: 'TABLE_* IGNORED unless CR0.SMMUEN == 0; QUEUE_* IGNORED unless CMDQEN, EVENTQEN, PRIQEN (and ACKs) and every ECMDQ EN/ENACK are 0',
    fields: [
      fd('TABLE_SH', 11, 10, { values: SH_VALUES }),
      fd('TABLE_OC', 9, 8, { values: CACHE_VALUES }),
      fd('TABLE_IC', 7, 6, { values: CACHE_VALUES }),
      fd('QUEUE_SH', 5, 4, { values: SH_VALUES }),
      fd('QUEUE_OC', 3, 2, { values: CACHE_VALUES }),
      fd('QUEUE_IC', 1, 0, { values: CACHE_VALUES }),
    ],
  }),
  reg({
    name: 'SMMU_CR2', page: 0, offset: 0x002c, width: 32, access: 'RW', section: '§6.3.12',
    guard: 'RW when CR0.SMMUEN == 0 && CR0ACK.SMMUEN == 0, else RO',
    doc: 'Every field resets to an UNKNOWN value (PTM to an IMPLEMENTATION SPECIFIC one when BTM == 1)',
    fields: [
      fd('REC_CFG_ATS', 3, 3, { doc: 'IDR0.ATSRECERR == 1, else RES0' }),
      fd('PTM', 2, 2, { doc: 'Private TLB maintenance: ignore broadcast TLBI (IDR0.BTM == 1, else RES0)' }),
      fd('RECINVSID', 1, 1, { doc: 'Record C_BAD_STREAMID' }),
      fd('E2H', 0, 0, { doc: 'EL2-E2H regime for STE.STRW == 0b10 (IDR0.Hyp == 1, else RES0)' }),
    ],
  }),
  reg({
    name: 'SMMU_S2PII', page: 0, offset: 0x0030, width: 64, access: 'RW', section: '§6.3.17', present: 'IDR3.S2PI == 1',
    doc: 'Stage 2 permission indirection: sixteen 4-bit permission encodings',
    fields: Array.from({ length: 16 }, (_, p) => fd(`S2PII${p}` as `S2PII${number}`, 4 * p + 3, 4 * p)),
  }),
  reg({
    name: 'SMMU_STATUSR', page: 0, offset: 0x0040, width: 32, access: 'RO', section: '§6.3.13', reset: 0,
    fields: [fd('DORMANT', 0, 0, { doc: 'IDR0.DORMHINT == 1, else RES0' })],
  }),
  reg({
    name: 'SMMU_GBPA', page: 0, offset: 0x0044, width: 32, access: 'RW', section: '§6.3.14',
    reset: 0, resetMask: 0x8000_0000,
    // Model choice: bypass, with Shareability taken from the incoming transaction; every other
    // attribute "use incoming" (all other fields reset to IMPLEMENTATION DEFINED values).
    modelReset: SHCFG.USE_INCOMING << 12,
    guard: 'RO while Update == 1; a write that does not set Update is IGNORED (SMMUv3.2+)',
    doc: 'Global bypass attributes while SMMUEN == 0; write with Update = 1 and poll Update until 0',
    fields: [
      fd('Update', 31),
      fd('ABORT', 20, 20, { doc: '1: abort all incoming transactions while SMMUEN == 0' }),
      fd('INSTCFG', 19, 18, { values: { 0b00: 'Use incoming', 0b01: 'Reserved, behaves as 0b00', 0b10: 'Data', 0b11: 'Instruction' } }),
      fd('PRIVCFG', 17, 16, { values: { 0b00: 'Use incoming', 0b01: 'Reserved, behaves as 0b00', 0b10: 'Unprivileged', 0b11: 'Privileged' } }),
      fd('SHCFG', 13, 12, { values: { [SHCFG.NSH]: 'Non-shareable', [SHCFG.USE_INCOMING]: 'Use incoming', [SHCFG.OSH]: 'Outer Shareable', [SHCFG.ISH]: 'Inner Shareable' } }),
      fd('ALLOCCFG', 11, 8, { doc: '0b0xxx: use incoming hints; 0b1RWT: override RA, WA, TR' }),
      fd('MTCFG', 4, 4, { values: { 0: 'Use incoming memory type', 1: 'Override with MemAttr' } }),
      fd('MemAttr', 3, 0, { doc: 'Encoded as STE.MemAttr' }),
    ],
  }),
  reg({
    name: 'SMMU_AGBPA', page: 0, offset: 0x0048, width: 32, access: 'RW', section: '§6.3.15',
    doc: 'IMPLEMENTATION DEFINED additional bypass attributes; the model keeps 0 and ignores them',
    fields: [fd('IMPLEMENTATION_DEFINED', 31, 0)],
  }),
  reg({
    name: 'SMMU_IRQ_CTRL', page: 0, offset: 0x0050, width: 32, access: 'RW', section: '§6.3.16', reset: 0,
    doc: 'Each field is Updated when the matching SMMU_IRQ_CTRLACK field equals the value written',
    fields: irqCtrlFields(),
  }),
  reg({
    name: 'SMMU_IRQ_CTRLACK', page: 0, offset: 0x0054, width: 32, access: 'RO', section: '§6.3.18', reset: 0,
    fields: irqCtrlFields(),
  }),
  reg({
    name: 'SMMU_GERROR', page: 0, offset: 0x0060, width: 32, access: 'RO', section: '§6.3.19', reset: 0,
    doc: 'The SMMU toggles a bit to activate an error; the error is active while GERROR[x] != GERRORN[x]',
    fields: gerrorFields(),
  }),
  reg({
    name: 'SMMU_GERRORN', page: 0, offset: 0x0064, width: 32, access: 'RW', section: '§6.3.20', reset: 0,
    doc: 'Software acknowledges an active error by toggling its bit to equal SMMU_GERROR',
    fields: gerrorFields(),
  }),
  reg({
    name: 'SMMU_GERROR_IRQ_CFG0', page: 0, offset: 0x0068, width: 64, access: 'RW', section: '§6.3.21', present: 'IDR0.MSI == 1',
    guard: 'RW when IRQ_CTRL.GERROR_IRQEN == 0 && IRQ_CTRLACK.GERROR_IRQEN == 0, else RO',
    fields: irqCfg0Fields(),
  }),
  reg({
    name: 'SMMU_GERROR_IRQ_CFG1', page: 0, offset: 0x0070, width: 32, access: 'RW', section: '§6.3.22', present: 'IDR0.MSI == 1',
    guard: 'RW when IRQ_CTRL.GERROR_IRQEN == 0 && IRQ_CTRLACK.GERROR_IRQEN == 0, else RO',
    fields: irqCfg1Fields(),
  }),
  reg({
    name: 'SMMU_GERROR_IRQ_CFG2', page: 0, offset: 0x0074, width: 32, access: 'RW', section: '§6.3.23', present: 'IDR0.MSI == 1',
    guard: 'RW when IRQ_CTRL.GERROR_IRQEN == 0 && IRQ_CTRLACK.GERROR_IRQEN == 0, else RO',
    fields: irqCfg2Fields(),
  }),
  reg({
    name: 'SMMU_STRTAB_BASE', page: 0, offset: 0x0080, width: 64, access: 'RW', section: '§6.3.24',
    guard: 'RW when CR0.SMMUEN == 0 && CR0ACK.SMMUEN == 0 (and not TABLES_PRESET), else RO',
    fields: [
      fd('RA', 62, 62, { doc: 'Read-Allocate hint' }),
      addr('ADDR', 55, 6, { doc: 'Stream table base PA [55:6]; effectively aligned to the table size' }),
    ],
  }),
  reg({
    name: 'SMMU_STRTAB_BASE_CFG', page: 0, offset: 0x0088, width: 32, access: 'RW', section: '§6.3.25',
    guard: 'RW when CR0.SMMUEN == 0 && CR0ACK.SMMUEN == 0 (and not TABLES_PRESET), else RO',
    fields: [
      fd('FMT', 17, 16, {
        doc: 'RES0 when IDR0.ST_LEVEL == 0b00; reserved values behave as Linear',
        values: { [STRTAB_FMT.LINEAR]: 'Linear', [STRTAB_FMT.TWO_LEVEL]: '2-level' },
      }),
      fd('SPLIT', 10, 6, {
        doc: 'StreamID bits indexing a level-2 table; other values behave as 6; IGNORED when FMT == Linear',
        values: { [STRTAB_SPLIT.SPLIT_4KB]: '4KB leaf tables', [STRTAB_SPLIT.SPLIT_16KB]: '16KB leaf tables', [STRTAB_SPLIT.SPLIT_64KB]: '64KB leaf tables' },
      }),
      fd('LOG2SIZE', 5, 0, { doc: 'log2 of the StreamID range; the effective value is min(LOG2SIZE, IDR1.SIDSIZE)' }),
    ],
  }),
  reg({
    name: 'SMMU_CMDQ_BASE', page: 0, offset: 0x0090, width: 64, access: 'RW', section: '§6.3.26',
    guard: 'RW when CR0.CMDQEN == 0 && CR0ACK.CMDQEN == 0 (and not QUEUES_PRESET), else RO',
    fields: cmdqBaseFields(),
  }),
  reg({
    name: 'SMMU_CMDQ_PROD', page: 0, offset: 0x0098, width: 32, access: 'RW', section: '§6.3.27',
    fields: [fd('WR', 19, 0, { doc: WR_DOC })],
  }),
  reg({
    name: 'SMMU_CMDQ_CONS', page: 0, offset: 0x009c, width: 32, access: 'RW', section: '§6.3.28',
    guard: 'RW when CR0.CMDQEN == 0 && CR0ACK.CMDQEN == 0, else RO',
    fields: [
      fd('ERR', 30, 24, { doc: 'Command error reason (§7.1); meaningful while GERROR.CMDQ_ERR is active', values: CERROR_NAMES, linux: 'CMDQ_CONS_ERR' }),
      fd('RD', 19, 0, { doc: RD_DOC }),
    ],
  }),
  reg({
    name: 'SMMU_EVENTQ_BASE', page: 0, offset: 0x00a0, width: 64, access: 'RW', section: '§6.3.29', linux: 'ARM_SMMU_EVTQ_BASE',
    guard: 'RW when CR0.EVENTQEN == 0 && CR0ACK.EVENTQEN == 0 (and not QUEUES_PRESET), else RO',
    fields: outQueueBaseFields('IDR1.EVENTQS'),
  }),
  reg({
    name: 'SMMU_EVENTQ_IRQ_CFG0', page: 0, offset: 0x00b0, width: 64, access: 'RW', section: '§6.3.30', present: 'IDR0.MSI == 1',
    linux: 'ARM_SMMU_EVTQ_IRQ_CFG0',
    guard: 'RW when IRQ_CTRL.EVENTQ_IRQEN == 0 && IRQ_CTRLACK.EVENTQ_IRQEN == 0, else RO',
    fields: irqCfg0Fields(),
  }),
  reg({
    name: 'SMMU_EVENTQ_IRQ_CFG1', page: 0, offset: 0x00b8, width: 32, access: 'RW', section: '§6.3.31', present: 'IDR0.MSI == 1',
    linux: 'ARM_SMMU_EVTQ_IRQ_CFG1',
    guard: 'RW when IRQ_CTRL.EVENTQ_IRQEN == 0 && IRQ_CTRLACK.EVENTQ_IRQEN == 0, else RO',
    fields: irqCfg1Fields(),
  }),
  reg({
    name: 'SMMU_EVENTQ_IRQ_CFG2', page: 0, offset: 0x00bc, width: 32, access: 'RW', section: '§6.3.32', present: 'IDR0.MSI == 1',
    linux: 'ARM_SMMU_EVTQ_IRQ_CFG2',
    guard: 'RW when IRQ_CTRL.EVENTQ_IRQEN == 0 && IRQ_CTRLACK.EVENTQ_IRQEN == 0, else RO',
    fields: irqCfg2Fields(),
  }),
  reg({
    name: 'SMMU_PRIQ_BASE', page: 0, offset: 0x00c0, width: 64, access: 'RW', section: '§6.3.33', present: 'IDR0.PRI == 1',
    guard: 'RW when CR0.PRIQEN == 0 && CR0ACK.PRIQEN == 0 (and not QUEUES_PRESET), else RO',
    fields: outQueueBaseFields('IDR1.PRIQS'),
  }),
  reg({
    name: 'SMMU_PRIQ_IRQ_CFG0', page: 0, offset: 0x00d0, width: 64, access: 'RW', section: '§6.3.34', present: 'IDR0.MSI == 1 && IDR0.PRI == 1',
    guard: 'RW when IRQ_CTRL.PRIQ_IRQEN == 0 && IRQ_CTRLACK.PRIQ_IRQEN == 0, else RO',
    fields: irqCfg0Fields(),
  }),
  reg({
    name: 'SMMU_PRIQ_IRQ_CFG1', page: 0, offset: 0x00d8, width: 32, access: 'RW', section: '§6.3.35', present: 'IDR0.MSI == 1 && IDR0.PRI == 1',
    guard: 'RW when IRQ_CTRL.PRIQ_IRQEN == 0 && IRQ_CTRLACK.PRIQ_IRQEN == 0, else RO',
    fields: irqCfg1Fields(),
  }),
  reg({
    name: 'SMMU_PRIQ_IRQ_CFG2', page: 0, offset: 0x00dc, width: 32, access: 'RW', section: '§6.3.36', present: 'IDR0.MSI == 1 && IDR0.PRI == 1',
    guard: 'RW when IRQ_CTRL.PRIQ_IRQEN == 0 && IRQ_CTRLACK.PRIQ_IRQEN == 0, else RO',
    // §6.3.34-36 make the whole register conditional on MSI, but §6.3.1 (IDR0.MSI) says LO is
    // not affected by MSI support; the model follows the register pages.
    fields: [
      fd('LO', 31, 31, { doc: '1: interrupt on PRI messages with the L bit set, not on empty to non-empty' }),
      ...irqCfg2Fields(),
    ],
  }),
  reg({
    name: 'SMMU_GATOS_CTRL', page: 0, offset: 0x0100, width: 32, access: 'RW', section: '§6.3.37', present: 'IDR0.ATOS == 1', reset: 0,
    guard: 'RO while RUN == 1',
    fields: [fd('RUN', 0)],
  }),
  reg({
    name: 'SMMU_GATOS_SID', page: 0, offset: 0x0108, width: 64, access: 'RW', section: '§6.3.38', present: 'IDR0.ATOS == 1',
    guard: 'RO while GATOS_CTRL.RUN == 1',
    fields: [fd('SSID_VALID', 52), fd('SUBSTREAMID', 51, 32), fd('STREAMID', 31, 0)],
  }),
  reg({
    name: 'SMMU_GATOS_ADDR', page: 0, offset: 0x0110, width: 64, access: 'RW', section: '§6.3.39', present: 'IDR0.ATOS == 1',
    guard: 'RO while GATOS_CTRL.RUN == 1',
    fields: [
      addr('ADDR', 63, 12),
      fd('TYPE', 11, 10, { values: { 0b00: 'Reserved', 0b01: 'Stage 1 (VA to IPA)', 0b10: 'Stage 2 (IPA to PA)', 0b11: 'Stage 1 and stage 2 (VA to PA)' } }),
      fd('PnU', 9),
      fd('RnW', 8),
      fd('InD', 7),
      fd('HTTUI', 6),
    ],
  }),
  reg({
    name: 'SMMU_GATOS_PAR', page: 0, offset: 0x0118, width: 64, access: 'RO', section: '§6.3.40', present: 'IDR0.ATOS == 1',
    doc: 'Fields shown for FAULT == 0; with FAULT == 1 the register holds FADDR [55:12], FAULTCODE [11:4], REASON [2:1]',
    fields: [fd('ATTR', 63, 56), addr('ADDR', 55, 12), fd('Size', 11), fd('SH', 9, 8), fd('FAULT', 0)],
  }),
  reg({
    name: 'SMMU_MPAMIDR', page: 0, offset: 0x0130, width: 32, access: 'RO', section: '§6.3.41', present: 'IDR3.MPAM == 1',
    fields: [fd('PMG_MAX', 23, 16), fd('PARTID_MAX', 15, 0)],
  }),
  reg({
    name: 'SMMU_GMPAM', page: 0, offset: 0x0138, width: 32, access: 'RW', section: '§6.3.42', present: 'IDR3.MPAM == 1', reset: 0,
    guard: 'RO while Update == 1; a write that does not set Update is IGNORED',
    fields: [fd('Update', 31), fd('SO_PMG', 23, 16), fd('SO_PARTID', 15, 0)],
  }),
  reg({
    name: 'SMMU_GBPMPAM', page: 0, offset: 0x013c, width: 32, access: 'RW', section: '§6.3.43', present: 'IDR3.MPAM == 1', reset: 0,
    guard: 'RO while Update == 1; a write that does not set Update is IGNORED',
    fields: [fd('Update', 31), fd('GBP_PMG', 23, 16), fd('GBP_PARTID', 15, 0)],
  }),
  reg({
    name: 'SMMU_VATOS_SEL', page: 0, offset: 0x0180, width: 32, access: 'RW', section: '§6.3.44', present: 'IDR0.VATOS == 1',
    fields: [fd('VMID', 15, 0)],
  }),
  reg({
    name: 'SMMU_IDR6', page: 0, offset: 0x0190, width: 32, access: 'RO', section: '§6.3.45', present: 'IDR1.ECMDQ == 1',
    fields: [
      fd('CMDQ_CONTROL_PAGE_LOG2NUMP', 27, 24, { doc: 'log2 of the number of Command queue control pages, at most 8' }),
      fd('CMDQ_CONTROL_PAGE_LOG2NUMQ', 19, 16, { doc: 'log2 of the ECMDQs per control page, at most 8' }),
    ],
  }),
  reg({
    name: 'SMMU_DPT_BASE', page: 0, offset: 0x0200, width: 64, access: 'RW', section: '§6.3.46', present: 'IDR3.DPT == 1',
    guard: 'RO when CR0.DPT_WALK_EN == 1 or CR0ACK.DPT_WALK_EN == 1',
    fields: [fd('RA', 62), addr('BADDR', 55, 12)],
  }),
  reg({
    name: 'SMMU_DPT_BASE_CFG', page: 0, offset: 0x0208, width: 32, access: 'RW', section: '§6.3.47', present: 'IDR3.DPT == 1',
    guard: 'RO when CR0.DPT_WALK_EN == 1 or CR0ACK.DPT_WALK_EN == 1',
    fields: [
      fd('L0DPTSZ', 23, 20, { values: { 0b0000: '30 bits', 0b0100: '34 bits', 0b0110: '36 bits', 0b1001: '39 bits' } }),
      fd('DPTGS', 15, 14, { values: { 0b00: '4KB', 0b01: '64KB', 0b10: '16KB', 0b11: 'Reserved' } }),
      fd('DPTPS', 2, 0, { values: { ...OAS_VALUES, 0b111: 'Reserved' } }),
    ],
  }),
  reg({
    name: 'SMMU_DPT_CFG_FAR', page: 0, offset: 0x0210, width: 64, access: 'RW', section: '§6.3.48', present: 'IDR3.DPT == 1',
    reset: 0n, resetMask: 1n,
    guard: 'A write is IGNORED unless it clears FAULT, which clears the whole register',
    fields: [
      addr('FADDR', 55, 12),
      fd('DPT_FAULTCODE', 7, 4, { values: { 0b0000: 'DPT_DISABLED', 0b0001: 'DPT_WALK_FAULT', 0b0010: 'DPT_GPC_FAULT', 0b0011: 'DPT_EABT' } }),
      fd('LEVEL', 1),
      fd('FAULT', 0),
    ],
  }),
] as const;

/**
 * Page 0 offsets that §6.2.1 reserves for optional aliases of the Page 1 queue index registers.
 * Not spec names: the spec leaves these rows unnamed. The model makes them RAZ/WI.
 */
const PAGE0_ALIAS_DEFS = [
  reg({
    name: 'SMMU_EVENTQ_PROD_PAGE0_ALIAS', page: 0, offset: 0x00a8, width: 32, access: 'RAZ/WI', section: '§6.2.1', reset: 0,
    doc: 'Optional alias of SMMU_EVENTQ_PROD, otherwise RAZ/WI; this model: RAZ/WI', fields: [],
  }),
  reg({
    name: 'SMMU_EVENTQ_CONS_PAGE0_ALIAS', page: 0, offset: 0x00ac, width: 32, access: 'RAZ/WI', section: '§6.2.1', reset: 0,
    doc: 'Optional alias of SMMU_EVENTQ_CONS, otherwise RAZ/WI; this model: RAZ/WI', fields: [],
  }),
  reg({
    name: 'SMMU_PRIQ_PROD_PAGE0_ALIAS', page: 0, offset: 0x00c8, width: 32, access: 'RAZ/WI', section: '§6.2.1', reset: 0,
    doc: 'Optional alias of SMMU_PRIQ_PROD, otherwise RAZ/WI; this model: RAZ/WI', fields: [],
  }),
  reg({
    name: 'SMMU_PRIQ_CONS_PAGE0_ALIAS', page: 0, offset: 0x00cc, width: 32, access: 'RAZ/WI', section: '§6.2.1', reset: 0,
    doc: 'Optional alias of SMMU_PRIQ_CONS, otherwise RAZ/WI; this model: RAZ/WI', fields: [],
  }),
] as const;

/**
 * ID_REGS at 0xFD0-0xFFC (§6.3.170): CoreSight-style identification. Field values are
 * IMPLEMENTATION DEFINED except where `reset` gives them; idr.ts holds the values the model shows.
 */
const ID_REG_DEFS = [
  reg({
    name: 'SMMU_PIDR4', page: 0, offset: 0x0fd0, width: 32, access: 'RO', section: '§6.3.170', reset: 0, resetMask: 0xf0,
    fields: [fd('SIZE', 7, 4), fd('DES_2', 3, 0, { doc: 'JEP106 continuation code' })],
  }),
  reg({ name: 'SMMU_PIDR5', page: 0, offset: 0x0fd4, width: 32, access: 'RO', section: '§6.3.170', reset: 0, fields: [] }),
  reg({ name: 'SMMU_PIDR6', page: 0, offset: 0x0fd8, width: 32, access: 'RO', section: '§6.3.170', reset: 0, fields: [] }),
  reg({ name: 'SMMU_PIDR7', page: 0, offset: 0x0fdc, width: 32, access: 'RO', section: '§6.3.170', reset: 0, fields: [] }),
  reg({
    name: 'SMMU_PIDR0', page: 0, offset: 0x0fe0, width: 32, access: 'RO', section: '§6.3.170',
    fields: [fd('PART_0', 7, 0, { doc: 'Part number [7:0]' })],
  }),
  reg({
    name: 'SMMU_PIDR1', page: 0, offset: 0x0fe4, width: 32, access: 'RO', section: '§6.3.170',
    fields: [fd('DES_0', 7, 4, { doc: 'JEP106 designer code [3:0]' }), fd('PART_1', 3, 0, { doc: 'Part number [11:8]' })],
  }),
  reg({
    name: 'SMMU_PIDR2', page: 0, offset: 0x0fe8, width: 32, access: 'RO', section: '§6.3.170', reset: 0x08, resetMask: 0x08,
    fields: [
      fd('REVISION', 7, 4),
      // §6.3.170 gives bit [3] no name ("JEDEC-assigned value for DES always used"); CoreSight calls it JEDEC.
      fd('JEDEC', 3, 3, { doc: 'JEDEC-assigned value for DES always used: 1' }),
      fd('DES_1', 2, 0, { doc: 'JEP106 designer code [6:4]' }),
    ],
  }),
  reg({
    name: 'SMMU_PIDR3', page: 0, offset: 0x0fec, width: 32, access: 'RO', section: '§6.3.170',
    fields: [fd('REVAND', 7, 4), fd('CMOD', 3, 0)],
  }),
  reg({
    name: 'SMMU_CIDR0', page: 0, offset: 0x0ff0, width: 32, access: 'RO', section: '§6.3.170', reset: 0x0d,
    fields: [fd('Preamble', 7, 0)],
  }),
  reg({
    name: 'SMMU_CIDR1', page: 0, offset: 0x0ff4, width: 32, access: 'RO', section: '§6.3.170', reset: 0xf0,
    fields: [fd('CLASS', 7, 4), fd('Preamble', 3, 0)],
  }),
  reg({
    name: 'SMMU_CIDR2', page: 0, offset: 0x0ff8, width: 32, access: 'RO', section: '§6.3.170', reset: 0x05,
    fields: [fd('Preamble', 7, 0)],
  }),
  reg({
    name: 'SMMU_CIDR3', page: 0, offset: 0x0ffc, width: 32, access: 'RO', section: '§6.3.170', reset: 0xb1,
    fields: [fd('Preamble', 7, 0)],
  }),
] as const;

/** The three registers of Command queue control page n live at 0x4000 + 32n (§6.2.1, §6.3.49-51). */
const CONTROL_PAGE_TEMPLATES = [
  reg({
    name: 'SMMU_CMDQ_CONTROL_PAGE_BASE', page: 0, offset: 0x4000, width: 64, access: 'RO', section: '§6.3.49',
    present: 'IDR1.ECMDQ == 1 && n < 2^IDR6.CMDQ_CONTROL_PAGE_LOG2NUMP',
    doc: 'Where control page n is: this model presents ADDR = 0x20000 + n * 0x10000, CMDQGS = 64KB, PRESET = 1',
    fields: [
      addr('ADDR', 55, 16, { doc: 'Control page address [55:16] as an offset from Page 0, not an absolute address' }),
      fd('CMDQGS', 2, 1, { values: { [CMDQGS_64KB]: '64KB' } }),
      fd('CMDQ_CONTROL_PAGE_PRESET', 0, 0, { doc: '1: the ECMDQ interfaces are registers (always 1 in SMMUv3.3)' }),
    ],
  }),
  reg({
    name: 'SMMU_CMDQ_CONTROL_PAGE_CFG', page: 0, offset: 0x4008, width: 32, access: 'RO', section: '§6.3.50',
    present: 'IDR1.ECMDQ == 1 && n < 2^IDR6.CMDQ_CONTROL_PAGE_LOG2NUMP', reset: 1,
    fields: [fd('EN', 0, 0, { doc: 'RES1: the control page is always enabled' })],
  }),
  reg({
    name: 'SMMU_CMDQ_CONTROL_PAGE_STATUS', page: 0, offset: 0x400c, width: 32, access: 'RO', section: '§6.3.51',
    present: 'IDR1.ECMDQ == 1 && n < 2^IDR6.CMDQ_CONTROL_PAGE_LOG2NUMP', reset: 1,
    fields: [fd('ENACK', 0, 0, { doc: 'RES1' })],
  }),
] as const;

// ---------------------------------------------------------------------------------------------
// Page 1 (§6.2.2): absolute offsets
// ---------------------------------------------------------------------------------------------

const PAGE1_DEFS = [
  reg({
    name: 'SMMU_EVENTQ_PROD', page: 1, offset: SMMU_PAGE1 + 0xa8, width: 32, access: 'RW', section: '§6.3.95', linux: 'ARM_SMMU_EVTQ_PROD',
    guard: 'RW when CR0.EVENTQEN == 0 && CR0ACK.EVENTQEN == 0, else RO',
    fields: [
      fd('OVFLG', 31, 31, { doc: 'Toggled by the SMMU when records are lost to overflow; overflow is active while OVFLG != CONS.OVACKFLG', linux: 'Q_OVERFLOW_FLAG' }),
      fd('WR', 19, 0, { doc: WR_DOC }),
    ],
  }),
  reg({
    name: 'SMMU_EVENTQ_CONS', page: 1, offset: SMMU_PAGE1 + 0xac, width: 32, access: 'RW', section: '§6.3.96', linux: 'ARM_SMMU_EVTQ_CONS',
    fields: [
      fd('OVACKFLG', 31, 31, { doc: 'Software acknowledges overflow by writing the value of PROD.OVFLG', linux: 'Q_OVERFLOW_FLAG' }),
      fd('RD', 19, 0, { doc: RD_DOC }),
    ],
  }),
  reg({
    name: 'SMMU_PRIQ_PROD', page: 1, offset: SMMU_PAGE1 + 0xc8, width: 32, access: 'RW', section: '§6.3.97', present: 'IDR0.PRI == 1',
    // §6.3.97 gives OVFLG an architected reset of 0, unlike SMMU_EVENTQ_PROD.OVFLG (§6.3.95).
    reset: 0, resetMask: 0x8000_0000,
    guard: 'RW when CR0.PRIQEN == 0 && CR0ACK.PRIQEN == 0, else RO',
    fields: [
      fd('OVFLG', 31, 31, { doc: 'Toggled by the SMMU when the PRI queue overflows', linux: 'Q_OVERFLOW_FLAG' }),
      fd('WR', 19, 0, { doc: WR_DOC }),
    ],
  }),
  reg({
    name: 'SMMU_PRIQ_CONS', page: 1, offset: SMMU_PAGE1 + 0xcc, width: 32, access: 'RW', section: '§6.3.98', present: 'IDR0.PRI == 1',
    fields: [
      fd('OVACKFLG', 31, 31, { doc: 'Software acknowledges overflow by writing the value of PROD.OVFLG', linux: 'Q_OVERFLOW_FLAG' }),
      fd('RD', 19, 0, { doc: RD_DOC }),
    ],
  }),
] as const;

// ---------------------------------------------------------------------------------------------
// ECMDQ slot registers (§6.2.5, §6.3.107-109): offsets within a slot
// ---------------------------------------------------------------------------------------------

const ECMDQ_SLOT_DEFS = [
  reg({
    name: 'SMMU_ECMDQ_BASE', page: 'ecmdq', offset: 0x00, width: 64, access: 'RW', section: '§6.3.107', present: 'IDR1.ECMDQ == 1',
    guard: 'RW when PROD.EN == 0 && CONS.ENACK == 0, else RO',
    fields: cmdqBaseFields(),
  }),
  reg({
    name: 'SMMU_ECMDQ_PROD', page: 'ecmdq', offset: 0x08, width: 32, access: 'RW', section: '§6.3.108', present: 'IDR1.ECMDQ == 1',
    reset: 0, resetMask: 0x8080_0000,
    guard: 'RW when (PROD.EN, CONS.ENACK) is (0, 0) or (1, 1), else RO',
    fields: [
      fd('EN', 31, 31, { doc: 'Queue enable; enabled when EN == CONS.ENACK == 1 (§3.5.6.2)' }),
      fd('ERRACK', 23, 23, { doc: 'Error acknowledge: commands are consumed only while ERRACK == CONS.ERR (§3.5.6.3)' }),
      fd('WR', 19, 0, { doc: WR_DOC }),
    ],
  }),
  reg({
    name: 'SMMU_ECMDQ_CONS', page: 'ecmdq', offset: 0x0c, width: 32, access: 'RW', section: '§6.3.109', present: 'IDR1.ECMDQ == 1',
    reset: 0, resetMask: 0x8080_0000,
    guard: 'RW when PROD.EN == 0 && CONS.ENACK == 0, else RO',
    fields: [
      fd('ENACK', 31, 31, { doc: 'Enable acknowledge' }),
      fd('ERR_REASON', 26, 24, { doc: 'Reason for the last error (§7.1 codes); UNKNOWN when no error is active', values: CERROR_NAMES }),
      fd('ERR', 23, 23, { doc: 'Toggled by the SMMU on a command error; active while ERR != PROD.ERRACK' }),
      fd('RD', 19, 0, { doc: RD_DOC }),
    ],
  }),
] as const;

// ---------------------------------------------------------------------------------------------
// The exported tables
// ---------------------------------------------------------------------------------------------

const ALL_DEFS = [
  ...PAGE0_DEFS,
  ...PAGE0_ALIAS_DEFS,
  ...ID_REG_DEFS,
  ...CONTROL_PAGE_TEMPLATES,
  ...PAGE1_DEFS,
  ...ECMDQ_SLOT_DEFS,
] as const;

type ByName<T extends readonly { readonly name: string }[]> = { readonly [R in T[number] as R['name']]: R };

/**
 * Every register by its spec name, with typed fields: `REG.SMMU_CR0.f.CMDQEN`. Includes the ECMDQ
 * slot registers (offset within the slot) and the control-page registers for n = 0 (the name
 * without <n>; see `controlPageRegisters` for other n).
 */
export const REG: ByName<typeof ALL_DEFS> = Object.freeze(
  Object.fromEntries(ALL_DEFS.map((r) => [r.name, r])),
) as unknown as ByName<typeof ALL_DEFS>;

/** The spec names REG knows. */
export type RegName = keyof typeof REG;

function withIndex(t: RegisterSpec, n: number, offset: number): RegisterSpec {
  return Object.freeze({ ...t, name: `${t.name}${n}`, offset, n });
}

const controlPageCache: (readonly RegisterSpec[])[] = [];

/**
 * SMMU_CMDQ_CONTROL_PAGE_BASE<n>, _CFG<n>, _STATUS<n> at 0x4000 + 32n, 0x4008 + 32n, 0x400C + 32n
 * (§6.2.1), n = 0..255.
 */
export function controlPageRegisters(n: number): readonly RegisterSpec[] {
  if (!Number.isInteger(n) || n < 0 || n >= CONTROL_PAGE_MAX) {
    throw new RangeError(`control page index ${n} is outside 0..${CONTROL_PAGE_MAX - 1}`);
  }
  let out = controlPageCache[n];
  if (out === undefined) {
    const delta = CONTROL_PAGE_REG_STRIDE * n;
    out = Object.freeze(CONTROL_PAGE_TEMPLATES.map((t) => withIndex(t, n, t.offset + delta)));
    controlPageCache[n] = out;
  }
  return out;
}

function byOffset(a: RegisterSpec, b: RegisterSpec): number {
  return a.offset - b.offset;
}

/**
 * Every register of Page 0 and Page 1 in offset order: the fixed registers, the Page 0 alias rows,
 * the ID registers and the control-page registers for every n = 0..255 (whether a register is
 * there for a given feature set is `isPresent`).
 */
export const REGISTERS: readonly RegisterSpec[] = Object.freeze(
  [
    ...PAGE0_DEFS,
    ...PAGE0_ALIAS_DEFS,
    ...ID_REG_DEFS,
    ...Array.from({ length: CONTROL_PAGE_MAX }, (_, n) => controlPageRegisters(n)).flat(),
    ...PAGE1_DEFS,
  ].sort(byOffset),
);

/** SMMU_ECMDQ_BASE/PROD/CONS: offsets within an ECMDQ slot (§6.2.5). */
export const ECMDQ_SLOT_REGISTERS: readonly RegisterSpec[] = Object.freeze([...ECMDQ_SLOT_DEFS]);

// ---------------------------------------------------------------------------------------------
// Secure registers (§6.2.1): RES0 in this model (SMMU_S_IDR1.SECURE_IMPL == 0)
// ---------------------------------------------------------------------------------------------

const SECURE_FIXED: readonly (readonly [name: string, offset: number, width: 32 | 64, section: string])[] = [
  ['SMMU_S_IDR0', 0x8000, 32, '§6.3.52'],
  ['SMMU_S_IDR1', 0x8004, 32, '§6.3.53'],
  ['SMMU_S_IDR2', 0x8008, 32, '§6.3.54'],
  ['SMMU_S_IDR3', 0x800c, 32, '§6.3.55'],
  ['SMMU_S_IDR4', 0x8010, 32, '§6.3.56'],
  ['SMMU_S_CR0', 0x8020, 32, '§6.3.57'],
  ['SMMU_S_CR0ACK', 0x8024, 32, '§6.3.58'],
  ['SMMU_S_CR1', 0x8028, 32, '§6.3.59'],
  ['SMMU_S_CR2', 0x802c, 32, '§6.3.60'],
  ['SMMU_S_S2PII', 0x8030, 64, '§6.3.61'],
  ['SMMU_S_INIT', 0x803c, 32, '§6.3.62'],
  ['SMMU_S_GBPA', 0x8044, 32, '§6.3.63'],
  ['SMMU_S_AGBPA', 0x8048, 32, '§6.3.64'],
  ['SMMU_S_IRQ_CTRL', 0x8050, 32, '§6.3.65'],
  ['SMMU_S_IRQ_CTRLACK', 0x8054, 32, '§6.3.66'],
  ['SMMU_S_GERROR', 0x8060, 32, '§6.3.67'],
  ['SMMU_S_GERRORN', 0x8064, 32, '§6.3.68'],
  ['SMMU_S_GERROR_IRQ_CFG0', 0x8068, 64, '§6.3.69'],
  ['SMMU_S_GERROR_IRQ_CFG1', 0x8070, 32, '§6.3.70'],
  ['SMMU_S_GERROR_IRQ_CFG2', 0x8074, 32, '§6.3.71'],
  ['SMMU_S_STRTAB_BASE', 0x8080, 64, '§6.3.72'],
  ['SMMU_S_STRTAB_BASE_CFG', 0x8088, 32, '§6.3.73'],
  ['SMMU_S_CMDQ_BASE', 0x8090, 64, '§6.3.74'],
  ['SMMU_S_CMDQ_PROD', 0x8098, 32, '§6.3.75'],
  ['SMMU_S_CMDQ_CONS', 0x809c, 32, '§6.3.76'],
  ['SMMU_S_EVENTQ_BASE', 0x80a0, 64, '§6.3.77'],
  ['SMMU_S_EVENTQ_PROD', 0x80a8, 32, '§6.3.78'],
  ['SMMU_S_EVENTQ_CONS', 0x80ac, 32, '§6.3.79'],
  ['SMMU_S_EVENTQ_IRQ_CFG0', 0x80b0, 64, '§6.3.80'],
  ['SMMU_S_EVENTQ_IRQ_CFG1', 0x80b8, 32, '§6.3.81'],
  ['SMMU_S_EVENTQ_IRQ_CFG2', 0x80bc, 32, '§6.3.82'],
  ['SMMU_S_GATOS_CTRL', 0x8100, 32, '§6.3.83'],
  ['SMMU_S_GATOS_SID', 0x8108, 64, '§6.3.84'],
  ['SMMU_S_GATOS_ADDR', 0x8110, 64, '§6.3.85'],
  ['SMMU_S_GATOS_PAR', 0x8118, 64, '§6.3.86'],
  ['SMMU_S_MPAMIDR', 0x8130, 32, '§6.3.87'],
  ['SMMU_S_GMPAM', 0x8138, 32, '§6.3.88'],
  ['SMMU_S_GBPMPAM', 0x813c, 32, '§6.3.89'],
  ['SMMU_S_VATOS_SEL', 0x8180, 32, '§6.3.90'],
  ['SMMU_S_IDR6', 0x8190, 32, '§6.3.91'],
];

/** SMMU_S_CMDQ_CONTROL_PAGE_{BASE,CFG,STATUS}<n> at 0xC000 + 32n (§6.2.1, §6.3.92-94). */
const SECURE_CONTROL_PAGE: readonly (readonly [name: string, offset: number, width: 32 | 64, section: string])[] = [
  ['SMMU_S_CMDQ_CONTROL_PAGE_BASE', 0xc000, 64, '§6.3.92'],
  ['SMMU_S_CMDQ_CONTROL_PAGE_CFG', 0xc008, 32, '§6.3.93'],
  ['SMMU_S_CMDQ_CONTROL_PAGE_STATUS', 0xc00c, 32, '§6.3.94'],
];

const SECURE_DOC = 'Secure programming interface: not implemented by this model (SECURE_IMPL == 0), RAZ/WI';

function secureReg(name: string, offset: number, width: 32 | 64, section: string, n?: number): RegisterSpec {
  return Object.freeze({
    name, page: 'secure', offset, width, access: 'RAZ/WI', reset: width === 64 ? 0n : 0, fields: [], section, doc: SECURE_DOC,
    ...(n === undefined ? {} : { n }),
  } satisfies RegisterSpec);
}

/** The Secure registers (0x8000..), all RAZ/WI here, in offset order, control pages n = 0..255 included. */
export const SECURE_REGISTERS: readonly RegisterSpec[] = Object.freeze([
  ...SECURE_FIXED.map(([name, offset, width, section]) => secureReg(name, offset, width, section)),
  ...Array.from({ length: CONTROL_PAGE_MAX }, (_, n) =>
    SECURE_CONTROL_PAGE.map(([name, offset, width, section]) =>
      secureReg(`${name}${n}`, offset + CONTROL_PAGE_REG_STRIDE * n, width, section, n),
    ),
  ).flat(),
]);

// ---------------------------------------------------------------------------------------------
// Presence, window and ECMDQ geometry
// ---------------------------------------------------------------------------------------------

/** Whether `spec` is present for `f`; an absent register reads as zero and ignores writes (RES0). */
export function isPresent(spec: RegisterSpec, f: SmmuFeatures): boolean {
  switch (spec.present) {
    case undefined:
      return true;
    case 'IDR0.PRI == 1':
      return f.pri;
    case 'IDR0.MSI == 1':
      return f.msi;
    case 'IDR0.MSI == 1 && IDR0.PRI == 1':
      return f.msi && f.pri;
    // The model implements neither ATOS nor VATOS nor stage 2 permission indirection.
    case 'IDR0.ATOS == 1':
    case 'IDR0.VATOS == 1':
    case 'IDR3.S2PI == 1':
      return false;
    case 'IDR1.ECMDQ == 1':
      return f.ecmdq;
    case 'IDR1.ECMDQ == 1 && n < 2^IDR6.CMDQ_CONTROL_PAGE_LOG2NUMP':
      return f.ecmdq && (spec.n ?? 0) < 1 << f.ecmdqLog2NumP;
    case 'IDR3.MPAM == 1':
      return f.mpam;
    case 'IDR3.DPT == 1':
      return f.dpt;
  }
}

/** Number of Command queue control pages (0 without ECMDQ). */
export function controlPageCount(f: SmmuFeatures): number {
  return f.ecmdq ? 1 << f.ecmdqLog2NumP : 0;
}

/** Offset of Command queue control page p from the SMMU base (model choice, see the file header). */
export function controlPageOffset(p: number): number {
  return ECMDQ_CONTROL_PAGE_BASE + p * SMMU_PAGE_SIZE;
}

/**
 * The value of SMMU_CMDQ_CONTROL_PAGE_BASE<p> (§6.3.49): ADDR = the page's offset from Page 0,
 * CMDQGS = 64KB, CMDQ_CONTROL_PAGE_PRESET = 1. Below 2^32 for every p, so a number.
 */
export function controlPageBaseValue(p: number): number {
  const f = REG.SMMU_CMDQ_CONTROL_PAGE_BASE.f;
  return (
    (controlPageOffset(p) |
      (CMDQGS_64KB << f.CMDQGS.lsb) |
      (1 << f.CMDQ_CONTROL_PAGE_PRESET.lsb)) >>>
    0
  );
}

/** Byte distance between the ECMDQ slots of a control page: 64 KiB / 2^LOG2NUMQ (§6.2.5). */
export function ecmdqStride(f: SmmuFeatures): number {
  return SMMU_PAGE_SIZE >>> f.ecmdqLog2NumQ;
}

export type EcmdqRegister = 'BASE' | 'PROD' | 'CONS';

const ECMDQ_SLOT_OFFSET: Readonly<Record<EcmdqRegister, number>> = {
  BASE: REG.SMMU_ECMDQ_BASE.offset,
  PROD: REG.SMMU_ECMDQ_PROD.offset,
  CONS: REG.SMMU_ECMDQ_CONS.offset,
};

/**
 * Absolute offset (from the SMMU base) of SMMU_ECMDQ_{BASE,PROD,CONS} of ECMDQ `n`, where n counts
 * every ECMDQ of every control page: queue q of page p is n = p * 2^LOG2NUMQ + q (the spec numbers
 * ECMDQs per page; the global index is this model's convention).
 */
export function ecmdqRegisterOffset(f: SmmuFeatures, n: number, which: EcmdqRegister): number {
  const count = ecmdqCount(f);
  if (!Number.isInteger(n) || n < 0 || n >= count) {
    throw new RangeError(`ECMDQ ${n} does not exist (the features give ${count} ECMDQs)`);
  }
  const page = n >>> f.ecmdqLog2NumQ;
  const slot = n & (lowMask(f.ecmdqLog2NumQ));
  return controlPageOffset(page) + slot * ecmdqStride(f) + ECMDQ_SLOT_OFFSET[which];
}

/**
 * The ECMDQ register at an absolute offset, or undefined. Offsets in a slot beyond its 16 bytes,
 * or in a page beyond the last ECMDQ, hold nothing (RES0).
 */
export function ecmdqRegisterAt(f: SmmuFeatures, offset: number): { spec: RegisterSpec; n: number } | undefined {
  const pages = controlPageCount(f);
  if (pages === 0 || offset < ECMDQ_CONTROL_PAGE_BASE || offset >= controlPageOffset(pages)) return undefined;
  const inWindow = offset - ECMDQ_CONTROL_PAGE_BASE;
  const page = Math.floor(inWindow / SMMU_PAGE_SIZE);
  const inPage = inWindow % SMMU_PAGE_SIZE;
  const stride = ecmdqStride(f);
  const slot = Math.floor(inPage / stride);
  const inSlot = inPage % stride;
  const spec = ECMDQ_SLOT_REGISTERS.find((r) => inSlot >= r.offset && inSlot < r.offset + r.width / 8);
  if (spec === undefined) return undefined;
  return { spec, n: (page << f.ecmdqLog2NumQ) + slot };
}

/** Size of the register window the model maps: Page 0, Page 1 and the ECMDQ control pages. */
export function smmuRegWindow(f: SmmuFeatures): number {
  return SMMU_BASE_WINDOW + controlPageCount(f) * SMMU_PAGE_SIZE;
}

/** The same as `smmuRegWindow`, under the constant-style name the rest of the project uses. */
export const SMMU_REG_WINDOW: (f: SmmuFeatures) => number = smmuRegWindow;

// ---------------------------------------------------------------------------------------------
// Lookup
// ---------------------------------------------------------------------------------------------

function normName(s: string): string {
  const u = s.trim().toUpperCase().replace(/[<>]/g, '');
  return u.startsWith('SMMU_') ? u.slice('SMMU_'.length) : u;
}

const BY_NAME = new Map<string, RegisterSpec>();
for (const r of [...REGISTERS, ...ECMDQ_SLOT_REGISTERS, ...CONTROL_PAGE_TEMPLATES, ...SECURE_REGISTERS]) {
  const k = normName(r.name);
  if (!BY_NAME.has(k)) BY_NAME.set(k, r);
}
const BY_OFFSET: readonly RegisterSpec[] = Object.freeze([...REGISTERS, ...SECURE_REGISTERS].sort(byOffset));

/**
 * A register by name (case-insensitive, with or without the SMMU_ prefix, `<n>` brackets allowed:
 * `cmdq_prod`, `SMMU_CMDQ_CONTROL_PAGE_BASE<3>`) or by an absolute offset of Page 0, Page 1 or the
 * Secure block (any byte of the register: 0x84 finds SMMU_STRTAB_BASE). The control-page templates
 * (`SMMU_CMDQ_CONTROL_PAGE_BASE` without n) resolve to n = 0; ECMDQ slot names resolve to the slot
 * layout (use `ecmdqRegisterOffset` / `ecmdqRegisterAt` for their addresses).
 */
export function findRegister(nameOrOffset: string | number): RegisterSpec | undefined {
  if (typeof nameOrOffset === 'number') {
    let lo = 0;
    let hi = BY_OFFSET.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const r = BY_OFFSET[mid]!;
      if (nameOrOffset < r.offset) hi = mid - 1;
      else if (nameOrOffset >= r.offset + r.width / 8) lo = mid + 1;
      else return r;
    }
    return undefined;
  }
  return BY_NAME.get(normName(nameOrOffset));
}

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

/** The value the model loads into `spec` at reset (UNKNOWN and IMPLEMENTATION DEFINED bits: model choice, else 0). */
export function modelResetValue(spec: RegisterSpec): number | bigint {
  if (spec.modelReset !== undefined) return spec.modelReset;
  if (spec.reset !== undefined) return spec.reset;
  return spec.width === 64 ? 0n : 0;
}

/**
 * Read field `f` (stored bits, no shift) from the 32-bit half of a register that holds it: `v` is
 * the word at offset + 4 * floor(f.lsb / 32). For hot paths; the field must not straddle the halves.
 */
export function regGet(v: number, f: Field): number {
  return ((v >>> (f.lsb & 31)) & lowMask(f.width)) >>> 0;
}

/** `v` with field `f` (stored bits, no shift) replaced by `x`; the counterpart of `regGet`. */
export function regSet(v: number, f: Field, x: number): number {
  const s = f.lsb & 31;
  const m = (lowMask(f.width) << s) >>> 0;
  return ((v & ~m) | ((x << s) & m)) >>> 0;
}

type FieldsOf<R> = R extends { readonly f: infer F } ? keyof F : string;

/**
 * Encode named field values into a 32-bit register value (unknown names and values that do not fit
 * throw a RangeError naming the field).
 */
export function encode32<R extends RegisterSpec>(spec: R, values: Partial<Readonly<Record<FieldsOf<R> & string, FieldValue>>>): number {
  if (spec.width !== 32) throw new RangeError(`${spec.name} is a 64-bit register; use encode64`);
  const w = new Uint32Array(1);
  encodeInto(spec, values, w);
  return w[0]!;
}

/** Encode named field values into a 64-bit register value (API edge: bigint). */
export function encode64<R extends RegisterSpec>(spec: R, values: Partial<Readonly<Record<FieldsOf<R> & string, FieldValue>>>): bigint {
  const w = new Uint32Array(2);
  encodeInto(spec, values, w);
  return (BigInt(w[1]!) << 32n) | BigInt(w[0]!);
}

function encodeInto(spec: RegisterSpec, values: Readonly<Record<string, FieldValue | undefined>>, w: Uint32Array): void {
  for (const [name, value] of Object.entries(values)) {
    if (value === undefined) continue;
    const f = spec.fields.find((x) => x.name === name);
    if (f === undefined) {
      throw new RangeError(`${spec.name} has no field ${name} (fields: ${spec.fields.map((x) => x.name).join(', ')})`);
    }
    const err = fieldFitError(f, value);
    if (err !== undefined) throw new RangeError(`${spec.name}.${err}`);
    fieldSet(w, f, value);
  }
}

/** Every field of a register value, by name (API edge; 64-bit values as bigint). */
export function decodeRegister(spec: RegisterSpec, value: number | bigint): Record<string, FieldValue> {
  const v = BigInt(value);
  const w = Uint32Array.of(Number(v & 0xffff_ffffn), Number((v >> 32n) & 0xffff_ffffn));
  const out: Record<string, FieldValue> = {};
  for (const f of spec.fields) out[f.name] = fieldGet(w, f);
  return out;
}

/** The bits of a register that no field defines (RES0), as a mask: number for 32-bit, bigint for 64-bit. */
export function res0Mask(spec: RegisterSpec): number | bigint {
  let m = 0n;
  for (const f of spec.fields) m |= ((1n << BigInt(f.width)) - 1n) << BigInt(f.lsb);
  const all = (1n << BigInt(spec.width)) - 1n;
  const r = all & ~m;
  return spec.width === 32 ? Number(r) : r;
}
