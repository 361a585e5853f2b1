"""The training loop behind ``cavkit train`` (spec §7): one CPU, one GPU, or many under torchrun.

:class:`Trainer` builds the recipe's model, weighted objectives and datasets, then runs optimiser
steps of ``grad_accum`` micro-batches with autocast, optional gradient clipping and a per-step
learning-rate schedule. Model and objectives are one module (:class:`TrainStep`) so that DDP also
averages the gradients of objective parameters (a learnable temperature).

Reproducibility contract (bitwise on CPU): the data order and every item's augmentation come from
``(seed, epoch, position)`` (:mod:`cavkit.engine.data`), the masking noise of a step from
``(seed, step)`` (``masking_noise: global``), and a checkpoint stores model, objectives,
optimiser, scheduler, scaler, progress and every rank's RNG states. A run killed at any point and
resumed from its latest checkpoint ends with exactly the weights of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from cavkit.config import unstructure
from cavkit.engine import checkpoint as ckpt
from cavkit.engine.data import GlobalBatchPlan, batch_slice, derive_seed, eval_loader, sample_weights, train_loader
from cavkit.engine.dist import DistInfo, all_reduce_mean, any_rank, barrier
from cavkit.engine.optim import build_optimizer, build_scheduler, freeze_all_but_head
from cavkit.engine.run_dir import NullLogger, RunLogger
from cavkit.errors import CavkitError, CheckpointError, UsageError
from cavkit.interfaces import ModelOutput

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class NonFiniteLossError(CavkitError):
    """A loss became NaN or infinite; the run stopped before updating the weights."""


@contextlib.contextmanager
def _no_op():
    yield


def objective_labels(nodes: list[Any]) -> list[str]:
    """Unique names for the recipe's objectives: ``name:`` if given, else ``type`` (``mae``, ``mae_2``)."""
    labels: list[str] = []
    for node in nodes:
        base = node.label or node.type
        label, n = base, 2
        while label in labels:
            label, n = f"{base}_{n}", n + 1
        labels.append(label)
    return labels


class TrainStep(nn.Module):
    """The model and its weighted objectives as one module.

    ``forward(batch, noise_audio, noise_visual) -> (total, losses [n_objectives], logs)`` where
    ``total = sum(weight_i * loss_i)`` and ``losses`` are the unweighted objective losses. With
    ``keep_output`` set, the model output of the last forward is kept in ``kept_output``.
    """

    def __init__(self, model: nn.Module, objectives: list[nn.Module], labels: list[str], weights: list[float]):
        super().__init__()
        self.model = model
        self.objectives = nn.ModuleList(objectives)
        self.labels = labels
        self.weights = weights
        self.keep_output = False
        self.kept_output: ModelOutput | None = None

    def forward(self, batch: dict[str, Any], noise_audio: torch.Tensor | None = None, noise_visual: torch.Tensor | None = None):
        output: ModelOutput = self.model(batch["audio"], batch["image"], noise_audio=noise_audio, noise_visual=noise_visual)
        losses, logs = [], {}
        total = None
        for label, weight, objective in zip(self.labels, self.weights, self.objectives):
            result = objective(batch, output)
            loss = result.loss.float()
            losses.append(loss)
            total = weight * loss if total is None else total + weight * loss
            for key, value in result.logs.items():
                if key != "loss":
                    logs[f"{label}/{key}"] = value.detach() if isinstance(value, torch.Tensor) else value
        # the model output stays out of the return value: DDP must only see tensors that feed the loss
        self.kept_output = output if self.keep_output else None
        return total, torch.stack(losses), logs


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    non_blocking = device.type == "cuda"
    return {k: v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _scalar(value: Any, device: torch.device) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach().float().mean().to(device)
    return torch.tensor(float(value), device=device)


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


class Trainer:
    """Trains one recipe: ``Trainer(recipe, run_dir=..., dist=...).fit(resume=None | "latest" | uri)``.

    :param recipe: a validated :class:`cavkit.recipe.schema.Recipe`.
    :param run_dir: the run directory URI (``{recipe}`` already filled in).
    :param dist: this process's place in the process group.
    :param versions: ``{distribution: version}`` of cavkit and the plugins, for the manifest.
    :param on_step_end: callables ``f(trainer)`` run after every optimiser step (and its checkpoint).
    """

    def __init__(self, recipe: Any, *, run_dir: str, dist: DistInfo, versions: dict[str, str] | None = None,
                 on_step_end: list[Callable[["Trainer"], None]] | None = None, argv: list[str] | None = None):
        self.recipe = recipe
        self.cfg = recipe.trainer
        self.run_dir = run_dir
        self.dist = dist
        from cavkit import __version__

        self.versions = {"cavkit": __version__, **(versions or {})}
        self.on_step_end = list(on_step_end or [])
        self.argv = list(argv if argv is not None else sys.argv)
        self.device = dist.device
        if self.cfg.precision == "fp16" and self.device.type != "cuda":
            raise UsageError("trainer.precision fp16 needs a CUDA device; use bf16 (or fp32) on CPU")
        if self.cfg.cpu_threads is not None and self.device.type == "cpu":
            torch.set_num_threads(self.cfg.cpu_threads)
        self.seed = recipe.seed
        torch.manual_seed(derive_seed(self.seed, dist.rank, 5))
        import numpy as np
        import random

        np.random.seed(derive_seed(self.seed, dist.rank, 6) % 2**32)
        random.seed(derive_seed(self.seed, dist.rank, 8))

        # -- components ----------------------------------------------------------------------
        if recipe.data.train is None:
            raise UsageError("the recipe has no data.train dataset; add one to train")
        if not recipe.objectives:
            raise UsageError("the recipe has no objectives; add at least one under objectives:")
        self.model: nn.Module = recipe.model.build()
        if self.cfg.init:
            from cavkit.checkpoints.load import init_from_checkpoint

            report = init_from_checkpoint(self.model, self.cfg.init)
            if dist.is_rank_zero:
                print(f"cavkit: initialised {len(report['loaded'])} tensors from {self.cfg.init}; "
                      f"fresh: {len(report['fresh'])}, ignored: {len(report['ignored'])}", file=sys.stderr)
        labels = objective_labels(recipe.objectives)
        objectives = [node.build() for node in recipe.objectives]
        self.train_step = TrainStep(self.model, objectives, labels, [float(n.weight) for n in recipe.objectives]).to(self.device)
        self.labels = labels
        opt = self.cfg.optimizer
        if self.cfg.freeze_base:
            freeze_all_but_head(self.model, opt.head_prefixes)
        self.train_set = recipe.data.train.build()
        self.val_set = recipe.data.val.build() if recipe.data.val is not None else None

        # -- data plan and schedule --------------------------------------------------------------
        self.global_batch = self.cfg.batch_size * dist.world_size * self.cfg.grad_accum
        self.iterable = isinstance(self.train_set, torch.utils.data.IterableDataset)
        weights = sample_weights(self.train_set) if self.cfg.balanced_sampling else None
        if self.cfg.balanced_sampling and weights is None:
            raise UsageError("trainer.balanced_sampling is on but the training set provides no sample_weights")
        if self.iterable:
            # streaming sets (tar shards) split themselves by rank and worker; see _stream()
            if self.cfg.balanced_sampling:
                raise UsageError("trainer.balanced_sampling needs a map-style training set, not a streaming one")
            try:
                length = len(self.train_set)
            except TypeError:
                length = None
            if length is None and not self.cfg.max_steps:
                raise UsageError("the streaming training set has no known length: set trainer.max_steps "
                                 "(or write index.json beside the shards)")
            self.plan = None
            self.steps_per_epoch = max(length // self.global_batch, 1) if length else self.cfg.max_steps
        else:
            self.plan = GlobalBatchPlan(len(self.train_set), self.global_batch, self.seed, weights)
            self.steps_per_epoch = self.plan.steps_per_epoch
        self.total_steps = self.cfg.max_steps or self.cfg.epochs * self.steps_per_epoch

        named = list(self.model.named_parameters())
        named += [(f"objectives.{n}", p) for n, p in self.train_step.objectives.named_parameters()]
        self.optimizer = build_optimizer(named, opt)
        self.scheduler = build_scheduler(
            self.optimizer, self.cfg.schedule, total_steps=self.total_steps, steps_per_epoch=self.steps_per_epoch, base_lr=opt.lr
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.cfg.precision == "fp16")
        self.trainable = [p for p in self.train_step.parameters() if p.requires_grad]

        # -- DDP (wrapped at the first step, see _wrap_ddp) ------------------------------------------
        self.module: nn.Module = self.train_step

        # -- progress -------------------------------------------------------------------------
        self.step = 0
        self.epoch = 0
        self.step_in_epoch = 0
        self.samples_seen = 0
        self.averaging: dict[str, Any] | None = None
        self.token_counts: tuple[int, int] | None = None
        self._probed = False
        self._skipped = 0
        self._image_output: tuple[Any, Any] | None = None
        self.last_checkpoint: str | None = None
        self.logger: RunLogger | NullLogger = NullLogger()
        self.result: dict[str, Any] = {}

    def recipe_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(unstructure(self.recipe), sort_keys=False)

    # -- checkpoints -------------------------------------------------------------------------------
    def state(self, rng_states: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "format": ckpt.FORMAT,
            "version": ckpt.FORMAT_VERSION,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "objectives": {k: v.detach().cpu() for k, v in self.train_step.objectives.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "progress": {
                "step": self.step,
                "epoch": self.epoch,
                "step_in_epoch": self.step_in_epoch,
                "samples_seen": self.samples_seen,
                "world_size": self.dist.world_size,
                "global_batch": self.global_batch,
            },
            "rng": rng_states,
            "averaging": self.averaging,
            "recipe": self.recipe_yaml(),
            "versions": self.versions,
        }

    def save_checkpoint(self) -> str | None:
        """Write ``checkpoints/step-N.pt`` (rank 0) with every rank's RNG state; apply ``keep_last``."""
        rng = ckpt.capture_rng()
        if self.dist.is_distributed:
            gathered: list[Any] = [None] * self.dist.world_size
            torch.distributed.all_gather_object(gathered, rng)
        else:
            gathered = [rng]
        uri = None
        if self.dist.is_rank_zero:
            uri = ckpt.join(self.run_dir, ckpt.CHECKPOINT_DIR, ckpt.checkpoint_name(self.step))
            ckpt.save_object(self.state(gathered), uri)
            ckpt.prune_checkpoints(self.run_dir, self.recipe.run.keep_last)
            self.logger.sync()
        barrier(self.dist)
        self.last_checkpoint = uri or ckpt.join(self.run_dir, ckpt.CHECKPOINT_DIR, ckpt.checkpoint_name(self.step))
        return uri

    def resume(self, uri: str) -> None:
        """Restore everything a checkpoint holds (on every rank)."""
        state = ckpt.check_checkpoint(ckpt.load_object(uri), uri)
        try:
            self.model.load_state_dict(state["model"], strict=True)
            self.train_step.objectives.load_state_dict(state["objectives"], strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{uri}: does not match the recipe's model or objectives: {exc}") from None
        progress = state["progress"]
        if progress["global_batch"] != self.global_batch:
            raise CheckpointError(
                f"{uri}: saved with a global batch of {progress['global_batch']} samples, this run has {self.global_batch} "
                "(batch_size x devices x grad_accum); resume with the same global batch to keep the data order"
            )
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = progress["step"]
        self.epoch = progress["epoch"]
        self.step_in_epoch = progress["step_in_epoch"]
        self.samples_seen = progress["samples_seen"]
        self.averaging = state.get("averaging")
        rng = state["rng"]
        if len(rng) == self.dist.world_size:
            ckpt.restore_rng(rng[self.dist.rank])
        elif self.dist.is_rank_zero:
            print(
                f"cavkit: warning: {uri} was written by {len(rng)} process(es), this run has {self.dist.world_size}; "
                "RNG streams restart (results will not match an uninterrupted run bitwise)",
                file=sys.stderr,
            )
        self.last_checkpoint = uri

    # -- masking noise -------------------------------------------------------------------------------
    def _probe_token_counts(self, batch: dict[str, Any]) -> tuple[int, int] | None:
        """Token counts ``(La, Lv)`` the model masks, from one forward of one item (RNG untouched)."""
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []), torch.no_grad():
            one = {k: v[:1] if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            out = self.model(one["audio"], one["image"])
        if out.mask_audio is None or out.mask_visual is None:
            return None
        return int(out.mask_audio.shape[1]), int(out.mask_visual.shape[1])

    def _step_noise(self, step: int, salt: int = 2) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.token_counts is None:
            return None
        la, lv = self.token_counts
        g = torch.Generator().manual_seed(derive_seed(self.seed, step, salt))
        return torch.rand(self.global_batch, la, generator=g), torch.rand(self.global_batch, lv, generator=g)

    # -- DDP ----------------------------------------------------------------------------------------
    def _unused_parameters(self, batch: dict[str, Any]) -> list[str]:
        """Trainable parameters that get no gradient from one local forward/backward (RNG and grads untouched)."""
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            with self._autocast():
                total, _, _ = self.train_step(batch)
            total.backward()
        unused = [n for n, p in self.train_step.named_parameters() if p.requires_grad and p.grad is None]
        self.optimizer.zero_grad(set_to_none=True)
        return unused

    def _wrap_ddp(self, batch: dict[str, Any]) -> None:
        from torch.nn.parallel import DistributedDataParallel as DDP

        unused = self._unused_parameters(batch)
        if unused and self.dist.is_rank_zero:
            shown = ", ".join(unused[:6]) + (" ..." if len(unused) > 6 else "")
            print(f"cavkit: note: {len(unused)} trainable parameter(s) get no gradient ({shown}); "
                  "DDP runs with find_unused_parameters", file=sys.stderr)
        self.module = DDP(self.train_step, device_ids=[self.device] if self.device.type == "cuda" else None,
                          find_unused_parameters=bool(unused))

    # -- one optimiser step --------------------------------------------------------------------------
    def _autocast(self):
        if self.cfg.precision == "fp32":
            return _no_op()
        return torch.autocast(self.device.type, dtype=_DTYPES[self.cfg.precision])

    def train_one_step(self, micro_batches: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Forward/backward over the micro-batches, check the losses, step the optimiser."""
        cfg = self.cfg
        accum = len(micro_batches)
        if cfg.masking_noise == "global" and not self._probed:
            self.token_counts = self._probe_token_counts(_to_device(micro_batches[0], self.device))
            self._probed = True
        if self.dist.is_distributed and self.module is self.train_step:
            self._wrap_ddp(_to_device(micro_batches[0], self.device))
        noise = self._step_noise(self.step) if cfg.masking_noise == "global" else None
        if cfg.sum_device_losses:
            loss_scale = float(self.dist.world_size)
        else:
            loss_scale = 1.0 / accum
        self.module.train()
        loss_sums = torch.zeros(len(self.labels), device=self.device)
        total_sum = torch.zeros((), device=self.device)
        log_sums: dict[str, torch.Tensor] = {}
        for micro, batch in enumerate(micro_batches):
            batch = _to_device(batch, self.device)
            na = nv = None
            if noise is not None:
                where = dict(micro=micro, rank=self.dist.rank, world_size=self.dist.world_size, batch_size=cfg.batch_size)
                na = batch_slice(noise[0], **where).to(self.device)
                nv = batch_slice(noise[1], **where).to(self.device)
            sync = micro == accum - 1 or not self.dist.is_distributed
            with (_no_op() if sync else self.module.no_sync()):
                self.train_step.keep_output = bool(cfg.image_every) and (self.step + 1) % cfg.image_every == 0
                with self._autocast():
                    total, losses, logs = self.module(batch, na, nv)
                self.scaler.scale(total * loss_scale).backward()
            loss_sums += losses.detach()
            total_sum += total.detach()
            for key, value in logs.items():
                log_sums[key] = log_sums.get(key, 0) + _scalar(value, self.device)
            if "skipped" in batch and isinstance(batch["skipped"], torch.Tensor):
                self._skipped += int(batch["skipped"].sum())
        if self.train_step.keep_output:
            self._image_output, self.train_step.kept_output = self.train_step.kept_output, None
        bad = ~torch.isfinite(loss_sums)
        if any_rank(bool(bad.any()) or not bool(torch.isfinite(total_sum)), self.dist):
            self.optimizer.zero_grad(set_to_none=True)
            self._raise_non_finite(loss_sums)
        grad_norm = None
        log_now = (self.step + 1) % cfg.log_every == 0
        if cfg.clip_grad is not None or log_now:
            self.scaler.unscale_(self.optimizer)
            max_norm = cfg.clip_grad if cfg.clip_grad is not None else float("inf")
            grad_norm = torch.nn.utils.clip_grad_norm_(self.trainable, max_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        out = {"loss": total_sum / accum, **{f"loss/{l}": loss_sums[i] / accum for i, l in enumerate(self.labels)}}
        out.update({k: v / accum for k, v in log_sums.items()})
        if grad_norm is not None:
            out["grad_norm"] = grad_norm.detach()
        return out

    def _raise_non_finite(self, loss_sums: torch.Tensor) -> None:
        values = all_reduce_mean(loss_sums, self.dist) if self.dist.is_distributed else loss_sums
        bad = [f"{label} ({values[i].item()})" for i, label in enumerate(self.labels) if not math.isfinite(values[i].item())]
        what = ", ".join(bad) if bad else "the weighted total"
        keep = self.last_checkpoint or "none was written yet"
        raise NonFiniteLossError(
            f"non-finite loss at step {self.step + 1} (epoch {self.epoch + 1}) from objective {what}; "
            f"the run stopped before updating the weights. Last good checkpoint: {keep}. "
            "Lower trainer.optimizer.lr, set trainer.clip_grad, or use bf16 instead of fp16, then resume with --resume latest."
        )

    # -- validation ------------------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean validation losses per objective (masking noise fixed by the seed; drop_last like upstream)."""
        if self.val_set is None:
            return {}
        bs = self.cfg.eval_batch_size or self.cfg.batch_size
        loader = eval_loader(self.val_set, batch_size=bs, rank=self.dist.rank, world_size=self.dist.world_size,
                             seed=self.seed, num_workers=self.cfg.num_workers, drop_last=True)
        self.module.eval()
        sums = torch.zeros(len(self.labels) + 1, device=self.device)
        count = 0
        for i, batch in enumerate(loader):
            batch = _to_device(batch, self.device)
            na = nv = None
            if self.token_counts is not None and self.cfg.masking_noise == "global":
                g = torch.Generator().manual_seed(derive_seed(self.seed, i * self.dist.world_size + self.dist.rank, 9))
                n = batch["audio"].shape[0]
                na = torch.rand(n, self.token_counts[0], generator=g).to(self.device)
                nv = torch.rand(n, self.token_counts[1], generator=g).to(self.device)
            with self._autocast():
                total, losses, _ = self.train_step(batch, na, nv)
            sums += torch.cat([total.detach().reshape(1), losses.detach()])
            count += 1
        sums = all_reduce_mean(sums / max(count, 1), self.dist)
        self.module.train()
        out = {"val/loss": float(sums[0])}
        out.update({f"val/loss/{l}": float(sums[i + 1]) for i, l in enumerate(self.labels)})
        return out

    # -- weight averaging ------------------------------------------------------------------------------
    def _accumulate_average(self, epoch_1based: int) -> None:
        wa = self.cfg.average_weights
        if wa is None or not (wa.start_epoch <= epoch_1based <= wa.end_epoch) or not self.dist.is_rank_zero:
            return
        state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        if self.averaging is None:
            self.averaging = {"sum": state, "count": 1}
        else:
            for key, value in state.items():
                if value.is_floating_point():
                    self.averaging["sum"][key] += value
                else:
                    self.averaging["sum"][key] = value
            self.averaging["count"] += 1

    def averaged_state(self) -> dict[str, torch.Tensor] | None:
        if not self.averaging:
            return None
        n = self.averaging["count"]
        return {k: (v / n if v.is_floating_point() else v) for k, v in self.averaging["sum"].items()}

    # -- reconstruction images ----------------------------------------------------------------------------
    def _log_images(self) -> None:
        output, self._image_output = self._image_output, None
        reconstruct = getattr(self.model, "reconstruct", None)
        if output is None or output.pred_audio is None or reconstruct is None:
            return
        try:
            audio, image = reconstruct(output)
        except Exception:  # a model whose predictions are not pictures
            return

        def picture(x: torch.Tensor) -> torch.Tensor:
            x = x[0].float()
            x = (x - x.min()) / (x.max() - x.min() + 1e-8)
            return x.permute(1, 2, 0).flip(0) if x.shape[0] == 1 else x.permute(1, 2, 0)

        self.logger.image(self.step, "recon/audio", picture(audio).cpu().numpy())
        self.logger.image(self.step, "recon/image", picture(image).cpu().numpy())

    # -- the loop ----------------------------------------------------------------------------------------
    def _log_scalars(self, window: dict[str, torch.Tensor], count: int, elapsed: float, samples: int) -> dict[str, float]:
        keys = sorted(window)
        stacked = torch.stack([window[k] / count for k in keys]) if keys else torch.zeros(0, device=self.device)
        stacked = all_reduce_mean(stacked, self.dist)
        values = {f"train/{k}": float(v) for k, v in zip(keys, stacked.tolist())}
        for group in self.optimizer.param_groups:
            values[f"train/lr/{group.get('name', 'base')}"] = group["lr"]
        values["train/samples_per_s"] = samples / max(elapsed, 1e-9)
        values["train/samples_seen"] = self.samples_seen
        values["train/epoch"] = self.epoch + self.step_in_epoch / self.steps_per_epoch
        self.logger.scalars(self.step, values)
        return values

    def fit(self, resume: str | None = None) -> dict[str, Any]:
        """Train to the end of the recipe (or ``max_steps``); returns a summary dict."""
        if resume is not None:
            self.resume(ckpt.resolve_resume(resume, self.run_dir))
        if self.dist.is_rank_zero:
            self.logger = RunLogger(self.run_dir, tensorboard=self.recipe.run.tensorboard)
            self.logger.write_start(
                recipe_yaml=self.recipe_yaml(), versions=self.versions, world_size=self.dist.world_size,
                device=str(self.device), resumed_from=self.last_checkpoint if resume else None, argv=self.argv,
            )
        cfg = self.cfg
        from tqdm import tqdm

        bar = tqdm(total=self.total_steps, initial=self.step, disable=not (self.dist.is_rank_zero and cfg.progress_bar),
                   dynamic_ncols=True, unit="step", file=sys.stderr)
        window: dict[str, torch.Tensor] = {}
        window_count = 0
        window_samples = 0
        window_start = time.perf_counter()
        self._skipped = 0
        run_every = self.recipe.run.checkpoint_every_steps
        try:
            while self.step < self.total_steps:
                if self.iterable:
                    iterator = self._stream()
                else:
                    loader = train_loader(
                        self.train_set, plan=self.plan, epoch=self.epoch, start_step=self.step_in_epoch,
                        rank=self.dist.rank, world_size=self.dist.world_size, batch_size=cfg.batch_size,
                        grad_accum=cfg.grad_accum, num_workers=cfg.num_workers, pin_memory=self.device.type == "cuda",
                    )
                    iterator = iter(loader)
                while self.step_in_epoch < self.steps_per_epoch and self.step < self.total_steps:
                    micro = [next(iterator) for _ in range(cfg.grad_accum)]
                    logs = self.train_one_step(micro)
                    self.step += 1
                    self.step_in_epoch += 1
                    self.samples_seen += self.global_batch
                    window_samples += self.global_batch
                    grad_norm = logs.pop("grad_norm", None)
                    for key, value in logs.items():
                        window[key] = window.get(key, 0) + value.detach().float()
                    window_count += 1
                    if self.step % cfg.log_every == 0:
                        if grad_norm is not None:
                            window["grad_norm"] = grad_norm * window_count  # logged as the latest value
                        values = self._log_scalars(window, window_count, time.perf_counter() - window_start, window_samples)
                        bar.set_postfix(loss=f"{values.get('train/loss', float('nan')):.4f}", refresh=False)
                        window, window_count, window_samples = {}, 0, 0
                        window_start = time.perf_counter()
                    if cfg.image_every and self.step % cfg.image_every == 0 and self.dist.is_rank_zero:
                        self._log_images()
                    bar.update(1)
                    epoch_done = self.step_in_epoch == self.steps_per_epoch
                    if epoch_done:
                        self._end_epoch()
                    elif run_every and self.step % run_every == 0 and self.step < self.total_steps:
                        self.save_checkpoint()
                    for callback in self.on_step_end:
                        callback(self)
                    if epoch_done:
                        break
                del iterator
            if self.step_in_epoch != 0:  # stopped mid-epoch by max_steps
                self.save_checkpoint()
            self._finish()
        finally:
            bar.close()
            self.logger.close()
        return self.result

    def _stream(self):
        """Batches of a streaming training set for this epoch, skipping those consumed before a resume.

        The set splits its shards by rank and worker; a rank whose share runs out starts it again, so
        every rank takes ``steps_per_epoch`` steps. The order after a mid-epoch resume is the same, but
        per-item augmentation randomness is only reproducible for map-style sets.
        """
        skip = self.step_in_epoch * self.cfg.grad_accum
        rounds = 0
        while True:
            set_epoch = getattr(self.train_set, "set_epoch", None)
            if set_epoch is not None:
                set_epoch(self.epoch + 1_000_003 * rounds)
            loader = train_loader(
                self.train_set, plan=None, epoch=self.epoch, start_step=0, rank=self.dist.rank,
                world_size=self.dist.world_size, batch_size=self.cfg.batch_size, grad_accum=self.cfg.grad_accum,
                num_workers=self.cfg.num_workers, pin_memory=self.device.type == "cuda",
            )
            produced = False
            for batch in loader:
                produced = True
                if skip:
                    skip -= 1
                    continue
                yield batch
            if not produced:
                raise UsageError("the streaming training set yielded no full batch on this rank; lower trainer.batch_size")
            rounds += 1

    def _end_epoch(self) -> None:
        epoch_1based = self.epoch + 1
        record: dict[str, Any] = {"epoch": epoch_1based}
        skipped = torch.tensor([float(self._skipped)], device=self.device)
        if self.dist.is_distributed:
            torch.distributed.all_reduce(skipped)
        record["skipped_clips"] = int(skipped.item())
        self._skipped = 0
        if self.cfg.eval_every_epochs and epoch_1based % self.cfg.eval_every_epochs == 0:
            record.update(self.validate())
        self._accumulate_average(epoch_1based)
        self.epoch += 1
        self.step_in_epoch = 0
        self.logger.record("epoch", self.step, record)
        if self.dist.is_rank_zero:
            line = ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items())
            print(f"cavkit: {line}", file=sys.stderr)
        last = self.step >= self.total_steps
        if last or epoch_1based % self.recipe.run.checkpoint_every_epochs == 0:
            self.save_checkpoint()

    def _finish(self) -> None:
        """Final weights (and averaged weights), then the end-of-training evaluation."""
        if self.dist.is_rank_zero:
            meta = {"step": str(self.step), "recipe": self.recipe_yaml()}
            final = ckpt.join(self.run_dir, "weights", "final.safetensors")
            ckpt.save_weights(self.model.state_dict(), final, meta)
            self.result["final_weights"] = final
            averaged = self.averaged_state()
            if averaged is not None:
                uri = ckpt.join(self.run_dir, "weights", "averaged.safetensors")
                ckpt.save_weights(averaged, uri, {**meta, "averaged_epochs": str(self.averaging["count"])})
                self.result["averaged_weights"] = uri
        self.result.update(step=self.step, epoch=self.epoch, last_checkpoint=self.last_checkpoint)
        if self.recipe.data.eval is not None and self.recipe.retrieval is not None:
            metrics = self.evaluate_retrieval()
            self.result["retrieval"] = metrics
        barrier(self.dist)

    def evaluate_retrieval(self) -> dict[str, float]:
        """Retrieval R@1/5/10 on ``data.eval`` with the recipe's strategy (rank 0; logged and printed)."""
        from cavkit.engine.evaluate import retrieval_metrics

        metrics: dict[str, float] = {}
        if self.dist.is_rank_zero:
            metrics = retrieval_metrics(self.model, self.recipe, device=self.device,
                                        batch_size=self.cfg.eval_batch_size or self.cfg.batch_size)
            self.logger.record("eval", self.step, metrics)
            print(format_retrieval(metrics, self.recipe.retrieval.type), file=sys.stderr)
        return metrics
