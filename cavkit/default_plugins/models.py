"""Built-in model parts: tokenizers, maskers, encoders, decoders, objectives and models (CAV-MAE, CAV-MAE Sync, classifier).

Everything is registered by lazy ``"module:attr"`` reference: listing components imports no torch.
Also adds ``cavkit convert`` (official checkpoint <-> cavkit format).
"""

from __future__ import annotations

import click

from cavkit import hookimpl

_M = "cavkit.models"
_O = "cavkit.objectives"

#: (kind, name, factory, config, summary)
COMPONENTS: tuple[tuple[str, str, str, str, str], ...] = (
    (
        "tokenizer",
        "audio_patch",
        f"{_M}.tokenizers:build_audio_patch",
        f"{_M}.configs:AudioPatchConfig",
        "fbank [B,T,128] -> 16x16 patch tokens (frequency-major) + sin-cos positions + modality embedding",
    ),
    (
        "tokenizer",
        "image_patch",
        f"{_M}.tokenizers:build_image_patch",
        f"{_M}.configs:ImagePatchConfig",
        "image [B,3,H,W] -> 16x16 patch tokens + sin-cos positions + modality embedding",
    ),
    (
        "masker",
        "unstructured",
        f"{_M}.maskers:build_unstructured",
        f"{_M}.configs:MaskerConfig",
        "uniformly random masking (keeps the lowest-noise tokens)",
    ),
    (
        "masker",
        "time",
        f"{_M}.maskers:build_time",
        f"{_M}.configs:MaskerConfig",
        "removes whole time columns of the audio grid",
    ),
    (
        "masker",
        "freq",
        f"{_M}.maskers:build_freq",
        f"{_M}.configs:MaskerConfig",
        "removes whole frequency rows of the audio grid",
    ),
    (
        "masker",
        "time_freq",
        f"{_M}.maskers:build_time_freq",
        f"{_M}.configs:MaskerConfig",
        "removes time columns and frequency rows (upstream 'tf')",
    ),
    (
        "encoder",
        "cav_mae_encoder",
        f"{_M}.encoder:build_encoder",
        f"{_M}.configs:EncoderConfig",
        "modality-specific stacks + shared joint layer (three passes)",
    ),
    (
        "encoder",
        "sync_encoder",
        f"{_M}.encoder:build_encoder",
        f"{_M}.configs:SyncEncoderConfig",
        "the CAV-MAE encoder with Sync global tokens and 8 register tokens per modality",
    ),
    (
        "decoder",
        "mae_decoder",
        f"{_M}.decoder:build_decoder",
        f"{_M}.configs:DecoderConfig",
        "MAE decoder with per-modality prediction heads",
    ),
    (
        "objective",
        "mae",
        f"{_O}.mae:build_mae",
        f"{_O}.configs:MAEConfig",
        "masked reconstruction loss (audio + visual)",
    ),
    (
        "objective",
        "infonce",
        f"{_O}.infonce:build_infonce",
        f"{_O}.configs:InfoNCEConfig",
        "InfoNCE on mean-pooled patch latents",
    ),
    (
        "objective",
        "sync_contrastive",
        f"{_O}.infonce:build_sync_contrastive",
        f"{_O}.configs:SyncContrastiveConfig",
        "InfoNCE on Sync global tokens (optionally averaged with the pooled-patch loss)",
    ),
    (
        "objective",
        "classification",
        f"{_O}.classification:build_classification",
        f"{_O}.configs:ClassificationConfig",
        "BCE or soft-target cross-entropy on logits",
    ),
    (
        "model",
        "cav_mae",
        f"{_M}.cav_mae:build_cav_mae",
        f"{_M}.configs:CAVMAEConfig",
        "CAV-MAE pretraining model (Gong et al. 2023)",
    ),
    (
        "model",
        "cav_mae_sync",
        f"{_M}.cav_mae:build_cav_mae",
        f"{_M}.configs:CAVMAESyncConfig",
        "CAV-MAE Sync pretraining model (Araujo et al. 2025)",
    ),
    (
        "model",
        "classifier",
        f"{_M}.classifier:build_classifier",
        f"{_M}.configs:ClassifierConfig",
        "classifier over a CAV-MAE or Sync encoder (modes: multimodal, audio/video only, missing modality)",
    ),
)


@hookimpl
def cavkit_register_components(registry):
    """Register this area's built-in components (lazy references, no torch import)."""
    for kind, name, factory, config, summary in COMPONENTS:
        registry.add(kind, name, factory, config, summary=summary)


@hookimpl
def cavkit_register_commands(cli: click.Group) -> None:
    cli.add_command(convert_command)


@click.command("convert")
@click.argument("src")
@click.argument("dst")
@click.option(
    "--to",
    "target",
    type=click.Choice(["auto", "cavkit", "upstream"]),
    default="auto",
    show_default=True,
    help="output format; auto: an official checkpoint becomes cavkit format, a cavkit one the upstream layout",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="override an inferred model setting, e.g. encoder.num_heads=2 (repeatable)",
)
def convert_command(src: str, dst: str, target: str, overrides: tuple[str, ...]) -> None:
    """Convert a checkpoint: official .pth -> cavkit (safetensors + recipe), or cavkit -> upstream .pth."""
    from cavkit.checkpoints.convert import convert

    written = convert(src, dst, target=target, overrides=overrides)
    for path in written:
        click.echo(f"wrote {path}")
