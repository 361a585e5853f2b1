"""Copying a checkpoint's tensors into a model strictly, with every key problem reported by name.

Keys are reported in the checkpoint's own naming: upstream names for official files
(:mod:`cavkit.checkpoints.keys`), cavkit names otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch

from cavkit.checkpoints import keys as K
from cavkit.errors import CheckpointError

if TYPE_CHECKING:
    from cavkit.checkpoints.read import CheckpointContents


def display_key(key: str, layout: str) -> str:
    """A cavkit key as the checkpoint names it (``layout``: ``"cavkit"`` or ``"upstream"``)."""
    return (K.cavkit_to_upstream(key) or key) if layout == "upstream" else key


def to_cavkit_keys(contents: CheckpointContents) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors under cavkit names; unknown upstream keys are reported."""
    if contents.layout == "cavkit":
        return dict(contents.state)
    out, unknown = {}, []
    for k, v in contents.state.items():
        new = K.upstream_to_cavkit(k)
        if new is None:
            unknown.append(k)
        else:
            out[new] = v
    if unknown:
        raise CheckpointError(f"{contents.uri}: unexpected keys for a CAV-MAE / Sync model: {', '.join(unknown[:20])}")
    return out


def load_state_strict(
    model: torch.nn.Module, state: Mapping[str, torch.Tensor], *, source: str, layout: str = "cavkit"
) -> None:
    """Copy ``state`` (cavkit keys) into ``model``; any missing, unexpected or mis-shaped key is an error.

    Keys are reported in the checkpoint's own naming (upstream names for official files).
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    misshaped = [k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or misshaped:
        lines = [f"{source}: the checkpoint does not match the model it describes:"]
        if missing:
            lines.append(f"  missing ({len(missing)}): {', '.join(display_key(k, layout) for k in missing[:20])}")
        if unexpected:
            lines.append(
                f"  unexpected ({len(unexpected)}): {', '.join(display_key(k, layout) for k in unexpected[:20])}"
            )
        for k in misshaped[:20]:
            lines.append(
                f"  mis-shaped {display_key(k, layout)}: checkpoint {list(state[k].shape)}, model {list(own[k].shape)}"
            )
        raise CheckpointError("\n".join(lines))
    with torch.no_grad():
        for k, v in own.items():
            v.copy_(state[k])
