/**
 * Every saved scenario in test/scenarios/ replays on a freshly started system: the examples of
 * docs/scenarios.md and the regressions the fuzzer found. A scenario marked `known_failure`
 * records a model bug that is not fixed yet: it must still fail, in the named way; when the
 * model is fixed this test says so, and the marker (and the entry in src/fuzz/known.ts) goes.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { violationSignature } from '../../src/fuzz/campaign.ts';
import { KNOWN_DEVIATIONS } from '../../src/fuzz/known.ts';
import { CU_CASES, ORACLE_RULES } from '../../src/fuzz/oracle.ts';
import { Harness } from '../../src/fuzz/runner.ts';
import { parseScenarioText } from '../../src/fuzz/scenario.ts';

const dir = new URL('../scenarios/', import.meta.url);
const files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();

describe('saved scenarios (test/scenarios)', () => {
  it('has the documented examples and the regressions', () => {
    expect(files.length).toBeGreaterThanOrEqual(8);
  });

  for (const file of files) {
    it(file, async () => {
      const sc = parseScenarioText(readFileSync(new URL(file, dir), 'utf8'));
      const h = new Harness({ strict: true });
      try {
        const r = await h.run(sc);
        if (sc.knownFailure !== undefined) {
          expect(r.ok, `${file} is marked known_failure (${sc.knownFailure.rule}) but passes: remove the marker and its src/fuzz/known.ts entry`).toBe(false);
          const first = r.violations[0]!;
          expect([first.rule, violationSignature(first)]).toContain(sc.knownFailure.rule);
        } else {
          expect(r.violations).toEqual([]);
          expect(r.ok).toBe(true);
        }
      } finally {
        await h.close();
      }
    });
  }

  it('docs/scenarios.md names every oracle rule, CONSTRAINED UNPREDICTABLE case and known deviation', () => {
    const md = readFileSync(new URL('../../docs/scenarios.md', import.meta.url), 'utf8');
    for (const id of [...ORACLE_RULES.map((r) => r.rule), ...CU_CASES.map((c) => c.id), ...KNOWN_DEVIATIONS.map((k) => k.id)]) expect(md).toContain(`| \`${id}\` |`);
  });

  it('docs/scenarios.md shows example files as they are', () => {
    const md = readFileSync(new URL('../../docs/scenarios.md', import.meta.url), 'utf8');
    const blocks = [...md.matchAll(/File: `(test\/scenarios\/[a-z0-9-]+\.json)`\n+```json\n([\s\S]*?)\n```/g)];
    expect(blocks.length).toBeGreaterThanOrEqual(3);
    for (const [, path, body] of blocks) {
      const file = JSON.parse(readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8'));
      expect(JSON.parse(body!), path).toEqual(file);
    }
  });
});
