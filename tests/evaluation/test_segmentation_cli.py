"""`cavkit data synthetic-segmentation` and `cavkit eval segmentation`, through the real CLI.

Two tiny models (CAV-MAE and Sync) are trained for two steps by `cavkit train`; the set is written
by the synthetic generator. The command's numbers are checked against an independent computation
(model.embed, cosine, bilinear upsampling, scikit-learn AP), and each kind of bad input against
its message and exit code.
"""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cavkit.data.video import wav_bytes
from cavkit.testing import run_cli

SET = {"num_images": 6, "image_size": 32, "audio_length": 128, "num_frames": 4}

RECIPE = """
cavkit: 1
seed: 0
model:
  type: {model}
  audio_length: {audio_length}
  image_size: 32
  embed_dim: 32
  visual_tokenizer: {{type: image_patch, patch_size: 8}}
  encoder: {{depth: 1, num_heads: 2{extra}}}
  decoder: {{embed_dim: 32, depth: 1, num_heads: 2}}
objectives:
  - {{type: mae, weight: 1.0}}
  - {{type: {contrastive}, weight: 0.5}}
data:
  train: {{type: synthetic, layout: {layout}, mode: train, num_clips: 16, image_size: 32, audio_length: 128,
          segment_length: 32, num_frames: 4}}
trainer: {{max_steps: 2, batch_size: 8, log_every: 1, eval_every_epochs: 0, progress_bar: false}}
run: {{dir: "{run_dir}", keep_last: 1, tensorboard: false}}
"""

MODELS = {
    "sync": dict(
        model="cav_mae_sync",
        audio_length=32,
        extra=", num_register_tokens: 2",
        contrastive="sync_contrastive",
        layout="sync",
    ),
    "cav_mae": dict(model="cav_mae", audio_length=128, extra="", contrastive="infonce", layout="cav_mae"),
}


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("segmentation-models")
    out = {}
    for name, fields in MODELS.items():
        recipe = root / f"{name}.yaml"
        recipe.write_text(RECIPE.format(run_dir=root / name, **fields))
        result = run_cli(["train", str(recipe), "--device", "cpu"])
        assert result.exit_code == 0, result.stderr[-3000:]
        out[name] = str(root / name / "weights" / "final.safetensors")
    return out


@pytest.fixture(scope="module")
def seg_set(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("segmentation-set")
    args = ["data", "synthetic-segmentation", "-o", str(out)]
    for key, value in SET.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    result = run_cli(args)
    assert result.exit_code == 0, result.stderr
    return out


def test_the_set_holds_the_generators_middle_frames(seg_set):
    from cavkit.data.configs import SegmentationDataConfig, SyntheticDataConfig
    from cavkit.data.segmentation import SegmentationDataset
    from cavkit.data.synthetic import SyntheticDataset

    doc = json.loads((seg_set / "datafile.json").read_text())
    assert len(doc["data"]) == 6 and doc["fbank_mean"] == -6.4
    ours = SegmentationDataset(
        SegmentationDataConfig(datafile=str(seg_set / "datafile.json"), audio_length=32, image_size=32)
    )
    synth_cfg = {k: v for k, v in SET.items() if k != "num_images"}
    generator = SyntheticDataset(
        SyntheticDataConfig(layout="sync", mode="eval", split="test", num_clips=32, segment_length=32, **synth_cfg)
    )
    for i, entry in enumerate(doc["data"]):
        item = ours[i]
        index = int(entry["id"].split("-")[1])
        expected = generator[index]
        assert item["object_mask"].any()
        assert torch.equal(item["object_mask"], expected["object_mask"])
        assert torch.equal(item["image"], expected["image"])
        # the middle 32 rows are Sync's segment of the middle frame; only PCM16 rounding differs
        assert (item["audio"] - expected["audio"]).abs().max() < 0.1
    # a clip with the object hidden in its middle frame is passed over
    ids = [int(e["id"].split("-")[1]) for e in doc["data"]]
    skipped = sorted(set(range(ids[-1] + 1)) - set(ids))
    assert all(not generator[i]["object_mask"].any() for i in skipped)


def _independent_scores(weights_uri: str, datafile: str, audio_length: int, centre: bool, embedding: str):
    """mAP and the best mean IoU recomputed without cavkit's map or metric code."""
    metrics = pytest.importorskip("sklearn.metrics")
    from cavkit.api import load_model
    from cavkit.data.configs import SegmentationDataConfig
    from cavkit.data.segmentation import SegmentationDataset

    model = load_model(weights_uri).eval()
    data = SegmentationDataset(SegmentationDataConfig(datafile=datafile, audio_length=audio_length, image_size=32))
    items = [data[i] for i in range(len(data))]
    with torch.no_grad():
        embs = [model.embed(it["audio"][None], it["image"][None]) for it in items]
    audio = torch.cat([e.audio_global if embedding == "global" else e.audio_patches.mean(1) for e in embs])
    audio = F.normalize(audio, dim=-1)
    if centre:
        audio = audio - audio.mean(dim=0)
    aps, curves = [], []
    for k, (it, e) in enumerate(zip(items, embs)):
        patches = F.normalize(e.visual_patches[0], dim=-1)  # [16, D], a 4x4 grid
        grid = (patches @ F.normalize(audio[k], dim=0)).reshape(1, 1, 4, 4)
        up = F.interpolate(grid, size=tuple(it["object_mask"].shape), mode="bilinear", align_corners=False)[0, 0]
        mask = it["object_mask"].numpy().reshape(-1)
        aps.append(metrics.average_precision_score(mask, up.numpy().reshape(-1)))
        scaled = ((up - up.min()) / (up.max() - up.min())).double().numpy().reshape(-1)
        curves.append([((scaled >= t) & mask).sum() / ((scaled >= t) | mask).sum() for t in np.linspace(0, 1, 101)])
    return float(np.mean(aps)), float(np.max(np.mean(curves, axis=0)))


@pytest.mark.parametrize(
    "name, centre, embedding",
    [("sync", "audio", "global"), ("sync", "none", "pooled"), ("cav_mae", "audio", "pooled")],
)
def test_eval_segmentation_matches_an_independent_computation(weights, seg_set, tmp_path, name, centre, embedding):
    out = tmp_path / "scores.json"
    datafile = str(seg_set / "datafile.json")
    result = run_cli(
        [
            "eval",
            "segmentation",
            "--checkpoint",
            weights[name],
            "--datafile",
            datafile,
            "--centre",
            centre,
            "--embedding",
            embedding,
            "--device",
            "cpu",
            "--json",
            str(out),
            *(["--num-workers", "1"] if name == "cav_mae" else []),  # items decoded in a worker process
        ]
    )
    assert result.exit_code == 0, result.stderr[-3000:]
    assert "centre prior" in result.stdout and "mAP" in result.stdout and "mIoU" in result.stdout
    summary = json.loads(out.read_text())
    assert summary["model"]["images"] == 6 and summary["centre_prior"]["images"] == 6
    assert summary["embedding"] == embedding and summary["centre"] == centre
    mean_ap, miou = _independent_scores(
        weights[name], datafile, MODELS[name]["audio_length"], centre == "audio", embedding
    )
    assert summary["model"]["mAP"] == pytest.approx(mean_ap, abs=1e-5)
    assert summary["model"]["mIoU"] == pytest.approx(miou, abs=1e-5)
    printed = f"{summary['model']['mAP']:.3f}  {summary['model']['mIoU']:.3f}"
    assert printed in result.stdout


def _copy_set(seg_set: Path, tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / "set"
    shutil.copytree(seg_set, target)
    return target


def _eval(weights_uri: str, folder: Path, *extra: str):
    return run_cli(
        [
            "eval",
            "segmentation",
            "--checkpoint",
            weights_uri,
            "--datafile",
            str(folder / "datafile.json"),
            "--device",
            "cpu",
            *extra,
        ]
    )


def _first(folder: Path, key: str) -> Path:
    return folder / json.loads((folder / "datafile.json").read_text())["data"][0][key]


def test_a_mask_of_another_size_is_refused(weights, seg_set, tmp_path):
    folder = _copy_set(seg_set, tmp_path)
    mask = _first(folder, "mask")
    Image.open(mask).resize((16, 16), Image.NEAREST).save(mask)
    result = _eval(weights["sync"], folder)
    assert result.exit_code == 2
    assert str(mask) in result.stderr and "16x16" in result.stderr and "32x32" in result.stderr
    assert "resize it with nearest-neighbour" in result.stderr and "Traceback" not in result.stderr


def test_a_mask_that_is_not_binary_is_refused(weights, seg_set, tmp_path):
    folder = _copy_set(seg_set, tmp_path)
    mask = _first(folder, "mask")
    values = np.asarray(Image.open(mask)).copy()
    values[values > 0] = 200
    values[0, 0] = 17
    Image.fromarray(values).save(mask)
    result = _eval(weights["sync"], folder)
    assert result.exit_code == 2
    assert str(mask) in result.stderr and "not binary" in result.stderr and "0, 17, 200" in result.stderr
    assert "only 0 (background) and 255" in result.stderr


def test_audio_shorter_than_the_models_segment_is_refused_unless_padded(weights, seg_set, tmp_path):
    folder = _copy_set(seg_set, tmp_path)
    wav = _first(folder, "wav")
    with wave.open(str(wav), "rb") as reader:
        frames = reader.readframes(reader.getnframes())
    # 0.2 s: 18 fbank rows, the Sync model's segment is 32
    wav.write_bytes(wav_bytes(np.frombuffer(frames[: 2 * 3200], dtype="<i2")))
    result = _eval(weights["sync"], folder)
    assert result.exit_code == 2
    assert str(wav) in result.stderr and "18 fbank rows" in result.stderr and "32 rows" in result.stderr
    assert "--data pad_audio=true" in result.stderr
    padded = _eval(weights["sync"], folder, "--data", "pad_audio=true")
    assert padded.exit_code == 0, padded.stderr[-2000:]


def test_audio_centring_needs_two_images(weights, seg_set):
    result = _eval(weights["sync"], seg_set, "--samples", "1")
    assert result.exit_code == 2 and "2 or more images" in result.stderr
    assert _eval(weights["sync"], seg_set, "--samples", "1", "--centre", "none").exit_code == 0


def test_a_wide_image_and_its_mask_are_cropped_alike(tmp_path):
    """A 48x32 image: the model sees the centre 32x32 crop; the mask keeps the same square."""
    from cavkit.data.configs import SegmentationDataConfig
    from cavkit.data.segmentation import SegmentationDataset

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)).save(tmp_path / "img.png")
    mask = np.zeros((32, 48), dtype=np.uint8)
    mask[10:20, 5:30] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    (tmp_path / "a.wav").write_bytes(wav_bytes(rng.normal(0, 3000, 16000).astype("<i2")))
    entry = {"id": "wide", "image": "img.png", "mask": "mask.png", "wav": "a.wav"}
    (tmp_path / "data.json").write_text(json.dumps({"data": [entry]}))
    item = SegmentationDataset(
        SegmentationDataConfig(datafile=str(tmp_path / "data.json"), audio_length=32, image_size=16)
    )[0]
    assert item["image"].shape == (3, 16, 16) and item["audio"].shape == (32, 128)
    assert torch.equal(item["object_mask"], torch.from_numpy(mask[:, 8:40] > 0))
    # published normalisation without fbank_mean/fbank_std in the datafile; 1 s -> the middle 32 of 98 rows
    from cavkit.data.datasets import load_waveform
    from cavkit.data.fbank import kaldi_fbank

    full = kaldi_fbank(load_waveform("wide", str(tmp_path / "a.wav")))
    assert full.shape[0] == 98
    assert torch.allclose(item["audio"], (full[33:65] + 5.081) / 4.4849, atol=1e-6)


def test_the_registered_dataset_meets_the_dataset_contract(seg_set):
    from cavkit.testing import check_component

    params = {"datafile": str(seg_set / "datafile.json"), "audio_length": 32, "image_size": 32}
    check = check_component("dataset", "segmentation", params=params)
    assert check.output["object_mask"].shape == (32, 32) and check.output["audio"].shape == (32, 128)


def test_cavkit_localize_reads_the_segmentation_set(weights, seg_set, tmp_path):
    """The items carry object_mask, so `cavkit localize` scores them too (one frame per image)."""
    out = tmp_path / "loc"
    result = run_cli(
        [
            "localize",
            "--checkpoint",
            weights["sync"],
            "--datafile",
            str(seg_set / "datafile.json"),
            "--dataset-type",
            "segmentation",
            "--data",
            "audio_length=32",
            "--data",
            "image_size=32",
            "--num-clips",
            "6",
            "--score-only",
            "--out",
            str(out),
        ]
    )
    assert result.exit_code == 0, result.stderr[-3000:]
    scores = json.loads((out / "scores.json").read_text())
    assert scores["clips"] == 6 and scores["audio_centred"]["frames"] == 6
