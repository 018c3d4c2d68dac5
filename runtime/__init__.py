"""Runtime: executes the stages of a Plan. Owns torch, transformers, peft and datasets."""
