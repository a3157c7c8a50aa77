// Reference age and gender outputs for the engine's port of face-api's
// AgeGenderNet, computed by the npm package the shipped weights come from
// (@vladmandic/face-api), with its own JavaScript network code, so the
// engine is compared with an implementation it shares nothing with.
//
// Rerun (needs the npm registry once; node_modules is never committed):
//   cd tests/face-age-gender && npm install && node reference.mjs
// (or install anywhere and run with NODE_PATH=that/node_modules). It rewrites
// ../data/faces/face-api-age-gender.txt: for each PNG chip in ../data/faces
// (sorted by name), two lines, one per input mode:
//  - crop: the chip's exact 112x112 centre (rows and columns 19..130), which
//    toBatchTensor(112) passes through untouched (already square, already
//    112: no padding, no resizing), so the network itself is compared to
//    float precision;
//  - chip: the whole 150x150 chip, resized to 112x112 by face-api itself
//    (NetInput.toBatchTensor(112, true): padToSquare, a no-op for a square
//    chip, then tf.image.resizeBilinear without alignCorners or
//    halfPixelCenters), as predictAgeAndGender() does.
// Each line holds the mode, the file name, the age (years), the two gender
// logits before softmax (AgeGenderNet.runNet; index 0 is male, 1 female) and
// P(male) = softmax(logits)[0], which is predictAgeAndGender's probMale.
// A last line "pooled" gives the first chip's 512 pooled features in crop
// mode: avgPool([7, 7], [2, 2], 'valid') of the TinyXception output, the
// input of the two fully connected layers.
//
// Backend: TensorFlow.js's pure-JavaScript "cpu" backend (float32), as in
// tests/face-recognition/reference.mjs.
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
const outputPath = path.join(facesDir, 'face-api-age-gender.txt');
const packageDir = path.dirname(require.resolve('@vladmandic/face-api/package.json'));
const packageVersion = JSON.parse(fs.readFileSync(path.join(packageDir, 'package.json'))).version;

const CHIP_SIZE = 150;
const INPUT_SIZE = 112; // TinyXception.forwardInput: input.toBatchTensor(112, true)
const CROP_OFFSET = (CHIP_SIZE - INPUT_SIZE) / 2; // 19

// A 150x150 chip as face-api receives an image: [h, w, 3] integer RGB.
function readChip(file) {
  const png = PNG.sync.read(fs.readFileSync(file));
  if (png.width !== CHIP_SIZE || png.height !== CHIP_SIZE) throw new Error(`${file}: not 150x150`);
  const rgb = new Int32Array(png.width * png.height * 3);
  for (let i = 0; i < png.width * png.height; i++) {
    for (let c = 0; c < 3; c++) rgb[3 * i + c] = png.data[4 * i + c];
  }
  return tf.tensor3d(rgb, [png.height, png.width, 3], 'int32');
}

function sameValues(a, b) {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

// age, the two logits and P(male) for one image, by face-api's own runNet
// (the softmax is the one forwardInput applies).
function ageGender(net, image) {
  const input = new faceapi.NetInput([image]);
  const { age, gender } = net.runNet(input);
  const prob = tf.softmax(gender);
  const result = {
    age: age.dataSync()[0],
    logits: Array.from(gender.dataSync()),
    probMale: prob.dataSync()[0],
  };
  [age, gender, prob].forEach((t) => t.dispose());
  return result;
}

async function main() {
  await tf.setBackend('cpu');
  await tf.ready();
  const net = faceapi.nets.ageGenderNet;
  await net.loadFromDisk(path.join(packageDir, 'model'));

  const names = fs.readdirSync(facesDir).filter((f) => f.endsWith('.png')).sort();
  const lines = [
    `# face-api ${packageVersion} AgeGenderNet (runNet, softmax as in forwardInput), TensorFlow.js ` +
      `${tf.version.tfjs} backend ${tf.getBackend()}; written by tests/face-age-gender/reference.mjs`,
    `# crop: rows and columns ${CROP_OFFSET}..${CROP_OFFSET + INPUT_SIZE - 1} of the chip, fed as int32 ` +
      `[${INPUT_SIZE}, ${INPUT_SIZE}, 3] (no resize); chip: the whole ${CHIP_SIZE}x${CHIP_SIZE} chip, ` +
      `resized to ${INPUT_SIZE} by NetInput.toBatchTensor(${INPUT_SIZE}, true)`,
    '# mode file age logit_male logit_female p_male (gender index 0 is male)',
    '# last line: pooled, then the 512 pooled features of the first chip in crop mode',
  ];
  let pooledLine = null;
  for (const name of names) {
    const chip = readChip(path.join(facesDir, name));
    const crop = tf.slice(chip, [CROP_OFFSET, CROP_OFFSET, 0], [INPUT_SIZE, INPUT_SIZE, 3]);

    // The crop must reach the network exactly as it is, only cast to float.
    const batch = new faceapi.NetInput([crop]).toBatchTensor(INPUT_SIZE, true);
    if (!sameValues(batch.dataSync(), crop.dataSync())) throw new Error(`${name}: toBatchTensor changed the crop`);
    batch.dispose();

    const results = { crop: ageGender(net, crop), chip: ageGender(net, chip) };

    // The chip mode is what the public API computes.
    const api = await net.predictAgeAndGender(chip);
    const apiProbMale = api.gender === 'male' ? api.genderProbability : 1 - api.genderProbability;
    if (api.age !== results.chip.age || Math.abs(apiProbMale - results.chip.probMale) > 1e-6) {
      throw new Error(`${name}: predictAgeAndGender disagrees with runNet`);
    }

    for (const mode of ['crop', 'chip']) {
      const r = results[mode];
      lines.push([mode, name, ...[r.age, ...r.logits, r.probMale].map((v) => v.toPrecision(9))].join(' '));
      console.log(`${mode} ${name}: age ${r.age.toFixed(2)}, P(male) ${r.probMale.toFixed(4)}`);
    }

    if (pooledLine === null) {
      const features = net.faceFeatureExtractor.forwardInput(new faceapi.NetInput([crop]));
      const pooled = tf.avgPool(features, [7, 7], [2, 2], 'valid');
      if (pooled.size !== 512) throw new Error(`pooled has ${pooled.size} values`);
      const age = tf.add(tf.matMul(pooled.as2D(1, -1), net.params.fc.age.weights), net.params.fc.age.bias);
      if (age.dataSync()[0] !== results.crop.age) throw new Error('pooled features do not give runNet\'s age');
      pooledLine = ['pooled', ...Array.from(pooled.dataSync(), (v) => v.toPrecision(9))].join(' ');
      [features, pooled, age].forEach((t) => t.dispose());
    }
    [chip, crop].forEach((t) => t.dispose());
  }
  lines.push(pooledLine);
  fs.writeFileSync(outputPath, `${lines.join('\n')}\n`);
  console.log(`wrote ${outputPath} (${names.length} chips)`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
