"""The train stage: synthesized examples -> token ids -> a trained student."""
