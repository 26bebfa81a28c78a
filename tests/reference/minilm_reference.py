#!/usr/bin/env python3
"""Golden sentence embeddings of the registry's MiniLM (int8 ONNX + its tokenizer.json).

Each sentence is encoded alone (no padding) by the Python `tokenizers` package with
truncation at 256 tokens, run through Python onnxruntime, mean-pooled over its tokens
and L2-normalised. tl encodes the same sentences in padded batches in Rust, so the
comparison checks tokenization, padding, masking and pooling at once.

Usage: python3 tests/reference/minilm_reference.py "$TL_HOME/models/minilm-l6"
Produced with: Python 3.11.7, NumPy 2.4.6, tokenizers 0.23.3, onnxruntime 1.31.1.
"""

import json
import platform
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import tokenizers

SENTENCES = [
    "The film is a triumph of style over substance.",
    "A dull, plodding mess that never finds its footing.",
    "This drug worked wonders for my migraines within a week.",
    "I had terrible side effects and had to stop after two days.",
    "An astronaut floats above the Earth.",
    "Espresso is brewed by forcing hot water through finely-ground coffee.",
    "the the the the",
    "Ünïcödé, émojis 🙂 and CJK 漢字 are tokenised too.",
    "Short.",
    "What a waste of a talented cast!!!",
    "Mixed feelings: great acting, weak script, and an ending that drags on far too long.",
    "Numbers like 3.14159 and 2026-11-27 appear in reviews.",
    "A cat sits on the mat while the dog sleeps.",
    "Quantum chromodynamics describes the strong interaction.",
    "I can't believe it's not butter.",
    "Side effects: dizziness, nausea, and insomnia.",
    "The plot follows a young woman who returns to her hometown after her father's death.",
    "Highly recommended.",
    "Terrible. Avoid.",
    " ".join(["This very long review repeats itself to exceed the truncation limit."] * 30),
]


def main():
    model_dir = Path(sys.argv[1])
    tok = tokenizers.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.enable_truncation(max_length=256)
    tok.no_padding()
    sess = ort.InferenceSession(str(model_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    out = []
    lengths = []
    for s in SENTENCES:
        enc = tok.encode(s)
        ids = np.array([enc.ids], dtype=np.int64)
        mask = np.array([enc.attention_mask], dtype=np.int64)
        types = np.array([enc.type_ids], dtype=np.int64)
        (hidden,) = sess.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
        v = (hidden[0] * mask[0][:, None]).sum(0) / mask[0].sum()
        v = v / np.linalg.norm(v)
        out.append([float(f"{x:.8g}") for x in v])
        lengths.append(len(enc.ids))
    doc = {
        "provenance": {
            "script": "tests/reference/minilm_reference.py",
            "python": platform.python_version(),
            "numpy": np.__version__,
            "tokenizers": tokenizers.__version__,
            "onnxruntime": ort.__version__,
            "max_length": 256,
        },
        "sentences": SENTENCES,
        "token_counts": lengths,
        "embeddings": out,
    }
    with open("tests/golden/minilm_reference.json", "w") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print("token counts", lengths, file=sys.stderr)


if __name__ == "__main__":
    main()
