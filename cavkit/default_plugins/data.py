"""Built-in datasets (CAV-MAE, CAV-MAE Sync, shards, synthetic); registers the data commands (:mod:`cavkit.data.commands`)."""

from __future__ import annotations

from cavkit import hookimpl


@hookimpl
def cavkit_register_components(registry):
    """Register this area's built-in components (lazy references, no torch import)."""
    registry.add(
        "dataset",
        "cav_mae",
        "cavkit.data.datasets:build_cav_mae",
        "cavkit.data.configs:CavMaeDataConfig",
        summary="published datafile JSON: one frame + whole-clip kaldi fbank (spec §6.3)",
    )
    registry.add(
        "dataset",
        "cav_mae_sync",
        "cavkit.data.datasets:build_cav_mae_sync",
        "cavkit.data.configs:SyncDataConfig",
        summary="published datafile JSON: frames with frame-aligned fbank segments (spec §6.4)",
    )
    registry.add(
        "dataset",
        "shards",
        "cavkit.data.shard_dataset:build_shards",
        "cavkit.data.configs:ShardsDataConfig",
        summary="WebDataset-style tar shards from `cavkit prepare --shards`, streamed through fsspec",
    )
    registry.add(
        "dataset",
        "synthetic",
        "cavkit.data.synthetic:build_synthetic",
        "cavkit.data.configs:SyntheticDataConfig",
        summary="generated clips whose sound and picture are tied (content, position, time); has ground truth",
    )
    registry.add(
        "dataset",
        "segmentation",
        "cavkit.data.segmentation:build_segmentation",
        "cavkit.data.configs:SegmentationDataConfig",
        summary="(image, binary mask, audio) triples for sound-prompted segmentation (ADE20K-Sound style)",
    )


@hookimpl
def cavkit_register_commands(cli):
    """Add ``cavkit prepare``, ``cavkit data check`` and ``cavkit data synthetic-segmentation``."""
    from cavkit.data.commands import data_group, prepare_command
    cli.add_command(prepare_command)
    cli.add_command(data_group)
