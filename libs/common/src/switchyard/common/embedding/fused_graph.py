"""all-MiniLM-L6-v2 as an ONNX graph of ONNX Runtime's fused transformer operators (domain com.microsoft).

The same maths as `onnx_graph` (cosine 1.0000 to it), in far fewer nodes: `EmbedLayerNormalization`
(word + position + token-type 0, LayerNorm, and the per-row token count), per layer one `Attention` with
the Q, K and V projections packed into one [384, 1152] weight, `BiasGelu` (exact erf GELU) and two
residual LayerNorms, then masked mean pooling (one MatMul) and L2 normalisation.
Fewer nodes is less fixed cost per call; one packed QKV weight is one wider GEMM instead of three.
Quantised (`quantised_node_names`), `Attention` becomes `QAttention` and the dense MatMuls
`DynamicQuantizeMatMul`.

Inputs and output as `onnx_graph`: `input_ids`, `attention_mask` int64 [batch, sequence], right-padded
(the attention reads each row's token count, so padding must be at the end); `sentence_embedding`
float32 [batch, 384], unit length.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from switchyard.common.embedding.onnx_graph import graph_io

OPSET = 17
MS_DOMAIN = "com.microsoft"
PRODUCER = "switchyard-embedding-fused"


class _Builder:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.value_info: list[onnx.ValueInfoProto] = []
        self._n = 0

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def op(
        self, op_type: str, inputs: list[str], *, outputs: int = 1, ms: bool = False, **attrs: Any
    ) -> list[str]:
        self._n += 1
        names = [f"{op_type.lower()}_{self._n}" + (f"_{k}" if k else "") for k in range(outputs)]
        domain = MS_DOMAIN if ms else None
        self.nodes.append(
            helper.make_node(op_type, inputs, names, name=f"n{self._n}_{op_type}", domain=domain, **attrs)
        )
        return names

    def hidden_state(self, name: str, hidden: int) -> str:
        """Declares a float [batch, sequence, hidden] tensor: ONNX's shape inference cannot see through
        contrib operators, and the quantiser needs the type of each MatMul input."""
        self.value_info.append(
            helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", "sequence", hidden])
        )
        return name

    def residual_norm(
        self, y: str, residual: str, prefix: str, w: dict[str, np.ndarray], key: str, *, eps: float
    ) -> str:
        """LayerNorm(y + dense bias + residual). Deliberately not `SkipLayerNormalization`: its CPU kernel
        (ONNX Runtime 1.31) took 3x as long as Add + Add + LayerNormalization here (174 vs 58 us at
        64 x 384), so the embedder also turns off ORT's fusion into it. The bias Add is fused into the
        quantised MatMul (`DynamicQuantizeMatMul`) when the session loads."""
        gamma = self.const(f"{prefix}.ln.weight", _f32(w[f"{key}.LayerNorm.weight"]))
        beta = self.const(f"{prefix}.ln.bias", _f32(w[f"{key}.LayerNorm.bias"]))
        bias = self.const(f"{prefix}.dense.bias", _f32(w[f"{key}.dense.bias"]))
        total = self.op("Add", [self.op("Add", [y, bias])[0], residual])[0]
        return self.op("LayerNormalization", [total, gamma, beta], axis=-1, epsilon=eps)[0]


def _f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def build_fused_graph(weights: dict[str, np.ndarray], config: dict[str, Any]) -> onnx.ModelProto:
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    layers = int(config["num_hidden_layers"])
    eps = float(config["layer_norm_eps"])
    w = weights
    b = _Builder()

    def linear_t(key: str) -> np.ndarray:  # torch Linear stores [out, in]; MatMul wants [in, out]
        return _f32(w[f"{key}.weight"].T)

    # Embeddings. Token type is always 0, so its row is folded into the position table.
    ids32 = b.op("Cast", ["input_ids"], to=TensorProto.INT32)[0]
    mask32 = b.op("Cast", ["attention_mask"], to=TensorProto.INT32)[0]
    positions = _f32(
        w["embeddings.position_embeddings.weight"] + w["embeddings.token_type_embeddings.weight"][0]
    )
    x, mask_index = b.op(
        "EmbedLayerNormalization",
        [
            ids32,
            "",
            b.const("emb.word", _f32(w["embeddings.word_embeddings.weight"])),
            b.const("emb.position", positions),
            "",
            b.const("emb.ln.weight", _f32(w["embeddings.LayerNorm.weight"])),
            b.const("emb.ln.bias", _f32(w["embeddings.LayerNorm.bias"])),
            mask32,
        ],
        outputs=2,
        ms=True,
        epsilon=eps,
    )
    x = b.hidden_state(x, hidden)

    for i in range(layers):
        p = f"encoder.layer.{i}"
        a = f"{p}.attention.self"
        qkv_w = np.concatenate([linear_t(f"{a}.query"), linear_t(f"{a}.key"), linear_t(f"{a}.value")], axis=1)
        qkv_b = np.concatenate([w[f"{a}.query.bias"], w[f"{a}.key.bias"], w[f"{a}.value.bias"]])
        ctx = b.op(
            "Attention",
            [x, b.const(f"l{i}.qkv.weight", _f32(qkv_w)), b.const(f"l{i}.qkv.bias", _f32(qkv_b)), mask_index],
            ms=True,
            num_heads=heads,
        )[0]
        ctx = b.hidden_state(ctx, hidden)
        attn = b.op(
            "MatMul", [ctx, b.const(f"l{i}.attn_out.weight", linear_t(f"{p}.attention.output.dense"))]
        )[0]
        x = b.hidden_state(
            b.residual_norm(attn, x, f"l{i}.attn", w, f"{p}.attention.output", eps=eps), hidden
        )
        inter = b.op("MatMul", [x, b.const(f"l{i}.inter.weight", linear_t(f"{p}.intermediate.dense"))])[0]
        gelu = b.op(
            "BiasGelu", [inter, b.const(f"l{i}.inter.bias", _f32(w[f"{p}.intermediate.dense.bias"]))], ms=True
        )[0]
        gelu = b.hidden_state(gelu, int(config["intermediate_size"]))
        out = b.op("MatMul", [gelu, b.const(f"l{i}.out.weight", linear_t(f"{p}.output.dense"))])[0]
        x = b.hidden_state(b.residual_norm(out, x, f"l{i}.out", w, f"{p}.output", eps=eps), hidden)

    # Masked mean pooling as one batched MatMul ([b, 1, s] x [b, s, h]), then L2 normalisation.
    mask_f = b.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)[0]
    mask_row = b.op("Unsqueeze", [mask_f, b.const("c.axes1", np.array([1], dtype=np.int64))])[0]
    summed = b.op("MatMul", [mask_row, x])[0]  # [b, 1, h]
    counts = b.op(
        "ReduceSum", [mask_row, b.const("c.axes_last", np.array([-1], dtype=np.int64))], keepdims=1
    )[0]
    counts = b.op("Max", [counts, b.const("c.eps_pool", np.array(1e-9, dtype=np.float32))])[0]
    pooled = b.op("Div", [summed, counts])[0]
    norm = b.op("ReduceL2", [pooled], axes=[-1], keepdims=1)[0]  # axes: an attribute in opset 17
    norm = b.op("Max", [norm, b.const("c.eps_norm", np.array(1e-12, dtype=np.float32))])[0]
    unit = b.op("Div", [pooled, norm])[0]
    b.nodes.append(
        helper.make_node("Squeeze", [unit, "c.axes1"], ["sentence_embedding"], name="n_out_Squeeze")
    )

    graph = helper.make_graph(
        b.nodes,
        "all-MiniLM-L6-v2-fused",
        *graph_io(hidden),
        initializer=b.inits,
        value_info=b.value_info,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS_DOMAIN, 1)],
        producer_name=PRODUCER,
    )
    model.ir_version = 8
    onnx.checker.check_model(model)  # contrib ops have no ONNX schema to check shapes against
    return model


def quantised_node_names(model: onnx.ModelProto) -> list[str]:
    """The nodes to quantise to int8: every weight MatMul and Attention except layer 0's attention.

    Dynamic quantisation scales each activation tensor as a whole; the embedding LayerNorm's output has a
    few large dimensions, so quantising layer 0's QKV input costs the most accuracy (probe cosine to fp32:
    all int8 mean 0.9906, min 0.9708 on the empty prompt; layer 0's attention in fp32: 0.9916, min 0.9816)
    for ~4 % of the multiply-adds. The pooling MatMul multiplies two activations and stays fp32.
    """
    weights = {i.name for i in model.graph.initializer} - {"l0.qkv.weight"}
    return [
        n.name for n in model.graph.node if n.op_type in ("MatMul", "Attention") and n.input[1] in weights
    ]
