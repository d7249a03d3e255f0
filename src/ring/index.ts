/**
 * Queue index arithmetic shared by every SMMU queue: CMDQ, ECMDQ, VCMDQ, EVENTQ and PRIQ.
 *
 * IHI0070 G.b §3.5.1 (and §6.3.27/28 for the registers): a queue of 2^log2size entries is
 * addressed by an index in bits [log2size-1:0] and a wrap bit at bit log2size. The pair is one
 * counter modulo 2^(log2size+1): incrementing past the last entry carries into the wrap bit.
 *   empty ⇔ index and wrap equal;   full ⇔ index equal, wrap different.
 * Bits above the wrap bit (CONS.ERR, EVENTQ_PROD.OVFLG, ECMDQ_PROD.EN …) are not part of the
 * pointer; every function here masks them off, so callers may pass raw register values.
 *
 * log2size 0 is legal: one entry, and the wrap bit is bit 0.
 */

/** Mask of the index bits and the wrap bit: the pointer part of a PROD or CONS value. */
export function ptrMask(log2size: number): number {
  return ((2 << log2size) - 1) >>> 0;
}

/** Number of entries. */
export function entries(log2size: number): number {
  return 2 ** log2size;
}

/** The entry index, bits [log2size-1:0]. */
export function idx(p: number, log2size: number): number {
  return p & ((1 << log2size) - 1);
}

/** The wrap bit, bit log2size, as 0 or 1. */
export function wrap(p: number, log2size: number): number {
  return (p >>> log2size) & 1;
}

/** Pointer `p` advanced by `n` entries (n ≥ 0), wrap bit included, flag bits dropped. */
export function inc(p: number, n: number, log2size: number): number {
  return (p + n) & ptrMask(log2size);
}

/** Entries between CONS and PROD, 0..2^log2size: how many the consumer has still to read. */
export function used(prod: number, cons: number, log2size: number): number {
  return ((prod & ptrMask(log2size)) - (cons & ptrMask(log2size))) & ptrMask(log2size);
}

/** Free entries a producer may still write. */
export function space(prod: number, cons: number, log2size: number): number {
  return entries(log2size) - used(prod, cons, log2size);
}

/** §3.5.1: the queue is empty when the indices and the wrap bits are equal. */
export function isEmpty(prod: number, cons: number, log2size: number): boolean {
  return ((prod ^ cons) & ptrMask(log2size)) === 0;
}

/** §3.5.1: the queue is full when the indices are equal and the wrap bits differ. */
export function isFull(prod: number, cons: number, log2size: number): boolean {
  return ((prod ^ cons) & ptrMask(log2size)) === 1 << log2size;
}

/**
 * Whether the entry at pointer `p` has been consumed by a consumer now at `cons`: `cons` lies
 * 1..2^log2size steps past `p`. Valid while the producer cannot lap the consumer, which a
 * correct producer guarantees by never writing into a full queue.
 */
export function consumed(p: number, cons: number, log2size: number): boolean {
  const d = ((cons & ptrMask(log2size)) - (p & ptrMask(log2size))) & ptrMask(log2size);
  return d >= 1 && d <= entries(log2size);
}

/**
 * A pointer is well formed when no bit between the wrap bit and bit 19 is set: the spec makes
 * those bits RES0 (§6.3.27). Bits 20 and up are flags owned by each register.
 */
export function ptrRes0Bits(p: number, log2size: number): number {
  return p & 0x000f_ffff & ~ptrMask(log2size);
}

/** Byte offset of entry `p` in a queue of `entryBytes`-sized entries. */
export function entryOffset(p: number, log2size: number, entryBytes: number): number {
  return idx(p, log2size) * entryBytes;
}
