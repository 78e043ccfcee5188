// The web dashboard's differential-privacy card and ε column in headless Chromium (Debian's
// /usr/bin/chromium driven by playwright-core), from retained RoundMetrics published by hand: a job
// whose rounds carry a `privacy` record, and one whose rounds do not.
import { existsSync } from 'node:fs';
import mqtt from 'mqtt';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type RunningBroker } from '@fedmq/broker';
import type { PrivacyRecord, RoundMetrics } from '@fedmq/protocol';

const CHROMIUM = '/usr/bin/chromium';
const LAUNCH = {
  executablePath: CHROMIUM,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
};

const privacy = (steps: number, epsilon: number | null, extra: Partial<PrivacyRecord> = {}): PrivacyRecord => ({
  mode: 'central', sampling: 'poisson', q: 0.1, noiseMultiplier: 1.1, accountedNoiseMultiplier: 1.1, clipNorm: 0.5, nextClipNorm: 0.5,
  unclippedFraction: null, steps, epsilon, delta: 1e-5, maxEpsilon: 3, ...extra,
});

function roundMetrics(job: string, round: number, extra: Partial<RoundMetrics> = {}): RoundMetrics {
  return {
    v: 2, job, runId: `run-${job}`, round, modelVersion: round + 1, accepted: true, mode: 'sync', selected: 2, reported: 2, failures: {},
    trainLoss: 1 / round, testLoss: 1.5 / round, testAccuracy: 0.6 + round / 10, federatedEval: null, bytesDown: 1_600_000, bytesUp: 1_590_000,
    durationMs: 1000, phases: { trainMs: 900, aggregateMs: 50, evalMs: 50 }, ts: Date.now() + round, ...extra,
  };
}

describe('web dashboard: differential privacy', () => {
  let broker: RunningBroker | undefined;
  let browser: Browser | undefined;
  let pub: mqtt.MqttClient | undefined;

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: this test needs Debian's chromium (apt-get install chromium)`);
    broker = await startBroker({ port: 0, host: '127.0.0.1', httpPort: 0 });
    pub = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
    const publish = (topic: string, msg: unknown) => pub!.publishAsync(topic, JSON.stringify(msg), { qos: 1, retain: true });
    // job dp: ε unbounded after round 1, then 1.2 and 2.3141 of a budget of 3; the clip norm moves (adaptive clipping); round 2 failed
    await publish('fedmq/v2/dp/rounds/1/metrics', roundMetrics('dp', 1, { privacy: privacy(1, null, { clipNorm: 0.1 }) }));
    await publish('fedmq/v2/dp/rounds/2/metrics', roundMetrics('dp', 2, { accepted: false, reported: 0, trainLoss: null, privacy: privacy(2, 1.2, { clipNorm: 0.2 }) }));
    await publish('fedmq/v2/dp/rounds/3/metrics', roundMetrics('dp', 3, { privacy: privacy(3, 2.3141, { clipNorm: 0.6182 }) }));
    // job plain: no differential privacy
    for (const r of [1, 2]) await publish(`fedmq/v2/plain/rounds/${r}/metrics`, roundMetrics('plain', r));
    browser = await chromium.launch(LAUNCH);
  });

  afterAll(async () => {
    await browser?.close();
    await pub?.endAsync();
    await broker?.close();
  });

  async function open(job: string, rounds: number): Promise<{ page: Page; errors: string[] }> {
    const page = await browser!.newPage({ viewport: { width: 1400, height: 1050 } });
    const errors: string[] = [];
    page.on('pageerror', (err) => errors.push(err.message));
    await page.goto(`${broker!.httpUrl}?job=${job}`);
    await page.waitForFunction((n) => document.querySelectorAll('#rounds tbody tr[data-round]').length === n, rounds);
    return { page, errors };
  }
  const headers = (page: Page) => page.$$eval('#rounds thead th', (ths) => ths.map((t) => t.textContent));

  it('shows the latest ε of the budget with δ, mode, σ and C in a card, and ε per round in the table', async () => {
    const { page, errors } = await open('dp', 3);
    expect(await page.isVisible('#stat-privacy')).toBe(true);
    expect(await page.textContent('#stat-privacy')).toBe('2.31 / 3');
    expect(await page.textContent('#stat-privacy-detail')).toBe('δ 1e-5 · central · σ 1.1 · C 0.618');
    // labels and headers are uppercased by the style sheet, but not ε and δ (an uppercase ε reads E): innerText is what is drawn
    expect(await page.$eval('#stat-privacy', (el) => (el.parentElement!.querySelector('.label') as HTMLElement).innerText)).toBe('PRIVACY ε (δ)');
    const cols = await headers(page);
    expect(cols).toContain('ε');
    expect(cols.indexOf('ε')).toBe(cols.indexOf('bytes down') - 1);
    expect(await page.$eval('#rounds thead th[data-col="epsilon"]', (th) => (th as HTMLElement).innerText)).toBe('ε');
    // newest first; the failed round carries the ε spent too; ∞ while unbounded
    const epsilon = await page.$$eval('#rounds tbody tr', (trs, i) => trs.map((r) => [r.getAttribute('data-round'), r.children[i].textContent]), cols.indexOf('ε'));
    expect(epsilon).toEqual([['3', '2.31'], ['2', '1.2'], ['1', '∞']]);
    expect(errors).toEqual([]);
    await page.close();
  });

  it('hides the card and has no ε column for a job without differential privacy', async () => {
    const { page, errors } = await open('plain', 2);
    expect(await page.isVisible('#stat-privacy')).toBe(false);
    expect(await page.textContent('#stat-privacy')).toBe('–');
    expect(await page.textContent('#stat-privacy-detail')).toBe('');
    expect(await headers(page)).toEqual(['round', 'result', 'nodes', 'failures', 'train loss', 'test loss', 'test acc', 'bytes down', 'bytes up', 'time']);
    expect(await page.isVisible('#stat-accuracy')).toBe(true);
    expect(await page.textContent('#stat-accuracy')).toBe('80.00 %');
    expect(errors).toEqual([]);
    await page.close();
  });
});
