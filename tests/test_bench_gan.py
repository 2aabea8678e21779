"""The 3DGAN benchmark: FLOP count from the layer shapes, CPU feature detection, figures and their units."""

from __future__ import annotations

from pathlib import Path

import pytest

from caloml.bench.__main__ import _unit, print_figures
from caloml.bench.gan import benchmark_gan, bf16_support, cpu_flags, generator_flops_per_shower
from caloml.models.gan3d import Generator3D


def test_flops_counted_from_the_published_layer_shapes() -> None:
    # (output voxels, kernel volume x input channels, filters) of the six Conv3D layers (models.md section 1)
    convolutions = [
        (49 * 49 * 41, 6 * 6 * 8 * 8, 8),
        (50 * 50 * 38, 4 * 4 * 6 * 8, 6),
        (51 * 51 * 35, 4 * 4 * 6 * 6, 6),
        (52 * 52 * 32, 4 * 4 * 6 * 6, 6),
        (52 * 52 * 28, 3 * 3 * 5 * 6, 6),
        (52 * 52 * 26, 3 * 3 * 3 * 6, 6),
        (51 * 51 * 25, 2 * 2 * 2 * 6, 1),
    ]
    expected = 2 * 256 * 5184 + sum(2 * voxels * fan_in * filters for voxels, fan_in, filters in convolutions)
    assert generator_flops_per_shower(Generator3D(seed=1)) == pytest.approx(expected)
    assert expected == pytest.approx(6.12e9, rel=0.01)


def test_cpu_flags_and_bf16_detection(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f amx_bf16 avx512_bf16\n")
    assert {"avx2", "amx_bf16"} <= cpu_flags(cpuinfo)
    assert bf16_support({"avx2", "avx512_bf16"}) == (True, "CPU flags avx512_bf16")
    supported, reason = bf16_support({"avx2", "fma"})
    assert not supported
    assert "avx512_bf16" in reason
    assert cpu_flags(tmp_path / "missing") == set()


def test_benchmark_figures_and_skips(capsys: pytest.CaptureFixture[str]) -> None:
    figures = benchmark_gan(
        batches=(1, 100_000), repeats=1, modes=("graph", "bf16"), matmul_size=256, max_call_seconds=1.0, flags=set()
    )
    assert figures["gan_showers_per_s_b1_graph"] > 0
    assert 0 < figures["gan_fraction_of_matmul_b1_graph"] < 5
    assert figures["gan_gflop_per_shower"] == pytest.approx(6.12, rel=0.01)
    # a batch of 100,000 is predicted from batch 1 to take more than a second: skipped with the reason
    assert "skipped (one call predicted" in str(figures["gan_showers_per_s_b100000_graph"])
    # no bfloat16 flags given: the bf16 mode is skipped and says why
    assert "skipped" in str(figures["gan_showers_per_s_b1_bf16"])
    assert str(figures["gan_bf16_support"]).startswith("no")
    print_figures(figures)
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("gan_showers_per_s_b1_graph: ") and line.endswith(" showers/s") for line in lines)
    assert _unit("gan_gflop_per_cpu_s_b1_graph") == "GFLOP/CPU-s"
    assert _unit("gan_gflop_per_shower") == "GFLOP"
    assert _unit("gan_cpu_ms_per_shower_b1_graph") == "ms"
    assert _unit("gan_matmul_4096_float32_gflop_per_s") == "GFLOP/s"
    assert _unit("gan_fraction_of_matmul_b1_graph") == ""
