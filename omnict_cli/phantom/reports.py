"""CT-RATE-style chest CT reports and VQA pairs, written from a phantom's Findings.

The phantom draws abnormalities and returns :class:`Finding` records; this
module turns the same records into the text a model is trained and scored
on, so image, labels, report and answers never disagree:

* :func:`write_report` writes an English report in the manner of CT-RATE
  (a "Findings" section walking trachea/bronchi, mediastinum/heart/vessels,
  lymph nodes, oesophagus, lungs, pleura, upper abdomen and bones, then an
  "Impression"), and records for every sentence which CT-RATE classes it
  states as present or absent (:class:`ReportSentence`), so a report
  labeler can be checked sentence by sentence.
* :func:`make_qa` writes yes/no, multiple-choice, short-answer and
  organ-specific questions (:class:`QAPair`), each tagged with the organ
  group whose mask answers it.
* :func:`chat_row` and :func:`report_row` write the authors' training-row
  format (``{"messages": [...], "image": ...}``, DESIGN.md).

Phrasing comes from large module-level banks (many positive wordings per
class, several negations, coordinated negations, normal-structure
sentences) and sentence order is shuffled inside anatomical groups, so a
model cannot learn one template per class. Everything is deterministic
given the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field

import numpy as np

from omnict_cli.labels import CTRATE_ABNORMALITIES
from omnict_cli.labels.classes import CLASS_REGION, FINDINGS_REGIONS
from omnict_cli.phantom.findings import Finding
from omnict_cli.prompt_format import PROMPT_TOKENS, REPORT_QUESTION
from omnict_cli.segmentation.organ_groups import ORGAN_GROUPS

# --------------------------------------------------------------------------
# Special tokens and row formats (the authors' release, DESIGN.md)
# --------------------------------------------------------------------------

IMAGE_TOKENS = {"3d": PROMPT_TOKENS["volume"].image_block(), "2d": PROMPT_TOKENS["slice"].image_block()}
"""Image placeholder tokens per modality (:mod:`omnict_cli.prompt_format`)."""

ORGAN_TOKENS = {"3d": PROMPT_TOKENS["volume"].organ_block(), "2d": PROMPT_TOKENS["slice"].organ_block()}
"""Organ-mask placeholder tokens per modality (:mod:`omnict_cli.prompt_format`)."""

# --------------------------------------------------------------------------
# Anatomy: which group of the Findings section a class is written in
# --------------------------------------------------------------------------

# The order of the Findings section and the part of it that states each class are the
# labeler's vocabulary too; one copy, in labels/classes.py.
SECTION_GROUPS = FINDINGS_REGIONS
CLASS_GROUP = CLASS_REGION

CLASS_ORGAN = {
    "Medical material": "others",
    "Arterial wall calcification": "vessels",
    "Cardiomegaly": "heart",
    "Pericardial effusion": "heart",
    "Coronary artery wall calcification": "heart",
    "Hiatal hernia": "esophagus",
    "Lymphadenopathy": "others",
    "Emphysema": "lungs",
    "Atelectasis": "lungs",
    "Lung nodule": "lungs",
    "Lung opacity": "lungs",
    "Pulmonary fibrotic sequela": "lungs",
    "Pleural effusion": "lungs",
    "Mosaic attenuation pattern": "lungs",
    "Peribronchial thickening": "lungs",
    "Consolidation": "lungs",
    "Bronchiectasis": "lungs",
    "Interlobular septal thickening": "lungs",
}
"""Organ group a question about an ABSENT class is routed to (present ones use ``Finding.organ``)."""

DEFAULT_PLACE = {
    "Medical material": "",
    "Arterial wall calcification": "the thoracic aorta",
    "Coronary artery wall calcification": "",
    "Lymphadenopathy": "the mediastinum",
    "Emphysema": "both lungs",
    "Atelectasis": "the lung bases",
    "Lung nodule": "the lungs",
    "Lung opacity": "both lungs",
    "Pulmonary fibrotic sequela": "both lungs",
    "Mosaic attenuation pattern": "both lungs",
    "Peribronchial thickening": "both lungs",
    "Consolidation": "the lungs",
    "Bronchiectasis": "both lungs",
    "Interlobular septal thickening": "both lungs",
}
"""Where a finding is said to be when the Finding gives neither location nor side."""

LUNG_CLASSES = tuple(name for name, group in CLASS_GROUP.items() if group == "lungs")

SIZED_CLASSES = (
    "Lung nodule",
    "Lymphadenopathy",
    "Pleural effusion",
    "Pericardial effusion",
    "Hiatal hernia",
    "Lung opacity",
    "Consolidation",
    "Atelectasis",
)
"""Classes whose ``size_mm`` a radiologist would write (a nodule's diameter, an effusion's depth);
others' sizes (a heart's width, a wire's length) are left out of text and questions."""

PLACELESS_CLASSES = ("Cardiomegaly", "Pericardial effusion", "Hiatal hernia")
"""Classes whose place is their name ("cardiomegaly in the heart"): their location is not written or asked."""

COUNTED_CLASSES = ("Lung nodule", "Lymphadenopathy")
"""Classes a "how many" question is asked about (counts of other classes are drawing details)."""

UNGRADED_CLASSES = ("Lung nodule", "Medical material")
"""Classes no severity question is asked about."""

# --------------------------------------------------------------------------
# Phrasing banks
#
# Slots (filled by ``_slots``; an empty slot collapses cleanly):
#   {sev} mild/moderate/... adjective   {sev_adv} mildly/moderately/... adverb
#   {size} "7 mm"                        {measuring} " measuring 7 mm"
#   {largest} ", the largest measuring 7 mm"
#   {in_place} "in the right upper lobe" {place} "the right upper lobe"
#   {side_word} "right"/"left"/"bilateral"   {side_where} "on the right"/"bilaterally"
#   {count} "three"                      {device} "a medical device"    {s} plural "s"
# --------------------------------------------------------------------------

POSITIVE_TEMPLATES = {
    "Medical material": (
        "{device} is observed {in_place}.",
        "There is {device} {in_place}.",
        "{device} is noted {in_place}.",
        "Medical material is present {in_place}.",
        "Postoperative medical material is observed {in_place}.",
        "A hyperdense medical device is seen {in_place}.",
        "Findings consistent with medical material are noted {in_place}.",
    ),
    "Arterial wall calcification": (
        "{sev} calcific atherosclerotic changes are observed {in_place}.",
        "{sev} atherosclerotic calcifications are seen {in_place}.",
        "Calcified atherosclerotic plaques are noted {in_place}.",
        "There is {sev} arterial wall calcification {in_place}.",
        "{sev} calcific plaques are present in the wall of {place}.",
        "Vascular wall calcifications are observed {in_place}.",
        "{sev} mural calcification of the arterial wall is seen {in_place}.",
    ),
    "Cardiomegaly": (
        "{sev} cardiomegaly is observed.",
        "The heart is {sev_adv} enlarged.",
        "Heart size is increased, consistent with {sev} cardiomegaly.",
        "An increased cardiothoracic ratio is noted, in keeping with cardiomegaly.",
        "The cardiac silhouette is {sev_adv} enlarged.",
        "There is {sev} cardiomegaly.",
        "Heart dimensions are {sev_adv} increased.",
    ),
    "Pericardial effusion": (
        "{sev} pericardial effusion{measuring} is observed.",
        "Pericardial effusion{measuring} is noted.",
        "There is a {sev} pericardial effusion{measuring}.",
        "Fluid{measuring} is seen in the pericardial space.",
        "{sev} pericardial fluid{measuring} is present.",
        "Pericardial effusion-thickening{measuring} is observed.",
        "A {sev} effusion{measuring} is seen in the pericardial recesses.",
    ),
    "Coronary artery wall calcification": (
        "{sev} calcifications are observed {in_place}, consistent with coronary artery disease.",
        "Calcification of the coronary arteries is noted {in_place}.",
        "There is {sev} coronary artery wall calcification {in_place}.",
        "Calcific coronary plaques are seen {in_place}.",
        "{sev} coronary calcifications are present {in_place}.",
        "Atherosclerotic calcification of the coronary arterial walls is observed {in_place}.",
        "Calcified coronary plaques are noted {in_place}.",
    ),
    "Hiatal hernia": (
        "A {sev} hiatal hernia{measuring} is observed.",
        "A {size} sliding hiatal hernia is seen.",
        "Hiatal hernia{measuring} is noted.",
        "A {size} portion of the stomach has herniated through the oesophageal hiatus, consistent with a hiatal hernia.",
        "There is a {sev} hiatus hernia{measuring}.",
        "A portion of the gastric fundus{measuring} has herniated into the thorax through the hiatus, in keeping with hiatal hernia.",
        "A hiatal hernia{measuring} is present at the gastro-oesophageal junction.",
    ),
    "Lymphadenopathy": (
        "A lymph node in pathological size{measuring} is observed {in_place}.",
        "An enlarged lymph node{measuring} is seen {in_place}.",
        "Lymphadenopathy{measuring} is noted {in_place}.",
        "A {size} lymph node of pathological size is observed {in_place}.",
        "A pathologically enlarged lymph node{measuring} is present {in_place}.",
        "There is lymphadenopathy {in_place}{measuring_comma}.",
    ),
    "Emphysema": (
        "{sev} centrilobular emphysematous changes are observed {in_place}.",
        "Emphysema is seen {in_place}.",
        "There are {sev} emphysematous changes {in_place}.",
        "{sev} paraseptal emphysema is noted {in_place}.",
        "Areas of emphysema are present {in_place}.",
        "{sev} centrilobular and paraseptal emphysema is observed {in_place}.",
        "Low-attenuation areas consistent with emphysema are seen {in_place}.",
    ),
    "Atelectasis": (
        "{sev} atelectasis is observed {in_place}.",
        "Subsegmental atelectasis is seen {in_place}.",
        "Linear atelectatic changes are noted {in_place}.",
        "There is {sev} atelectasis {in_place}{measuring_comma}.",
        "Passive atelectasis{measuring} is present {in_place}.",
        "Atelectatic bands are observed {in_place}.",
        "Volume loss consistent with atelectasis is seen {in_place}.",
    ),
    "Lung nodule": (
        "A {size} nodule is observed {in_place}.",
        "A nodule{measuring} is seen {in_place}.",
        "A {size} nodular lesion is noted {in_place}.",
        "There is a {size} pulmonary nodule {in_place}.",
        "A solid nodule{measuring} is present {in_place}.",
        "A {size} lung nodule is detected {in_place}.",
        "A nodular density{measuring} is observed {in_place}.",
    ),
    "Lung opacity": (
        "{sev} ground-glass opacity is observed {in_place}.",
        "Ground glass density is seen {in_place}.",
        "An area of increased opacity{measuring} is noted {in_place}.",
        "{sev} ground-glass opacities are present {in_place}.",
        "Patchy opacity is observed {in_place}.",
        "There is {sev} ground glass density increase {in_place}.",
        "An area of ground-glass opacity{measuring} is seen {in_place}.",
        "Hazy opacification is seen {in_place}.",
    ),
    "Pulmonary fibrotic sequela": (
        "{sev} fibrotic sequelae are observed {in_place}.",
        "Fibrotic changes are seen {in_place}.",
        "Sequelae-like fibrotic densities are noted {in_place}.",
        "Parenchymal fibrotic bands are present {in_place}.",
        "There are {sev} fibrotic scar changes {in_place}.",
        "Linear fibrotic densities consistent with sequelae are observed {in_place}.",
    ),
    "Mosaic attenuation pattern": (
        "A mosaic attenuation pattern is observed {in_place}.",
        "{sev} mosaic attenuation is seen {in_place}.",
        "A mosaic perfusion pattern is noted {in_place}.",
        "Heterogeneous lung attenuation in a mosaic pattern is present {in_place}.",
        "There is {sev} mosaic attenuation {in_place}.",
        "Areas of mosaic attenuation are observed {in_place}.",
    ),
    "Peribronchial thickening": (
        "{sev} peribronchial thickening is observed {in_place}.",
        "Peribronchial wall thickening is seen {in_place}.",
        "Bronchial wall thickening is noted {in_place}.",
        "There is {sev} peribronchial cuffing {in_place}.",
        "Thickening of the peribronchial interstitium is present {in_place}.",
        "Increased peribronchial thickness is observed {in_place}.",
    ),
    "Consolidation": (
        "{sev} consolidation is observed {in_place}.",
        "An area of consolidation{measuring} is seen {in_place}.",
        "Consolidated lung parenchyma is noted {in_place}.",
        "There is {sev} consolidation with air bronchograms {in_place}.",
        "Dense consolidation{measuring} is present {in_place}.",
        "A consolidative area{measuring} is observed {in_place}.",
        "Airspace consolidation is seen {in_place}.",
    ),
    "Bronchiectasis": (
        "{sev} bronchiectasis is observed {in_place}.",
        "Cylindrical bronchiectasis is seen {in_place}.",
        "Bronchiectatic changes are noted {in_place}.",
        "There is {sev} bronchiectasis {in_place}.",
        "Dilated bronchi consistent with bronchiectasis are present {in_place}.",
        "Bronchial dilatation (bronchiectasis) is observed {in_place}.",
        "Varicose bronchiectasis is seen {in_place}.",
    ),
    "Interlobular septal thickening": (
        "{sev} interlobular septal thickening is observed {in_place}.",
        "Septal thickening is seen {in_place}.",
        "Thickening of the interlobular septa is noted {in_place}.",
        "There is {sev} smooth interlobular septal thickening {in_place}.",
        "Interlobular septal thickening is present {in_place}.",
        "Thickened interlobular septa are observed {in_place}.",
    ),
    "Pleural effusion": (
        "{sev} {side_word} pleural effusion{measuring} is observed.",
        "Pleural effusion{measuring} is seen {side_where}.",
        "There is a {sev} {side_word} pleural effusion{measuring}.",
        "Pleural fluid{measuring} is noted {side_where}.",
        "A {side_word} pleural effusion{measuring} is present.",
        "{sev} pleural fluid{measuring} is observed {side_where}.",
        "Effusion{measuring} is seen in the pleural space {side_where}.",
    ),
}
"""Positive wordings per CT-RATE class (single finding)."""

PLURAL_TEMPLATES = {
    "Lung nodule": (
        "{count} nodules are observed {in_place}{largest}.",
        "Millimetric nodules are seen {in_place}{largest}.",
        "Multiple nodular lesions are noted {in_place}{largest}.",
        "{count} pulmonary nodules are present {in_place}{largest}.",
        "Several nodules are detected {in_place}{largest}.",
        "There are {count} lung nodules {in_place}{largest}.",
    ),
    "Lymphadenopathy": (
        "{count} enlarged lymph nodes are observed {in_place}{largest}.",
        "Lymph nodes in pathological size are seen {in_place}{largest}.",
        "Multiple enlarged lymph nodes are noted {in_place}{largest}.",
        "Lymphadenopathy is present {in_place}, with {count} pathologically enlarged nodes{largest}.",
        "{count} lymph nodes of pathological size are seen {in_place}{largest}.",
        "Several enlarged lymph nodes are observed {in_place}{largest}.",
    ),
}
"""Positive wordings for findings with ``count > 1`` (classes where a count reads naturally)."""

NEGATIVE_TEMPLATES = {
    "Medical material": (
        "No medical material or foreign body was observed.",
        "There is no implanted device or catheter in the thorax.",
        "No postoperative material is seen.",
    ),
    "Arterial wall calcification": (
        "No calcific atherosclerotic changes were observed in the thoracic aorta.",
        "The aortic wall shows no calcification.",
        "No arterial wall calcification is seen.",
    ),
    "Cardiomegaly": (
        "Heart contour and size are normal.",
        "Heart size is within normal limits.",
        "No cardiomegaly is seen.",
    ),
    "Pericardial effusion": (
        "Pericardial effusion-thickening was not observed.",
        "No pericardial effusion is seen.",
        "There is no fluid in the pericardial space.",
    ),
    "Coronary artery wall calcification": (
        "No calcification is seen in the coronary arteries.",
        "Coronary arteries show no wall calcification.",
        "No coronary artery calcification was detected.",
    ),
    "Hiatal hernia": (
        "No hiatal hernia is seen.",
        "The oesophageal hiatus is normal, with no hernia.",
        "There is no hiatus hernia.",
    ),
    "Lymphadenopathy": (
        "No lymph node in pathological size and appearance was observed in the mediastinum.",
        "No mediastinal or hilar lymphadenopathy is seen.",
        "No enlarged lymph node was detected.",
        "Mediastinal and hilar lymph nodes are within normal size limits.",
    ),
    "Emphysema": (
        "No emphysema is seen.",
        "There are no emphysematous changes in the lungs.",
        "The lung parenchyma shows no emphysema.",
    ),
    "Atelectasis": (
        "No atelectasis is seen.",
        "There is no atelectasis or volume loss in the lungs.",
        "No atelectatic change was detected.",
    ),
    "Lung nodule": (
        "No mass or nodule was detected in either lung.",
        "No pulmonary nodule is seen.",
        "There is no nodular lesion in the lungs.",
        "No space-occupying lesion was detected in the lung parenchyma.",
    ),
    "Lung opacity": (
        "No ground-glass opacity is seen.",
        "No opacity was detected in the lung parenchyma.",
        "There is no ground glass density in either lung.",
    ),
    "Pulmonary fibrotic sequela": (
        "No fibrotic sequela is seen.",
        "There are no fibrotic changes in the lungs.",
        "No parenchymal scarring was detected.",
    ),
    "Mosaic attenuation pattern": (
        "No mosaic attenuation pattern is seen.",
        "Lung attenuation is homogeneous, without a mosaic pattern.",
        "There is no mosaic attenuation.",
    ),
    "Peribronchial thickening": (
        "No peribronchial thickening is seen.",
        "Bronchial walls are of normal thickness.",
        "There is no peribronchial wall thickening.",
    ),
    "Consolidation": (
        "No consolidation is seen.",
        "There is no consolidation in either lung.",
        "No pneumonic infiltration or consolidation was detected.",
    ),
    "Bronchiectasis": (
        "No bronchiectasis is seen.",
        "The bronchi are of normal calibre, without bronchiectasis.",
        "There is no bronchial dilatation.",
    ),
    "Interlobular septal thickening": (
        "No interlobular septal thickening is seen.",
        "Interlobular septa are not thickened.",
        "There is no septal thickening.",
    ),
    "Pleural effusion": ("No pleural effusion is seen.", "The pleural spaces are clear.", "There is no pleural fluid."),
}
"""Negations per CT-RATE class (the class stated absent)."""

COORDINATED_NEGATIONS = (
    (
        ("Pleural effusion", "Pericardial effusion"),
        "pleura",
        (
            "No pleural or pericardial effusion was detected.",
            "Pleural and pericardial effusion were not observed.",
            "There is no pleural or pericardial fluid.",
        ),
    ),
    (
        ("Arterial wall calcification", "Coronary artery wall calcification"),
        "mediastinum",
        (
            "No calcific atherosclerotic changes were seen in the aorta or coronary arteries.",
            "The aorta and coronary arteries show no wall calcification.",
        ),
    ),
    (
        ("Cardiomegaly", "Pericardial effusion"),
        "mediastinum",
        (
            "Heart contour and size are normal; pericardial effusion-thickening was not observed.",
            "The heart is of normal size and there is no pericardial effusion.",
        ),
    ),
    (
        ("Consolidation", "Lung opacity"),
        "lungs",
        (
            "No consolidation or ground-glass opacity was detected in either lung.",
            "There is no infiltration, consolidation or ground glass density.",
        ),
    ),
    (
        ("Bronchiectasis", "Peribronchial thickening"),
        "lungs",
        (
            "No bronchiectasis or peribronchial thickening is seen.",
            "Bronchi show neither dilatation nor wall thickening.",
        ),
    ),
    (
        ("Interlobular septal thickening", "Pulmonary fibrotic sequela"),
        "lungs",
        (
            "No fibrotic change or interlobular septal thickening was detected.",
            "There are no fibrotic sequelae or septal thickening.",
        ),
    ),
    (
        ("Emphysema", "Mosaic attenuation pattern"),
        "lungs",
        ("Lung attenuation is normal, with no emphysema or mosaic pattern.",),
    ),
)
"""Sentences that negate several classes at once, as CT-RATE radiologists write them."""

NORMAL_SENTENCES = {
    "trachea": (
        "Trachea and both main bronchi are open.",
        "The trachea and main bronchi are patent.",
        "Trachea and main bronchi are in normal position and calibre.",
        "Both main bronchi and the trachea are patent, with no obstructing lesion.",
    ),
    "mediastinum": (
        "Thoracic aorta diameter is normal.",
        "The calibre of the thoracic main vascular structures is normal.",
        "Mediastinal main vascular structures are of normal calibre.",
        "The main pulmonary artery is of normal calibre.",
    ),
    "oesophagus": (
        "Thoracic oesophagus calibre was normal and no significant pathological wall thickening was detected.",
        "The oesophagus is of normal calibre.",
        "The thoracic oesophagus appears normal.",
    ),
    "lungs": (
        "Both lungs are aerated normally.",
        "Lung parenchyma is normally aerated.",
        "Aeration of both lungs is normal.",
    ),
    "abdomen": (
        "Upper abdominal organs included in the sections are normal.",
        "No pathological finding was detected in the upper abdominal sections within the field of view.",
        "The liver, spleen and both adrenal glands appear normal in the sections included.",
    ),
    "bones": (
        "No lytic-destructive lesions were detected in the bone structures within the sections.",
        "Bone structures in the field of view are natural.",
        "Mild degenerative changes are seen in the thoracic vertebrae.",
        "No fracture or destructive bone lesion is seen.",
    ),
}
"""Normal-structure sentences per group; they state no CT-RATE class."""

NORMAL_ONLY_WHEN_CLEAR = ("oesophagus", "lungs")
"""Groups whose normal sentence would contradict a positive there, so it is used only when the group has none."""

IMPRESSION_TEMPLATES = {
    "Medical material": ("Medical material {in_place}.", "Postoperative medical material."),
    "Arterial wall calcification": ("{sev} atherosclerotic vascular calcification.", "Arterial wall calcification."),
    "Cardiomegaly": ("Cardiomegaly.", "{sev} cardiomegaly.", "Enlarged heart."),
    "Pericardial effusion": ("Pericardial effusion.", "{sev} pericardial effusion."),
    "Coronary artery wall calcification": ("Coronary artery calcification.", "Coronary artery wall calcification."),
    "Hiatal hernia": ("Hiatal hernia.", "{sev} hiatus hernia."),
    "Lymphadenopathy": ("Lymphadenopathy {in_place}.", "Pathological lymph node enlargement {in_place}."),
    "Emphysema": ("Emphysema.", "{sev} centrilobular emphysema."),
    "Atelectasis": ("Atelectasis {in_place}.", "{sev} atelectatic changes {in_place}."),
    "Lung nodule": ("Pulmonary nodule{s} {in_place}.", "Nodular lesion{s} {in_place}."),
    "Lung opacity": ("Ground-glass opacity {in_place}.", "Lung opacity {in_place}."),
    "Pulmonary fibrotic sequela": ("Fibrotic sequelae {in_place}.", "Pulmonary fibrotic changes."),
    "Mosaic attenuation pattern": ("Mosaic attenuation pattern.", "Mosaic attenuation {in_place}."),
    "Peribronchial thickening": ("Peribronchial thickening.", "Bronchial wall thickening {in_place}."),
    "Consolidation": ("Consolidation {in_place}.", "Pneumonic consolidation {in_place}."),
    "Bronchiectasis": ("Bronchiectasis {in_place}.", "{sev} bronchiectasis."),
    "Interlobular septal thickening": ("Interlobular septal thickening.", "Septal thickening {in_place}."),
    "Pleural effusion": ("{side_word} pleural effusion.", "Pleural effusion {side_where}."),
}
"""Short Impression phrasings per class."""

NORMAL_IMPRESSIONS = (
    "No acute pathology was detected.",
    "No significant abnormality in the thorax.",
    "Normal chest CT examination.",
    "No pathological finding was detected in the chest.",
)
"""Impressions of a study without positives (all say "no"/"normal")."""

CLOSING_IMPRESSIONS = ("No other significant pathology was detected.", "Other findings are within normal limits.")
"""Optional last Impression sentence after the positives; it states no class."""

SEVERITY_WORDS = {
    "mild": ("mild", "minimal", "slight"),
    "moderate": ("moderate",),
    "severe": ("severe", "marked", "extensive"),
}
SEVERITY_ADVERBS = {"mild": ("mildly", "slightly"), "moderate": ("moderately",), "severe": ("severely", "markedly")}
DEVICE_WORDS = ("medical material", "a medical device", "an implanted device", "postoperative material")
MEASURING_FORMS = (" measuring {size}", " of {size}", " ({size})", " approximately {size} in size")
LARGEST_FORMS = (", the largest measuring {size}", ", up to {size} in diameter", " (largest {size})")
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")

# --------------------------------------------------------------------------
# Question banks
# --------------------------------------------------------------------------

QUESTION_TERMS = {
    "Medical material": ("medical material", "an implanted medical device"),
    "Arterial wall calcification": ("arterial wall calcification", "atherosclerotic calcification of the aorta"),
    "Cardiomegaly": ("cardiomegaly", "an enlarged heart"),
    "Pericardial effusion": ("a pericardial effusion", "fluid in the pericardium"),
    "Coronary artery wall calcification": (
        "coronary artery wall calcification",
        "calcification of the coronary arteries",
    ),
    "Hiatal hernia": ("a hiatal hernia", "a hiatus hernia"),
    "Lymphadenopathy": ("lymphadenopathy", "an enlarged lymph node"),
    "Emphysema": ("emphysema", "emphysematous change"),
    "Atelectasis": ("atelectasis", "atelectatic change"),
    "Lung nodule": ("a lung nodule", "a pulmonary nodule"),
    "Lung opacity": ("a lung opacity", "ground-glass opacity"),
    "Pulmonary fibrotic sequela": ("pulmonary fibrotic sequela", "fibrotic change in the lungs"),
    "Pleural effusion": ("a pleural effusion", "pleural fluid"),
    "Mosaic attenuation pattern": ("a mosaic attenuation pattern", "mosaic attenuation"),
    "Peribronchial thickening": ("peribronchial thickening", "bronchial wall thickening"),
    "Consolidation": ("consolidation", "a consolidated area"),
    "Bronchiectasis": ("bronchiectasis", "bronchial dilatation"),
    "Interlobular septal thickening": ("interlobular septal thickening", "thickened interlobular septa"),
}
"""How a question names each class (two wordings each)."""

YES_NO_TEMPLATES = (
    "Is there {term} in this {medium}?",
    "Does this {medium} show {term}?",
    "Can {term} be seen in this {medium}?",
    "Is {term} present in this {medium}?",
)
MC_TEMPLATES = (
    "Which abnormality is present{where} in this {medium}?",
    "Which of the following is seen{where} in this {medium}?",
    "What abnormality does this {medium} show{where}?",
)
ORGAN_TEMPLATES = (
    "Looking at {organ}, what abnormality is seen in this {medium}?",
    "What abnormality is visible in {organ} in this {medium}?",
    "Focusing on {organ}, which finding is present in this {medium}?",
)
ORGAN_PHRASES = {
    "lungs": "the lungs",
    "heart": "the heart",
    "liver": "the liver",
    "spleen": "the spleen",
    "kidneys": "the kidneys",
    "pancreas": "the pancreas",
    "stomach": "the stomach",
    "bowel": "the bowel",
    "esophagus": "the oesophagus",
    "trachea": "the trachea and bronchi",
    "vessels": "the great vessels",
    "spine": "the spine",
    "others": "the remaining structures",
}
"""How a question names each of the 13 organ groups."""

NO_ABNORMALITY_OPTION = "No abnormality"
"""Correct multiple-choice option for a study without findings."""

MEDIUM = {"3d": ("scan",), "2d": ("slice", "image")}
"""What a question calls the image: a volume is "this scan", a slice "this slice"/"this image"."""

SIDE_ANSWERS = {"right": "Right", "left": "Left", "bilateral": "Bilateral"}


# --------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportSentence:
    """One report sentence with the classes it states, so labelers can be checked exactly."""

    text: str
    section: str
    positive: tuple[str, ...] = ()
    negative: tuple[str, ...] = ()


@dataclass
class Report:
    """A written report: the two section texts plus every sentence's provenance."""

    findings: str
    impression: str
    sentences: list[ReportSentence] = field(default_factory=list)


@dataclass(frozen=True)
class QAPair:
    """One visual question with its answer, kind and the organ group whose mask answers it.

    ``organ`` is None only for whole-scan questions that no single organ answers
    (the multiple-choice question of a study without findings).
    """

    question: str
    answer: str
    kind: str
    organ: str | None
    options: tuple[str, ...] = ()
    label: str | None = None


# --------------------------------------------------------------------------
# Text helpers
# --------------------------------------------------------------------------


def format_mm(size_mm: float) -> str:
    """A size as reports write it: "7 mm", "7.5 mm" (whole numbers without decimals)."""
    value = round(float(size_mm), 1)
    return f"{int(value)} mm" if value == int(value) else f"{value:g} mm"


def _count_word(count: int) -> str:
    return NUMBER_WORDS[count] if 0 <= count < len(NUMBER_WORDS) else str(count)


_AN_NEXT = re.compile(r"\b([Aa]) (?=(?:[aeiouAEIOU]|8|11 |11\.|18 |18\.|8\d ))")


def _tidy(text: str) -> str:
    """Collapse what empty slots leave behind, fix a/an and capitalise the sentence."""
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r" ([,.;)])", r"\1", text)
    text = re.sub(r"\( ", "(", text)
    text = re.sub(r",\s*,", ",", text)
    text = re.sub(r",\.", ".", text)
    text = _AN_NEXT.sub(lambda m: m.group(1) + "n ", text)
    return text[:1].upper() + text[1:]


def _with_article(place: str) -> str:
    lowered = place.lower()
    if lowered.startswith(("the ", "both ", "bilateral ", "a ", "an ", "all ", "multiple ")):
        return place
    return "the " + place


def _has_size(finding: Finding) -> bool:
    return finding.size_mm is not None and finding.label in SIZED_CLASSES


def _has_location(finding: Finding) -> bool:
    return bool(finding.location) and finding.label not in PLACELESS_CLASSES


def _listed(location: str) -> str:
    """ "a, b, c" -> "a, b and c" (lists of lobes, stations, vessels); parenthesised text kept as is."""
    if "(" in location or " and " in location or ", " not in location:
        return location
    head, _, last = location.rpartition(", ")
    return f"{head} and {last}"


def _station_place(location: str) -> str:
    """Lymph node stations are adjectives ("right hilar, subcarinal"): add the noun they describe."""
    listed = _listed(location)
    if listed.split()[-1].endswith(("al", "ar", "ic")):
        listed += " regions" if " and " in listed else " region"
    return listed


def _place(finding: Finding) -> str:
    """Noun phrase for where a finding is ("the right upper lobe", "both lungs")."""
    is_lung = finding.label in LUNG_CLASSES
    if _has_location(finding):
        location = finding.location
        location = _station_place(location) if finding.label == "Lymphadenopathy" else _listed(location)
        place = _with_article(location)
        if is_lung and finding.side in ("right", "left") and finding.side not in place.lower():
            place += f" of the {finding.side} lung"
        return place
    if finding.side == "bilateral":
        return "both lungs" if is_lung else "both sides"
    if finding.side in ("right", "left"):
        return f"the {finding.side} lung" if is_lung else f"the {finding.side} side"
    return DEFAULT_PLACE.get(finding.label, "")


def _in_place(finding: Finding) -> str:
    """ "in the right upper lobe"; a device's location describes the device, so it goes in brackets."""
    if finding.label == "Medical material" and finding.location:
        return "(" + finding.location.replace(" (", ", ").replace("(", "").replace(")", "") + ")"
    place = _place(finding)
    return f"in {place}" if place else ""


def _slots(finding: Finding, rng: np.random.Generator) -> dict[str, str]:
    """Fill every template slot from one Finding (empty strings where a field is unknown)."""
    size = format_mm(finding.size_mm) if _has_size(finding) else ""
    place = _place(finding)
    side = finding.side
    severity = finding.severity
    return {
        "sev": str(rng.choice(SEVERITY_WORDS[severity])) if severity in SEVERITY_WORDS else "",
        "sev_adv": str(rng.choice(SEVERITY_ADVERBS[severity])) if severity in SEVERITY_ADVERBS else "",
        "size": size,
        "measuring": str(rng.choice(MEASURING_FORMS)).format(size=size) if size else "",
        "measuring_comma": f", measuring {size}" if size else "",
        "largest": str(rng.choice(LARGEST_FORMS)).format(size=size) if size else "",
        "place": place,
        "in_place": _in_place(finding),
        "side_word": {"right": "right", "left": "left", "bilateral": "bilateral"}.get(side, ""),
        "side_where": {
            "right": "on the right",
            "left": "on the left",
            "bilateral": str(rng.choice(("bilaterally", "on both sides"))),
        }.get(side, ""),
        "count": _count_word(finding.count),
        "device": str(finding.details.get("device") or rng.choice(DEVICE_WORDS)),
        "s": "s" if finding.count > 1 else "",
    }


_SIZE_SLOTS = ("{size}", "{measuring}", "{largest}", "{measuring_comma}")
_WHERE_SLOTS = ("{in_place}", "{place}", "{side_word}", "{side_where}")


def _candidates(finding: Finding) -> tuple[str, ...]:
    """The templates that can state this finding, preferring those that carry its size and place."""
    plural = finding.count > 1 and finding.label in PLURAL_TEMPLATES
    bank = PLURAL_TEMPLATES[finding.label] if plural else POSITIVE_TEMPLATES[finding.label]
    if finding.size_mm is not None and finding.size_mm >= 10:
        bank = tuple(t for t in bank if "illimetric" not in t)
    if _has_size(finding):
        bank = tuple(t for t in bank if any(s in t for s in _SIZE_SLOTS)) or bank
    if _has_location(finding) or finding.side:
        bank = tuple(t for t in bank if any(s in t for s in _WHERE_SLOTS)) or bank
    return bank


def _positive_sentence(finding: Finding, rng: np.random.Generator) -> str:
    """One Findings-section sentence stating a finding, with its size and place."""
    template = str(rng.choice(_candidates(finding)))
    text = template.format_map(_slots(finding, rng))
    if _has_size(finding) and format_mm(finding.size_mm) not in text:
        text = text.rstrip(".") + f", measuring {format_mm(finding.size_mm)}."
    return _tidy(text)


def _impression_sentence(finding: Finding, rng: np.random.Generator) -> str:
    template = str(rng.choice(IMPRESSION_TEMPLATES[finding.label]))
    return _tidy(template.format_map(_slots(finding, rng)))


# --------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------


def _negative_sentences(absent: list[str], rng: np.random.Generator) -> list[tuple[str, ReportSentence]]:
    """Negations for a random subset of absent classes, coordinated where pairs allow it."""
    mentioned = [name for name in absent if rng.random() < 0.75]
    remaining = set(mentioned)
    out = []
    for names, group, bank in COORDINATED_NEGATIONS:
        if all(name in remaining for name in names) and rng.random() < 0.5:
            remaining.difference_update(names)
            text = str(rng.choice(bank))
            out.append((group, ReportSentence(text, "findings", (), tuple(names))))
    for name in mentioned:
        if name in remaining:
            text = str(rng.choice(NEGATIVE_TEMPLATES[name]))
            out.append((CLASS_GROUP[name], ReportSentence(text, "findings", (), (name,))))
    return out


def _normal_sentences(positive_groups: set[str], rng: np.random.Generator) -> list[tuple[str, ReportSentence]]:
    """Normal-structure sentences (no class stated) for the groups that have something to say."""
    out = []
    for group, bank in NORMAL_SENTENCES.items():
        if group in NORMAL_ONLY_WHEN_CLEAR and group in positive_groups:
            continue
        if group == "trachea" or rng.random() < 0.7:
            out.append((group, ReportSentence(str(rng.choice(bank)), "findings")))
    return out


def _order_by_group(tagged: list[tuple[str, ReportSentence]], rng: np.random.Generator) -> list[ReportSentence]:
    """Anatomical group order kept, sentence order inside each group shuffled."""
    ordered = []
    for group in SECTION_GROUPS:
        members = [sentence for g, sentence in tagged if g == group]
        ordered.extend(members[i] for i in rng.permutation(len(members)))
    return ordered


def _impression(findings: list[Finding], rng: np.random.Generator) -> list[ReportSentence]:
    """Impression: one summary sentence per positive (in random order), or a normal statement."""
    if not findings:
        return [ReportSentence(str(rng.choice(NORMAL_IMPRESSIONS)), "impression")]
    sentences = [
        ReportSentence(_impression_sentence(findings[i], rng), "impression", (findings[i].label,))
        for i in rng.permutation(len(findings))
    ]
    if rng.random() < 0.3:
        sentences.append(ReportSentence(str(rng.choice(CLOSING_IMPRESSIONS)), "impression"))
    return sentences


def write_report(findings: list[Finding], rng: np.random.Generator) -> Report:
    """A CT-RATE-style report of ``findings``; every class is stated positive iff it is present.

    Absent classes are negated for a random subset (as real reports mention
    only some normals); each sentence records the classes it states, so the
    report's positive set equals ``label_vector(findings)``'s ones exactly.
    """
    present = {finding.label for finding in findings}
    absent = [name for name in CTRATE_ABNORMALITIES if name not in present]
    tagged = [
        (CLASS_GROUP[f.label], ReportSentence(_positive_sentence(f, rng), "findings", (f.label,))) for f in findings
    ]
    tagged += _negative_sentences(absent, rng)
    tagged += _normal_sentences({CLASS_GROUP[name] for name in present}, rng)
    body = _order_by_group(tagged, rng)
    impression = _impression(findings, rng)
    return Report(
        findings=" ".join(s.text for s in body),
        impression=" ".join(s.text for s in impression),
        sentences=body + impression,
    )


# --------------------------------------------------------------------------
# VQA
# --------------------------------------------------------------------------


def _medium(modality: str, rng: np.random.Generator) -> str:
    if modality not in MEDIUM:
        raise ValueError(f"modality must be '2d' or '3d', got {modality!r}")
    return str(rng.choice(MEDIUM[modality]))


def _noun(label: str) -> str:
    return label[:1].lower() + label[1:]


def describe_finding(finding: Finding) -> str:
    """Deterministic short answer naming a finding: "Lung nodule in the right lower lobe, 7 mm."."""
    text = finding.label
    place = _place(finding) if (_has_location(finding) or finding.side) else ""
    if finding.label == "Pleural effusion" and not finding.location and finding.side:
        place = {"right": "on the right", "left": "on the left", "bilateral": "bilaterally"}[finding.side]
        text += " " + place
    elif place:
        text += " " + _in_place(finding)
    if _has_size(finding):
        text += f", {format_mm(finding.size_mm)}"
    return text + "."


def yes_no_question(name: str, modality: str, rng: np.random.Generator) -> str:
    """A yes/no question about CT-RATE class ``name`` in one of the phantoms' wordings ("Is there X in this CT?")."""
    question = str(rng.choice(YES_NO_TEMPLATES)).format(
        term=str(rng.choice(QUESTION_TERMS[name])), medium=_medium(modality, rng)
    )
    return _tidy(question)


def _yes_no(findings, modality, rng) -> list[QAPair]:
    """Yes/no questions, as many about absent classes as about present ones (two "No"s when normal, three "Yes"es when all 18 are present)."""
    first = {}
    for finding in findings:
        first.setdefault(finding.label, finding)
    present = list(first)
    absent = [name for name in CTRATE_ABNORMALITIES if name not in first]
    n = min(len(present), len(absent), 3)
    asked_present = [present[i] for i in rng.permutation(len(present))[: n if absent else 3]]
    asked_absent = [absent[i] for i in rng.permutation(len(absent))[: max(n, 2 if not present else 0)]]
    pairs = []
    for name in asked_present + asked_absent:
        is_present = name in first
        organ = first[name].organ if is_present else CLASS_ORGAN[name]
        pairs.append(
            QAPair(yes_no_question(name, modality, rng), "Yes" if is_present else "No", "yes_no", organ, label=name)
        )
    return [pairs[i] for i in rng.permutation(len(pairs))]


def _lettered(question: str, options: list[str], correct: str) -> tuple[str, str]:
    lines = [f"{string.ascii_uppercase[i]}. {option}" for i, option in enumerate(options)]
    answer = lines[options.index(correct)]
    return question + "\n" + "\n".join(lines), answer


def _distractors(label: str | None, absent: list[str], rng: np.random.Generator, n: int = 3) -> list[str]:
    """Absent classes to offer as wrong options, same organ group first so the choice is not trivial."""
    organ = CLASS_ORGAN.get(label)
    near = [name for name in absent if CLASS_ORGAN[name] == organ]
    far = [name for name in absent if CLASS_ORGAN[name] != organ]
    near = [near[i] for i in rng.permutation(len(near))]
    far = [far[i] for i in rng.permutation(len(far))]
    chosen = (near + far)[:n]
    if label is not None and len(chosen) < n:  # nearly every class present: "none" is the wrong one left
        chosen.append(NO_ABNORMALITY_OPTION)
    return chosen


def _multiple_choice(findings, modality, rng) -> list[QAPair]:
    """One lettered question per present class (at most three); a "No abnormality" one when normal."""
    first = {}
    for finding in findings:
        first.setdefault(finding.label, finding)
    absent = [name for name in CTRATE_ABNORMALITIES if name not in first]
    pairs = []
    if not first:
        options = _distractors(None, absent, rng) + [NO_ABNORMALITY_OPTION]
        options = [options[i] for i in rng.permutation(len(options))]
        stem = str(rng.choice(MC_TEMPLATES)).format(where="", medium=_medium(modality, rng))
        question, answer = _lettered(_tidy(stem), options, NO_ABNORMALITY_OPTION)
        return [QAPair(question, answer, "multiple_choice", None, tuple(options), None)]
    labels = list(first)
    for i in rng.permutation(len(labels))[:3]:
        finding = first[labels[i]]
        options = _distractors(finding.label, absent, rng) + [finding.label]
        options = [options[j] for j in rng.permutation(len(options))]
        where = "" if finding.organ == "others" else f" in {ORGAN_PHRASES[finding.organ]}"
        stem = str(rng.choice(MC_TEMPLATES)).format(where=where, medium=_medium(modality, rng))
        question, answer = _lettered(_tidy(stem), options, finding.label)
        pairs.append(QAPair(question, answer, "multiple_choice", finding.organ, tuple(options), finding.label))
    return pairs


def _short_answers(finding: Finding, modality: str, rng: np.random.Generator) -> list[QAPair]:
    """Side, location, count, size and severity questions, only for the fields the finding has
    and only where a radiologist would ask them (see SIZED_/PLACELESS_/COUNTED_/UNGRADED_CLASSES)."""
    noun = _noun(finding.label)
    medium = _medium(modality, rng)
    asks = []
    if finding.side:
        asks.append((f"On which side is the {noun} in this {medium}?", SIDE_ANSWERS[finding.side]))
    if _has_location(finding):
        asks.append((f"Where is the {noun} located in this {medium}?", finding.location))
    if finding.label in COUNTED_CLASSES and modality == "3d":  # a slice need not show all of them
        things = {"Lung nodule": "lung nodules", "Lymphadenopathy": "enlarged lymph nodes"}.get(
            finding.label, f"areas of {noun}"
        )
        asks.append((f"How many {things} are seen in this {medium}?", str(finding.count)))
    if _has_size(finding):
        question = str(
            rng.choice(
                (
                    f"What is the size of the {noun} in this {medium}, in mm?",
                    f"How large is the {noun} in this {medium}?",
                )
            )
        )
        asks.append((question, format_mm(finding.size_mm)))
    if finding.severity and finding.label not in UNGRADED_CLASSES:
        asks.append((f"How severe is the {noun} in this {medium}?", finding.severity.capitalize()))
    return [QAPair(question, answer, "short_answer", finding.organ, label=finding.label) for question, answer in asks]


def _organ_question(finding: Finding, modality: str, rng: np.random.Generator) -> QAPair:
    """One question per finding asked through its organ, answered with :func:`describe_finding`."""
    question = str(rng.choice(ORGAN_TEMPLATES)).format(
        organ=ORGAN_PHRASES[finding.organ], medium=_medium(modality, rng)
    )
    return QAPair(_tidy(question), describe_finding(finding), "organ", finding.organ, label=finding.label)


def make_qa(findings: list[Finding], rng: np.random.Generator, *, modality: str = "3d") -> list[QAPair]:
    """Visual questions about a phantom, answered from its Findings.

    Returns, in this order: yes/no questions (balanced present/absent,
    answers "Yes"/"No"), multiple-choice questions (options are class names,
    answer written "B. Consolidation"), short answers for classes drawn once
    (side "Right"/"Left"/"Bilateral", location verbatim, count as digits (volumes only), size "7 mm", severity
    "Mild"), and one organ question per finding (answer from
    :func:`describe_finding`). ``modality="2d"`` words questions about
    "this slice"/"this image" instead of "this scan".
    """
    _medium(modality, rng)
    pairs = _yes_no(findings, modality, rng) + _multiple_choice(findings, modality, rng)
    labels = [finding.label for finding in findings]
    for finding in findings:
        if labels.count(finding.label) == 1:  # "the nodule" must name one finding
            pairs += _short_answers(finding, modality, rng)
    pairs += [_organ_question(finding, modality, rng) for finding in findings]
    return pairs


# --------------------------------------------------------------------------
# Training rows
# --------------------------------------------------------------------------


def _user_content(question: str, modality: str, with_organ: bool) -> str:
    if modality not in IMAGE_TOKENS:
        raise ValueError(f"modality must be '2d' or '3d', got {modality!r}")
    lines = [IMAGE_TOKENS[modality]]
    if with_organ:
        lines.append(ORGAN_TOKENS[modality])
    lines.append(question)
    return "\n".join(lines)


def chat_row(pair: QAPair, image_path: str, *, modality: str = "3d", with_organ: bool = True) -> dict:
    """A training row in the authors' chat format for one QA pair.

    ``{"messages": [{"role": "user", "content": "<image tokens>\\n<organ tokens>\\n<question>"},
    {"role": "assistant", "content": "<answer>"}], "image": "<path>"}``. Extra keys
    beyond the authors' (allowed; their loader reads only these): ``"organ"``
    when the pair is routed to an organ group.
    """
    row = {
        "messages": [
            {"role": "user", "content": _user_content(pair.question, modality, with_organ)},
            {"role": "assistant", "content": pair.answer},
        ],
        "image": str(image_path),
    }
    if pair.organ is not None:
        row["organ"] = pair.organ
    return row


def report_text(report: Report) -> str:
    """The assistant's report answer: exactly ``"Findings: <findings>\\nImpression: <impression>"``."""
    return f"Findings: {report.findings}\nImpression: {report.impression}"


def report_row(report: Report, image_path: str, modality: str = "3d", *, with_organ: bool = False) -> dict:
    """A report-generation training row: question :data:`REPORT_QUESTION`, answer :func:`report_text`.

    Without organ tokens by default, like the authors' report rows
    (``"<image tokens>\\nCan you describe the CT image?"``).
    """
    return {
        "messages": [
            {"role": "user", "content": _user_content(REPORT_QUESTION, modality, with_organ)},
            {"role": "assistant", "content": report_text(report)},
        ],
        "image": str(image_path),
    }


__all__ = [
    "Report",
    "ReportSentence",
    "QAPair",
    "write_report",
    "make_qa",
    "chat_row",
    "report_row",
    "report_text",
    "describe_finding",
    "format_mm",
    "REPORT_QUESTION",
    "IMAGE_TOKENS",
    "ORGAN_TOKENS",
    "CLASS_ORGAN",
    "POSITIVE_TEMPLATES",
    "NEGATIVE_TEMPLATES",
]

assert set(POSITIVE_TEMPLATES) == set(CTRATE_ABNORMALITIES) == set(NEGATIVE_TEMPLATES) == set(CLASS_GROUP)
assert set(CLASS_ORGAN.values()) <= set(ORGAN_GROUPS) and set(ORGAN_PHRASES) == set(ORGAN_GROUPS)
