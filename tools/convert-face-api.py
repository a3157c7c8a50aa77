#!/usr/bin/python3
"""Convert face-api's face recognition network (dlib's ResNet-29 face
descriptor) into the engine's safetensors layout.

    tools/convert-face-api.py NPM_PACKAGE_DIR [OUT.safetensors] [--dtype f16|f32]
    tools/convert-face-api.py NPM_PACKAGE_DIR [OUT] --model face-landmarks-68 [--dtype u8|f16|f32]
    tools/convert-face-api.py NPM_PACKAGE_DIR [OUT] --model tiny-face-detector [--dtype u8|f16|f32]
    tools/convert-face-api.py NPM_PACKAGE_DIR [OUT] --model age-gender [--dtype u8|f16|f32]

The second form converts the 68-point landmark network instead (see the
face-landmarks-68 section below; default output
models/face-landmarks-68.safetensors), the third the tiny face detector
(the tiny-face-detector section; models/face-detector-tiny.safetensors), the
fourth the age and gender network (the age-gender section;
models/face-age-gender.safetensors).

NPM_PACKAGE_DIR is an installed `@vladmandic/face-api` (the folder holding
package.json and model/), e.g. after `npm install @vladmandic/face-api` it is
node_modules/@vladmandic/face-api. OUT defaults to
models/face-recognition-resnet29.safetensors next to this script.

What the package ships (model/face_recognition_model-weights_manifest.json
plus the .bin files it lists): tensors in TensorFlow layout, most quantised
to uint8 with a per-tensor scale and minimum (value = min + scale * q), a few
stored as plain float32. Each convolution ("filters" [kh, kw, in, out] and
"bias") is followed by a per-channel "scale" layer (weights, biases): dlib's
affine layer, i.e. its batch norm frozen after training.

What this writes:
  - <layer>.weight [out, in, kh, kw] and <layer>.bias [out], PyTorch layout,
    with the scale layer folded in: conv(x) * s + t = conv'(x) where
    weight' = weight * s and bias' = bias * s + t (per output channel), so the
    engine runs one convolution per layer;
  - fc.weight [128, 256] (PyTorch linear layout; the network has no fc bias);
  - metadata: format, source package and version, licence, input and output
    sizes, the input normalisation.

Needs only Python 3 and numpy. The folding is done in float64 from the
dequantised float32 values, then rounded once to the stored dtype.
"""

import argparse
import json
import os
import struct
import sys

import numpy as np

MANIFEST = "face_recognition_model-weights_manifest.json"
FORMAT = "diat-face-recognition"
FORMAT_VERSION = "1"

# The residual blocks in network order (the package's names): every block
# has conv1 (stride 2 in the "_down" ones) and conv2.
BLOCKS = [
    "conv32_1", "conv32_2", "conv32_3",
    "conv64_down", "conv64_1", "conv64_2", "conv64_3",
    "conv128_down", "conv128_1", "conv128_2",
    "conv256_down", "conv256_1", "conv256_2",
    "conv256_down_out",
]


def read_weights(package_dir):
    """Every tensor of the recognition manifest as float32 numpy arrays, by
    name, dequantised as tfjs does it: in double, then stored as float32."""
    tensors = {}
    for name, (values, quant) in read_raw_weights(package_dir, MANIFEST).items():
        if quant:
            values = (values.astype(np.float64) * quant["scale"] + quant["min"]).astype(np.float32)
        tensors[name] = values.copy()
    return tensors


def folded_conv(tensors, prefix):
    """(weight [out, in, kh, kw], bias [out]) of conv + scale at `prefix`."""
    filters = tensors.pop(f"{prefix}/conv/filters").astype(np.float64)
    bias = tensors.pop(f"{prefix}/conv/bias").astype(np.float64)
    scale = tensors.pop(f"{prefix}/scale/weights").astype(np.float64)
    shift = tensors.pop(f"{prefix}/scale/biases").astype(np.float64)
    weight = filters.transpose(3, 2, 0, 1) * scale[:, None, None, None]
    return weight, bias * scale + shift


def convert(tensors):
    """name -> float64 array, in the engine's parameter order."""
    out = {}
    weight, bias = folded_conv(tensors, "conv32_down")
    out["conv32_down.weight"], out["conv32_down.bias"] = weight, bias
    for block in BLOCKS:
        for conv in ("conv1", "conv2"):
            weight, bias = folded_conv(tensors, f"{block}/{conv}")
            out[f"{block}.{conv}.weight"], out[f"{block}.{conv}.bias"] = weight, bias
    out["fc.weight"] = tensors.pop("fc").astype(np.float64).T  # [in, out] -> [out, in]
    if tensors:
        sys.exit(f"unexpected tensors left over: {sorted(tensors)}")
    return out


def write_safetensors(path, arrays, dtype, metadata):
    """A safetensors file: 8-byte header length, JSON header, raw data."""
    np_dtype, st_dtype = {"f32": ("<f4", "F32"), "f16": ("<f2", "F16")}[dtype]
    header = {"__metadata__": metadata}
    chunks, offset = [], 0
    for name, array in arrays.items():
        # uint8 arrays are face-api's quantised values, kept as they are (U8,
        # with "<name>.scale" and "<name>.min" in the metadata).
        kind = "U8" if array.dtype == np.uint8 else st_dtype
        data = np.ascontiguousarray(array if kind == "U8" else array.astype(np_dtype)).tobytes()
        header[name] = {"dtype": kind, "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # keep the data area 8-byte aligned
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for chunk in chunks:
            f.write(chunk)
    os.replace(tmp, path)


# ---- face-landmarks-68: face-api's 68-point landmark network ---------------
#
# FaceLandmark68Net (src/faceLandmarkNet/ and src/faceFeatureExtractor/ of the
# package): four "dense blocks" of 3x3 convolutions, then a 7x7 average pool
# and a fully connected layer 256 -> 136. dense0's first convolution is a
# plain one (filters [3, 3, 3, 32], bias); every other convolution is
# separable: a depthwise 3x3 filter [3, 3, c, 1] without bias, then a
# pointwise 1x1 [1, 1, c, out] with a bias. Written in PyTorch layout:
#   dense0.conv0.weight [32, 3, 3, 3], dense0.conv0.bias [32]
#   denseB.convK.depthwise.weight [c, 1, 3, 3]
#   denseB.convK.pointwise.weight [out, c, 1, 1], denseB.convK.bias [out]
#   fc.weight [136, 256], fc.bias [136]
# Every tensor the package ships is uint8-quantised; by default they are
# kept so (U8 + "<name>.scale"/"<name>.min"), which the engine dequantises as
# tfjs does: the file then holds exactly face-api's weights at a quarter of
# F32's size.

LANDMARKS_MANIFEST = "face_landmark_68_model-weights_manifest.json"
LANDMARKS_FORMAT = "diat-face-landmarks-68"
LANDMARKS_FORMAT_VERSION = "1"
LANDMARKS_BLOCKS = [("dense0", 3, 32), ("dense1", 32, 64), ("dense2", 64, 128),
                    ("dense3", 128, 256)]


def read_raw_weights(package_dir, manifest_name=LANDMARKS_MANIFEST):
    """name -> (values, quantisation): uint8 values with their manifest
    quantisation dict, or float32 values with None."""
    model_dir = os.path.join(package_dir, "model")
    with open(os.path.join(model_dir, manifest_name), encoding="utf-8") as f:
        manifest = json.load(f)
    tensors = {}
    for group in manifest:
        blob = b"".join(open(os.path.join(model_dir, p), "rb").read() for p in group["paths"])
        offset = 0
        for entry in group["weights"]:
            shape = [int(d) for d in entry["shape"]]
            count = int(np.prod(shape)) if shape else 1
            quant = entry.get("quantization")
            if quant:
                if quant["dtype"] != "uint8":
                    sys.exit(f"{entry['name']}: unsupported quantisation {quant['dtype']}")
                values = np.frombuffer(blob, dtype=np.uint8, count=count, offset=offset)
                offset += count
            else:
                if entry["dtype"] != "float32":
                    sys.exit(f"{entry['name']}: unsupported dtype {entry['dtype']}")
                values = np.frombuffer(blob, dtype="<f4", count=count, offset=offset)
                offset += 4 * count
            tensors[entry["name"]] = (values.reshape(shape), quant)
        if offset != len(blob):
            sys.exit(f"manifest describes {offset} bytes, the .bin files hold {len(blob)}")
    return tensors


def write_quantised(output, arrays, metadata, dtype):
    """Write a converter's result and say what was written. U8 arrays pass
    through write_safetensors as they are; with f32/f16 every array is
    a float already, stored as asked."""
    output = os.path.normpath(output)
    write_safetensors(output, arrays, "f32" if dtype == "u8" else dtype, metadata)
    count = sum(a.size for a in arrays.values())
    print(f"{output}: {len(arrays)} tensors, {count} weights, "
          f"{os.path.getsize(output)} bytes ({dtype})")


def take_tensor(tensors, arrays, metadata, keep_u8, source, name, axes, shape=None):
    """Move `source` out of `tensors` into arrays[name], transposed by
    `axes` to the engine's layout. Quantised tensors stay uint8 with keep_u8
    (their scale and minimum go to the metadata as exact doubles), else they
    are dequantised as tfjs does it (in double, rounded once to float32).
    With `shape`, a tensor of another shape stops the conversion: the engine
    builds the shapes from its own table, so a package with another topology
    must fail here, not at load time."""
    values, quant = tensors.pop(source)
    values = values.transpose(axes)
    if shape is not None and values.shape != shape:
        sys.exit(f"{source}: shape {values.shape} after transposing, expected {shape}")
    if quant and keep_u8:
        metadata[f"{name}.scale"] = repr(float(quant["scale"]))
        metadata[f"{name}.min"] = repr(float(quant["min"]))
    elif quant:
        values = (values.astype(np.float64) * quant["scale"] + quant["min"]).astype(np.float32)
    arrays[name] = np.ascontiguousarray(values)


def convert_landmarks_68(tensors, keep_u8):
    """(arrays, metadata) in the engine's names, layout and order. With
    keep_u8, quantised tensors stay uint8 and their scale and minimum go to
    the metadata (repr: the exact doubles); else they are dequantised as tfjs
    does (in double, rounded once to float32)."""
    arrays, metadata = {}, {}

    def take(source, name, axes):
        take_tensor(tensors, arrays, metadata, keep_u8, source, name, axes)

    for block, channels_in, channels_out in LANDMARKS_BLOCKS:
        for k in range(4):
            src, dst = f"{block}/conv{k}", f"{block}.conv{k}"
            if block == "dense0" and k == 0:
                take(f"{src}/filters", f"{dst}.weight", (3, 2, 0, 1))
            else:
                take(f"{src}/depthwise_filter", f"{dst}.depthwise.weight", (2, 3, 0, 1))
                take(f"{src}/pointwise_filter", f"{dst}.pointwise.weight", (3, 2, 0, 1))
            take(f"{src}/bias", f"{dst}.bias", (0,))
            # The engine builds the same shapes from its own table: a package
            # with another topology must fail here, not at load time.
            expected = {f"{dst}.bias": (channels_out,)}
            if block == "dense0" and k == 0:
                expected[f"{dst}.weight"] = (channels_out, channels_in, 3, 3)
            else:
                expected[f"{dst}.depthwise.weight"] = (channels_in, 1, 3, 3)
                expected[f"{dst}.pointwise.weight"] = (channels_out, channels_in, 1, 1)
            for name, shape in expected.items():
                if arrays[name].shape != shape:
                    sys.exit(f"{name}: shape {arrays[name].shape}, expected {shape}")
            channels_in = channels_out
    take("fc/weights", "fc.weight", (1, 0))  # [in, out] -> [out, in]
    take("fc/bias", "fc.bias", (0,))
    if arrays["fc.weight"].shape != (136, 256):
        sys.exit(f"fc/weights has shape {arrays['fc.weight'].shape[::-1]}, expected (256, 136)")
    if tensors:
        sys.exit(f"unexpected tensors left over: {sorted(tensors)}")
    return arrays, metadata


def main_landmarks_68(args, package, here):
    """The face-landmarks-68 mode: write models/face-landmarks-68.safetensors."""
    output = args.output or os.path.join(here, "..", "models", "face-landmarks-68.safetensors")
    dtype = args.dtype or "u8"
    arrays, metadata = convert_landmarks_68(read_raw_weights(args.package_dir),
                                            keep_u8=dtype == "u8")
    metadata.update({
        "format": LANDMARKS_FORMAT,
        "format_version": LANDMARKS_FORMAT_VERSION,
        "architecture": "face-api FaceLandmark68Net (4 dense blocks of separable 3x3 "
                        "convolutions, 7x7 average pool, fc 256 -> 136)",
        "source": f"npm {package['name']}@{package['version']} model/face_landmark_68_model.bin",
        "license": f"{package.get('license', 'MIT')} (see models/LICENSE-face-api.txt)",
        "input_size": "112",
        "output_size": "136",
        "input_normalization": "the face box padded to a square with black (centred), resized "
                               "to 112x112, rgb in 0..255 minus mean (122.782, 117.001, "
                               "104.298), divided by 255",
        "output": "68 (x, y) pairs, each a fraction of the 112x112 input's side",
        "padding": "TensorFlow 'same': the stride-2 convolutions pad only the bottom and "
                   "right (112 -> 56 -> 28 -> 14 -> 7)",
        "conversion": "tools/convert-face-api.py --model face-landmarks-68 --dtype " + dtype,
    })
    write_quantised(output, arrays, metadata, dtype)


# ---- tiny-face-detector: face-api's TinyFaceDetector -----------------------
#
# src/tinyFaceDetector/ and src/tinyYolov2/ of the package (TinyYolov2Base
# with withSeparableConvs and isFirstLayerConv2d, filter sizes 3, 16, ...,
# 512): a plain 3x3 convolution conv0 (filters [3, 3, 3, 16], bias), then
# five depthwise-separable 3x3 convolutions conv1..conv5 (depthwise
# [3, 3, c, 1] without bias, pointwise [1, 1, c, out], then a bias; batch
# norm already folded in by face-api's training export), and the 1x1 head
# conv8 (filters [1, 1, 512, 25], bias). Written in PyTorch layout:
#   conv0.weight [16, 3, 3, 3], conv0.bias [16]
#   convK.depthwise.weight [c, 1, 3, 3], convK.pointwise.weight [out, c, 1, 1],
#   convK.bias [out]                                        (K = 1..5)
#   conv8.weight [25, 512, 1, 1], conv8.bias [25]
# The anchors, the mean RGB and the thresholds live in the JavaScript (and
# in engine/nets/face-detector.c); they are copied into the metadata so the
# file documents itself. Quantisation as for face-landmarks-68 (u8 keeps
# face-api's own values).

DETECTOR_MANIFEST = "tiny_face_detector_model-weights_manifest.json"
DETECTOR_FORMAT = "diat-face-detector-tiny"
DETECTOR_FORMAT_VERSION = "1"
DETECTOR_CHANNELS = [3, 16, 32, 64, 128, 256, 512]  # conv0's input, then each layer's output
DETECTOR_ANCHORS = [(1.603231, 2.094468), (6.041143, 7.080126), (2.882459, 3.518061),
                    (4.266906, 5.178857), (9.041765, 10.66308)]  # src/tinyFaceDetector/const.ts
DETECTOR_MEAN_RGB = (117.001, 114.697, 97.404)


def convert_tiny_face_detector(tensors, keep_u8):
    """(arrays, metadata) in the engine's names, layout and order (see
    convert_landmarks_68 for keep_u8)."""
    arrays, metadata = {}, {}

    def take(source, name, axes, shape):
        take_tensor(tensors, arrays, metadata, keep_u8, source, name, axes, shape)

    channels = DETECTOR_CHANNELS
    take("conv0/filters", "conv0.weight", (3, 2, 0, 1), (channels[1], channels[0], 3, 3))
    take("conv0/bias", "conv0.bias", (0,), (channels[1],))
    for k in range(1, 6):
        c_in, c_out = channels[k], channels[k + 1]
        take(f"conv{k}/depthwise_filter", f"conv{k}.depthwise.weight", (2, 3, 0, 1),
             (c_in, 1, 3, 3))
        take(f"conv{k}/pointwise_filter", f"conv{k}.pointwise.weight", (3, 2, 0, 1),
             (c_out, c_in, 1, 1))
        take(f"conv{k}/bias", f"conv{k}.bias", (0,), (c_out,))
    boxes = 5 * len(DETECTOR_ANCHORS)  # (x, y, w, h, score) per anchor, one class
    take("conv8/filters", "conv8.weight", (3, 2, 0, 1), (boxes, channels[6], 1, 1))
    take("conv8/bias", "conv8.bias", (0,), (boxes,))
    if tensors:
        sys.exit(f"unexpected tensors left over: {sorted(tensors)}")
    return arrays, metadata


def main_tiny_face_detector(args, package, here):
    """The tiny-face-detector mode: write models/face-detector-tiny.safetensors."""
    output = args.output or os.path.join(here, "..", "models", "face-detector-tiny.safetensors")
    dtype = args.dtype or "u8"
    arrays, metadata = convert_tiny_face_detector(
        read_raw_weights(args.package_dir, DETECTOR_MANIFEST), keep_u8=dtype == "u8")
    metadata.update({
        "format": DETECTOR_FORMAT,
        "format_version": DETECTOR_FORMAT_VERSION,
        "architecture": "face-api TinyFaceDetector: tiny YOLO v2 with depthwise-separable "
                        "convolutions (conv 3x3 16, separable 3x3 32..512, 2x2 max pools, "
                        "1x1 head), leaky ReLU 0.1, 5 anchors, one class",
        "source": f"npm {package['name']}@{package['version']} model/tiny_face_detector_model.bin",
        "license": f"{package.get('license', 'MIT')} (see models/LICENSE-face-api.txt)",
        "input_size": "416",
        "input_normalization": "the image padded to a square with black at the right or "
                               "bottom, resized to 416x416, rgb in 0..255 minus mean "
                               "(%s, %s, %s), divided by 255" % DETECTOR_MEAN_RGB,
        "anchors": " ".join(f"{w!r},{h!r}" for w, h in DETECTOR_ANCHORS),
        "output": "13x13 cells x 5 anchors x (x, y, w, h, score) logits, channel = anchor * 5 "
                  "+ field: centre = (cell + sigmoid) / 13, size = exp * anchor / 13 (of "
                  "the padded square), score = sigmoid",
        "leaky_relu_slope": "0.1",
        "score_threshold": "0.5",
        "iou_threshold": "0.4",
        "padding": "convolutions 3x3 'same' except conv0 ('valid': 416 -> 414); max pools "
                   "2x2 TensorFlow 'same' (stride 2 pads only the bottom and right: 414 -> "
                   "207 -> 104 -> 52 -> 26 -> 13; the last stride 1: 13 -> 13)",
        "conversion": "tools/convert-face-api.py --model tiny-face-detector --dtype " + dtype,
    })
    write_quantised(output, arrays, metadata, dtype)


# ---- age-gender: face-api's AgeGenderNet -----------------------------------
#
# src/ageGenderNet/ and src/xception/ of the package: TinyXception with two
# middle blocks on a 112x112 face, a 7x7 average pool and two linear heads.
# Every "separable_conv" is a depthwise 3x3 [3, 3, c, 1] without bias, a
# pointwise 1x1 [1, 1, c, out] and a bias; every "expansion_conv" a 1x1
# stride-2 convolution with a bias. Written in PyTorch layout, under short
# names (the engine's parameter names stay under 48 characters): blocks
# entry0, entry1 (entry_flow/reduction_block_0, _1), main0, main1
# (middle_flow/main_block_0, _1) and exit (exit_flow/reduction_block);
#   conv_in.weight [32, 3, 3, 3], conv_in.bias [32]
#   <block>.sepK.depthwise.weight [c, 1, 3, 3],
#   <block>.sepK.pointwise.weight [out, c, 1, 1], <block>.sepK.bias [out]
#   <entry0, entry1, exit>.expansion.weight [out, in, 1, 1], .bias [out]
#   exit_sep.*: exit_flow/separable_conv, 256 -> 512
#   fc.age.weight [1, 512], fc.age.bias [1]
#   fc.gender.weight [2, 512], fc.gender.bias [2]   (index 0: male)
# Quantisation as for face-landmarks-68 (u8 keeps face-api's own values).

AGE_GENDER_MANIFEST = "age_gender_model-weights_manifest.json"
AGE_GENDER_FORMAT = "diat-face-age-gender"
AGE_GENDER_FORMAT_VERSION = "1"
# (package name, engine name, input channels, output channels, separable
# convolutions, reduction)
AGE_GENDER_BLOCKS = [
    ("entry_flow/reduction_block_0", "entry0", 32, 64, 2, True),
    ("entry_flow/reduction_block_1", "entry1", 64, 128, 2, True),
    ("middle_flow/main_block_0", "main0", 128, 128, 3, False),
    ("middle_flow/main_block_1", "main1", 128, 128, 3, False),
    ("exit_flow/reduction_block", "exit", 128, 256, 2, True),
]
AGE_GENDER_FEATURES = 512


def convert_age_gender(tensors, keep_u8):
    """(arrays, metadata) in the engine's names, layout and order (see
    convert_landmarks_68 for keep_u8)."""
    arrays, metadata = {}, {}

    def take(source, name, axes, shape):
        take_tensor(tensors, arrays, metadata, keep_u8, source, name, axes, shape)

    def separable(source, name, c_in, c_out):
        take(f"{source}/depthwise_filter", f"{name}.depthwise.weight", (2, 3, 0, 1),
             (c_in, 1, 3, 3))
        take(f"{source}/pointwise_filter", f"{name}.pointwise.weight", (3, 2, 0, 1),
             (c_out, c_in, 1, 1))
        take(f"{source}/bias", f"{name}.bias", (0,), (c_out,))

    take("entry_flow/conv_in/filters", "conv_in.weight", (3, 2, 0, 1), (32, 3, 3, 3))
    take("entry_flow/conv_in/bias", "conv_in.bias", (0,), (32,))
    for source, name, c_in, c_out, convs, reduction in AGE_GENDER_BLOCKS:
        for k in range(convs):
            separable(f"{source}/separable_conv{k}", f"{name}.sep{k}", c_in if k == 0 else c_out,
                      c_out)
        if reduction:
            take(f"{source}/expansion_conv/filters", f"{name}.expansion.weight", (3, 2, 0, 1),
                 (c_out, c_in, 1, 1))
            take(f"{source}/expansion_conv/bias", f"{name}.expansion.bias", (0,), (c_out,))
    separable("exit_flow/separable_conv", "exit_sep", 256, AGE_GENDER_FEATURES)
    # [in, out] -> [out, in]
    take("fc/age/weights", "fc.age.weight", (1, 0), (1, AGE_GENDER_FEATURES))
    take("fc/age/bias", "fc.age.bias", (0,), (1,))
    take("fc/gender/weights", "fc.gender.weight", (1, 0), (2, AGE_GENDER_FEATURES))
    take("fc/gender/bias", "fc.gender.bias", (0,), (2,))
    if tensors:
        sys.exit(f"unexpected tensors left over: {sorted(tensors)}")
    return arrays, metadata


def main_age_gender(args, package, here):
    """The age-gender mode: write models/face-age-gender.safetensors."""
    output = args.output or os.path.join(here, "..", "models", "face-age-gender.safetensors")
    dtype = args.dtype or "u8"
    arrays, metadata = convert_age_gender(
        read_raw_weights(args.package_dir, AGE_GENDER_MANIFEST), keep_u8=dtype == "u8")
    metadata.update({
        "format": AGE_GENDER_FORMAT,
        "format_version": AGE_GENDER_FORMAT_VERSION,
        "architecture": "face-api AgeGenderNet: TinyXception (conv 3x3 s2 32, reduction "
                        "blocks 64 and 128, two middle blocks of 128, reduction block 256, "
                        "separable conv 512), 7x7 average pool, linear heads age 512 -> 1 "
                        "and gender 512 -> 2",
        "source": f"npm {package['name']}@{package['version']} model/age_gender_model.bin",
        "license": f"{package.get('license', 'MIT')} (see models/LICENSE-face-api.txt)",
        "input_size": "112",
        "input_normalization": "the face box padded to a square with black (centred), resized "
                               "to 112x112, rgb in 0..255 minus mean (122.782, 117.001, "
                               "104.298), divided by 255",
        "output": "age in years (linear); gender logits (male, female), softmax for P(male)",
        "padding": "TensorFlow 'same': the stride-2 convolution and 3x3 max pools pad only "
                   "the bottom and right (112 -> 56 -> 28 -> 14 -> 7)",
        "conversion": "tools/convert-face-api.py --model age-gender --dtype " + dtype,
    })
    write_quantised(output, arrays, metadata, dtype)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("package_dir", help="installed @vladmandic/face-api folder")
    parser.add_argument("output", nargs="?",
                        help="default: models/<the model's file> next to this script")
    parser.add_argument("--model",
                        choices=["face-recognition", "face-landmarks-68", "tiny-face-detector",
                                 "age-gender"],
                        default="face-recognition", help="which network to convert")
    # F16 moves the embedding by at most ~2e-4 from face-api's (F32: ~4e-7) on
    # the test chips, well inside the 1e-3 the tests ask, at half the size.
    parser.add_argument("--dtype", choices=["f32", "f16", "u8"],
                        help="stored precision (default: f16 for face-recognition, u8 = "
                             "face-api's own quantised values for face-landmarks-68; "
                             "see the model cards)")
    args = parser.parse_intermixed_args()  # OUT may follow the options

    with open(os.path.join(args.package_dir, "package.json"), encoding="utf-8") as f:
        package = json.load(f)
    if args.model == "face-landmarks-68":
        main_landmarks_68(args, package, here)
        return
    if args.model == "tiny-face-detector":
        main_tiny_face_detector(args, package, here)
        return
    if args.model == "age-gender":
        main_age_gender(args, package, here)
        return
    if args.dtype == "u8":
        sys.exit("face-recognition folds its scale layers into the convolutions: "
                 "use --dtype f16 or f32")
    args.dtype = args.dtype or "f16"
    args.output = args.output or os.path.join(here, "..", "models",
                                              "face-recognition-resnet29.safetensors")
    arrays = convert(read_weights(args.package_dir))
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": "dlib-resnet29-face-descriptor",
        "source": f"npm {package['name']}@{package['version']} "
                  f"model/face_recognition_model.bin (dlib dlib_face_recognition_resnet_model_v1)",
        "license": f"{package.get('license', 'MIT')} (see models/LICENSE-face-api.txt)",
        "input_size": "150",
        "output_size": "128",
        "input_normalization": "rgb in 0..255, minus mean (122.782, 117.001, 104.298), "
                               "divided by 255 (as face-api does; dlib itself divides by 256)",
        "scale_layers": "folded into the preceding convolution",
        "conversion": "tools/convert-face-api.py " + args.dtype,
    }
    args.output = os.path.normpath(args.output)
    write_safetensors(args.output, arrays, args.dtype, metadata)
    count = sum(a.size for a in arrays.values())
    print(f"{args.output}: {len(arrays)} tensors, {count} weights, "
          f"{os.path.getsize(args.output)} bytes ({args.dtype})")


if __name__ == "__main__":
    main()
