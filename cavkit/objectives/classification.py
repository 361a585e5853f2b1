"""Classification objective on logits (spec §7.1): BCE-with-logits or soft-target cross-entropy."""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from cavkit.errors import UsageError
from cavkit.interfaces import ModelOutput, ObjectiveOutput


class ClassificationLoss(nn.Module):
    def __init__(self, loss: str = "bce"):
        super().__init__()
        self.loss = loss

    def forward(self, batch: dict, output: ModelOutput) -> ObjectiveOutput:
        if output.logits is None:
            raise UsageError("the classification objective needs a model that returns logits (the classifier)")
        if "label" not in batch:
            raise UsageError("the classification objective needs batch['label'] (the dataset has no labels)")
        logits, target = output.logits.float(), batch["label"].to(output.logits.device).float()
        if self.loss == "bce":
            loss = F.binary_cross_entropy_with_logits(logits, target)
        else:
            loss = F.cross_entropy(logits, target)
        return ObjectiveOutput(loss=loss, logs={"loss": loss.detach()})


def build_classification(config) -> ClassificationLoss:
    return ClassificationLoss(config.loss)
