import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '@fedmq/protocol';
import { SeededTestRandom } from '../testing.ts';
import {
  SecAggClient, SecAggServer, defaultNeighbours, dequantizeSum, modulusBits, neighbourGraph, nodeThreshold, packBits, quantizeVector, simulateSecAgg, unpackBits,
} from '../index.ts';

const id = (i: number) => `node-${String(i).padStart(4, '0')}`;

/** n random inputs of d words < 2^bits / n (so their sum does not wrap: the plain integer sum is the target). */
function inputs(n: number, d: number, bits: number, rnd: SeededTestRandom): Map<string, Uint32Array> {
  const max = Math.floor(2 ** bits / n);
  return new Map(Array.from({ length: n }, (_, i) => [id(i), Uint32Array.from({ length: d }, () => rnd.nextInt(max))]));
}

function plainSum(all: Map<string, Uint32Array>, ids: readonly string[], d: number): Float64Array {
  const s = new Float64Array(d);
  for (const k of ids) all.get(k)!.forEach((v, i) => (s[i] += v));
  return s;
}

/** k of `ids` drawn without replacement. */
function pick(ids: string[], k: number, rnd: SeededTestRandom): string[] {
  const a = [...ids];
  for (let i = a.length - 1; i > 0; i--) {
    const j = rnd.nextInt(i + 1);
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a.slice(0, k);
}

describe('SecAgg+ protocol simulation (no MQTT)', () => {
  it('1,000 participants, 30 % dropping before the masked input and 5 % before the unmask: the sum equals the plain integer sum bit for bit (3 seeds)', async () => {
    for (const seed of [1, 2, 3]) {
      const rnd = new SeededTestRandom(new Uint8Array(32).fill(seed));
      const n = 1000;
      const d = 64;
      const bits = 24;
      const all = inputs(n, d, bits, rnd);
      const ids = [...all.keys()];
      const drop1 = pick(ids, 300, rnd);
      const rest = ids.filter((x) => !drop1.includes(x));
      const drop2 = pick(rest, 50, rnd);
      // θ = 0.3: t_i = ⌊0.3·k⌋ + 1 of k; k from the default rule for this θ
      const k = defaultNeighbours(n, 0.3);
      const r = await simulateSecAgg({ inputs: all, bits, neighbours: k, thresholdFraction: 0.3, dropBeforeMasked: drop1, dropBeforeUnmask: drop2, random: rnd });
      expect(r.cohorts).toEqual([1000, 1000, 700, 650]);
      expect(r.recovered.length).toBe(300);
      const want = plainSum(all, r.survivors, d);
      expect(r.survivors.length).toBe(700);
      expect(Array.from(r.sum)).toEqual(Array.from(want));
    }
  }, 120_000);

  it('many seeds at 100 participants, complete and SecAgg+ graphs, up to n − t dropping', async () => {
    for (let seed = 10; seed < 22; seed++) {
      const rnd = new SeededTestRandom(new Uint8Array(32).fill(seed));
      const n = 100;
      const all = inputs(n, 32, 20, rnd);
      const ids = [...all.keys()];
      // complete graph (k = 99, t_i = 50): up to 44 + 5 of 100 drop; SecAgg+ (k = 40, θ = 0.3, t_i = 13): up to 30 + 5
      const complete = seed % 2 === 0;
      const drop1 = pick(ids, complete ? 10 + (seed % 35) : 10 + (seed % 21), rnd);
      const drop2 = pick(ids.filter((x) => !drop1.includes(x)), 5, rnd);
      const r = await simulateSecAgg({
        inputs: all, bits: 20, graph: complete ? 'complete' : 'harary', neighbours: 40, thresholdFraction: complete ? 0.5 : 0.3, dropBeforeMasked: drop1, dropBeforeUnmask: drop2, random: rnd,
      });
      expect(Array.from(r.sum)).toEqual(Array.from(plainSum(all, r.survivors, 32)));
      expect(r.survivors).toEqual(ids.filter((x) => !drop1.includes(x)));
    }
  }, 120_000);

  it('below the threshold the round aborts with FEDMQ_SECAGG_ABORT at the stage where it fell', async () => {
    const rnd = new SeededTestRandom(new Uint8Array(32).fill(7));
    const all = inputs(20, 8, 16, rnd);
    const ids = [...all.keys()];
    // t = 10 of 20: 11 dropping before the masked input leaves 9
    await expect(simulateSecAgg({ inputs: all, bits: 16, thresholdFraction: 0.5, graph: 'complete', dropBeforeMasked: ids.slice(0, 11) })).rejects.toMatchObject({ code: ErrorCodes.SECAGG_ABORT });
    // 8 before the masked input and 3 before the unmask: U3 = 12 ≥ 10, U4 = 9 < 10
    await expect(simulateSecAgg({ inputs: all, bits: 16, thresholdFraction: 0.5, graph: 'complete', dropBeforeMasked: ids.slice(0, 8), dropBeforeUnmask: ids.slice(8, 11) })).rejects.toMatchObject({ code: ErrorCodes.SECAGG_ABORT });
    // 11 survive: each survivor's secrets have t_i = ⌊0.5·19⌋ + 1 = 10 holders among the other 10 survivors: the sum is there
    const ok = await simulateSecAgg({ inputs: all, bits: 16, thresholdFraction: 0.5, graph: 'complete', dropBeforeMasked: ids.slice(0, 9) });
    expect(Array.from(ok.sum)).toEqual(Array.from(plainSum(all, ids.slice(9), 8)));
  });

  it('a masked input alone is uniform-looking: no word equals the input and the mean is near 2^(b−1)', async () => {
    const rnd = new SeededTestRandom(new Uint8Array(32).fill(8));
    const all = new Map(Array.from({ length: 10 }, (_, i) => [id(i), new Uint32Array(20_000)])); // all-zero inputs
    const r = await simulateSecAgg({ inputs: all, bits: 16, graph: 'complete', random: rnd });
    const y = r.masked.get(id(0))!;
    const mean = y.reduce((s, v) => s + v, 0) / y.length;
    // uniform on [0, 2^16): mean 32767.5, sd of the mean 18918/√20000 ≈ 134; 6 sd
    expect(Math.abs(mean - 32767.5)).toBeLessThan(6 * 134);
    expect(Array.from(r.sum).every((v) => v === 0)).toBe(true);
  });
});

describe('a node and the coordinator refuse what the protocol does not allow', () => {
  const ctx = { job: 'j', runId: 'r', round: 1 };

  async function threeStages() {
    const ids = ['a', 'b', 'c', 'd'];
    const graph = neighbourGraph(ids, 3, 'complete');
    const thresholds = new Map(ids.map((x) => [x, 2]));
    const server = new SecAggServer({ ctx, bits: 16, dims: 4, graph, thresholds, threshold: 3 });
    const clients = new Map(ids.map((x) => [x, new SecAggClient(x, ctx)]));
    for (const x of ids) server.onAdvertise(x, clients.get(x)!.advertise(server.advertiseRequest(x)));
    server.closeAdvertise();
    const replies = new Map<string, Awaited<ReturnType<SecAggClient['shareKeys']>>>();
    for (const x of ids) {
      const rep = await clients.get(x)!.shareKeys(server.shareKeysRequest(x));
      replies.set(x, rep);
      server.onShareKeys(x, rep);
    }
    server.closeShareKeys();
    return { ids, server, clients, replies };
  }

  it('never reveals both shares of one peer, answers one unmask request only, and refuses overlapping or partial lists', async () => {
    const { server, clients } = await threeStages();
    const a = clients.get('a')!;
    a.maskInput(server.maskedInputRequest('a'), new Uint32Array(4));
    const code = (f: () => unknown, c: string) => expect(f).toThrow(expect.objectContaining({ code: c }));
    code(() => a.unmask({ survivors: ['b', 'c'], dropped: ['c', 'd'] }), ErrorCodes.SECAGG_PROTOCOL);
    code(() => a.unmask({ survivors: ['b'], dropped: ['c'] }), ErrorCodes.SECAGG_PROTOCOL); // d left out
    code(() => a.unmask({ survivors: ['b', 'c', 'x'], dropped: ['d'] }), ErrorCodes.SECAGG_PROTOCOL);
    const reply = a.unmask({ survivors: ['b', 'c'], dropped: ['d'] });
    expect(reply.selfMaskShares.map((s) => s.of)).toEqual(['b', 'c']);
    expect(reply.maskKeyShares.map((s) => s.of)).toEqual(['d']);
    code(() => a.unmask({ survivors: ['b', 'c', 'd'], dropped: [] }), ErrorCodes.SECAGG_PROTOCOL);
  });

  it('refuses a share addressed to another node, a tampered one, one from a non-neighbour, and stages out of order', async () => {
    const { server, clients, replies } = await threeStages();
    const code = (f: () => unknown, c: string) => expect(f).toThrow(expect.objectContaining({ code: c }));
    const b = clients.get('b')!;
    const req = server.maskedInputRequest('b');
    code(() => b.maskInput({ shares: req.shares.map((s, i) => (i === 0 ? { ...s, to: 'c' } : s)) }, new Uint32Array(4)), ErrorCodes.SECAGG_PROTOCOL);
    const tampered = req.shares.map((s, i) => (i === 0 ? { ...s, ciphertext: s.ciphertext.map((x, j) => (j === 30 ? x ^ 1 : x)) } : s));
    code(() => b.maskInput({ shares: tampered }, new Uint32Array(4)), ErrorCodes.SECAGG_AUTH);
    // a share c sent to d, relabelled as if to b: the associated data names d, so it does not open
    const cToD = replies.get('c')!.shares.find((s) => s.to === 'd')!;
    code(() => b.maskInput({ shares: [...req.shares.filter((s) => s.from !== 'c'), { ...cToD, to: 'b' }] }, new Uint32Array(4)), ErrorCodes.SECAGG_AUTH);
    code(() => b.maskInput({ shares: [...req.shares, { from: 'zz', to: 'b', ciphertext: new Uint8Array(94) }] }, new Uint32Array(4)), ErrorCodes.SECAGG_PROTOCOL);
    code(() => b.maskInput(req, new Uint32Array(5)), ErrorCodes.SECAGG_RANGE);
    code(() => b.maskInput(req, Uint32Array.of(0, 0, 0, 70_000)), ErrorCodes.SECAGG_RANGE);
    code(() => b.unmask({ survivors: [], dropped: [] }), ErrorCodes.SECAGG_PROTOCOL);
    // the refusals changed nothing: the good request still works, once
    b.maskInput(req, new Uint32Array(4));
    code(() => b.maskInput(req, new Uint32Array(4)), ErrorCodes.SECAGG_PROTOCOL);
    // the coordinator: a second masked input, a node outside the cohort, a wrong length
    server.onMaskedInput('b', new Uint32Array(4));
    code(() => server.onMaskedInput('b', new Uint32Array(4)), ErrorCodes.SECAGG_PROTOCOL);
    code(() => server.onMaskedInput('zz', new Uint32Array(4)), ErrorCodes.SECAGG_PROTOCOL);
    code(() => server.onMaskedInput('c', new Uint32Array(3)), ErrorCodes.SECAGG_RANGE);
    code(() => server.onAdvertise('a', { encPublicKey: new Uint8Array(32), maskPublicKey: new Uint8Array(32) }), ErrorCodes.SECAGG_PROTOCOL);
  });

  it('the coordinator refuses a node whose advertised keys repeat another node\'s (or each other), and only that node', () => {
    const ids = ['a', 'b', 'c', 'd'];
    const server = new SecAggServer({ ctx, bits: 16, dims: 4, graph: neighbourGraph(ids, 3, 'complete'), thresholds: new Map(ids.map((x) => [x, 2])), threshold: 3 });
    const clients = new Map(ids.map((x) => [x, new SecAggClient(x, ctx)]));
    const a = clients.get('a')!.advertise(server.advertiseRequest('a'));
    server.onAdvertise('a', a);
    const code = (f: () => unknown) => expect(f).toThrow(expect.objectContaining({ code: ErrorCodes.SECAGG_PROTOCOL }));
    const b = clients.get('b')!.advertise(server.advertiseRequest('b'));
    code(() => server.onAdvertise('b', { encPublicKey: a.encPublicKey, maskPublicKey: b.maskPublicKey }));
    code(() => server.onAdvertise('b', { encPublicKey: b.encPublicKey, maskPublicKey: a.encPublicKey }));
    code(() => server.onAdvertise('b', { encPublicKey: b.encPublicKey, maskPublicKey: b.encPublicKey }));
    // refused answers left nothing behind: b's own keys are taken, and the others'
    server.onAdvertise('b', b);
    for (const x of ['c', 'd']) server.onAdvertise(x, clients.get(x)!.advertise(server.advertiseRequest(x)));
    expect(server.closeAdvertise()).toEqual(ids);
  });

  it('a share of another round does not open (the round is in the associated data and the keys)', async () => {
    const { server, clients } = await threeStages();
    const other = new SecAggClient('x', { ...ctx, round: 2 });
    void other;
    const req = server.maskedInputRequest('a');
    // the same ciphertexts, received by a client of round 2 with the same keys, fail: simulate by a fresh round-2 client pair
    const c2 = new SecAggClient('a', { ...ctx, round: 2 });
    c2.advertise({ neighbours: ['b', 'c', 'd'], threshold: 2, bits: 16, dims: 4 });
    // round-2 client never saw these peers' keys: the shares are refused before decryption
    expect(() => c2.maskInput(req, new Uint32Array(4))).toThrow(expect.objectContaining({ code: ErrorCodes.SECAGG_PROTOCOL }));
    void clients;
  });

  it('the client refuses bad stage-1 and stage-2 requests', async () => {
    const code = (f: () => unknown, c: string) => expect(f).toThrow(expect.objectContaining({ code: c }));
    code(() => new SecAggClient('a', ctx).advertise({ neighbours: ['a', 'b'], threshold: 2, bits: 16, dims: 4 }), ErrorCodes.SECAGG_PROTOCOL);
    code(() => new SecAggClient('a', ctx).advertise({ neighbours: ['b', 'b'], threshold: 2, bits: 16, dims: 4 }), ErrorCodes.SECAGG_PROTOCOL);
    code(() => new SecAggClient('a', ctx).advertise({ neighbours: ['b', 'c'], threshold: 3, bits: 16, dims: 4 }), ErrorCodes.SECAGG_RANGE);
    code(() => new SecAggClient('a', ctx).advertise({ neighbours: ['b', 'c'], threshold: 2, bits: 33, dims: 4 }), ErrorCodes.SECAGG_RANGE);
    const c = new SecAggClient('a', ctx);
    const mine = c.advertise({ neighbours: ['b', 'c'], threshold: 2, bits: 16, dims: 4 });
    const k = () => new Uint8Array(32).map(() => Math.floor(Math.random() * 256));
    await expect(c.shareKeys({ peers: [{ nodeId: 'b', encPublicKey: k(), maskPublicKey: k() }] })).rejects.toMatchObject({ code: ErrorCodes.SECAGG_ABORT });
    await expect(c.shareKeys({ peers: [{ nodeId: 'b', encPublicKey: mine.encPublicKey, maskPublicKey: k() }, { nodeId: 'c', encPublicKey: k(), maskPublicKey: k() }] })).rejects.toMatchObject({ code: ErrorCodes.SECAGG_PROTOCOL });
    await expect(c.shareKeys({ peers: [{ nodeId: 'q', encPublicKey: k(), maskPublicKey: k() }, { nodeId: 'c', encPublicKey: k(), maskPublicKey: k() }] })).rejects.toMatchObject({ code: ErrorCodes.SECAGG_PROTOCOL });
    code(() => c.advertise({ neighbours: ['b', 'c'], threshold: 2, bits: 16, dims: 4 }), ErrorCodes.SECAGG_PROTOCOL);
  });
});

describe('graph, thresholds and quantization', () => {
  it('the Harary graph is k-regular and symmetric; complete above 254 neighbours is refused', () => {
    const ids = Array.from({ length: 101 }, (_, i) => id(i));
    const g = neighbourGraph(ids, 10, 'harary', new SeededTestRandom(new Uint8Array(32)));
    for (const [a, nb] of g) {
      expect(nb.length).toBe(10);
      for (const b of nb) expect(g.get(b)).toContain(a);
    }
    expect(() => neighbourGraph(Array.from({ length: 300 }, (_, i) => id(i)), 0, 'complete')).toThrow(expect.objectContaining({ code: ErrorCodes.SECAGG_RANGE }));
    expect(() => neighbourGraph(ids, 9)).toThrow(expect.objectContaining({ code: ErrorCodes.SECAGG_RANGE }));
    expect(nodeThreshold(10, 0.5)).toBe(6);
    expect(nodeThreshold(3, 0.3)).toBe(2);
  });

  it('modulus bits: the smallest b with m·L < 2^b, and a configuration that could wrap is refused', () => {
    expect(modulusBits(1, { clip: 1, levelBits: 16 })).toBe(16);
    expect(modulusBits(2, { clip: 1, levelBits: 16 })).toBe(17);
    expect(modulusBits(1000, { clip: 1, levelBits: 16 })).toBe(26);
    expect(modulusBits(65537, { clip: 1, levelBits: 16 })).toBe(32);
    expect(() => modulusBits(65538, { clip: 1, levelBits: 16 })).toThrow(expect.objectContaining({ code: ErrorCodes.SECAGG_RANGE }));
  });

  it('stochastic quantization is unbiased and its sum dequantizes to the sum of the clipped values', () => {
    const rnd = new SeededTestRandom(new Uint8Array(32).fill(2));
    const o = { clip: 0.5, levelBits: 4 };
    const v = [0.123, -0.31, 0.7, -2, 0];
    const reps = 20_000;
    const sum = new Uint32Array(v.length);
    for (let r = 0; r < reps; r++) quantizeVector(v, o, rnd).forEach((x, i) => (sum[i] += x));
    const mean = dequantizeSum(sum, reps, o).map((x) => x / reps);
    const clipped = v.map((x) => Math.max(-0.5, Math.min(0.5, x)));
    // step 1/15; the rounding noise's sd per draw ≤ step/2, over 20,000 draws ≤ 2.4e-4: 6 sd
    mean.forEach((m, i) => expect(Math.abs(m - clipped[i])).toBeLessThan(1.5e-3));
  });

  it('packs b-bit words and refuses wrong lengths and padding', () => {
    for (const bits of [1, 7, 16, 17, 26, 31, 32]) {
      const w = Uint32Array.from({ length: 37 }, (_, i) => (i * 2654435761) % 2 ** bits);
      const p = packBits(w, bits);
      expect(p.length).toBe(Math.ceil((37 * bits) / 8));
      expect(Array.from(unpackBits(p, 37, bits))).toEqual(Array.from(w));
      expect(() => unpackBits(p.subarray(1), 37, bits)).toThrow(expect.objectContaining({ code: ErrorCodes.SECAGG_PROTOCOL }));
    }
    const p = packBits(Uint32Array.of(1), 3);
    p[0] |= 0x80;
    expect(() => unpackBits(p, 1, 3)).toThrow(expect.objectContaining({ code: ErrorCodes.SECAGG_PROTOCOL }));
  });
});
