"""Every recipe in recipes/ validates, and the published numbers sit where spec §7 says."""

from __future__ import annotations

from pathlib import Path

import pytest

from cavkit.recipe import load_recipe
from cavkit.testing import plugin_host

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
ALL = sorted(RECIPES.rglob("*.yaml"))


@pytest.fixture(scope="module")
def host():
    return plugin_host()


@pytest.mark.parametrize("path", ALL, ids=[str(p.relative_to(RECIPES)) for p in ALL])
def test_recipe_validates(path: Path, host) -> None:
    recipe = load_recipe(str(path), host=host)
    assert recipe.model is not None and recipe.objectives and recipe.data.train is not None


def load(name: str, host):
    return load_recipe(str(RECIPES / name), host=host)


def test_cav_mae_pretraining_batches_and_rates(host) -> None:
    expected = {"cav_mae_pretrain.yaml": (12, 5e-5), "cav_mae_pretrain_scale_plus.yaml": (30, 1e-4),
                "cav_mae_pretrain_scale_plus_plus.yaml": (64, 2e-4)}
    for name, (batch, lr) in expected.items():
        r = load(name, host)
        assert (r.trainer.batch_size * 4, r.trainer.optimizer.lr) == (batch * 4, lr)
        assert r.trainer.sum_device_losses and r.trainer.epochs == 25
        assert (r.trainer.schedule.type, r.trainer.schedule.decay_start, r.trainer.schedule.decay_every) == ("step", 10, 5)
        assert r.objectives[1].weight == 0.01 and r.objectives[1].config.negatives == "local"


def test_sync_pretraining_matches_spec_7_3(host) -> None:
    r = load("sync_pretrain.yaml", host)
    assert r.model.config.audio_length == 416 and r.trainer.batch_size * 4 == 512
    s = r.trainer.schedule
    assert (s.type, s.warmup_fraction, s.min_lr_ratio, r.trainer.optimizer.lr) == ("cosine", 0.1, 0.1, 2e-4)
    assert not r.trainer.sum_device_losses and r.retrieval.type == "diagonal_mean"


def test_fine_tuning_recipes_match_spec_7_2(host) -> None:
    rows = {
        "cav_mae_finetune_as20k.yaml": (36, 5e-5, 100, 15, 5, False, (3, 15), "bce"),
        "cav_mae_finetune_as2m.yaml": (48, 1e-5, 50, 10, 2, True, (1, 10), "bce"),
        "cav_mae_finetune_vggsound.yaml": (48, 1e-4, 10, 10, 2, True, (3, 10), "ce"),
    }
    for name, (batch, lr, head, epochs, start, bal, wa, loss) in rows.items():
        r = load(name, host)
        t = r.trainer
        got = (t.batch_size, t.optimizer.lr, t.optimizer.head_lr_scale, t.epochs, t.schedule.decay_start,
               t.balanced_sampling, (t.average_weights.start_epoch, t.average_weights.end_epoch), r.objectives[0].config.loss)
        assert got == (batch, lr, head, epochs, start, bal, wa, loss), name
    probe = load("linear_probe.yaml", host)
    assert probe.trainer.freeze_base and probe.trainer.optimizer.head_lr_scale == 1
