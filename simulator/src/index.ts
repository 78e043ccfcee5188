// The public API of @fedmq/simulator: a curated list (used by the CLI, the benchmarks and the tests).

// simulation.ts: many edge nodes in worker threads over real MQTT
export { startSimulation, type Simulation, type SimulationEvents, type SimulationOptions } from './simulation.ts';
// plan.ts: which node gets which partition, device and behaviour
export { planNodes, balance, parseShard, shardOf, type NodePlan, type Shard } from './plan.ts';
// datasets.ts: the datasets a simulation can run on, and the sensor motes pooled per node
export { loadSimDataset, poolMotes, DATASETS, type SimDataset } from './datasets.ts';
// job.ts: the local job `npm start` runs (broker + coordinator + simulated nodes)
export { runLocalJob, DEFAULT_JOB, type LocalJobOptions } from './job.ts';
// sensors-demo.ts: the TelosB anomaly-detection demo (docs/sensors.md)
export { runSensorsDemo, SENSORS_DEMO, type SensorsDemoResult, type MoteRow } from './sensors-demo.ts';
// attacks.ts: Byzantine node behaviours (docs/strategies.md)
export { ATTACKS, attackDelta, flipLabels, pickMalicious, type AttackName, type AttackParams } from './attacks.ts';
// alie.ts: the colluding "a little is enough" attack
export { AlieCollusion, AlieColluder, alieDelta, alieZ, inverseNormalCdf, type AlieCollusionOptions, type AlieRound, type AlieSubmission, type AlieTaskContext } from './alie.ts';
// chaos.ts: dropouts, stragglers and slow devices (docs/fault-tolerance.md)
export { DEFAULT_CHAOS, chaosFor, isSlowNode, parseChaos, withChaos, type ChaosDecision, type ChaosOptions } from './chaos.ts';
// inversion.ts: the gradient inversion attack secure aggregation stops (docs/privacy.md)
export { INVERSION_DEMO, byteStats, chiSquarePValue, dequantize, grayPng, oneStepDeltas, oneStepUpdate, reconstructFromDelta, reconstructInput, reconstructionError, runInversionDemo, type ByteStats, type InversionDemoOptions, type InversionDemoResult, type OneStepUpdate, type Reconstruction, type ReconstructionError } from './inversion.ts';
