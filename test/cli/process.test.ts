/**
 * The CLI as a user runs it: the bin/smmu-sim.mjs launcher in a child process (argument and bulk
 * standard-input paths), and the demo, which boots the real device and driver workers.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.ts';
import type { Io } from '../../src/cli/args.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const LAUNCHER = 'bin/smmu-sim.mjs';

interface Exit {
  readonly code: number | null;
  readonly out: string;
  readonly err: string;
}

/** Run the launcher with `args`, feeding `stdin` (if any) and closing it. */
function launch(args: string[], stdin?: string): Promise<Exit> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [LAUNCHER, ...args], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => void (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => void (err += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out, err }));
    child.stdin.end(stdin ?? '');
  });
}

/** Little-endian hex of a u32, byte 0 first. */
function le32(n: number): string {
  return [0, 8, 16, 24].map((s) => ((n >>> s) & 0xff).toString(16).padStart(2, '0')).join('');
}

describe('bin/smmu-sim.mjs', () => {
  it('decode 0x46:0 prints the CMD_SYNC line and exits 0', async () => {
    const r = await launch(['decode', '0x46:0']);
    expect(r.err).toBe('');
    expect(r.out).toBe('SYNC cs=SIG_NONE  # legal\n');
    expect(r.code).toBe(0);
  });

  it('decodes 20 000 commands piped through standard input, one line each, in order', async () => {
    const N = 20_000;
    // CMD_CFGI_STE (§4.3.1) with StreamID i [63:32] and Leaf [64]; a comment and a blank line
    // every 1000 commands, which produce no output.
    const lines: string[] = [];
    for (let i = 0; i < N; i++) {
      if (i % 1000 === 0) lines.push(`# block ${i / 1000}`, '');
      lines.push(`03000000${le32(i)}0100000000000000`);
    }
    const r = await launch(['decode'], `${lines.join('\n')}\n`);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const out = r.out.split('\n');
    expect(out.pop()).toBe('');
    expect(out).toHaveLength(N);
    expect(out[0]).toBe('CFGI_STE sid=0x0 leaf=1  # legal');
    expect(out[12_345]).toBe('CFGI_STE sid=0x3039 leaf=1  # legal');
    expect(out[N - 1]).toBe('CFGI_STE sid=0x4e1f leaf=1  # legal');
  });
});

describe('demo', () => {
  it('boots the model, shows the CERROR_ILL stop and the recovery, and exits 0', async () => {
    let out = '';
    let err = '';
    const io: Io = {
      out: (t) => void (out += t),
      err: (t) => void (err += t),
      stdin: async function* () {},
      stdinIsTTY: true,
    };
    const code = await main(['demo'], io);
    expect(err).toBe('');
    expect(code).toBe(0);
    const lines = out.split('\n');
    // The decoded samples, checked against the architecture (§4.7.3).
    expect(lines).toContain('  SYNC cs=Reserved  # CERROR_ILL sync-cs-reserved: CMD_SYNC has CS == 0b11, which is Reserved and causes CERROR_ILL (§4.7.3)');
    expect(lines).toContain('  TLBI_NH_VA + CMD_SYNC: 1 command and its sync, 1 doorbell, 0 errors');
    // The SMMU stops at the bad CMD_SYNC with CMDQ_CONS.ERR = CERROR_ILL (1) (§6.3.28, §7.1) ...
    const stop = lines.map((l) => /^ {2}the SMMU stopped at queue index 0x([0-9a-f]+): CMDQ_CONS\.ERR = CERROR_ILL \(1\), GERROR\.CMDQ_ERR toggled$/.exec(l)).find((m) => m !== null);
    expect(stop).toBeDefined();
    const index = `0x${stop![1]}`;
    // ... the driver acknowledges it: GERRORN equals GERROR again, CMDQ_ERR (bit 0) toggled once (§6.3.19, §6.3.20).
    expect(lines).toContain('  the driver replaced it with a CMD_SYNC, acknowledged GERRORN, and the queue went on: GERROR=0x1 GERRORN=0x1');
    // The trace shows the refused command and, at the same queue index, the CMD_SYNC that replaced it.
    const at = lines.indexOf(`  CMDQ[${index}] SYNC cs=Reserved  -> CERROR_ILL`);
    expect(at).toBeGreaterThan(0);
    expect(lines[at + 1]).toMatch(new RegExp(`^ {2}CMDQ\\[${index}\\] SYNC cs=SIG_\\w+.*-> consumed$`));
    expect(lines[at + 2]).toBe(`  CMDQ[0x${(Number(index) + 1).toString(16)}] TLBI_NH_ALL vmid=0x1  -> consumed`);
    expect(out).toMatch(/\ncounters: \d+ consumed, 1 refused, /);
  });
});
