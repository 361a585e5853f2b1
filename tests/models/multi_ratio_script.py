"""Train a recipe (in this process, or one rank of torchrun) and record the masking per step.

``python multi_ratio_script.py RECIPE RUN_DIR OUT_DIR [--resume latest] [--stop-after N]``

Writes ``OUT_DIR/rank<r>.json``: ``{step: [audio tokens kept, visual tokens kept]}`` from a forward
hook on the model's maskers (every call of a step must agree, else the script fails). With
``--stop-after N`` the run raises right after optimiser step N and its checkpoint (a crash).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)


class Stop(Exception):
    """Raised by the step callback to end a run early, like a crash."""


def record_masking(trainer, table: dict[int, list[int]]) -> None:
    """Hook both maskers: ``table[step] = [kept audio, kept visual]`` (asserts one value per step)."""

    def hook(slot: int):
        def record(module, inputs, output):
            row = table.setdefault(trainer.step, [None, None])
            kept = int(output.kept.shape[1])
            if row[slot] is not None and row[slot] != kept:
                raise AssertionError(f"step {trainer.step}: masker {slot} kept {row[slot]} then {kept} tokens")
            row[slot] = kept

        return record

    trainer.model.audio_masker.register_forward_hook(hook(0))
    trainer.model.visual_masker.register_forward_hook(hook(1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("recipe")
    parser.add_argument("run_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--resume", default=None)
    parser.add_argument("--stop-after", type=int, default=None)
    args = parser.parse_args()

    from cavkit.engine.dist import init_distributed, shutdown_distributed
    from cavkit.engine.trainer import Trainer
    from cavkit.recipe import load_recipe

    def stop(trainer):
        if args.stop_after is not None and trainer.step == args.stop_after:
            raise Stop

    dist = init_distributed("cpu")
    table: dict[int, list[int]] = {}
    try:
        trainer = Trainer(load_recipe(args.recipe), run_dir=args.run_dir, dist=dist, on_step_end=[stop], argv=sys.argv)
        record_masking(trainer, table)
        try:
            trainer.fit(resume=args.resume)
        except Stop:
            pass
    finally:
        shutdown_distributed()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{dist.rank}.json").write_text(json.dumps({str(k): v for k, v in sorted(table.items())}))


if __name__ == "__main__":
    main()
