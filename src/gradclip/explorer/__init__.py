"""The explorer: a local web page where a loss cliff wrecks gradient descent and clipping saves it.

``gradclip explore`` (or `gradclip.explorer.cli.main`) serves `server` on 127.0.0.1; the
maths lives in [`cliff`][gradclip.explorer.cliff] (NumPy only) and is usable without the web parts, which need
the ``explorer`` extra (Starlette, uvicorn, plotly).
"""
