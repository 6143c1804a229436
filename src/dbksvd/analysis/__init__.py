"""Analysis on top of fitted models: the comparison harness and its report (:mod:`.compare`),
and a scored description for every atom (:mod:`.explain`)."""
