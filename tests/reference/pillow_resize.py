#!/usr/bin/env python3
"""Golden outputs of Pillow's resize for `crates/tl-features/tests/pillow_parity.rs`.

Twenty inputs. Each sample photo (fetched by `cargo xtask fetch-models sample-photos`)
at 224, 160 and 112 px, and chelsea and rocket also at 96 px: resize the shorter side
to floor(size / 0.875) with Image.BILINEAR (the longer to floor(long * that / short)),
crop the central size x size square at ((w - size) // 2, (h - size) // 2), save as PNG.
Also 8x8, 16x16 and 28x28 grayscale digit-like images upscaled to 224 (tiny inputs).

Usage: python3 tests/reference/pillow_resize.py "$TL_HOME/assets/sample-photos"
Produced with: Python 3.11.7, Pillow 13.0.0.
"""

import math
import sys
from pathlib import Path

import PIL
from PIL import Image

OUT = Path("tests/golden/pillow")


def plan(w, h, size):
    # Integer arithmetic, as torchvision's Resize/CenterCrop and timm: floor everywhere.
    target = math.floor(size / 0.875 + 1e-9)
    rw, rh = (target, h * target // w) if w <= h else (w * target // h, target)
    rw, rh = max(rw, size), max(rh, size)
    return rw, rh, (rw - size) // 2, (rh - size) // 2


def main():
    photos = Path(sys.argv[1])
    OUT.mkdir(parents=True, exist_ok=True)
    for name in ["chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "camera.png"]:
        im = Image.open(photos / name).convert("RGB")
        if name.endswith(".jpg"):
            # JPEG decoders differ by a level or two (IDCT rounding); the decoded pixels are
            # kept so that the resize is compared on identical input.
            im.save(OUT / f"{Path(name).stem}-decoded.png")
        for size in (224, 160, 112) + ((96,) if name in ("chelsea.png", "rocket.jpg") else ()):
            rw, rh, left, top = plan(*im.size, size)
            out = im.resize((rw, rh), Image.BILINEAR).crop((left, top, left + size, top + size))
            out.save(OUT / f"{Path(name).stem}-{size}.png")
    # Tiny inputs: a synthetic 8x8 and 28x28 grayscale pattern, upscaled.
    for n in (8, 16, 28):
        tiny = Image.new("L", (n, n))
        tiny.putdata([(x * 37 + y * 91) % 256 for y in range(n) for x in range(n)])
        tiny.save(OUT / f"tiny{n}.png")
        tiny.convert("RGB").resize((224, 224), Image.BILINEAR).save(OUT / f"tiny{n}-224.png")
    print("Pillow", PIL.__version__)


if __name__ == "__main__":
    main()
