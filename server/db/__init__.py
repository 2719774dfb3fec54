"""Database: SQLAlchemy models, engine and session, Alembic migrations."""
