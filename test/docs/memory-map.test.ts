import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { findRegister, REGISTERS } from '../../src/spec/registers.ts';
import { FIFO, HDR } from '../../src/mem/board.ts';

const doc = readFileSync(new URL('../../docs/memory-map.md', import.meta.url), 'utf8');

/** Rows of the register table: | 0x00098 | SMMU_CMDQ_PROD | 32 | RW | §6.3.27 | */
const rows = [...doc.matchAll(/^\| (0x[0-9a-f]{5})(?: \+ 32n)? \| (SMMU_\w+?)(<n>)? \| (32|64) \| ([A-Z/]+) \| (§[\d.]+) \|$/gm)];

describe('docs/memory-map.md', () => {
  it('lists every page 0 and page 1 register once, as the register table has it', () => {
    const listed = REGISTERS.filter((r) => (r.page === 0 || r.page === 1) && !(r.n !== undefined && r.n > 0));
    expect(rows.length).toBe(listed.length);
    for (const [, off, name, indexed, width, access, section] of rows) {
      const r = findRegister(Number(off));
      expect(r, `${name} at ${off}`).toBeDefined();
      expect(indexed ? r!.name.replace(/0$/, '') : r!.name).toBe(name);
      expect(r!.offset).toBe(Number(off));
      expect(String(r!.width)).toBe(width);
      expect(r!.access).toBe(access);
      expect(r!.section).toBe(section);
    }
  });

  it('names the header and FIFO words where board.ts puts them', () => {
    for (const [name, word] of Object.entries(HDR)) {
      if (name === 'COUNTERS') continue;
      expect(doc, name).toMatch(new RegExp(`\\| ${word}(–\\d+)? \\| [^|]*\\b${name}\\b`));
    }
    for (const name of ['TAIL', 'APPLIED', 'CONSUMER_SLEEPING', 'SLEEPERS', 'PRODUCERS_WAITING', 'WAKE'] as const) {
      expect(doc).toMatch(new RegExp(`\\| ${FIFO[name]} \\| ${name} \\|`));
    }
  });
});
