"""Which organ groups a question or task is about: the "task-guided" part of OSE.

Why: OSE (paper Sec. 2.2) pools the vision tokens of the organ(s) a question
concerns, so omnict must turn free text ("Is the liver enlarged?", "Is there
ascites?") into organ groups (``ORGAN_GROUPS``). The paper does not publish its
routing, so it is a readable table here: each row is a regular expression over
the normalised question and the groups it implies. Rows are tried in order and
a matched span is blanked, so an earlier, more specific phrase ("coronary
artery" -> heart) hides its words from later rows ("artery" -> vessels).
Generic words that name no organ by themselves ("nodule", "effusion",
"calcification") have a default organ that applies only when nothing specific
matched ("thyroid nodule" is the thyroid, "nodule" alone is a lung nodule).

The groups for the 18 CT-RATE classes agree with the phantom QA's tags
(``omnict_cli.phantom.reports.CLASS_ORGAN`` and each drawing's ``Finding.organ``),
so inference pools what training pooled. See docs/organs-and-routing.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from omnict_cli.segmentation.organ_groups import ORGAN_GROUPS
from omnict_cli.segmentation.organs import parse_organ_option, scan_regions

ABDOMEN = ("liver", "spleen", "kidneys", "pancreas", "stomach", "bowel")
MEDIASTINUM = ("heart", "esophagus", "trachea", "vessels")
DEVICE_PLACES = ("heart", "vessels", "others")
"""Where the phantom draws medical material: pacemaker (heart), aortic stent (vessels), sternal wires (others)."""
BONES = ("spine", "others")

CHEST_REPORT_ORGANS = ("lungs", "heart", "vessels")
"""Report-generation organs of a chest CT: the lungs and the mediastinal heart and great vessels."""
ABDOMEN_REPORT_ORGANS = ABDOMEN
"""Report-generation organs of an abdominal CT."""

TASKS = ("report", "ask")
"""Tasks :func:`organs_for_task` knows: report generation and a visual question."""


@dataclass(frozen=True)
class Route:
    """The organs chosen for one question or task, and why.

    Attributes:
        groups: organ group names in ``ORGAN_GROUPS`` order (from ``--organ``: the user's names,
            which may be TotalSegmentator structures such as ``kidney_left``, in the user's order);
            ``()`` means no organ: pool the whole image.
        reason: one line for logs and ``explain``: what matched, what was dropped, what was assumed.
        fallback: True when the question did not decide the organs (nothing matched, or nothing
            it named is in the scan) and a default was used instead.
    """

    groups: tuple[str, ...]
    reason: str
    fallback: bool
    unsegmentable: tuple[str, ...] = ()
    """Groups the question names that the segmenter has no class for (see :class:`SegmenterScope`)."""


@dataclass(frozen=True)
class SegmenterScope:
    """The organ groups the segmenter in use has classes for, and how messages name it.

    Why: a question about an organ the segmenter cannot segment ("ascites" with the
    built-in segmenter, which has no abdominal classes) must say so, not blame the scan.
    """

    groups: frozenset[str]
    name: str = "the segmenter"
    hint: str = ""
    """What to do to get the missing classes (e.g. install TotalSegmentator)."""

    def lacking(self, groups: Iterable[str]) -> str:
        """'the built-in segmenter has no liver, spleen classes; install ...' for the groups it cannot segment."""
        groups = list(groups)
        noun = "classes" if len(groups) > 1 else "class"
        return f"{self.name} has no {', '.join(groups)} {noun}" + (f"; {self.hint}" if self.hint else "")


@dataclass(frozen=True)
class _Rule:
    pattern: re.Pattern
    groups: tuple[str, ...]


def _rule(pattern: str, *groups: str) -> _Rule:
    unknown = set(groups) - set(ORGAN_GROUPS)
    if unknown:
        raise ValueError(f"routing rule {pattern!r} names unknown groups {sorted(unknown)}")
    return _Rule(re.compile(pattern), groups)


SPECIFIC_RULES = (
    # Phrases first: their words would otherwise route elsewhere.
    _rule(r"\bcoronar\w*(?:\s+arter\w*)?", "heart"),
    _rule(r"\baortic\s+valv\w*", "heart"),
    _rule(r"\bpulmonary\s+embol\w*", "vessels", "lungs"),
    _rule(r"\b(?:pulmonary|portal|splenic)\s+(?:veins?|venous|arter\w*|trunk)\b", "vessels"),
    _rule(r"\bhepatosplen\w*", "liver", "spleen"),
    _rule(r"\bgastro\s*esophag\w*|\bnasogastric\b|\bhiat(?:al|us)\b", "esophagus", "stomach"),
    _rule(r"\bgastro\s*intestinal\b", "stomach", "bowel"),
    _rule(r"\bgall\s*bladder\w*|\bgallstones?\b|\bcholecyst\w*|\bcholelith\w*|\b(?:urinary\s+)?bladder\b", "others"),
    _rule(r"\biliac\s+(?:bones?|crest|wings?)\b|\bchest\s+wall\b|\bremaining\s+structures?\b", "others"),
    _rule(r"\bspinal\s+(?:cord|canal)\b", "spine"),
    _rule(
        r"\bbronchial\s+(?:walls?|dilat\w*|thicken\w*)|\bperibronch\w*|\bbronchiol\w*|\bbronchiect\w*"
        r"|\bbronchovascular\b",
        "lungs",
    ),
    _rule(r"\bmain\s+bronch\w*|\bcarina\w*", "trachea"),
    _rule(r"\bbronch\w*|\bairways?\b", "trachea", "lungs"),
    _rule(r"\bfree\s+(?:fluid|air)\b|\bascit\w*|\bpneumoperitone\w*|\bperitone\w*|\babdominal\s+organs?\b", *ABDOMEN),
    _rule(r"\bpneumomediastin\w*|\bmediastin\w*", *MEDIASTINUM),
    _rule(r"\bgreat\s+vessels?\b", "vessels"),
    _rule(r"\blymph\w*|\b\w*adenopath\w*|\bnodal\b", "others"),
    _rule(
        r"\bmedical\s+(?:material|devices?)\b|\bdevices?\b|\bimplant\w*|\bforeign\s+bod\w*|\bprosthe\w*"
        r"|\bpostoperative\s+material\b",
        *DEVICE_PLACES,
    ),
    _rule(r"\bpacemakers?\b|\bpacing\s+leads?\b|\bdefibrillators?\b", "heart"),
    _rule(r"\bstents?\b|\bstented\b|\bcatheters?\b|\bports?\b|\bcentral\s+lines?\b", "vessels"),
    _rule(r"\bstern(?:um|al|otomy)\b|\bcerclage\b", "others"),
    # Organ names and the findings that belong to one organ.
    _rule(
        r"\blungs?\b|\bpulmon\w*|\blob(?:e|es|ar)\b|\blingul\w*|\bpleura\w*|\bhil(?:um|ar|a)\b|\bpneumo\w*"
        r"|\bemphysem\w*|\batelecta\w*|\bconsolidat\w*|\bground\s+glass\b|\bmosaic\b|\binterlobular\b"
        r"|\bsept(?:al|a)\s+thicken\w*|\bhoneycomb\w*|\btree\s+in\s+bud\b|\bbull(?:a|ae|ous)\b"
        r"|\bair\s+trapping\b|\bcrazy\s+paving\b|\bfibrotic\s+sequela\w*",
        "lungs",
    ),
    _rule(
        r"\bhearts?\b|\w*cardi\w*|\bmyocard\w*|\bventric\w*|\batri(?:um|a|al)\b|\bvalv\w*|\bmitral\b"
        r"|\btricuspid\b",
        "heart",
    ),
    _rule(
        r"\baort\w*|\barter\w*|\bveins?\b|\bvenous\b|\bvena\b|\bcava\b|\bsvc\b|\bivc\b|\bvessels?\b"
        r"|\bvascula\w*|\baneurysm\w*|\bdissection\b|\bembol\w*|\bthromb\w*|\batheros\w*|\batherom\w*"
        r"|\bcarotid\b|\bsubclavian\b|\bbrachiocephalic\b|\biliac\b|\bjugular\b|\bportal\b",
        "vessels",
    ),
    _rule(r"\blivers?\b|\bhepat\w*|\bsteato\w*|\bcirrho\w*", "liver"),
    _rule(r"\bspleens?\b|\bsplen\w*", "spleen"),
    _rule(r"\bkidneys?\b|\brenal\b|\w*nephr\w*|\bpyel\w*|\bureter\w*|\burolith\w*", "kidneys"),
    _rule(r"\bpancrea\w*", "pancreas"),
    _rule(r"\bstomachs?\b|\bgastr\w*", "stomach"),
    _rule(
        r"\bbowels?\b|\bintestin\w*|\bcolon\w*|\bcolitis\b|\bcolorectal\b|\bduoden\w*|\bjejun\w*"
        r"|\bile(?:um|al|us)\b|\bcecum\b|\bcecal\b|\bappendi(?:x|ces|citis|ceal)\b|\bsigmoid\w*"
        r"|\brect(?:um|al)\b|\bdiverticul\w*|\bmesenter\w*|\benterit\w*|\bcrohn\w*",
        "bowel",
    ),
    _rule(r"\w*esophag\w*|\bachalasia\b", "esophagus"),
    _rule(r"\w*trache\w*", "trachea"),
    _rule(
        r"\bspin(?:e|es|al)\b|\bvertebr\w*|\bscolio\w*|\bkypho\w*|\blordo\w*|\bspondyl\w*|\bdis[ck]s?\b"
        r"|\bsacr(?:um|al)\b|\blumbar\b|\bcoccy\w*|\bspinous\b|\b[ctls]\d{1,2}\b",
        "spine",
    ),
    _rule(
        r"\bribs?\b|\bcostal\b|\bclavic\w*|\bscapul\w*|\bhumer\w*|\bfemur\w*|\bfemoral\b|\bhips?\b"
        r"|\bpelvic\s+bones?\b|\bglute\w*|\bmuscles?\b|\bmuscular\b|\b(?:ilio)?psoas\b|\bautochthon\w*"
        r"|\bthyroid\w*|\badrenal\w*|\bprostat\w*|\bbrain\w*|\bskull\w*|\bcranial\b|\bbreasts?\b"
        r"|\baxill\w*|\bcartilag\w*",
        "others",
    ),
)
"""Organ names, unambiguous findings and phrases, most specific first; all matches are united."""

GENERIC_RULES = (
    _rule(r"\bnodul\w*", "lungs"),
    _rule(r"\bopacit\w*|\binfiltrat\w*|\bfibros\w*|\bfibrotic\b|\bscarring\b", "lungs"),
    _rule(r"\beffusions?\b|\bfluid\b", "lungs", "heart"),
    _rule(r"\bcalcif\w*|\bplaques?\b", "vessels", "heart"),
    _rule(r"\bhernia\w*", "esophagus", "stomach"),
    _rule(r"\bstones?\b|\bcalcul\w*", "kidneys"),
    _rule(r"\bfractur\w*|\bbones?\b|\bbony\b|\bosseous\b|\bskelet\w*|\bosteo\w*|\blytic\b|\bsclerotic\b", *BONES),
    _rule(r"\bdegenerat\w*", "spine"),
    _rule(r"\babdom\w*", *ABDOMEN_REPORT_ORGANS),
    _rule(r"\bchest\b|\bthora\w*", *CHEST_REPORT_ORGANS),
)
"""Words that suggest an organ only when nothing specific is named: a nodule in a chest CT
question is a lung nodule, an effusion pleural or pericardial, a calcification vascular."""

_SPELLINGS = (
    ("oesophag", "esophag"),
    ("haem", "hem"),
    ("caec", "cec"),
    ("tumour", "tumor"),
    ("oedema", "edema"),
    ("ischaem", "ischem"),
    ("anaem", "anem"),
)
_OPTION_LINE = re.compile(r"^\s*\(?[a-h][.)]\s", re.IGNORECASE)


def normalise_question(text: str) -> str:
    """Lower case, American spelling, punctuation, ``_`` and ``-`` as spaces, single spaces."""
    text = text.lower()
    for british, american in _SPELLINGS:
        text = text.replace(british, american)
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text).split())


def _match(text: str, rules: Sequence[_Rule]) -> tuple[set[str], list[str]]:
    """Groups and ``"'words' -> groups"`` notes of every rule matching ``text``; matched spans are blanked."""
    groups: set[str] = set()
    notes: list[str] = []
    for rule in rules:
        for found in list(rule.pattern.finditer(text)):
            notes.append(f"'{found.group(0)}' -> {'+'.join(rule.groups)}")
            groups.update(rule.groups)
        text = rule.pattern.sub(lambda found: " " * len(found.group(0)), text)
    return groups, notes


def _route_text(text: str) -> tuple[tuple[str, ...], list[str]]:
    """Groups (``ORGAN_GROUPS`` order) named in normalised text: specific rules, else generic ones."""
    groups, notes = _match(text, SPECIFIC_RULES)
    if not groups:
        groups, notes = _match(text, GENERIC_RULES)
    return tuple(group for group in ORGAN_GROUPS if group in groups), notes


def _split_options(question: str) -> tuple[str, str]:
    """(stem, lettered options) of a multiple-choice question; options are lines like ``B. Consolidation``."""
    lines = question.splitlines()
    options = [line for line in lines if _OPTION_LINE.match(line)]
    stem = [line for line in lines if not _OPTION_LINE.match(line)]
    return " ".join(stem), " ".join(options)


def route_question(
    question: str,
    available: Mapping[str, int] | Iterable[str] | None = None,
    scope: SegmenterScope | None = None,
) -> Route:
    """Organ groups a question is about.

    Args:
        question: free text; for a multiple-choice question only the stem is routed, and the
            lettered options only when the stem names nothing (the answer is one of them).
        available: the groups the scan covers (``set(coverage(...))``, or the coverage dict
            itself, which also lets the default tell a chest from an abdominal CT); None = unknown.
        scope: what the segmenter can segment; None = anything.

    Returns:
        A :class:`Route`. Groups the segmenter has no class for are dropped, and when that leaves
        nothing the route is the whole volume (``()``, ``fallback=True``), saying which classes
        are missing. Groups the scan does not cover are dropped; when nothing is left, or
        nothing matched, the route falls back to :func:`default_report_organs` (``()`` = whole
        image when the coverage is unknown) with ``fallback=True`` and says why.
    """
    stem, options = _split_options(str(question))
    groups, notes = _route_text(normalise_question(stem))
    where = "question"
    if not groups and options:
        groups, notes = _route_text(normalise_question(options))
        where = "answer options"
    if not groups:
        return _fallback("the question names no organ or finding", available)
    matched = f"{where}: {'; '.join(notes)}"
    unsegmentable = tuple(group for group in groups if scope is not None and group not in scope.groups)
    if unsegmentable:
        groups = tuple(group for group in groups if group not in unsegmentable)
        matched = f"{matched}; {scope.lacking(unsegmentable)}"
        if not groups:
            return Route((), f"{matched}; using the whole volume", True, unsegmentable)
    if available is None:
        return Route(groups, matched, False, unsegmentable)
    shown = set(available)
    kept = tuple(group for group in groups if group in shown)
    if not kept:
        return replace(
            _fallback(f"{matched}; but the scan shows none of {', '.join(groups)}", available),
            unsegmentable=unsegmentable,
        )
    dropped = [group for group in groups if group not in kept]
    note = f"; not in the scan: {', '.join(dropped)}" if dropped else ""
    return Route(kept, matched + note, False, unsegmentable)


def _fallback(why: str, available) -> Route:
    groups = default_report_organs(available) if available is not None else ()
    used = f"default organs {', '.join(groups)}" if groups else "the whole image"
    return Route(groups, f"{why}; using {used}", True)


def default_report_organs(coverage_groups: Mapping[str, int] | Iterable[str]) -> tuple[str, ...]:
    """Organs to pool for report generation, from what the scan covers.

    A chest CT (or a chest-abdomen CT) gets the lungs, heart and great vessels; an abdominal CT
    liver, spleen, kidneys, pancreas, stomach and bowel; in both cases only the groups the scan
    shows. ``()`` (pool the whole image) when neither region is covered. Pass :func:`coverage`'s
    voxel counts so the lung bases of an abdominal CT do not make it a chest CT
    (``organs.MIN_REGION_SHARE``); plain group names count any voxel.
    """
    if coverage_groups is None:
        return ()
    shown = set(coverage_groups)
    regions = scan_regions(coverage_groups)
    if "chest" in regions:
        return tuple(group for group in CHEST_REPORT_ORGANS if group in shown)
    if "abdomen" in regions:
        return tuple(group for group in ABDOMEN_REPORT_ORGANS if group in shown)
    return ()


def organs_for_task(
    task: str,
    question: str | None = None,
    override: str | Sequence[str] | None = None,
    available: Mapping[str, int] | Iterable[str] | None = None,
    scope: SegmenterScope | None = None,
) -> Route:
    """The organs for one study: ``--organ`` beats question routing, which beats the default.

    Args:
        task: ``"report"`` (default organs of the scan) or ``"ask"`` (route ``question``).
        question: the user's question; required for ``"ask"``.
        override: the ``--organ`` value, as text (``"lungs,heart"``) or a list of names; used
            as given, even for organs the scan lacks (their masks then come back empty and the
            pooling falls back to the whole image, which the reason warns about).
        available: what the scan covers, as for :func:`route_question`.
        scope: what the segmenter can segment, as for :func:`route_question`.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    if override:
        names = parse_organ_option(override if isinstance(override, str) else ",".join(override))
        reason = f"--organ {','.join(names)}"
        missing = [
            name for name in names if name in ORGAN_GROUPS and available is not None and name not in set(available)
        ]
        if missing:
            reason += f" (not in the scan: {', '.join(missing)})"
        return Route(tuple(names), reason, False)
    if task == "ask":
        if not question or not question.strip():
            raise ValueError("task 'ask' needs a question")
        return route_question(question, available, scope)
    groups = default_report_organs(available) if available is not None else ()
    if not groups:
        return Route((), "report: the scan covers no chest or abdominal organ group; using the whole image", True)
    return Route(groups, f"report: {' and '.join(scan_regions(available))} CT default organs", False)
