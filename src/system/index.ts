/**
 * smmu-sim's public entry point: the running model, and the spec layer's codecs a script needs
 * to build and read what goes through it.
 */
export { System, DriverHandle, CpuHandle, WorkerHandle, commandWords } from './system.ts';
export { Vm } from './vms.ts';
export type { VmConfig } from './vms.ts';
export type { VmmState } from '../virt/vmm-worker.ts';
export type { SystemConfig, TraceEntry, Command, IssueResult } from './system.ts';
export { FULL_FEATURES, parseFeatures, validateFeatures } from '../spec/features.ts';
export type { SmmuFeatures } from '../spec/features.ts';
export { encodeCommand, encodeCommandWords, decodeCommand, formatCommand, parseCommandHex, commandToJson } from '../spec/command-codec.ts';
export { checkCommand, LEGALITY_RULES } from '../spec/legality.ts';
export { OP } from '../spec/commands.ts';
export { REG, findRegister, encode32, encode64, decodeRegister } from '../spec/registers.ts';
export { STE, CD, L1STD, L1CD, encodeStructure, decodeStructure } from '../spec/structures.ts';
export { EVT, encodeEvent, decodeEvent, formatEvent } from '../spec/events.ts';
export { HDR, COUNTER } from '../mem/board.ts';
export { CERROR_NONE, CERROR_ILL, CERROR_ABT, CERROR_ATC_INV_SYNC, cerrorName } from '../spec/cerror.ts';
