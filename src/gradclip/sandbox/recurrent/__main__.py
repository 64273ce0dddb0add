"""``python -m gradclip.sandbox.recurrent``: see `gradclip.sandbox.recurrent.cli`."""

from gradclip.sandbox.recurrent.cli import main

raise SystemExit(main())
