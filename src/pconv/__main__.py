"""`python -m pconv` runs the command line."""
import sys

from pconv.cli import main

sys.exit(main())
