/**
 * Entry of the `fedmq` command (bin/fedmq.js). `fedmq node` runs on constrained devices: it gets
 * the edge process settings (edge-runtime.ts) and loads node-main.ts, which holds the node
 * command alone, not the broker, coordinator, simulator and monitor that main.ts loads for every
 * other command. Measured: docs/scale.md, "Edge footprint". Its static imports are the two
 * files below, which import nothing heavy: tuneForEdge must run before the node's modules load.
 */
import { tuneForEdge } from './edge-runtime.ts';
import { commandOf } from './argv.ts';

if (commandOf(process.argv.slice(2)) === 'node') {
  tuneForEdge();
  await import('./node-main.ts');
} else {
  await import('./main.ts');
}
