"""Training-step cost of the full-size CAV-MAE and CAV-MAE Sync: cavkit (SDPA) vs an eager-attention build.

One step = forward + MAE and contrastive losses (weights 1 and 0.01) + backward, at a fixed batch.
Both builds are the same model with the same weights; the baseline replaces
``F.scaled_dot_product_attention`` with the plain softmax(q·kᵀ)·v attention the published code uses.
Timings alternate between the two builds in one process, step by step, and the ratio is taken
between the fastest repeat of each (min of N). On CPU the clock is the process's CPU time
(``time.process_time``) with one intra-op thread by default (``--threads``; with several threads,
OpenMP's spin-waiting under contention counts as CPU time too), which other jobs on a shared
machine barely move, unlike wall time; on CUDA it is wall time after a synchronise. The method is printed beside every number.
The peak memory of a step is measured in a fresh child process per build (CPU: growth of the
resident set over the step; GPU: ``torch.cuda.max_memory_allocated``).

On a CUDA device it also times bf16 autocast and ``torch.compile`` and reports samples/s and model
FLOPs utilisation (FLOPs counted with ``torch.utils.flop_counter``; peak from ``--peak-tflops``,
by default 989 for H100/H200 dense bf16).

    python bench/model_step.py                      # CPU, batch 2, both models
    python bench/model_step.py --models cav_mae --batch 4 --steps 5
    python bench/model_step.py --tiny --accelerator-paths   # check the script, incl. the GPU-only table, in seconds
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch

from cavkit.checkpoints.build import build_model_node
from cavkit.nn.blocks import set_attn_impl
from cavkit.objectives.infonce import InfoNCE, SyncContrastive
from cavkit.objectives.mae import MAELoss

MODELS = ("cav_mae", "cav_mae_sync")


#: a tiny configuration for checking this script itself (``--tiny``); not a benchmark
TINY = {
    "embed_dim": 64,
    "audio_length": 96,
    "image_size": 64,
    "encoder": {"depth": 2, "num_heads": 4},
    "decoder": {"embed_dim": 64, "depth": 1, "num_heads": 4},
}
_TINY = False


def build(name: str, attn_impl: str, device: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model_node({"type": name, **(TINY if _TINY else {})}).build().to(device)
    set_attn_impl(model, attn_impl)
    return model.train()


def make_batch(model, batch: int, device: str):
    g = torch.Generator().manual_seed(0)
    t = model.audio_tokenizer.audio_length
    h = model.visual_tokenizer.image_size
    return torch.randn(batch, t, 128, generator=g).to(device), torch.randn(batch, 3, h, h, generator=g).to(device)


def step_fn(model, name: str, audio, image, *, autocast: str | None = None):
    mae = MAELoss(norm_pix_loss=True)
    contrast = SyncContrastive() if name == "cav_mae_sync" else InfoNCE()
    device_type = audio.device.type

    def step():
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast == "bf16"):
            out = model(audio, image)
            loss = mae({}, out).loss + 0.01 * contrast({}, out).loss
        loss.backward()
        model.zero_grad(set_to_none=True)
        return loss

    return step


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def clock(device: str):
    """``(read, description)``: process CPU time on CPU (robust to other jobs), wall time on CUDA."""
    if device == "cuda":
        return time.perf_counter, "wall time after cuda.synchronize"
    return time.process_time, f"process CPU time, {torch.get_num_threads()} thread(s)"


def time_steps(step, device: str, steps: int) -> list[float]:
    read, _ = clock(device)
    times = []
    for _ in range(steps):
        sync(device)
        t0 = read()
        step()
        sync(device)
        times.append(read() - t0)
    return times


def _proc_status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def cpu_step_peak_bytes(step) -> int:
    """Peak resident memory of one call above the memory resident before it (Linux).

    Resets the process's high-water mark (``/proc/self/clear_refs``), runs the step and reads
    ``VmHWM``; falls back to max-RSS growth where that is not possible.
    """
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        base = _proc_status_kib("VmRSS")
        step()
        return (_proc_status_kib("VmHWM") - base) * 1024
    except OSError:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        step()
        return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024


def measure_memory_child(args) -> None:
    """Child mode: build one variant and report the peak memory of a step above the built model.

    CPU: the first step in a fresh process (freed memory stays resident, so a warm-up step would hide
    the activations and gradients), as growth of the resident set. CUDA: after a warm-up step, peak
    allocated above the weights.
    """
    device = args.device
    model = build(args.child_model, args.child_attn, device)
    audio, image = make_batch(model, args.batch, device)
    step = step_fn(model, args.child_model, audio, image, autocast=args.child_autocast or None)
    if device == "cuda":
        step()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = cpu_step_peak_bytes(step)
    print(json.dumps({"peak_bytes": peak}))


def peak_memory(name: str, attn: str, args, autocast: str = "") -> float:
    cmd = [
        sys.executable,
        __file__,
        "--child-model",
        name,
        "--child-attn",
        attn,
        "--batch",
        str(args.batch),
        "--device",
        args.device,
    ] + (["--tiny"] if args.tiny else [])
    if autocast:
        cmd += ["--child-autocast", autocast]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=dict(os.environ))
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_bytes"] / 2**20


def step_flops(model, name: str, audio, image) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    step = step_fn(model, name, audio, image)
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per build, alternating (after one warm-up)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1, help="CPU intra-op threads while timing (default 1)")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="accelerator peak for MFU (bf16 dense)")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-build memory children")
    parser.add_argument("--memory-only", action="store_true", help="only measure step memory (no timing)")
    parser.add_argument("--tiny", action="store_true", help="tiny models, to check the script quickly")
    parser.add_argument(
        "--accelerator-paths",
        action="store_true",
        help="also run the bf16 / torch.compile / MFU table on a non-CUDA device (checks the script)",
    )
    parser.add_argument("--child-model", help=argparse.SUPPRESS)
    parser.add_argument("--child-attn", help=argparse.SUPPRESS)
    parser.add_argument("--child-autocast", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    global _TINY
    _TINY = args.tiny
    if args.child_model:
        measure_memory_child(args)
        return

    device = args.device
    if device == "cpu":
        torch.set_num_threads(args.threads)
    print(
        f"device={device} torch={torch.__version__} threads={torch.get_num_threads()} batch={args.batch} steps={args.steps}"
    )
    for name in args.models:
        if args.memory_only:
            mem = {attn: peak_memory(name, attn, args) for attn in ("eager", "sdpa")}
            print(
                f"\n{name}: step memory eager {mem['eager']:.0f} MiB, sdpa {mem['sdpa']:.0f} MiB, "
                f"ratio x{mem['eager'] / max(mem['sdpa'], 1e-9):.2f}"
            )
            continue
        builds = {attn: build(name, attn, device) for attn in ("sdpa", "eager")}
        builds["eager"].load_state_dict(builds["sdpa"].state_dict())
        audio, image = make_batch(builds["sdpa"], args.batch, device)
        steps = {attn: step_fn(m, name, audio, image) for attn, m in builds.items()}
        for step in steps.values():
            step()  # warm-up
        times: dict[str, list[float]] = {"sdpa": [], "eager": []}
        for _ in range(args.steps):  # alternate so that load changes hit both builds
            for attn, step in steps.items():
                times[attn] += time_steps(step, device, 1)
        best = {k: min(v) for k, v in times.items()}
        method = f"{clock(device)[1]}, min of {args.steps} alternating repeats"
        print(f"\n{name}: fp32 forward+backward step ({method})")
        print(f"  eager attention  {best['eager'] * 1e3:9.1f} ms   (all repeats: {_ms(times['eager'])})")
        print(f"  cavkit (sdpa)    {best['sdpa'] * 1e3:9.1f} ms   (all repeats: {_ms(times['sdpa'])})")
        print(f"  speed-up x{best['eager'] / best['sdpa']:.2f} ({method})")
        if not args.no_memory:
            mem = {attn: peak_memory(name, attn, args) for attn in ("eager", "sdpa")}
            unit = "peak resident set above the model" if device == "cpu" else "peak allocated above weights"
            print(
                f"  step memory ({unit}): eager {mem['eager']:.0f} MiB, sdpa {mem['sdpa']:.0f} MiB, "
                f"ratio x{mem['eager'] / max(mem['sdpa'], 1e-9):.2f}"
            )
        if device == "cuda" or args.accelerator_paths:
            accelerator_paths(name, builds, audio, image, args)
        del builds, steps


def _ms(values: list[float]) -> str:
    return ", ".join(f"{v * 1e3:.0f}" for v in values) + " ms"


def accelerator_paths(name: str, builds, audio, image, args) -> None:
    """bf16 autocast, torch.compile, samples/s and MFU (run on CUDA; ``--accelerator-paths`` elsewhere)."""
    flops = step_flops(builds["sdpa"], name, audio, image)
    rows = []
    for label, attn, autocast, compiled in (
        ("eager attn fp32", "eager", None, False),
        ("sdpa fp32", "sdpa", None, False),
        ("eager attn bf16", "eager", "bf16", False),
        ("sdpa bf16", "sdpa", "bf16", False),
        ("sdpa bf16 + compile", "sdpa", "bf16", True),
    ):
        model = builds[attn]
        target = torch.compile(model) if compiled else model
        step = step_fn(target, name, audio, image, autocast=autocast)
        for _ in range(3 if compiled else 1):
            step()
        t = min(time_steps(step, args.device, max(args.steps, 5)))
        rows.append((label, t))
    base = rows[0][1]
    where = torch.cuda.get_device_name() if args.device == "cuda" else args.device
    print(f"  {where}: {flops / 1e9:.1f} GFLOP per step (MFU against {args.peak_tflops:g} TFLOP/s; "
          f"{clock(args.device)[1]}, min of {max(args.steps, 5)}):")
    for label, t in rows:
        mfu = flops / t / (args.peak_tflops * 1e12)
        print(
            f"    {label:<22} {t * 1e3:8.1f} ms  {args.batch / t:8.1f} samples/s  MFU {mfu * 100:5.1f}%  x{base / t:.2f}"
        )
    mem = peak_memory(name, "sdpa", args, autocast="bf16")
    print(f"    sdpa bf16 step memory: {mem:.0f} MiB")


if __name__ == "__main__":
    main()
