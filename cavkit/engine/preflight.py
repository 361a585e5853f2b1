"""Preflight: everything a training run needs, checked before the first step, reported all at once.

``cavkit train`` runs :func:`check_run_inputs` before it builds anything; ``cavkit recipe check
--inputs quick|full`` runs the same checks without training. Every problem found becomes one line
with the setting it comes from and its fix, in a single :class:`PreflightError` (exit 2):

* datafiles, label CSVs and weights files that are missing or unreadable;
* clips of a datafile whose audio or frame files are missing on disk: by default a handful of clips
  spread over the file are probed (``quick``); ``full`` probes every clip (existence only; use
  ``cavkit data check`` to decode them);
* initialisation checkpoints (``trainer.init``): missing files, unknown
  ``weights:`` names, published weights that are not in the cache and have no download URL, any
  download while ``CAVKIT_OFFLINE`` is set, unknown ``timm:`` models;
* a ``--resume`` checkpoint that does not exist;
* a ``--device`` that cannot be used here (:func:`cavkit.devices.resolve_device`, the rule training
  uses), then the precision against the device (fp16 needs CUDA; bf16 needs a GPU that supports it);
* a per-device batch larger than the training data;
* a classifier's ``model.num_classes`` that disagrees with a label file (:mod:`cavkit.engine.label_count`);
* a run directory that already holds a run (finished, or unfinished without ``--resume``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import attrs

from cavkit.errors import UsageError

QUICK_SAMPLE = 8
#: what an unreachable or unknown store raises (no network, unknown protocol, backend not installed)
_FS_ERRORS = (OSError, ValueError, ImportError)


@attrs.frozen
class Finding:
    """One thing the run cannot start without: where it is set, what is wrong, how to fix it."""

    where: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        return text + (f"\n      fix: {self.fix}" if self.fix else "")


class PreflightError(UsageError):
    """Every problem found before training, in one message."""

    def __init__(self, source: str, findings: list[Finding]):
        self.findings = list(findings)
        count = len(self.findings)
        lines = [f"{source}: {count} problem{'' if count == 1 else 's'} before training (nothing was started):"]
        lines += [f"  - {f}" for f in self.findings]
        super().__init__("\n".join(lines))


# -- files ------------------------------------------------------------------------------------------
def _exists(uri: str) -> bool:
    from cavkit.data import storage

    try:
        return storage.exists(uri)
    except _FS_ERRORS:  # an unreachable store counts as missing; the message names the URI
        return False


def _prepare_fix(role: str, config: Any, inputs: Any) -> str:
    """How to make the datafile: ``--model`` from the model's input declaration
    (:class:`~cavkit.models.inputs.InputSpec`, else the dataset's declared ``layout``), plus ``--frames``
    and ``--image-size`` where the dataset config asks for other than that model's defaults."""
    if inputs is not None:
        segments = inputs.frame_segments
    else:
        segments = getattr(config, "layout", None) == "sync"
    model, frames = ("cav_mae_sync", 16) if segments else ("cav_mae", 10)
    shape = f"--model {model}"
    num_frames = getattr(config, "num_frames", None)
    if num_frames and num_frames != frames:
        shape += f" --frames {num_frames}"
    image_size = getattr(config, "image_size", None)
    if image_size and image_size != 224:
        shape += f" --image-size {image_size}"
    return (
        f"prepare the clips with `cavkit prepare VIDEOS --out DIR {shape} --labels LABELS.csv`, then "
        f"point data.{role}.datafile at DIR/datafile.json"
    )


def _model_inputs(recipe: Any) -> Any:
    """The recipe model's input declaration, ``None`` when it cannot be told without building it."""
    from cavkit.models.inputs import derive_input_spec

    try:
        return derive_input_spec(recipe.model)
    except (AttributeError, TypeError, ValueError):
        return None


def _sample(count: int) -> list[int]:
    """``QUICK_SAMPLE`` indices spread evenly over ``count`` entries, plus the last one."""
    step = max(count // QUICK_SAMPLE, 1)
    chosen = list(range(0, count, step))[:QUICK_SAMPLE]
    return chosen if chosen[-1] == count - 1 else [*chosen, count - 1]


def _check_clips(where: str, uri: str, entries: list, base: str, num_frames: int, full: bool) -> list[Finding]:
    """Probe the audio and frame files of a sample of the datafile's entries (all of them when ``full``).

    Only the probed entries become :class:`Clip` objects: building millions of them costs more than
    reading the JSON.
    """
    from cavkit.data.datafile import clip_from_entry

    if not entries:
        return [Finding(where, "the datafile lists no clips", "prepare data with `cavkit prepare`")]
    indices = range(len(entries)) if full else _sample(len(entries))
    chosen = [clip_from_entry(entries[i], base, i, uri) for i in indices]

    def missing(clip) -> list[str]:
        uris = [clip.wav] + [clip.frame_uri(i) for i in range(num_frames)]
        return [u for u in uris if not _exists(u)]

    with ThreadPoolExecutor(max_workers=min(16, len(chosen))) as pool:
        results = list(pool.map(missing, chosen))
    bad = [(clip, gone) for clip, gone in zip(chosen, results) if gone]
    if not bad:
        return []
    first = "; ".join(
        f"{clip.video_id}: {gone[0]}" + (f" (+{len(gone) - 1} more files)" if len(gone) > 1 else "")
        for clip, gone in bad[:3]
    )
    scope = f"of all {len(entries)} clips" if full else f"of {len(chosen)} sampled clips (of {len(entries)})"
    return [
        Finding(
            where,
            f"{len(bad)} {scope} have missing audio or frame files, e.g. {first}",
            "re-run `cavkit prepare` for those clips (it skips the prepared ones), or check the paths in the datafile"
            + ("" if full else "; `cavkit recipe check --inputs full` counts every missing clip"),
        )
    ]


def _read_label_csv(uri: str, label_tables: dict[str, Any]) -> Any:
    """The label CSV at ``uri`` read once per preflight: its :class:`~cavkit.data.datafile.LabelMap`,
    or the error that stopped reading it, kept in ``label_tables`` for the other roles and the
    class-count check (:func:`cavkit.engine.label_count.label_count_findings`)."""
    from cavkit.data.datafile import load_label_csv
    from cavkit.errors import DataError

    if uri not in label_tables:
        try:
            label_tables[uri] = load_label_csv(uri)
        except (DataError, OSError, ValueError) as exc:
            label_tables[uri] = exc
    return label_tables[uri]


def _check_dataset(
    role: str, node: Any, full: bool, inputs: Any = None, label_tables: dict[str, Any] | None = None
) -> tuple[list[Finding], int | None]:
    """Files of one ``data.<role>`` node; returns findings and its clip count (``None`` if unknown).

    :param inputs: the model's :class:`~cavkit.models.inputs.InputSpec` (for the ``prepare`` fix).
    :param label_tables: label CSVs already read, by URI (see :func:`_read_label_csv`); filled here.
    """
    from cavkit.data.datafile import read_datafile_entries
    from cavkit.errors import DataError

    config = node.config
    findings: list[Finding] = []
    count = None
    weights_file = getattr(config, "weights_file", None)
    if weights_file and not _exists(weights_file):
        findings.append(
            Finding(
                f"data.{role}.weights_file",
                f"{weights_file} does not exist",
                "remove the setting to compute the weights from the labels",
            )
        )
    datafile = getattr(config, "datafile", None)
    if datafile:
        if not _exists(datafile):
            findings.append(
                Finding(f"data.{role}.datafile", f"{datafile} does not exist", _prepare_fix(role, config, inputs))
            )
        else:
            try:
                entries, base = read_datafile_entries(datafile, limit=getattr(config, "limit", None))
                count = len(entries)
                frames = int(getattr(config, "num_frames", 1) or 1)
                findings += _check_clips(f"data.{role}.datafile {datafile}", datafile, entries, base, frames, full)
            except (DataError, OSError) as exc:
                findings.append(
                    Finding(f"data.{role}.datafile", f"unreadable: {exc}", _prepare_fix(role, config, inputs))
                )
    label_csv = getattr(config, "label_csv", None)
    if label_csv:
        if not _exists(label_csv):
            findings.append(
                Finding(
                    f"data.{role}.label_csv",
                    f"{label_csv} does not exist",
                    "give the label CSV (index,mid,display_name) of the dataset; `cavkit prepare "
                    "--labels ...` writes one as DIR/labels.csv",
                )
            )
        else:
            table = _read_label_csv(label_csv, {} if label_tables is None else label_tables)
            if isinstance(table, Exception):
                findings.append(
                    Finding(
                        f"data.{role}.label_csv",
                        f"unreadable: {table}",
                        "expected a CSV with columns index,mid,display_name",
                    )
                )
    for pattern in getattr(config, "urls", None) or []:
        if not _matches(pattern):
            findings.append(
                Finding(
                    f"data.{role}.urls",
                    f"no shard matches {pattern}",
                    "write shards with `cavkit prepare ... --shards N` or fix the pattern",
                )
            )
    return findings, count


def _matches(pattern: str) -> bool:
    import fsspec

    if "{" in pattern:  # brace ranges are expanded by the dataset; probe the folder instead
        return _exists(pattern.rsplit("/", 1)[0] or ".")
    try:
        fs, path = fsspec.core.url_to_fs(pattern)
        return bool(fs.glob(path)) if any(c in path for c in "*?[") else fs.exists(path)
    except _FS_ERRORS:
        return False


# -- checkpoints ------------------------------------------------------------------------------------
def _check_init(where: str, uri: str, host: Any) -> list[Finding]:
    from cavkit.weights.availability import checkpoint_problems

    return [Finding(where, message, fix) for message, fix in checkpoint_problems(uri, exists=_exists, host=host)]


def _init_settings(recipe: Any) -> Iterable[tuple[str, str]]:
    trainer_init = getattr(recipe.trainer, "init", None)
    if trainer_init:
        yield "trainer.init", trainer_init


# -- devices, batches, run directory -----------------------------------------------------------------
def _check_precision(precision: str, device: str) -> list[Finding]:
    """The device (resolved by :func:`cavkit.devices.resolve_device`, the rule training uses), then
    the precision against it; a device that cannot be used is the one finding."""
    import torch

    from cavkit.devices import resolve_device

    try:
        cuda = resolve_device(device).type == "cuda"
    except UsageError as exc:  # its message names the option, the device and the fix
        return [Finding("", str(exc))]
    if precision == "fp16" and not cuda:
        return [
            Finding(
                "trainer.precision",
                "fp16 needs a CUDA device and this run would use the CPU",
                "--set trainer.precision=bf16 (or fp32) to train on the CPU, or run on a GPU machine",
            )
        ]
    if precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        return [Finding("trainer.precision", "bf16 is not supported by this GPU", "--set trainer.precision=fp16")]
    return []


def _check_run_dir(run_dir: str, resume: str | None, overwrite: bool) -> list[Finding]:
    from cavkit.engine.checkpoint import latest_checkpoint
    from cavkit.io import join

    if overwrite:
        return []
    if resume is not None and resume != "latest" and not _exists(resume):
        return [
            Finding(
                "--resume",
                f"checkpoint {resume} does not exist",
                "--resume latest continues the run directory's newest checkpoint",
            )
        ]
    if resume is None:
        from cavkit.engine.ownership import existing_run_entries

        try:
            found = existing_run_entries(run_dir)
        except _FS_ERRORS:
            found = []
        if found:
            finished = join(run_dir, "weights", "final.safetensors")
            state = "a finished run" if _exists(finished) else "a run"
            return [
                Finding(
                    "run directory",
                    f"{run_dir} already holds {state} ({', '.join(found)})",
                    "continue it with --resume latest (e.g. with a larger trainer.epochs), start afresh with "
                    "--overwrite (deletes that run's files), or train into another --run-dir",
                )
            ]
    if resume == "latest":
        try:
            latest = latest_checkpoint(run_dir)
        except _FS_ERRORS:
            latest = None
        if latest is None:
            return [
                Finding(
                    "--resume",
                    f"latest: no checkpoint in {run_dir}/checkpoints",
                    "start without --resume, or pass a checkpoint path",
                )
            ]
    return []


def run_findings(
    recipe: Any,
    *,
    run_dir: str,
    resume: str | None = None,
    device: str = "auto",
    world_size: int | None = None,
    inputs: str = "quick",
    overwrite: bool = False,
    host: Any = None,
) -> list[Finding]:
    """Every problem that would stop (or spoil) a training run of ``recipe``; see the module docstring.

    :param inputs: ``quick`` (probe a few clips per datafile) or ``full`` (every clip).
    :param world_size: devices in the run (default: ``WORLD_SIZE`` from torchrun, else 1).
    :param host: the plugin host the recipe was validated against; it names ``weights:`` entries
        (without one, a ``weights:NAME`` init is reported as a problem).
    """
    if inputs not in ("quick", "full"):
        raise UsageError(f"--inputs must be quick or full, got {inputs!r}")
    findings: list[Finding] = []
    train_count = None
    model_inputs = _model_inputs(recipe)
    label_tables: dict[str, Any] = {}  # every label CSV is read once, here, and reused below
    for role in ("train", "val", "eval"):
        node = getattr(recipe.data, role)
        if node is not None:
            found, count = _check_dataset(role, node, inputs == "full", model_inputs, label_tables)
            findings += found
            if role == "train":
                train_count = count
    from cavkit.engine.label_count import label_count_findings

    findings += label_count_findings(recipe, label_tables)
    for where, uri in _init_settings(recipe):
        if resume is None:  # a resumed run loads its own weights
            findings += _check_init(where, uri, host)
    findings += _check_precision(recipe.trainer.precision, device)
    world = world_size or int(os.environ.get("WORLD_SIZE", "1") or 1)
    per_step = recipe.trainer.batch_size * world
    if train_count is not None and train_count < per_step:
        findings.append(
            Finding(
                "trainer.batch_size",
                f"{recipe.trainer.batch_size} per device x {world} device(s) = {per_step} clips per step, but data.train "
                f"has {train_count} clips",
                f"--set trainer.batch_size={max(train_count // world, 1)} or use more data",
            )
        )
    findings += _check_run_dir(run_dir, resume, overwrite)
    return _merge(findings)


def _merge(findings: list[Finding]) -> list[Finding]:
    """One line for one problem: the same file missing for train and val is reported once, with both."""
    merged: dict[tuple[str, str], list[str]] = {}
    for f in findings:
        merged.setdefault((f.message, f.fix), []).append(f.where)
    return [Finding(", ".join(wheres), message, fix) for (message, fix), wheres in merged.items()]


def check_run_inputs(recipe: Any, *, source: str, **kwargs: Any) -> None:
    """Raise one :class:`PreflightError` listing every problem :func:`run_findings` finds."""
    findings = run_findings(recipe, **kwargs)
    if findings:
        raise PreflightError(source, findings)
