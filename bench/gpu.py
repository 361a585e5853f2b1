"""What cavkit promises on an accelerator, in one table (issue 15).

Sections, in the order they run (``--sections`` picks some):

1. **steps**: a training step of the full-size CAV-MAE and CAV-MAE Sync (forward, MAE + contrastive
   loss with weights 1 and 0.01, backward, Adam step) in four settings:

   ===========================  ===================================================================
   fp32 eager                   the published model's arithmetic (plain softmax(q·kᵀ)·v attention)
   fp16 eager + GradScaler      the published training setting (``torch.cuda.amp`` autocast)
   bf16 sdpa                    cavkit's default on GPUs: bf16 autocast, ``scaled_dot_product_attention``
   bf16 sdpa + compile          the same under ``torch.compile``
   ===========================  ===================================================================

   Per row: step time (the fastest of ``--steps`` after warm-up), samples/s, peak allocated memory
   (weights, Adam state and activations), MFU (model FLOPs of the step counted with
   ``torch.utils.flop_counter`` divided by step time and ``--peak-tflops``, the bf16 dense peak, for
   every row), the first step's loss on the same batch and masking noise (rows must agree) and the
   first step's time (for the compiled row: the compilation).
2. **loaders**: items/s of cavkit's CAV-MAE and Sync training datasets through a ``DataLoader`` with
   N workers on generated 10 s clips (16 kHz wav + 16 JPEG frames of 224x224), divided by the
   model's fastest measured step's samples/s: below 1 the run is input-bound with that many workers.
3. **retrieval** at the VGGSound scale N=1545 clips x K=16 frames x D=768 (spec §8.2).
4. **max_batch**: the largest per-device batch that fits in bf16 sdpa (doubling, then bisection, up
   to ``--max-batch``); last, because it is the open-ended one.

Device time is scarce, so a failing setting (a ``torch.compile`` error, a DataLoader worker that
cannot start) is recorded and printed with its traceback and the rest still runs; ``--json`` is
rewritten after every section, so a run stopped at its limit keeps what it measured; ``--budget-s``
starts no section and no batch-search step past that many seconds. Exit status 1 if anything failed.

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
import traceback
from pathlib import Path
from collections.abc import Callable
from typing import Any

import torch

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]  # step_parts, cavkit

from step_parts import MODELS, PretrainLoss, build_model, count_flops, make_batch

#: (label, attention implementation, autocast dtype, torch.compile)
MODES = (
    ("fp32 eager", "eager", None, False),
    ("fp16 eager + GradScaler", "eager", torch.float16, False),
    ("bf16 sdpa", "sdpa", torch.bfloat16, False),
    ("bf16 sdpa + compile", "sdpa", torch.bfloat16, True),
)

#: the sections in the order they run: the step table first, the open-ended batch search last
SECTIONS = ("steps", "loaders", "retrieval", "max_batch")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def release(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


class TrainStep:
    """One optimiser step: autocast forward, MAE + 0.01 contrastive loss, (scaled) backward, Adam."""

    def __init__(self, model: torch.nn.Module, name: str, dtype: torch.dtype | None, compiled: bool, backend: str):
        self.model, self.dtype = model, dtype
        self.forward = torch.compile(model, backend=backend) if compiled else model
        self.loss_of = PretrainLoss(name)
        self.device = next(model.parameters()).device
        self.optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=dtype == torch.float16)

    def __call__(self, audio: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
            loss = self.loss_of(self.forward(audio, image))
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()


def step_flops(name: str, device: torch.device, batch: int, tiny: bool) -> int:
    """Model FLOPs of one fp32 training step (matmuls and attention, as counted by torch)."""
    model = build_model(name, "eager", device, tiny)
    audio, image = make_batch(model, batch, device)
    step = TrainStep(model, name, None, False, "inductor")
    flops = count_flops(step, audio, image)
    del step, model
    release(device)
    return flops


def bench_mode(name: str, mode: tuple, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    label, attn, dtype, compiled = mode
    model = build_model(name, attn, device, args.tiny)
    audio, image = make_batch(model, args.batch, device)
    step = TrainStep(model, name, dtype, compiled, args.compile_backend)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(2)  # the same masking noise for every mode's first step
    started = time.perf_counter()
    first_loss = float(step(audio, image))
    first_step_s = time.perf_counter() - started  # includes torch.compile's compilation
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
    release(device)
    t = min(times)  # the fastest step: the least disturbed by anything else on the machine
    return {"model": name, "mode": label, "batch": args.batch, "step_s": t, "samples_per_s": args.batch / t,
            "peak_gib": peak, "first_loss": first_loss, "first_step_s": first_step_s}


def bench_steps(args: argparse.Namespace, device: torch.device, report: dict[str, Any]) -> None:
    """Section 1: every model in every mode; a mode that fails is recorded and the others still run."""
    for name in args.models:
        flops = guarded(report, f"steps/{name}/flops", lambda name=name: step_flops(name, device, args.batch, args.tiny))
        rows = []
        for mode in MODES:
            row = guarded(report, f"steps/{name}/{mode[0]}", lambda name=name, mode=mode: bench_mode(name, mode, args, device))
            rows.append(row or {"model": name, "mode": mode[0], "batch": args.batch, "failed": True})
        fp32 = rows[0].get("step_s")
        for row in rows:
            if "step_s" in row:
                row["flops"] = flops
                row["mfu"] = flops / row["step_s"] / (args.peak_tflops * 1e12) if flops else None
                row["speedup"] = fp32 / row["step_s"] if fp32 else None
        report["steps"] += rows
        save(report, args)


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
        release(device)


def largest_batch(name: str, args: argparse.Namespace, device: torch.device, out_of_time: Callable[[], bool]) -> dict:
    """The largest batch found by doubling from ``--batch`` then bisecting to within ~6 %.

    ``capped``: every batch up to ``--max-batch`` fitted; ``stopped``: the time budget ran out first, so
    the batch is a lower bound.
    """
    good, bad, stopped = 0, None, False
    batch = max(1, args.batch)
    while batch <= args.max_batch:
        if out_of_time():
            stopped = True
            break
        if not fits(name, batch, args, device):
            bad = batch
            break
        good, batch = batch, batch * 2
    while bad is not None and bad - good > max(1, good // 16):
        if out_of_time():
            stopped = True
            break
        mid = (good + bad) // 2
        good, bad = (mid, bad) if fits(name, mid, args, device) else (good, mid)
    return {"model": name, "batch": good, "capped": bad is None and not stopped, "stopped": stopped}


def bench_max_batch(args: argparse.Namespace, device: torch.device, report: dict[str, Any],
                    out_of_time: Callable[[], bool]) -> None:
    """Section 4: the batch search per model; a model whose search fails is recorded and the next still runs."""
    for name in args.models:
        found = guarded(report, f"max_batch/{name}", lambda name=name: largest_batch(name, args, device, out_of_time))
        report["max_batch"].append(found or {"model": name, "failed": True})


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


def bench_loaders(args: argparse.Namespace, report: dict[str, Any]) -> None:
    """Section 3: items/s per dataset and worker count, next to the fastest measured step of that model."""
    from cavkit.data.configs import CavMaeDataConfig, SyncDataConfig
    from cavkit.data.datasets import CavMaeDataset, SyncDataset

    with tempfile.TemporaryDirectory() as tmp:
        datafile = make_clips(Path(tmp), args.clips, 32 if args.tiny else 224)
        datasets = {
            "cav_mae": CavMaeDataset(CavMaeDataConfig(datafile=datafile, mode="train", noise=True)),
            "cav_mae_sync": SyncDataset(SyncDataConfig(datafile=datafile, mode="train")),
        }
        for name, dataset in datasets.items():
            measured = [r for r in report["steps"] if r["model"] == name and "samples_per_s" in r]
            fastest = max(measured, key=lambda r: r["samples_per_s"], default=None)
            for workers in args.workers:
                rate = guarded(report, f"loaders/{name}/{workers} workers",
                               lambda d=dataset, w=workers: loader_rate(d, w, args.loader_batch, args.loader_items))
                if rate is None:
                    continue
                row = {"dataset": name, "workers": workers, "items_per_s": rate, "vs_step": None, "vs_mode": None}
                if fastest:
                    row["vs_step"], row["vs_mode"] = rate / fastest["samples_per_s"], fastest["mode"]
                report["loaders"].append(row)


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


def _number(value: float | None, spec: str, scale: float = 1.0) -> str:
    return "-" if value is None else format(value * scale, spec)


def print_table(report: dict[str, Any]) -> None:
    env, a = report["environment"], report["args"]
    print(f"cavkit GPU bench on {env['device_name']} | torch {env['torch']} | CUDA {env['cuda']} | batch {a['batch']} | "
          f"step time: fastest of {a['steps']} steps (wall clock, synchronised) | compile backend "
          f"{a['compile_backend']} | MFU against {a['peak_tflops']:g} TFLOP/s")
    print(f"\n{'model':<14}{'setting':<26}{'step ms':>9}{'samples/s':>11}{'peak GiB':>10}{'MFU %':>8}"
          f"{'loss@1':>10}{'vs fp32':>9}{'1st step s':>12}")
    for row in report["steps"]:
        if "step_s" not in row:
            print(f"{row['model']:<14}{row['mode']:<26}  failed (see errors below)")
            continue
        speedup = _number(row["speedup"], ".2f") + "x"
        print(f"{row['model']:<14}{row['mode']:<26}{row['step_s'] * 1e3:>9.1f}{row['samples_per_s']:>11.1f}"
              f"{_number(row['peak_gib'], '.1f'):>10}{_number(row['mfu'], '.1f', 100):>8}{row['first_loss']:>10.4f}"
              f"{speedup:>9}{row['first_step_s']:>12.1f}")
    print("\nlargest per-device batch (bf16 sdpa, one step):")
    for row in report["max_batch"]:
        if row.get("failed"):
            print(f"  {row['model']:<14}failed (see errors below)")
            continue
        bound = ">= " if row["capped"] or row["stopped"] else ""
        note = " (the time budget ran out: a lower bound)" if row["stopped"] else ""
        print(f"  {row['model']:<14}{bound}{row['batch']}{note}")
    print("\ninput pipeline (DataLoader items/s vs the model's fastest measured step, samples/s):")
    for row in report["loaders"]:
        vs = "no step measured" if row["vs_step"] is None else (
            f"x{row['vs_step']:.2f} of the {row['vs_mode']} step {'(input-bound)' if row['vs_step'] < 1 else ''}")
        print(f"  {row['dataset']:<14}workers {row['workers']:>3}: {row['items_per_s']:>9.1f} items/s  {vs}")
    print("\nretrieval:")
    for row in report["retrieval"]:
        print(f"  N={row['n']} x K={row['frames']} x D={row['dim']} {row['strategies']:<38}{row['seconds']:>8.3f} s")
    if report["skipped"]:
        print(f"\nskipped (time budget of {a['budget_s']} s spent): {', '.join(report['skipped'])}")
    for error in report["errors"]:
        print(f"\nFAILED {error['where']}: {error['error']}")


def guarded(report: dict[str, Any], where: str, measure: Callable[[], Any]) -> Any:
    """``measure()``, or None with the failure recorded, so one failing setting costs only its own row.

    Device time is scarce: a ``torch.compile`` or DataLoader-worker failure must not lose the other rows.
    """
    try:
        return measure()
    except Exception as exc:  # noqa: BLE001 - recorded in the report and printed, never swallowed
        traceback.print_exc()
        report["errors"].append({"where": where, "error": f"{type(exc).__name__}: {exc}"})
        return None


def save(report: dict[str, Any], args: argparse.Namespace) -> None:
    """Write the report so far, so a run stopped at its time limit still leaves its numbers."""
    if args.json:
        path = Path(args.json)
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(report, indent=2, default=str))
        partial.replace(path)


def environment(device: torch.device) -> dict[str, Any]:
    env = {"device_name": "cpu", "torch": torch.__version__, "cuda": torch.version.cuda, "cpus": os.cpu_count() or 1,
           "matmul_tf32": torch.backends.cuda.matmul.allow_tf32, "cudnn_tf32": torch.backends.cudnn.allow_tf32}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(device_name=props.name, memory_gib=props.total_memory / 2**30,
                   multiprocessors=props.multi_processor_count, cudnn=torch.backends.cudnn.version())
    return env


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS,
                        help="which sections to run (they always run in the order steps, loaders, retrieval, max_batch)")
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
    parser.add_argument("--budget-s", type=float, default=None,
                        help="start no section and no batch-search step after this many seconds (the rest is reported as skipped)")
    parser.add_argument("--tiny", action="store_true", help="tiny models and data on CPU: checks the script in seconds")
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file (after every section)")
    args = parser.parse_args(argv)
    if args.tiny:
        args.batch, args.steps, args.warmup, args.max_batch = 4, 2, 1, 16
        args.clips, args.loader_batch, args.loader_items = 8, 4, 8
        args.workers = args.workers or [0, 1]
        if args.compile_backend == "inductor":
            args.compile_backend = "eager"  # dynamo capture without C++ code generation: seconds, not minutes
    cpus = os.cpu_count() or 1
    args.workers = args.workers or sorted({0, min(4, cpus), min(8, cpus), cpus})
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the chosen sections, print the table; the report (also ``--json``) holds failures and skips."""
    args = parse_args(argv)
    device = torch.device(args.device)
    started = time.monotonic()

    def out_of_time() -> bool:
        return args.budget_s is not None and time.monotonic() - started > args.budget_s

    report: dict[str, Any] = {"args": vars(args), "environment": environment(device), "steps": [], "max_batch": [],
                              "loaders": [], "retrieval": [], "skipped": [], "errors": []}
    sections = {
        "steps": lambda: bench_steps(args, device, report),
        "loaders": lambda: bench_loaders(args, report),
        "retrieval": lambda: report["retrieval"].extend(bench_retrieval(args, device)),
        "max_batch": lambda: bench_max_batch(args, device, report, out_of_time),
    }
    for section in SECTIONS:
        if section not in args.sections:
            continue
        if out_of_time():
            report["skipped"].append(section)
        else:
            guarded(report, section, sections[section])
        save(report, args)
    report["seconds"] = time.monotonic() - started
    save(report, args)
    print_table(report)
    return report


if __name__ == "__main__":
    sys.exit(1 if main()["errors"] else 0)
