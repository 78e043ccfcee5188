import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** One static file of the web dashboard. */
export interface DashboardAsset {
  /** Absolute path of the file on disk. */
  file: string;
  /** `Content-Type` to serve it with (with charset for text). */
  contentType: string;
}

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

/**
 * The files of the web dashboard, keyed by the URL path they are served under (relative to the
 * dashboard's root, e.g. `/app.js`): the page (`/` and `/index.html`), its ES modules (`/app.js`,
 * `/charts.js`), `/style.css`, and the two third-party browser bundles under `/vendor/`:
 * mqtt.js (`mqtt/dist/mqtt.esm.js`, an ES module whose default export is the `mqtt` namespace)
 * and Chart.js (`chart.js/dist/chart.umd.js`, a classic script that defines `window.Chart`).
 *
 * The table is fixed: a server that looks request paths up in it serves nothing else, so there is
 * no directory traversal. The files are not read here.
 *
 * @throws `MODULE_NOT_FOUND` if `mqtt` or `chart.js` is not installed.
 */
export function dashboardAssets(): Map<string, DashboardAsset> {
  const html = 'text/html; charset=utf-8';
  const js = 'text/javascript; charset=utf-8';
  // chart.js exports neither its package.json nor dist/*: resolve its CommonJS entry (dist/chart.cjs).
  const chartDist = dirname(require.resolve('chart.js'));
  return new Map<string, DashboardAsset>([
    ['/', { file: join(here, 'index.html'), contentType: html }],
    ['/index.html', { file: join(here, 'index.html'), contentType: html }],
    ['/app.js', { file: join(here, 'app.js'), contentType: js }],
    ['/charts.js', { file: join(here, 'charts.js'), contentType: js }],
    ['/style.css', { file: join(here, 'style.css'), contentType: 'text/css; charset=utf-8' }],
    ['/vendor/mqtt.esm.js', { file: require.resolve('mqtt/dist/mqtt.esm'), contentType: js }],
    ['/vendor/chart.umd.js', { file: join(chartDist, 'chart.umd.js'), contentType: js }],
  ]);
}
