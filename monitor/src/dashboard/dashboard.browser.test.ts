// The web dashboard in real headless Chromium (Debian's /usr/bin/chromium driven by playwright-core)
// during a short real training run: 3 nodes, 3 rounds of FedAvg on a slice of MNIST with a central
// test set and federated evaluation on every node, over the broker's MQTT-over-WebSocket endpoint
// (protocol v2). Then the run report, offline.
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addCredential, startBroker, type RunningBroker } from '@fedmq/broker';
import { Coordinator, createStrategy } from '@fedmq/coordinator';
import type { FederatedEval, RoundMetrics, RoundRecord } from '@fedmq/protocol';
import { initBackend, loadMnist, subset } from '@fedmq/ml';
import { startSimulation, type Simulation } from '@fedmq/simulator';
import { renderReport } from '../report.ts';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'test-artifacts');
const ROUNDS = 3;
const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);
const LAUNCH = {
  executablePath: CHROMIUM,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
};

/** Federated evaluation of a round with the nodes' accuracies spread around `accuracy`. */
function fedEval(accuracy: number): FederatedEval {
  return {
    loss: 1 - accuracy, accuracy, numExamples: 360, nodes: 3, worstDecileAccuracy: accuracy - 0.1, localBetterFraction: 0.5,
    accuracySpread: { min: accuracy - 0.1, p10: accuracy - 0.05, median: accuracy, p90: accuracy + 0.05, max: accuracy + 0.06 },
  };
}

/** A RoundMetrics message (docs/protocol.md §3); `testAccuracy` null: no central test set. */
function roundMetrics(job: string, runId: string, round: number, testAccuracy: number | null, extra: Partial<RoundMetrics> = {}): RoundMetrics {
  return {
    v: 2, job, runId, round, modelVersion: round + 1, accepted: true, mode: 'sync', selected: 2, reported: 2, failures: round === 2 ? { timeout: 1 } : {},
    trainLoss: 1 / round, testLoss: testAccuracy === null ? null : 1.5 / round, testAccuracy, federatedEval: null, bytesDown: 1_600_000, bytesUp: 1_590_000,
    durationMs: 1000, phases: { trainMs: 900, aggregateMs: 50, evalMs: 50 }, ts: Date.now(), ...extra,
  };
}

/** Chart contents as the page holds them: labels (rounds) and each dataset's values. */
function chartData(page: Page, chart: string) {
  return page.evaluate((name) => {
    const c = (window as unknown as { fedmqCharts: Record<string, { data: { labels: unknown[]; datasets: Array<{ label: string; data: unknown[] }> } }> }).fedmqCharts[name];
    return { labels: c.data.labels, datasets: Object.fromEntries(c.data.datasets.map((d) => [d.label, d.data])) };
  }, chart);
}

describe('web dashboard in headless Chromium', () => {
  let broker: RunningBroker | undefined;
  let broker2: RunningBroker | undefined;
  let broker3: RunningBroker | undefined;
  let coordinator: Coordinator | undefined;
  let coordinator3: Coordinator | undefined;
  let sim: Simulation | undefined;
  let sim3: Simulation | undefined;
  let browser: Browser | undefined;
  let credsDir: string | undefined;

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(`${CHROMIUM} not found: this test needs Debian's chromium (apt-get install chromium; .ci/run installs it)`);
    }
    await initBackend('wasm');
    await mkdir(ARTIFACTS, { recursive: true });
  });

  afterAll(async () => {
    await browser?.close();
    await sim?.stop();
    await sim3?.stop();
    await coordinator?.close();
    await coordinator3?.close();
    await broker?.close();
    await broker2?.close();
    await broker3?.close();
    if (credsDir) await rm(credsDir, { recursive: true, force: true });
  });

  it('follows a 3-round run live: round counter, charts and node table reach the last round; the report opens offline', { timeout: 240_000 }, async () => {
    broker = await startBroker({ port: 0, host: '127.0.0.1', httpPort: 0 });
    const train = subset(loadMnist('train'), range(0, 1800));
    const test = subset(loadMnist('test'), range(0, 1000));
    coordinator = new Coordinator({
      brokerUrl: broker.url, job: 'dash', model: 'mnist-2nn', rounds: ROUNDS, minAvailableNodes: 3, deadlineMs: 60_000, testData: test, seed: 42,
      evaluateFraction: 1, valFraction: 0.1,
      strategy: createStrategy({ strategy: 'fedavg', fraction: 1, minFitNodes: 1, fitConfig: { epochs: 1, batchSize: 32, learningRate: 0.1 } }),
    });
    const done = coordinator.run();

    browser = await chromium.launch(LAUNCH);
    const page = await browser.newPage({ viewport: { width: 1400, height: 1050 } });
    const pageErrors: string[] = [];
    page.on('pageerror', (err) => pageErrors.push(err.message));
    page.on('console', (msg) => {
      if (msg.type() === 'error') pageErrors.push(msg.text());
    });

    // Open the page while the coordinator waits for nodes: nothing has been trained yet.
    await page.goto(`${broker.httpUrl}?job=dash`);
    await page.waitForFunction(
      () => document.body.dataset.connection === 'connected' && document.querySelector('#phase')?.textContent === 'running' && (document.querySelector('#stage') as HTMLElement | null)?.dataset.stage === 'waiting',
    );
    // Record every value the round counter shows from now on (the page is never reloaded).
    await page.evaluate(() => {
      const el = document.querySelector('#round')!;
      const seen: string[] = [el.textContent ?? ''];
      (window as unknown as { roundsSeen: string[] }).roundsSeen = seen;
      new MutationObserver(() => {
        if (seen.at(-1) !== el.textContent) seen.push(el.textContent ?? '');
      }).observe(el, { childList: true, characterData: true, subtree: true });
    });
    expect(await chartData(page, 'accuracy')).toEqual({ labels: [], datasets: { 'test accuracy': [], 'federated accuracy': [], 'federated p10': [], 'federated p90': [] } });

    sim = await startSimulation({ brokerUrl: broker.url, job: 'dash', nodes: 3, train, partition: { kind: 'iid' }, seed: 1, workers: 2 });
    const history: RoundRecord[] = await done;
    expect(history.map((r) => r.round)).toEqual([1, 2, 3]);

    await page.waitForFunction(
      (rounds) => {
        const w = window as unknown as { fedmqCharts: { accuracy: { data: { datasets: Array<{ data: unknown[] }> } } } };
        return document.querySelector('#round')?.textContent === `${rounds} / ${rounds}` && w.fedmqCharts.accuracy.data.datasets[0].data.length === rounds;
      },
      ROUNDS,
      { timeout: 30_000 },
    );
    await expect.poll(() => page.textContent('#phase')).toBe('done');

    // One point per round, with the coordinator's numbers: centralized and federated.
    expect(history.every((r) => r.accepted && r.federatedEval !== null)).toBe(true);
    const fed = (pick: (f: FederatedEval) => number) => history.map((r) => pick(r.federatedEval!));
    expect(await chartData(page, 'accuracy')).toEqual({
      labels: [1, 2, 3],
      datasets: {
        'test accuracy': history.map((r) => r.testAccuracy), 'federated accuracy': fed((f) => f.accuracy),
        'federated p10': fed((f) => f.accuracySpread.p10), 'federated p90': fed((f) => f.accuracySpread.p90),
      },
    });
    expect(await chartData(page, 'loss')).toEqual({
      labels: [1, 2, 3],
      datasets: { 'test loss': history.map((r) => r.testLoss), 'train loss': history.map((r) => r.trainLoss), 'federated loss': fed((f) => f.loss) },
    });
    expect((await chartData(page, 'bytes')).datasets).toEqual({ 'bytes down': history.map((r) => r.bytesDown), 'bytes up': history.map((r) => r.bytesUp) });
    expect((await chartData(page, 'participation')).datasets).toEqual({ selected: [3, 3, 3], reported: [3, 3, 3], failures: [0, 0, 0] });

    // It was live: the counter moved through the rounds in order without a reload.
    const seen = await page.evaluate(() => (window as unknown as { roundsSeen: string[] }).roundsSeen);
    expect(seen.filter((s) => /^\d+ \/ 3$/.test(s)).map((s) => Number(s.split(' ')[0])).filter((r) => r > 0)).toEqual([1, 2, 3]);

    // Node table: three idle nodes that trained the last round.
    await expect.poll(() => page.$$eval('#nodes tbody tr[data-node-id]', (rows) => rows.map((r) => [r.getAttribute('data-state'), r.children[5].textContent]))).toEqual([
      ['idle', '3'], ['idle', '3'], ['idle', '3'],
    ]);
    expect(await page.textContent('#stat-accuracy')).toBe(`${(history[2].testAccuracy! * 100).toFixed(2)} %`);
    expect(await page.textContent('#stat-fed-accuracy')).toBe(`${(history[2].federatedEval!.accuracy * 100).toFixed(2)} %`);
    // the round table, newest first, with the federated columns
    expect(await page.$$eval('#rounds tbody tr', (rows) => rows.map((r) => r.getAttribute('data-round')))).toEqual(['3', '2', '1']);
    expect(await page.$$eval('#rounds thead th', (ths) => ths.map((t) => t.textContent))).toEqual(expect.arrayContaining(['test acc', 'fed acc', 'fed p10 – p90', 'worst decile']));
    expect(await page.textContent('#stage')).toBe('–'); // the run is done: no live stage
    expect(pageErrors).toEqual([]);
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard.png'), fullPage: true });

    // The run report: same charts, from one file, without any network request.
    const html = renderReport({ job: 'dash', runId: 'run-test', config: { model: 'mnist-2nn', rounds: ROUNDS }, history });
    const report = await browser.newPage({ viewport: { width: 1400, height: 1050 } });
    const requests: string[] = [];
    await report.route('**/*', (route) => {
      requests.push(route.request().url());
      return route.abort();
    });
    report.on('pageerror', (err) => pageErrors.push(err.message));
    await report.setContent(html, { waitUntil: 'load' });
    await report.waitForFunction(() => (window as unknown as { fedmqCharts?: unknown }).fedmqCharts !== undefined);
    expect((await chartData(report, 'accuracy')).datasets).toMatchObject({ 'test accuracy': history.map((r) => r.testAccuracy), 'federated accuracy': fed((f) => f.accuracy) });
    expect(requests).toEqual([]);
    expect(pageErrors).toEqual([]);
    await report.screenshot({ path: join(ARTIFACTS, 'report.png'), fullPage: true });
    await report.close();
    await page.close();
  });

  it('shows retained history when opened mid-run, picks the active job, and clears the charts on a new run', { timeout: 60_000 }, async () => {
    broker2 = await startBroker({ port: 0, host: '127.0.0.1', httpPort: 0 });
    browser ??= await chromium.launch(LAUNCH);
    const pub = await mqtt.connectAsync(broker2.url, { reconnectPeriod: 0 });
    const publish = (topic: string, msg: unknown) => pub.publishAsync(topic, JSON.stringify(msg), { qos: 1, retain: true });
    // An old job without a central test set (federated evaluation only), then the job in progress:
    // round 1 done, round 2 failed and retried, round 3 done, round 4 in its fit stage.
    await publish('fedmq/v2/old/coordinator/status', { v: 2, job: 'old', runId: 'run-old', state: 'done', mode: 'sync', round: 1, rounds: 1, ts: Date.now() - 60_000 });
    await publish('fedmq/v2/old/rounds/1/metrics', roundMetrics('old', 'run-old', 1, null, { federatedEval: fedEval(0.5) }));
    await publish('fedmq/v2/live/rounds/1/metrics', roundMetrics('live', 'run-a', 1, 0.7, { federatedEval: fedEval(0.72) }));
    await publish('fedmq/v2/live/rounds/2/metrics', roundMetrics('live', 'run-a', 2, 0.7, { accepted: false, reported: 0, trainLoss: null, federatedEval: null }));
    await publish('fedmq/v2/live/rounds/3/metrics', roundMetrics('live', 'run-a', 3, 0.8, { federatedEval: fedEval(0.83) }));
    await publish('fedmq/v2/live/nodes/pi-1/status', { v: 2, job: 'live', nodeId: 'pi-1', state: 'training', ts: Date.now(), numExamples: 600, device: { platform: 'linux', arch: 'arm64', cores: 4, memoryMb: 3793, backend: 'wasm' }, lastRound: { round: 3, loss: 0.4583, trainMs: 2954.2 } });
    await publish('fedmq/v2/live/nodes/pi-2/status', { v: 2, job: 'live', nodeId: 'pi-2', state: 'offline', ts: Date.now() - 5000 });
    await publish('fedmq/v2/live/model/meta', { v: 2, job: 'live', runId: 'run-a', version: 3, round: 3, model: 'mnist-2nn', bytes: 797_394, params: 199_210, sha256: 'a'.repeat(64), ts: Date.now() });
    await publish('fedmq/v2/live/coordinator/status', { v: 2, job: 'live', runId: 'run-a', state: 'running', mode: 'sync', round: 0, rounds: 5, ts: Date.now() - 30_000 });
    await publish('fedmq/v2/live/coordinator/stage', { v: 2, job: 'live', runId: 'run-a', round: 4, stage: 'fit', cohort: 2, online: 1, deadline: Date.now() + 45_000, ts: Date.now() });

    const page = await browser.newPage({ viewport: { width: 1400, height: 1050 } });
    await page.goto(broker2.httpUrl!); // no ?job: all jobs, the one whose coordinator spoke last is shown
    await page.waitForFunction(() => document.querySelector('#round')?.textContent === '2 / 5'); // accepted rounds: the failed one does not count
    expect(await page.$$eval('#job-select option', (os) => os.map((o) => o.textContent))).toEqual(['live', 'old']);
    expect(await page.inputValue('#job-select')).toBe('live');
    expect(await page.textContent('#phase')).toBe('running');
    expect(await page.textContent('#stage')).toBe('round 4 · fit · cohort 2 · 1 online');
    expect(await chartData(page, 'accuracy')).toEqual({
      labels: [1, 2, 3],
      datasets: {
        'test accuracy': [0.7, 0.7, 0.8], 'federated accuracy': [0.72, null, 0.83],
        'federated p10': [fedEval(0.72).accuracySpread.p10, null, fedEval(0.83).accuracySpread.p10],
        'federated p90': [fedEval(0.72).accuracySpread.p90, null, fedEval(0.83).accuracySpread.p90],
      },
    });
    expect((await chartData(page, 'participation')).datasets.failures).toEqual([0, 1, 0]);
    // the round table: newest first, the failed round marked
    expect(await page.$$eval('#rounds tbody tr', (trs) => trs.map((r) => [r.getAttribute('data-round'), r.className, r.children[1].textContent]))).toEqual([
      ['3', '', 'ok'], ['2', 'failed', 'failed, retried'], ['1', '', 'ok'],
    ]);
    expect(await page.textContent('#stat-fed-accuracy')).toBe('83.00 %');
    const left = Number(/^(\d+) s left$/.exec((await page.textContent('#deadline')) ?? '')?.[1]);
    expect(left).toBeGreaterThan(0);
    expect(left).toBeLessThanOrEqual(45);
    expect(await page.textContent('#model')).toBe('mnist-2nn v3 · 199,210 params · 797 kB');
    const rows = await page.$$eval('#nodes tbody tr', (trs) => trs.map((r) => [...r.children].map((c) => c.textContent ?? '')));
    expect(rows.map((r) => r[2])).toEqual([expect.stringMatching(/^\d+ s ago$/), expect.stringMatching(/^\d+ s ago$/)]);
    expect(rows.map((r) => r.filter((_, i) => i !== 2))).toEqual([
      ['pi-1', 'training', '600', 'wasm', '3', '0.4583', '2.95 s'],
      ['pi-2', 'offline', '–', '–', '–', '–', '–'],
    ]);
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-midrun.png'), fullPage: true });

    // A new run of the same job: charts start over, old retained rounds of run-a are not mixed in.
    await publish('fedmq/v2/live/coordinator/status', { v: 2, job: 'live', runId: 'run-b', state: 'running', mode: 'sync', round: 0, rounds: 2, ts: Date.now() });
    await page.waitForFunction(() => document.querySelector('#run-id')?.textContent === 'run-b');
    expect(await chartData(page, 'accuracy')).toEqual({ labels: [], datasets: { 'test accuracy': [], 'federated accuracy': [], 'federated p10': [], 'federated p90': [] } });
    expect(await page.textContent('#stage')).toBe('–'); // run-a's stage is not run-b's
    await publish('fedmq/v2/live/rounds/1/metrics', roundMetrics('live', 'run-b', 1, 0.65));
    await page.waitForFunction(() => (window as unknown as { fedmqCharts: { accuracy: { data: { labels: unknown[] } } } }).fedmqCharts.accuracy.data.labels.length === 1);
    expect((await chartData(page, 'accuracy')).datasets).toMatchObject({ 'test accuracy': [0.65], 'federated accuracy': [null] });

    // Picking the other job by hand: no central test set, federated accuracy only.
    await page.selectOption('#job-select', 'old');
    await page.waitForFunction(() => document.querySelector('#run-id')?.textContent === 'run-old');
    expect(await chartData(page, 'accuracy')).toEqual({ labels: [1], datasets: { 'test accuracy': [null], 'federated accuracy': [0.5], 'federated p10': [fedEval(0.5).accuracySpread.p10], 'federated p90': [fedEval(0.5).accuracySpread.p90] } });
    expect(await page.textContent('#phase')).toBe('done');
    expect(await page.isVisible('#stat-accuracy')).toBe(false);
    expect(await page.textContent('#stat-fed-accuracy')).toBe('50.00 %');
    expect(await page.textContent('#accuracy-caption')).toBe('Federated accuracy per round');
    expect(await page.$$eval('#rounds thead th', (ths) => ths.map((t) => t.textContent))).not.toContain('test acc');
    await page.close();
    await pub.endAsync();
  });

  it('logs in to a broker with --auth as a monitor user (form, then #user=…&password=…) and shows the fleet', { timeout: 120_000 }, async () => {
    const JOB = 'secure';
    credsDir = await mkdtemp(join(tmpdir(), 'fedmq-dash-auth-'));
    const creds = join(credsDir, 'creds.json');
    const opsPassword = 'ops passphrase #1&2';
    const nodePassword = 'node password 123';
    await addCredential(creds, { username: 'ops', role: 'monitor', jobs: [JOB], password: opsPassword });
    const coordinatorPassword = await addCredential(creds, { username: 'coordinator', role: 'coordinator', jobs: [JOB] });
    for (const id of ['node-000', 'node-001', 'node-002']) await addCredential(creds, { username: id, role: 'node', jobs: [JOB], password: nodePassword });
    broker3 = await startBroker({ port: 0, host: '127.0.0.1', httpPort: 0, auth: creds });
    const clientIds: string[] = [];
    broker3.aedes.on('client', (c) => clientIds.push(c.id));

    // a real fleet on the locked-down broker: a coordinator waiting for a 4th node, 3 nodes online
    coordinator3 = new Coordinator({
      brokerUrl: broker3.url, job: JOB, model: 'mnist-2nn', rounds: 1, minAvailableNodes: 4, deadlineMs: 60_000, seed: 1,
      mqtt: { username: 'coordinator', password: coordinatorPassword },
      strategy: createStrategy({ strategy: 'fedavg', fraction: 1, minFitNodes: 1, fitConfig: { epochs: 1, batchSize: 32, learningRate: 0.1 } }),
    });
    const done = coordinator3.run();
    sim3 = await startSimulation({
      brokerUrl: broker3.url, job: JOB, nodes: 3, train: subset(loadMnist('train'), range(0, 300)), partition: { kind: 'iid' }, seed: 1, workers: 1,
      mqtt: (nodeId) => ({ username: nodeId, password: nodePassword }),
    });

    browser ??= await chromium.launch(LAUNCH);
    const context = await browser.newContext({ viewport: { width: 1400, height: 1050 } });
    const requested: string[] = [];
    context.on('request', (r) => requested.push(r.url()));
    const page = await context.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (err) => pageErrors.push(err.message));
    const fleetShown = () => page.waitForFunction(
      () => document.body.dataset.connection === 'connected' && document.querySelectorAll('#nodes tbody tr[data-node-id]').length === 3
        && (document.querySelector('#stage') as HTMLElement | null)?.dataset.stage === 'waiting',
    );
    const nodeRows = () => page.$$eval('#nodes tbody tr[data-node-id]', (rows) => rows.map((r) => [r.getAttribute('data-node-id'), r.getAttribute('data-state')]));

    // anonymous: refused (CONNACK 5), the login form instead of endless reconnects
    await page.goto(`${broker3.httpUrl}?job=${JOB}`);
    await page.waitForFunction(() => document.body.dataset.connection === 'login');
    expect(await page.isVisible('#login')).toBe(true);
    expect(await page.textContent('#login-message')).toBe('This broker requires a login (a monitor user of its credentials file).');
    // a wrong password: refused (CONNACK 4), the form again
    await page.fill('#login-user', 'ops');
    await page.fill('#login-password', 'not the password');
    await page.click('#login-submit');
    await page.waitForFunction(() => document.body.dataset.connection === 'login' && document.querySelector('#login-message')?.textContent?.startsWith('The broker refused ops'));
    expect(await page.textContent('#login-message')).toBe('The broker refused ops: wrong username or password.');
    // the right one: the fleet
    await page.fill('#login-password', opsPassword);
    await page.click('#login-submit');
    await fleetShown();
    expect(await page.isVisible('#login')).toBe(false);
    expect(await page.textContent('#user')).toBe('ops');
    expect(await nodeRows()).toEqual([['node-000', 'idle'], ['node-001', 'idle'], ['node-002', 'idle']]);
    expect(await page.textContent('#phase')).toBe('running');
    // a reload in the same tab stays logged in (sessionStorage)
    await page.reload();
    await fleetShown();
    await page.click('#logout');
    await page.waitForFunction(() => document.body.dataset.connection === 'login');
    await page.close();

    // credentials in the URL fragment: logged in at once, and taken out of the address bar
    const page2 = await context.newPage();
    page2.on('pageerror', (err) => pageErrors.push(err.message));
    await page2.goto(`${broker3.httpUrl}?job=${JOB}#user=ops&password=${encodeURIComponent(opsPassword)}`);
    await page2.waitForFunction(() => document.body.dataset.connection === 'connected' && document.querySelectorAll('#nodes tbody tr[data-node-id]').length === 3);
    expect(await page2.evaluate(() => location.href)).toBe(`${broker3.httpUrl}?job=${JOB}`);
    expect(await page2.textContent('#user')).toBe('ops');
    await page2.close();

    // every dashboard connection of ops had a client id <username>-dash-<random>; no password in any URL the browser requested
    const dashIds = clientIds.filter((id) => !id.startsWith('fedmq:'));
    expect(dashIds.length).toBeGreaterThanOrEqual(3);
    for (const id of dashIds) expect(id).toMatch(/^ops-dash-[a-z0-9]+$/);
    expect(requested.length).toBeGreaterThan(0);
    for (const url of requested) {
      expect(url).not.toContain('password');
      expect(url).not.toContain(encodeURIComponent(opsPassword));
    }
    expect(pageErrors).toEqual([]);
    await context.close();

    await coordinator3.close();
    await done;
  });
});
