/**
 * Chunked-transfer fuzz (docs/chunking.md): wraps the update payloads of {@link PayloadFuzzer}
 * (none of which the coordinator could accept) in chunks, valid and not: single chunks, complete
 * multi-chunk transfers (shuffled, with duplicates), transfers missing a chunk, wrong sha256,
 * chunks that disagree on count/total/sha256, fields of the wrong type or range, byte-level
 * mutations, and raw non-chunk payloads.
 *
 * Transfers stay small (a few KiB), except first chunks announcing up to 256 MiB on node ids that
 * are not real ones (`huge-announce`: those used to exhaust the coordinator's shared reassembly
 * budget, coordinator/src/chunk-budget.test.ts). On a real node's topic, where only that node may
 * publish once ACLs are on, a transfer of several chunks would supersede the node's own update (one
 * pending transfer per node): those cases are sent on made-up node ids instead (see the end of
 * `next`).
 */
import { decodeChunk, packMessage, splitPayload, CHUNK_OVERHEAD_BYTES, type Chunk } from '@fedmq/protocol';
import { unpackMessage } from '@fedmq/protocol';
import { mutateBytes, type Rand } from './rand.ts';
import { topicOf, type Fuzzed, type PayloadFuzzer } from './payloads.ts';

/** One fuzz case: the payloads to publish in order on one topic. */
export interface ChunkCase {
  kind: string;
  topic: string;
  nodeId: string;
  payloads: Buffer[];
}

function transferId(r: Rand): string {
  return r.str(32, '0123456789abcdef');
}

function repack(chunk: Buffer, patch: Partial<Record<keyof Chunk, unknown>>): Buffer {
  return packMessage({ ...(unpackMessage(chunk) as object), ...patch });
}

/** Chunk fuzz cases built around the update payloads of `payloads`. */
export class ChunkFuzzer {
  constructor(private readonly r: Rand, private readonly payloads: PayloadFuzzer, private readonly job: string, private readonly realNodeIds: readonly string[]) {}

  /** The next case: an update-topic payload of the payload fuzzer, chunked one way or another. */
  next(): ChunkCase {
    const r = this.r;
    const f: Fuzzed = this.payloads.next({ update: 1 });
    const inner = f.payload.length > 64 * 1024 ? f.payload.subarray(0, r.range(1, 64 * 1024)) : f.payload; // transfers stay small
    const max = CHUNK_OVERHEAD_BYTES + r.range(16, 2048);
    const split = () => splitPayload(inner, max, transferId(r));
    const kind = r.weighted<string>([
      ['raw', 25], ['single', 15], ['complete', 20], ['shuffled-dup', 8], ['incomplete', 4], ['bad-sha', 6], ['inconsistent', 6],
      ['wrong-field', 8], ['mutated', 8], ['huge-announce', 3],
    ]);
    let payloads: Buffer[];
    switch (kind) {
      case 'raw':
        payloads = [f.payload];
        break;
      case 'single':
        payloads = splitPayload(inner, inner.length + CHUNK_OVERHEAD_BYTES + 1, transferId(r));
        break;
      case 'complete':
        payloads = split();
        break;
      case 'shuffled-dup': {
        const c = split();
        payloads = [...c, ...c.filter(() => r.chance(0.3))];
        for (let i = payloads.length - 1; i > 0; i--) {
          const j = r.int(i + 1);
          [payloads[i], payloads[j]] = [payloads[j], payloads[i]];
        }
        break;
      }
      case 'incomplete': {
        const c = split();
        payloads = c.length > 1 ? c.filter((_, i) => i !== r.int(c.length)) : c;
        break;
      }
      case 'bad-sha': {
        const sha = r.str(64, '0123456789abcdef');
        payloads = split().map((c) => repack(c, { sha256: sha }));
        break;
      }
      case 'inconsistent': {
        const c = split();
        const i = r.int(c.length);
        const field = r.pick(['count', 'total', 'sha256'] as const);
        const x = unpackMessage(c[i]) as Chunk;
        c[i] = repack(c[i], { [field]: field === 'sha256' ? r.str(64, '0123456789abcdef') : (x[field] as number) + r.range(1, 3) });
        payloads = c;
        break;
      }
      case 'wrong-field': {
        const c = split();
        const i = r.int(c.length);
        const x = unpackMessage(c[i]) as Chunk;
        const [field, value] = r.pick<[string, unknown]>([
          ['v', r.pick([0, 1, 3, '2', null])], ['transfer', r.pick(['', 'XYZ', 'a'.repeat(31), 42])], ['index', r.pick([-1, x.count, 2 ** 53, 0.5, '0'])],
          ['count', r.pick([0, -1, 2 ** 40, null])], ['total', r.pick([-1, 2 ** 53, 0.5, x.total + 1])], ['sha256', r.pick(['', 'A'.repeat(64), 7])],
          ['data', r.pick(['text', new Uint8Array(0), new Uint8Array(x.data.length + 1), [1, 2]])], ['extra', 1],
        ]);
        c[i] = field === 'extra' ? repack(c[i], { [r.str(5)]: value } as Partial<Record<keyof Chunk, unknown>>) : repack(c[i], { [field]: value });
        payloads = c;
        break;
      }
      case 'huge-announce': {
        // the first 1 KiB chunk of a transfer announcing up to 256 MiB, never completed, on a node id
        // that is not a real node's (on a real one it would reserve the budget the others need)
        // sizes from 256 MiB down to 256 KiB, so that together they can fill any budget to the last MiB
        const total = r.weighted([[256, 3], [64, 2], [16, 2], [4, 2], [1, 2], [0.25, 2]] as const) * 2 ** 20;
        const count = Math.ceil(total / 1024);
        payloads = [packMessage({ v: 2, transfer: transferId(r), index: 0, count, total, sha256: r.str(64, '0123456789abcdef'), data: new Uint8Array(1024) })];
        if (this.realNodeIds.includes(f.nodeId)) {
          const nodeId = `ghost-big-${r.str(6)}`;
          return { kind: `chunk/${kind}`, topic: topicOf(this.job, nodeId, 'update'), nodeId, payloads };
        }
        break;
      }
      default: {
        const c = split();
        const i = r.int(c.length);
        c[i] = mutateBytes(r, c[i], 4).bytes;
        payloads = c;
      }
    }
    // On a real node's topic a chunk that would open a transfer of several chunks supersedes the
    // node's own pending update (the coordinator holds one transfer per node, docs/protocol.md
    // "Chunked updates"): that is spoofing, which only authentication and the ACL prevent, and it
    // would lose the real update. Such cases go to a node id that is not a real one; the rest
    // (one-chunk transfers, chunks that do not decode) stay on the real topic.
    if (this.realNodeIds.includes(f.nodeId) && payloads.some(opensTransfer)) {
      const nodeId = `ghost-chunk-${r.str(6)}`;
      return { kind: `chunk/${kind}`, topic: topicOf(this.job, nodeId, 'update'), nodeId, payloads };
    }
    return { kind: `chunk/${kind}`, topic: f.topic, nodeId: f.nodeId, payloads };
  }
}

/** Whether a payload decodes as a chunk of a transfer of more than one chunk (it would be held pending). */
function opensTransfer(payload: Buffer): boolean {
  try {
    return decodeChunk(payload).count > 1;
  } catch {
    return false;
  }
}
