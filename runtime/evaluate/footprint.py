"""What a candidate weighs: bytes on disk, parameter count, and the precision it runs at, read
from the files without loading the model."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from distill.compiler.records.manifest import MANIFEST, Manifest


def size_bytes(kind: str, path: Path) -> int:
    """Bytes of the weights: hf *.safetensors; gguf the file; onnx *.onnx plus external data
    (``model.onnx_data`` and the like)."""
    if kind == "gguf":
        return path.stat().st_size
    pattern = "*.safetensors" if kind == "hf" else "*.onnx*"
    return sum(f.stat().st_size for f in path.glob(pattern) if f.is_file())


def params(kind: str, path: Path) -> int | None:
    """Parameter count from the safetensors headers, GGUF tensor infos or ONNX initializers;
    None when the files cannot be read that way."""
    try:
        if kind == "hf":
            return sum(_safetensors_elements(f) for f in sorted(path.glob("*.safetensors"))) or None
        if kind == "gguf":
            import gguf

            return sum(int(t.n_elements) for t in gguf.GGUFReader(path).tensors)
        if kind == "onnx":
            return _onnx_elements(path)
    except Exception:  # noqa: BLE001 - a count we cannot read is reported as None, not a failure
        return None
    return None


def _safetensors_elements(file: Path) -> int:
    """Elements of every tensor in a safetensors file, from its header (the weights stay on disk)."""
    from safetensors import safe_open

    with safe_open(str(file), framework="numpy") as weights:
        return sum(math.prod(weights.get_slice(name).get_shape()) for name in weights.keys())


def _onnx_elements(folder: Path) -> int | None:
    import onnx

    from distill.backends.onnx import model_file

    model = onnx.load(str(folder / model_file(folder)), load_external_data=False)
    return sum(math.prod(t.dims) for t in model.graph.initializer) or None


def precision(kind: str, path: Path) -> str:
    """An artifact's precision: gguf: the quant type (``model-Q4_K_M.gguf`` -> Q4_K_M, else the
    file's ``general.file_type``); onnx: int8 or float32 from the export manifest. (HF candidates
    run at the plan's dtype.)"""
    if kind == "onnx":
        manifest = path / MANIFEST
        quant = Manifest.read(manifest).quant if manifest.is_file() else None
        return "int8" if quant == "int8" else "float32"
    match = re.fullmatch(r"model-(.+)\.gguf", path.name)
    return match.group(1) if match else _gguf_file_type(path)


def _gguf_file_type(path: Path) -> str:
    try:
        import gguf

        field: Any = gguf.GGUFReader(path).fields["general.file_type"]
        return gguf.LlamaFileType(int(field.parts[field.data[0]][0])).name.removeprefix("MOSTLY_")
    except Exception:  # noqa: BLE001 - an unnamed type is still evaluated
        return "unknown"
