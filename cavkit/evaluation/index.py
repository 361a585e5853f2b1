"""Index-based retrieval for galleries too large to score exhaustively (optional FAISS dependency).

Strategies with a single-vector form (:meth:`RetrievalStrategy.vectors`: ``pooled``, ``mean``,
``diagonal_mean``) turn each clip into one vector whose inner products are the similarities. The
gallery vectors go into a FAISS index (``Flat``: exact inner product by default; any
``index_factory`` string, e.g. ``"IVF1024,Flat"`` or ``"HNSW32"``, for approximate search) and each
query retrieves its ``top_k`` best items. Install with ``pip install faiss-cpu``.

What this path can and cannot report:

* R@k for k <= ``top_k`` is exact with a Flat index, except that the order of *exactly tied*
  scores is FAISS's (neither ``strict`` nor ``upstream``);
* ``MedR`` is reported when more than half of the queries find their match within ``top_k``
  (otherwise the median lies beyond the list and is ``None``); ``MeanR`` is ``None``.

Use :func:`cavkit.evaluation.retrieval.evaluate_retrieval` (chunked, exact) whenever you can
afford N x M similarity evaluations; it never holds more than a chunk in memory either.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from cavkit.errors import UsageError
from cavkit.evaluation.metrics import RECALL_AT
from cavkit.evaluation.retrieval import DIRECTIONS, DirectionResult, check_embeddings, normalize_directions


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _faiss():
    try:
        import faiss
    except ImportError as exc:
        raise UsageError("index-based retrieval needs FAISS: pip install faiss-cpu (or faiss-gpu)") from exc
    return faiss


def build_index(vectors: torch.Tensor, factory: str = "Flat"):
    """A FAISS inner-product index over ``vectors [M, D']`` (float32)."""
    faiss = _faiss()
    data = np.ascontiguousarray(vectors.detach().float().cpu().numpy())
    index = faiss.index_factory(data.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        index.train(data)
    index.add(data)
    return index


def evaluate_retrieval_index(
    audio: torch.Tensor,
    visual: torch.Tensor,
    strategy,
    *,
    directions: str | Sequence[str] = ("audio", "video"),
    top_k: int = 10,
    factory: str = "Flat",
    nprobe: int | None = None,
) -> dict[str, DirectionResult]:
    """Retrieval metrics from top-k index search (see the module docstring for what is exact).

    :param strategy: a strategy with ``vectors([N,K,D]) -> [N,D']`` (``has_vectors``).
    :param top_k: results per query; at least 10 so that R@10 is defined.
    """
    if not getattr(strategy, "has_vectors", False):
        raise UsageError(
            f"strategy {strategy!r} has no single-vector form, so no index can serve it; "
            "use pooled, mean or diagonal_mean, or the exact path (without --index)"
        )
    check_embeddings(audio, visual)
    top_k = max(top_k, max(RECALL_AT))
    sides = {"audio": audio.float(), "visual": visual.float()}
    n = audio.shape[0]
    results = {}
    for name in normalize_directions(directions):
        query_side, gallery_side = DIRECTIONS[name]
        index = build_index(strategy.vectors(sides[gallery_side]), factory)
        if nprobe is not None and hasattr(index, "nprobe"):
            index.nprobe = nprobe
        scores, ids = index.search(
            np.ascontiguousarray(strategy.vectors(sides[query_side]).cpu().numpy()), min(top_k, n)
        )
        found = ids == np.arange(n)[:, None]
        # position of the match in the list, or top_k when it is not in the list
        position = np.where(found.any(axis=1), found.argmax(axis=1), top_k)
        metrics: dict[str, float | None] = {f"R{k}": float(np.mean(position < k)) for k in RECALL_AT}
        ordered = np.sort(position)
        half = (n - 1) / 2
        metrics["MedR"] = float(np.median(position) + 1) if ordered[int(np.ceil(half))] < top_k else None
        metrics["MeanR"] = None
        metrics["queries"] = n
        results[name] = DirectionResult(
            metrics=metrics,  # type: ignore[arg-type]
            ranks=torch.from_numpy(position),
            top_indices=torch.from_numpy(ids),
            top_scores=torch.from_numpy(scores),
        )
    return results
