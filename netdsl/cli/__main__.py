"""``python -m netdsl.cli VERB ...``: the same as the ``netdsl`` command."""
import sys

from . import main

sys.exit(main())
