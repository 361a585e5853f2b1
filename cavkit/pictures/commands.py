"""The picture commands: ``cavkit inpaint``, ``cavkit localize``, ``cavkit embed``, ``cavkit report``.

Data options are the evaluation commands' (``--datafile``, ``--dataset-type``, ``--data KEY=VALUE``,
from :mod:`cavkit.cli_options`). torch and matplotlib are imported only inside command bodies, so
``cavkit --help`` stays fast; the work itself lives in the library modules of :mod:`cavkit.pictures`.
"""

from __future__ import annotations

import json

import click

from cavkit.cli_options import (
    checkpoint_option,
    data_params_option,
    datafile_option,
    dataset_type_option,
    device_option,
    embedding_option,
    precision_option,
    set_option,
)
from cavkit.devices import autocast_dtype, resolve_device
from cavkit.errors import UsageError
from cavkit.option_values import key_values
from cavkit.plugins import get_plugin_host

_CLIPS = click.option(
    "--clip",
    "clip_ids",
    multiple=True,
    metavar="ID",
    help="clip id to draw (repeatable; default: the first --num-clips)",
)
_NUM_CLIPS = click.option(
    "--num-clips", default=4, show_default=True, type=click.IntRange(1), help="clips to draw when no --clip is given"
)
_OUT_DIR = click.option("--out", "out_dir", required=True, help="output folder (any fsspec URI)")


def _data_options(command):
    """``--checkpoint``, ``--datafile``, ``--dataset-type`` and ``--data`` (shared with ``cavkit eval``)."""
    for option in (
        data_params_option(help="dataset parameter (repeatable), e.g. --data num_clips=8"),
        dataset_type_option(),
        datafile_option(),
        checkpoint_option(required=True),
    ):
        command = option(command)
    return command


_SET = set_option(
    "model_overrides",
    help="model setting a checkpoint does not record (repeatable), e.g. --set encoder.num_heads=2",
)


def _dataset(model, datafile, dataset_type, data_params, mode):
    from cavkit.pictures.sources import open_dataset

    if datafile is None and dataset_type is None:
        raise UsageError("give the clips: --datafile FILE.json (or --dataset-type NAME with --data KEY=VALUE)")
    return open_dataset(
        model,
        host=get_plugin_host(),
        datafile=datafile,
        dataset_type=dataset_type,
        data_params=key_values(data_params, "--data"),
        mode=mode,
    )


def _ratio(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise UsageError(f"masking ratio {text} must be in [0, 1)")
    return value


# -- inpaint --------------------------------------------------------------------------------------
@click.command("inpaint")
@_data_options
@_CLIPS
@_NUM_CLIPS
@click.option(
    "--ratio", "ratios", multiple=True, default=("0.75",), show_default=True, help="audio masking ratio (repeatable)"
)
@click.option("--visual-ratio", default=None, help="visual masking ratio (default: the audio ratio)")
@click.option(
    "--mode",
    "modes",
    multiple=True,
    default=("unstructured",),
    show_default=True,
    help="audio masker: unstructured, time, freq, time_freq or a plugin's (repeatable); "
    "the image is always masked unstructured",
)
@click.option("--seed", default=2, show_default=True, help="torch seed set before every clip (upstream: 2)")
@click.option(
    "--pixel-targets",
    is_flag=True,
    help="declare that the checkpoint was trained without per-patch normalisation (norm_pix_loss false); "
    "needed for official .pth files, which do not record it",
)
@click.option(
    "--arrays", is_flag=True, help="also write <name>.npz with the original, masked and reconstructed tensors and masks"
)
@_SET
@device_option()
@_OUT_DIR
def inpaint_command(
    checkpoint,
    datafile,
    dataset_type,
    data_params,
    clip_ids,
    num_clips,
    ratios,
    visual_ratio,
    modes,
    seed,
    pixel_targets,
    arrays,
    model_overrides,
    device,
    out_dir,
):
    """Reconstruct masked clips: one PNG per clip, ratio and mode with the original, masked and
    reconstructed image and spectrogram (spec §9.1). Needs a model trained with norm_pix_loss false."""
    from cavkit.pictures.inpaint_job import InpaintOptions, inpaint_clips
    from cavkit.pictures.sources import load_picture_model, require_pixel_targets, select_items

    options = InpaintOptions(
        modes=tuple(modes),
        audio_ratios=tuple(_ratio(r) for r in ratios),
        visual_ratio=None if visual_ratio is None else _ratio(visual_ratio),
        seed=seed,
        arrays=arrays,
    )
    host = get_plugin_host()
    how = require_pixel_targets(checkpoint, pixel_targets, host=host)
    click.echo(f"pixel targets: {how}", err=True)
    dev = resolve_device(device)
    model = load_picture_model(checkpoint, dev, model_overrides, host=host)
    dataset = _dataset(model, datafile, dataset_type, data_params, mode="eval")
    items = select_items(dataset, clip_ids, num_clips)
    inpaint_clips(
        model,
        items,
        options,
        out_dir=out_dir,
        device=dev,
        registry=host.registry,
        failed_plugins=host.failed_names(),
        echo=click.echo,
    )


# -- localize -------------------------------------------------------------------------------------
@click.command("localize")
@_data_options
@_CLIPS
@_NUM_CLIPS
@embedding_option(
    help="audio embedding to prompt with (auto: the Sync global token when the model has one, else pooled)"
)
@click.option(
    "--animation",
    type=click.Choice(["gif", "apng", "none"]),
    default="gif",
    show_default=True,
    help="animated file over a clip's frames",
)
@click.option("--frame-ms", default=250, show_default=True, type=click.IntRange(10), help="animation frame duration")
@click.option("--alpha", default=0.5, show_default=True, type=click.FloatRange(0, 1), help="heatmap opacity")
@click.option("--cmap", default="jet", show_default=True, help="matplotlib colour map")
@click.option(
    "--scale", default=1, show_default=True, type=click.IntRange(1, 16), help="enlarge the pictures (nearest neighbour)"
)
@click.option(
    "--threshold",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="IoU: the map (min-max scaled per frame) is thresholded here",
)
@click.option("--score-only", is_flag=True, help="write scores.json only, no pictures (for scoring many clips)")
@click.option(
    "--centre",
    type=click.Choice(["audio", "none"]),
    default="audio",
    show_default=True,
    help="audio: subtract the mean audio embedding of the drawn clips before the cosine (the part "
    "the visual->audio InfoNCE leaves untrained; needs 2+ clips); none: plain cosine",
)
@_SET
@device_option()
@_OUT_DIR
def localize_command(
    checkpoint,
    datafile,
    dataset_type,
    data_params,
    clip_ids,
    num_clips,
    embedding,
    animation,
    frame_ms,
    alpha,
    cmap,
    scale,
    threshold,
    score_only,
    centre,
    model_overrides,
    device,
    out_dir,
):
    """Sound-prompted localization: per frame, the similarity of the audio embedding with every visual
    patch token, upsampled and drawn over the frame (PNG per frame, animation per clip). Where the
    dataset has ground truth (synthetic: object_mask) it reports pointing-game accuracy and IoU of
    both map variants (plain and audio-centred) next to a centre-prior baseline."""

    from cavkit.io import join, write_bytes_atomic
    from cavkit.pictures.localize_job import LocalizeOptions, localize_clips
    from cavkit.pictures.sources import load_picture_model, select_items

    options = LocalizeOptions(
        embedding=embedding,
        animation=animation,
        frame_ms=frame_ms,
        alpha=alpha,
        cmap=cmap,
        scale=scale,
        threshold=threshold,
        score_only=score_only,
        centre=centre,
    )
    dev = resolve_device(device)
    model = load_picture_model(checkpoint, dev, model_overrides, host=get_plugin_host())
    dataset = _dataset(model, datafile, dataset_type, data_params, mode="retrieval")
    items = select_items(dataset, clip_ids, num_clips)
    summary = localize_clips(model, items, options, out_dir=out_dir, device=dev, echo=click.echo)
    if "centre_prior" not in summary:
        click.echo("no ground truth (object_mask) in this dataset: pictures only, no scores", err=True)
    scores = {"checkpoint": checkpoint, **summary}
    write_bytes_atomic(join(out_dir, "scores.json"), json.dumps(scores, indent=2).encode("utf-8"))


# -- embed ----------------------------------------------------------------------------------------
@click.command("embed")
@_data_options
@click.option("--out", "out_file", required=True, help="output file *.safetensors or *.npz (any fsspec URI)")
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    type=click.Choice(["global", "pooled", "patches"]),
    default=("pooled",),
    show_default=True,
    help="embeddings to write (repeatable): Sync global tokens, mean of patch tokens, or every patch token",
)
@click.option(
    "--modality",
    "modalities",
    multiple=True,
    type=click.Choice(["audio", "visual"]),
    default=("audio", "visual"),
    show_default=True,
    help="modalities to embed (repeatable)",
)
@click.option(
    "--single-frame", is_flag=True, help="one frame per clip even for Sync datasets (default: every frame, [N,K,...])"
)
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(1), help="clips per forward pass")
@click.option("--num-workers", default=0, show_default=True, type=click.IntRange(0), help="DataLoader workers")
@precision_option(help="autocast precision")
@click.option(
    "--dtype",
    "out_dtype",
    type=click.Choice(["float32", "float16"]),
    default="float32",
    show_default=True,
    help="stored dtype",
)
@_SET
@device_option()
def embed_command(
    checkpoint,
    datafile,
    dataset_type,
    data_params,
    out_file,
    kinds,
    modalities,
    single_frame,
    batch_size,
    num_workers,
    precision,
    out_dtype,
    model_overrides,
    device,
):
    """Export audio and visual embeddings (global, pooled or per patch; per frame for Sync) with their
    clip ids to safetensors or NumPy. Embeddings are the model's raw outputs (not L2-normalised)."""
    import numpy as np
    import torch
    from tqdm import tqdm

    from cavkit.pictures.export import extract_embeddings, format_from_path, write_embeddings
    from cavkit.pictures.sources import load_picture_model

    format_from_path(out_file)  # fail on a bad name before any work
    dev = resolve_device(device)
    model = load_picture_model(checkpoint, dev, model_overrides, host=get_plugin_host())
    dataset = _dataset(model, datafile, dataset_type, data_params, mode="eval" if single_frame else "retrieval")
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, shuffle=False)
    autocast = autocast_dtype(precision)
    try:
        total = len(dataset)
    except TypeError:  # a stream of unknown length (shards without index.json): no total in the bar
        total = None
    with tqdm(total=total, unit="clip", desc="embedding", disable=None) as bar:
        arrays, clip_ids = extract_embeddings(
            model,
            loader,
            kinds=tuple(kinds),
            modalities=tuple(modalities),
            device=dev,
            autocast_dtype=autocast,
            dtype=np.float16 if out_dtype == "float16" else np.float32,
            progress=bar,
        )
    write_embeddings(out_file, arrays, clip_ids)
    shapes = ", ".join(f"{k} {list(v.shape)}" for k, v in arrays.items())
    click.echo(f"wrote {len(clip_ids)} clips to {out_file}: {shapes}")


# -- report ---------------------------------------------------------------------------------------
@click.command("report")
@click.argument("run_dir")
@click.option("--out", "out_dir", default=None, help="output folder (default: RUN_DIR/report)")
def report_command(run_dir, out_dir):
    """Training curves from a run's TensorBoard logs as PNGs, and a one-page HTML summary (recipe,
    versions, final metrics, evaluation tables, sample pictures)."""
    from cavkit.pictures.report import write_report

    written = write_report(run_dir, out_dir)
    for name, uri in written.items():
        click.echo(f"wrote {uri}")
