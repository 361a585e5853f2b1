"""A trajectory fixture as a cavkit recipe: the published run, stated in cavkit's own terms.

``constructor`` (the published ``CAVMAE`` / ``CAVMAEFT`` keyword arguments) becomes a ``cav_mae`` or
``classifier`` model node; ``args`` (the run script's argparse values) and ``optimizer`` become the
objectives, their weights and the ``trainer`` section. The mapping is the published semantics of
spec §7.1: ``torch.optim.Adam`` with L2 weight decay on every trainable parameter, ``MultiStepLR``
milestones ``range(lrscheduler_start, 1000, lrscheduler_step)`` per epoch, no warmup, the loss of
the whole batch (one device), fine-tuning's ``mlp_head.*`` group at ``lr * head_lr``.
"""

from __future__ import annotations

from typing import Any

from cavkit.verify.fixture import FixtureError, Trajectory

#: upstream constructor defaults ([CAV] src/models/cav_mae.py), for keys a fixture leaves out
PRETRAIN_DEFAULTS = dict(img_size=224, audio_length=1024, patch_size=16, in_chans=3, embed_dim=768,
                         modality_specific_depth=11, num_heads=12, decoder_embed_dim=512, decoder_depth=8,
                         decoder_num_heads=16, mlp_ratio=4.0, norm_pix_loss=False, tr_pos=False)
FINETUNE_DEFAULTS = dict(label_dim=527, img_size=224, audio_length=1024, patch_size=16, in_chans=3, embed_dim=768,
                         modality_specific_depth=11, num_heads=12, mlp_ratio=4.0, norm_pix_loss=False, tr_pos=True)
#: upstream builds ``12 - modality_specific_depth`` joint blocks (blocks_u)
TOTAL_DEPTH = 12
#: the published loops hard-code these (traintest_cavmae.py / traintest_ft.py)
PUBLISHED_ADAM = {"betas": [0.95, 0.999], "eps": 1e-8, "weight_decay": 5e-7}
FT_MODES = ("multimodal", "audioonly", "videoonly", "missingaudioonly", "missingvideoonly")
HEAD_PREFIX = "head."  # cavkit's name for upstream mlp_head.*


def _constructor(traj: Trajectory) -> dict[str, Any]:
    defaults = FINETUNE_DEFAULTS if traj.kind == "finetune" else PRETRAIN_DEFAULTS
    unknown = sorted(set(traj.constructor) - set(defaults))
    if unknown:
        raise FixtureError(f"{traj.name}: constructor arguments {unknown} have no cavkit counterpart")
    return {**defaults, **traj.constructor}


def model_node(traj: Trajectory) -> dict[str, Any]:
    """The cavkit model node that builds the fixture's published model (same parameters, cavkit names)."""
    c = _constructor(traj)
    depth = int(c["modality_specific_depth"])
    if not 0 <= depth < TOTAL_DEPTH:
        raise FixtureError(f"{traj.name}: modality_specific_depth {depth} leaves no joint block (upstream builds 12 - depth)")
    node: dict[str, Any] = {
        "audio_length": c["audio_length"],
        "image_size": c["img_size"],
        "embed_dim": c["embed_dim"],
        "trainable_pos": bool(c["tr_pos"]),
        "audio_tokenizer": {"type": "audio_patch", "patch_size": c["patch_size"]},
        "visual_tokenizer": {"type": "image_patch", "patch_size": c["patch_size"], "in_chans": c["in_chans"]},
        "encoder": {"type": "cav_mae_encoder", "depth": depth, "joint_depth": TOTAL_DEPTH - depth,
                    "num_heads": c["num_heads"], "mlp_ratio": float(c["mlp_ratio"])},
    }
    if traj.kind == "finetune":
        mode = traj.arg("ftmode", "multimodal")
        if mode not in FT_MODES:
            raise FixtureError(f"{traj.name}: args.ftmode {mode!r} is not a mode of the published CAVMAEFT ({', '.join(FT_MODES)})")
        return {"type": "classifier", "num_classes": c["label_dim"], "mode": mode, **node}
    mask_mode = traj.arg("mask_mode", "unstructured")
    if mask_mode != "unstructured":
        raise FixtureError(
            f"{traj.name}: args.mask_mode {mask_mode!r}: upstream draws structured masks from a separate randperm, "
            "cavkit's structured maskers derive them from the noise (spec §10 item 25), so recorded noise replays "
            "only unstructured masking"
        )
    ratio = float(traj.arg("masking_ratio", 0.75))
    node["audio_masker"] = {"type": "unstructured", "ratio": ratio}
    node["visual_masker"] = {"type": "unstructured", "ratio": ratio}
    node["decoder"] = {"type": "mae_decoder", "embed_dim": c["decoder_embed_dim"], "depth": c["decoder_depth"],
                       "num_heads": c["decoder_num_heads"], "mlp_ratio": float(c["mlp_ratio"])}
    return {"type": "cav_mae", **node}


def objectives(traj: Trajectory) -> list[dict[str, Any]]:
    """The weighted objectives; a zero weight drops the objective (upstream then skips the branch)."""
    if traj.kind == "finetune":
        loss = str(traj.arg("loss", "BCE")).upper()
        if loss not in ("BCE", "CE"):
            raise FixtureError(f"{traj.name}: args.loss {loss!r}: the published loop knows BCE and CE")
        return [{"type": "classification", "loss": loss.lower(), "weight": 1.0}]
    norm_pix = bool(_constructor(traj)["norm_pix_loss"])
    out = []
    mae_w = float(traj.arg("mae_loss_weight", required=True))
    nce_w = float(traj.arg("contrast_loss_weight", required=True))
    if mae_w:
        out.append({"type": "mae", "weight": mae_w, "norm_pix_loss": norm_pix})
    if nce_w:
        out.append({"type": "infonce", "weight": nce_w, "direction": "visual_to_audio", "temperature": 0.05,
                    "negatives": "local"})
    if not out:
        raise FixtureError(f"{traj.name}: both loss weights are 0: nothing was trained")
    return out


def optimizer(traj: Trajectory) -> dict[str, Any]:
    recorded = traj.optimizer
    cls = recorded.get("class", "torch.optim.Adam")
    if cls != "torch.optim.Adam":
        raise FixtureError(f"{traj.name}: optimizer.class {cls!r}: the published loops use torch.optim.Adam")
    if traj.arg("lr_adapt", False):
        raise FixtureError(f"{traj.name}: args.lr_adapt (ReduceLROnPlateau) is not reproduced; every published script sets it False")
    node = {"name": "adam", "lr": float(traj.arg("lr", required=True)), "no_decay_norm_bias": False,
            "head_prefixes": [HEAD_PREFIX], "head_lr_scale": 1.0}
    node.update({k: recorded.get(k, v) for k, v in PUBLISHED_ADAM.items()})
    if traj.kind == "finetune":
        node["head_lr_scale"] = float(traj.arg("head_lr", 1.0))
    return node


def schedule(traj: Trajectory) -> dict[str, Any]:
    """``MultiStepLR(range(start, 1000, step), gamma)`` stepped per epoch, no warmup (``--warmup`` is never read)."""
    return {"type": "step", "decay_start": int(traj.arg("lrscheduler_start", required=True)),
            "decay_every": int(traj.arg("lrscheduler_step", required=True)),
            "gamma": float(traj.arg("lrscheduler_decay", required=True))}


def has_validation(traj: Trajectory) -> bool:
    """Whether the fixture records validation passes the replay can compare."""
    if traj.kind == "finetune":
        return traj.has("label.val") and bool(traj.meta.get("val_losses"))
    return traj.has("noise.val.audio") and bool(traj.meta.get("val_forwards"))


def recipe_data(traj: Trajectory, *, init: str, run_dir: str) -> dict[str, Any]:
    """The whole recipe (plain data, ready for :func:`cavkit.recipe.load_recipe` with ``--set`` overrides)."""
    train = {"type": "trajectory_clips", "fixture": traj.path, "split": "train"}
    if traj.kind == "finetune":
        train["label_smoothing"] = float(traj.arg("label_smooth", 0.0))
    data = {"train": train}
    validate = has_validation(traj)
    if validate:
        data["val"] = {"type": "trajectory_clips", "fixture": traj.path, "split": "val"}
    trainer = {
        "init": init,
        "epochs": len(traj.order),
        "batch_size": traj.batch_size,
        "precision": "fp32",
        "grad_accum": 1,
        "sum_device_losses": True,  # DataParallel summed its replicas' losses; on one device a no-op
        "masking_noise": "global",
        "freeze_base": bool(traj.arg("freeze_base", False)),
        "optimizer": optimizer(traj),
        "schedule": schedule(traj),
        "log_every": 1,
        "eval_every_epochs": 1 if validate else 0,
        "progress_bar": False,
    }
    return {
        "cavkit": 1,
        "seed": 0,
        "model": model_node(traj),
        "objectives": objectives(traj),
        "data": data,
        "trainer": trainer,
        "run": {"dir": run_dir, "keep_last": 1, "tensorboard": False},
    }
