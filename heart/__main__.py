import sys

from heart.cli import main

sys.exit(main())
