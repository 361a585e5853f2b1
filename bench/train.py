"""Training throughput and peak memory: the engine against a plain hand-written loop, side by side.

    python bench/train.py                       # CPU: quickstart + full-size configs (batch 2), 3 steps;
                                                # then, when CUDA is available, full-size Sync in bf16 (batch 32)
    python bench/train.py --only sync --steps 5 --batch 4
    python bench/train.py --gpu                 # only the GPU section: samples/s, MFU, GPU memory

For each configuration the same model, objectives and synthetic data are trained twice in one
process: through :class:`cavkit.engine.trainer.Trainer` (data order, per-item seeding, masking
noise, logging, non-finite guard included) and through a bare hand-written loop (a shuffling
DataLoader, forward, backward, Adam step). The synthetic clips are generated once beforehand, so
both time training, not data synthesis. ``engine/plain`` is the ratio of their samples/s
(1.00 = no engine overhead). Each
configuration runs in a fresh subprocess so that peak RSS (CPU) is its own. Timings on a shared
machine are noisy; compare ratios, not absolute numbers, across machines.

MFU (GPU) = model FLOPs per step (fwd+bwd, counted by ``torch.utils.flop_counter``) x steps/s /
the device's peak dense bf16 FLOP/s (H100/H200 SXM: 989 TFLOP/s; override with --peak-tflops).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SYNTH_CAV = "{type: synthetic, layout: cav_mae, num_clips: 64, image_size: 224, audio_length: 1024, num_frames: 10}"
SYNTH_SYNC = "{type: synthetic, layout: sync, num_clips: 64, image_size: 224, audio_length: 1024, segment_length: 416, num_frames: 16}"

#: name -> (recipe, overrides making it runnable without the real datasets and checkpoints)
CONFIGS: dict[str, tuple[str, list[str]]] = {
    "quickstart": ("recipes/quickstart.yaml", []),
    "cav_mae": ("recipes/cav_mae_pretrain.yaml", [f"data.train={SYNTH_CAV}", "data.val=null", "trainer.init=null"]),
    "sync": ("recipes/sync_pretrain.yaml", [f"data.train={SYNTH_SYNC}", "data.val=null", "data.eval=null", "trainer.init=null"]),
    "finetune": ("recipes/cav_mae_finetune_as20k.yaml",
                 [f"data.train={SYNTH_CAV}", "data.val=null", "trainer.init=null", "model.num_classes=8"]),
}

PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_one(name: str, *, batch: int | None, steps: int, device: str, precision: str | None, peak_tflops: float | None) -> dict:
    import torch
    from torch.utils.data import default_collate

    from torch.utils.data import DataLoader
    from cavkit.engine.dist import DistInfo
    from cavkit.engine.trainer import Trainer
    from cavkit.recipe import load_recipe
    from cavkit.testing import plugin_host

    recipe_path, overrides = CONFIGS[name]
    overrides = list(overrides) + ["trainer.progress_bar=false", "run.tensorboard=false", "trainer.eval_every_epochs=0",
                                   "data.eval=null", "trainer.log_every=1000", "trainer.image_every=0"]
    if device == "cpu":
        overrides.append("trainer.num_workers=0")
    if batch is not None:
        overrides.append(f"trainer.batch_size={batch}")
    precision = precision or ("bf16" if device == "cuda" else "fp32")
    overrides.append(f"trainer.precision={precision}")
    overrides.append(f"trainer.max_steps={steps + 1}")
    recipe = load_recipe(str(REPO / recipe_path), overrides, host=plugin_host())
    dev = torch.device(device)
    dist = DistInfo(device=dev)
    result: dict = {"config": name, "device": device, "precision": precision, "batch": recipe.trainer.batch_size}

    # -- engine ------------------------------------------------------------------------------------
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(recipe, run_dir=tmp, dist=dist, argv=["bench"])
        # generate (and cache) the synthetic clips first: the bench times training, not data synthesis
        for index in range(len(trainer.train_set)):
            trainer.train_set[index]
        stamps: list[float] = []

        def stamp(t):
            if dev.type == "cuda":
                torch.cuda.synchronize()
            stamps.append(time.perf_counter())

        trainer.on_step_end.append(stamp)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        trainer.fit()
        per_step = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
        result["engine_samples_per_s"] = trainer.global_batch / per_step
        result["params_M"] = sum(p.numel() for p in trainer.model.parameters()) / 1e6
        if dev.type == "cuda":
            result["engine_peak_gpu_GiB"] = torch.cuda.max_memory_allocated() / 2**30
        dataset = trainer.train_set
        del trainer

    # -- plain loop (same parts, pre-collated batches) -------------------------------------------
    model = recipe.model.build().to(dev)
    objectives = [n.build().to(dev) for n in recipe.objectives]
    weights = [n.weight for n in recipe.objectives]
    params = list(model.parameters()) + [p for o in objectives for p in o.parameters()]
    opt = torch.optim.Adam(params, lr=recipe.trainer.optimizer.lr, betas=tuple(recipe.trainer.optimizer.betas))
    b = recipe.trainer.batch_size
    # a typical hand-written loop: a shuffling DataLoader over the same (cached) clips
    loader = iter(DataLoader(dataset, batch_size=b, shuffle=True, drop_last=True, collate_fn=default_collate,
                             generator=torch.Generator().manual_seed(0)))

    def next_batch():
        return {k: v.to(dev) if isinstance(v, torch.Tensor) else v for k, v in next(loader).items()}
    from cavkit.devices import autocast_dtype

    dtype = autocast_dtype(precision)

    def plain_step(batch):
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
            out = model(batch["audio"], batch["image"])
            loss = sum(w * o(batch, out).loss.float() for w, o in zip(weights, objectives))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    first = next_batch()
    plain_step(first)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        plain_step(next_batch())
    if dev.type == "cuda":
        torch.cuda.synchronize()
    per_step = (time.perf_counter() - start) / steps
    result["plain_samples_per_s"] = b / per_step
    result["engine/plain"] = result["engine_samples_per_s"] / result["plain_samples_per_s"]
    if dev.type == "cuda":
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            plain_step(first)
        flops = counter.get_total_flops()
        name_gpu = torch.cuda.get_device_name()
        peak = peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in name_gpu), None)
        result["gpu"] = name_gpu
        result["TFLOP_per_step"] = flops / 1e12
        if peak:
            result["MFU_engine"] = flops * (result["engine_samples_per_s"] / b) / (peak * 1e12)
            result["MFU_plain"] = flops / per_step / (peak * 1e12)
        result["plain_peak_gpu_GiB"] = torch.cuda.max_memory_allocated() / 2**30
    result["peak_rss_MB"] = _peak_rss_mb()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(CONFIGS), action="append", help="configurations to run (repeatable)")
    parser.add_argument("--batch", type=int, default=None, help="per-device batch (default: 2 for full-size on CPU)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps (after one warm-up step)")
    parser.add_argument("--gpu", action="store_true", help="run on CUDA in bf16 (full-size Sync unless --only)")
    parser.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default=None)
    parser.add_argument("--peak-tflops", type=float, default=None, help="device peak dense TFLOP/s for MFU")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = "cuda" if args.gpu else "cpu"

    if args.one:
        import torch

        if device == "cpu":
            torch.set_num_threads(int(os.environ.get("CAVKIT_BENCH_THREADS", torch.get_num_threads())))
        print(json.dumps(run_one(args.one, batch=args.batch, steps=args.steps, device=device,
                                 precision=args.precision, peak_tflops=args.peak_tflops)))
        return

    import torch

    if args.gpu and not torch.cuda.is_available():
        sys.exit("--gpu: no CUDA device available")
    # (name, on GPU): the CPU section unless --gpu; the GPU section whenever CUDA is available
    jobs = [] if args.gpu else [(n, False) for n in (args.only or list(CONFIGS))]
    if torch.cuda.is_available():
        jobs += [(n, True) for n in (args.only if args.gpu and args.only else ["sync"])]
    else:
        print("no CUDA device: GPU section (bf16 full-size Sync, samples/s, MFU) skipped", file=sys.stderr)
    rows = []
    for name, on_gpu in jobs:
        batch = args.batch if args.batch is not None else (None if name == "quickstart" else (32 if on_gpu else 2))
        cmd = [sys.executable, __file__, "--one", name, "--steps", str(args.steps)]
        if batch is not None:
            cmd += ["--batch", str(batch)]
        if on_gpu:
            cmd.append("--gpu")
        if args.precision:
            cmd += ["--precision", args.precision]
        if args.peak_tflops:
            cmd += ["--peak-tflops", str(args.peak_tflops)]
        env = {**os.environ, "CAVKIT_DISABLE_PLUGIN_AUTOLOAD": "1"}
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
        if done.returncode != 0:
            print(f"{name}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
            continue
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(json.dumps(row), flush=True)
    print()
    print(f"{'config':<11} {'device':<6} {'prec':<5} {'batch':>5} {'params M':>9} {'engine s/s':>11} {'plain s/s':>10} "
          f"{'engine/plain':>12} {'peak RSS MB':>12} {'MFU':>6}")
    for r in rows:
        mfu = f"{100 * r['MFU_engine']:.1f}%" if "MFU_engine" in r else "-"
        print(f"{r['config']:<11} {r['device']:<6} {r['precision']:<5} {r['batch']:>5} {r['params_M']:>9.1f} "
              f"{r['engine_samples_per_s']:>11.2f} {r['plain_samples_per_s']:>10.2f} {r['engine/plain']:>12.2f} "
              f"{r['peak_rss_MB']:>12.0f} {mfu:>6}")


if __name__ == "__main__":
    main()
