"""The project store: SQLAlchemy models, the database engine and migrations, queries."""

from core.store.project import Project, ProjectError

__all__ = ["Project", "ProjectError"]
