"""The published CAV-MAE and CAV-MAE Sync checkpoints (spec §4.3-4.5, §4.7, §7.2, §9).

Where each fact comes from:

* file names, key counts and model layouts: the team spec (``shared/spec/cavmae_reference.md`` §4);
* download URLs, the China mirror and the facts in ``notes`` (batch size, contrastive weight lambda_c,
  masking, fine-tuning data and published result): the "Pretrained Models" tables of the CAV-MAE
  README, YuanGongND/cav-mae ``README.md`` at commit 193ece96e682ba98e61b115ece1109a1131fc87e
  (the same links appear at 01f73aac741f003b1df162362943fd264483f041, which lacks ``as_20.0.pth``);
* ``IN-initial.pth``: not in the README tables; its URL is the one the upstream pretraining script
  fetches, YuanGongND/cav-mae ``egs/audioset/run_cavmae_pretrain_scale++.sh`` at 01f73aac74 (it
  saves ``ori_mae_11.pth?dl=1`` as ``IN-initial.pth``);
* the Sync model: ``pretrained_models/get_pretrained_model.sh`` of the Sync code release, which the
  Sync README tells users to run. The official repository (edsonroteia/cav-mae-sync) is not in our
  reference index; the script was read in the fork wanglg20/cav-mae-sync at commit
  bb97f0580055481ff69b327c93e7ca6bd385eaf5. Its Drive file id is the one spec §11 Q2 records.

No publisher states a SHA-256 or a size for any file, so ``sha256``/``size`` are ``None``: the hash
seen at the first download is recorded in the cache and checked on every later use (docs/weights.md).
"""

from __future__ import annotations

from cavkit.weights.entry import WeightsEntry

CAV_MAE_CITATION = "Gong et al., Contrastive Audio-Visual Masked Autoencoder (CAV-MAE), ICLR 2023"
SYNC_CITATION = "Araujo et al., CAV-MAE Sync, CVPR 2025 (arXiv 2505.01237)"
CAV_MAE_SOURCE = "CAV-MAE README, Pretrained Models (YuanGongND/cav-mae @ 193ece96)"
CAV_MAE_LICENCE = "not stated: YuanGongND/cav-mae has no licence file; ask the authors before redistributing"

_DROPBOX = "https://www.dropbox.com/s/"
_PRETRAINED = "cav_mae (pretraining model: ViT-B, 1024-frame audio, 11+1 encoder blocks, 8-block decoder)"
_FT = "classifier (CAVMAEFT encoder, {n} {data} classes, 1024-frame audio{mode})"

#: recipe ``model:`` nodes the files load into (the defaults of each model type are the published ViT-B)
PRETRAINED_CONFIG = {"type": "cav_mae"}
SYNC_CONFIG = {"type": "cav_mae_sync", "audio_length": 416}


def _classifier_config(num_classes: int, mode: str) -> dict:
    return {"type": "classifier", "num_classes": num_classes, "mode": mode}


def _pretrained(
    name: str, summary: str, path: str, notes: str, *, mirrors: tuple[str, ...] = (), model: str = _PRETRAINED
) -> WeightsEntry:
    """A ``CAVMAE`` (with decoder) file from the README's pretrained tables; ``path`` is ``<id>/<file>``."""
    return WeightsEntry(
        name=name,
        summary=summary,
        filename=path.rsplit("/", 1)[1],
        urls=(f"{_DROPBOX}{path}?dl=1",),
        mirrors=mirrors,
        model=model,
        config=dict(PRETRAINED_CONFIG),
        keys=647,
        source=CAV_MAE_SOURCE,
        licence=CAV_MAE_LICENCE,
        citation=CAV_MAE_CITATION,
        notes=notes,
    )


def _finetuned(name: str, summary: str, path: str, notes: str, *, vggsound: bool, mode: str) -> WeightsEntry:
    """A ``CAVMAEFT`` file (527 AudioSet or 309 VGGSound classes); ``mode``: the classifier mode to use."""
    n, data = (309, "VGGSound") if vggsound else (527, "AudioSet")
    shown = "" if mode == "multimodal" else f"; mode {mode}"
    return WeightsEntry(
        name=name,
        summary=summary,
        filename=path.rsplit("/", 1)[1],
        urls=(f"{_DROPBOX}{path}?dl=1",),
        model=_FT.format(n=n, data=data, mode=shown),
        config=_classifier_config(n, mode),
        keys=478,
        source=CAV_MAE_SOURCE,
        licence=CAV_MAE_LICENCE,
        citation=CAV_MAE_CITATION,
        notes=notes,
    )


#: The address exactly as the Sync release script has it, session parameters included. Google Drive
#: may answer it with a web page instead of the file; the downloader refuses HTML (download.py).
SYNC_URL = (
    "https://drive.usercontent.google.com/download?id=1KBCvDcEJ5l7WtRXVQZC6TJNUpY4L6UZo"
    "&export=download&authuser=0&confirm=t&uuid=0157b121-1a68-47b8-b18c-85da46cc8a7c"
    "&at=ALoNOgnSndW4Mb2dwK97jXgZfnoN:1747818340710"
)

_BASE = "batch 48, lambda_c 0.01"
_ABLATION = "ablation model of the CAV-MAE README; otherwise trained like CAV-MAE-Base"

#: Built-in entries, in the order ``cavkit weights list`` shows them (it sorts by name).
PUBLISHED: tuple[WeightsEntry, ...] = (
    WeightsEntry(
        name="in-initial",
        summary="ImageNet MAE initialisation of CAV-MAE (spec §4.7; published as IN-initial.pth)",
        filename="IN-initial.pth",
        urls=(f"{_DROPBOX}9nlz523a5q52w86/ori_mae_11.pth?dl=1",),
        model=_PRETRAINED,
        config=dict(PRETRAINED_CONFIG),
        keys=647,
        source="upstream egs/audioset/run_cavmae_pretrain_scale++.sh (YuanGongND/cav-mae @ 01f73aac), "
        "which saves ori_mae_11.pth as IN-initial.pth",
        licence=CAV_MAE_LICENCE,
        citation=CAV_MAE_CITATION,
        notes="the initialisation of every upstream pretraining run (Base, Scale+, Scale++)",
    ),
    _pretrained(
        "cav-mae-scale++",
        "CAV-MAE Scale++, pretrained on AS-2M (batch 256, epoch 21 of 25; spec §7.2)",
        "l5t5geufdy3qvnv/audio_model.21.pth",
        "batch 256, lambda_c 0.01, 75% unstructured masking; the upstream README recommends it for "
        "everything but inpainting (not a paper model)",
        mirrors=("https://share.weiyun.com/vGfP1YZt",),
    ),
    _pretrained(
        "cav-mae-scale+",
        "CAV-MAE Scale+, pretrained on AS-2M (batch 108, epoch 25; spec §7.2, §10 item 32)",
        "xu8bfie6hz86oev/audio_model.25.pth",
        "batch 108, lambda_c 0.01, 75% unstructured masking; the model behind the paper's results",
    ),
    _pretrained(
        "cav-mae-base",
        "CAV-MAE Base, pretrained on AS-2M (batch 48, 25 epochs; spec §7.2)",
        "wxrjgr86gdhc5k8/cav-mae-base.pth",
        f"{_BASE}, 75% unstructured masking; the model behind the paper's results",
    ),
    _pretrained(
        "cav-mae-base-nonorm",
        "CAV-MAE Base without norm-pix loss: the inpainting model (spec §9.1)",
        "arrg7cb3e4hhjwu/cav-mae-base-nonorm.pth",
        f"{_BASE}, 75% unstructured masking, trained with norm_pix_loss false (mae objective); for inpainting",
        model=_PRETRAINED.replace(")", ", norm_pix_loss false)"),
    ),
    _pretrained("cav-mae-base-50", "CAV-MAE Base, 50% masking", "dgorer0ybdbnvgf/50.pth", f"{_BASE}; {_ABLATION}"),
    _pretrained("cav-mae-base-65", "CAV-MAE Base, 65% masking", "xmuyksqch6l6g87/65.pth", f"{_BASE}; {_ABLATION}"),
    _pretrained("cav-mae-base-85", "CAV-MAE Base, 85% masking", "y3o9zggpecmrbnu/85.pth", f"{_BASE}; {_ABLATION}"),
    _pretrained(
        "cav-mae-base-tf",
        "CAV-MAE Base, 75% time-frequency audio masking",
        "madv6ynuy5113zh/time_freq_75.pth",
        f"{_BASE}; {_ABLATION}",
    ),
    _pretrained(
        "cav-mae-base-tf-50",
        "CAV-MAE Base, 50% time-frequency audio masking",
        "nd7qlagn8je6zjn/time_freq_50.pth",
        f"{_BASE}; {_ABLATION}",
    ),
    _pretrained(
        "cav-mae-base-t", "CAV-MAE Base, 75% time audio masking", "hfehd7m379ehr0y/time_75.pth", f"{_BASE}; {_ABLATION}"
    ),
    _pretrained(
        "cav-mae-base-f",
        "CAV-MAE Base, 75% frequency audio masking",
        "ad4fhzt6d3xre5p/freq_75.pth",
        f"{_BASE}; {_ABLATION}",
    ),
    _pretrained(
        "cav-mae-base-c0.001",
        "CAV-MAE Base, contrastive weight 0.001",
        "4j4qyiyjcmbtc6u/cav-mae-base-c0.001.pth",
        f"batch 48, lambda_c 0.001, 75% unstructured masking; {_ABLATION}",
    ),
    _pretrained(
        "cav-mae-base-c0.1",
        "CAV-MAE Base, contrastive weight 0.1",
        "wf54ver9rs9fl1b/cav-mae-base-c0.1.pth",
        f"batch 48, lambda_c 0.1, 75% unstructured masking; {_ABLATION}",
    ),
    _pretrained(
        "cav-mae-scale+-single-direction",
        "CAV-MAE Scale+ (batch 120), single-direction contrastive loss",
        "mvhmg7eda410phr/single_direction.pth",
        "batch 120, lambda_c 0.01; the single-direction side of the README's symmetric-loss ablation",
    ),
    _pretrained(
        "cav-mae-symc-scale+",
        "CAV-MAE Scale+ (batch 120), bi-directional (symmetric) contrastive loss",
        "ute6ydkw4hdv7rn/symc.pth",
        "batch 120, lambda_c 0.01; the bi-directional side of the README's symmetric-loss ablation",
    ),
    _finetuned(
        "cav-mae-as2m",
        "CAV-MAE fine-tuned on AS-2M, audio+visual (51.2 mAP in the upstream README)",
        "hejj49zdgyyfsuh/as-full-51.2.pth",
        "from CAV-MAE-Scale+ (AS-2M); fine-tuned on AudioSet-2M; 51.2 mAP",
        vggsound=False,
        mode="multimodal",
    ),
    _finetuned(
        "cav-mae-as20k",
        "CAV-MAE fine-tuned on AS-20K, audio+visual (paper: 42.0 mAP)",
        "9x6y642so3zve5y/as-20k-42.0.pth",
        "from CAV-MAE-Scale+ (AS-2M); fine-tuned on AudioSet-20K; 42.0 mAP",
        vggsound=False,
        mode="multimodal",
    ),
    _finetuned(
        "cav-mae-vggsound",
        "CAV-MAE fine-tuned on VGGSound from the AS model (paper: 65.5% accuracy)",
        "f4wrbxv2unewss9/vgg_65.5.pth",
        "from CAV-MAE-Scale+ (AS-2M); fine-tuned on VGGSound; 65.5% accuracy",
        vggsound=True,
        mode="multimodal",
    ),
    _finetuned(
        "cav-mae-vggsound-66.0",
        "CAV-MAE fine-tuned on VGGSound after extra VGGSound pretraining (65.9% accuracy in the upstream README)",
        "q66s3mu526mj2x6/vgg_66.0.pth",
        "from CAV-MAE-Scale+ pretrained on AS-2M and then VGGSound; fine-tuned on VGGSound; 65.9% accuracy",
        vggsound=True,
        mode="multimodal",
    ),
    _finetuned(
        "cav-mae-as2m-audio",
        "CAV-MAE fine-tuned on AS-2M, audio only (46.6 mAP; the spec §9.2 feature extractor)",
        "itfw7p0ueq7z9og/as_46.6.pth",
        "from CAV-MAE-Scale+ (audio-visual AS-2M pretraining); fine-tuned on AudioSet-2M audio; 46.6 mAP",
        vggsound=False,
        mode="audioonly",
    ),
    _finetuned(
        "cav-mae-as20k-audio",
        "CAV-MAE fine-tuned on AS-20K, audio only (paper: 37.7 mAP)",
        "pariabyh1iyayda/as_37.7.pth",
        "from CAV-MAE-Scale+ (audio-visual AS-2M pretraining); fine-tuned on AudioSet-20K audio; 37.7 mAP",
        vggsound=False,
        mode="audioonly",
    ),
    _finetuned(
        "cav-mae-as20k-visual",
        "CAV-MAE fine-tuned on AS-20K, visual only (20.0 mAP in the upstream README)",
        "9ngkq9ygwqecxz5/as_20.0.pth",
        "from CAV-MAE-Scale++ (not Scale+; audio-visual AS-2M pretraining); fine-tuned on AudioSet-20K "
        "frames; 20.0 mAP",
        vggsound=False,
        mode="videoonly",
    ),
    _finetuned(
        "cav-mae-vggsound-59.8",
        "CAV-MAE fine-tuned on VGGSound, audio only (59.8% accuracy in the upstream README)",
        "l4rj0sgpnt08bp2/vgg_59.8.pth",
        "from CAV-MAE-Scale+ pretrained on AS-2M and then VGGSound (audio-visual); fine-tuned on VGGSound "
        "audio; 59.8% accuracy",
        vggsound=True,
        mode="audioonly",
    ),
    WeightsEntry(
        name="cav-mae-sync",
        summary="CAV-MAE Sync retrieval model 'model_3388_25' (spec §4.5)",
        filename="cav_mae_sync.pth",
        urls=(SYNC_URL,),
        model="cav_mae_sync (416-frame audio segments, 8 register tokens, global tokens, no contrastive heads)",
        config=dict(SYNC_CONFIG),
        keys=650,
        source="Google Drive file id 1KBCvDcEJ5l7WtRXVQZC6TJNUpY4L6UZo, from pretrained_models/"
        "get_pretrained_model.sh of the Sync code release (read in the fork wanglg20/cav-mae-sync @ bb97f058; "
        "edsonroteia/cav-mae-sync is the official repository)",
        licence="the Sync code is BSD-2-Clause (LICENSE of the code release); terms for the weights are not stated",
        citation=SYNC_CITATION,
        notes="the released VGGSound retrieval model; the Sync README announces classification and "
        "localization models as coming later",
    ),
)
