"""The bundled demo model says what it is, once per command and in every record.

Why: the demo model (``models/omnict-demo``) lets ``report`` and ``ask`` run
out of the box, and its text reads like a radiologist's. It was trained on
synthetic phantoms only and does not read real CT, so an output that does
not say so could be taken for a finding.
"""

from __future__ import annotations

from pathlib import Path

from omnict_cli.run.engine import bundled_model_dirs

DEMO_NOTICE = "demo model: trained on synthetic phantoms; not a finding"


def is_bundled_demo(model_dir: str | Path) -> bool:
    """True when ``model_dir`` is the bundled demo model's directory (source tree or installed wheel)."""
    target = Path(model_dir).resolve()
    return any(target == candidate.resolve() for candidate in bundled_model_dirs())


def model_notices(model_dir: str | Path) -> tuple[str, ...]:
    """The warnings every record made with this model carries: the demo notice for the bundled demo."""
    return (DEMO_NOTICE,) if is_bundled_demo(model_dir) else ()
