"""What ``cavkit eval classify`` runs: a classifier's head over evaluation clips, or kNN on embeddings.

Metrics are mAP (multi-label), accuracy (single-label), mean AUC and d-prime (spec §7.1).
Multi-frame evaluation averages the predictions of several frames (``--frames``); a clip
classifier (a model with ``takes_all_frames``) reads every frame of a clip at once instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from cavkit.errors import UsageError
from cavkit.evaluation.sources import DataSource, build_eval_dataset, eval_loader, load_eval_model, recipe_data

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from cavkit.plugins import PluginHost


@attrs.frozen(kw_only=True)
class ClassifyOptions:
    """The clips, model and runtime of ``cavkit eval classify`` (see its ``--help`` for each option)."""

    checkpoint: str | None = None
    source: DataSource = attrs.field(factory=DataSource)
    modes: tuple[str, ...] = ()
    frames: str | None = None
    activation: str = "auto"
    embedding: str = "auto"
    samples: int | None = None
    batch_size: int = 16
    num_workers: int = 0
    device: str = "auto"
    precision: str = "fp32"


@attrs.frozen(kw_only=True)
class KnnOptions:
    """kNN on frozen embeddings: ``k`` neighbours vote; the voting clips come from ``train_datafile``
    (or the recipe's ``data.train``) or saved ``train_features``; ``features_uri`` reuses the evaluation
    clips' embeddings; ``modality`` is ``audio``, ``visual`` or ``both`` (concatenated)."""

    k: int
    train_datafile: str | None = None
    train_features: str | None = None
    features_uri: str | None = None
    modality: str = "both"


def frame_list(frames: str | None) -> list[int | None]:
    """``--frames`` (``0-9``, ``2,5``) as frame indices; ``[None]`` (the dataset's eval frame) when empty."""
    if not frames:
        return [None]
    out: list[int | None] = []
    for part in frames.split(","):
        lo, sep, hi = part.partition("-")
        try:
            out += list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
        except ValueError as exc:
            raise UsageError(f"--frames {frames!r}: use indices like 0-9 or 2,5") from exc
    return out


def select_frames(audio: "torch.Tensor", image: "torch.Tensor", keep: list[int]) -> tuple[Any, Any]:
    """Frames ``keep`` of clip batches ``audio [B,K,L,128]`` and ``image [B,K,3,H,W]`` (``--frames``)."""
    k = audio.shape[1] if audio.dim() == 4 else 1
    bad = [i for i in keep if not 0 <= i < k]
    if bad or audio.dim() != 4:
        raise UsageError(
            f"--frames {','.join(map(str, bad or keep))}: the evaluation clips have {k} frames (0-{k - 1})"
        )
    return audio[:, keep], image[:, keep]


def classification_table(rows: dict[str, dict[str, float]]) -> str:
    """One row per mode (or kNN setting): mAP, accuracy and mAUC in percent, d-prime, clip count."""
    width = max([28, *(len(name) + 2 for name in rows)])
    header = f"{'':<{width}}{'mAP':>8}{'acc':>8}{'mAUC':>8}{'d-prime':>9}{'N':>7}"
    lines = [header, "-" * len(header)]
    for name, m in rows.items():
        lines.append(
            f"{name:<{width}}{100 * m['mAP']:>8.2f}{100 * m['accuracy']:>8.2f}{100 * m['mAUC']:>8.2f}"
            f"{m['d_prime']:>9.3f}{m['samples']:>7d}"
        )
    return "\n".join(lines)


def _logits(model: Any, dataset: Any, mode: str, options: ClassifyOptions, keep: list[int] | None, device: Any):
    """``(logits [N,C], labels [N,C], frames per clip)`` of the first ``options.samples`` clips."""
    import torch

    from cavkit.devices import autocast_dtype

    dtype = autocast_dtype(options.precision)
    clip_model = getattr(model, "takes_all_frames", False)
    logits, labels, seen, clip_frames = [], [], 0, 1
    samples = options.samples
    with torch.inference_mode():
        for batch in eval_loader(dataset, options.batch_size, options.num_workers):
            if samples and seen >= samples:
                break
            if "label" not in batch:
                raise UsageError("the evaluation dataset has no labels; give it a label_csv (--data label_csv=...)")
            take = batch["audio"].shape[0] if not samples else min(batch["audio"].shape[0], samples - seen)
            audio, image = batch["audio"][:take], batch["image"][:take]
            if keep is not None:
                audio, image = select_frames(audio, image, keep)
            clip_frames = audio.shape[1] if clip_model and audio.dim() == 4 else 1
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                out = model.head(model.features(audio.to(device), image.to(device), mode))
            logits.append(out.float().cpu())
            labels.append(batch["label"][:take].float())
            seen += take
    return torch.cat(logits), torch.cat(labels), clip_frames


def classify_heads(options: ClassifyOptions, *, host: "PluginHost", recipe: Any = None) -> dict[str, dict[str, float]]:
    """Metrics of the checkpoint's classifier head, per modality mode (default: the model's own)."""
    from cavkit.devices import resolve_device
    from cavkit.evaluation.classification import average_over_frames, classification_metrics
    from cavkit.models.inputs import input_spec_of

    device = resolve_device(options.device)
    model = load_eval_model(options.checkpoint, device, host=host)
    if not hasattr(model, "head") or not hasattr(model, "features"):
        raise UsageError("this checkpoint holds no classifier; fine-tune one with `cavkit train`, or use --knn K")
    inputs = input_spec_of(model)
    # a clip classifier (Sync) reads every frame of a clip at once; --frames picks which frames
    clip_model = getattr(model, "takes_all_frames", False)
    keep = frame_list(options.frames) if clip_model and options.frames else None
    source = options.source
    datasets = []  # one per evaluated frame (a clip classifier: one for all frames), shared by every mode
    for frame in [None] if clip_model else frame_list(options.frames):
        params = dict(source.params) if frame is None else {**source.params, "eval_frame": frame}
        datasets.append(
            build_eval_dataset(
                attrs.evolve(source, params=params),
                host=host,
                mode="retrieval" if clip_model else "eval",
                inputs=inputs,
            )
        )
    results: dict[str, dict[str, float]] = {}
    for mode in options.modes or (getattr(model, "mode", "multimodal"),):
        per_frame, targets, clip_frames = [], None, 1
        for dataset in datasets:
            logits, targets, clip_frames = _logits(model, dataset, mode, options, keep, device)
            if logits.shape[1] != targets.shape[1]:
                raise UsageError(
                    f"the classifier predicts {logits.shape[1]} classes but the dataset's labels have "
                    f"{targets.shape[1]}; check the label CSV (--data label_csv=...)"
                )
            per_frame.append(logits)
        activation = options.activation
        if activation == "auto":
            activation = "softmax" if bool(((targets > 0.5).sum(dim=1) == 1).all()) else "sigmoid"
        results[mode] = classification_metrics(average_over_frames(per_frame, activation), targets)
        results[mode]["frames"] = clip_frames if clip_model else len(per_frame)
    return results


def knn_classify(
    options: ClassifyOptions, knn: KnnOptions, *, host: "PluginHost", recipe: Any = None
) -> dict[str, float]:
    """kNN classification of the evaluation clips by the labels of the voting clips (spec §7.1)."""
    import torch

    from cavkit.devices import autocast_dtype, resolve_device
    from cavkit.evaluation.classification import classification_metrics
    from cavkit.evaluation.configs import KnnConfig
    from cavkit.evaluation.features import Features, extract_features
    from cavkit.evaluation.knn import knn_scores
    from cavkit.models.inputs import input_spec_of

    device = resolve_device(options.device)
    loaded: list[Any] = []

    def features_of(uri: str | None, datafile: str | None, role: str, limit: int | None) -> Features:
        if uri:
            return Features.load(uri)
        if not loaded:
            loaded.append(load_eval_model(options.checkpoint, device, host=host))
        source = attrs.evolve(options.source, datafile=datafile, recipe_node=recipe_data(recipe, role))
        dataset = build_eval_dataset(source, host=host, mode="eval", inputs=input_spec_of(loaded[0]), role=role)
        return extract_features(
            loaded[0],
            eval_loader(dataset, options.batch_size, options.num_workers),
            embedding=options.embedding,
            device=device,
            autocast_dtype=autocast_dtype(options.precision),
            limit=limit,
        )

    # the same clips on both sides: read the file once, and leave-one-out so that no clip votes for itself
    same = knn.features_uri is not None and knn.features_uri == knn.train_features
    train = features_of(knn.train_features, knn.train_datafile, "train", None)
    query = train if same else features_of(knn.features_uri, options.source.datafile, "eval", options.samples)
    for name, f in (("voting", train), ("evaluation", query)):
        if f.labels is None:
            raise UsageError(f"the {name} clips have no labels; give the dataset a label_csv (--data label_csv=...)")

    def vectors(f: Features) -> torch.Tensor:
        a, v = f.audio.mean(dim=1), f.visual.mean(dim=1)
        if knn.modality == "audio":
            return a
        if knn.modality == "visual":
            return v
        return torch.cat([torch.nn.functional.normalize(a, dim=-1), torch.nn.functional.normalize(v, dim=-1)], dim=-1)

    scores = knn_scores(vectors(query), vectors(train), train.labels, KnnConfig(k=knn.k), exclude_self=same)
    out = classification_metrics(scores, query.labels)
    out["k"] = knn.k
    out["leave_one_out"] = same
    return out
