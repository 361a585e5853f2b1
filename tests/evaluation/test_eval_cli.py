"""``cavkit eval retrieval`` on saved features: table, JSON, gallery, errors; strategies via the registry."""

from __future__ import annotations

import json

import pytest
import torch
from reference_metrics import classification_reference, knn_reference

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
    # diagonal_mean recomputed from the first 30 clips: S[i, j] = mean_k <a_ik, v_jk>; random features have
    # no ties, so an audio query is found at rank 1 when no other clip's visual side scores higher
    features = Features.load(str(features_file))
    sim = torch.einsum("ikd,jkd->ij", features.audio[:30], features.visual[:30]) / 3
    found_first = ((sim > sim.diag()[:, None]).sum(1) == 0).double().mean().item()
    assert data["results"]["diagonal_mean"]["audio"]["R1"] == pytest.approx(found_first)
    assert found_first > 10 / 30  # matched pairs with noise: far above chance (1/30)
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


def test_knn_from_saved_features(features_file, tmp_path):
    out = tmp_path / "knn.json"
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
            "--json",
            str(out),
        ]
    )
    assert result.exit_code == 0, result.stderr
    assert "knn k=5" in result.stdout
    knn = json.loads(out.read_text())["knn"]
    assert knn["leave_one_out"] is True and knn["samples"] == 40
    # the same clips vote for each other, but no clip for itself; both modalities: unit audio and visual
    # clip vectors side by side
    f = Features.load(str(features_file))
    unit = [torch.nn.functional.normalize(x.mean(dim=1), dim=-1) for x in (f.audio, f.visual)]
    vectors, labels = torch.cat(unit, dim=-1).numpy(), f.labels.numpy()
    scores = knn_reference(vectors, vectors, labels, k=5, temperature=0.07, leave_one_out=True)
    expected = classification_reference(scores, labels)
    for key, value in expected.items():
        assert knn[key] == pytest.approx(value, rel=1e-6), (key, knn, expected)
    # labels are unrelated to the embeddings: near chance (25 %)
    assert expected["accuracy"] < 0.6


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


class _FramePickPlugin:
    """A strategy with a parameter: compares one chosen frame (``frame``) of query and gallery."""

    @staticmethod
    def build(config, **context):
        def frame_pick(query, gallery):
            return query[:, config.frame] @ gallery[:, config.frame].T

        return frame_pick

    @hookimpl
    def cavkit_register_components(self, registry):
        import attrs

        from cavkit.config import at_least, param

        config = attrs.make_class(
            "FramePickConfig", {"frame": param(0, help="frame index", validator=at_least(0))}, frozen=True, kw_only=True
        )
        registry.add("retrieval_strategy", "frame_pick_with_a_long_name", _FramePickPlugin.build, config)


def _r1(scores: torch.Tensor) -> float:
    return float((scores.argmax(dim=1) == torch.arange(scores.shape[0])).float().mean())


def test_strategy_parameters_are_validated_and_applied(features_file, tmp_path):
    from cavkit.testing import plugin_host

    host = plugin_host(_FramePickPlugin())
    out = tmp_path / "r.json"
    name = "frame_pick_with_a_long_name"
    args = ["eval", "retrieval", "--features", str(features_file), "--directions", "a2v", "--json", str(out)]
    result = run_cli([*args, "--strategy", f"{name}:frame=2,{name}"], host=host)
    assert result.exit_code == 0, result.stderr
    data = json.loads(out.read_text())["results"]
    f = Features.load(str(features_file))
    assert data[f"{name}:frame=2"]["audio"]["R1"] == pytest.approx(_r1(f.audio[:, 2] @ f.visual[:, 2].T))
    assert data[name]["audio"]["R1"] == pytest.approx(_r1(f.audio[:, 0] @ f.visual[:, 0].T))
    assert data[name] != data[f"{name}:frame=2"]

    # the long label gets its own column: every row's direction starts where the header's does
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("strategy"))
    column = header.index("direction")
    rows = [line for line in lines if "audio->visual" in line]
    assert len(rows) == 2 and all(row.index("audio->visual") == column for row in rows)
    assert all(row[:column].rstrip() in (name, f"{name}:frame=2") for row in rows)

    typo = run_cli([*args, "--strategy", f"{name}:fram=2"], host=host)
    assert typo.exit_code == 2 and "unknown key 'fram'; did you mean 'frame'?" in typo.stderr
    assert f"--strategy {name}.fram" in typo.stderr and "Traceback" not in typo.stderr
    negative = run_cli([*args, "--strategy", f"{name}:frame=-1"], host=host)
    assert negative.exit_code == 2 and "must be >= 0, got -1" in negative.stderr
    orphan = run_cli([*args, "--strategy", "frame=2"], host=host)
    assert orphan.exit_code == 2 and "comes before any strategy name" in orphan.stderr


def test_parse_strategies_splits_names_and_parameters():
    from cavkit.errors import UsageError
    from cavkit.evaluation.retrieval_job import StrategyRequest, parse_strategies

    assert parse_strategies(["diagonal_mean,max", "pooled", "max"]) == [
        StrategyRequest(name="diagonal_mean"),
        StrategyRequest(name="max"),
        StrategyRequest(name="pooled"),
    ]
    assert parse_strategies(["plug/soft:temperature=0.1,top_k=3,pooled"]) == [
        StrategyRequest(name="plug/soft", params={"temperature": 0.1, "top_k": 3}),
        StrategyRequest(name="pooled"),
    ]
    with pytest.raises(UsageError, match="'top_k' is given twice"):
        parse_strategies(["soft:top_k=1,top_k=2"])
