"""Synthetic chest CT phantoms with exact organ masks, CT-RATE abnormalities, reports and VQA.

A phantom world where the ground truth is known exactly: every test, the
demo model and a new user's first run use it (issue 3). The package is
split by job:

* ``findings``       the :class:`Finding` record shared by the parts below
* ``anatomy``        normal chest anatomy in HU + its TotalSegmentator label map
* ``abnormalities``  the 18 CT-RATE classes drawn into the image, as Findings
* ``reports``        CT-RATE-style reports and VQA pairs written from Findings
"""
