// fedmq live dashboard. Plain browser ES module, no build step.
//
// Connects to the broker that served this page over MQTT over WebSocket (same host, path /mqtt)
// and subscribes only to JSON topics a monitor may read (docs/protocol.md §2; models, tasks,
// updates and evaluation results are never subscribed to):
//   fedmq/v2/{job}/coordinator/status, …/coordinator/stage, …/nodes/+/status, …/rounds/+/metrics, …/model/meta
// with {job} = the page's ?job=ID, or + (all jobs; a selector picks one).
// Retained messages arrive on connect, so a page opened mid-run shows the run so far.
// A broker with --auth is logged in to as a monitor user: a form, or #user=…&password=… in the
// URL fragment (see "login" below).
//
// For tests and debugging: window.fedmqCharts = {accuracy, loss, bytes, participation} (Chart.js
// instances, data.labels = rounds), window.fedmqDashboard = {state, client, view(), login()}.

import mqtt from './vendor/mqtt.esm.js';
import { createCharts, failureCount, formatBytes, formatPercent, lastPrivacy, privacyTexts, roundTable, setHistory } from './charts.js';

const PROTOCOL_VERSION = 2;

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const ID_RE = /^[A-Za-z0-9_.-]{1,64}$/;
const urlJob = params.get('job') && ID_RE.test(params.get('job')) ? params.get('job') : null;

/**
 * Everything received, per job:
 * { status: CoordinatorStatus|null, stage: StageStatus|null, meta: ModelMeta|null,
 *   nodes: Map<nodeId, NodeStatus>, runs: Map<runId, Map<round, RoundMetrics>> }
 */
const state = { jobs: new Map(), pinned: urlJob, current: urlJob };

function jobState(job) {
  let s = state.jobs.get(job);
  if (!s) {
    s = { status: null, stage: null, meta: null, nodes: new Map(), runs: new Map() };
    state.jobs.set(job, s);
  }
  return s;
}

/** The run to show for a job: the coordinator's current run, else the newest run with metrics. */
function currentRunId(s) {
  if (s.status?.runId) return s.status.runId;
  let best = null;
  let bestTs = -Infinity;
  for (const [runId, rounds] of s.runs) {
    for (const m of rounds.values()) {
      if ((m.ts ?? 0) > bestTs) {
        bestTs = m.ts ?? 0;
        best = runId;
      }
    }
  }
  return best;
}

function onMessage(topic, payload) {
  const parts = topic.split('/');
  if (parts.length < 5 || parts[0] !== 'fedmq' || parts[1] !== `v${PROTOCOL_VERSION}`) return;
  const job = parts[2];
  const rest = parts.slice(3).join('/');
  const text = new TextDecoder().decode(payload);
  let msg = null;
  if (text.length > 0) {
    try {
      msg = JSON.parse(text);
    } catch {
      return; // not JSON: not ours to show
    }
    if (!msg || typeof msg !== 'object' || msg.v !== PROTOCOL_VERSION) return;
  }
  const s = jobState(job);
  if (rest === 'coordinator/status') {
    if (msg) s.status = msg;
  } else if (rest === 'coordinator/stage') {
    // the latest stage; an older one of the same run (out of order) does not replace it
    if (!msg) s.stage = null;
    else if (!(s.stage && s.stage.runId === msg.runId && (msg.ts ?? 0) < (s.stage.ts ?? 0))) s.stage = msg;
  } else if (rest === 'model/meta') {
    if (msg) s.meta = msg;
  } else if (parts[3] === 'nodes' && parts[5] === 'status' && parts.length === 6) {
    if (msg) s.nodes.set(parts[4], msg);
    else s.nodes.delete(parts[4]); // empty retained payload: node forgotten
  } else if (parts[3] === 'rounds' && parts[5] === 'metrics' && parts.length === 6) {
    const round = Number(parts[4]);
    if (!msg) {
      for (const rounds of s.runs.values()) rounds.delete(round);
    } else if (typeof msg.runId === 'string' && Number.isInteger(msg.round)) {
      let rounds = s.runs.get(msg.runId);
      if (!rounds) s.runs.set(msg.runId, (rounds = new Map()));
      rounds.set(msg.round, msg);
    }
  } else {
    return;
  }
  scheduleRender();
}

// ---------------------------------------------------------------- rendering

const charts = createCharts({
  accuracy: $('chart-accuracy'),
  loss: $('chart-loss'),
  bytes: $('chart-bytes'),
  participation: $('chart-participation'),
});
window.fedmqCharts = charts;

let renderScheduled = false;
function scheduleRender() {
  if (renderScheduled) return;
  renderScheduled = true;
  setTimeout(() => {
    renderScheduled = false;
    render();
  }, 0);
}

/** Picks the job to show: the pinned one, else the one whose coordinator spoke last. */
function pickJob() {
  if (state.pinned) return state.pinned;
  let best = state.current && state.jobs.has(state.current) ? state.current : null;
  let bestTs = best ? (state.jobs.get(best).status?.ts ?? -Infinity) : -Infinity;
  for (const [job, s] of state.jobs) {
    const ts = s.status?.ts ?? -Infinity;
    if (best === null || ts > bestTs) {
      best = job;
      bestTs = ts;
    }
  }
  return best;
}

let shown = { job: null, runId: null, key: '' };

function render() {
  state.current = pickJob();
  renderJobSelect();
  const job = state.current;
  const s = job ? state.jobs.get(job) : null;
  const runId = s ? currentRunId(s) : null;
  const history = s && runId && s.runs.has(runId) ? [...s.runs.get(runId).values()].sort((a, b) => a.round - b.round) : [];

  // Charts: redraw only when the history changed; a new job or run starts from empty charts.
  const key = `${job}|${runId}|${history.map((r) => `${r.round}:${r.ts}`).join(',')}`;
  if (key !== shown.key) {
    setHistory(charts, history);
    shown = { job, runId, key };
    document.body.dataset.runId = runId ?? '';
  }

  const status = s?.status ?? null;
  const phase = $('phase');
  phase.textContent = status?.state ?? '–';
  phase.dataset.state = status?.state ?? '';
  $('run-id').textContent = runId ?? '–';
  const async = (status?.mode ?? history.at(-1)?.mode) === 'async';
  const word = async ? 'step' : 'round';

  // progress: accepted rounds of the run (the coordinator's `round` counts accepted rounds; its status is published at start and end)
  const done = Math.max(history.filter((r) => r.accepted !== false).length, status && status.runId === runId ? status.round : 0);
  const rounds = status && status.runId === runId ? (status.rounds ?? status.config?.rounds ?? null) : null;
  const roundEl = $('round');
  roundEl.textContent = status || history.length ? `${done} / ${rounds ?? '?'}` : '–';
  roundEl.dataset.round = String(done);
  roundEl.dataset.rounds = rounds === null || rounds === undefined ? '' : String(rounds);
  $('round-label').textContent = `${word}s done`;

  // the engine's stage, while the run is running
  const stage = liveStage(s, runId);
  const stageEl = $('stage');
  stageEl.textContent = stage ? [`${word} ${stage.round}`, stage.stage, ...(stage.stage === 'waiting' ? [] : [`cohort ${stage.cohort}`]), `${stage.online} online`].join(' · ') : '–';
  stageEl.dataset.stage = stage?.stage ?? '';
  stageEl.dataset.round = stage ? String(stage.round) : '';

  const meta = s?.meta && s.meta.runId === runId ? s.meta : null;
  $('model').textContent = meta ? `${meta.model} v${meta.version} · ${formatCount(meta.params)} params · ${formatBytes(meta.bytes)}` : (status?.config?.model ?? '–');

  // Summary: the centralized test numbers when the job has a test set (or nothing else), the federated ones when nodes evaluate.
  const hasTest = history.some((r) => typeof r.testAccuracy === 'number' || typeof r.testLoss === 'number');
  const hasFed = history.some((r) => r.federatedEval);
  const last = [...history].reverse().filter((r) => r.accepted !== false);
  const acc = last.find((r) => typeof r.testAccuracy === 'number');
  const loss = last.find((r) => typeof r.testLoss === 'number');
  const fed = last.find((r) => r.federatedEval);
  $('stat-accuracy').textContent = acc ? formatPercent(acc.testAccuracy) : '–';
  $('stat-loss').textContent = loss ? loss.testLoss.toFixed(4) : '–';
  $('stat-accuracy').parentElement.hidden = !hasTest && hasFed;
  $('stat-loss').parentElement.hidden = !hasTest && hasFed;
  const fe = fed?.federatedEval;
  $('stat-fed-accuracy').textContent = fe ? formatPercent(fe.accuracy) : '–';
  $('stat-fed-spread').textContent = fe
    ? `p10 ${formatPercent(fe.accuracySpread.p10)} … p90 ${formatPercent(fe.accuracySpread.p90)}, worst decile ${formatPercent(fe.worstDecileAccuracy)} · ${fe.nodes} nodes`
    : '';
  $('stat-fed-accuracy').parentElement.hidden = !hasFed;
  $('accuracy-caption').textContent = `${hasTest && hasFed ? 'Test and federated accuracy' : hasFed ? 'Federated accuracy' : 'Test accuracy'} per ${word}`;
  const down = history.reduce((a, r) => a + (r.bytesDown || 0), 0);
  const up = history.reduce((a, r) => a + (r.bytesUp || 0), 0);
  $('stat-bytes').textContent = history.length ? `${formatBytes(down)} / ${formatBytes(up)}` : '–';
  const failures = history.reduce((a, r) => a + failureCount(r.failures), 0);
  const failed = history.length - history.filter((r) => r.accepted !== false).length;
  $('stat-accuracy').title = failures || failed ? `${failures} failures, ${failed} failed ${word}s in this run` : '';
  // differential privacy: ε spent so far (of the budget) after the latest round, its δ, mode, σ and clip norm C; hidden without it
  const privacy = lastPrivacy(history);
  const pt = privacy ? privacyTexts(privacy) : null;
  $('stat-privacy').textContent = pt ? pt.budget : '–';
  $('stat-privacy-detail').textContent = pt ? `δ ${pt.delta} · ${pt.mode} · σ ${pt.sigma} · C ${pt.clip}` : '';
  $('stat-privacy').parentElement.hidden = !pt;

  renderRounds(history, key);
  renderNodes(s);
  renderClock();
}

/** The job's stage when it belongs to the shown run and the run is still running (not done, failed or offline). */
function liveStage(s, runId) {
  const st = s?.stage;
  if (!st || st.runId !== runId) return null;
  const status = s.status;
  if (status && status.runId === runId && status.state !== 'running') return null;
  return st;
}

let roundsKey = '';
/** The round table (roundTable of charts.js, as in the run report), newest round first. */
function renderRounds(history, key) {
  if (key === roundsKey) return;
  roundsKey = key;
  const table = roundTable(history);
  const head = document.createElement('tr');
  head.append(
    ...table.columns.map((c) => {
      const th = document.createElement('th');
      th.textContent = c.label;
      th.dataset.col = c.id;
      if (c.num) th.className = 'num';
      if (c.keepCase) th.style.textTransform = 'none'; // ε: headers are uppercased, and an uppercase ε reads E
      return th;
    }),
  );
  $('rounds').tHead.replaceChildren(head);
  const tbody = $('rounds').tBodies[0];
  if (!table.rows.length) {
    const tr = document.createElement('tr');
    tr.className = 'empty';
    const td = cell('no round completed yet');
    td.colSpan = table.columns.length;
    tr.append(td);
    tbody.replaceChildren(tr);
    return;
  }
  tbody.replaceChildren(
    ...[...table.rows].reverse().map((r) => {
      const tr = document.createElement('tr');
      tr.dataset.round = String(r.round);
      if (!r.accepted) tr.className = 'failed';
      tr.append(...r.cells.map((text, i) => cell(text, table.columns[i].num ? 'num' : table.columns[i].id === 'result' ? 'result' : '')));
      return tr;
    }),
  );
}

function renderJobSelect() {
  const sel = $('job-select');
  const jobs = [...state.jobs.keys()].sort();
  if (state.current && !jobs.includes(state.current)) jobs.push(state.current);
  const want = jobs.join('\n');
  if (sel.dataset.jobs !== want) {
    sel.replaceChildren(...jobs.map((j) => new Option(j, j)));
    sel.dataset.jobs = want;
  }
  if (state.current && sel.value !== state.current) sel.value = state.current;
  sel.disabled = Boolean(urlJob);
}

$('job-select').addEventListener('change', (e) => {
  state.pinned = e.target.value;
  scheduleRender();
});

function formatCount(n) {
  return typeof n === 'number' ? n.toLocaleString('en-US') : '–';
}

function formatAgo(ts) {
  if (typeof ts !== 'number') return '–';
  const s = Math.max(0, Math.round((Date.now() - ts) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  return new Date(ts).toLocaleString();
}

function formatMs(ms) {
  if (typeof ms !== 'number') return '–';
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms)} ms`;
}

function cell(text, cls) {
  const td = document.createElement('td');
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function renderNodes(s) {
  const tbody = $('nodes').tBodies[0];
  const nodes = s ? [...s.nodes.values()].sort((a, b) => String(a.nodeId).localeCompare(String(b.nodeId))) : [];
  const online = nodes.filter((n) => n.state !== 'offline').length;
  $('stat-online').textContent = s ? `${online} / ${nodes.length}` : '–';
  $('node-count').textContent = nodes.length ? `(${online} online of ${nodes.length})` : '';
  if (!nodes.length) {
    const tr = document.createElement('tr');
    tr.className = 'empty';
    const td = cell('no node has announced itself yet');
    td.colSpan = 8;
    tr.append(td);
    tbody.replaceChildren(tr);
    return;
  }
  tbody.replaceChildren(
    ...nodes.map((n) => {
      const tr = document.createElement('tr');
      tr.dataset.nodeId = n.nodeId;
      tr.dataset.state = n.state;
      if (n.state === 'offline') tr.className = 'offline';
      const st = cell(n.state, 'state');
      st.dataset.state = n.state;
      const seen = cell(formatAgo(n.ts), 'seen');
      seen.dataset.ts = String(n.ts ?? '');
      tr.append(
        cell(n.nodeId, 'mono'),
        st,
        seen,
        cell(formatCount(n.numExamples), 'num'),
        cell(n.device?.backend ?? '–'),
        cell(n.lastRound ? String(n.lastRound.round) : '–', 'num'),
        cell(n.lastRound ? n.lastRound.loss.toFixed(4) : '–', 'num'),
        cell(n.lastRound ? formatMs(n.lastRound.trainMs) : '–', 'num'),
      );
      return tr;
    }),
  );
}

/** Time-dependent text: the deadline countdown and the nodes' "last seen". */
function renderClock() {
  const s = state.current ? state.jobs.get(state.current) : null;
  const st = s ? liveStage(s, shown.runId) : null;
  const el = $('deadline');
  if (st && typeof st.deadline === 'number') {
    const left = Math.max(0, (st.deadline - Date.now()) / 1000);
    el.textContent = `${left.toFixed(0)} s left`;
    el.dataset.deadline = String(st.deadline);
  } else {
    el.textContent = '–';
    el.dataset.deadline = '';
  }
  for (const td of document.querySelectorAll('#nodes td.seen')) td.textContent = formatAgo(Number(td.dataset.ts) || undefined);
}
setInterval(renderClock, 1000);

// ---------------------------------------------------------------- MQTT

const wsUrl = new URL('mqtt', location.href);
wsUrl.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
wsUrl.search = '';
wsUrl.hash = '';
$('ws-url').textContent = wsUrl.href;

function setConnection(text) {
  const el = $('connection');
  el.textContent = text;
  el.dataset.state = text;
  document.body.dataset.connection = text;
}

const root = `fedmq/v${PROTOCOL_VERSION}/${urlJob ?? '+'}`;
const topics = [`${root}/coordinator/status`, `${root}/coordinator/stage`, `${root}/nodes/+/status`, `${root}/rounds/+/metrics`, `${root}/model/meta`];

// ---------------------------------------------------------------- login
//
// A broker started with --auth refuses anonymous clients (CONNACK 5): the page then shows a login
// form for a monitor user of its credentials file (`fedmq auth add ops --role monitor`). The
// credentials can also come in the URL fragment, #user=ops&password=… (a fragment is never sent to
// a server, unlike the query string, which the page never reads credentials from); the page takes
// them out of the address bar at once. They are kept in sessionStorage (this tab only, until it
// is closed or "log out") so a reload stays logged in. With a username the MQTT client id is
// `<username>-dash-<random>` (the broker pins a monitor's client ids to its username).

const LOGIN_KEY = 'fedmq-dashboard-login';

/** Credentials from the URL fragment (removed from the address bar), else from this tab's sessionStorage, else null. */
function initialLogin() {
  const frag = new URLSearchParams(location.hash.slice(1));
  const user = frag.get('user') ?? frag.get('username');
  if (user !== null) {
    const login = { username: user, password: frag.get('password') ?? '' };
    for (const k of ['user', 'username', 'password']) frag.delete(k);
    const rest = frag.toString();
    history.replaceState(null, '', `${location.pathname}${location.search}${rest ? `#${rest}` : ''}`);
    saveLogin(login);
    return login;
  }
  try {
    const saved = JSON.parse(sessionStorage.getItem(LOGIN_KEY) ?? 'null');
    if (saved && typeof saved.username === 'string' && typeof saved.password === 'string') return saved;
  } catch {
    // nothing saved
  }
  return null;
}

function saveLogin(login) {
  try {
    if (login) sessionStorage.setItem(LOGIN_KEY, JSON.stringify(login));
    else sessionStorage.removeItem(LOGIN_KEY);
  } catch {
    // storage unavailable: the login lasts until the page is reloaded
  }
}

const randomId = () => Math.random().toString(36).slice(2, 10);

/** Shows the login form with `message` (why it is shown); the broker connection is closed. */
function showLogin(message, username) {
  setConnection('login');
  $('login').hidden = false;
  $('login-message').textContent = message;
  if (username !== undefined) $('login-user').value = username;
  ($('login-user').value ? $('login-password') : $('login-user')).focus();
}

let client = null;
let login = null;

/** Connects to the broker (anonymously when `creds` is null) and subscribes to the monitor topics. */
function connect(creds) {
  if (client) client.end(true);
  login = creds;
  $('login').hidden = true;
  $('user').textContent = creds ? creds.username : '';
  $('logout').hidden = !creds;
  setConnection('connecting');
  const c = mqtt.connect(wsUrl.href, {
    protocolVersion: 4,
    clean: true,
    reconnectPeriod: 1000,
    clientId: creds ? `${creds.username}-dash-${randomId()}` : `fedmq-dashboard-${randomId()}`,
    ...(creds ? { username: creds.username, password: creds.password } : {}),
  });
  client = c;
  window.fedmqDashboard.client = c;
  // events of a client that was replaced, or refused its login, change nothing on the page
  const current = () => client === c && !c.refused;
  c.on('connect', () => {
    if (!current()) return;
    setConnection('connected');
    c.subscribe(topics, { qos: 1 }, (err) => {
      if (!err) return;
      setConnection('error');
      // a monitor limited to some jobs may not subscribe to every job (fedmq/v2/+/…): it needs ?job=ID
      $('connection').title = urlJob ? `subscription refused: ${err.message}` : `subscription refused (${err.message}): a monitor limited to some jobs must open ?job=ID`;
    });
  });
  c.on('reconnect', () => current() && setConnection('reconnecting'));
  c.on('offline', () => current() && setConnection('offline'));
  c.on('error', (err) => {
    if (!current()) return;
    // CONNACK 5 (not authorized: no or a refused login) or 4 (bad username or password): retrying cannot help
    if (err && (err.code === 4 || err.code === 5)) {
      c.refused = true;
      c.end(true);
      if (creds) saveLogin(null);
      showLogin(creds ? `The broker refused ${creds.username}: ${err.code === 4 ? 'wrong username or password' : 'not authorized'}.` : 'This broker requires a login (a monitor user of its credentials file).', creds?.username);
      return;
    }
    setConnection('error');
  });
  c.on('message', (topic, payload) => current() && onMessage(topic, payload));
}

$('login').addEventListener('submit', (e) => {
  e.preventDefault();
  const creds = { username: $('login-user').value.trim(), password: $('login-password').value };
  $('login-password').value = '';
  saveLogin(creds);
  connect(creds);
});

$('logout').addEventListener('click', () => {
  saveLogin(null);
  if (client) client.end(true);
  client = null;
  $('user').textContent = '';
  $('logout').hidden = true;
  showLogin('Logged out.', login?.username ?? '');
});

window.fedmqDashboard = { state, client: null, topics, view: () => ({ job: state.current, runId: shown.runId }), login: () => (login ? login.username : null) };
connect(initialLogin());
render();
