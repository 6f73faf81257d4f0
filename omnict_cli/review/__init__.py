"""``omnict review``: a self-contained HTML page to look at a run, the slice beside the sentence.

Per study: axial, coronal and sagittal views through the organ the model
pooled, in a lung and a soft-tissue window, with that organ's mask (from the
mask cache) as a translucent outline; the findings and impression; the 18
CT-RATE labels, generated vs reference; warnings and status. At the top: the
run's counts, timing, model and, with references, the scores ``omnict score``
prints. Entry point: :func:`build_review`.
"""

from omnict_cli.review.build import ReviewOptions, ReviewResult, build_review

__all__ = ["ReviewOptions", "ReviewResult", "build_review"]
