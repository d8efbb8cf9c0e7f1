import sys

from gmaiou.paper.cli import main

sys.exit(main())
