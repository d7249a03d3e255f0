/**
 * Command queue error codes: the values of SMMU_(*_)CMDQ_CONS.ERR and SMMU_ECMDQ_CONS<n>.ERR_REASON
 * context (IHI0070 G.b §7.1). Codes 0x04..0x7F are Reserved.
 */

/** No error; defined for completeness, never reported by the SMMU (§7.1). */
export const CERROR_NONE = 0;
/** Illegal command: unknown or irrelevant opcode, or Reserved field / invalid value used (§7.1). */
export const CERROR_ILL = 1;
/** External abort on command fetch (§7.1). */
export const CERROR_ABT = 2;
/** A CMD_SYNC could not complete earlier CMD_ATC_INV commands: ATS invalidation timeout (§7.1, §3.9.1.4). */
export const CERROR_ATC_INV_SYNC = 3;

export type CError =
  | typeof CERROR_NONE
  | typeof CERROR_ILL
  | typeof CERROR_ABT
  | typeof CERROR_ATC_INV_SYNC;

/** Code to spec name; also the `values` enum of the CMDQ_CONS.ERR field. */
export const CERROR_NAMES: Readonly<Record<number, string>> = Object.freeze({
  [CERROR_NONE]: 'CERROR_NONE',
  [CERROR_ILL]: 'CERROR_ILL',
  [CERROR_ABT]: 'CERROR_ABT',
  [CERROR_ATC_INV_SYNC]: 'CERROR_ATC_INV_SYNC',
});

/** The spec name of a CMDQ_CONS.ERR value; Reserved codes print as `Reserved(0xNN)`. */
export function cerrorName(code: number): string {
  return CERROR_NAMES[code] ?? `Reserved(0x${code.toString(16)})`;
}
