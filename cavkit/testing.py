"""Helpers for testing cavkit plugins (and cavkit's own built-ins).

Typical use in a plugin's test suite::

    import cavkit_myplugin.plugin
    from cavkit.testing import check_component, plugin_host, run_cli

    def test_my_strategy_runs():
        host = plugin_host(cavkit_myplugin.plugin)        # built-ins + this plugin, autoload off
        result = check_component("retrieval_strategy", "my_strategy", host=host)
        assert result.output.shape == (3, 5)

    def test_listed():
        result = run_cli(["components", "retrieval_strategy"], host=plugin_host(cavkit_myplugin.plugin))
        assert result.exit_code == 0 and "my_strategy" in result.stdout

:func:`check_component` builds a component from its default config (plus ``params`` overrides,
validated exactly like a recipe node) and runs it once on a tiny synthetic input suited to its
kind, checking the contract of :mod:`cavkit.interfaces`. It raises ``AssertionError`` with a clear
message when the component breaks the contract. This module imports torch only inside
:func:`check_component`.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from cavkit.config import ComponentNode, structure_node
from cavkit.plugins import PluginHost, build_plugin_host, get_plugin_host, set_plugin_host
from cavkit.registry import KINDS, ComponentSpec

__all__ = ["CliResult", "ComponentCheck", "check_component", "plugin_host", "run_cli", "synthetic_model_output"]


def plugin_host(*plugins: object, strict: bool = True) -> PluginHost:
    """A fresh plugin host: cavkit's built-ins plus ``plugins``, with entry-point autoload off.

    Installed plugins never leak in, so the test sees exactly the plugin under test.

    :param plugins: plugin modules (or objects with ``@cavkit.hookimpl`` methods) to register.
    :param strict: raise :class:`~cavkit.errors.PluginLoadError` if any of them fails to load
        (the default: a test wants to see the error, not a warning).
    """
    return build_plugin_host(strict=strict, autoload=False, extra_plugins=tuple(plugins))


@attrs.frozen
class CliResult:
    """What a :func:`run_cli` call produced."""

    exit_code: int
    stdout: str
    stderr: str


def run_cli(args: list[str], *, host: PluginHost | None = None) -> CliResult:
    """Run ``cavkit ARGS`` in-process through :func:`cavkit.cli.main`, capturing its output.

    :param host: the plugin host to use (e.g. :func:`plugin_host`); by default plugins load as
        for the real command.
    """
    from cavkit.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main(list(args), host=host)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        set_plugin_host(None)
    return CliResult(code, out.getvalue(), err.getvalue())


@attrs.frozen
class ComponentCheck:
    """The result of :func:`check_component`: the spec, its config, the built component, its output."""

    spec: ComponentSpec
    config: Any
    component: Any
    output: Any


def _node_for(spec: ComponentSpec, params: Mapping[str, Any], host: PluginHost) -> ComponentNode:
    node, problems = structure_node(
        spec.kind, {"type": spec.qualified_id, **params},
        registry=host.registry, failed_plugins=host.failed_names(),
    )
    if problems or node is None:
        raise AssertionError(
            f"{spec.kind} {spec.qualified_id!r}: its config does not validate:\n"
            + "\n".join(f"  - {p}" for p in problems)
        )
    return node


def check_component(
    kind: str,
    name: str,
    *,
    host: PluginHost | None = None,
    params: Mapping[str, Any] | None = None,
    inputs: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
) -> ComponentCheck:
    """Build component ``kind``/``name`` from its default config and run it on a tiny input.

    :param kind: one of :data:`cavkit.registry.KINDS`.
    :param name: a bare name or a qualified id (``cavkit-example/smooth_max``).
    :param host: the plugin host (default: the process-wide one, with installed plugins).
    :param params: parameter overrides, validated like a recipe node (``{"temperature": 0.1}``);
        models usually need small sizes here (``{"embed_dim": 32, ...}``).
    :param inputs: replace the synthetic inputs (keys per kind: ``query``/``gallery`` for a
        retrieval strategy, ``tokens``/``grid`` for a masker, ``batch``/``output`` for an
        objective, ``audio``/``image`` for a model, ``args``/``kwargs`` for tokenizers, encoders
        and decoders, which are only built unless given inputs).
    :param context: keyword arguments passed to the factory (``factory(config, **context)``).
    :returns: a :class:`ComponentCheck`.
    :raises AssertionError: if the config does not validate or the component breaks its kind's
        contract (wrong output type, shape, non-finite values, no gradient, ...).
    """
    import torch

    if kind not in KINDS:
        raise AssertionError(f"unknown kind {kind!r}; kinds are {', '.join(KINDS)}")
    host = host or get_plugin_host()
    spec = host.registry.get(kind, name, failed_plugins=host.failed_names())
    node = _node_for(spec, params or {}, host)
    component = node.build(**dict(context or {}))
    inputs = dict(inputs or {})
    where = f"{kind} {spec.qualified_id!r}"
    gen = torch.Generator().manual_seed(0)
    runner = _RUNNERS.get(kind)
    output = runner(component, node.config, inputs, gen, where) if runner else None
    return ComponentCheck(spec, node.config, component, output)


# -- per-kind smoke runs ---------------------------------------------------------------------------
def _finite(tensor: Any, what: str) -> None:
    import torch

    if not isinstance(tensor, torch.Tensor):
        raise AssertionError(f"{what} should be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.is_floating_point() and not torch.isfinite(tensor).all():
        raise AssertionError(f"{what} has non-finite values")


def _run_retrieval(strategy: Any, config: Any, inputs: dict, gen: Any, where: str) -> Any:
    """``strategy(query [N,K,D], gallery [M,K,D]) -> [N,M]``, scoring each pair independently."""
    import torch
    import torch.nn.functional as F

    query = inputs.get("query", F.normalize(torch.randn(3, 4, 8, generator=gen), dim=-1))
    gallery = inputs.get("gallery", F.normalize(torch.randn(5, 4, 8, generator=gen), dim=-1))
    with torch.no_grad():
        sim = strategy(query, gallery)
        _finite(sim, f"{where} similarity")
        expected = (query.shape[0], gallery.shape[0])
        if tuple(sim.shape) != expected:
            raise AssertionError(f"{where} returned similarity of shape {list(sim.shape)}, expected {list(expected)}")
        part = strategy(query[:2], gallery)
        if not torch.allclose(part, sim[:2], atol=1e-5):
            raise AssertionError(f"{where}: a query's scores depend on the other queries in the batch")
    return sim


def _run_masker(masker: Any, config: Any, inputs: dict, gen: Any, where: str) -> Any:
    """``masker(tokens [B,L,D], noise, grid=(rows, cols)) -> Masked`` in the MAE convention."""
    import torch

    from cavkit.interfaces import Masked

    grid = inputs.get("grid", (4, 8))
    tokens = inputs.get("tokens", torch.randn(2, grid[0] * grid[1], 6, generator=gen))
    b, length, dim = tokens.shape
    out = masker(tokens, None, grid=grid)
    if not isinstance(out, Masked):
        raise AssertionError(f"{where} should return cavkit.interfaces.Masked, got {type(out).__name__}")
    if tuple(out.mask.shape) != (b, length) or tuple(out.ids_restore.shape) != (b, length):
        raise AssertionError(f"{where}: mask and ids_restore should be [{b}, {length}]")
    if not torch.all((out.mask == 0) | (out.mask == 1)):
        raise AssertionError(f"{where}: mask should hold only 0 (kept) and 1 (removed)")
    keep = out.kept.shape[1]
    if out.kept.shape != (b, keep, dim) or not torch.all(out.mask.sum(1) == length - keep):
        raise AssertionError(f"{where}: every sample must keep the same number of tokens ({keep})")
    ids_shuffle = torch.argsort(out.ids_restore, dim=1)
    if not torch.equal(torch.sort(ids_shuffle, dim=1).values, torch.arange(length).expand(b, -1)):
        raise AssertionError(f"{where}: ids_restore is not a permutation")
    expected = torch.gather(tokens, 1, ids_shuffle[:, :keep].unsqueeze(-1).expand(-1, -1, dim))
    if not torch.equal(out.kept, expected):
        raise AssertionError(f"{where}: kept tokens are not tokens[ids_shuffle[:, :keep]] (MAE convention)")
    if not torch.all(torch.gather(out.mask, 1, ids_shuffle[:, :keep]) == 0):
        raise AssertionError(f"{where}: kept tokens are marked as removed in the mask")
    return out


def synthetic_model_output(batch_size: int = 4, dim: int = 16, num_classes: int = 5, *, generator: Any = None):
    """A tiny :class:`~cavkit.interfaces.ModelOutput` with every field set, and a matching batch.

    Tensors an objective may differentiate (predictions, tokens, logits) require gradients.

    :returns: ``(batch, output)``: ``batch`` has ``audio [B,32,128]``, ``image [B,3,32,32]``,
        ``label [B,C]`` (multi-hot), ``clip_id``; ``output`` has ``La = 8`` audio and ``Lv = 4``
        visual patches (75% masked), ``n_a = 2``/``n_v = 1`` visible tokens, ``[B,D]`` global
        tokens and ``[B,C]`` logits.
    """
    import torch

    from cavkit.interfaces import ModelOutput

    gen = generator or torch.Generator().manual_seed(0)
    b, la, lv = batch_size, 8, 4

    def rand(*shape: int, grad: bool = False) -> Any:
        return torch.randn(*shape, generator=gen).requires_grad_(grad)

    def mask(length: int) -> Any:
        noise = torch.rand(b, length, generator=gen)
        keep = int(length * 0.25)
        m = torch.ones(b, length)
        m.scatter_(1, noise.argsort(1)[:, :keep], 0.0)
        return m

    batch = {
        "audio": rand(b, 32, 128),
        "image": rand(b, 3, 32, 32),
        "label": (torch.rand(b, num_classes, generator=gen) > 0.5).float(),
        "clip_id": [f"clip{i}" for i in range(b)],
    }
    output = ModelOutput(
        pred_audio=rand(b, la, 256, grad=True),
        pred_visual=rand(b, lv, 768, grad=True),
        target_audio=rand(b, la, 256),
        target_visual=rand(b, lv, 768),
        mask_audio=mask(la),
        mask_visual=mask(lv),
        audio_tokens=rand(b, la // 4, dim, grad=True),
        visual_tokens=rand(b, lv // 4, dim, grad=True),
        audio_global=rand(b, dim, grad=True),
        visual_global=rand(b, dim, grad=True),
        logits=rand(b, num_classes, grad=True),
    )
    return batch, output


def _run_objective(objective: Any, config: Any, inputs: dict, gen: Any, where: str) -> Any:
    """``objective(batch, ModelOutput) -> ObjectiveOutput`` with a finite scalar, differentiable loss."""
    import torch

    from cavkit.interfaces import ObjectiveOutput

    if "batch" in inputs or "output" in inputs:
        batch, output = inputs["batch"], inputs["output"]
    else:
        batch, output = synthetic_model_output(generator=gen)
    result = objective(batch, output)
    if not isinstance(result, ObjectiveOutput):
        raise AssertionError(f"{where} should return cavkit.interfaces.ObjectiveOutput, got {type(result).__name__}")
    _finite(result.loss, f"{where} loss")
    if result.loss.dim() != 0:
        raise AssertionError(f"{where} loss should be a scalar, got shape {list(result.loss.shape)}")
    if not result.loss.requires_grad:
        raise AssertionError(f"{where} loss does not depend on the model output (no gradient)")
    result.loss.backward()
    for key, value in result.logs.items():
        if isinstance(value, torch.Tensor) and value.numel() != 1:
            raise AssertionError(f"{where} logs[{key!r}] should be a scalar")
        if isinstance(value, torch.Tensor):
            value = value.detach()
        if isinstance(value, int | float | torch.Tensor) and not math.isfinite(float(value)):
            raise AssertionError(f"{where} logs[{key!r}] is not finite")
    return result


def _run_model(model: Any, config: Any, inputs: dict, gen: Any, where: str) -> Any:
    """``model(audio [B,T,128], image [B,3,H,W]) -> ModelOutput`` (and ``embed`` if present)."""
    import torch

    from cavkit.interfaces import Embeddings, ModelOutput

    t = getattr(config, "audio_length", 1024)
    h = getattr(config, "image_size", 224)
    audio = inputs.get("audio", torch.randn(2, t, 128, generator=gen))
    image = inputs.get("image", torch.randn(2, 3, h, h, generator=gen))
    model.eval()
    with torch.no_grad():
        out = model(audio, image)
        if not isinstance(out, ModelOutput):
            raise AssertionError(f"{where} should return cavkit.interfaces.ModelOutput, got {type(out).__name__}")
        produced = {f: v for f, v in vars(out).items() if f != "extras" and v is not None}
        if not produced:
            raise AssertionError(f"{where} returned a ModelOutput with every field None")
        for field_name, value in produced.items():
            _finite(value, f"{where} output.{field_name}")
            if value.shape[0] != audio.shape[0]:
                raise AssertionError(f"{where} output.{field_name} has batch size {value.shape[0]}, expected {audio.shape[0]}")
        if hasattr(model, "embed"):
            emb = model.embed(audio, image)
            if not isinstance(emb, Embeddings):
                raise AssertionError(f"{where}.embed should return cavkit.interfaces.Embeddings")
    return out


def _run_dataset(dataset: Any, config: Any, inputs: dict, gen: Any, where: str) -> Any:
    """A dataset yields dicts with (at least) ``audio`` and ``image`` tensors."""
    if hasattr(dataset, "__len__") and len(dataset) == 0:
        raise AssertionError(f"{where} is empty")
    item = dataset[0] if hasattr(dataset, "__getitem__") else next(iter(dataset))
    if not isinstance(item, dict):
        raise AssertionError(f"{where} items should be dicts, got {type(item).__name__}")
    for key in ("audio", "image"):
        if key not in item:
            raise AssertionError(f"{where} item lacks {key!r} (has {', '.join(map(str, item))})")
        _finite(item[key], f"{where} item[{key!r}]")
    return item


def _run_module(module: Any, config: Any, inputs: dict, gen: Any, where: str) -> Any:
    """Tokenizers, encoders and decoders: an ``nn.Module``; called only with explicit inputs."""
    from torch import nn

    if not isinstance(module, nn.Module):
        raise AssertionError(f"{where} should be a torch.nn.Module, got {type(module).__name__}")
    if "args" in inputs or "kwargs" in inputs:
        return module(*inputs.get("args", ()), **inputs.get("kwargs", {}))
    return None


_RUNNERS: dict[str, Callable[[Any, Any, dict, Any, str], Any]] = {
    "retrieval_strategy": _run_retrieval,
    "masker": _run_masker,
    "objective": _run_objective,
    "model": _run_model,
    "dataset": _run_dataset,
    "tokenizer": _run_module,
    "encoder": _run_module,
    "decoder": _run_module,
}
