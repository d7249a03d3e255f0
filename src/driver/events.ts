/**
 * Event-queue arithmetic of the guest driver (IHI0070 G.b §7.4, §6.3.95, §6.3.96): how many
 * records lie between SMMU_EVENTQ_CONS and SMMU_EVENTQ_PROD, where CONS goes next, and the
 * overflow acknowledgement.
 */

import { REG, regGet, regSet } from '../spec/registers.ts';
import * as ring from '../ring/index.ts';

function hex(v: number): string {
  return `0x${(v >>> 0).toString(16).padStart(8, '0')}`;
}

const OVFLG = REG.SMMU_EVENTQ_PROD.f.OVFLG;
const OVACKFLG = REG.SMMU_EVENTQ_CONS.f.OVACKFLG;

export interface EventDrainPlan {
  /** Records to read, starting at the driver's CONS. */
  readonly count: number;
  /** The read pointer (index and wrap) after them. */
  readonly nextCons: number;
  /** PROD.OVFLG as read. */
  readonly ovflg: number;
  /** True when PROD.OVFLG differs from the driver's OVACKFLG: records were lost (§7.4). */
  readonly overflow: boolean;
  /** The SMMU_EVENTQ_CONS value to write: RD = nextCons, OVACKFLG = PROD.OVFLG (§6.3.96). */
  readonly consValue: number;
  /** Whether CONS needs writing at all: records were read, or an overflow is acknowledged. */
  readonly write: boolean;
}

/**
 * Plan one drain from the SMMU_EVENTQ_PROD value `prod`, the driver's read pointer `cons` and
 * the OVACKFLG value it last wrote. Arm recommends comparing OVFLG with software's copy on every
 * PROD read and acknowledging by writing OVACKFLG = OVFLG on the next CONS update (§7.4).
 */
export function planEventDrain(prod: number, cons: number, ovAck: number, log2: number): EventDrainPlan {
  const count = ring.used(prod, cons, log2);
  if (count > ring.entries(log2)) {
    throw new RangeError(
      `SMMU_EVENTQ_PROD ${hex(prod)} is ${count} records ahead of the driver's CONS ${hex(cons)}, more than the ${ring.entries(log2)} the queue holds`,
    );
  }
  const nextCons = ring.inc(cons, count, log2);
  const ovflg = regGet(prod, OVFLG);
  const overflow = ovflg !== ovAck;
  const consValue = regSet(nextCons, OVACKFLG, ovflg);
  return { count, nextCons, ovflg, overflow, consValue, write: count > 0 || overflow };
}
