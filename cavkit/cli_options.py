"""The click options several commands share, defined once: device, precision, checkpoint, ``--set``,
the data options (``--datafile``, ``--dataset-type``, ``--data KEY=VALUE``), DataLoader sizes,
``--embedding`` and ``--centre``; :func:`choice_option` for any fixed-choice option and
:func:`grouped` to hand a command a set of options as one argument.

Each helper returns a fresh decorator; the parameter names it creates are fixed (``device``,
``precision``, ``checkpoint``, ``datafile``, ``dataset_type``, ``data_params``, ``batch_size``,
``num_workers``, ``embedding``, ``centre``; ``--set`` takes its destination). Imports no torch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

import click

from cavkit.devices import PRECISIONS

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def choice_option(*decls: str, choices: Iterable[str], default: Any, help: str, multiple: bool = False) -> Decorator:
    """An option taking one of ``choices`` (repeatable with ``multiple``), its default shown in ``--help``."""
    return click.option(
        *decls, type=click.Choice(list(choices)), default=default, multiple=multiple, show_default=True, help=help
    )


def grouped(dest: str, build: Callable[..., Any], *options: Decorator) -> Decorator:
    """Add ``options`` (in ``--help`` in the order given) and pass the command one argument instead of
    theirs: ``dest=build(**their values)``, so commands that share options share their handling too."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def with_group(*args: Any, **kwargs: Any) -> Any:
            kwargs[dest] = build(**{name: kwargs.pop(name) for name in names})
            return command(*args, **kwargs)

        with_group.__click_params__ = list(getattr(command, "__click_params__", []))  # type: ignore[attr-defined]
        before = len(with_group.__click_params__)
        for option in reversed(options):
            option(with_group)
        names = [param.name for param in with_group.__click_params__[before:]]
        return with_group

    return decorate


def device_option() -> Decorator:
    """``--device`` (resolved by :func:`cavkit.devices.resolve_device`)."""
    return click.option(
        "--device", default="auto", show_default=True, help="cpu, cuda, cuda:1, ... (auto: cuda when present)"
    )


def precision_option(help: str = "autocast precision of the forward passes") -> Decorator:
    """``--precision fp32|fp16|bf16`` (mapped by :func:`cavkit.devices.autocast_dtype`)."""
    return choice_option("--precision", choices=PRECISIONS, default="fp32", help=help)


def embedding_option(
    help: str = "global tokens (Sync), mean-pooled patches (CAV-MAE), or auto (global when the model has them)",
) -> Decorator:
    """``--embedding auto|global|pooled`` (see :mod:`cavkit.evaluation.features`)."""
    return choice_option("--embedding", choices=["auto", "global", "pooled"], default="auto", help=help)


def centre_option(help: str) -> Decorator:
    """``--centre audio|none``: subtract the mean audio embedding before the cosine, or not (sound-prompted
    localization and segmentation, :mod:`cavkit.pictures.localize_job`, :mod:`cavkit.evaluation.segmentation`)."""
    return choice_option("--centre", choices=["audio", "none"], default="audio", help=help)


def checkpoint_option(
    *, required: bool = False, help: str = "model checkpoint: a cavkit checkpoint/weights file or an official .pth"
) -> Decorator:
    """``--checkpoint URI``."""
    return click.option("--checkpoint", required=required, help=help)


def set_option(dest: str = "overrides", help: str = "override a recipe value (repeatable)") -> Decorator:
    """``--set KEY=VALUE`` (repeatable), collected into ``dest``."""
    return click.option("--set", dest, multiple=True, metavar="KEY=VALUE", help=help)


def datafile_option(help: str = "datafile JSON of the clips (spec §6.1)") -> Decorator:
    """``--datafile URI``."""
    return click.option("--datafile", help=help)


def dataset_type_option(
    help: str = "dataset component for --datafile (default: from the model's declared inputs: "
    "cav_mae_sync for per-frame segments, else cav_mae); without --datafile e.g. synthetic",
) -> Decorator:
    """``--dataset-type NAME``."""
    return click.option("--dataset-type", help=help)


def data_params_option(help: str = "dataset parameter (repeatable), e.g. --data label_csv=labels.csv") -> Decorator:
    """``--data KEY=VALUE`` (repeatable), collected into ``data_params``; parse with
    :func:`cavkit.option_values.key_values`."""
    return click.option("--data", "data_params", multiple=True, metavar="KEY=VALUE", help=help)


def batch_size_option() -> Decorator:
    """``--batch-size N``."""
    return click.option(
        "--batch-size", default=16, show_default=True, type=click.IntRange(1), help="clips per forward pass"
    )


def num_workers_option() -> Decorator:
    """``--num-workers N``."""
    return click.option(
        "--num-workers", default=0, show_default=True, type=click.IntRange(0), help="DataLoader workers"
    )
