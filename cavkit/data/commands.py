"""The data commands: ``cavkit prepare``, ``cavkit data check`` and ``cavkit data synthetic-segmentation``
(click; torch is imported only when a command runs)."""

from __future__ import annotations

import json
import os

import click


@click.command("prepare")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "-o", required=True, help="Output folder or URI (audio/, frames/, datafile.json, ...).")
@click.option("--model", metavar="MODEL", default="cav_mae", show_default=True, help="Registered model the clips are for (`cavkit components model`); sets the frame count from its input declaration: 10 for cav_mae, 16 for cav_mae_sync.")
@click.option("--frames", type=int, default=None, help="Frames per clip (overrides --model).")
@click.option("--frame-method", type=click.Choice(["cavmae", "linspace"]), default="cavmae", show_default=True, help="cavmae: int(i*N/n)-1 over the first 10 s (published); linspace: Sync dev extractor.")
@click.option("--image-size", type=int, default=224, show_default=True, help="Saved frame side (Resize short side + CenterCrop).")
@click.option("--labels", "labels_uri", default=None, help="CSV with columns video_id,labels (labels comma-separated mids).")
@click.option("--label-names", default=None, help="Label CSV index,mid,display_name fixing class order (default: sorted mids).")
@click.option("--min-seconds", type=float, default=1.0, show_default=True, help="Fail clips with less audio than this ('too short').")
@click.option("--workers", "-j", type=int, default=min(4, os.cpu_count() or 1), show_default=True, help="Parallel workers.")
@click.option("--shards", "shard_size", type=int, default=0, help="Also write tar shards of this many clips each (0: none).")
@click.option("--relative-paths", is_flag=True, help="Write datafile paths relative to OUT (portable folder).")
@click.option("--overwrite", is_flag=True, help="Redo clips that are already prepared.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def prepare_command(inputs, out, model, frames, frame_method, image_size, labels_uri, label_names, min_seconds, workers, shard_size, relative_paths, overwrite, no_progress):
    """Turn videos (folders, list files, URIs or globs) into wav + frames + a datafile.

    Writes OUT/audio/<id>.wav (16 kHz mono), OUT/frames/frame_<i>/<id>.jpg, OUT/datafile.json,
    given --labels also OUT/labels.csv and OUT/datafile_weight.csv, and OUT/prepare_report.json.
    Re-running skips clips that are complete.
    """
    from cavkit.data import datafile as df
    from cavkit.data.prepare import PrepareOptions, load_label_table, prepare
    from cavkit.errors import UsageError
    from cavkit.plugins import get_plugin_host

    num_frames = model_frames(model, get_plugin_host(), frames)
    if num_frames < 1 or image_size < 16 or workers < 1:
        raise UsageError("--frames must be >= 1, --image-size >= 16 and --workers >= 1")
    options = PrepareOptions(out=out, num_frames=num_frames, frame_method=frame_method, image_size=image_size, min_seconds=min_seconds, relative_paths=relative_paths, overwrite=overwrite)
    labels = load_label_table(labels_uri) if labels_uri else None
    names = df.load_label_csv(label_names) if label_names else None
    summary = prepare(list(inputs), options, labels=labels, label_names=names, workers=workers, progress=not no_progress, shard_size=shard_size)
    for line in summary.lines():
        click.echo(line)
    click.echo(f"datafile: {out.rstrip('/')}/datafile.json")
    if summary.count("prepared") + summary.count("skipped") == 0:
        raise UsageError("no clip could be prepared (see the reasons above)")


def model_frames(name: str, host, frames: int | None = None) -> int:
    """Frames per clip for ``cavkit prepare --model NAME``: ``frames`` (``--frames``) when given, else
    the registered model's :class:`~cavkit.models.inputs.InputSpec` ``num_frames``, else the
    ``num_frames`` default of the built-in dataset for its input layout (``cav_mae``: 10 for whole
    clips, ``cav_mae_sync``: 16 for frame segments).

    The declaration is read from the registered factory (a model class's ``input_spec``), else
    derived from the model's default config (the built-in models).

    :raises UsageError: ``name`` is not a registered model (the message lists those that are).
    """
    import attrs

    from cavkit.checkpoints.build import build_model_node
    from cavkit.errors import AmbiguousComponentError, UnknownComponentError, UsageError
    from cavkit.models.inputs import InputSpec, dataset_type_for, derive_input_spec

    registry = host.registry
    try:
        spec = registry.get("model", name, failed_plugins=host.failed_names())
    except (UnknownComponentError, AmbiguousComponentError) as exc:
        raise UsageError(f"--model: {exc}; the registered models are {', '.join(registry.names('model'))}") from None
    if frames is not None:
        return frames
    declared = getattr(spec.factory_callable(), "input_spec", None)
    if not isinstance(declared, InputSpec):
        declared = derive_input_spec(build_model_node({"type": name}, source=f"--model {name}", host=host))
    if declared.num_frames:
        return declared.num_frames
    dataset = registry.get("dataset", dataset_type_for(declared)).config_class()
    return attrs.fields_dict(dataset)["num_frames"].default


@click.group("data")
def data_group() -> None:
    """Inspect prepared data."""


@data_group.command("check")
@click.argument("datafile")
@click.option("--frames", type=int, default=16, show_default=True, help="Check frame_0 .. frame_<N-1>.")
@click.option("--workers", "-j", type=int, default=8, show_default=True, help="Threads reading files.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--strict", is_flag=True, help="Exit with status 1 when anything is missing or unreadable.")
def check_command(datafile, frames, workers, as_json, strict):
    """Count missing or unreadable audio and frames of a datafile, before a run starts."""
    from cavkit.data.check import check_datafile

    report = check_datafile(datafile, num_frames=frames, workers=workers)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=1))
    else:
        for line in report.lines():
            click.echo(line)
    if strict and not report.all_ok:
        raise SystemExit(1)


@data_group.command("synthetic-segmentation")
@click.option("--out", "-o", required=True, help="output folder or URI (images/, masks/, audio/, datafile.json)")
@click.option("--num-images", default=64, show_default=True, type=click.IntRange(1), help="triples to write")
@click.option("--image-size", default=64, show_default=True, type=click.IntRange(16), help="frame side in pixels")
@click.option(
    "--audio-length",
    default=256,
    show_default=True,
    type=click.IntRange(16),
    help="whole-clip fbank rows (a CAV-MAE model's audio_length; Sync models use the middle segment)",
)
@click.option("--num-frames", default=8, show_default=True, type=click.IntRange(1), help="frames per synthetic clip")
@click.option("--seed", default=0, show_default=True, help="generator seed")
@click.option("--split", default="test", show_default=True, help="split name mixed into the seed (train clips differ)")
@click.option("--overwrite", is_flag=True, help="replace an existing datafile.json in OUT")
def synthetic_segmentation_command(out, num_images, image_size, audio_length, num_frames, seed, split, overwrite):
    """Write a sound-prompted segmentation set (image, object mask, sound) from the synthetic generator,
    for `cavkit eval segmentation --datafile OUT/datafile.json`."""
    from cavkit.data import storage
    from cavkit.data.configs import SyntheticDataConfig
    from cavkit.data.synthetic_segmentation import write_synthetic_segmentation
    from cavkit.errors import UsageError

    target = storage.join(out, "datafile.json")
    if storage.exists(target) and not overwrite:
        raise UsageError(f"{target} exists; choose another --out or pass --overwrite")
    config = SyntheticDataConfig(
        layout="cav_mae",
        mode="eval",
        num_clips=num_images,
        image_size=image_size,
        audio_length=audio_length,
        num_frames=num_frames,
        seed=seed,
        split=split,
    )
    ids = write_synthetic_segmentation(out, config, num_images)
    click.echo(f"wrote {len(ids)} (image, mask, audio) triples; datafile: {target}")
