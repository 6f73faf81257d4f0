"""The lymph-node convention option, one definition for every command that labels reports.

``score`` and ``labels`` take it as ``--convention``, ``report`` as
``--label-convention`` (beside ``--label``). The choices are
:data:`omnict_cli.labels.rules.CONVENTIONS`, written out here so that
``--help`` does not import the labeler; ``tests/test_cli.py`` checks the two agree.
"""

import click

CONVENTION_CHOICES = ("ctrate", "clinical")


def convention_option(flag: str = "--convention", what: str = "Lymphadenopathy is read"):
    """A click option (``flag``) choosing how lymph nodes are read; the parameter is named ``convention``
    for ``--convention`` and ``label_convention`` for ``--label-convention``, as click derives it."""
    return click.option(
        flag,
        type=click.Choice(CONVENTION_CHOICES),
        default="ctrate",
        show_default=True,
        help=f"How {what}: ctrate = any affirmed lymph node (CT-RATE's labels); "
        "clinical = enlarged or pathological nodes only.",
    )
