"""Multi-ratio masking (``multi_ratio_masking``): a per-step ratio from ``(seed, step)``.

The ratio must change the number of kept tokens, be identical on every rank and for every
micro-batch of a step, and repeat after a resume (upstream's was constant, spec §10.25).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from cavkit.models.maskers import TimeMasker, UnstructuredMasker, announce_training_step, step_ratio

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SCRIPT = HERE / "multi_ratio_script.py"
RANGE = (0.6, 0.9)


def test_step_ratio_is_a_function_of_seed_and_step():
    ratios = [step_ratio(0, s, RANGE) for s in range(50)]
    assert ratios == [step_ratio(0, s, RANGE) for s in range(50)]
    assert all(RANGE[0] <= r <= RANGE[1] for r in ratios)
    assert len(set(ratios)) == 50
    assert ratios != [step_ratio(1, s, RANGE) for s in range(50)]
    # spread over the range, not stuck at one end (50 uniform draws: min < 0.65 and max > 0.85 w.p. > 0.99)
    assert min(ratios) < 0.65 and max(ratios) > 0.85


def test_announced_ratio_sets_the_kept_token_count():
    masker = UnstructuredMasker(0.75, ratio_range=RANGE).train()
    model = torch.nn.Sequential(masker)
    tokens = torch.randn(3, 200, 4)
    kept = {}
    for step in range(6):
        announce_training_step(model, seed=7, step=step)
        out = masker(tokens)
        assert out.kept.shape[1] == int(200 * (1 - step_ratio(7, step, RANGE)))
        assert torch.equal(out.mask.sum(dim=1), torch.full((3,), 200.0 - out.kept.shape[1]))
        kept[step] = out.kept.shape[1]
    assert len(set(kept.values())) > 1, "the ratio should change the number of kept tokens across steps"
    announce_training_step(model, seed=7, step=2)
    assert masker(tokens).kept.shape[1] == kept[2]  # every micro-batch of a step


def test_eval_mode_and_the_plain_masker_use_the_fixed_ratio():
    masker = UnstructuredMasker(0.75, ratio_range=RANGE)
    announce_training_step(masker, seed=0, step=3)
    assert masker.eval()(torch.randn(2, 100, 4)).kept.shape[1] == 25
    plain = UnstructuredMasker(0.75).train()
    announce_training_step(plain, seed=0, step=3)
    assert plain(torch.randn(2, 100, 4)).kept.shape[1] == 25


def test_structured_masker_forces_lines_at_the_step_ratio():
    masker = TimeMasker(0.75, ratio_range=RANGE).train()
    announce_training_step(masker, seed=0, step=5)
    ratio = step_ratio(0, 5, RANGE)
    out = masker(torch.randn(2, 8 * 20, 4), grid=(8, 20))
    assert out.kept.shape[1] == int(160 * (1 - ratio))
    removed_columns = (out.mask.reshape(2, 8, 20).sum(dim=1) == 8).sum(dim=1)
    assert (removed_columns >= int(20 * ratio)).all()


def _recipe(tmp_path: Path, **trainer) -> Path:
    data = yaml.safe_load((REPO / "recipes" / "tiny" / "sync_tiny.yaml").read_text())
    masker = {"type": "unstructured", "multi_ratio_masking": True, "ratio_range": list(RANGE)}
    data["model"].update(audio_masker=masker, visual_masker=masker)
    data["data"]["train"]["num_clips"] = 32
    data["trainer"].update({"epochs": 2, "batch_size": 4, **trainer})
    data["run"].update(checkpoint_every_steps=1, keep_last=2)
    path = tmp_path / f"multi_ratio_{len(trainer)}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _run(args: list[str], *, ranks: int = 1) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CAVKIT_DISABLE_PLUGIN_AUTOLOAD": "1"}
    prefix = [sys.executable]
    if ranks > 1:
        prefix += ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks)]
    done = subprocess.run(prefix + [str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _table(folder: Path, rank: int = 0) -> dict[str, list[int]]:
    return json.loads((folder / f"rank{rank}.json").read_text())


def _reference(tmp_path: Path) -> tuple[Path, dict[str, list[int]]]:
    """One process, 8 steps (2 epochs of 32 clips, global batch 8): kept counts per step, checked against :func:`step_ratio`."""
    single = _recipe(tmp_path, batch_size=8)
    _run([str(single), str(tmp_path / "single"), str(tmp_path / "single_out")])
    reference = _table(tmp_path / "single_out")
    assert sorted(map(int, reference)) == list(range(8))
    seed = yaml.safe_load(single.read_text())["seed"]
    la, lv = (128 // 16) * (64 // 16), (64 // 16) ** 2  # tokens of a 64-row segment / a 64-pixel image
    for step, (ka, kv) in reference.items():
        ratio = step_ratio(seed, int(step), RANGE)
        assert (ka, kv) == (int(la * (1 - ratio)), int(lv * (1 - ratio)))
    assert len({tuple(v) for v in reference.values()}) > 1
    return single, reference


def test_a_resumed_run_draws_the_same_ratios(tmp_path):
    """Stopped after step 3 (its checkpoint written), resumed: the same kept counts as uninterrupted."""
    single, reference = _reference(tmp_path)
    _run([str(single), str(tmp_path / "resumed"), str(tmp_path / "first"), "--stop-after", "3"])
    _run([str(single), str(tmp_path / "resumed"), str(tmp_path / "second"), "--resume", "latest"])
    first, second = _table(tmp_path / "first"), _table(tmp_path / "second")
    assert sorted(map(int, first)) == [0, 1, 2] and sorted(map(int, second)) == [3, 4, 5, 6, 7]
    assert {**first, **second} == reference


@pytest.mark.slow
def test_two_ranks_draw_the_same_ratios(tmp_path):
    """Two torchrun ranks (gloo, 4 clips each per step) keep the single process's counts on both ranks."""
    _, reference = _reference(tmp_path)
    ddp = _recipe(tmp_path)
    _run([str(ddp), str(tmp_path / "ddp"), str(tmp_path / "ddp_out")], ranks=2)
    assert _table(tmp_path / "ddp_out", 0) == reference
    assert _table(tmp_path / "ddp_out", 1) == reference


@pytest.mark.parametrize("value", [[0.9, 0.6], [0.5, 1.0]])
def test_bad_ratio_range_is_refused(value):
    from cavkit.errors import UsageError

    with pytest.raises(UsageError, match="ratio"):
        UnstructuredMasker(0.75, ratio_range=tuple(value))


def test_recipe_check_names_a_bad_ratio_range(tmp_path):
    from cavkit.testing import run_cli

    data = yaml.safe_load((REPO / "recipes" / "tiny" / "sync_tiny.yaml").read_text())
    data["model"]["audio_masker"] = {"type": "unstructured", "multi_ratio_masking": True, "ratio_range": [0.9, 0.6]}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    result = run_cli(["recipe", "check", str(path)])
    assert result.exit_code == 2
    assert "model.audio_masker: ratio_range must be [low, high] with 0 <= low <= high < 1, got [0.9, 0.6]" in (
        result.stdout + result.stderr
    )
