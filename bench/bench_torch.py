#!/usr/bin/python3
"""PyTorch side of the inference benchmark: the same T and M, same weights.

    /usr/bin/python3 bench/bench_torch.py [--threads N] [--model PATH]
                                          [--repeats N] [--batch N]

Runs bench/diat_reference.py's networks in eval mode under torch.no_grad()
with torch.set_num_threads(N): T(x) plus the mask path (e, upsampling,
binarization, Gaussian) -- what the engine's diat_transform_forward +
diat_mask_forward compute -- at batch 1 and at batch N, medians after
warm-up; then each convolution alone (F.conv2d on the real shapes).
FLOPs are counted exactly as bench_inference.c counts them (2 * MACs of the
convolutions). Lines starting with "RESULT " are parsed by bench/run.sh.

Fairness: PyTorch 1.13 runs batch-1 3x3 convolutions through im2col + the
system BLAS (its oneDNN path is taken only for larger inputs), and Debian's
OpenBLAS picks its slow SSE3 kernels on recent Xeons. Unless the caller has
set OPENBLAS_CORETYPE, we set it to the best core type for this CPU before
torch loads OpenBLAS, so PyTorch is measured at its best, not handicapped.

Likewise the allocator: glibc's malloc hands blocks over ~32 MB straight
back to the kernel, so PyTorch maps its large activations afresh on every
call, and on a virtual machine where a page fault costs ~10 us (the AMD
machine of 2026-11-29: 11.5 us per 4 KB page) that alone slowed its DN
convolutions tenfold. PyTorch's own performance guide recommends tcmalloc
or jemalloc on CPU; where Debian's libtcmalloc-minimal4 is installed the
script re-executes itself with it preloaded (DIAT_TORCH_MALLOC=system
keeps glibc's malloc) and says which allocator ran.
"""

import argparse
import ctypes
import os
import statistics
import sys
import tempfile
import time

FMA_PEAK_GFLOPS_PER_CORE = 169.0  # DESIGN.md, "Machine facts"


def cpu_flags_and_model():
    flags, model = set(), "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
                elif line.startswith("model name") and model == "unknown CPU":
                    model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return flags, model


def best_openblas_coretype(flags):
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
        return "SkylakeX"
    if {"avx2", "fma"} <= flags:
        return "Haswell"
    return None


TCMALLOC_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64",
                 "/usr/lib")


def configure_allocator():
    """Before torch is imported: re-execute this script with tcmalloc
    preloaded where it is installed (see the module docstring). Returns the
    allocator's name for the report."""
    preload = os.environ.get("LD_PRELOAD", "")
    if "tcmalloc" in preload or "jemalloc" in preload:
        return f"preloaded {os.path.basename(preload.split(':')[0])}"
    if os.environ.get("DIAT_TORCH_MALLOC") == "system":
        return "glibc malloc (DIAT_TORCH_MALLOC=system)"
    for folder in TCMALLOC_DIRS:
        path = os.path.join(folder, "libtcmalloc_minimal.so.4")
        if os.path.exists(path):
            os.environ["LD_PRELOAD"] = f"{path}:{preload}" if preload else path
            os.execv(sys.executable, [sys.executable] + sys.argv)
    return "glibc malloc (libtcmalloc-minimal4 not installed)"


def configure_blas(threads, script):
    """Before torch is imported: give its OpenBLAS this CPU's best kernels
    (unless the caller chose) and the thread count. Returns (CPU model, a
    note on who set OPENBLAS_CORETYPE)."""
    flags, cpu_model = cpu_flags_and_model()
    note = "set by the caller"
    if "OPENBLAS_CORETYPE" not in os.environ:
        coretype = best_openblas_coretype(flags)
        if coretype:
            os.environ["OPENBLAS_CORETYPE"] = coretype
            note = f"set by {script} for this CPU"
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(threads))
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    return cpu_model, note


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    parser.add_argument("--model", help="model file (default: random weights, widths 24/16)")
    parser.add_argument("--repeats", type=int, default=50,
                        help="timed runs at batch 1 (batch N: a quarter as many)")
    parser.add_argument("--batch", type=int, default=16, help="the large batch (default 16)")
    args = parser.parse_args()

    allocator = configure_allocator()
    cpu_model, coretype_note = configure_blas(args.threads, "bench_torch.py")

    import torch
    import torch.nn.functional as F

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import diat_reference as ref

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    try:
        openblas = ctypes.CDLL("libopenblas.so.0")
        openblas.openblas_get_corename.restype = ctypes.c_char_p
        blas_core = openblas.openblas_get_corename().decode()
    except (OSError, AttributeError):
        blas_core = "unknown"

    with tempfile.TemporaryDirectory(prefix="diat-bench-torch-") as tmp:
        model_path = args.model
        if not model_path:
            model_path = os.path.join(tmp, "random.safetensors")
            ref.make_random_model(model_path, 24, 16, seed=0)
        model, metadata = ref.load_model(model_path)

    layers = ref.conv_layers(model.width, model.mask_width)
    flops_per_image = sum(ref.conv_flops(layer) for layer in layers)
    peak = FMA_PEAK_GFLOPS_PER_CORE * min(args.threads, os.cpu_count() or 1)
    repeats_n = max(3, args.repeats // 4)

    print(f"machine: {cpu_model}, {os.cpu_count()} online cores")
    print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} thread(s); OpenBLAS core "
          f"{blas_core} (OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}, "
          f"{coretype_note}); oneDNN {'on' if torch.backends.mkldnn.is_available() else 'off'}; "
          f"allocator {allocator}")
    print(f"model: {args.model or 'random weights (diat_reference.make_random_model)'}; "
          f"widths T {model.width}, M {model.mask_width}")
    print(f"T+M convolutions: {flops_per_image / 1e9:.4f} GFLOP per 128x128 image\n")

    def run_nets(x):
        model.T(x)
        model.M.masks(x)

    def time_median(fn, warmup, repeats):
        for _ in range(warmup):
            fn()
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - start)
        return statistics.median(samples)

    results = {}
    print(f"T+M inference (medians; {args.repeats} runs at batch 1, {repeats_n} at batch "
          f"{args.batch})")
    with torch.no_grad():
        for batch, repeats in ((1, args.repeats), (args.batch, repeats_n)):
            x = torch.rand(batch, 3, 128, 128) * 1.8 - 0.9
            seconds = time_median(lambda: run_nets(x), 3 if batch == 1 else 1, repeats)
            gflops = flops_per_image * batch / seconds / 1e9
            print(f"{'PyTorch T + M forward':34} batch {batch:2d}: {seconds * 1e3:8.2f} ms  "
                  f"{batch / seconds:8.1f} images/s  {gflops:6.1f} GFLOP/s  "
                  f"({100 * gflops / peak:4.1f}% of peak)")
            results[f"torch_batch{batch}_ms"] = seconds * 1e3
            results[f"torch_batch{batch}_images_per_s"] = batch / seconds
        results["torch_batch1_gflops"] = flops_per_image / (results["torch_batch1_ms"] / 1e3) / 1e9

        print("\nconvolutions alone (F.conv2d; medians)")
        print(f"  {'layer':9} {'input, channels':24} {'MFLOP':>8} | {'b1 ms':>8} {'GFLOP/s':>7} "
              f"{'peak':>6} | {'b%d ms' % args.batch:>8} {'GFLOP/s':>7} {'peak':>6}")
        totals = {"T": [0.0, 0.0, 0.0, 0.0], "M": [0.0, 0.0, 0.0, 0.0]}
        state = model.state_dict()
        for layer in layers:
            weight = state[layer["name"] + ".weight"]
            bias = state.get(layer["name"] + ".bias")
            row = []
            for batch, repeats in ((1, args.repeats), (args.batch, repeats_n)):
                x = torch.randn(batch, layer["cin"], layer["in_side"], layer["in_side"])
                seconds = time_median(
                    lambda: F.conv2d(x, weight, bias, stride=layer["stride"], padding=layer["pad"]),
                    3 if batch == 1 else 1, repeats)
                flops = ref.conv_flops(layer, batch)
                row += [flops, seconds]
            group = totals[layer["name"][0]]
            for i in range(4):
                group[i] += row[i]
            shape = (f"{layer['in_side']}x{layer['in_side']} {layer['cin']:4d}->"
                     f"{layer['cout']:<4d} s{layer['stride']}")
            g1, gn = row[0] / row[1] / 1e9, row[2] / row[3] / 1e9
            print(f"  {layer['name']:9} {shape:24} {row[0] / 1e6:8.1f} | {row[1] * 1e3:8.3f} "
                  f"{g1:7.1f} {100 * g1 / peak:5.1f}% | {row[3] * 1e3:8.3f} {gn:7.1f} "
                  f"{100 * gn / peak:5.1f}%")
        totals["TM"] = [a + b for a, b in zip(totals["T"], totals["M"])]
        for key, label in (("T", "all of T"), ("M", "all of M"), ("TM", "all of T and M")):
            f1, s1, fn, sn = totals[key]
            g1, gn = f1 / s1 / 1e9, fn / sn / 1e9
            print(f"  {label:34} {f1 / 1e6:8.1f} | {s1 * 1e3:8.3f} {g1:7.1f} "
                  f"{100 * g1 / peak:5.1f}% | {sn * 1e3:8.3f} {gn:7.1f} {100 * gn / peak:5.1f}%")
            results[f"torch_conv_{key}_batch1_gflops"] = g1
            results[f"torch_conv_{key}_batch{args.batch}_gflops"] = gn

    for key, value in results.items():
        print(f"RESULT {key}={value:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
