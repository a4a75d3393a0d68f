"""Our torch-free ONNX graph against sentence embeddings computed once with PyTorch + transformers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from switchyard.common.embedding.embedder import Embedder
from switchyard.common.embedding.fused_graph import build_fused_graph, quantised_node_names
from switchyard.common.embedding.model_files import ModelFiles, ensure_built, load
from switchyard.common.embedding.weights import locate_source, read_config, read_safetensors
from switchyard.common.errors import ConfigurationError

pytestmark = pytest.mark.unit
REFERENCE = json.loads((Path(__file__).parent / "reference_embeddings.json").read_text(encoding="utf-8"))


def _cosines(embedder: Embedder) -> np.ndarray:
    rows = REFERENCE["sentences"]
    ours = np.concatenate([embedder.embed([r["text"]]).vectors for r in rows])
    ref = np.array([r["embedding"] for r in rows], dtype=np.float32)
    return (ours * ref).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1))


def test_fp32_graph_reproduces_pytorch(model_files: ModelFiles) -> None:
    embedder = Embedder(model_files.fp32, model_files.tokenizer)
    cos = _cosines(embedder)
    short = [i for i, r in enumerate(REFERENCE["sentences"]) if r["tokens"] < 256]
    # prompts under 256 tokens are identical; the long one differs only in which tokens were kept
    assert cos[short].min() >= 0.999
    assert cos.min() >= 0.99


def test_int8_model_stays_close(model_files: ModelFiles) -> None:
    cos = _cosines(Embedder(model_files.int8, model_files.tokenizer))
    assert cos.mean() >= 0.99
    assert cos.min() >= 0.97
    assert model_files.manifest["int8_cosine_mean"] >= 0.99


def test_batched_equals_single_for_fp32(model_files: ModelFiles) -> None:
    embedder = Embedder(model_files.fp32, model_files.tokenizer)
    texts = [r["text"] for r in REFERENCE["sentences"]]
    batched = embedder.embed(texts).vectors
    single = np.concatenate([embedder.embed([t]).vectors for t in texts])
    assert np.abs(batched - single).max() < 1e-4
    assert np.allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-4)


def test_second_build_is_a_cheap_no_op_and_corruption_is_detected(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    files, built = ensure_built(model_files.folder.parent)
    assert not built and files.folder == model_files.folder
    copy = tmp_path / "m"
    copy.mkdir()
    for name in ("manifest.json", *model_files.manifest["files"]):
        (copy / name).symlink_to(model_files.folder / name)
    load(copy)
    (copy / "tokenizer.json").unlink()
    (copy / "tokenizer.json").write_text("{}")
    with pytest.raises(Exception, match="missing or corrupt"):
        load(copy)


def test_mixed_length_batches_match_one_by_one(model_files: ModelFiles) -> None:
    embedder = Embedder(model_files.fp32, model_files.tokenizer)
    texts = ["hi", "word " * 300, "a medium sized prompt about databases and indexes", "", "x " * 40]
    batched = embedder.embed(texts)
    single = np.concatenate([embedder.embed([t]).vectors for t in texts])
    assert np.abs(batched.vectors - single).max() < 1e-4
    assert batched.truncated == [False, True, False, False, False]


@pytest.mark.parametrize("precision", ["int8", "int8-l5"])
def test_an_int8_vector_does_not_depend_on_its_batch(model_files: ModelFiles, precision: str) -> None:
    # The int8 encoders quantise each activation tensor with one scale for the whole tensor: run in one
    # batch, these prompts moved each other's vectors (cosine down to ~0.98) and padding did too.
    embedder = Embedder(model_files.path(precision), model_files.tokenizer, max_tokens=48)
    texts = [
        "hi",
        "word " * 300,
        "Write a SQL query for the ten customers with the highest spend last quarter.",
        "",
        "x " * 40,
        "Résume ce texte en deux phrases, s'il te plaît.",
        "请用三句话总结这篇文章的主要内容。",
    ]
    alone = np.concatenate([embedder.embed([t]).vectors for t in texts])
    assert np.array_equal(embedder.embed(texts).vectors, alone)
    assert np.array_equal(embedder.embed(texts[::-1]).vectors, alone[::-1])
    assert np.array_equal(embedder.embed_many(texts * 3, batch_size=4).vectors, np.concatenate([alone] * 3))


def test_int8_fused_model_stays_close(model_files: ModelFiles) -> None:
    cos = _cosines(Embedder(model_files.path("int8-fused"), model_files.tokenizer))
    assert cos.mean() >= 0.99
    assert cos.min() >= 0.97
    assert model_files.manifest["int8_fused_cosine_mean"] >= 0.99
    assert model_files.manifest["int8_fused_cosine_min"] >= 0.97


def test_fused_graph_computes_what_the_plain_graph_does(model_files: ModelFiles, tmp_path: Path) -> None:
    """fp32 fused graph vs fp32 plain graph, in mixed-length batches: checks the packed QKV, the token
    counts the attention reads from EmbedLayerNormalization, and that padding changes nothing."""
    import onnx

    source = locate_source()
    model = build_fused_graph(read_safetensors(source.safetensors), read_config(source.config))
    onnx.save(model, str(tmp_path / "fused-fp32.onnx"))
    fused = Embedder(tmp_path / "fused-fp32.onnx", model_files.tokenizer)
    plain = Embedder(model_files.fp32, model_files.tokenizer)
    texts = [r["text"] for r in REFERENCE["sentences"]] + ["hi", "", "x " * 40]
    assert np.abs(fused.embed(texts).vectors - plain.embed(texts).vectors).max() < 1e-4
    single = np.concatenate([fused.embed([t]).vectors for t in texts])
    assert np.abs(fused.embed(texts).vectors - single).max() < 1e-4
    quantised = quantised_node_names(model)
    assert len(quantised) == 6 * 4 - 1  # every weight MatMul and Attention but layer 0's attention


def test_unknown_precision_is_refused(model_files: ModelFiles) -> None:
    assert model_files.path("int8-fused").is_file()
    with pytest.raises(ConfigurationError, match="precision"):
        model_files.path("int4")


def test_the_classifiers_encoder_is_the_first_five_layers_pooled(
    model_files: ModelFiles, tmp_path: Path
) -> None:
    """`model-int8-l5.onnx` is the plain graph cut after its fifth layer: its fp32 twin's output is the
    masked mean of the full graph's fifth-layer states, normalised; the int8 file stays close to it."""
    import onnx
    import onnxruntime as ort

    from switchyard.common.embedding.model_files import CLASSIFIER_LAYERS
    from switchyard.common.embedding.onnx_graph import build_graph

    source = locate_source()
    weights, config = read_safetensors(source.safetensors), read_config(source.config)
    short = build_graph(weights, config, layers=CLASSIFIER_LAYERS)
    onnx.save(short, str(tmp_path / "l5-fp32.onnx"))
    full = build_graph(weights, config)
    # the embeddings' LayerNorm, then two per layer: layer 5 ends with the 11th
    norms = [n.output[0] for n in full.graph.node if n.op_type == "LayerNormalization"]
    assert len(norms) == 1 + 2 * 6
    full.graph.output.append(onnx.helper.make_tensor_value_info(norms[2 * CLASSIFIER_LAYERS], 1, None))
    session = ort.InferenceSession(full.SerializeToString(), providers=["CPUExecutionProvider"])
    texts = [r["text"] for r in REFERENCE["sentences"]] + ["hi", "", "x " * 40]
    fp32 = Embedder(tmp_path / "l5-fp32.onnx", model_files.tokenizer)
    batch = fp32.tokenizer.encode(texts)
    _, states = session.run(None, {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask})
    mask = batch.attention_mask[:, :, None].astype(np.float32)
    pooled = (states * mask).sum(1) / mask.sum(1)
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
    ours = fp32.embed(texts).vectors
    assert np.abs(ours - pooled).max() < 1e-4
    assert np.abs(ours - Embedder(model_files.fp32, model_files.tokenizer).embed(texts).vectors).max() > 0.05

    int8 = Embedder(model_files.path("int8-l5"), model_files.tokenizer)
    single = np.concatenate([int8.embed([t]).vectors for t in texts])
    cos = (single * ours).sum(1) / np.linalg.norm(single, axis=1)
    assert cos.mean() >= 0.99 and cos.min() >= 0.97
    assert model_files.manifest["int8_l5_cosine_mean"] >= 0.99
    assert model_files.manifest["int8_l5_cosine_min"] >= 0.97
