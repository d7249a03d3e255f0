import { parseHexWords } from '../spec/hex.ts';
import { CD, L1CD, L1STD, STE, decodeStructure, formatStructure, structureToJson } from '../spec/structures.ts';
import { EVENT_BYTES, decodeEvent, eventToJson, formatEvent } from '../spec/events.ts';

export const STRUCTURE_KINDS = ['ste', 'cd', 'l1std', 'l1cd', 'event'] as const;
export type StructureKind = (typeof STRUCTURE_KINDS)[number];

const LAYOUTS = { ste: STE, cd: CD, l1std: L1STD, l1cd: L1CD } as const;

/** One 64-bit word: the L1STD (§5.1) and L1CD (§5.3) are a single dword. */
const DWORD_BYTES = 8;
const ONE_DWORD_RE = /^0x[0-9a-f]{1,16}$/i;

/**
 * parseHexWords, plus the word form of a one-dword structure: "0x81230009" has no ':' to mark it
 * as words, and would otherwise be read as memory-order digits and refused for its 'x'.
 */
function structureWords(text: string, bytes: number, what: string): Uint32Array {
  const t = text.trim();
  if (bytes === DWORD_BYTES && ONE_DWORD_RE.test(t)) {
    const v = BigInt(t);
    return Uint32Array.of(Number(v & 0xffff_ffffn), Number(v >> 32n));
  }
  return parseHexWords(text, bytes, what);
}

/**
 * Decode one in-memory structure given as hex. Text: the structure's name, then one indented
 * line per non-zero field. JSON: one object. Throws a RangeError naming bad input.
 */
export function decodeStructureHex(kind: StructureKind, text: string, json: boolean): string {
  if (kind === 'event') {
    const words = parseHexWords(text, EVENT_BYTES, 'event record');
    const d = decodeEvent(words);
    return json ? JSON.stringify(eventToJson(d)) : formatEvent(d);
  }
  const layout = LAYOUTS[kind];
  const words = structureWords(text, layout.bytes, layout.name);
  const d = decodeStructure(layout, words);
  if (json) return JSON.stringify({ structure: layout.name, ...structureToJson(d) });
  return [layout.name, ...formatStructure(layout, d).map((l) => `  ${l}`)].join('\n');
}
