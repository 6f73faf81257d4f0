"""CT-RATE-style training reports with exact labels, for the bundled report classifier.

The classifier in ``classifier.py`` learns on top of the rule labeler's
features and needs labelled text that looks like CT-RATE's: Turkish-English
phrasing ("... was not observed", "lymph nodes in pathological size"),
boilerplate negations of most classes, coordinated negations ("No pleural or
pericardial effusion was detected"), several findings in one sentence, hedged
findings, findings written only in the impression, and hard negatives (words
of a class that do not state it: "subcutaneous emphysema", "a nodule in the
thyroid", "no new nodule").

Labels follow CT-RATE practice as :mod:`omnict_cli.labels.rules` reads it: a
class is 1 when any sentence states it present (including "consistent with"
and "compatible with"); hedged classes ("possible", "cannot be excluded") and
negated or unmentioned ones are 0.

Since the CT-RATE conventions of issue 12 the corpus also writes them
(lymph nodes with a size or count at a station, "CTO increased in favour of
the heart", "fibroatelectatic sequelae", "nodular infiltrates", "effusion in
the right hemithorax"; see :data:`CONVENTION_SENTENCES`). All phrasing
comes from this module's own banks: it does not import the phantom package,
so the labeler is not tied to the synthetic reports it is later asked to
judge. Everything is drawn from one
``numpy.random.default_rng([seed, index])`` per report, so report ``i`` of a
seed is the same however many are generated.
"""

from __future__ import annotations

import numpy as np

from omnict_cli.labels.classes import CLASS_REGION, CTRATE_ABNORMALITIES, FINDINGS_REGIONS
from omnict_cli.labels.ctrate_io import LabelledReport

# --------------------------------------------------------------------------
# Banks: (noun phrase, verb) per class, so sentences agree in number
# --------------------------------------------------------------------------

NOUNS = {
    "Medical material": (
        ("a cardiac pacemaker", "is"),
        ("sternotomy wires", "are"),
        ("a central venous catheter", "is"),
        ("a port catheter", "is"),
        ("an aortic stent", "is"),
        ("surgical clips", "are"),
        ("a prosthetic heart valve", "is"),
        ("a coronary stent", "is"),
        ("a tracheostomy cannula", "is"),
    ),
    "Arterial wall calcification": (
        ("calcific atheroma plaques in the aorta", "are"),
        ("atherosclerotic calcifications in the thoracic aorta", "are"),
        ("calcified plaques in the aortic arch", "are"),
        ("aortic wall calcification", "is"),
        ("atherosclerotic changes in the aorta and its branches", "are"),
        ("calcified atheroma in the supra-aortic arteries", "is"),
    ),
    "Cardiomegaly": (
        ("cardiomegaly", "is"),
        ("an enlarged heart", "is"),
        ("an increased cardiothoracic ratio", "is"),
        ("cardiac enlargement", "is"),
    ),
    "Pericardial effusion": (
        ("pericardial effusion", "is"),
        ("pericardial fluid", "is"),
        ("pericardial effusion-thickening", "is"),
        ("fluid in the pericardial space", "is"),
    ),
    "Coronary artery wall calcification": (
        ("coronary artery calcification", "is"),
        ("calcified coronary plaques", "are"),
        ("calcific atheroma plaques in the coronary arteries", "are"),
        ("calcifications in the LAD and RCA", "are"),
        ("coronary artery wall calcifications", "are"),
    ),
    "Hiatal hernia": (("a hiatal hernia", "is"), ("a sliding hiatus hernia", "is"), ("a small hiatal hernia", "is")),
    "Lymphadenopathy": (
        ("lymph nodes in pathological size", "are"),
        ("enlarged mediastinal lymph nodes", "are"),
        ("lymphadenopathy", "is"),
        ("pathologically enlarged hilar lymph nodes", "are"),
        ("a conglomerate of lymph nodes of pathological size", "is"),
    ),
    "Emphysema": (
        ("centrilobular emphysema", "is"),
        ("paraseptal emphysematous changes", "are"),
        ("bullae", "are"),
        ("emphysema", "is"),
        ("emphysematous areas", "are"),
    ),
    "Atelectasis": (
        ("subsegmental atelectasis", "is"),
        ("atelectatic bands", "are"),
        ("linear atelectasis", "is"),
        ("passive atelectasis", "is"),
        ("plate-like atelectasis", "is"),
    ),
    "Lung nodule": (
        ("millimetric nonspecific nodules", "are"),
        ("a solid nodule", "is"),
        ("micronodules", "are"),
        ("a nodular lesion", "is"),
        ("a stable nodule", "is"),
        ("a calcified granuloma-like nodule", "is"),
    ),
    "Lung opacity": (
        ("ground-glass opacities", "are"),
        ("ground glass density increases", "are"),
        ("patchy infiltration", "is"),
        ("areas of increased density", "are"),
        ("a hazy opacity", "is"),
    ),
    "Pulmonary fibrotic sequela": (
        ("fibrotic sequelae", "are"),
        ("parenchymal fibrotic bands", "are"),
        ("sequela changes", "are"),
        ("fibrotic scarring", "is"),
        ("fibroreticular densities", "are"),
    ),
    "Pleural effusion": (("pleural effusion", "is"), ("fluid in the pleural space", "is"), ("pleural fluid", "is")),
    "Mosaic attenuation pattern": (
        ("mosaic attenuation", "is"),
        ("a mosaic perfusion pattern", "is"),
        ("areas of mosaic attenuation", "are"),
    ),
    "Peribronchial thickening": (
        ("peribronchial thickening", "is"),
        ("bronchial wall thickening", "is"),
        ("peribronchial cuffing", "is"),
        ("thickened bronchial walls", "are"),
    ),
    "Consolidation": (
        ("consolidation", "is"),
        ("consolidated areas with air bronchograms", "are"),
        ("a consolidative focus", "is"),
        ("pneumonic consolidation", "is"),
    ),
    "Bronchiectasis": (
        ("bronchiectasis", "is"),
        ("cylindrical bronchiectatic changes", "are"),
        ("dilated bronchi", "are"),
        ("traction bronchiectasis", "is"),
    ),
    "Interlobular septal thickening": (
        ("interlobular septal thickening", "is"),
        ("thickened interlobular septa", "are"),
        ("septal thickening", "is"),
    ),
}
"""Noun phrases stating each class present, with the verb that agrees with them."""

NEGATED_NOUNS = {
    "Medical material": "medical material",
    "Arterial wall calcification": "atherosclerotic calcification of the aorta",
    "Cardiomegaly": "cardiomegaly",
    "Pericardial effusion": "pericardial effusion",
    "Coronary artery wall calcification": "coronary artery calcification",
    "Hiatal hernia": "hiatal hernia",
    "Lymphadenopathy": "lymph node in pathological size",
    "Emphysema": "emphysema",
    "Atelectasis": "atelectasis",
    "Lung nodule": "nodule",
    "Lung opacity": "ground-glass opacity",
    "Pulmonary fibrotic sequela": "fibrotic sequela",
    "Pleural effusion": "pleural effusion",
    "Mosaic attenuation pattern": "mosaic attenuation",
    "Peribronchial thickening": "peribronchial thickening",
    "Consolidation": "consolidation",
    "Bronchiectasis": "bronchiectasis",
    "Interlobular septal thickening": "interlobular septal thickening",
}
"""How a negation names each class ("No {noun} was detected")."""

PLACES = {
    "lungs": (
        "in the right upper lobe",
        "in the middle lobe of the right lung",
        "in the lower lobe of the left lung",
        "in both lungs",
        "in the lingular segment",
        "in the posterobasal segments of both lower lobes",
        "in the apical segment of the left upper lobe",
        "in the superior segment of the right lower lobe",
    ),
    "lymph_nodes": (
        "in the mediastinum",
        "in the right hilar region",
        "in the subcarinal region",
        "in the prevascular area",
        "in the bilateral hilar regions",
        "in the right paratracheal station",
    ),
    "pleura": ("on the right", "on the left", "bilaterally", "in the right hemithorax", "on both sides"),
}
"""Where findings of a Findings group are said to be (other groups take no place)."""

SEVERITIES = ("", "", "minimal ", "mild ", "slight ", "moderate ", "marked ", "severe ", "extensive ")
SIZES = ("", "", " measuring 4 mm", " measuring 8.9 mm", " of 12 mm", " (approx. 6 mm)", " 15x11 mm in size")

POSITIVE_FRAMES = (
    "{Noun} {verb} observed {place}.",
    "There {verb} {sev}{noun}{size} {place}.",
    "{Sev}{noun}{size} {verb} noted {place}.",
    "{Noun} {verb} seen {place}.",
    "{Sev}{noun} {verb} present {place}, consistent with the clinical history.",
    "Findings compatible with {noun} are observed {place}.",
    "{Noun}{size} {verb} again seen {place}, unchanged compared to the previous examination.",
)
"""Ways a Findings sentence states one finding (all positive)."""

LUNG_FRAMES = (
    "When examined in the lung parenchyma window; {noun} {verb} detected {place}.",
    "No significant change was observed in {noun} {place} compared to the previous examination.",
)
"""Extra positive frames for findings of the lungs."""

PAIR_FRAMES = (
    "{Noun} and {noun2} are observed {place}.",
    "There are {noun} accompanied by {noun2} {place}.",
    "{Noun} together with {noun2} were detected {place}.",
)
"""Two findings of the lungs in one sentence."""

HEDGE_FRAMES = (
    "Possible {noun} {place}.",
    "{Noun} cannot be excluded {place}.",
    "Findings suspicious for {noun} {place}.",
    "Questionable {noun} {place}.",
    "Appearance that may represent {noun} {place}.",
    "Probable {noun} {place}, clinical correlation is recommended.",
)
"""Hedged statements: uncertain, so labelled 0."""

NEGATIVE_FRAMES = (
    "No {noun} was detected.",
    "{Noun} was not observed.",
    "There is no evidence of {noun}.",
    "No {noun} was seen in the examined sections.",
    "{Noun} is not seen.",
)
COORDINATED_FRAMES = (
    "No {nouns} was detected.",
    "{Nouns} were not observed.",
    "There is no {nouns}.",
    "Findings of {nouns} were not detected.",
)

HARD_NEGATIVES = {
    "Lung nodule": (
        "No new nodule was detected in either lung.",
        "Reticulonodular densities are seen in both lower lobes.",
        "A subcutaneous nodular lesion is seen in the right chest wall.",
        "A nodular lesion in the left kidney is partially included in the sections.",
        "A 9 mm hypodense nodule is seen in the left thyroid lobe.",
        "A nodular lesion in the right adrenal gland is noted.",
    ),
    "Emphysema": ("Subcutaneous emphysema is seen in the left chest wall.",),
    "Lymphadenopathy": (
        "Lymph nodes below pathological size are observed in the mediastinum.",
        "Millimetric lymph nodes not reaching pathological size are seen in the prevascular area.",
        "Mediastinal lymph nodes are within normal size limits.",
    ),
    "Cardiomegaly": ("Heart contour and size are normal.", "The heart is not enlarged."),
    "Pleural effusion": ("Minimal pleural thickening is observed on the right.", "The costophrenic sinuses are open."),
    "Consolidation": ("The consolidation seen on the previous examination has resolved.",),
    "Lung opacity": ("The ground-glass opacity described previously has disappeared.",),
    "Interlobular septal thickening": ("The interventricular septal thickness is normal.",),
    "Bronchiectasis": ("Trachea and both main bronchi are open and of normal caliber.",),
    "Hiatal hernia": ("A small fat-containing umbilical hernia is noted.",),
    "Arterial wall calcification": ("Thoracic aorta diameter is normal.",),
    "Medical material": ("Findings consistent with chronic changes are noted.",),
}
"""Sentences that use a class's words without stating it (label 0)."""

NEGATED_SENTENCES = {
    "Medical material": (
        "No device or postoperative material was seen in the thorax.",
        "There is no catheter, stent or other medical material.",
    ),
    "Arterial wall calcification": (
        "The thoracic aorta shows no calcified plaque.",
        "No atherosclerotic calcification was seen in the aortic wall.",
    ),
    "Cardiomegaly": (
        "Heart dimensions are within normal limits.",
        "CTO is within normal limits.",
        "The heart is of normal size.",
    ),
    "Pericardial effusion": (
        "No effusion was seen in the pericardial space.",
        "Pericardial thickening-effusion was not detected.",
    ),
    "Coronary artery wall calcification": (
        "The coronary arteries are free of calcification.",
        "No calcified plaque was seen in the coronary arteries.",
    ),
    "Hiatal hernia": ("The hiatus is of normal width and no hernia was seen.", "Hiatal hernia was not detected."),
    "Lymphadenopathy": (
        "No lymph node of pathological size or appearance was detected in the mediastinum or hilar regions.",
        "Mediastinal and hilar lymph nodes are not enlarged.",
        "No pathologically enlarged lymph node was seen in the axillary regions.",
    ),
    "Emphysema": ("No emphysematous area was seen in either lung.", "Emphysema was not detected."),
    "Atelectasis": ("No atelectatic area was seen.", "Both lungs are expanded, without atelectasis."),
    "Lung nodule": (
        "No nodular lesion was detected in the lung parenchyma.",
        "No mass or nodule was seen in either lung.",
    ),
    "Lung opacity": (
        "No density increase was seen in the lung parenchyma.",
        "Ground-glass densities were not detected.",
    ),
    "Pulmonary fibrotic sequela": ("No sequela change was seen in the lungs.", "No parenchymal band or scar was seen."),
    "Mosaic attenuation pattern": (
        "Lung attenuation is homogeneous, without mosaic areas.",
        "Mosaic attenuation was not detected.",
    ),
    "Peribronchial thickening": ("The bronchial walls are not thickened.", "No peribronchial thickening was seen."),
    "Consolidation": ("No consolidative area was seen in either lung.", "Consolidation was not detected."),
    "Bronchiectasis": (
        "The bronchi are of normal calibre and no bronchiectasis was seen.",
        "Bronchiectatic changes were not detected.",
    ),
    "Interlobular septal thickening": (
        "The interlobular septa are of normal thickness.",
        "Septal thickening was not detected.",
    ),
    "Pleural effusion": (
        "No effusion was seen in the pleural spaces.",
        "The costophrenic sinuses are open.",
        "No effusion was detected in either hemithorax.",
    ),
}
"""Whole sentences that negate one class (used alongside the NEGATIVE_FRAMES)."""

NORMAL_STRUCTURES = {
    "trachea": (
        "The trachea and both main bronchi are patent.",
        "Trachea and main bronchi are of normal calibre.",
        "Trachea is in the midline and its lumen is open.",
    ),
    "abdomen": (
        "The upper abdominal organs in the sections are unremarkable.",
        "No pathology was seen in the upper abdominal sections.",
        "The liver and spleen in the sections are of normal size.",
    ),
    "bones": (
        "No lytic or destructive lesion was seen in the bones in the sections.",
        "Degenerative changes are seen in the thoracic spine.",
        "Bone structures in the sections are unremarkable.",
    ),
}
"""Sentences about normal structures that state no CT-RATE class."""

CONVENTION_SENTENCES = {
    "Lymphadenopathy": (
        "Lymph nodes with a short axis reaching 8 mm are seen in the prevascular area.",
        "Several lymph nodes are present in the paratracheal and subcarinal stations, the largest 12x7 mm.",
        "Multiple lymph nodes were observed in the bilateral hilar regions.",
        "A few lymph nodes measuring up to 6 mm are seen in the mediastinum.",
        "A lymph node of 9x5 mm is present in the right axilla.",
    ),
    "Cardiomegaly": (
        "CTO has increased in favour of the heart.",
        "The heart appears larger than normal.",
        "The cardiothoracic ratio is increased in favour of the heart.",
    ),
    "Pulmonary fibrotic sequela": (
        "Fibroatelectatic sequelae are seen in the lingula.",
        "Band atelectasis-sequelae changes are observed in the left lower lobe.",
        "Fibroatelectasis is present in the middle lobe.",
        "Fibro-atelectatic bands are seen at both lung bases.",
    ),
    "Pleural effusion": (
        "Effusion is seen in the left hemithorax.",
        "Smear-like effusion is observed in the right hemithorax.",
        "Effusions are present in both lungs, more on the right.",
        "Smear-like effusion is seen in both hemithoraces.",
    ),
    "Lung opacity": (
        "Nodular infiltrates are observed in the right lower lobe.",
        "Acinonodular densities with ground glass are seen in the left upper lobe.",
    ),
    "Consolidation": ("Nodular consolidation is seen in the posterobasal segment of the left lower lobe.",),
}
"""How CT-RATE's labels read some phrasings (issue 12): each sentence states its key class and no other."""

NORMAL_IMPRESSIONS = (
    "No significant pathological findings.",
    "Chest CT within normal limits.",
    "No acute cardiopulmonary pathology.",
)


# --------------------------------------------------------------------------
# Writing one report
# --------------------------------------------------------------------------


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _fill(frame: str, rng: np.random.Generator, label: str, noun=None, noun2=None) -> str:
    """One frame filled for ``label``; capitalised slots ({Noun}, {Sev}) start the sentence."""
    phrase, verb = noun or _pick(rng, NOUNS[label])
    place = _pick(rng, PLACES[CLASS_REGION[label]]) if CLASS_REGION[label] in PLACES else ""
    has_article = phrase.startswith(("a ", "an "))
    sev = "" if label in _UNGRADED or has_article else _pick(rng, SEVERITIES)
    if has_article and frame in HEDGE_FRAMES:  # "Possible enlarged heart", not "Possible an enlarged heart"
        phrase = phrase.split(" ", 1)[1]
    text = frame.format(
        noun=phrase,
        Noun=phrase[:1].upper() + phrase[1:],
        verb=verb,
        place=place,
        sev=sev,
        Sev=sev[:1].upper() + sev[1:],
        size=_pick(rng, SIZES) if label in _SIZED else "",
        noun2=(noun2 or ("", ""))[0],
    )
    text = " ".join(text.split()).replace(" .", ".").replace(" ,", ",")
    return text[:1].upper() + text[1:]


_UNGRADED = ("Medical material", "Lymphadenopathy", "Lung nodule", "Pulmonary fibrotic sequela")
_SIZED = ("Lung nodule", "Lymphadenopathy", "Hiatal hernia", "Consolidation", "Lung opacity")


def _draw_states(rng: np.random.Generator) -> dict[str, str]:
    """A state per class: positive, uncertain, negative (mentioned) or absent; 15 % of reports are normal."""
    normal = rng.random() < 0.15
    states = {}
    for label in CTRATE_ABNORMALITIES:
        draw = rng.random()
        if not normal and draw < 0.22:
            states[label] = "positive"
        elif draw < 0.28:
            states[label] = "uncertain"
        elif draw < 0.70:
            states[label] = "negative"
        else:
            states[label] = "absent"
    return states


def _negations(labels: list[str], rng: np.random.Generator) -> list[tuple[str, str]]:
    """(group, sentence) negations; classes of a group are sometimes negated together in one sentence."""
    sentences, by_group = [], {}
    for label in labels:
        by_group.setdefault(CLASS_REGION[label], []).append(label)
    for group, members in by_group.items():
        while members:
            take = min(len(members), int(rng.integers(1, 4))) if rng.random() < 0.4 else 1
            chosen, members = members[:take], members[take:]
            if len(chosen) > 1:
                nouns = [NEGATED_NOUNS[label] for label in chosen]
                listed = ", ".join(nouns[:-1]) + " or " + nouns[-1]
                frame = _pick(rng, COORDINATED_FRAMES)
                text = frame.format(nouns=listed, Nouns=listed[:1].upper() + listed[1:])
            elif rng.random() < 0.5:
                text = _pick(rng, NEGATED_SENTENCES[chosen[0]])
            else:
                noun = NEGATED_NOUNS[chosen[0]]
                text = _pick(rng, NEGATIVE_FRAMES).format(noun=noun, Noun=noun[:1].upper() + noun[1:])
            sentences.append((group, text))
    return sentences


def _positives(labels: list[str], rng: np.random.Generator) -> list[tuple[str, str]]:
    """(group, sentence) positives; two lung findings are sometimes stated in one sentence."""
    sentences, lungs = [], [label for label in labels if CLASS_REGION[label] == "lungs"]
    paired = set()
    if len(lungs) >= 2 and rng.random() < 0.4:
        first, second = lungs[0], lungs[1]
        paired = {first, second}
        sentences.append(("lungs", _fill(_pick(rng, PAIR_FRAMES), rng, first, noun2=_pick(rng, NOUNS[second]))))
    for label in labels:
        if label in CONVENTION_SENTENCES and rng.random() < 0.35:
            sentences.append((CLASS_REGION[label], _pick(rng, CONVENTION_SENTENCES[label])))
        elif label not in paired:
            frames = POSITIVE_FRAMES + (LUNG_FRAMES if CLASS_REGION[label] == "lungs" else ())
            sentences.append((CLASS_REGION[label], _fill(_pick(rng, frames), rng, label)))
    return sentences


def _impression(positives: list[str], hedged: list[str], rng: np.random.Generator) -> str:
    """Impression: the positives as short phrases (some joined with "and"), hedges repeated, or a normal line."""
    if not positives and not hedged:
        return _pick(rng, NORMAL_IMPRESSIONS)
    phrases = [_pick(rng, NOUNS[label])[0] for label in positives]
    phrases = [p[:1].upper() + p[1:] + "." for p in phrases]
    if len(phrases) >= 2 and rng.random() < 0.3:
        phrases[0:2] = [phrases[0][:-1] + " and " + phrases[1][:1].lower() + phrases[1][1:]]
    phrases += [_fill(_pick(rng, HEDGE_FRAMES), rng, label) for label in hedged if rng.random() < 0.5]
    return " ".join(phrases)


def corpus_report(seed: int, index: int) -> LabelledReport:
    """Report ``index`` of the corpus drawn with ``seed``, with its exact 18 labels."""
    rng = np.random.default_rng([seed, index])
    states = _draw_states(rng)
    positive = [label for label in CTRATE_ABNORMALITIES if states[label] == "positive"]
    in_impression_only = [label for label in positive if rng.random() < 0.12]
    hedged = [label for label in CTRATE_ABNORMALITIES if states[label] == "uncertain"]
    tagged = _positives([label for label in positive if label not in in_impression_only], rng)
    tagged += [(CLASS_REGION[label], _fill(_pick(rng, HEDGE_FRAMES), rng, label)) for label in hedged]
    tagged += _negations([label for label in CTRATE_ABNORMALITIES if states[label] == "negative"], rng)
    tagged += [
        (CLASS_REGION[label], _pick(rng, sentences))
        for label, sentences in HARD_NEGATIVES.items()
        if states[label] != "positive" and rng.random() < 0.12
    ]
    tagged += [(group, _pick(rng, NORMAL_STRUCTURES[group])) for group in ("trachea", "abdomen", "bones")]
    order = {group: i for i, group in enumerate(FINDINGS_REGIONS)}
    shuffled = [tagged[i] for i in rng.permutation(len(tagged))]
    findings = " ".join(text for _, text in sorted(shuffled, key=lambda item: order[item[0]]))
    labels = {label: int(states[label] == "positive") for label in CTRATE_ABNORMALITIES}
    return LabelledReport(f"corpus_{seed}_{index:05d}", findings, _impression(positive, hedged, rng), labels)


def training_corpus(n: int, seed: int = 0) -> list[LabelledReport]:
    """``n`` CT-RATE-style reports with exact labels (deterministic for a seed)."""
    if n < 0:
        raise ValueError(f"n must be 0 or more, got {n}")
    return [corpus_report(seed, index) for index in range(n)]


__all__ = ["training_corpus", "corpus_report", "NOUNS", "NEGATED_NOUNS", "HARD_NEGATIVES", "CONVENTION_SENTENCES"]
