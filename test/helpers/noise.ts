/** Deterministic pseudo-random bytes (xorshift32): incompressible, the same for the same seed. */
export function noise(n: number, seed = 1): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = seed | 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}
