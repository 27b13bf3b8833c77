"""Shortcut probes (`pepx audit RUN|DATA`): does a model, or the data itself, recognise the hospital?

- ``source``: a small network tells each film's source from the film alone (patient-grouped CV);
- ``processing``: the same for one differently processed source (cxr-real's histogram-equalised ``rsna``)
  against the other adult films, under a given `pepx.data.Preprocess` (``equalize`` none or hist);
- ``features``: a linear probe tells the source from a trained disease model's penultimate features;
- ``blanked``: the disease model with the lungs blanked (Maguolo & Nanni 2021);
- ``invariance``: its accuracy and per-class recall on the same films after histogram equalisation, JPEG
  re-compression and a down/up resize.

Every number comes with a patient-bootstrap interval; see docs/evaluation.md.
"""

from pepx.probes.audit import AuditReport, audit
from pepx.probes.settings import DATA_PROBES, MODEL_PROBES, PROBES, ProbeSettings

__all__ = ["DATA_PROBES", "MODEL_PROBES", "PROBES", "AuditReport", "ProbeSettings", "audit"]
