"""A classifier recipe's class count against its datasets' labels, checked before any step runs.

A ``model.num_classes`` that disagrees with the label file would otherwise surface as a shape error
deep inside the loss (or train a head whose extra outputs never see a positive). Two places ask:

* :func:`label_count_findings`, part of the preflight of ``cavkit train`` and ``cavkit recipe
  check --inputs``: counts the classes of each ``data.<role>.label_csv`` the preflight read (or a
  dataset's ``num_classes`` setting);
* :func:`check_label_count`, in the trainer once the datasets are built (covers class counts that
  only the built dataset knows, e.g. a shards folder's own ``labels.csv``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cavkit.errors import UsageError

ROLES = ("train", "val", "eval")


def mismatch(recipe: Any, role: str, have: int) -> tuple[str, str, str] | None:
    """``(where, problem, fix)`` when ``data.<role>`` has ``have`` classes and the model another count."""
    expected = getattr(recipe.model.config, "num_classes", None)
    if expected is None or have == expected:
        return None
    node = getattr(recipe.data, role)
    label_csv = getattr(node.config, "label_csv", None)
    fix = f"set model.num_classes: {have} (or --set model.num_classes={have}), or "
    if label_csv:
        return (
            f"data.{role}.label_csv",
            f"the label file {label_csv} lists {have} classes but model.num_classes is {expected}",
            fix + f"point data.{role}.label_csv at the label file of the model's {expected} classes",
        )
    return (
        f"data.{role}",
        f"the {node.type} dataset has {have} classes but model.num_classes is {expected}",
        fix + f"give the dataset {expected} classes",
    )


def label_count_findings(recipe: Any, label_tables: Mapping[str, Any]) -> list[Any]:
    """Preflight findings: every dataset whose label file (or ``num_classes``) disagrees with the model.

    :param label_tables: the label CSVs the preflight read, by URI: a
        :class:`~cavkit.data.datafile.LabelMap`, or the exception that stopped reading it. A label
        file that is missing or unreadable is left to the preflight's file checks.
    """
    from cavkit.engine.preflight import Finding

    if getattr(recipe.model.config, "num_classes", None) is None:
        return []
    findings = []
    for role in ROLES:
        node = getattr(recipe.data, role)
        if node is None:
            continue
        label_csv = getattr(node.config, "label_csv", None)
        have = getattr(node.config, "num_classes", None)
        if label_csv:
            have = getattr(label_tables.get(label_csv), "num_classes", None)
        found = mismatch(recipe, role, have) if isinstance(have, int) else None
        if found:
            findings.append(Finding(*found))
    return findings


def check_label_count(recipe: Any, datasets: Mapping[str, Any]) -> None:
    """Raise :class:`UsageError` when ``model.num_classes`` differs from a built dataset's class count.

    :param datasets: ``{role: built dataset or None}``; a dataset without ``num_classes`` (no
        labels) is not checked.
    """
    for role, dataset in datasets.items():
        have = getattr(dataset, "num_classes", None) if dataset is not None else None
        found = mismatch(recipe, role, have) if isinstance(have, int) else None
        if found:
            where, problem, fix = found
            raise UsageError(f"{where}: {problem}; {fix}")
