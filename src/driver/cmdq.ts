/**
 * Command-queue pieces of the guest driver that need no device: the batch size, the CMD_SYNC
 * forms the driver inserts, and what the driver does about each command error.
 *
 * The driver behaves as Linux's arm-smmu-v3 driver does (shared/reference/driver-and-qemu.md A1);
 * every encoding comes from the command table in src/spec (IHI0070 G.b §4.7.3, §7.1).
 */

import { setBits, type Field, type Words } from '../spec/bits.ts';
import { CERROR_ABT, CERROR_ATC_INV_SYNC, CERROR_NONE } from '../spec/cerror.ts';
import { encodeCommandWords } from '../spec/command-codec.ts';
import {
  COMMAND_WORDS,
  CS_SIG_IRQ,
  CS_SIG_NONE,
  CS_SIG_SEV,
  MSH_VALUES,
  commandByName,
  commandField,
} from '../spec/commands.ts';

/**
 * Commands per batch. Linux gathers up to BITS_PER_LONG (64 on arm64) commands per
 * arm_smmu_cmdq_batch: a full batch goes to the queue without a CMD_SYNC, the remainder with one.
 */
export const CMDQ_BATCH_ENTRIES = 64;

/** The code of an enumerated value by its name in a spec `values` table; throws if absent. */
export function enumCode(values: Readonly<Record<number, string>> | undefined, name: string): number {
  if (values !== undefined) {
    for (const [k, v] of Object.entries(values)) if (v === name) return Number(k);
  }
  throw new Error(`no enumerated value named '${name}'`);
}

/** CMD_SYNC MSH = Inner Shareable (§4.7.3): Linux's ARM_SMMU_SH_ISH. */
export const SYNC_MSH_ISH = enumCode(MSH_VALUES, 'ISH');

/**
 * CMD_SYNC MSIAttr = 0b1111, in the STE.MemAttr encoding (§4.7.3, §5.2, which uses the stage 2
 * MemAttr[3:0] layout): [3:2] = 0b11 Outer Write-Back, [1:0] = 0b11 Inner Write-Back Cacheable.
 * Linux's ARM_SMMU_MEMATTR_OIWB. src/spec has no MemAttr value table yet.
 */
export const SYNC_MSIATTR_OIWB = 0b1111;

const SYNC_SPEC = commandByName('CMD_SYNC')!;
/** CMD_SYNC MSIAddress[55:2] at [119:66] (§4.7.3). */
export const SYNC_MSIADDRESS: Field = commandField(SYNC_SPEC, 'MSIAddress')!;

/**
 * Write an address-like value into a field of words, without BigInt: `value` is the field's
 * value (shift applied, low `shift` bits zero), at most 2^53. Fields may span words.
 */
export function putFieldNumber(words: Words, f: Field, value: number, base = 0): void {
  const shift = f.shift ?? 0;
  let stored = value / 2 ** shift;
  let lsb = f.lsb;
  let left = f.width;
  while (left > 0) {
    const chunk = Math.min(32 - (lsb & 31), left);
    const unit = 2 ** chunk;
    setBits(words, lsb, chunk, stored % unit, base);
    stored = Math.floor(stored / unit);
    lsb += chunk;
    left -= chunk;
  }
}

/**
 * A CMD_SYNC as Linux builds it: MSH = ISH and MSIAttr = OIWB always (they are IGNORED unless
 * CS = SIG_IRQ, §4.7.3), MSIData = 0, and MSIAddress = `msiAddress` (0: no MSI).
 */
export function buildSync(cs: number, msiAddress = 0): Uint32Array {
  return encodeCommandWords({ name: 'CMD_SYNC', CS: cs, MSH: SYNC_MSH_ISH, MSIAttr: SYNC_MSIATTR_OIWB, MSIData: 0, MSIAddress: msiAddress });
}

/**
 * The completion signal of a CMD_SYNC that the driver waits for by polling SMMU_CMDQ_CONS, and
 * of the CMD_SYNC that replaces a command in error: SIG_SEV when the SMMU can send WFE wake-ups
 * (IDR0.SEV), else SIG_NONE (SIG_SEV is then equivalent to SIG_NONE anyway, §4.7.3).
 */
export function consSyncCs(sev: boolean): number {
  return sev ? CS_SIG_SEV : CS_SIG_NONE;
}

/** The MSI-polling CMD_SYNC with MSIAddress 0: copied into a slot, then given the slot's address. */
export const MSI_SYNC_TEMPLATE: Uint32Array = buildSync(CS_SIG_IRQ);

/**
 * Write, into the queue slot whose first word is `u32[w]`, the MSI-polling CMD_SYNC whose MSI
 * targets that slot's own first word at physical address `slotPa` (Linux's MSIPOLL): the SMMU
 * writes MSIData = 0 over the opcode word when the sync completes. Plain stores, no BigInt.
 */
export function writeMsiSync(u32: Uint32Array, w: number, slotPa: number): void {
  const t = MSI_SYNC_TEMPLATE;
  u32[w] = t[0]!;
  u32[w + 1] = t[1]!;
  u32[w + 2] = t[2]!;
  u32[w + 3] = t[3]!;
  putFieldNumber(u32, SYNC_MSIADDRESS, slotPa, w);
}

/** Copy one command (four words) into a slot. */
export function writeSlot(u32: Uint32Array, w: number, cmd: ArrayLike<number>): void {
  u32[w] = cmd[0]!;
  u32[w + 1] = cmd[1]!;
  u32[w + 2] = cmd[2]!;
  u32[w + 3] = cmd[3]!;
}

/** Read one command (four words) out of a slot. */
export function readSlot(u32: Uint32Array, w: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < COMMAND_WORDS; i++) out.push(u32[w + i]!);
  return out;
}

/**
 * What the driver does about a command error, by SMMU_CMDQ_CONS.ERR (§7.1), as Linux's
 * arm_smmu_cmdq_skip_err does:
 * - 'replace': CERROR_ILL and any code the driver does not know: overwrite the command at
 *   CONS.RD in place with a CMD_SYNC, so that the queue moves on (CONS itself cannot be moved
 *   while CMDQEN == 1, §6.3.28);
 * - 'retry': CERROR_ABT (the fetch is retried once the error is acknowledged) and
 *   CERROR_ATC_INV_SYNC (CONS stays on the CMD_SYNC, which is retried, §7.1);
 * - 'none': CERROR_NONE, which the SMMU never reports.
 */
export type CmdqErrorAction = 'replace' | 'retry' | 'none';

export function cmdqErrorAction(code: number): CmdqErrorAction {
  if (code === CERROR_NONE) return 'none';
  if (code === CERROR_ABT || code === CERROR_ATC_INV_SYNC) return 'retry';
  return 'replace';
}
