"""Reading TensorBoard logs, plotting curves and laying out the HTML report."""

from __future__ import annotations

import io

from PIL import Image

from cavkit.pictures import report


def _write_logs(run_dir):
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(run_dir)) as w:
        for step in range(10):
            w.add_scalar("train/loss", 2.0 / (step + 1), step)
            w.add_scalar("train/lr", 1e-4, step)
    with SummaryWriter(str(run_dir / "val")) as w:
        w.add_scalar("loss", 0.9, 4)
        w.add_scalar("loss", 0.7, 9)


def test_read_scalars_merges_folders(tmp_path):
    _write_logs(tmp_path)
    scalars = report.read_scalars(str(tmp_path))
    assert set(scalars) == {"train/loss", "train/lr", "val/loss"}
    assert scalars["train/loss"].steps == list(range(10))
    assert abs(scalars["train/loss"].last - 0.2) < 1e-6
    assert scalars["val/loss"].steps == [4, 9] and abs(scalars["val/loss"].last - 0.7) < 1e-6


def test_read_scalars_from_memory_filesystem(tmp_path):
    import fsspec

    _write_logs(tmp_path)
    fs = fsspec.filesystem("memory")
    for path in tmp_path.rglob("*tfevents*"):
        fs.pipe(f"/tb-mem/{path.relative_to(tmp_path)}", path.read_bytes())
    scalars = report.read_scalars("memory://tb-mem")
    assert set(scalars) == {"train/loss", "train/lr", "val/loss"}


def test_curves_and_html(tmp_path):
    _write_logs(tmp_path)
    scalars = report.read_scalars(str(tmp_path))
    curves = report.plot_curves(scalars)
    assert set(curves) == {"train.png", "val.png"}
    train = Image.open(io.BytesIO(curves["train.png"]))
    assert train.size == (2 * 400, 300)  # two panels of 4x3 inches at 100 dpi
    page = report.render_html(
        report.ReportContent(
            title="run <x>",
            scalars=scalars,
            curves=curves,
            recipe_text="model: {type: cav_mae}",
            versions={"cavkit": "0.1.0", "torch": "2.11"},
            results={
                "retrieval": {
                    "audio_to_visual": {"R@1": 12.5, "R@5": 40.0},
                    "visual_to_audio": {"R@1": 10.0, "R@5": 33.0},
                }
            },
        )
    )
    assert page.count("data:image/png;base64,") == 2
    assert "run &lt;x&gt;" in page and "model: {type: cav_mae}" in page
    assert "<th>R@1</th>" in page and "<th>audio_to_visual</th>" in page and "12.5" in page
    assert "No pictures in the run directory" in page


def test_metric_table_layouts():
    cols, rows = report.metric_table({"a": 1, "b": 2.5})
    assert cols == ["value"] and rows == [("a", [1]), ("b", [2.5])]
    cols, rows = report.metric_table({"x": {"r1": 1, "deep": {"r5": 2}}, "y": {"r1": 3}})
    assert cols == ["r1", "deep/r5"] and rows == [("x", [1, 2]), ("y", [3, ""])]
