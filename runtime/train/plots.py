"""The loss curve beside the metrics: train loss per optimizer step, validation loss where it was
measured. matplotlib's Agg backend: no display needed."""

from __future__ import annotations

import json
from pathlib import Path

from distill.compiler.fsutil import write_atomic_with


def loss_curve(metrics: Path, png: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.is_file() else []
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    figure, axes = plt.subplots(figsize=(6, 3.5), dpi=100)
    if train:
        axes.plot(*zip(*train, strict=True), label="train loss", linewidth=1)
    if val:
        axes.plot(*zip(*val, strict=True), "o-", label="validation loss (CE)")
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("loss")
    axes.set_title(title)
    axes.legend()
    figure.tight_layout()
    # Agg PNGs carry no timestamp unless asked ("Software" only), so equal runs give equal bytes.
    write_atomic_with(png, lambda tmp: figure.savefig(tmp, format="png", metadata={"Software": None}))
    plt.close(figure)
