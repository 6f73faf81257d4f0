"""CT-RATE's 18 abnormality labels (and, with issue 6, the labeler that reads them from reports)."""

from omnict_cli.labels.classes import CTRATE_ABNORMALITIES

__all__ = ["CTRATE_ABNORMALITIES"]
