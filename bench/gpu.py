"""What cavkit promises on an accelerator, in one table (issue 15).

Sections, each timed in this process:

1. **Training step** of the full-size CAV-MAE and CAV-MAE Sync (forward, MAE + contrastive loss with
   weights 1 and 0.01, backward, Adam step) in four settings:

   ===========================  ===================================================================
   fp32 eager                   the published model's arithmetic (plain softmax(q·kᵀ)·v attention)
   fp16 eager + GradScaler      the published training setting (``torch.cuda.amp`` autocast)
   bf16 sdpa                    cavkit's default on GPUs: bf16 autocast, ``scaled_dot_product_attention``
   bf16 sdpa + compile          the same under ``torch.compile``
   ===========================  ===================================================================

   Per row: step time (the fastest of ``--steps`` after warm-up), samples/s, peak allocated memory
   (weights, Adam state and activations), MFU (model FLOPs of the step counted with
   ``torch.utils.flop_counter`` divided by step time and ``--peak-tflops``, the bf16 dense peak, for
   every row) and the first step's loss on the same batch and masking noise (rows must agree).
2. **Largest per-device batch** that fits in bf16 sdpa (doubling, then bisection, up to ``--max-batch``).
3. **Input pipeline**: items/s of cavkit's CAV-MAE and Sync training datasets through a
   ``DataLoader`` with N workers on generated 10 s clips (16 kHz wav + 16 JPEG frames of 224x224), next
   to the bf16 sdpa + compile step's samples/s: a ratio below 1 means the run is input-bound with
   that many workers per device.
4. **Retrieval** at the VGGSound scale N=1545 clips x K=16 frames x D=768 (spec §8.2).

    python bench/gpu.py                      # on a GPU: < 8 minutes on one H100/H200
    python bench/gpu.py --tiny               # on CPU in seconds: checks the script (numbers mean nothing)
    python bench/gpu.py --json results.json  # also write every number as JSON
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODELS = ("cav_mae", "cav_mae_sync")

#: (label, attention implementation, autocast dtype, torch.compile)
MODES = (
    ("fp32 eager", "eager", None, False),
    ("fp16 eager + GradScaler", "eager", torch.float16, False),
    ("bf16 sdpa", "sdpa", torch.bfloat16, False),
    ("bf16 sdpa + compile", "sdpa", torch.bfloat16, True),
)

#: a tiny configuration for checking this script on CPU (``--tiny``); not a benchmark
TINY_MODEL = {
    "embed_dim": 32,
    "audio_length": 64,
    "image_size": 32,
    "encoder": {"depth": 1, "num_heads": 2},
    "decoder": {"embed_dim": 32, "depth": 1, "num_heads": 2},
}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_model(name: str, attn_impl: str, device: torch.device, tiny: bool) -> torch.nn.Module:
    """The registered model ``name`` at full size (or :data:`TINY_MODEL`), seeded identically."""
    from cavkit.checkpoints.build import build_model_node
    from cavkit.nn.blocks import set_attn_impl

    torch.manual_seed(0)
    model = build_model_node({"type": name, **(TINY_MODEL if tiny else {})}).build().to(device)
    set_attn_impl(model, attn_impl)
    return model.train()


def make_batch(model: torch.nn.Module, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Random fbank ``[B,T,128]`` and images ``[B,3,H,W]`` of the model's input size."""
    g = torch.Generator().manual_seed(1)
    t = model.audio_tokenizer.audio_length
    h = model.visual_tokenizer.image_size
    return torch.randn(batch, t, 128, generator=g).to(device), torch.randn(batch, 3, h, h, generator=g).to(device)


class TrainStep:
    """One optimiser step: autocast forward, MAE + 0.01 contrastive loss, (scaled) backward, Adam."""

    def __init__(self, model: torch.nn.Module, name: str, dtype: torch.dtype | None, compiled: bool, backend: str):
        from cavkit.objectives.infonce import InfoNCE, SyncContrastive
        from cavkit.objectives.mae import MAELoss

        self.model, self.dtype = model, dtype
        self.forward = torch.compile(model, backend=backend) if compiled else model
        self.mae = MAELoss(norm_pix_loss=True)
        self.contrast = SyncContrastive() if name == "cav_mae_sync" else InfoNCE()
        self.device = next(model.parameters()).device
        self.optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=dtype == torch.float16)

    def __call__(self, audio: torch.Tensor, image: torch.Tensor) -> float:
        with torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
            out = self.forward(audio, image)
            loss = self.mae({}, out).loss + 0.01 * self.contrast({}, out).loss
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()


def step_flops(name: str, device: torch.device, batch: int, tiny: bool) -> int:
    """Model FLOPs of one fp32 forward + backward (matmuls and attention, as counted by torch)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_model(name, "eager", device, tiny)
    audio, image = make_batch(model, batch, device)
    step = TrainStep(model, name, None, False, "inductor")
    with FlopCounterMode(display=False) as counter:
        step(audio, image)
    return counter.get_total_flops()


def bench_mode(name: str, mode: tuple, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    label, attn, dtype, compiled = mode
    model = build_model(name, attn, device, args.tiny)
    audio, image = make_batch(model, args.batch, device)
    step = TrainStep(model, name, dtype, compiled, args.compile_backend)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(2)  # the same masking noise for every mode's first step
    first_loss = float(step(audio, image))
    for _ in range(args.warmup + (2 if compiled else 0)):
        step(audio, image)
    times = []
    for _ in range(args.steps):
        synchronize(device)
        start = time.perf_counter()
        step(audio, image)
        synchronize(device)
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    del step, model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    t = min(times)  # the fastest step: the least disturbed by anything else on the machine
    return {"model": name, "mode": label, "batch": args.batch, "step_s": t, "samples_per_s": args.batch / t,
            "peak_gib": peak, "first_loss": first_loss}


def fits(name: str, batch: int, args: argparse.Namespace, device: torch.device) -> bool:
    """Whether one bf16 sdpa training step at ``batch`` runs without running out of memory."""
    model = step = audio = image = None
    try:
        model = build_model(name, "sdpa", device, args.tiny)
        audio, image = make_batch(model, batch, device)
        step = TrainStep(model, name, torch.bfloat16, False, args.compile_backend)
        step(audio, image)
        synchronize(device)
        return True
    except torch.OutOfMemoryError:
        return False
    finally:
        del model, step, audio, image
        if device.type == "cuda":
            torch.cuda.empty_cache()


def largest_batch(name: str, args: argparse.Namespace, device: torch.device) -> tuple[int, bool]:
    """(largest batch found, whether the search hit ``--max-batch`` before running out of memory)."""
    good, bad = 0, None
    batch = max(1, args.batch)
    while batch <= args.max_batch:
        if not fits(name, batch, args, device):
            bad = batch
            break
        good, batch = batch, batch * 2
    if bad is None:
        return good, True
    while bad - good > max(1, good // 16):  # bisect to within ~6%
        mid = (good + bad) // 2
        good, bad = (mid, bad) if fits(name, mid, args, device) else (good, mid)
    return good, False


def make_clips(root: Path, count: int, image_size: int) -> str:
    """``count`` prepared 10 s clips (wav + frame_0..frame_15 JPEGs) and their datafile; returns its path."""
    import numpy as np
    from PIL import Image

    from cavkit.data.images import encode_jpeg
    from cavkit.data.video import wav_bytes

    rng = np.random.default_rng(0)
    entries = []
    for c in range(count):
        vid = f"clip{c}"
        audio = 0.3 * np.sin(2 * np.pi * (300 + 25 * c) * np.arange(160000) / 16000) + 0.05 * rng.normal(size=160000)
        (root / "audio").mkdir(parents=True, exist_ok=True)
        (root / "audio" / f"{vid}.wav").write_bytes(wav_bytes((audio * 32767).astype(np.int16)))
        for i in range(16):
            folder = root / "frames" / f"frame_{i}"
            folder.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 255, (image_size, image_size, 3), dtype=np.uint8)
            (folder / f"{vid}.jpg").write_bytes(encode_jpeg(Image.fromarray(pixels)))
        entries.append({"video_id": vid, "wav": f"audio/{vid}.wav", "video_path": "frames", "labels": ""})
    (root / "datafile.json").write_text(json.dumps({"data": entries}))
    return str(root / "datafile.json")


def loader_rate(dataset, workers: int, batch: int, items: int) -> float:
    """Items/s through a shuffling DataLoader, after its first batch (worker start-up excluded)."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers,
                                         drop_last=True, persistent_workers=False)
    seen, start = 0, None
    while seen < items:
        for batch_data in loader:
            if start is None:
                start = time.perf_counter()
                continue
            seen += batch_data["audio"].shape[0]
            if seen >= items:
                break
    return seen / (time.perf_counter() - start)


def bench_loaders(args: argparse.Namespace) -> list[dict[str, Any]]:
    from cavkit.data.configs import CavMaeDataConfig, SyncDataConfig
    from cavkit.data.datasets import CavMaeDataset, SyncDataset

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        datafile = make_clips(Path(tmp), args.clips, 32 if args.tiny else 224)
        datasets = {
            "cav_mae": CavMaeDataset(CavMaeDataConfig(datafile=datafile, mode="train", noise=True)),
            "cav_mae_sync": SyncDataset(SyncDataConfig(datafile=datafile, mode="train")),
        }
        for name, dataset in datasets.items():
            for workers in args.workers:
                rate = loader_rate(dataset, workers, args.loader_batch, args.loader_items)
                rows.append({"dataset": name, "workers": workers, "items_per_s": rate})
    return rows


def bench_retrieval(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    from cavkit.evaluation.retrieval import evaluate_many
    from cavkit.evaluation.strategies import DiagonalMax, DiagonalMean, Max, Mean

    n, k, d, noise = (64, 4, 32, 0.5) if args.tiny else (1545, 16, 768, 2.0)
    g = torch.Generator().manual_seed(0)
    audio = torch.nn.functional.normalize(torch.randn(n, k, d, generator=g), dim=-1)
    visual = torch.nn.functional.normalize(audio + noise * torch.randn(n, k, d, generator=g), dim=-1)
    audio, visual = audio.to(device), visual.to(device)
    rows = []
    for label, strategies in (
        ("diagonal_mean + diagonal_max + mean", {"diagonal_mean": DiagonalMean(), "diagonal_max": DiagonalMax(), "mean": Mean()}),
        ("max", {"max": Max()}),
    ):
        best = math.inf
        for _ in range(2):
            synchronize(device)
            start = time.perf_counter()
            results = evaluate_many(audio, visual, strategies)
            synchronize(device)
            best = min(best, time.perf_counter() - start)
        r1 = {name: round(100 * res["audio"].metrics["R1"], 2) for name, res in results.items()}
        rows.append({"strategies": label, "n": n, "frames": k, "dim": d, "seconds": best, "R1_audio": r1})
    return rows


def print_table(report: dict[str, Any]) -> None:
    env = report["environment"]
    print(f"cavkit GPU bench on {env['device_name']} | torch {env['torch']} | CUDA {env['cuda']} | "
          f"batch {report['args']['batch']} | step time: fastest of {report['args']['steps']} steps (wall clock, synchronised) | compile backend "
          f"{report['args']['compile_backend']} | MFU against {report['args']['peak_tflops']:g} TFLOP/s")
    print(f"\n{'model':<14}{'setting':<26}{'step ms':>9}{'samples/s':>11}{'peak GiB':>10}{'MFU %':>8}"
          f"{'loss@1':>10}{'vs fp32':>9}")
    for row in report["steps"]:
        peak = "-" if row["peak_gib"] is None else f"{row['peak_gib']:.1f}"
        print(f"{row['model']:<14}{row['mode']:<26}{row['step_s'] * 1e3:>9.1f}{row['samples_per_s']:>11.1f}"
              f"{peak:>10}{row['mfu'] * 100:>8.1f}{row['first_loss']:>10.4f}{row['speedup']:>8.2f}x")
    print("\nlargest per-device batch (bf16 sdpa, one step):")
    for row in report["max_batch"]:
        print(f"  {row['model']:<14}{'>= ' if row['capped'] else ''}{row['batch']}")
    print("\ninput pipeline (DataLoader items/s vs the bf16 sdpa + compile step's samples/s):")
    for row in report["loaders"]:
        print(f"  {row['dataset']:<14}workers {row['workers']:>3}: {row['items_per_s']:>9.1f} items/s  "
              f"x{row['vs_step']:.2f} of the step {'(input-bound)' if row['vs_step'] < 1 else ''}")
    print("\nretrieval:")
    for row in report["retrieval"]:
        print(f"  N={row['n']} x K={row['frames']} x D={row['dim']} {row['strategies']:<38}{row['seconds']:>8.3f} s")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--batch", type=int, default=48, help="per-device batch of the timed steps (published: 48)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per setting")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before timing (compile adds 2)")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="bf16 dense peak for MFU (H100/H200: 989)")
    parser.add_argument("--compile-backend", default="inductor")
    parser.add_argument("--max-batch", type=int, default=4096, help="stop the batch search here")
    parser.add_argument("--clips", type=int, default=64, help="generated clips for the input-pipeline section")
    parser.add_argument("--workers", type=int, nargs="+", default=None, help="DataLoader workers to try")
    parser.add_argument("--loader-batch", type=int, default=48)
    parser.add_argument("--loader-items", type=int, default=960, help="items timed per loader setting")
    parser.add_argument("--tiny", action="store_true", help="tiny models and data on CPU: checks the script in seconds")
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    if args.tiny:
        args.batch, args.steps, args.warmup, args.max_batch = 4, 2, 1, 16
        args.clips, args.loader_batch, args.loader_items = 8, 4, 8
        args.workers = args.workers or [0, 1]
        if args.compile_backend == "inductor":
            args.compile_backend = "eager"  # dynamo capture without C++ code generation: seconds, not minutes
    cpus = os.cpu_count() or 1
    args.workers = args.workers or sorted({0, min(4, cpus), min(8, cpus), cpus})
    device = torch.device(args.device)

    report: dict[str, Any] = {
        "args": vars(args),
        "environment": {
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch": torch.__version__, "cuda": torch.version.cuda, "cpus": cpus,
        },
        "steps": [], "max_batch": [], "loaders": [], "retrieval": [],
    }
    for name in args.models:
        flops = step_flops(name, device, args.batch, args.tiny)
        rows = [bench_mode(name, mode, args, device) for mode in MODES]
        for row in rows:
            row["flops"] = flops
            row["mfu"] = flops / row["step_s"] / (args.peak_tflops * 1e12)
            row["speedup"] = rows[0]["step_s"] / row["step_s"]
        report["steps"] += rows
        batch, capped = largest_batch(name, args, device)
        report["max_batch"].append({"model": name, "batch": batch, "capped": capped})
    fastest = {r["model"]: r["samples_per_s"] for r in report["steps"] if r["mode"] == MODES[-1][0]}
    for row in bench_loaders(args):
        row["vs_step"] = row["items_per_s"] / fastest.get(row["dataset"], math.inf)
        report["loaders"].append(row)
    report["retrieval"] = bench_retrieval(args, device)
    print_table(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    return report


if __name__ == "__main__":
    main()
