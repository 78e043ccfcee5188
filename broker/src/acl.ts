import { ID_PATTERN, TOPIC_KINDS, TOPIC_ROOT, TOPIC_TABLE, parseTopic, topicFilter, type TopicKind, type TopicRole } from '@fedmq/protocol';

/**
 * Access control for fedmq topics (docs/security.md, "ACL"), generated from the protocol's topic
 * table (`TOPIC_TABLE` of `@fedmq/protocol`, docs/protocol.md §2): adding a row there is the only
 * change the ACL needs. Pure functions: no broker, no I/O, so the whole role × topic kind × action
 * matrix is tested cell by cell (acl.test.ts). `startBroker` wires them into Aedes'
 * `authorizePublish` / `authorizeSubscribe` hooks when `auth` is on.
 *
 * The rules, per row `K` of the table:
 *
 * - **publish**: a principal of role `R` may publish to a topic of kind `K` iff
 *   `TOPIC_TABLE[K].publisher === R`; for a kind whose pattern has `{nodeId}` and is published by
 *   `node`, only with `{nodeId}` = the node's username. The topic must be concrete and valid
 *   (`parseTopic`).
 * - **subscribe**: for each kind whose `readers` include `R`, the kind's filter with every
 *   parameter `+`; for a kind whose readers include `self`, a node also gets the filter with
 *   `{nodeId}` = its username (its own task, status, update, evaluation — no one else's). The
 *   publisher reads its own kind only where it is listed among the readers.
 * - **coordinator** (reads): everything of its jobs under the v2 root (`fedmq/v2/{job}/#`) plus the
 *   legacy v1 rows of the table (`fedmq/v1/{job}/coordinator/status`, `fedmq/v1/{job}/nodes/+/status`,
 *   for version detection), and nothing else under `fedmq/v1/`.
 *
 * The resulting matrix ({@link aclTable}; ✓ = allowed, own = only the topic with the node's own
 * `{nodeId}`, – = denied; acl.test.ts checks that this table is what the functions answer):
 *
 * | kind | topic | node publishes | node reads | coordinator publishes | coordinator reads | monitor publishes | monitor reads |
 * |---|---|---|---|---|---|---|---|
 * | `coordinatorStatus` | `fedmq/v2/{job}/coordinator/status` | – | ✓ | ✓ | ✓ | – | ✓ |
 * | `stage` | `fedmq/v2/{job}/coordinator/stage` | – | – | ✓ | ✓ | – | ✓ |
 * | `model` | `fedmq/v2/{job}/models/{version}` | – | ✓ | ✓ | ✓ | – | – |
 * | `modelChunk` | `fedmq/v2/{job}/models/{version}/chunks/{index}` | – | ✓ | ✓ | ✓ | – | – |
 * | `modelMeta` | `fedmq/v2/{job}/model/meta` | – | ✓ | ✓ | ✓ | – | ✓ |
 * | `nodeTask` | `fedmq/v2/{job}/nodes/{nodeId}/task` | – | own | ✓ | ✓ | – | – |
 * | `nodeStatus` | `fedmq/v2/{job}/nodes/{nodeId}/status` | own | own | – | ✓ | – | ✓ |
 * | `nodeUpdate` | `fedmq/v2/{job}/nodes/{nodeId}/update` | own | own | – | ✓ | – | – |
 * | `nodeSecAgg` | `fedmq/v2/{job}/nodes/{nodeId}/secagg` | own | own | – | ✓ | – | – |
 * | `nodeEvaluation` | `fedmq/v2/{job}/nodes/{nodeId}/evaluation` | own | own | – | ✓ | – | – |
 * | `roundMetrics` | `fedmq/v2/{job}/rounds/{round}/metrics` | – | ✓ | ✓ | ✓ | – | ✓ |
 * | `latestMetrics` | `fedmq/v2/{job}/metrics` | – | ✓ | ✓ | ✓ | – | ✓ |
 * | `legacyCoordinatorStatus` | `fedmq/v1/{job}/coordinator/status` | – | ✓ | ✓ | ✓ | – | – |
 * | `legacyNodeStatus` | `fedmq/v1/{job}/nodes/{nodeId}/status` | own | – | – | ✓ | – | – |
 *
 * All of this only within the principal's jobs (`jobs: '*'` = every job, and then `+` may stand
 * for the job; a node's or coordinator's connection is narrowed to the one job of its client id,
 * {@link scopeToClientId}). Everything outside the table's topics and the coordinator's
 * `fedmq/v2/{job}/#` — `$SYS/…` included — is closed to every role, and an anonymous principal
 * (`null`) may do nothing.
 *
 * A subscription filter is granted only when every topic it can match lies inside one allowed
 * filter ({@link filterWithin}): `fedmq/v2/j/nodes/+/status` is inside the monitor's filter of the
 * same name, `fedmq/v2/j/#` is inside none of a node's filters (it covers other nodes' tasks and
 * updates), `fedmq/v2/j/nodes/{own id}/+` is inside none either (one filter must contain it), and
 * `#` or `+/…` is inside none of anyone's.
 */

/** What a user may do (docs/security.md): the publisher and reader roles of the topic table. */
export type Role = TopicRole;

/** The roles, in the order of the docs. */
export const ROLES: readonly Role[] = ['node', 'coordinator', 'monitor'];

/**
 * An authenticated user, as the ACL sees it. For role `node`, `username` is the node id.
 * `jobs` lists the job ids the user may take part in; `'*'` means every job.
 */
export interface Principal {
  username: string;
  role: Role;
  jobs: readonly string[] | '*';
}

/** True when the kind's pattern has a `{nodeId}` level. */
const HAS_NODE_ID = (kind: TopicKind): boolean => TOPIC_TABLE[kind].pattern.includes('{nodeId}');
/** True when only the node named by `{nodeId}` may publish the kind (a node's own topics). */
const OWN_ONLY = (kind: TopicKind): boolean => TOPIC_TABLE[kind].publisher === 'node' && HAS_NODE_ID(kind);
/** The legacy (v1) rows of the table: read by the coordinator besides `fedmq/v2/{job}/#`. */
const LEGACY_KINDS = TOPIC_KINDS.filter((kind) => TOPIC_TABLE[kind].root !== TOPIC_ROOT);

/** The job segments a principal's filters are built with: its jobs, or `+` for every job. */
function jobSegments(p: Principal): readonly string[] {
  return p.jobs === '*' ? ['+'] : p.jobs.filter((j) => ID_PATTERN.test(j));
}

/** False for a node whose username could not be a `{nodeId}` level (it then gets nothing). */
function usable(p: Principal | null | undefined): p is Principal {
  return !!p && (p.role !== 'node' || ID_PATTERN.test(p.username));
}

/**
 * Filters `p` may publish to, one per job and kind it publishes (MQTT topic filters; a PUBLISH
 * topic must also be a valid fedmq topic, see {@link canPublish}). Empty for `null` (anonymous),
 * for a monitor, and for a node whose username is not a valid node id.
 */
export function writableFilters(p: Principal | null | undefined): string[] {
  if (!usable(p)) return [];
  const kinds = TOPIC_KINDS.filter((kind) => TOPIC_TABLE[kind].publisher === p.role);
  return jobSegments(p).flatMap((job) => kinds.map((kind) => topicFilter(kind, job, OWN_ONLY(kind) ? { nodeId: p.username } : {})));
}

/**
 * Filters `p` may subscribe within (see {@link canSubscribe}): per job, the table's kinds whose
 * readers include its role (parameters `+`), a node's own `self` kinds, and for a coordinator
 * `fedmq/v2/{job}/#` plus the legacy rows. Empty for `null` (anonymous) and for a node whose
 * username is not a valid node id.
 */
export function readableFilters(p: Principal | null | undefined): string[] {
  if (!usable(p)) return [];
  return jobSegments(p).flatMap((job) => {
    if (p.role === 'coordinator') return [topicFilter('all', job), ...LEGACY_KINDS.map((kind) => topicFilter(kind, job))];
    return TOPIC_KINDS.flatMap((kind) => {
      const readers: readonly string[] = TOPIC_TABLE[kind].readers;
      if (readers.includes(p.role)) return [topicFilter(kind, job)];
      if (p.role === 'node' && readers.includes('self') && HAS_NODE_ID(kind)) return [topicFilter(kind, job, { nodeId: p.username })];
      return [];
    });
  });
}

/**
 * True when every topic that the subscription filter `filter` can match is also matched by the
 * filter `pattern` (MQTT 3.1.1 §4.7.1: `/` separates levels, `+` matches one level, a trailing
 * `#` matches the parent level and any number of levels below). Both are assumed to be valid
 * filters (Aedes validates a SUBSCRIBE before authorizing it). A topic without wildcards is a
 * filter that matches only itself, so `filterWithin(topic, pattern)` is "pattern matches topic".
 */
export function filterWithin(filter: string, pattern: string): boolean {
  const f = filter.split('/');
  const p = pattern.split('/');
  for (let i = 0; ; i++) {
    if (i === p.length) return i === f.length;
    if (p[i] === '#') return true;
    if (i === f.length) return false;
    if (f[i] === '#') return false; // matches levels (and the parent) that a non-# pattern level does not
    if (p[i] === '+') continue; // covers one level, literal or '+'
    if (f[i] !== p[i]) return false; // a '+' in the filter is wider than a literal in the pattern
  }
}

/**
 * May `p` publish to `topic`? Only a concrete (no `+`/`#`) and valid fedmq topic (`parseTopic`) of
 * a kind `p`'s role publishes, in one of `p`'s jobs, and for a node's own kinds only with its own
 * `{nodeId}`: exactly the topics matched by {@link writableFilters}. Never throws.
 */
export function canPublish(p: Principal | null | undefined, topic: string): boolean {
  if (!usable(p) || topic.includes('+') || topic.includes('#')) return false;
  let parsed: ReturnType<typeof parseTopic>;
  try {
    parsed = parseTopic(topic);
  } catch {
    return false;
  }
  if (TOPIC_TABLE[parsed.kind].publisher !== p.role) return false;
  if (p.jobs !== '*' && !p.jobs.includes(parsed.job)) return false;
  return !OWN_ONLY(parsed.kind) || ('nodeId' in parsed && parsed.nodeId === p.username);
}

/**
 * May `p` subscribe to `filter`? Only when the filter lies inside one of {@link readableFilters}
 * (see {@link filterWithin}). Never throws.
 */
export function canSubscribe(p: Principal | null | undefined, filter: string): boolean {
  if (!p || filter.length === 0) return false;
  return readableFilters(p).some((pattern) => filterWithin(filter, pattern));
}

/**
 * Why a PUBLISH's retain flag or a Last Will on `topic` is not part of the protocol, or
 * `undefined` when it is (the `retain` and `will` columns of the topic table, docs/protocol.md
 * §2): a retained message only on a topic whose row says `retain` — an update, task or
 * evaluation result left retained would be replayed to every later subscriber, and outlive the
 * node's `auth remove` —, a will only on a topic whose row says `will` (the coordinator's and
 * the nodes' status topics), and a retained will only where retain is allowed too. A retained
 * message with an empty payload stores nothing (it deletes the topic's retained message, MQTT
 * 3.1.1 §3.3.1.3) and is allowed. A topic outside the table: `undefined` (the ACL decides). Never throws.
 */
export function publishFlagsProblem(topic: string, flags: { retain: boolean; will?: boolean; payloadBytes?: number }): string | undefined {
  let parsed: ReturnType<typeof parseTopic>;
  try {
    parsed = parseTopic(topic);
  } catch {
    return undefined;
  }
  const row = TOPIC_TABLE[parsed.kind];
  if (flags.will && !row.will) return `a Last Will on ${parsed.kind} topics is not part of the protocol`;
  if (flags.retain && !row.retain && (flags.will || (flags.payloadBytes ?? 1) > 0)) return `a retained message on ${parsed.kind} topics is not part of the protocol`;
  return undefined;
}

/** Prefix of the MQTT client ids fedmq's nodes and coordinators use (`fedmq:{job}:…`). */
export const RESERVED_CLIENT_ID_PREFIX = 'fedmq:';

/**
 * Whose client id `clientId` is among monitors' ids: the user with the longest username `U` for
 * which `clientId` is `U` or starts with `U-` (so with users `ops` and `ops-2`, `ops-2-dash-x`
 * belongs to `ops-2`, not to `ops`), or `undefined`. `isUser` says whether a username exists.
 */
export function clientIdOwner(clientId: string, isUser: (username: string) => boolean): string | undefined {
  if (isUser(clientId)) return clientId;
  for (let i = clientId.lastIndexOf('-'); i > 0; i = clientId.lastIndexOf('-', i - 1)) {
    const prefix = clientId.slice(0, i);
    if (isUser(prefix)) return prefix;
  }
  return undefined;
}

/**
 * The principal of one connection: `p` narrowed to the job its MQTT client id names, or `null`
 * when `p` may not use `clientId`:
 *
 * - `node`: the client id must be `fedmq:{job}:node:{username}` for one of its jobs; the
 *   connection may then act in that job only.
 * - `coordinator`: `fedmq:{job}:coordinator` for one of its jobs; that job only.
 * - `monitor`: `{username}` or `{username}-{anything}` (`fedmq monitor` and the dashboard add a
 *   random suffix), so a monitor can never take over another user's session (MQTT 3.1.1 §3.1.4
 *   disconnects the older client with the same id), nor a node's or coordinator's (`fedmq:` ids);
 *   with `isUser`, the id must also belong to this user and not to a longer username
 *   ({@link clientIdOwner}: user `ops` may not use `ops-2-x` when `ops-2` is a user); all of its jobs.
 *
 * Pinning a connection to one job means a node in jobs `a` and `b` connected as
 * `fedmq:a:node:n1` cannot touch job `b` on that connection. A coordinator's id names its job, not
 * its user (the protocol's `fedmq:{job}:coordinator`): two coordinator users of one job could take
 * over each other's session, so give each job one coordinator user.
 */
export function scopeToClientId(p: Principal | null | undefined, clientId: string, isUser?: (username: string) => boolean): Principal | null {
  if (!p) return null;
  if (p.role === 'monitor') {
    if (clientId.startsWith(RESERVED_CLIENT_ID_PREFIX)) return null;
    if (clientId !== p.username && !clientId.startsWith(`${p.username}-`)) return null;
    return !isUser || clientIdOwner(clientId, isUser) === p.username ? p : null;
  }
  const parts = clientId.split(':');
  const job = parts[1];
  if (parts[0] !== 'fedmq' || job === undefined || !ID_PATTERN.test(job)) return null;
  if (p.jobs !== '*' && !p.jobs.includes(job)) return null;
  const ok = p.role === 'node'
    ? parts.length === 4 && parts[2] === 'node' && parts[3] === p.username && ID_PATTERN.test(p.username)
    : parts.length === 3 && parts[2] === 'coordinator';
  return ok ? { username: p.username, role: p.role, jobs: [job] } : null;
}

/** Principal and topic parameters {@link aclTable} asks about. */
const SAMPLE = { job: 'j', own: 'n1', other: 'n2', params: { version: 1, index: 0, round: 1 } } as const;

/**
 * The ACL as a Markdown table, one row per kind of the topic table: for each role whether it may
 * publish and subscribe (✓ allowed, `own` only the topic with its own `{nodeId}`, – denied).
 * Computed by asking {@link canPublish} and {@link canSubscribe} about sample topics and filters,
 * so it shows what the functions do; the module's TSDoc holds a copy (checked by acl.test.ts).
 */
export function aclTable(): string {
  const cell = (any: boolean, own: boolean) => (any ? '✓' : own ? 'own' : '–');
  const lines = [
    '| kind | topic | node publishes | node reads | coordinator publishes | coordinator reads | monitor publishes | monitor reads |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const kind of TOPIC_KINDS) {
    const concrete = (nodeId: string) => topicFilter(kind, SAMPLE.job, { ...SAMPLE.params, nodeId });
    const cells = ROLES.flatMap((role) => {
      const p: Principal = { username: SAMPLE.own, role, jobs: [SAMPLE.job] };
      const pub = cell(canPublish(p, concrete(SAMPLE.own)) && canPublish(p, concrete(SAMPLE.other)), canPublish(p, concrete(SAMPLE.own)));
      const sub = cell(canSubscribe(p, topicFilter(kind, SAMPLE.job)), canSubscribe(p, topicFilter(kind, SAMPLE.job, { nodeId: SAMPLE.own })));
      return [pub, sub];
    });
    lines.push(`| \`${kind}\` | \`${TOPIC_TABLE[kind].root}/{job}/${TOPIC_TABLE[kind].pattern}\` | ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}
