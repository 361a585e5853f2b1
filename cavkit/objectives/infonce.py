"""InfoNCE objectives: ``infonce`` on pooled patch latents and ``sync_contrastive`` on global tokens.

Upstream (spec §2.4): both sides L2-normalised, S = a·vᵀ / 0.05, S[i, j] compares audio i with
visual j, and the default single direction takes the softmax over audios for each visual column
(visual→audio). ``c_acc`` is the fraction of columns whose arg-max is the diagonal; with
``direction: both`` loss and ``c_acc`` are the means over the two directions (upstream ``bidirect_contrast``).

Negatives: ``local`` uses the batch on this device, like the published DataParallel runs (spec
§7.1, §10.2); ``global`` gathers the other side from every torch.distributed rank with gradients,
so each rank scores its own queries against the global batch (falls back to local when not
distributed).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cavkit.errors import UsageError
from cavkit.interfaces import ModelOutput, ObjectiveOutput
from cavkit.nn.distributed import gather_with_grad


def info_nce(
    audio: torch.Tensor,
    visual: torch.Tensor,
    *,
    logit_scale: torch.Tensor | float,
    direction: str,
    negatives: str = "local",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and accuracy for features ``[B, D]`` (normalised here). Returns ``(loss, c_acc)``."""
    a = F.normalize(audio.float(), dim=-1)
    v = F.normalize(visual.float(), dim=-1)
    b = a.shape[0]
    offset = 0
    a_all, v_all = a, v
    if negatives == "global":  # outside a multi-rank process group gather_with_grad returns (x, 0)
        a_all, offset = gather_with_grad(a)
        v_all, _ = gather_with_grad(v)
    labels = torch.arange(b, device=a.device) + offset
    losses, accs = [], []
    if direction in ("visual_to_audio", "both"):
        # each local visual against all audios: rows = visuals, softmax over audios
        logits = v @ a_all.T * logit_scale
        losses.append(F.cross_entropy(logits, labels))
        accs.append((logits.argmax(dim=1) == labels).float().mean())
    if direction in ("audio_to_visual", "both"):
        logits = a @ v_all.T * logit_scale
        losses.append(F.cross_entropy(logits, labels))
        accs.append((logits.argmax(dim=1) == labels).float().mean())
    # direction both: loss and c_acc are the means of the two directions, as upstream's bidirect_contrast
    return sum(losses) / len(losses), sum(accs) / len(accs)


class _Temperature(nn.Module):
    def __init__(self, temperature: float, learnable: bool):
        super().__init__()
        if learnable:
            self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))
        else:
            self.log_scale = None
            self.scale = 1.0 / temperature

    def logit_scale(self):
        return self.log_scale.exp() if self.log_scale is not None else self.scale


class InfoNCE(_Temperature):
    """InfoNCE between mean-pooled audio and visual patch latents (``output.audio_tokens``)."""

    def __init__(
        self,
        *,
        direction: str = "visual_to_audio",
        temperature: float = 0.05,
        learnable_temperature: bool = False,
        negatives: str = "local",
    ):
        super().__init__(temperature, learnable_temperature)
        self.direction = direction
        self.negatives = negatives

    def pair_loss(self, audio: torch.Tensor, visual: torch.Tensor):
        return info_nce(
            audio, visual, logit_scale=self.logit_scale(), direction=self.direction, negatives=self.negatives
        )

    def logs(self, loss, acc) -> dict:
        logs = {"loss": loss.detach(), "c_acc": acc.detach()}
        if self.log_scale is not None:
            logs["temperature"] = 1.0 / self.log_scale.detach().exp()
        return logs

    def forward(self, batch: dict, output: ModelOutput) -> ObjectiveOutput:
        if output.audio_tokens is None or output.visual_tokens is None:
            raise UsageError("the infonce objective needs audio_tokens and visual_tokens in the model output")
        loss, acc = self.pair_loss(output.audio_tokens.mean(dim=1), output.visual_tokens.mean(dim=1))
        return ObjectiveOutput(loss=loss, logs=self.logs(loss, acc))


class SyncContrastive(InfoNCE):
    """InfoNCE between the Sync global tokens; ``global_local`` averages it with the pooled-patch loss."""

    def __init__(self, *, global_local: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.global_local = global_local

    def forward(self, batch: dict, output: ModelOutput) -> ObjectiveOutput:
        if output.audio_global is None or output.visual_global is None:
            raise UsageError(
                "the sync_contrastive objective needs global tokens (an encoder with global_tokens: true); "
                "use the infonce objective for encoders without them"
            )
        loss, acc = self.pair_loss(output.audio_global, output.visual_global)
        logs = self.logs(loss, acc)
        if self.global_local:
            local, local_acc = self.pair_loss(output.audio_tokens.mean(dim=1), output.visual_tokens.mean(dim=1))
            logs.update(global_loss=loss.detach(), local_loss=local.detach(), local_c_acc=local_acc.detach())
            loss = (loss + local) / 2
            logs["loss"] = loss.detach()
        return ObjectiveOutput(loss=loss, logs=logs)


def _common(config) -> dict:
    return dict(
        direction=config.direction,
        temperature=config.temperature,
        learnable_temperature=config.learnable_temperature,
        negatives=config.negatives,
    )


def build_infonce(config) -> InfoNCE:
    return InfoNCE(**_common(config))


def build_sync_contrastive(config) -> SyncContrastive:
    return SyncContrastive(global_local=config.global_local, **_common(config))
