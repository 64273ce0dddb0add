"""Loss spikes in a small transformer language model, and what clipping does about them.

`data` reads the documentation text of ``pydoc_data.topics`` as bytes (no download),
`model` is a small pre-norm GPT, `train` one AdamW run with one clipping arm (logged
by the monitor), `experiment` every arm over seeds with intervals, `cli` the command
line (``gradclip experiment transformer``). Importing this package imports neither torch nor
matplotlib.
"""
