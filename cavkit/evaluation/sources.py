"""Where evaluation (and the picture commands) get a model and clips: checkpoints and datasets.

A dataset comes from ``--datafile`` (+ ``--dataset-type``, ``--data KEY=VALUE``), from a dataset
without a datafile (``--dataset-type synthetic``) or from a recipe's ``data.<role>`` node. Without
``--dataset-type`` a datafile is read by the built-in dataset that fits the model's declared inputs
(:class:`cavkit.models.inputs.InputSpec`): per-frame segments or whole clips. The registry to
validate against is passed in; nothing here reads the process-wide plugin host.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from cavkit.errors import RecipeError, UsageError
from cavkit.models.inputs import InputSpec, dataset_type_for

if TYPE_CHECKING:  # pragma: no cover
    from cavkit.plugins import PluginHost


@attrs.frozen(kw_only=True)
class DataSource:
    """The clips a command was asked for.

    :ivar datafile: datafile JSON (spec §6.1), or ``None``.
    :ivar dataset_type: dataset component name, or ``None`` (chosen from the model's inputs).
    :ivar params: extra dataset parameters (``--data KEY=VALUE``).
    :ivar recipe_node: the recipe's ``data.<role>`` node as plain data, used when nothing else is given.
    """

    datafile: str | None = None
    dataset_type: str | None = None
    params: dict[str, Any] = attrs.field(factory=dict)
    recipe_node: dict[str, Any] | None = None


def load_eval_model(checkpoint: str | None, device: Any, *, host: "PluginHost") -> Any:
    """The model to evaluate, from a checkpoint (:func:`cavkit.checkpoints.load.load_model`: strict,
    eval mode), validated against ``host``'s registry."""
    if checkpoint is None:
        raise UsageError(
            "give --checkpoint (a cavkit checkpoint or an official .pth), or --features to reuse embeddings"
        )
    from cavkit.checkpoints.load import load_model

    return load_model(checkpoint, device=device, host=host).eval()


def recipe_data(recipe: Any, role: str) -> dict[str, Any] | None:
    """The recipe's ``data.<role>`` node as plain data (``None`` when absent or without a recipe)."""
    from cavkit.config import unstructure

    node = getattr(recipe.data, role) if recipe is not None else None
    return None if node is None else unstructure(node)


def _dataset_node(source: DataSource, inputs: InputSpec | None, role: str) -> dict[str, Any]:
    if source.datafile is not None:
        dataset_type = source.dataset_type
        if dataset_type is None:
            if inputs is None:
                raise UsageError(
                    "this model declares no inputs (an InputSpec), so cavkit cannot tell which dataset reads "
                    "the datafile: give --dataset-type (e.g. cav_mae or cav_mae_sync)"
                )
            dataset_type = dataset_type_for(inputs)
        return {"type": dataset_type, "datafile": source.datafile}
    if source.dataset_type is not None:  # a dataset without a datafile, e.g. synthetic (parameters via --data)
        return {"type": source.dataset_type}
    if source.recipe_node is not None:
        return dict(source.recipe_node)
    raise UsageError(f"no {role} data: give --datafile or --dataset-type, or a recipe with a data.{role} section")


def build_eval_dataset(
    source: DataSource, *, host: "PluginHost", mode: str, inputs: InputSpec | None, role: str = "eval"
) -> Any:
    """A dataset for evaluation, validated against ``host``'s registry.

    ``mode`` (``retrieval`` or ``eval``) is applied when the dataset has a ``mode`` parameter that
    accepts it; ``retrieval`` falls back to ``eval`` for single-frame layouts.

    :param inputs: the model's declared inputs (picks the dataset for a bare ``--datafile``).
    :raises UsageError: nothing to read, or a parameter the dataset does not take.
    :raises RecipeError: the dataset node does not validate.
    """
    from cavkit.config import structure_node

    data = _dataset_node(source, inputs, role)
    data.update(source.params)
    spec = host.registry.get("dataset", data["type"], failed_plugins=host.failed_names())
    fields = {f.name for f in attrs.fields(spec.config_class())}
    if "eval_frame" in source.params and "eval_frame" not in fields:
        raise UsageError(
            f"--frames needs a dataset with an eval_frame parameter (e.g. cav_mae, cav_mae_sync); "
            f"dataset {data['type']!r} has none"
        )
    if "mode" in fields and "mode" not in source.params:
        wanted = [mode, "eval"] if mode == "retrieval" and data.get("layout") != "cav_mae" else ["eval"]
        for candidate in wanted:
            _, problems = structure_node("dataset", {**data, "mode": candidate}, registry=host.registry)
            if not problems:
                data["mode"] = candidate
                break
    node, problems = structure_node(
        "dataset", data, registry=host.registry, path=f"data.{role}", failed_plugins=host.failed_names()
    )
    if problems:
        raise RecipeError(f"{role} dataset", problems)
    return node.build()


def eval_loader(dataset: Any, batch_size: int, num_workers: int) -> Any:
    """An in-order DataLoader over every item (no shuffling, no dropped last batch)."""
    from torch.utils.data import DataLoader

    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, drop_last=False)
