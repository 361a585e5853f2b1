"""Per-kind contract runs for :func:`cavkit.testing.check_component` (see :mod:`cavkit.interfaces`).

Each runner calls a built component on tiny synthetic inputs (or the caller's ``inputs``) and
raises ``AssertionError`` naming the component and the broken rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from cavkit.testing.synthetic import synthetic_model_output

def _finite(tensor: Any, what: str) -> None:
    import torch

    if not isinstance(tensor, torch.Tensor):
        raise AssertionError(f"{what} should be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.is_floating_point() and not torch.isfinite(tensor).all():
        raise AssertionError(f"{what} has non-finite values")


def _run_retrieval(strategy: Any, config: Any, inputs: dict, gen: Any, where: str, context: dict) -> Any:
    """``strategy(query [N,K,D], gallery [M,K,D]) -> [N,M]``, scoring each pair independently."""
    import torch
    import torch.nn.functional as F

    query = inputs.get("query", F.normalize(torch.randn(3, 4, 8, generator=gen), dim=-1))
    gallery = inputs.get("gallery", F.normalize(torch.randn(5, 4, 8, generator=gen), dim=-1))
    with torch.no_grad():
        sim = strategy(query, gallery)
        _finite(sim, f"{where} similarity")
        expected = (query.shape[0], gallery.shape[0])
        if tuple(sim.shape) != expected:
            raise AssertionError(f"{where} returned similarity of shape {list(sim.shape)}, expected {list(expected)}")
        part = strategy(query[:2], gallery)
        if not torch.allclose(part, sim[:2], atol=1e-5):
            raise AssertionError(f"{where}: a query's scores depend on the other queries in the batch")
    return sim


def _run_masker(masker: Any, config: Any, inputs: dict, gen: Any, where: str, context: dict) -> Any:
    """:class:`~cavkit.interfaces.Masker`: the MAE convention, and a mask that is a function of the
    noise alone, row by row (so that resuming or changing the device count keeps masks)."""
    import torch

    from cavkit.interfaces import Masked

    grid = tuple(inputs.get("grid", (4, 8)))
    tokens = inputs.get("tokens", torch.randn(2, grid[0] * grid[1], 6, generator=gen))
    b, length, dim = tokens.shape
    noise = inputs.get("noise", torch.rand(b, length, generator=gen))
    out = masker(tokens, None, grid=grid)
    _check_masked(out, tokens, where, Masked)
    given = masker(tokens, noise.clone(), grid=grid)
    _check_masked(given, tokens, where, Masked)
    torch.rand(7)  # move torch's RNG: a mask drawn from it instead of from the noise would now differ
    again = masker(tokens, noise.clone(), grid=grid)
    if not (torch.equal(given.mask, again.mask) and torch.equal(given.ids_restore, again.ids_restore)):
        raise AssertionError(
            f"{where}: two calls with the same noise gave different masks; given noise, the mask must "
            f"depend on the noise alone (resume and device count rely on it; see cavkit.interfaces.Masker)"
        )
    if b > 1:
        tail = masker(tokens[1:], noise[1:].clone(), grid=grid)
        if not torch.equal(tail.mask, given.mask[1:]):
            raise AssertionError(
                f"{where}: a sample's mask depends on the other samples in the batch; each rank masks only "
                f"its rows of the global noise (see cavkit.interfaces.Masker)"
            )
    return out


def _check_masked(out: Any, tokens: Any, where: str, masked_type: type) -> None:
    import torch

    b, length, dim = tokens.shape
    if not isinstance(out, masked_type):
        raise AssertionError(f"{where} should return cavkit.interfaces.Masked, got {type(out).__name__}")
    if tuple(out.mask.shape) != (b, length) or tuple(out.ids_restore.shape) != (b, length):
        raise AssertionError(f"{where}: mask and ids_restore should be [{b}, {length}]")
    if not torch.all((out.mask == 0) | (out.mask == 1)):
        raise AssertionError(f"{where}: mask should hold only 0 (kept) and 1 (removed)")
    keep = out.kept.shape[1]
    if out.kept.shape != (b, keep, dim) or not torch.all(out.mask.sum(1) == length - keep):
        raise AssertionError(f"{where}: every sample must keep the same number of tokens ({keep})")
    ids_shuffle = torch.argsort(out.ids_restore, dim=1)
    if not torch.equal(torch.sort(ids_shuffle, dim=1).values, torch.arange(length).expand(b, -1)):
        raise AssertionError(f"{where}: ids_restore is not a permutation")
    expected = torch.gather(tokens, 1, ids_shuffle[:, :keep].unsqueeze(-1).expand(-1, -1, dim))
    if not torch.equal(out.kept, expected):
        raise AssertionError(f"{where}: kept tokens are not tokens[ids_shuffle[:, :keep]] (MAE convention)")
    if not torch.all(torch.gather(out.mask, 1, ids_shuffle[:, :keep]) == 0):
        raise AssertionError(f"{where}: kept tokens are marked as removed in the mask")


def _run_objective(objective: Any, config: Any, inputs: dict, gen: Any, where: str, context: dict) -> Any:
    """``objective(batch, ModelOutput) -> ObjectiveOutput`` with a finite scalar, differentiable loss."""
    import torch

    from cavkit.interfaces import ObjectiveOutput

    if "batch" in inputs or "output" in inputs:
        if not ("batch" in inputs and "output" in inputs):
            raise AssertionError(f"{where}: pass both inputs['batch'] and inputs['output'], or neither")
        batch, output = inputs["batch"], inputs["output"]
    else:
        batch, output = synthetic_model_output(generator=gen)
    result = objective(batch, output)
    if not isinstance(result, ObjectiveOutput):
        raise AssertionError(f"{where} should return cavkit.interfaces.ObjectiveOutput, got {type(result).__name__}")
    _finite(result.loss, f"{where} loss")
    if result.loss.dim() != 0:
        raise AssertionError(f"{where} loss should be a scalar, got shape {list(result.loss.shape)}")
    if not result.loss.requires_grad:
        raise AssertionError(f"{where} loss does not depend on the model output (no gradient)")
    result.loss.backward()
    for key, value in result.logs.items():
        if isinstance(value, torch.Tensor) and value.numel() != 1:
            raise AssertionError(f"{where} logs[{key!r}] should be a scalar")
        if isinstance(value, torch.Tensor):
            value = value.detach()
        if isinstance(value, int | float | torch.Tensor) and not math.isfinite(float(value)):
            raise AssertionError(f"{where} logs[{key!r}] is not finite")
    return result


def _run_model(model: Any, config: Any, inputs: dict, gen: Any, where: str, context: dict) -> Any:
    """``model(audio [B,T,128], image [B,3,H,W]) -> ModelOutput`` (and ``embed`` if present)."""
    import torch

    from cavkit.interfaces import Embeddings, ModelOutput

    t = getattr(config, "audio_length", 1024)
    h = getattr(config, "image_size", 224)
    audio = inputs.get("audio", torch.randn(2, t, 128, generator=gen))
    image = inputs.get("image", torch.randn(2, 3, h, h, generator=gen))
    model.eval()
    with torch.no_grad():
        out = model(audio, image)
        if not isinstance(out, ModelOutput):
            raise AssertionError(f"{where} should return cavkit.interfaces.ModelOutput, got {type(out).__name__}")
        produced = {f: v for f, v in vars(out).items() if f != "extras" and v is not None}
        if not produced:
            raise AssertionError(f"{where} returned a ModelOutput with every field None")
        for field_name, value in produced.items():
            _finite(value, f"{where} output.{field_name}")
            if value.shape[0] != audio.shape[0]:
                raise AssertionError(f"{where} output.{field_name} has batch size {value.shape[0]}, expected {audio.shape[0]}")
        if hasattr(model, "embed"):
            emb = model.embed(audio, image)
            if not isinstance(emb, Embeddings):
                raise AssertionError(f"{where}.embed should return cavkit.interfaces.Embeddings")
    return out


def _run_dataset(dataset: Any, config: Any, inputs: dict, gen: Any, where: str, context: dict) -> Any:
    """A dataset yields dicts with (at least) ``audio`` and ``image`` tensors."""
    if hasattr(dataset, "__len__") and len(dataset) == 0:
        raise AssertionError(f"{where} is empty")
    item = dataset[0] if hasattr(dataset, "__getitem__") else next(iter(dataset))
    if not isinstance(item, dict):
        raise AssertionError(f"{where} items should be dicts, got {type(item).__name__}")
    for key in ("audio", "image"):
        if key not in item:
            raise AssertionError(f"{where} item lacks {key!r} (has {', '.join(map(str, item))})")
        _finite(item[key], f"{where} item[{key!r}]")
    return item


def _shape(tensor: Any, expected: tuple[int, ...], what: str) -> None:
    _finite(tensor, what)
    if tuple(tensor.shape) != tuple(expected):
        raise AssertionError(f"{what} has shape {list(tensor.shape)}, expected {list(expected)}")


def _run_tokenizer(tokenizer: Any, config: Any, inputs: dict, gen: Any, where: str, context: dict) -> Any:
    """:class:`~cavkit.interfaces.Tokenizer`: tokens ``[B, rows·cols, D]``, targets ``[B, L, patch_dim]``
    and ``unpatchify(patchify(x))`` giving ``x`` back in the documented picture layout."""
    import torch

    dim = context.get("embed_dim")
    audio = "image_size" not in context
    if "input" in inputs:
        x = inputs["input"]
    elif audio:
        x = torch.randn(2, context.get("audio_length", 64), getattr(config, "num_mel_bins", 128), generator=gen)
    else:
        side = context["image_size"]
        x = torch.randn(2, getattr(config, "in_chans", 3), side, side, generator=gen)
    for attr in ("grid", "patch_dim", "patchify", "unpatchify"):
        if not hasattr(tokenizer, attr):
            raise AssertionError(f"{where} has no .{attr} (see cavkit.interfaces.Tokenizer)")
    rows, cols = tokenizer.grid
    b = x.shape[0]
    with torch.no_grad():
        tokens = tokenizer(x)
        _shape(tokens, (b, rows * cols, dim if dim is not None else tokens.shape[-1]), f"{where} tokens")
        target = tokenizer.patchify(x)
        _shape(target, (b, rows * cols, tokenizer.patch_dim), f"{where}.patchify(x)")
        picture = tokenizer.unpatchify(target)
    expected = x.transpose(1, 2).unsqueeze(1) if x.dim() == 3 else x
    if tuple(picture.shape) != tuple(expected.shape) or not torch.allclose(picture, expected):
        layout = "[B,1,F,T] (frequency rows, time columns)" if x.dim() == 3 else "[B,C,H,W]"
        raise AssertionError(f"{where}: unpatchify(patchify(x)) does not give x back as {layout}")
    return tokens


def _run_encoder(encoder: Any, config: Any, inputs: dict, gen: Any, where: str, context: dict) -> Any:
    """:class:`~cavkit.interfaces.Encoder`: the forward and the pieces the classifier calls."""
    import torch

    from cavkit.interfaces import EncoderOutput

    dim = context.get("embed_dim", getattr(encoder, "embed_dim", None))
    audio = inputs.get("audio", torch.randn(2, 5, dim, generator=gen))
    visual = inputs.get("visual", torch.randn(2, 3, dim, generator=gen))
    (b, na, dim), nv = audio.shape, visual.shape[1]
    for attr in ("embed_dim", "has_global_tokens", "stack_audio", "stack_visual", "strip_global", "joint",
                 "modality_pass"):
        if not hasattr(encoder, attr):
            raise AssertionError(f"{where} has no .{attr} (see cavkit.interfaces.Encoder)")
    if encoder.embed_dim != dim:
        raise AssertionError(f"{where}.embed_dim is {encoder.embed_dim}, expected {dim}")
    g = 1 if encoder.has_global_tokens else 0
    encoder.eval()
    with torch.no_grad():
        out = encoder(audio, visual)
        if not isinstance(out, EncoderOutput):
            raise AssertionError(f"{where} should return cavkit.interfaces.EncoderOutput, got {type(out).__name__}")
        _shape(out.joint, (b, na + nv, dim), f"{where} output.joint")
        _shape(out.audio, (b, na, dim), f"{where} output.audio")
        _shape(out.visual, (b, nv, dim), f"{where} output.visual")
        for name in ("audio_global", "visual_global"):
            value = getattr(out, name)
            if g:
                _shape(value, (b, dim), f"{where} output.{name}")
            elif value is not None:
                raise AssertionError(f"{where} output.{name} should be None: has_global_tokens is False")
        if encoder(audio, visual, joint=False).joint is not None:
            raise AssertionError(f"{where}: output.joint should be None with joint=False")
        stacked = encoder.stack_audio(audio)
        _shape(stacked, (b, g + na, dim), f"{where}.stack_audio(a)")
        _shape(encoder.stack_visual(visual), (b, g + nv, dim), f"{where}.stack_visual(v)")
        patches = encoder.strip_global(stacked)
        _shape(patches, (b, na, dim), f"{where}.strip_global(stack_audio(a))")
        _shape(encoder.joint(patches), (b, na, dim), f"{where}.joint(x)")
        _shape(encoder.modality_pass(stacked, "a"), (b, g + na, dim), f"{where}.modality_pass(x, 'a')")
    return out


def _run_decoder(decoder: Any, config: Any, inputs: dict, gen: Any, where: str, context: dict) -> Any:
    """:class:`~cavkit.interfaces.Decoder`: predictions ``[B, La, pa]`` and ``[B, Lv, pv]`` in token order."""
    import torch

    (ra, ca), (rv, cv) = context["audio_grid"], context["visual_grid"]
    la, lv = ra * ca, rv * cv
    b = 2
    ka = inputs.get("num_audio_kept", max(1, la // 4))
    ids_a = inputs.get("ids_restore_a", torch.stack([torch.randperm(la, generator=gen) for _ in range(b)]))
    ids_v = inputs.get("ids_restore_v", torch.stack([torch.randperm(lv, generator=gen) for _ in range(b)]))
    b = ids_a.shape[0]
    joint = inputs.get("joint", torch.randn(b, ka + max(1, lv // 4), context["encoder_dim"], generator=gen))
    decoder.eval()
    with torch.no_grad():
        out = decoder(joint, ids_a, ids_v, ka)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise AssertionError(f"{where} should return a (pred_audio, pred_visual) tuple, got {type(out).__name__}")
    _shape(out[0], (b, la, context["audio_patch_dim"]), f"{where} pred_audio")
    _shape(out[1], (b, lv, context["visual_patch_dim"]), f"{where} pred_visual")
    return out


def _run_aggregator(aggregator: Any, config: Any, inputs: dict, gen: Any, where: str, context: dict) -> Any:
    """Frame aggregator: ``[B,K,W] -> [B,out_dim]``, each clip independent of the others."""
    import torch

    frames = inputs.get("frames", torch.randn(3, 4, context.get("dim", 96), generator=gen))
    if hasattr(aggregator, "eval"):
        aggregator.eval()
    with torch.no_grad():
        out = aggregator(frames)
        _shape(out, (frames.shape[0], getattr(aggregator, "out_dim", out.shape[-1])), f"{where} output")
        if not torch.allclose(aggregator(frames[:2]), out[:2], atol=1e-5):
            raise AssertionError(f"{where}: a clip's feature depends on the other clips in the batch")
    return out


RunFn = Callable[[Any, Any, dict, Any, str, dict], Any]

#: kind -> (runner, the ``inputs`` keys it accepts).
RUNNERS: dict[str, tuple[RunFn, tuple[str, ...]]] = {
    "retrieval_strategy": (_run_retrieval, ("query", "gallery")),
    "masker": (_run_masker, ("tokens", "grid", "noise")),
    "objective": (_run_objective, ("batch", "output")),
    "model": (_run_model, ("audio", "image")),
    "dataset": (_run_dataset, ()),
    "tokenizer": (_run_tokenizer, ("input",)),
    "encoder": (_run_encoder, ("audio", "visual")),
    "decoder": (_run_decoder, ("joint", "ids_restore_a", "ids_restore_v", "num_audio_kept")),
    "aggregator": (_run_aggregator, ("frames",)),
}


def default_context(kind: str, factory: Callable[..., Any]) -> dict[str, Any]:
    """The factory context a model would pass, at a tiny size (:mod:`cavkit.interfaces` lists it).

    A tokenizer whose factory takes ``image_size`` gets the visual slot's context, any other the
    audio slot's.
    """
    import inspect

    if kind == "tokenizer":
        try:
            visual = "image_size" in inspect.signature(factory).parameters
        except (TypeError, ValueError):
            visual = False
        size = {"image_size": 32} if visual else {"audio_length": 64}
        return {"embed_dim": 96, **size, "trainable_pos": False}
    if kind == "encoder":
        return {"embed_dim": 96}
    if kind == "aggregator":
        return {"dim": 96}
    if kind == "decoder":
        return {"encoder_dim": 96, "audio_grid": (2, 4), "visual_grid": (2, 2), "audio_patch_dim": 256,
                "visual_patch_dim": 768}
    return {}
