"""CAV-MAE and CAV-MAE Sync pretraining models (spec §2, §5), assembled from parts.

Both are :class:`CAVMAE`; Sync differs only in its parts' settings (416-frame audio segments, an
encoder with global and register tokens), so ``cav_mae`` and ``cav_mae_sync`` are two registered
configurations of one class. Losses are objectives (``mae``, ``infonce``, ``sync_contrastive``)
computed from the :class:`~cavkit.interfaces.ModelOutput` returned here.
"""

from __future__ import annotations

import attrs
import torch
from torch import nn

from cavkit.interfaces import Decoder, Embeddings, Encoder, Masker, ModelOutput, Tokenizer
from cavkit.models.slots import build_slot


class CAVMAE(nn.Module):
    """Tokenizers, maskers, encoder and decoder of a contrastive audio-visual MAE.

    ``forward(audio [B,T,128], image [B,3,H,W], *, noise_audio [B,La], noise_visual [B,Lv])`` masks,
    encodes and reconstructs; ``embed(audio, image)`` encodes unmasked inputs (upstream
    ``forward_feat``). Each part is an ``nn.Module`` meeting its :mod:`cavkit.interfaces` Protocol.
    """

    def __init__(
        self,
        *,
        audio_tokenizer: Tokenizer,
        visual_tokenizer: Tokenizer,
        audio_masker: Masker,
        visual_masker: Masker,
        encoder: Encoder,
        decoder: Decoder | None,
    ):
        super().__init__()
        self.audio_tokenizer = audio_tokenizer
        self.visual_tokenizer = visual_tokenizer
        self.audio_masker = audio_masker
        self.visual_masker = visual_masker
        self.encoder = encoder
        self.decoder = decoder
        if hasattr(encoder, "audio_patch_count"):  # offset of the published register slicing (encoder docstring)
            rows, cols = audio_tokenizer.grid
            encoder.audio_patch_count = rows * cols

    def forward(
        self,
        audio: torch.Tensor,
        image: torch.Tensor,
        *,
        noise_audio: torch.Tensor | None = None,
        noise_visual: torch.Tensor | None = None,
    ) -> ModelOutput:
        ta = self.audio_tokenizer(audio)
        tv = self.visual_tokenizer(image)
        ma = self.audio_masker(ta, noise_audio, grid=self.audio_tokenizer.grid)
        mv = self.visual_masker(tv, noise_visual, grid=self.visual_tokenizer.grid)
        enc = self.encoder(ma.kept, mv.kept)
        out = ModelOutput(
            mask_audio=ma.mask,
            mask_visual=mv.mask,
            audio_tokens=enc.audio,
            visual_tokens=enc.visual,
            audio_global=enc.audio_global,
            visual_global=enc.visual_global,
        )
        if self.decoder is not None:
            out.pred_audio, out.pred_visual = self.decoder(enc.joint, ma.ids_restore, mv.ids_restore, ma.kept.shape[1])
            out.target_audio = self.audio_tokenizer.patchify(audio)
            out.target_visual = self.visual_tokenizer.patchify(image)
        return out

    @torch.no_grad()
    def reconstruct(self, output: ModelOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """Predictions as pictures: audio ``[B, 1, F, T]``, image ``[B, 3, H, W]`` (target space)."""
        return self.audio_tokenizer.unpatchify(output.pred_audio), self.visual_tokenizer.unpatchify(output.pred_visual)

    def embed(self, audio: torch.Tensor | None, image: torch.Tensor | None) -> Embeddings:
        """Unmasked embeddings (either input may be ``None``): patch latents after ``norm_a``/``norm_v``,
        their means, and the global tokens when the encoder has them. No joint pass (spec §2.5, §5.4)."""
        return unmasked_embeddings(self, audio, image)


def unmasked_embeddings(model: nn.Module, audio: torch.Tensor | None, image: torch.Tensor | None) -> Embeddings:
    """:class:`Embeddings` of a model with ``audio_tokenizer``, ``visual_tokenizer`` and ``encoder``
    parts: the encoder without the joint pass, pooled by the mean over patch tokens."""
    ta = model.audio_tokenizer(audio) if audio is not None else None
    tv = model.visual_tokenizer(image) if image is not None else None
    enc = model.encoder(ta, tv, joint=False)
    return Embeddings(
        audio_patches=enc.audio,
        visual_patches=enc.visual,
        audio_pooled=enc.audio.mean(dim=1) if enc.audio is not None else None,
        visual_pooled=enc.visual.mean(dim=1) if enc.visual is not None else None,
        audio_global=enc.audio_global,
        visual_global=enc.visual_global,
    )


def build_audio_tokenizer(config) -> nn.Module:
    """A model config's audio tokenizer (default ``audio_patch``) at the model's width and fbank
    length, training its position embeddings as the config says (all models with audio use it)."""
    widths = {"embed_dim": config.embed_dim, "trainable_pos": config.trainable_pos}
    return build_slot(config.audio_tokenizer, "tokenizer", "audio_patch", audio_length=config.audio_length, **widths)


def build_parts(config, *, with_maskers: bool = True) -> dict[str, nn.Module]:
    """Build the tokenizers, encoder (and maskers) of a model config, passing the shared widths."""
    widths = {"embed_dim": config.embed_dim, "trainable_pos": config.trainable_pos}
    parts = {
        "audio_tokenizer": build_audio_tokenizer(config),
        "visual_tokenizer": build_slot(
            config.visual_tokenizer, "tokenizer", "image_patch", image_size=config.image_size, **widths
        ),
        "encoder": build_slot(config.encoder, "encoder", _default_encoder(config), embed_dim=config.embed_dim),
    }
    if with_maskers:
        parts["audio_masker"] = build_slot(config.audio_masker, "masker", "unstructured")
        parts["visual_masker"] = build_slot(config.visual_masker, "masker", "unstructured")
    return parts


def _default_encoder(config) -> str:
    """The encoder type a model config falls back to (``cav_mae_encoder`` or ``sync_encoder``)."""
    return attrs.fields_dict(type(config))["encoder"].metadata["default_type"]


def build_cav_mae(config) -> CAVMAE:
    """Factory for ``cav_mae`` and ``cav_mae_sync`` (they differ in their config defaults)."""
    parts = build_parts(config)
    at, vt = parts["audio_tokenizer"], parts["visual_tokenizer"]
    parts["decoder"] = build_slot(
        config.decoder,
        "decoder",
        "mae_decoder",
        encoder_dim=config.embed_dim,
        audio_grid=at.grid,
        visual_grid=vt.grid,
        audio_patch_dim=at.patch_dim,
        visual_patch_dim=vt.patch_dim,
    )
    return CAVMAE(**parts)
