"""Which extra installs what: one clear ImportError when a module's optional dependency is missing.

The base install has NumPy only. A module that needs torch (or Lightning, transformers, matplotlib...)
wraps its first import of it in `try: import torch` / `except ModuleNotFoundError as err:`
`missing_extra(err, __name__)`, so that `import gradclip.clip` without torch says which
`pip install 'gradclip[...]'` fixes it instead of ending in a bare `No module named 'torch'`.
"""

from __future__ import annotations

from typing import NoReturn

# Top-level module that is missing -> (what it is, the extra that installs it).
EXTRAS: dict[str, tuple[str, str]] = {
    "torch": ("PyTorch", "torch"),
    "lightning": ("Lightning", "lightning"),
    "pytorch_lightning": ("Lightning", "lightning"),
    "transformers": ("transformers", "hf"),
    "accelerate": ("accelerate", "hf"),
    "keras": ("Keras", "keras"),
    "matplotlib": ("matplotlib", "monitor"),
    "tensorboard": ("TensorBoard", "monitor"),
    "rich": ("rich", "monitor"),
    "sklearn": ("scikit-learn", "demo"),
    "starlette": ("Starlette", "explorer"),
    "uvicorn": ("uvicorn", "explorer"),
    "plotly": ("plotly", "explorer"),
}


def extra_for(err: ModuleNotFoundError) -> tuple[str, str] | None:
    """(package, extra) for the module that ``err`` found missing, or None if no extra provides it."""
    return EXTRAS.get((err.name or "").partition(".")[0])


def missing_extra_message(err: ModuleNotFoundError, what: str) -> str | None:
    """One line naming the extra to install, or None when ``err`` is not about an optional dependency."""
    found = extra_for(err)
    if found is None:
        return None
    package, extra = found
    return f"{what} needs {package}, which is not installed: `pip install 'gradclip[{extra}]'` installs it"


def missing_extra(err: ModuleNotFoundError, module: str) -> NoReturn:
    """Re-raise ``err`` with a message naming the extra; errors about other modules pass unchanged.

    The new error is still a ``ModuleNotFoundError`` with the same ``name``, so code that checks
    ``err.name == "torch"`` keeps working.
    """
    message = missing_extra_message(err, module)
    if message is None:
        raise err
    raise ModuleNotFoundError(message, name=err.name) from err
