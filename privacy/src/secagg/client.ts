import { ErrorCodes, FedmqError, ID_PATTERN } from '@fedmq/protocol';
import {
  KEY_BYTES, MAX_MODULUS_BITS, deriveKey, generateKeyPair, open, randomSeed, seal, shareAad, addPrg, type KeyPair, type SecAggContext,
} from './primitives.ts';
import { SHARE_BYTES, splitSecret } from './shamir.ts';
import { MAX_NEIGHBOURS } from './graph.ts';
import type {
  AdvertiseKeysReply, AdvertiseKeysRequest, HeldShare, MaskedInputRequest, PeerKeys, SealedShare, ShareKeysReply, ShareKeysRequest, UnmaskReply, UnmaskRequest,
} from './messages.ts';

const protocolError = (msg: string, details: Record<string, unknown> = {}) => new FedmqError(ErrorCodes.SECAGG_PROTOCOL, msg, details);

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

/**
 * One node's side of one round of SecAgg (Bonawitz et al. 2017, "Practical Secure Aggregation for
 * Privacy-Preserving Machine Learning", CCS, Fig. 4, the honest-but-curious protocol) on the
 * SecAgg+ graph (Bell et al. 2020): it masks with its neighbours only. Stages must come in order,
 * each once; anything else is refused with a coded error and changes nothing:
 *
 * 1. {@link advertise}: fresh key pairs (c for share encryption, s for masks);
 * 2. {@link shareKeys}: Shamir-shares its self-mask seed b and its mask secret key s_sk, t_i of
 *    |N(i) ∩ U1|, each pair of shares sealed to one neighbour (ChaCha20-Poly1305, key from
 *    X25519(c_sk, c_pk_j) through HKDF, associated data naming job, run, round, stage, sender and receiver);
 * 3. {@link maskInput}: opens the shares it received (their senders are U2 ∩ N(i)) and returns
 *    y = x + PRG(b) + Σ_{j ∈ U2 ∩ N(i)} ±PRG(s_ij) mod 2^b, + when i < j, − when i > j;
 * 4. {@link unmask}: for each neighbour the coordinator names, either its b share (it survived)
 *    or its s_sk share (it dropped), never both, once per round.
 *
 * Secrets live only in this object (memory), for one round.
 */
export class SecAggClient {
  private stage: 'new' | 'advertised' | 'shared' | 'masked' | 'done' = 'new';
  private request?: AdvertiseKeysRequest;
  private neighbours = new Set<string>();
  private encKeys?: KeyPair;
  private maskKeys?: KeyPair;
  private peers = new Map<string, PeerKeys>();
  /** Share-encryption key c_ij per U1 neighbour. */
  private encKeyOf = new Map<string, Uint8Array>();
  private selfMaskSeed?: Uint8Array;
  /** Shares held of each U2 neighbour: [b share, s_sk share]. */
  private held = new Map<string, [Uint8Array, Uint8Array]>();

  constructor(readonly nodeId: string, readonly ctx: SecAggContext) {
    if (!ID_PATTERN.test(nodeId)) throw protocolError(`bad node id ${JSON.stringify(nodeId)}`);
  }

  /** The request of stage 1, once it was accepted. */
  get params(): AdvertiseKeysRequest | undefined {
    return this.request;
  }

  /**
   * Stage 1 (advertise keys).
   * @throws FedmqError FEDMQ_SECAGG_PROTOCOL out of order or on a malformed request (repeated or bad ids, itself among its neighbours); FEDMQ_SECAGG_RANGE on a threshold, bits or dims out of range
   */
  advertise(req: AdvertiseKeysRequest): AdvertiseKeysReply {
    if (this.stage !== 'new') throw protocolError(`advertise-keys after ${this.stage}`);
    const nb = new Set(req.neighbours);
    if (nb.size !== req.neighbours.length) throw protocolError('advertise-keys names a neighbour twice');
    for (const id of nb) if (!ID_PATTERN.test(id)) throw protocolError(`bad neighbour id ${JSON.stringify(id)}`);
    if (nb.has(this.nodeId)) throw protocolError('advertise-keys names the node among its own neighbours');
    if (nb.size > MAX_NEIGHBOURS) throw new FedmqError(ErrorCodes.SECAGG_RANGE, `at most ${MAX_NEIGHBOURS} neighbours, got ${nb.size}`);
    if (!(Number.isInteger(req.threshold) && req.threshold >= 2 && req.threshold <= nb.size)) {
      throw new FedmqError(ErrorCodes.SECAGG_RANGE, `threshold ${req.threshold} for ${nb.size} neighbours (2 ≤ t ≤ k)`);
    }
    if (!(Number.isInteger(req.bits) && req.bits >= 1 && req.bits <= MAX_MODULUS_BITS)) throw new FedmqError(ErrorCodes.SECAGG_RANGE, `modulus bits ${req.bits} (1–${MAX_MODULUS_BITS})`);
    if (!(Number.isInteger(req.dims) && req.dims >= 1)) throw new FedmqError(ErrorCodes.SECAGG_RANGE, `vector length ${req.dims}`);
    this.request = { ...req, neighbours: [...req.neighbours] };
    this.neighbours = nb;
    this.encKeys = generateKeyPair();
    this.maskKeys = generateKeyPair();
    this.stage = 'advertised';
    return { encPublicKey: this.encKeys.publicKey, maskPublicKey: this.maskKeys.publicKey };
  }

  /**
   * Stage 2 (share keys).
   * @throws FedmqError FEDMQ_SECAGG_PROTOCOL out of order, on a peer that is not a neighbour or comes twice, or keys of the wrong length or equal to another's;
   *   FEDMQ_SECAGG_ABORT when fewer than t_i neighbours are in U1 (nothing is shared)
   */
  async shareKeys(req: ShareKeysRequest): Promise<ShareKeysReply> {
    if (this.stage !== 'advertised') throw protocolError(`share-keys after ${this.stage}`);
    const r = this.request!;
    const peers = new Map<string, PeerKeys>();
    const seen: Uint8Array[] = [this.encKeys!.publicKey, this.maskKeys!.publicKey];
    for (const p of req.peers) {
      if (!this.neighbours.has(p.nodeId)) throw protocolError(`share-keys names ${p.nodeId}, not a neighbour`, { peer: p.nodeId });
      if (peers.has(p.nodeId)) throw protocolError(`share-keys names ${p.nodeId} twice`, { peer: p.nodeId });
      if (p.encPublicKey.length !== KEY_BYTES || p.maskPublicKey.length !== KEY_BYTES) throw protocolError(`keys of ${p.nodeId} are not ${KEY_BYTES} bytes`, { peer: p.nodeId });
      // Bonawitz et al. Fig. 4, round 1: all keys distinct (a replayed key would make two pairs share masks)
      for (const k of [p.encPublicKey, p.maskPublicKey]) {
        if (seen.some((s) => equalBytes(s, k))) throw protocolError(`a key of ${p.nodeId} repeats another key`, { peer: p.nodeId });
        seen.push(k);
      }
      peers.set(p.nodeId, p);
    }
    if (peers.size < r.threshold) throw new FedmqError(ErrorCodes.SECAGG_ABORT, `${peers.size} neighbours advertised keys; the threshold is ${r.threshold}`, { have: peers.size, threshold: r.threshold });
    // derive every key before drawing secrets: a bad peer key (low-order point) is refused with nothing shared
    const ids = [...peers.keys()].sort();
    const encKeys = ids.map((j) => deriveKey('enc', this.ctx, this.nodeId, j, this.encKeys!.secretKey, peers.get(j)!.encPublicKey));
    const b = randomSeed();
    const [bShares, sShares] = await Promise.all([splitSecret(b, ids.length, r.threshold), splitSecret(this.maskKeys!.secretKey, ids.length, r.threshold)]);
    const shares: SealedShare[] = ids.map((j, n) => {
      const pt = new Uint8Array(2 * SHARE_BYTES);
      pt.set(bShares[n], 0);
      pt.set(sShares[n], SHARE_BYTES);
      return { from: this.nodeId, to: j, ciphertext: seal(encKeys[n], pt, shareAad(this.ctx, this.nodeId, j)) };
    });
    this.peers = peers;
    this.encKeyOf = new Map(ids.map((j, n) => [j, encKeys[n]]));
    this.selfMaskSeed = b;
    this.stage = 'shared';
    return { shares };
  }

  /**
   * Stage 3 (masked input): `input` holds d words < 2^b (quantized levels, or distributed-DP values mod 2^b).
   * @throws FedmqError FEDMQ_SECAGG_PROTOCOL out of order, on a share not addressed to this node, from a node not in U1 ∩ N(i), or twice;
   *   FEDMQ_SECAGG_AUTH on a ciphertext that does not open (wrong key, sender, receiver, round, or tampered);
   *   FEDMQ_SECAGG_ABORT when fewer than t_i neighbours sent shares; FEDMQ_SECAGG_RANGE on an input of the wrong length or a word ≥ 2^b
   */
  maskInput(req: MaskedInputRequest, input: Uint32Array): Uint32Array {
    if (this.stage !== 'shared') throw protocolError(`masked-input after ${this.stage}`);
    const r = this.request!;
    if (input.length !== r.dims) throw new FedmqError(ErrorCodes.SECAGG_RANGE, `the input has ${input.length} words, the round ${r.dims}`);
    const limit = 2 ** r.bits;
    for (let i = 0; i < input.length; i++) if (input[i] >= limit) throw new FedmqError(ErrorCodes.SECAGG_RANGE, `input word ${i} is ${input[i]} ≥ 2^${r.bits}`);
    const held = new Map<string, [Uint8Array, Uint8Array]>();
    for (const s of req.shares) {
      if (s.to !== this.nodeId) throw protocolError(`a share addressed to ${s.to} reached ${this.nodeId}`);
      const peer = this.peers.get(s.from);
      if (!peer) throw protocolError(`a share from ${s.from}, not a neighbour that advertised keys`, { peer: s.from });
      if (held.has(s.from)) throw protocolError(`two shares from ${s.from}`, { peer: s.from });
      const pt = open(this.encKeyOf.get(s.from)!, s.ciphertext, shareAad(this.ctx, s.from, this.nodeId));
      if (pt.length !== 2 * SHARE_BYTES) throw protocolError(`the share from ${s.from} is ${pt.length} bytes, not ${2 * SHARE_BYTES}`);
      held.set(s.from, [pt.slice(0, SHARE_BYTES), pt.slice(SHARE_BYTES)]);
    }
    if (held.size < r.threshold) throw new FedmqError(ErrorCodes.SECAGG_ABORT, `${held.size} neighbours sent shares; the threshold is ${r.threshold}`, { have: held.size, threshold: r.threshold });
    const y = input.slice();
    addPrg(y, this.selfMaskSeed!, 1, r.bits);
    for (const j of held.keys()) {
      const s = deriveKey('mask', this.ctx, this.nodeId, j, this.maskKeys!.secretKey, this.peers.get(j)!.maskPublicKey);
      addPrg(y, s, this.nodeId < j ? 1 : -1, r.bits);
    }
    this.held = held;
    this.stage = 'masked';
    return y;
  }

  /**
   * Stage 4 (unmask): the coordinator's survivors and dropped must split this node's U2 neighbours
   * exactly; then the b shares of the survivors and the s_sk shares of the dropped go back. Answered
   * once; the node's secrets are forgotten afterwards.
   * @throws FedmqError FEDMQ_SECAGG_PROTOCOL out of order or a second time, on a node in both lists, a node not among the U2 neighbours, or one left out;
   *   FEDMQ_SECAGG_ABORT when fewer than t_i − 1 neighbours survived (with the node itself, below t_i: the round cannot end and nothing is revealed)
   */
  unmask(req: UnmaskRequest): UnmaskReply {
    if (this.stage !== 'masked') throw protocolError(`unmask after ${this.stage}`);
    const r = this.request!;
    const survivors = new Set(req.survivors);
    const dropped = new Set(req.dropped);
    if (survivors.size !== req.survivors.length || dropped.size !== req.dropped.length) throw protocolError('unmask names a node twice');
    for (const id of survivors) if (dropped.has(id)) throw protocolError(`unmask names ${id} as survivor and as dropped`, { peer: id });
    for (const id of [...survivors, ...dropped]) if (!this.held.has(id)) throw protocolError(`unmask names ${id}, whose shares this node does not hold`, { peer: id });
    if (survivors.size + dropped.size !== this.held.size) throw protocolError(`unmask leaves out ${this.held.size - survivors.size - dropped.size} of the node's neighbours`);
    if (survivors.size + 1 < r.threshold) throw new FedmqError(ErrorCodes.SECAGG_ABORT, `${survivors.size} neighbours survived; with this node below the threshold ${r.threshold}`);
    const selfMaskShares: HeldShare[] = [...survivors].sort().map((of) => ({ of, share: this.held.get(of)![0] }));
    const maskKeyShares: HeldShare[] = [...dropped].sort().map((of) => ({ of, share: this.held.get(of)![1] }));
    this.stage = 'done';
    this.forget();
    return { selfMaskShares, maskKeyShares };
  }

  /** Abandons the round (abort, deadline): secrets are wiped from this object. */
  forget(): void {
    for (const k of [this.encKeys?.secretKey, this.maskKeys?.secretKey, this.selfMaskSeed, ...this.encKeyOf.values()]) k?.fill(0);
    this.held.clear();
    this.encKeyOf.clear();
    if (this.stage !== 'done') this.stage = 'done';
  }
}
