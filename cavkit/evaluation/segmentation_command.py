"""``cavkit eval segmentation``: sound-prompted segmentation scores of a model next to a centre prior.

The protocol is :mod:`cavkit.evaluation.segmentation` (docs/evaluation.md). Imports no torch at
module level, so ``cavkit --help`` stays fast.
"""

from __future__ import annotations

import json

import click

from cavkit.cli_options import (
    centre_option,
    checkpoint_option,
    data_params_option,
    device_option,
    embedding_option,
    num_workers_option,
    set_option,
)
from cavkit.errors import UsageError


@click.command("segmentation")
@checkpoint_option(required=True)
@click.option(
    "--datafile", required=True, help="segmentation datafile JSON: {'data': [{'id', 'image', 'mask', 'wav'}]}"
)
@click.option(
    "--dataset-type",
    default="segmentation",
    show_default=True,
    help="dataset component giving audio, image and object_mask items",
)
@data_params_option(help="dataset parameter (repeatable), e.g. --data pad_audio=true")
@centre_option(
    help="audio: subtract the mean audio embedding of the set before the cosine (as `cavkit localize`); "
    "none: plain cosine",
)
@embedding_option(
    help="audio embedding to prompt with (auto: the Sync global token when the model has one, else pooled)"
)
@click.option("--samples", type=click.IntRange(1), help="score only the first N images")
@click.option("--json", "json_uri", help="write the scores as JSON here")
@set_option("model_overrides", help="model setting a checkpoint does not record, e.g. --set encoder.num_heads=2")
@num_workers_option()
@device_option()
def segmentation_command(
    checkpoint,
    datafile,
    dataset_type,
    data_params,
    centre,
    embedding,
    samples,
    json_uri,
    model_overrides,
    num_workers,
    device,
):
    """Sound-prompted segmentation: per image, the similarity of its sound's embedding with every visual
    patch token, upsampled to the mask; mAP over pixels and mIoU at the best global threshold, next to
    a centre prior scored the same way."""
    from cavkit.devices import resolve_device
    from cavkit.evaluation.segmentation import evaluate_segmentation, format_segmentation
    from cavkit.evaluation.sources import DataSource, build_eval_dataset
    from cavkit.io import write_bytes_atomic
    from cavkit.models.inputs import input_spec_of
    from cavkit.option_values import key_values
    from cavkit.pictures.sources import load_picture_model
    from cavkit.plugins import get_plugin_host

    host = get_plugin_host()
    dev = resolve_device(device)
    model = load_picture_model(checkpoint, dev, model_overrides, host=host)
    params = key_values(data_params, "--data")
    spec = input_spec_of(model)
    for key in ("audio_length", "image_size"):
        if key not in params:
            if spec is None:
                raise UsageError(f"{checkpoint}: the model declares no inputs; give --data {key}=N")
            params[key] = getattr(spec, key)
    source = DataSource(datafile=datafile, dataset_type=dataset_type, params=params)
    dataset = build_eval_dataset(source, host=host, mode="eval", inputs=spec, role="segmentation")
    summary = evaluate_segmentation(
        model, dataset, centre=centre, embedding=embedding, device=dev, limit=samples, num_workers=num_workers
    )
    summary = {"checkpoint": checkpoint, "datafile": datafile, **summary}
    for line in format_segmentation(summary):
        click.echo(line)
    if json_uri:
        write_bytes_atomic(json_uri, (json.dumps(summary, indent=2) + "\n").encode("utf-8"))
