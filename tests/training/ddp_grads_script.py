"""``torchrun --nproc-per-node 2 ddp_grads_script.py OUT_DIR NAME=RECIPE.yaml ...``: one step per recipe, grads to OUT_DIR/NAME.pt."""

import sys
from pathlib import Path

import torch
import yaml

torch.set_num_threads(1)
sys.path.insert(0, str(Path(__file__).resolve().parent))

import ddp_helpers as h

from cavkit.engine.dist import init_distributed, shutdown_distributed


def main() -> None:
    out = Path(sys.argv[1])
    dist = init_distributed("cpu")
    try:
        for item in sys.argv[2:]:
            name, path = item.split("=", 1)
            data = yaml.safe_load(Path(path).read_text())
            t = h.trainer(data, out / f"{name}.rank{dist.rank}.yaml", out / f"{name}-run", dist)
            grads = h.first_step_grads(t)
            if dist.is_rank_zero:
                torch.save(grads, out / f"{name}.pt")
    finally:
        shutdown_distributed()


if __name__ == "__main__":
    main()
