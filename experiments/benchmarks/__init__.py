"""The project's benchmarks, one subcommand each, each printing one JSON document on stdout.

``ideface-benchmark`` (``experiments/benchmark.py``) runs them; one module per family of subcommands::

    ideface-benchmark generator [--sizes 256 1024] [--batches 1 8] [--iters 10]
    ideface-benchmark train [--worlds toy 1024] [--rows ...] [--precisions fp32 bf16] [--compare [KEY=VALUE ...]]
    ideface-benchmark profile [--world toy] [--row input_latent] [--reference]
    ideface-benchmark inference [--checkpoint toy] [--pairs 100]
    ideface-benchmark trees --reference /tmp/f35 -- train --worlds toy --rows input_latent
    ideface-benchmark pulse-vs-encoder [--worlds toy 256 1024] [--batches 1 16]
    ideface-benchmark demo [--threads 2]                 # the web demo's Generate click

Worlds: a world preset (``toy``: the toy world with its shipped weights), or ``256`` / ``1024``: the paper's world
(config ``world=celebahq``) at that generator size with random weights of the same architectures
(StyleGAN2 config-f, LPIPS AlexNet, IR-SE50), which cost the same to run as the pretrained ones
that cannot exist offline.

Adding a subcommand is one decorated function returning a JSON-serialisable dict, in a module that
``cli`` imports::

    @subcommand("train", "training-step throughput", arg("--steps", type=int, default=20))
    def train(args):
        return {...}

The package imports its own modules relatively and the project's absolutely, so ``trees`` can run a
copy of it against another checkout's packages (one that may have no such package).
"""
