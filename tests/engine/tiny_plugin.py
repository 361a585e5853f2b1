"""A small test plugin: a model, objectives and a dataset that exercise the engine in milliseconds.

``engine_tiny_model``: linear patch embeddings, masking by the lowest noise (like the real maskers),
mean-pooled contrastive tokens, a linear reconstruction head and a classifier head ``head.*``.
``engine_tiny_data``: deterministic audio/image pairs per index plus random augmentation drawn from
the global torch/numpy RNGs (so the engine's per-item seeding is exercised), with sample weights.
"""

from __future__ import annotations

import attrs
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cavkit import hookimpl
from cavkit.config import param
from cavkit.nn.distributed import gather_with_grad
from cavkit.interfaces import ModelOutput, ObjectiveOutput


@attrs.frozen(kw_only=True)
class TinyModelConfig:
    dim: int = param(16)
    num_classes: int = param(4)
    ratio: float = param(0.5)


class TinyModel(nn.Module):
    """audio [B,16,8] -> 8 tokens of 16; image [B,3,8,8] -> 4 tokens of 48."""

    def __init__(self, config: TinyModelConfig):
        super().__init__()
        d = config.dim
        self.ratio = config.ratio
        self.embed_a = nn.Linear(16, d)
        self.embed_v = nn.Linear(48, d)
        self.mix = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))
        self.norm = nn.LayerNorm(d)
        self.pred_a = nn.Linear(d, 16)
        self.pred_v = nn.Linear(d, 48)
        self.head = nn.Linear(d, config.num_classes)

    @staticmethod
    def tokens(audio, image):
        a = audio.reshape(audio.shape[0], 8, 16)
        v = image.reshape(image.shape[0], 3, 2, 4, 2, 4).permute(0, 2, 4, 1, 3, 5).reshape(image.shape[0], 4, 48)
        return a, v

    def _mask(self, x, noise):
        b, n, _ = x.shape
        if noise is None:
            noise = torch.rand(b, n, device=x.device)
        keep = int(n * (1 - self.ratio))
        ids = noise.argsort(dim=1)
        mask = torch.ones(b, n, device=x.device)
        mask.scatter_(1, ids[:, :keep], 0.0)
        return x.gather(1, ids[:, :keep, None].expand(-1, -1, x.shape[-1])), mask

    def forward(self, audio, image, *, noise_audio=None, noise_visual=None):
        pa, pv = self.tokens(audio, image)
        ka, ma = self._mask(self.embed_a(pa), noise_audio)
        kv, mv = self._mask(self.embed_v(pv), noise_visual)
        ha, hv = self.norm(ka + self.mix(ka)), self.norm(kv + self.mix(kv))
        pooled = torch.cat([ha, hv], dim=1).mean(dim=1)
        return ModelOutput(
            pred_audio=self.pred_a(ha.mean(1, keepdim=True)).expand(-1, 8, -1),
            pred_visual=self.pred_v(hv.mean(1, keepdim=True)).expand(-1, 4, -1),
            target_audio=pa, target_visual=pv, mask_audio=ma, mask_visual=mv,
            audio_tokens=ha, visual_tokens=hv, logits=self.head(pooled),
        )

    def embed(self, audio, image):
        from cavkit.interfaces import Embeddings

        pa, pv = self.tokens(audio, image)
        a = self.norm(self.embed_a(pa)).mean(1)
        v = self.norm(self.embed_v(pv)).mean(1)
        return Embeddings(audio_pooled=a, visual_pooled=v)


@attrs.frozen(kw_only=True)
class TinyMSEConfig:
    pass


class TinyMSE(nn.Module):
    def forward(self, batch, output):
        la = ((output.pred_audio - output.target_audio) ** 2).mean(-1)
        lv = ((output.pred_visual - output.target_visual) ** 2).mean(-1)
        loss = (la * output.mask_audio).sum() / output.mask_audio.sum() + (lv * output.mask_visual).sum() / output.mask_visual.sum()
        return ObjectiveOutput(loss=loss, logs={"loss": loss.detach()})


@attrs.frozen(kw_only=True)
class TinyNCEConfig:
    negatives: str = param("local")
    learnable_temperature: bool = param(True)


class TinyNCE(nn.Module):
    def __init__(self, config: TinyNCEConfig):
        super().__init__()
        self.negatives = config.negatives
        self.log_scale = nn.Parameter(torch.tensor(2.0)) if config.learnable_temperature else None

    def forward(self, batch, output):
        a = F.normalize(output.audio_tokens.mean(1), dim=-1)
        v = F.normalize(output.visual_tokens.mean(1), dim=-1)
        a_all, offset = gather_with_grad(a) if self.negatives == "global" else (a, 0)
        scale = self.log_scale.exp() if self.log_scale is not None else 20.0
        logits = v @ a_all.T * scale
        labels = torch.arange(a.shape[0]) + offset
        loss = F.cross_entropy(logits, labels)
        return ObjectiveOutput(loss=loss, logs={"c_acc": (logits.argmax(1) == labels).float().mean()})


@attrs.frozen(kw_only=True)
class TinyCEConfig:
    pass


class TinyCE(nn.Module):
    def forward(self, batch, output):
        return ObjectiveOutput(loss=F.binary_cross_entropy_with_logits(output.logits, batch["label"]))


@attrs.frozen(kw_only=True)
class NaNAfterConfig:
    calls: int = param(3, help="return NaN from this many calls on")


class NaNAfter(nn.Module):
    def __init__(self, config: NaNAfterConfig):
        super().__init__()
        self.after = config.calls
        self.calls = 0

    def forward(self, batch, output):
        self.calls += 1
        value = output.audio_tokens.mean() * 0.0
        return ObjectiveOutput(loss=value + (float("nan") if self.calls > self.after else 0.0))


class NaNGradientAfter(NaNAfter):
    """A finite loss (0) whose gradient is NaN from call ``calls + 1`` on: sqrt'(0) = inf, times 0."""

    def forward(self, batch, output):
        self.calls += 1
        zero = (output.audio_tokens * 0.0).sum()
        return ObjectiveOutput(loss=torch.sqrt(zero) if self.calls > self.after else zero)


@attrs.frozen(kw_only=True)
class TinyDataConfig:
    num_items: int = param(24)
    num_classes: int = param(4)
    augment: bool = param(True)
    weighted: bool = param(False)


class TinyData(torch.utils.data.Dataset):
    def __init__(self, config: TinyDataConfig):
        self.config = config
        g = torch.Generator().manual_seed(1234)
        self.audio = torch.randn(config.num_items, 16, 8, generator=g)
        self.image = torch.randn(config.num_items, 3, 8, 8, generator=g)
        self.cls = torch.arange(config.num_items) % config.num_classes

    def __len__(self):
        return self.config.num_items

    def sample_weights(self):
        if not self.config.weighted:
            return None
        return torch.linspace(1.0, 3.0, self.config.num_items)

    def __getitem__(self, index):
        audio = self.audio[index].clone()
        image = self.image[index].clone()
        if self.config.augment:  # random like upstream's noise augmentation (torch + numpy RNGs)
            audio = audio + 0.1 * torch.rand(audio.shape) + float(np.random.rand())
            image = image + 0.05 * torch.randn(image.shape)
        label = F.one_hot(self.cls[index], self.config.num_classes).float()
        return {"audio": audio, "image": image, "label": label, "clip_id": f"clip{index}", "skipped": 0}


class TinyStream(torch.utils.data.IterableDataset):
    """The same items, streamed in a fixed per-epoch order (like tar shards), with a known length."""

    def __init__(self, config: TinyDataConfig):
        self.items = TinyData(attrs.evolve(config, augment=False))
        self.epoch = 0

    def __len__(self):
        return len(self.items)

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        order = torch.randperm(len(self.items), generator=torch.Generator().manual_seed(self.epoch)).tolist()
        if torch.distributed.is_initialized():
            order = order[torch.distributed.get_rank() :: torch.distributed.get_world_size()]
        for index in order:
            yield self.items[index]


@hookimpl
def cavkit_register_components(registry):
    registry.add("model", "engine_tiny_model", lambda c, **_: TinyModel(c), TinyModelConfig)
    registry.add("objective", "engine_tiny_mse", lambda c, **_: TinyMSE(), TinyMSEConfig)
    registry.add("objective", "engine_tiny_nce", lambda c, **_: TinyNCE(c), TinyNCEConfig)
    registry.add("objective", "engine_tiny_ce", lambda c, **_: TinyCE(), TinyCEConfig)
    registry.add("objective", "engine_nan_after", lambda c, **_: NaNAfter(c), NaNAfterConfig)
    registry.add("objective", "engine_nan_gradient_after", lambda c, **_: NaNGradientAfter(c), NaNAfterConfig)
    registry.add("dataset", "engine_tiny_data", lambda c, **_: TinyData(c), TinyDataConfig)
    registry.add("dataset", "engine_tiny_stream", lambda c, **_: TinyStream(c), TinyDataConfig)
