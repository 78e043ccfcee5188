import { ErrorCodes, FedmqError } from '@fedmq/protocol';
import { KEY_BYTES, MAX_MODULUS_BITS, addPrg, deriveKey, publicKeyOf, type SecAggContext } from './primitives.ts';
import { SHARE_BYTES, combineShares } from './shamir.ts';
import type {
  AdvertiseKeysReply, AdvertiseKeysRequest, MaskedInputRequest, PeerKeys, SealedShare, ShareKeysReply, ShareKeysRequest, UnmaskReply, UnmaskRequest,
} from './messages.ts';

/** The stages of one SecAgg round, in order. */
export type SecAggStage = 'advertise-keys' | 'share-keys' | 'masked-input' | 'unmask' | 'done' | 'aborted';

/** What the coordinator needs to run one SecAgg round. */
export interface SecAggServerOptions {
  ctx: SecAggContext;
  /** Modulus bits b: inputs and the sum are in Z_{2^b}. */
  bits: number;
  /** Vector length d. */
  dims: number;
  /** U0 → neighbours: the communication graph ({@link neighbourGraph}). */
  graph: Map<string, string[]>;
  /** Shamir threshold of each node (t_i). */
  thresholds: Map<string, number>;
  /** Global threshold t: fewer than t nodes at the end of any stage aborts the round. */
  threshold: number;
}

/** The result of a round: the sum of the inputs of U3 mod 2^b. */
export interface SecAggResult {
  sum: Uint32Array;
  /** U3: the nodes whose inputs are in the sum, sorted. */
  survivors: string[];
  /** U2 \ U3: the nodes that dropped after sharing keys, whose masks were removed. */
  recovered: string[];
  /** Cohort sizes at the end of each stage: U1, U2, U3, U4. */
  cohorts: [number, number, number, number];
}

const protocolError = (msg: string, details: Record<string, unknown> = {}) => new FedmqError(ErrorCodes.SECAGG_PROTOCOL, msg, details);

/**
 * The coordinator's side of one SecAgg(+) round (Bonawitz et al. 2017, Fig. 4; graph of Bell et
 * al. 2020). It sees only public keys, ciphertexts it cannot open, masked inputs, and — in the
 * unmask stage — enough shares to remove the self masks of U3 and the pairwise masks of the
 * dropped U2 \ U3; never an unmasked input. Memory: the running sum (d words) plus O(n·k) keys,
 * ciphertexts and shares; masked inputs are folded into the sum as they arrive.
 *
 * Each `on*` method checks one node's answer (the node must be in the stage's cohort and answer
 * once) and throws a FedmqError on a bad one, which changes nothing; `close*` ends a stage,
 * fixing its cohort, and aborts the round (FEDMQ_SECAGG_ABORT) below the threshold.
 */
export class SecAggServer {
  stage: SecAggStage = 'advertise-keys';
  readonly u0: string[];
  private readonly keys = new Map<string, AdvertiseKeysReply>();
  /** Every public key advertised this round (hex). */
  private readonly seenKeys = new Set<string>();
  private u1: Set<string> = new Set();
  /** receiver → sender → ciphertext. */
  private readonly mailbox = new Map<string, Map<string, Uint8Array>>();
  private readonly shared = new Set<string>();
  private u2: Set<string> = new Set();
  private readonly sum: Uint32Array;
  private readonly masked = new Set<string>();
  private u3: Set<string> = new Set();
  private readonly selfMaskShares = new Map<string, Uint8Array[]>();
  private readonly maskKeyShares = new Map<string, Uint8Array[]>();
  private readonly unmasked = new Set<string>();
  private readonly sentUnmask = new Map<string, UnmaskRequest>();

  constructor(readonly opts: SecAggServerOptions) {
    if (!(Number.isInteger(opts.bits) && opts.bits >= 1 && opts.bits <= MAX_MODULUS_BITS)) throw new FedmqError(ErrorCodes.SECAGG_RANGE, `modulus bits ${opts.bits}`);
    this.u0 = [...opts.graph.keys()].sort();
    if (!(Number.isInteger(opts.threshold) && opts.threshold >= 2 && opts.threshold <= this.u0.length)) {
      throw new FedmqError(ErrorCodes.SECAGG_RANGE, `threshold ${opts.threshold} for a cohort of ${this.u0.length} (2 ≤ t ≤ n)`);
    }
    this.sum = new Uint32Array(opts.dims);
  }

  private expect(stage: SecAggStage, nodeId: string, cohort: Set<string> | readonly string[]): void {
    if (this.stage !== stage) throw protocolError(`a ${stage} answer from ${nodeId} during ${this.stage}`, { nodeId });
    const inCohort = Array.isArray(cohort) ? cohort.includes(nodeId) : (cohort as Set<string>).has(nodeId);
    if (!inCohort) throw protocolError(`${nodeId} is not in the ${stage} cohort`, { nodeId });
  }

  private abortBelow(size: number, what: string): void {
    if (size < this.opts.threshold) {
      this.stage = 'aborted';
      throw new FedmqError(ErrorCodes.SECAGG_ABORT, `${size} nodes ${what}; the threshold is ${this.opts.threshold}: the round aborts and nothing is revealed`, { cohort: size, threshold: this.opts.threshold });
    }
  }

  /** The stage-1 request for `nodeId` ∈ U0. */
  advertiseRequest(nodeId: string): AdvertiseKeysRequest {
    const neighbours = this.opts.graph.get(nodeId);
    if (!neighbours) throw protocolError(`${nodeId} is not in the cohort`);
    return { neighbours, threshold: this.opts.thresholds.get(nodeId)!, bits: this.opts.bits, dims: this.opts.dims };
  }

  /** @throws FedmqError FEDMQ_SECAGG_PROTOCOL on a node outside U0, a second answer, keys of the wrong length or repeating another node's */
  onAdvertise(nodeId: string, reply: AdvertiseKeysReply): void {
    this.expect('advertise-keys', nodeId, this.u0);
    if (this.keys.has(nodeId)) throw protocolError(`${nodeId} advertised keys twice`, { nodeId });
    if (reply.encPublicKey.length !== KEY_BYTES || reply.maskPublicKey.length !== KEY_BYTES) throw protocolError(`keys of ${nodeId} are not ${KEY_BYTES} bytes`, { nodeId });
    // all keys distinct (Bonawitz et al. Fig. 4, round 1): a copied key would make the round fail at every neighbour, so it is refused here, for this node only
    const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
    const mine = [hex(reply.encPublicKey), hex(reply.maskPublicKey)];
    if (mine[0] === mine[1] || mine.some((k) => this.seenKeys.has(k))) throw protocolError(`keys of ${nodeId} repeat a key already advertised`, { nodeId });
    for (const k of mine) this.seenKeys.add(k);
    this.keys.set(nodeId, { encPublicKey: reply.encPublicKey.slice(), maskPublicKey: reply.maskPublicKey.slice() });
  }

  /** Ends stage 1: U1 = the nodes that advertised. @throws FedmqError FEDMQ_SECAGG_ABORT when |U1| < t */
  closeAdvertise(): string[] {
    if (this.stage !== 'advertise-keys') throw protocolError(`closing advertise-keys during ${this.stage}`);
    this.u1 = new Set(this.keys.keys());
    this.stage = 'share-keys';
    this.abortBelow(this.u1.size, 'advertised keys');
    return [...this.u1].sort();
  }

  /** The stage-2 request for `nodeId` ∈ U1: its neighbours in U1 and their keys. */
  shareKeysRequest(nodeId: string): ShareKeysRequest {
    if (!this.u1.has(nodeId)) throw protocolError(`${nodeId} is not in U1`);
    const peers: PeerKeys[] = this.opts.graph.get(nodeId)!.filter((j) => this.u1.has(j)).map((j) => ({ nodeId: j, ...this.keys.get(j)! }));
    return { peers };
  }

  /**
   * Takes a node's sealed shares: one per neighbour in U1, each from it.
   * @throws FedmqError FEDMQ_SECAGG_PROTOCOL on a node outside U1, a second answer, a share from another sender, to a non-neighbour, twice to one, or missing one
   */
  onShareKeys(nodeId: string, reply: ShareKeysReply): void {
    this.expect('share-keys', nodeId, this.u1);
    if (this.shared.has(nodeId)) throw protocolError(`${nodeId} shared keys twice`, { nodeId });
    const want = new Set(this.opts.graph.get(nodeId)!.filter((j) => this.u1.has(j)));
    const got = new Set<string>();
    for (const s of reply.shares) {
      if (s.from !== nodeId) throw protocolError(`${nodeId} sent a share as ${s.from}`, { nodeId });
      if (!want.has(s.to)) throw protocolError(`${nodeId} sent a share to ${s.to}, not a neighbour in U1`, { nodeId });
      if (got.has(s.to)) throw protocolError(`${nodeId} sent two shares to ${s.to}`, { nodeId });
      got.add(s.to);
    }
    if (got.size !== want.size) throw protocolError(`${nodeId} sent ${got.size} shares for ${want.size} neighbours`, { nodeId });
    for (const s of reply.shares) {
      let box = this.mailbox.get(s.to);
      if (!box) this.mailbox.set(s.to, (box = new Map()));
      box.set(nodeId, s.ciphertext.slice());
    }
    this.shared.add(nodeId);
  }

  /** Ends stage 2: U2 = the nodes that sent their shares. @throws FedmqError FEDMQ_SECAGG_ABORT when |U2| < t */
  closeShareKeys(): string[] {
    if (this.stage !== 'share-keys') throw protocolError(`closing share-keys during ${this.stage}`);
    this.u2 = new Set(this.shared);
    // shares from nodes outside U2 do not exist; drop the mail of nodes outside U2
    for (const id of [...this.mailbox.keys()]) if (!this.u2.has(id)) this.mailbox.delete(id);
    this.stage = 'masked-input';
    this.abortBelow(this.u2.size, 'shared keys');
    return [...this.u2].sort();
  }

  /** The stage-3 request for `nodeId` ∈ U2: the ciphertexts addressed to it by U2. */
  maskedInputRequest(nodeId: string): MaskedInputRequest {
    if (!this.u2.has(nodeId)) throw protocolError(`${nodeId} is not in U2`);
    const shares: SealedShare[] = [...(this.mailbox.get(nodeId) ?? new Map<string, Uint8Array>())].sort(([a], [b]) => (a < b ? -1 : 1)).map(([from, ciphertext]) => ({ from, to: nodeId, ciphertext }));
    return { shares };
  }

  /**
   * Folds a masked input into the running sum (it is not kept).
   * @throws FedmqError FEDMQ_SECAGG_PROTOCOL on a node outside U2 or a second input; FEDMQ_SECAGG_RANGE on a wrong length or a word ≥ 2^b
   */
  onMaskedInput(nodeId: string, y: Uint32Array): void {
    this.expect('masked-input', nodeId, this.u2);
    if (this.masked.has(nodeId)) throw protocolError(`${nodeId} sent its masked input twice`, { nodeId });
    if (y.length !== this.opts.dims) throw new FedmqError(ErrorCodes.SECAGG_RANGE, `${nodeId}'s masked input has ${y.length} words, the round ${this.opts.dims}`, { nodeId });
    const bits = this.opts.bits;
    const limit = 2 ** bits;
    for (let i = 0; i < y.length; i++) if (y[i] >= limit) throw new FedmqError(ErrorCodes.SECAGG_RANGE, `${nodeId}'s masked word ${i} is ≥ 2^${bits}`, { nodeId });
    const mask = bits === 32 ? 0xffff_ffff : limit - 1;
    const s = this.sum;
    for (let i = 0; i < y.length; i++) s[i] = ((s[i] + y[i]) >>> 0) & mask;
    this.masked.add(nodeId);
  }

  /** Ends stage 3: U3 = the nodes whose masked input is in the sum. @throws FedmqError FEDMQ_SECAGG_ABORT when |U3| < t */
  closeMaskedInput(): string[] {
    if (this.stage !== 'masked-input') throw protocolError(`closing masked-input during ${this.stage}`);
    this.u3 = new Set(this.masked);
    this.stage = 'unmask';
    this.abortBelow(this.u3.size, 'sent masked inputs');
    return [...this.u3].sort();
  }

  /** The stage-4 request for `nodeId` ∈ U3: its U2 neighbours, split into survivors (U3) and dropped (U2 \ U3). */
  unmaskRequest(nodeId: string): UnmaskRequest {
    if (!this.u3.has(nodeId)) throw protocolError(`${nodeId} is not in U3`);
    const held = [...(this.mailbox.get(nodeId)?.keys() ?? [])].sort();
    const req = { survivors: held.filter((j) => this.u3.has(j)), dropped: held.filter((j) => !this.u3.has(j)) };
    this.sentUnmask.set(nodeId, req);
    return req;
  }

  /**
   * Takes a node's shares: exactly the ones its unmask request asked for.
   * @throws FedmqError FEDMQ_SECAGG_PROTOCOL on a node outside U3 or not asked, a second answer, or shares other than the ones asked for or of the wrong length
   */
  onUnmask(nodeId: string, reply: UnmaskReply): void {
    this.expect('unmask', nodeId, this.u3);
    if (this.unmasked.has(nodeId)) throw protocolError(`${nodeId} sent its unmask shares twice`, { nodeId });
    const req = this.sentUnmask.get(nodeId);
    if (!req) throw protocolError(`${nodeId} answered an unmask request it was not sent`, { nodeId });
    const same = (got: { of: string; share: Uint8Array }[], want: string[]) =>
      got.length === want.length && got.every((s, i) => s.of === want[i] && s.share.length === SHARE_BYTES);
    if (!same(reply.selfMaskShares, req.survivors) || !same(reply.maskKeyShares, req.dropped)) {
      throw protocolError(`${nodeId}'s unmask shares are not the ones asked for`, { nodeId });
    }
    for (const s of reply.selfMaskShares) push(this.selfMaskShares, s.of, s.share.slice());
    for (const s of reply.maskKeyShares) push(this.maskKeyShares, s.of, s.share.slice());
    this.unmasked.add(nodeId);
  }

  /**
   * Ends stage 4 and unmasks: rebuilds b_u for every u ∈ U3 and removes PRG(b_u); rebuilds s_sk_d
   * for every dropped d ∈ U2 \ U3 (checked against d's advertised s_pk) and removes the pairwise
   * masks its U3 neighbours added for it.
   * @throws FedmqError FEDMQ_SECAGG_ABORT when |U4| < t or a secret has fewer than its t_i shares; FEDMQ_SECAGG_AUTH when a rebuilt key does not match its public key
   */
  async finish(): Promise<SecAggResult> {
    if (this.stage !== 'unmask') throw protocolError(`finishing during ${this.stage}`);
    try {
      this.abortBelow(this.unmasked.size, 'sent unmask shares');
      const { bits } = this.opts;
      const sum = this.sum;
      for (const u of [...this.u3].sort()) {
        const b = await combineShares(this.selfMaskShares.get(u) ?? [], this.opts.thresholds.get(u)!, `the self-mask seed of ${u}`);
        addPrg(sum, b, -1, bits);
      }
      const recovered = [...this.u2].filter((d) => !this.u3.has(d)).sort();
      for (const d of recovered) {
        const sk = await combineShares(this.maskKeyShares.get(d) ?? [], this.opts.thresholds.get(d)!, `the mask key of ${d}`);
        const pk = this.keys.get(d)!.maskPublicKey;
        const rebuilt = publicKeyOf(sk);
        if (rebuilt.some((x, i) => x !== pk[i])) throw new FedmqError(ErrorCodes.SECAGG_AUTH, `the shares of ${d}'s mask key rebuild another key`, { nodeId: d });
        for (const j of this.opts.graph.get(d)!) {
          if (!this.u3.has(j) || !this.mailbox.get(j)?.has(d)) continue; // j masked with d iff j received d's shares
          const s = deriveKey('mask', this.opts.ctx, d, j, sk, this.keys.get(j)!.maskPublicKey);
          addPrg(sum, s, j < d ? -1 : 1, bits); // j added +PRG(s_jd) when j < d
        }
        sk.fill(0);
      }
      this.stage = 'done';
      return { sum, survivors: [...this.u3].sort(), recovered, cohorts: this.cohorts() };
    } catch (err) {
      this.stage = 'aborted';
      throw err;
    }
  }

  /** Cohorts so far: U1..U4 sizes (0 for stages not closed). */
  cohorts(): [number, number, number, number] {
    return [this.u1.size, this.u2.size, this.u3.size, this.unmasked.size];
  }
}

function push(m: Map<string, Uint8Array[]>, k: string, v: Uint8Array): void {
  const a = m.get(k);
  if (a) a.push(v);
  else m.set(k, [v]);
}

