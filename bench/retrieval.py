"""Retrieval speed at the published scale: N = 1545 clips x K = 16 frames x D = 768 (VGGSound, spec §8.2).

For every strategy this measures, in one process:

* **cavkit**: :func:`cavkit.evaluation.retrieval.evaluate_retrieval` for both directions (similarity,
  ranks and metrics; symmetric strategies compute one matrix), and
  :func:`cavkit.evaluation.retrieval.evaluate_many` for the three fast strategies together (as
  ``cavkit eval retrieval --strategy all`` runs them: diagonal_mean and diagonal_max share their
  per-frame GEMMs);
* **per-pair loop**: a straightforward implementation in the published style (one Python-level
  cosine per frame pair, as ``get_agg_sim_mat``), timed on a subset of pairs and extrapolated per
  pair to N x N x 2 directions;
* **peak memory**: the process's peak resident set (VmHWM, reset before each measurement) minus
  the resident set before it.

It also times the bare ``[N*K, D] x [D, N*K]`` matrix product, the floor for ``max``.
Targets on 2 CPU cores: diagonal_mean + diagonal_max + mean (both directions) under 2 s together;
max within 1.3x of the bare product.

Run: ``python bench/retrieval.py [--n 1545] [--repeats 3]``; ``--only diagonal_mean,diagonal_max,mean``
skips the slow ``max`` and the bare product.
"""

from __future__ import annotations

import argparse
import os
import re
import time

import numpy as np
import torch

from cavkit.evaluation.retrieval import evaluate_many, evaluate_retrieval
from cavkit.evaluation.strategies import DiagonalMax, DiagonalMean, Max, Mean, Pooled

STRATEGIES = {
    "pooled": Pooled(),
    "diagonal_mean": DiagonalMean(),
    "diagonal_max": DiagonalMax(),
    "mean": Mean(),
    "max": Max(),
}


# -- memory ---------------------------------------------------------------------------------------
def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        match = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M)
    return int(match.group(1)) if match else 0


def reset_peak() -> int:
    """Reset the peak RSS (Linux clear_refs) and return the current RSS in kB."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return _status_kb("VmRSS")


def peak_since(base_kb: int) -> float:
    return max(0, _status_kb("VmHWM") - base_kb) / 1024  # MiB


# -- the per-pair baseline ---------------------------------------------------------------------------
def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def loop_similarity(query: np.ndarray, gallery: np.ndarray, name: str, rows: int, cols: int) -> np.ndarray:
    """``get_agg_sim_mat`` written plainly: a Python cosine per frame pair (pooled: per clip pair)."""
    k = query.shape[1]
    out = np.zeros((rows, cols), dtype=np.float32)
    if name == "pooled":
        q, g = query.mean(1), gallery.mean(1)
    for i in range(rows):
        for j in range(cols):
            if name == "pooled":
                out[i, j] = _cos(q[i], g[j])
            elif name.startswith("diagonal"):
                sims = [_cos(query[i, f], gallery[j, f]) for f in range(k)]
                out[i, j] = np.mean(sims) if name == "diagonal_mean" else np.max(sims)
            else:
                sims = [_cos(query[i, f], gallery[j, h]) for f in range(k) for h in range(k)]
                out[i, j] = np.mean(sims) if name == "mean" else np.max(sims)
    return out


def loop_seconds_per_pair(query: np.ndarray, gallery: np.ndarray, name: str) -> float:
    side = {"pooled": 60, "diagonal_mean": 24, "diagonal_max": 24, "mean": 6, "max": 6}[name]
    start = time.perf_counter()
    loop_similarity(query, gallery, name, side, side)
    return (time.perf_counter() - start) / (side * side)


# -- timing helpers -------------------------------------------------------------------------------
def best_of(fn, repeats: int) -> tuple[float, float, float]:
    """(best wall seconds, CPU seconds of that run (all threads), peak MiB over the runs).

    On a busy machine the CPU seconds divided by the thread count estimate the wall time on idle cores.
    """
    best, peak, cpu = float("inf"), 0.0, 0.0
    for _ in range(repeats):
        base = reset_peak()
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        took, took_cpu = time.perf_counter() - start, time.process_time() - start_cpu
        if took < best:
            best, cpu = took, took_cpu
        peak = max(peak, peak_since(base))
    return best, cpu, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1545)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--max-repeats", type=int, default=2, help="repeats of the (slow) max strategy and bare product"
    )
    parser.add_argument(
        "--only", default=",".join(STRATEGIES), help="comma list of strategies to run (the bare product runs with max)"
    )
    args = parser.parse_args()
    chosen = [name for name in STRATEGIES if name in args.only.split(",")]
    n, k, d = args.n, args.frames, args.dim

    torch.manual_seed(0)
    audio = torch.nn.functional.normalize(torch.randn(n, k, d), dim=-1)
    visual = torch.nn.functional.normalize(audio + 2.0 * torch.randn(n, k, d), dim=-1)
    a_np, v_np = audio.numpy(), visual.numpy()
    print(
        f"N={n} clips x K={k} frames x D={d}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
    )
    threads = torch.get_num_threads()
    print(
        f"{'strategy':<15}{'wall s':>9}{'cpu s':>9}{'peak MiB':>10}{'loop/pair':>12}{'loop est.':>11}"
        f"{'speed-up':>10}   R@1 a->v / v->a"
    )

    seconds: dict[str, float] = {}
    cpu_seconds: dict[str, float] = {}
    for name in chosen:
        strategy = STRATEGIES[name]
        repeats = args.max_repeats if name == "max" else args.repeats
        results = {}

        def run(results=results, strategy=strategy) -> None:
            results.update(evaluate_retrieval(audio, visual, strategy, directions=("audio", "video")))

        seconds[name], cpu_seconds[name], peak = best_of(run, repeats)
        per_pair = loop_seconds_per_pair(a_np, v_np, name)
        loop_total = per_pair * n * n * 2  # the published code computes each direction's matrix separately
        r1 = f"{100 * results['audio'].metrics['R1']:.1f} / {100 * results['video'].metrics['R1']:.1f}"
        print(
            f"{name:<15}{seconds[name]:>9.3f}{cpu_seconds[name]:>9.3f}{peak:>10.0f}{per_pair * 1e6:>10.1f}us"
            f"{loop_total / 3600:>9.2f} h{loop_total / seconds[name]:>9.0f}x   {r1}"
        )

    three = {name: STRATEGIES[name] for name in ("diagonal_mean", "diagonal_max", "mean")}
    if set(three) <= set(seconds):
        separate = sum(seconds[name] for name in three)
        separate_cpu = sum(cpu_seconds[name] for name in three)
        joint, joint_cpu, joint_peak = best_of(
            lambda: evaluate_many(audio, visual, three, directions=("audio", "video")), args.repeats
        )
        print("\ndiagonal_mean + diagonal_max + mean, both directions (target < 2 s wall on 2 idle cores):")
        print(
            f"  one by one (sum of the rows above):            wall {separate:.3f} s, "
            f"cpu/threads {separate_cpu / threads:.3f} s  {'PASS' if separate < 2 else 'MISS'}"
        )
        print(
            f"  together (evaluate_many, shared frame GEMMs):  wall {joint:.3f} s, "
            f"cpu/threads {joint_cpu / threads:.3f} s  {'PASS' if joint < 2 else 'MISS'}  peak {joint_peak:.0f} MiB"
        )

    if "max" in seconds:
        flat_a, flat_v = audio.reshape(n * k, d), visual.reshape(n * k, d)

        def bare() -> None:
            flat_a @ flat_v.T

        bare_s, bare_cpu, bare_peak = best_of(bare, args.max_repeats)
        ratio, ratio_cpu = seconds["max"] / bare_s, cpu_seconds["max"] / bare_cpu
        print(
            f"\nbare [{n * k}x{d}] x [{d}x{n * k}] product: wall {bare_s:.3f} s, cpu {bare_cpu:.3f} s, "
            f"peak {bare_peak:.0f} MiB"
        )
        print(
            f"max (both directions, ranks and metrics included) / bare product: wall {ratio:.2f}x, "
            f"cpu {ratio_cpu:.2f}x (target <= 1.3x): {'PASS' if ratio <= 1.3 else 'MISS'}"
        )
    print(f"load average after the run: {os.getloadavg()[0]:.2f} (numbers are noisy when it exceeds {os.cpu_count()})")


if __name__ == "__main__":
    main()
