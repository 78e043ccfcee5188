/** Built-in models; importing this module registers them. */
import { mnist2nn } from './mnist-2nn.ts';
import { registerModel, registerModelFamily } from './registry.ts';
import { MLP_PATTERN, mlpDefinition } from './mlp.ts';
import { telosbAutoencoder } from '../sensors/model.ts';

registerModel(mnist2nn);
registerModel(telosbAutoencoder);
registerModelFamily(MLP_PATTERN, (m) => mlpDefinition(Number(m[1]), Number(m[2])), 'mlp-<features>x<classes>');

export { mnist2nn, telosbAutoencoder, mlpDefinition, MLP_PATTERN };
