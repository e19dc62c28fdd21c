/**
 * A wait in messages, as seconds: whole from 10 s up (as every default reads: "120"), to two decimals below, so that
 * a short deadline (a test's, an operator's 1 s) reads as what it is rather than "0" or "1".
 */
export function seconds(ms: number): string {
  return ms >= 10_000 ? String(Math.round(ms / 1000)) : String(Number((ms / 1000).toFixed(2)));
}
