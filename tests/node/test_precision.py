"""The node's worker loads the model in the precision `listen --precision` and `pacs pull --precision` ask."""

from __future__ import annotations

from pathlib import Path

from tiny_models import write_tiny_model

from cacscore.node.queue import NodeQueue
from cacscore.node.worker import Worker


def test_the_worker_loads_the_model_once_in_the_precision_asked(tmp_path: Path) -> None:
    model = write_tiny_model(tmp_path / "model")
    queue = NodeQueue(tmp_path / "node")
    for precision, expected in ((None, "fp32"), ("fp32", "fp32"), ("bf16", "bf16")):
        worker = Worker(queue, model_dir=model, precision=precision)
        ensemble = worker._load()
        assert ensemble.info()["precision"] == expected
        assert worker._load() is ensemble  # loaded once, reused for every series
