"""Networks: StyleGAN2, IR-SE, the IDE/ReStyle/pSp encoders, the weights registry, inference.

Importing the package is cheap; ``load_pipeline`` (models/pipeline.py) is imported on first use.
"""


def __getattr__(name: str):
    if name == "load_pipeline":
        from models.pipeline import load_pipeline

        return load_pipeline
    raise AttributeError(f"module 'models' has no attribute {name!r}")


__all__ = ["load_pipeline"]
