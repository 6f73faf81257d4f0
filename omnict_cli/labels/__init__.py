"""CT-RATE's 18 abnormality labels and the labelers that read them from reports.

| module | job |
| --- | --- |
| ``classes.py`` | the 18 classes in CT-RATE's column order, and the report region each is written in |
| ``report_size.py`` | the longest report text the labelers read (``MAX_REPORT_CHARS``), with a warning beyond |
| ``ctrate_io.py`` | CT-RATE report and label CSVs (and JSONL reports): read, write atomically |
| ``rules.py`` | the rule labeler: sentences, lexicons, NegEx-style negation/uncertainty, sections, explain |
| ``corpus.py`` | the CT-RATE-style training corpus the bundled classifier learns from |
| ``classifier.py`` | TF-IDF + rule features -> calibrated one-vs-rest logistic regression, stored without pickle |
| ``labeler.py`` | one entry point: ``label_reports(texts, method="classifier"|"rules")`` and ``explain`` |

Only the class list is imported here; the labelers load scikit-learn on first use.
"""

from omnict_cli.labels.classes import CTRATE_ABNORMALITIES

__all__ = ["CTRATE_ABNORMALITIES"]
