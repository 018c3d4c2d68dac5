"""int8 ONNX graphs of an fp32 export, one per :data:`distill.backends.onnx_support.INT8_RECIPES`
recipe: onnxruntime's dynamic quantization, or weight-only int8 in onnxruntime's ``MatMulNBits``.

The weight-only graph is written here because onnxruntime's own writer of these nodes
(``onnxruntime.quantization.matmul_nbits_quantizer``) needs the ``onnx_ir`` package, which nothing
else in distill uses; the layout is onnxruntime's contrib op spec, checked against the dequantized
weights in ``tests/backends/test_onnx_int8.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from distill.backends.onnx_support import Int8Recipe


def quantize(source: Path, out: Path, recipe: Int8Recipe, external: bool) -> None:
    """Write ``recipe``'s int8 graph of the fp32 ``source`` to ``out``; ``external``: with its
    weights in a data file beside it (optimum's ``model.onnx_data``, for graphs over protobuf's 2 GB)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if recipe.kind == "dynamic":
        quantize_dynamic(source, out, weight_type=QuantType.QInt8, use_external_data_format=external)
    else:
        weight_only(source, out, recipe.block_size, external)


def weight_only(source: Path, out: Path, block_size: int, external: bool) -> None:
    """Every MatMul by a constant 2-D weight becomes onnxruntime's ``MatMulNBits`` with 8-bit
    weights and ``accuracy_level`` 1 (fp32 compute); the rest of the graph (embedding lookup,
    attention, a head tied to the embedding through a Transpose) stays as it was."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    weights = {tensor.name: tensor for tensor in graph.initializer}
    nodes = []
    for node in graph.node:
        weight = weights.get(node.input[1]) if node.op_type == "MatMul" else None
        if weight is None or len(weight.dims) != 2:
            nodes.append(node)
            continue
        quantized, scales = int8_blocks(numpy_helper.to_array(weight), block_size)
        blob, scale = f"{node.output[0]}.int8", f"{node.output[0]}.scales"
        graph.initializer.extend([numpy_helper.from_array(quantized, blob), numpy_helper.from_array(scales, scale)])
        nodes.append(helper.make_node(
            "MatMulNBits", [node.input[0], blob, scale], list(node.output), name=node.name,
            domain="com.microsoft", K=weight.dims[0], N=weight.dims[1], bits=8, block_size=block_size,
            accuracy_level=1))
    graph.ClearField("node")
    graph.node.extend(nodes)
    used = {name for node in nodes for name in node.input}
    kept = [tensor for tensor in graph.initializer if tensor.name in used]
    graph.ClearField("initializer")
    graph.initializer.extend(kept)
    if all(opset.domain != "com.microsoft" for opset in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, str(out), save_as_external_data=external, location=f"{out.name}_data")


def int8_blocks(weight: Any, block_size: int) -> tuple[Any, Any]:
    """A (K, N) fp32 weight in MatMulNBits' 8-bit layout: uint8 (N, K blocks, block_size), each
    block symmetric (max |w| -> 127, shifted by the op's default zero point 128), and the fp32
    scales (N x K blocks). K is zero-padded to whole blocks."""
    import numpy as np

    rows, columns = weight.shape
    blocks = -(-rows // block_size)
    padded = np.zeros((blocks * block_size, columns), np.float32)
    padded[:rows] = weight
    grouped = padded.T.reshape(columns, blocks, block_size)
    scales = np.abs(grouped).max(-1) / 127
    scales[scales == 0] = 1.0  # an all-zero block: any scale gives zeros
    quantized = np.rint(grouped / scales[..., None]) + 128
    return quantized.astype(np.uint8), scales.astype(np.float32).reshape(-1)
