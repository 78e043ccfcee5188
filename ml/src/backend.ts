/**
 * TensorFlow.js backend selection: tfjs-node (native) when installed, else wasm (SIMD), else cpu.
 *
 * On wasm two kernels are replaced by faster equivalents (see {@link patchWasmKernels}); without
 * them MLP training on wasm is 2–4× slower than it needs to be.
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { FedmqMlError } from './errors.ts';

/** Backends fedmq knows how to use, fastest first. */
export type BackendName = 'tensorflow' | 'wasm' | 'cpu';

let chosen: BackendName | null = null;
let pending: Promise<BackendName> | null = null;
let nodeBindingTried = false;
let nodeBindingLoaded = false;

async function tryLoadTfjsNode(): Promise<boolean> {
  if (nodeBindingTried) return nodeBindingLoaded;
  nodeBindingTried = true;
  // A variable specifier keeps TypeScript and bundlers from resolving the optional dependency.
  const specifier = '@tensorflow/tfjs-node';
  try {
    await import(specifier);
    nodeBindingLoaded = tf.findBackendFactory('tensorflow') != null;
  } catch {
    nodeBindingLoaded = false;
  }
  return nodeBindingLoaded;
}

async function trySet(name: BackendName): Promise<boolean> {
  if (name === 'tensorflow' && !(await tryLoadTfjsNode())) return false;
  try {
    const ok = await tf.setBackend(name);
    if (!ok) return false;
    await tf.ready();
    if (name === 'wasm') patchWasmKernels();
    return tf.getBackend() === name;
  } catch {
    return false;
  }
}

/**
 * Chooses and initialises the TensorFlow.js backend, then returns its name.
 *
 * Without `prefer`: `@tensorflow/tfjs-node` ('tensorflow') if the optional dependency is
 * installed, else `@tensorflow/tfjs-backend-wasm` ('wasm', SIMD when the runtime has it), else
 * 'cpu'. Calls `tf.setBackend` and `tf.ready` before returning. Idempotent: a second call (with
 * no `prefer`, or the same `prefer`) returns the backend already chosen without re-initialising.
 * A call with a different `prefer` switches backend (tensors created before stay on the old one,
 * so switch before creating models).
 *
 * Must be awaited before {@link createModel} or any tensor work.
 *
 * @param prefer force this backend.
 * @throws FedmqMlError `ML_BACKEND_UNAVAILABLE` if `prefer` is given and cannot be initialised,
 *   or if no backend at all can be initialised.
 */
export async function initBackend(prefer?: BackendName): Promise<BackendName> {
  if (pending) await pending.catch(() => undefined);
  if (chosen && (prefer === undefined || prefer === chosen) && tf.getBackend() === chosen) return chosen;
  const run = async (): Promise<BackendName> => {
    const order: BackendName[] = prefer ? [prefer] : ['tensorflow', 'wasm', 'cpu'];
    for (const name of order) {
      if (await trySet(name)) {
        chosen = name;
        return name;
      }
    }
    throw new FedmqMlError(
      'ML_BACKEND_UNAVAILABLE',
      prefer ? `TensorFlow.js backend '${prefer}' is not available here` : 'no TensorFlow.js backend could be initialised',
    );
  };
  pending = run();
  try {
    return await pending;
  } finally {
    pending = null;
  }
}

/**
 * The backend chosen by {@link initBackend}, or `null` before it has completed. Throws nothing.
 */
export function currentBackend(): BackendName | null {
  return chosen;
}

/**
 * Throws unless {@link initBackend} has completed (or the caller set a backend on `tf` itself).
 * @throws FedmqMlError `ML_BACKEND_UNAVAILABLE`.
 */
export function assertBackendReady(): void {
  const engine = tf.engine() as unknown as { backendName: string | null };
  if (chosen == null && engine.backendName == null) {
    throw new FedmqMlError('ML_BACKEND_UNAVAILABLE', 'call `await initBackend()` before creating models or tensors');
  }
}

let wasmPatched = false;

/**
 * Replaces two wasm kernels of tfjs 4.22 with faster equivalents. Idempotent; a no-op unless the
 * wasm backend is registered.
 *
 * - `BatchMatMul` with `transposeA`/`transposeB`: wasm's kernel falls off XNNPACK's fast path for
 *   transposed operands (measured 13–16 ms vs 1.2 ms for a 64×784 · 784×200 product). Every dense
 *   layer's gradient uses transposed products, so `model.fit` suffers. The patch materialises the
 *   transpose with the wasm `Transpose` kernel and calls the original kernel untransposed.
 * - `Slice`: wasm's kernel copies the WHOLE input out of the heap (`readSync`) before slicing, so
 *   slicing a batch out of a 60k-example tensor costs a 188 MB copy. The patch reads a heap view.
 *
 * Both produce bit-identical results to the originals (checked against the cpu backend in tests).
 */
export function patchWasmKernels(): void {
  if (wasmPatched) return;
  const matMul = tf.getKernel('BatchMatMul', 'wasm');
  const transpose = tf.getKernel('Transpose', 'wasm');
  const slice = tf.getKernel('Slice', 'wasm');
  if (!matMul || !transpose || !slice) return;
  wasmPatched = true;

  type Info = tf.TensorInfo;
  type WasmBackend = {
    disposeData(dataId: unknown): boolean;
    makeOutput(shape: number[], dtype: tf.DataType): Info;
    typedArrayFromHeap(t: Info): Float32Array | Int32Array | Uint8Array;
  };
  const swapLast = (rank: number): number[] => {
    const perm = Array.from({ length: rank }, (_, i) => i);
    perm[rank - 2] = rank - 1;
    perm[rank - 1] = rank - 2;
    return perm;
  };

  const origMatMul = matMul.kernelFunc;
  const origTranspose = transpose.kernelFunc;
  tf.unregisterKernel('BatchMatMul', 'wasm');
  tf.registerKernel({
    kernelName: 'BatchMatMul',
    backendName: 'wasm',
    setupFunc: matMul.setupFunc,
    disposeFunc: matMul.disposeFunc,
    kernelFunc: (args) => {
      const { inputs, backend, attrs } = args;
      const a0 = inputs['a'] as Info;
      const b0 = inputs['b'] as Info;
      const at = Boolean(attrs?.['transposeA']);
      const bt = Boolean(attrs?.['transposeB']);
      if (!at && !bt) return origMatMul(args);
      const temps: Info[] = [];
      let a = a0;
      let b = b0;
      if (at) {
        a = origTranspose({ inputs: { x: a0 }, backend, attrs: { perm: swapLast(a0.shape.length) } }) as Info;
        temps.push(a);
      }
      if (bt) {
        b = origTranspose({ inputs: { x: b0 }, backend, attrs: { perm: swapLast(b0.shape.length) } }) as Info;
        temps.push(b);
      }
      try {
        return origMatMul({ inputs: { a, b }, backend, attrs: { ...attrs, transposeA: false, transposeB: false } });
      } finally {
        for (const t of temps) (backend as unknown as WasmBackend).disposeData(t.dataId);
      }
    },
  });

  const origSlice = slice.kernelFunc;
  tf.unregisterKernel('Slice', 'wasm');
  tf.registerKernel({
    kernelName: 'Slice',
    backendName: 'wasm',
    setupFunc: slice.setupFunc,
    disposeFunc: slice.disposeFunc,
    kernelFunc: (args) => {
      const { inputs, backend, attrs } = args;
      const x = inputs['x'] as Info;
      if (x.dtype === 'string') return origSlice(args);
      const [begin, size] = tf.slice_util.parseSliceParams(
        x as unknown as tf.Tensor,
        attrs?.['begin'] as number[],
        attrs?.['size'] as number[],
      );
      if (!tf.slice_util.isSliceContinous(x.shape, begin, size)) return origSlice(args);
      const wb = backend as unknown as WasmBackend;
      const out = wb.makeOutput(size, x.dtype);
      const n = size.reduce((p, d) => p * d, 1);
      if (n === 0) return out;
      const offset = tf.slice_util.computeFlatOffset(begin, tf.util.computeStrides(x.shape));
      const xv = wb.typedArrayFromHeap(x);
      wb.typedArrayFromHeap(out).set(xv.subarray(offset, offset + n));
      return out;
    },
  });
}
