"""``distill inspect``: what an artifact is, from its manifest, or from the file itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from distill.compiler.errors import UsageError

MANIFEST = "manifest.json"


def describe(path: Path) -> dict[str, Any]:
    """The artifact's manifest when it has one (a folder, or a file beside one); otherwise what
    the file says about itself (ONNX: opset, inputs, outputs, weights)."""
    folder = path if path.is_dir() else path.parent
    if (folder / MANIFEST).is_file():
        return json.loads((folder / MANIFEST).read_text("utf-8"))
    if path.is_file() and path.suffix == ".onnx":
        return _onnx_facts(path)
    raise UsageError(f"{path}: not an artifact distill knows",
                     hint="pass an export folder (with manifest.json) or a .onnx file")


def _onnx_facts(path: Path) -> dict[str, Any]:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - onnx raises protobuf and OS errors alike
        raise UsageError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    weights = sum(len(t.raw_data) for t in model.graph.initializer)
    return {
        "kind": "onnx", "file": str(path), "size": path.stat().st_size,
        "opset": max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=None),
        "inputs": [i.name for i in model.graph.input], "outputs": [o.name for o in model.graph.output],
        "initializers": len(model.graph.initializer), "initializer_bytes": weights,
        "verification": "none recorded (no manifest.json beside the file)",
    }
