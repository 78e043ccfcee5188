#!/usr/bin/env node
// What `npm test` needs besides npm packages: Debian's chromium (the dashboard's browser test
// drives it with playwright-core), redis-server (the broker's persistence and cluster tests),
// mosquitto (docs/mosquitto-fleet.conf in a real round) and python3 with
// paho-mqtt, msgpack and numpy (the Python node of docs/protocol.md joins a real round). When
// something is missing and this is root on Debian, it is installed with apt-get; otherwise this
// stops at once and says what to install. Nothing is skipped silently.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const PYTHON = '/usr/bin/python3';
const checks = [
  { pkg: 'chromium', ok: () => existsSync('/usr/bin/chromium') },
  { pkg: 'redis-server', ok: () => existsSync('/usr/bin/redis-server') },
  { pkg: 'mosquitto', ok: () => existsSync('/usr/sbin/mosquitto') },
  ...[['python3-paho-mqtt', 'paho.mqtt.client'], ['python3-msgpack', 'msgpack'], ['python3-numpy', 'numpy']].map(([pkg, mod]) => ({
    pkg, ok: () => existsSync(PYTHON) && spawnSync(PYTHON, ['-c', `import ${mod}`], { stdio: 'ignore' }).status === 0,
  })),
];

const missing = () => checks.filter((c) => !c.ok()).map((c) => c.pkg);
let need = missing();
if (need.length > 0 && process.getuid?.() === 0 && existsSync('/usr/bin/apt-get')) {
  process.stderr.write(`preflight: installing ${need.join(' ')} (Debian packages the tests use)\n`);
  execFileSync('apt-get', ['update'], { stdio: 'inherit' });
  execFileSync('apt-get', ['install', '-y', ...need], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  need = missing();
}
if (need.length > 0) {
  process.stderr.write(`preflight: the tests need Debian packages that are missing: ${need.join(' ')}\n  install them with: sudo apt-get install -y ${need.join(' ')}\n`);
  process.exit(1);
}
