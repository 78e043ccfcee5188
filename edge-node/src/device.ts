import { arch, availableParallelism, platform, totalmem } from 'node:os';
import type { DeviceInfo } from '@fedmq/protocol';

/** Facts about this device for the node's status message. `backend` is the tfjs backend in use. */
export function deviceInfo(backend: string): DeviceInfo {
  return { platform: platform(), arch: arch(), cores: availableParallelism(), memoryMb: Math.round(totalmem() / 2 ** 20), backend };
}
