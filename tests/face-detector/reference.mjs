// Reference detections for tests/test_face_detector.c, computed by the npm
// package the shipped weights come from (@vladmandic/face-api), with its own
// JavaScript network, letterboxing, box decoding and non-maximum
// suppression, so the engine is compared with an implementation it shares
// nothing with.
//
// Rerun (needs the npm registry once; node_modules is never committed):
//   cd tests/face-detector && npm install && node reference.mjs
// (or install anywhere and run with NODE_PATH=that/node_modules). It rewrites
// two files in ../data/photos:
//  - face-api-detections.txt: for each photo below, every face
//    detectAllFaces() returns with TinyFaceDetectorOptions({ inputSize: 416,
//    scoreThreshold: 0.3 }), one line each: the photo, the box (x y width
//    height, photo pixels) and the score. The threshold is below face-api's
//    default 0.5 so that the test can tell a box that merely crossed 0.5 in
//    one implementation from a real disagreement; non-maximum suppression
//    keeps the same boxes above 0.5 whatever the threshold below it.
//  - face-api-detector-grid.txt: the network's raw output (13 x 13 cells x
//    25 logits) for one input both sides can build without resampling, so
//    the network itself is compared to float precision: GRID_PHOTO's
//    columns GRID_LEFT .. GRID_LEFT + 415 and all its rows, with black rows
//    added at the bottom to make 416 x 416. One line per cell: row, column,
//    then the 25 logits (anchor * 5 + x, y, w, h, score).
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
const photosDir = path.join(here, '..', 'data', 'photos');
const detectionsPath = path.join(photosDir, 'face-api-detections.txt');
const gridPath = path.join(photosDir, 'face-api-detector-grid.txt');
const packageDir = path.dirname(require.resolve('@vladmandic/face-api/package.json'));
const packageVersion = JSON.parse(fs.readFileSync(path.join(packageDir, 'package.json'))).version;

const photos = [
  '2008_001009.png', // two faces, portrait format
  '2008_002506.png', // three men: two clear faces, one grimacing (scores ~0.33)
  '2008_002470.png', // five faces around a table
  '2009_004587.png', // two faces, portrait format
  'astronaut.png', // one face, square
  'camera.png', // gray; a small face in profile, scoring right at 0.5
];
const INPUT_SIZE = 416;
const SCORE_THRESHOLD = 0.3;
const GRID_PHOTO = '2008_002506.png';
const GRID_LEFT = 84;

// A photo as face-api receives one: [h, w, 3] integer RGB (gray replicated).
function readPhoto(file) {
  const png = PNG.sync.read(fs.readFileSync(file));
  const rgb = new Int32Array(png.width * png.height * 3);
  for (let i = 0; i < png.width * png.height; i++) {
    for (let c = 0; c < 3; c++) rgb[3 * i + c] = png.data[4 * i + c];
  }
  return tf.tensor3d(rgb, [png.height, png.width, 3], 'int32');
}

async function main() {
  await tf.setBackend('cpu');
  await tf.ready();
  const net = faceapi.nets.tinyFaceDetector;
  await net.loadFromDisk(path.join(packageDir, 'model'));

  const options = new faceapi.TinyFaceDetectorOptions({ inputSize: INPUT_SIZE, scoreThreshold: SCORE_THRESHOLD });
  const lines = [
    `# face-api ${packageVersion} detectAllFaces with TinyFaceDetectorOptions({ inputSize: ${INPUT_SIZE}, ` +
      `scoreThreshold: ${SCORE_THRESHOLD} }), TensorFlow.js ${tf.version.tfjs} backend ${tf.getBackend()}; ` +
      'written by tests/face-detector/reference.mjs',
    '# photo x y width height score (photo pixels)',
  ];
  for (const name of photos) {
    const photo = readPhoto(path.join(photosDir, name));
    const detections = await faceapi.detectAllFaces(photo, options);
    photo.dispose();
    for (const d of detections) {
      const { x, y, width, height } = d.box;
      lines.push([name, ...[x, y, width, height, d.score].map((v) => v.toPrecision(9))].join(' '));
    }
    console.log(`${name}: ${detections.length} faces`);
  }
  fs.writeFileSync(detectionsPath, `${lines.join('\n')}\n`);

  // The raw grid for an input that needs no resize: a square of exactly
  // INPUT_SIZE goes through toBatchTensor untouched.
  const photo = readPhoto(path.join(photosDir, GRID_PHOTO));
  const [height] = photo.shape;
  const crop = tf.slice(photo, [0, GRID_LEFT, 0], [height, INPUT_SIZE, 3]);
  const square = tf.pad(crop, [[0, INPUT_SIZE - height], [0, 0], [0, 0]]);
  const output = await net.forward(square, INPUT_SIZE);
  const [cells] = output.shape.slice(1);
  const values = (await output.array())[0];
  const gridLines = [
    `# face-api ${packageVersion} TinyFaceDetector.forward, TensorFlow.js ${tf.version.tfjs} ` +
      `backend ${tf.getBackend()}; written by tests/face-detector/reference.mjs`,
    `# input: ${GRID_PHOTO} columns ${GRID_LEFT}..${GRID_LEFT + INPUT_SIZE - 1}, rows 0..${height - 1}, ` +
      `black rows ${height}..${INPUT_SIZE - 1}`,
    '# row column, then 25 logits: anchor * 5 + (x, y, w, h, score)',
  ];
  for (let row = 0; row < cells; row++) {
    for (let col = 0; col < cells; col++) {
      gridLines.push([row, col, ...values[row][col].map((v) => v.toPrecision(8))].join(' '));
    }
  }
  fs.writeFileSync(gridPath, `${gridLines.join('\n')}\n`);
  [photo, crop, square, output].forEach((t) => t.dispose());
  console.log(`wrote ${detectionsPath} and ${gridPath}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
