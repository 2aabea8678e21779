"""``python -m caloml.bench onnx``: TensorFlow and ONNX Runtime timed on the same export, with their ratio."""

from __future__ import annotations

import pytest

from caloml.bench.__main__ import main
from caloml.bench.onnx import benchmark_onnx


def test_onnx_bench_times_both_runtimes() -> None:
    reported: list[str] = []
    figures = benchmark_onnx(("wgan",), batches=(1, 4), repeats=1, report=lambda name, value: reported.append(name))
    for batch in (1, 4):
        tf_ms, onnx_ms = figures[f"wgan_batch{batch}_tf_ms"], figures[f"wgan_batch{batch}_onnxruntime_ms"]
        assert isinstance(tf_ms, float)
        assert isinstance(onnx_ms, float)
        assert tf_ms > 0
        assert onnx_ms > 0
        assert figures[f"wgan_batch{batch}_onnxruntime_speedup_x"] == tf_ms / onnx_ms
    assert "pointflow" in str(figures["onnx_no_onnx_form"])
    assert reported == list(figures)  # each figure reported as soon as measured


def test_onnx_is_a_bench_choice(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["onnx", "--batches", "0"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "need positive integers" in error
    assert "invalid choice" not in error
