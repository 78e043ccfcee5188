import { defineConfig } from 'vitest/config';

/**
 * Three projects (`npm test` runs them all):
 * - `unit` (`npm run test:unit`): everything that is neither of the others — pure functions, the
 *   round engine on a fake clock, real brokers on port 0 with scripted or small tfjs nodes;
 * - `e2e` (`*.e2e.test.ts`): real training runs over MQTT (simulations, chaos, a killed and resumed
 *   coordinator, fuzzing during a run, the Python node of docs/protocol.md) and the `fedmq`
 *   command run as a process (help, auth, certs, a TLS deployment);
 * - `browser` (`*.browser.test.ts`): the web dashboard in Debian's headless Chromium.
 */
const E2E = ['*/src/**/*.e2e.test.ts', 'test/**/*.e2e.test.ts'];
const BROWSER = ['*/src/**/*.browser.test.ts'];

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    projects: [
      { extends: true, test: { name: 'unit', include: ['*/src/**/*.test.ts', 'test/**/*.test.ts'], exclude: [...E2E, ...BROWSER, '**/node_modules/**'] } },
      { extends: true, test: { name: 'e2e', include: E2E } },
      { extends: true, test: { name: 'browser', include: BROWSER } },
    ],
  },
});
