"""End-of-training retrieval evaluation: embed ``data.eval`` once, score with the recipe's strategy.

Uses :mod:`cavkit.evaluation` (feature extraction, strategies, metrics; spec §8). Recalls are
reported in percent (as the Sync paper does) under ``eval/retrieval/<strategy>/<direction>/R@k``,
with ``chance/R@1`` = 100/N for reference.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, default_collate

from cavkit.evaluation.features import extract_features
from cavkit.evaluation.retrieval import DIRECTION_LABELS, evaluate_retrieval


def retrieval_metrics(model: torch.nn.Module, recipe: Any, *, device: torch.device, batch_size: int) -> dict[str, float]:
    dataset = recipe.data.eval.build()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=default_collate)
    was_training = model.training
    features = extract_features(model, loader, device=device)
    model.train(was_training)
    strategy = recipe.retrieval.build()
    results = evaluate_retrieval(features.audio, features.visual, strategy)
    name = recipe.retrieval.type
    metrics: dict[str, float] = {}
    for direction, result in results.items():
        label = DIRECTION_LABELS[direction].replace("->", "_to_")
        for key in ("R1", "R5", "R10"):
            metrics[f"eval/retrieval/{name}/{label}/R@{key[1:]}"] = 100.0 * float(result.metrics[key])
        metrics[f"eval/retrieval/{name}/{label}/MedR"] = float(result.metrics["MedR"])
    metrics["eval/retrieval/chance/R@1"] = 100.0 / features.audio.shape[0]
    return metrics


def format_retrieval(metrics: dict[str, float], strategy: str) -> str:
    """Retrieval metrics (percent) as a small table, one row per direction."""
    chance = metrics.get("eval/retrieval/chance/R@1")
    lines = [f"cavkit: retrieval on data.eval ({strategy}; chance R@1 = {chance:.1f}%):"]
    prefix = f"eval/retrieval/{strategy}/"
    for direction in ("audio_to_visual", "visual_to_audio"):
        row = {k[len(prefix) + len(direction) + 1:]: v for k, v in metrics.items() if k.startswith(prefix + direction + "/")}
        if row:
            cells = "  ".join(f"{k} {v:5.1f}" for k, v in row.items())
            lines.append(f"  {direction.replace('_to_', '->'):<14} {cells}")
    return "\n".join(lines)


def report_retrieval(model: torch.nn.Module, recipe: Any, *, device: torch.device, batch_size: int, logger: Any, step: int) -> dict[str, float]:
    """:func:`retrieval_metrics`, logged as an ``eval`` record at ``step`` and printed as a table."""
    import sys

    metrics = retrieval_metrics(model, recipe, device=device, batch_size=batch_size)
    logger.record("eval", step, metrics)
    print(format_retrieval(metrics, recipe.retrieval.type), file=sys.stderr)
    return metrics
