/**
 * Differences between the model (src/device) and the spec that the fuzzer has found and reported
 * but that are not fixed yet. A campaign waives them (counts them in its summary and goes on
 * looking for other failures) unless run with --strict; `smmu-sim replay` never waives. Each has
 * a regression scenario in test/scenarios/ marked `known_failure`, which the test suite checks
 * still fails: when the model is fixed, that test says so, and the entry here goes.
 */

import type { KnownDeviation } from './oracle.ts';

export const KNOWN_DEVIATIONS: readonly KnownDeviation[] = Object.freeze([]);
