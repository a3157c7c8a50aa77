#!/usr/bin/python3
"""Independent PyTorch reference of the DIAT networks T and M.

Written from engine/nets/ARCHITECTURE.md alone (not from the C code), so that
the engine can be cross-checked against it (tests/test_torch_reference.py) and
timed against it (bench/bench_torch.py). The module tree is chosen so that
`DiatReference().state_dict()` keys are exactly the model-file tensor names
("T.down1.weight", "M.bn1.running_mean", ...); BatchNorm2d's extra
`num_batches_tracked` buffers are not part of the file format and are skipped.

Also here, in plain Python (struct + json + numpy, no `safetensors` package):
a safetensors reader/writer (F32, F16, and U8 with scale/min on read) and
`make_random_model()`, which writes a random-weight model file so benchmarks
and cross-checks never depend on a trained model.

Run `/usr/bin/python3 bench/diat_reference.py --self-test` for its own checks.
Use Debian's /usr/bin/python3 (PyTorch 1.13); the safetensors helpers need
only numpy, so `import diat_reference` works without torch as well.
"""

import json
import math
import os
import struct
import sys

import numpy as np

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:  # the file-format helpers stay usable without torch
    torch = None
    nn = None
    F = None

FACE_SIZE = 128
MASK_UPSAMPLE = 4
LEAKY_SLOPE = 0.2
BN_EPS = 1e-5
BN_MOMENTUM = 0.1
GAUSSIAN_SIGMA = 1.0
GAUSSIAN_RADIUS = 2  # 5 taps

# ---------------------------------------------------------------- safetensors

_DTYPE_TO_NUMPY = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "U8": np.dtype("u1")}


def read_safetensors(path):
    """Return (tensors, metadata): name -> float32 ndarray, and a str -> str dict.

    F16 is widened exactly; U8 is dequantised as min + scale * q with the
    scale and min read from the metadata keys "<name>.scale" and "<name>.min"
    (the engine's convention, engine/model-format.md)."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError(f"{path}: shorter than the 8-byte header length")
    (header_len,) = struct.unpack("<Q", blob[:8])
    if 8 + header_len > len(blob):
        raise ValueError(f"{path}: header length {header_len} runs past the end of the file")
    header = json.loads(blob[8:8 + header_len].decode("utf-8"))
    metadata = dict(header.pop("__metadata__", {}) or {})
    data = memoryview(blob)[8 + header_len:]
    tensors = {}
    for name, info in header.items():
        dtype = info["dtype"]
        if dtype not in _DTYPE_TO_NUMPY:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {dtype}")
        shape = tuple(int(s) for s in info["shape"])
        begin, end = (int(o) for o in info["data_offsets"])
        np_dtype = _DTYPE_TO_NUMPY[dtype]
        count = int(np.prod(shape)) if shape else 1
        if not 0 <= begin <= end <= len(data) or end - begin != count * np_dtype.itemsize:
            raise ValueError(f"{path}: tensor {name} has bad data_offsets {begin}..{end}")
        raw = np.frombuffer(data[begin:end], dtype=np_dtype).reshape(shape)
        if dtype == "U8":
            scale = float(metadata[name + ".scale"])
            minimum = float(metadata[name + ".min"])
            values = (minimum + scale * raw.astype(np.float64)).astype(np.float32)
        else:
            values = raw.astype(np.float32)
        tensors[name] = values
    return tensors, metadata


def write_safetensors(path, tensors, metadata=None, dtype="F32"):
    """Write name -> array (any float dtype) as F32 or F16, in the given order.

    Offsets are packed back to back; the header is padded with spaces to a
    multiple of 8 bytes (as the reference implementation does) so tensor data
    is aligned when the file is mapped."""
    if dtype not in ("F32", "F16"):
        raise ValueError("dtype must be F32 or F16")
    np_dtype = _DTYPE_TO_NUMPY[dtype]
    header = {}
    chunks = []
    offset = 0
    for name, array in tensors.items():
        raw = np.ascontiguousarray(np.asarray(array, dtype=np.float32).astype(np_dtype)).tobytes()
        header[name] = {"dtype": dtype, "shape": list(np.shape(array)),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(header_bytes)))
        f.write(header_bytes)
        for raw in chunks:
            f.write(raw)
    os.replace(tmp, path)


# ---------------------------------------------------------------- shapes

def transform_channels(width):
    """c1..c5 of T (ARCHITECTURE.md): w, 2w, 4w, 8w, 8w."""
    return [width, 2 * width, 4 * width, 8 * width, 8 * width]


def mask_channels(mask_width):
    """m1..m4 of M: w_m, 2w_m, 2w_m, 2w_m (m5 is the single-channel e)."""
    return [mask_width, 2 * mask_width, 2 * mask_width, 2 * mask_width]


def parameter_shapes(width, mask_width):
    """Ordered name -> shape of every tensor an inference model file holds."""
    shapes = {}
    c = transform_channels(width)
    ins = [3] + c[:4]
    for i in range(5):
        shapes[f"T.down{i + 1}.weight"] = (c[i], ins[i], 3, 3)
        shapes[f"T.down{i + 1}.bias"] = (c[i],)
    # up_k maps the current decoder width to 4x the skip it is summed with.
    up_in = [c[4], c[3], c[2], c[1], c[0]]
    up_skip = [c[3], c[2], c[1], c[0], 3]
    for i in range(5):
        shapes[f"T.up{i + 1}.weight"] = (4 * up_skip[i], up_in[i], 3, 3)
        shapes[f"T.up{i + 1}.bias"] = (4 * up_skip[i],)
    m = mask_channels(mask_width)
    m_ins = [3] + m
    m_outs = m + [1]
    for i in range(5):
        shapes[f"M.conv{i + 1}.weight"] = (m_outs[i], m_ins[i], 3, 3)
        for stat in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"M.bn{i + 1}.{stat}"] = (m_outs[i],)
    return shapes


def conv_layers(width, mask_width, size=FACE_SIZE):
    """Every convolution of T and M at input side `size`: a list of dicts with
    name, in/out channels, kernel, stride, pad, input and output side."""
    layers = []
    c = transform_channels(width)
    ins = [3] + c[:4]
    side = size
    for i in range(5):
        layers.append(dict(name=f"T.down{i + 1}", cin=ins[i], cout=c[i], k=3, stride=2, pad=1,
                           in_side=side, out_side=side // 2))
        side //= 2
    up_in = [c[4], c[3], c[2], c[1], c[0]]
    up_skip = [c[3], c[2], c[1], c[0], 3]
    for i in range(5):
        layers.append(dict(name=f"T.up{i + 1}", cin=up_in[i], cout=4 * up_skip[i], k=3,
                           stride=1, pad=1, in_side=side, out_side=side))
        side *= 2
    m = mask_channels(mask_width)
    m_ins = [3] + m
    m_outs = m + [1]
    strides = [2, 2, 1, 1, 1]
    side = size
    for i in range(5):
        out_side = side // strides[i]
        layers.append(dict(name=f"M.conv{i + 1}", cin=m_ins[i], cout=m_outs[i], k=3,
                           stride=strides[i], pad=1, in_side=side, out_side=out_side))
        side = out_side
    return layers


def conv_flops(layer, batch=1):
    """2 * multiply-accumulates of one convolution (the benchmark's count)."""
    return 2 * batch * layer["cout"] * layer["out_side"] ** 2 * layer["cin"] * layer["k"] ** 2


# ---------------------------------------------------------------- random models

def make_random_model(path, width=24, mask_width=16, seed=0, dtype="F32",
                      image_size=FACE_SIZE):
    """Write a random-weight DIAT inference model (benchmarks, cross-checks).

    Convolution weights are He-uniform (bound sqrt(6 / fan_in)); biases small
    uniform; batch-norm gamma ~ U(0.8, 1.2), beta ~ N(0, 0.1), running mean
    ~ N(0, 0.1), running var ~ U(0.5, 1.5), so eval-mode BN is not the
    identity. T.up5 is scaled by 0.25 so T(x) stays near the image range
    (a random residual of full size would push most pixels far outside it)."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, shape in parameter_shapes(width, mask_width).items():
        if name.endswith(".weight") and len(shape) == 4:
            fan_in = shape[1] * shape[2] * shape[3]
            bound = math.sqrt(6.0 / fan_in)
            if name == "T.up5.weight":
                bound *= 0.25
            value = rng.uniform(-bound, bound, size=shape)
        elif name.startswith("T.") and name.endswith(".bias"):
            value = rng.uniform(-0.05, 0.05, size=shape)
        elif name.endswith(".running_mean"):
            value = rng.normal(0.0, 0.1, size=shape)
        elif name.endswith(".running_var"):
            value = rng.uniform(0.5, 1.5, size=shape)
        elif ".bn" in name and name.endswith(".weight"):
            value = rng.uniform(0.8, 1.2, size=shape)
        elif ".bn" in name and name.endswith(".bias"):
            value = rng.normal(0.0, 0.1, size=shape)
        else:
            raise AssertionError(f"no initialiser for {name}")
        tensors[name] = value.astype(np.float32)
    metadata = {
        "format": "diat-model",
        "format_version": "1",
        "architecture": "diat-unet-d2s-v1",
        "width": str(width),
        "mask_width": str(mask_width),
        "image_size": str(image_size),
        "crop": "celeba-align-178x178-row20",
        "attribute": "none",
        "direction": "add",
        "label": "Random weights (benchmark only)",
        "default_ratio": "0.5",
        "training_data": "none (random weights, seed %d)" % seed,
        "training_iterations": "0",
        "evaluation": "none",
        "license": "CC0-1.0",
        "fixture": "true",
    }
    write_safetensors(path, tensors, metadata, dtype=dtype)
    return tensors, metadata


# ---------------------------------------------------------------- the networks

def gaussian5_taps(sigma=GAUSSIAN_SIGMA):
    """1-D Gaussian at offsets -2..2, normalised to sum 1 (float64 ndarray)."""
    offsets = np.arange(-GAUSSIAN_RADIUS, GAUSSIAN_RADIUS + 1, dtype=np.float64)
    taps = np.exp(-offsets ** 2 / (2.0 * sigma * sigma))
    return taps / taps.sum()


if torch is not None:

    def gaussian5(x, sigma=GAUSSIAN_SIGMA):
        """Separable 5x5 Gaussian per channel with edge-replicated borders."""
        channels = x.shape[1]
        taps = torch.tensor(gaussian5_taps(sigma), dtype=x.dtype, device=x.device)
        r = GAUSSIAN_RADIUS
        horizontal = taps.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
        vertical = taps.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
        x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), horizontal, groups=channels)
        return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), vertical, groups=channels)

    class TransformNet(nn.Module):
        """T: 5 strided convolutions down, 5 convolutions + depth-to-space up,
        skips joined by sum, the last skip being the input itself."""

        def __init__(self, width):
            super().__init__()
            c = transform_channels(width)
            ins = [3] + c[:4]
            for i in range(5):
                setattr(self, f"down{i + 1}", nn.Conv2d(ins[i], c[i], 3, stride=2, padding=1))
            up_in = [c[4], c[3], c[2], c[1], c[0]]
            up_skip = [c[3], c[2], c[1], c[0], 3]
            for i in range(5):
                setattr(self, f"up{i + 1}", nn.Conv2d(up_in[i], 4 * up_skip[i], 3, padding=1))

        def forward(self, x):
            skips = [x]
            h = x
            for i in range(5):
                h = F.leaky_relu(getattr(self, f"down{i + 1}")(h), LEAKY_SLOPE)
                skips.append(h)
            # skips = [x, d1, .., d5]: up1 joins d4, up2 d3, ..., up5 the input x.
            for i in range(5):
                h = F.pixel_shuffle(getattr(self, f"up{i + 1}")(h), 2) + skips[4 - i]
                if i < 4:
                    h = F.relu(h)
            return h

    class MaskNet(nn.Module):
        """M: 5 convolutions without bias, each followed by BatchNorm2d;
        ReLU x4, sigmoid -> e at 1/4 resolution; then upsample, binarize,
        soften (see `masks`)."""

        def __init__(self, mask_width):
            super().__init__()
            m = mask_channels(mask_width)
            ins = [3] + m
            outs = m + [1]
            strides = [2, 2, 1, 1, 1]
            for i in range(5):
                setattr(self, f"conv{i + 1}",
                        nn.Conv2d(ins[i], outs[i], 3, stride=strides[i], padding=1, bias=False))
                setattr(self, f"bn{i + 1}",
                        nn.BatchNorm2d(outs[i], eps=BN_EPS, momentum=BN_MOMENTUM))

        def soft_mask(self, x):
            """e = sigmoid(bn5(conv5(...))): [n, 1, H/4, W/4]."""
            h = x
            for i in range(5):
                h = getattr(self, f"bn{i + 1}")(getattr(self, f"conv{i + 1}")(h))
                h = torch.sigmoid(h) if i == 4 else F.relu(h)
            return h

        def masks(self, x, threshold=0.5):
            """Returns (e, e_up, m). The binarization passes the gradient
            straight through (value of the hard mask, gradient of e_up)."""
            e = self.soft_mask(x)
            e_up = F.interpolate(e, scale_factor=MASK_UPSAMPLE, mode="bilinear",
                                 align_corners=False)
            hard = (e_up > threshold).to(e_up.dtype)
            binary = e_up + (hard - e_up).detach()
            return e, e_up, gaussian5(binary)

        def forward(self, x):
            return self.masks(x)[2]

    class DiatReference(nn.Module):
        """T and M under the names of the model file ("T.*", "M.*")."""

        def __init__(self, width=24, mask_width=16):
            super().__init__()
            self.width = width
            self.mask_width = mask_width
            self.T = TransformNet(width)
            self.M = MaskNet(mask_width)

        def forward(self, x, threshold=0.5):
            """x in [-1, 1], [n, 3, H, W]. Returns dict with t = T(x), e, e_up,
            m and y = m * T(x) + (1 - m) * x."""
            t = self.T(x)
            e, e_up, m = self.M.masks(x, threshold)
            y = m * t + (1.0 - m) * x
            return dict(t=t, e=e, e_up=e_up, m=m, y=y)

        def load_tensors(self, tensors):
            """Load name -> ndarray; every file tensor must match, and every
            state_dict entry except num_batches_tracked must be present."""
            state = self.state_dict()
            expected = {k for k in state if not k.endswith("num_batches_tracked")}
            missing = expected - set(tensors)
            unexpected = set(tensors) - expected
            if missing or unexpected:
                raise ValueError(f"model tensors differ: missing {sorted(missing)}, "
                                 f"unexpected {sorted(unexpected)}")
            with torch.no_grad():
                for name in expected:
                    value = torch.from_numpy(np.ascontiguousarray(tensors[name]))
                    if tuple(value.shape) != tuple(state[name].shape):
                        raise ValueError(f"{name}: shape {tuple(value.shape)}, "
                                         f"expected {tuple(state[name].shape)}")
                    state[name].copy_(value)

    def load_model(path):
        """A DiatReference in eval mode with the weights of a model file."""
        tensors, metadata = read_safetensors(path)
        if metadata.get("format") != "diat-model":
            raise ValueError(f"{path}: metadata format is {metadata.get('format')!r}")
        model = DiatReference(int(metadata["width"]), int(metadata["mask_width"]))
        model.load_tensors(tensors)
        model.eval()
        return model, metadata


# ---------------------------------------------------------------- self-checks

def _self_test():
    import tempfile

    failures = []

    def check(cond, what):
        print(("ok   " if cond else "FAIL ") + what)
        if not cond:
            failures.append(what)

    taps = gaussian5_taps()
    manual = np.array([math.exp(-2.0), math.exp(-0.5), 1.0, math.exp(-0.5), math.exp(-2.0)])
    manual /= manual.sum()
    check(np.allclose(taps, manual, atol=1e-15) and abs(taps.sum() - 1) < 1e-15,
          "Gaussian taps: exp(-i^2/2), i=-2..2, sum 1 "
          f"({', '.join('%.8f' % t for t in taps)})")

    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(3)
        data = {"a": rng.standard_normal((2, 3, 4)).astype(np.float32),
                "b.c": np.arange(5, dtype=np.float32)}
        for dtype in ("F32", "F16"):
            path = os.path.join(tmp, f"x-{dtype}.safetensors")
            write_safetensors(path, data, {"k": "v"}, dtype=dtype)
            back, meta = read_safetensors(path)
            tol = 0 if dtype == "F32" else 2e-3
            check(meta == {"k": "v"} and all(
                back[k].shape == data[k].shape and np.abs(back[k] - data[k]).max() <= tol
                * max(1.0, np.abs(data[k]).max()) for k in data),
                f"safetensors round trip {dtype}")
            with open(path, "rb") as f:
                (n,) = struct.unpack("<Q", f.read(8))
            check(n % 8 == 0, f"safetensors header padded to 8 bytes ({dtype})")
        path = os.path.join(tmp, "random.safetensors")
        tensors, meta = make_random_model(path, 8, 4, seed=1)
        back, meta_back = read_safetensors(path)
        check(meta_back == meta and set(back) == set(parameter_shapes(8, 4)),
              "random model: names and metadata")

        if torch is None:
            print("skip torch checks: torch not importable")
        else:
            model = DiatReference(8, 4)
            names = {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}
            check(names == set(parameter_shapes(8, 4)),
                  "state_dict keys equal the model-file names")
            check(all(tuple(model.state_dict()[k].shape) == s
                      for k, s in parameter_shapes(8, 4).items()),
                  "state_dict shapes equal ARCHITECTURE.md")
            loaded, _ = load_model(path)
            check(all(np.array_equal(loaded.state_dict()[k].numpy(), tensors[k]) for k in names),
                  "load_model copies every tensor")

            # pixel_shuffle: y[c, h*r+i, w*r+j] = x[c*r*r + i*r + j, h, w]
            x = torch.arange(2 * 8 * 3 * 5, dtype=torch.float32).view(2, 8, 3, 5)
            y = F.pixel_shuffle(x, 2)
            ok = y.shape == (2, 2, 6, 10)
            for n in range(2):
                for c in range(2):
                    for h in range(3):
                        for w in range(5):
                            for i in range(2):
                                for j in range(2):
                                    ok &= bool(y[n, c, h * 2 + i, w * 2 + j]
                                               == x[n, c * 4 + i * 2 + j, h, w])
            check(ok, "pixel_shuffle channel order c*r*r + i*r + j")

            # bilinear x4, align_corners=False: src = (dst + 0.5) / 4 - 0.5, clamped
            e = torch.rand(1, 1, 5, 7, generator=torch.Generator().manual_seed(0))
            up = F.interpolate(e, scale_factor=4, mode="bilinear", align_corners=False)
            manual_up = np.zeros((20, 28))
            en = e[0, 0].numpy().astype(np.float64)
            for oy in range(20):
                sy = max((oy + 0.5) / 4 - 0.5, 0.0)
                y0 = min(int(sy), 4)
                y1 = min(y0 + 1, 4)
                fy = sy - y0
                for ox in range(28):
                    sx = max((ox + 0.5) / 4 - 0.5, 0.0)
                    x0 = min(int(sx), 6)
                    x1 = min(x0 + 1, 6)
                    fx = sx - x0
                    manual_up[oy, ox] = ((1 - fy) * ((1 - fx) * en[y0, x0] + fx * en[y0, x1])
                                         + fy * ((1 - fx) * en[y1, x0] + fx * en[y1, x1]))
            check(np.abs(up[0, 0].numpy() - manual_up).max() < 1e-6,
                  "bilinear x4 align_corners=False matches the clamped formula")

            # Gaussian: a constant stays constant (replicate borders), an impulse
            # spreads as the outer product of the taps.
            const = torch.full((1, 1, 9, 9), 0.7)
            check(torch.allclose(gaussian5(const), const, atol=1e-7),
                  "Gaussian keeps a constant image (edge replication)")
            impulse = torch.zeros(1, 1, 9, 9)
            impulse[0, 0, 4, 4] = 1
            blur = gaussian5(impulse)[0, 0, 2:7, 2:7].numpy()
            check(np.allclose(blur, np.outer(taps, taps), atol=1e-7),
                  "Gaussian impulse response = outer(taps, taps)")
            corner = torch.zeros(1, 1, 9, 9)
            corner[0, 0, 0, 0] = 1
            # replicate border: row/col 0 weight gathers taps[0] + taps[1] + taps[2]
            edge_weight = taps[0] + taps[1] + taps[2]
            check(abs(gaussian5(corner)[0, 0, 0, 0].item() - edge_weight ** 2) < 1e-6,
                  "Gaussian border replicates the edge pixel")

            # T with zero up5 is the identity (ARCHITECTURE.md: T(x) = x + residual)
            with torch.no_grad():
                loaded.T.up5.weight.zero_()
                loaded.T.up5.bias.zero_()
                xin = torch.rand(1, 3, 128, 128) * 2 - 1
                check(torch.equal(loaded.T(xin), xin), "T with zero up5 is the identity")
                out = loaded(xin)
                check(out["e"].shape == (1, 1, 32, 32) and out["m"].shape == (1, 1, 128, 128)
                      and out["t"].shape == (1, 3, 128, 128), "output shapes")
                check(bool(((out["m"] >= 0) & (out["m"] <= 1)).all()), "m in [0, 1]")

            # the straight-through binarization passes e_up's gradient
            e_up = torch.tensor([0.2, 0.7], requires_grad=True)
            hard = (e_up > 0.5).float()
            (e_up + (hard - e_up).detach()).sum().backward()
            check(torch.equal(e_up.grad, torch.ones(2)), "straight-through gradient")

            # eval-mode BatchNorm uses the running statistics
            bn = loaded.M.bn1
            z = torch.randn(2, bn.num_features, 3, 3)
            expected = ((z - bn.running_mean.view(1, -1, 1, 1))
                        / torch.sqrt(bn.running_var.view(1, -1, 1, 1) + BN_EPS)
                        * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1))
            with torch.no_grad():
                check(torch.allclose(bn(z), expected, atol=1e-6),
                      "eval BatchNorm uses running statistics")

    layers = conv_layers(24, 16)
    total = sum(conv_flops(layer) for layer in layers)
    print(f"info T+M convolution FLOPs at 128x128, widths 24/16: {total / 1e9:.4f} GFLOP")
    print(f"{len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--self-test":
        sys.exit(_self_test())
    if len(sys.argv) >= 3 and sys.argv[1] == "--make-random-model":
        # --make-random-model PATH [WIDTH MASK_WIDTH SEED DTYPE]
        args = sys.argv[2:]
        make_random_model(args[0], int(args[1]) if len(args) > 1 else 24,
                          int(args[2]) if len(args) > 2 else 16,
                          int(args[3]) if len(args) > 3 else 0,
                          args[4] if len(args) > 4 else "F32")
        sys.exit(0)
    print("usage: diat_reference.py --self-test | --make-random-model PATH "
          "[WIDTH MASK_WIDTH SEED F32|F16]", file=sys.stderr)
    sys.exit(2)
