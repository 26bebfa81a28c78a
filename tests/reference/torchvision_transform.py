#!/usr/bin/env python3
"""Goldens of torchvision's own evaluation transform, for `crates/tl-features/tests/pillow_parity.rs`
and `crates/tl-runtime/tests/torchvision_parity.rs`.

The reference is torchvision's `Resize(floor(size / 0.875))` then `CenterCrop(size)` on PIL
images (bilinear, antialiased): the evaluation transform of the MobileNetV2 ImageNet weights
(`MobileNet_V2_Weights.IMAGENET1K_V1.transforms()`, resize 256, crop 224) and of timm's
`crop_pct = 0.875`. Nothing here re-implements it: every size, offset and pixel below comes
out of torchvision's functions.

Writes:
- `tests/golden/pillow/<photo>-<size>.png`: each sample photo (fetched by
  `cargo xtask fetch-models sample-photos`) resized and cropped at 224, 160, 112 (and 96 for
  chelsea and rocket). The JPEG goes through Pillow's decoder, which is also saved
  (`rocket-decoded.png`) so that resizing can be compared on identical pixels.
- `tests/golden/pillow/tiny<n>.png`, `tiny<n>-224.png`: 8x8, 16x16 and 28x28 grayscale
  patterns and their bilinear upscale to 224 (Pillow's `resize`, which torchvision calls).
- `tests/golden/torchvision_plans.json`: for images of many sizes (both orientations,
  upscaling, and every residue of `side - size` mod 4, where torchvision's
  round-half-to-even offset and a floored one differ exactly at 3), the resized size
  torchvision's `resize` produced and the crop offsets its `center_crop` took (read back
  from a crop of a tensor of flat indices).
- `tests/golden/torchvision_mobilenet_v2.json`: for each sample photo file, the top-5
  ImageNet classes and probabilities of torchvision's MobileNetV2 with the registry's
  weights (`mobilenet_v2-b0353104.pth`, IMAGENET1K_V1) through
  `MobileNet_V2_Weights.IMAGENET1K_V1.transforms()`, decoding included.

Usage (in a virtual environment with the versions below; never in CI):
    python3 -m venv /tmp/tv && /tmp/tv/bin/pip install torchvision==0.29.2 pillow==13.0.0
    /tmp/tv/bin/python tests/reference/torchvision_transform.py \
        "$TL_HOME/assets/sample-photos" "$TL_HOME/models/mobilenet-v2/mobilenet_v2-b0353104.pth"

Produced with: Python 3.11.7, torch 2.15.0+cu132 (PyPI's default wheel, run on the CPU), torchvision
0.29.2+cu132, Pillow 13.0.0
(see "provenance" in the JSON files).
"""

import json
import math
import platform
import sys
from pathlib import Path

import PIL
import torch
import torchvision
from PIL import Image
from torchvision import transforms
from torchvision.transforms import functional as F

GOLDEN = Path("tests/golden")
PHOTOS = ["chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "camera.png"]


def provenance():
    return {
        "script": "tests/reference/torchvision_transform.py",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "pillow": PIL.__version__,
    }


def resize_size(size):
    # The ImageNet recipe's ratio, as tl's contracts state it (crop_fraction 0.875).
    return math.floor(size / 0.875 + 1e-9)


def eval_transform(size):
    return transforms.Compose(
        [
            transforms.Resize(resize_size(size), interpolation=transforms.InterpolationMode.BILINEAR),
            transforms.CenterCrop(size),
        ]
    )


def plan(w, h, size):
    """The resized size and crop offsets torchvision takes for a w x h image."""
    resized = F.resize(Image.new("RGB", (w, h)), [resize_size(size)])
    rw, rh = resized.size
    index = torch.arange(rh * rw, dtype=torch.int64).reshape(1, rh, rw)
    first = int(F.center_crop(index, [size])[0, 0, 0])
    return {"width": w, "height": h, "size": size, "resized": [rw, rh], "left": first % rw, "top": first // rw}


def plans():
    cases = []
    for size in (224, 160, 112, 96, 80):
        t = resize_size(size)
        # Longer sides whose excess over the crop takes every residue mod 4, in both
        # orientations, from a shorter side that is downscaled (3/2 t) and upscaled (t/2).
        for short in (t * 3 // 2, t // 2 + 1):
            seen = set()
            long = short + 1
            while len(seen) < 4:
                excess = (long * t // short) - size
                if excess % 4 not in seen:
                    seen.add(excess % 4)
                    cases.append(plan(long, short, size))
                    cases.append(plan(short, long, size))
                long += 1
        cases.append(plan(t, t, size))
        cases.append(plan(8, 8, size))
    return cases


def photo_crops(photos):
    out = GOLDEN / "pillow"
    out.mkdir(parents=True, exist_ok=True)
    for name in PHOTOS:
        im = Image.open(photos / name).convert("RGB")
        stem = Path(name).stem
        if name.endswith(".jpg"):
            im.save(out / f"{stem}-decoded.png")
        for size in (224, 160, 112) + ((96,) if name in ("chelsea.png", "rocket.jpg") else ()):
            eval_transform(size)(im).save(out / f"{stem}-{size}.png")
    for n in (8, 16, 28):
        tiny = Image.new("L", (n, n))
        tiny.putdata([(x * 37 + y * 91) % 256 for y in range(n) for x in range(n)])
        tiny.save(out / f"tiny{n}.png")
        tiny.convert("RGB").resize((224, 224), Image.BILINEAR).save(out / f"tiny{n}-224.png")


def mobilenet(photos, weights):
    model = torchvision.models.mobilenet_v2()
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    model.eval()
    preprocess = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.transforms()
    rows = {}
    with torch.no_grad():
        for name in PHOTOS:
            x = preprocess(Image.open(photos / name).convert("RGB")).unsqueeze(0)
            p = torch.softmax(model(x), dim=1)[0]
            top = torch.topk(p, 5)
            rows[name] = {
                "top5": [int(i) for i in top.indices],
                "probabilities": [float(v) for v in top.values],
            }
    return rows


def main():
    photos, weights = Path(sys.argv[1]), Path(sys.argv[2])
    torch.set_num_threads(1)
    photo_crops(photos)
    with open(GOLDEN / "torchvision_plans.json", "w") as f:
        json.dump({"provenance": provenance(), "cases": plans()}, f, indent=1)
        f.write("\n")
    with open(GOLDEN / "torchvision_mobilenet_v2.json", "w") as f:
        json.dump({"provenance": provenance(), "photos": mobilenet(photos, weights)}, f, indent=1)
        f.write("\n")
    print(json.dumps(provenance()))


if __name__ == "__main__":
    main()
