"""Run a tiny training in a fresh process (used by the kill-and-resume and DDP tests).

``python train_script.py RECIPE RUN_DIR [--kill-at-step N] [--resume latest|PATH]``: with
``--kill-at-step`` the process SIGKILLs itself right after optimiser step N (no cleanup at all).
"""

import argparse
import os
import signal
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).resolve().parent))

import engine_helpers as h  # noqa: E402

from cavkit.engine.dist import init_distributed, shutdown_distributed  # noqa: E402
from cavkit.engine.trainer import Trainer  # noqa: E402
from cavkit.recipe import load_recipe  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("recipe")
    parser.add_argument("run_dir")
    parser.add_argument("--kill-at-step", type=int, default=None)
    parser.add_argument("--resume", default=None)
    args = parser.parse_args()
    recipe = load_recipe(args.recipe, host=h.host())
    callbacks = []
    if args.kill_at_step is not None:
        def kill(trainer):
            if trainer.step == args.kill_at_step:
                os.kill(os.getpid(), signal.SIGKILL)
        callbacks.append(kill)
    dist = init_distributed("cpu")
    try:
        Trainer(recipe, run_dir=args.run_dir, dist=dist, on_step_end=callbacks, argv=sys.argv).fit(resume=args.resume)
    finally:
        shutdown_distributed()


if __name__ == "__main__":
    main()
