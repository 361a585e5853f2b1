"""``schedule: {type: step}`` is upstream's MultiStepLR(range(start, 1000, every), gamma) stepped once per epoch."""

from __future__ import annotations

import pytest
import torch

from cavkit.engine.optim import build_scheduler
from cavkit.recipe.schema import ScheduleConfig

STEPS_PER_EPOCH = 3


@pytest.mark.parametrize("start,every,gamma", [(0, 1, 0.5), (1, 1, 0.5), (2, 1, 0.5), (5, 1, 0.5), (10, 5, 0.5), (2, 3, 0.1)])
def test_step_schedule_is_the_published_per_epoch_multistep(start, every, gamma):
    def optimizer():
        return torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)

    published = optimizer()
    multistep = torch.optim.lr_scheduler.MultiStepLR(published, list(range(start, 1000, every)), gamma=gamma)
    mine = optimizer()
    config = ScheduleConfig(type="step", decay_start=start, decay_every=every, gamma=gamma)
    scheduler = build_scheduler(mine, config, total_steps=30 * STEPS_PER_EPOCH, steps_per_epoch=STEPS_PER_EPOCH, base_lr=1e-3)
    for epoch in range(30):
        for _ in range(STEPS_PER_EPOCH):
            assert mine.param_groups[0]["lr"] == pytest.approx(published.param_groups[0]["lr"], rel=1e-12), epoch
            mine.step()
            scheduler.step()
        published.step()
        multistep.step()  # upstream: once per epoch, after validation


def test_logged_lr_is_the_rate_each_step_used(tmp_path):
    """train/lr/base of an epoch's last step is that epoch's rate (upstream result.csv), not the next one's."""
    import json

    import ddp_helpers as h

    data = h.recipe("infonce", negatives="local", sum_device_losses=False, batch_size=4)
    data["trainer"].pop("max_steps")
    data["trainer"].update(epochs=2, schedule={"type": "step", "decay_start": 1, "decay_every": 1, "gamma": 0.5})
    h.trainer(data, tmp_path / "recipe.yaml", tmp_path / "run").fit()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    lrs = [r["train/lr/base"] for r in rows if r["kind"] == "train"]
    assert lrs == [1e-3] * 4 + [5e-4] * 4
