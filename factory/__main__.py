import sys

from factory.app.cli import main

sys.exit(main())
