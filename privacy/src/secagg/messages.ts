/**
 * The contents of the four SecAgg(+) stages (docs/protocol.md §12.3), independent of their wire
 * form: the coordinator's request to one node and that node's answer. Keys are raw X25519
 * encodings (32 bytes), ciphertexts are nonce ‖ ChaCha20-Poly1305 output (94 bytes), shares are
 * Shamir shares (33 bytes).
 */

/** Stage 1 request: the node's neighbours N(i), its Shamir threshold t_i, the modulus bits b and the vector length d. */
export interface AdvertiseKeysRequest {
  neighbours: string[];
  threshold: number;
  bits: number;
  dims: number;
}

/** Stage 1 answer: two fresh public keys, for share encryption (c) and for pairwise masks (s). */
export interface AdvertiseKeysReply {
  encPublicKey: Uint8Array;
  maskPublicKey: Uint8Array;
}

/** A neighbour's advertised keys, as the coordinator relays them. */
export interface PeerKeys {
  nodeId: string;
  encPublicKey: Uint8Array;
  maskPublicKey: Uint8Array;
}

/** Stage 2 request: the keys of the node's neighbours in U1. */
export interface ShareKeysRequest {
  peers: PeerKeys[];
}

/** One encrypted share pair, from `from` to `to`. */
export interface SealedShare {
  from: string;
  to: string;
  ciphertext: Uint8Array;
}

/** Stage 2 answer: one ciphertext per neighbour in U1 (its shares of the node's b and s_sk). */
export interface ShareKeysReply {
  shares: SealedShare[];
}

/** Stage 3 request: the ciphertexts addressed to the node by its neighbours in U2. */
export interface MaskedInputRequest {
  shares: SealedShare[];
}

/** Stage 4 request: which of the node's U2 neighbours survived (sent a masked input) and which dropped. */
export interface UnmaskRequest {
  survivors: string[];
  dropped: string[];
}

/** A Shamir share the node holds of a peer's secret. */
export interface HeldShare {
  of: string;
  share: Uint8Array;
}

/** Stage 4 answer: the self-mask shares of the survivors and the mask-key shares of the dropped. */
export interface UnmaskReply {
  selfMaskShares: HeldShare[];
  maskKeyShares: HeldShare[];
}
