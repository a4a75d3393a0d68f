"""The BERT encoder of all-MiniLM-L6-v2 as an ONNX graph, built with `onnx.helper` from numpy weights.

No torch: the graph is written out node by node (embeddings, 6 post-norm encoder layers, masked mean
pooling, L2 normalisation), so it computes exactly what sentence-transformers computes.
Inputs: `input_ids` and `attention_mask`, int64 [batch, sequence]. Output: `sentence_embedding`,
float32 [batch, 384], unit length.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
PRODUCER = "switchyard-classifier"  # kept after the move to common: the built files keep their bytes


class _Builder:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str | None = None, **attrs: Any) -> str:
        self._n += 1
        out = name or f"{op_type.lower()}_{self._n}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=f"n{self._n}_{op_type}", **attrs))
        return out

    def dense(self, x: str, prefix: str, w: dict[str, np.ndarray], key: str) -> str:
        # torch Linear stores weight as [out, in]; MatMul wants [in, out]
        weight = self.const(f"{prefix}.weight", np.ascontiguousarray(w[f"{key}.weight"].T.astype(np.float32)))
        bias = self.const(f"{prefix}.bias", w[f"{key}.bias"].astype(np.float32))
        return self.op("Add", [self.op("MatMul", [x, weight]), bias])

    def layer_norm(self, x: str, prefix: str, w: dict[str, np.ndarray], key: str, eps: float) -> str:
        scale = self.const(f"{prefix}.ln.weight", w[f"{key}.weight"].astype(np.float32))
        bias = self.const(f"{prefix}.ln.bias", w[f"{key}.bias"].astype(np.float32))
        return self.op("LayerNormalization", [x, scale, bias], axis=-1, epsilon=eps)


def build_graph(
    weights: dict[str, np.ndarray], config: dict[str, Any], *, layers: int | None = None
) -> onnx.ModelProto:
    """The encoder; with `layers`, only its first `layers` layers, pooled and normalised the same way."""
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    total = int(config["num_hidden_layers"])
    layers = total if layers is None else layers
    if not 1 <= layers <= total:
        raise ValueError(f"layers must be in 1..{total}, not {layers}")
    eps = float(config["layer_norm_eps"])
    head_dim = hidden // heads
    b = _Builder()

    # Shared constants.
    i64 = np.int64
    zero = b.const("c.zero", np.array([0], dtype=i64))
    one = b.const("c.one", np.array([1], dtype=i64))
    axis1 = b.const("c.axes1", np.array([1], dtype=i64))
    split_shape = b.const("c.split_shape", np.array([0, 0, heads, head_dim], dtype=i64))
    merge_shape = b.const("c.merge_shape", np.array([0, 0, hidden], dtype=i64))
    half = b.const("c.half", np.array(0.5, dtype=np.float32))
    f_one = b.const("c.f_one", np.array(1.0, dtype=np.float32))
    inv_sqrt2 = b.const("c.inv_sqrt2", np.array(1 / math.sqrt(2), dtype=np.float32))
    inv_sqrt_d = b.const("c.inv_sqrt_d", np.array(1 / math.sqrt(head_dim), dtype=np.float32))
    neg_big = b.const("c.neg_big", np.array(-10000.0, dtype=np.float32))
    eps_pool = b.const("c.eps_pool", np.array(1e-9, dtype=np.float32))
    eps_norm = b.const("c.eps_norm", np.array(1e-12, dtype=np.float32))

    # Embeddings: word + position[0:seq] + token type 0, then LayerNorm.
    word = b.const("emb.word", weights["embeddings.word_embeddings.weight"].astype(np.float32))
    pos = b.const("emb.position", weights["embeddings.position_embeddings.weight"].astype(np.float32))
    type0 = b.const("emb.type0", weights["embeddings.token_type_embeddings.weight"][0].astype(np.float32))
    seq_len = b.op(
        "Slice", [b.op("Shape", ["input_ids"]), one, b.const("c.two", np.array([2], dtype=i64)), zero]
    )
    positions = b.op("Slice", [pos, zero, seq_len, zero])
    x = b.op("Gather", [word, "input_ids"], axis=0)
    x = b.op("Add", [b.op("Add", [x, positions]), type0])
    x = b.layer_norm(x, "emb", weights, "embeddings.LayerNorm", eps)

    # Additive attention mask [batch, 1, 1, seq]: 0 where attended, -10000 on padding.
    mask_f = b.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    mask_bias = b.op("Mul", [b.op("Sub", [f_one, mask_f]), neg_big])
    mask_bias = b.op("Unsqueeze", [mask_bias, b.const("c.axes12", np.array([1, 2], dtype=i64))])

    for i in range(layers):
        p = f"encoder.layer.{i}"
        q = b.op(
            "Transpose",
            [b.op("Reshape", [b.dense(x, f"l{i}.q", weights, f"{p}.attention.self.query"), split_shape])],
            perm=[0, 2, 1, 3],
        )
        k = b.op(
            "Transpose",
            [b.op("Reshape", [b.dense(x, f"l{i}.k", weights, f"{p}.attention.self.key"), split_shape])],
            perm=[0, 2, 3, 1],
        )
        v = b.op(
            "Transpose",
            [b.op("Reshape", [b.dense(x, f"l{i}.v", weights, f"{p}.attention.self.value"), split_shape])],
            perm=[0, 2, 1, 3],
        )
        scores = b.op("Add", [b.op("Mul", [b.op("MatMul", [q, k]), inv_sqrt_d]), mask_bias])
        ctx = b.op("MatMul", [b.op("Softmax", [scores], axis=-1), v])
        ctx = b.op("Reshape", [b.op("Transpose", [ctx], perm=[0, 2, 1, 3]), merge_shape])
        attn = b.dense(ctx, f"l{i}.attn_out", weights, f"{p}.attention.output.dense")
        x = b.layer_norm(
            b.op("Add", [attn, x]), f"l{i}.attn", weights, f"{p}.attention.output.LayerNorm", eps
        )
        inter = b.dense(x, f"l{i}.inter", weights, f"{p}.intermediate.dense")
        # exact GELU: 0.5 * x * (1 + erf(x / sqrt 2))
        gelu = b.op(
            "Mul",
            [
                b.op("Mul", [inter, half]),
                b.op("Add", [b.op("Erf", [b.op("Mul", [inter, inv_sqrt2])]), f_one]),
            ],
        )
        out = b.dense(gelu, f"l{i}.out", weights, f"{p}.output.dense")
        x = b.layer_norm(b.op("Add", [out, x]), f"l{i}.out", weights, f"{p}.output.LayerNorm", eps)

    # Masked mean pooling, then L2 normalisation (sentence-transformers' Pooling + Normalize modules).
    mask3 = b.op("Unsqueeze", [mask_f, b.const("c.axes_last", np.array([-1], dtype=i64))])
    summed = b.op("ReduceSum", [b.op("Mul", [x, mask3]), axis1], keepdims=0)
    counts = b.op("Max", [b.op("ReduceSum", [mask3, axis1], keepdims=0), eps_pool])
    pooled = b.op("Div", [summed, counts])
    norm = b.op(
        "Max", [b.op("ReduceL2", [pooled], axes=[-1], keepdims=1), eps_norm]
    )  # axes: attr in opset 17
    b.op("Div", [pooled, norm], name="sentence_embedding")

    graph = helper.make_graph(
        b.nodes,
        "all-MiniLM-L6-v2" if layers == total else f"all-MiniLM-L6-v2, first {layers} layers",
        *graph_io(hidden),
        initializer=b.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name=PRODUCER)
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def graph_io(hidden: int) -> tuple[list[Any], list[Any]]:
    """The encoder's inputs (token ids and attention mask, [batch, sequence]) and its output (unit-length
    sentence embeddings, [batch, hidden]): the contract every build of the encoder keeps."""
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"]),
    ]
    return inputs, [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", hidden])]
