"""A host site's user model of the common kind: UUID ids, the email address to log in."""
