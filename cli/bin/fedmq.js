#!/usr/bin/env node
// fedmq is written in TypeScript and run from source with tsx (no build step).
import { register } from 'tsx/esm/api';

register();
await import('../src/entry.ts');
