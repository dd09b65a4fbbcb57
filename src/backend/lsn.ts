// PostgreSQL WAL positions ('16/B374D848') as numbers of bytes. A double holds them exactly up
// to 2^53 bytes (8 PiB of WAL), far beyond a server's life.
export function parseLsn(s: string | null | undefined): number | null {
  if (typeof s !== 'string') return null;
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(s.trim());
  if (!m) return null;
  return parseInt(m[1]!, 16) * 0x1_0000_0000 + parseInt(m[2]!, 16);
}

export function formatLsn(n: number): string {
  const hi = Math.floor(n / 0x1_0000_0000);
  const lo = n - hi * 0x1_0000_0000;
  return `${hi.toString(16).toUpperCase()}/${lo.toString(16).toUpperCase()}`;
}
