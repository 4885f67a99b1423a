"""The curation steps of the SAM-Med3D paper (section 3.2), one module each, in the order they run.

1. ``step1_meta_filter``: headers only; reject images too small, 4D, with bad spacing or a label map on
   another grid.
2. ``step2_mask_cleaning``: one connected-components pass over the label map; one mask per label value,
   with statistics; reject empty, tiny and scattered masks.
3. ``step3_label_quality``: keep the 5 largest 26-connected components of each mask.
4. ``step4_symmetry_split``: split unsided paired structures into left and right in patient coordinates;
   check sides against the world axes.
5. ``step5_resample``: to the target spacing (1.5 mm), linear for images, nearest for label maps.

Plain functions on arrays and geometry; ``pipeline.curate`` runs them on one case.
"""
