"""Comparing a replay with the published trajectory: per-step table, first divergence, final weights.

Quantities per step, in the order a divergence is looked for: the learning rate of every group
(relative 1e-9: a schedule is exact arithmetic), the loss terms the fixture records (``loss``,
``loss_mae``, ``loss_mae_a``, ``loss_mae_v``, ``loss_c``; relative ``loss_rtol``), then ``c_acc``
(exactly); after each epoch the validation loss where the fixture records it (``result_csv``
``eval_total`` or ``val_losses``; relative ``loss_rtol``). ``loss_mae`` and ``loss_c`` are weighted upstream, so cavkit's objective losses are
multiplied by the recipe's weights. Parameter norms (``trace.param_norm``) are shown as a
diagnostic, not judged. The final weights must agree within ``final_weights_atol``, and the
parameters the published optimiser never updated (``optimizer.not_updated_params``) must still hold
their initial values bit for bit.
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from cavkit.engine.train_step import objective_labels
from cavkit.verify.fixture import Trajectory
from cavkit.verify.replay import ReplayResult

LOSSES = ("loss", "loss_mae", "loss_mae_a", "loss_mae_v", "loss_c")
LR_RTOL = 1e-9


@attrs.define
class Divergence:
    step: int | None  # None: before training (targets) or after it (final weights)
    epoch: int | None
    quantity: str
    cavkit: float
    published: float
    detail: str

    def __str__(self) -> str:
        where = (f"at step {self.step} (epoch {self.epoch})" if self.step is not None
                 else f"at the validation after epoch {self.epoch}" if self.quantity.startswith("validation")
                 else "after training" if self.quantity.startswith("final") else "before training")
        values = "" if math.isnan(self.cavkit) else f"cavkit {self.cavkit:.8g}, published {self.published:.8g} "
        return f"first divergence {where}: {self.quantity}: {values}({self.detail})"


@attrs.define
class Report:
    rows: list[dict[str, Any]]
    columns: list[str]
    worst_loss_rel: float
    worst_loss_where: str
    final_max_abs: float
    final_worst_tensor: str
    divergence: Divergence | None
    tolerance: dict[str, Any]
    validation: list[dict[str, Any]] = attrs.Factory(list)

    @property
    def ok(self) -> bool:
        return self.divergence is None


def _rel(a: float, b: float) -> float:
    if a == b:
        return 0.0
    return abs(a - b) / abs(b) if b != 0 else math.inf


def cavkit_values(result: ReplayResult, row: dict[str, Any]) -> dict[str, float]:
    """The published quantities computed from one ``metrics.jsonl`` training row."""
    labels = objective_labels(result.recipe.objectives)
    by_type = {node.type: (label, float(node.weight)) for node, label in zip(result.recipe.objectives, labels)}
    out = {"loss": row["train/loss"]}
    if "mae" in by_type:
        label, weight = by_type["mae"]
        out.update(loss_mae=weight * row[f"train/loss/{label}"], loss_mae_a=row[f"train/{label}/mae_audio"],
                   loss_mae_v=row[f"train/{label}/mae_visual"])
    for kind in ("infonce", "sync_contrastive"):
        if kind in by_type:
            label, weight = by_type[kind]
            out.update(loss_c=weight * row[f"train/loss/{label}"], c_acc=row[f"train/{label}/c_acc"])
    return out


def published_validation(traj: Trajectory) -> list[float]:
    """The published validation loss (weighted total) after each epoch, where the fixture records it."""
    meta = traj.meta
    if traj.kind == "finetune" and meta.get("val_losses"):
        losses, epochs = meta["val_losses"], len(traj.order)
        per = len(losses) // epochs
        return [sum(losses[e * per:(e + 1) * per]) / per for e in range(epochs)] if per else []
    columns = meta.get("result_csv_columns") or []
    if "eval_total" in columns:
        return [row[columns.index("eval_total")] for row in meta.get("result_csv") or []]
    return []


def compare(traj: Trajectory, result: ReplayResult) -> Report:
    tol = traj.tolerance
    rtol, atol = float(tol["loss_rtol"]), float(tol["final_weights_atol"])
    first: Divergence | None = None
    if result.targets is not None:
        used, recorded = result.targets
        diff = float((used - recorded).abs().max())
        if diff != 0.0:
            first = Divergence(None, None, "training targets (label smoothing)", float(used.flatten()[0]),
                               float(recorded.flatten()[0]), f"max |diff| {diff:.3g}")
    present = [q for q in (*LOSSES, "c_acc") if q in traj.steps[0]]
    norms = traj.tensor("trace.param_norm") if traj.has("trace.param_norm") else None
    names = traj.meta.get("trace_param_names") or []
    rows, worst, worst_where = [], 0.0, "-"
    for s, (pub, row) in enumerate(zip(traj.steps, result.steps)):
        mine = cavkit_values(result, row)
        mine_lr, pub_lr = result.lrs[s], [float(x) for x in pub.get("lr", [])]
        epoch = pub.get("epoch")
        if pub_lr and first is None:
            if len(mine_lr) != len(pub_lr):
                first = Divergence(s, epoch, "lr groups", len(mine_lr), len(pub_lr), "number of parameter groups")
            else:
                for g, (m, p) in enumerate(zip(mine_lr, pub_lr)):
                    if _rel(m, p) > LR_RTOL:
                        first = Divergence(s, epoch, f"lr[{g}]", m, p, f"relative diff {_rel(m, p):.3g}")
                        break
        rels = {}
        for q in present:
            m, p = float(mine.get(q, 0.0)), float(pub[q])
            rels[q] = _rel(m, p)
            bad = m != p if q == "c_acc" else (rels[q] > rtol if p != 0 else abs(m) > rtol)
            if bad and first is None:
                rule = "must match exactly" if q == "c_acc" else f"relative diff {rels[q]:.3g} > rtol {rtol:g}"
                first = Divergence(s, epoch, q, m, p, rule)
            if q != "c_acc" and rels[q] > worst:
                worst, worst_where = rels[q], f"step {s} {q}"
        norm_rel = None
        if norms is not None and s < len(result.param_norms):
            now = result.param_norms[s]
            norm_rel = max((_rel(now[n], float(norms[s, i])) for i, n in enumerate(names) if n in now), default=None)
        rows.append({"step": s, "epoch": epoch, "cavkit": mine, "published": pub, "lr": mine_lr, "pub_lr": pub_lr,
                     "worst_rel": max((v for q, v in rels.items() if q != "c_acc"), default=0.0), "norm_rel": norm_rel})
    validation = []
    for epoch, (pub, row) in enumerate(zip(published_validation(traj), result.epochs), start=1):
        mine = row.get("val/loss")
        if mine is None:
            continue
        rel = _rel(mine, pub)
        validation.append({"epoch": epoch, "cavkit": mine, "published": pub, "rel": rel})
        if first is None and rel > rtol:
            first = Divergence(None, epoch, "validation loss", mine, pub, f"relative diff {rel:.3g} > rtol {rtol:g}")
    if len(result.steps) < len(traj.steps):
        # a shortened replay (--set trainer.max_steps=N) is judged on the steps it ran
        return Report(rows, present, worst, worst_where, math.nan, "not compared: the replay stopped early", first, tol,
                      validation)
    final_abs, final_where = 0.0, "-"
    published_final = traj.state("final")
    for key, value in published_final.items():
        if key not in result.final:
            first = first or Divergence(None, None, f"final weights: {key}", math.nan, math.nan, "missing in cavkit's weights")
            continue
        diff = float((result.final[key].float() - value.float()).abs().max()) if value.numel() else 0.0
        if diff > final_abs:
            final_abs, final_where = diff, key
    init = traj.state("init")
    for key in traj.optimizer.get("not_updated_params", []):
        if first is None and key in result.final and not result.final[key].equal(init[key]):
            first = Divergence(None, None, f"final weights: {key}", math.nan, math.nan,
                               "changed, but it gets no gradient and the published loop never touched it")
    if first is None and final_abs > atol:
        first = Divergence(None, None, f"final weights: {final_where}", math.nan, math.nan,
                           f"max |cavkit - published| {final_abs:.3g} > atol {atol:g}")
    return Report(rows, present, worst, worst_where, final_abs, final_where, first, tol, validation)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.8f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3e}"
    return str(value)


def format_table(report: Report) -> str:
    """Two lines per step (cavkit, published), then the summary lines."""
    cols = report.columns
    head = f"{'step':>4} {'ep':>3} {'':9} " + " ".join(f"{c:>12}" for c in cols) + f" {'lr':>22} {'worst rel':>10} {'Δ‖θ‖ rel':>9}"
    lines = [head]
    for r in report.rows:
        lr = ",".join(f"{x:.3g}" for x in r["lr"])
        plr = ",".join(f"{x:.3g}" for x in r["pub_lr"])
        mine = " ".join(f"{_fmt(float(r['cavkit'].get(c, 0.0))):>12}" for c in cols)
        pub = " ".join(f"{_fmt(float(r['published'][c])):>12}" for c in cols)
        norm = "-" if r["norm_rel"] is None else f"{r['norm_rel']:.1e}"
        lines.append(f"{r['step']:>4} {r['epoch']!s:>3} {'cavkit':9} {mine} {lr:>22} {r['worst_rel']:>10.1e} {norm:>9}")
        lines.append(f"{'':>4} {'':>3} {'published':9} {pub} {plr:>22}")
    for v in report.validation:
        lines.append(f"validation after epoch {v['epoch']}: loss cavkit {v['cavkit']:.8f}, published {v['published']:.8f} "
                     f"(relative diff {v['rel']:.1e})")
    tol = report.tolerance
    lines.append(f"worst per-step relative loss difference: {report.worst_loss_rel:.2e} ({report.worst_loss_where}); "
                 f"tolerance rtol {float(tol['loss_rtol']):g}, c_acc exact")
    if math.isnan(report.final_max_abs):
        lines.append(f"final weights: {report.final_worst_tensor} after {len(report.rows)} steps")
    else:
        lines.append(f"final weights: max |cavkit - published| = {report.final_max_abs:.2e} ({report.final_worst_tensor}); "
                     f"tolerance atol {float(tol['final_weights_atol']):g}")
    return "\n".join(lines)

