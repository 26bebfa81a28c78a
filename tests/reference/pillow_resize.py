#!/usr/bin/env python3
"""Golden outputs of Pillow's resize for `crates/tl-features/tests/pillow_parity.rs`.

For each sample photo (fetched by `cargo xtask fetch-models sample-photos`) and each
size, resize the shorter side to round(size / 0.875) with Image.BILINEAR (the other
side scaled and rounded), crop the central size x size square with integer offsets
((w - size) // 2, (h - size) // 2), and save it as a lossless PNG. Also a 28x28 and an
8x8 grayscale digit-like image upscaled to 224 (tiny inputs).

Usage: python3 tests/reference/pillow_resize.py "$TL_HOME/assets/sample-photos"
Produced with: Python 3.11.7, Pillow 13.0.0.
"""

import sys
from pathlib import Path

import PIL
from PIL import Image

OUT = Path("tests/golden/pillow")


def plan(w, h, size):
    target = round(size / 0.875)
    scale = target / min(w, h)
    rw, rh = max(round(w * scale), size), max(round(h * scale), size)
    return rw, rh, (rw - size) // 2, (rh - size) // 2


def main():
    photos = Path(sys.argv[1])
    OUT.mkdir(parents=True, exist_ok=True)
    for name in ["chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "camera.png"]:
        im = Image.open(photos / name).convert("RGB")
        for size in (224, 112):
            rw, rh, left, top = plan(*im.size, size)
            out = im.resize((rw, rh), Image.BILINEAR).crop((left, top, left + size, top + size))
            out.save(OUT / f"{Path(name).stem}-{size}.png")
    # Tiny inputs: a synthetic 8x8 and 28x28 grayscale pattern, upscaled.
    for n in (8, 28):
        tiny = Image.new("L", (n, n))
        tiny.putdata([(x * 37 + y * 91) % 256 for y in range(n) for x in range(n)])
        tiny.save(OUT / f"tiny{n}.png")
        tiny.convert("RGB").resize((224, 224), Image.BILINEAR).save(OUT / f"tiny{n}-224.png")
    print("Pillow", PIL.__version__)


if __name__ == "__main__":
    main()
