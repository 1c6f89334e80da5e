import pytest


@pytest.mark.slow
def test_inference_rows(bench):
    result = bench(["inference", "--pairs", "4", "--batch", "2", "--iters", "1", "--warmup", "0"])
    assert [r["loop"] for r in result["results"]] == ["pipeline", "evaluation"]
    assert all(r["images_per_s"] > 0 for r in result["results"]) and result["pairs"] == 4


def test_demo_rows(bench):
    pytest.importorskip("gradio", reason="the demo benchmark needs gradio: pip install -e '.[demo]'")
    result = bench(["demo", "--iters", "1", "--warmup", "0"])
    assert [r["row"] for r in result["results"]] == ["pipeline", "click", "round_trip"]
    assert all(r["seconds"] > 0 and r["cpu_seconds"] > 0 and r["faces"] == 4 for r in result["results"])
