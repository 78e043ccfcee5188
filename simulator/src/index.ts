export { startSimulation, type Simulation, type SimulationEvents, type SimulationOptions } from './simulation.ts';
export { planNodes, balance, type NodePlan } from './plan.ts';
export { loadSimDataset, DATASETS, type SimDataset } from './datasets.ts';
export { runLocalJob, DEFAULT_JOB, type LocalJobOptions } from './job.ts';
export { runSensorsDemo, SENSORS_DEMO, type SensorsDemoResult, type MoteRow } from './sensors-demo.ts';
export { poolMotes } from './datasets.ts';
export { ATTACKS, attackDelta, flipLabels, pickMalicious, type AttackName, type AttackParams } from './attacks.ts';
export { AlieCollusion, AlieColluder, alieDelta, alieZ, inverseNormalCdf, type AlieCollusionOptions, type AlieRound, type AlieSubmission, type AlieTaskContext } from './alie.ts';
export { DEFAULT_CHAOS, chaosFor, isSlowNode, parseChaos, withChaos, type ChaosDecision, type ChaosOptions } from './chaos.ts';
