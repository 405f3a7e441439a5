"""The web pages' foundations."""
