"""Qt item models behind the pages' tables."""
