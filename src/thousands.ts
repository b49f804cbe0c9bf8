/**
 * An integer with commas between thousands: `178110` → `178,110`, as `toLocaleString('en-US')` writes it. Not
 * toLocaleString itself: its first call loads ICU's number formatting, ~30 ms of every regtrain process that
 * prints a model summary.
 */
export function withThousands(n: number): string {
  const digits = String(Math.abs(Math.round(n)));
  return `${n < 0 && digits !== '0' ? '-' : ''}${digits.replace(/\B(?=(\d{3})+$)/g, ',')}`;
}
