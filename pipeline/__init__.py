"""Per-case curation on arrays and geometry (no Prefect, no Zarr).

``steps`` holds the paper's curation steps, one module each (meta filter, mask cleaning, label quality,
symmetry split, resampling); ``curate`` runs them on one case, with ``case_masks`` (steps 2-4 on the
label map) and ``catalog_rows`` (the rows it yields). Around them: ``io`` and ``importers`` (reading),
``records`` (the in-memory case), ``config``, ``vocabulary``, ``geometry``, ``fingerprint``,
``label_masks``, and ``phantoms`` (SYNTHETIC test data).
"""

__version__ = "0.1.0"
