"""The paper's 13 organ groups: the names questions, reports and organ masks share.

Why a module of its own: OSE (paper Sec. 2.2) pools the tokens of one of
these groups, so the segmentation side (``organs.py`` maps them to label ids,
``routing.py`` maps questions to them), the model side and the synthetic
phantoms (``Finding.organ``) must all use the same names in the same order.
Like ``classes.py`` (TotalSegmentator's ids) and ``omnict_cli.labels.classes``
(the CT-RATE classes), it is a vocabulary at the bottom of the import graph:
it imports nothing, and anything may import it.
"""

ORGAN_GROUPS = (
    "lungs",
    "heart",
    "liver",
    "spleen",
    "kidneys",
    "pancreas",
    "stomach",
    "bowel",
    "esophagus",
    "trachea",
    "vessels",
    "spine",
    "others",
)
"""The 13 organ groups in the paper's order; ``others`` takes every structure no other group names."""
