"""archzoo: the deep-learning architectures course as one runnable library."""

__version__ = "0.1.0"

from .hub import save_pretrained  # noqa: E402
from .registry import (  # noqa: E402
    create_model,
    from_pretrained,
    get_paper,
    list_attentions,
    list_models,
    list_papers,
    register_attention,
    register_layer,
    register_model,
)


def __getattr__(name):
    if name == "Transformer":  # imported lazily: core pulls in torch modules
        from .core import Transformer

        return Transformer
    raise AttributeError(f"module 'archzoo' has no attribute {name!r}")


__all__ = ["create_model", "list_models", "list_papers", "get_paper", "list_attentions", "from_pretrained",
           "save_pretrained", "register_model", "register_attention", "register_layer", "Transformer"]
