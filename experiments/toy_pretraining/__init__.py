"""The toy world's pretraining: the networks shipped in ``models/pretrained/``, trained from scratch.

``arcface`` (the two toy ArcFaces), ``verification`` (how well a recogniser tells test identities
apart), ``generator`` and ``distillation`` (the toy StyleGAN2, distilled from the renderer),
``encoder`` (shipping the toy IDE encoder), ``check`` (the measurements of the shipped files),
``training`` and ``export`` (what every run and every shipped file share), and ``cli``
(``ideface-pretrain-toy``, or ``python experiments/pretrain_toy.py``).
"""
