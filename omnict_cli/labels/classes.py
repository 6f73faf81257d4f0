"""The 18 CT-RATE abnormality classes, in CT-RATE's column order.

The order is the column order of CT-RATE's label CSVs (after
``VolumeName``) and of the paper's Table 16; every label vector, CSV and
score table in omnict uses it.
"""

CTRATE_ABNORMALITIES = (
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

FINDINGS_REGIONS = (
    "trachea",
    "mediastinum",
    "devices",
    "lymph_nodes",
    "oesophagus",
    "lungs",
    "pleura",
    "abdomen",
    "bones",
)
"""The parts of a CT-RATE Findings section, in the order its reports walk the chest."""

CLASS_REGION = {
    "Medical material": "devices",
    "Arterial wall calcification": "mediastinum",
    "Cardiomegaly": "mediastinum",
    "Pericardial effusion": "mediastinum",
    "Coronary artery wall calcification": "mediastinum",
    "Hiatal hernia": "oesophagus",
    "Lymphadenopathy": "lymph_nodes",
    "Emphysema": "lungs",
    "Atelectasis": "lungs",
    "Lung nodule": "lungs",
    "Lung opacity": "lungs",
    "Pulmonary fibrotic sequela": "lungs",
    "Pleural effusion": "pleura",
    "Mosaic attenuation pattern": "lungs",
    "Peribronchial thickening": "lungs",
    "Consolidation": "lungs",
    "Bronchiectasis": "lungs",
    "Interlobular septal thickening": "lungs",
}
"""The part of the Findings section (:data:`FINDINGS_REGIONS`) where a report states each class.

Shared vocabulary: the training corpus (``labels/corpus.py``) orders its
sentences by it, and the phantom report writer can use the same map."""
