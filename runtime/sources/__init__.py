"""The extract and chunk stages: sources -> pages and QA examples -> provenance-carrying chunks."""
