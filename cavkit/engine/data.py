"""Data order and per-sample randomness that survive a restart and do not depend on the device count.

One optimiser step consumes a *global batch* of ``G = batch_size x world_size x grad_accum`` dataset
positions. Epoch ``e`` shuffles the dataset with a generator seeded from ``(seed, e)`` (or draws
``len(dataset)`` indices with the class-balancing weights, with replacement, as upstream's
``WeightedRandomSampler`` does). Step ``s`` takes positions ``[s*G, (s+1)*G)``; micro-batch ``k`` on
rank ``r`` takes the contiguous chunk ``(k*world + r)*batch_size``. So a 2-rank run, a 1-rank run
with ``grad_accum=2`` and a 1-rank run with a doubled batch see the same samples in each step, and
a resumed run continues at ``(epoch, step)`` without replaying anything.

Every item is loaded under its own seed ``(seed, epoch, position)``: torch, numpy and python RNGs
are seeded for that one ``__getitem__`` and restored afterwards, so augmentations (noise, mixup,
SpecAugment) are the same whichever worker or rank loads the item, and the trainer's own RNG
state is untouched (this also fixes upstream's unseeded numpy RNG in workers, spec §10 item 8).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler, default_collate

from cavkit.engine.interrupt import ignore_stop_signals
from cavkit.errors import DataError, UsageError


def derive_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (numpy ``SeedSequence``)."""
    words = np.random.SeedSequence([int(p) & 0xFFFFFFFFFFFFFFFF for p in parts]).generate_state(2, np.uint64)
    return int(words[0] >> np.uint64(1))


@contextlib.contextmanager
def item_rng(seed: int):
    """Seed torch (CPU), numpy and python RNGs for one item; restore them afterwards."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        np.random.seed(seed % (2**32))
        random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


def seed_process(seed: int, rank: int) -> None:
    """Seed this process's global torch, numpy and python RNGs from ``(seed, rank)`` at the start of a run."""
    torch.manual_seed(derive_seed(seed, rank, 5))
    np.random.seed(derive_seed(seed, rank, 6) % 2**32)
    random.seed(derive_seed(seed, rank, 8))


class SeededItems(Dataset):
    """Wraps a map-style dataset; ``self[(index, seed)]`` loads ``index`` under :func:`item_rng`."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        with item_rng(seed):
            return self.dataset[index]


def sample_weights(dataset: Any) -> torch.Tensor | None:
    """The dataset's class-balancing sample weights (``sample_weights`` attribute or method), if any."""
    weights = getattr(dataset, "sample_weights", None)
    if callable(weights):
        weights = weights()
    if weights is None:
        return None
    return torch.as_tensor(np.asarray(weights), dtype=torch.float64)


class GlobalBatchPlan:
    """Which dataset index sits at each position of an epoch (see the module docstring)."""

    def __init__(self, num_items: int, global_batch: int, seed: int, weights: torch.Tensor | None = None):
        if num_items < global_batch:
            raise DataError(
                f"the training set has {num_items} items, fewer than one global batch "
                f"({global_batch} = batch_size x devices x grad_accum); lower trainer.batch_size"
            )
        if weights is not None and len(weights) != num_items:
            raise DataError(f"the dataset gives {len(weights)} sample weights for {num_items} items")
        self.num_items = num_items
        self.global_batch = global_batch
        self.seed = seed
        self.weights = weights
        self.steps_per_epoch = num_items // global_batch  # the last partial global batch is dropped

    def epoch_order(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(derive_seed(self.seed, epoch, 1))
        if self.weights is not None:
            return torch.multinomial(self.weights, self.num_items, replacement=True, generator=generator)
        return torch.randperm(self.num_items, generator=generator)


@dataclass(frozen=True)
class TrainingDataPlan:
    """How a training set is consumed: global batch, order (map-style sets), steps per epoch and in all."""

    global_batch: int
    iterable: bool
    order: GlobalBatchPlan | None  # None for streaming sets, which split themselves by rank and worker
    steps_per_epoch: int
    total_steps: int


def plan_training_data(train_set: Any, cfg: Any, *, world_size: int, seed: int) -> TrainingDataPlan:
    """The :class:`TrainingDataPlan` of ``train_set`` under the recipe's ``trainer`` section ``cfg``."""
    global_batch = cfg.batch_size * world_size * cfg.grad_accum
    iterable = isinstance(train_set, IterableDataset)
    weights = sample_weights(train_set) if cfg.balanced_sampling else None
    if cfg.balanced_sampling and weights is None:
        raise UsageError("trainer.balanced_sampling is on but the training set provides no sample_weights")
    if iterable:
        if cfg.balanced_sampling:
            raise UsageError("trainer.balanced_sampling needs a map-style training set, not a streaming one")
        try:
            length = len(train_set)
        except TypeError:
            length = None
        if length is None and not cfg.max_steps:
            raise UsageError("the streaming training set has no known length: set trainer.max_steps "
                             "(or write index.json beside the shards)")
        order = None
        steps_per_epoch = max(length // global_batch, 1) if length else cfg.max_steps
    else:
        order = GlobalBatchPlan(len(train_set), global_batch, seed, weights)
        steps_per_epoch = order.steps_per_epoch
    total_steps = cfg.max_steps or cfg.epochs * steps_per_epoch
    return TrainingDataPlan(global_batch, iterable, order, steps_per_epoch, total_steps)


class MicroBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yields this rank's micro-batches ``[(index, item_seed), ...]`` for steps ``start_step..`` of one epoch."""

    def __init__(self, plan: GlobalBatchPlan, *, epoch: int, start_step: int, rank: int, world_size: int, batch_size: int, grad_accum: int):
        self.plan, self.epoch, self.start_step = plan, epoch, start_step
        self.rank, self.world_size, self.batch_size, self.grad_accum = rank, world_size, batch_size, grad_accum

    def __len__(self) -> int:
        return (self.plan.steps_per_epoch - self.start_step) * self.grad_accum

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = self.plan.epoch_order(self.epoch).tolist()
        for step in range(self.start_step, self.plan.steps_per_epoch):
            for micro in range(self.grad_accum):
                first = step * self.plan.global_batch + (micro * self.world_size + self.rank) * self.batch_size
                yield [
                    (order[pos], derive_seed(self.plan.seed, self.epoch, pos, 0))
                    for pos in range(first, first + self.batch_size)
                ]


def batch_slice(step_tensor: torch.Tensor, *, micro: int, rank: int, world_size: int, batch_size: int) -> torch.Tensor:
    """The rows of a per-global-batch tensor ``[G, ...]`` that belong to (micro-batch, rank)."""
    first = (micro * world_size + rank) * batch_size
    return step_tensor[first : first + batch_size]


def train_loader(
    dataset: Dataset,
    *,
    plan: GlobalBatchPlan | None,
    epoch: int,
    start_step: int,
    rank: int,
    world_size: int,
    batch_size: int,
    grad_accum: int,
    num_workers: int,
    pin_memory: bool,
) -> DataLoader:
    """The DataLoader of one epoch for this rank, starting at ``start_step``."""
    common: dict[str, Any] = {
        "num_workers": num_workers,
        "pin_memory": pin_memory,
        "collate_fn": default_collate,
        # a private generator: creating the iterator must not consume the global torch RNG
        "generator": torch.Generator().manual_seed(derive_seed(epoch, start_step, rank, 7)),
        # Ctrl-C and SIGTERM are for the main process, which stops the run cleanly (engine.interrupt)
        "worker_init_fn": ignore_stop_signals,
    }
    if num_workers > 0:
        common["persistent_workers"] = False
    if isinstance(dataset, IterableDataset):
        return DataLoader(dataset, batch_size=batch_size, drop_last=True, **common)
    assert plan is not None
    sampler = MicroBatchSampler(
        plan, epoch=epoch, start_step=start_step, rank=rank, world_size=world_size, batch_size=batch_size, grad_accum=grad_accum
    )
    return DataLoader(SeededItems(dataset), batch_sampler=sampler, **common)


def stream_batches(dataset: IterableDataset, *, epoch: int, skip: int, loader: dict[str, Any]) -> Iterator[Any]:
    """Endless micro-batches of a streaming training set for ``epoch``, after skipping ``skip`` of them.

    The set splits its shards by rank and worker; a rank whose share runs out starts it again (with
    ``set_epoch(epoch + 1_000_003 * round)`` when the set has it), so every rank takes as many steps
    as the others. The order after a mid-epoch resume is the same, but per-item augmentation
    randomness is only reproducible for map-style sets.

    :param loader: the keyword arguments of :func:`train_loader` other than ``dataset``, ``plan``,
        ``epoch`` and ``start_step``.
    """
    rounds = 0
    while True:
        set_epoch = getattr(dataset, "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch + 1_000_003 * rounds)
        produced = False
        for batch in train_loader(dataset, plan=None, epoch=epoch, start_step=0, **loader):
            produced = True
            if skip:
                skip -= 1
                continue
            yield batch
        if not produced:
            raise UsageError("the streaming training set yielded no full batch on this rank; lower trainer.batch_size")
        rounds += 1


class _StridedBatches(Sampler[list[tuple[int, int]]]):
    """Sequential batches (``drop_last``), every ``world_size``-th one for this rank, with item seeds."""

    def __init__(self, num_items: int, batch_size: int, rank: int, world_size: int, seed: int, drop_last: bool):
        self.num_items, self.batch_size, self.rank, self.world_size = num_items, batch_size, rank, world_size
        self.seed, self.drop_last = seed, drop_last

    def _batches(self) -> list[list[int]]:
        stop = (self.num_items // self.batch_size) * self.batch_size if self.drop_last else self.num_items
        all_batches = [list(range(i, min(i + self.batch_size, stop))) for i in range(0, stop, self.batch_size)]
        return all_batches[self.rank :: self.world_size]

    def __len__(self) -> int:
        return len(self._batches())

    def __iter__(self):
        for batch in self._batches():
            yield [(i, derive_seed(self.seed, i, 3)) for i in batch]


def eval_loader(
    dataset: Dataset, *, batch_size: int, rank: int, world_size: int, seed: int, num_workers: int, drop_last: bool
) -> DataLoader:
    """Sequential batches for validation (upstream validates with ``drop_last=True``, spec §10 item 12)."""
    if isinstance(dataset, IterableDataset):
        return DataLoader(dataset, batch_size=batch_size, drop_last=drop_last, num_workers=num_workers,
                          worker_init_fn=ignore_stop_signals)
    if len(dataset) < batch_size and drop_last:  # type: ignore[arg-type]
        raise UsageError(f"the validation set has {len(dataset)} items, fewer than one batch of {batch_size}")
    sampler = _StridedBatches(len(dataset), batch_size, rank, world_size, seed, drop_last)  # type: ignore[arg-type]
    return DataLoader(SeededItems(dataset), batch_sampler=sampler, num_workers=num_workers, collate_fn=default_collate,
                      worker_init_fn=ignore_stop_signals)


def skipped_count(dataset: Any) -> int | None:
    """How many bad clips the dataset skipped so far, when it counts them."""
    for name in ("skipped_count", "num_skipped", "skipped"):
        value = getattr(dataset, name, None)
        if callable(value):
            value = value()
        if isinstance(value, int):
            return value
    return None
