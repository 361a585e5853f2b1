"""``cavkit eval retrieval`` and ``cavkit eval classify``.

This module imports no torch at import time (``cavkit --help`` stays fast); command bodies do.
"""

from __future__ import annotations

import json
from typing import Any

import click

from cavkit.cli_options import (
    batch_size_option,
    checkpoint_option,
    data_params_option,
    datafile_option,
    dataset_type_option,
    device_option,
    key_values,
    num_workers_option,
    precision_option,
    set_option,
)
from cavkit.devices import autocast_dtype, resolve_device
from cavkit.errors import UsageError

_DEVICE = device_option()
_PRECISION = precision_option(help="autocast precision of the forward passes (upstream retrieval runs fp16 on GPU)")
_BATCH = batch_size_option()
_WORKERS = num_workers_option()
_CHECKPOINT = checkpoint_option(help="model checkpoint (cavkit run/checkpoint or an official .pth)")
_DATAFILE = datafile_option(help="datafile JSON of the evaluation clips (instead of the recipe's data.eval)")
_DATASET_TYPE = dataset_type_option(
    help="dataset component for --datafile (default: cav_mae_sync for Sync models, else cav_mae)"
)
_DATA_PARAMS = data_params_option(help="extra dataset parameter (repeatable), e.g. --data label_csv=labels.csv")
_SET = set_option()


@click.group("eval")
def eval_group() -> None:
    """Evaluate a model: zero-shot retrieval and classification (spec §7.1, §8)."""


# -- shared helpers ------------------------------------------------------------------------------
def _host():
    from cavkit.plugins import get_plugin_host

    return get_plugin_host()


def _load_recipe(recipe: str | None, overrides: tuple[str, ...]):
    if recipe is None:
        if overrides:
            raise UsageError("--set needs a recipe")
        return None
    from cavkit.recipe import load_recipe

    return load_recipe(recipe, overrides)


def load_eval_model(checkpoint: str | None, recipe, device):
    """The model to evaluate, from a checkpoint (:func:`cavkit.api.load_model`: strict, eval mode)."""
    if checkpoint is None:
        raise UsageError(
            "give --checkpoint (a cavkit checkpoint or an official .pth), or --features to reuse embeddings"
        )
    from cavkit.api import load_model

    return load_model(checkpoint, device=device).eval()


def _is_sync(model) -> bool:
    """Whether a loaded model is CAV-MAE Sync (its data come as frame-aligned segments)."""
    node = getattr(model, "cavkit_node", None)
    if node is not None:
        if node.type == "cav_mae_sync":
            return True
        encoder = getattr(node.config, "encoder", None)
        return encoder is not None and encoder.type == "sync_encoder"
    return type(model).__name__.lower().find("sync") >= 0


def recipe_data(recipe, role: str) -> dict[str, Any] | None:
    """The recipe's ``data.<role>`` node as plain data (``None`` when absent)."""
    from cavkit.config import unstructure

    node = getattr(recipe.data, role) if recipe is not None else None
    return None if node is None else unstructure(node)


def build_eval_dataset(
    *,
    node_data: dict[str, Any] | None,
    datafile: str | None,
    dataset_type: str | None,
    data_params: dict[str, Any],
    mode: str,
    sync: bool,
    role: str = "eval",
):
    """A dataset for evaluation: ``--datafile`` (+ ``--dataset-type``, ``--data``) or a recipe node.

    ``mode`` (``retrieval`` or ``eval``) is applied when the dataset has a ``mode`` parameter that
    accepts it; ``retrieval`` falls back to ``eval`` for single-frame layouts.
    """
    import attrs

    from cavkit.config import structure_node
    from cavkit.errors import RecipeError

    host = _host()
    if datafile is not None:
        data: dict[str, Any] = {"type": dataset_type or ("cav_mae_sync" if sync else "cav_mae"), "datafile": datafile}
    elif dataset_type is not None:  # a dataset without a datafile, e.g. synthetic (parameters via --data)
        data = {"type": dataset_type}
    elif node_data is not None:
        data = dict(node_data)
    else:
        raise UsageError(f"no {role} data: give --datafile or --dataset-type, or a recipe with a data.{role} section")
    data.update(data_params)
    spec = host.registry.get("dataset", data["type"], failed_plugins=host.failed_names())
    fields = {f.name for f in attrs.fields(spec.config_class())}
    if "eval_frame" in data_params and "eval_frame" not in fields:
        raise UsageError(
            f"--frames needs a dataset with an eval_frame parameter (e.g. cav_mae, cav_mae_sync); "
            f"dataset {data['type']!r} has none"
        )
    if "mode" in fields and "mode" not in data_params:
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


def _loader(dataset, batch_size: int, num_workers: int):
    from torch.utils.data import DataLoader

    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, drop_last=False)


def _write_json(uri: str, data: dict[str, Any]) -> None:
    from cavkit.io import write_bytes_atomic

    write_bytes_atomic(uri, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def _strategy_names(names: tuple[str, ...], recipe) -> list[str]:
    host = _host()
    if not names:
        if recipe is not None and recipe.retrieval is not None:
            return [
                recipe.retrieval.spec.qualified_id
                if recipe.retrieval.spec.plugin != "cavkit"
                else recipe.retrieval.type
            ]
        return ["diagonal_mean"]
    out: list[str] = []
    for item in names:
        for name in item.split(","):
            name = name.strip()
            if name == "all":
                out += [n for n in host.registry.names("retrieval_strategy") if n not in out]
            elif name and name not in out:
                out.append(name)
    return out


def build_strategy(name: str, recipe=None, params: dict[str, Any] | None = None):
    """A registered strategy by name; the recipe's ``retrieval:`` parameters apply when it names the same one."""
    from cavkit.config import structure_node, unstructure
    from cavkit.errors import RecipeError

    host = _host()
    data: dict[str, Any] = {"type": name}
    if recipe is not None and recipe.retrieval is not None:
        # A plugin's strategy may be named bare (soft_alignment) or qualified (cavkit-siglip/soft_alignment).
        spec = recipe.retrieval.spec
        if name in (spec.name, spec.qualified_id):
            data = unstructure(recipe.retrieval)
    data.update(params or {})
    node, problems = structure_node(
        "retrieval_strategy", data, registry=host.registry, path="retrieval", failed_plugins=host.failed_names()
    )
    if problems:
        raise RecipeError("--strategy", problems)
    return node.build()


# -- cavkit eval retrieval -----------------------------------------------------------------------
@eval_group.command("retrieval")
@click.argument("recipe", required=False)
@_CHECKPOINT
@_DATAFILE
@_DATASET_TYPE
@_DATA_PARAMS
@click.option("--features", "features_uri", help="reuse embeddings written by --save-features (no model, no data)")
@click.option("--save-features", help="write the extracted embeddings (safetensors) for later runs")
@click.option(
    "--strategy",
    "strategies",
    multiple=True,
    help="retrieval strategy (repeatable or comma list; 'all'); default: the recipe's, else diagonal_mean",
)
@click.option(
    "--directions", default="both", show_default=True, help="audio (audio->visual), video (visual->audio) or both"
)
@click.option("--samples", type=click.IntRange(1), help="use only the first N clips (upstream --nums_samples)")
@click.option(
    "--tie-mode",
    type=click.Choice(["strict", "upstream"]),
    default="strict",
    show_default=True,
    help="strict: a tie counts against the query; upstream: the published compute_metrics",
)
@click.option(
    "--embedding",
    type=click.Choice(["auto", "global", "pooled"]),
    default="auto",
    show_default=True,
    help="global tokens (Sync), mean-pooled patches (CAV-MAE), or auto",
)
@click.option(
    "--index",
    "use_index",
    is_flag=True,
    help="rank with a FAISS index (pip install faiss-cpu) instead of exact matrices",
)
@click.option("--json", "json_uri", help="write the metrics as JSON here")
@click.option("--gallery", help="write the top matches of the first queries as .html or .png")
@click.option(
    "--gallery-queries", default=8, show_default=True, type=click.IntRange(1), help="queries shown in the gallery"
)
@_BATCH
@_WORKERS
@_DEVICE
@_PRECISION
@_SET
def retrieval_command(
    recipe,
    checkpoint,
    datafile,
    dataset_type,
    data_params,
    features_uri,
    save_features,
    strategies,
    directions,
    samples,
    tie_mode,
    embedding,
    use_index,
    json_uri,
    gallery,
    gallery_queries,
    batch_size,
    num_workers,
    device,
    precision,
    overrides,
) -> None:
    """Zero-shot audio<->visual retrieval: R@1/5/10, median and mean rank (spec §8).

    Features are extracted once and serve every strategy and both directions.
    """
    import time

    from cavkit.evaluation.features import Features, extract_features
    from cavkit.evaluation.retrieval import evaluate_many, normalize_directions, results_json, results_table

    parsed = _load_recipe(recipe, overrides)
    directions_t = normalize_directions(directions)
    dev = resolve_device(device)
    dataset = None
    started = time.perf_counter()
    if features_uri:
        features = Features.load(features_uri)
        if samples:
            features = Features(
                features.audio[:samples],
                features.visual[:samples],
                None if features.labels is None else features.labels[:samples],
                features.clip_ids[:samples],
                features.embedding,
            )
    else:
        model = load_eval_model(checkpoint, parsed, dev)
        dataset = build_eval_dataset(
            node_data=recipe_data(parsed, "eval"),
            datafile=datafile,
            dataset_type=dataset_type,
            data_params=key_values(data_params, "--data"),
            mode="retrieval",
            sync=_is_sync(model),
        )
        features = extract_features(
            model,
            _loader(dataset, batch_size, num_workers),
            embedding=embedding,
            device=dev,
            autocast_dtype=autocast_dtype(precision),
            limit=samples,
        )
    extracted = time.perf_counter()
    if save_features:
        features.save(save_features)
    top_k = 5 if gallery else 0
    built = {name: build_strategy(name, parsed) for name in _strategy_names(strategies, parsed)}
    if use_index:
        from cavkit.evaluation.index import evaluate_retrieval_index

        results = {
            name: evaluate_retrieval_index(
                features.audio, features.visual, strategy, directions=directions_t, top_k=max(top_k, 10)
            )
            for name, strategy in built.items()
        }
    else:
        results = evaluate_many(
            features.audio, features.visual, built, directions=directions_t, tie_mode=tie_mode, top_k=top_k, device=dev
        )
    finished = time.perf_counter()
    n, k, d = features.audio.shape
    click.echo(f"{n} clips x {k} frames x {d} dims ({features.embedding} embeddings), tie mode {tie_mode}")
    click.echo(results_table(results))
    click.echo(f"features {extracted - started:.1f} s, retrieval {finished - extracted:.2f} s")
    if json_uri:
        _write_json(
            json_uri,
            results_json(
                results,
                clips=n,
                frames=k,
                dim=d,
                tie_mode="index" if use_index else tie_mode,
                embedding=features.embedding,
                checkpoint=checkpoint,
                features=features_uri,
            ),
        )
        click.echo(f"wrote {json_uri}")
    if gallery:
        from cavkit.evaluation.gallery import write_gallery

        first = next(iter(results))
        fetch = (lambda i: dataset[i]) if dataset is not None else None
        write_gallery(
            gallery, results[first], features.clip_ids, queries=gallery_queries, fetch=fetch, title=f"({first})"
        )
        click.echo(f"wrote {gallery}")


# -- cavkit eval classify ------------------------------------------------------------------------
@eval_group.command("classify")
@click.argument("recipe", required=False)
@_CHECKPOINT
@_DATAFILE
@_DATASET_TYPE
@_DATA_PARAMS
@click.option(
    "--mode",
    "modes",
    multiple=True,
    help="classifier modality mode(s): multimodal, audioonly, videoonly, missingaudioonly, missingvideoonly "
    "(default: the model's)",
)
@click.option(
    "--frames",
    help="multi-frame evaluation: frame indices to average, e.g. 0-9 or 2,5 (spec §7.1); "
    "default: the dataset's eval frame",
)
@click.option(
    "--activation",
    type=click.Choice(["auto", "sigmoid", "softmax"]),
    default="auto",
    show_default=True,
    help="sigmoid (multi-label, mAP) or softmax (single-label, accuracy); auto: from the labels",
)
@click.option(
    "--knn",
    "knn_k",
    type=click.IntRange(1),
    help="kNN on frozen embeddings with K neighbours instead of the classifier head",
)
@click.option("--train-datafile", help="kNN: the clips that vote (default: the recipe's data.train)")
@click.option(
    "--train-features", help="kNN: reuse embeddings of the voting clips (from cavkit eval retrieval --save-features)"
)
@click.option("--features", "features_uri", help="kNN: reuse embeddings of the evaluation clips")
@click.option(
    "--embedding-modality",
    type=click.Choice(["audio", "visual", "both"]),
    default="both",
    show_default=True,
    help="kNN: which embeddings vote (both: concatenation of the two)",
)
@click.option("--embedding", type=click.Choice(["auto", "global", "pooled"]), default="auto", show_default=True)
@click.option("--samples", type=click.IntRange(1), help="use only the first N evaluation clips")
@click.option("--json", "json_uri", help="write the metrics as JSON here")
@_BATCH
@_WORKERS
@_DEVICE
@_PRECISION
@_SET
def classify_command(
    recipe,
    checkpoint,
    datafile,
    dataset_type,
    data_params,
    modes,
    frames,
    activation,
    knn_k,
    train_datafile,
    train_features,
    features_uri,
    embedding_modality,
    embedding,
    samples,
    json_uri,
    batch_size,
    num_workers,
    device,
    precision,
    overrides,
) -> None:
    """Classification: mAP (multi-label), accuracy (single-label), AUC and d-prime (spec §7.1)."""
    parsed = _load_recipe(recipe, overrides)
    dev = resolve_device(device)
    params = key_values(data_params, "--data")
    report: dict[str, Any] = {"checkpoint": checkpoint}
    if knn_k:
        report["knn"] = _knn(
            parsed,
            checkpoint,
            datafile,
            dataset_type,
            params,
            train_datafile,
            train_features,
            features_uri,
            embedding_modality,
            embedding,
            samples,
            knn_k,
            batch_size,
            num_workers,
            dev,
            precision,
        )
        rows = {f"knn k={knn_k} ({embedding_modality})": report["knn"]}
    else:
        report["modes"] = _classify_heads(
            parsed,
            checkpoint,
            datafile,
            dataset_type,
            params,
            modes,
            frames,
            activation,
            samples,
            batch_size,
            num_workers,
            dev,
            precision,
        )
        rows = report["modes"]
    click.echo(classification_table(rows))
    if json_uri:
        _write_json(json_uri, report)
        click.echo(f"wrote {json_uri}")


def classification_table(rows: dict[str, dict[str, float]]) -> str:
    header = f"{'':<28}{'mAP':>8}{'acc':>8}{'mAUC':>8}{'d-prime':>9}{'N':>7}"
    lines = [header, "-" * len(header)]
    for name, m in rows.items():
        lines.append(
            f"{name:<28}{100 * m['mAP']:>8.2f}{100 * m['accuracy']:>8.2f}{100 * m['mAUC']:>8.2f}"
            f"{m['d_prime']:>9.3f}{m['samples']:>7d}"
        )
    return "\n".join(lines)


def _frame_list(frames: str | None) -> list[int | None]:
    if not frames:
        return [None]
    out: list[int] = []
    for part in frames.split(","):
        lo, sep, hi = part.partition("-")
        try:
            out += list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
        except ValueError as exc:
            raise UsageError(f"--frames {frames!r}: use indices like 0-9 or 2,5") from exc
    return out


def _classify_heads(
    recipe,
    checkpoint,
    datafile,
    dataset_type,
    params,
    modes,
    frames,
    activation,
    samples,
    batch_size,
    num_workers,
    device,
    precision,
) -> dict[str, dict[str, float]]:
    import torch

    from cavkit.evaluation.classification import average_over_frames, classification_metrics

    model = load_eval_model(checkpoint, recipe, device)
    if not hasattr(model, "head") or not hasattr(model, "features"):
        raise UsageError("this checkpoint holds no classifier; fine-tune one with `cavkit train`, or use --knn K")
    modes = modes or (getattr(model, "mode", "multimodal"),)
    dtype = autocast_dtype(precision)
    # a clip classifier (Sync) reads every frame of a clip at once; --frames picks which frames
    clip_model = getattr(model, "takes_all_frames", False)
    keep = _frame_list(frames) if clip_model and frames else None
    results: dict[str, dict[str, float]] = {}
    for mode in modes:
        per_frame, targets = [], None
        for frame in [None] if clip_model else _frame_list(frames):
            extra = dict(params)
            if frame is not None:
                extra["eval_frame"] = frame
            dataset = build_eval_dataset(
                node_data=recipe_data(recipe, "eval"),
                datafile=datafile,
                dataset_type=dataset_type,
                data_params=extra,
                mode="retrieval" if clip_model else "eval",
                sync=_is_sync(model),
            )
            logits, labels = [], []
            seen = 0
            with torch.inference_mode():
                for batch in _loader(dataset, batch_size, num_workers):
                    if samples and seen >= samples:
                        break
                    take = batch["audio"].shape[0] if not samples else min(batch["audio"].shape[0], samples - seen)
                    audio, image = batch["audio"][:take], batch["image"][:take]
                    if keep is not None:
                        audio, image = select_frames(audio, image, keep)
                    clip_frames = audio.shape[1] if clip_model and audio.dim() == 4 else 1
                    with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                        out = model.head(model.features(audio.to(device), image.to(device), mode))
                    logits.append(out.float().cpu())
                    if "label" not in batch:
                        raise UsageError(
                            "the evaluation dataset has no labels; give it a label_csv (--data label_csv=...)"
                        )
                    labels.append(batch["label"][:take].float())
                    seen += take
            per_frame.append(torch.cat(logits))
            targets = torch.cat(labels)
            if per_frame[-1].shape[1] != targets.shape[1]:
                raise UsageError(
                    f"the classifier predicts {per_frame[-1].shape[1]} classes but the dataset's labels have "
                    f"{targets.shape[1]}; check the label CSV (--data label_csv=...)"
                )
        act = activation
        if act == "auto":
            act = "softmax" if bool(((targets > 0.5).sum(dim=1) == 1).all()) else "sigmoid"
        results[mode] = classification_metrics(average_over_frames(per_frame, act), targets)
        results[mode]["frames"] = clip_frames if clip_model else len(per_frame)
    return results


def select_frames(audio, image, keep: list[int]):
    """Frames ``keep`` of clip batches ``audio [B,K,L,128]`` and ``image [B,K,3,H,W]`` (``--frames``)."""
    k = audio.shape[1] if audio.dim() == 4 else 1
    bad = [i for i in keep if not 0 <= i < k]
    if bad or audio.dim() != 4:
        raise UsageError(f"--frames {','.join(map(str, bad or keep))}: the evaluation clips have {k} frames (0-{k - 1})")
    return audio[:, keep], image[:, keep]


def _knn(
    recipe,
    checkpoint,
    datafile,
    dataset_type,
    params,
    train_datafile,
    train_features,
    features_uri,
    modality,
    embedding,
    samples,
    k,
    batch_size,
    num_workers,
    device,
    precision,
) -> dict[str, float]:
    import torch

    from cavkit.evaluation.classification import classification_metrics
    from cavkit.evaluation.configs import KnnConfig
    from cavkit.evaluation.features import Features, extract_features
    from cavkit.evaluation.knn import knn_scores

    model = None

    def features_of(uri, data_uri, role, limit):
        nonlocal model
        if uri:
            return Features.load(uri)
        if model is None:
            model = load_eval_model(checkpoint, recipe, device)
        dataset = build_eval_dataset(
            node_data=recipe_data(recipe, role),
            datafile=data_uri,
            dataset_type=dataset_type,
            data_params=params,
            mode="eval",
            sync=_is_sync(model),
            role=role,
        )
        return extract_features(
            model,
            _loader(dataset, batch_size, num_workers),
            embedding=embedding,
            device=device,
            autocast_dtype=autocast_dtype(precision),
            limit=limit,
        )

    train = features_of(train_features, train_datafile, "train", None)
    query = features_of(features_uri, datafile, "eval", samples)
    for name, f in (("voting", train), ("evaluation", query)):
        if f.labels is None:
            raise UsageError(f"the {name} clips have no labels; give the dataset a label_csv (--data label_csv=...)")

    def vectors(f):
        a, v = f.audio.mean(dim=1), f.visual.mean(dim=1)
        if modality == "audio":
            return a
        if modality == "visual":
            return v
        return torch.cat([torch.nn.functional.normalize(a, dim=-1), torch.nn.functional.normalize(v, dim=-1)], dim=-1)

    # the same clips on both sides: leave-one-out, so that no clip votes for itself
    same = features_uri is not None and features_uri == train_features
    scores = knn_scores(vectors(query), vectors(train), train.labels, KnnConfig(k=k), exclude_self=same)
    out = classification_metrics(scores, query.labels)
    out["k"] = k
    out["leave_one_out"] = same
    return out
