import sys

from gradclip.sandbox.convolutional.cli import main

sys.exit(main())
