"""Model families. Each maps WAVEFORMS (batch, samples) and their lengths to logits (batch, classes)."""
