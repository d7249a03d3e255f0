/**
 * Differences between the model (src/device) and the spec that the fuzzer has found and reported
 * but that are not fixed yet. A campaign waives them (counts them in its summary and goes on
 * looking for other failures) unless run with --strict; `smmu-sim replay` never waives. Each has
 * a regression scenario in test/scenarios/ marked `known_failure`, which the test suite checks
 * still fails: when the model is fixed, that test says so, and the entry here goes.
 */

import type { KnownDeviation } from './oracle.ts';

export const KNOWN_DEVIATIONS: readonly KnownDeviation[] = Object.freeze([
  {
    id: 'index-raz',
    summary:
      'SMMU-owned queue indices (SMMU_CMDQ_CONS.RD, SMMU_ECMDQ_CONS.RD, SMMU_EVENTQ_PROD.WR) read back bits [19:QS+1] as software wrote them ' +
      '(or as they were before LOG2SIZE shrank) until the SMMU next moves the index; the spec makes those bits RAZ',
    section: '§6.3.28, §6.3.95, §6.3.109',
    matches: (v) => v.check === 'index-raz',
  },
  {
    id: 'msi-address-untruncated',
    summary:
      'CMD_SYNC SIG_IRQ sends its MSI to MSIAddress as written, not truncated to the OAS: with a 32-bit OAS, MSIAddress 0x1_4000_1000 aborts ' +
      '(GERROR.MSI_CMDQ_ABT_ERR) instead of writing 0x4000_1000',
    section: '§4.7.3, §3.4.3',
    mimics: 'msi-address-untruncated',
  },
  {
    id: 'eventq-writable-while-abort-active',
    summary:
      'the event queue records events while GERROR.EVENTQ_ABT_ERR is active (after the abort, software moved the queue into RAM without ' +
      'acknowledging the error); the spec makes the queue unwritable until the error is acknowledged',
    section: '§7.2.1',
    mimics: 'eventq-writable-while-abort-active',
  },
]);
