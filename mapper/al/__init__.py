"""Active-learning label campaigns (`mapper al`): a pool of candidate blocks mapped by the run's own pipeline,
selection of the blocks worth labelling, the hand-off to a person in QGIS (or the simulated annotator), ingest
of the returned polygons, retraining from the current models, validation on a fixed sample and the paper's
stop criteria per province, with a ledger that records every round."""
