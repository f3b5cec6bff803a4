import json

from common import bench


def test_benchmark_runs_at_smoke_size(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert (
        bench.main(
            [
                "--backbone",
                "mobilenetv2",
                "--size",
                "32",
                "--n-images",
                "16",
                "--batch-size",
                "8",
                "--segment",
                "hsv",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    for key in (
        "raw_images_per_s",
        "pipeline_images_per_s",
        "cached_images_per_s",
        "pipeline_over_raw",
        "peak_rss_mb",
        "device",
    ):
        assert key in result
    assert result["cached_images_per_s"] > result["pipeline_images_per_s"]
    assert "pipeline / raw" in capsys.readouterr().out
