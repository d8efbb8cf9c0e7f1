import sys

from gmaiou.cli import main

sys.exit(main())
