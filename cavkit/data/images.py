"""Frame transforms (spec §6.2-6.4).

* Loading: Resize(short side, **bicubic**) -> CenterCrop -> ToTensor -> Normalize(ImageNet), as
  both published loaders do; prepared frames are already 224x224, so resize and crop are identities.
* Preparing: Resize(short side, **bilinear**) -> CenterCrop, then JPEG quality 75 (the published
  extractor). :func:`resize_center_crop` does it with PIL alone, so ``cavkit prepare`` workers need
  no torch; it computes the same sizes and offsets as torchvision.
"""

from __future__ import annotations

import io

from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageDecodeError(ValueError):
    """The bytes are not a decodable image."""


def decode_image(data: bytes) -> Image.Image:
    """RGB PIL image from encoded bytes; :class:`ImageDecodeError` if empty or corrupt."""
    if not data:
        raise ImageDecodeError("empty file")
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError...
        raise ImageDecodeError(f"undecodable image ({exc})") from exc
    return image.convert("RGB")


def resize_center_crop(image: Image.Image, size: int, resample: int = Image.BILINEAR) -> Image.Image:
    """Resize the short side to ``size`` then centre-crop ``size x size`` (torchvision's arithmetic)."""
    width, height = image.size
    if width <= height:
        new_w, new_h = size, int(size * height / width)
    else:
        new_w, new_h = int(size * width / height), size
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), resample)
    top = int(round((new_h - size) / 2.0))
    left = int(round((new_w - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def encode_jpeg(image: Image.Image, quality: int = 75) -> bytes:
    """JPEG bytes (PIL's default quality 75, as the published extractor saves)."""
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def eval_transform(size: int = 224):
    """The published loading transform: PIL image -> normalised ``[3,size,size]`` tensor."""
    import torchvision.transforms as T

    return T.Compose(
        [
            T.Resize(size, interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(size),
            T.ToTensor(),
            T.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
        ]
    )


def augment_transform(size: int = 224):
    """Sync's optional ``augmentation=True`` transform: RandomResizedCrop(scale (0.08,1), ratio (0.9,1.1)) + flip."""
    import torchvision.transforms as T

    return T.Compose(
        [
            T.RandomResizedCrop(size, scale=(0.08, 1.0), ratio=(0.9, 1.1)),
            T.RandomHorizontalFlip(0.5),
            T.ToTensor(),
            T.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
        ]
    )
