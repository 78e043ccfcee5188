/** Built-in models; importing this module registers them. */
import { mnist2nn } from './mnist-2nn.ts';
import { registerModel } from './registry.ts';
import { telosbAutoencoder } from '../sensors/model.ts';

registerModel(mnist2nn);
registerModel(telosbAutoencoder);

export { mnist2nn, telosbAutoencoder };
