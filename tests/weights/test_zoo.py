"""The built-in published entries: where they download from and what they load into (no network).

Every model configuration is built on the ``meta`` device (shapes only, no memory, no download) and
checked against the published layout: the state-dict key count the spec records, and the model the
checkpoint loader would infer from a file with those keys and shapes.
"""

from __future__ import annotations

import posixpath
import urllib.parse

import pytest
import torch

from cavkit.checkpoints import keys as K
from cavkit.checkpoints.infer import infer_model_node
from cavkit.checkpoints.build import build_model_node
from cavkit.testing import run_cli
from cavkit.weights.zoo import PUBLISHED

WITH_URL = [entry for entry in PUBLISHED if entry.urls]


def _meta_model(config):
    with torch.device("meta"):
        return build_model_node(config).build()


def _shapes(model) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_every_built_in_entry_downloads_over_https_from_a_direct_link():
    assert [e.name for e in PUBLISHED if not e.urls] == []  # every published file has a recorded address
    for entry in WITH_URL:
        for url in entry.urls + entry.mirrors:
            parts = urllib.parse.urlsplit(url)
            assert parts.scheme == "https" and parts.netloc, f"{entry.name}: {url}"
        for url in entry.urls:
            parts = urllib.parse.urlsplit(url)
            if parts.netloc == "www.dropbox.com":
                # without dl=1 Dropbox answers with its preview page, not the file
                assert parts.query == "dl=1", f"{entry.name}: {url}"
                if entry.name != "in-initial":  # upstream saves ori_mae_11.pth as IN-initial.pth
                    assert posixpath.basename(parts.path) == entry.filename, entry.name
        assert entry.sha256 is None and entry.size is None  # nothing published: never invented
        assert entry.licence and entry.citation and entry.source and entry.notes


def test_names_and_addresses_are_distinct():
    names = [e.name for e in PUBLISHED]
    urls = [u for e in PUBLISHED for u in e.urls]
    assert len(set(names)) == len(names) and len(set(urls)) == len(urls)


@pytest.mark.parametrize("entry", WITH_URL, ids=lambda e: e.name)
def test_every_entry_loads_into_a_configuration_that_builds_with_the_published_layout(entry):
    assert entry.config is not None and entry.keys is not None
    model = _meta_model(entry.config)
    upstream = {K.cavkit_to_upstream(k): v for k, v in model.state_dict().items()}
    assert None not in upstream and len(upstream) == entry.keys
    # the model the loader infers from a file of this layout is the declared one, shape for shape
    inferred = infer_model_node(upstream, source=entry.name)
    assert inferred["type"] == entry.config["type"]
    if "mode" in entry.config:  # a classifier's mode is a choice of forward pass, not stored in the file
        inferred["mode"] = entry.config["mode"]
    assert _shapes(_meta_model(inferred)) == _shapes(model)


def test_the_listing_shows_addresses_mirrors_and_notes():
    result = run_cli(["weights", "list", "-v"])
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "https://www.dropbox.com/s/l5t5geufdy3qvnv/audio_model.21.pth?dl=1" in out
    assert "mirror (by hand): https://share.weiyun.com/vGfP1YZt" in out
    assert "batch 256, lambda_c 0.01" in out
    assert "recipe model: {type: classifier, num_classes: 309, mode: audioonly}" in out
    assert "no URL" not in out
