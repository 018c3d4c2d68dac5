"""The synthesize stage: chunks -> grounded QA pairs or conversations written by the teacher,
checked, deduplicated, augmented and split, with nothing lost silently."""
