#!/usr/bin/python3
"""PyTorch side of the training-step benchmark: diat-train's step in PyTorch.

    /usr/bin/python3 bench/bench_train_torch.py [--threads N] [--steps N]
        [--warmup N] [--batch N] [--parts N] [--layers N]
        [--face-recognition FILE]

The same networks at diat-train's default sizes -- T and M from
bench/diat_reference.py (written from engine/nets/ARCHITECTURE.md), the
critic D and the denoiser DN from ARCHITECTURE.md, and phi, dlib's ResNet-29
face descriptor, with the topology documented at the top of
engine/nets/face-recognition.c and the weights of
models/face-recognition-resnet29.safetensors -- and the same step as
trainer/steps.c:

  5 critic steps:  y = G(x) without a graph; E[D(y)] - E[D(x_ref)]
                   + lambda_gp E[(||grad D(x_hat)|| - 1)^2], the gradient
                   taken with torch.autograd.grad(create_graph=True) so the
                   backward is the exact double backward; Adam over D;
  1 generator step: y = m * T(x) + (1 - m) * x with M's batch norm in
                   training mode and the straight-through binarization;
                   -E[D(y)] + lambda_ap (mean sq. D layer-4 and layer-5
                   feature differences of y and x) + lambda_id (squared
                   embedding distance through phi, 128 -> 150 bilinear resize
                   in the graph) + lambda_pr mean (DN(y) - y)^2
                   + lambda_ar mean_i |mean(m_i) - p|; Adam over T and M.

Settings are diat-train's defaults (trainer/options.c): batch 16, widths T 24,
M 16, D 32, DN 32 x 5, n_critic 5, lambdas gp 10, ap 1, id 1, pr 10, ar 1,
p 0.12 (Eyeglasses), Adam lr 1e-4, betas (0.5, 0.9), eps 1e-8.

The frozen networks (D during the generator step, DN, phi) have
requires_grad off, as one writes it in PyTorch: their parameter gradients
are not computed. Nor are they in the engine's trainer (trainer/setup.c
freezes DN; trainer/steps.c makes D untrainable in the generator step).

Data are random images of the right shape (uniform in [-1, 1]), not decoded
faces: decoding is not what is compared (the engine's trainer decodes on its
own background thread). Weights of T, M, D and DN are random (their values
do not change the work); phi's are the shipped ones.

Reported: median seconds per step (and per critic step, per generator step,
timed inside the same steps), images/s = batch / step time, and with
--parts N the same groups of work bench_train.c times, one at a time, and
with --layers N the same table of single convolutions (forward; backward to
input and weights; backward to the input only) through
torch.ops.aten.convolution_backward.
Lines starting with "RESULT " are parsed by bench/run-train.sh.

As bench_torch.py does, OPENBLAS_CORETYPE is set to this CPU's best core
type before torch loads OpenBLAS (unless the caller set it), so PyTorch is
measured with its best BLAS kernels; convolutions at these sizes mostly go
through oneDNN anyway. And as there, tcmalloc is preloaded where installed
(DIAT_TORCH_MALLOC=system keeps glibc's malloc).
"""

import argparse
import ctypes
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_torch import configure_allocator, configure_blas  # noqa: E402

# diat-train's defaults (trainer/options.c)
WIDTH, MASK_WIDTH, CRITIC_WIDTH = 24, 16, 32
DENOISER_WIDTH, DENOISER_DEPTH = 32, 5
LAMBDA_GP, LAMBDA_AP, LAMBDA_ID, LAMBDA_PR, LAMBDA_AR = 10.0, 1.0, 1.0, 10.0, 1.0
RATIO = 0.12  # Eyeglasses
N_CRITIC = 5
LR, BETAS, ADAM_EPS = 1e-4, (0.5, 0.9), 1e-8
LEAKY = 0.2

PHI_SIZE = 150
PHI_MEAN_RGB = (122.782, 117.001, 104.298)
PHI_BLOCKS = (  # name, in, out, down (engine/nets/face-recognition.c)
    ("conv32_1", 32, 32, 0), ("conv32_2", 32, 32, 0), ("conv32_3", 32, 32, 0),
    ("conv64_down", 32, 64, 1), ("conv64_1", 64, 64, 0), ("conv64_2", 64, 64, 0),
    ("conv64_3", 64, 64, 0), ("conv128_down", 64, 128, 1), ("conv128_1", 128, 128, 0),
    ("conv128_2", 128, 128, 0), ("conv256_down", 128, 256, 1), ("conv256_1", 256, 256, 0),
    ("conv256_2", 256, 256, 0), ("conv256_down_out", 256, 256, 1),
)

# The convolutions that dominate a step (same table as bench_train.c):
# name, in, out, input side, kernel, stride, pad.
CONV_CASES = (
    ("D.conv1", 3, 32, 128, 4, 2, 1), ("D.conv2", 32, 64, 64, 4, 2, 1),
    ("D.conv3", 64, 128, 32, 4, 2, 1), ("D.conv4", 128, 256, 16, 4, 2, 1),
    ("D.conv5", 256, 256, 8, 4, 2, 1), ("DN.conv1", 3, 32, 128, 3, 1, 1),
    ("DN.conv2-4", 32, 32, 128, 3, 1, 1), ("DN.conv5", 32, 3, 128, 3, 1, 1),
    ("phi.stem", 3, 32, 150, 7, 2, 0), ("phi.conv32", 32, 32, 35, 3, 1, 1),
    ("phi.conv64", 64, 64, 17, 3, 1, 1), ("phi.conv128", 128, 128, 8, 3, 1, 1),
    ("phi.conv256", 256, 256, 4, 3, 1, 1),
)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    parser.add_argument("--batch", type=int, default=16, help="faces per step (default 16)")
    parser.add_argument("--parts", type=int, default=2,
                        help="repeats of the per-part timing (default 2; 0 skips it)")
    parser.add_argument("--layers", type=int, default=0,
                        help="repeats of the per-convolution timing (default 0: skip)")
    parser.add_argument("--face-recognition",
                        default=os.path.join(HERE, "..", "models",
                                             "face-recognition-resnet29.safetensors"),
                        help="phi's weights (default models/face-recognition-resnet29.safetensors)")
    parser.add_argument("--device", default="cpu",
                        help="cpu (default) or cuda; on cuda, FP32 without TF32 unless --tf32")
    parser.add_argument("--tf32", action="store_true",
                        help="allow TF32 tensor cores in matmuls and cuDNN convolutions")
    parser.add_argument("--check-phi", metavar="DIR",
                        help="instead of timing: compare phi's embeddings of the chips in DIR "
                             "(tests/data/faces) with face-api's (DIR/face-api-embeddings.txt)")
    args = parser.parse_args()

    allocator = configure_allocator()
    cpu_model, coretype_note = configure_blas(args.threads, "bench_train_torch.py")

    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    import diat_reference as ref

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        # FP32 like the engine's default; PyTorch's own default lets cuDNN use TF32.
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
        torch.backends.cudnn.allow_tf32 = args.tf32

    def sync():
        if cuda:
            torch.cuda.synchronize()
    try:
        openblas = ctypes.CDLL("libopenblas.so.0")
        openblas.openblas_get_corename.restype = ctypes.c_char_p
        blas_core = openblas.openblas_get_corename().decode()
    except (OSError, AttributeError):
        blas_core = "unknown"

    # ------------------------------------------------------------ networks

    class Generator(nn.Module):
        """T and M and the composition y = m * T(x) + (1 - m) * x."""

        def __init__(self):
            super().__init__()
            self.T = ref.TransformNet(WIDTH)
            self.M = ref.MaskNet(MASK_WIDTH)
            with torch.no_grad():  # T starts as the identity, as in diat-train
                self.T.up5.weight.zero_()

        def forward(self, x):
            t = self.T(x)
            m = self.M.masks(x)[2]
            return m * t + (1.0 - m) * x, m

    class Critic(nn.Module):
        """D: five 4x4 stride-2 convolutions with LeakyReLU(0.2), a linear
        score; returns the score and the layer-4 and layer-5 features."""

        def __init__(self, width):
            super().__init__()
            mult = [1, 2, 4, 8, 8]
            ins = [3] + [k * width for k in mult[:4]]
            self.convs = nn.ModuleList(
                nn.Conv2d(ins[i], mult[i] * width, 4, stride=2, padding=1) for i in range(5))
            self.fc = nn.Linear(mult[4] * width * 4 * 4, 1)

        def forward(self, x):
            feats = []
            h = x
            for conv in self.convs:
                h = F.leaky_relu(conv(h), LEAKY)
                feats.append(h)
            return self.fc(h.flatten(1)), feats[3], feats[4]

    class Denoiser(nn.Module):
        """DN(x) = x - conv_L(relu(... relu(conv_1(x))))."""

        def __init__(self, width, depth):
            super().__init__()
            chans = [3] + [width] * (depth - 1) + [3]
            self.convs = nn.ModuleList(
                nn.Conv2d(chans[i], chans[i + 1], 3, padding=1) for i in range(depth))

        def forward(self, x):
            h = x
            for i, conv in enumerate(self.convs):
                h = conv(h)
                if i < len(self.convs) - 1:
                    h = F.relu(h)
            return x - h

    class FaceRecognition(nn.Module):
        """phi: dlib's ResNet-29 face descriptor, frozen (buffers, no
        parameters). Input: faces in [-1, 1] at any size, resized to 150x150
        (bilinear, align_corners=False); the input normalisation
        ((255 (x + 1) / 2 - mean) / 255) folded into the stem, as the
        engine does."""

        def __init__(self, path):
            super().__init__()
            tensors, metadata = ref.read_safetensors(path)
            if metadata.get("format") != "diat-face-recognition":
                raise ValueError(f"{path}: not a diat-face-recognition file")
            stem_w = torch.from_numpy(tensors["conv32_down.weight"].copy()).double()
            stem_b = torch.from_numpy(tensors["conv32_down.bias"].copy()).double()
            offset = torch.tensor([0.5 - c / 255.0 for c in PHI_MEAN_RGB], dtype=torch.float64)
            stem_b = stem_b + (stem_w * offset.view(1, 3, 1, 1)).sum(dim=(1, 2, 3))
            self.register_buffer("stem_weight", (0.5 * stem_w).float())
            self.register_buffer("stem_bias", stem_b.float())
            for name, _, _, _ in PHI_BLOCKS:
                for conv in ("conv1", "conv2"):
                    for kind in ("weight", "bias"):
                        key = f"{name}.{conv}.{kind}"
                        self.register_buffer(key.replace(".", "_"),
                                             torch.from_numpy(tensors[key].copy()))
            self.register_buffer("fc_weight", torch.from_numpy(tensors["fc.weight"].copy()))

        def block(self, h, name, cin, cout, down):
            w1, b1 = getattr(self, f"{name}_conv1_weight"), getattr(self, f"{name}_conv1_bias")
            w2, b2 = getattr(self, f"{name}_conv2_weight"), getattr(self, f"{name}_conv2_bias")
            hidden = F.relu(F.conv2d(h, w1, b1, stride=2 if down else 1, padding=0 if down else 1))
            branch = F.conv2d(hidden, w2, b2, padding=1)
            if not down:
                return F.relu(branch + h)
            skip = F.avg_pool2d(h, 2, 2)
            skip = F.pad(skip, (0, 0, 0, 0, 0, cout - cin))
            # dlib adds tensors of different sizes aligned at the top-left corner
            branch = F.pad(branch, (0, skip.shape[3] - branch.shape[3],
                                    0, skip.shape[2] - branch.shape[2]))
            return F.relu(branch + skip)

        def forward(self, x):
            if x.shape[2] != PHI_SIZE or x.shape[3] != PHI_SIZE:
                x = F.interpolate(x, size=(PHI_SIZE, PHI_SIZE), mode="bilinear",
                                  align_corners=False)
            h = F.relu(F.conv2d(x, self.stem_weight, self.stem_bias, stride=2))
            h = F.max_pool2d(h, 3, 2)
            for spec in PHI_BLOCKS:
                h = self.block(h, *spec)
            return F.linear(h.mean(dim=(2, 3)), self.fc_weight)

    if args.check_phi:
        return check_phi(FaceRecognition(args.face_recognition), args.check_phi, torch)

    n = args.batch
    G = Generator().train()
    D = Critic(CRITIC_WIDTH).train()
    DN = Denoiser(DENOISER_WIDTH, DENOISER_DEPTH)
    phi = FaceRecognition(args.face_recognition)
    for module in (G, D, DN, phi):
        module.to(device)
    for p in DN.parameters():
        p.requires_grad_(False)
    opt_g = torch.optim.Adam(G.parameters(), lr=LR, betas=BETAS, eps=ADAM_EPS)
    opt_d = torch.optim.Adam(D.parameters(), lr=LR, betas=BETAS, eps=ADAM_EPS)

    # Random batches of the right shape, cycled (see the docstring).
    pool = [torch.rand(n, 3, 128, 128, device=device) * 2 - 1 for _ in range(8)]
    cursor = [0]

    def next_batch():
        cursor[0] = (cursor[0] + 2) % len(pool)
        return pool[cursor[0]], pool[cursor[0] + 1]

    def set_critic_trainable(flag):
        for p in D.parameters():
            p.requires_grad_(flag)

    # ------------------------------------------------------------ the step

    def critic_step():
        x, x_ref = next_batch()
        with torch.no_grad():
            y, _ = G(x)
        opt_d.zero_grad(set_to_none=True)
        d_real = D(x_ref)[0].mean()
        d_fake = D(y)[0].mean()
        e = torch.rand(n, 1, 1, 1, device=device)
        x_hat = (e * x_ref + (1 - e) * y).requires_grad_(True)
        (grad,) = torch.autograd.grad(D(x_hat)[0].sum(), x_hat, create_graph=True)
        penalty = LAMBDA_GP * ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()
        (d_fake - d_real + penalty).backward()
        opt_d.step()

    def generator_step():
        x, _ = next_batch()
        set_critic_trainable(False)
        opt_g.zero_grad(set_to_none=True)
        y, m = G(x)
        with torch.no_grad():
            _, f4x, f5x = D(x)
            embed_x = phi(x)
        score, f4y, f5y = D(y)
        loss = -score.mean()
        loss = loss + LAMBDA_AP * (F.mse_loss(f4y, f4x) + F.mse_loss(f5y, f5x))
        loss = loss + LAMBDA_ID * ((phi(y) - embed_x) ** 2).sum() / n
        loss = loss + LAMBDA_PR * F.mse_loss(DN(y), y)
        loss = loss + LAMBDA_AR * (m.mean(dim=(1, 2, 3)) - RATIO).abs().mean()
        loss.backward()
        opt_g.step()
        set_critic_trainable(True)

    def step():
        c0 = time.process_time()  # CPU time of every thread, as bench_train.c
        sync()
        t0 = time.perf_counter()
        for _ in range(N_CRITIC):
            critic_step()
        sync()
        t1 = time.perf_counter()
        generator_step()
        sync()
        t2 = time.perf_counter()
        return t2 - t0, (t1 - t0) / N_CRITIC, t2 - t1, time.process_time() - c0

    # ------------------------------------------------------------ parts

    part_names = [
        ("tm_forward", "T+M forward + composition (1 batch)", N_CRITIC + 1),
        ("d_real_fake", "D fwd+bwd on references and fakes", N_CRITIC),
        ("gp_gradient", "GP: D fwd on x_hat + input gradient", N_CRITIC),
        ("gp_double", "GP: penalty + double backward", N_CRITIC),
        ("adam_d", "Adam over D", N_CRITIC),
        ("d_perceptual", "D on x and y + backward (adv, ap)", 1),
        ("phi", "phi(x), phi(y) + backward to y (id)", 1),
        ("dn", "DN(y) + backward to y (pr)", 1),
        ("tm_backward", "T and M backward (+ compose, ratio)", 1),
        ("adam_g", "Adam over T and M", 1),
    ]

    def time_parts_once():
        s = {}
        x, x_ref = next_batch()
        sync()
        t = time.perf_counter()

        def lap(key):
            nonlocal t
            sync()
            now = time.perf_counter()
            s[key] = now - t
            t = now

        with torch.no_grad():
            y, _ = G(x)
        lap("tm_forward")
        opt_d.zero_grad(set_to_none=True)
        (D(y)[0].mean() - D(x_ref)[0].mean()).backward()
        lap("d_real_fake")
        e = torch.rand(n, 1, 1, 1, device=device)
        x_hat = (e * x_ref + (1 - e) * y).requires_grad_(True)
        (grad,) = torch.autograd.grad(D(x_hat)[0].sum(), x_hat, create_graph=True)
        lap("gp_gradient")
        (LAMBDA_GP * ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()).backward()
        lap("gp_double")
        opt_d.step()
        lap("adam_d")

        set_critic_trainable(False)
        y_leaf = y.detach().requires_grad_(True)
        sync()
        t = time.perf_counter()
        with torch.no_grad():
            _, f4x, f5x = D(x)
        score, f4y, f5y = D(y_leaf)
        (-score.mean() + LAMBDA_AP * (F.mse_loss(f4y, f4x) + F.mse_loss(f5y, f5x))).backward()
        lap("d_perceptual")
        with torch.no_grad():
            embed_x = phi(x)
        (LAMBDA_ID * ((phi(y_leaf) - embed_x) ** 2).sum() / n).backward()
        lap("phi")
        (LAMBDA_PR * F.mse_loss(DN(y_leaf), y_leaf)).backward()
        lap("dn")
        set_critic_trainable(True)
        opt_g.zero_grad(set_to_none=True)
        y, m = G(x)
        ratio = LAMBDA_AR * (m.mean(dim=(1, 2, 3)) - RATIO).abs().mean()
        sync()
        t = time.perf_counter()
        torch.autograd.backward([y, ratio], [y_leaf.grad, None])
        lap("tm_backward")
        opt_g.step()
        lap("adam_g")
        for p in list(D.parameters()) + list(DN.parameters()):
            p.grad = None
        return s

    # ------------------------------------------------------------ run

    print(f"machine: {cpu_model}, {os.cpu_count()} online cores, load average "
          f"{' '.join('%.2f' % v for v in os.getloadavg())}")
    print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} thread(s); OpenBLAS core "
          f"{blas_core} (OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}, "
          f"{coretype_note}); oneDNN {'on' if torch.backends.mkldnn.is_available() else 'off'}; "
          f"allocator {allocator}")
    if cuda:
        print(f"device: {torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}, cuDNN "
              f"{torch.backends.cudnn.version()}, TF32 {'on' if args.tf32 else 'off'}")
    print(f"step: batch {n}, widths T {WIDTH} / M {MASK_WIDTH} / D {CRITIC_WIDTH}, DN "
          f"{DENOISER_WIDTH} x {DENOISER_DEPTH}, n_critic {N_CRITIC}, lambda gp {LAMBDA_GP:g} "
          f"ap {LAMBDA_AP:g} id {LAMBDA_ID:g} pr {LAMBDA_PR:g} ar {LAMBDA_AR:g}, p {RATIO}, "
          f"Adam lr {LR:g} betas {BETAS}")
    print(f"data: random images in [-1, 1] (no decoding); phi: {args.face_recognition}; "
          f"frozen nets' weight gradients: not computed\n")
    sys.stdout.flush()

    for _ in range(args.warmup):
        step()
    samples = [step() for _ in range(args.steps)]
    step_s = statistics.median(s[0] for s in samples)
    critic_s = statistics.median(s[1] for s in samples)
    gen_s = statistics.median(s[2] for s in samples)
    cpu_s = statistics.median(s[3] for s in samples)
    best = min(s[0] for s in samples)
    print(f"training step ({N_CRITIC} critic + 1 generator), {args.steps} timed after "
          f"{args.warmup} warm-up:")
    print(f"  step      {step_s:8.3f} s median (best {best:.3f})  {n / step_s:7.2f} images/s "
          f"(generator, batch {n})")
    print(f"  critic    {critic_s:8.3f} s per critic step (x{N_CRITIC} = {critic_s * N_CRITIC:.3f} "
          f"s, {100 * critic_s * N_CRITIC / step_s:.0f}% of the step); "
          f"{3 * N_CRITIC * n / step_s:.1f} critic images/s")
    print(f"  generator {gen_s:8.3f} s ({100 * gen_s / step_s:.0f}% of the step)")
    print(f"  CPU time  {cpu_s:8.3f} s per step, all threads (wall x threads = "
          f"{step_s * args.threads:.3f} s)\n")
    results = {"torch_step_s": step_s, "torch_images_per_s": n / step_s,
               "torch_critic_step_s": critic_s, "torch_generator_step_s": gen_s,
               "torch_step_cpu_s": cpu_s}

    if args.parts > 0:
        time_parts_once()  # untimed: the first pass meets new shapes and graphs
        runs = [time_parts_once() for _ in range(args.parts)]
        print(f"parts (the same groups as bench_train.c, one at a time; median of {args.parts} "
              "after one untimed pass):")
        total = 0.0
        for key, label, times in part_names:
            value = statistics.median(r[key] for r in runs)
            total += value * times
            print(f"  {label:38} {1e3 * value:8.1f} ms  x{times} per step = "
                  f"{1e3 * value * times:8.1f} ms ({100 * value * times / step_s:4.1f}%)")
            results[f"torch_part_{key}_ms"] = 1e3 * value
        print(f"  {'sum':38} {'':8}     {1e3 * total:13.1f} ms of the measured "
              f"{1e3 * step_s:.1f} ms")

    if args.layers > 0:
        time_layers(torch, F, n, args.layers)

    for key, value in results.items():
        print(f"RESULT {key}={value:.4f}")
    return 0


def time_layers(torch, F, batch, repeats):
    """Each convolution of CONV_CASES alone: F.conv2d, then
    aten.convolution_backward for (dx, dW, db) and for dx only."""
    print(f"\nconvolutions alone, batch {batch} (median of {repeats}; GFLOP/s = 2 MACs per tap; "
          f"backward counts 2x the forward's FLOPs for dx + dW, 1x for dx):")
    print(f"  {'layer':11} {'shape':20} {'GFLOP':>8} | {'fwd ms':>9} {'GFLOP/s':>7} | "
          f"{'dx+dW ms':>9} {'GFLOP/s':>7} | {'dx ms':>9} {'GFLOP/s':>7}")
    backward = torch.ops.aten.convolution_backward
    with torch.no_grad():
        for name, cin, cout, side, k, stride, pad in CONV_CASES:
            out_side = (side + 2 * pad - k) // stride + 1
            x = torch.rand(batch, cin, side, side) * 2 - 1
            w = torch.rand(cout, cin, k, k) * 2 - 1
            b = torch.rand(cout) * 2 - 1
            geometry = ([stride, stride], [pad, pad], [1, 1], False, [0, 0], 1)
            fwd, both, dx_only = [], [], []
            for r in range(repeats + 1):  # the first run is untimed
                t0 = time.perf_counter()
                y = F.conv2d(x, w, b, stride=stride, padding=pad)
                t1 = time.perf_counter()
                backward(y, x, w, [cout], *geometry, [True, True, True])
                t2 = time.perf_counter()
                backward(y, x, w, [cout], *geometry, [True, False, False])
                t3 = time.perf_counter()
                if r:
                    fwd.append(t1 - t0)
                    both.append(t2 - t1)
                    dx_only.append(t3 - t2)
            flops = 2.0 * batch * cout * out_side * out_side * cin * k * k
            f, a, i = (statistics.median(v) for v in (fwd, both, dx_only))
            shape = f"{side}^2 {cin}->{cout} k{k} s{stride}"
            print(f"  {name:11} {shape:20} {flops / 1e9:8.3f} | {1e3 * f:9.2f} "
                  f"{flops / f / 1e9:7.1f} | {1e3 * a:9.2f} {2 * flops / a / 1e9:7.1f} | "
                  f"{1e3 * i:9.2f} {flops / i / 1e9:7.1f}")


def check_phi(phi, folder, torch):
    """phi on dlib's example chips (150x150, no resize) against the embeddings
    face-api computed (the same check as tests/test_face_recognition.c)."""
    import numpy as np
    from PIL import Image

    worst = 0.0
    count = 0
    with open(os.path.join(folder, "face-api-embeddings.txt")) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            name, *values = line.split()
            expected = np.array([float(v) for v in values], dtype=np.float64)
            rgb = np.asarray(Image.open(os.path.join(folder, name)).convert("RGB"), np.float32)
            x = torch.from_numpy(rgb / 127.5 - 1.0).permute(2, 0, 1).unsqueeze(0).contiguous()
            with torch.no_grad():
                got = phi(x)[0].double().numpy()
            worst = max(worst, float(np.abs(got - expected).max()))
            count += 1
    ok = count > 0 and worst <= 1e-3
    print(f"phi on {count} chips: max |PyTorch - face-api| = {worst:.3g} "
          f"({'ok' if ok else 'FAIL'}, tolerance 1e-3)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
