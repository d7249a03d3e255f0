/**
 * Facts about the machine a run measured, recorded with every result: latency across threads
 * depends on them more than on the code (node-platform.md §1.4: the wait-mode round trip is the
 * idle-vCPU wake-up cost of the VM, ~40 µs per sleeping side, set by the cpuidle driver).
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';

export interface MachineFacts {
  cpus: number;
  cpu_model: string;
  node: string;
  v8: string;
  platform: string;
  arch: string;
  os_release: string;
  total_mem_bytes: number;
  /** The CPU flags say the machine is a virtual machine (Linux only; null when unknown). */
  hypervisor: boolean | null;
  /** /sys/devices/system/cpu/cpuidle/current_driver (e.g. haltpoll), or null. */
  cpuidle_driver: string | null;
  /** The kernel's clocksource (tsc, arch_sys_counter …), or null. */
  clocksource: string | null;
  loadavg_1m: number;
}

/** The subset repeated in every result. */
export interface MachineBrief {
  cpus: number;
  cpu_model: string;
  node: string;
  v8: string;
}

function readTrim(path: string): string | null {
  try {
    return readFileSync(path, 'utf8').trim() || null;
  } catch {
    return null;
  }
}

function hypervisorFlag(): boolean | null {
  const info = readTrim('/proc/cpuinfo');
  if (info === null) return null;
  const flags = /^(?:flags|Features)\s*:\s*(.*)$/m.exec(info);
  return flags === null ? null : flags[1]!.split(/\s+/).includes('hypervisor');
}

export function machineFacts(): MachineFacts {
  const cpus = os.cpus();
  return {
    cpus: typeof os.availableParallelism === 'function' ? os.availableParallelism() : cpus.length,
    cpu_model: cpus[0]?.model.trim() ?? 'unknown',
    node: process.version,
    v8: process.versions.v8,
    platform: process.platform,
    arch: process.arch,
    os_release: os.release(),
    total_mem_bytes: os.totalmem(),
    hypervisor: hypervisorFlag(),
    cpuidle_driver: readTrim('/sys/devices/system/cpu/cpuidle/current_driver'),
    clocksource: readTrim('/sys/devices/system/clocksource/clocksource0/current_clocksource'),
    loadavg_1m: Math.round((os.loadavg()[0] ?? 0) * 100) / 100,
  };
}

export function machineBrief(m: MachineFacts): MachineBrief {
  return { cpus: m.cpus, cpu_model: m.cpu_model, node: m.node, v8: m.v8 };
}
