"""``python -m gradclip.sandbox.vectorized``: see `gradclip.sandbox.vectorized.cli`."""

from gradclip.sandbox.vectorized.cli import main

raise SystemExit(main())
