/**
 * The host kernel's conversion of a guest's SMMUv3 command (shared/reference/viommu.md §3.2; Linux
 * arm_vsmmu_convert_user_cmd, read for facts only): one table row per opcode, and a converter on
 * the four u32 words of a command, for the per-command hot path.
 *
 * What the guest may ask for and what reaches the physical Command queue:
 * - CMD_TLBI_NH_ALL, _NH_ASID, _NH_VA, _NH_VAA: the VMID field is overwritten with the vIOMMU's
 *   VMID (the stage-2 parent's); the ASID and every other bit pass through unchanged.
 * - CMD_TLBI_NSNH_ALL: replaced by CMD_TLBI_NH_ALL with the vIOMMU's VMID, every other bit of the
 *   command cleared. A guest never invalidates beyond its own VMID.
 * - CMD_ATC_INV, CMD_CFGI_CD, CMD_CFGI_CD_ALL: the StreamID field (a guest StreamID, vSID) is
 *   looked up in the vIOMMU's vDEVICE table and replaced by the physical StreamID; a vSID with no
 *   vDEVICE is EIO. Everything else (SubstreamID, SSV, Leaf, Global, Size, Address, and SSec)
 *   passes through.
 * - Every other opcode, CMD_SYNC included, is EIO: CFGI_STE (the host re-shadows STEs through
 *   HWPT_ALLOC), CFGI_STE_RANGE/CFGI_ALL, CFGI_VMS_PIDM, PREFETCH_*, the EL2, EL3, stage-2 and
 *   Secure TLBIs, PRI_RESP, RESUME, STALL_TERM, DPTI_*, IMPLEMENTATION DEFINED and Reserved
 *   opcodes.
 *
 * The kernel checks nothing else (§3.2): reserved bits, SSec, TG, NUM and SCALE pass through to the
 * physical queue, where the SMMU may raise CERROR_ILL (§4.1.3) and the host driver skips the
 * command. `checkConverted` offers the optional stricter policy: run the architecture's legality
 * check (src/spec/legality.ts) on the converted command and refuse it with EIO before it reaches
 * the queue. It is off by default, and then the model is the kernel.
 */

import { getBits, setBits } from '../spec/bits.ts';
import type { Field } from '../spec/bits.ts';
import { COMMAND_WORDS, OP, commandField, commandSpec } from '../spec/commands.ts';
import type { CommandSpec } from '../spec/commands.ts';
import type { SmmuFeatures } from '../spec/features.ts';
import { checkCommand } from '../spec/legality.ts';
import { EIO } from './errno.ts';

/** What the host does with one guest opcode. */
export type ConvertAction =
  /** Overwrite VMID with the vIOMMU's VMID; keep everything else (NH_*). */
  | 'set-vmid'
  /** Replace by CMD_TLBI_NH_ALL with the vIOMMU's VMID; everything else cleared (NSNH_ALL). */
  | 'nsnh-to-nh-all'
  /** Replace the guest StreamID by the physical one from the vDEVICE table; EIO if none. */
  | 'translate-sid'
  /** EIO. */
  | 'reject';

export interface ConversionRow {
  readonly opcode: number;
  /** The spec's name (RESERVED_0xNN / CMD_IMPDEF_0xNN for unnamed opcodes). */
  readonly name: string;
  readonly action: ConvertAction;
  /** Why, in one phrase. */
  readonly why: string;
}

/** The four opcodes whose VMID is enforced (§3.2). */
const SET_VMID: ReadonlySet<number> = new Set([OP.CMD_TLBI_NH_ALL, OP.CMD_TLBI_NH_ASID, OP.CMD_TLBI_NH_VA, OP.CMD_TLBI_NH_VAA]);
/** The three opcodes whose StreamID is translated (§3.2). */
const TRANSLATE_SID: ReadonlySet<number> = new Set([OP.CMD_ATC_INV, OP.CMD_CFGI_CD, OP.CMD_CFGI_CD_ALL]);

function rejectReason(spec: CommandSpec): string {
  switch (spec.opcode) {
    case OP.CMD_SYNC:
      return 'the kernel appends its own CMD_SYNC; the VMM completes the guest CMD_SYNC itself';
    case OP.CMD_CFGI_STE:
    case OP.CMD_CFGI_STE_RANGE:
      return 'guest STEs are re-shadowed through HWPT_ALLOC, never invalidated by the guest';
    default:
      break;
  }
  switch (spec.cls) {
    case 'reserved':
      return 'Reserved opcode';
    case 'impdef':
      return 'IMPLEMENTATION DEFINED opcode';
    case 'secure':
      return 'Secure invalidation';
    case 'dpti':
      return 'DPT invalidation';
    default:
      return 'not an invalidation a guest may issue';
  }
}

/** One row per opcode 0..255, in opcode order (§3.2). */
export const CONVERSION: readonly ConversionRow[] = Object.freeze(
  Array.from({ length: 256 }, (_, op): ConversionRow => {
    const spec = commandSpec(op);
    if (op === OP.CMD_TLBI_NSNH_ALL) {
      return Object.freeze({ opcode: op, name: spec.name, action: 'nsnh-to-nh-all', why: 'narrowed to the vIOMMU VMID' });
    }
    if (SET_VMID.has(op)) return Object.freeze({ opcode: op, name: spec.name, action: 'set-vmid', why: 'VMID enforced, ASID kept' });
    if (TRANSLATE_SID.has(op)) return Object.freeze({ opcode: op, name: spec.name, action: 'translate-sid', why: 'vSID replaced by the physical StreamID' });
    return Object.freeze({ opcode: op, name: spec.name, action: 'reject', why: rejectReason(spec) });
  }),
);

const ACTION: Uint8Array = (() => {
  const codes: Record<ConvertAction, number> = { reject: 0, 'set-vmid': 1, 'nsnh-to-nh-all': 2, 'translate-sid': 3 };
  return Uint8Array.from(CONVERSION, (r) => codes[r.action]);
})();
const A_SET_VMID = 1;
const A_NSNH = 2;
const A_SID = 3;

function fieldOfCommand(op: number, name: string): Field {
  const f = commandField(commandSpec(op), name);
  if (f === undefined) throw new Error(`commands.ts: ${commandSpec(op).name} has no ${name}`);
  return f;
}

/** VMID [47:32] of the NH TLBIs (commands.ts; §4.4.2). */
const VMID_F = fieldOfCommand(OP.CMD_TLBI_NH_VA, 'VMID');
/** StreamID [63:32] of ATC_INV and CFGI_CD(_ALL) (commands.ts; §4.3.3, §4.5.1). */
const SID_F = fieldOfCommand(OP.CMD_ATC_INV, 'StreamID');
const OPCODE_F = fieldOfCommand(OP.CMD_SYNC, 'Opcode');
for (const op of TRANSLATE_SID) {
  const f = fieldOfCommand(op, 'StreamID');
  if (f.lsb !== SID_F.lsb || f.width !== SID_F.width) throw new Error('StreamID placement differs between ATC_INV and CFGI_CD');
}

/** What the converter needs of a vIOMMU. */
export interface VsmmuContext {
  /** The VMID every converted TLBI carries: the stage-2 parent's (§1.4 VIOMMU_ALLOC). */
  readonly vmid: number;
  /** Physical StreamID of the vDEVICE whose virt_id is `vsid`, or undefined if there is none. */
  vsidToPsid(vsid: number): number | undefined;
}

/**
 * Convert one guest command in place: words[base .. base+3], word 0 = bits [31:0]. Returns 0 when
 * the command may go to the physical queue, EIO when the host refuses it (§3.2). On EIO the words
 * are left as the guest wrote them. No allocation, no BigInt.
 */
export function convertGuestCommand(words: Uint32Array, base: number, ctx: VsmmuContext): number {
  const op = getBits(words, OPCODE_F.lsb, OPCODE_F.width, base);
  switch (ACTION[op]) {
    case A_SET_VMID:
      setBits(words, VMID_F.lsb, VMID_F.width, ctx.vmid, base);
      return 0;
    case A_NSNH:
      // The whole command is rebuilt: only the opcode and the VMID survive (§3.2).
      for (let i = 0; i < COMMAND_WORDS; i++) words[base + i] = 0;
      setBits(words, OPCODE_F.lsb, OPCODE_F.width, OP.CMD_TLBI_NH_ALL, base);
      setBits(words, VMID_F.lsb, VMID_F.width, ctx.vmid, base);
      return 0;
    case A_SID: {
      const psid = ctx.vsidToPsid(getBits(words, SID_F.lsb, SID_F.width, base));
      if (psid === undefined) return EIO;
      setBits(words, SID_F.lsb, SID_F.width, psid, base);
      return 0;
    }
    default:
      return EIO;
  }
}

/**
 * The optional strict policy (not the kernel's): EIO when the converted command would raise
 * CERROR_ILL on the host's Non-secure Command queue with the host's features (§4.1.3, §4.1.6), for
 * example SSec == 1 or set RES0 bits. Returns 0 when the command is legal.
 */
export function checkConverted(words: Uint32Array, base: number, hostFeatures: SmmuFeatures): number {
  return checkCommand(words, hostFeatures, undefined, base).ok ? 0 : EIO;
}
