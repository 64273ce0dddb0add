"""Loss spikes in a small transformer language model, and what clipping does about them.

:mod:`.data` reads the documentation text of ``pydoc_data.topics`` as bytes (no download),
:mod:`.model` is a small pre-norm GPT, :mod:`.train` one AdamW run with one clipping arm (logged
by the monitor), :mod:`.experiment` every arm over seeds with intervals, :mod:`.cli` the command
line (``gradclip experiment transformer``). Importing this package imports neither torch nor
matplotlib.
"""
