"""Zero-shot audio-visual retrieval from one feature extraction (spec §8).

:func:`evaluate_retrieval` takes L2-normalised per-frame embeddings ``audio [N,K,D]`` and
``visual [N,K,D]`` (clip i's audio matches clip i's frames) and a strategy, and returns the metrics
of both directions:

* ``audio``: audio -> visual, rows are audio queries (upstream's ``direction='audio'``);
* ``video``: visual -> audio, rows are visual queries.

When the N x N similarity matrix fits in ``matrix_mb`` it is computed once (in row chunks) and a
symmetric strategy serves both directions from it (``S_video = S_audio.T``). Beyond that budget each
direction streams over query chunks and only keeps per-query rank counts and top-k lists, so memory
stays bounded at any N.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import attrs
import torch

from cavkit.errors import UsageError
from cavkit.evaluation.metrics import TIE_MODES, TieMode, count_against_diagonal, metrics_from_counts

#: direction name -> (query modality, gallery modality)
DIRECTIONS: dict[str, tuple[str, str]] = {"audio": ("audio", "visual"), "video": ("visual", "audio")}
DIRECTION_LABELS: dict[str, str] = {"audio": "audio->visual", "video": "visual->audio"}

Strategy = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@attrs.frozen
class DirectionResult:
    """Metrics of one direction, and optionally each query's best gallery items.

    :ivar metrics: ``R1``, ``R5``, ``R10`` (fractions), ``MedR``, ``MeanR`` (1-based), ``queries``.
    :ivar top_indices: ``[N, top_k]`` gallery indices, best first (``None`` unless asked for).
    :ivar top_scores: ``[N, top_k]`` their similarities.
    :ivar ranks: ``[N]`` strict 0-based rank of each query's true match.
    """

    metrics: dict[str, float]
    ranks: torch.Tensor
    top_indices: torch.Tensor | None = None
    top_scores: torch.Tensor | None = None


def normalize_directions(directions: str | Sequence[str]) -> tuple[str, ...]:
    """``"both"`` / ``"audio,video"`` / ``["a2v"]`` -> a tuple of :data:`DIRECTIONS` keys."""
    aliases = {"audio": "audio", "a2v": "audio", "video": "video", "v2a": "video", "visual": "video"}
    if isinstance(directions, str):
        directions = ["audio", "video"] if directions == "both" else directions.split(",")
    out: list[str] = []
    for name in directions:
        key = aliases.get(name.strip())
        if key is None:
            raise UsageError(f"unknown retrieval direction {name!r}; use audio (a2v), video (v2a) or both")
        if key not in out:
            out.append(key)
    if not out:
        raise UsageError("no retrieval direction given")
    return tuple(out)


def check_embeddings(audio: torch.Tensor, visual: torch.Tensor) -> None:
    if audio.dim() != 3 or visual.dim() != 3:
        raise UsageError(
            f"retrieval needs per-frame embeddings [N,K,D]; "
            f"got audio {tuple(audio.shape)}, visual {tuple(visual.shape)}"
        )
    if audio.shape[0] != visual.shape[0]:
        raise UsageError(f"audio has {audio.shape[0]} clips but visual has {visual.shape[0]}; they must pair up")
    if audio.shape[0] == 0:
        raise UsageError("retrieval needs at least one clip")


def row_chunks(n_rows: int, n_cols: int, chunk_mb: float) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` row ranges whose ``[rows, n_cols]`` float32 block fits in ``chunk_mb``."""
    step = max(1, int(chunk_mb * (1 << 20)) // max(1, 4 * n_cols))
    for start in range(0, n_rows, step):
        yield start, min(n_rows, start + step)


def similarity_matrix(
    strategy: Strategy, query: torch.Tensor, gallery: torch.Tensor, *, chunk_mb: float = 256
) -> torch.Tensor:
    """The full ``[N, M]`` similarity, computed in query chunks of at most ``chunk_mb`` output each."""
    n, m = query.shape[0], gallery.shape[0]
    chunks = list(row_chunks(n, m, chunk_mb))
    if len(chunks) == 1:
        return _checked(strategy(query, gallery), n, m)
    out = query.new_empty((n, m), dtype=torch.float32)
    for start, stop in chunks:
        out[start:stop] = _checked(strategy(query[start:stop], gallery), stop - start, m)
    return out


def _checked(block: torch.Tensor, n: int, m: int) -> torch.Tensor:
    if tuple(block.shape) != (n, m):
        raise UsageError(f"retrieval strategy returned shape {tuple(block.shape)}, expected ({n}, {m})")
    return block.float()


class _Accumulator:
    """Per-query rank counts and top-k lists, filled chunk by chunk."""

    def __init__(self, top_k: int):
        self.top_k = top_k
        self.greater: list[torch.Tensor] = []
        self.equal: list[torch.Tensor] = []
        self.top_i: list[torch.Tensor] = []
        self.top_s: list[torch.Tensor] = []

    def add(self, block: torch.Tensor, offset: int) -> None:
        greater, equal = count_against_diagonal(block, offset)
        self.greater.append(greater)
        self.equal.append(equal)
        if self.top_k:
            scores, idx = block.topk(min(self.top_k, block.shape[1]), dim=1)
            self.top_s.append(scores.cpu())
            self.top_i.append(idx.cpu())

    def result(self, tie_mode: TieMode) -> DirectionResult:
        greater, equal = torch.cat(self.greater), torch.cat(self.equal)
        return DirectionResult(
            metrics=metrics_from_counts(greater, equal, tie_mode),
            ranks=greater + equal - 1,
            top_indices=torch.cat(self.top_i) if self.top_k else None,
            top_scores=torch.cat(self.top_s) if self.top_k else None,
        )


def evaluate_retrieval(
    audio: torch.Tensor,
    visual: torch.Tensor,
    strategy: Strategy,
    *,
    directions: str | Sequence[str] = ("audio", "video"),
    tie_mode: TieMode = "strict",
    top_k: int = 0,
    matrix_mb: float = 1024,
    chunk_mb: float = 256,
    device: str | torch.device | None = None,
    similarity: torch.Tensor | None = None,
) -> dict[str, DirectionResult]:
    """Retrieval metrics for each direction from one set of embeddings.

    :param audio: ``[N,K,D]`` L2-normalised per-frame audio embeddings (K = 1 for CAV-MAE).
    :param visual: ``[N,K,D]`` the same clips' visual embeddings.
    :param strategy: ``strategy(query [n,K,D], gallery [M,K,D]) -> [n,M]``.
    :param tie_mode: ``strict`` (a tie counts against the query) or ``upstream`` (published code).
    :param top_k: also keep each query's ``top_k`` best gallery items (for galleries of examples).
    :param matrix_mb: keep the whole N x N matrix when it fits in this budget, else stream.
    :param chunk_mb: budget of one ``[rows, N]`` block handed to the strategy.
    :param device: where to compute (default: where the embeddings are).
    :param similarity: the audio->visual matrix ``[N,N]`` of this strategy when already computed
        (see :func:`evaluate_many`).
    """
    if tie_mode not in TIE_MODES:
        raise UsageError(f"unknown tie mode {tie_mode!r}; choose one of {', '.join(TIE_MODES)}")
    check_embeddings(audio, visual)
    directions = normalize_directions(directions)
    if device is not None:
        audio, visual = audio.to(device), visual.to(device)
    audio, visual = audio.float(), visual.float()
    sides = {"audio": audio, "visual": visual}
    n = audio.shape[0]
    results: dict[str, DirectionResult] = {}
    with torch.inference_mode():
        if similarity is not None or n * n * 4 <= matrix_mb * (1 << 20):
            matrices: dict[str, torch.Tensor] = {}
            if similarity is not None:
                matrices["audio"] = similarity.to(audio.device).float()
            for name in directions:
                query, gallery = (sides[s] for s in DIRECTIONS[name])
                other = "video" if name == "audio" else "audio"
                if name in matrices:
                    pass
                elif getattr(strategy, "symmetric", False) and other in matrices:
                    matrices[name] = matrices[other].T
                else:
                    matrices[name] = similarity_matrix(strategy, query, gallery, chunk_mb=chunk_mb)
                acc = _Accumulator(top_k)
                acc.add(matrices[name], 0)
                results[name] = acc.result(tie_mode)
            return results
        for name in directions:
            query, gallery = (sides[s] for s in DIRECTIONS[name])
            acc = _Accumulator(top_k)
            for start, stop in row_chunks(n, n, chunk_mb):
                block = _checked(strategy(query[start:stop], gallery), stop - start, n)
                acc.add(block, start)
            results[name] = acc.result(tie_mode)
    return results


def evaluate_many(
    audio: torch.Tensor,
    visual: torch.Tensor,
    strategies: dict[str, Strategy],
    *,
    matrix_mb: float = 1024,
    device: str | torch.device | None = None,
    **options: Any,
) -> dict[str, dict[str, DirectionResult]]:
    """:func:`evaluate_retrieval` for several strategies on one set of embeddings.

    When both built-in ``diagonal_mean`` and ``diagonal_max`` are asked for (with the same chunk
    budget) and the N x N matrix fits ``matrix_mb``, their per-frame products are computed once
    and reduced both ways (bit-identical to computing each alone).
    """
    from cavkit.evaluation.strategies import DiagonalMax, DiagonalMean, diagonal_mean_and_max

    check_embeddings(audio, visual)
    if device is not None:
        audio, visual = audio.to(device), visual.to(device)
    audio, visual = audio.float(), visual.float()
    n = audio.shape[0]
    precomputed: dict[str, torch.Tensor] = {}
    means = [k for k, s in strategies.items() if type(s) is DiagonalMean]
    maxes = [k for k, s in strategies.items() if type(s) is DiagonalMax]
    if means and maxes and n * n * 4 <= matrix_mb * (1 << 20):
        budget = strategies[means[0]].config.chunk_mb
        if strategies[maxes[0]].config.chunk_mb == budget:
            with torch.inference_mode():
                precomputed[means[0]], precomputed[maxes[0]] = diagonal_mean_and_max(audio, visual, budget)
    return {
        name: evaluate_retrieval(
            audio, visual, strategy, matrix_mb=matrix_mb, similarity=precomputed.get(name), **options
        )
        for name, strategy in strategies.items()
    }


def results_table(results: dict[str, dict[str, DirectionResult]]) -> str:
    """A plain-text table: one row per (strategy, direction), recalls in percent.

    The strategy column is as wide as the longest name (``plugin/name:key=value``) plus two spaces.
    """
    width = max([16, *(len(name) + 2 for name in results)])
    header = f"{'strategy':<{width}}{'direction':<16}{'R@1':>8}{'R@5':>8}{'R@10':>8}{'MedR':>8}{'MeanR':>9}{'N':>7}"
    lines = [header, "-" * len(header)]
    for strategy_name, by_direction in results.items():
        for direction, res in by_direction.items():
            m = res.metrics
            lines.append(
                f"{strategy_name:<{width}}{DIRECTION_LABELS[direction]:<16}"
                f"{100 * m['R1']:>8.2f}{100 * m['R5']:>8.2f}{100 * m['R10']:>8.2f}"
                f"{_fmt(m['MedR'], 8, '.1f')}{_fmt(m['MeanR'], 9, '.2f')}{m['queries']:>7d}"
            )
    return "\n".join(lines)


def _fmt(value: float | None, width: int, spec: str) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}{spec}}"


def results_json(results: dict[str, dict[str, DirectionResult]], **extra: Any) -> dict[str, Any]:
    """JSON-able summary: ``{"results": {strategy: {direction: metrics}}, **extra}``."""
    return {
        **extra,
        "note": "R1/R5/R10 are fractions (0..1); MedR and MeanR are 1-based ranks; "
        "direction 'audio' = audio->visual, 'video' = visual->audio",
        "results": {s: {d: dict(r.metrics) for d, r in by_d.items()} for s, by_d in results.items()},
    }
