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

:func:`tiny_model` gives the ``model:`` recipe node of a built-in model at a tiny size
(:mod:`cavkit.testing.tiny`), e.g. for :func:`save_model_weights`.

:func:`check_component` builds a component from its default config (plus ``params`` overrides,
validated exactly like a recipe node) and runs it once on a tiny synthetic input suited to its
kind, checking the contract of :mod:`cavkit.interfaces` (the runs are in
:mod:`cavkit.testing.contracts`). It raises ``AssertionError`` with a clear message when the
component breaks the contract. This package imports torch only inside :func:`check_component`.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping
from typing import Any

import attrs

from cavkit.config import ComponentNode, structure_node
from cavkit.plugins import PluginHost, build_plugin_host, get_plugin_host, set_plugin_host
from cavkit.registry import KINDS, ComponentSpec
from cavkit.testing.synthetic import synthetic_model_output
from cavkit.testing.tiny import tiny_model

__all__ = [
    "CliResult",
    "ComponentCheck",
    "check_component",
    "plugin_host",
    "run_cli",
    "save_model_weights",
    "synthetic_model_output",
    "tiny_model",
]


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
    :param inputs: replace the synthetic inputs. Keys per kind: ``query``/``gallery`` (retrieval
        strategy), ``tokens``/``grid``/``noise`` (masker), ``batch``/``output`` (objective, both),
        ``audio``/``image`` (model), ``input`` (tokenizer), ``audio``/``visual`` (encoder),
        ``joint``/``ids_restore_a``/``ids_restore_v``/``num_audio_kept`` (decoder). Any other key
        is an error, so that a misspelt one cannot silently leave the synthetic input in place.
    :param context: keyword arguments for the factory (``factory(config, **context)``); by default
        the context a model passes to parts of this kind, at a tiny size
        (:func:`cavkit.testing.contracts.default_context`).
    :returns: a :class:`ComponentCheck`.
    :raises AssertionError: if the config does not validate, the factory rejects the context, or
        the component breaks its kind's contract (wrong output type, shape, non-finite values, no
        gradient, a mask not determined by its noise, ...).
    """
    import torch

    from cavkit.testing.contracts import RUNNERS, default_context

    if kind not in KINDS:
        raise AssertionError(f"unknown kind {kind!r}; kinds are {', '.join(KINDS)}")
    runner, accepted = RUNNERS.get(kind, (None, ()))  # kinds without a run (weights) are only built
    inputs = dict(inputs or {})
    unknown = sorted(set(inputs) - set(accepted))
    if unknown:
        raise AssertionError(
            f"check_component({kind!r}, ...): unknown inputs key(s) {', '.join(map(repr, unknown))}; "
            f"{kind} accepts {', '.join(map(repr, accepted)) or 'none'}"
        )
    host = host or get_plugin_host()
    spec = host.registry.get(kind, name, failed_plugins=host.failed_names())
    node = _node_for(spec, params or {}, host)
    where = f"{kind} {spec.qualified_id!r}"
    context = dict(context) if context is not None else default_context(kind, spec.factory_callable())
    try:
        component = node.build(**context)
    except TypeError as exc:
        raise AssertionError(
            f"{where}: factory(config, **context) failed with context keys {sorted(context)}: {exc} "
            f"(cavkit.interfaces lists the context each kind receives)"
        ) from exc
    gen = torch.Generator().manual_seed(0)
    output = runner(component, node.config, inputs, gen, where, context) if runner else None
    return ComponentCheck(spec, node.config, component, output)


def save_model_weights(model: Mapping[str, Any], uri: Any, *, host: PluginHost | None = None, seed: int = 0) -> str:
    """Build the model a ``model:`` recipe node describes and save it as a cavkit weights file.

    The node is validated like a recipe (against ``host``'s registry, default: the process-wide
    one) and the model built after ``torch.manual_seed(seed)``; the file is what ``cavkit convert``
    writes (``.safetensors`` with the model recipe and input declaration in its metadata), so
    :func:`cavkit.api.load_model`, ``cavkit eval`` and the picture commands read it. For tests that
    need a checkpoint of a tiny model::

        path = save_model_weights({"type": "my_model", "embed_dim": 32}, tmp_path / "m.safetensors", host=host)

    :returns: ``uri`` as a string.
    :raises RecipeError: the node does not validate.
    """
    import torch

    from cavkit.checkpoints.build import build_model_node
    from cavkit.checkpoints.convert import cavkit_bytes
    from cavkit.io import write_bytes_atomic

    node = build_model_node(model, source="save_model_weights", host=host)
    torch.manual_seed(seed)
    built = node.build()
    built.cavkit_node = node
    write_bytes_atomic(str(uri), cavkit_bytes(built)[0])
    return str(uri)
