import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { commandOf } from './argv.ts';

describe('commandOf', () => {
  it('finds the command after the global --log-level, and none in a bare --help', () => {
    expect(commandOf(['node', '--broker', 'mqtt://x'])).toBe('node');
    expect(commandOf(['--log-level', 'warn', 'node', '--id', 'a'])).toBe('node');
    expect(commandOf(['--log-level=debug', 'simulate'])).toBe('simulate');
    expect(commandOf(['--help'])).toBeUndefined();
    expect(commandOf([])).toBeUndefined();
  });
});

describe('the node entry (entry.ts → node-main.ts)', () => {
  // what `fedmq node` loads is its own modules and the node's packages, never the other commands' (docs/scale.md, "Edge footprint")
  const nodeFiles = ['node-main.ts', 'node-command.ts', 'client-security.ts', 'broker-url.ts', 'data-flags.ts', 'process.ts', 'edge-runtime.ts'];
  const imports = (file: string) => [...readFileSync(new URL(file, import.meta.url), 'utf8').matchAll(/(?:from|import)\s*\(?\s*'([^']+)'/g)].map((m) => m[1]);

  it('imports only node modules and the node packages', () => {
    const seen = new Set<string>();
    for (const f of nodeFiles) for (const i of imports(f)) seen.add(i);
    expect([...seen].filter((i) => i.startsWith('./')).every((i) => nodeFiles.includes(i.slice(2)))).toBe(true);
    expect([...seen].filter((i) => i.startsWith('@fedmq/')).sort()).toEqual(['@fedmq/edge-node', '@fedmq/ml', '@fedmq/protocol']);
  });

  it('entry.ts loads main.ts only for the other commands', () => {
    expect(imports('entry.ts').sort()).toEqual(['./argv.ts', './edge-runtime.ts', './main.ts', './node-main.ts']);
    expect(imports('argv.ts')).toEqual([]);
    expect(imports('edge-runtime.ts')).toEqual(['node:v8', 'node:vm']);
  });
});
