"""Organ label maps for OSE: segmenters, the mask cache, organ vocabulary and routing.

``classes.py`` holds TotalSegmentator's ``total`` vocabulary and the built-in
segmenter's coarse extra classes; ``base.py`` the :class:`Segmenter` interface
every backend implements.
"""
