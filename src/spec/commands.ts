/**
 * The SMMUv3 command table: every opcode of IHI0070 G.b §4.1.1 with its field layout.
 *
 * A command is 16 bytes, little-endian (§4.1.1): dword 0 is bits [63:0], dword 1 bits [127:64].
 * Positions are flat bit numbers over the 128-bit command, as the spec prints them. Every bit a
 * command's table does not name is RES0 (§4.1.5).
 *
 * Most command bit diagrams in the machine-readable spec are images. Where a position could not be
 * read from spec text it comes from the fact sheet (shared/reference/smmuv3.md §4.2–§4.3, which
 * cross-checks Linux, QEMU, EDK2, gem5 and FreeBSD) and the field is listed in the command's
 * `unverified` member. Positions the fact sheet leaves open (PREFETCH_ADDR Stride/NS, CMD_SYNC
 * MSI_NS, TLBI_S_S2_IPA NS, DPTI_PA SIZE/Leaf) say at their definition where they come from. The
 * range-invalidation fields NUM, SCALE, TG, TTL and TTL128 are verified: §4.4.1.1 prints their
 * positions as a text table. MSIAddress is verified as [55:2] of the address by §4.7.3, not its place.
 *
 * Field names are the spec's. A few fields exist in many commands under one canonical name so that
 * code can ask for them by name in any command: Opcode, SSec, SSV, SubstreamID, StreamID, VMID,
 * ASID, NUM, SCALE, Leaf, TTL128, TTL, TG, Address, Range, Size, Stride, NS, Global, PRGIndex, Resp,
 * Ac, Ab, STAG, CS, MSH, MSIAttr, MSIData, MSIAddress, MSI_NS.
 */

import type { Field, Layout } from './bits.ts';

/** A field of a command, with how the disassembler prints it. */
export interface CommandField extends Field {
  /** Printed name: vmid, asid, sid, ssid, addr, leaf, tg, num, scale, ttl … */
  readonly short: string;
  /** hex: ids, addresses, payloads; dec: counts and exponents; enum: by value name; flag: 0/1. */
  readonly fmt: 'hex' | 'dec' | 'enum' | 'flag';
  /** Printed even when 0 (the value 0 means something, e.g. VMID 0). */
  readonly always?: boolean;
}

export type CommandClass = 'architected' | 'secure' | 'dpti' | 'impdef' | 'reserved';

export interface CommandSpec extends Layout {
  readonly opcode: number;
  /** The spec's name, e.g. 'CMD_TLBI_NH_VA'; RESERVED_0xNN and CMD_IMPDEF_0xNN otherwise. */
  readonly name: string;
  readonly cls: CommandClass;
  readonly fields: readonly CommandField[];
  /** The spec section that defines the command, e.g. '4.4.2.4'. */
  readonly section: string;
  /** Fields whose positions could not be checked against spec text (bit diagram is an image). */
  readonly unverified?: readonly string[];
  /** Linux's name for the opcode where it differs (CMDQ_OP_*). */
  readonly linux?: string;
}

/** Size of every command in bytes (§4.1.1). */
export const COMMAND_BYTES = 16;
/** Size of every command in u32 words. */
export const COMMAND_WORDS = COMMAND_BYTES / 4;

// ---------------------------------------------------------------------------------------------
// Enumerations
// ---------------------------------------------------------------------------------------------

/** CMD_SYNC ComplSignal (CS) encodings (§4.7.3). 0b11 is Reserved and raises CERROR_ILL. */
export const CS_VALUES: Readonly<Record<number, string>> = Object.freeze({
  0: 'SIG_NONE',
  1: 'SIG_IRQ',
  2: 'SIG_SEV',
  3: 'Reserved',
});
export const CS_SIG_NONE = 0;
export const CS_SIG_IRQ = 1;
export const CS_SIG_SEV = 2;

/**
 * TLBI Translation Granule (TG) encodings (§4.4.1.1). 0 means "any granule": no range
 * invalidation and no TTL hint. Note the encoding differs from CD.TG0/TG1 and STE.S2TG.
 */
export const TG_VALUES: Readonly<Record<number, string>> = Object.freeze({
  0: 'none',
  1: '4K',
  2: '16K',
  3: '64K',
});

/** CMD_PRI_RESP Resp encodings (§4.5.2). 0b11 is Reserved: ILLEGAL. */
export const RESP_VALUES: Readonly<Record<number, string>> = Object.freeze({
  0: 'ResponseFailure',
  1: 'InvalidRequest',
  2: 'Success',
  3: 'Reserved',
});

/** CMD_SYNC MSH shareability encodings (§4.7.3). 0b01 is Reserved, treated as 0b00. */
export const MSH_VALUES: Readonly<Record<number, string>> = Object.freeze({
  0: 'NSH',
  1: 'Reserved',
  2: 'OSH',
  3: 'ISH',
});

/** CMD_DPTI_PA SIZE encodings (§4.6.2); 0b1010..0b1111 are Reserved. */
export const DPTI_SIZE_VALUES: Readonly<Record<number, string>> = Object.freeze({
  0: '4KB',
  1: '16KB',
  2: '64KB',
  3: '2MB',
  4: '32MB',
  5: '512MB',
  6: '1GB',
  7: '16GB',
  8: '64GB',
  9: '512GB',
});

// ---------------------------------------------------------------------------------------------
// Field definitions shared by many commands (§4.1.6, §4.4.1.1)
// ---------------------------------------------------------------------------------------------

type Fmt = CommandField['fmt'];
interface FieldOpts {
  shift?: number;
  values?: Readonly<Record<number, string>>;
  linux?: string;
  doc?: string;
  always?: boolean;
}

function fld(name: string, lsb: number, width: number, short: string, fmt: Fmt, o: FieldOpts = {}): CommandField {
  const out: { -readonly [K in keyof CommandField]?: CommandField[K] } = { name, lsb, width, short, fmt };
  if (o.shift !== undefined) out.shift = o.shift;
  if (o.values !== undefined) out.values = o.values;
  if (o.linux !== undefined) out.linux = o.linux;
  if (o.doc !== undefined) out.doc = o.doc;
  if (o.always === true) out.always = true;
  return Object.freeze(out as CommandField);
}

/** Opcode [7:0], present in every command (§4.1.1). */
const OPCODE = fld('Opcode', 0, 8, 'op', 'hex', { linux: 'CMDQ_0_OP', doc: 'Command opcode' });
/** SSec [10]: the StreamID is Secure; must be 0 on the Non-secure and Realm queues (§4.1.6). */
const SSEC = fld('SSec', 10, 1, 'ssec', 'flag', { doc: 'StreamID is Secure' });
/** SSV [11]: SubstreamID supplied (§4.1.6). */
const SSV = fld('SSV', 11, 1, 'ssv', 'flag', { linux: 'CMDQ_0_SSV', doc: 'SubstreamID valid' });
/** SubstreamID [31:12], 20 bits (§4.1.6, IDR1.SSIDSIZE ≤ 20). */
const SUBSTREAMID = fld('SubstreamID', 12, 20, 'ssid', 'hex', { linux: 'CMDQ_*_0_SSID', doc: 'SubstreamID' });
/** StreamID [63:32], 32 bits. */
const STREAMID = fld('StreamID', 32, 32, 'sid', 'hex', { linux: 'CMDQ_*_0_SID', doc: 'StreamID', always: true });
/** VMID [47:32]; bits [15:8] RES0 without IDR0.VMID16. */
const VMID = fld('VMID', 32, 16, 'vmid', 'hex', { linux: 'CMDQ_TLBI_0_VMID', doc: 'Virtual machine identifier', always: true });
/** ASID [63:48]; bits [15:8] RES0 without IDR0.ASID16. */
const ASID = fld('ASID', 48, 16, 'asid', 'hex', { linux: 'CMDQ_TLBI_0_ASID', doc: 'Address space identifier', always: true });
/** NUM [16:12]: range multiplier minus one (§4.4.1.1, text table). */
const NUM = fld('NUM', 12, 5, 'num', 'dec', { linux: 'CMDQ_TLBI_0_NUM', doc: 'Range invalidation granule multiplier (count - 1)' });
/**
 * SCALE [25:20] (§4.4.1.1, text table): 6 bits when IDR5.DS == 1, else 5 bits [24:20] with bit 25
 * RES0. The table holds the 6-bit form; the legality check applies IDR5.DS.
 */
const SCALE = fld('SCALE', 20, 6, 'scale', 'dec', { linux: 'CMDQ_TLBI_0_SCALE', doc: 'Range invalidation scale (power of two)' });
/** Leaf [64]: only last-level entries need invalidating. */
const LEAF = fld('Leaf', 64, 1, 'leaf', 'flag', { linux: 'CMDQ_*_1_LEAF', doc: 'Invalidate last-level entries only' });
/** TTL128 [71] (§4.4.1.1, text table). */
const TTL128 = fld('TTL128', 71, 1, 'ttl128', 'flag', { doc: 'TTL hint applies to 128-bit descriptor regimes' });
/** TTL [73:72] (§4.4.1.1, text table). */
const TTL = fld('TTL', 72, 2, 'ttl', 'dec', { linux: 'CMDQ_TLBI_1_TTL', doc: 'Translation table level hint of the leaf' });
/** TG [75:74] (§4.4.1.1, text table). */
const TG = fld('TG', 74, 2, 'tg', 'enum', { values: TG_VALUES, linux: 'CMDQ_TLBI_1_TG', doc: 'Translation granule of the entries' });
/** Virtual address fields: Address[63:12] at [127:76] (§4.1.6). */
const VA = fld('Address', 76, 52, 'addr', 'hex', {
  shift: 12,
  linux: 'CMDQ_TLBI_1_VA_MASK',
  doc: 'Virtual address [63:12]; [11:0] taken as zero',
  always: true,
});
/** Physical or IPA address fields: Address[55:12] at [119:76] (§4.1.6). */
const IPA = fld('Address', 76, 44, 'addr', 'hex', {
  shift: 12,
  linux: 'CMDQ_TLBI_1_IPA_MASK',
  doc: 'IPA [55:12]; [11:0] taken as zero; [55:52] RES0 in SMMUv3.1-3.3',
  always: true,
});
const PA = fld('Address', 76, 44, 'addr', 'hex', {
  shift: 12,
  doc: 'Physical address [55:12]; [11:0] taken as zero; bits above OAS treated as zero',
  always: true,
});

/** The fields every address-based TLBI carries after its identifiers, in printing order. */
const RANGE_FIELDS = [LEAF, TG, NUM, SCALE, TTL, TTL128] as const;
const RANGE_NAMES = RANGE_FIELDS.map((f) => f.name);

// ---------------------------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------------------------

interface Def {
  opcode: number;
  name: string;
  cls: CommandClass;
  section: string;
  fields: readonly CommandField[];
  unverified?: readonly string[];
  linux?: string;
}

function cmd(d: Def): CommandSpec {
  const out: { -readonly [K in keyof CommandSpec]?: CommandSpec[K] } = {
    opcode: d.opcode,
    name: d.name,
    cls: d.cls,
    bytes: COMMAND_BYTES,
    section: d.section,
    fields: Object.freeze([OPCODE, ...d.fields]),
  };
  if (d.unverified !== undefined && d.unverified.length > 0) out.unverified = Object.freeze([...d.unverified]);
  if (d.linux !== undefined) out.linux = d.linux;
  return Object.freeze(out as CommandSpec);
}

/** CMD_PREFETCH_ADDR Size [68:64]: 2^Size translations at the stride (§4.2.2; position per Linux). */
const PREFETCH_SIZE = fld('Size', 64, 5, 'size', 'dec', { linux: 'CMDQ_PREFETCH_1_SIZE', doc: 'Prefetch 2^Size translations', always: true });
/**
 * CMD_PREFETCH_ADDR Stride [73:69]: stride of 2^(12+Stride) bytes; RES0 in SMMUv3.0 (§4.2.2).
 * Position per Renode's model and a Qualcomm HAL (the fact sheet leaves it open).
 */
const PREFETCH_STRIDE = fld('Stride', 69, 5, 'stride', 'dec', { doc: 'Prefetch stride 2^(12+Stride) bytes' });
/** CMD_PREFETCH_ADDR NS [75]: NS attribute for Secure stage 2 (§4.2.2). Position per Renode's model. */
const PREFETCH_NS = fld('NS', 75, 1, 'ns', 'flag', { doc: 'NS input attribute for Secure stage 2' });
const PREFETCH_ADDR = fld('Address', 76, 52, 'addr', 'hex', {
  shift: 12,
  linux: 'CMDQ_PREFETCH_1_ADDR_MASK',
  doc: 'Input address [63:12]',
  always: true,
});

/** CMD_CFGI_STE_RANGE Range [68:64]: invalidate 2^(Range+1) StreamIDs; 31 = all (§4.3.2, §4.3.6). */
const CFGI_RANGE = fld('Range', 64, 5, 'range', 'dec', { linux: 'CMDQ_CFGI_1_RANGE', doc: 'Invalidate 2^(Range+1) StreamIDs', always: true });
/** The Range value that makes CMD_CFGI_STE_RANGE into CMD_CFGI_ALL (§4.3.6). */
export const CFGI_ALL_RANGE = 31;

/** CMD_ATC_INV Global [9] (§4.5.1). */
const ATC_GLOBAL = fld('Global', 9, 1, 'global', 'flag', { linux: 'CMDQ_ATC_0_GLOBAL', doc: 'Global Invalidate flag (with SSV)' });
/** CMD_ATC_INV Size [69:64]: span 4096 * 2^Size; 52 = all (§4.5.1). */
const ATC_SIZE = fld('Size', 64, 6, 'size', 'dec', { linux: 'CMDQ_ATC_1_SIZE', doc: 'Span 4KB * 2^Size; 52 = everything', always: true });
/** The ATC_INV Size meaning "invalidate all": a 2^64-byte span (§4.5.1). */
export const ATC_INV_SIZE_ALL = 52;
const ATC_ADDR = fld('Address', 76, 52, 'addr', 'hex', {
  shift: 12,
  linux: 'CMDQ_ATC_1_ADDR_MASK',
  doc: 'Untranslated address [63:12]',
  always: true,
});

/** CMD_PRI_RESP PRGIndex [72:64] (§4.5.2; position per Linux). */
const PRI_PRGINDEX = fld('PRGIndex', 64, 9, 'prgi', 'hex', { linux: 'CMDQ_PRI_1_GRPID', doc: 'Page Request Group Index', always: true });
/** CMD_PRI_RESP Resp [77:76] (§4.5.2; position per Linux, QEMU's unused macro says [76:75]). */
const PRI_RESP = fld('Resp', 76, 2, 'resp', 'enum', { values: RESP_VALUES, linux: 'CMDQ_PRI_1_RESP', doc: 'PRI response code', always: true });

/** CMD_RESUME Ac [12]: 1 retry, 0 terminate (§4.7.1). Linux folds Ac/Ab into a 2-bit RESP [13:12]. */
const RESUME_AC = fld('Ac', 12, 1, 'ac', 'flag', { linux: 'CMDQ_RESUME_0_RESP (bit 0)', doc: 'Action: 1 retry, 0 terminate' });
/** CMD_RESUME Ab [13]: on terminate, 1 abort, 0 RAZ/WI (§4.7.1). */
const RESUME_AB = fld('Ab', 13, 1, 'ab', 'flag', { linux: 'CMDQ_RESUME_0_RESP (bit 1)', doc: 'Abort on terminate' });
/** CMD_RESUME STAG [79:64] (§4.7.1). */
const RESUME_STAG = fld('STAG', 64, 16, 'stag', 'hex', { linux: 'CMDQ_RESUME_1_STAG', doc: 'Stall tag from the event record', always: true });

/** CMD_SYNC CS [13:12] (§4.7.3). */
const SYNC_CS = fld('CS', 12, 2, 'cs', 'enum', { values: CS_VALUES, linux: 'CMDQ_SYNC_0_CS', doc: 'Completion signal', always: true });
/** CMD_SYNC MSH [23:22] (§4.7.3). */
const SYNC_MSH = fld('MSH', 22, 2, 'msh', 'enum', { values: MSH_VALUES, linux: 'CMDQ_SYNC_0_MSH', doc: 'MSI shareability' });
/** CMD_SYNC MSIAttr [27:24], STE.MemAttr encoding (§4.7.3). */
const SYNC_MSIATTR = fld('MSIAttr', 24, 4, 'msiattr', 'hex', { linux: 'CMDQ_SYNC_0_MSIATTR', doc: 'MSI memory attributes (STE.MemAttr encoding)' });
/** CMD_SYNC MSIData [63:32] (§4.7.3). */
const SYNC_MSIDATA = fld('MSIData', 32, 32, 'msidata', 'hex', { linux: 'CMDQ_SYNC_0_MSIDATA', doc: 'MSI payload' });
/** CMD_SYNC MSIAddress[55:2] at [119:66] (§4.7.3, §4.1.6). */
const SYNC_MSIADDR = fld('MSIAddress', 66, 54, 'msiaddr', 'hex', {
  shift: 2,
  linux: 'CMDQ_SYNC_1_MSIADDR_MASK',
  doc: 'MSI target PA [55:2]; 0 = no MSI',
});
/**
 * CMD_SYNC MSI_NS: MSI target PA space on a Realm queue; RES0 elsewhere (§4.7.3). The figure is an
 * image; bit 127 follows Antmicro Renode's SMMUv3 model, the only source found that places it.
 */
const SYNC_MSI_NS = fld('MSI_NS', 127, 1, 'msi_ns', 'flag', { doc: 'Realm queue: MSI to Non-secure PA space' });

/**
 * CMD_TLBI_S_S2_IPA NS: the IPA is Non-secure (§4.4.3.3). The figure is an image; bit 65 (dword 1
 * bit 1, next to Leaf) follows a Qualcomm SMMUv3 HAL, the only source found that places it.
 */
const S_S2_NS = fld('NS', 65, 1, 'ns', 'flag', { doc: 'Address is a Non-secure IPA' });

/**
 * CMD_DPTI_PA SIZE (§4.6.2; the spec spells it SIZE). No source places SIZE and Leaf: the figure is
 * an image. Leaf takes bit 64 as in every other command with a Leaf; SIZE the nibble [71:68] below
 * the address. Both are listed as unverified.
 */
const DPTI_SIZE = fld('Size', 68, 4, 'size', 'enum', { values: DPTI_SIZE_VALUES, doc: 'Region size (spec: SIZE)', always: true });
/** CMD_DPTI_PA Leaf (§4.6.2). */
const DPTI_LEAF = fld('Leaf', 64, 1, 'leaf', 'flag', { doc: 'Final level of lookup only' });

const S = 'architected' as const;

/** Every named command, in opcode order; CMD_CFGI_ALL directly after CMD_CFGI_STE_RANGE. */
export const COMMANDS: readonly CommandSpec[] = Object.freeze([
  cmd({
    opcode: 0x01, name: 'CMD_PREFETCH_CONFIG', cls: S, section: '4.2.1', linux: 'CMDQ_OP_PREFETCH_CFG',
    fields: [STREAMID, SUBSTREAMID, SSV, SSEC],
    unverified: ['SSec', 'SSV', 'SubstreamID', 'StreamID'],
  }),
  cmd({
    opcode: 0x02, name: 'CMD_PREFETCH_ADDR', cls: S, section: '4.2.2',
    fields: [STREAMID, SUBSTREAMID, SSV, SSEC, PREFETCH_ADDR, PREFETCH_NS, PREFETCH_SIZE, PREFETCH_STRIDE],
    unverified: ['SSec', 'SSV', 'SubstreamID', 'StreamID', 'Address', 'NS', 'Size', 'Stride'],
  }),
  cmd({
    opcode: 0x03, name: 'CMD_CFGI_STE', cls: S, section: '4.3.1',
    fields: [STREAMID, SSEC, LEAF],
    unverified: ['SSec', 'StreamID', 'Leaf'],
  }),
  cmd({
    opcode: 0x04, name: 'CMD_CFGI_STE_RANGE', cls: S, section: '4.3.2', linux: 'CMDQ_OP_CFGI_ALL (with Range 31)',
    fields: [STREAMID, SSEC, CFGI_RANGE],
    unverified: ['SSec', 'StreamID', 'Range'],
  }),
  cmd({
    opcode: 0x04, name: 'CMD_CFGI_ALL', cls: S, section: '4.3.6', linux: 'CMDQ_OP_CFGI_ALL',
    fields: [STREAMID, SSEC, CFGI_RANGE],
    unverified: ['SSec', 'StreamID', 'Range'],
  }),
  cmd({
    opcode: 0x05, name: 'CMD_CFGI_CD', cls: S, section: '4.3.3',
    fields: [STREAMID, SSEC, SUBSTREAMID, LEAF],
    unverified: ['SSec', 'SubstreamID', 'StreamID', 'Leaf'],
  }),
  cmd({
    opcode: 0x06, name: 'CMD_CFGI_CD_ALL', cls: S, section: '4.3.4',
    fields: [STREAMID, SSEC],
    unverified: ['SSec', 'StreamID'],
  }),
  cmd({
    opcode: 0x07, name: 'CMD_CFGI_VMS_PIDM', cls: S, section: '4.3.5',
    fields: [SSEC, VMID],
    unverified: ['SSec', 'VMID'],
  }),
  cmd({ opcode: 0x10, name: 'CMD_TLBI_NH_ALL', cls: S, section: '4.4.2.1', fields: [VMID], unverified: ['VMID'] }),
  cmd({ opcode: 0x11, name: 'CMD_TLBI_NH_ASID', cls: S, section: '4.4.2.2', fields: [VMID, ASID], unverified: ['VMID', 'ASID'] }),
  cmd({
    opcode: 0x12, name: 'CMD_TLBI_NH_VA', cls: S, section: '4.4.2.4',
    fields: [VMID, ASID, VA, ...RANGE_FIELDS],
    unverified: ['VMID', 'ASID', 'Address', 'Leaf'],
  }),
  cmd({
    opcode: 0x13, name: 'CMD_TLBI_NH_VAA', cls: S, section: '4.4.2.3',
    fields: [VMID, VA, ...RANGE_FIELDS],
    unverified: ['VMID', 'Address', 'Leaf'],
  }),
  cmd({ opcode: 0x18, name: 'CMD_TLBI_EL3_ALL', cls: S, section: '4.4.2.5', fields: [] }),
  cmd({
    opcode: 0x1a, name: 'CMD_TLBI_EL3_VA', cls: S, section: '4.4.2.6',
    fields: [VA, ...RANGE_FIELDS],
    unverified: ['Address', 'Leaf'],
  }),
  cmd({ opcode: 0x20, name: 'CMD_TLBI_EL2_ALL', cls: S, section: '4.4.2.7', fields: [] }),
  cmd({ opcode: 0x21, name: 'CMD_TLBI_EL2_ASID', cls: S, section: '4.4.2.10', fields: [ASID], unverified: ['ASID'] }),
  cmd({
    opcode: 0x22, name: 'CMD_TLBI_EL2_VA', cls: S, section: '4.4.2.8',
    fields: [ASID, VA, ...RANGE_FIELDS],
    unverified: ['ASID', 'Address', 'Leaf'],
  }),
  cmd({
    opcode: 0x23, name: 'CMD_TLBI_EL2_VAA', cls: S, section: '4.4.2.9',
    fields: [VA, ...RANGE_FIELDS],
    unverified: ['Address', 'Leaf'],
  }),
  cmd({ opcode: 0x28, name: 'CMD_TLBI_S12_VMALL', cls: S, section: '4.4.3.2', fields: [VMID], unverified: ['VMID'] }),
  cmd({
    opcode: 0x2a, name: 'CMD_TLBI_S2_IPA', cls: S, section: '4.4.3.1',
    fields: [VMID, IPA, ...RANGE_FIELDS],
    unverified: ['VMID', 'Address', 'Leaf'],
  }),
  cmd({ opcode: 0x30, name: 'CMD_TLBI_NSNH_ALL', cls: S, section: '4.4.4.1', fields: [] }),
  cmd({
    opcode: 0x40, name: 'CMD_ATC_INV', cls: S, section: '4.5.1',
    fields: [STREAMID, SUBSTREAMID, SSV, ATC_GLOBAL, ATC_ADDR, ATC_SIZE],
    unverified: ['SSV', 'SubstreamID', 'StreamID', 'Global', 'Address', 'Size'],
  }),
  cmd({
    opcode: 0x41, name: 'CMD_PRI_RESP', cls: S, section: '4.5.2',
    fields: [STREAMID, SUBSTREAMID, SSV, PRI_PRGINDEX, PRI_RESP],
    unverified: ['SSV', 'SubstreamID', 'StreamID', 'PRGIndex', 'Resp'],
  }),
  cmd({
    opcode: 0x44, name: 'CMD_RESUME', cls: S, section: '4.7.1',
    fields: [STREAMID, SSEC, RESUME_STAG, RESUME_AC, RESUME_AB],
    unverified: ['SSec', 'StreamID', 'STAG', 'Ac', 'Ab'],
  }),
  cmd({
    opcode: 0x45, name: 'CMD_STALL_TERM', cls: S, section: '4.7.2',
    fields: [STREAMID, SSEC],
    unverified: ['SSec', 'StreamID'],
  }),
  cmd({
    opcode: 0x46, name: 'CMD_SYNC', cls: S, section: '4.7.3', linux: 'CMDQ_OP_CMD_SYNC',
    fields: [SYNC_CS, SYNC_MSIADDR, SYNC_MSIDATA, SYNC_MSH, SYNC_MSIATTR, SYNC_MSI_NS],
    unverified: ['CS', 'MSH', 'MSIAttr', 'MSIData', 'MSIAddress', 'MSI_NS'],
  }),
  // Secure commands: "encoded similarly to" their Non-secure forms (§4.4.2.11–14, §4.4.3.3–4, §4.4.4.2).
  cmd({ opcode: 0x50, name: 'CMD_TLBI_S_EL2_ALL', cls: 'secure', section: '4.4.2.11', fields: [] }),
  cmd({ opcode: 0x51, name: 'CMD_TLBI_S_EL2_ASID', cls: 'secure', section: '4.4.2.14', fields: [ASID], unverified: ['ASID'] }),
  cmd({
    opcode: 0x52, name: 'CMD_TLBI_S_EL2_VA', cls: 'secure', section: '4.4.2.12',
    fields: [ASID, VA, ...RANGE_FIELDS],
    unverified: ['ASID', 'Address', 'Leaf'],
  }),
  cmd({
    opcode: 0x53, name: 'CMD_TLBI_S_EL2_VAA', cls: 'secure', section: '4.4.2.13',
    fields: [VA, ...RANGE_FIELDS],
    unverified: ['Address', 'Leaf'],
  }),
  cmd({ opcode: 0x58, name: 'CMD_TLBI_S_S12_VMALL', cls: 'secure', section: '4.4.3.4', fields: [VMID], unverified: ['VMID'] }),
  cmd({
    opcode: 0x5a, name: 'CMD_TLBI_S_S2_IPA', cls: 'secure', section: '4.4.3.3',
    fields: [VMID, IPA, S_S2_NS, ...RANGE_FIELDS],
    unverified: ['VMID', 'Address', 'Leaf', 'NS'],
  }),
  cmd({ opcode: 0x60, name: 'CMD_TLBI_SNH_ALL', cls: 'secure', section: '4.4.4.2', fields: [] }),
  cmd({ opcode: 0x70, name: 'CMD_DPTI_ALL', cls: 'dpti', section: '4.6.1', fields: [] }),
  cmd({
    opcode: 0x73, name: 'CMD_DPTI_PA', cls: 'dpti', section: '4.6.2',
    fields: [PA, DPTI_SIZE, DPTI_LEAF],
    unverified: ['Address', 'Size', 'Leaf'],
  }),
]);

/** Opcode of every named command (§4.1.1), plus CMD_CFGI_ALL (0x04 with Range 31, §4.3.6). */
export const OP = {
  CMD_PREFETCH_CONFIG: 0x01,
  CMD_PREFETCH_ADDR: 0x02,
  CMD_CFGI_STE: 0x03,
  CMD_CFGI_STE_RANGE: 0x04,
  CMD_CFGI_ALL: 0x04,
  CMD_CFGI_CD: 0x05,
  CMD_CFGI_CD_ALL: 0x06,
  CMD_CFGI_VMS_PIDM: 0x07,
  CMD_TLBI_NH_ALL: 0x10,
  CMD_TLBI_NH_ASID: 0x11,
  CMD_TLBI_NH_VA: 0x12,
  CMD_TLBI_NH_VAA: 0x13,
  CMD_TLBI_EL3_ALL: 0x18,
  CMD_TLBI_EL3_VA: 0x1a,
  CMD_TLBI_EL2_ALL: 0x20,
  CMD_TLBI_EL2_ASID: 0x21,
  CMD_TLBI_EL2_VA: 0x22,
  CMD_TLBI_EL2_VAA: 0x23,
  CMD_TLBI_S12_VMALL: 0x28,
  CMD_TLBI_S2_IPA: 0x2a,
  CMD_TLBI_NSNH_ALL: 0x30,
  CMD_ATC_INV: 0x40,
  CMD_PRI_RESP: 0x41,
  CMD_RESUME: 0x44,
  CMD_STALL_TERM: 0x45,
  CMD_SYNC: 0x46,
  CMD_TLBI_S_EL2_ALL: 0x50,
  CMD_TLBI_S_EL2_ASID: 0x51,
  CMD_TLBI_S_EL2_VA: 0x52,
  CMD_TLBI_S_EL2_VAA: 0x53,
  CMD_TLBI_S_S12_VMALL: 0x58,
  CMD_TLBI_S_S2_IPA: 0x5a,
  CMD_TLBI_SNH_ALL: 0x60,
  CMD_DPTI_ALL: 0x70,
  CMD_DPTI_PA: 0x73,
} as const;

export type CommandName = keyof typeof OP;

/** The IMPLEMENTATION DEFINED opcode range 0x80–0x8F (§4.1.1). */
export const IMPDEF_FIRST = 0x80;
export const IMPDEF_LAST = 0x8f;

/**
 * An IMPLEMENTATION DEFINED command's bits above the opcode are its own business, not RES0: one
 * opaque field [127:8] so that decode reports no RES0 bits and re-encoding is lossless.
 */
const IMPDEF_PAYLOAD = fld('IMPDEF', 8, 120, 'payload', 'hex', { doc: 'IMPLEMENTATION DEFINED payload [127:8]' });

function hex2(n: number): string {
  return n.toString(16).toUpperCase().padStart(2, '0');
}

const CFGI_ALL_SPEC = COMMANDS.find((c) => c.name === 'CMD_CFGI_ALL')!;
const BY_OPCODE: readonly CommandSpec[] = (() => {
  const table: CommandSpec[] = [];
  for (let op = 0; op < 256; op++) {
    const named = COMMANDS.find((c) => c.opcode === op && c !== CFGI_ALL_SPEC);
    if (named !== undefined) {
      table.push(named);
    } else if (op >= IMPDEF_FIRST && op <= IMPDEF_LAST) {
      const s: CommandSpec = { opcode: op, name: `CMD_IMPDEF_0x${hex2(op)}`, cls: 'impdef', bytes: COMMAND_BYTES, section: '4.1.1', fields: [OPCODE, IMPDEF_PAYLOAD] };
      table.push(Object.freeze(s));
    } else {
      // Reserved opcodes raise CERROR_ILL (§4.1.3); only the opcode has meaning.
      const s: CommandSpec = { opcode: op, name: `RESERVED_0x${hex2(op)}`, cls: 'reserved', bytes: COMMAND_BYTES, section: '4.1.1', fields: [OPCODE] };
      table.push(Object.freeze(s));
    }
  }
  return Object.freeze(table);
})();

/** The table entry for an opcode (0..255): named, IMPLEMENTATION DEFINED or Reserved. O(1). */
export function commandSpec(opcode: number): CommandSpec {
  const s = BY_OPCODE[opcode & 0xff];
  // The table has all 256 entries, so this cannot happen; the check satisfies the type system.
  if (s === undefined) throw new RangeError(`opcode ${opcode} out of range`);
  return s;
}

/** The CMD_CFGI_ALL form of opcode 0x04 (§4.3.6). */
export function cfgiAllSpec(): CommandSpec {
  return CFGI_ALL_SPEC;
}

const BY_NAME: ReadonlyMap<string, CommandSpec> = (() => {
  const m = new Map<string, CommandSpec>();
  for (const s of BY_OPCODE) m.set(s.name.toUpperCase(), s);
  for (const s of COMMANDS) m.set(s.name.toUpperCase(), s);
  return m;
})();

/**
 * Look a command up by name, with or without the CMD_ prefix, any case: 'CMD_TLBI_NH_VA',
 * 'tlbi_nh_va', 'CFGI_ALL' (the CMD_CFGI_ALL form of 0x04), 'RESERVED_0x08', 'IMPDEF_0x80'.
 */
export function commandByName(name: string): CommandSpec | undefined {
  const key = name.trim().toUpperCase();
  return BY_NAME.get(key) ?? BY_NAME.get(`CMD_${key}`);
}

/** The field of a command spec by name, or undefined. */
export function commandField(spec: CommandSpec, name: string): CommandField | undefined {
  return spec.fields.find((f) => f.name === name);
}

/** Names of the range-invalidation fields common to every address-based TLBI (§4.4.1.1). */
export const TLBI_RANGE_FIELDS: readonly string[] = Object.freeze(RANGE_NAMES);
