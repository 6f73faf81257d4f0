"""A transparent rule labeler: the 18 CT-RATE classes read from a report's text.

CT-RATE labelled its reports with a fine-tuned RadBERT we cannot download, so
omnict reads labels with rules a reader can check line by line (and the
scikit-learn classifier in ``classifier.py`` learns on top of their output).

How a report is read:

1. Sections: :func:`~omnict_cli.labels.ctrate_io.split_sections` splits a
   whole text at "Findings:"/"Impression:"/"Conclusion:" headers.
2. Sentences: :func:`split_sentences` splits at ``. ! ?`` followed by a space,
   at ``;`` and at line breaks, but not after "e.g.", "approx." and similar
   abbreviations nor inside decimals ("8.9 mm").
3. Clauses: "but", "however", "although", "whereas", "except" ... end one
   clause and start the next; no negation reaches across them.
4. Terms: every class has a lexicon of regular expressions (:data:`FINDING_TERMS`,
   synonyms and morphology such as "atelectatic", "micronodules",
   "effusion-thickening", "pleural or pericardial effusion"). A few classes also
   have *normal subjects* (:data:`NORMAL_SUBJECTS`, "heart size", "lymph nodes")
   that state the class absent when a normality cue goes with them
   ("Heart contour and size are normal").
5. Cues (NegEx style, :data:`CUES`): pre-cues ("no", "without", "possible")
   reach forward, post-cues ("was not detected", "cannot be excluded") reach
   backward, each until a verb or the clause end; a term whose own span holds
   "no"/"not"/"normal" ("Interlobular septa are not thickened") is negative.
   Pseudo-cues ("no change", "unchanged") mask their words so "no change in
   the nodule" stays positive. The closest cue wins.

CT-RATE's own label conventions (issue 12; see docs/labeler.md): lymph nodes
with a size or a count at a thoracic station are lymphadenopathy
(:data:`STATION_NODE_TERMS`), "CTO increased in favour of the heart" is
cardiomegaly, "fibroatelectasis" is a fibrotic sequela and not atelectasis,
"nodular infiltrates"/"reticulonodular" are no lung nodules, and "effusion in
the right hemithorax" is a pleural effusion.

Cost: linear in the text's length (see :class:`_ClauseCues`, :func:`_trigger`
and :func:`_whole_words`); texts beyond
:data:`~omnict_cli.labels.report_size.MAX_REPORT_CHARS` are truncated. A
sentence met before (reports repeat boilerplate, within one report and across
reports) is not read again: :func:`_candidate_terms` and
:func:`_sentence_findings` cache which terms may occur in each distinct
sentence and what it says. On a 2-core VM: 0.35 CPU-s for the 1 MB test text
(2.2 without the caches), about 1 ms per CT-RATE-sized report (2.4 without);
see ``benchmarks/labeler_speed.py``.

Hedges, as CT-RATE's labels treat them: "consistent with", "compatible with",
"in keeping with", "suggestive of" and "indicative of" assert a finding (positive);
"possible", "probable", "likely", "suspicious for", "suspected", "may represent",
"questionable", "concerning for", "cannot be excluded" leave it uncertain, and
:meth:`RuleResult.vector` counts uncertain as 0 unless told otherwise.
"""

from __future__ import annotations

import bisect
import functools
import re
from dataclasses import dataclass, field

import numpy as np

from omnict_cli.labels.classes import CTRATE_ABNORMALITIES
from omnict_cli.labels.ctrate_io import split_sections
from omnict_cli.labels.report_size import within_size_limit

STATES = ("absent", "positive", "negative", "uncertain")
"""What a report says about a class: nothing, present, absent, or hedged."""

FEATURE_STATES = ("positive", "negative", "uncertain")
"""The one-hot columns per class of :func:`rule_feature_matrix` (absent is all zero)."""

# --------------------------------------------------------------------------
# Lexicons
# --------------------------------------------------------------------------

_CORONARY_VESSEL = (
    r"(?:coronar\w*|\blad\b|left anterior descending|circumflex|\brca\b|\blcx\b|\bcx\b|"
    r"left main coronary|right coronary)"
)
_PLAQUE = r"(?:calcif\w*|atherom\w*|atheroscler\w*|plaques?)"


_NOT_AN_UPPER_BOUND = "".join(f"(?<!{word} )" for word in ("than", "below", "under", "exceeding", "<"))
"""Lookbehinds: "smaller than 10 mm", "below 1 cm", "not exceeding 1 cm" bound a node's size
rather than state it ("up to 14 mm" does state one)."""


def _gap(most: int, commas: bool = True) -> str:
    """Up to ``most`` characters inside one sentence (decimal points allowed: "Fluid (13.3 mm) is seen in")."""
    stop = ".;" if commas else ".;,"
    return rf"(?:[^{stop}]|\.(?=\d)){{0,{most}}}?"


_BRONCHUS = r"(?:peri)?bronch(?:i|us|ial|ioles?|ovascular)?"

FINDING_TERMS = {
    "Medical material": (
        r"medical (?:material|device)s?",
        r"(?:post-?operative|surgical|orthopa?edic|fixation|suture|foreign) "
        r"(?:material|bod(?:y|ies))",
        r"foreign bod(?:y|ies)",
        r"implant(?:ed|s)?\b(?: device)?",
        r"pace ?makers?",
        r"pacing (?:leads?|wires?)",
        r"defibrillators?",
        r"\bicd\b",
        r"stent\w*",
        r"catheters?",
        r"port(?:-a-cath|\s+catheter)?\b",
        r"cannula\w*",
        r"sternotomy",
        r"cerclage",
        r"sternal (?:wires?|sutures?|wiring)",
        r"(?:surgical |metallic |vascular )?clips?\b",
        r"prosthe\w*",
        r"(?:valve|valvular) replacement",
        r"mechanical valve",
        r"\bcabg\b",
        r"(?:bypass )graft\w*",
        r"(?:endotracheal|tracheostomy|nasogastric|chest|thoracostomy|drainage) tubes?",
        r"tracheostomy",
        r"embolization coils?",
        r"\bcoils?\b",
        r"screws?\b",
        r"staples?\b",
        r"metallic (?:"
        r"material|density|densities|object|artifacts?|implants?)",
    ),
    "Arterial wall calcification": (
        r"atheroscler\w*",
        r"atherom\w*",
        r"(?:arterial|vascular|aortic|aorta|artery|arteries)\s+(?:wall\s+)?calcif\w*",
        r"calcif\w*" + _gap(40) + r"\b(?:aort\w*|arter\w*|vascular|vessels?|carotid|subclavian|brachiocephalic|iliac)",
        r"(?:aort\w*|vascular|vessels?|arterial)\b" + _gap(40) + r"calcif\w*",
        r"calcifi(?:ed|c) plaques?",
        r"mural calcif\w*",
    ),
    "Cardiomegaly": (
        r"cardiomegal\w*",
        r"(?:enlarged|enlargement of the) (?:heart|cardiac)",
        r"cardiac enlargement",
        r"heart (?:is|was|appears?|appeared) (?:\w+ly )?enlarged",
        r"(?:heart|cardiac)(?: contour and)? (?:size|dimensions?|silhouette|shadow)s?\s+(?:(?:is|are|was|were)\s+)?"
        r"(?:\w+ly\s+)?(?:increased|enlarged)",
        r"increased (?:heart|cardiac) (?:size|dimensions?)",
        r"(?:increased|enlarged) cardio-?thoracic ratio",
        r"cardio-?thoracic ratio (?:is |was )?increased",
        # CT-RATE: "CTO increased in favour of the heart" (CTO: the cardiothoracic ratio), "CTO is increased"
        r"(?:\bcto\b|cardio-?thoracic (?:ratio|index))"
        + _gap(30, commas=False)
        + r"\b(?:increas\w*|in favou?r of the heart)",
        r"(?:increased|enlarged|high) (?:\bcto\b|cardio-?thoracic (?:ratio|index))",
        r"(?:heart|cardiac (?:size|silhouette|contour))(?:\s+\w+){0,3}?\s+larger than (?=normal|usual|expected)",
    ),  # "normal" left out of the term
    "Pericardial effusion": (
        r"pericardial(?:[\s,/-]+(?:and\s+|or\s+)?pleural)?[\s-]+(?:thickening[\s/-]+)?(?:effusions?|fluid)",
        r"(?:effusions?|fluid)\b" + _gap(50) + r"\b(?:in|within|into|of) (?:the )?pericardi\w*",
        r"hydropericardium",
    ),
    "Coronary artery wall calcification": (
        _PLAQUE + _gap(60) + _CORONARY_VESSEL,
        _CORONARY_VESSEL + _gap(60) + _PLAQUE,
    ),
    "Hiatal hernia": (
        r"hiat(?:al|us) hernia\w*",
        r"herni\w*" + _gap(60) + r"hiat\w*",
        r"hiat(?:al|us)\b" + _gap(40) + r"herni\w*",
        r"para-?o?esophageal hernia\w*",
    ),
    "Lymphadenopathy": (
        r"\w*adenopath\w*",
        r"\blap\b",
        r"lymph node enlargement",
        r"(?:enlarged|patholog\w*(?:[\s-]+(?:enlarged|sized|appearing|looking))?|bulky) "
        r"(?:\w+ ){0,3}?(?:lymph )?nodes?\b",
        r"lymph nodes?\b" + _gap(80) + r"\bpatholog\w*[\s-]+(?:size|sized|dimensions?|enlarge\w*|appearance)",
        r"lymph nodes?\b" + _gap(30, commas=False) + r"\benlarged",
        # a stated size of 10 mm or more (short axis, the usual cut-off), unless bounded from above
        r"lymph nodes?\b" + _gap(60) + _NOT_AN_UPPER_BOUND + r"(?:[1-9]\d(?:[.,]\d+)?\s*mm|[1-9](?:[.,]\d+)?\s*cm)\b",
    ),
    "Emphysema": (
        r"(?<!subcutaneous )(?<!soft tissue )(?<!mediastinal )emphysem\w*",
        r"\bbull(?:a|ae|ous)\b",
        r"\bblebs?\b",
    ),
    # "band atelectasis-sequelae", "fibroatelectasis" are fibrotic sequelae (see _NOT_THIS_CLASS)
    "Atelectasis": (r"\w*atelecta\w*\b(?![\s-]*sequel)", r"collaps\w*"),
    # "nodular infiltrates", "nodular consolidation" are opacity and consolidation, not nodules
    "Lung nodule": (r"\w*nodul\w*\b(?![\s-]+(?:[\w-]+\s+)?(?:infiltrat|consolidat))", r"space-occupying lesions?"),
    "Lung opacity": (
        r"opacit\w*",
        r"opacification",
        r"ground[\s-]?glass",
        r"\bggos?\b",
        r"infiltrat\w*",
        r"density increases?",
        r"increased (?:density|densities|attenuation|opacity)",
        r"hazy (?:density|densities|attenuation)",
    ),
    "Pulmonary fibrotic sequela": (
        r"fibros[ie]s",
        r"fibrotic",
        r"fibro-?atelecta\w*",
        r"fibrous bands?",
        r"sequela\w*",
        r"\bscar(?:s|ring|red)?\b",
        r"parenchymal bands?",
        r"fibroreticular",
    ),
    "Pleural effusion": (
        r"pleural(?:[\s,/-]+(?:and\s+|or\s+)?pericardial)?[\s-]+(?:effusions?|fluid)",
        r"(?:effusions?|fluid)\b" + _gap(50) + r"\b(?:in|within|into|of) (?:the )?(?:both |bilateral |right |left )?"
        r"pleural",
        r"hydrothorax",
        r"(?:right|left|bilateral)(?:[\s-]+sided)? effusions?",
        # CT-RATE writes pleural effusion without "pleural": "effusion in the right hemithorax",
        # "effusions in both lungs", "smear-like effusion"
        r"(?<!pericardial )(?<!pericardial-)effusions?\b" + _gap(40) + r"\b(?:in|within|on|at|of) (?:the )?"
        r"(?:(?:right|left|both|bilateral|either)\s+)?(?:hemithora\w*|lungs?\b|thora\w*|lung bases|bases\b|sides\b)",
        r"hemithora\w* effusions?",
        r"smear[\s-]?like (?:\w+ )?effusions?",
    ),
    "Mosaic attenuation pattern": (r"mosaic\w*",),
    "Peribronchial thickening": (
        r"peribronch\w*(?:[\s-]+(?:wall|walls|interstitial|vascular|interstitium))*[\s-]+(?:thicken\w*|thickness|cuffing)",
        r"bronch\w*[\s-]+walls?[\s-]+thicken\w*",
        r"thicken\w* (?:of )?(?:the )?" + _BRONCHUS + r"(?: walls?| interstitium)?",
        r"(?:increased|thickened) " + _BRONCHUS + r" (?:wall )?(?:thickness|walls?|cuffing)",
        r"bronch\w*" + _gap(30, commas=False) + r"\bwalls?\b" + _gap(30, commas=False) + r"thick\w*",
    ),
    "Consolidation": (r"consolidat\w*", r"air[\s-]?bronchograms?"),
    "Bronchiectasis": (
        r"bronchiecta\w*",
        r"bronch\w*[\s-]+dilat\w*",
        r"dilat\w*" + _gap(20, commas=False) + r"bronch\w*",
        r"bronch\w*" + _gap(30, commas=False) + r"\bdilat\w*",
    ),
    "Interlobular septal thickening": (
        r"(?<!ventricular )(?<!atrial )(?:interlobular )?septal (?:line|thicken)\w*",
        r"interlobular sept(?:a|al|um)\b" + _gap(30, commas=False) + r"thick\w*",
        r"thicken\w* (?:of )?(?:the )?interlobular sept\w*",
        r"kerley",
    ),
}
"""Per class: regular expressions (matched on lower-cased text) for words that state the finding itself."""

NORMAL_SUBJECTS = {
    "Cardiomegaly": (
        r"\b(?:heart|cardiac)(?:\s+(?:contour|size|dimensions?|silhouette|shadow))*"
        r"(?:\s+and\s+(?:size|contour|dimensions?))?",
        r"\bcto\b",
        r"cardio-?thoracic (?:ratio|index)",
    ),
    "Lymphadenopathy": (r"lymph nodes?",),
    "Pleural effusion": (r"pleural (?:spaces?|cavit\w*|recess\w*)", r"costophrenic (?:sinus\w*|angles?|recess\w*)"),
    "Pericardial effusion": (r"pericardi(?:um|al (?:space|sac|cavity))",),
    "Hiatal hernia": (r"(?:o?esophageal )?hiatus",),
    "Peribronchial thickening": (r"bronchial walls?",),
}
"""Per class: structures whose stated normality ("heart size is normal") says the class is absent."""

_NODE = r"(?:lymph )?nodes?\b"
_SIZE = (
    r"(?<![\d.,x×*])\d+(?:[.,]\d+)?(?:\s*[x×*]\s*\d+(?:[.,]\d+)?)*\s*"
    r"(?:mm|cm|millimet\w*|centimet\w*)\b"
)
"""A stated size: "8 mm", "1.2 cm", "14x6 mm", "12 x 8 x 7 mm"."""

NODE_STATIONS = (
    r"mediastin\w*|\bhil(?:ar|um|i|a)\b|axilla\w*|paratrache\w*|pretrache\w*|precarin\w*|subcarin\w*|"
    r"prevascular|aorto-?pulmonary|\bap window|para-?aortic|para-?o?esophag\w*|supraclavicular|"
    r"internal mammary|cardiophrenic|paracardiac|\bstations?\b|interlobar|subaortic|retrocrural|"
    r"bronchopulmonary"
)
"""Thoracic lymph node stations (mediastinal, hilar, axillary and their parts)."""

STATION_NODE_TERMS = (
    _NODE + _gap(80) + _NOT_AN_UPPER_BOUND + _SIZE,
    _SIZE + r"(?:\s+[\w-]+){0,3}?\s+" + _NODE,
    r"(?:multiple|several|a few|few|numerous|many|a number of|some|two|three|four|five|six|\d+)\s+"
    r"(?:[\w-]+,?\s+){0,4}?" + _NODE,
)
"""Lymphadenopathy as CT-RATE labels it: lymph nodes affirmed at a thoracic station (in the same clause,
:data:`NODE_STATIONS`) with a size ("the largest 14x6 mm", "a short axis up to 8 mm", "reaching 9 mm")
or a count ("multiple lymph nodes in the prevascular and subcarinal stations") are positive even when
small; a size bounded from above ("smaller than 10 mm", "not exceeding 1 cm") states no size, and a
negated or normal statement ("no lymph node in pathological size") stays negative."""

_AT_LEAST_TEN_MM = r"(?:[1-9]\d(?:[.,]\d+)?\s*mm|[1-9](?:[.,]\d+)?\s*cm)\b"
"""A size of 10 mm or more (short axis, the usual cut-off for an enlarged node)."""

ENLARGED_STATION_NODE_TERMS = (
    _NODE + _gap(30, commas=False) + r"\benlarged",
    _NODE + _gap(60) + _NOT_AN_UPPER_BOUND + _AT_LEAST_TEN_MM,
    _AT_LEAST_TEN_MM + r"(?:\s+[\w-]+){0,3}?\s+" + _NODE,
)
"""Enlarged nodes written without "lymph" ("a 13 mm precarinal node is mildly enlarged"): lymphadenopathy
in every convention, counted only in a clause that names a thoracic station (:data:`NODE_STATIONS`)."""

CONVENTIONS = ("ctrate", "clinical")
"""How Lymphadenopathy is read. "ctrate" (the default, CT-RATE's labels): lymph nodes the report affirms
are positive whatever their size ("millimetric lymph nodes", "lymph nodes not reaching pathological size");
only their absence ("no lymph node", "no pathological LAP", "no lymphadenopathy") is negative.
"clinical": only enlarged or pathological nodes (the :data:`FINDING_TERMS` of Lymphadenopathy) count."""

DEFAULT_CONVENTION = "ctrate"

AFFIRMED_NODE_TERMS = (r"lymph nodes?\b",)
"""CT-RATE convention only: a lymph node the report affirms, of any size, is lymphadenopathy."""

AFFIRMED_NODE_RULE = "CT-RATE convention: a lymph node the report affirms counts whatever its size"
"""The rule ``--explain`` names for a positive read by :data:`AFFIRMED_NODE_TERMS`."""

_SIZE_ONLY_NEGATION = re.compile(r"\b(?:enlarged|thickened|dilated|increased)\b")
"""Negations that deny a node's size, not its presence ("lymph nodes were not enlarged"): under CT-RATE's
convention such nodes are still affirmed."""

CONTEXT_EXCLUSIONS = {
    "Lung nodule": (
        r"thyroid|goit|adrenal|liver|hepatic|kidney|renal|breast|spleen|splenic|pancrea|"
        r"subcutaneous|cutaneous|\bskin\b|soft tissue|chest wall|muscle|axilla",
        r"lung|pulmonary|parenchym|(?:upper|middle|lower) lobe|lingula|segment",
    ),
    "Atelectasis": (
        r"vertebra|bone|fracture|o?esophag|trachea|vena cava|\bveins?\b",
        r"lung|pulmonary|parenchym|(?:upper|middle|lower) lobe|lingula|segment",
    ),
    "Lung opacity": (
        r"liver|hepatic|fatty|marrow|breast|thyroid|muscle|subcutaneous|soft tissue|mediastinal fat",
        r"lung|pulmonary|parenchym|(?:upper|middle|lower) lobe|lingula|segment",
    ),
}
"""A term of these classes is dropped in a clause naming another organ (first pattern) unless the
clause also names the lung (second): "a nodule in the left thyroid lobe" is no lung nodule."""

_NON_CORONARY_VESSEL = re.compile(
    r"aort\w*|carotid|subclavian|brachiocephalic|iliac|vertebral|great vessels|"
    r"vascular structures|supra-?aortic|femoral|pulmonary arter|systemic"
)
_CORONARY = re.compile(_CORONARY_VESSEL)

# --------------------------------------------------------------------------
# Cues
# --------------------------------------------------------------------------

_AUX = r"(?:(?:is|are|was|were|has been|have been|had been|could be|can be|be)\s+)?"
_SEEN = (
    r"(?:observed|detected|seen|noted|identified|found|present|evident|visuali[sz]ed|demonstrated|appreciated|"
    r"encountered|shown|depicted|determined|monitored|apparent|visible|recogni[sz]ed|thickened|enlarged|"
    r"dilated|increased)"
)

CUES = (
    ("pseudo", "pre", r"\bno (?:significant |interval |marked |obvious )?(?:change|increase|progression|growth)\b"),
    (
        "pseudo",
        "pre",
        r"\bwithout (?:significant |interval )?(?:change|progression)\b|\bnot changed\b|"
        r"\bnot only\b|\bunchanged\b",
    ),
    (
        "uncertain",
        "post",
        r"\b(?:cannot|can ?not|could not|can't) be (?:excluded|ruled out)\b|"
        r"\bnot (?:be )?(?:excluded|ruled out)\b",
    ),
    ("uncertain", "post", r"\b(?:is|are|was|were) (?:suspected|questionable|possible|likely|probable)\b"),
    ("uncertain", "post", r"\b(?:may|might|could) (?:also )?be (?:present|seen|noted|there)\b"),
    ("uncertain", "post", r"\?"),
    (
        "uncertain",
        "pre",
        r"\b(?:possible|possibly|probable|probably|likely|questionable|equivocal|suspected|"
        r"suspicious (?:for|of)|suspicion (?:of|for)|concerning for|may represent|may be|might be|"
        r"could be|could represent|cannot exclude|can ?not exclude|differential diagnosis|"
        r"rule out|r/o)\b",
    ),
    ("negative", "post", r"\b" + _AUX + r"not\s+(?:\w+ly\s+)?" + _SEEN + r"\b"),
    ("negative", "post", r"\b(?:(?:is|are|was|were)\s+)?(?:absent|ruled out|excluded)\b"),
    ("resolved", "pre", r"\b(?:(?:interval|complete)\s+)?(?:resolution|disappearance) of\b"),
    (
        "resolved",
        "post",
        r"\b(?:(?:has|have|had)\s+(?:since\s+)?(?:completely\s+)?)?(?:resolved|disappeared)\b|"
        r"\bno longer (?:seen|visible|observed|present|detected)\b",
    ),
    ("negative", "pre", r"\b(?:no|not|without|neither|nor|absence of|absent|free of|negative for|none of)\b"),
    (
        "normal",
        "post",
        r"\b(?:(?:is|are|was|were|appears?|appeared)\s+)?(?:of\s+|in\s+|within\s+)?normal\b|"
        r"\bunremarkable\b|\b(?:is|are)\s+(?:clear|open)\b|\bhomogeneous\b|\bnatural\b",
    ),
    ("normal", "pre", r"\bnormal(?:-sized)?\b"),
)
"""(kind, direction, pattern) of every cue, in priority order when two overlap.

Kinds: ``pseudo`` looks like a negation but is none (masked); ``uncertain``
hedges; ``negative`` negates; ``resolved`` negates a finding said to be gone,
reaching back over the whole clause ("the consolidation seen before has
resolved"); ``normal`` negates only the normal subjects ("heart size is normal").
"""

_CLAUSE_BREAK = re.compile(
    r"\s*,?\s*\b(?:but|however|although|though|whereas|except|apart from|aside from|yet)\b"
    r"|,\s*while\b"
)
_SCOPE_BREAK = re.compile(
    r"\b(?:is|are|was|were|has|have|had|shows?|showed|demonstrates?|demonstrated|reveals?|"
    r"revealed|appears?|appeared|remains?|remained|seems?|observed|seen|noted|detected|"
    r"identified|present|measur\w*)\b"
)
_SPAN_NEGATION = re.compile(r"\b(?:no|not|none|non|neither|nor|without|normal|below|under)\b")
_NON_PREFIX = re.compile(r"\bnon[\s-]?$")
"""A "non-" right before a term negates it ("non-enlarged hilar nodes"), and reaches no further."""
_MAX_SCOPE_WORDS = {"pre": 12, "post": 10}
"""How many words a pre-cue reaches forward, and a post-cue backward."""


def _whole_words(pattern: str) -> re.Pattern:
    """Compile a lexicon pattern to match whole words, in time linear in the text.

    A term starts at a word start ("stent" must not match in "consistent"),
    and a word ending (``\\w*`` after a stem, as in ``calcif\\w*``) is taken
    whole, never given back (possessive ``\\w*+``): otherwise a long unbroken
    word makes the regex engine retry every split of it, which is quadratic.
    """
    leading = pattern.startswith("\\w*")
    body = _possessive_endings(pattern[3:] if leading else pattern)
    if leading:
        return re.compile("\\b\\w*" + body)
    return re.compile(body if body.startswith(("\\b", "(?<")) else "\\b" + body)


_ASSERTION = re.compile(r"\\b|\(\?<[!=](?:[^()\\]|\\.)*\)")
"""A word boundary or a lookbehind, anywhere in a lexicon pattern."""


def _trigger(pattern: str) -> re.Pattern:
    """A quick superset of the pattern: it matches wherever the pattern does, and more.

    Why: a pattern that starts with a literal lets the regex engine jump to
    that literal; one that starts with ``\\b``, a lookbehind, ``\\w*`` or an
    optional word ("(?:lymph )?nodes") is tried at every character. One pass of
    each trigger over a whole section finds the few sentences where the full
    pattern is worth trying, so the trigger drops every word boundary and
    lookbehind (zero-width tests that only narrow a match) and the leading
    ``\\w*`` and optional groups: what is left still matches inside any match
    of the pattern.
    """
    pattern = _ASSERTION.sub("", pattern)
    while True:
        if pattern.startswith("\\w*"):
            pattern = pattern[3:]
        elif (after := _optional_group_end(pattern)) is not None:
            pattern = pattern[after:]
        else:
            return re.compile(_possessive_endings(pattern))


def _optional_group_end(pattern: str) -> int | None:
    """Where the text after a leading optional group "(...)?" starts, or None if the pattern has none."""
    if not pattern.startswith("("):
        return None
    depth, index, in_class = 0, 0, False
    while index < len(pattern):
        character = pattern[index]
        if character == "\\":
            index += 2
            continue
        if in_class:
            in_class = character != "]"
        elif character == "[":
            in_class = True
        elif character == "(":
            depth += 1
        elif character == ")":
            depth -= 1
            if depth == 0:
                if pattern.startswith("?", index + 1) and not pattern.startswith("?+", index + 1):
                    return index + (3 if pattern.startswith("??", index + 1) else 2)
                return None
        index += 1
    return None


def _possessive_endings(pattern: str) -> str:
    """``\\w*`` right after a letter (a word stem's ending) made possessive, ``\\w*+`` (see _whole_words)."""
    return re.sub(r"(?<=[a-z])\\w\*(?![+?])", r"\\w*+", pattern)


@dataclass(frozen=True)
class _Term:
    """One lexicon pattern: its class, whether it is a normal subject, and its compiled forms."""

    label: str
    is_subject: bool
    regex: re.Pattern
    trigger: re.Pattern
    requires: re.Pattern | None = None
    """Counts only in a clause where this also matches (the station of a node size or count)."""
    convention: str | None = None
    """The one convention (:data:`CONVENTIONS`) this term belongs to; None for every convention."""
    affirmed_node: bool = False
    """An :data:`AFFIRMED_NODE_TERMS` term: only absence negates it, not a denied size."""


_TERMS = (
    tuple(
        _Term(label, is_subject, _whole_words(pattern), _trigger(pattern))
        for lexicon, is_subject in ((FINDING_TERMS, False), (NORMAL_SUBJECTS, True))
        for label, patterns in lexicon.items()
        for pattern in patterns
    )
    + tuple(
        _Term("Lymphadenopathy", False, _whole_words(pattern), _trigger(pattern), re.compile(NODE_STATIONS))
        for pattern in ENLARGED_STATION_NODE_TERMS
    )
    + tuple(
        _Term("Lymphadenopathy", False, _whole_words(pattern), _trigger(pattern), re.compile(NODE_STATIONS), "ctrate")
        for pattern in STATION_NODE_TERMS
    )
    + tuple(
        _Term("Lymphadenopathy", False, _whole_words(pattern), _trigger(pattern), None, "ctrate", affirmed_node=True)
        for pattern in AFFIRMED_NODE_TERMS
    )
)
"""Every term and subject pattern, in the order their mentions are listed."""


def check_convention(convention: str) -> str:
    """``convention`` if it is one of :data:`CONVENTIONS`, else a ValueError naming the choices."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown labelling convention {convention!r}; use one of {', '.join(CONVENTIONS)}")
    return convention


@functools.lru_cache(maxsize=len(CONVENTIONS))
def _term_indices(convention: str) -> frozenset[int]:
    """Indices into :data:`_TERMS` of the terms a convention reads."""
    return frozenset(index for index, term in enumerate(_TERMS) if term.convention in (None, convention))


_SENTENCE_SEPARATOR = ".;"
"""Joins sentences for the trigger pass: no lexicon pattern matches across "." followed by ";"."""


def _cue_gate(pattern: str) -> re.Pattern:
    """The cue pattern without its word boundaries: it matches wherever the pattern does, and more.

    Why: a pattern that starts with ``\\b`` is tried at every character of a
    clause, while one that starts with a literal or an alternation of literals
    lets the regex engine jump to its first letters; one quick search of the
    gate tells whether the full pattern is worth running at all.
    """
    if "\\\\" in pattern or "[\\b" in pattern:
        raise ValueError(f"cue pattern {pattern!r}: its gate drops \\b, so it may hold no \\\\ and no [\\b] class")
    return re.compile(pattern.replace("\\b", ""))


_COMPILED_CUES = [(kind, direction, re.compile(pattern), _cue_gate(pattern)) for kind, direction, pattern in CUES]
_COMPILED_EXCLUSIONS = {
    label: (re.compile(other), re.compile(lung)) for label, (other, lung) in CONTEXT_EXCLUSIONS.items()
}

# --------------------------------------------------------------------------
# Sentences
# --------------------------------------------------------------------------

ABBREVIATIONS = frozenset(
    {
        "e.g",
        "i.e",
        "eg",
        "ie",
        "approx",
        "vs",
        "dr",
        "fig",
        "cf",
        "incl",
        "max",
        "min",
        "ca",
        "resp",
        "nr",
        "mt",
        "st",
        "lt",
        "rt",
    }
)
"""Words whose trailing period does not end a sentence ("approx. 5 mm", "e.g. a stent")."""

_SENTENCE_END = re.compile(r"[.!?]+(?=\s)|[.!?]+$|;|\n+")
_LONGEST_ABBREVIATION = max(len(word) for word in ABBREVIATIONS) + 2
_WORD_BEFORE = re.compile(r"(?<![A-Za-z.])([A-Za-z][A-Za-z.]*)$")


def split_sentences(text: str) -> list[str]:
    """Sentences of a report section, split at ``. ! ?`` + space, ``;`` and line breaks.

    Decimals ("8.9 mm") never split (no space follows their period), and
    neither do the :data:`ABBREVIATIONS` ("e.g.", "approx."). A "?" stays
    with its sentence, where it is an uncertainty cue.
    """
    sentences, start = [], 0
    for end in _SENTENCE_END.finditer(text):
        if end.group().startswith("."):
            # only the few characters before the period can hold an abbreviation: looking further
            # back would rescan the growing sentence at every period (quadratic on "e.g. e.g. ...")
            word = _WORD_BEFORE.search(text[max(start, end.start() - _LONGEST_ABBREVIATION) : end.start()])
            if word and word.group(1).lower().rstrip(".") in ABBREVIATIONS:
                continue
        sentences.append(text[start : end.end()])
        start = end.end()
    sentences.append(text[start:])
    return [" ".join(s.split()) for s in sentences if any(c.isalnum() for c in s)]


def _clauses(sentence: str) -> list[str]:
    """A sentence cut where a negation's reach ends ("..., but ...", "however", "although")."""
    pieces, start = [], 0
    for cut in _CLAUSE_BREAK.finditer(sentence):
        pieces.append(sentence[start : cut.start()])
        start = cut.start()
    pieces.append(sentence[start:])
    return [piece for piece in pieces if piece.strip()]


# --------------------------------------------------------------------------
# Mentions
# --------------------------------------------------------------------------


@dataclass
class Mention:
    """One place a report speaks about a class.

    Attributes:
        label: the CT-RATE class.
        state: "positive", "negative" or "uncertain".
        sentence: the sentence it was read from (as written).
        section: "findings" or "impression".
        term: the matched lexicon phrase, as written in the sentence.
        cue: the negation/uncertainty/normality trigger that set the state, None for a plain positive
            (for a node read by CT-RATE's convention, :data:`AFFIRMED_NODE_RULE`).
    """

    label: str
    state: str
    sentence: str
    section: str
    term: str
    cue: str | None


@dataclass
class _Cue:
    """One cue found in a clause: its kind and direction (see CUES), where it lies, and its CUES rank."""

    kind: str
    direction: str
    start: int
    end: int
    text: str
    rank: int
    """Index of its pattern in CUES: of two cues at the same distance, the lower rank wins."""


_MAX_SCOPE_CHARS = 2000
"""A cue never reaches over more characters than this (twelve words of a real report are far fewer)."""


_WORD = re.compile(r"\S+")
"""A word of a clause, for the word index of :class:`_ClauseCues`."""


class _ClauseCues:
    """The cues of one lower-cased clause, indexed so that finding the cue that decides a term is cheap.

    Why an index: a cue's reach only grows with distance, so among the cues of
    one kind on one side of a term only the nearest can be in reach (a farther
    one has the nearer one's words, and any verb among them, between it and the
    term). Looking up that nearest cue by bisection keeps the labeler linear in
    the length of the text; trying every cue against every term was quadratic.
    """

    def __init__(self, clause: str):
        self.clause = clause
        self.cues, self.without_pseudo = _find_cues(clause)
        self.cues.sort(key=lambda cue: cue.start)  # cues never overlap: sorted by start is sorted by end
        self.starts = [cue.start for cue in self.cues]
        self.by_kind = {}
        for cue in self.cues:
            self.by_kind.setdefault(cue.kind, {}).setdefault(cue.direction, []).append(cue)
        self.kind_starts = {
            kind: {direction: [cue.start for cue in listed] for direction, listed in sides.items()}
            for kind, sides in self.by_kind.items()
        }
        self.kind_ends = {
            kind: {direction: [cue.end for cue in listed] for direction, listed in sides.items()}
            for kind, sides in self.by_kind.items()
        }
        self.word_starts = [match.start() for match in _WORD.finditer(clause)]

    def words_between(self, start: int, end: int) -> int:
        """An upper bound of ``len(clause[start:end].split())`` from the word index (exact up to one)."""
        return bisect.bisect_left(self.word_starts, end) - bisect.bisect_left(self.word_starts, start) + 1

    def inside(self, start: int, end: int, kinds: tuple[str, ...]) -> list[_Cue]:
        """Cues of ``kinds`` lying wholly within ``start:end`` (distance 0)."""
        found = []
        for index in range(bisect.bisect_left(self.starts, start), len(self.cues)):
            cue = self.cues[index]
            if cue.start >= end:
                break
            if cue.end <= end and cue.kind in kinds:
                found.append(cue)
        return found

    def nearest(self, kind: str, direction: str, start: int, end: int) -> _Cue | None:
        """The closest ``kind`` cue reaching the term at ``start:end`` from its ``direction`` side."""
        listed = self.by_kind.get(kind, {}).get(direction)
        if not listed:
            return None
        if direction == "pre":  # the last cue ending at or before the term's start
            index = bisect.bisect_right(self.kind_ends[kind][direction], start) - 1
        else:  # the first cue starting at or after the term's end
            index = bisect.bisect_left(self.kind_starts[kind][direction], end)
        return listed[index] if 0 <= index < len(listed) else None


def _find_cues(clause: str) -> tuple[list[_Cue], str]:
    """Cues of a lower-cased clause, and the clause with pseudo-cues ("no change") blanked out.

    A later pattern never takes words an earlier one already holds, so "cannot
    be excluded" is one uncertainty cue, not a negation.
    """
    taken = bytearray(len(clause) + 1)
    cues, pseudo = [], []
    for rank, (kind, direction, pattern, gate) in enumerate(_COMPILED_CUES):
        if not gate.search(clause):
            continue
        for match in pattern.finditer(clause):
            start, end = match.span()
            if taken.find(1, start, end) != -1:
                continue
            taken[start:end] = b"\x01" * (end - start)
            (pseudo if kind == "pseudo" else cues).append(_Cue(kind, direction, start, end, match.group(), rank))
    return cues, _blanked(clause, pseudo)


def _blanked(clause: str, cues: list[_Cue]) -> str:
    """``clause`` with the characters of ``cues`` replaced by spaces (the clause itself when there are none)."""
    if not cues:
        return clause
    characters = list(clause)
    for cue in cues:
        characters[cue.start : cue.end] = " " * (cue.end - cue.start)
    return "".join(characters)


def _reaches(cue: _Cue, start: int, end: int, cues: _ClauseCues) -> int | None:
    """Distance in characters from ``cue`` to the term at ``start:end`` if the cue's scope covers it, else None."""
    if cue.direction == "pre" and cue.end <= start:
        gap = (cue.end, start)
    elif cue.direction == "post" and end <= cue.start:
        gap = (end, cue.start)
    else:
        return None
    distance = gap[1] - gap[0]
    if cue.kind == "resolved":  # "the consolidation seen before has resolved": reaches the whole clause
        return distance
    limit = _MAX_SCOPE_WORDS[cue.direction]
    if distance > _MAX_SCOPE_CHARS or cues.words_between(*gap) > limit + 1:
        return None
    between = cues.clause[gap[0] : gap[1]]
    if _SCOPE_BREAK.search(between) or len(between.split()) > limit:
        return None
    return distance


def _state_of(start: int, end: int, cues: _ClauseCues, is_subject: bool):
    """(state, cue text) of a term: the closest cue in reach decides; subjects only heed negation/normality.

    A "no" inside the term's own span (pseudo-cues blanked: "coronary arteries
    show no wall calcification") negates it. Of two cues at the same distance
    the one earlier in :data:`CUES` wins.
    """
    kinds = ("negative", "resolved", "normal") if is_subject else ("negative", "resolved", "uncertain")
    inside = _SPAN_NEGATION.search(cues.without_pseudo[start:end]) or _NON_PREFIX.search(
        cues.clause[max(0, start - 5) : start]
    )
    if inside:
        return "negative", inside.group()
    candidates = [(0, cue.rank, cue.start, cue) for cue in cues.inside(start, end, kinds)]
    for kind in kinds:
        for direction in ("pre", "post"):
            cue = cues.nearest(kind, direction, start, end)
            distance = None if cue is None else _reaches(cue, start, end, cues)
            if distance is not None:
                candidates.append((distance, cue.rank, cue.start, cue))
    if not candidates:
        return (None, None) if is_subject else ("positive", None)
    best = min(candidates, key=lambda candidate: candidate[:3])[3]
    return "uncertain" if best.kind == "uncertain" else "negative", best.text


def _affirmed_node_state(start: int, end: int, cues: _ClauseCues) -> tuple[str, str | None]:
    """(state, cue) of a lymph node under CT-RATE's convention: present unless absent, normal or hedged.

    A hedge leaves it uncertain; a negation of its presence ("no lymph node"),
    a resolution or a normality statement ("lymph nodes are within normal
    limits", read as for any normal subject) makes it negative; a negation
    that only denies its size ("lymph nodes were not enlarged") does not.
    """
    as_finding = _state_of(start, end, cues, is_subject=False)
    if as_finding[0] == "uncertain":
        return as_finding
    for state, cue in (_state_of(start, end, cues, is_subject=True), as_finding):
        if state == "negative" and not _SIZE_ONLY_NEGATION.search(cue):
            return state, cue
    return "positive", AFFIRMED_NODE_RULE


_NOT_THIS_CLASS = {
    "Atelectasis": re.compile(r"fibro[\s-]?\w*atelecta\w*$"),
    "Lung nodule": re.compile(r"(?:reticul(?:o|ar)|acino|acinar)[\s-]?\w*nodul\w*$"),
}
"""A term of these classes that ends such a word is another class: "fibroatelectasis" and
"fibro-atelectatic" are fibrotic sequelae, "reticulonodular" and "acinonodular" patterns no nodules."""


def _is_another_class(label: str, lead_and_term: str) -> bool:
    """True when a term, read with the few characters before it, names another class (see _NOT_THIS_CLASS)."""
    pattern = _NOT_THIS_CLASS.get(label)
    return bool(pattern and pattern.search(lead_and_term))


def _excluded(label: str, clause: str) -> bool:
    """True when a term of ``label`` in this clause is about another organ (see CONTEXT_EXCLUSIONS)."""
    if label in _COMPILED_EXCLUSIONS:
        other, lung = _COMPILED_EXCLUSIONS[label]
        return bool(other.search(clause)) and not lung.search(clause)
    if label == "Arterial wall calcification":  # coronary wins for coronary-only clauses
        return bool(_CORONARY.search(clause)) and not _NON_CORONARY_VESSEL.search(clause)
    return False


_VESSEL_AFTER = (
    r"(?:\s+(?:changes|" + _PLAQUE + r"))*\s+(?:in|of|along|within|involving)\s+(?:the\s+)?"
    r"(?:\w+\s+){0,2}?"
)
_CORONARY_AFTER = re.compile(_VESSEL_AFTER + _CORONARY_VESSEL)
_OTHER_VESSEL_AFTER = re.compile(_VESSEL_AFTER + r"(?:aort\w*|carotid|subclavian|brachiocephalic|iliac|supra-?aortic)")
_CORONARY_BEFORE = re.compile(_CORONARY_VESSEL + r"\s*$")
_CALCIFICATION_END = re.compile(_PLAQUE + r"$")
_PLAIN_LIST = re.compile(r"[\s,]*(?:and|or|&)?[\s,]*(?:the\s+)?")


def _belongs_to_other_vessel(label: str, term: str, before: str, after: str) -> bool:
    """True when the calcification a term names sits in the other calcification class's vessels.

    The vessel named right after a calcification decides ("an aortic stent and calcifications in the
    LAD" is coronary, "a coronary stent and calcifications in the thoracic aorta" arterial); "coronary"
    right before an arterial term makes it coronary ("coronary artery wall calcification"); an arterial
    term that names only coronary vessels is coronary, and one reaching from another vessel to a
    coronary one is coronary unless the two are a plain list
    ("the aorta and coronary arteries show no calcification" speaks of both).
    """
    if label == "Coronary artery wall calcification":
        return bool(_CALCIFICATION_END.search(term) and _OTHER_VESSEL_AFTER.match(after))
    if label != "Arterial wall calcification":
        return False
    if _CORONARY_BEFORE.search(before) or (_CALCIFICATION_END.search(term) and _CORONARY_AFTER.match(after)):
        return True
    vessel, coronary = _NON_CORONARY_VESSEL.search(term), _CORONARY.search(term)
    if not coronary:
        return False
    if not vessel:  # "calcific plaques in the coronary arteries"
        return True
    between = term[min(vessel.end(), coronary.end()) : max(vessel.start(), coronary.start())]
    return not _PLAIN_LIST.fullmatch(between)


_Finding = tuple[str, str, str, "str | None"]
"""(label, state, term as written, cue): a :class:`Mention` without its sentence and section."""


_SENTENCE_CACHE_SIZE = 4096
"""Distinct sentences whose candidate terms and findings are kept: reports repeat boilerplate sentences."""
_LONGEST_CACHED_SENTENCE = 2000
"""Longer sentences (no real report sentence is) are read afresh, so the caches stay within a few MB."""


_CANDIDATE_CACHE: dict[str, tuple[int, ...]] = {}
"""The candidate terms of each lower-cased sentence met before (see :func:`_candidate_terms`)."""


def _candidate_terms(sentences: list[str]) -> list[tuple[int, ...]]:
    """Per sentence, the indices into :data:`_TERMS` whose trigger matches in it (in :data:`_TERMS` order).

    A sentence's candidates depend on its own words only, so they are kept in
    :data:`_CANDIDATE_CACHE` (emptied once it holds more than
    :data:`_SENTENCE_CACHE_SIZE`) and only sentences not met before are scanned.
    """
    lowered = [sentence.lower() for sentence in sentences]
    distinct = dict.fromkeys(lowered)
    if len(_CANDIDATE_CACHE) > _SENTENCE_CACHE_SIZE:
        _CANDIDATE_CACHE.clear()
    known = {}
    for sentence in distinct:
        candidates = _CANDIDATE_CACHE.get(sentence)
        if candidates is not None:
            known[sentence] = candidates
    scanned = _scan_triggers([sentence for sentence in distinct if sentence not in known])
    _CANDIDATE_CACHE.update(
        {sentence: candidates for sentence, candidates in scanned.items() if len(sentence) <= _LONGEST_CACHED_SENTENCE}
    )
    known.update(scanned)
    return [known[sentence] for sentence in lowered]


def _scan_triggers(sentences: list[str]) -> dict[str, tuple[int, ...]]:
    """The candidate terms of each of the distinct lower-cased ``sentences``.

    Each trigger runs once over all the sentences joined, so the cost grows
    with the text's length, not with sentences x patterns. No trigger matches
    across :data:`_SENTENCE_SEPARATOR`, so a sentence's candidates do not depend
    on its neighbours.
    """
    starts, position = [], 0
    for sentence in sentences:
        starts.append(position)
        position += len(sentence) + len(_SENTENCE_SEPARATOR)
    joined = _SENTENCE_SEPARATOR.join(sentences)
    found: list[set[int]] = [set() for _ in sentences]
    for index, term in enumerate(_TERMS):
        for match in term.trigger.finditer(joined):
            found[bisect.bisect_right(starts, match.start()) - 1].add(index)
    return {sentence: tuple(sorted(indices)) for sentence, indices in zip(sentences, found)}


def _clause_findings(clause: str, candidates: tuple[int, ...]) -> list[_Finding]:
    """Every class mention in one clause, trying only its sentence's candidate terms."""
    lowered = clause.lower()
    cues = None
    findings = []
    excluded: dict[str, bool] = {}
    for index in candidates:
        term = _TERMS[index]
        if term.label not in excluded:
            excluded[term.label] = _excluded(term.label, lowered)
        if excluded[term.label] or (term.requires is not None and not term.requires.search(lowered)):
            continue
        for match in term.regex.finditer(lowered):
            if _is_another_class(term.label, lowered[max(0, match.start() - 8) : match.end()]):
                continue
            if _belongs_to_other_vessel(
                term.label,
                match.group(),
                lowered[max(0, match.start() - 30) : match.start()],
                lowered[match.end() : match.end() + 50],
            ):
                continue
            cues = cues or _ClauseCues(lowered)
            if term.affirmed_node:
                state, cue = _affirmed_node_state(match.start(), match.end(), cues)
            else:
                state, cue = _state_of(match.start(), match.end(), cues, term.is_subject)
            if state is not None:
                findings.append((term.label, state, clause[match.start() : match.end()], cue))
    return findings


def _read_sentence(sentence: str, candidates: tuple[int, ...]) -> tuple[_Finding, ...]:
    """The findings of every clause of ``sentence``, trying only its ``candidates`` terms."""
    findings = []
    for clause in _clauses(sentence):
        findings += _clause_findings(clause, candidates)
    return tuple(findings)


_cached_read_sentence = functools.lru_cache(maxsize=_SENTENCE_CACHE_SIZE)(_read_sentence)


def _sentence_findings(sentence: str, candidates: tuple[int, ...]) -> tuple[_Finding, ...]:
    """What ``sentence`` says: :func:`_read_sentence` is a pure function, so its result is cached."""
    if len(sentence) > _LONGEST_CACHED_SENTENCE:
        return _read_sentence(sentence, candidates)
    return _cached_read_sentence(sentence, candidates)


def _sentence_mentions(
    sentence: str, section: str, candidates: tuple[int, ...], convention: str = DEFAULT_CONVENTION
) -> list[Mention]:
    read = _term_indices(convention)
    candidates = tuple(index for index in candidates if index in read)
    if not candidates:
        return []
    return [
        Mention(label, state, sentence, section, term, cue)
        for label, state, term, cue in _sentence_findings(sentence, candidates)
    ]


def sentence_mentions(sentence: str, section: str = "findings", convention: str = DEFAULT_CONVENTION) -> list[Mention]:
    """Every class mention in one sentence (see the module docstring for the rules)."""
    return _sentence_mentions(sentence, section, _candidate_terms([sentence])[0], check_convention(convention))


# --------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------

_STATE_PRECEDENCE = ("positive", "uncertain", "negative")


@dataclass
class RuleResult:
    """All class mentions of one report, and the per-class verdict drawn from them."""

    mentions: list[Mention] = field(default_factory=list)

    def state(self, label: str) -> str:
        """The report's verdict on ``label``: one of :data:`STATES`.

        Positive if any section states it present, else uncertain if any hedges
        it, else negative if any negates it, else absent. A positive wins over
        a negation elsewhere (also impression over findings and back) because
        CT-RATE reports negate classes in boilerplate ("no pleural effusion")
        while a positive is a specific statement a radiologist chose to write;
        CT-RATE's labels count a finding present if the report states it anywhere.
        """
        if label not in CTRATE_ABNORMALITIES:
            raise KeyError(f"unknown CT-RATE class {label!r}")
        found = {mention.state for mention in self.mentions if mention.label == label}
        return next((state for state in _STATE_PRECEDENCE if state in found), "absent")

    def vector(self, uncertain_as: int = 0) -> dict[str, int]:
        """0/1 per class in CT-RATE order; positive is 1, uncertain is ``uncertain_as``, the rest 0."""
        if uncertain_as not in (0, 1):
            raise ValueError(f"uncertain_as must be 0 or 1, got {uncertain_as!r}")
        values = {"positive": 1, "uncertain": uncertain_as}
        return {label: values.get(self.state(label), 0) for label in CTRATE_ABNORMALITIES}

    def explain(self) -> list[str]:
        """One line per positive mention: class, section, the sentence with the term in [[ ]], and the rule."""
        lines = []
        for mention in self.mentions:
            if mention.state != "positive":
                continue
            at = mention.sentence.lower().find(mention.term.lower())
            marked = (
                (
                    mention.sentence[:at]
                    + "[["
                    + mention.sentence[at : at + len(mention.term)]
                    + "]]"
                    + mention.sentence[at + len(mention.term) :]
                )
                if at >= 0
                else mention.sentence
            )
            rule = mention.cue or "no negation or uncertainty cue in reach"
            lines.append(f"{mention.label} [{mention.section}]: {marked} (term '{mention.term}'; {rule})")
        return lines


def label_report(findings: str, impression: str = "", convention: str = DEFAULT_CONVENTION) -> RuleResult:
    """Read the 18 CT-RATE classes from a report's findings and impression text.

    Either text may itself carry section headers (a whole report passed as
    ``findings``): they are split out with :func:`split_sections`.
    ``convention`` says how lymph nodes are read (:data:`CONVENTIONS`).
    A text longer than :data:`~omnict_cli.labels.report_size.MAX_REPORT_CHARS`
    is read up to that limit, with a warning.
    """
    findings, impression = (_break_long_words(within_size_limit(text)) for text in (findings, impression))
    found_findings, found_impression = split_sections(findings)
    sections = (("findings", found_findings), ("impression", _join(found_impression, impression)))
    mentions = []
    for section, text in sections:
        sentences = split_sentences(text)
        for sentence, candidates in zip(sentences, _candidate_terms(sentences)):
            mentions += _sentence_mentions(sentence, section, candidates, check_convention(convention))
    return RuleResult(mentions)


_LONGEST_WORD = 100
_LONG_WORD = re.compile(rf"(\w{{{_LONGEST_WORD}}})(?=\w)")


def _break_long_words(text: str) -> str:
    """A run of more than 100 letters (no word of a report) cut by spaces every 100 letters.

    Why: a lexicon stem ("calcif") repeated inside one endless word would make
    every one of its occurrences rescan the rest of that word; with words of
    at most 100 letters each scan is short and the labeler stays linear.
    """
    return _LONG_WORD.sub(r"\1 ", text)


def _join(first: str, second: str) -> str:
    return " ".join(part for part in (first.strip(), second.strip()) if part)


def rule_feature_matrix(texts: list[str], convention: str = DEFAULT_CONVENTION) -> np.ndarray:
    """float32 ``[n, 54]`` rule features of whole report texts (``report_text`` strings).

    For each class in CT-RATE order, three columns: one-hot of the positive,
    negative and uncertain state (absent is all zero). Column ``3 * i + j`` is
    class ``CTRATE_ABNORMALITIES[i]``, state ``FEATURE_STATES[j]``.
    """
    features = np.zeros((len(texts), 3 * len(CTRATE_ABNORMALITIES)), dtype=np.float32)
    for row, text in enumerate(texts):
        result = label_report(text, convention=convention)
        for i, label in enumerate(CTRATE_ABNORMALITIES):
            state = result.state(label)
            if state in FEATURE_STATES:
                features[row, 3 * i + FEATURE_STATES.index(state)] = 1.0
    return features


__all__ = [
    "STATES",
    "FEATURE_STATES",
    "CONVENTIONS",
    "DEFAULT_CONVENTION",
    "check_convention",
    "Mention",
    "RuleResult",
    "label_report",
    "rule_feature_matrix",
    "sentence_mentions",
    "split_sentences",
    "FINDING_TERMS",
    "NORMAL_SUBJECTS",
    "CUES",
    "ABBREVIATIONS",
]
