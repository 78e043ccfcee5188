import { z } from 'zod';
import { numberParam, type AggregatorDescriptor } from './descriptor.ts';
import { KRUM_F_FLAG, MultiKrumAggregator } from './krum.ts';

const params = z.object({ krumF: numberParam.integer(0), multiKrumM: numberParam.integer(1).optional() });

/**
 * Descriptor of Multi-Krum (Blanchard et al. 2017, NeurIPS; {@link MultiKrumAggregator},
 * `--aggregator multi-krum`): `--krum-f` is required, `--multi-krum-m` defaults to n − f of each round.
 */
export const multiKrumDescriptor: AggregatorDescriptor<typeof params> = {
  kind: 'aggregator',
  name: 'multi-krum',
  title: 'Multi-Krum (mean of the m best-scored updates)',
  paper: 'Blanchard et al. 2017, "Machine Learning with Adversaries", NeurIPS',
  streaming: false,
  params,
  flags: [KRUM_F_FLAG, { flag: '--multi-krum-m <m>', key: 'multiKrumM', help: 'multi-krum: m, best-scored updates averaged (capped at n − f)', defaultText: 'n − f' }],
  create: (p, ctx) => new MultiKrumAggregator({ krumF: p.krumF, multiKrumM: p.multiKrumM, minFitNodes: ctx.minFitNodes, logger: ctx.logger }),
};
