"""``python -m gradclip.sandbox.vectorized``: see :mod:`gradclip.sandbox.vectorized.cli`."""

from gradclip.sandbox.vectorized.cli import main

raise SystemExit(main())
