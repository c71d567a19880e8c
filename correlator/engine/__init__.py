"""Detection: detectors turn batches of normalised events into findings."""
