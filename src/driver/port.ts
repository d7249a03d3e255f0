import type { WaitPolicy } from '../mem/wait.ts';

/**
 * The register interface the guest driver programs: what a CPU can do to an SMMU register
 * window. `MmioPort` (src/mem/mmio.ts) is the real one, over the shared-memory MMIO FIFO; unit
 * tests hand the driver a synchronous stand-in with the same shape.
 *
 * Semantics the driver relies on (they are those of Device-nGnRE MMIO on Arm, §6.2):
 * - writes reach the SMMU in program order, one bus transaction each (`write64Parts` is one
 *   64-bit transaction);
 * - `read32` and `waitReg` observe the effect of this agent's own earlier writes;
 * - `peek32` is a plain load of the current value, for poll loops that already ordered
 *   themselves after their writes.
 */
export interface RegisterPort {
  write32(off: number, value: number): void;
  write64Parts(off: number, lo: number, hi: number): void;
  read32(off: number): number;
  peek32(off: number): number;
  /**
   * Wait until the register at `off` satisfies `ready`; returns the polls made. Throws
   * WaitTimeout with `describe()` as the detail when the policy's deadline passes.
   */
  waitReg(off: number, ready: (v: number) => boolean, describe: () => string, policy?: WaitPolicy): number;
  /** Wait until every write this agent made has reached the SMMU. */
  drainOwn(): void;
}
