import sys

from raydl.cli import main

sys.exit(main())
