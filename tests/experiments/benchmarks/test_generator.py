def test_generator_rows(bench):
    argv = "generator --sizes 64 --batches 1 2 --precisions fp32 --modes fwd fwd+bwd --iters 1 --warmup 0"
    result = bench(argv.split())
    assert [(r["batch"], r["mode"]) for r in result["results"]] == [
        (1, "fwd"),
        (1, "fwd+bwd"),
        (2, "fwd"),
        (2, "fwd+bwd"),
    ]
    assert all(r["images_per_s"] > 0 and r["impl"] == "ref" for r in result["results"])
    assert result["cuda_speedup"] == {}  # nothing to compare without the CUDA ops
