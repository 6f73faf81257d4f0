"""Write the held-out CT-RATE-style report set the rule labeler is judged on.

Run ``python benchmarks/data/make_heldout.py`` to (re)write
``heldout_reports.csv`` and ``heldout_labels.csv`` beside this file; the
output is the same on every run (one fixed random seed).

Why a separate builder: the labeler was tuned on ``omnict_cli.labels.corpus``
and the phantom reports, so a fair test needs text written apart from both.
Every sentence below was written by hand for this file, in a deliberately
different style (terse North-American style headings, "status post",
"bibasilar", "LLL", upper-case lines, a few typos), and carries its labels
right next to it: ``pos`` lists the classes the sentence states present;
``about`` lists the classes it speaks of without stating them present
(negated, hedged or resolved), so a report never both asserts and denies a
class. Hard cases are in the banks on purpose: coordinated negations, hedges,
several findings per sentence, findings only in the impression, "no new
nodule" versus "stable nodule", post-operative material, "minimal" findings,
organs outside the lung ("thyroid nodule"), typos and case variations.

Label conventions (as in docs/labeler.md): hedged findings ("possible",
"cannot be excluded", "may represent") are 0; "compatible with"/"consistent
with" assert; a finding said to have resolved is 0; "stable"/"unchanged"
findings are present.

This script must not import omnict_cli.labels.corpus or reuse its templates.
"""

from __future__ import annotations

import csv
from collections import namedtuple
from pathlib import Path

import numpy as np

CLASSES = (
    "Medical material",
    "Arterial wall calcification",
    "Cardiomegaly",
    "Pericardial effusion",
    "Coronary artery wall calcification",
    "Hiatal hernia",
    "Lymphadenopathy",
    "Emphysema",
    "Atelectasis",
    "Lung nodule",
    "Lung opacity",
    "Pulmonary fibrotic sequela",
    "Pleural effusion",
    "Mosaic attenuation pattern",
    "Peribronchial thickening",
    "Consolidation",
    "Bronchiectasis",
    "Interlobular septal thickening",
)
"""CT-RATE's 18 classes in its column order (written out here so this file stands alone)."""

S = namedtuple("S", "text pos about", defaults=((), ()))
"""A hand-written sentence: its text, the classes it states present, the classes it speaks of as absent/hedged."""

MM, AWC, CM, PE, CAC, HH, LAP, EMP, ATE, NOD, OPA, FIB, PLE, MOS, PBT, CON, BRE, IST = CLASSES

AIRWAYS = (
    S("The trachea and central airways are patent."),
    S("Central airways are clear."),
    S("Trachea is midline; the mainstem bronchi are patent."),
    S("Small amount of secretions in the trachea."),
    S("Mild diffuse bronchial wall thickening is present.", (PBT,)),
    S("Airways: bronchial walls appear thickened in both lower lobes.", (PBT,)),
    S("Varicoid bronchiectasis involving the right middle lobe.", (BRE,)),
    S("Airways patent, no bronchiectasis.", (), (BRE,)),
    S("Tracheostomy tube in place, tip 3 cm above the carina.", (MM,)),
    S("Endotracheal tube terminates 4 cm above the carina.", (MM,)),
    S("AIRWAYS: PATENT. NO BRONCHIAL WALL THICKENING.", (), (PBT,)),
    S("Mild bronchiectasis and peribronchial cuffing in the lower lobes.", (BRE, PBT)),
)

HEART = (
    S("Heart: normal in size. No pericardial fluid.", (), (CM, PE)),
    S("The heart is mildly enlarged.", (CM,)),
    S("Moderate cardiomegaly with a small pericardial effusion.", (CM, PE)),
    S("Cardiac size within normal limits, without pericardial effusion.", (), (CM, PE)),
    S("Small pericardial effusion measuring up to 9 mm.", (PE,)),
    S("Global cardiac enlargement.", (CM,)),
    S("HEART SIZE IS NORMAL. NO PERICARDIAL EFFUSION.", (), (CM, PE)),
    S("Cardiomegally is noted.", (CM,)),
    S("Possible minimal pericardial effusion.", (), (PE,)),
    S("Pericardial thickening without effusion.", (), (PE,)),
    S("The pericardium is unremarkable.", (), (PE,)),
    S("Enlarged heart; trace pericardial effusion.", (CM, PE)),
    S("Heart size is at the upper limit of normal.", (), (CM,)),
    S("Heart and pericardium: no cardiomegaly or pericardial effusion.", (), (CM, PE)),
)

VESSELS = (
    S("Atherosclerotic calcifications of the aortic arch and descending aorta.", (AWC,)),
    S("Scattered calcified plaque in the thoracic aorta and coronary arteries.", (AWC, CAC)),
    S("Dense coronary calcifications in the LAD territory.", (CAC,)),
    S("Coronary artery calcifications are noted; the aorta is free of calcification.", (CAC,), (AWC,)),
    S("Mild calcific atherosclerosis of the aorta without coronary calcification.", (AWC,), (CAC,)),
    S("The thoracic aorta is normal in caliber without atherosclerotic change.", (), (AWC,)),
    S("No coronary or aortic calcification.", (), (AWC, CAC)),
    S("Three-vessel coronary artery calcification.", (CAC,)),
    S("Calcified atheromatous plaques in the supra-aortic branches.", (AWC,)),
    S("Thoracic aorta: normal diameter, mild mural calcification.", (AWC,)),
    S("Great vessels are unremarkable."),
    S("Ectatic ascending aorta measuring 41 mm, no calcification.", (), (AWC,)),
    S("Calcified plaques at the origin of the left subclavian artery.", (AWC,)),
    S("Minimal calcification of the left main coronary artery.", (CAC,)),
    S("no significant coronary artery calcification.", (), (CAC,)),
)

NODES = (
    S("No mediastinal, hilar or axillary lymphadenopathy.", (), (LAP,)),
    S("Enlarged subcarinal lymph node measuring 14 mm in short axis.", (LAP,)),
    S("Bulky mediastinal adenopathy.", (LAP,)),
    S("Several subcentimetric mediastinal lymph nodes, not pathologically enlarged.", (), (LAP,)),
    S("Prominent but non-enlarged hilar nodes.", (), (LAP,)),
    S("Right paratracheal lymphadenopathy up to 18 mm.", (LAP,)),
    S("Calcified mediastinal lymph nodes, consistent with prior granulomatous disease."),
    S("Mediastinal lymph nodes: within normal limits.", (), (LAP,)),
    S("Pathologic-appearing lymph nodes in the aortopulmonary window.", (LAP,)),
    S("Possible left hilar lymphadenopathy.", (), (LAP,)),
    S("Multiple enlarged lymph nodes in the prevascular and paratracheal regions.", (LAP,)),
    S("Thyroid: 8 mm nodule in the left lobe."),
    S("Mediastinum: no mass or lymph node enlargement.", (), (LAP,)),
)

ESOPHAGUS = (
    S("Esophagus is unremarkable."),
    S("Small sliding hiatal hernia.", (HH,)),
    S("Moderate size hiatus hernia.", (HH,)),
    S("Patulous esophagus with a hiatal hernia.", (HH,)),
    S("No hiatal hernia.", (), (HH,)),
    S("Part of the stomach is seen above the diaphragm, in keeping with hiatal herniation.", (HH,)),
    S("Mild distal esophageal wall thickening."),
    S("Large paraesophageal hernia containing the gastric fundus.", (HH,)),
    S("Esophagus normal in course and caliber."),
    S("The esophagus is collapsed and unremarkable."),
    S("No hiatus hernia or esophageal wall thickening.", (), (HH,)),
    S("Esophagus: mildly dilated and fluid-filled."),
    S("Gastroesophageal junction unremarkable; no herniation.", (), (HH,)),
)

LUNG_POSITIVES = (
    S("Centrilobular emphysema, most pronounced in the upper lobes.", (EMP,)),
    S("Paraseptal emphysema with a few apical bullae.", (EMP,)),
    S("Scattered ground-glass opacities in the right lower lobe.", (OPA,)),
    S("Patchy consolidation in the left lower lobe with air bronchograms.", (CON,)),
    S("Dependent atelectasis at both lung bases.", (ATE,)),
    S("Bibasilar subsegmental atelectasis.", (ATE,)),
    S("A 6 mm solid nodule in the right upper lobe (series 4, image 67).", (NOD,)),
    S("Multiple bilateral pulmonary nodules, the largest 11 mm in the LLL.", (NOD,)),
    S("Stable 4 mm nodule in the lingula.", (NOD,)),
    S("Apical pleuroparenchymal scarring bilaterally.", (FIB,)),
    S("Linear fibrotic strands in the lingula.", (FIB,)),
    S("Post-inflammatory fibrotic changes in the right upper lobe.", (FIB,)),
    S("Mosaic attenuation suggestive of small airways disease.", (MOS,)),
    S("Smooth interlobular septal thickening at the lung bases.", (IST,)),
    S("Crazy paving pattern with ground glass and septal thickening in both lungs.", (OPA, IST)),
    S("Traction bronchiectasis and reticulation in the lower lobes, consistent with fibrosis.", (BRE, FIB)),
    S(
        "Consolidation and adjacent ground-glass opacity in the right lower lobe, compatible with pneumonia.",
        (CON, OPA),
    ),
    S("Left lower lobe collapse.", (ATE,)),
    S("Ill-defined increased density in the posterior segment of the right upper lobe.", (OPA,)),
    S("Bronchial wall thickening and mucus plugging in the left lower lobe.", (PBT,)),
    S("Cylindrical bronchiectasis in both lower lobes.", (BRE,)),
    S("Emphysematous changes and a few nodules in both lungs.", (EMP, NOD)),
    S("Pulmonary nodule measuring 7 mm in the left upper lobe, unchanged.", (NOD,)),
    S("Micronodules in a centrilobular distribution in both upper lobes.", (NOD,)),
    S("Minimal ground glass in the lingula.", (OPA,)),
    S("Subtle ground glass that may represent atelectasis or early infection.", (OPA,), (ATE,)),
    S("Mild bronchiectasis with peribronchial thickening in the right middle lobe.", (BRE, PBT)),
    S("Areas of air trapping with a mosaic pattern in both lungs.", (MOS,)),
    S("Kerley B lines at the lung bases.", (IST,)),
    S("RUL spiculated nodule measuring 14 mm.", (NOD,)),
    S("Bilateral upper lobe bullous emphysema.", (EMP,)),
    S("Dense consolidation of the right middle lobe.", (CON,)),
    S("Plate-like atelectasis in the lingula and a 3 mm nodule in the RLL.", (ATE, NOD)),
    S("Parenchymal bands in the left lower lobe, likely post-infectious scarring.", (FIB,)),
    S("patchy infiltrates in both lower lobes.", (OPA,)),
    S("Minimal atelectasis, fibrotic changes and emphysema in the left upper lobe.", (ATE, FIB, EMP)),
)

LUNG_OTHERS = (
    S("No new pulmonary nodules.", (), (NOD,)),
    S("No focal consolidation, pneumothorax or suspicious nodule.", (), (CON, NOD)),
    S("Lungs are clear.", (), (CON, OPA, NOD, ATE)),
    S("No ground-glass opacity or consolidation.", (), (OPA, CON)),
    S("Possible early consolidation in the right lower lobe.", (), (CON,)),
    S("Findings suspicious for interstitial lung disease; no definite septal thickening.", (), (IST,)),
    S("No emphysema. No bronchiectasis.", (), (EMP, BRE)),
    S("There is no evidence of mosaic perfusion or air trapping.", (), (MOS,)),
    S("Previously noted consolidation in the left lower lobe has resolved.", (), (CON,)),
    S("Interval resolution of the ground glass opacities.", (), (OPA,)),
    S("Nodule cannot be excluded in the right lower lobe due to motion artifact.", (), (NOD,)),
    S("No septal thickening or honeycombing.", (), (IST, FIB)),
    S("Lungs: no infiltrates, nodules or masses.", (), (OPA, NOD)),
    S("Atelectasis is not seen.", (), (ATE,)),
    S("No emphysema, fibrosis or bronchiectasis.", (), (EMP, FIB, BRE)),
    S("NO CONSOLIDATION OR ATELECTASIS.", (), (CON, ATE)),
    S("Questionable mild bronchial wall thickening.", (), (PBT,)),
    S("The lung parenchyma shows normal attenuation without mosaic pattern.", (), (MOS,)),
    S("Lung volumes are normal."),
    S("No pneumothorax."),
)

PLEURA = (
    S("No pleural effusion or pneumothorax.", (), (PLE,)),
    S("Small bilateral pleural effusions.", (PLE,)),
    S("Moderate right pleural effusion with compressive atelectasis.", (PLE, ATE)),
    S("Trace left effusion.", (PLE,)),
    S("Pleural spaces are clear.", (), (PLE,)),
    S("Loculated fluid collection in the right pleural space.", (PLE,)),
    S("Pleural thickening without effusion.", (), (PLE,)),
    S("NO PLEURAL OR PERICARDIAL EFFUSION.", (), (PLE, PE)),
    S("Bilateral pleural effusions, larger on the right, and a small pericardial effusion.", (PLE, PE)),
    S("Pleural effusion can not be excluded at the left base.", (), (PLE,)),
    S("Calcified pleural plaques consistent with prior asbestos exposure."),
    S("Minimal pleural effusion on the right.", (PLE,)),
    S("Pleura: no effusion.", (), (PLE,)),
)

DEVICES = (
    S("Left chest wall dual-chamber pacemaker with leads in the right atrium and ventricle.", (MM,)),
    S("Median sternotomy wires are intact.", (MM,)),
    S("Right internal jugular central venous catheter with tip in the SVC.", (MM,)),
    S("Port-a-cath with catheter tip at the cavoatrial junction.", (MM,)),
    S("Surgical clips in the left axilla.", (MM,)),
    S("Prosthetic aortic valve.", (MM,)),
    S("No indwelling lines or tubes.", (), (MM,)),
    S("Status post right upper lobectomy with surgical staples along the bronchial stump.", (MM,)),
    S("No foreign body.", (), (MM,)),
    S("Cholecystectomy clips in the right upper quadrant.", (MM,)),
    S("Status post CABG with sternotomy wires.", (MM,)),
    S("Esophageal stent in place.", (MM,)),
)

OTHER = (
    S("Visualized upper abdomen is unremarkable."),
    S("Degenerative changes of the thoracic spine."),
    S("A 12 mm hypodense lesion in the liver, likely a cyst."),
    S("Small hypoattenuating nodule in the left adrenal gland."),
    S("Old healed rib fractures on the right."),
    S("Subcutaneous emphysema along the right chest wall."),
    S("Mild compression deformity of T11."),
    S("Bones: no suspicious osseous lesion."),
    S("Fatty infiltration of the liver."),
)

IMPRESSION_PHRASES = {
    MM: ("Postsurgical and device changes as described.",),
    AWC: ("Aortic atherosclerosis.",),
    CM: ("Cardiomegaly.", "Enlarged cardiac silhouette."),
    PE: ("Small pericardial effusion.",),
    CAC: ("Coronary artery calcification.",),
    HH: ("Hiatal hernia.",),
    LAP: ("Mediastinal lymphadenopathy.",),
    EMP: ("Emphysema.",),
    ATE: ("Atelectasis.", "Basilar atelectasis."),
    NOD: ("Pulmonary nodule(s), see above.",),
    OPA: ("Ground-glass opacities.",),
    FIB: ("Fibrotic scarring.",),
    PLE: ("Pleural effusion(s).",),
    MOS: ("Mosaic attenuation.",),
    PBT: ("Bronchial wall thickening.",),
    CON: ("Consolidation, likely pneumonia.",),
    BRE: ("Bronchiectasis.",),
    IST: ("Interlobular septal thickening.",),
}
"""Short impression wordings that repeat a findings-section positive."""

IMPRESSION_ONLY = (
    S("Incidental small hiatal hernia.", (HH,)),
    S("Coronary atherosclerosis with calcified plaque.", (CAC,)),
    S("Mild emphysema.", (EMP,)),
    S("Mild cardiomegaly.", (CM,)),
    S("Minimal bilateral pleural effusions.", (PLE,)),
    S("Stable right upper lobe nodule.", (NOD,)),
    S("Enlarged mediastinal lymph nodes.", (LAP,)),
)
"""Impression sentences stating a class the findings section never mentions."""

NORMAL_IMPRESSIONS = (
    "No acute intrathoracic abnormality.",
    "Unremarkable CT of the chest.",
    "NO ACUTE FINDINGS.",
    "No acute cardiopulmonary process.",
)
HEDGED_IMPRESSIONS = (
    S("Possible early pneumonia; consolidation cannot be excluded.", (), (CON,)),
    S("Questionable small pericardial effusion.", (), (PE,)),
    S("Findings may represent early atelectasis.", (), (ATE,)),
)

# --------------------------------------------------------------------------
# Bank B: written after the first evaluation and never used to change the rules,
# in British narrative style ("calibre", "in keeping with", "query").
# --------------------------------------------------------------------------

AIRWAYS_B = (
    S("The tracheobronchial tree is patent to the segmental level."),
    S("Bronchial walls are diffusely thickened, in keeping with chronic bronchitis.", (PBT,)),
    S("There is dilatation of the segmental bronchi of the right lower lobe, in keeping with bronchiectasis.", (BRE,)),
    S("Tubular bronchiectasis affects both lower lobes.", (BRE,)),
    S("No endobronchial lesion."),
    S("A nasogastric tube is seen with its tip in the stomach.", (MM,)),
    S("Minor bronchial wall thickening is noted in the lower lobes.", (PBT,)),
    S("The airways are unremarkable with no bronchial dilatation or wall thickening.", (), (BRE, PBT)),
)

HEART_B = (
    S("Cardiac silhouette is enlarged.", (CM,)),
    S("Marked cardiomegaly.", (CM,)),
    S("The heart is not enlarged and there is no pericardial collection.", (), (CM, PE)),
    S("A thin rim of pericardial fluid is present.", (PE,)),
    S("Cardiac chambers are normal in size; the pericardium is thin.", (), (CM, PE)),
    S("Pericardial effusion of 15 mm thickness around the right ventricle.", (PE,)),
    S("Heart is within normal size limits.", (), (CM,)),
    S("Left ventricular hypertrophy without cardiomegaly.", (), (CM,)),
    S("Small volume pericardial effusion is again noted, unchanged.", (PE,)),
    S("The cardiothoracic ratio is increased.", (CM,)),
    S("Possible small pericardial effusion versus pericardial thickening.", (), (PE,)),
)

VESSELS_B = (
    S("Extensive atheromatous calcification of the thoracic aorta.", (AWC,)),
    S("Coronary calcification is present in the left anterior descending and right coronary arteries.", (CAC,)),
    S("Aortic and coronary atheromatous calcification.", (AWC, CAC)),
    S("The aorta is of normal calibre with no mural calcification.", (), (AWC,)),
    S("Calcification of the aortic valve leaflets.", (), (AWC,)),
    S("Heavy coronary artery calcification.", (CAC,)),
    S("Calcified atherosclerotic plaque at the aortic arch and in the circumflex artery.", (AWC, CAC)),
    S("No vascular calcification.", (), (AWC,)),
    S("Pulmonary arteries are of normal calibre."),
    S("Aneurysmal dilatation of the ascending aorta to 48 mm without calcification.", (), (AWC,)),
)

NODES_B = (
    S(
        "There is mediastinal lymph node enlargement, the largest node measuring 16 mm in the subcarinal station.",
        (LAP,),
    ),
    S("Bilateral hilar lymphadenopathy.", (LAP,)),
    S("No significantly enlarged mediastinal or hilar nodes.", (), (LAP,)),
    S("Small volume mediastinal nodes which do not meet size criteria.", (), (LAP,)),
    S("Enlarged right axillary lymph node measuring 2 cm.", (LAP,)),
    S("Reactive-appearing mediastinal lymph nodes, not enlarged by size criteria.", (), (LAP,)),
    S("A 13 mm precarinal node is mildly enlarged.", (LAP,)),
    S("Lymph nodes are not enlarged.", (), (LAP,)),
)

ESOPHAGUS_B = (
    S("A moderate hiatus hernia is present.", (HH,)),
    S("There is a large hiatal hernia with intrathoracic stomach.", (HH,)),
    S("The oesophagus is normal."),
    S("No evidence of hiatus hernia.", (), (HH,)),
    S("Small hiatal hernia noted incidentally.", (HH,)),
    S("The oesophagus is mildly dilated."),
)

LUNG_POSITIVES_B = (
    S("Upper lobe predominant centrilobular emphysema.", (EMP,)),
    S("Large bulla in the right apex.", (EMP,)),
    S("There is a 5 mm perifissural nodule along the right horizontal fissure.", (NOD,)),
    S("Scattered tiny pulmonary nodules, all under 4 mm.", (NOD,)),
    S("Right lower lobe consolidation in keeping with pneumonia.", (CON,)),
    S("Ground glass change in the right upper lobe.", (OPA,)),
    S("Bibasal linear atelectasis.", (ATE,)),
    S("Subpleural interlobular septal thickening with traction bronchiectasis in the lower zones.", (IST, BRE)),
    S("Mosaic pattern of lung attenuation, which may reflect small airways disease.", (MOS,)),
    S("Left upper lobe scarring.", (FIB,)),
    S("Fibrotic change at both lung apices.", (FIB,)),
    S("Areas of consolidation with surrounding ground glass in the lingula.", (CON, OPA)),
    S("Atelectatic change of the right middle lobe.", (ATE,)),
    S("Right lower lobe volume loss with complete collapse.", (ATE,)),
    S("A solitary pulmonary nodule of 8 mm is again seen in the left lower lobe.", (NOD,)),
    S("Patchy airspace opacification in the left lower lobe.", (OPA,)),
    S("Diffuse ground-glass attenuation in both lungs.", (OPA,)),
    S("Thickened interlobular septa in the upper lobes.", (IST,)),
    S("Peribronchovascular thickening in both lower lobes.", (PBT,)),
    S("Emphysema, bronchiectasis and scattered nodules are seen.", (EMP, BRE, NOD)),
    S("mild paraseptal emphysema.", (EMP,)),
    S("Linear scar in the lingula and a 4 mm calcified nodule in the right lower lobe.", (FIB, NOD)),
    S("A few small nodules, likely post-inflammatory.", (NOD,)),
)

LUNG_OTHERS_B = (
    S("No pulmonary nodules or masses.", (), (NOD,)),
    S("No suspicious pulmonary nodule.", (), (NOD,)),
    S("The lungs are clear with no consolidation, collapse or effusion.", (), (CON, ATE, PLE)),
    S("There is no emphysema.", (), (EMP,)),
    S("No airspace opacity.", (), (OPA,)),
    S("Previously seen ground-glass opacity in the right upper lobe is no longer visible.", (), (OPA,)),
    S("Query early consolidation in the left lower lobe.", (), (CON,)),
    S("No features of interstitial lung disease; no septal thickening or bronchiectasis.", (), (IST, BRE)),
    S("No mosaic attenuation.", (), (MOS,)),
    S("Appearances could represent atelectasis or scarring.", (), (ATE, FIB)),
    S("The nodule in the right upper lobe has resolved.", (), (NOD,)),
    S("No fibrotic changes.", (), (FIB,)),
    S("The lungs are well expanded."),
)

PLEURA_B = (
    S("Moderate left-sided pleural effusion.", (PLE,)),
    S("Large right hydrothorax.", (PLE,)),
    S("No pleural effusions.", (), (PLE,)),
    S("Bilateral small effusions.", (PLE,)),
    S("Small right pleural effusion and adjacent passive atelectasis.", (PLE, ATE)),
    S("Pleural and pericardial spaces are free of fluid.", (), (PLE, PE)),
    S("No pleural thickening or effusion.", (), (PLE,)),
)

DEVICES_B = (
    S("Cardiac pacing device with leads terminating in the right ventricle.", (MM,)),
    S("Right-sided PICC line with tip in the superior vena cava.", (MM,)),
    S("Sternal wires from previous cardiac surgery.", (MM,)),
    S("Coronary artery stents are noted.", (MM,)),
    S("Embolisation coils in the left lower lobe.", (MM,)),
    S("Mitral valve prosthesis.", (MM,)),
    S("No lines or tubes.", (), (MM,)),
    S("Surgical clips at the gastro-oesophageal junction from previous fundoplication.", (MM,)),
)

OTHER_B = (
    S("Visualised upper abdomen shows a simple renal cyst."),
    S("Thyroid gland is enlarged with a dominant nodule on the right."),
    S("Multilevel degenerative disease in the thoracic spine."),
    S("Hepatic steatosis."),
    S("Osteopenia; no destructive bony lesion."),
)

IMPRESSION_ONLY_B = (
    S("Incidental note of a small hiatus hernia.", (HH,)),
    S("Coronary artery calcification.", (CAC,)),
    S("Cardiomegaly.", (CM,)),
    S("Mild centrilobular emphysema.", (EMP,)),
    S("Small bilateral pleural effusions.", (PLE,)),
)
NORMAL_IMPRESSIONS_B = ("No acute abnormality.", "Normal CT thorax.", "Stable appearances with no new abnormality.")
HEDGED_IMPRESSIONS_B = (
    S("Possible early consolidation at the left base.", (), (CON,)),
    S("Query small pericardial effusion.", (), (PE,)),
)

# --------------------------------------------------------------------------
# Bank C: written for issue 12 after the rules learned CT-RATE's label conventions, in CT-RATE's own
# Turkish-English style ("was observed", "in favor of", "sequelae"). Each convention has several
# sentences here worded apart from the training corpus's CONVENTION_SENTENCES; the labels follow the
# conventions: nodes with a size or count at a station are lymphadenopathy, CTO increased is
# cardiomegaly, fibroatelectasis is fibrotic sequela (not atelectasis), nodular infiltrates /
# reticulonodular / acinonodular / nodular consolidation / extrapulmonary nodules are not lung nodules,
# and effusion in a hemithorax or "both lungs" is pleural effusion.
# --------------------------------------------------------------------------

AIRWAYS_C = (
    S("Trachea and lumen of both main bronchi are open."),
    S("No occlusive pathology was detected in the trachea and both main bronchi."),
    S("Peribronchial thickening was observed in both lower lobes.", (PBT,)),
    S("Cylindrical bronchiectasis was observed in the lower lobe of the right lung.", (BRE,)),
    S("There is no bronchiectasis or peribronchial thickening.", (), (BRE, PBT)),
    S("Bronchial wall thickening and bronchiectatic changes were noted in the middle lobe.", (PBT, BRE)),
)

HEART_C = (
    S("CTO was increased in favor of the heart.", (CM,)),
    S("The heart is larger than normal; pericardial effusion was not observed.", (CM,), (PE,)),
    S("Heart contour and size are natural; no pericardial thickening-effusion was detected.", (), (CM, PE)),
    S(
        "The cardiothoracic index increased in favour of the heart and a minimal pericardial effusion was seen.",
        (CM, PE),
    ),
    S("CTO is within normal limits.", (), (CM,)),
    S("Heart sizes increased; pericardial effusion reaching 12 mm in its thickest part was observed.", (CM, PE)),
    S("The heart size is normal.", (), (CM,)),
)

VESSELS_C = (
    S("Calcific atherosclerotic plaques were observed in the aortic arch.", (AWC,)),
    S("Calcified plaques were noted in the walls of the LAD and RCA.", (CAC,)),
    S(
        "The calibration of the thoracic main vascular structures is natural, no calcification was observed.",
        (),
        (AWC,),
    ),
    S("Atherosclerotic changes were seen in the thoracic aorta and coronary arteries.", (AWC, CAC)),
    S("Coronary arteries show no calcific plaque.", (), (CAC,)),
)

NODES_C = (
    S("Lymph nodes with a short axis of up to 7 mm were observed in the prevascular and paratracheal areas.", (LAP,)),
    S("Multiple lymph nodes were observed in the prevascular, lower paratracheal and subcarinal stations.", (LAP,)),
    S("In the mediastinum, lymph nodes were seen, the largest of which was 14x6 mm in the subcarinal area.", (LAP,)),
    S("A few lymph nodes reaching 9 mm in short axis were noted in the bilateral hilar regions.", (LAP,)),
    S(
        "No lymph node in pathological size and appearance was detected in the mediastinum and hilar regions.",
        (),
        (LAP,),
    ),
    S("Several lymph nodes, the largest 11 mm, were seen in the left axillary region.", (LAP,)),
    S("Mediastinal and hilar lymph nodes were not enlarged.", (), (LAP,)),
    S("A lymph node measuring 1.3 cm was seen in the aorto-pulmonary window.", (LAP,)),
    S("Calcified lymph nodes were noted in the mediastinum."),
)

ESOPHAGUS_C = (
    S("Thoracic esophagus calibration was normal and no significant pathological wall thickening was detected."),
    S("A sliding type hiatal hernia was observed at the lower end of the esophagus.", (HH,)),
    S("No hiatal hernia was detected.", (), (HH,)),
    S("Hiatal hernia is observed.", (HH,)),
)

LUNG_POSITIVES_C = (
    S("Fibroatelectasis was observed in the lingular segment of the left lung upper lobe.", (FIB,)),
    S("Fibroatelectatic sequelae were noted in the basal segments of both lower lobes.", (FIB,)),
    S("Band atelectasis-sequelae changes were observed in the middle lobe of the right lung.", (FIB,)),
    S("Subsegmental atelectasis was observed in the posterobasal segment of the left lower lobe.", (ATE,)),
    S("Nodular infiltrates were seen in the upper lobe of the right lung.", (OPA,)),
    S("Reticulonodular density increases were observed in both lungs.", (OPA,)),
    S("Acinonodular opacities were noted in the apicoposterior segment of the left upper lobe.", (OPA,)),
    S("Nodular consolidation was observed in the superior segment of the right lower lobe.", (CON,)),
    S("A 5 mm nonspecific nodule was observed in the lateral segment of the middle lobe.", (NOD,)),
    S("Millimetric nodules were observed in both lungs.", (NOD,)),
    S("Ground glass densities were observed in the peripheral areas of both lungs.", (OPA,)),
    S("Centriacinar emphysematous changes were noted in both upper lobes.", (EMP,)),
    S("Mosaic attenuation pattern was observed in both lungs.", (MOS,)),
    S(
        "Interlobular septal thickenings accompanied by ground glass areas were observed in the lower lobes.",
        (IST, OPA),
    ),
    S("Consolidation with air bronchograms was observed in the lower lobe of the left lung.", (CON,)),
    S("Linear atelectasis was observed in the middle lobe of the right lung.", (ATE,)),
    S("Sequelae fibrotic parenchymal bands were observed in both upper lobes.", (FIB,)),
)

LUNG_OTHERS_C = (
    S("No mass or nodule with a space-occupying character was detected in either lung.", (), (NOD,)),
    S("No infiltration or consolidation was detected in the lung parenchyma.", (), (OPA, CON)),
    S("Aeration of both lungs is normal."),
    S("No active infiltration was observed in the lungs.", (), (OPA,)),
    S("Emphysema was not observed.", (), (EMP,)),
    S("Atelectasis cannot be excluded in the dependent areas of the lower lobes.", (), (ATE,)),
)

PLEURA_C = (
    S("Effusion was observed in the right hemithorax.", (PLE,)),
    S("Effusions were observed in both lungs, reaching 2 cm on the left.", (PLE,)),
    S("Smear-like effusion was noted in the left hemithorax.", (PLE,)),
    S("No effusion was detected in the pleural or pericardial cavity.", (), (PLE, PE)),
    S("Pleural effusion-thickening was not detected.", (), (PLE,)),
    S("Minimal effusion was seen in the left hemithorax with compressive atelectasis.", (PLE, ATE)),
)

DEVICES_C = (
    S("Port catheter was observed in the right subclavian region.", (MM,)),
    S("Sternotomy wires and mediastinal clips are seen after CABG.", (MM,)),
    S("There is no medical material in the thorax.", (), (MM,)),
)

OTHER_C = (
    S("A subcutaneous nodular lesion of 11 mm was observed in the left anterior chest wall."),
    S("A nodular lesion in the right kidney upper pole was partially included in the sections."),
    S("No lytic-destructive lesion was detected in the bone structures within the sections."),
    S("Upper abdominal organs included in the sections are natural."),
    S("A 9 mm hypodense nodule was observed in the right thyroid lobe."),
)

IMPRESSION_ONLY_C = (
    S("CTO increased.", (CM,)),
    S("Fibroatelectatic sequelae.", (FIB,)),
    S("Left-sided effusion.", (PLE,)),
    S("Mediastinal lymph nodes up to 9 mm.", (LAP,)),
)
NORMAL_IMPRESSIONS_C = ("No significant pathology was detected.", "Thorax CT findings are within normal limits.")
HEDGED_IMPRESSIONS_C = (
    S("Findings may be compatible with early infection; consolidation cannot be excluded.", (), (CON,)),
    S("Nodular infiltrates, possibly infectious.", (OPA,)),
)

# --------------------------------------------------------------------------
# Assembling reports
# --------------------------------------------------------------------------

Banks = namedtuple("Banks", "regions lung_positives lung_others impression_only normal_impressions hedged headings")

BANKS_A = Banks(
    regions=(
        ("airways", AIRWAYS),
        ("devices", DEVICES),
        ("heart", HEART),
        ("vessels", VESSELS),
        ("nodes", NODES),
        ("esophagus", ESOPHAGUS),
        ("pleura", PLEURA),
        ("other", OTHER),
    ),
    lung_positives=LUNG_POSITIVES,
    lung_others=LUNG_OTHERS,
    impression_only=IMPRESSION_ONLY,
    normal_impressions=NORMAL_IMPRESSIONS,
    hedged=HEDGED_IMPRESSIONS,
    headings={
        "airways": "AIRWAYS",
        "devices": "LINES/TUBES",
        "heart": "HEART",
        "vessels": "VESSELS",
        "nodes": "MEDIASTINUM",
        "esophagus": "ESOPHAGUS",
        "lungs": "LUNGS",
        "pleura": "PLEURA",
        "other": "OTHER",
    },
)
BANKS_B = Banks(
    regions=(
        ("airways", AIRWAYS_B),
        ("devices", DEVICES_B),
        ("heart", HEART_B),
        ("vessels", VESSELS_B),
        ("nodes", NODES_B),
        ("esophagus", ESOPHAGUS_B),
        ("pleura", PLEURA_B),
        ("other", OTHER_B),
    ),
    lung_positives=LUNG_POSITIVES_B,
    lung_others=LUNG_OTHERS_B,
    impression_only=IMPRESSION_ONLY_B,
    normal_impressions=NORMAL_IMPRESSIONS_B,
    hedged=HEDGED_IMPRESSIONS_B,
    headings={
        "airways": "Airways",
        "devices": "Lines and devices",
        "heart": "Heart",
        "vessels": "Vessels",
        "nodes": "Mediastinum",
        "esophagus": "Oesophagus",
        "lungs": "Lungs",
        "pleura": "Pleura",
        "other": "Other",
    },
)
BANKS_C = Banks(
    regions=(
        ("airways", AIRWAYS_C),
        ("devices", DEVICES_C),
        ("heart", HEART_C),
        ("vessels", VESSELS_C),
        ("nodes", NODES_C),
        ("esophagus", ESOPHAGUS_C),
        ("pleura", PLEURA_C),
        ("other", OTHER_C),
    ),
    lung_positives=LUNG_POSITIVES_C,
    lung_others=LUNG_OTHERS_C,
    impression_only=IMPRESSION_ONLY_C,
    normal_impressions=NORMAL_IMPRESSIONS_C,
    hedged=HEDGED_IMPRESSIONS_C,
    headings={
        "airways": "Trachea-bronchi",
        "devices": "Devices",
        "heart": "Heart",
        "vessels": "Vascular",
        "nodes": "Lymph nodes",
        "esophagus": "Esophagus",
        "lungs": "Lungs",
        "pleura": "Pleura",
        "other": "Other",
    },
)
PARTS = (("a", BANKS_A, 160), ("b", BANKS_B, 100), ("c", BANKS_C, 100))
"""(name part, sentence banks, number of reports): part a was used during development, part b never;
part c was written with the CT-RATE conventions of issue 12 (after the rules learned them)."""


def _pick(rng, bank):
    return bank[int(rng.integers(len(bank)))]


def _consistent(chosen: list[S], candidate: S) -> bool:
    """A sentence may join a report only if it does not deny what another asserts, or the reverse."""
    asserted = {c for s in chosen for c in s.pos}
    denied = {c for s in chosen for c in s.about}
    return not (set(candidate.pos) & denied or set(candidate.about) & asserted)


def _add(rng, chosen: list[S], bank, tries: int = 20) -> S | None:
    """Append a random sentence of ``bank`` that fits the report so far (None when none fits)."""
    for _ in range(tries if bank else 0):
        candidate = _pick(rng, bank)
        if candidate not in chosen and _consistent(chosen, candidate):
            chosen.append(candidate)
            return candidate
    return None


def build_report(rng, index: int, banks: Banks) -> tuple[str, str, dict[str, int]]:
    """Findings text, impression text and labels of one held-out report drawn from ``banks``."""
    chosen, parts, lungs = [], [], []
    for _ in range(int(rng.integers(0, 4))):
        lungs.append(_add(rng, chosen, banks.lung_positives))
    for _ in range(int(rng.integers(1, 3))):
        lungs.append(_add(rng, chosen, banks.lung_others))
    for region, bank in banks.regions:
        if region == "devices" and rng.random() < 0.5:
            continue
        sentence = _add(rng, chosen, bank)
        if sentence:
            parts.append((region, sentence.text))
    before_pleura = next(i for i, (region, _) in enumerate(parts + [("pleura", "")]) if region == "pleura")
    parts.insert(before_pleura, ("lungs", " ".join(s.text for s in lungs if s)))
    headed = index % 3 != 2  # a third of the reports are one plain paragraph
    if headed:
        findings = "\n".join(f"{banks.headings[region]}: {text}" for region, text in parts)
    else:
        findings = " ".join(text for _, text in parts)
    impression = _impression(rng, chosen, banks)
    labels = {c: int(any(c in s.pos for s in chosen)) for c in CLASSES}
    return findings, impression, labels


def _impression(rng, chosen: list[S], banks: Banks) -> str:
    """Repeat some positives, sometimes add an impression-only finding or a hedge; else a normal line."""
    positives = [c for c in CLASSES if any(c in s.pos for s in chosen)]
    lines = [_pick(rng, IMPRESSION_PHRASES[c]) for c in positives if rng.random() < 0.6]
    mentioned = {c for s in chosen for c in s.pos + s.about}
    if rng.random() < 0.3:
        extra = [s for s in banks.impression_only if not set(s.pos) & mentioned]
        if extra:
            chosen.append(_pick(rng, extra))
            lines.append(chosen[-1].text)
    if rng.random() < 0.15:
        hedge = _add(rng, chosen, [s for s in banks.hedged if not set(s.about) & mentioned])
        if hedge:
            lines.append(hedge.text)
    return " ".join(lines) if lines else _pick(rng, banks.normal_impressions)


def write_heldout(folder: Path, seed: int = 20240611) -> None:
    """Write ``heldout_reports.csv`` and ``heldout_labels.csv`` (CT-RATE formats) into ``folder``."""
    rng = np.random.default_rng(seed)
    reports, labels = [], []
    for part, banks, count in PARTS:
        for index in range(count):
            findings, impression, row = build_report(rng, index, banks)
            name = f"heldout_{part}_{index + 1:03d}.nii.gz"
            reports.append([name, "Chest CT.", "Axial CT of the chest.", findings, impression])
            labels.append([name, *(row[c] for c in CLASSES)])
    with open(folder / "heldout_reports.csv", "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["VolumeName", "ClinicalInformation_EN", "Technique_EN", "Findings_EN", "Impressions_EN"])
        writer.writerows(reports)
    with open(folder / "heldout_labels.csv", "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["VolumeName", *CLASSES])
        writer.writerows(labels)


if __name__ == "__main__":
    write_heldout(Path(__file__).resolve().parent)
