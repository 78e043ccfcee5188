import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_SCRYPT, addCredential, generatePassword, hashPassword, loadCredentials, removeCredential, verifyPassword, type ScryptParams } from './auth.ts';

const FAST: ScryptParams = { N: 1024, r: 8, p: 1, keylen: 32 };
let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fedmq-auth-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('credentials file', () => {
  it('adds users with generated or given passwords, mode 0600, no password in the file, no temp files left', async () => {
    const file = join(dir, 'a.json');
    const generated = await addCredential(file, { username: 'pi-1', role: 'node', jobs: ['mnist'] });
    expect(generated).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(await addCredential(file, { username: 'coordinator', role: 'coordinator', jobs: '*', password: 'correct horse battery' }, FAST)).toBe('correct horse battery');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const text = await readFile(file, 'utf8');
    expect(text).not.toContain(generated);
    expect(text).not.toContain('correct horse');
    const json = JSON.parse(text) as { version: number; users: { username: string; scrypt: ScryptParams }[] };
    expect(json.version).toBe(1);
    expect(json.users.map((u) => [u.username, u.scrypt])).toEqual([['pi-1', DEFAULT_SCRYPT], ['coordinator', FAST]]);
    expect((await readdir(dir)).filter((f) => f.endsWith('.tmp'))).toEqual([]);

    const creds = await loadCredentials(file);
    expect(creds.fileMode).toBe(0o600);
    expect(creds.list().map(({ username, role, jobs }) => ({ username, role, jobs }))).toEqual([
      { username: 'pi-1', role: 'node', jobs: ['mnist'] }, { username: 'coordinator', role: 'coordinator', jobs: '*' },
    ]);
    expect(await creds.authenticate('pi-1', Buffer.from(generated))).toEqual({ username: 'pi-1', role: 'node', jobs: ['mnist'] });
    expect(await creds.authenticate('coordinator', 'correct horse battery')).toEqual({ username: 'coordinator', role: 'coordinator', jobs: '*' });
    expect(await creds.authenticate('pi-1', 'wrong')).toBeNull();
    expect(await creds.authenticate('pi-1', '')).toBeNull();
    expect(await creds.authenticate('nobody', generated)).toBeNull();
  });

  it('replaces a user on add (password rotation) and removes users', async () => {
    const file = join(dir, 'b.json');
    const first = await addCredential(file, { username: 'pi-2', role: 'node', jobs: ['a'] }, FAST);
    const second = await addCredential(file, { username: 'pi-2', role: 'node', jobs: ['a', 'b', 'a'] }, FAST);
    const creds = await loadCredentials(file);
    expect(creds.size).toBe(1);
    expect(await creds.authenticate('pi-2', first)).toBeNull();
    expect(await creds.authenticate('pi-2', second)).toEqual({ username: 'pi-2', role: 'node', jobs: ['a', 'b'] });
    expect(await removeCredential(file, 'pi-2')).toBe(true);
    expect(await removeCredential(file, 'pi-2')).toBe(false);
    expect((await loadCredentials(file)).size).toBe(0);
  });

  it.each([
    [{ username: 'a/b', role: 'node', jobs: ['j'] }],
    [{ username: 'n', role: 'admin', jobs: ['j'] }],
    [{ username: 'n', role: 'node', jobs: [] }],
    [{ username: 'n', role: 'node', jobs: ['#'] }],
    [{ username: 'n', role: 'node', jobs: ['j'], password: 'short' }],
  ])('refuses %j with FEDMQ_BAD_CONFIG and writes nothing', async (user) => {
    const file = join(dir, 'never.json');
    await expect(addCredential(file, user as never, FAST)).rejects.toMatchObject({ code: 'FEDMQ_BAD_CONFIG' });
    await expect(stat(file)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it.each([
    ['not JSON', '{'],
    ['wrong version', '{"version":2,"users":[]}'],
    ['a field missing', '{"version":1,"users":[{"username":"x","role":"node","jobs":["j"],"salt":"AA==","scrypt":{"N":1024,"r":8,"p":1,"keylen":32}}]}'],
    ['N not a power of 2', '{"version":1,"users":[{"username":"x","role":"node","jobs":["j"],"salt":"AA==","hash":"AA==","scrypt":{"N":1000,"r":8,"p":1,"keylen":32}}]}'],
    ['a user twice', `{"version":1,"users":[${Array(2).fill('{"username":"x","role":"node","jobs":["j"],"salt":"AA==","hash":"AA==","scrypt":{"N":1024,"r":8,"p":1,"keylen":32}}').join(',')}]}`],
  ])('loadCredentials refuses a file with %s (FEDMQ_BAD_CONFIG)', async (_what, text) => {
    const file = join(dir, 'bad.json');
    await writeFile(file, text);
    await expect(loadCredentials(file)).rejects.toMatchObject({ code: 'FEDMQ_BAD_CONFIG' });
    await expect(addCredential(file, { username: 'y', role: 'node', jobs: ['j'] }, FAST)).rejects.toMatchObject({ code: 'FEDMQ_BAD_CONFIG' });
  });

  it('loadCredentials of a missing file is FEDMQ_BAD_CONFIG', async () => {
    await expect(loadCredentials(join(dir, 'missing.json'))).rejects.toMatchObject({ code: 'FEDMQ_BAD_CONFIG' });
  });

  it('hashes with a fresh salt each time and verifies only the right password', async () => {
    const a = await hashPassword('same password', FAST);
    const b = await hashPassword('same password', FAST);
    expect(a.salt).not.toBe(b.salt);
    expect(a.hash).not.toBe(b.hash);
    expect(await verifyPassword(a, 'same password')).toBe(true);
    expect(await verifyPassword(a, 'same passwore')).toBe(false);
    expect(new Set(Array.from({ length: 50 }, generatePassword)).size).toBe(50);
  });
});
