"""The all-MiniLM-L6-v2 sentence embedder on ONNX Runtime, shared by the classifier, the gateway's
semantic cache and the executor's local embedding model (`local/all-minilm-l6-v2`; the optional extra
`switchyard-common[embedding]`).

Modules: `weights` (the registry package's safetensors, read without torch), `onnx_graph` (the BERT graph
built with `onnx`), `fused_graph` (the same with ONNX Runtime's fused operators), `model_files` (fp32,
int8 and int8-fused files built once, hash-checked), `tokens` (256-token head+tail tokenising) and
`embedder` (one ONNX Runtime session, a batch API). Importing this package imports none of them.
"""
