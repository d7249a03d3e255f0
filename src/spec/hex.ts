/**
 * Hex forms of little-endian structures, as people paste them: memory order (byte 0 first, as a
 * hexdump of a queue shows it) or 64-bit words, lowest first, separated by ':'.
 */
import type { Words } from './bits.ts';

const DWORD_RE = /^(0x)?[0-9a-f]{1,16}$/i;

/**
 * Parse `bytes` bytes (a multiple of 8) written as 2×bytes hex digits in memory order
 * (whitespace allowed) or as bytes/8 64-bit words "0xW0:0xW1:…". Throws a RangeError naming the
 * problem; `what` names the structure in messages.
 */
export function parseHexWords(text: string, bytes: number, what: string): Uint32Array {
  const t = text.trim();
  const dwords = bytes / 8;
  const forms = dwords === 1
    ? `${bytes * 2} hex digits (byte 0 first) or one 64-bit word 0xW0`
    : `${bytes * 2} hex digits (byte 0 first) or ${dwords} 64-bit words 0xW0:…:0xW${dwords - 1}`;
  if (t === '') throw new RangeError(`empty ${what}: expected ${forms}`);
  const words = new Uint32Array(bytes / 4);
  if (t.includes(':')) {
    const parts = t.split(':');
    if (parts.length !== dwords) throw new RangeError(`'${t}': ${what} needs ${dwords} 64-bit words, found ${parts.length}`);
    parts.forEach((raw, d) => {
      const p = raw.trim();
      if (!DWORD_RE.test(p)) throw new RangeError(`'${t}': word ${d} '${p}' is not a hex number of 1 to 16 digits`);
      const v = BigInt(p.toLowerCase().startsWith('0x') ? p : `0x${p}`);
      words[2 * d] = Number(v & 0xffff_ffffn);
      words[2 * d + 1] = Number(v >> 32n);
    });
    return words;
  }
  const digits = t.replace(/\s+/g, '');
  const bad = /[^0-9a-f]/i.exec(digits);
  if (bad !== null) {
    const hint = digits.toLowerCase().startsWith('0x') ? ' (memory-order hex has no 0x prefix; use 0xW0:0xW1… for 64-bit words)' : '';
    throw new RangeError(`'${t}': invalid hex character '${bad[0]}' at position ${bad.index}${hint}`);
  }
  if (digits.length !== bytes * 2) throw new RangeError(`'${t}': ${what} needs ${forms}; got ${digits.length} digits`);
  for (let i = 0; i < bytes; i++) {
    const byte = parseInt(digits.slice(2 * i, 2 * i + 2), 16);
    words[i >>> 2] = (words[i >>> 2]! | (byte << (8 * (i & 3)))) >>> 0;
  }
  return words;
}

/** Words to little-endian bytes. */
export function wordsToLeBytes(words: Words): Uint8Array {
  const out = new Uint8Array(words.length * 4);
  for (let i = 0; i < words.length; i++) {
    const w = words[i]! >>> 0;
    out[4 * i] = w & 0xff;
    out[4 * i + 1] = (w >>> 8) & 0xff;
    out[4 * i + 2] = (w >>> 16) & 0xff;
    out[4 * i + 3] = w >>> 24;
  }
  return out;
}

/** Memory-order hex digits. */
export function hexMemoryOrder(words: Words): string {
  let s = '';
  for (const b of wordsToLeBytes(words)) s += b.toString(16).padStart(2, '0');
  return s;
}

/** 64-bit words, lowest first, each 16 digits: "0x…:0x…". */
export function hexDwords(words: Words): string {
  const parts: string[] = [];
  for (let i = 0; i + 1 < words.length; i += 2) {
    parts.push(`0x${(words[i + 1]! >>> 0).toString(16).padStart(8, '0')}${(words[i]! >>> 0).toString(16).padStart(8, '0')}`);
  }
  return parts.join(':');
}
