export * from './errors.ts';
export * from './tensor.ts';
export * from './topics.ts';
export * from './codec.ts';
export * from './messages.ts';
export * from './chunking.ts';
export * from './codecs/index.ts';
export * from './downlink.ts';
