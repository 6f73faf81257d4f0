"""Organ label maps: TotalSegmentator's class vocabulary (segmenters and the mask cache come with issue 5)."""
