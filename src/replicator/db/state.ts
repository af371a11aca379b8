/** Where the shadow WAL stands, shared by the shadow, its continuity checks and checkpoints. */

/** Bytes read from the real WAL per step, so memory stays bounded whatever the WAL's size. */
export const COPY_CHUNK_BYTES = 4 * 1024 * 1024;

export interface ShadowState {
  generation: string;
  index: number;
  /** Size of the current shadow file (always a committed frame boundary). */
  size: number;
  /** Running checksum at `size`. */
  checksum: [number, number];
  /** The 32-byte header of the current shadow file. */
  header: Uint8Array;
}
