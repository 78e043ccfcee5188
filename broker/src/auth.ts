import { randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { ErrorCodes, FedmqError, ID_PATTERN } from '@fedmq/protocol';
import { z } from 'zod';
import { ROLES, type Principal, type Role } from './acl.ts';

/**
 * Username/password authentication for the broker (docs/security.md, "Credentials file").
 *
 * Passwords are stored as scrypt hashes (RFC 7914) with a random 16-byte salt per user; a CONNECT's
 * password is hashed with the user's parameters on the libuv thread pool (async, never on the event
 * loop) and compared with `timingSafeEqual`. Nothing derived from a password is cached.
 */

/** scrypt cost parameters (RFC 7914 §2): `N` CPU/memory cost (a power of 2), `r` block size, `p` parallelism, `keylen` hash bytes. */
export interface ScryptParams {
  N: number;
  r: number;
  p: number;
  keylen: number;
}

/**
 * Default scrypt parameters: N = 2^14, r = 8, p = 1, 32-byte hash — the "interactive login"
 * setting of Percival's scrypt paper (RFC 7914 §2): 16 MiB and 50–80 ms of one core per CONNECT,
 * measured on the 2-core development machine under load. Generated passwords have 192 random
 * bits, for which the cost hardly matters; it protects chosen passwords if the file leaks.
 */
export const DEFAULT_SCRYPT: ScryptParams = { N: 16384, r: 8, p: 1, keylen: 32 };

/** One user of the credentials file. */
export interface CredentialEntry {
  /** 1–64 of `A–Z a–z 0–9 _ . -`; for role `node` this is the node id. */
  username: string;
  role: Role;
  /** Job ids the user may take part in, or `'*'` for every job. */
  jobs: string[] | '*';
  /** Random salt, base64. */
  salt: string;
  /** scrypt(password, salt), base64. */
  hash: string;
  scrypt: ScryptParams;
  /** ISO 8601 time the password was set. */
  created?: string;
}

/** The credentials file: `{ "version": 1, "users": [CredentialEntry, …] }` (JSON, mode 0600). */
export interface CredentialsFile {
  version: 1;
  users: CredentialEntry[];
}

const base64 = z.string().regex(/^[A-Za-z0-9+/]+={0,2}$/, 'base64');
const jobId = z.string().regex(ID_PATTERN, 'job id: 1-64 of [A-Za-z0-9_.-]');
const entrySchema = z.object({
  username: z.string().regex(ID_PATTERN, 'username: 1-64 of [A-Za-z0-9_.-]'),
  role: z.enum(ROLES as [Role, ...Role[]]),
  jobs: z.union([z.literal('*'), z.array(jobId).min(1)]),
  salt: base64,
  hash: base64,
  scrypt: z.object({
    N: z.number().int().min(2 ** 10).max(2 ** 20).refine((n) => (n & (n - 1)) === 0, 'N must be a power of 2'),
    r: z.number().int().min(1).max(32),
    p: z.number().int().min(1).max(16),
    keylen: z.number().int().min(16).max(64),
  }),
  created: z.string().optional(),
});
const fileSchema = z.object({ version: z.literal(1), users: z.array(entrySchema) });

/** A user as `fedmq auth list` shows it: no salt, no hash. */
export type CredentialSummary = Pick<CredentialEntry, 'username' | 'role' | 'jobs' | 'created'>;

/** Options of {@link addCredential}. */
export interface NewCredential {
  username: string;
  role: Role;
  jobs: string[] | '*';
  /** The password; a random one ({@link generatePassword}) when omitted. At least 8 characters. */
  password?: string;
}

function scrypt(password: Buffer, salt: Buffer, params: ScryptParams): Promise<Buffer> {
  // maxmem: scrypt needs 128·N·r bytes; Node's default cap (32 MiB) would refuse N = 2^15, r = 8
  const options: ScryptOptions = { N: params.N, r: params.r, p: params.p, maxmem: 256 * params.N * params.r + 1024 * 1024 };
  return new Promise((resolve, reject) => scryptCb(password, salt, params.keylen, options, (err, key) => (err ? reject(err) : resolve(key))));
}

/** A strong random password: 24 bytes from the CSPRNG (192 bits) as 32 base64url characters. */
export function generatePassword(): string {
  return randomBytes(24).toString('base64url');
}

/** Hashes `password` with a fresh 16-byte salt: the `salt`, `hash` and `scrypt` fields of an entry. */
export async function hashPassword(password: string, params: ScryptParams = DEFAULT_SCRYPT): Promise<Pick<CredentialEntry, 'salt' | 'hash' | 'scrypt'>> {
  const salt = randomBytes(16);
  const hash = await scrypt(Buffer.from(password, 'utf8'), salt, params);
  return { salt: salt.toString('base64'), hash: hash.toString('base64'), scrypt: { ...params } };
}

/** True when `password` hashes to `entry.hash` (constant-time comparison). */
export async function verifyPassword(entry: Pick<CredentialEntry, 'salt' | 'hash' | 'scrypt'>, password: Buffer | string): Promise<boolean> {
  const expected = Buffer.from(entry.hash, 'base64');
  const got = await scrypt(typeof password === 'string' ? Buffer.from(password, 'utf8') : password, Buffer.from(entry.salt, 'base64'), entry.scrypt);
  return got.length === expected.length && timingSafeEqual(got, expected);
}

/** Used for unknown usernames, so that they take as long as a wrong password. */
const DUMMY = { salt: randomBytes(16).toString('base64'), hash: randomBytes(DEFAULT_SCRYPT.keylen).toString('base64'), scrypt: DEFAULT_SCRYPT };

/** The users of a credentials file, loaded. */
export class Credentials {
  private readonly byName: Map<string, CredentialEntry>;

  /**
   * @param users the entries (usernames unique).
   * @param file where they were read from, if anywhere.
   * @param fileMode the file's permission bits (e.g. 0o600), if read from a file.
   */
  constructor(users: readonly CredentialEntry[], readonly file?: string, readonly fileMode?: number) {
    this.byName = new Map(users.map((u) => [u.username, u]));
  }

  /** Every user, without salts and hashes. */
  list(): CredentialSummary[] {
    return [...this.byName.values()].map(({ username, role, jobs, created }) => ({ username, role, jobs, created }));
  }

  /** Number of users. */
  get size(): number {
    return this.byName.size;
  }

  /** True when `username` is a user of this file (any role). */
  has(username: string): boolean {
    return this.byName.has(username);
  }

  /**
   * The user's {@link Principal} when `password` is theirs; `null` for an unknown user or a wrong
   * password (both take one scrypt, so timing does not tell which). Never throws for bad input.
   */
  async authenticate(username: string, password: Buffer | string): Promise<Principal | null> {
    const entry = this.byName.get(username);
    let ok = false;
    try {
      ok = await verifyPassword(entry ?? DUMMY, password);
    } catch {
      ok = false;
    }
    if (!entry || !ok) return null;
    return { username: entry.username, role: entry.role, jobs: entry.jobs === '*' ? '*' : [...entry.jobs] };
  }
}

/** Parses and validates the JSON text of a credentials file. @throws FedmqError FEDMQ_BAD_CONFIG */
export function parseCredentials(text: string, file = 'credentials'): CredentialEntry[] {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new FedmqError(ErrorCodes.BAD_CONFIG, `${file}: not JSON (${(err as Error).message})`, { file });
  }
  const parsed = fileSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new FedmqError(ErrorCodes.BAD_CONFIG, `${file}: ${issue.path.join('.') || '(root)'}: ${issue.message}`, { file, path: issue.path });
  }
  const seen = new Set<string>();
  for (const u of parsed.data.users) {
    if (seen.has(u.username)) throw new FedmqError(ErrorCodes.BAD_CONFIG, `${file}: user ${u.username} appears twice`, { file, username: u.username });
    seen.add(u.username);
  }
  return parsed.data.users as CredentialEntry[];
}

/**
 * Reads a credentials file.
 * @throws FedmqError FEDMQ_BAD_CONFIG when the file is missing, not JSON or not a valid credentials file.
 */
export async function loadCredentials(file: string): Promise<Credentials> {
  let text: string;
  let mode: number;
  try {
    [text, mode] = await Promise.all([readFile(file, 'utf8'), stat(file).then((s) => s.mode & 0o777)]);
  } catch (err) {
    throw new FedmqError(ErrorCodes.BAD_CONFIG, `cannot read credentials file ${file}: ${(err as Error).message}`, { file }, { cause: err });
  }
  return new Credentials(parseCredentials(text, file), file, mode);
}

/** The entries of `file`, or none when it does not exist. */
async function readEntries(file: string): Promise<CredentialEntry[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new FedmqError(ErrorCodes.BAD_CONFIG, `cannot read credentials file ${file}: ${(err as Error).message}`, { file }, { cause: err });
  }
  return parseCredentials(text, file);
}

/**
 * Writes `users` to `file` atomically: a temporary file in the same folder (mode 0600, flushed to
 * disk) renamed over `file`, so a reader sees the old or the new file, never half of one.
 * Concurrent writers are not serialised: the last rename wins.
 */
async function writeEntries(file: string, users: CredentialEntry[]): Promise<void> {
  const tmp = join(dirname(file), `.${basename(file)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const body: CredentialsFile = { version: 1, users };
  const fh = await open(tmp, 'wx', 0o600);
  try {
    await fh.writeFile(`${JSON.stringify(body, null, 2)}\n`);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, file);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
}

/**
 * Adds a user to the credentials file `file` (created when missing), or replaces the user of the
 * same name (a new password: rotation). Writes atomically, mode 0600.
 * @returns the password — the one given, or a generated one; it is stored only as a hash, so show it once.
 * @throws FedmqError FEDMQ_BAD_CONFIG on an invalid username, role, job id or a password shorter
 *   than 8 characters, or when the existing file is not a valid credentials file.
 */
export async function addCredential(file: string, user: NewCredential, params: ScryptParams = DEFAULT_SCRYPT): Promise<string> {
  const bad = (message: string) => new FedmqError(ErrorCodes.BAD_CONFIG, message, { username: user.username });
  if (!ID_PATTERN.test(user.username)) throw bad(`invalid username ${JSON.stringify(user.username)}: expected 1-64 of [A-Za-z0-9_.-]`);
  if (!ROLES.includes(user.role)) throw bad(`invalid role ${JSON.stringify(user.role)}: expected one of ${ROLES.join(', ')}`);
  if (user.jobs !== '*') {
    if (user.jobs.length === 0) throw bad('a user needs at least one job (or "*" for every job)');
    for (const j of user.jobs) if (!ID_PATTERN.test(j)) throw bad(`invalid job id ${JSON.stringify(j)}: expected 1-64 of [A-Za-z0-9_.-]`);
  }
  if (user.password !== undefined && user.password.length < 8) throw bad('password must have at least 8 characters');
  const password = user.password ?? generatePassword();
  const users = await readEntries(file);
  const entry: CredentialEntry = {
    username: user.username, role: user.role, jobs: user.jobs === '*' ? '*' : [...new Set(user.jobs)],
    ...(await hashPassword(password, params)), created: new Date().toISOString(),
  };
  const i = users.findIndex((u) => u.username === user.username);
  if (i >= 0) users[i] = entry;
  else users.push(entry);
  await writeEntries(file, users);
  return password;
}

/**
 * Removes a user from the credentials file (atomic rewrite).
 * @returns false when there was no such user (the file is left as it was).
 * @throws FedmqError FEDMQ_BAD_CONFIG when the file is not a valid credentials file.
 */
export async function removeCredential(file: string, username: string): Promise<boolean> {
  const users = await readEntries(file);
  const kept = users.filter((u) => u.username !== username);
  if (kept.length === users.length) return false;
  await writeEntries(file, kept);
  return true;
}
