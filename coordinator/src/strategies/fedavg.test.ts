import { FedAvg } from './fedavg.ts';
import { runStrategySuite } from './strategy-suite.ts';

runStrategySuite((base) => new FedAvg(base));
