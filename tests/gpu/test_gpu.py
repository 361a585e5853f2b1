"""What cavkit promises on a CUDA device (issue 15). Run with ``python -m pytest -m gpu``.

Every test trains or evaluates for real through the same entry points a user runs (``cavkit train``,
the retrieval evaluator, the full-size models) and compares against the fp32 / CPU result:

* fp16 + GradScaler and bf16 autocast training steps of the tiny CAV-MAE and Sync recipes: the first
  step's losses (same weights, same batch, same masking noise) agree with fp32 within
  :data:`LOSS_RTOL` (fp16 keeps 11 significant bits, bf16 8: a sum of O(1) losses moves by ~1e-3 and
  ~1e-2 relative), and the run stays finite.
* SDPA (flash / memory-efficient kernels) against the published eager attention at the full-size
  sequence lengths, forward and backward, in fp32 and bf16.
* ``--resume latest`` after SIGKILL on CUDA ends with the weights of an uninterrupted run. Both runs
  use ``torch.use_deterministic_algorithms(True)`` (CUBLAS_WORKSPACE_CONFIG=:4096:8): without it the
  scatter-add in the masking backward and cuBLAS split-K reductions are free to change the summation
  order between runs, and Adam turns ~1e-7 gradient differences of near-zero gradients into lr-sized
  steps. With it the kernels are run-to-run deterministic, so the check is exact.
* Retrieval metrics computed on CUDA equal the CPU metrics.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run with -m gpu on a GPU machine)"),
]

REPO = Path(__file__).resolve().parents[2]
TINY = {"cav_mae": REPO / "recipes/tiny/cav_mae_tiny.yaml", "cav_mae_sync": REPO / "recipes/tiny/sync_tiny.yaml"}
#: relative agreement of a mixed-precision step's loss with fp32 (same weights, batch and noise)
LOSS_RTOL = {"fp16": 5e-3, "bf16": 2e-2}

#: a training process that makes CUDA kernels deterministic, then runs the ``cavkit`` CLI
DETERMINISTIC_TRAIN = (
    "import sys, torch; torch.use_deterministic_algorithms(True); "
    "from cavkit.cli import main; sys.argv = ['cavkit'] + sys.argv[1:]; main()"
)


def train(recipe: Path, run_dir: Path, *args: str, deterministic: bool = False, wait: bool = True):
    env = {**os.environ, "CUBLAS_WORKSPACE_CONFIG": ":4096:8", "CAVKIT_DISABLE_PLUGIN_AUTOLOAD": "1"}
    prefix = [sys.executable, "-c", DETERMINISTIC_TRAIN] if deterministic else [sys.executable, "-m", "cavkit"]
    cmd = [*prefix, "train", str(recipe), "--device", "cuda", "--run-dir", str(run_dir), *args]
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def train_records(run_dir: Path) -> dict[int, dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r for r in map(json.loads, lines) if r["kind"] == "train"}


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run_dir / "weights" / "final.safetensors"))


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("model", sorted(TINY))
def test_mixed_precision_step_matches_fp32(tmp_path: Path, model: str, precision: str) -> None:
    steps = ("--set", "trainer.max_steps=3", "--set", "trainer.log_every=1")
    train(TINY[model], tmp_path / "fp32", *steps)
    train(TINY[model], tmp_path / precision, *steps, "--set", f"trainer.precision={precision}")
    ref, mixed = train_records(tmp_path / "fp32"), train_records(tmp_path / precision)
    losses = [k for k in ref[1] if k.startswith("train/loss")]
    assert losses, ref[1]
    for key in losses:
        assert mixed[1][key] == pytest.approx(ref[1][key], rel=LOSS_RTOL[precision]), key
    for step in (2, 3):
        assert torch.isfinite(torch.tensor(mixed[step]["train/loss"])), (step, mixed[step])
    for name, tensor in final_weights(tmp_path / precision).items():
        assert torch.isfinite(tensor).all(), name


def _full_size_loss_and_grads(name: str, attn: str, dtype: torch.dtype | None, reference=None):
    from cavkit.checkpoints.build import build_model_node
    from cavkit.nn.blocks import set_attn_impl
    from cavkit.objectives.infonce import InfoNCE, SyncContrastive
    from cavkit.objectives.mae import MAELoss

    torch.manual_seed(0)
    model = build_model_node({"type": name}).build().cuda().train()
    if reference is not None:
        model.load_state_dict(reference)
    set_attn_impl(model, attn)
    g = torch.Generator().manual_seed(1)
    audio = torch.randn(4, model.audio_tokenizer.audio_length, 128, generator=g).cuda()
    image = torch.randn(4, 3, 224, 224, generator=g).cuda()
    contrast = SyncContrastive() if name == "cav_mae_sync" else InfoNCE()
    torch.manual_seed(2)
    with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
        out = model(audio, image)
        loss = MAELoss(norm_pix_loss=True)({}, out).loss + 0.01 * contrast({}, out).loss
    loss.backward()
    grads = torch.cat([p.grad.float().flatten() for p in model.parameters() if p.grad is not None])
    return model.state_dict(), float(loss), grads


@pytest.mark.parametrize("model", sorted(TINY))
def test_sdpa_matches_eager_attention_at_full_size(model: str) -> None:
    """fp32: kernels agree to float rounding; bf16: flash is no further from fp32 than eager bf16 is."""
    weights, ref_loss, ref_grads = _full_size_loss_and_grads(model, "eager", None)
    _, loss, grads = _full_size_loss_and_grads(model, "sdpa", None, weights)
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    assert torch.linalg.vector_norm(grads - ref_grads) <= 1e-4 * torch.linalg.vector_norm(ref_grads)
    errors = {}
    for attn in ("eager", "sdpa"):
        _, loss, grads = _full_size_loss_and_grads(model, attn, torch.bfloat16, weights)
        assert loss == pytest.approx(ref_loss, rel=LOSS_RTOL["bf16"]), attn
        errors[attn] = float(torch.linalg.vector_norm(grads - ref_grads) / torch.linalg.vector_norm(ref_grads))
    assert errors["sdpa"] <= max(2 * errors["eager"], 1e-2), errors


@pytest.mark.parametrize("model", sorted(TINY))
def test_resume_after_kill_on_cuda_matches_uninterrupted(tmp_path: Path, model: str) -> None:
    settings = ("--set", "trainer.max_steps=8", "--set", "run.checkpoint_every_steps=2",
                "--set", "trainer.precision=bf16")
    train(TINY[model], tmp_path / "whole", *settings, deterministic=True)
    run_dir = tmp_path / "killed"
    proc = train(TINY[model], run_dir, *settings, deterministic=True, wait=False)
    deadline = time.monotonic() + 300
    while not (run_dir / "checkpoints" / "step-00000004.pt").exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "no checkpoint at step 4 within 300 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    train(TINY[model], run_dir, *settings, "--resume", "latest", deterministic=True)
    whole, resumed = final_weights(tmp_path / "whole"), final_weights(run_dir)
    assert whole.keys() == resumed.keys()
    for name in whole:
        assert torch.equal(whole[name], resumed[name]), name


def test_retrieval_on_cuda_equals_cpu() -> None:
    from cavkit.evaluation.retrieval import evaluate_many
    from cavkit.evaluation.strategies import DiagonalMax, DiagonalMean, Max, Mean, Pooled

    g = torch.Generator().manual_seed(0)
    audio = torch.nn.functional.normalize(torch.randn(400, 8, 64, generator=g), dim=-1)
    visual = torch.nn.functional.normalize(audio + 1.5 * torch.randn(400, 8, 64, generator=g), dim=-1)
    strategies = {"pooled": Pooled(), "diagonal_mean": DiagonalMean(), "diagonal_max": DiagonalMax(),
                  "mean": Mean(), "max": Max()}
    on_cpu = evaluate_many(audio, visual, strategies)
    on_cuda = evaluate_many(audio.cuda(), visual.cuda(), strategies)
    for name in strategies:
        for direction in on_cpu[name]:
            cpu_metrics, cuda_metrics = on_cpu[name][direction].metrics, on_cuda[name][direction].metrics
            assert cpu_metrics["R1"] < 0.99, "the set must not be trivially separable"
            assert cuda_metrics == cpu_metrics, (name, direction)
