// Reference landmarks for tests/test_face_landmarks.c, computed by the npm
// package the shipped weights come from (@vladmandic/face-api), with its own
// JavaScript network and pre- and post-processing, so the engine is compared
// with an implementation it shares nothing with.
//
// Rerun (needs the npm registry once; node_modules is never committed):
//   cd tests/face-landmarks && npm install && node reference.mjs
// It rewrites ../data/photos/face-api-landmarks.txt: one line per box below:
// the photo, the box (x y width height), then the 68 landmarks as x y pairs
// in photo pixels.
//
// Each box goes through face-api's own path for given boxes, as
// detectAllFaces(...).withFaceLandmarks() takes it after detection:
// extractFaceTensors (the box clipped to the photo and cut out), then
// FaceLandmark68Net.detectLandmarks (padded to a centred square with black,
// resized to 112x112 with tf.image.resizeBilinear, the network, the square's
// padding taken off again), then shiftBy the box's corner. The boxes are
// dlib's face boxes of these photos (examples/faces/*_with_face_landmarks.xml)
// grown by about a quarter and moved down a little, as face-api's detectors
// frame a face; two are not square (odd and even difference of the sides) and
// one is twice as large (the resize then shrinks). All lie inside the photos:
// face-api clips boxes at the border where the engine pads them.
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
const outputPath = path.join(photosDir, 'face-api-landmarks.txt');
const packageDir = path.dirname(require.resolve('@vladmandic/face-api/package.json'));
const packageVersion = JSON.parse(fs.readFileSync(path.join(packageDir, 'package.json'))).version;

const boxes = [
  ['2008_001009.png', 135, 73, 95, 95], // the girl: the resize enlarges
  ['2008_001009.png', 138, 70, 90, 97], // the same, odd difference of sides
  ['2008_001009.png', 113, 207, 113, 113], // her mother
  ['2008_002506.png', 316, 70, 136, 136], // right, glasses
  ['2008_002506.png', 322, 68, 128, 140], // the same, even difference
  ['2008_002506.png', 274, 28, 220, 220], // the same, twice as large
  ['2008_002506.png', 212, 88, 114, 114], // middle
  ['2008_002506.png', 113, 58, 113, 113], // left
];

// A photo as face-api receives one: [h, w, 3] integer RGB.
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
  await faceapi.nets.faceLandmark68Net.loadFromDisk(path.join(packageDir, 'model'));

  const lines = [
    `# face-api ${packageVersion} FaceLandmark68Net.detectLandmarks on extractFaceTensors, ` +
      `TensorFlow.js ${tf.version.tfjs} backend ${tf.getBackend()}; written by ` +
      'tests/face-landmarks/reference.mjs',
    '# photo x y width height, then 68 x y pairs (photo pixels)',
  ];
  for (const [name, x, y, width, height] of boxes) {
    const photo = readPhoto(path.join(photosDir, name));
    const [face] = await faceapi.extractFaceTensors(photo, [new faceapi.Rect(x, y, width, height)]);
    const landmarks = (await faceapi.nets.faceLandmark68Net.detectLandmarks(face)).shiftBy(x, y);
    face.dispose();
    photo.dispose();
    const values = landmarks.positions.flatMap((p) => [p.x, p.y].map((v) => v.toPrecision(9)));
    lines.push([name, x, y, width, height, ...values].join(' '));
  }
  fs.writeFileSync(outputPath, `${lines.join('\n')}\n`);
  console.log(`wrote ${outputPath} (${boxes.length} boxes)`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
