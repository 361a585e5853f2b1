"""The picture commands: ``cavkit inpaint``, ``cavkit localize``, ``cavkit embed``, ``cavkit report``.

Data options are the evaluation commands' (``--datafile``, ``--dataset-type``, ``--data KEY=VALUE``,
from :mod:`cavkit.cli_options`). torch and matplotlib are imported only inside command bodies, so
``cavkit --help`` stays fast; the work itself lives in the library modules of :mod:`cavkit.pictures`.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
import click

from cavkit import cli_options as opts
from cavkit.devices import autocast_dtype, resolve_device
from cavkit.errors import UsageError
from cavkit.option_values import key_values
from cavkit.plugins import get_plugin_host


@attrs.frozen
class PictureInputs:
    """The model and clips a picture command reads: ``--checkpoint``, ``--datafile``, ``--dataset-type``,
    ``--data`` (the eval commands' data options), ``--set`` and ``--device``."""

    checkpoint: str
    datafile: str | None
    dataset_type: str | None
    data_params: tuple[str, ...]
    model_overrides: tuple[str, ...]
    device: str

    def read_checkpoint(self, host: Any) -> Any:
        """The ``--checkpoint`` file's :class:`~cavkit.checkpoints.read.CheckpointContents`, for a command
        that inspects it before :meth:`load_model` (so that the file is read once)."""
        from cavkit.checkpoints.read import read_checkpoint

        return read_checkpoint(self.checkpoint, host=host)

    def load_model(self, host: Any, contents: Any = None) -> tuple[Any, Any]:
        """``(model in eval mode, torch device it is on)``, validated against ``host``'s registry.

        :param contents: the checkpoint as :meth:`read_checkpoint` returned it (``None``: read it now).
        """
        from cavkit.pictures.sources import load_picture_model

        dev = resolve_device(self.device)
        checkpoint = self.checkpoint if contents is None else contents
        return load_picture_model(checkpoint, dev, self.model_overrides, host=host), dev

    def dataset(self, model: Any, mode: str) -> Any:
        """The clips for ``model`` in dataset ``mode`` (``eval``: one frame; ``retrieval``: every frame)."""
        from cavkit.pictures.sources import open_dataset

        if self.datafile is None and self.dataset_type is None:
            raise UsageError("give the clips: --datafile FILE.json (or --dataset-type NAME with --data KEY=VALUE)")
        return open_dataset(
            model,
            host=get_plugin_host(),
            datafile=self.datafile,
            dataset_type=self.dataset_type,
            data_params=key_values(self.data_params, "--data"),
            mode=mode,
        )


_INPUTS = opts.grouped(
    "inputs",
    PictureInputs,
    opts.checkpoint_option(required=True),
    opts.datafile_option(),
    opts.dataset_type_option(),
    opts.data_params_option(help="dataset parameter (repeatable), e.g. --data num_clips=8"),
    opts.set_option(
        "model_overrides",
        help="model setting a checkpoint does not record (repeatable), e.g. --set encoder.num_heads=2",
    ),
    opts.device_option(),
)
#: which clips to draw, passed on as ``pick = (clip ids, how many)`` for :func:`~cavkit.pictures.sources.select_items`
_PICK = opts.grouped(
    "pick",
    lambda clip_ids, num_clips: (clip_ids, num_clips),
    click.option(
        "--clip",
        "clip_ids",
        multiple=True,
        metavar="ID",
        help="clip id to draw (repeatable; default: the first --num-clips)",
    ),
    click.option(
        "--num-clips",
        default=4,
        show_default=True,
        type=click.IntRange(1),
        help="clips to draw when no --clip is given",
    ),
)
_OUT_DIR = click.option("--out", "out_dir", required=True, help="output folder (any fsspec URI)")


def _ratio(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise UsageError(f"masking ratio {text} must be in [0, 1)")
    return value


# -- inpaint --------------------------------------------------------------------------------------
@click.command("inpaint")
@_INPUTS
@_PICK
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
@_OUT_DIR
def inpaint_command(inputs, pick, ratios, visual_ratio, modes, seed, pixel_targets, arrays, out_dir):
    """Reconstruct masked clips: one PNG per clip, ratio and mode with the original, masked and
    reconstructed image and spectrogram (spec §9.1). Needs a model trained with norm_pix_loss false."""
    from cavkit.pictures.inpaint_job import InpaintOptions, inpaint_clips
    from cavkit.pictures.sources import require_pixel_targets, select_items

    options = InpaintOptions(
        modes=tuple(modes),
        audio_ratios=tuple(_ratio(r) for r in ratios),
        visual_ratio=None if visual_ratio is None else _ratio(visual_ratio),
        seed=seed,
        arrays=arrays,
    )
    host = get_plugin_host()
    contents = inputs.read_checkpoint(host)
    how = require_pixel_targets(contents, pixel_targets, host=host)
    click.echo(f"pixel targets: {how}", err=True)
    model, dev = inputs.load_model(host, contents)
    items = select_items(inputs.dataset(model, "eval"), *pick)
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
def _localize_options(**values: Any) -> Any:
    from cavkit.pictures.localize_job import LocalizeOptions

    return LocalizeOptions(**values)


#: the drawing and scoring options of ``cavkit localize``, passed on as one LocalizeOptions
_LOCALIZE_OPTIONS = opts.grouped(
    "options",
    _localize_options,
    opts.embedding_option(
        help="audio embedding to prompt with (auto: the Sync global token when the model has one, else pooled)"
    ),
    opts.choice_option(
        "--animation", choices=["gif", "apng", "none"], default="gif", help="animated file over a clip's frames"
    ),
    click.option(
        "--frame-ms", default=250, show_default=True, type=click.IntRange(10), help="animation frame duration"
    ),
    click.option("--alpha", default=0.5, show_default=True, type=click.FloatRange(0, 1), help="heatmap opacity"),
    click.option("--cmap", default="jet", show_default=True, help="matplotlib colour map"),
    click.option(
        "--scale",
        default=1,
        show_default=True,
        type=click.IntRange(1, 16),
        help="enlarge the pictures (nearest neighbour)",
    ),
    click.option(
        "--threshold",
        default=0.5,
        show_default=True,
        type=click.FloatRange(0, 1),
        help="IoU: the map (min-max scaled per frame) is thresholded here",
    ),
    click.option("--score-only", is_flag=True, help="write scores.json only, no pictures (for scoring many clips)"),
    opts.centre_option(
        help="audio: subtract the mean audio embedding of the drawn clips before the cosine (the part "
        "the visual->audio InfoNCE leaves untrained; needs 2+ clips); none: plain cosine",
    ),
)


@click.command("localize")
@_INPUTS
@_PICK
@_LOCALIZE_OPTIONS
@_OUT_DIR
def localize_command(inputs, pick, options, out_dir):
    """Sound-prompted localization: per frame, the similarity of the audio embedding with every visual
    patch token, upsampled and drawn over the frame (PNG per frame, animation per clip). Where the
    dataset has ground truth (synthetic: object_mask) it reports pointing-game accuracy and IoU of
    both map variants (plain and audio-centred) next to a centre-prior baseline."""

    from cavkit.io import join, write_bytes_atomic
    from cavkit.pictures.localize_job import localize_clips
    from cavkit.pictures.sources import select_items

    model, dev = inputs.load_model(get_plugin_host())
    items = select_items(inputs.dataset(model, "retrieval"), *pick)
    summary = localize_clips(model, items, options, out_dir=out_dir, device=dev, echo=click.echo)
    if "centre_prior" not in summary:
        click.echo("no ground truth (object_mask) in this dataset: pictures only, no scores", err=True)
    scores = {"checkpoint": inputs.checkpoint, **summary}
    write_bytes_atomic(join(out_dir, "scores.json"), json.dumps(scores, indent=2).encode("utf-8"))


# -- embed ----------------------------------------------------------------------------------------
@click.command("embed")
@_INPUTS
@click.option("--out", "out_file", required=True, help="output file *.safetensors or *.npz (any fsspec URI)")
@opts.choice_option(
    "--kind",
    "kinds",
    multiple=True,
    choices=["global", "pooled", "patches"],
    default=("pooled",),
    help="embeddings to write (repeatable): Sync global tokens, mean of patch tokens, or every patch token",
)
@opts.choice_option(
    "--modality",
    "modalities",
    multiple=True,
    choices=["audio", "visual"],
    default=("audio", "visual"),
    help="modalities to embed (repeatable)",
)
@click.option(
    "--single-frame", is_flag=True, help="one frame per clip even for Sync datasets (default: every frame, [N,K,...])"
)
@opts.batch_size_option()
@opts.num_workers_option()
@opts.precision_option(help="autocast precision")
@opts.choice_option("--dtype", "out_dtype", choices=["float32", "float16"], default="float32", help="stored dtype")
def embed_command(
    inputs,
    out_file,
    kinds,
    modalities,
    single_frame,
    batch_size,
    num_workers,
    precision,
    out_dtype,
):
    """Export audio and visual embeddings (global, pooled or per patch; per frame for Sync) with their
    clip ids to safetensors or NumPy. Embeddings are the model's raw outputs (not L2-normalised)."""
    import numpy as np
    from tqdm import tqdm

    from cavkit.evaluation.sources import eval_loader
    from cavkit.pictures.export import extract_embeddings, format_from_path, write_embeddings

    format_from_path(out_file)  # fail on a bad name before any work
    model, dev = inputs.load_model(get_plugin_host())
    dataset = inputs.dataset(model, "eval" if single_frame else "retrieval")
    loader = eval_loader(dataset, batch_size, num_workers)
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
    for uri in written.values():
        click.echo(f"wrote {uri}")
