"""Training checkpoints on any fsspec URI: atomic writes, ``keep_last``, ``latest``, RNG capture.

A checkpoint is one ``torch.save`` file ``<run>/checkpoints/step-<NNNNNNNN>.pt`` holding a dict::

    format: "cavkit.checkpoint", version: 1
    model: state_dict (unwrapped, no ``module.``)      objectives: state_dict (learnable temperatures, ...)
    optimizer / scheduler / scaler: state_dicts       progress: {step, epoch, step_in_epoch, samples_seen}
    rng: [per-rank {torch, cuda, numpy, python}]       averaging: {sum, count} or None
    recipe: resolved recipe (YAML text)               versions: {distribution: version}

Everything in it is plain tensors, numbers and strings, so it loads with ``weights_only=True``.

Writes are atomic: the bytes go to a hidden temporary name in the same folder, and only a complete
file is renamed to its final name, so a crash mid-write never leaves a file that looks valid.
"""

from __future__ import annotations

import io
import random
import re
from typing import Any

import fsspec
import numpy as np
import torch

from cavkit.errors import CheckpointError
from cavkit.io import join, write_bytes_atomic

FORMAT = "cavkit.checkpoint"
FORMAT_VERSION = 1
CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"step-(\d+)\.pt")


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}.pt"


def save_object(obj: Any, uri: str) -> None:
    """``torch.save`` ``obj`` atomically to ``uri``."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes_atomic(uri, buffer.getvalue())


def load_object(uri: str) -> Any:
    """``torch.load`` a checkpoint file with ``weights_only=True`` (CPU tensors)."""
    from cavkit.checkpoints.read import read_checkpoint_bytes

    data = read_checkpoint_bytes(uri)
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated or foreign file
        raise CheckpointError(f"{uri}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None


def list_checkpoints(run_dir: str) -> list[tuple[int, str]]:
    """``[(step, uri)]`` of the complete checkpoints in ``<run_dir>/checkpoints``, oldest first."""
    folder = join(run_dir, CHECKPOINT_DIR)
    fs, path = fsspec.core.url_to_fs(folder)
    if not fs.exists(path):
        return []
    found = []
    for entry in fs.ls(path, detail=False):
        name = entry.rstrip("/").rsplit("/", 1)[-1]
        match = _NAME.fullmatch(name)
        if match:
            found.append((int(match.group(1)), join(folder, name)))
    return sorted(found)


def latest_checkpoint(run_dir: str) -> str | None:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def prune_checkpoints(run_dir: str, keep_last: int) -> list[str]:
    """Delete all but the newest ``keep_last`` checkpoints; return the deleted URIs."""
    found = list_checkpoints(run_dir)
    deleted = []
    for _, uri in found[: max(len(found) - keep_last, 0)]:
        fs, path = fsspec.core.url_to_fs(uri)
        fs.rm(path)
        deleted.append(uri)
    return deleted


def resolve_resume(resume: str, run_dir: str) -> str:
    """``latest`` -> the newest checkpoint of ``run_dir``; anything else is a checkpoint URI."""
    if resume == "latest":
        uri = latest_checkpoint(run_dir)
        if uri is None:
            raise CheckpointError(
                f"--resume latest: no checkpoint in {join(run_dir, CHECKPOINT_DIR)}; "
                "start without --resume or pass a checkpoint path"
            )
        return uri
    return resume


def check_checkpoint(state: Any, uri: str) -> dict[str, Any]:
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{uri}: not a cavkit training checkpoint (no '{FORMAT}' marker)")
    if state.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"{uri}: checkpoint format version {state.get('version')} is not supported")
    return state


# -- RNG state as plain tensors and numbers (weights_only-safe) --------------------------------------
def capture_rng() -> dict[str, Any]:
    """This process's torch, CUDA, numpy and python RNG states."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]},
    }


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    npst = state["numpy"]
    np.random.set_state(("MT19937", npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"], npst["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))


def model_state_from_file(uri: str) -> dict[str, torch.Tensor]:
    """The model weights of a cavkit checkpoint (``.pt``) or a weights file (``.safetensors``)."""
    if uri.endswith(".safetensors"):
        from cavkit.safetensors_io import SafetensorsFileError, read_safetensors

        try:
            return read_safetensors(uri)[0]
        except FileNotFoundError:
            raise CheckpointError(f"{uri}: weights file not found") from None
        except SafetensorsFileError as exc:
            raise CheckpointError(f"{uri}: truncated or corrupt safetensors file ({exc})") from None
    state = check_checkpoint(load_object(uri), uri)
    return state["model"]


def save_weights(state_dict: dict[str, torch.Tensor], uri: str, metadata: dict[str, str] | None = None) -> None:
    """Write a model state dict as safetensors, atomically."""
    from cavkit.safetensors_io import safetensors_bytes

    write_bytes_atomic(uri, safetensors_bytes(state_dict, metadata))


def save_final_weights(run_dir: str, state_dict: dict[str, torch.Tensor], averager: Any, metadata: dict[str, str]) -> dict[str, str]:
    """``weights/final.safetensors`` and, when ``averager`` holds epochs, ``weights/averaged.safetensors``.

    Returns ``{"final_weights": uri[, "averaged_weights": uri]}``; write errors name the file.
    """
    from cavkit.engine.io_errors import writing

    final = join(run_dir, "weights", "final.safetensors")
    with writing(final):
        save_weights(state_dict, final, metadata)
    written = {"final_weights": final}
    averaged = averager.averaged()
    if averaged is not None:
        uri = join(run_dir, "weights", "averaged.safetensors")
        with writing(uri):
            save_weights(averaged, uri, {**metadata, "averaged_epochs": str(averager.count)})
        written["averaged_weights"] = uri
    return written
