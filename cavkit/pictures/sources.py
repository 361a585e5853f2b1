"""Where the picture commands get their inputs: checkpoints (and what they were trained with) and clips.

Models load through :func:`cavkit.api.load_model`; datasets are built exactly like the evaluation
commands build theirs (``--datafile`` / ``--dataset-type`` / ``--data KEY=VALUE``), so every
picture command accepts the same data options as ``cavkit eval``.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

import yaml

from cavkit.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    from cavkit.checkpoints.read import CheckpointContents
    from cavkit.plugins import PluginHost


def recipe_norm_pix(recipe_text: str | None) -> bool | str | None:
    """What a stored recipe says about per-patch normalisation of the MAE targets.

    :returns: ``True``/``False`` (the ``mae`` objective's ``norm_pix_loss``), ``"no-mae"`` when the
        recipe lists objectives but no ``mae``, or ``None`` when it records no objectives at all
        (official files, ``cavkit convert`` output: they keep only the model).
    """
    if not recipe_text:
        return None
    from cavkit.recipe.load import RecipeLimitError, parse_yaml

    try:
        data = parse_yaml(recipe_text)
    except (yaml.YAMLError, RecipeLimitError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("objectives"), list):
        return None
    for node in data["objectives"]:
        name = node.get("type") if isinstance(node, dict) else node
        if isinstance(name, str) and name.rsplit("/", 1)[-1] == "mae":
            if isinstance(node, dict) and "norm_pix_loss" in node:
                return bool(node["norm_pix_loss"])
            from cavkit.objectives.configs import MAEConfig

            return MAEConfig().norm_pix_loss
    return "no-mae"


def require_pixel_targets(checkpoint: str | CheckpointContents, declared: bool, *, host: PluginHost) -> str:
    """Refuse checkpoints that cannot draw pixels; return how the decision was made (for the log).

    Training checkpoints and run weights (``<run>/weights/*.safetensors``) carry the resolved
    recipe, whose ``mae`` objective says ``norm_pix_loss``. Official ``.pth`` files and converted
    weights carry no objectives, so the user must vouch with ``declared`` (``--pixel-targets``).

    :param checkpoint: the checkpoint's URI (only its recipe is read), or its contents when the
        caller has read it already (the command does, to read the file once).
    :param host: the plugin host whose registry names ``weights:`` entries.
    :raises UsageError: a norm-pix checkpoint, a model never trained with ``mae``, or an unrecorded
        one without the flag.
    """
    from cavkit.checkpoints.read import stored_recipe_text

    if isinstance(checkpoint, str):
        uri, recipe = checkpoint, stored_recipe_text(checkpoint, host=host)
    else:
        uri, recipe = checkpoint.uri, checkpoint.recipe
    norm_pix = recipe_norm_pix(recipe)
    if norm_pix is None:
        if declared:
            return "--pixel-targets given (the checkpoint does not record its training objectives)"
        raise UsageError(
            f"{uri}: this checkpoint does not record whether it was trained with per-patch normalised "
            "targets (norm_pix_loss); a norm-pix model predicts standardised patches, not pixels. "
            "Official .pth files cannot tell (of the released models only CAV-MAE-Base-NoNorm is a pixel model; "
            "all others use norm_pix_loss). "
            "If this checkpoint was trained with norm_pix_loss false, pass --pixel-targets."
        )
    if norm_pix == "no-mae":
        raise UsageError(f"{uri}: its recipe has no 'mae' objective, so its decoder was never trained to reconstruct")
    if norm_pix:
        raise UsageError(
            f"{uri}: trained with norm_pix_loss: true (objective 'mae'), so it predicts per-patch standardised "
            "values, not pixels; inpainting needs a model trained with norm_pix_loss: false "
            "(e.g. the CAV-MAE-Base-NoNorm release, or a recipe with {type: mae, norm_pix_loss: false})"
        )
    return "recipe: mae objective with norm_pix_loss false"


def load_picture_model(
    checkpoint: str | CheckpointContents, device: Any, overrides: tuple[str, ...] = (), *, host: PluginHost
) -> Any:
    """A model in eval mode on ``device`` (any checkpoint :func:`cavkit.checkpoints.load.load_model` reads,
    by URI or as contents already read), validated against ``host``'s registry.

    :param overrides: ``KEY=VALUE`` model settings a checkpoint cannot record (``encoder.num_heads=2``).
    """
    from cavkit.checkpoints.load import load_model

    return load_model(checkpoint, overrides=list(overrides), device=device, host=host).eval()


def open_dataset(
    model: Any,
    *,
    host: "PluginHost",
    datafile: str | None,
    dataset_type: str | None,
    data_params: dict[str, Any],
    mode: str,
) -> Any:
    """The clips to draw, as the evaluation commands build them (``mode``: ``eval`` or ``retrieval``);
    a bare ``--datafile`` is read by the dataset that fits the model's declared inputs."""
    from cavkit.evaluation.sources import DataSource, build_eval_dataset
    from cavkit.models.inputs import input_spec_of

    source = DataSource(datafile=datafile, dataset_type=dataset_type, params=data_params)
    return build_eval_dataset(source, host=host, mode=mode, inputs=input_spec_of(model), role="pictures")


def _clip_id_lookup(dataset: Any):
    """A cheap ``index -> clip id`` for datasets over a datafile (their ``clips`` table), else ``None``."""
    clips = getattr(dataset, "clips", None)
    if clips is not None and len(clips) == len(dataset) and len(clips) and hasattr(clips[0], "video_id"):
        return lambda i: str(clips[i].video_id)
    return None


def select_items(dataset: Any, clip_ids: tuple[str, ...], limit: int | None) -> list[dict[str, Any]]:
    """Items of ``dataset``: those with the given clip ids (in that order), else the first ``limit``.

    Datafile datasets are searched through their clip table; other datasets item by item; streams
    (``IterableDataset``, e.g. ``shards``, with or without ``index.json``) are read in order until
    the clips are found.

    :raises UsageError: a requested clip id that the dataset does not have.
    """
    from torch.utils.data import IterableDataset

    stream = isinstance(dataset, IterableDataset)
    if not clip_ids:
        if stream:
            return list(itertools.islice(dataset, limit))
        n = len(dataset)
        return [dataset[i] for i in range(min(n, limit) if limit is not None else n)]
    wanted: dict[str, Any] = {cid: None for cid in clip_ids}
    for cid, get_item in _candidates(dataset, stream):
        if cid in wanted and wanted[cid] is None:
            wanted[cid] = get_item()
            if all(v is not None for v in wanted.values()):
                break
    missing = [cid for cid, item in wanted.items() if item is None]
    if missing:
        raise UsageError(f"clip id(s) not in the dataset: {', '.join(missing)}")
    return [wanted[cid] for cid in clip_ids]


def _candidates(dataset: Any, stream: bool):
    """``(clip id, item getter)`` for each item; datafile datasets load only the items asked for."""
    if stream:
        for item in dataset:
            yield str(item.get("clip_id")), lambda item=item: item
        return
    lookup = _clip_id_lookup(dataset)
    for i in range(len(dataset)):
        if lookup is not None:
            yield lookup(i), lambda i=i: dataset[i]
        else:
            item = dataset[i]
            yield str(item.get("clip_id")), lambda item=item: item


def safe_file_stem(clip_id: str) -> str:
    """A clip id made safe as a file name (``/`` and other odd characters become ``_``)."""
    return "".join(ch if ch.isalnum() or ch in "-_.+" else "_" for ch in str(clip_id)) or "clip"
