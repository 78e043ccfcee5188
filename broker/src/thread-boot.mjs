// Worker threads do not inherit tsx's loader under Node 20: register it here, then load the broker thread.
import { register } from 'tsx/esm/api';

register();
await import('./thread-worker.ts');
