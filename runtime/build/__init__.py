"""distill build: the stage graph, its cache under .distill/, and the stages it runs."""
