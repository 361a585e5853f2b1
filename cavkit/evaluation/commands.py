"""``cavkit eval retrieval`` and ``cavkit eval classify``: options in, tables and JSON out.

The work lives in library modules: :mod:`cavkit.evaluation.retrieval_job`,
:mod:`cavkit.evaluation.classify_job` and :mod:`cavkit.evaluation.sources` (model and clips).
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
    embedding_option,
    num_workers_option,
    precision_option,
    set_option,
)
from cavkit.errors import UsageError
from cavkit.option_values import key_values
from cavkit.plugins import get_plugin_host

_DEVICE = device_option()
_PRECISION = precision_option(help="autocast precision of the forward passes (upstream retrieval runs fp16 on GPU)")
_BATCH = batch_size_option()
_WORKERS = num_workers_option()
_CHECKPOINT = checkpoint_option(help="model checkpoint (cavkit run/checkpoint or an official .pth)")
_DATAFILE = datafile_option(help="datafile JSON of the evaluation clips (instead of the recipe's data.eval)")
_DATASET_TYPE = dataset_type_option(
    help="dataset component for --datafile (default: from the model's declared inputs: cav_mae_sync for "
    "per-frame segments, else cav_mae)"
)
_DATA_PARAMS = data_params_option(help="extra dataset parameter (repeatable), e.g. --data label_csv=labels.csv")
_SET = set_option()


@click.group("eval")
def eval_group() -> None:
    """Evaluate a model: zero-shot retrieval and classification (spec §7.1, §8)."""


def _load_recipe(recipe: str | None, overrides: tuple[str, ...]):
    if recipe is None:
        if overrides:
            raise UsageError("--set needs a recipe")
        return None
    from cavkit.recipe import load_recipe

    return load_recipe(recipe, overrides, host=get_plugin_host())


def _source(parsed, datafile, dataset_type, data_params, role: str = "eval"):
    from cavkit.evaluation.sources import DataSource, recipe_data

    return DataSource(
        datafile=datafile,
        dataset_type=dataset_type,
        params=key_values(data_params, "--data"),
        recipe_node=recipe_data(parsed, role),
    )


def _write_json(uri: str, data: dict[str, Any]) -> None:
    from cavkit.io import write_bytes_atomic

    write_bytes_atomic(uri, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8"))


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
    metavar="NAME[:key=value[,key=value]]",
    help="retrieval strategy with optional parameters, validated like recipe params (repeatable or comma "
    "list; 'all'), e.g. max:chunk_mb=16; default: the recipe's, else diagonal_mean",
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
@embedding_option()
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
    from cavkit.evaluation.retrieval import results_json, results_table
    from cavkit.evaluation.retrieval_job import RetrievalOptions, run_retrieval

    parsed = _load_recipe(recipe, overrides)
    options = RetrievalOptions(
        checkpoint=checkpoint,
        source=_source(parsed, datafile, dataset_type, data_params),
        features_uri=features_uri,
        strategies=tuple(strategies),
        directions=directions,
        samples=samples,
        tie_mode=tie_mode,
        embedding=embedding,
        use_index=use_index,
        top_k=5 if gallery else 0,
        batch_size=batch_size,
        num_workers=num_workers,
        device=device,
        precision=precision,
    )
    run = run_retrieval(options, host=get_plugin_host(), recipe=parsed)
    features, results = run.features, run.results
    if save_features:
        features.save(save_features)
    n, k, d = features.audio.shape
    click.echo(f"{n} clips x {k} frames x {d} dims ({features.embedding} embeddings), tie mode {tie_mode}")
    click.echo(results_table(results))
    click.echo(f"features {run.feature_seconds:.1f} s, retrieval {run.retrieval_seconds:.2f} s")
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
        dataset = run.dataset
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
@embedding_option()
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
    from cavkit.evaluation.classify_job import (
        ClassifyOptions,
        KnnOptions,
        classification_table,
        classify_heads,
        knn_classify,
    )

    parsed = _load_recipe(recipe, overrides)
    options = ClassifyOptions(
        checkpoint=checkpoint,
        source=_source(parsed, datafile, dataset_type, data_params),
        modes=tuple(modes),
        frames=frames,
        activation=activation,
        embedding=embedding,
        samples=samples,
        batch_size=batch_size,
        num_workers=num_workers,
        device=device,
        precision=precision,
    )
    report: dict[str, Any] = {"checkpoint": checkpoint}
    if knn_k:
        knn = KnnOptions(
            k=knn_k,
            train_datafile=train_datafile,
            train_features=train_features,
            features_uri=features_uri,
            modality=embedding_modality,
        )
        report["knn"] = knn_classify(options, knn, host=get_plugin_host(), recipe=parsed)
        rows = {f"knn k={knn_k} ({embedding_modality})": report["knn"]}
    else:
        report["modes"] = classify_heads(options, host=get_plugin_host(), recipe=parsed)
        rows = report["modes"]
    click.echo(classification_table(rows))
    if json_uri:
        _write_json(json_uri, report)
        click.echo(f"wrote {json_uri}")
