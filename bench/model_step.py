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

bf16, fp16, ``torch.compile``, samples/s and MFU on a GPU are ``bench/gpu.py``'s table.

    python bench/model_step.py                      # CPU, batch 2, both models
    python bench/model_step.py --models cav_mae --batch 4 --steps 5
    python bench/model_step.py --tiny               # check the script in seconds
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
from step_parts import MODELS, PretrainLoss, build_model, make_batch


def step_fn(model, name: str, audio, image):
    """One fp32 forward + pretraining loss + backward of ``model`` on a fixed batch."""
    loss_of = PretrainLoss(name)

    def step():
        loss = loss_of(model(audio, image))
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
    model = build_model(args.child_model, args.child_attn, device, args.tiny)
    audio, image = make_batch(model, args.batch, device)
    step = step_fn(model, args.child_model, audio, image)
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


def peak_memory(name: str, attn: str, args) -> float:
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
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=dict(os.environ))
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_bytes"] / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per build, alternating (after one warm-up)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1, help="CPU intra-op threads while timing (default 1)")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-build memory children")
    parser.add_argument("--memory-only", action="store_true", help="only measure step memory (no timing)")
    parser.add_argument("--tiny", action="store_true", help="tiny models, to check the script quickly")
    parser.add_argument("--child-model", help=argparse.SUPPRESS)
    parser.add_argument("--child-attn", help=argparse.SUPPRESS)
    args = parser.parse_args()
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
        builds = {attn: build_model(name, attn, device, args.tiny) for attn in ("sdpa", "eager")}
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
        del builds, steps


def _ms(values: list[float]) -> str:
    return ", ".join(f"{v * 1e3:.0f}" for v in values) + " ms"


if __name__ == "__main__":
    main()
