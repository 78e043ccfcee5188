import { ID_PATTERN, parseTopic, topicFilter, type TopicKind } from '@fedmq/protocol';

/**
 * Access control for fedmq topics (docs/security.md, "ACL"). Pure functions: no broker, no I/O,
 * so the whole role × topic × action matrix is tested cell by cell (acl.test.ts). `startBroker`
 * wires them into Aedes' `authorizePublish` / `authorizeSubscribe` hooks when `auth` is on.
 *
 * | role | publishes | subscribes to |
 * |---|---|---|
 * | `node` | its own `nodes/{nodeId}/status` and `nodes/{nodeId}/update` | `model`, `model/meta`, `model/chunks/+` (or one chunk), `task`, `coordinator/status`, `rounds/+/metrics`, `metrics`, and its own `nodes/{nodeId}/status` and `…/update` |
 * | `coordinator` | `model`, `model/meta`, `model/chunks/{i}`, `task`, `coordinator/status`, `rounds/{r}/metrics`, `metrics` | everything of its jobs (`fedmq/v1/{job}/#`), including `nodes/+/status` and `nodes/+/update` |
 * | `monitor` | nothing | `coordinator/status`, `nodes/+/status`, `rounds/+/metrics`, `metrics`, `model/meta`, `task` — never the global model or updates |
 *
 * All of this only within the principal's jobs (`jobs: '*'` = every job, and then `+` may stand
 * for the job). Everything outside `fedmq/v1/` — `$SYS/…` included — is closed to every role, and
 * an anonymous principal (`null`) may do nothing.
 *
 * A subscription filter is granted only when every topic it can match lies inside one allowed
 * filter ({@link filterWithin}): `fedmq/v1/j/nodes/+/status` is inside the monitor's filter of the
 * same name, `fedmq/v1/j/#` is inside none of a node's filters (it covers other nodes' updates),
 * and `#` or `+/…` is inside none of anyone's.
 */

/** What a user may do (docs/security.md). */
export type Role = 'node' | 'coordinator' | 'monitor';

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

/** Topic kinds a role may publish to (node kinds: only its own node id). */
const WRITABLE: Record<Role, readonly TopicKind[]> = {
  node: ['nodeStatus', 'nodeUpdate'],
  coordinator: ['model', 'modelMeta', 'modelChunk', 'task', 'coordinatorStatus', 'roundMetrics', 'latestMetrics'],
  monitor: [],
};

/** The job segments a principal's filters are built with: its jobs, or `+` for every job. */
function jobSegments(p: Principal): readonly string[] {
  return p.jobs === '*' ? ['+'] : p.jobs.filter((j) => ID_PATTERN.test(j));
}

/**
 * Filters `p` may publish to (MQTT topic filters; a PUBLISH topic must match one of them and be a
 * valid fedmq topic, see {@link canPublish}). Empty for `null` (anonymous) and for a node whose
 * username is not a valid node id.
 */
export function writableFilters(p: Principal | null | undefined): string[] {
  if (!p) return [];
  if (p.role === 'node' && !ID_PATTERN.test(p.username)) return [];
  return jobSegments(p).flatMap((job) => WRITABLE[p.role].map((kind) => topicFilter(kind, job, p.username)));
}

/** Filters `p` may subscribe within (see {@link canSubscribe}). Empty for `null` (anonymous). */
export function readableFilters(p: Principal | null | undefined): string[] {
  if (!p) return [];
  return jobSegments(p).flatMap((job) => {
    switch (p.role) {
      case 'coordinator':
        return [topicFilter('all', job)];
      case 'monitor':
        return (['coordinatorStatus', 'nodeStatus', 'roundMetrics', 'latestMetrics', 'modelMeta', 'task'] as const).map((k) => topicFilter(k, job));
      case 'node': {
        if (!ID_PATTERN.test(p.username)) return [];
        const shared = (['model', 'modelMeta', 'modelChunk', 'task', 'coordinatorStatus', 'roundMetrics', 'latestMetrics'] as const).map((k) => topicFilter(k, job));
        return [...shared, topicFilter('nodeStatus', job, p.username), topicFilter('nodeUpdate', job, p.username)];
      }
    }
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
 * May `p` publish to `topic`? Only a concrete (no `+`/`#`) and valid fedmq topic (`parseTopic`)
 * matching one of {@link writableFilters}. Never throws.
 */
export function canPublish(p: Principal | null | undefined, topic: string): boolean {
  if (!p || topic.includes('+') || topic.includes('#')) return false;
  try {
    parseTopic(topic);
  } catch {
    return false;
  }
  return writableFilters(p).some((pattern) => filterWithin(topic, pattern));
}

/**
 * May `p` subscribe to `filter`? Only when the filter lies inside one of {@link readableFilters}
 * (see {@link filterWithin}). Never throws.
 */
export function canSubscribe(p: Principal | null | undefined, filter: string): boolean {
  if (!p || filter.length === 0) return false;
  return readableFilters(p).some((pattern) => filterWithin(filter, pattern));
}

/** Prefix of the MQTT client ids fedmq's nodes and coordinators use (`fedmq:{job}:…`). */
export const RESERVED_CLIENT_ID_PREFIX = 'fedmq:';

/**
 * The principal of one connection: `p` narrowed to the job its MQTT client id names, or `null`
 * when `p` may not use `clientId`:
 *
 * - `node`: the client id must be `fedmq:{job}:node:{username}` for one of its jobs; the
 *   connection may then act in that job only.
 * - `coordinator`: `fedmq:{job}:coordinator` for one of its jobs; that job only.
 * - `monitor`: any client id outside the `fedmq:` prefix (so a monitor can never take over a node's
 *   or coordinator's session: MQTT 3.1.1 §3.1.4 disconnects the older client with the same id);
 *   all of its jobs.
 *
 * Pinning a connection to one job means a node in jobs `a` and `b` connected as
 * `fedmq:a:node:n1` cannot touch job `b` on that connection.
 */
export function scopeToClientId(p: Principal | null | undefined, clientId: string): Principal | null {
  if (!p) return null;
  if (p.role === 'monitor') return clientId.startsWith(RESERVED_CLIENT_ID_PREFIX) ? null : p;
  const parts = clientId.split(':');
  const job = parts[1];
  if (parts[0] !== 'fedmq' || job === undefined || !ID_PATTERN.test(job)) return null;
  if (p.jobs !== '*' && !p.jobs.includes(job)) return null;
  const ok = p.role === 'node'
    ? parts.length === 4 && parts[2] === 'node' && parts[3] === p.username && ID_PATTERN.test(p.username)
    : parts.length === 3 && parts[2] === 'coordinator';
  return ok ? { username: p.username, role: p.role, jobs: [job] } : null;
}
