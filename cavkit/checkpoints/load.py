"""Reading checkpoints of any supported kind into ready models, strictly.

Supported files (any fsspec URI):

* official CAV-MAE / CAV-MAE Sync / fine-tuned ``.pth`` (``module.`` prefix optional, upstream key
  names): the model configuration is inferred from keys and shapes (spec §4.6);
* cavkit weights (``.safetensors`` in cavkit key layout) with the model recipe in the file's
  metadata (``recipe``) or in a sidecar ``<name>.yaml``;
* cavkit training checkpoints (``torch.save`` dicts with ``format: cavkit.checkpoint``, the model
  state and the resolved recipe).

Everything is read with ``torch.load(weights_only=True)`` or safetensors: nothing in a file can run
code. Loading is strict: missing, unexpected and mis-shaped keys are reported by name.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import torch
import yaml

from cavkit.checkpoints import keys as K
from cavkit.checkpoints.infer import check_heads, describe_keys, infer_model_node
from cavkit.config import ComponentNode, component, structure
from cavkit.errors import CheckpointError
from cavkit.models.inputs import InputSpec
from cavkit.safetensors_io import SafetensorsFileError, looks_like_safetensors, read_metadata, read_safetensors
from cavkit.weights.entry import WEIGHTS_SCHEME

CAVKIT_FORMAT = "cavkit.model"
_CAVKIT_PARTS = ("audio_tokenizer.", "visual_tokenizer.", "encoder.", "decoder.", "head.")


@attrs.define
class CheckpointContents:
    """What a checkpoint file holds: tensors in cavkit or upstream layout, and the model node if stored."""

    uri: str
    state: dict[str, torch.Tensor]
    layout: str  # "cavkit" | "upstream"
    node: dict[str, Any] | None = None
    inputs: InputSpec | None = None  # the model's stored input declaration (cavkit files since 0.2)


# -- reading ---------------------------------------------------------------------------------------
def read_checkpoint_bytes(uri: str, *, host: Any = None) -> bytes:
    """The bytes of a checkpoint file; missing, directory and empty files are :class:`CheckpointError`.

    ``weights:NAME`` and ``http(s)://...[#sha256=<hex>]`` are fetched into the weights cache (or
    taken from it, verified, without network) first: see :mod:`cavkit.weights.resolve`.

    :param host: the plugin host whose registry names ``weights:`` entries (see :func:`plugin_host`).
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


def _node_from_recipe_text(text: str, uri: str) -> dict[str, Any]:
    from cavkit.recipe.load import RecipeLimitError, parse_yaml

    try:
        data = parse_yaml(text)  # untrusted: the recipe limits apply (size, depth, alias expansion)
    except RecipeLimitError as exc:
        raise CheckpointError(f"{uri}: the stored recipe is too large or deep ({exc})") from None
    except yaml.YAMLError as exc:
        raise CheckpointError(f"{uri}: the stored recipe is not valid YAML ({exc})") from None
    if isinstance(data, dict) and isinstance(data.get("model"), dict):
        return data["model"]
    if isinstance(data, dict) and "type" in data:
        return data
    raise CheckpointError(f"{uri}: the stored recipe has no 'model:' section")


def _sidecar_recipe(uri: str) -> str | None:
    """The recipe file beside a weights file (``<name>.yaml``, ``<name>.recipe.yaml``), read with the
    recipe limits (:func:`cavkit.recipe.load.read_recipe_text`); ``None`` when there is none."""
    import fsspec

    from cavkit.errors import UsageError
    from cavkit.recipe.load import read_recipe_text
    from cavkit.weights.entry import is_weights_ref

    if is_weights_ref(uri):  # a fetched file has no sidecar; never probe the network for one
        return None
    stem = uri.removesuffix(".safetensors")
    for candidate in (f"{stem}.yaml", f"{stem}.recipe.yaml"):
        try:
            fs, path = fsspec.core.url_to_fs(candidate)
            if not fs.exists(path):
                continue
        except (OSError, ValueError):
            continue
        try:
            return read_recipe_text(candidate, regular_file=True)
        except UsageError as exc:
            raise CheckpointError(f"{uri}: cannot use the recipe beside it: {exc}") from None
    return None


def _recipe_of(uri: str, meta: Mapping[str, str] | None, obj: Any = None) -> str | None:
    """The recipe text stored with a checkpoint: safetensors metadata ``recipe`` or a sidecar
    ``<name>.yaml`` / ``<name>.recipe.yaml`` (``meta`` given), or a training checkpoint's ``recipe``."""
    if meta is not None:
        return meta.get("recipe") or _sidecar_recipe(uri)
    if isinstance(obj, Mapping) and obj.get("format") == "cavkit.checkpoint" and isinstance(obj.get("recipe"), str):
        return obj["recipe"]
    return None


def stored_recipe_text(uri: str, *, host: Any = None) -> str | None:
    """The resolved recipe a cavkit checkpoint carries (the whole recipe, not only ``model:``), or
    ``None`` (official ``.pth`` files carry none). The one place that knows where recipes are kept.

    :raises CheckpointError: as :func:`read_checkpoint`.
    """
    data = read_checkpoint_bytes(uri, host=host)
    if looks_like_safetensors(data):
        try:
            return _recipe_of(uri, read_metadata(data))
        except SafetensorsFileError as exc:
            raise CheckpointError(f"{uri}: truncated or corrupt safetensors file ({exc})") from None
    return _recipe_of(uri, None, _torch_load(uri, data))


def read_checkpoint(uri: str, *, host: Any = None) -> CheckpointContents:
    """Read any supported checkpoint file; see the module docstring.

    :param host: the plugin host whose registry names ``weights:`` entries (see :func:`plugin_host`).
    :raises CheckpointError: missing, empty, truncated or foreign files, with what was expected.
    """
    data = read_checkpoint_bytes(uri, host=host)
    if looks_like_safetensors(data):
        state, meta = _load_safetensors(uri, data)
        text, stored = _recipe_of(uri, meta), meta
    else:
        obj = _torch_load(uri, data)
        text, stored = _recipe_of(uri, None, obj), obj
        if isinstance(obj, Mapping) and obj.get("format") == "cavkit.checkpoint":
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
    node = _node_from_recipe_text(text, uri) if text else None
    inputs = _stored_inputs(uri, stored)
    state = K.strip_dataparallel(state)
    return CheckpointContents(uri=uri, state=dict(state), layout=_layout(state, uri), node=node, inputs=inputs)


def _stored_inputs(uri: str, stored: Any) -> InputSpec | None:
    """The ``inputs`` declaration of safetensors metadata or a training checkpoint (``None``: not stored)."""
    text = stored.get("inputs") if isinstance(stored, Mapping) else None
    if not isinstance(text, str):
        return None
    try:
        return InputSpec.from_json(text)
    except ValueError as exc:
        raise CheckpointError(f"{uri}: the stored input declaration ('inputs') is unreadable: {exc}") from None


# -- building --------------------------------------------------------------------------------------
def plugin_host(host: Any) -> Any:
    """``host``, or for ``None`` (direct API use, e.g. ``cavkit.api.load_model(path)``) the plugins
    installed in this process: the one place under :mod:`cavkit.checkpoints` that reads that host."""
    if host is not None:
        return host
    from cavkit.plugins import get_plugin_host

    return get_plugin_host()


@attrs.frozen(kw_only=True)
class _ModelSlot:
    model: ComponentNode = component("model")


def build_model_node(data: Mapping[str, Any], *, source: str = "model", host: Any = None) -> ComponentNode:
    """Validate a ``model:`` recipe node (a mapping with ``type:``) against ``host``'s registry.

    :param host: the :class:`~cavkit.plugins.PluginHost` whose components may be named; commands pass
        theirs. ``None`` (direct API use, e.g. ``cavkit.api.load_model(path)``) means the plugins
        installed in this process.
    """
    from cavkit.errors import RecipeError

    host = plugin_host(host)
    slot, problems = structure(
        _ModelSlot, {"model": dict(data)}, registry=host.registry, failed_plugins=host.failed_names()
    )
    if problems:
        raise RecipeError(source, problems)
    return slot.model


def apply_model_overrides(
    node: dict[str, Any], overrides: Iterable[str] | Mapping[str, Any] | None, source: str
) -> dict[str, Any]:
    """Apply ``key.path=value`` strings (or a nested mapping) to a model node."""
    from cavkit.recipe.load import apply_overrides, deep_merge

    if not overrides:
        return node
    if isinstance(overrides, Mapping):
        return deep_merge(node, dict(overrides))
    return apply_overrides(node, list(overrides), source)


def _display(key: str, layout: str) -> str:
    return (K.cavkit_to_upstream(key) or key) if layout == "upstream" else key


def load_state_strict(
    model: torch.nn.Module, state: Mapping[str, torch.Tensor], *, source: str, layout: str = "cavkit"
) -> None:
    """Copy ``state`` (cavkit keys) into ``model``; any missing, unexpected or mis-shaped key is an error.

    Keys are reported in the checkpoint's own naming (upstream names for official files).
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    misshaped = [k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or misshaped:
        lines = [f"{source}: the checkpoint does not match the model it describes:"]
        if missing:
            lines.append(f"  missing ({len(missing)}): {', '.join(_display(k, layout) for k in missing[:20])}")
        if unexpected:
            lines.append(f"  unexpected ({len(unexpected)}): {', '.join(_display(k, layout) for k in unexpected[:20])}")
        for k in misshaped[:20]:
            lines.append(
                f"  mis-shaped {_display(k, layout)}: checkpoint {list(state[k].shape)}, model {list(own[k].shape)}"
            )
        raise CheckpointError("\n".join(lines))
    with torch.no_grad():
        for k, v in own.items():
            v.copy_(state[k])


def to_cavkit_keys(contents: CheckpointContents) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors under cavkit names; unknown upstream keys are reported."""
    if contents.layout == "cavkit":
        return dict(contents.state)
    out, unknown = {}, []
    for k, v in contents.state.items():
        new = K.upstream_to_cavkit(k)
        if new is None:
            unknown.append(k)
        else:
            out[new] = v
    if unknown:
        raise CheckpointError(f"{contents.uri}: unexpected keys for a CAV-MAE / Sync model: {', '.join(unknown[:20])}")
    return out


def model_node_for(contents: CheckpointContents, overrides=None) -> dict[str, Any]:
    """The model node of a checkpoint: stored, or inferred from (upstream-named) keys, then overridden."""
    if contents.node is not None:
        node = dict(contents.node)
        node.pop("init", None)  # the stored weights replace any initialisation; its file may be gone
    else:
        upstream = (
            contents.state
            if contents.layout == "upstream"
            else {K.cavkit_to_upstream(k) or k: v for k, v in contents.state.items()}
        )
        node = infer_model_node(upstream, source=contents.uri)
    node = apply_model_overrides(node, overrides, contents.uri)
    check_heads(node, contents.uri)
    return node


def load_model(
    uri: str,
    *,
    expect: str | None = None,
    overrides=None,
    device: str | torch.device | None = None,
    eval: bool = True,
    host: Any = None,
) -> torch.nn.Module:
    """Load any supported checkpoint into a ready model (strict; eval mode unless ``eval=False``).

    :param expect: the model type the caller needs (``cav_mae``, ``cav_mae_sync``, ``classifier``);
        a checkpoint of another model is a :class:`CheckpointError`.
    :param overrides: ``["encoder.num_heads=2", ...]`` or a nested mapping applied to the model node
        (needed only for non-published head counts, which checkpoints do not record).
    :param host: the plugin host to validate the model node against (see :func:`build_model_node`).

    The model's input declaration (:class:`~cavkit.models.inputs.InputSpec`) is restored from the
    file when stored there and the model class declares none; otherwise
    :func:`cavkit.models.inputs.input_spec_of` derives it from ``model.cavkit_node``.
    """
    contents = read_checkpoint(uri, host=host)
    node_data = model_node_for(contents, overrides)
    if expect is not None and node_data.get("type") != expect:
        raise CheckpointError(
            f"{uri}: holds a {node_data.get('type')!r} model, expected {expect!r}" + _summary(node_data)
        )
    node = build_model_node(node_data, source=uri, host=host)
    model = node.build()
    load_state_strict(model, to_cavkit_keys(contents), source=uri, layout=contents.layout)
    model.cavkit_node = node  # the validated recipe node that rebuilds this model
    if contents.inputs is not None and not isinstance(getattr(model, "input_spec", None), InputSpec):
        model.input_spec = contents.inputs
    if device is not None:
        model.to(device)
    return model.eval() if eval else model


def _summary(node: Mapping[str, Any]) -> str:
    enc = node.get("encoder") or {}
    return (
        f" (audio_length {node.get('audio_length')}, global tokens {enc.get('global_tokens')}, "
        f"registers {enc.get('num_register_tokens')})"
    )


# -- initialising a new model from a checkpoint ------------------------------------------------------
def init_from_checkpoint(model: torch.nn.Module, uri: str, *, host: Any = None) -> dict[str, list[str]]:
    """Initialise ``model`` from the matching weights of another model's checkpoint.

    Expected differences (spec §4.6, §7.3) are allowed: decoder weights into a classifier, a
    classifier head into a pretraining model, a fresh head when the checkpoint has none or another
    class count, and fresh sin-cos position embeddings where their shape differs (e.g. Sync's 416-frame
    audio from a 1024-frame initialisation). Everything else must match. A model may name more
    prefixes: ``init_fresh_prefixes`` (new parts that start fresh like the head, e.g. a Sync
    classifier's ``aggregator.``) and ``init_skipped_prefixes`` (checkpoint parts it has no place
    for, e.g. the visual side for an audio-only classifier).

    ``timm:VIT_NAME[=FILE]`` initialises from a timm ViT instead (spec §4.7 mapping, see
    :mod:`cavkit.checkpoints.timm_init`).

    :param host: the plugin host whose registry names ``weights:`` entries (see :func:`plugin_host`).
    :returns: ``{"loaded": [...], "fresh": [...], "ignored": [...]}`` (cavkit key names).
    """
    if uri.startswith("timm:"):
        from cavkit.checkpoints.timm_init import init_from_timm

        return init_from_timm(model, uri, host=host)
    contents = read_checkpoint(uri, host=host)
    state = to_cavkit_keys(contents)
    own = model.state_dict()
    new_parts = ("head.", *getattr(model, "init_fresh_prefixes", ()))
    skipped = ("decoder.", *new_parts, *getattr(model, "init_skipped_prefixes", ()))
    loaded, fresh, ignored, errors = [], [], [], []
    for k, v in own.items():
        if k not in state:
            if k.startswith(new_parts):
                fresh.append(k)
            else:
                errors.append(f"missing {_display(k, contents.layout)}")
            continue
        if tuple(state[k].shape) != tuple(v.shape):
            if k.startswith(new_parts) or k.endswith(("pos_embed", "pos_embed_a", "pos_embed_v")):
                fresh.append(k)
            else:
                errors.append(
                    f"mis-shaped {_display(k, contents.layout)}: checkpoint {list(state[k].shape)}, model {list(v.shape)}"
                )
            continue
        loaded.append(k)
    for k in state:
        if k not in own:
            if k.startswith(skipped):
                ignored.append(k)
            else:
                errors.append(f"unexpected {_display(k, contents.layout)}")
    if errors:
        raise CheckpointError(f"{uri}: cannot initialise this model from it:\n  " + "\n  ".join(errors[:30]))
    with torch.no_grad():
        for k in loaded:
            own[k].copy_(state[k])
    return {"loaded": loaded, "fresh": fresh, "ignored": ignored}
