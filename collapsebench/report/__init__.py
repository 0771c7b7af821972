"""Reports: figures of collapse drawn from run directories, as an HTML page and in TensorBoard.

Everything here reads ``results.json`` files after the fact; nothing runs inside training unless
a run asks for TensorBoard images (:mod:`collapsebench.report.tensorboard`).

- :mod:`.runs`: loading run directories and querying their metric records.
- :mod:`.figures`: one function per figure, each returning a matplotlib ``Figure``.
- :mod:`.html`: the self-contained HTML page.
- :mod:`.tensorboard`: the custom-scalars layout and the figures as TensorBoard images.
- :mod:`.cli`: the ``report`` and ``tensorboard`` commands.

This ``__init__`` imports nothing heavy, so that the CLI can register its commands instantly.
"""
