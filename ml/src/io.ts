/**
 * Saving and loading TensorFlow.js layers models on the local file system (tfjs' `file://`
 * handler only exists in tfjs-node, which may not be installed).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { FedmqMlError } from './errors.ts';

/** File name of the model topology + weights manifest written by {@link fileSystemHandler}. */
export const MODEL_JSON = 'model.json';
/** File name of the single weights shard written by {@link fileSystemHandler}. */
export const WEIGHTS_BIN = 'weights.bin';

/**
 * A `tf.io.IOHandler` reading/writing the TensorFlow.js layers format in directory `dir`:
 * `dir/model.json` (`modelTopology`, `format: 'layers-model'`, `weightsManifest` with one group
 * whose `paths` is `['weights.bin']`) and `dir/weights.bin` (all weights, little-endian, in
 * manifest order). Same layout as `tensorflowjs_converter` output, so `tf.loadLayersModel` in a
 * browser (with http) or Python's `tensorflowjs` can read it.
 *
 * `save` creates `dir` recursively. `load` throws FedmqMlError `ML_BAD_DATA` if the files are
 * missing or the weights file size disagrees with the manifest.
 */
export function fileSystemHandler(dir: string): tf.io.IOHandler {
  return {
    async save(artifacts: tf.io.ModelArtifacts): Promise<tf.io.SaveResult> {
      mkdirSync(dir, { recursive: true });
      const data = artifacts.weightData === undefined ? new ArrayBuffer(0) : tf.io.CompositeArrayBuffer.join(artifacts.weightData);
      const modelJson: tf.io.ModelJSON = {
        modelTopology: artifacts.modelTopology as tf.io.ModelJSON['modelTopology'],
        format: artifacts.format ?? 'layers-model',
        generatedBy: artifacts.generatedBy ?? `TensorFlow.js tfjs-layers v${tf.version_layers}`,
        convertedBy: artifacts.convertedBy ?? null,
        weightsManifest: [{ paths: [WEIGHTS_BIN], weights: artifacts.weightSpecs ?? [] }],
      };
      if (artifacts.trainingConfig != null) modelJson.trainingConfig = artifacts.trainingConfig;
      if (artifacts.userDefinedMetadata != null) modelJson.userDefinedMetadata = artifacts.userDefinedMetadata;
      const json = JSON.stringify(modelJson);
      writeFileSync(join(dir, WEIGHTS_BIN), new Uint8Array(data));
      writeFileSync(join(dir, MODEL_JSON), json);
      return {
        modelArtifactsInfo: {
          dateSaved: new Date(),
          modelTopologyType: 'JSON',
          modelTopologyBytes: Buffer.byteLength(JSON.stringify(artifacts.modelTopology ?? null)),
          weightSpecsBytes: Buffer.byteLength(JSON.stringify(artifacts.weightSpecs ?? [])),
          weightDataBytes: data.byteLength,
        },
      };
    },
    async load(): Promise<tf.io.ModelArtifacts> {
      let modelJson: tf.io.ModelJSON;
      try {
        modelJson = JSON.parse(readFileSync(join(dir, MODEL_JSON), 'utf8')) as tf.io.ModelJSON;
      } catch (err) {
        throw new FedmqMlError('ML_BAD_DATA', `cannot read ${join(dir, MODEL_JSON)}: ${(err as Error).message}`, { cause: err });
      }
      return tf.io.getModelArtifactsForJSON(modelJson, async (manifest) => {
        const specs: tf.io.WeightsManifestEntry[] = [];
        const buffers: Buffer[] = [];
        for (const group of manifest) {
          specs.push(...group.weights);
          for (const p of group.paths) {
            try {
              buffers.push(readFileSync(join(dir, p)));
            } catch (err) {
              throw new FedmqMlError('ML_BAD_DATA', `cannot read weights ${join(dir, p)}`, { cause: err });
            }
          }
        }
        const all = Buffer.concat(buffers);
        const expected = specs.reduce((s, w) => s + w.shape.reduce((a, b) => a * b, 1) * bytesPer(w.dtype), 0);
        if (all.length !== expected) {
          throw new FedmqMlError('ML_BAD_DATA', `weights are ${all.length} bytes, manifest says ${expected}`);
        }
        const ab = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength) as ArrayBuffer;
        return [specs, ab];
      });
    },
  };
}

function bytesPer(dtype: string): number {
  if (dtype === 'float32' || dtype === 'int32') return 4;
  if (dtype === 'bool' || dtype === 'uint8') return 1;
  if (dtype === 'float16' || dtype === 'int16') return 2;
  throw new FedmqMlError('ML_BAD_DATA', `unsupported weight dtype '${dtype}'`);
}

/**
 * Loads a layers model saved by `FederatedModel.save(dir)` (or any tfjs layers-format
 * directory with a single weights group). The backend must be initialised.
 * @throws FedmqMlError `ML_BAD_DATA` if the files are missing or inconsistent.
 */
export async function loadLayersModelFromDir(dir: string): Promise<tf.LayersModel> {
  return tf.loadLayersModel(fileSystemHandler(dir));
}
