"""cavkit.testing catches components that break their kind's contract."""

from __future__ import annotations

import attrs
import pytest

from cavkit import hookimpl
from cavkit.config import param
from cavkit.testing import check_component, plugin_host

torch = pytest.importorskip("torch")


@attrs.frozen(kw_only=True)
class NoParams:
    pass


@attrs.frozen(kw_only=True)
class Ratio:
    ratio: float = param(0.75, help="fraction removed")


def good_retrieval(config, **_):
    return lambda q, g: torch.einsum("nkd,mkd->nm", q, g) / q.shape[1]


def transposed_retrieval(config, **_):
    return lambda q, g: torch.einsum("nkd,mkd->mn", q, g)


def batch_dependent_retrieval(config, **_):
    return lambda q, g: torch.einsum("nkd,mkd->nm", q, g) - torch.einsum("nkd,mkd->nm", q, g).mean(0)


def good_masker(config, **_):
    from cavkit.interfaces import Masked

    def mask(tokens, noise=None, *, grid=None):
        b, length, d = tokens.shape
        noise = torch.rand(b, length) if noise is None else noise
        keep = int(length * (1 - config.ratio))
        ids_shuffle = noise.argsort(1)
        ids_restore = ids_shuffle.argsort(1)
        kept = torch.gather(tokens, 1, ids_shuffle[:, :keep, None].expand(-1, -1, d))
        m = torch.ones(b, length)
        m[:, :keep] = 0
        return Masked(kept, torch.gather(m, 1, ids_restore), ids_restore)

    return mask


def inverted_mask_masker(config, **_):
    inner = good_masker(config)

    def mask(tokens, noise=None, *, grid=None):
        out = inner(tokens, noise, grid=grid)
        return type(out)(out.kept, 1 - out.mask, out.ids_restore)

    return mask


class Loss(torch.nn.Module):
    def __init__(self, reduce=True, detach=False):
        super().__init__()
        self.reduce, self.detach = reduce, detach

    def forward(self, batch, output):
        from cavkit.interfaces import ObjectiveOutput

        loss = (output.audio_global - output.visual_global).pow(2).mean(-1)
        loss = loss.mean() if self.reduce else loss
        return ObjectiveOutput(loss.detach() if self.detach else loss, {"l": loss.detach().mean()})


class Broken:
    @hookimpl
    def cavkit_register_components(self, registry):
        add = registry.add
        add("retrieval_strategy", "good", good_retrieval, NoParams)
        add("retrieval_strategy", "transposed", transposed_retrieval, NoParams)
        add("retrieval_strategy", "batch_dependent", batch_dependent_retrieval, NoParams)
        add("masker", "good_masker", good_masker, Ratio)
        add("masker", "inverted", inverted_mask_masker, Ratio)
        add("objective", "good_loss", lambda c, **_: Loss(), NoParams)
        add("objective", "vector_loss", lambda c, **_: Loss(reduce=False), NoParams)
        add("objective", "detached_loss", lambda c, **_: Loss(detach=True), NoParams)
        add("objective", "dict_loss", lambda c, **_: (lambda batch, output: {"loss": 0.0}), NoParams)


@pytest.fixture(scope="module")
def host():
    return plugin_host(Broken(), strict=False)


@pytest.mark.parametrize(("kind", "name"), [("retrieval_strategy", "good"), ("masker", "good_masker"),
                                            ("objective", "good_loss")])
def test_conforming_components_pass(host, kind, name):
    check_component(kind, name, host=host)


@pytest.mark.parametrize(("kind", "name", "message"), [
    ("retrieval_strategy", "transposed", r"'Broken/transposed' returned similarity of shape \[5, 3\], expected \[3, 5\]"),
    ("retrieval_strategy", "batch_dependent", "depend on the other queries"),
    ("masker", "inverted", r"every sample must keep the same number of tokens \(8\)"),
    ("objective", "vector_loss", "loss should be a scalar"),
    ("objective", "detached_loss", "no gradient"),
    ("objective", "dict_loss", "should return cavkit.interfaces.ObjectiveOutput, got dict"),
])
def test_contract_violations_are_caught(host, kind, name, message):
    with pytest.raises(AssertionError, match=message):
        check_component(kind, name, host=host)


def test_masker_params_are_validated_and_used(host):
    result = check_component("masker", "good_masker", host=host, params={"ratio": 0.5})
    assert result.output.kept.shape == (2, 16, 6)
    with pytest.raises(AssertionError, match="ratio: expected a number"):
        check_component("masker", "good_masker", host=host, params={"ratio": "half"})


# -- maskers must derive their mask from the noise; parts are run, not only built ----------------------
def rng_masker(config):
    """Ignores the given noise: its mask follows torch's RNG, which a resume does not reproduce."""
    inner = good_masker(config)
    return lambda tokens, noise=None, *, grid=None: inner(tokens, None, grid=grid)


def batch_coupled_masker(config):
    """Keeps the lowest noise of the batch-mean noise: a sample's mask depends on the others."""
    inner = good_masker(config)
    return lambda tokens, noise=None, *, grid=None: inner(
        tokens, None if noise is None else noise - noise.mean(0, keepdim=True) * noise, grid=grid)


def bad_strip_encoder(config, *, embed_dim):
    from cavkit.models.encoder import CAVEncoder

    enc = CAVEncoder(embed_dim=embed_dim, depth=1, num_heads=2, global_tokens=True)
    enc.strip_global = lambda x: x  # forgets to drop the global token
    return enc


def wrong_unpatchify_tokenizer(config, *, embed_dim, audio_length, trainable_pos):
    from cavkit.models.tokenizers import AudioPatchTokenizer

    tok = AudioPatchTokenizer(embed_dim=embed_dim, audio_length=audio_length, trainable_pos=trainable_pos)
    tok.unpatchify = lambda patches: torch.zeros(patches.shape[0], 1, audio_length, 128)  # time rows: wrong layout
    return tok


class Parts:
    @hookimpl
    def cavkit_register_components(self, registry):
        registry.add("masker", "rng_masker", rng_masker, Ratio)
        registry.add("masker", "batch_coupled", batch_coupled_masker, Ratio)
        registry.add("encoder", "bad_strip", bad_strip_encoder, NoParams)
        registry.add("tokenizer", "wrong_unpatchify", wrong_unpatchify_tokenizer, NoParams)


@pytest.fixture(scope="module")
def parts_host():
    return plugin_host(Parts(), strict=False)


@pytest.mark.parametrize(("kind", "name", "message"), [
    ("masker", "rng_masker", "two calls with the same noise gave different masks"),
    ("masker", "batch_coupled", "depends on the other samples in the batch"),
    ("encoder", "bad_strip", r"output.joint has shape \[2, 10, 96\], expected \[2, 8, 96\]"),
    ("tokenizer", "wrong_unpatchify", r"unpatchify\(patchify\(x\)\) does not give x back as \[B,1,F,T\]"),
])
def test_part_contract_violations_are_caught(parts_host, kind, name, message):
    with pytest.raises(AssertionError, match=message):
        check_component(kind, name, host=parts_host)


def test_builtin_parts_are_run_with_the_model_context():
    enc = check_component("encoder", "sync_encoder", params={"depth": 1, "num_heads": 2})
    assert enc.output.joint.shape == (2, 8, 96) and enc.output.audio_global.shape == (2, 96)
    tok = check_component("tokenizer", "image_patch")
    assert tok.output.shape == (2, 4, 96)
    dec = check_component("decoder", "mae_decoder", params={"embed_dim": 8, "depth": 1, "num_heads": 2})
    assert dec.output[0].shape == (2, 8, 256) and dec.output[1].shape == (2, 4, 768)


def test_unknown_inputs_keys_and_misspelt_context_are_rejected():
    with pytest.raises(AssertionError, match=r"unknown inputs key\(s\) 'querry'; retrieval_strategy accepts 'query', 'gallery'"):
        check_component("retrieval_strategy", "mean", inputs={"querry": torch.zeros(1, 1, 2)})
    with pytest.raises(AssertionError, match=r"factory\(config, \*\*context\) failed .*embed_dm"):
        check_component("encoder", "cav_mae_encoder", params={"depth": 1}, context={"embed_dm": 16})
