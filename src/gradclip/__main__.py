"""``python -m gradclip`` is the ``gradclip`` command."""

import sys

from gradclip.cli import main

sys.exit(main())
