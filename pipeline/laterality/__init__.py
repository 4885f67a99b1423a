"""Is a mask bilateral? Decided from its name (known paired / midline / single structures) and from the
mask itself, in patient (LPS) coordinates, about a mid-sagittal plane estimated from the case.

``names``: the vocabularies (``laterality.yaml``). ``plane``: the mid-sagittal plane x = c (world mm, LPS)
from the mirror symmetry of the label map, or of the image. ``evidence``: per mask, mass on each side,
mirror symmetry, and the dip of its left-right profile at the plane; the bilateral decision.
"""
