import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import * as q from '../../src/ring/index.ts';

// IHI0070 G.b §3.5.1: index in [log2size-1:0], wrap at bit log2size.
describe('queue index arithmetic', () => {
  it('splits index and wrap at log2size', () => {
    expect(q.idx(0x13, 4)).toBe(0x3);
    expect(q.wrap(0x13, 4)).toBe(1);
    expect(q.wrap(0x03, 4)).toBe(0);
    expect(q.ptrMask(4)).toBe(0x1f);
  });

  it('carries into the wrap bit and drops flag bits', () => {
    expect(q.inc(0x0f, 1, 4)).toBe(0x10); // last entry of lap 0 -> entry 0 of lap 1
    expect(q.inc(0x1f, 1, 4)).toBe(0x00); // last entry of lap 1 -> entry 0 of lap 0
    expect(q.inc(0x8100_000f, 1, 4)).toBe(0x10); // CONS.ERR / EN bits above are not pointer bits
  });

  it('handles the one-entry queue, whose wrap is bit 0', () => {
    expect(q.entries(0)).toBe(1);
    expect(q.isEmpty(0, 0, 0)).toBe(true);
    expect(q.isFull(1, 0, 0)).toBe(true);
    expect(q.inc(1, 1, 0)).toBe(0);
    expect(q.space(1, 0, 0)).toBe(0);
    expect(q.space(1, 1, 0)).toBe(1);
  });

  it('tells empty from full by the wrap bit alone', () => {
    expect(q.isEmpty(0x05, 0x05, 4)).toBe(true);
    expect(q.isFull(0x05, 0x05, 4)).toBe(false);
    expect(q.isFull(0x15, 0x05, 4)).toBe(true);
    expect(q.isFull(0x05, 0x15, 4)).toBe(true);
    expect(q.used(0x15, 0x05, 4)).toBe(16);
    expect(q.space(0x03, 0x1e, 4)).toBe(11); // prod lap0 idx3, cons lap1 idx14: used 5
  });

  it('knows when an entry has been consumed', () => {
    expect(q.consumed(0x03, 0x03, 4)).toBe(false);
    expect(q.consumed(0x03, 0x04, 4)).toBe(true);
    expect(q.consumed(0x0f, 0x10, 4)).toBe(true);
    expect(q.consumed(0x0f, 0x1f, 4)).toBe(true); // 16 steps later, last possible
    expect(q.consumed(0x10, 0x0f, 4)).toBe(false); // consumer behind the entry
  });

  it('reports RES0 pointer bits between the wrap bit and bit 19', () => {
    expect(q.ptrRes0Bits(0x20, 4)).toBe(0x20);
    expect(q.ptrRes0Bits(0x1f, 4)).toBe(0);
    expect(q.ptrRes0Bits(0x8000_0000, 4)).toBe(0);
  });

  it('agrees with a counter model for every size 0..19', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 19 }), fc.array(fc.boolean(), { maxLength: 300 }), (log2, ops) => {
        const n = 2 ** log2;
        let prod = 0;
        let cons = 0;
        let produced = 0;
        let taken = 0;
        for (const push of ops) {
          expect(q.used(prod, cons, log2)).toBe(produced - taken);
          expect(q.isEmpty(prod, cons, log2)).toBe(produced === taken);
          expect(q.isFull(prod, cons, log2)).toBe(produced - taken === n);
          if (push && produced - taken < n) {
            expect(q.consumed(prod, cons, log2)).toBe(false);
            prod = q.inc(prod, 1, log2);
            produced++;
          } else if (!push && produced > taken) {
            const at = cons;
            cons = q.inc(cons, 1, log2);
            taken++;
            expect(q.consumed(at, cons, log2)).toBe(true);
          }
        }
      }),
    );
  });
});
