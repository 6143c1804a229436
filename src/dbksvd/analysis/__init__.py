"""Analysis on top of fitted models: the comparison harness and report (:mod:`.compare`)."""
