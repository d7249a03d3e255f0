import { parse, UsageError, type Io } from './args.ts';
import { commandTextLine } from './decode.ts';
import { encodeCommandWords, type CommandInput } from '../spec/command-codec.ts';
import { FULL_FEATURES } from '../spec/features.ts';
import { System } from '../system/system.ts';
import { parseWaitPolicy } from '../mem/wait.ts';

export const DEMO_HELP = `usage: smmu-sim demo [--policy spin|hybrid|wait] [--trace [--json]]

A short tour, under a few seconds: decode and check a handful of commands against the
architecture, then boot the model (the SMMU in one worker, a guest driver in another, one
SharedArrayBuffer between them), issue a TLBI with a CMD_SYNC, plant an illegal command and
watch the architected error (CMDQ_CONS.ERR, GERROR.CMDQ_ERR) and the driver's recovery.

options:
  --policy P   how the device and driver wait: spin, hybrid (default) or wait
  --trace      print the device's whole command trace at the end: every command it
               consumed or refused, with queue, index and outcome
  --json       with --trace, the trace as JSON lines on stdout (the tour goes to stderr)
  -h, --help   this text
`;

/** Commands the tour decodes: each shows one thing the checker knows. */
const SAMPLES: readonly (readonly [string, CommandInput])[] = [
  ['a range invalidation as Linux builds it', { name: 'CMD_TLBI_NH_VA', VMID: 1, ASID: 5, Address: 0x8d36456a6000n, Leaf: 1, TG: '64K', NUM: 18, SCALE: 23, TTL: 3 }],
  ['the reserved range encoding TG != 0, NUM = SCALE = TTL = 0', { name: 'CMD_TLBI_NH_VA', ASID: 5, Address: 0x1000, TG: '4K' }],
  ['Linux MSI-polled sync', { name: 'CMD_SYNC', CS: 'SIG_IRQ', MSH: 3, MSIAttr: 0xf, MSIAddress: 0x4000_1230 }],
  ['CS = 0b11 is Reserved', { name: 'CMD_SYNC', CS: 3 }],
  ['CFGI_ALL is CFGI_STE_RANGE with Range 31', { name: 'CMD_CFGI_ALL' }],
  ['SSec = 1 on the Non-secure queue', { name: 'CMD_CFGI_STE', StreamID: 3, SSec: 1, Leaf: 1 }],
];

export async function demoMain(argv: string[], io: Io): Promise<number> {
  const { values } = parse('demo', argv, { policy: { type: 'string' }, trace: { type: 'boolean' }, json: { type: 'boolean' } } as const);
  if (values.json && !values.trace) throw new UsageError('demo: --json goes with --trace');
  const jsonTrace = values.trace === true && values.json === true;
  let policy;
  try {
    policy = values.policy === undefined ? undefined : parseWaitPolicy(values.policy);
  } catch (e) {
    throw new UsageError(`demo: --policy: ${(e as Error).message}`);
  }
  const say = (s = '') => (jsonTrace ? io.err(`${s}\n`) : io.out(`${s}\n`));

  say('smmu-sim demo: decode and check commands (IHI0070 G.b §4), every optional feature on');
  for (const [why, c] of SAMPLES) {
    say(`  # ${why}`);
    say(`  ${commandTextLine(encodeCommandWords(c), FULL_FEATURES)}`);
  }
  say();
  say('Booting the model: SMMU device worker + guest driver worker on one SharedArrayBuffer ...');
  const started = performance.now();
  const sys = await System.start({ trace: true, ...(policy ? { policy } : {}) });
  try {
    const st = await sys.driver.state();
    say(`  up in ${(performance.now() - started).toFixed(0)} ms; CR0ACK=0x${sys.readReg('SMMU_CR0ACK').toString(16)}, driver waits for CMD_SYNC by ${st.features?.msi ? 'MSI polling' : 'CONS polling'}`);

    const r1 = await sys.driver.issue([{ name: 'CMD_TLBI_NH_VA', VMID: 1, ASID: 5, Address: 0x8d36456a6000n, Leaf: 1 }]);
    say(`  TLBI_NH_VA + CMD_SYNC: ${r1.commands} command and its sync, ${r1.doorbells} doorbell, ${r1.errors.length} errors`);

    say('  Planting an illegal CMD_SYNC (CS = 0b11) between two good commands ...');
    const r2 = await sys.driver.issue([
      { name: 'CMD_TLBI_NH_ASID', VMID: 1, ASID: 7 },
      { name: 'CMD_SYNC', CS: 3 },
      { name: 'CMD_TLBI_NH_ALL', VMID: 1 },
    ]);
    for (const e of r2.errors) say(`  the SMMU stopped at queue index 0x${e.index.toString(16)}: CMDQ_CONS.ERR = ${e.name} (${e.code}), GERROR.CMDQ_ERR toggled`);
    say(`  the driver replaced it with a CMD_SYNC, acknowledged GERRORN, and the queue went on: GERROR=0x${sys.readReg('SMMU_GERROR').toString(16)} GERRORN=0x${sys.readReg('SMMU_GERRORN').toString(16)}`);
    say();
    const trace = sys.trace();
    if (values.trace) {
      say(`The device's trace: ${trace.entries.length} commands${trace.lost ? `, ${trace.lost} records lost` : ''}`);
      for (const e of trace.entries) (jsonTrace ? io.out(`${JSON.stringify(e.json)}\n`) : say(`  ${e.text}`));
    } else {
      say('The last commands the device consumed (--trace shows all):');
      for (const e of trace.entries.slice(-8)) say(`  ${e.text}`);
    }
    const c = sys.counters();
    say();
    say(`counters: ${c.COMMANDS_CONSUMED} consumed, ${c.COMMAND_ERRORS} refused, ${c.CMD_SYNCS} syncs, ${c.MSI_WRITES} MSIs, ${c.MMIO_WRITES} register writes`);
    say('Next: smmu-sim decode --help, smmu-sim regs SMMU_CMDQ_CONS, and the README walkthrough.');
  } finally {
    await sys.stop();
  }
  return 0;
}
