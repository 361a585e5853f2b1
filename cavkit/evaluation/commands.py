"""``cavkit eval retrieval`` and ``cavkit eval classify``: options in, tables and JSON out.

The work lives in library modules: :mod:`cavkit.evaluation.retrieval_job`,
:mod:`cavkit.evaluation.classify_job` and :mod:`cavkit.evaluation.sources` (model and clips).
This module imports no torch at import time (``cavkit --help`` stays fast); command bodies do.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
import click

from cavkit import cli_options as opts
from cavkit.errors import UsageError
from cavkit.plugins import get_plugin_host


@attrs.frozen
class EvalInputs:
    """What every eval command reads: the recipe (parsed, or ``None``), the checkpoint and the clips
    (a :class:`cavkit.evaluation.sources.DataSource`)."""

    recipe: Any
    checkpoint: str | None
    source: Any


def _eval_inputs(recipe, checkpoint, datafile, dataset_type, data_params, overrides) -> EvalInputs:
    from cavkit.evaluation.sources import DataSource, recipe_data
    from cavkit.option_values import key_values

    if recipe is None and overrides:
        raise UsageError("--set needs a recipe")
    parsed = None
    if recipe is not None:
        from cavkit.recipe import load_recipe

        parsed = load_recipe(recipe, overrides, host=get_plugin_host())
    source = DataSource(
        datafile=datafile,
        dataset_type=dataset_type,
        params=key_values(data_params, "--data"),
        recipe_node=recipe_data(parsed, "eval"),
    )
    return EvalInputs(recipe=parsed, checkpoint=checkpoint, source=source)


_INPUTS = opts.grouped(
    "inputs",
    _eval_inputs,
    click.argument("recipe", required=False),
    opts.checkpoint_option(help="model checkpoint (cavkit run/checkpoint or an official .pth)"),
    opts.datafile_option(help="datafile JSON of the evaluation clips (instead of the recipe's data.eval)"),
    opts.dataset_type_option(
        help="dataset component for --datafile (default: from the model's declared inputs: cav_mae_sync for "
        "per-frame segments, else cav_mae)"
    ),
    opts.data_params_option(help="extra dataset parameter (repeatable), e.g. --data label_csv=labels.csv"),
    opts.set_option(),
)
#: DataLoader and device settings, passed on as ``runtime`` (keyword arguments of the job options)
_RUNTIME = opts.grouped(
    "runtime",
    dict,
    opts.batch_size_option(),
    opts.num_workers_option(),
    opts.device_option(),
    opts.precision_option(help="autocast precision of the forward passes (upstream retrieval runs fp16 on GPU)"),
)
_JSON = click.option("--json", "json_uri", help="write the metrics as JSON here")


@click.group("eval")
def eval_group() -> None:
    """Evaluate a model: zero-shot retrieval and classification (spec §7.1, §8)."""


def _write_json(uri: str, data: dict[str, Any]) -> None:
    from cavkit.io import write_bytes_atomic

    write_bytes_atomic(uri, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    click.echo(f"wrote {uri}")


# -- cavkit eval retrieval -----------------------------------------------------------------------
@eval_group.command("retrieval")
@_INPUTS
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
@opts.choice_option(
    "--tie-mode",
    choices=["strict", "upstream"],
    default="strict",
    help="strict: a tie counts against the query; upstream: the published compute_metrics",
)
@opts.embedding_option()
@click.option(
    "--index",
    "use_index",
    is_flag=True,
    help="rank with a FAISS index (pip install faiss-cpu) instead of exact matrices",
)
@_JSON
@click.option("--gallery", help="write the top matches of the first queries as .html or .png")
@click.option(
    "--gallery-queries", default=8, show_default=True, type=click.IntRange(1), help="queries shown in the gallery"
)
@_RUNTIME
def retrieval_command(
    inputs,
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
    runtime,
) -> None:
    """Zero-shot audio<->visual retrieval: R@1/5/10, median and mean rank (spec §8).

    Features are extracted once and serve every strategy and both directions.
    """
    from cavkit.evaluation.retrieval import results_json, results_table
    from cavkit.evaluation.retrieval_job import RetrievalOptions, run_retrieval

    options = RetrievalOptions(
        checkpoint=inputs.checkpoint,
        source=inputs.source,
        features_uri=features_uri,
        strategies=tuple(strategies),
        directions=directions,
        samples=samples,
        tie_mode=tie_mode,
        embedding=embedding,
        use_index=use_index,
        top_k=5 if gallery else 0,
        **runtime,
    )
    run = run_retrieval(options, host=get_plugin_host(), recipe=inputs.recipe)
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
                checkpoint=inputs.checkpoint,
                features=features_uri,
            ),
        )
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


def _knn_options(k, **values) -> Any:
    """:class:`~cavkit.evaluation.classify_job.KnnOptions`, or ``None`` without ``--knn``."""
    from cavkit.evaluation.classify_job import KnnOptions

    return KnnOptions(k=k, **values) if k else None


#: ``cavkit eval classify --knn K`` and the options it reads, passed on as ``knn`` (``None``: the head)
_KNN = opts.grouped(
    "knn",
    _knn_options,
    click.option(
        "--knn",
        "k",
        type=click.IntRange(1),
        help="kNN on frozen embeddings with K neighbours instead of the classifier head",
    ),
    click.option("--train-datafile", help="kNN: the clips that vote (default: the recipe's data.train)"),
    click.option(
        "--train-features",
        help="kNN: reuse embeddings of the voting clips (from cavkit eval retrieval --save-features)",
    ),
    click.option("--features", "features_uri", help="kNN: reuse embeddings of the evaluation clips"),
    opts.choice_option(
        "--embedding-modality",
        "modality",
        choices=["audio", "visual", "both"],
        default="both",
        help="kNN: which embeddings vote (both: concatenation of the two)",
    ),
)


@eval_group.command("classify")
@_INPUTS
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
@opts.choice_option(
    "--activation",
    choices=["auto", "sigmoid", "softmax"],
    default="auto",
    help="sigmoid (multi-label, mAP) or softmax (single-label, accuracy); auto: from the labels",
)
@_KNN
@opts.embedding_option()
@click.option("--samples", type=click.IntRange(1), help="use only the first N evaluation clips")
@_JSON
@_RUNTIME
def classify_command(
    inputs,
    modes,
    frames,
    activation,
    knn,
    embedding,
    samples,
    json_uri,
    runtime,
) -> None:
    """Classification: mAP (multi-label), accuracy (single-label), AUC and d-prime (spec §7.1)."""
    from cavkit.evaluation.classify_job import ClassifyOptions, classification_table, classify_heads, knn_classify

    options = ClassifyOptions(
        checkpoint=inputs.checkpoint,
        source=inputs.source,
        modes=tuple(modes),
        frames=frames,
        activation=activation,
        embedding=embedding,
        samples=samples,
        **runtime,
    )
    report: dict[str, Any] = {"checkpoint": inputs.checkpoint}
    if knn is not None:
        report["knn"] = knn_classify(options, knn, host=get_plugin_host(), recipe=inputs.recipe)
        rows = {f"knn k={knn.k} ({knn.modality})": report["knn"]}
    else:
        report["modes"] = classify_heads(options, host=get_plugin_host(), recipe=inputs.recipe)
        rows = report["modes"]
    click.echo(classification_table(rows))
    if json_uri:
        _write_json(json_uri, report)
