import { HDR, type Board } from './board.ts';
import { notifySleepers, waitFor, type WaitPolicy } from './wait.ts';

/**
 * Physical memory as both the device and the driver see it: RAM at `base`, little-endian.
 *
 * Physical addresses are numbers. Architected address fields reach bit 55, beyond 2^53; such an
 * address cannot be in RAM (at most 1 GiB at a base below 2^48), so a lost low bit can never turn
 * an outside address into an inside one: `contains` rejects it either way.
 *
 * Word accesses need 4-byte alignment (queue entries, table entries, MSI targets always have it).
 */
/** A window onto RAM as another address space sees it (see PhysMem's constructor). */
export interface MemView {
  /** The address the first byte has in the viewer's address space (a guest IPA). */
  readonly base: number;
  /** Its host physical address. */
  readonly hostPa: number;
  readonly bytes: number;
}

export class PhysMem {
  readonly base: number;
  readonly bytes: number;
  /** Byte offset of RAM in the buffer. */
  readonly offset: number;
  readonly u8: Uint8Array;
  readonly u32: Uint32Array;
  readonly i32: Int32Array;
  /** Host physical address minus buffer offset, for hostAddress. */
  private readonly hostDelta: number;

  /**
   * All of RAM at its physical addresses, or with `view` a window onto part of it as another
   * agent addresses it: a VM's guest-physical (intermediate physical) addresses [view.base,
   * view.base + view.bytes) are host RAM [view.hostPa, …). A guest driver, and a VMM reading
   * guest memory, use such a view; nothing outside it is reachable through it.
   */
  constructor(board: Board, view?: MemView) {
    const ram = board.layout.ram;
    if (view === undefined) {
      this.base = ram.base;
      this.bytes = ram.bytes;
      this.offset = ram.offset;
    } else {
      if (!(view.bytes > 0) || view.hostPa < ram.base || view.hostPa + view.bytes > ram.base + ram.bytes || view.hostPa % 4096 !== 0 || view.base % 4096 !== 0) {
        throw new RangeError(`memory view of 0x${view.bytes.toString(16)} bytes at host 0x${view.hostPa.toString(16)} (seen at 0x${view.base.toString(16)}) is not a page-aligned part of RAM`);
      }
      this.base = view.base;
      this.bytes = view.bytes;
      this.offset = ram.offset + (view.hostPa - ram.base);
    }
    this.hostDelta = ram.base - ram.offset;
    this.u8 = board.u8;
    this.u32 = board.u32;
    this.i32 = board.i32;
  }

  /** The host physical address of `addr` in this view (`addr` itself without a view). */
  hostAddress(addr: number): number {
    return this.offset + (addr - this.base) + this.hostDelta;
  }

  /** True when [pa, pa + len) lies inside RAM. */
  contains(pa: number, len = 1): boolean {
    return pa >= this.base && len >= 0 && pa + len <= this.base + this.bytes;
  }

  /**
   * Index into the board's u32/i32 views of the word at `pa`. The caller has checked
   * `contains(pa, 4 * n)` and alignment; hot paths compute this once per entry.
   */
  wordIndex(pa: number): number {
    return (this.offset + (pa - this.base)) >>> 2;
  }

  /** Throws a RangeError naming the access when [pa, pa+len) is outside RAM or misaligned. */
  check(pa: number, len: number, align = 4): void {
    if (!this.contains(pa, len)) {
      throw new RangeError(
        `physical access 0x${pa.toString(16)}+${len} is outside RAM [0x${this.base.toString(16)}, 0x${(this.base + this.bytes).toString(16)})`,
      );
    }
    if (pa % align !== 0) throw new RangeError(`physical address 0x${pa.toString(16)} is not ${align}-byte aligned`);
  }

  read32(pa: number): number {
    this.check(pa, 4);
    return this.u32[this.wordIndex(pa)]!;
  }

  write32(pa: number, v: number): void {
    this.check(pa, 4);
    this.u32[this.wordIndex(pa)] = v >>> 0;
  }

  /** 64-bit read as a bigint (API edge only). */
  read64(pa: number): bigint {
    this.check(pa, 8);
    const i = this.wordIndex(pa);
    return (BigInt(this.u32[i + 1]!) << 32n) | BigInt(this.u32[i]!);
  }

  write64(pa: number, v: bigint): void {
    this.check(pa, 8);
    const i = this.wordIndex(pa);
    this.u32[i] = Number(v & 0xffff_ffffn);
    this.u32[i + 1] = Number((v >> 32n) & 0xffff_ffffn);
  }

  readBytes(pa: number, len: number): Uint8Array {
    this.check(pa, len, 1);
    const o = this.offset + (pa - this.base);
    return this.u8.slice(o, o + len);
  }

  writeBytes(pa: number, data: Uint8Array): void {
    this.check(pa, data.length, 1);
    this.u8.set(data, this.offset + (pa - this.base));
  }

  /** Copy `n` words starting at `pa` into `dst` (one snapshot: the single-fetch rule). */
  readWords(pa: number, dst: Uint32Array | number[], n = dst.length): void {
    this.check(pa, n * 4);
    const i = this.wordIndex(pa);
    for (let k = 0; k < n; k++) dst[k] = this.u32[i + k]!;
  }

  writeWords(pa: number, src: ArrayLike<number>): void {
    this.check(pa, src.length * 4);
    const i = this.wordIndex(pa);
    for (let k = 0; k < src.length; k++) this.u32[i + k] = src[k]! >>> 0;
  }

  fill(pa: number, len: number, byte = 0): void {
    this.check(pa, len, 1);
    const o = this.offset + (pa - this.base);
    this.u8.fill(byte, o, o + len);
  }

  /**
   * A 32-bit store that other agents may be waiting on (an MSI write): Atomics.store, then wake
   * any sleeper. Returns false, writing nothing, when the target is outside RAM or misaligned.
   */
  storeNotify32(pa: number, v: number): boolean {
    if (!this.contains(pa, 4) || pa % 4 !== 0) return false;
    const i = this.wordIndex(pa);
    Atomics.store(this.u32, i, v >>> 0);
    notifySleepers(this.i32, i, HDR.RAM_SLEEPERS);
    return true;
  }

  /** Wait (worker only) until the word at `pa` satisfies `ready(value)`. */
  waitWord(pa: number, ready: (v: number) => boolean, policy: WaitPolicy, describe: () => string): number {
    this.check(pa, 4);
    const i = this.wordIndex(pa);
    const u32 = this.u32;
    return waitFor(this.i32, i, () => ready(Atomics.load(u32, i)), policy, describe, HDR.RAM_SLEEPERS);
  }
}

/**
 * A bump allocator over RAM for drivers and tests: aligned, never freed (a driver allocates its
 * queues and tables once at probe). Throws when RAM is exhausted, naming the request.
 */
export class PhysAllocator {
  private next: number;

  constructor(private readonly mem: PhysMem, start = mem.base, private readonly end = mem.base + mem.bytes) {
    this.next = start;
  }

  alloc(bytes: number, align: number, what = 'allocation'): number {
    if (!(align > 0 && (align & (align - 1)) === 0)) throw new RangeError(`${what}: alignment ${align} is not a power of two`);
    const pa = Math.ceil(this.next / align) * align;
    if (pa + bytes > this.end) {
      throw new RangeError(`${what}: ${bytes} bytes at alignment ${align} do not fit in the remaining physical memory`);
    }
    this.next = pa + bytes;
    this.mem.fill(pa, bytes, 0);
    return pa;
  }

  get used(): number {
    return this.next - this.mem.base;
  }
}
