"""The explainer: record every number of one generation and show how the words became the image.

* :mod:`.recorder` — :class:`~.recorder.TraceRecorder`, an ``on_event`` listener that keeps every
  event of a ``txt2img`` run and writes ``trace.json`` + ``trace.safetensors`` (format: ``docs/explain.md``).
* :mod:`.trace` — :class:`~.trace.Trace`, reading those files back.
* :mod:`.walk` — the numbers of the walk-through (filled-in formulas, followed elements, statistics).
* :mod:`.report` / :mod:`.text` — the self-contained ``index.html`` and the terminal walk-through.
* :mod:`.cli` — ``glassforge explain``.

Names are imported on first use, so importing the command line does not import torch.
"""

from importlib import import_module

_EXPORTS = {
    "TraceRecorder": ".recorder",
    "Trace": ".trace",
    "load_trace": ".trace",
    "TRACE_FORMAT": ".recorder",
    "TRACE_VERSION": ".recorder",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
