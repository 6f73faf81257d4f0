"""The ``omnict`` command line: one click group, one module per command family.

``main.py`` holds the group and the study commands (``inspect``,
``demo-data``); every other module here adds its commands to that group when
imported below. Command modules import only click at the top so
``omnict --help`` stays instant; the library is imported inside each command.
"""

# Command families: importing a module registers its commands on ``main``.
# (one import per line; keep them sorted)
from omnict_cli.cli import (
    demo_model,  # noqa: F401,E402
    import_weights,  # noqa: F401,E402
    labels,  # noqa: F401,E402
    model,  # noqa: F401,E402
    report,  # noqa: F401,E402
    review,  # noqa: F401,E402
    score,  # noqa: F401,E402
    segment,  # noqa: F401,E402
    train,  # noqa: F401,E402
)
from omnict_cli.cli.main import main

__all__ = ["main"]
