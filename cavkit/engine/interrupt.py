"""Stopping a run cleanly on SIGTERM (cluster preemption) and Ctrl-C (SIGINT).

While :class:`StopSignals` is installed (the trainer installs it for :meth:`Trainer.fit`), the
first SIGTERM or SIGINT only sets a flag. The trainer looks at it after every optimiser step: it
then writes a checkpoint of that step (unless one was just written), flushes the metrics and
raises :class:`RunInterrupted` (exit status ``128 + signal``: 143 for SIGTERM, 130 for Ctrl-C)
with the command that resumes the run. A second Ctrl-C raises ``KeyboardInterrupt`` at once,
without a checkpoint (the last one stays the resume point).

DataLoader workers share the terminal's process group, so a Ctrl-C reaches them too, and a
scheduler may signal every process of a job. Workers ignore both signals
(:func:`ignore_stop_signals`, their ``worker_init_fn``): the main process decides, and it shuts
them down when it stops (a worker busy with an item finishes it first). Were a worker to die of the
signal instead, PyTorch would fail the main process at once, before any checkpoint. A worker forked
before that hook runs inherits the handler, which does nothing outside the process that installed it.
"""

from __future__ import annotations

import os
import shlex
import signal
import threading
from typing import Any, Self

from cavkit.errors import CavkitError

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class RunInterrupted(CavkitError):
    """The run stopped on a signal; ``exit_code`` is ``128 + signal number`` (shell convention)."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


def ignore_stop_signals(_worker_id: int = 0) -> None:
    """``worker_init_fn`` of training DataLoaders: SIGINT and SIGTERM are the main process's business."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


class StopSignals:
    """Records the first SIGTERM/SIGINT instead of dying; a later SIGINT raises ``KeyboardInterrupt``.

    Use as a context manager around the training loop; handlers are installed only in the main
    thread (Python allows no other) and the previous ones are restored on exit.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}
        self._pid = os.getpid()

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            self._pid = os.getpid()
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, _frame: Any) -> None:
        if os.getpid() != self._pid:  # a forked DataLoader worker before its worker_init_fn
            return
        if self.received is not None:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        self.received = signum
        name = signal.Signals(signum).name
        again = " (Ctrl-C again to stop at once, without a checkpoint)" if signum == signal.SIGINT else ""
        # os.write: print() is not safe inside a signal handler that may interrupt another print
        os.write(2, f"\ncavkit: {name} received: stopping after this step with a checkpoint{again}\n".encode())


def resume_command(argv: list[str]) -> str:
    """The command line that resumes this run: ``cavkit train ...`` with ``--resume latest``.

    Drops ``--resume``/``--overwrite`` options of the original command; under torchrun the command
    is shown after ``torchrun <the same launcher options> -m``. For anything other than ``cavkit
    train`` (a script calling the trainer) it says to resume with ``--resume latest``.
    """
    args = list(argv[1:])
    if not args or args[0] != "train":
        return "the same command with --resume latest"
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg == "--resume":
            skip = True
            continue
        if arg.startswith("--resume=") or arg == "--overwrite":
            continue
        kept.append(arg)
    command = shlex.join(["cavkit", *kept, "--resume", "latest"])
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        return f"torchrun <the same launcher options> -m {command}"
    return command


def stopped_by_signal(signum: int, step: int, total_steps: int, checkpoint: str | None, argv: list[str]) -> RunInterrupted:
    """The error after a clean stop: which signal, where, the checkpoint, the resume command."""
    return RunInterrupted(
        f"{signal.Signals(signum).name}: stopped after step {step} of {total_steps}; checkpoint {checkpoint}; "
        f"resume with: {resume_command(argv)}",
        signum,
    )


def stopped_at_once(step: int, checkpoint: str | None, argv: list[str]) -> RunInterrupted:
    """The error after a second Ctrl-C: no new checkpoint; the last one is the resume point."""
    return RunInterrupted(
        f"stopped at once during step {step + 1} without a new checkpoint; the last checkpoint is "
        f"{checkpoint or 'none (nothing to resume)'}; resume with: {resume_command(argv)}",
        signal.SIGINT,
    )
