"""cft-ray: Critique Fine-Tuning (arXiv 2501.17703) as one Ray program.

Layers, each importing only itself and those below (``tests/test_architecture.py`` checks it):
``core`` (the CFT vocabulary) -> ``config`` (typed sections) -> ``stages`` (the stage contract:
sections, output-shaping fields, typed results, entries, keys) with ``steps``, ``storage``,
``raycluster``, ``report``, ``models`` -> the stages ``data``, ``teacher``, ``train``, ``eval`` ->
``tune`` and ``pipeline``, which compose them -> ``cli``, the entry point.
"""

__version__ = "0.1.0"
