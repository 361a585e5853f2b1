"""Simulate an audio/video offset on saved retrieval features.

Reads a features file written by ``cavkit eval retrieval --save-features`` (safetensors with
``audio`` and ``visual`` ``[N,K,D]``) and writes one in which each clip's sound leads its picture by
``--shift`` frames: audio frames ``s..K-1`` are paired with visual frames ``0..K-1-s`` (both sides
keep ``K - s`` frames; nothing is invented). Score it with
``cavkit eval retrieval --features OUT --strategy ...``.

    python plugins/cavkit-siglip/scripts/offset_features.py IN.safetensors OUT.safetensors --shift 1
"""

from __future__ import annotations

import argparse

from safetensors.torch import load_file, safe_open, save_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("--shift", type=int, default=1, help="frames by which the audio leads the picture")
    args = parser.parse_args()
    tensors = load_file(args.source)
    with safe_open(args.source, "pt") as f:
        metadata = f.metadata() or {}
    audio, visual = tensors["audio"], tensors["visual"]
    k, s = audio.shape[1], args.shift
    if not 0 <= s < k:
        parser.error(f"--shift must be between 0 and {k - 1} for clips of {k} frames")
    tensors["audio"] = audio[:, s:].contiguous()
    tensors["visual"] = visual[:, : k - s].contiguous()
    save_file(tensors, args.target, metadata=metadata)
    print(f"{args.target}: {audio.shape[0]} clips, audio leads video by {s} frame(s), {k - s} frames each")


if __name__ == "__main__":
    main()
