"""Networks: StyleGAN2, IR-SE, the IDE/ReStyle/pSp encoders, LPIPS networks, PULSE, the weights registry.

Inference (``load_pipeline``) is assembled one floor up, in ``experiments.pipeline``.
"""
