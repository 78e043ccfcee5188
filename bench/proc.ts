/** Memory of a live process as the kernel counts it (Linux /proc), for the benchmarks. No fedmq imports: bench/edge-footprint.ts's probe child loads it. */
import { readFileSync } from 'node:fs';

/**
 * A `kB` field of /proc/PID/status — `VmHWM` (peak RSS) or `VmRSS` (current RSS) — in bytes;
 * NaN when the process has exited or the field is missing.
 */
export function procStatusBytes(pid: number | 'self', field: 'VmHWM' | 'VmRSS'): number {
  try {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN; // exited
  }
}
