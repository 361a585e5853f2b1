"""What a model's inputs look like: the declaration that evaluation, pictures and exports read.

A model takes either one frame with the whole clip's fbank (CAV-MAE, spec §6.3: ``audio [T,128]``,
``image [3,H,W]``) or each frame with its time-aligned audio segment (CAV-MAE Sync, spec §6.4:
``audio [K,L,128]``, ``image [K,3,H,W]`` in retrieval mode). Commands that feed a loaded model pick
the dataset and its mode from this declaration, never from the model's name, so a plugin model
takes part by declaring its :class:`InputSpec`::

    class MyModel(torch.nn.Module):
        input_spec = InputSpec(layout="frame_segments", audio_length=416, image_size=224, global_tokens=True)

cavkit stores the declaration with the weights it writes (safetensors metadata ``inputs``) and in
its training checkpoints (the ``inputs`` entry of a ``.pt``, :mod:`cavkit.engine.state`);
:func:`cavkit.checkpoints.load.load_model` restores it. Checkpoints that store none (official
``.pth`` files, cavkit files from before the declaration was stored) get it derived from their
model config by :func:`derive_input_spec`.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import attrs

InputLayout = Literal["clip", "frame_segments"]
_LAYOUTS = ("clip", "frame_segments")


@attrs.frozen(kw_only=True)
class InputSpec:
    """A model's inputs.

    :ivar layout: ``clip``: one frame and the whole clip's fbank per example (CAV-MAE);
        ``frame_segments``: every frame paired with its own audio segment (CAV-MAE Sync).
    :ivar audio_length: fbank frames T of one audio input (the whole clip, or one segment).
    :ivar image_size: image side H = W in pixels.
    :ivar global_tokens: the encoder returns global tokens (``Embeddings.audio_global``) besides patches.
    :ivar num_frames: frames per clip the model was trained on, when known.
    """

    layout: InputLayout = attrs.field(validator=attrs.validators.in_(_LAYOUTS))
    audio_length: int = attrs.field(validator=attrs.validators.instance_of(int))
    image_size: int = attrs.field(validator=attrs.validators.instance_of(int))
    global_tokens: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    num_frames: int | None = attrs.field(default=None)

    @property
    def frame_segments(self) -> bool:
        """Whether every frame comes with its own audio segment (Sync data layout)."""
        return self.layout == "frame_segments"

    def to_json(self) -> str:
        """The declaration as stored in a checkpoint's metadata."""
        return json.dumps(attrs.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes | dict[str, Any]) -> "InputSpec":
        """Read a stored declaration.

        :raises ValueError: not JSON, or not an :class:`InputSpec` (unknown or missing keys, bad values).
        """
        data = json.loads(text) if isinstance(text, (str, bytes)) else text
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ValueError(str(exc)) from None


def dataset_type_for(spec: InputSpec) -> str:
    """The built-in datafile dataset whose items fit ``spec`` (``cav_mae_sync`` or ``cav_mae``)."""
    return "cav_mae_sync" if spec.frame_segments else "cav_mae"


def derive_input_spec(node: Any) -> InputSpec:
    """The inputs of a built-in model, from its validated recipe node (for checkpoints that store none).

    The built-in configurations declare them: a CAV-MAE Sync model config, or any model over the Sync
    encoder config, takes per-frame segments; every other model the whole clip. Global tokens and
    sizes are read from the config.

    :param node: a validated ``model:`` :class:`~cavkit.config.ComponentNode`.
    """
    from cavkit.models.configs import CAVMAESyncConfig, SyncEncoderConfig

    config = node.config
    encoder_node = getattr(config, "encoder", None)
    encoder = getattr(encoder_node, "config", None)
    segments = isinstance(config, CAVMAESyncConfig) or isinstance(encoder, SyncEncoderConfig)
    return InputSpec(
        layout="frame_segments" if segments else "clip",
        audio_length=int(getattr(config, "audio_length", 1024)),
        image_size=int(getattr(config, "image_size", 224)),
        global_tokens=bool(getattr(encoder, "global_tokens", False)),
    )


def input_spec_of(model: Any) -> InputSpec | None:
    """A loaded model's declared inputs: its ``input_spec`` (declared by the model class or restored
    from the checkpoint), else derived from the recipe node it was built from; ``None`` when neither
    exists (then the caller must be told the dataset type)."""
    spec = getattr(model, "input_spec", None)
    if isinstance(spec, InputSpec):
        return spec
    node = getattr(model, "cavkit_node", None)
    if node is not None:
        return derive_input_spec(node)
    return None


def input_metadata(model: Any, node: Any = None) -> dict[str, str]:
    """``{"inputs": <json>}`` for the metadata of a weights file cavkit writes (``{}`` when unknown).

    :param node: the model's validated recipe node, when ``model`` carries no ``cavkit_node``
        (a freshly built training model).
    """
    spec = getattr(model, "input_spec", None)
    if not isinstance(spec, InputSpec):
        node = node if node is not None else getattr(model, "cavkit_node", None)
        spec = derive_input_spec(node) if node is not None else None
    return {} if spec is None else {"inputs": spec.to_json()}
