#!/usr/bin/python3
"""Cross-check of the engine's T and M (and D, DN) against PyTorch.

    test_torch_reference.py PATH/TO/torch_crosscheck

Writes a random model (widths DIAT_DEFAULT_WIDTH / DIAT_DEFAULT_MASK_WIDTH =
24 / 16, fixed seed) as F32 and as F16, and a random face; runs the engine
through tests/torch_crosscheck.c and bench/diat_reference.py (in float64, so
the differences measured are the engine's own float32 error) and compares:

  - T(x) and e: max |engine - reference| <= 1e-4;
  - m (from the edit and from diat_mask_forward) and y: the same bound, except near pixels where the reference's
    upsampled e lies within 1e-4 of the 0.5 threshold (there a float32
    rounding may legitimately flip the binary mask; the 5x5 Gaussian spreads
    a flip two pixels around). Such pixels must be rare.

Exit 77 (meson's "skipped") when torch cannot be imported, 1 on a mismatch.
"""

import os
import subprocess
import sys
import tempfile

SKIP = 77
TOLERANCE = 1e-4
AMBIGUITY = 1e-4          # |e_up - 0.5| below this may binarize either way
MAX_AMBIGUOUS_FRACTION = 0.005
WIDTH, MASK_WIDTH = 24, 16  # DIAT_DEFAULT_WIDTH, DIAT_DEFAULT_MASK_WIDTH
SEED = 20161017           # any fixed value; the date of arXiv 1610.05586
SIZE = 128

try:
    import numpy as np
    import torch
except ImportError as error:
    print(f"SKIP: PyTorch is not importable by {sys.executable} ({error})")
    sys.exit(SKIP)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.environ.get("DIAT_SOURCE_ROOT", os.path.dirname(HERE)),
                                "bench"))
import diat_reference as ref  # noqa: E402


def random_face(seed):
    """A face-sized image with smooth structure plus noise, in [0.02, 0.98]
    interleaved RGB: smooth regions give the mask network something other
    than white noise to respond to."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    image = np.zeros((SIZE, SIZE, 3))
    for channel in range(3):
        for _ in range(4):
            fy, fx, phase = rng.uniform(0.5, 4.0), rng.uniform(0.5, 4.0), rng.uniform(0, 6.3)
            image[..., channel] += np.sin(2 * np.pi * (fy * yy + fx * xx) + phase)
    image = 0.5 + 0.15 * image + 0.1 * rng.standard_normal(image.shape)
    return np.clip(image, 0.02, 0.98).astype(np.float32)


def read_floats(path, shape):
    values = np.fromfile(path, dtype=np.float32)
    if values.size != int(np.prod(shape)):
        raise ValueError(f"{path}: {values.size} floats, expected {int(np.prod(shape))}")
    return values.reshape(shape)


def dilate(flags, radius):
    """Pixels within `radius` (Chebyshev) of a set flag."""
    padded = np.pad(flags, radius)
    out = np.zeros_like(flags)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out |= padded[dy:dy + flags.shape[0], dx:dx + flags.shape[1]]
    return out


def check_one(helper, workdir, dtype, failures):
    model_path = os.path.join(workdir, f"random-{dtype}.safetensors")
    input_path = os.path.join(workdir, "face.f32")
    prefix = os.path.join(workdir, f"engine-{dtype}")
    ref.make_random_model(model_path, WIDTH, MASK_WIDTH, seed=SEED, dtype=dtype)
    face = random_face(SEED + 1)
    face.tofile(input_path)

    run = subprocess.run([helper, model_path, input_path, prefix], capture_output=True,
                         text=True, timeout=300)
    if run.returncode != 0:
        failures.append(f"[{dtype}] torch_crosscheck exited {run.returncode}: "
                        f"{run.stderr.strip()}")
        return
    engine_t = read_floats(prefix + "-transform.f32", (3, SIZE, SIZE))
    engine_y = read_floats(prefix + "-result.f32", (SIZE, SIZE, 3))
    engine_m = read_floats(prefix + "-mask.f32", (SIZE, SIZE))
    engine_net_m = read_floats(prefix + "-net-mask.f32", (SIZE, SIZE))
    engine_e = read_floats(prefix + "-soft-mask.f32", (SIZE // 4, SIZE // 4))
    engine_taps = read_floats(prefix + "-taps.f32", (5,))

    # The reference in float64 on the very weights the engine read (F16 files
    # are widened identically by both).
    model, _ = ref.load_model(model_path)
    model = model.double()
    x = torch.from_numpy(face.astype(np.float64)).permute(2, 0, 1).unsqueeze(0) * 2 - 1
    with torch.no_grad():
        out = model(x)
    ref_t = out["t"][0].numpy()
    ref_e = out["e"][0, 0].numpy()
    ref_e_up = out["e_up"][0, 0].numpy()
    ref_m = out["m"][0, 0].numpy()
    ref_y = (out["y"][0].permute(1, 2, 0).numpy() + 1) / 2

    def report(name, diff, tol, note=""):
        ok = diff <= tol
        print(f"{'ok  ' if ok else 'FAIL'} [{dtype}] {name}: max |engine - torch| = {diff:.3g}"
              f" (tolerance {tol:g}){note}")
        if not ok:
            failures.append(f"[{dtype}] {name}: {diff:.3g} > {tol:g}")

    report("Gaussian taps", float(np.abs(engine_taps - ref.gaussian5_taps()).max()), 1e-7)
    report("T(x)", float(np.abs(engine_t - ref_t).max()), TOLERANCE)
    report("e", float(np.abs(engine_e - ref_e).max()), TOLERANCE)

    ambiguous = np.abs(ref_e_up - 0.5) <= AMBIGUITY
    spread = dilate(ambiguous, ref.GAUSSIAN_RADIUS)
    count = int(ambiguous.sum())
    fraction = count / ambiguous.size
    print(f"     [{dtype}] {count} of {ambiguous.size} upsampled-e pixels within {AMBIGUITY:g} "
          f"of 0.5 ({spread.sum()} m pixels excused around them)")
    if fraction > MAX_AMBIGUOUS_FRACTION:
        failures.append(f"[{dtype}] {count} ambiguous mask pixels: too many for the check "
                        "to mean anything")
    coverage = float((ref_e_up > 0.5).mean())
    if not 0.05 <= coverage <= 0.95:
        failures.append(f"[{dtype}] reference mask covers {coverage:.1%}: the random model "
                        "no longer exercises the composition")
    for name, mask in (("m (edit)", engine_m), ("m (diat_mask_forward)", engine_net_m)):
        diff_m = np.abs(mask - ref_m)
        flipped = int((diff_m > TOLERANCE).sum())
        report(name, float(np.where(spread, 0, diff_m).max()), TOLERANCE,
               f", coverage {coverage:.1%}, {flipped} pixels differ in all")
    # The edit's [0, 1] result may be clamped; compare both clamped.
    diff_y = np.abs(np.clip(engine_y, 0, 1) - np.clip(ref_y, 0, 1))
    report("y", float(np.where(spread[..., None], 0, diff_y).max()), TOLERANCE)


CRITIC_WIDTH, DENOISER_WIDTH, DENOISER_DEPTH = 4, 8, 4  # as in torch_crosscheck.c


def check_critic_denoiser(helper, workdir, failures):
    """D and DN (not part of model files) against torch.nn definitions written
    here from engine/nets/ARCHITECTURE.md."""
    F = torch.nn.functional
    rng = np.random.default_rng(SEED + 2)
    widths = [CRITIC_WIDTH * m for m in (1, 2, 4, 8, 8)]
    tensors = {}
    for i, (cin, cout) in enumerate(zip([3] + widths[:-1], widths)):
        bound = np.sqrt(6.0 / (cin * 16))
        tensors[f"D.conv{i + 1}.weight"] = rng.uniform(-bound, bound, (cout, cin, 4, 4))
        tensors[f"D.conv{i + 1}.bias"] = rng.uniform(-0.1, 0.1, cout)
    tensors["D.fc.weight"] = rng.uniform(-0.05, 0.05, (1, widths[-1] * 16))
    tensors["D.fc.bias"] = rng.uniform(-0.1, 0.1, 1)
    channels = [3] + [DENOISER_WIDTH] * (DENOISER_DEPTH - 1) + [3]
    for i in range(DENOISER_DEPTH):
        bound = np.sqrt(6.0 / (channels[i] * 9))
        tensors[f"DN.conv{i + 1}.weight"] = rng.uniform(-bound, bound,
                                                        (channels[i + 1], channels[i], 3, 3))
        tensors[f"DN.conv{i + 1}.bias"] = rng.uniform(-0.1, 0.1, channels[i + 1])
    weights_path = os.path.join(workdir, "critic-denoiser.safetensors")
    ref.write_safetensors(weights_path, tensors)
    x = rng.uniform(-1, 1, (2, 3, SIZE, SIZE)).astype(np.float32)
    input_path = os.path.join(workdir, "pair.f32")
    x.tofile(input_path)
    prefix = os.path.join(workdir, "engine-dd")
    run = subprocess.run([helper, "--critic-denoiser", weights_path, input_path, prefix],
                         capture_output=True, text=True, timeout=300)
    if run.returncode != 0:
        failures.append(f"torch_crosscheck --critic-denoiser exited {run.returncode}: "
                        f"{run.stderr.strip()}")
        return
    w = {k: torch.from_numpy(np.asarray(v, dtype=np.float32).astype(np.float64))
         for k, v in tensors.items()}
    h = torch.from_numpy(x.astype(np.float64))
    features = []
    with torch.no_grad():
        for i in range(5):
            h = F.leaky_relu(F.conv2d(h, w[f"D.conv{i + 1}.weight"], w[f"D.conv{i + 1}.bias"],
                                      stride=2, padding=1), 0.2)
            features.append(h)
        score = F.linear(h.flatten(1), w["D.fc.weight"], w["D.fc.bias"])
        d = torch.from_numpy(x.astype(np.float64))
        for i in range(DENOISER_DEPTH):
            d = F.conv2d(d, w[f"DN.conv{i + 1}.weight"], w[f"DN.conv{i + 1}.bias"], padding=1)
            if i < DENOISER_DEPTH - 1:
                d = F.relu(d)
        denoised = torch.from_numpy(x.astype(np.float64)) - d
    for name, expected in (("score", score), ("feat4", features[3]), ("feat5", features[4]),
                           ("denoised", denoised)):
        got = read_floats(f"{prefix}-{name}.f32", tuple(expected.shape))
        diff = float(np.abs(got - expected.numpy()).max())
        ok = diff <= TOLERANCE
        print(f"{'ok  ' if ok else 'FAIL'} critic/denoiser {name}: max |engine - torch| = "
              f"{diff:.3g} (tolerance {TOLERANCE:g})")
        if not ok:
            failures.append(f"critic/denoiser {name}: {diff:.3g} > {TOLERANCE:g}")


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    helper = sys.argv[1]
    torch.set_num_threads(1)
    failures = []
    with tempfile.TemporaryDirectory(prefix="diat-torch-") as workdir:
        for dtype in ("F32", "F16"):
            check_one(helper, workdir, dtype, failures)
        check_critic_denoiser(helper, workdir, failures)
    for failure in failures:
        print("FAIL " + failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
