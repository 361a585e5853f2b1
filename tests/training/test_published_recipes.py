"""The shipped CAV-MAE recipes train exactly like the replay recipes that retrace the published loops.

``cavkit verify trajectory`` maps a published run's arguments to a cavkit recipe
(:mod:`cavkit.verify.recipe`) and shows that this recipe retraces the published trajectory. Here the
same mapping is applied to the arguments of the published scripts (spec §7.2), and the shipped
recipes must state the same optimiser, groups, schedule, loss weights and fine-tuning settings.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from cavkit.config import unstructure
from cavkit.recipe import load_recipe
from cavkit.testing import plugin_host
from cavkit.verify import recipe as mapping

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


class PublishedRun:
    """The fields of a trajectory fixture the mapping reads, for a run that was not recorded."""

    def __init__(self, kind: str, args: dict):
        self.kind, self.args, self.optimizer, self.name = kind, args, {}, "published script"
        self.constructor = {"norm_pix_loss": True} if kind == "pretrain" else {}

    def arg(self, key, default=None, *, required=False):
        return self.args.get(key, default)


PRETRAIN = dict(lr=5e-5, lrscheduler_start=10, lrscheduler_step=5, lrscheduler_decay=0.5,
                mae_loss_weight=1.0, contrast_loss_weight=0.01, masking_ratio=0.75, mask_mode="unstructured")
SCRIPTS = {
    "cav_mae_pretrain.yaml": ("pretrain", PRETRAIN),
    "cav_mae_pretrain_scale_plus.yaml": ("pretrain", {**PRETRAIN, "lr": 1e-4}),
    "cav_mae_pretrain_scale_plus_plus.yaml": ("pretrain", {**PRETRAIN, "lr": 2e-4}),
    "cav_mae_finetune_as20k.yaml": ("finetune", dict(lr=5e-5, head_lr=100, lrscheduler_start=5, lrscheduler_step=1,
                                                     lrscheduler_decay=0.5, loss="BCE", ftmode="multimodal")),
    "cav_mae_finetune_as2m.yaml": ("finetune", dict(lr=1e-5, head_lr=50, lrscheduler_start=2, lrscheduler_step=1,
                                                    lrscheduler_decay=0.5, loss="BCE", ftmode="multimodal")),
    "cav_mae_finetune_vggsound.yaml": ("finetune", dict(lr=1e-4, head_lr=10, lrscheduler_start=2, lrscheduler_step=1,
                                                        lrscheduler_decay=0.5, loss="CE", ftmode="multimodal")),
}


@pytest.fixture(scope="module")
def host():
    return plugin_host()


def _node(node) -> dict:
    return {"type": node.type, **({"weight": float(node.weight)} if node.weight is not None else {}),
            **unstructure(node.config)}


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_shipped_recipe_states_the_published_training(name, host):
    kind, args = SCRIPTS[name]
    run = PublishedRun(kind, args)
    recipe = load_recipe(str(RECIPES / name), host=host)
    optimizer = attrs.asdict(recipe.trainer.optimizer)
    want = mapping.optimizer(run)
    assert {k: (list(v) if isinstance(v, tuple) else v) for k, v in optimizer.items()} == {
        **want, "betas": list(want["betas"]), "head_prefixes": list(want["head_prefixes"])}
    schedule = recipe.trainer.schedule
    assert (schedule.type, schedule.decay_start, schedule.decay_every, schedule.gamma, schedule.warmup_steps) == (
        "step", args["lrscheduler_start"], args["lrscheduler_step"], args["lrscheduler_decay"], 0)
    assert recipe.trainer.clip_grad is None and recipe.trainer.grad_accum == 1
    for mine, published in zip(recipe.objectives, mapping.objectives(run), strict=True):
        got = _node(mine)
        assert {k: got[k] for k in published} == published
    model = unstructure(recipe.model.config)
    if kind == "pretrain":
        assert recipe.trainer.sum_device_losses
        assert model["trainable_pos"] is False
        for masker in (model["audio_masker"], model["visual_masker"]):
            assert (masker["type"], masker["ratio"], masker["multi_ratio_masking"]) == ("unstructured", 0.75, False)
    else:
        assert model["trainable_pos"] is True and model["mode"] == "multimodal"
        assert recipe.data.train.config.label_smoothing == 0.1
