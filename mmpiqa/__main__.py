"""`python -m mmpiqa ...`: the `mmpiqa` command, where its script is not on the PATH."""

import sys

from mmpiqa.cli import main

sys.exit(main())
