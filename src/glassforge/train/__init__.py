"""The embedded "glassforge-shapes" model: procedural dataset, trainer, export and prompt-adherence evaluation.

Import the submodules directly (``glassforge.train.dataset``, ``.trainer``, ``.shapes_eval``); this package imports
nothing so that ``glassforge --help`` stays fast.
"""
