"""Reading checkpoint files of any supported kind into tensors and what is stored with them.

Supported files (any fsspec URI, ``weights:NAME`` or ``http(s)://``):

* official CAV-MAE / CAV-MAE Sync / fine-tuned ``.pth`` (``module.`` prefix optional, upstream key
  names);
* cavkit weights (``.safetensors`` in cavkit key layout) with the model recipe in the file's
  metadata (``recipe``) or in a sidecar ``<name>.yaml``;
* cavkit training checkpoints (``torch.save`` dicts with ``format: cavkit.checkpoint``, the model
  state and the resolved recipe).

Everything is read with ``torch.load(weights_only=True)`` or safetensors: nothing in a file can run
code. Missing, empty, truncated and foreign files are one :class:`CheckpointError` each.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import attrs
import torch

from cavkit.checkpoints import keys as K
from cavkit.checkpoints.build import plugin_host
from cavkit.checkpoints.infer import describe_keys
from cavkit.checkpoints.stored import is_training_checkpoint, model_node_from_recipe, recipe_text_of, stored_inputs
from cavkit.errors import CheckpointError
from cavkit.models.inputs import InputSpec
from cavkit.safetensors_io import SafetensorsFileError, looks_like_safetensors, read_metadata, read_safetensors
from cavkit.weights.entry import WEIGHTS_SCHEME

_CAVKIT_PARTS = ("audio_tokenizer.", "visual_tokenizer.", "encoder.", "decoder.", "head.")


@attrs.define
class CheckpointContents:
    """What a checkpoint file holds: tensors in cavkit or upstream layout, and the model node if stored."""

    uri: str
    state: dict[str, torch.Tensor]
    layout: str  # "cavkit" | "upstream"
    node: dict[str, Any] | None = None
    inputs: InputSpec | None = None  # the model's stored input declaration (cavkit files since 0.2)
    recipe: str | None = None  # the whole stored recipe text (objectives too, not only ``model:``)


def read_checkpoint_bytes(uri: str, *, host: Any = None) -> bytes:
    """The bytes of a checkpoint file; missing, directory and empty files are :class:`CheckpointError`.

    ``weights:NAME`` and ``http(s)://...[#sha256=<hex>]`` are fetched into the weights cache (or
    taken from it, verified, without network) first: see :mod:`cavkit.weights.resolve`.

    :param host: the plugin host whose registry names ``weights:`` entries (see
        :func:`~cavkit.checkpoints.build.plugin_host`).
    """
    import fsspec

    from cavkit.weights.resolve import resolve_checkpoint_uri

    uri = resolve_checkpoint_uri(uri, plugin_host(host) if uri.startswith(WEIGHTS_SCHEME) else None)
    try:
        with fsspec.open(uri, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise CheckpointError(f"{uri}: checkpoint file not found") from None
    except IsADirectoryError:
        raise CheckpointError(
            f"{uri}: is a directory, expected a checkpoint file (.pth, .pt or .safetensors)"
        ) from None
    if not data:
        raise CheckpointError(f"{uri}: the file is empty, expected a checkpoint")
    return data


def stored_recipe_text(uri: str, *, host: Any = None) -> str | None:
    """The resolved recipe a cavkit checkpoint carries (the whole recipe, not only ``model:``), or
    ``None`` (official ``.pth`` files carry none).

    :raises CheckpointError: as :func:`read_checkpoint`.
    """
    data = read_checkpoint_bytes(uri, host=host)
    if looks_like_safetensors(data):
        try:
            return recipe_text_of(uri, read_metadata(data))
        except SafetensorsFileError as exc:
            raise CheckpointError(f"{uri}: truncated or corrupt safetensors file ({exc})") from None
    return recipe_text_of(uri, None, _torch_load(uri, data))


def read_checkpoint(uri: str, *, host: Any = None) -> CheckpointContents:
    """Read any supported checkpoint file; see the module docstring.

    :param host: the plugin host whose registry names ``weights:`` entries (see
        :func:`~cavkit.checkpoints.build.plugin_host`).
    :raises CheckpointError: missing, empty, truncated or foreign files, with what was expected.
    """
    data = read_checkpoint_bytes(uri, host=host)
    if looks_like_safetensors(data):
        state, meta = _load_safetensors(uri, data)
        text, stored = recipe_text_of(uri, meta), meta
    else:
        obj = _torch_load(uri, data)
        text, stored = recipe_text_of(uri, None, obj), obj
        if is_training_checkpoint(obj):
            state = obj.get("model")
        elif isinstance(obj, Mapping) and not _tensor_dict(obj):
            inner = next(
                (obj[k] for k in ("state_dict", "model", "model_state_dict") if _tensor_dict(obj.get(k))), None
            )
            state = inner
        else:
            state = obj
        if not _tensor_dict(state):
            raise CheckpointError(
                f"{uri}: not a model checkpoint: expected a state dict of named tensors, got "
                f"{type(obj).__name__}{' with keys ' + ', '.join(map(str, list(obj)[:6])) if isinstance(obj, Mapping) else ''}"
            )
    node = model_node_from_recipe(text, uri) if text else None
    inputs = stored_inputs(uri, stored)
    state = K.strip_dataparallel(state)
    return CheckpointContents(
        uri=uri, state=dict(state), layout=_layout(state, uri), node=node, inputs=inputs, recipe=text
    )


def checkpoint_contents(checkpoint: str | CheckpointContents, *, host: Any = None) -> CheckpointContents:
    """``checkpoint`` itself when it was already read, else :func:`read_checkpoint` of that URI: a
    command reads its checkpoint once and hands the contents to every step that needs them."""
    if isinstance(checkpoint, CheckpointContents):
        return checkpoint
    return read_checkpoint(checkpoint, host=host)


def _load_safetensors(uri: str, data: bytes) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        return read_safetensors(data)
    except SafetensorsFileError as exc:
        raise CheckpointError(f"{uri}: truncated or corrupt safetensors file ({exc})") from None


def _torch_load(uri: str, data: bytes) -> Any:
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign bytes; classify by what we can see
        text = str(exc)
        first = text.splitlines()[0] if text else type(exc).__name__
        if "Weights only load failed" in text and data[:2] == b"PK" or "Unsupported global" in text:
            raise CheckpointError(
                f"{uri}: the file holds Python objects other than tensors; cavkit loads checkpoints with "
                "weights_only=True and never runs code from a file (save a plain state_dict instead)"
            ) from None
        if (
            data[:2] == b"PK"
            or "central directory" in text
            or "PytorchStreamReader" in text
            or isinstance(exc, EOFError)
        ):
            raise CheckpointError(
                f"{uri}: truncated or corrupt checkpoint (not a complete PyTorch file: {first})"
            ) from None
        raise CheckpointError(
            f"{uri}: not a PyTorch checkpoint or safetensors file; expected an official CAV-MAE .pth or a "
            f"cavkit .safetensors ({type(exc).__name__}: {first[:200]})"
        ) from None


def _tensor_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def _layout(state: Mapping[str, Any], uri: str) -> str:
    if any(k.startswith(_CAVKIT_PARTS) for k in state):
        return "cavkit"
    if any(K.upstream_to_cavkit(k) is not None for k in state):
        return "upstream"
    raise CheckpointError(f"{uri}: not a CAV-MAE / CAV-MAE Sync checkpoint: it holds {describe_keys(state)}")
