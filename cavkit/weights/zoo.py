"""The published CAV-MAE and CAV-MAE Sync checkpoints (spec §4.3-4.5, §4.7, §7.2, §9).

Every fact here is taken from the team spec (``shared/spec/cavmae_reference.md``). The spec records
file names, key counts and the runs behind them, but **no download URL, file size, SHA-256 or
licence** for any of these files: ``urls`` is therefore empty, ``sha256``/``size`` are ``None``,
and the licence line points to the upstream repository. Fetch a file by hand from where it is
published (``source``) and add it to the cache with ``cavkit weights get NAME --file PATH`` (its
hash is recorded then and checked on every later use), or give its address with ``--url``.
Plugins add more entries (with URLs and hashes) through ``register_weights``.
"""

from __future__ import annotations

from cavkit.weights.entry import WeightsEntry

CAV_MAE_CITATION = "Gong et al., Contrastive Audio-Visual Masked Autoencoder (CAV-MAE), ICLR 2023"
SYNC_CITATION = "Araujo et al., CAV-MAE Sync, CVPR 2025 (arXiv 2505.01237)"
CAV_MAE_SOURCE = "CAV-MAE README model zoo (YuanGongND/cav-mae); download URL not recorded in the team spec"
CAV_MAE_LICENCE = "as published in YuanGongND/cav-mae (licence not recorded in the team spec)"

_PRETRAINED = "cav_mae (pretraining model: ViT-B, 1024-frame audio, 11+1 encoder blocks, 8-block decoder)"
_FT_AS = "classifier (CAVMAEFT encoder, 527 AudioSet classes, 1024-frame audio)"
_FT_VGG = "classifier (CAVMAEFT encoder, 309 VGGSound classes, 1024-frame audio)"


def _cav(name: str, summary: str, filename: str | None, model: str, keys: int) -> WeightsEntry:
    return WeightsEntry(
        name=name,
        summary=summary,
        filename=filename,
        model=model,
        keys=keys,
        source=CAV_MAE_SOURCE,
        licence=CAV_MAE_LICENCE,
        citation=CAV_MAE_CITATION,
    )


#: Built-in entries, in the order ``cavkit weights list`` shows them.
PUBLISHED: tuple[WeightsEntry, ...] = (
    _cav(
        "in-initial",
        "ImageNet MAE initialisation of CAV-MAE (spec §4.7; published as IN-initial.pth)",
        "IN-initial.pth",
        _PRETRAINED,
        647,
    ),
    _cav("cav-mae-base", "CAV-MAE Base, pretrained on AS-2M (batch 48, 25 epochs; spec §7.2)", None, _PRETRAINED, 647),
    _cav(
        "cav-mae-base-nonorm",
        "CAV-MAE Base without norm-pix loss: the inpainting model (spec §9.1)",
        None,
        _PRETRAINED.replace(")", ", norm_pix_loss false)"),
        647,
    ),
    _cav(
        "cav-mae-scale+",
        "CAV-MAE Scale+, pretrained on AS-2M (batch 108, epoch 25; spec §7.2, §10 item 32)",
        "audio_model.25.pth",
        _PRETRAINED,
        647,
    ),
    _cav(
        "cav-mae-scale++",
        "CAV-MAE Scale++, pretrained on AS-2M (batch 256, epoch 21 of 25; spec §7.2)",
        "audio_model.21.pth",
        _PRETRAINED,
        647,
    ),
    _cav(
        "cav-mae-as20k", "CAV-MAE fine-tuned on AS-20K, audio+visual (paper: 42.0 mAP)", "as-20k-42.0.pth", _FT_AS, 478
    ),
    _cav(
        "cav-mae-as20k-audio",
        "CAV-MAE fine-tuned on AS-20K, audio only (paper: 37.7 mAP)",
        "as_37.7.pth",
        _FT_AS + "; use the audio-only mode",
        478,
    ),
    _cav(
        "cav-mae-as20k-visual",
        "CAV-MAE fine-tuned on AS-20K, visual only (20.0 mAP in the upstream README)",
        "as_20.0.pth",
        _FT_AS + "; use the visual-only mode",
        478,
    ),
    _cav(
        "cav-mae-as2m",
        "CAV-MAE fine-tuned on AS-2M, audio+visual (51.2 mAP in the upstream README)",
        "as-full-51.2.pth",
        _FT_AS,
        478,
    ),
    _cav(
        "cav-mae-as2m-audio",
        "CAV-MAE fine-tuned on AS-2M, audio only (46.6 mAP; the spec §9.2 feature extractor)",
        "as_46.6.pth",
        _FT_AS + "; use the audio-only mode",
        478,
    ),
    _cav(
        "cav-mae-vggsound",
        "CAV-MAE fine-tuned on VGGSound from the AS model (paper: 65.5% accuracy)",
        "vgg_65.5.pth",
        _FT_VGG,
        478,
    ),
    _cav(
        "cav-mae-vggsound-66.0",
        "CAV-MAE fine-tuned on VGGSound, file vgg_66.0.pth (the spec lists the file, not the run behind it)",
        "vgg_66.0.pth",
        _FT_VGG,
        478,
    ),
    _cav(
        "cav-mae-vggsound-59.8",
        "CAV-MAE fine-tuned on VGGSound, file vgg_59.8.pth (the spec lists the file, not the run behind it)",
        "vgg_59.8.pth",
        _FT_VGG,
        478,
    ),
    WeightsEntry(
        name="cav-mae-sync",
        summary="CAV-MAE Sync retrieval model 'model_3388_25' (spec §4.5)",
        filename="cav_mae_sync.pth",
        model="cav_mae_sync (416-frame audio segments, 8 register tokens, global tokens, no contrastive heads)",
        keys=650,
        source="Google Drive file id 1KBCvDcEJ5l7WtRXVQZC6TJNUpY4L6UZo, from pretrained_models/"
        "get_pretrained_model.sh in edsonroteia/cav-mae-sync (Drive serves large files behind a "
        "confirmation page, so fetch it in a browser and add it with --file)",
        licence="as published in edsonroteia/cav-mae-sync (licence not recorded in the team spec)",
        citation=SYNC_CITATION,
    ),
)


def by_filename(filename: str) -> WeightsEntry | None:
    """The published entry whose upstream file name is ``filename`` (``IN-initial.pth``), if any."""
    for entry in PUBLISHED:
        if entry.filename and entry.filename.lower() == filename.lower():
            return entry
    return None
