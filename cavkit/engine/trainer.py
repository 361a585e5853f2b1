"""The training loop behind ``cavkit train`` (spec §7): one CPU, one GPU, or many under torchrun.

:class:`Trainer` builds the recipe's model, weighted objectives and datasets, then runs optimiser
steps of ``grad_accum`` micro-batches with autocast, optional gradient clipping and a per-step
learning-rate schedule. The jobs around the loop live in their own modules:
:mod:`~cavkit.engine.train_step` (model + objectives as one module, autocast, DDP wrapping),
:mod:`~cavkit.engine.noise` (masking noise), :mod:`~cavkit.engine.data` (data order, streaming),
:mod:`~cavkit.engine.state` (checkpoint contents and resume), :mod:`~cavkit.engine.validation`,
:mod:`~cavkit.engine.averaging`, :mod:`~cavkit.engine.recon_images`, :mod:`~cavkit.engine.evaluate`.

Reproducibility contract (bitwise on CPU): the data order and every item's augmentation come from
``(seed, epoch, position)`` (:mod:`cavkit.engine.data`), the masking noise of a step from
``(seed, step)`` (``masking_noise: global``, :mod:`cavkit.engine.noise`), and a checkpoint stores
model, objectives, optimiser, scheduler, scaler, progress and every rank's RNG states. A run killed
at any point and resumed from its latest checkpoint ends with exactly the weights of an
uninterrupted run.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from cavkit.config import unstructure
from cavkit.engine import checkpoint as ckpt
from cavkit.engine.averaging import WeightAverager
from cavkit.engine.data import plan_training_data, seed_process, stream_batches, train_loader
from cavkit.engine.dist import DistInfo, all_reduce_mean, any_rank, barrier
from cavkit.engine.evaluate import report_retrieval
from cavkit.engine.finite import check_finite_weights, non_finite_loss
from cavkit.engine.interrupt import StopSignals, stopped_at_once, stopped_by_signal
from cavkit.engine.io_errors import disk_errors_as_messages, writing
from cavkit.engine.label_count import check_label_count
from cavkit.engine.noise import MaskingNoise
from cavkit.engine.optim import build_optimizer, build_scheduler
from cavkit.engine.ownership import RunLock, claim_run_dir
from cavkit.engine.recon_images import log_reconstructions
from cavkit.engine.resume_settings import apply_hyperparameters, fresh_hyperparameters, review_changes
from cavkit.engine.run_dir import NullLogger, RunLogger
from cavkit.engine.scalars import ScalarWindow
from cavkit.engine.state import (
    Progress,
    RunFacts,
    TrainingParts,
    progress_attribute,
    restore_training_state,
    training_state,
)
from cavkit.engine.train_step import autocast, build_train_step, scalar, to_device, wrap_ddp
from cavkit.engine.validation import validation_losses
from cavkit.errors import UsageError
from cavkit.models.inputs import input_metadata
from cavkit.models.maskers import announce_training_step


class Trainer:
    """Trains one recipe: ``Trainer(recipe, run_dir=..., dist=...).fit(resume=None | "latest" | uri)``.

    :param recipe: a validated :class:`cavkit.recipe.schema.Recipe`.
    :param run_dir: the run directory URI (``{recipe}`` already filled in).
    :param dist: this process's place in the process group.
    :param versions: ``{distribution: version}`` of cavkit and the plugins, for the manifest.
    :param on_step_end: callables ``f(trainer)`` run after every optimiser step (and its checkpoint).

    The data order (``trainer.plan``, a :class:`~cavkit.engine.data.GlobalBatchPlan`) and the
    masking noise (``trainer.noise``, a :class:`~cavkit.engine.noise.MaskingNoise`) may be replaced
    before :meth:`fit` to replay another run's order and masks.
    """

    step, epoch = progress_attribute("step"), progress_attribute("epoch")
    step_in_epoch, samples_seen = progress_attribute("step_in_epoch"), progress_attribute("samples_seen")

    def __init__(self, recipe: Any, *, run_dir: str, dist: DistInfo, versions: dict[str, str] | None = None,
                 on_step_end: list[Callable[[Trainer], None]] | None = None, argv: list[str] | None = None,
                 host: Any = None):
        self.recipe, self.host = recipe, host  # host: resolves weights:NAME in trainer.init (None: this process's)
        self.cfg = cfg = recipe.trainer
        self.run_dir = run_dir
        self.dist = dist
        from cavkit import __version__

        self.versions = {"cavkit": __version__, **(versions or {})}
        self.on_step_end = list(on_step_end or [])
        self.argv = list(argv if argv is not None else sys.argv)
        self.device = dist.device
        if cfg.precision == "fp16" and self.device.type != "cuda":
            raise UsageError("trainer.precision fp16 needs a CUDA device; use bf16 (or fp32) on CPU")
        if cfg.cpu_threads is not None and self.device.type == "cpu":
            torch.set_num_threads(cfg.cpu_threads)
        self.seed = recipe.seed
        seed_process(self.seed, dist.rank)
        self._build_parts()
        self._plan_data()
        named = list(self.model.named_parameters())
        named += [(f"objectives.{n}", p) for n, p in self.train_step.objectives.named_parameters()]
        self.optimizer = build_optimizer(named, cfg.optimizer)
        self.scheduler = build_scheduler(self.optimizer, cfg.schedule, total_steps=self.total_steps,
                                         steps_per_epoch=self.steps_per_epoch, base_lr=cfg.optimizer.lr)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.precision == "fp16")
        self.trainable = [p for p in self.train_step.parameters() if p.requires_grad]
        self.module: nn.Module = self.train_step  # wrapped in DDP at the first step
        self.noise = MaskingNoise(self.seed, self.global_batch)
        self.averager = WeightAverager.from_config(cfg.average_weights, enabled=dist.is_rank_zero)
        self.progress = Progress()
        self._skipped = 0
        self._image_output: Any = None
        self.last_checkpoint: str | None = None
        self._checkpoint_step: int | None = None
        self.logger: RunLogger | NullLogger = NullLogger()
        self.result: dict[str, Any] = {}

    def _build_parts(self) -> None:
        """Model and objectives (one :class:`TrainStep`), then the datasets."""
        recipe = self.recipe
        if recipe.data.train is None:
            raise UsageError("the recipe has no data.train dataset; add one to train")
        self.train_step = build_train_step(recipe, self.device, report=self.dist.is_rank_zero, host=self.host)
        self.model: nn.Module = self.train_step.model
        self.labels = self.train_step.labels
        self.train_set = recipe.data.train.build()
        self.val_set = recipe.data.val.build() if recipe.data.val is not None else None
        check_label_count(recipe, {"train": self.train_set, "val": self.val_set})

    def _plan_data(self) -> None:
        """Global batch, data order (map-style sets) and the step counts per epoch and in all."""
        plan = plan_training_data(self.train_set, self.cfg, world_size=self.dist.world_size, seed=self.seed)
        self.global_batch, self.iterable, self.plan = plan.global_batch, plan.iterable, plan.order
        self.steps_per_epoch, self.total_steps = plan.steps_per_epoch, plan.total_steps

    def recipe_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(unstructure(self.recipe), sort_keys=False)

    # -- checkpoints -------------------------------------------------------------------------------
    def parts(self) -> TrainingParts:
        return TrainingParts(self.model, self.train_step.objectives, self.optimizer, self.scheduler, self.scaler)

    def state(self, rng_states: list[dict[str, Any]]) -> dict[str, Any]:
        """The checkpoint dict of this moment (``rng_states``: one per rank)."""
        inputs = input_metadata(self.model, self.recipe.model).get("inputs")  # the model's declared inputs
        facts = RunFacts(self.recipe_yaml(), self.versions, self.dist.world_size, self.global_batch, inputs)
        return training_state(self.parts(), self.progress, rng=rng_states, averaging=self.averager.state, facts=facts)

    def save_checkpoint(self) -> str | None:
        """Write ``checkpoints/step-N.pt`` (rank 0) with every rank's RNG state; apply ``keep_last``.

        Weights that are no longer finite are not saved (:func:`check_finite_weights`), so the last
        checkpoint is always one to resume from.
        """
        check_finite_weights(self.model, self.step, self.last_checkpoint)
        rng = ckpt.capture_rng()
        if self.dist.is_distributed:
            gathered: list[Any] = [None] * self.dist.world_size
            torch.distributed.all_gather_object(gathered, rng)
        else:
            gathered = [rng]
        uri = ckpt.join(self.run_dir, ckpt.CHECKPOINT_DIR, ckpt.checkpoint_name(self.step))
        if self.dist.is_rank_zero:
            with writing(uri):
                ckpt.save_object(self.state(gathered), uri)
                ckpt.prune_checkpoints(self.run_dir, self.recipe.run.keep_last)
            self.logger.sync()
        barrier(self.dist)
        self.last_checkpoint, self._checkpoint_step = uri, self.step
        return uri if self.dist.is_rank_zero else None

    def resume(self, uri: str, *, allow_changed: bool = False) -> None:
        """Restore everything a checkpoint holds (on every rank); apply or refuse recipe changes.

        See :mod:`cavkit.engine.resume_settings` for what may change on resume.
        """
        state = ckpt.check_checkpoint(ckpt.load_object(uri), uri)
        changes = review_changes(state.get("recipe") or "", self.recipe_yaml(), uri=uri, allow_changed=allow_changed)
        fresh = fresh_hyperparameters(self.optimizer)
        self.progress, self.averager.state = restore_training_state(
            state, uri, self.parts(), global_batch=self.global_batch, dist=self.dist)
        if changes.resets_learning_rates:
            apply_hyperparameters(self.optimizer, self.scheduler, fresh)
        if self.dist.is_rank_zero:
            for line in changes.warnings(self.step):
                print(line, file=sys.stderr)
        self.last_checkpoint, self._checkpoint_step = uri, self.step

    # -- one optimiser step --------------------------------------------------------------------------
    def train_one_step(self, micro_batches: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Forward/backward over the micro-batches, check the losses, step the optimiser."""
        cfg, dist = self.cfg, self.dist
        accum = len(micro_batches)
        announce_training_step(self.model, seed=self.seed, step=self.step)  # per-step masking ratios
        first = to_device(micro_batches[0], self.device)  # copied once: probe, DDP wrap and micro-batch 0
        if cfg.masking_noise == "global":
            self.noise.probe(self.model, first, self.device)
        if dist.is_distributed and self.module is self.train_step:
            self.module = wrap_ddp(self.train_step, first, precision=cfg.precision, dist=dist)
        noise = self.noise.step_noise(self.step) if cfg.masking_noise == "global" else None
        loss_scale = float(dist.world_size) if cfg.sum_device_losses else 1.0 / accum
        self.module.train()
        loss_sums = torch.zeros(len(self.labels), device=self.device)
        total_sum = torch.zeros((), device=self.device)
        log_sums: dict[str, torch.Tensor] = {}
        for micro, batch in enumerate(micro_batches):
            batch = to_device(batch, self.device) if micro else first
            na = nv = None
            if noise is not None:
                na, nv = self.noise.for_micro_batch(noise, micro=micro, rank=dist.rank, world_size=dist.world_size,
                                                    batch_size=cfg.batch_size, device=self.device)
            sync = micro == accum - 1 or not dist.is_distributed
            with (self.module.no_sync() if not sync else contextlib.nullcontext()):
                self.train_step.keep_output = bool(cfg.image_every) and (self.step + 1) % cfg.image_every == 0
                with autocast(cfg.precision, self.device):
                    total, losses, logs = self.module(batch, na, nv)
                self.scaler.scale(total * loss_scale).backward()
            loss_sums += losses.detach()
            total_sum += total.detach()
            for key, value in logs.items():
                log_sums[key] = log_sums.get(key, 0) + scalar(value, self.device)
            if "skipped" in batch and isinstance(batch["skipped"], torch.Tensor):
                self._skipped += int(batch["skipped"].sum())
        if self.train_step.keep_output:
            self._image_output, self.train_step.kept_output = self.train_step.kept_output, None
        bad = ~torch.isfinite(loss_sums)
        if any_rank(bool(bad.any()) or not bool(torch.isfinite(total_sum)), dist):
            self.optimizer.zero_grad(set_to_none=True)
            values = all_reduce_mean(loss_sums, dist) if dist.is_distributed else loss_sums
            raise non_finite_loss(self.labels, values, step=self.step, epoch=self.epoch, last_checkpoint=self.last_checkpoint)
        grad_norm = None
        if cfg.clip_grad is not None or (self.step + 1) % cfg.log_every == 0:
            self.scaler.unscale_(self.optimizer)
            max_norm = cfg.clip_grad if cfg.clip_grad is not None else float("inf")
            grad_norm = torch.nn.utils.clip_grad_norm_(self.trainable, max_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        # logged as train/lr/<group>: the rates this step used, not the next step's (a per-epoch
        # MultiStepLR changes them after an epoch's last step, as upstream's result.csv shows)
        self.step_lrs = {f"train/lr/{g.get('name', 'base')}": g["lr"] for g in self.optimizer.param_groups}
        self.scheduler.step()
        out = {"loss": total_sum / accum, **{f"loss/{l}": loss_sums[i] / accum for i, l in enumerate(self.labels)}}
        out.update({k: v / accum for k, v in log_sums.items()})
        if grad_norm is not None:
            out["grad_norm"] = grad_norm.detach()
        return out

    def validate(self) -> dict[str, float]:
        """Mean validation losses per objective (see :mod:`cavkit.engine.validation`); ``{}`` without ``data.val``."""
        if self.val_set is None:
            return {}
        return validation_losses(self.train_step, self.module, self.val_set, self.cfg, seed=self.seed,
                                 noise=self.noise, dist=self.dist)

    # -- the loop ----------------------------------------------------------------------------------------
    def _batches(self):
        """This epoch's micro-batches for this rank, from ``step_in_epoch`` on."""
        cfg = self.cfg
        loader = {"rank": self.dist.rank, "world_size": self.dist.world_size, "batch_size": cfg.batch_size,
                  "grad_accum": cfg.grad_accum, "num_workers": cfg.num_workers, "pin_memory": self.device.type == "cuda"}
        if self.iterable:
            return stream_batches(self.train_set, epoch=self.epoch, skip=self.step_in_epoch * cfg.grad_accum, loader=loader)
        return iter(train_loader(self.train_set, plan=self.plan, epoch=self.epoch, start_step=self.step_in_epoch, **loader))

    def fit(self, resume: str | None = None, *, overwrite: bool = False, allow_changed: bool = False) -> dict[str, Any]:
        """Train to the end of the recipe (or ``max_steps``); returns a summary dict.

        :param resume: ``None`` (a fresh run), ``"latest"`` or a checkpoint URI.
        :param overwrite: a fresh run may replace a run already in the run directory.
        :param allow_changed: resume even when settings that define the run changed.

        SIGTERM or Ctrl-C stop the run after the current step with a checkpoint
        (:class:`~cavkit.engine.interrupt.RunInterrupted`); see :mod:`cavkit.engine.interrupt`.
        """
        lock = RunLock(self.run_dir)
        try:
            with disk_errors_as_messages(self.run_dir):
                claim_run_dir(self.run_dir, lock, self.dist, fresh=resume is None, overwrite=overwrite)
                if resume is not None:
                    self.resume(ckpt.resolve_resume(resume, self.run_dir), allow_changed=allow_changed)
                if self.dist.is_rank_zero:
                    self._start_logger(resumed=resume is not None)
                with StopSignals() as signals:
                    self._train(signals)
                self._finish()
        except KeyboardInterrupt:
            raise stopped_at_once(self.step, self.last_checkpoint, self.argv) from None
        finally:
            try:
                self.logger.close()
            finally:
                lock.release()
        return self.result

    def _start_logger(self, *, resumed: bool) -> None:
        self.logger = RunLogger(self.run_dir, tensorboard=self.recipe.run.tensorboard)
        if resumed:  # records after the checkpoint are logged again by this run
            self.logger.drop_records_after(self.step)
        self.logger.write_start(
            recipe_yaml=self.recipe_yaml(), versions=self.versions, world_size=self.dist.world_size,
            device=str(self.device), resumed_from=self.last_checkpoint if resumed else None, argv=self.argv,
        )

    def _train(self, signals: StopSignals) -> None:
        """The epochs and steps; checkpoints by the recipe's cadence and on a stop signal."""
        cfg = self.cfg
        from tqdm import tqdm

        bar = tqdm(total=self.total_steps, initial=self.step, disable=not (self.dist.is_rank_zero and cfg.progress_bar),
                   dynamic_ncols=True, unit="step", file=sys.stderr)
        window = ScalarWindow()
        self._skipped = 0
        run_every = self.recipe.run.checkpoint_every_steps
        try:
            while self.step < self.total_steps:
                iterator = self._batches()
                while self.step_in_epoch < self.steps_per_epoch and self.step < self.total_steps:
                    micro = [next(iterator) for _ in range(cfg.grad_accum)]
                    logs = self.train_one_step(micro)
                    self.step += 1
                    self.step_in_epoch += 1
                    self.samples_seen += self.global_batch
                    window.add(logs, self.global_batch)
                    if self.step % cfg.log_every == 0:
                        values = self._log_window(window)
                        bar.set_postfix(loss=f"{values.get('train/loss', float('nan')):.4f}", refresh=False)
                    if cfg.image_every and self.step % cfg.image_every == 0 and self.dist.is_rank_zero:
                        output, self._image_output = self._image_output, None
                        log_reconstructions(self.model, output, self.logger, self.step)
                    bar.update(1)
                    epoch_done = self.step_in_epoch == self.steps_per_epoch
                    if epoch_done:
                        self._end_epoch()
                    elif run_every and self.step % run_every == 0 and self.step < self.total_steps:
                        self.save_checkpoint()
                    for callback in self.on_step_end:
                        callback(self)
                    self._stop_if_signalled(signals)
                    if epoch_done:
                        break
                del iterator
            if self.step_in_epoch != 0 and self._checkpoint_step != self.step:  # stopped mid-epoch by max_steps
                self.save_checkpoint()
        finally:
            bar.close()

    def _stop_if_signalled(self, signals: StopSignals) -> None:
        """After a step: on SIGTERM/SIGINT (on any rank) save a checkpoint and raise :class:`RunInterrupted`."""
        received = signals.received
        if not any_rank(received is not None, self.dist):
            return
        signum = received or signal.SIGTERM
        if self._checkpoint_step != self.step:
            self.save_checkpoint()
        self.logger.sync()
        raise stopped_by_signal(signum, self.step, self.total_steps, self.last_checkpoint, self.argv)

    def _log_window(self, window: ScalarWindow) -> dict[str, float]:
        extra = {"train/samples_seen": self.samples_seen,
                 "train/epoch": self.epoch + self.step_in_epoch / self.steps_per_epoch}
        values = window.flush(dist=self.dist, lrs=self.step_lrs, extra=extra)
        self.logger.scalars(self.step, values)
        return values

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
        self.averager.add(self.model, epoch_1based)
        self.epoch += 1
        self.step_in_epoch = 0
        self.logger.record("epoch", self.step, record)
        news = record["skipped_clips"] or set(record) - {"epoch", "skipped_clips"}  # validation results
        if self.dist.is_rank_zero and news:  # a bare epoch count is the progress bar's
            from tqdm import tqdm

            line = ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items())
            tqdm.write(f"cavkit: {line}", file=sys.stderr)  # above the progress bar, not through it
        last = self.step >= self.total_steps
        if last or epoch_1based % self.recipe.run.checkpoint_every_epochs == 0:
            self.save_checkpoint()

    def _finish(self) -> None:
        """Final weights (and averaged weights), then the end-of-training evaluation."""
        if self.dist.is_rank_zero:
            inputs = input_metadata(self.model, self.recipe.model)  # the model's declared inputs
            meta = {"step": str(self.step), "recipe": self.recipe_yaml(), **inputs}
            check_finite_weights(self.model, self.step, self.last_checkpoint)
            self.result.update(ckpt.save_final_weights(self.run_dir, self.model.state_dict(), self.averager, meta))
        self.result.update(step=self.step, epoch=self.epoch, last_checkpoint=self.last_checkpoint)
        if self.recipe.data.eval is not None and self.recipe.retrieval is not None:  # rank 0 evaluates
            self.result["retrieval"] = report_retrieval(
                self.model, self.recipe, device=self.device, batch_size=self.cfg.eval_batch_size or self.cfg.batch_size,
                logger=self.logger, step=self.step) if self.dist.is_rank_zero else {}
        barrier(self.dist)
