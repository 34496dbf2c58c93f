"""Getting faces into a project: sources, validation, face detection, the importer, the demo set."""
