/**
 * The model's IMPLEMENTATION DEFINED registers, in page 0's IMPLEMENTATION DEFINED range
 * 0x0E00–0x0EFF (IHI0070 G.b §6.2.1). Real SMMUs put debug and RAS registers here; smmu-sim
 * puts the hooks a test or fuzzer needs to make the hardware do what only traffic would
 * otherwise make it do. Drivers never touch them.
 */

/** Base of page 0's IMPLEMENTATION DEFINED range (§6.2.1). */
export const IMPDEF_BASE = 0x0e00;
export const IMPDEF_END = 0x0f00;

export const SIM_REG = {
  /**
   * SIM_EVENT_DATA0..7: the 32 bytes of an event record to inject (§7.3 layout), word 0 first.
   * Writing SIM_EVENT_GO makes the device record it in the event queue exactly as if it had
   * detected the event: enable check, overflow (§7.4), abort (GERROR.EVENTQ_ABT_ERR), interrupt.
   */
  SIM_EVENT_DATA: 0x0e00,
  SIM_EVENT_GO: 0x0e20,
  /**
   * SIM_INV_ALL: writing any value empties every cache the SMMU has (TLB, configuration cache,
   * ATCs), as SMMU_S_INIT.INV_ALL does on an SMMU with a Secure programming interface (§6.3.62),
   * which this model's Non-secure-only SMMU does not have. The fuzzer's harness uses it to start
   * every run from cold caches on a System it reuses. Reads as zero.
   */
  SIM_INV_ALL: 0x0e24,
} as const;

export const SIM_EVENT_WORDS = 8;
