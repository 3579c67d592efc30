"""Recommendations to pay less: one pure function per rule over stored facts."""
