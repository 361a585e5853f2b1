"""Where and in which precision a command runs: the one device helper and the one precision map.

``--device`` and ``--precision`` of every command, and ``trainer.precision`` of a recipe, go through
here, so that "auto", an unavailable CUDA device and "fp16"/"bf16" mean the same thing everywhere.
This module imports torch only inside its functions (the CLI imports it for :data:`PRECISIONS`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cavkit.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: Precision names accepted by ``--precision`` and ``trainer.precision`` (``fp32``: no autocast).
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16")


def resolve_device(name: str, *, option: str = "--device") -> "torch.device":
    """The torch device for ``name``: ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda``, ``cuda:1``...

    :raises UsageError: ``name`` is no device, names a CUDA device on a machine without CUDA, or a
        ``cuda:N`` the machine does not have.
    """
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:  # torch's own message lists every device type it was built to know
        raise UsageError(f"{option} {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"{option} {name}: no CUDA device is available here; use {option} cpu")
    if device.type == "cuda" and device.index is not None:
        count = torch.cuda.device_count()
        if device.index >= count:
            raise UsageError(f"{option} {name}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    return device


def autocast_dtype(precision: str) -> "torch.dtype | None":
    """The autocast dtype of a precision name (``None`` for ``fp32``: run without autocast).

    :raises UsageError: an unknown name.
    """
    import torch

    dtypes = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
    if precision not in dtypes:
        raise UsageError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    return dtypes[precision]
