"""Lab results: reading, validating and ingesting measured properties of candidates."""
