"""Organ label maps for OSE: segmenters, the mask cache, organ vocabulary and routing.

| module | job |
| --- | --- |
| ``classes.py`` | TotalSegmentator's ``total`` vocabulary and the built-in coarse classes |
| ``base.py`` | the :class:`Segmenter` interface every backend implements |
| ``totalseg.py`` | TotalSegmentator backend (optional extra ``[seg]``) |
| ``builtin.py`` | built-in threshold/morphology segmenter (no weights) |
| ``segmenter_choice.py`` | ``--segmenter auto|totalsegmentator|builtin`` -> a Segmenter |
| ``cache.py`` | content-addressed mask cache |
| ``run.py`` | ``omnict segment``: walk studies, cache or segment, write overlays |
| ``organ_groups.py`` | the paper's 13 organ group names (a vocabulary, imports nothing) |
| ``organs.py`` | the paper's 13 organ groups over both vocabularies |
| ``routing.py`` | question or task -> organ groups |
| ``organ_selection.py`` | label map + task/question -> the organ mask OSE pools |
| ``metrics.py`` | Dice |
"""
