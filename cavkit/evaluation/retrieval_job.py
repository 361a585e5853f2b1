"""What ``cavkit eval retrieval`` runs: features once, then every requested strategy in both directions.

Strategies are named like recipe nodes and take parameters the same way
(``--strategy NAME:key=value[,key=value]``, validated by the strategy's config: unknown keys and
bad values are reported with their path). A recipe's ``retrieval:`` parameters apply to the
strategy it names; parameters given on the command line override them.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import attrs

from cavkit.errors import RecipeError, UsageError
from cavkit.evaluation.sources import DataSource, build_eval_dataset, eval_loader, load_eval_model
from cavkit.option_values import parse_value

if TYPE_CHECKING:  # pragma: no cover
    from cavkit.plugins import PluginHost


@attrs.frozen(kw_only=True)
class StrategyRequest:
    """One ``--strategy`` entry: a registered name (bare or ``plugin/name``) and its parameters."""

    name: str
    params: dict[str, Any] = attrs.field(factory=dict)

    @property
    def label(self) -> str:
        """The row label: the name, with its parameters when any were given (``max:chunk_mb=8``)."""
        if not self.params:
            return self.name
        return f"{self.name}:" + ",".join(f"{k}={v}" for k, v in self.params.items())


def parse_strategies(items: tuple[str, ...] | list[str]) -> list[StrategyRequest]:
    """``--strategy`` values as requests, in order, without repeats.

    Each value is a comma list of entries. An entry ``NAME`` or ``NAME:key=value`` starts a strategy;
    an entry ``key=value`` adds a parameter to the strategy before it (names never contain ``=``)::

        diagonal_mean,max                        -> diagonal_mean, max
        soft_alignment:temperature=0.1,top_k=3   -> soft_alignment {temperature: 0.1, top_k: 3}

    ``all`` is kept as a name here (expanded by :func:`expand_all`). Values are read as YAML.

    :raises UsageError: a parameter before any name, a malformed ``key=value`` or a repeated key.
    """
    requests: list[StrategyRequest] = []
    for item in items:
        current: StrategyRequest | None = None
        for entry in (e.strip() for e in item.split(",")):
            if not entry:
                continue
            name, colon, first = entry.partition(":")
            if "=" in name:  # a parameter of the strategy before it
                if current is None:
                    raise UsageError(f"--strategy {item!r}: {entry!r} comes before any strategy name; use NAME:{entry}")
                _add_param(current, entry, item)
                continue
            current = StrategyRequest(name=name.strip())
            requests.append(current)
            if colon:
                _add_param(current, first, item)
    unique: list[StrategyRequest] = []
    for request in requests:
        if request not in unique:
            unique.append(request)
    return unique


def _add_param(request: StrategyRequest, text: str, item: str) -> None:
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UsageError(f"--strategy {item!r}: expected NAME:key=value[,key=value], got {text!r}")
    if key in request.params:
        raise UsageError(f"--strategy {item!r}: {key!r} is given twice for {request.name}")
    request.params[key] = parse_value(value.strip(), option="--strategy")


def expand_all(requests: list[StrategyRequest], registered: list[str]) -> list[StrategyRequest]:
    """Replace ``all`` by every registered strategy not requested otherwise."""
    out: list[StrategyRequest] = []
    for request in requests:
        if request.name == "all":
            out += [StrategyRequest(name=n) for n in registered if all(r.name != n for r in requests + out)]
        elif request not in out:
            out.append(request)
    return out


def default_strategy(recipe: Any) -> StrategyRequest:
    """The recipe's ``retrieval:`` strategy, else ``diagonal_mean`` (the Sync README default)."""
    if recipe is not None and recipe.retrieval is not None:
        spec = recipe.retrieval.spec
        return StrategyRequest(name=spec.qualified_id if spec.plugin != "cavkit" else recipe.retrieval.type)
    return StrategyRequest(name="diagonal_mean")


def build_strategy(request: StrategyRequest, *, host: "PluginHost", recipe: Any = None) -> Any:
    """A registered strategy, validated like a recipe node; the recipe's ``retrieval:`` parameters
    apply when it names the same strategy, the request's parameters override them.

    :raises RecipeError: unknown strategy, unknown parameter or a bad value (named by its key).
    """
    from cavkit.config import structure_node, unstructure

    data: dict[str, Any] = {"type": request.name}
    if recipe is not None and recipe.retrieval is not None:
        # A plugin's strategy may be named bare (soft_alignment) or qualified (cavkit-siglip/soft_alignment).
        spec = recipe.retrieval.spec
        if request.name in (spec.name, spec.qualified_id):
            data = unstructure(recipe.retrieval)
    data.update(request.params)
    node, problems = structure_node(
        "retrieval_strategy",
        data,
        registry=host.registry,
        path=f"--strategy {request.name}",
        failed_plugins=host.failed_names(),
    )
    if problems:
        raise RecipeError("--strategy", problems)
    return node.build()


@attrs.frozen(kw_only=True)
class RetrievalOptions:
    """Everything ``cavkit eval retrieval`` was asked to do (see its ``--help`` for each option)."""

    checkpoint: str | None = None
    source: DataSource = attrs.field(factory=DataSource)
    features_uri: str | None = None
    strategies: tuple[str, ...] = ()
    directions: str = "both"
    samples: int | None = None
    tie_mode: str = "strict"
    embedding: str = "auto"
    use_index: bool = False
    top_k: int = 0
    batch_size: int = 16
    num_workers: int = 0
    device: str = "auto"
    precision: str = "fp32"


@attrs.define
class RetrievalRun:
    """The outcome: features, ``results[label][direction]``, the dataset (``None`` with saved features)
    and the seconds spent extracting features and ranking."""

    features: Any
    results: dict[str, dict[str, Any]]
    dataset: Any
    feature_seconds: float
    retrieval_seconds: float


def load_features(options: RetrievalOptions, *, host: "PluginHost", device: Any) -> tuple[Any, Any]:
    """``(features, dataset)``: saved ones (``features_uri``), else extracted from the checkpoint's model."""
    from cavkit.devices import autocast_dtype
    from cavkit.evaluation.features import Features, extract_features
    from cavkit.models.inputs import input_spec_of

    if options.features_uri:
        features = Features.load(options.features_uri)
        if options.samples:
            n = options.samples
            labels = None if features.labels is None else features.labels[:n]
            features = Features(
                features.audio[:n], features.visual[:n], labels, features.clip_ids[:n], features.embedding
            )
        return features, None
    model = load_eval_model(options.checkpoint, device, host=host)
    dataset = build_eval_dataset(options.source, host=host, mode="retrieval", inputs=input_spec_of(model))
    features = extract_features(
        model,
        eval_loader(dataset, options.batch_size, options.num_workers),
        embedding=options.embedding,
        device=device,
        autocast_dtype=autocast_dtype(options.precision),
        limit=options.samples,
    )
    return features, dataset


def run_retrieval(options: RetrievalOptions, *, host: "PluginHost", recipe: Any = None) -> RetrievalRun:
    """Extract (or load) features once and rank them with every requested strategy."""
    from cavkit.devices import resolve_device
    from cavkit.evaluation.retrieval import evaluate_many, normalize_directions

    directions = normalize_directions(options.directions)
    device = resolve_device(options.device)
    requests = parse_strategies(options.strategies) or [default_strategy(recipe)]
    requests = expand_all(requests, host.registry.names("retrieval_strategy"))
    built = {r.label: build_strategy(r, host=host, recipe=recipe) for r in requests}  # bad names fail first
    started = time.perf_counter()
    features, dataset = load_features(options, host=host, device=device)
    extracted = time.perf_counter()
    if options.use_index:
        from cavkit.evaluation.index import evaluate_retrieval_index

        results = {
            label: evaluate_retrieval_index(
                features.audio, features.visual, strategy, directions=directions, top_k=max(options.top_k, 10)
            )
            for label, strategy in built.items()
        }
    else:
        results = evaluate_many(
            features.audio,
            features.visual,
            built,
            directions=directions,
            tie_mode=options.tie_mode,
            top_k=options.top_k,
            device=device,
        )
    finished = time.perf_counter()
    return RetrievalRun(features, results, dataset, extracted - started, finished - extracted)
