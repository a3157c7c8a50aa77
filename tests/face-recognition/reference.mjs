// Reference embeddings for tests/test_face_recognition.c, computed by the npm
// package the shipped weights come from (@vladmandic/face-api), with its own
// JavaScript network code, so the engine is compared with an implementation
// it shares nothing with.
//
// Rerun (needs the npm registry once; node_modules is never committed):
//   cd tests/face-recognition && npm install && node reference.mjs
// It rewrites ../data/faces/face-api-embeddings.txt: one line per PNG chip in
// ../data/faces (sorted by name): the file name, then the 128 descriptor
// values, then prints the pairwise distances.
//
// Backend: TensorFlow.js's pure-JavaScript "cpu" backend (float32). The
// native @tensorflow/tfjs-node would download libtensorflow at install time,
// which an offline machine cannot do; face-api's node-wasm build only needs
// @tensorflow/tfjs (+ the wasm backend package, which it imports but which
// is not used here).
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const tf = require('@tensorflow/tfjs');
const faceapi = require('@vladmandic/face-api/dist/face-api.node-wasm.js');
const { PNG } = require('pngjs');

const here = path.dirname(fileURLToPath(import.meta.url));
const facesDir = path.join(here, '..', 'data', 'faces');
const outputPath = path.join(facesDir, 'face-api-embeddings.txt');
const packageDir = path.dirname(require.resolve('@vladmandic/face-api/package.json'));
const packageVersion = JSON.parse(fs.readFileSync(path.join(packageDir, 'package.json'))).version;

// A 150x150 chip as face-api receives an image: [h, w, 3] integer RGB.
function readChip(file) {
  const png = PNG.sync.read(fs.readFileSync(file));
  if (png.width !== 150 || png.height !== 150) throw new Error(`${file}: not 150x150`);
  const rgb = new Int32Array(png.width * png.height * 3);
  for (let i = 0; i < png.width * png.height; i++) {
    for (let c = 0; c < 3; c++) rgb[3 * i + c] = png.data[4 * i + c];
  }
  return tf.tensor3d(rgb, [png.height, png.width, 3], 'int32');
}

async function main() {
  await tf.setBackend('cpu');
  await tf.ready();
  await faceapi.nets.faceRecognitionNet.loadFromDisk(path.join(packageDir, 'model'));

  const names = fs.readdirSync(facesDir).filter((f) => f.endsWith('.png')).sort();
  const lines = [
    `# face-api ${packageVersion} FaceRecognitionNet.computeFaceDescriptor, TensorFlow.js ` +
      `${tf.version.tfjs} backend ${tf.getBackend()}; written by tests/face-recognition/reference.mjs`,
  ];
  const descriptors = [];
  for (const name of names) {
    const chip = readChip(path.join(facesDir, name));
    const descriptor = await faceapi.nets.faceRecognitionNet.computeFaceDescriptor(chip);
    chip.dispose();
    descriptors.push(descriptor);
    lines.push([name, ...Array.from(descriptor, (v) => v.toPrecision(9))].join(' '));
  }
  fs.writeFileSync(outputPath, `${lines.join('\n')}\n`);
  console.log(`wrote ${outputPath} (${names.length} chips)`);

  for (let i = 0; i < names.length; i++) {
    for (let j = i + 1; j < names.length; j++) {
      const d = faceapi.euclideanDistance(descriptors[i], descriptors[j]);
      console.log(`${d.toFixed(4)}  ${names[i]}  ${names[j]}`);
    }
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
