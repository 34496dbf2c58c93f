"""Team annotation: votes and their consensus, agreement, assignment of faces to annotators."""
