/**
 * A VM's guest kernel bringing up its IOMMU: the SMMU driver's reset and, in a VM whose VMM
 * presents a Tegra241 CMDQV ('vcmdq', src/system/vms.ts), the guest CMDQV driver's probe and reset
 * (tegra241_cmdqv_hw_reset over its one VINTF) with the SMMU driver's commands then routed through
 * it (VcmdqIssuer), as Linux's arm-smmu-v3 does once tegra241-cmdqv has probed.
 *
 * One function for every guest: the VM's guest driver worker (src/system/driver-worker.ts) and
 * the benchmark's bench worker (bench/paths/vm-guest.ts), which runs the same guest in its own
 * thread to time it, both call resetGuest; neither has a copy of this bring-up.
 */
import type { Board } from '../mem/board.ts';
import { MmioPort } from '../mem/mmio.ts';
import type { WaitPolicy } from '../mem/wait.ts';
import { GuestCmdqv, GuestCmdqvBus, MappedPage, VcmdqIssuer } from '../driver/cmdqv.ts';
import type { GuestDriver } from '../driver/driver.ts';
import type { RegisterPort } from '../driver/port.ts';

/** The guest's CMDQV (a VM on the 'vcmdq' path). */
export interface GuestCmdqvData {
  /** The guest's CMDQV window, trapped by its VMM ('vcmdqv<k>'). */
  readonly window: string;
  /** The physical CMDQV window, of which one page is mapped into the guest. */
  readonly physWindow: string;
  /** Offset in the physical window of that page: its VINTF's page 0. */
  readonly page0: number;
  /** log2 of each LVCMDQ's entries (default: the guest driver's, GUEST_LVCMDQ_LOG2). */
  readonly lvcmdqLog2?: number;
}

/** The guest CMDQV driver and its issuer, once resetGuest made them ('vcmdq' only). */
export interface GuestCmdqvState {
  cmdqv: GuestCmdqv | undefined;
  issuer: VcmdqIssuer | undefined;
}

/**
 * A register window the VMM emulates: a guest write is a trap, and the vCPU resumes only once the
 * VMM has handled it. The next instruction may touch another window whose state the trap
 * changed (a VCMDQ_BASE write makes the VMM allocate the hardware queue, which the guest then
 * enables through its mapped page), so each write waits until it was applied.
 */
export class TrappedPort implements RegisterPort {
  constructor(readonly port: MmioPort) {}

  write32(off: number, value: number): void {
    this.port.write32(off, value);
    this.port.drainOwn();
  }

  write64Parts(off: number, lo: number, hi: number): void {
    this.port.write64Parts(off, lo, hi);
    this.port.drainOwn();
  }

  read32(off: number): number {
    return this.port.read32(off);
  }

  peek32(off: number): number {
    return this.port.peek32(off);
  }

  waitReg(off: number, ready: (v: number) => boolean, describe: () => string, policy?: WaitPolicy): number {
    return this.port.waitReg(off, ready, describe, policy);
  }

  drainOwn(): void {
    this.port.drainOwn();
  }
}

/**
 * The guest driver's reset. Without a CMDQV (`c` undefined) that is all. With one: the driver's
 * issuer removed, the driver's reset, then the guest CMDQV driver (the one in `s` from an earlier
 * reset of the same driver, whose rings it keeps, or a new one on the driver's memory and
 * allocator) probed and reset, and a VcmdqIssuer installed on the driver. `s` is updated step by
 * step, so that after a failure it says what is in place.
 */
export function resetGuest(board: Board, driver: GuestDriver, policy: WaitPolicy, c: GuestCmdqvData | undefined, s: GuestCmdqvState): void {
  if (c === undefined) {
    driver.reset();
    return;
  }
  driver.setIssuer(undefined);
  s.issuer = undefined;
  driver.reset();
  s.cmdqv ??= new GuestCmdqv({
    bus: new GuestCmdqvBus(new TrappedPort(new MmioPort(board, c.window, policy)), new MappedPage(new MmioPort(board, c.physWindow, policy), c.page0)),
    mem: driver.mem,
    alloc: driver.allocator,
    policy,
    cmdqs: driver.features!.cmdqs,
    ...(c.lvcmdqLog2 !== undefined ? { log2: c.lvcmdqLog2 } : {}),
    mainSync: () => {
      driver.sync();
    },
  });
  s.cmdqv.probe();
  s.cmdqv.reset();
  s.issuer = new VcmdqIssuer(driver, s.cmdqv);
  driver.setIssuer(s.issuer);
}
