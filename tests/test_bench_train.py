"""The training benchmark (scripts/bench/bench_train.py, ``python -m ldct_scripts.bench.bench_train``) writes its record."""

import json

import pytest


def test_bench_train_writes_its_record(tmp_path):
    from ldct_scripts.bench import bench_train as bench

    assert bench.main(["--out", str(tmp_path), "--size", "32", "--batch", "1", "--iters", "1", "--warmup", "0",
                       "--device", "cpu", "--rounds", "1", "--infer-size", "32", "--infer-iters", "1",
                       "--patch-size", "16", "--patch-batch", "1", "--precision-iters", "1"]) == 0
    record = json.loads((tmp_path / "bench_train.json").read_text())
    for net in ("unet_ldct", "cpce_rfm_da"):  # bf16 autocast vs float32 training, both bundles' networks
        p = record["precision"][net]
        assert p["float32_images_per_second"] > 0 and p["bfloat16_images_per_second"] > 0
        assert p["bf16_speedup"] == pytest.approx(p["bfloat16_images_per_second"] / p["float32_images_per_second"])
    assert record["parameters"] == 8_639_169 and record["seconds_per_iteration"] > 0
    assert record["settings"]["size"] == 32 and "git" in record
    workflow = record["workflow"]
    assert workflow["plain_images_per_second"] > 0 and workflow["trainer_images_per_second"] > 0
    rows = {r["variant"]: r for r in record["inference"]["variants"]}
    ref = rows["fp32 eager (no_grad) [reference]"]
    assert ref["speedup_vs_fp32_eager"] == 1.0 and ref["relative_difference_vs_fp32_eager"] == 0.0
    default = rows["fp32 SliceInferer2D (channels-last, in-place) [bundle default]"]
    assert default["relative_difference_vs_fp32_eager"] < 1e-5
    bf16 = rows["bf16 SliceInferer2D --inference_dtype bfloat16 [bundle override]"]
    assert bf16["relative_difference_vs_fp32_eager"] < 0.02
    assert bench.main(["--out", str(tmp_path / "b"), "--size", "32", "--batch", "1", "--iters", "1",
                       "--device", "cpu", "--no-workflow", "--no-inference", "--no-precision"]) == 0
    assert "workflow" not in json.loads((tmp_path / "b" / "bench_train.json").read_text())
    with pytest.raises(SystemExit):
        bench.parse_args(["--out", str(tmp_path), "--size", "40"])  # not a multiple of 16
