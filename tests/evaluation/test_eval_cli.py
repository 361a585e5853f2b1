"""``cavkit eval retrieval`` on saved features: table, JSON, gallery, errors; strategies via the registry."""

from __future__ import annotations

import json

import pytest
import torch

from cavkit import hookimpl
from cavkit.evaluation.features import Features
from cavkit.testing import check_component, run_cli

STRATEGY_NAMES = ["pooled", "diagonal_mean", "diagonal_max", "mean", "max"]


@pytest.fixture()
def features_file(tmp_path):
    g = torch.Generator().manual_seed(0)
    audio = torch.nn.functional.normalize(torch.randn(40, 3, 8, generator=g), dim=-1)
    visual = torch.nn.functional.normalize(audio + 0.5 * torch.randn(40, 3, 8, generator=g), dim=-1)
    labels = torch.nn.functional.one_hot(torch.arange(40) % 4, 4).float()
    path = tmp_path / "feats.safetensors"
    Features(audio, visual, labels, [f"clip{i}" for i in range(40)], "global").save(str(path))
    return path


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_registered_strategies_keep_the_contract(name):
    result = check_component("retrieval_strategy", name)
    assert result.output.dim() == 2


def test_features_round_trip(features_file):
    f = Features.load(str(features_file))
    assert f.audio.shape == (40, 3, 8) and f.labels.shape == (40, 4)
    assert f.clip_ids[3] == "clip3" and f.embedding == "global"


def test_eval_retrieval_prints_a_table_and_writes_json_and_gallery(features_file, tmp_path):
    out_json = tmp_path / "res" / "retrieval.json"
    gallery = tmp_path / "gallery.html"
    result = run_cli(
        [
            "eval",
            "retrieval",
            "--features",
            str(features_file),
            "--strategy",
            "diagonal_mean,max",
            "--strategy",
            "pooled",
            "--json",
            str(out_json),
            "--gallery",
            str(gallery),
            "--samples",
            "30",
        ]
    )
    assert result.exit_code == 0, result.stderr
    assert "audio->visual" in result.stdout and "visual->audio" in result.stdout
    data = json.loads(out_json.read_text())
    assert set(data["results"]) == {"diagonal_mean", "max", "pooled"}
    assert data["clips"] == 30
    r1 = data["results"]["diagonal_mean"]["audio"]["R1"]
    assert 0.3 < r1 <= 1.0  # matched pairs with noise: far above chance (1/30)
    page = gallery.read_text()
    assert page.count("<tr>") == 16 and "clip0" in page  # 8 queries x 2 directions
    png = tmp_path / "gallery.png"
    assert run_cli(["eval", "retrieval", "--features", str(features_file), "--gallery", str(png)]).exit_code == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_upstream_tie_mode_and_one_direction(features_file):
    result = run_cli(
        ["eval", "retrieval", "--features", str(features_file), "--directions", "v2a", "--tie-mode", "upstream"]
    )
    assert result.exit_code == 0, result.stderr
    assert "visual->audio" in result.stdout and "audio->visual" not in result.stdout


def test_user_errors_are_one_line_and_exit_2(features_file, tmp_path):
    missing = run_cli(["eval", "retrieval", "--features", str(tmp_path / "nope.safetensors")])
    assert missing.exit_code == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    unknown = run_cli(["eval", "retrieval", "--features", str(features_file), "--strategy", "diagonal_maen"])
    assert unknown.exit_code == 2 and "diagonal_mean" in unknown.stderr  # did-you-mean
    no_model = run_cli(["eval", "retrieval"])
    assert no_model.exit_code == 2 and "--checkpoint" in no_model.stderr


def test_knn_from_saved_features(features_file):
    result = run_cli(
        [
            "eval",
            "classify",
            "--knn",
            "5",
            "--features",
            str(features_file),
            "--train-features",
            str(features_file),
        ]
    )
    assert result.exit_code == 0, result.stderr
    assert "knn k=5" in result.stdout
    # labels are unrelated to the embeddings and a clip may not vote for itself: near chance (25 %)
    accuracy = float(result.stdout.splitlines()[-1].split()[4])
    assert accuracy < 60


class _FirstFramePlugin:
    """A throw-away third-party plugin: a strategy comparing only the first frames."""

    @staticmethod
    def build(config, **context):
        def first_frame(query, gallery):
            return query[:, 0] @ gallery[:, 0].T

        return first_frame

    @hookimpl
    def cavkit_register_components(self, registry):
        import attrs

        registry.add(
            "retrieval_strategy",
            "first_frame",
            _FirstFramePlugin.build,
            attrs.make_class("FirstFrameConfig", [], frozen=True),
        )


def test_a_third_party_strategy_plugs_in_through_the_registry(features_file, tmp_path):
    from cavkit.testing import plugin_host

    out = tmp_path / "r.json"
    result = run_cli(
        [
            "eval",
            "retrieval",
            "--features",
            str(features_file),
            "--strategy",
            "first_frame,diagonal_mean",
            "--json",
            str(out),
        ],
        host=plugin_host(_FirstFramePlugin()),
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(out.read_text())["results"]
    # not declared symmetric: the visual->audio matrix was computed by calling it with the sides swapped
    f = Features.load(str(features_file))
    s = f.visual[:, 0] @ f.audio[:, 0].T
    expected_r1 = float((s.argmax(dim=1) == torch.arange(40)).float().mean())
    assert data["first_frame"]["video"]["R1"] == pytest.approx(expected_r1)
    assert data["first_frame"] != data["diagonal_mean"]
